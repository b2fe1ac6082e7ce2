//! Writes at a node that does not sequence (a standby of a cluster).
//!
//! Every node accepts every write. A standby handles itself the writes
//! whose correctness the database guarantees — warg publishes and content
//! uploads ([`cairn_store::DecidedStore`]), OCI blob uploads (sessions in
//! the database, bytes in the shared blob store) — and forwards to the
//! leader the writes that need the sequencer's memory: OCI manifest pushes
//! and deletes (grouped into the leader's next batch), and the `/api`
//! writes that build and sign records or change what the leader caches.
//!
//! Forwarding authenticates nothing here: the request (method, path,
//! query, headers including `Authorization`, body streamed as it arrives,
//! never buffered) goes to the URL the leader recorded with its lease, and
//! the answer streams back with `Via` and `Cairn-Leader` naming the
//! leader. The leader applies its own limits and timeouts. Before a
//! success is passed on, this node serves the latest stored checkpoint, so
//! a client that reads from it next sees what the leader acknowledged. A
//! forwarded request is never forwarded again; with no leader known, or an
//! unreachable one, the answer is `503` with `Retry-After` in the format of
//! the door the request came through.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use cairn_service::ServiceError;
use cairn_service::oci::OciError;

use super::AppState;

/// Requests with a body that only read (warg fetches and proofs, the OIDC
/// token exchange, which stores nothing the sequencer knows of).
const READS: [&str; 6] = [
    "/v1/fetch/logs",
    "/v1/fetch/names",
    "/v1/proof/consistency",
    "/v1/proof/inclusion",
    "/v1/verify/checkpoint",
    "/api/v1/oidc/token",
];

/// Set on a forwarded request: the node it came through.
const FORWARDED_BY: HeaderName = HeaderName::from_static("cairn-forwarded-by");
/// Set on a forwarded answer: the leader that gave it.
const LEADER: HeaderName = HeaderName::from_static("cairn-leader");

/// Headers of one connection, not of the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// How a standby reaches the leader.
#[derive(Debug)]
pub(super) struct Forwarder {
    client: reqwest::Client,
    /// The longest a forwarded request may take (the leader's longest
    /// deadline, plus a margin).
    timeout: Duration,
}

impl Forwarder {
    pub(super) fn new(timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            client,
            timeout: timeout + Duration::from_secs(5),
        }
    }
}

/// The middleware's state.
#[derive(Clone, Debug)]
pub(super) struct Standby {
    pub(super) app: AppState,
    pub(super) forwarder: Arc<Forwarder>,
}

/// Whether a write is handled by whichever node receives it.
fn handled_anywhere(method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        // POST /v1/package/{logId}/record
        ["v1", "package", _, "record"] => *method == Method::POST,
        // POST|PUT /v1/package/{logId}/record/{recordId}/content/{digest}
        ["v1", "package", _, "record", _, "content", _] => true,
        // /v2/{ns}/{name}/blobs/uploads[/…]
        ["v2", _, _, "blobs", "uploads", ..] => true,
        _ => false,
    }
}

/// Handles or forwards a write at a standby; everything else passes.
pub(super) async fn forward_writes(
    State(standby): State<Standby>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method();
    let path = request.uri().path();
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || (*method == Method::POST && READS.contains(&path));
    let state = &standby.app;
    if reads || handled_anywhere(method, path) || !state.registry.is_standby() {
        return next.run(request).await;
    }
    if request.headers().contains_key(&FORWARDED_BY) {
        return unavailable(
            state,
            path,
            "this node stopped sequencing while the request was forwarded to it; retry",
        );
    }
    match state.registry.leader_address().await {
        Ok(Some(leader)) => forward(&standby, &leader, request).await,
        Ok(None) => unavailable(
            state,
            path,
            "no node of this registry sequences right now (a new leader is being elected); retry",
        ),
        Err(error) => {
            tracing::warn!(%error, "reading the sequencer lease to forward a write");
            unavailable(
                state,
                path,
                "the leader of this registry cannot be found; retry",
            )
        }
    }
}

/// Streams `request` to `leader` and its answer back.
async fn forward(standby: &Standby, leader: &str, request: Request) -> Response {
    let state = &standby.app;
    let node = state
        .registry
        .health()
        .leadership
        .map(|l| l.node)
        .unwrap_or_default();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let target = format!(
        "{}{}",
        leader.trim_end_matches('/'),
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    if let Ok(value) = HeaderValue::from_str(&node) {
        headers.insert(FORWARDED_BY, value.clone());
    }
    if let Ok(value) = HeaderValue::from_str(&format!("1.1 {node}")) {
        headers.append(header::VIA, value);
    }
    let sent = standby
        .forwarder
        .client
        .request(parts.method, &target)
        .headers(headers)
        .timeout(standby.forwarder.timeout)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(%error, %leader, "forwarding a write to the leader failed");
            return unavailable(
                state,
                &path,
                "the leader of this registry is unreachable; retry",
            );
        }
    };
    if answer.status().is_success()
        && let Err(error) = state.registry.catch_up().await
    {
        // The write is done; this node serves it within its poll interval.
        tracing::warn!(%error, "reading the checkpoint after a forwarded write");
    }
    let status = answer.status();
    let mut headers = answer.headers().clone();
    strip_hop_by_hop(&mut headers);
    if let Ok(value) = HeaderValue::from_str(leader) {
        headers.insert(LEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("1.1 {node}")) {
        headers.append(header::VIA, value);
    }
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named by `Connection` are of the connection too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// `503` with `Retry-After` in the format of the door of `path`.
fn unavailable(state: &AppState, path: &str, reason: &str) -> Response {
    if path == "/v2" || path.starts_with("/v2/") {
        let error = OciError::from(ServiceError::Unavailable {
            retry_after: 1,
            reason: reason.into(),
        });
        return super::oci::respond(state, error);
    }
    super::error::unavailable(1, reason)
}
