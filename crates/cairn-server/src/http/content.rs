//! Content downloads: `GET /content/sha256-<hex>` with `Range` support.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_crypto::Sha256Digest;
use cairn_protocol::wire::WargError;

use super::AppState;
use super::error::ApiError;

/// A parsed single byte range, resolved against the size: `[start, end]`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Range {
    /// The whole content.
    Full,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// Not satisfiable.
    Unsatisfiable,
}

/// RFC 9110 §14.1: one `bytes=` range. Anything else (several ranges, other
/// units, garbage) is ignored and the whole content is sent.
pub(crate) fn parse_range(value: Option<&HeaderValue>, size: u64) -> Range {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .filter(|v| !v.contains(','))
    else {
        return Range::Full;
    };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let parse = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.is_empty(), parse(first), parse(last)) {
        (true, _, Some(suffix)) => {
            if suffix == 0 || size == 0 {
                Range::Unsatisfiable
            } else {
                Range::Part(size.saturating_sub(suffix), size - 1)
            }
        }
        (false, Some(start), end) if last.is_empty() || end.is_some() => {
            if start >= size {
                return Range::Unsatisfiable;
            }
            let end = end.unwrap_or(u64::MAX).min(size - 1);
            if end < start {
                Range::Full
            } else {
                Range::Part(start, end)
            }
        }
        _ => Range::Full,
    }
}

/// `expires` and `signature` of a signed content URL (private registries).
fn signed_url(query: Option<&str>) -> Option<(i64, String)> {
    let mut expires = None;
    let mut signature = None;
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("expires", value)) => expires = value.parse().ok(),
            Some(("signature", value)) => signature = Some(value.to_owned()),
            _ => {}
        }
    }
    Some((expires?, signature?))
}

pub(super) async fn download(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::from(WargError::Message {
            status: 404,
            message: "content not found".into(),
        })
    };
    let digest: Sha256Digest = name
        .strip_prefix("sha256-")
        .and_then(|hex| Sha256Digest::from_hex(hex).ok())
        .ok_or_else(not_found)?;
    let caller = super::auth::caller(&state.registry, &headers).await?;
    let signed = signed_url(query.as_deref());
    state
        .registry
        .authorize_content_download(
            caller.as_ref(),
            &digest,
            signed.as_ref().map(|(e, s)| (*e, s.as_str())),
        )
        .await?;
    let Some(size) = state.registry.published_content_size(&digest).await? else {
        return Err(not_found());
    };
    // `--blob-redirect`: the authorised caller fetches the bytes from the
    // blob store through a short-lived presigned URL.
    if let Some(url) = state.registry.content_redirect(&digest).await?
        && let Ok(location) = HeaderValue::from_str(&url)
    {
        return Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response());
    }
    let (status, offset, len) = match parse_range(headers.get(header::RANGE), size) {
        Range::Full => (StatusCode::OK, 0, size),
        Range::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Range::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response());
        }
    };
    let download = state
        .registry
        .read_content(&digest, offset, len)
        .await?
        .ok_or_else(not_found)?;
    let mut response = Response::new(Body::from_stream(download.body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if state.registry.reads_are_private() {
            "private, max-age=31536000, immutable"
        } else {
            "public, max-age=31536000, immutable"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {offset}-{}/{size}", offset + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Range {
        parse_range(Some(&HeaderValue::from_str(value).unwrap()), size)
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range(None, 10), Range::Full);
        assert_eq!(range("bytes=0-4", 10), Range::Part(0, 4));
        assert_eq!(range("bytes=5-", 10), Range::Part(5, 9));
        assert_eq!(range("bytes=5-100", 10), Range::Part(5, 9));
        assert_eq!(range("bytes=-3", 10), Range::Part(7, 9));
        assert_eq!(range("bytes=-30", 10), Range::Part(0, 9));
        assert_eq!(range("bytes=10-", 10), Range::Unsatisfiable);
        assert_eq!(range("bytes=-0", 10), Range::Unsatisfiable);
        assert_eq!(range("bytes=0-1,3-4", 10), Range::Full);
        assert_eq!(range("items=0-1", 10), Range::Full);
        assert_eq!(range("bytes=x-1", 10), Range::Full);
        assert_eq!(range("bytes=4-2", 10), Range::Full);
    }
}
