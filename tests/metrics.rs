//! The metrics listener: after some publishes, `/metrics` reports the
//! sequencer's work (batches, records per batch, records sequenced,
//! checkpoint signing), its lag and that this process sequences, in the
//! Prometheus text format and, on request, in OpenMetrics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_server::config::ServeArgs;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

/// The value of the sample `series` (name with labels, exactly as
/// exported) in a text exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

const RELEASES: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_the_sequencer_after_publishes() {
    for db in TestDatabase::all().await {
        let server = TestServer::start_with(
            db,
            ServeArgs {
                metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
                ..ServeArgs::default()
            },
        )
        .await;
        let kind = server.kind();
        let url = format!(
            "http://{}/metrics",
            server.server.as_ref().unwrap().metrics_addr.unwrap()
        );
        let key = new_key();
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client_fixed(dir.path(), &server.url);
        for n in 1..=RELEASES {
            publish_release(
                &client,
                &key,
                "test:metrics",
                &format!("{n}.0.0"),
                wasm(&format!("m{n}")),
            )
            .await
            .unwrap();
        }
        let length = log_length(&server);
        let http = reqwest::Client::new();
        // Publishes return once published; the batch's counters are
        // updated just after its checkpoint is announced.
        let text = eventually(10, "the last batch in the metrics", || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let text = http.get(&url).send().await.ok()?.text().await.ok()?;
                (sample(&text, "cairn_records_sequenced_total") >= length as f64).then_some(text)
            }
        })
        .await;

        // The existing series keep their names and meaning.
        assert!(
            sample(&text, "cairn_records_sequenced_total") >= RELEASES as f64,
            "{kind}"
        );
        assert_eq!(sample(&text, "cairn_records_rejected_total"), 0.0, "{kind}");
        let batches = sample(&text, "cairn_batches_total");
        assert!(batches >= 1.0, "{kind}: {batches}");
        assert!(sample(&text, "cairn_checkpoints_total") >= 1.0, "{kind}");
        assert_eq!(
            sample(&text, "cairn_checkpoint_size"),
            length as f64,
            "{kind}"
        );
        assert!(
            sample(&text, "cairn_sign_seconds_count{key=\"operator\"}") >= 1.0,
            "{kind}"
        );
        assert!(
            sample(&text, "cairn_sign_seconds_count{key=\"note\"}") >= 1.0,
            "{kind}"
        );
        assert_eq!(
            sample(
                &text,
                "cairn_sign_failures_total{key=\"operator\",kind=\"transient\"}"
            ),
            0.0,
            "{kind}"
        );
        // Records per batch: one observation per committed batch, and
        // together every sequenced record.
        assert_eq!(
            sample(&text, "cairn_batch_records_count"),
            batches,
            "{kind}"
        );
        assert!(
            sample(&text, "cairn_batch_records_sum")
                >= sample(&text, "cairn_records_sequenced_total"),
            "{kind}"
        );
        assert_eq!(
            sample(&text, "cairn_batch_records_bucket{le=\"+Inf\"}"),
            batches,
            "{kind}"
        );
        assert!(
            sample(&text, "cairn_batch_records_bucket{le=\"1024\"}") == batches,
            "{kind}: no batch is larger than the batch limit"
        );
        // Checkpoint signing: one observation per signed checkpoint.
        let signed = sample(&text, "cairn_checkpoint_sign_seconds_count");
        assert!(signed >= 1.0, "{kind}");
        assert!(
            sample(&text, "cairn_checkpoint_sign_seconds_sum") > 0.0,
            "{kind}"
        );
        // The sequencer runs here, and nothing waits for it.
        assert_eq!(sample(&text, "cairn_sequencer_leader"), 1.0, "{kind}");
        assert_eq!(sample(&text, "cairn_backlog_records"), 0.0, "{kind}");
        assert_eq!(sample(&text, "cairn_sequencer_lag_seconds"), 0.0, "{kind}");

        // The Prometheus text format by default; OpenMetrics on request.
        let plain = http.get(&url).send().await.unwrap();
        assert_eq!(
            plain.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let open = http
            .get(&url)
            .header(
                "accept",
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
            )
            .send()
            .await
            .unwrap();
        assert!(
            open.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text"),
            "{kind}"
        );
        let open = open.text().await.unwrap();
        assert!(open.ends_with("# EOF\n"), "{kind}: {open}");
        assert_eq!(sample(&open, "cairn_sequencer_leader"), 1.0, "{kind}");
        assert!(sample(&open, "cairn_batches_total") >= batches, "{kind}");
    }
}
