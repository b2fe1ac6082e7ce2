//! The C2SP read API: `GET /checkpoint` (c2sp.org/tlog-checkpoint) and
//! `GET /tile/…` (c2sp.org/tlog-tiles). Errors are plain text, as
//! tlog-tiles clients expect.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_protocol::wire::WargError;
use cairn_service::ServiceError;

use super::AppState;

/// A service error as a plain-text response.
pub(super) fn text_error(error: ServiceError) -> Response {
    match error {
        ServiceError::Warg(WargError::Message { status, message }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, format!("{message}\n")).into_response()
        }
        ServiceError::Client { kind, message } => {
            let status = StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (status, format!("{message}\n")).into_response()
        }
        ServiceError::Warg(other) => {
            let status = StatusCode::from_u16(other.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (status, format!("{other}\n")).into_response()
        }
        ServiceError::Unavailable {
            retry_after,
            reason,
        } => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, retry_after.to_string())],
            format!("{reason}\n"),
        )
            .into_response(),
        ServiceError::Internal(detail) => {
            tracing::error!(detail, "internal error");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n").into_response()
        }
    }
}

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// The log's views are public, or served to readers of a private registry
/// (`cairn_service::access`).
async fn may_read_log(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let caller = super::auth::caller(&state.registry, headers)
        .await
        .map_err(text_error)?;
    state
        .registry
        .authorize_log_read(caller.as_ref())
        .map_err(text_error)
}

pub(super) async fn checkpoint(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = may_read_log(&state, &headers).await {
        return response;
    }
    match state.registry.c2sp_checkpoint().await {
        // SPEC: c2sp.org/tlog-tiles — the checkpoint changes; clients must
        // not cache it for long.
        Ok(note) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, TEXT),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            note,
        )
            .into_response(),
        Err(error) => text_error(error),
    }
}

pub(super) async fn tile(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = may_read_log(&state, &headers).await {
        return response;
    }
    let public = !state.registry.reads_are_private() || state.registry.config().public_log;
    match state.registry.tile(&path).await {
        Ok(data) => {
            // SPEC: c2sp.org/tlog-tiles — tiles are immutable: a full tile
            // never changes, and a partial tile `.p/W` always holds the same
            // W hashes (a wider tile has another path).
            // A private log's tiles are not for shared caches.
            let cache = HeaderValue::from_static(if public {
                "public, max-age=31536000, immutable"
            } else {
                "private, max-age=31536000, immutable"
            });
            (
                StatusCode::OK,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    ),
                    (header::CACHE_CONTROL, cache),
                ],
                data.bytes,
            )
                .into_response()
        }
        Err(error) => text_error(error),
    }
}

pub(super) async fn receipt(
    State(state): State<AppState>,
    Path((log_id, record_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = may_read_log(&state, &headers).await {
        return response;
    }
    match state.registry.receipt(&log_id, &record_id).await {
        Ok(receipt) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, TEXT),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            receipt,
        )
            .into_response(),
        Err(error) => text_error(error),
    }
}
