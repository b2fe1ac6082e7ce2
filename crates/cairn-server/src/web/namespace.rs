//! A namespace's page: whether it is this registry's own or imported, its
//! owners and publishers, its publish policy (import rules, content
//! rules, immutable tags), its signature rules (trusted keys by
//! fingerprint, keyless identities, required signatures and
//! attestations), trusted publishers, and its packages a page at a time
//! (the search service with a namespace filter).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use cairn_service::packages::NamespaceInfo;
use cairn_service::search::{DEFAULT_PAGE, SearchPage, SearchRequest};
use serde::{Deserialize, Serialize};

use crate::http::AppState;

#[derive(Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    after: Option<String>,
}

/// A trusted signature key of the policy.
#[derive(Serialize)]
struct TrustedKey {
    /// Hex SHA-256 of its SubjectPublicKeyInfo (what signature verdicts
    /// name), or why it cannot be read.
    fingerprint: Result<String, String>,
    pem: String,
}

/// A keyless signer rule: `ISSUER=IDENTITY_REGEX`.
#[derive(Serialize)]
struct KeylessRule {
    issuer: String,
    identity: String,
}

#[derive(Serialize)]
struct Namespace {
    info: NamespaceInfo,
    packages: SearchPage,
    keys: Vec<TrustedKey>,
    keyless: Vec<KeylessRule>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    super::page(&state, "namespace.html", async |_site| {
        let registry = &state.registry;
        let caller = super::caller(registry, &headers).await?;
        registry.authorize_namespace_read(caller.as_ref(), &namespace)?;
        let info = registry.namespace_info(&namespace)?;
        let request = SearchRequest {
            namespace: Some(namespace.clone()),
            after: params.after.clone(),
            limit: DEFAULT_PAGE,
            ..SearchRequest::default()
        };
        let packages = registry.search(caller.as_ref(), &request).await?;
        let policy = info.ownership.as_ref().map(|o| &o.policy);
        let keys = policy
            .map(|p| p.signature_keys.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|pem| TrustedKey {
                fingerprint: cairn_sigstore::PublicKey::from_pem(pem)
                    .map(|k| k.fingerprint())
                    .map_err(|e| e.to_string()),
                pem: pem.clone(),
            })
            .collect();
        let keyless = policy
            .map(|p| p.signature_identities.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|rule| match rule.split_once('=') {
                Some((issuer, identity)) => KeylessRule {
                    issuer: issuer.to_owned(),
                    identity: identity.to_owned(),
                },
                None => KeylessRule {
                    issuer: String::new(),
                    identity: rule.clone(),
                },
            })
            .collect();
        Ok(Namespace {
            info,
            packages,
            keys,
            keyless,
        })
    })
    .await
}
