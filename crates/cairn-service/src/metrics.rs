//! Process metrics, rendered in the Prometheus text exposition format.
//!
//! A handful of counters and histograms updated with atomics on the hot
//! paths (signing, sequencing, witnessing). This module is not a general
//! metrics library: the set of series is fixed and written out by
//! [`Metrics::render`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
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
#[derive(Debug, Default)]
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

/// Every metric of a running registry.
#[derive(Debug, Default)]
pub struct Metrics {
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
    /// Time from taking a batch to its stored checkpoint.
    pub batch_latency: Histogram,
    /// Checkpoints signed and stored.
    pub checkpoints: Counter,
    /// Witness submissions.
    pub witness: WitnessMetrics,
    /// OCI manifests derived from warg releases (each is derived once,
    /// then served from the store).
    pub oci_derivations: Counter,
}

impl Metrics {
    /// The signing metrics of `role`.
    pub fn signer(&self, role: KeyRole) -> &SignerMetrics {
        match role {
            KeyRole::Operator => &self.operator_signer,
            KeyRole::Note => &self.note_signer,
        }
    }

    /// Renders every metric in the Prometheus text format (version 0.0.4),
    /// with `extra` gauges (name, help, value) appended.
    pub fn render(&self, extra: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP cairn_sign_seconds Latency of successful signing calls.\n# TYPE cairn_sign_seconds histogram"
        );
        for role in [KeyRole::Operator, KeyRole::Note] {
            self.signer(role).latency.render(
                &mut out,
                "cairn_sign_seconds",
                &format!("key=\"{}\"", role.label()),
            );
        }
        let _ = writeln!(
            out,
            "# HELP cairn_sign_failures_total Failed signing calls.\n# TYPE cairn_sign_failures_total counter"
        );
        for role in [KeyRole::Operator, KeyRole::Note] {
            let metrics = self.signer(role);
            for (kind, counter) in [
                ("transient", &metrics.transient_failures),
                ("permanent", &metrics.permanent_failures),
            ] {
                let _ = writeln!(
                    out,
                    "cairn_sign_failures_total{{key=\"{}\",kind=\"{kind}\"}} {}",
                    role.label(),
                    counter.get()
                );
            }
        }
        let counters = [
            (
                "cairn_records_sequenced_total",
                "Records sequenced into the log.",
                &self.records_sequenced,
            ),
            (
                "cairn_records_rejected_total",
                "Records refused by the sequencer.",
                &self.records_rejected,
            ),
            (
                "cairn_batches_total",
                "Sequencer batches committed.",
                &self.batches,
            ),
            (
                "cairn_checkpoints_total",
                "Checkpoints signed and stored.",
                &self.checkpoints,
            ),
            (
                "cairn_witness_cosignatures_total",
                "Checkpoints cosigned by a witness.",
                &self.witness.cosigned,
            ),
            (
                "cairn_witness_conflicts_total",
                "Witness submissions answered 409.",
                &self.witness.conflicts,
            ),
            (
                "cairn_witness_failures_total",
                "Witness submissions that failed.",
                &self.witness.failures,
            ),
            (
                "cairn_oci_derivations_total",
                "OCI manifests derived from warg releases.",
                &self.oci_derivations,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.get()
            );
        }
        let _ = writeln!(
            out,
            "# HELP cairn_batch_seconds Time from taking a batch to its stored checkpoint.\n# TYPE cairn_batch_seconds histogram"
        );
        self.batch_latency
            .render(&mut out, "cairn_batch_seconds", "");
        for (name, help, value) in extra {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
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
        let text = metrics.render(&[("cairn_tree_size", "Records in the log.", 9)]);
        assert!(text.contains("cairn_sign_seconds_bucket{key=\"operator\",le=\"0.0025\"} 0\n"));
        assert!(text.contains("cairn_sign_seconds_bucket{key=\"operator\",le=\"0.005\"} 1\n"));
        assert!(text.contains("cairn_sign_seconds_bucket{key=\"operator\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("cairn_sign_seconds_count{key=\"operator\"} 1\n"));
        assert!(text.contains("cairn_sign_failures_total{key=\"note\",kind=\"transient\"} 2\n"));
        assert!(text.contains("cairn_records_sequenced_total 5\n"));
        assert!(text.contains("# TYPE cairn_tree_size gauge\ncairn_tree_size 9\n"));
        assert!(text.contains("cairn_batch_seconds_bucket{le=\"+Inf\"} 0\n"));
    }
}
