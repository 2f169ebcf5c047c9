//! Counters of decisions and compare-and-swaps, for `GET /metrics` and the shutdown line.

use std::sync::atomic::{AtomicU64, Ordering};

use std::fmt::Write as _;

use rotauth::{DecisionKind, KeyId, Keyring};
use rotauth_axum::Decided;

/// Counters since start through the `metrics` facade, into a Prometheus recorder of this
/// server's own (not the process-wide one, so servers in one process, as in the tests,
/// count apart), rendered at `GET /metrics` with `--metrics`; the two compare-and-swap
/// counts are also kept for the line printed at shutdown.
pub struct Metrics {
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    /// Compare-and-swaps lost to another request of the same session (each one re-read and
    /// decided again).
    pub cas_conflicts: AtomicU64,
    /// Requests that lost every compare-and-swap they were allowed and answered 503.
    pub cas_exhausted: AtomicU64,
}

const CAS_CONFLICTS: &str = "rotauth_cas_conflicts_total";
const CAS_EXHAUSTED: &str = "rotauth_cas_exhausted_total";
const DECISIONS: &str = "rotauth_decisions_total";

impl Default for Metrics {
    fn default() -> Self {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let this = Self {
            recorder,
            handle,
            cas_conflicts: AtomicU64::new(0),
            cas_exhausted: AtomicU64::new(0),
        };
        this.with(|| {
            metrics::describe_counter!(
                CAS_CONFLICTS,
                "Session updates that lost a compare-and-swap and were decided again."
            );
            metrics::describe_counter!(
                CAS_EXHAUSTED,
                "Requests that answered 503 after too many lost compare-and-swaps."
            );
            metrics::describe_counter!(DECISIONS, "Token decisions of authenticated requests.");
            // Every series from the start, at zero.
            metrics::counter!(CAS_CONFLICTS).absolute(0);
            metrics::counter!(CAS_EXHAUSTED).absolute(0);
            for kind in DecisionKind::ALL {
                metrics::counter!(DECISIONS, "kind" => kind.as_str()).absolute(0);
            }
        });
        this
    }
}

impl Metrics {
    fn with(&self, f: impl FnOnce()) {
        metrics::with_local_recorder(&self.recorder, f);
    }

    /// Counts what the request loop came to for one request (rotauth-axum leaves it in
    /// the response): its decision, the swaps it lost, and whether it gave up on them.
    pub(crate) fn count(&self, decided: &Decided) {
        if let Some(kind) = decided.decision() {
            self.with(|| metrics::counter!(DECISIONS, "kind" => kind.as_str()).increment(1));
        }
        let lost = u64::try_from(decided.lost_swaps()).unwrap_or(u64::MAX);
        if lost > 0 {
            self.cas_conflicts.fetch_add(lost, Ordering::Relaxed);
            self.with(|| metrics::counter!(CAS_CONFLICTS).increment(lost));
        }
        if decided.is_contention() {
            self.cas_exhausted.fetch_add(1, Ordering::Relaxed);
            self.with(|| metrics::counter!(CAS_EXHAUSTED).increment(1));
        }
    }

    /// Prometheus' text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// The key gauges in Prometheus' text format, computed at each scrape rather than kept,
/// so that a removed key leaves no stale series: `rotauth_keys` (1 per key the server
/// holds, `primary="true"` on the one that signs) and `rotauth_sessions_by_key` (live
/// sessions whose current token is under each key, the keys held and any other that
/// sessions are still on). An old key with no session left can go without signing anyone
/// out.
pub fn render_keys(keyring: &Keyring, sessions: &[(KeyId, u64)]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# HELP rotauth_keys The signing keys this server holds; primary signs new tokens.\n\
         # TYPE rotauth_keys gauge"
    );
    for id in keyring.ids() {
        let primary = id == keyring.primary();
        let _ = writeln!(
            text,
            "rotauth_keys{{key_id=\"{}\",primary=\"{primary}\"}} 1",
            id.0
        );
    }
    let _ = writeln!(
        text,
        "# HELP rotauth_sessions_by_key Live sessions whose current token is under each key.\n\
         # TYPE rotauth_sessions_by_key gauge"
    );
    let mut ids: Vec<KeyId> = keyring.ids().collect();
    ids.extend(sessions.iter().map(|(id, _)| *id));
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let n = sessions
            .iter()
            .find(|(k, _)| *k == id)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(text, "rotauth_sessions_by_key{{key_id=\"{}\"}} {n}", id.0);
    }
    text
}
