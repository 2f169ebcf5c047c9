//! A TCP proxy on loopback between a store client and its server, which a test can cut
//! (every connection reset, new ones refused), stall (every byte held, both ways, on
//! current and new connections) and restore, or point at another server (a failover).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Open,
    Stalled,
    Cut,
}

#[derive(Clone, Copy, Debug)]
struct State {
    mode: Mode,
    upstream: SocketAddr,
    /// Moved on by every cut and retarget: connections made before are reset.
    resets: u64,
}

pub struct Proxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Connections end with the state's sender.
    }
}

impl Proxy {
    /// A proxy to `upstream`, open, on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, _) = watch::channel(State {
            mode: Mode::Open,
            upstream,
            resets: 0,
        });
        let task = tokio::spawn(accept(listener, addr, state.subscribe()));
        Self { addr, state, task }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every connection and refuses new ones (the port stops listening) until
    /// [`restore`](Self::restore).
    pub fn cut(&self) {
        self.state.send_modify(|s| {
            s.mode = Mode::Cut;
            s.resets += 1;
        });
    }

    /// Holds every byte, both ways, on every connection, new ones included (they are
    /// accepted), until [`restore`](Self::restore): what a client sent before is delivered
    /// then.
    pub fn stall(&self) {
        self.state.send_modify(|s| s.mode = Mode::Stalled);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.state.send_modify(|s| s.mode = Mode::Open);
    }

    /// Resets every connection; new ones go to `upstream`.
    pub fn retarget(&self, upstream: SocketAddr) {
        self.state.send_modify(|s| {
            s.upstream = upstream;
            s.resets += 1;
        });
    }
}

async fn accept(listener: TcpListener, addr: SocketAddr, mut state: watch::Receiver<State>) {
    let mut listener = Some(listener);
    loop {
        let mode = state.borrow_and_update().mode;
        match (mode, &listener) {
            (Mode::Cut, Some(_)) => listener = None,
            (Mode::Cut, None) => {
                if state.changed().await.is_err() {
                    return;
                }
            }
            (_, None) => {
                // Listen again on the same port (SO_REUSEADDR is set by tokio).
                match TcpListener::bind(addr).await {
                    Ok(bound) => listener = Some(bound),
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            (_, Some(bound)) => {
                tokio::select! {
                    accepted = bound.accept() => {
                        if let Ok((client, _)) = accepted {
                            tokio::spawn(connection(client, state.clone()));
                        }
                    }
                    changed = state.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}

async fn connection(mut client: TcpStream, mut state: watch::Receiver<State>) {
    let (upstream, resets) = {
        let s = state.borrow_and_update();
        (s.upstream, s.resets)
    };
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let reset = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let pumps = {
            let (a, b) = (state.clone(), state.clone());
            async move {
                tokio::join!(
                    pump(client_read, server_write, a),
                    pump(server_read, client_write, b)
                )
            }
        };
        tokio::select! {
            _ = pumps => false,
            _ = state.wait_for(|s| s.resets != resets) => true,
        }
    };
    if reset {
        // RST rather than FIN: the peers see the connection break, not end.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

/// Copies `from` to `to`, holding what it read while the proxy is stalled.
async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    mut state: watch::Receiver<State>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if state.wait_for(|s| s.mode != Mode::Stalled).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
