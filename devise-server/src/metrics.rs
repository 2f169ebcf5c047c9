//! Counters of decisions and compare-and-swaps, for `GET /metrics` and the shutdown line.

use std::sync::atomic::{AtomicU64, Ordering};

use rotauth::DecisionKind;

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
        this.record(|| {
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
    fn record(&self, f: impl FnOnce()) {
        metrics::with_local_recorder(&self.recorder, f);
    }

    pub(crate) fn count(&self, kind: DecisionKind) {
        self.record(|| metrics::counter!(DECISIONS, "kind" => kind.as_str()).increment(1));
    }

    pub(crate) fn conflicts(&self, lost_swaps: usize) {
        if lost_swaps == 0 {
            return;
        }
        let n = u64::try_from(lost_swaps).unwrap_or(u64::MAX);
        self.cas_conflicts.fetch_add(n, Ordering::Relaxed);
        self.record(|| metrics::counter!(CAS_CONFLICTS).increment(n));
    }

    pub(crate) fn exhausted(&self) {
        self.cas_exhausted.fetch_add(1, Ordering::Relaxed);
        self.record(|| metrics::counter!(CAS_EXHAUSTED).increment(1));
    }

    /// Prometheus' text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}
