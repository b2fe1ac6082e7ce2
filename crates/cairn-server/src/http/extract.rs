//! A JSON body extractor that answers in the warg error format.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::{ApiError, bad_request};
use cairn_protocol::wire::WargError;

/// Like `axum::Json`, but malformed bodies get a warg `400` and oversized
/// ones a warg `413`.
pub struct WargJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for WargJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::from(WargError::Message {
                        status: 413,
                        message: "request body too large".into(),
                    })
                } else {
                    bad_request(format!("cannot read the request body: {rejection}"))
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(WargJson)
            .map_err(|e| bad_request(format!("invalid JSON body: {e}")))
    }
}
