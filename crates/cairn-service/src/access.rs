//! Who may read what, on every door.
//!
//! A registry with anonymous reads on (the default) serves every read to
//! anyone. With `--anonymous-read false` it is private: every read needs a
//! token that allows `read` (or `publish`) and is scoped to namespaces, and
//! a caller sees only the packages, records and content of those
//! namespaces — on the warg door, the content downloads, cairn's own API
//! and the OCI door alike. What a caller may not read answers exactly like
//! what does not exist (`404`), so a private registry does not reveal which
//! packages it holds.
//!
//! The log itself (checkpoints, tiles, consistency and inclusion proofs,
//! the ledger, receipts) is made of hashes: it says that records exist,
//! never what they say. A private registry serves it to any reader, and to
//! everyone with `--public-log`, so that auditors and witnesses need no
//! read token.
//!
//! warg clients fetch content from the URLs the registry lists in
//! `content_sources` without sending their token, so on a private registry
//! those URLs carry a short-lived signature (like a presigned object-store
//! URL): the registry signs (digest, expiry) with a key kept in its store
//! after checking that the caller may read the content.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::{META_LOG_PREFIX, REGISTRY_LOG_NAME, meta_log_package};
use cairn_protocol::wire::{
    ContentSource, ContentSourcesResponse, FetchLogsRequest, FetchLogsResponse, FetchNamesRequest,
    FetchNamesResponse, PackageRecordResponse, WargError,
};
use cairn_protocol::{LogId, PackageName};
use rand::RngCore as _;

use crate::identity::{Action, Caller};
use crate::{Registry, ServiceError};

/// How long a signed content URL works.
pub const CONTENT_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// The store fact holding the content URL signing key (hex).
const CONTENT_KEY_META: &str = "content_url_key";
/// Most repositories looked at to decide whether content is readable.
const MAX_HOLDERS: u32 = 1000;

/// The namespaces a caller may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadScope {
    /// Everything (public reads, or a token for `*`).
    All,
    /// Only these namespaces.
    Namespaces(Vec<String>),
}

impl ReadScope {
    /// Whether the scope covers `namespace`.
    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            Self::All => true,
            Self::Namespaces(namespaces) => namespaces.iter().any(|n| n == namespace),
        }
    }

    /// Whether a log's listed name (a package, a metadata log, the registry
    /// log) is covered. The operator log (`None`) is readable by every
    /// reader: warg clients need it to verify anything.
    pub fn allows_log(&self, name: Option<&str>) -> bool {
        match name {
            None => true,
            Some(REGISTRY_LOG_NAME) => *self == Self::All,
            Some(name) if name.starts_with(META_LOG_PREFIX) => {
                meta_log_package(name).is_some_and(|p| self.allows(p.namespace()))
            }
            Some(name) => PackageName::new(name.to_owned())
                .map(|p| self.allows(p.namespace()))
                .unwrap_or(false),
        }
    }
}

fn needs_credentials() -> ServiceError {
    ServiceError::unauthorized(
        "this registry is private: send a token allowing `read` (Authorization: Bearer <token>)",
    )
}

fn not_readable(token: &str) -> ServiceError {
    ServiceError::forbidden(format!("token {token} does not allow reading"))
}

impl Registry {
    /// Whether every read needs credentials.
    pub fn reads_are_private(&self) -> bool {
        !self.inner.config.anonymous_read
    }

    /// What `caller` may read. Anonymous callers of a private registry are
    /// asked for credentials (401); a token that allows none of `read`,
    /// `publish` and `sign` is refused (403).
    pub fn read_scope(&self, caller: Option<&Caller>) -> Result<ReadScope, ServiceError> {
        if self.inner.config.anonymous_read {
            return Ok(ReadScope::All);
        }
        let caller = caller.ok_or_else(needs_credentials)?;
        if !caller
            .actions
            .iter()
            .any(|a| matches!(a, Action::Read | Action::Publish | Action::Sign))
        {
            return Err(not_readable(&caller.token_id));
        }
        if caller.namespaces.iter().any(|n| n == "*") {
            return Ok(ReadScope::All);
        }
        Ok(ReadScope::Namespaces(caller.namespaces.clone()))
    }

    /// The log's own views (checkpoints, tiles, proofs, ledger, receipts):
    /// public with `--public-log` or public reads, else any reader.
    pub fn authorize_log_read(&self, caller: Option<&Caller>) -> Result<(), ServiceError> {
        if self.inner.config.public_log {
            return Ok(());
        }
        self.read_scope(caller).map(|_| ())
    }

    /// A namespace's views (`/api/v1/namespaces/…`, `/api/v1/packages/…`):
    /// checked before anything is looked up, so the answer says nothing
    /// about what exists.
    pub fn authorize_namespace_read(
        &self,
        caller: Option<&Caller>,
        namespace: &str,
    ) -> Result<(), ServiceError> {
        if self.read_scope(caller)?.allows(namespace) {
            return Ok(());
        }
        Err(ServiceError::forbidden(format!(
            "this token may not read namespace `{namespace}`"
        )))
    }

    /// Refuses (as `404 log`, like an unknown log) every log of `log_ids`
    /// that the caller may not read.
    async fn authorize_logs(
        &self,
        scope: &ReadScope,
        log_ids: impl IntoIterator<Item = LogId>,
    ) -> Result<(), ServiceError> {
        if *scope == ReadScope::All {
            return Ok(());
        }
        let ids: Vec<LogId> = log_ids.into_iter().collect();
        for (log_id, name) in self.inner.store.log_names(&ids).await? {
            if !scope.allows_log(name.as_deref()) {
                return Err(WargError::LogNotFound(log_id).into());
            }
        }
        Ok(())
    }

    /// `POST v1/fetch/logs` for `caller`.
    pub async fn fetch_logs_as(
        &self,
        caller: Option<&Caller>,
        request: FetchLogsRequest,
    ) -> Result<FetchLogsResponse, ServiceError> {
        let scope = self.read_scope(caller)?;
        self.authorize_logs(&scope, request.packages.keys().copied())
            .await?;
        self.fetch_logs(request).await
    }

    /// `POST v1/fetch/names` for `caller`.
    pub async fn fetch_names_as(
        &self,
        caller: Option<&Caller>,
        request: FetchNamesRequest,
    ) -> Result<FetchNamesResponse, ServiceError> {
        let scope = self.read_scope(caller)?;
        self.authorize_logs(&scope, request.packages.iter().copied())
            .await?;
        self.fetch_names(request).await
    }

    /// `GET v1/package/{log}/record/{record}` for `caller`. A record still
    /// pending in a log with no sequenced record yet is judged by the
    /// package name it was published under.
    pub async fn get_record_as(
        &self,
        caller: Option<&Caller>,
        log_id: &str,
        record_id: &str,
    ) -> Result<PackageRecordResponse, ServiceError> {
        let scope = self.read_scope(caller)?;
        if scope != ReadScope::All
            && let Ok(id) = crate::publish::parse_log_id(log_id)
        {
            let names = self.inner.store.log_names(&[id]).await?;
            let name = match names.into_iter().next() {
                Some((_, name)) => name,
                None => match crate::publish::parse_record_id(record_id) {
                    Ok(record) => self
                        .inner
                        .store
                        .pending(&id, &record)
                        .await?
                        .and_then(|p| p.record.package_name),
                    Err(_) => None,
                },
            };
            // An unknown log is answered by `get_record` as usual.
            if name.is_some() && !scope.allows_log(name.as_deref()) {
                return Err(WargError::LogNotFound(id).into());
            }
        }
        self.get_record(log_id, record_id).await
    }

    /// Whether `scope` covers a repository that holds content `digest`.
    pub async fn content_readable(
        &self,
        scope: &ReadScope,
        digest: &Sha256Digest,
    ) -> Result<bool, ServiceError> {
        let ReadScope::Namespaces(_) = scope else {
            return Ok(true);
        };
        Ok(self
            .inner
            .store
            .blob_repositories(digest, MAX_HOLDERS)
            .await?
            .iter()
            .any(|repository| {
                repository
                    .split_once('/')
                    .is_some_and(|(namespace, _)| scope.allows(namespace))
            }))
    }

    /// `GET v1/content/{digest}` for `caller`: on a private registry the
    /// URLs carry a signature valid for [`CONTENT_URL_TTL`].
    pub async fn content_sources_as(
        &self,
        caller: Option<&Caller>,
        digest: &str,
    ) -> Result<ContentSourcesResponse, ServiceError> {
        let scope = self.read_scope(caller)?;
        let parsed = crate::publish::parse_digest(digest)?;
        if !self.content_readable(&scope, &parsed).await? {
            return Err(WargError::ContentDigestNotFound(parsed).into());
        }
        self.refuse_withheld(&parsed)?;
        self.refuse_held_content(&parsed).await?;
        let mut response = self.content_sources(digest).await?;
        if self.reads_are_private() {
            let expires = self.inner.clock.now_ms() / 1000
                + i64::try_from(CONTENT_URL_TTL.as_secs()).unwrap_or(900);
            let signature = self.sign_content_url(&parsed, expires).await?;
            for sources in response.content_sources.values_mut() {
                for ContentSource::HttpGet { url, .. } in sources.iter_mut() {
                    url.push_str(&format!("?expires={expires}&signature={signature}"));
                }
            }
        }
        Ok(response)
    }

    /// Whether a content download may proceed: content that is neither
    /// withheld nor held until signed ([`crate::hold`]), and public reads, a caller whose scope covers the content,
    /// or a valid unexpired signed URL.
    pub async fn authorize_content_download(
        &self,
        caller: Option<&Caller>,
        digest: &Sha256Digest,
        signed: Option<(i64, &str)>,
    ) -> Result<(), ServiceError> {
        self.authorize_content_reader(caller, digest, signed)
            .await?;
        self.refuse_withheld(digest)?;
        self.refuse_held_content(digest).await
    }

    async fn authorize_content_reader(
        &self,
        caller: Option<&Caller>,
        digest: &Sha256Digest,
        signed: Option<(i64, &str)>,
    ) -> Result<(), ServiceError> {
        if !self.reads_are_private() {
            return Ok(());
        }
        if let Some((expires, signature)) = signed {
            if expires < self.inner.clock.now_ms() / 1000 {
                return Err(ServiceError::forbidden(
                    "this content URL has expired; ask v1/content again",
                ));
            }
            let key = self.content_url_key().await?;
            let valid = URL_SAFE_NO_PAD.decode(signature).is_ok_and(|tag| {
                ring::hmac::verify(key, content_url_message(digest, expires).as_bytes(), &tag)
                    .is_ok()
            });
            if valid {
                return Ok(());
            }
            return Err(ServiceError::forbidden("invalid content URL signature"));
        }
        let scope = self.read_scope(caller)?;
        if self.content_readable(&scope, digest).await? {
            Ok(())
        } else {
            Err(ServiceError::not_found("content not found"))
        }
    }

    /// base64url(HMAC-SHA256(key, "cairn-content-url\n<digest>\n<expires>")).
    async fn sign_content_url(
        &self,
        digest: &Sha256Digest,
        expires: i64,
    ) -> Result<String, ServiceError> {
        let key = self.content_url_key().await?;
        let tag = ring::hmac::sign(key, content_url_message(digest, expires).as_bytes());
        Ok(URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The content URL key, created (and kept in the store, so every node
    /// and every restart signs alike) on first use.
    async fn content_url_key(&self) -> Result<&ring::hmac::Key, ServiceError> {
        self.inner
            .content_url_key
            .get_or_try_init(|| async {
                let mut fresh = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut fresh);
                let stored = self
                    .inner
                    .store
                    .set_meta_once(CONTENT_KEY_META, &hex::encode(fresh))
                    .await?;
                let bytes = hex::decode(stored).map_err(|e| {
                    ServiceError::Internal(format!("stored content URL key is unreadable: {e}"))
                })?;
                Ok::<_, ServiceError>(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes))
            })
            .await
    }
}

fn content_url_message(digest: &Sha256Digest, expires: i64) -> String {
    format!("cairn-content-url\n{digest}\n{expires}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_their_namespaces_and_logs() {
        let scope = ReadScope::Namespaces(vec!["acme".into()]);
        assert!(scope.allows("acme"));
        assert!(!scope.allows("other"));
        assert!(scope.allows_log(None));
        assert!(scope.allows_log(Some("acme:app")));
        assert!(!scope.allows_log(Some("other:app")));
        assert!(scope.allows_log(Some("cairn-meta:acme:app")));
        assert!(!scope.allows_log(Some("cairn-meta:other:app")));
        assert!(!scope.allows_log(Some(REGISTRY_LOG_NAME)));
        assert!(ReadScope::All.allows_log(Some(REGISTRY_LOG_NAME)));
        assert!(!scope.allows_log(Some("not a name")));
    }
}
