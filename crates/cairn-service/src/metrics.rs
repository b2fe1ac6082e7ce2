//! Process metrics, kept and rendered by `prometheus-client`.
//!
//! The hot paths (signing, sequencing, witnessing) update counters and
//! histograms through the handles in [`Metrics`]; the gauges that describe
//! the registry's state (checkpoint size, sequencer lag, whether this
//! process sequences) are read when metrics are scraped, by
//! [`Registry::render_metrics`]. The set of series is fixed here, so a name
//! is never registered twice.
//!
//! This module does not serve HTTP: the binary serves the rendered text on
//! its own listener (`--metrics-listen`).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram as PromHistogram, exponential_buckets};

use crate::Registry;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// `Content-Type` of the Prometheus text format (version 0.0.4).
pub const PROMETHEUS_TEXT: &str = prometheus_text::CONTENT_TYPE;
/// `Content-Type` of the OpenMetrics text format (version 1.0.0).
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels naming one signing key (`key="operator"`).
type KeyLabel = [(&'static str, &'static str); 1];
/// Labels naming a signing key and a failure kind.
type FailureLabels = [(&'static str, &'static str); 2];

fn latency_histogram() -> PromHistogram {
    PromHistogram::new(LATENCY_BUCKETS)
}

/// A latency histogram (seconds).
#[derive(Clone, Debug)]
pub struct Histogram(PromHistogram);

impl Default for Histogram {
    fn default() -> Self {
        Self(latency_histogram())
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        self.0.observe(elapsed.as_secs_f64());
    }
}

/// A histogram of counts (records per batch): buckets 1, 2, 4, … 1024.
#[derive(Clone, Debug)]
pub struct CountHistogram(PromHistogram);

impl Default for CountHistogram {
    fn default() -> Self {
        Self(PromHistogram::new(exponential_buckets(1.0, 2.0, 11)))
    }
}

impl CountHistogram {
    /// Records one observation.
    pub fn observe(&self, count: u64) {
        // Exact up to 2^53, far beyond any batch.
        self.0.observe(count as f64);
    }
}

/// A monotonically increasing counter.
#[derive(Clone, Debug, Default)]
pub struct Counter(PromCounter);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// Which key signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRole {
    /// The ECDSA P-256 operator key (warg checkpoints and operator records).
    Operator,
    /// The Ed25519 note key (C2SP checkpoints).
    Note,
}

impl KeyRole {
    fn label(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Note => "note",
        }
    }
}

/// Signing metrics of one key role.
#[derive(Debug)]
pub struct SignerMetrics {
    /// Latency of successful signing calls.
    pub latency: Histogram,
    /// Failed calls that may succeed on retry (network, throttling).
    pub transient_failures: Counter,
    /// Failed calls that will not succeed on retry (refused, bad output).
    pub permanent_failures: Counter,
}

/// Witness submission outcomes.
#[derive(Debug, Default)]
pub struct WitnessMetrics {
    /// Checkpoints cosigned by a witness.
    pub cosigned: Counter,
    /// Submissions answered 409 (the witness had another size).
    pub conflicts: Counter,
    /// Submissions that failed (network, refusal, bad answer).
    pub failures: Counter,
}

/// Publishing of tiles and checkpoints to an object sink
/// (`--publish-tiles`).
#[derive(Debug, Default)]
pub struct TileMetrics {
    /// Full tiles (hash tiles and entry bundles) written.
    pub full: Counter,
    /// Partial tiles written (the right edge of a published checkpoint).
    pub partial: Counter,
    /// Publishing rounds that failed (each is retried with backoff).
    pub errors: Counter,
    size: Gauge<u64, AtomicU64>,
}

impl TileMetrics {
    /// The size of the checkpoint last written to the sink.
    pub fn published_size(&self) -> u64 {
        self.size.get()
    }

    pub(crate) fn set_published_size(&self, size: u64) {
        self.size.set(size);
    }
}

/// Gauges read from the registry's state at each scrape.
#[derive(Debug, Default)]
struct StateGauges {
    checkpoint_size: Gauge<u64, AtomicU64>,
    backlog: Gauge<u64, AtomicU64>,
    lag_seconds: Gauge<f64, AtomicU64>,
    leader: Gauge<u64, AtomicU64>,
}

/// Every metric of a running registry.
#[derive(Debug)]
pub struct Metrics {
    registry: prometheus_client::registry::Registry,
    /// Operator key signing.
    pub operator_signer: SignerMetrics,
    /// Note key signing.
    pub note_signer: SignerMetrics,
    /// Records sequenced into the log.
    pub records_sequenced: Counter,
    /// Records refused by the sequencer.
    pub records_rejected: Counter,
    /// Batches committed.
    pub batches: Counter,
    /// Records per committed batch (sequenced and refused).
    pub batch_records: CountHistogram,
    /// Time from taking a batch to its stored checkpoint.
    pub batch_latency: Histogram,
    /// Time to sign both views of a checkpoint (the operator and note
    /// signatures are made concurrently; retries included).
    pub checkpoint_signing: Histogram,
    /// Checkpoints signed and stored.
    pub checkpoints: Counter,
    /// Witness submissions.
    pub witness: WitnessMetrics,
    /// OCI manifests derived from warg releases (each is derived once,
    /// then served from the store).
    pub oci_derivations: Counter,
    /// Tile publishing.
    pub tiles: TileMetrics,
    state: StateGauges,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let sign_seconds =
            Family::<KeyLabel, PromHistogram, fn() -> PromHistogram>::new_with_constructor(
                latency_histogram,
            );
        let sign_failures = Family::<FailureLabels, PromCounter>::default();
        let signer = |role: KeyRole| SignerMetrics {
            latency: Histogram(sign_seconds.get_or_create_owned(&[("key", role.label())])),
            transient_failures: Counter(
                sign_failures.get_or_create_owned(&[("key", role.label()), ("kind", "transient")]),
            ),
            permanent_failures: Counter(
                sign_failures.get_or_create_owned(&[("key", role.label()), ("kind", "permanent")]),
            ),
        };
        let operator_signer = signer(KeyRole::Operator);
        let note_signer = signer(KeyRole::Note);
        registry.register(
            "cairn_sign_seconds",
            "Latency of successful signing calls",
            sign_seconds,
        );
        registry.register("cairn_sign_failures", "Failed signing calls", sign_failures);

        let metrics = Self {
            registry,
            operator_signer,
            note_signer,
            records_sequenced: Counter::default(),
            records_rejected: Counter::default(),
            batches: Counter::default(),
            batch_records: CountHistogram::default(),
            batch_latency: Histogram::default(),
            checkpoint_signing: Histogram::default(),
            checkpoints: Counter::default(),
            witness: WitnessMetrics::default(),
            oci_derivations: Counter::default(),
            tiles: TileMetrics::default(),
            state: StateGauges::default(),
        };
        metrics.register_rest()
    }
}

impl Metrics {
    /// Registers every series but the signing families (names without the
    /// `_total` suffix, which the encoder appends to counters).
    fn register_rest(mut self) -> Self {
        let counters = [
            (
                "cairn_records_sequenced",
                "Records sequenced into the log",
                &self.records_sequenced,
            ),
            (
                "cairn_records_rejected",
                "Records refused by the sequencer",
                &self.records_rejected,
            ),
            (
                "cairn_batches",
                "Sequencer batches committed",
                &self.batches,
            ),
            (
                "cairn_checkpoints",
                "Checkpoints signed and stored",
                &self.checkpoints,
            ),
            (
                "cairn_witness_cosignatures",
                "Checkpoints cosigned by a witness",
                &self.witness.cosigned,
            ),
            (
                "cairn_witness_conflicts",
                "Witness submissions answered 409",
                &self.witness.conflicts,
            ),
            (
                "cairn_witness_failures",
                "Witness submissions that failed",
                &self.witness.failures,
            ),
            (
                "cairn_oci_derivations",
                "OCI manifests derived from warg releases",
                &self.oci_derivations,
            ),
            (
                "cairn_tiles_published",
                "Full tiles (hash tiles and entry bundles) written to the tile sink",
                &self.tiles.full,
            ),
            (
                "cairn_partial_tiles_published",
                "Partial tiles written to the tile sink",
                &self.tiles.partial,
            ),
            (
                "cairn_tiles_publish_errors",
                "Tile publishing rounds that failed (retried with backoff)",
                &self.tiles.errors,
            ),
        ];
        for (name, help, counter) in counters {
            self.registry.register(name, help, counter.0.clone());
        }
        self.registry.register(
            "cairn_batch_seconds",
            "Time from taking a batch to its stored checkpoint",
            self.batch_latency.0.clone(),
        );
        self.registry.register(
            "cairn_batch_records",
            "Records per committed sequencer batch, sequenced and refused",
            self.batch_records.0.clone(),
        );
        self.registry.register(
            "cairn_checkpoint_sign_seconds",
            "Time to sign both views of a checkpoint (operator and note keys, concurrently; retries included)",
            self.checkpoint_signing.0.clone(),
        );
        self.registry.register(
            "cairn_checkpoint_size",
            "Records covered by the latest checkpoint",
            self.state.checkpoint_size.clone(),
        );
        self.registry.register(
            "cairn_backlog_records",
            "Records queued and not yet sequenced (the sequencer lag in records)",
            self.state.backlog.clone(),
        );
        self.registry.register(
            "cairn_sequencer_lag_seconds",
            "Age of the oldest record queued and not yet sequenced, since it was accepted; 0 when none is queued",
            self.state.lag_seconds.clone(),
        );
        self.registry.register(
            "cairn_tiles_published_size",
            "Size of the checkpoint last written to the tile sink; 0 before the first",
            self.tiles.size.clone(),
        );
        self.registry.register(
            "cairn_sequencer_leader",
            "1 when this process runs the sequencer (the log's only writer), else 0",
            self.state.leader.clone(),
        );
        self
    }

    /// The signing metrics of `role`.
    pub fn signer(&self, role: KeyRole) -> &SignerMetrics {
        match role {
            KeyRole::Operator => &self.operator_signer,
            KeyRole::Note => &self.note_signer,
        }
    }

    /// Renders every metric in the Prometheus text format (version 0.0.4),
    /// or in the OpenMetrics text format when `openmetrics` is set.
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        let encoded = if openmetrics {
            text::encode(&mut out, &self.registry)
        } else {
            prometheus_text::encode(&mut out, &self.registry)
        };
        // Writing to a String cannot fail; an encoder error would be a
        // metric name this module got wrong, which its tests catch.
        if let Err(error) = encoded {
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }
}

impl Registry {
    /// Reads the state gauges (latest checkpoint, sequencer lag, whether
    /// this process sequences) and renders every metric; see
    /// [`Metrics::render`]. Reads one queued record from the store (an
    /// indexed lookup) for the lag.
    pub async fn render_metrics(&self, openmetrics: bool) -> String {
        let metrics = &self.inner.metrics;
        let state = &metrics.state;
        state.checkpoint_size.set(
            self.latest_checkpoint()
                .map_or(0, |c| c.checkpoint.checkpoint.log_length),
        );
        state.backlog.set(self.backlog_len());
        state.leader.set(u64::from(self.health().sequencer_running));
        match self.inner.store.queued(1).await {
            Ok(queued) => {
                let now = self.inner.clock.now_ms();
                let age_ms = queued
                    .first()
                    .map_or(0, |p| now.saturating_sub(p.record.created_at_ms).max(0));
                // Milliseconds to seconds; exact well beyond any real age.
                state.lag_seconds.set(age_ms as f64 / 1000.0);
            }
            Err(error) => {
                tracing::warn!(%error, "reading the oldest queued record for metrics failed");
            }
        }
        metrics.render(openmetrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        metrics
            .operator_signer
            .latency
            .observe(Duration::from_millis(3));
        metrics.note_signer.transient_failures.add(2);
        metrics.records_sequenced.add(5);
        metrics.batch_records.observe(3);
        metrics.state.checkpoint_size.set(9);
        let text = metrics.render(false);
        assert!(text.contains("cairn_sign_seconds_bucket{key=\"operator\",le=\"0.0025\"} 0\n"));
        assert!(text.contains("cairn_sign_seconds_bucket{key=\"operator\",le=\"0.005\"} 1\n"));
        assert!(text.contains("cairn_sign_seconds_bucket{key=\"operator\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("cairn_sign_seconds_count{key=\"operator\"} 1\n"));
        assert!(text.contains("cairn_sign_failures_total{key=\"note\",kind=\"transient\"} 2\n"));
        assert!(
            text.contains("cairn_sign_failures_total{key=\"operator\",kind=\"permanent\"} 0\n")
        );
        assert!(text.contains("# TYPE cairn_records_sequenced_total counter\n"));
        assert!(text.contains("cairn_records_sequenced_total 5\n"));
        assert!(text.contains("# TYPE cairn_checkpoint_size gauge\ncairn_checkpoint_size 9\n"));
        assert!(text.contains("cairn_batch_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("cairn_batch_records_bucket{le=\"2\"} 0\n"));
        assert!(text.contains("cairn_batch_records_bucket{le=\"4\"} 1\n"));
        assert!(text.contains("cairn_batch_records_count 1\n"));
        assert!(text.contains("cairn_checkpoint_sign_seconds_count 0\n"));
        assert!(text.contains("cairn_sequencer_leader 0\n"));
        metrics.tiles.full.add(2);
        metrics.tiles.set_published_size(300);
        let text = metrics.render(false);
        assert!(text.contains("cairn_tiles_published_total 2\n"));
        assert!(text.contains("cairn_partial_tiles_published_total 0\n"));
        assert!(text.contains("cairn_tiles_publish_errors_total 0\n"));
        assert!(text.contains("cairn_tiles_published_size 300\n"));
        assert!(text.contains("cairn_sequencer_lag_seconds 0"));
        assert!(!text.contains("# EOF"));
        let open = metrics.render(true);
        assert!(open.contains("cairn_records_sequenced_total 5\n"));
        assert!(open.ends_with("# EOF\n"));
    }
}
