//! `cairn-oci-load`: measures an OCI Distribution registry (cairn, or CNCF
//! distribution for comparison) from the client side.
//!
//! * `blob`: pushes (POST, then one streamed PUT) and pulls (GET, streamed
//!   and hashed) blobs of a given size and reports MB/s. The client streams
//!   a repeated 1 MiB buffer, so its own memory stays constant; with
//!   `--server-pid` it also reports the server's resident memory.
//! * `manifests`: uploads one wasm layer and config per repository, then
//!   pushes many manifests with version tags from concurrent clients and
//!   reports manifests/s and latency. On cairn every such push is a
//!   metadata record and a warg release record, answered once a checkpoint
//!   covers them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures_util::StreamExt as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

const MIB: usize = 1024 * 1024;

#[derive(Debug, Parser)]
#[command(name = "cairn-oci-load", about = "Load generator for OCI registries")]
struct Args {
    /// Registry base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A bearer token (cairn: an API token allowing `publish`).
    #[arg(long, env = "CAIRN_LOAD_TOKEN")]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Push and pull blobs.
    Blob {
        /// Repository.
        #[arg(long, default_value = "bench/blobs")]
        repo: String,
        /// Blob size in MiB.
        #[arg(long, default_value_t = 1)]
        mib: usize,
        /// Blobs to push and pull.
        #[arg(long, default_value_t = 10)]
        iterations: usize,
        /// Distinguishes blobs between runs.
        #[arg(long, default_value = "r")]
        run: String,
        /// The server's process id, to report its memory.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Push manifests with version tags.
    Manifests {
        /// Repositories (packages) to spread the pushes over: `<prefix>0`…
        #[arg(long, default_value = "bench/pkg")]
        repo_prefix: String,
        /// Repositories.
        #[arg(long, default_value_t = 16)]
        repos: usize,
        /// Manifests to push.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Distinguishes versions between runs (the minor version).
        #[arg(long, default_value_t = 0)]
        run: u64,
    },
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Client {
    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http") {
            location.to_owned()
        } else {
            format!("{}{location}", self.url)
        }
    }

    /// POST then one PUT carrying `body`; returns when the registry has
    /// verified and stored the blob.
    async fn push_blob(&self, repo: &str, digest: &str, body: reqwest::Body) -> anyhow::Result<()> {
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("{}/v2/{repo}/blobs/uploads/", self.url),
            )
            .send()
            .await?;
        if response.status() != 202 {
            bail!(
                "POST uploads: {} {}",
                response.status(),
                response.text().await?
            );
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .context("no Location")?
            .to_owned();
        let separator = if location.contains('?') { '&' } else { '?' };
        let response = self
            .request(
                reqwest::Method::PUT,
                &format!("{}{separator}digest={digest}", self.absolute(&location)),
            )
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await?;
        if response.status() != 201 {
            bail!(
                "PUT upload: {} {}",
                response.status(),
                response.text().await?
            );
        }
        Ok(())
    }
}

/// A blob of `mib` MiB: a 1 MiB buffer repeated, the first chunk salted.
fn blob_chunks(mib: usize, salt: &str) -> (Vec<Bytes>, String) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let base: Vec<u8> = (0..MIB)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let base = Bytes::from(base);
    let mut first = base.to_vec();
    first[..salt.len().min(MIB)].copy_from_slice(&salt.as_bytes()[..salt.len().min(MIB)]);
    let mut chunks = vec![Bytes::from(first)];
    chunks.extend(std::iter::repeat_n(base, mib.saturating_sub(1)));
    let mut hasher = Sha256::new();
    for chunk in &chunks {
        hasher.update(chunk);
    }
    (chunks, format!("sha256:{}", hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// VmHWM and VmRSS of a process, in MiB.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib / 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

async fn blob(
    client: &Client,
    repo: &str,
    mib: usize,
    iterations: usize,
    run: &str,
    server_pid: Option<u32>,
) -> anyhow::Result<()> {
    let before = server_pid.and_then(memory);
    let (mut push, mut pull) = (Vec::new(), Vec::new());
    for i in 0..iterations {
        let (chunks, digest) = blob_chunks(mib, &format!("{run}-{i}-"));
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        let started = Instant::now();
        client
            .push_blob(repo, &digest, reqwest::Body::wrap_stream(stream))
            .await?;
        push.push(mib as f64 / started.elapsed().as_secs_f64());

        let started = Instant::now();
        let response = client
            .request(
                reqwest::Method::GET,
                &format!("{}/v2/{repo}/blobs/{digest}", client.url),
            )
            .send()
            .await?;
        if response.status() != 200 {
            bail!("GET blob: {}", response.status());
        }
        let mut body = response.bytes_stream();
        let mut hasher = Sha256::new();
        let mut received = 0usize;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            received += chunk.len();
            hasher.update(&chunk);
        }
        let seconds = started.elapsed().as_secs_f64();
        if format!("sha256:{}", hex(&hasher.finalize())) != digest || received != mib * MIB {
            bail!("pulled blob does not match");
        }
        pull.push(mib as f64 / seconds);
    }
    println!(
        "blob {mib} MiB x {iterations}: push {:.1} MiB/s, pull {:.1} MiB/s (medians)",
        median(push),
        median(pull)
    );
    if let (Some(pid), Some((_, rss_before))) = (server_pid, before)
        && let Some((peak, rss)) = memory(pid)
    {
        println!(
            "server memory: peak {peak} MiB, resident {rss_before} MiB before, {rss} MiB after"
        );
    }
    Ok(())
}

/// A small valid core module.
fn layer() -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    let name = b"cairn-oci-load";
    bytes.push(0);
    bytes.push(u8::try_from(1 + name.len()).unwrap_or(0));
    bytes.push(u8::try_from(name.len()).unwrap_or(0));
    bytes.extend_from_slice(name);
    bytes
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

async fn manifests(
    client: Arc<Client>,
    repo_prefix: &str,
    repos: usize,
    count: usize,
    concurrency: usize,
    run: u64,
) -> anyhow::Result<()> {
    let layer = layer();
    let config = serde_json::to_vec(&json!({
        "created": "2026-01-01T00:00:00Z",
        "architecture": "wasm",
        "os": "wasip1",
        "layerDigests": [digest_of(&layer)],
    }))?;
    for r in 0..repos {
        let repo = format!("{repo_prefix}{r}");
        for blob in [&layer, &config] {
            client
                .push_blob(&repo, &digest_of(blob), reqwest::Body::from(blob.clone()))
                .await?;
        }
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let next = next.clone();
            let (layer, config) = (layer.clone(), config.clone());
            let repo_prefix = repo_prefix.to_owned();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    let repo = format!("{repo_prefix}{}", i % repos);
                    let version = format!("1.{run}.{}", i / repos);
                    let manifest = serde_json::to_vec(&json!({
                        "schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": digest_of(&config), "size": config.len()},
                        "layers": [{"mediaType": "application/wasm", "digest": digest_of(&layer), "size": layer.len()}],
                        "annotations": {"org.opencontainers.image.version": version},
                    }))?;
                    let sent = Instant::now();
                    let response = client
                        .request(
                            reqwest::Method::PUT,
                            &format!("{}/v2/{repo}/manifests/{version}", client.url),
                        )
                        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                        .body(manifest)
                        .send()
                        .await?;
                    if response.status() != 201 {
                        bail!("PUT manifest: {} {}", response.status(), response.text().await?);
                    }
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    // Percentiles as a per-mille index into the sorted latencies.
    let at = |per_mille: usize| {
        latencies
            .get((latencies.len() * per_mille / 1000).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "manifests: {count} over {repos} repositories, {concurrency} clients: {:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms",
        count as f64 / seconds,
        at(500).as_secs_f64() * 1000.0,
        at(990).as_secs_f64() * 1000.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        url: args.url.trim_end_matches('/').to_owned(),
        token: args.token,
    });
    match args.command {
        Command::Blob {
            repo,
            mib,
            iterations,
            run,
            server_pid,
        } => blob(&client, &repo, mib, iterations, &run, server_pid).await,
        Command::Manifests {
            repo_prefix,
            repos,
            count,
            concurrency,
            run,
        } => manifests(client, &repo_prefix, repos, count, concurrency, run).await,
    }
}
