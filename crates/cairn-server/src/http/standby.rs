//! Writes at a standby node: answered `503` with `Retry-After`, in the
//! format of the door they came through, before anything is read or
//! written.
//!
//! A node of a cluster that does not hold the sequencer lease serves every
//! read, but does not accept writes: publish validation and the OCI push
//! queue rely on the sequencer's in-memory state, which only the leader
//! has. A load balancer sends writes to the leader (its `/readyz` says
//! `"leader": true`), and a client that reaches a standby retries.

use axum::extract::{Request, State};
use axum::http::Method;
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

/// What a standby answers a write.
const STANDBY: &str = "this node is a standby: another node of this registry accepts writes \
                       (it holds the sequencer lease); retry";

/// Refuses writes while this node is a standby.
pub(super) async fn refuse_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method();
    let path = request.uri().path();
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || (*method == Method::POST && READS.contains(&path));
    if reads || !state.registry.is_standby() {
        return next.run(request).await;
    }
    if path == "/v2" || path.starts_with("/v2/") {
        let error = OciError::from(ServiceError::Unavailable {
            retry_after: 1,
            reason: STANDBY.into(),
        });
        return super::oci::respond(&state, error);
    }
    super::error::unavailable(1, STANDBY)
}
