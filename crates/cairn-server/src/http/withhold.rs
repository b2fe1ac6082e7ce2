//! Withholding content over the admin API:
//! `POST /api/v1/admin/content/{digest}/withhold` (body `{"reason": …}`)
//! and `POST /api/v1/admin/content/{digest}/restore`, for tokens that hold
//! `admin`. The decision is logged in the registry log
//! (`cairn_service::withhold`); the doors that serve bytes then answer
//! `451`. Errors use the warg format (`{"status": N, "message": "…"}`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cairn_service::ServiceError;
use cairn_service::identity::Action;
use cairn_service::withhold::parse_content_digest;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::{ApiError, json};
use super::extract::WargJson;

type Result = std::result::Result<Response, ApiError>;

/// The body of a withhold request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WithholdBody {
    reason: String,
}

/// The administrator making the request (401 without a token, 403 without
/// `admin`).
async fn administrator(
    state: &AppState,
    headers: &HeaderMap,
) -> std::result::Result<String, ApiError> {
    let caller = super::auth::caller(&state.registry, headers)
        .await?
        .ok_or_else(|| {
            ApiError::from(ServiceError::unauthorized(
                "this needs a token: Authorization: Bearer <token>",
            ))
        })?;
    state.registry.require(&caller, Action::Admin, None)?;
    Ok(caller.identity)
}

/// `POST /api/v1/admin/content/{digest}/withhold`.
pub(super) async fn withhold(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    headers: HeaderMap,
    WargJson(body): WargJson<WithholdBody>,
) -> Result {
    let identity = administrator(&state, &headers).await?;
    let digest = parse_content_digest(&digest)?;
    let signer = state.registry.operator_signer();
    let record = state
        .registry
        .admin(&identity, signer.as_ref())
        .withhold_content(&digest, &body.reason)
        .await?;
    Ok(json(
        StatusCode::OK,
        &json!({ "digest": digest, "withheld": true, "reason": body.reason, "record": record }),
    ))
}

/// `POST /api/v1/admin/content/{digest}/restore`.
pub(super) async fn restore(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Result {
    let identity = administrator(&state, &headers).await?;
    let digest = parse_content_digest(&digest)?;
    let signer = state.registry.operator_signer();
    let record = state
        .registry
        .admin(&identity, signer.as_ref())
        .restore_content(&digest)
        .await?;
    Ok(json(
        StatusCode::OK,
        &json!({ "digest": digest, "withheld": false, "record": record }),
    ))
}
