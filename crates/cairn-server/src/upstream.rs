//! Pull-through for imported namespaces: when an OCI client asks for a
//! repository of a namespace imported from an upstream OCI registry, the
//! versions it does not have yet are fetched (anonymously, following the
//! upstream's Bearer token challenge), verified and recorded in the
//! transparency log before they are served (`cairn_service::oci::mirror`).
//! If the upstream is unreachable, what was mirrored before is served.

use std::collections::HashMap;
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
use tokio::sync::Mutex;

/// How long a repository's upstream tag list is trusted before asking
/// again.
const TAGS_TTL: Duration = Duration::from_secs(60);
/// The most versions mirrored by one request.
const MAX_NEW_VERSIONS: usize = 32;

/// The pull-through client.
#[derive(Debug)]
pub struct Mirror {
    http: reqwest::Client,
    /// Repository → when its tags were last synced.
    synced: Mutex<HashMap<String, Instant>>,
    /// One sync per repository at a time.
    busy: Mutex<HashMap<String, std::sync::Arc<Mutex<()>>>>,
}

impl Default for Mirror {
    fn default() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            synced: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashMap::new()),
        }
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
    /// Brings `package` (in an imported namespace) up to date with its
    /// upstream: every version when `version` is `None` (at most
    /// [`MAX_NEW_VERSIONS`] new ones, and at most once a minute), else that
    /// version if it is missing. Failures are logged, not returned: the
    /// registry serves what it has.
    pub async fn sync(&self, registry: &Registry, package: &PackageName, version: Option<&str>) {
        let Some(upstream) = registry.upstream_of(package) else {
            return;
        };
        let repository = cairn_service::oci_repository(package);
        let lock = {
            let mut busy = self.busy.lock().await;
            busy.entry(repository.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let wanted = version.and_then(version_tag);
        if let Some(version) = &wanted {
            if registry
                .is_mirrored(package, version)
                .await
                .unwrap_or(false)
            {
                return;
            }
        } else if self
            .synced
            .lock()
            .await
            .get(&repository)
            .is_some_and(|at| at.elapsed() < TAGS_TTL)
        {
            return;
        }
        if let Err(error) = self.sync_inner(registry, package, &upstream, wanted).await {
            tracing::warn!(%package, upstream = %upstream.registry, %error, "pull-through failed");
        }
        if version.is_none() {
            self.synced.lock().await.insert(repository, Instant::now());
        }
    }

    async fn sync_inner(
        &self,
        registry: &Registry,
        package: &PackageName,
        upstream: &Upstream,
        wanted: Option<semver::Version>,
    ) -> Result<(), String> {
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
        let versions = match wanted {
            Some(version) => vec![version],
            None => {
                let response = remote.get("tags/list", "application/json").await?;
                if response.status() == StatusCode::NOT_FOUND {
                    return Ok(());
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
        for version in versions {
            self.mirror_version(registry, package, &mut remote, &version)
                .await?;
        }
        Ok(())
    }

    async fn mirror_version(
        &self,
        registry: &Registry,
        package: &PackageName,
        remote: &mut Remote<'_>,
        version: &semver::Version,
    ) -> Result<(), String> {
        let tag = version.to_string();
        let response = remote
            .get(&format!("manifests/{tag}"), IMAGE_MANIFEST)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(());
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
        Ok(())
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
