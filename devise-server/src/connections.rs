//! Connections: the accept loop, with a cap on open connections, a header-read timeout
//! that also ends idle ones, a per-request timeout, and the peer address for throttling.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::{AppState, errors, router};
use crate::db::Database;

/// The peer address of the connection a request came on, set by [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Serves until `shutdown` resolves (from then on `GET /readyz` answers 503), then finishes
/// the requests in flight.
///
/// The accept loop is hyper's own, for what `axum::serve` does not offer: a limit on open
/// connections (so descriptors stay free for the database and the listener; when it is
/// reached, the connection that has waited longest for a request head is closed to make
/// room), a header-read timeout that also ends idle kept-alive connections, a per-request
/// timeout, and the peer address for throttling.
pub async fn serve<D: Database>(
    listener: TcpListener,
    state: AppState<D>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let limits = state.limits().clone();
    let connections = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    // The throttle tables forget recovered keys once a minute.
    let purge = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                state.purge_throttle();
            }
        })
    };
    // The stop: `GET /readyz` answers 503 from the signal on.
    let stop = {
        let state = state.clone();
        async move {
            shutdown.await;
            state.readiness().start_draining();
        }
    };
    let router = router(state);
    let registry = Arc::new(Registry::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors or a connection reset before accept: wait a
                    // moment rather than spin; the connection limit keeps this rare.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Full: the connection that has waited longest for a request head (a slow or
        // idle one, never one whose request is being handled) makes room, so a flood of
        // half-open connections cannot lock real clients out.
        let permit = match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if registry.evict_oldest_waiting() => {
                match tokio::time::timeout(
                    Duration::from_millis(100),
                    Arc::clone(&connections).acquire_owned(),
                )
                .await
                {
                    Ok(Ok(permit)) => permit,
                    _ => continue,
                }
            }
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let slot = registry.open();
        let router = router.clone();
        let request_timeout = limits.request_timeout;
        let in_service = Arc::clone(&slot);
        let service =
            hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ClientAddr(peer));
                    let router = router.clone();
                    let slot = Arc::clone(&in_service);
                    slot.waiting.store(false, Ordering::Relaxed);
                    async move {
                        let response =
                            match tokio::time::timeout(request_timeout, router.oneshot(request))
                                .await
                            {
                                Ok(Ok(response)) => response,
                                Ok(Err(never)) => match never {},
                                Err(_) => errors(StatusCode::REQUEST_TIMEOUT, "Request timed out."),
                            };
                        slot.waiting.store(true, Ordering::Relaxed);
                        Ok::<_, std::convert::Infallible>(response)
                    }
                },
            );
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                () = slot.evict.notified() => {}
            }
            registry.close(slot.id);
            drop(permit);
        });
    }
    drop(listener);
    purge.abort();
    // Requests in flight finish; idle connections close. A client that keeps a connection
    // busy longer than this is cut off.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

/// One open connection, as the accept loop sees it.
struct Slot {
    id: u64,
    /// Between requests: waiting for (or reading) a request head, or idle.
    waiting: AtomicBool,
    /// Tells the connection's task to close it.
    evict: tokio::sync::Notify,
}

/// The open connections in the order they were accepted.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<std::collections::BTreeMap<u64, Arc<Slot>>>,
}

impl Registry {
    fn open(&self) -> Arc<Slot> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            id,
            waiting: AtomicBool::new(true),
            evict: tokio::sync::Notify::new(),
        });
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, Arc::clone(&slot));
        }
        slot
    }

    fn close(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }

    /// Closes the oldest connection that is waiting for a request head; `false` if every
    /// connection is in the middle of a request.
    fn evict_oldest_waiting(&self) -> bool {
        let Ok(mut open) = self.open.lock() else {
            return false;
        };
        let oldest = open
            .iter()
            .find(|(_, slot)| slot.waiting.load(Ordering::Relaxed))
            .map(|(&id, _)| id);
        match oldest.and_then(|id| open.remove(&id)) {
            Some(slot) => {
                slot.evict.notify_one();
                true
            }
            None => false,
        }
    }
}
