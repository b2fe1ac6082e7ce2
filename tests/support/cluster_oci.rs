//! OCI pushes through a cluster's nodes: a manifest and its blobs, as a
//! registry client sends them ([`PreparedPush`], [`oci_push_at`]), at one
//! node or through the [`Balancer`] (answered 503 or unreachable at one
//! node, retried at the next), counted per node.

use std::sync::atomic::Ordering;

use super::{Balancer, WriteFailure};
use crate::{MANIFEST, wasm_config, wasm_manifest};

/// An OCI push a node answered 201.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub repo: String,
    pub tag: String,
    pub digest: String,
    pub layer: Vec<u8>,
    pub node: usize,
}

impl Balancer {
    /// Pushes `layer` as `repo:tag` over OCI through the balancer (each
    /// attempt logs in at its node). `Ok` once a node answered 201.
    pub async fn push(
        &self,
        preferred: usize,
        token: &str,
        repo: &str,
        tag: &str,
        layer: Vec<u8>,
    ) -> Result<Pushed, WriteFailure> {
        let (node, digest) = self
            .route(preferred, |node| {
                oci_push_at(&self.http, &self.urls[node], token, repo, tag, &layer)
            })
            .await?;
        self.pushes[node].fetch_add(1, Ordering::SeqCst);
        Ok(Pushed {
            repo: repo.to_owned(),
            tag: tag.to_owned(),
            digest,
            layer,
            node,
        })
    }
}

/// `Ok` for the expected status; otherwise the failure.
async fn expect(
    sent: reqwest::Result<reqwest::Response>,
    expected: u16,
) -> Result<reqwest::Response, WriteFailure> {
    let response = sent.map_err(|e| WriteFailure {
        status: None,
        message: e.to_string(),
    })?;
    let status = response.status().as_u16();
    if status == expected {
        return Ok(response);
    }
    Err(WriteFailure {
        status: Some(status),
        message: response.text().await.unwrap_or_default(),
    })
}

/// An OCI push prepared at one node: logged in, its layer and config
/// uploaded; the manifest not pushed yet.
pub struct PreparedPush {
    base: String,
    repo: String,
    session: String,
    layer: Vec<u8>,
    config: Vec<u8>,
}

impl PreparedPush {
    /// Logs in to `repo` at `base` with `token` and uploads `layer` and its
    /// wasm config.
    pub async fn upload(
        http: &reqwest::Client,
        base: &str,
        token: &str,
        repo: &str,
        layer: &[u8],
    ) -> Result<Self, WriteFailure> {
        let response = expect(
            http.get(format!(
                "{base}/v2/token?service=cairn&scope=repository:{repo}:pull,push"
            ))
            .basic_auth("user", Some(token))
            .send()
            .await,
            200,
        )
        .await?;
        let body: serde_json::Value = response.json().await.map_err(|e| WriteFailure {
            status: None,
            message: e.to_string(),
        })?;
        let session = body["token"].as_str().unwrap().to_owned();
        let config = wasm_config(layer);
        for blob in [layer, config.as_slice()] {
            let response = expect(
                http.post(format!("{base}/v2/{repo}/blobs/uploads/"))
                    .bearer_auth(&session)
                    .send()
                    .await,
                202,
            )
            .await?;
            let location = response.headers()["location"].to_str().unwrap().to_owned();
            expect(
                http.put(format!(
                    "{base}{location}?digest={}",
                    crate::digest_of(blob)
                ))
                .bearer_auth(&session)
                .body(blob.to_vec())
                .send()
                .await,
                201,
            )
            .await?;
        }
        Ok(Self {
            base: base.to_owned(),
            repo: repo.to_owned(),
            session,
            layer: layer.to_vec(),
            config,
        })
    }

    /// Pushes the manifest as `tag`: `Ok` is its digest (answered 201).
    pub async fn manifest(
        &self,
        http: &reqwest::Client,
        tag: &str,
    ) -> Result<String, WriteFailure> {
        let response = expect(
            http.put(format!("{}/v2/{}/manifests/{tag}", self.base, self.repo))
                .bearer_auth(&self.session)
                .header("content-type", MANIFEST)
                .body(wasm_manifest(&self.layer, &self.config))
                .send()
                .await,
            201,
        )
        .await?;
        Ok(response.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned())
    }
}

/// An OCI push of `layer` (and its wasm config) as `repo:tag` at `base`,
/// logged in with `token`: `Ok` is the manifest's digest.
pub async fn oci_push_at(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    repo: &str,
    tag: &str,
    layer: &[u8],
) -> Result<String, WriteFailure> {
    PreparedPush::upload(http, base, token, repo, layer)
        .await?
        .manifest(http, tag)
        .await
}
