//! `cairn-load`: publishes pre-signed records to a warg v1 registry from
//! many concurrent clients and reports throughput and the latency from the
//! first request of a publish to the moment the registry reports it
//! `published` (covered by a checkpoint).
//!
//! Records are signed before the clock starts, so the figures measure the
//! registry, not the load generator. Each package gets one record: `init`
//! plus a release. Content is shared by default (so a publish is one record
//! and no upload); `--unique-content` gives each release its own content,
//! which the client uploads.
//!
//! Given several `--url`s (the nodes of a cluster), it is also the load
//! balancer: client `i` sends its publishes to node `i mod n`, and only
//! when that node answers 503 or cannot be reached, to the next node (a
//! whole round of refusals waits `--poll-ms`); it reports how many
//! publishes each node accepted. A record's state is asked of the node
//! that accepted it (of the next one if that node is gone).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_crypto::{EcdsaPrivateKey, Sha256Digest};
use cairn_protocol::record::{PackageEntry, PackageRecord};
use cairn_protocol::{Envelope, LogId, PackageName, Timestamp};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(name = "cairn-load", about = "Load generator for warg v1 registries")]
struct Args {
    /// Registry base URL; several (comma-separated or repeated) for the
    /// nodes of a cluster.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    url: Vec<String>,
    /// Namespace to publish in (must be defined on the registry).
    #[arg(long, default_value = "load")]
    namespace: String,
    /// Packages (= publishes) to make.
    #[arg(long, default_value_t = 10_000)]
    packages: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Give every release its own content (the client uploads it).
    #[arg(long)]
    unique_content: bool,
    /// Longest a client waits before re-checking a record's state, in
    /// milliseconds (it also re-checks whenever a new checkpoint appears).
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Distinguishes package names between runs on one registry.
    #[arg(long, default_value = "r")]
    run: String,
    /// Content size in bytes.
    #[arg(long, default_value_t = 1024)]
    content_bytes: usize,
}

struct Job {
    log_path: String,
    body: Vec<u8>,
    content: Option<Vec<u8>>,
}

/// A valid WebAssembly module of about `size` bytes, distinct for each `i`:
/// the module header and one custom section holding the filler (registries
/// refuse content that claims to be WebAssembly and is not).
fn content(i: usize, size: usize) -> Vec<u8> {
    let mut payload = vec![1u8];
    payload.extend_from_slice(b"x");
    payload.extend(std::iter::repeat_n(
        u8::try_from(i % 251).unwrap_or(0),
        size.saturating_sub(8 + 8 + 8),
    ));
    payload.extend_from_slice(&(i as u64).to_le_bytes());
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.push(0);
    let mut length = payload.len();
    loop {
        let byte = u8::try_from(length & 0x7f).unwrap_or(0);
        length >>= 7;
        if length == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&payload);
    bytes
}

fn prepare(args: &Args) -> anyhow::Result<(Vec<Job>, Vec<u8>)> {
    let shared = content(usize::MAX, args.content_bytes);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = args.packages.div_ceil(threads);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let timestamp = Timestamp::from_unix(now.as_secs(), 0).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Runs prepared within one second still get distinct records.
    let run_salt = args.run.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    }) % 1_000_000_000;
    let jobs = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let shared = &shared;
                scope.spawn(move || -> anyhow::Result<Vec<Job>> {
                    let mut seed = [0u8; 32];
                    seed[..8].copy_from_slice(&(t as u64 + 1).to_le_bytes());
                    seed[31] = 1;
                    let key = EcdsaPrivateKey::from_scalar_bytes(&seed).map_err(|e| anyhow::anyhow!("{e}"))?;
                    let mut jobs = Vec::new();
                    for i in t * chunk..((t + 1) * chunk).min(args.packages) {
                        let name = format!("{}:{}-p{i}", args.namespace, args.run);
                        let name = PackageName::new(name).map_err(|e| anyhow::anyhow!("{e}"))?;
                        let bytes = if args.unique_content { content(i, args.content_bytes) } else { shared.clone() };
                        // Distinct records per package and run (identical records
                        // in two logs are valid, but some registries refuse them).
                        let record = PackageRecord {
                            prev: None,
                            version: 0,
                            timestamp: Timestamp {
                                seconds: timestamp.seconds,
                                nanos: u32::try_from((run_salt + i) % 1_000_000_000).unwrap_or(0),
                            },
                            entries: vec![
                                PackageEntry::Init { key: key.public_key() },
                                PackageEntry::Release {
                                    version: "1.0.0".parse()?,
                                    content: Sha256Digest::of(&bytes),
                                },
                            ],
                        };
                        let envelope = Envelope::sign(record, &key);
                        jobs.push(Job {
                            log_path: format!("v1/package/{}/record", LogId::package(&name)),
                            body: json!({"packageName": name.to_string(), "record": envelope.to_body()})
                                .to_string()
                                .into_bytes(),
                            content: args.unique_content.then_some(bytes),
                        });
                    }
                    Ok(jobs)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("signing thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<Vec<Job>>>>()
    })?;
    Ok((jobs.into_iter().flatten().collect(), shared))
}

struct Outcome {
    latencies: Vec<Duration>,
    retries: usize,
    /// Publishes accepted, per node.
    accepted: Vec<usize>,
}

impl Outcome {
    fn new(nodes: usize) -> Self {
        Self {
            latencies: Vec::new(),
            retries: 0,
            accepted: vec![0; nodes],
        }
    }
}

/// How long a publish keeps being refused (503, or no node reachable)
/// before the load generator gives up.
const GIVE_UP: Duration = Duration::from_secs(120);

async fn upload(
    http: &reqwest::Client,
    base: &str,
    response: &Value,
    bytes: &[u8],
) -> anyhow::Result<()> {
    if let Some(missing) = response["missingContent"].as_object() {
        for (_, how) in missing {
            let endpoint = &how["upload"][0];
            let url = endpoint["url"].as_str().context("upload url")?;
            let url = if url.starts_with("http") {
                url.to_owned()
            } else {
                format!("{base}{}", url.trim_start_matches('/'))
            };
            let method = if endpoint["method"] == "PUT" {
                reqwest::Method::PUT
            } else {
                reqwest::Method::POST
            };
            let status = http
                .request(method, url)
                .body(bytes.to_vec())
                .send()
                .await?
                .status();
            if !status.is_success() {
                bail!("upload answered {status}");
            }
        }
    }
    Ok(())
}

/// The nodes, and the one a client sends its publishes to first.
struct Route<'a> {
    bases: &'a [String],
    preferred: usize,
}

async fn publish(
    http: &reqwest::Client,
    route: Route<'_>,
    job: &Job,
    shared: &[u8],
    poll: Duration,
    checkpoints: &mut tokio::sync::watch::Receiver<u64>,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let Route { bases, preferred } = route;
    let nodes = bases.len();
    let mut attempt = 0;
    let (node, response) = loop {
        let node = (preferred + attempt) % nodes;
        let sent = http
            .post(format!("{}{}", bases[node], job.log_path))
            .header("content-type", "application/json")
            .body(job.body.clone())
            .send()
            .await;
        let status = sent.as_ref().map(reqwest::Response::status).ok();
        if status.is_none_or(|s| s.as_u16() == 503) || status.is_some_and(|s| s.as_u16() == 409) {
            if start.elapsed() > GIVE_UP {
                bail!("publish refused for {GIVE_UP:?}: {:?}", status);
            }
            outcome.retries += 1;
            // 409: this log has a pending record; wait at the same node.
            // 503 or unreachable: the next node, waiting after a full round.
            if status.is_some_and(|s| s.as_u16() == 409) {
                tokio::time::sleep(poll).await;
            } else {
                attempt += 1;
                if attempt % nodes == 0 {
                    tokio::time::sleep(poll).await;
                }
            }
            continue;
        }
        let response = sent?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("publish answered {status}: {body}");
        }
        break (node, body);
    };
    outcome.accepted[node] += 1;
    upload(
        http,
        &bases[node],
        &response,
        job.content.as_deref().unwrap_or(shared),
    )
    .await?;
    let record_id = response["recordId"]
        .as_str()
        .context("record id")?
        .to_owned();
    let mut state = response["state"].as_str().unwrap_or_default().to_owned();
    // A record can only become `published` when a new checkpoint appears, so
    // its state is checked once per new checkpoint (or every `poll` at most).
    checkpoints.borrow_and_update();
    let mut asked = node;
    while state != "published" {
        if state == "rejected" {
            bail!("record rejected");
        }
        let _ = tokio::time::timeout(poll, checkpoints.changed()).await;
        let status_url = format!("{}{}/{record_id}", bases[asked], job.log_path);
        match http.get(&status_url).send().await {
            Ok(answer) => {
                let body: Value = answer.json().await?;
                state = body["state"].as_str().unwrap_or_default().to_owned();
            }
            Err(e) if start.elapsed() > GIVE_UP => return Err(e.into()),
            // That node is gone: ask the next.
            Err(_) => asked = (asked + 1) % nodes,
        }
    }
    outcome.latencies.push(start.elapsed());
    Ok(())
}

/// Polls the (in-memory, cheap) checkpoint every 2 ms and announces each new length.
/// Several nodes: asks the first, and the next while one does not answer.
fn watch_checkpoints(
    http: reqwest::Client,
    bases: Vec<String>,
) -> tokio::sync::watch::Receiver<u64> {
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        let mut node = 0;
        loop {
            let base = &bases[node];
            if let Ok(response) = http.get(format!("{base}v1/fetch/checkpoint")).send().await
                && let Ok(body) = response.json::<Value>().await
                && let Some(length) = body["contents"]["logLength"].as_u64()
            {
                tx.send_if_modified(|current| {
                    let changed = *current < length;
                    *current = (*current).max(length);
                    changed
                });
            } else {
                node = (node + 1) % bases.len();
            }
            if tx.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    rx
}

/// The `per_mille`/1000 quantile of sorted samples.
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) * per_mille / 1000).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bases: Vec<String> = args
        .url
        .iter()
        .map(|url| format!("{}/", url.trim_end_matches('/')))
        .collect();
    let nodes = bases.len();
    if nodes == 0 {
        bail!("no --url");
    }
    let t = Instant::now();
    let (jobs, shared) = prepare(&args)?;
    eprintln!("signed {} records in {:.1?}", jobs.len(), t.elapsed());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;

    // Warm up: store the shared content once so the measured publishes are records only.
    if !args.unique_content {
        let mut warm = args_for_warmup(&args);
        warm.packages = 1;
        let (mut warm_jobs, _) = prepare(&warm)?;
        if let Some(job) = warm_jobs.pop() {
            let mut outcome = Outcome::new(nodes);
            let mut checkpoints = watch_checkpoints(http.clone(), bases.clone());
            publish(
                &http,
                Route {
                    bases: &bases,
                    preferred: 0,
                },
                &job,
                &shared,
                Duration::from_millis(args.poll_ms),
                &mut checkpoints,
                &mut outcome,
            )
            .await?;
        }
    }

    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new(shared);
    let checkpoints = watch_checkpoints(http.clone(), bases.clone());
    let start = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|worker| {
            let (jobs, next, http, bases, shared) = (
                jobs.clone(),
                next.clone(),
                http.clone(),
                bases.clone(),
                shared.clone(),
            );
            let poll = Duration::from_millis(args.poll_ms);
            let mut checkpoints = checkpoints.clone();
            tokio::spawn(async move {
                let mut outcome = Outcome::new(bases.len());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    publish(
                        &http,
                        Route {
                            bases: &bases,
                            preferred: worker % bases.len(),
                        },
                        job,
                        &shared,
                        poll,
                        &mut checkpoints,
                        &mut outcome,
                    )
                    .await?;
                }
                anyhow::Ok(outcome)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut retries = 0;
    let mut accepted = vec![0; nodes];
    for worker in workers {
        let outcome = worker.await??;
        latencies.extend(outcome.latencies);
        retries += outcome.retries;
        for (total, n) in accepted.iter_mut().zip(outcome.accepted) {
            *total += n;
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    println!(
        "{} publishes, {} clients, {}: {:.1?} = {:.1} publishes/s; publish→published p50 {:.1?}, p90 {:.1?}, p99 {:.1?}, max {:.1?}; {} retries (409/503/unreachable){}",
        latencies.len(),
        args.concurrency,
        if args.unique_content {
            "unique content"
        } else {
            "shared content"
        },
        elapsed,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 500),
        percentile(&latencies, 900),
        percentile(&latencies, 990),
        latencies.last().copied().unwrap_or_default(),
        retries,
        if nodes > 1 {
            format!("; accepted per node {accepted:?}")
        } else {
            String::new()
        },
    );
    Ok(())
}

fn args_for_warmup(args: &Args) -> Args {
    Args {
        url: args.url.clone(),
        namespace: args.namespace.clone(),
        packages: 1,
        concurrency: 1,
        unique_content: false,
        poll_ms: args.poll_ms,
        run: format!("{}-warmup", args.run),
        content_bytes: args.content_bytes,
    }
}
