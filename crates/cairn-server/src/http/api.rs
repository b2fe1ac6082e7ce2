//! cairn's own API under `/api/v1/`: package and namespace views, yanking
//! with a reason, OIDC trusted publishing, namespace membership for owners,
//! and administration (identities, keys, tokens, namespaces, the audit
//! log) for admin tokens. Errors use the warg format
//! (`{"status": N, "message": "…"}`).

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_crypto::{EcdsaPublicKey, KeyId};
use cairn_protocol::ext::registry::{
    Access, IdentityKind, PublishPolicy, TrustedPublisher, Upstream,
};
use cairn_service::admin::{AdminCtx, NamespaceSettings};
use cairn_service::identity::{Action, Caller, TokenScope};
use cairn_service::{Registry, ServiceError};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::{ApiError, json};
use super::extract::WargJson;

type Result = std::result::Result<Response, ApiError>;

async fn caller(state: &AppState, headers: &HeaderMap) -> std::result::Result<Caller, ApiError> {
    super::auth::caller(&state.registry, headers)
        .await?
        .ok_or_else(|| {
            ApiError::from(ServiceError::unauthorized(
                "this needs a token: Authorization: Bearer <token>",
            ))
        })
}

/// An admin context acting as the caller, who must hold `admin`.
async fn admin<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    signer: &'a dyn cairn_crypto::Signer,
) -> std::result::Result<AdminCtx<'a>, ApiError> {
    let caller = caller(state, headers).await?;
    state.registry.require(&caller, Action::Admin, None)?;
    Ok(state.registry.admin(&caller.identity, signer))
}

pub(super) fn ok(value: serde_json::Value) -> Response {
    json(StatusCode::OK, &value)
}

fn created(value: serde_json::Value) -> Response {
    json(StatusCode::CREATED, &value)
}

// ---- public views -------------------------------------------------------

pub(super) async fn namespace(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
) -> Result {
    let caller = super::auth::caller(&state.registry, &headers).await?;
    state
        .registry
        .authorize_namespace_read(caller.as_ref(), &namespace)?;
    Ok(json(
        StatusCode::OK,
        &state.registry.namespace_info(&namespace)?,
    ))
}

pub(super) async fn package(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result {
    let caller = super::auth::caller(&state.registry, &headers).await?;
    let namespace = name.split_once(':').map_or(name.as_str(), |(ns, _)| ns);
    state
        .registry
        .authorize_namespace_read(caller.as_ref(), namespace)?;
    Ok(json(
        StatusCode::OK,
        &state.registry.package_info(&name).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct YankBody {
    version: String,
    reason: String,
}

pub(super) async fn yank(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    WargJson(body): WargJson<YankBody>,
) -> Result {
    let caller = caller(&state, &headers).await?;
    let outcome = state
        .registry
        .yank(Some(&caller), &name, &body.version, &body.reason)
        .await?;
    Ok(json(StatusCode::OK, &outcome))
}

// ---- OIDC trusted publishing --------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OidcBody {
    /// The CI platform's identity token (a JWT).
    token: String,
    /// Which namespace, when several trust the workflow.
    #[serde(default)]
    namespace: Option<String>,
}

pub(super) async fn oidc_token(
    State(state): State<AppState>,
    WargJson(body): WargJson<OidcBody>,
) -> Result {
    if !state.oidc.enabled() {
        return Err(ServiceError::not_found(
            "OIDC trusted publishing is not configured on this registry",
        )
        .into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let (issuer, claims) = match state.oidc.verify(&body.token, now).await {
        Ok(verified) => verified,
        Err(crate::oidc::VerifyError::Token(error)) => {
            return Err(ServiceError::unauthorized(error.to_string()).into());
        }
        Err(crate::oidc::VerifyError::Keys {
            issuer,
            reason,
            retry_after,
        }) => {
            // The reason (URLs, transport errors) is logged; the client
            // learns only whose keys are missing and when to retry.
            tracing::warn!(%issuer, %reason, "OIDC keys unavailable");
            return Err(ServiceError::Unavailable {
                retry_after,
                reason: format!("the keys of issuer {issuer} cannot be fetched right now"),
            }
            .into());
        }
    };
    let bought = state
        .registry
        .oidc_exchange(&issuer, &claims, body.namespace.as_deref())
        .await?;
    Ok(ok(json!({
        "token": bought.token.secret,
        "id": bought.token.row.id,
        "identity": bought.token.row.identity,
        "namespaces": bought.namespaces,
        "expiresAt": bought.token.row.expires_at_ms,
    })))
}

// ---- namespace membership (owners) ---------------------------------------

/// Owners (with a token allowing `publish` there) and admins may change a
/// namespace's publishers and trust rules.
pub(super) async fn owner_ctx<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    namespace: &str,
    signer: &'a dyn cairn_crypto::Signer,
) -> std::result::Result<AdminCtx<'a>, ApiError> {
    let caller = caller(state, headers).await?;
    let registry: &Registry = &state.registry;
    let is_owner = caller.allows(Action::Publish, Some(namespace))
        && registry
            .registry_log()
            .access(namespace, Some(&caller.identity))
            == Access::Owner;
    if !is_owner && !caller.allows(Action::Admin, None) {
        return Err(ServiceError::forbidden(format!(
            "only owners of `{namespace}` (or administrators) may change its members and trust rules"
        ))
        .into());
    }
    Ok(registry.admin(&caller.identity, signer))
}

pub(super) async fn add_publisher(
    State(state): State<AppState>,
    Path((namespace, identity)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result {
    let signer = state.registry.operator_signer();
    let ctx = owner_ctx(&state, &headers, &namespace, signer.as_ref()).await?;
    let record = ctx
        .edit_members(&namespace, (&[], &[]), (&[identity], &[]))
        .await?;
    Ok(ok(json!({ "record": record })))
}

pub(super) async fn remove_publisher(
    State(state): State<AppState>,
    Path((namespace, identity)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result {
    let signer = state.registry.operator_signer();
    let ctx = owner_ctx(&state, &headers, &namespace, signer.as_ref()).await?;
    let record = ctx
        .edit_members(&namespace, (&[], &[]), (&[], &[identity]))
        .await?;
    Ok(ok(json!({ "record": record })))
}

// ---- administration -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewIdentity {
    name: String,
    #[serde(default = "user")]
    kind: IdentityKind,
}

fn user() -> IdentityKind {
    IdentityKind::User
}

pub(super) async fn create_identity(
    State(state): State<AppState>,
    headers: HeaderMap,
    WargJson(body): WargJson<NewIdentity>,
) -> Result {
    let signer = state.registry.operator_signer();
    let ctx = admin(&state, &headers, signer.as_ref()).await?;
    if body.kind == IdentityKind::Registry {
        return Err(ServiceError::bad_request(
            "identities of kind `registry` belong to the registry itself",
        )
        .into());
    }
    let record = ctx.create_identity(&body.name, body.kind).await?;
    Ok(created(
        json!({ "name": body.name, "kind": body.kind, "record": record }),
    ))
}

/// The default page of an admin listing.
const DEFAULT_LIST_PAGE: usize = 100;
/// The largest page of an admin listing.
const MAX_LIST_PAGE: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// The page size a `limit` parameter asks for: 1 to [`MAX_LIST_PAGE`],
/// [`DEFAULT_LIST_PAGE`] when absent.
fn page_limit(limit: Option<&str>) -> std::result::Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIST_PAGE),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST_PAGE).contains(&n) => Ok(n),
            _ => Err(super::error::bad_request(format!(
                "limit must be between 1 and {MAX_LIST_PAGE}"
            ))),
        },
    }
}

/// `GET /api/v1/admin/identities?limit=&after=`: identities by name, a page
/// at a time; `next` is the `after` of the next page.
pub(super) async fn identities(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result {
    let query: PageQuery = query(raw)?;
    let limit = page_limit(query.limit.as_deref())?;
    let signer = state.registry.operator_signer();
    admin(&state, &headers, signer.as_ref()).await?;
    let log = state.registry.registry_log();
    let mut identities: Vec<serde_json::Value> = log
        .identities()
        .filter(|(name, _)| query.after.as_deref().is_none_or(|after| *name > after))
        .take(limit + 1)
        .map(|(name, identity)| {
            json!({
                "name": name,
                "kind": identity.kind,
                "disabled": identity.disabled,
                "keys": identity.keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    let next = if identities.len() > limit {
        identities.truncate(limit);
        identities.last().map(|i| i["name"].clone())
    } else {
        None
    };
    Ok(ok(json!({ "identities": identities, "next": next })))
}

pub(super) async fn disable_identity(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result {
    let signer = state.registry.operator_signer();
    let ctx = admin(&state, &headers, signer.as_ref()).await?;
    let revoked = ctx.disable_identity(&name).await?;
    Ok(ok(json!({ "tokensRevoked": revoked })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    key: String,
}

pub(super) async fn bind_key(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    WargJson(body): WargJson<NewKey>,
) -> Result {
    let signer = state.registry.operator_signer();
    let ctx = admin(&state, &headers, signer.as_ref()).await?;
    let key: EcdsaPublicKey = body.key.parse().map_err(|e| {
        ServiceError::bad_request(format!("`key` is not an ecdsa-p256 public key: {e}"))
    })?;
    let record = ctx.bind_key(&name, &key).await?;
    Ok(created(
        json!({ "keyId": key.key_id().to_string(), "record": record }),
    ))
}

pub(super) async fn unbind_key(
    State(state): State<AppState>,
    Path((name, key_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result {
    let signer = state.registry.operator_signer();
    let ctx = admin(&state, &headers, signer.as_ref()).await?;
    let record = ctx.unbind_key(&name, &KeyId::new(key_id)).await?;
    Ok(ok(json!({ "record": record })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NewTokenBody {
    identity: String,
    namespaces: Vec<String>,
    actions: Vec<String>,
    #[serde(default)]
    expires_in_seconds: Option<u64>,
    #[serde(default)]
    description: String,
}

pub(super) async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    WargJson(body): WargJson<NewTokenBody>,
) -> Result {
    let signer = state.registry.operator_signer();
    let ctx = admin(&state, &headers, signer.as_ref()).await?;
    let actions = cairn_service::admin::parse_actions(&body.actions.join(","))?;
    let token = ctx
        .create_token(
            &body.identity,
            &TokenScope {
                namespaces: body.namespaces,
                actions,
            },
            body.expires_in_seconds.map(Duration::from_secs),
            &body.description,
        )
        .await?;
    Ok(created(json!({
        "id": token.row.id,
        "token": token.secret,
        "identity": token.row.identity,
        "namespaces": token.row.namespaces,
        "actions": token.row.actions,
        "expiresAt": token.row.expires_at_ms,
    })))
}

/// Query parameters, answered in the warg format when malformed.
fn query<T: serde::de::DeserializeOwned>(raw: Option<String>) -> std::result::Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::Object(
        raw.unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k.to_owned(), serde_json::Value::String(v.to_owned()))
            })
            .collect(),
    ))
    .map_err(|e| super::error::bad_request(format!("invalid query: {e}")))
}

fn number<T: std::str::FromStr>(
    value: Option<&str>,
    name: &str,
) -> std::result::Result<Option<T>, ApiError> {
    value
        .map(|v| {
            v.parse()
                .map_err(|_| super::error::bad_request(format!("`{name}` must be a number")))
        })
        .transpose()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokensQuery {
    identity: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

/// `GET /api/v1/admin/tokens?identity=&limit=&after=`: long-lived tokens
/// in creation order, a page at a time; `after` is a token id (the `next`
/// of the page before).
pub(super) async fn tokens(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result {
    let query: TokensQuery = query(raw)?;
    let limit = page_limit(query.limit.as_deref())?;
    let signer = state.registry.operator_signer();
    let ctx = admin(&state, &headers, signer.as_ref()).await?;
    if let Some(after) = query.after.as_deref()
        && ctx
            .store
            .token(after)
            .await
            .map_err(ServiceError::from)?
            .is_none()
    {
        return Err(super::error::bad_request(format!(
            "`after` names no listed token: {}",
            after.chars().take(64).collect::<String>()
        )));
    }
    // One more than a page: whether another page follows.
    let page = ctx
        .store
        .tokens_page(
            query.identity.as_deref(),
            query.after.as_deref(),
            u32::try_from(limit + 1).unwrap_or(u32::MAX),
        )
        .await
        .map_err(ServiceError::from)?;
    let next = if page.len() > limit {
        page.get(limit - 1).map(|t| t.id.clone())
    } else {
        None
    };
    let tokens: Vec<serde_json::Value> = page
        .iter()
        .take(limit)
        .map(|t| {
            json!({
                "id": t.id,
                "identity": t.identity,
                "namespaces": t.namespaces,
                "actions": t.actions,
                "description": t.description,
                "kind": match t.kind {
                    cairn_store::TokenKind::Api => "api",
                    cairn_store::TokenKind::Session => "session",
                    cairn_store::TokenKind::Oidc => "oidc",
                },
                "createdAt": t.created_at_ms,
                "expiresAt": t.expires_at_ms,
                "revokedAt": t.revoked_at_ms,
            })
        })
        .collect();
    Ok(ok(json!({ "tokens": tokens, "next": next })))
}

pub(super) async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result {
    let signer = state.registry.operator_signer();
    let ctx = admin(&state, &headers, signer.as_ref()).await?;
    ctx.revoke_token(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NamespaceBody {
    #[serde(default)]
    owners: Vec<String>,
    #[serde(default)]
    publishers: Vec<String>,
    #[serde(default)]
    open: bool,
    #[serde(default)]
    upstream: Option<Upstream>,
    #[serde(default)]
    policy: Option<PublishPolicy>,
    #[serde(default)]
    trusted_publishers: Vec<TrustedPublisher>,
}

pub(super) async fn set_namespace(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    WargJson(body): WargJson<NamespaceBody>,
) -> Result {
    let signer = state.registry.operator_signer();
    let ctx = admin(&state, &headers, signer.as_ref()).await?;
    if let Some(bad) = body
        .policy
        .iter()
        .flat_map(|p| &p.immutable_tags)
        .find(|p| !cairn_protocol::ext::registry::is_valid_tag_pattern(p))
    {
        return Err(ServiceError::bad_request(format!(
            "invalid immutable-tag pattern `{bad}`: use tag characters (A-Z a-z 0-9 . _ -) and `*`"
        ))
        .into());
    }
    for pattern in body
        .policy
        .iter()
        .flat_map(|p| p.imports_allow.iter().chain(&p.imports_deny))
    {
        if !cairn_protocol::ext::meta::is_valid_import_pattern(pattern) {
            return Err(ServiceError::bad_request(format!(
                "invalid import pattern `{pattern}`: use ns:pkg[/iface[@version]] or a prefix ending in `*`"
            ))
            .into());
        }
    }
    let record = ctx
        .set_namespace(
            &namespace,
            NamespaceSettings {
                owners: body.owners,
                publishers: body.publishers,
                open: body.open,
                upstream: body.upstream,
                policy: body.policy.unwrap_or_default(),
                trusted_publishers: body.trusted_publishers,
            },
        )
        .await?;
    Ok(ok(json!({ "record": record })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    after: Option<String>,
    limit: Option<String>,
}

pub(super) async fn audit(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result {
    let query: AuditQuery = query(raw)?;
    let after: Option<i64> = number(query.after.as_deref(), "after")?;
    let limit: Option<u32> = number(query.limit.as_deref(), "limit")?;
    let signer = state.registry.operator_signer();
    let ctx = admin(&state, &headers, signer.as_ref()).await?;
    let entries: Vec<serde_json::Value> = ctx
        .store
        .audit(after, limit.unwrap_or(100).clamp(1, 1000))
        .await
        .map_err(ServiceError::from)?
        .into_iter()
        .map(|e| {
            json!({
                "seq": e.seq,
                "at": e.at_ms,
                "actor": e.actor,
                "action": e.action,
                "details": serde_json::from_str::<serde_json::Value>(&e.details)
                    .unwrap_or(serde_json::Value::String(e.details)),
            })
        })
        .collect();
    Ok(ok(json!({ "entries": entries })))
}
