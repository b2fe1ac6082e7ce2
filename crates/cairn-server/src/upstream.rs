//! Pull-through for imported namespaces: when an OCI client asks for a
//! repository of a namespace imported from an upstream OCI registry, the
//! versions it does not have yet are fetched (anonymously, following the
//! upstream's Bearer token challenge), verified and recorded in the
//! transparency log before they are served (`cairn_service::oci::mirror`).
//! If the upstream is unreachable, what was mirrored before is served.
//!
//! Callers are authorised before they get here (the HTTP handlers check
//! read access first), but anyone allowed to read chooses the names the
//! mirror asks its upstream about. So everything the mirror keeps is
//! bounded ([`limits`]): which repositories were synced recently and which
//! answers were negative (the upstream has no such repository or version,
//! or failed) live in capacity-bounded TTL maps, per-repository locks exist
//! only while a sync runs, at most [`MirrorLimits::max_concurrent`] syncs
//! run at once and new syncs start at a token-bucket rate. When a limit is
//! reached the request is served from what is stored, without syncing.

pub mod limits;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use cairn_crypto::Sha256Digest;
use cairn_protocol::PackageName;
use cairn_protocol::ext::meta::version_tag;
use cairn_protocol::ext::registry::Upstream;
use cairn_service::Registry;
use cairn_service::oci::mirror::parse_upstream_manifest;
use cairn_service::oci::{IMAGE_MANIFEST, MAX_MANIFEST_BYTES};
use futures_util::TryStreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use tokio::sync::{Mutex, Semaphore};

use limits::{BoundedTtlMap, TokenBucket};

/// The most versions mirrored by one request.
const MAX_NEW_VERSIONS: usize = 32;

/// How much the mirror remembers and how hard it may drive its upstreams.
#[derive(Clone, Debug)]
pub struct MirrorLimits {
    /// Entries in each of the remembered-answer maps.
    pub capacity: usize,
    /// How long a repository's upstream tag list is trusted before asking
    /// again.
    pub tags_ttl: Duration,
    /// How long a negative answer (no such repository or version, or a
    /// failure) is remembered.
    pub negative_ttl: Duration,
    /// Syncs running at once, over all repositories.
    pub max_concurrent: usize,
    /// New syncs a second.
    pub rate: u32,
    /// New syncs that may start at once after a quiet spell.
    pub burst: u32,
}

impl Default for MirrorLimits {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            tags_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(30),
            max_concurrent: 4,
            rate: 20,
            burst: 40,
        }
    }
}

/// What the mirror holds and has done, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Repositories remembered as recently synced.
    pub synced: usize,
    /// Negative answers remembered.
    pub negative: usize,
    /// Per-repository locks held (syncs running or waiting).
    pub busy: usize,
    /// Syncs started (each made at least one upstream request).
    pub syncs: u64,
    /// Syncs skipped because a concurrency or rate limit was reached.
    pub limited: u64,
}

/// What the mirror remembers: `(repository, version)` keys, the version
/// `None` for a whole-repository sync.
type Key = (String, Option<String>);

#[derive(Debug)]
struct Memory {
    synced: BoundedTtlMap<String, ()>,
    negative: BoundedTtlMap<Key, ()>,
    bucket: TokenBucket,
}

/// The pull-through client.
#[derive(Debug)]
pub struct Mirror {
    http: reqwest::Client,
    memory: std::sync::Mutex<Memory>,
    /// One sync per repository at a time; an entry lives while a sync of
    /// its repository runs or waits.
    busy: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    permits: Semaphore,
    syncs: AtomicU64,
    limited: AtomicU64,
}

impl Default for Mirror {
    fn default() -> Self {
        Self::new(MirrorLimits::default())
    }
}

/// An upstream repository and the token it wants, if any.
struct Remote<'a> {
    http: &'a reqwest::Client,
    base: String,
    repository: String,
    token: Option<String>,
}

impl Remote<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// GET with the token flow: on a 401 with a Bearer challenge, fetch an
    /// anonymous pull token from the realm and retry once.
    async fn get(&mut self, path: &str, accept: &str) -> Result<reqwest::Response, String> {
        let url = self.url(path);
        for attempt in 0..2 {
            let mut request = self.http.get(&url).header(ACCEPT, accept);
            if let Some(token) = &self.token {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            let response = request
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if response.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            self.token = Some(self.anonymous_token(&challenge).await?);
        }
        Err(format!("GET {url}: unauthorized"))
    }

    async fn anonymous_token(&self, challenge: &str) -> Result<String, String> {
        let params = challenge
            .strip_prefix("Bearer ")
            .or_else(|| challenge.strip_prefix("bearer "))
            .ok_or_else(|| format!("the upstream wants credentials: {challenge}"))?;
        let param = |name: &str| {
            params.split(',').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k == name).then(|| v.trim_matches('"').to_owned())
            })
        };
        let realm = param("realm").ok_or("the upstream's challenge has no realm")?;
        let mut query = vec![("scope", format!("repository:{}:pull", self.repository))];
        if let Some(service) = param("service") {
            query.push(("service", service));
        }
        let body: serde_json::Value = self
            .http
            .get(&realm)
            .query(&query)
            .send()
            .await
            .map_err(|e| format!("GET {realm}: {e}"))?
            .error_for_status()
            .map_err(|e| format!("GET {realm}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("GET {realm}: {e}"))?;
        body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("{realm} gave no token"))
    }
}

impl Mirror {
    /// A mirror with these limits.
    pub fn new(limits: MirrorLimits) -> Self {
        let now = Instant::now();
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            memory: std::sync::Mutex::new(Memory {
                synced: BoundedTtlMap::new(limits.capacity, limits.tags_ttl),
                negative: BoundedTtlMap::new(limits.capacity, limits.negative_ttl),
                bucket: TokenBucket::new(limits.rate, limits.burst, now),
            }),
            busy: std::sync::Mutex::new(HashMap::new()),
            permits: Semaphore::new(limits.max_concurrent.max(1)),
            syncs: AtomicU64::new(0),
            limited: AtomicU64::new(0),
        }
    }

    /// What the mirror holds and has done.
    pub fn stats(&self) -> MirrorStats {
        let memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        MirrorStats {
            synced: memory.synced.len(),
            negative: memory.negative.len(),
            busy: self
                .busy
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            syncs: self.syncs.load(Ordering::Relaxed),
            limited: self.limited.load(Ordering::Relaxed),
        }
    }

    /// Whether an answer for `key` is remembered: a recent whole sync, or a
    /// recent negative answer.
    fn remembered(&self, key: &Key) -> bool {
        let now = Instant::now();
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        memory.negative.contains(key, now)
            || (key.1.is_none() && memory.synced.contains(&key.0, now))
    }

    fn remember(&self, key: Key, found: bool) {
        let now = Instant::now();
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        match (found, key.1.is_none()) {
            (true, true) => {
                memory.negative.remove(&key);
                memory.synced.insert(key.0, (), now);
            }
            (true, false) => memory.negative.remove(&key),
            (false, _) => memory.negative.insert(key, (), now),
        }
    }

    fn take_token(&self) -> bool {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bucket
            .try_take(Instant::now())
    }

    fn repository_lock(&self, repository: &str) -> Arc<Mutex<()>> {
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(repository.to_owned())
            .or_default()
            .clone()
    }

    /// Drops `lock`, and its map entry if nobody else holds it (clones are
    /// only made under the map's lock, so the count is exact there).
    fn release_repository(&self, repository: &str, lock: Arc<Mutex<()>>) {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        if Arc::strong_count(&lock) <= 2 {
            busy.remove(repository);
        }
        drop(lock);
    }

    /// Brings `package` (in an imported namespace) up to date with its
    /// upstream: every version when `version` is `None` (at most
    /// [`MAX_NEW_VERSIONS`] new ones, and at most once per
    /// [`MirrorLimits::tags_ttl`]), else that version if it is missing.
    /// Negative answers are remembered for [`MirrorLimits::negative_ttl`];
    /// when a concurrency or rate limit is reached nothing is fetched.
    /// Failures are logged, not returned: the registry serves what it has.
    ///
    /// The caller MUST have checked that whoever asks may read `package`.
    pub async fn sync(&self, registry: &Registry, package: &PackageName, version: Option<&str>) {
        let Some(upstream) = registry.upstream_of(package) else {
            return;
        };
        let repository = cairn_service::oci_repository(package);
        let wanted = version.and_then(version_tag);
        let key: Key = (repository.clone(), wanted.as_ref().map(ToString::to_string));
        let mirrored = async |wanted: &Option<semver::Version>| match wanted {
            Some(version) => registry
                .is_mirrored(package, version)
                .await
                .unwrap_or(false),
            None => false,
        };
        if mirrored(&wanted).await || self.remembered(&key) {
            return;
        }
        let Ok(_permit) = self.permits.try_acquire() else {
            self.limited.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%package, "pull-through skipped: too many syncs running");
            return;
        };
        if !self.take_token() {
            self.limited.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%package, "pull-through skipped: upstream rate limit");
            return;
        }
        let lock = self.repository_lock(&repository);
        let guard = lock.lock().await;
        // Another request may have synced while this one waited.
        if !(mirrored(&wanted).await || self.remembered(&key)) {
            self.syncs.fetch_add(1, Ordering::Relaxed);
            let found = match self.sync_inner(registry, package, &upstream, wanted).await {
                Ok(found) => found,
                Err(error) => {
                    tracing::warn!(%package, upstream = %upstream.registry, %error, "pull-through failed");
                    false
                }
            };
            self.remember(key, found);
        }
        drop(guard);
        self.release_repository(&repository, lock);
    }

    async fn sync_inner(
        &self,
        registry: &Registry,
        package: &PackageName,
        upstream: &Upstream,
        wanted: Option<semver::Version>,
    ) -> Result<bool, String> {
        let mut remote = Remote {
            http: &self.http,
            base: upstream.registry.trim_end_matches('/').to_owned(),
            repository: format!(
                "{}{}",
                upstream.prefix,
                cairn_service::oci_repository(package)
            ),
            token: None,
        };
        let whole = wanted.is_none();
        let versions = match wanted {
            Some(version) => vec![version],
            None => {
                let response = remote.get("tags/list", "application/json").await?;
                if response.status() == StatusCode::NOT_FOUND {
                    return Ok(false);
                }
                let body: serde_json::Value = response
                    .error_for_status()
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let mut versions: Vec<semver::Version> = body["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().and_then(version_tag))
                    .collect();
                versions.sort();
                let mut missing = Vec::new();
                for version in versions {
                    if !registry
                        .is_mirrored(package, &version)
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        missing.push(version);
                    }
                }
                missing.into_iter().rev().take(MAX_NEW_VERSIONS).collect()
            }
        };
        // A whole sync found the repository; one version is found if its
        // manifest was.
        let mut found = true;
        for version in versions {
            let got = self
                .mirror_version(registry, package, &mut remote, &version)
                .await?;
            found &= got || whole;
        }
        Ok(found)
    }

    async fn mirror_version(
        &self,
        registry: &Registry,
        package: &PackageName,
        remote: &mut Remote<'_>,
        version: &semver::Version,
    ) -> Result<bool, String> {
        let tag = version.to_string();
        let response = remote
            .get(&format!("manifests/{tag}"), IMAGE_MANIFEST)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let response = response.error_for_status().map_err(|e| e.to_string())?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_BYTES as u64)
        {
            return Err(format!("the upstream manifest of {tag} is too large"));
        }
        let manifest = response.bytes().await.map_err(|e| e.to_string())?;
        let parsed = parse_upstream_manifest(&manifest)?;
        for (digest, _) in [parsed.config, parsed.layer] {
            self.fetch_blob(registry, package, remote, digest).await?;
        }
        let upstream_ref = format!(
            "{}/{}:{tag}@{}",
            remote.base, remote.repository, parsed.digest
        );
        registry
            .record_mirror(package, version, upstream_ref, manifest)
            .await
            .map_err(|e| e.message)?;
        tracing::info!(%package, %version, "mirrored from upstream");
        Ok(true)
    }

    async fn fetch_blob(
        &self,
        registry: &Registry,
        package: &PackageName,
        remote: &mut Remote<'_>,
        digest: Sha256Digest,
    ) -> Result<(), String> {
        let response = remote
            .get(&format!("blobs/{digest}"), "application/octet-stream")
            .await?
            .error_for_status()
            .map_err(|e| e.to_string())?;
        let body = response
            .bytes_stream()
            .map_err(|e| std::io::Error::other(e.to_string()));
        registry
            .store_mirrored_blob(package, digest, Box::pin(body))
            .await
            .map_err(|e| e.message)?;
        Ok(())
    }
}
