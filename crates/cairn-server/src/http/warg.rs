//! The warg v1 API handlers (warg-wire §7).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_protocol::wire::{
    ConsistencyRequest, FetchLogsRequest, FetchNamesRequest, InclusionRequest,
    PublishRecordRequest, SignedCheckpoint, WargError,
};
use cairn_service::identity::Caller;
use futures_util::TryStreamExt as _;

use super::AppState;
use super::error::{ApiError, json};
use super::extract::WargJson;

type Result = std::result::Result<Response, ApiError>;

/// The caller of a request (`None`: anonymous); a bad token is a 401.
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
) -> std::result::Result<Option<Caller>, ApiError> {
    Ok(super::auth::caller(&state.registry, headers).await?)
}

/// The log's own views: public, or for readers of a private registry.
async fn log_reader(state: &AppState, headers: &HeaderMap) -> std::result::Result<(), ApiError> {
    let caller = caller(state, headers).await?;
    Ok(state.registry.authorize_log_read(caller.as_ref())?)
}

pub(super) async fn fetch_checkpoint(State(state): State<AppState>, headers: HeaderMap) -> Result {
    log_reader(&state, &headers).await?;
    Ok(json(StatusCode::OK, &state.registry.fetch_checkpoint()?))
}

pub(super) async fn fetch_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    WargJson(request): WargJson<FetchLogsRequest>,
) -> Result {
    let caller = caller(&state, &headers).await?;
    Ok(json(
        StatusCode::OK,
        &state
            .registry
            .fetch_logs_as(caller.as_ref(), request)
            .await?,
    ))
}

pub(super) async fn fetch_names(
    State(state): State<AppState>,
    headers: HeaderMap,
    WargJson(request): WargJson<FetchNamesRequest>,
) -> Result {
    let caller = caller(&state, &headers).await?;
    Ok(json(
        StatusCode::OK,
        &state
            .registry
            .fetch_names_as(caller.as_ref(), request)
            .await?,
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
    headers: HeaderMap,
) -> Result {
    let caller = caller(&state, &headers).await?;
    Ok(json(
        StatusCode::OK,
        &state
            .registry
            .get_record_as(caller.as_ref(), &log_id, &record_id)
            .await?,
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
    headers: HeaderMap,
) -> Result {
    let caller = caller(&state, &headers).await?;
    Ok(json(
        StatusCode::OK,
        &state
            .registry
            .content_sources_as(caller.as_ref(), &digest)
            .await?,
    ))
}

pub(super) async fn prove_consistency(
    State(state): State<AppState>,
    headers: HeaderMap,
    WargJson(request): WargJson<ConsistencyRequest>,
) -> Result {
    log_reader(&state, &headers).await?;
    Ok(json(
        StatusCode::OK,
        &state.registry.prove_consistency(request).await?,
    ))
}

pub(super) async fn prove_inclusion(
    State(state): State<AppState>,
    headers: HeaderMap,
    WargJson(request): WargJson<InclusionRequest>,
) -> Result {
    log_reader(&state, &headers).await?;
    Ok(json(
        StatusCode::OK,
        &state.registry.prove_inclusion(request).await?,
    ))
}

pub(super) async fn ledger(State(state): State<AppState>, headers: HeaderMap) -> Result {
    log_reader(&state, &headers).await?;
    Ok(json(StatusCode::OK, &state.registry.ledger()))
}

pub(super) async fn ledger_records(
    State(state): State<AppState>,
    Path(start): Path<String>,
    headers: HeaderMap,
) -> Result {
    log_reader(&state, &headers).await?;
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
    headers: HeaderMap,
    WargJson(checkpoint): WargJson<SignedCheckpoint>,
) -> Result {
    log_reader(&state, &headers).await?;
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
