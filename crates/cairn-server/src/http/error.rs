//! The one mapping from service errors to warg HTTP responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_protocol::wire::WargError;
use cairn_service::{ClientError, ServiceError};
use serde::Serialize;

/// `Content-Type: application/json`, exactly (the warg client compares the
/// header byte for byte).
pub const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response with the exact content type.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, JSON)], body).into_response(),
        Err(e) => internal(&e.to_string()),
    }
}

fn internal(detail: &str) -> Response {
    tracing::error!(detail, "internal error");
    warg(&WargError::Message {
        status: 500,
        message: "internal server error".into(),
    })
}

/// A warg error body with its status.
pub fn warg(error: &WargError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &error.body())
}

/// 503 with `Retry-After`.
pub fn unavailable(retry_after: u32, reason: &str) -> Response {
    let mut response = warg(&WargError::Message {
        status: 503,
        message: reason.to_owned(),
    });
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// An error of the warg API.
#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        Self(error)
    }
}

impl From<WargError> for ApiError {
    fn from(error: WargError) -> Self {
        Self(ServiceError::Warg(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.0 {
            ServiceError::Warg(error) => warg(&error),
            ServiceError::Client { kind, message } => warg(&match kind {
                ClientError::Unauthorized => WargError::Unauthorized(message),
                other => WargError::Message {
                    status: other.status(),
                    message,
                },
            }),
            ServiceError::Unavailable {
                retry_after,
                reason,
            } => {
                tracing::warn!(%reason, "service unavailable");
                unavailable(retry_after, &reason)
            }
            ServiceError::Internal(detail) => internal(&detail),
        }
    }
}

/// A bad request in the warg format.
pub fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::from(WargError::Message {
        status: 400,
        message: message.into(),
    })
}
