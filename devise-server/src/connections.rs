//! Connections: the accept loop, with a cap on open connections, a header-read timeout
//! that also ends idle ones, a per-request timeout, the peer address for throttling, and
//! the drain at a stop signal.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::{AppState, errors, router};
use crate::db::Database;

/// The peer address of the connection a request came on, set by [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Serves until `shutdown` resolves, then drains: `GET /readyz` answers 503 at once; the
/// server goes on accepting and serving for `Limits::shutdown_delay` (zero by default),
/// then closes its listener, closes idle connections, and lets the requests in flight be
/// answered for up to `Limits::shutdown_timeout`, after which it returns anyway, cutting
/// off what is left. Either way the log says how it ended.
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
    // The stop: not ready at once, the listener open for the delay still.
    let stop = {
        let state = state.clone();
        let delay = limits.shutdown_delay;
        async move {
            shutdown.await;
            state.readiness().start_draining();
            if !delay.is_zero() {
                tracing::info!(
                    "not ready; serving {} ms more before closing the listener",
                    delay.as_millis()
                );
                tokio::time::sleep(delay).await;
            }
        }
    };
    let router = router(state);
    let registry = Arc::new(Registry::default());
    let requests = Arc::new(Requests::default());
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
        let requests = Arc::clone(&requests);
        let service =
            hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ClientAddr(peer));
                    let router = router.clone();
                    let slot = Arc::clone(&in_service);
                    slot.waiting.store(false, Ordering::Relaxed);
                    let in_flight = InFlight::begin(&requests);
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
                        in_flight.answered();
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
    // Idle connections close now, busy ones once their response is written (hyper turns
    // keep-alive off); the bound cuts off a client that keeps a connection busy longer.
    let bound = limits.shutdown_timeout;
    let answered_before = requests.answered.load(Ordering::Relaxed);
    let abandoned_before = requests.abandoned.load(Ordering::Relaxed);
    tracing::info!(
        "listener closed; {} requests in flight on {} open connections, waiting up to {} ms",
        requests.in_flight.load(Ordering::Relaxed),
        registry.len(),
        bound.as_millis()
    );
    let start = Instant::now();
    let drained = tokio::time::timeout(bound, graceful.shutdown()).await;
    let answered = requests
        .answered
        .load(Ordering::Relaxed)
        .saturating_sub(answered_before);
    let abandoned = requests
        .abandoned
        .load(Ordering::Relaxed)
        .saturating_sub(abandoned_before);
    match drained {
        Ok(()) => tracing::info!(
            "drained in {} ms: {answered} requests answered since the listener closed, \
             {abandoned} dropped by their clients before the answer, none cut off",
            start.elapsed().as_millis()
        ),
        Err(_) => tracing::warn!(
            "shutdown timeout of {} ms reached: exiting anyway, cutting off {} requests in \
             flight on {} connections ({answered} answered since the listener closed, \
             {abandoned} dropped by their clients)",
            bound.as_millis(),
            requests.in_flight.load(Ordering::Relaxed),
            registry.len()
        ),
    }
    Ok(())
}

/// Requests between their head and their response, and how the ended ones ended.
#[derive(Default)]
struct Requests {
    in_flight: AtomicUsize,
    /// Responses handed to hyper to write.
    answered: AtomicU64,
    /// Requests whose handler was dropped before it answered: their connection closed
    /// (the client went away, or the connection was evicted).
    abandoned: AtomicU64,
}

/// One request in flight, counted in [`Requests`] from its head until it is answered or
/// dropped.
struct InFlight {
    requests: Arc<Requests>,
    answered: bool,
}

impl InFlight {
    fn begin(requests: &Arc<Requests>) -> Self {
        requests.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            requests: Arc::clone(requests),
            answered: false,
        }
    }

    fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.requests.in_flight.fetch_sub(1, Ordering::Relaxed);
        let ended = if self.answered {
            &self.requests.answered
        } else {
            &self.requests.abandoned
        };
        ended.fetch_add(1, Ordering::Relaxed);
    }
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

    fn len(&self) -> usize {
        self.open.lock().map_or(0, |open| open.len())
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
