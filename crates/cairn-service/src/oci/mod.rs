//! The OCI Distribution API (v1.1) front door, used by `wkg` 0.16+ and any
//! OCI client.
//!
//! A repository `<namespace>/<name>` is the package `namespace:name`. What
//! makes cairn different from a plain OCI registry is that nothing becomes
//! visible without a record in the transparency log: every manifest push is
//! a `manifest` entry in the package's metadata log (with the identity that
//! pushed it), a WebAssembly artifact pushed with a version tag is also a
//! warg `release` record in the package log (signed by the registry's
//! publisher key, attributed to that identity), and a tag that moves is a
//! `tag` entry. Manifests and tags become visible in the same transaction
//! that sequences their records. Version tags are immutable.
//!
//! Releases published over warg are served to OCI clients too, as a
//! deterministic manifest and config derived from the logged release
//! ([`derive`]).
//!
//! Blobs stream into the content-addressed blob store with their digest
//! verified before they are linked to a repository; uploads are resumable
//! sessions that survive restarts.

pub mod access;
mod blobs;
pub mod derive;
mod digests;
pub mod listing;
pub(crate) mod manifests;
pub mod mirror;
mod policy;
mod read_access;
pub mod signatures;

use cairn_crypto::{Sha256Digest, Sha512Digest};
use cairn_protocol::PackageName;

pub use blobs::{StartedUpload, UploadStart};
pub use cairn_protocol::oci::OciDigest;
pub(crate) use manifests::group::BuiltPushes;
pub use manifests::{ManifestBody, ManifestRecord, PushedManifest, TagPage};
pub use policy::check_content;

use crate::identity::{Action, Caller};
use crate::{ClientError, Registry, ServiceError};

/// The largest manifest accepted.
// SPEC: OCI distribution-spec — registries SHOULD accept manifests of at
// least 4 MB and MAY refuse larger ones with 413.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// The largest config blob read to check a client's claims.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// OCI image manifest media type.
pub const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The wasm artifact config media type written by wkg.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The wasm layer media type written by wkg.
pub const WASM_LAYER: &str = "application/wasm";
/// Legacy wasm config media types (read, never written).
pub const LEGACY_WASM_CONFIGS: &[&str] = &["application/vnd.wasm.config.v1+json"];
/// Legacy wasm layer media types (read, never written).
pub const LEGACY_WASM_LAYERS: &[&str] = &[
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];
/// The artifact type of the referrers cairn attaches to yanked releases.
pub const YANK_ARTIFACT_TYPE: &str = "application/vnd.cairn.yank.v1+json";

/// The error codes of the OCI distribution spec (the closed list clients
/// understand), plus `UNKNOWN` for server faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OciCode {
    /// BLOB_UNKNOWN.
    BlobUnknown,
    /// BLOB_UPLOAD_INVALID.
    BlobUploadInvalid,
    /// BLOB_UPLOAD_UNKNOWN.
    BlobUploadUnknown,
    /// DIGEST_INVALID.
    DigestInvalid,
    /// MANIFEST_BLOB_UNKNOWN.
    ManifestBlobUnknown,
    /// MANIFEST_INVALID.
    ManifestInvalid,
    /// MANIFEST_UNKNOWN.
    ManifestUnknown,
    /// NAME_INVALID.
    NameInvalid,
    /// NAME_UNKNOWN.
    NameUnknown,
    /// SIZE_INVALID.
    SizeInvalid,
    /// TAG_INVALID.
    TagInvalid,
    /// UNAUTHORIZED.
    Unauthorized,
    /// DENIED.
    Denied,
    /// UNSUPPORTED.
    Unsupported,
    /// TOOMANYREQUESTS.
    TooManyRequests,
    /// UNKNOWN (server faults only).
    Unknown,
}

impl OciCode {
    /// The code string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Self::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::SizeInvalid => "SIZE_INVALID",
            Self::TagInvalid => "TAG_INVALID",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported => "UNSUPPORTED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// The usual HTTP status (CNCF distribution's).
    pub fn status(self) -> u16 {
        match self {
            Self::BlobUnknown
            | Self::BlobUploadUnknown
            | Self::ManifestUnknown
            | Self::NameUnknown => 404,
            Self::BlobUploadInvalid
            | Self::DigestInvalid
            | Self::ManifestBlobUnknown
            | Self::ManifestInvalid
            | Self::NameInvalid
            | Self::SizeInvalid
            | Self::TagInvalid => 400,
            Self::Unauthorized => 401,
            Self::Denied => 403,
            Self::Unsupported => 405,
            Self::TooManyRequests => 429,
            Self::Unknown => 500,
        }
    }
}

/// An OCI error: a code, a message, and the status to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciError {
    /// The code.
    pub code: OciCode,
    /// What went wrong (safe to show).
    pub message: String,
    /// The HTTP status (usually `code.status()`).
    pub status: u16,
    /// For 401: the repository scope to put in the challenge.
    pub scope: Option<String>,
    /// For 503: seconds to wait.
    pub retry_after: Option<u32>,
}

impl OciError {
    /// An error with the code's usual status.
    pub fn new(code: OciCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: code.status(),
            scope: None,
            retry_after: None,
        }
    }

    /// The same error with another status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// 401 asking for credentials for `scope` (`repository:ns/name:pull`).
    pub fn unauthorized(scope: String) -> Self {
        Self {
            scope: Some(scope),
            ..Self::new(OciCode::Unauthorized, "authentication required")
        }
    }
}

impl From<ServiceError> for OciError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Client { kind, message } => {
                let code = match kind {
                    ClientError::Unauthorized => OciCode::Unauthorized,
                    ClientError::Forbidden => OciCode::Denied,
                    ClientError::NotFound => OciCode::NameUnknown,
                    ClientError::Conflict => OciCode::Denied,
                    ClientError::TooLarge => OciCode::SizeInvalid,
                    ClientError::BadRequest | ClientError::Refused => OciCode::ManifestInvalid,
                    ClientError::Withheld => OciCode::Denied,
                };
                Self::new(code, message).with_status(kind.status())
            }
            ServiceError::Warg(error) => {
                let status = error.status();
                let message = match error.body().get("message").and_then(|m| m.as_str()) {
                    Some(m) => m.to_owned(),
                    None => format!("{error:?}"),
                };
                let code = match status {
                    401 => OciCode::Unauthorized,
                    403 => OciCode::Denied,
                    404 => OciCode::NameUnknown,
                    413 => OciCode::SizeInvalid,
                    _ => OciCode::ManifestInvalid,
                };
                Self::new(code, message).with_status(status)
            }
            ServiceError::Unavailable {
                retry_after,
                reason,
            } => Self {
                retry_after: Some(retry_after),
                ..Self::new(OciCode::TooManyRequests, reason).with_status(503)
            },
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, "OCI request failed");
                Self::new(OciCode::Unknown, "internal server error")
            }
        }
    }
}

impl From<cairn_store::StoreError> for OciError {
    fn from(error: cairn_store::StoreError) -> Self {
        ServiceError::from(error).into()
    }
}

impl From<cairn_blob::BlobError> for OciError {
    fn from(error: cairn_blob::BlobError) -> Self {
        use cairn_blob::BlobError;
        match error {
            BlobError::DigestMismatch { expected, found } => Self::new(
                OciCode::DigestInvalid,
                format!("the content hashes to {found}, not {expected}"),
            ),
            BlobError::Sha512Mismatch { expected, found } => Self::new(
                OciCode::DigestInvalid,
                format!("the content hashes to {found}, not {expected}"),
            ),
            BlobError::TooLarge { limit } => Self::new(
                OciCode::SizeInvalid,
                format!("the content exceeds the limit of {limit} bytes"),
            )
            .with_status(413),
            BlobError::OffsetMismatch { size, offset } => Self::new(
                OciCode::BlobUploadInvalid,
                format!("the upload has {size} bytes; a chunk must start there, not at {offset}"),
            )
            .with_status(416),
            BlobError::UnknownUpload => {
                Self::new(OciCode::BlobUploadUnknown, "unknown upload session")
            }
            BlobError::Body(reason) => Self::new(
                OciCode::BlobUploadInvalid,
                format!("reading the content failed: {reason}"),
            ),
            other => ServiceError::from(other).into(),
        }
    }
}

/// A repository: `namespace/name`, the package `namespace:name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    /// `namespace/name`.
    pub name: String,
    /// The package.
    pub package: PackageName,
}

impl Repository {
    /// Parses a repository name. Only `<namespace>/<name>` with warg
    /// package name rules is a repository of this registry.
    pub fn parse(name: &str) -> Result<Self, OciError> {
        let invalid = || {
            OciError::new(
                OciCode::NameInvalid,
                format!(
                    "`{}` is not a repository of this registry: use <namespace>/<name> in lowercase kebab case",
                    name.chars().take(100).collect::<String>()
                ),
            )
        };
        let (namespace, package) = name.split_once('/').ok_or_else(invalid)?;
        let package = PackageName::new(format!("{namespace}:{package}")).map_err(|_| invalid())?;
        Ok(Self {
            name: name.to_owned(),
            package,
        })
    }

    /// `repository:<name>:<actions>`, for challenges.
    pub fn scope(&self, actions: &str) -> String {
        format!("repository:{}:{actions}", self.name)
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A tag.
    Tag(String),
    /// A digest.
    Digest(Sha256Digest),
    /// A SHA-512 digest: an alias of the manifest's SHA-256, checked
    /// against the bytes on a push.
    Sha512(Sha512Digest),
}

impl Reference {
    /// Parses `<tag>`, `sha256:<hex>` or `sha512:<hex>`.
    pub fn parse(reference: &str) -> Result<Self, OciError> {
        if reference.contains(':') {
            return parse_oci_digest(reference).map(|digest| match digest {
                OciDigest::Sha256(digest) => Self::Digest(digest),
                OciDigest::Sha512(digest) => Self::Sha512(digest),
            });
        }
        if !cairn_protocol::ext::meta::is_valid_tag(reference) {
            return Err(OciError::new(
                OciCode::TagInvalid,
                format!(
                    "invalid tag `{}`",
                    reference.chars().take(130).collect::<String>()
                ),
            ));
        }
        Ok(Self::Tag(reference.to_owned()))
    }
}

/// Parses an OCI digest (`sha256:<64 lowercase hex>`).
pub fn parse_digest(digest: &str) -> Result<Sha256Digest, OciError> {
    digest.parse().map_err(|_| {
        OciError::new(
            OciCode::DigestInvalid,
            format!(
                "invalid digest `{}`: only sha256:<64 lowercase hex> is supported",
                digest.chars().take(80).collect::<String>()
            ),
        )
    })
}

/// Parses an OCI digest of either supported algorithm
/// (`sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`); another
/// algorithm, or a malformed digest, is `400 DIGEST_INVALID`.
// SPEC: OCI distribution-spec — a digest the registry cannot verify is
// answered with DIGEST_INVALID.
pub fn parse_oci_digest(digest: &str) -> Result<OciDigest, OciError> {
    cairn_protocol::oci::parse_oci_digest(digest)
        .map_err(|e| OciError::new(OciCode::DigestInvalid, e.message))
}

impl Registry {
    /// May `caller` read `repository`? Anonymous callers may when anonymous
    /// reads are on; otherwise they are asked for credentials (401).
    pub(crate) fn oci_may_read(
        &self,
        caller: Option<&Caller>,
        repository: &Repository,
    ) -> Result<(), OciError> {
        let namespace = repository.package.namespace();
        match caller {
            None if self.inner.config.anonymous_read => Ok(()),
            None => Err(OciError::unauthorized(repository.scope("pull"))),
            Some(caller)
                if self.inner.config.anonymous_read
                    || caller.allows(Action::Read, Some(namespace))
                    || caller.allows(Action::Sign, Some(namespace)) =>
            {
                Ok(())
            }
            Some(caller) => Err(OciError::new(
                OciCode::Denied,
                format!(
                    "token {} may not read `{}`",
                    caller.token_id, repository.name
                ),
            )),
        }
    }

    /// May `caller` push anything to `repository`? Anonymous callers are
    /// asked for credentials (401); a token must allow publishing in the
    /// namespace, and its identity must be an owner or publisher there.
    pub(crate) fn oci_may_push<'c>(
        &self,
        caller: Option<&'c Caller>,
        repository: &Repository,
    ) -> Result<&'c Caller, OciError> {
        self.oci_push_rights(caller, repository, Action::Publish)
    }
}

/// The token the token endpoint gives anonymous callers when anonymous
/// reads are allowed; requests bearing it are anonymous.
pub const ANONYMOUS_TOKEN: &str = "anonymous";

/// What the token endpoint issued.
#[derive(Debug)]
pub enum IssuedToken {
    /// For anonymous callers: [`ANONYMOUS_TOKEN`].
    Anonymous,
    /// A session token narrowed to the requested scopes.
    Session(Box<crate::identity::NewToken>),
}

/// Parses token-endpoint scopes (`repository:<ns>/<name>:pull,push`) into
/// the namespaces and actions they ask for. Scopes of other types, and
/// repositories that are not of this registry, ask for nothing.
pub fn parse_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<(String, Vec<Action>)> {
    let mut out: Vec<(String, Vec<Action>)> = Vec::new();
    for scope in scopes {
        let mut parts = scope.splitn(3, ':');
        let (Some("repository"), Some(name), Some(actions)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(repository) = Repository::parse(name) else {
            continue;
        };
        let mut wanted = Vec::new();
        for action in actions.split(',') {
            match action.trim() {
                "pull" => wanted.push(Action::Read),
                "push" => wanted.push(Action::Publish),
                "*" => wanted.extend([Action::Read, Action::Publish]),
                _ => {}
            }
        }
        let namespace = repository.package.namespace().to_owned();
        match out.iter_mut().find(|(ns, _)| *ns == namespace) {
            Some((_, actions)) => actions.extend(wanted),
            None => out.push((namespace, wanted)),
        }
    }
    for (_, actions) in &mut out {
        actions.sort();
        actions.dedup();
    }
    out
}

impl Registry {
    /// The OCI token endpoint: exchanges credentials (an API, session or
    /// OIDC token) for a short-lived session token narrowed to what was
    /// asked for and what the credentials allow. Without credentials,
    /// anonymous callers get [`ANONYMOUS_TOKEN`] if anonymous reads are on.
    /// A session never carries `admin`.
    pub async fn oci_token<'a>(
        &self,
        caller: Option<&Caller>,
        scopes: impl IntoIterator<Item = &'a str>,
    ) -> Result<IssuedToken, OciError> {
        let Some(caller) = caller else {
            if self.inner.config.anonymous_read {
                return Ok(IssuedToken::Anonymous);
            }
            return Err(OciError::new(
                OciCode::Unauthorized,
                "this registry needs credentials: a cairn token as the password",
            ));
        };
        let requested = parse_scopes(scopes);
        let (namespaces, mut actions) = if requested.is_empty() {
            // A login: the token's own reach, without administration.
            (
                caller.namespaces.clone(),
                caller
                    .actions
                    .iter()
                    .copied()
                    .filter(|a| *a != Action::Admin)
                    .collect::<Vec<_>>(),
            )
        } else {
            let mut namespaces = Vec::new();
            let mut actions = Vec::new();
            for (namespace, wanted) in requested {
                let granted: Vec<Action> = wanted
                    .into_iter()
                    .filter_map(|a| match a {
                        _ if caller.allows(a, Some(&namespace)) => Some(a),
                        // Pushing and signing read; a `sign` token asking
                        // to push gets `sign` (attachments only).
                        Action::Read if caller.allows(Action::Sign, Some(&namespace)) => Some(a),
                        Action::Publish if caller.allows(Action::Sign, Some(&namespace)) => {
                            Some(Action::Sign)
                        }
                        _ => None,
                    })
                    .collect();
                if !granted.is_empty() {
                    namespaces.push(namespace);
                    actions.extend(granted);
                }
            }
            (namespaces, actions)
        };
        actions.sort();
        actions.dedup();
        let kind = match caller.kind {
            cairn_store::TokenKind::Oidc => cairn_store::TokenKind::Oidc,
            _ => cairn_store::TokenKind::Session,
        };
        let token = self
            .issue_session(
                caller,
                &crate::identity::TokenScope {
                    namespaces,
                    actions,
                },
                kind,
                crate::identity::SESSION_TTL,
            )
            .await?;
        Ok(IssuedToken::Session(Box::new(token)))
    }
}
