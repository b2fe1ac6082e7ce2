//! The warg v1 API handlers (warg-wire §7).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_protocol::wire::{
    ConsistencyRequest, FetchLogsRequest, FetchNamesRequest, InclusionRequest,
    PublishRecordRequest, SignedCheckpoint, WargError,
};
use futures_util::TryStreamExt as _;

use super::AppState;
use super::error::{ApiError, json};
use super::extract::WargJson;

type Result = std::result::Result<Response, ApiError>;

pub(super) async fn fetch_checkpoint(State(state): State<AppState>) -> Result {
    Ok(json(StatusCode::OK, &state.registry.fetch_checkpoint()?))
}

pub(super) async fn fetch_logs(
    State(state): State<AppState>,
    WargJson(request): WargJson<FetchLogsRequest>,
) -> Result {
    Ok(json(
        StatusCode::OK,
        &state.registry.fetch_logs(request).await?,
    ))
}

pub(super) async fn fetch_names(
    State(state): State<AppState>,
    WargJson(request): WargJson<FetchNamesRequest>,
) -> Result {
    Ok(json(
        StatusCode::OK,
        &state.registry.fetch_names(request).await?,
    ))
}

pub(super) async fn publish(
    State(state): State<AppState>,
    Path(log_id): Path<String>,
    headers: axum::http::HeaderMap,
    WargJson(request): WargJson<PublishRecordRequest>,
) -> Result {
    let caller = super::auth::caller(&state.registry, &headers).await?;
    let response = state
        .registry
        .publish(&log_id, request, caller.as_ref())
        .await?;
    Ok(json(StatusCode::ACCEPTED, &response))
}

pub(super) async fn get_record(
    State(state): State<AppState>,
    Path((log_id, record_id)): Path<(String, String)>,
) -> Result {
    Ok(json(
        StatusCode::OK,
        &state.registry.get_record(&log_id, &record_id).await?,
    ))
}

pub(super) async fn upload_content(
    State(state): State<AppState>,
    Path((log_id, record_id, digest)): Path<(String, String, String)>,
    body: Body,
) -> Result {
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    state
        .registry
        .upload_content(&log_id, &record_id, &digest, Box::pin(stream))
        .await?;
    // SPEC: warg-wire §7.7 — 201 with an empty body.
    Ok(StatusCode::CREATED.into_response())
}

pub(super) async fn content_sources(
    State(state): State<AppState>,
    Path(digest): Path<String>,
) -> Result {
    Ok(json(
        StatusCode::OK,
        &state.registry.content_sources(&digest).await?,
    ))
}

pub(super) async fn prove_consistency(
    State(state): State<AppState>,
    WargJson(request): WargJson<ConsistencyRequest>,
) -> Result {
    Ok(json(
        StatusCode::OK,
        &state.registry.prove_consistency(request).await?,
    ))
}

pub(super) async fn prove_inclusion(
    State(state): State<AppState>,
    WargJson(request): WargJson<InclusionRequest>,
) -> Result {
    Ok(json(
        StatusCode::OK,
        &state.registry.prove_inclusion(request).await?,
    ))
}

pub(super) async fn ledger(State(state): State<AppState>) -> Result {
    Ok(json(StatusCode::OK, &state.registry.ledger()))
}

pub(super) async fn ledger_records(
    State(state): State<AppState>,
    Path(start): Path<String>,
) -> Result {
    let start: u64 = start.parse().map_err(|_| {
        ApiError::from(WargError::Message {
            status: 400,
            message: "ledger start must be a registry index".into(),
        })
    })?;
    let bytes = state.registry.ledger_records(start).await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            cairn_protocol::wire::LEDGER_CONTENT_TYPE,
        )],
        bytes,
    )
        .into_response())
}

pub(super) async fn verify_checkpoint(
    State(state): State<AppState>,
    WargJson(checkpoint): WargJson<SignedCheckpoint>,
) -> Result {
    Ok(json(
        StatusCode::OK,
        &state.registry.verify_checkpoint(checkpoint).await?,
    ))
}

pub(super) async fn not_found() -> Response {
    super::error::warg(&WargError::Message {
        status: 404,
        message: "not found".into(),
    })
}

pub(super) async fn method_not_allowed() -> Response {
    super::error::warg(&WargError::Message {
        status: 405,
        message: "method not allowed".into(),
    })
}
