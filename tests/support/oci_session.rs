//! An OCI client session on one repository, as cosign and oras hold one:
//! a session token from the token endpoint, blob uploads, manifest pushes
//! and reads.

use serde_json::{Value, json};

use crate::{TestServer, digest_of, oci_error};

/// The OCI image index media type.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A session on one repository.
pub struct OciSession {
    http: reqwest::Client,
    base: String,
    repo: String,
    session: String,
}

pub type OciFailure = (u16, String, String);

impl OciSession {
    /// Logs in to `repo` with `token` (Basic, through the token endpoint).
    pub async fn login(server: &TestServer, token: &str, repo: &str) -> Self {
        let http = reqwest::Client::new();
        let response = http
            .get(format!(
                "{}/v2/token?service=cairn&scope=repository:{repo}:pull,push",
                server.url
            ))
            .basic_auth("cosign", Some(token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        Self {
            http,
            base: server.url.clone(),
            repo: repo.to_owned(),
            session: body["token"].as_str().unwrap().to_owned(),
        }
    }

    /// Uploads a blob (POST, then PUT with the digest).
    pub async fn blob(&self, bytes: &[u8]) -> Result<(), OciFailure> {
        let response = self
            .http
            .post(format!("{}/v2/{}/blobs/uploads/", self.base, self.repo))
            .bearer_auth(&self.session)
            .send()
            .await
            .unwrap();
        if response.status() != 202 {
            return Err(oci_error(response).await);
        }
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let response = self
            .http
            .put(format!(
                "{}{location}?digest={}",
                self.base,
                digest_of(bytes)
            ))
            .bearer_auth(&self.session)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        if response.status() != 201 {
            return Err(oci_error(response).await);
        }
        Ok(())
    }

    /// Pushes a manifest; `Ok` holds its digest and the `OCI-Subject`
    /// header.
    pub async fn manifest(
        &self,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<(String, Option<String>), OciFailure> {
        let response = self
            .http
            .put(format!(
                "{}/v2/{}/manifests/{reference}",
                self.base, self.repo
            ))
            .bearer_auth(&self.session)
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        if response.status() != 201 {
            return Err(oci_error(response).await);
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        Ok((
            header("docker-content-digest").unwrap(),
            header("oci-subject"),
        ))
    }

    /// Uploads `blobs`, then pushes the manifest.
    pub async fn push(
        &self,
        reference: &str,
        blobs: &[&[u8]],
        manifest: &Value,
    ) -> Result<(String, Option<String>), OciFailure> {
        for blob in blobs {
            self.blob(blob).await?;
        }
        let media_type = manifest["mediaType"].as_str().unwrap();
        self.manifest(
            reference,
            media_type,
            &serde_json::to_vec(manifest).unwrap(),
        )
        .await
    }

    /// `GET /v2/<repo>/<path>`: status and body.
    pub async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let response = self
            .http
            .get(format!("{}/v2/{}/{path}", self.base, self.repo))
            .bearer_auth(&self.session)
            .header(
                "accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            )
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    /// The referrers of `digest` (all pages), optionally of one type.
    pub async fn referrers(&self, digest: &str, artifact_type: Option<&str>) -> Vec<Value> {
        let filter = artifact_type.map_or_else(String::new, |t| format!("?artifactType={t}"));
        let (status, body) = self.get(&format!("referrers/{digest}{filter}")).await;
        assert_eq!(status, 200);
        let index: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(index["mediaType"], INDEX);
        index["manifests"].as_array().unwrap().clone()
    }
}

/// The descriptor of `bytes` as a blob of `media_type`.
pub fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": digest_of(bytes), "size": bytes.len() })
}
