//! The HTTP server: routes and the middleware stack.

mod api;
pub mod auth;
mod c2sp;
mod content;
pub mod error;
mod extract;
pub mod metrics;
mod oci;
mod search;
mod standby;
mod trust;
mod warg;
mod withhold;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Uri};
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use cairn_protocol::wire::WargError;
use cairn_service::Registry;
use tower::{BoxError, ServiceBuilder};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use error::json;

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The registry.
    pub registry: Registry,
    /// The discovery document served at `/.well-known/wasm-pkg/registry.json`.
    pub well_known: Arc<serde_json::Value>,
    /// The trusted OIDC issuers (trusted publishing).
    pub oidc: Arc<crate::oidc::Verifier>,
    /// Pull-through of imported namespaces.
    pub mirror: Arc<crate::upstream::Mirror>,
}

impl AppState {
    /// State for `registry` with a discovery document and no OIDC issuers.
    pub fn new(registry: Registry, well_known: serde_json::Value) -> Self {
        Self {
            registry,
            well_known: Arc::new(well_known),
            oidc: Arc::new(crate::oidc::Verifier::new(Vec::new())),
            mirror: Arc::new(crate::upstream::Mirror::default()),
        }
    }
}

/// How long an OCI manifest push may wait for its records to be published
/// (the service's wait), on top of the request timeout.
pub(crate) const OCI_PUSH_WAIT: Duration = Duration::from_secs(30);

/// HTTP limits.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Largest JSON request body.
    pub json_body_bytes: usize,
    /// Timeout of ordinary requests (OCI manifest routes get this plus the
    /// push wait; a manifest body must arrive within it).
    pub request_timeout: Duration,
    /// Timeout of content and blob uploads and downloads (and only those).
    pub upload_timeout: Duration,
    /// Requests served at once before shedding load.
    pub max_in_flight: usize,
}

#[derive(Clone, Default)]
struct RequestIds(Arc<AtomicU64>);

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = self.0.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{id}", std::process::id())
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

/// Turns middleware failures into answers in the warg format.
async fn middleware_error(error: BoxError) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        return error::unavailable(1, "the server is overloaded; retry shortly");
    }
    if error.is::<tower::timeout::error::Elapsed>() {
        return error::warg(&WargError::Message {
            status: 408,
            message: "the request took too long".into(),
        });
    }
    tracing::error!(%error, "middleware error");
    error::warg(&WargError::Message {
        status: 500,
        message: "internal server error".into(),
    })
}

/// Unknown paths: in the OCI format under `/v2/`, else the warg one.
async fn fallback(state: State<AppState>, method: Method, uri: Uri) -> Response {
    if uri.path() == "/v2" || uri.path().starts_with("/v2/") {
        oci::fallback(state, method, uri).await
    } else {
        warg::not_found().await
    }
}

async fn well_known(State(state): State<AppState>) -> Response {
    json(StatusCode::OK, state.well_known.as_ref())
}

async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let health = state.registry.health();
    let checkpoint = state
        .registry
        .latest_checkpoint()
        .map(|c| c.checkpoint.checkpoint.log_length);
    // A standby of a cluster is ready once it serves a checkpoint: it
    // serves reads and accepts writes (forwarding those that need the
    // leader's memory; `leader` says which node sequences).
    let standby = health.leadership.as_ref().is_some_and(|l| !l.leader);
    let ready = checkpoint.is_some()
        && (standby || (health.sequencer_running && health.sequencer_error.is_none()));
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "sequencer": { "running": health.sequencer_running, "error": health.sequencer_error },
        "checkpoint": checkpoint,
        "backlog": state.registry.backlog_len(),
    });
    if let Some(leadership) = &health.leadership {
        body["node"] = serde_json::json!({
            "id": leadership.node,
            "leader": leadership.leader,
            "epoch": leadership.epoch,
        });
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}

/// The whole application. Middleware, outermost first: request id →
/// tracing → load shedding and concurrency limit → per-group timeout →
/// per-group body limit.
pub fn router(state: AppState, limits: &HttpLimits) -> Router {
    let api = Router::new()
        .route("/v1/fetch/checkpoint", get(warg::fetch_checkpoint))
        .route("/v1/fetch/logs", post(warg::fetch_logs))
        .route("/v1/fetch/names", post(warg::fetch_names))
        .route("/v1/package/{log_id}/record", post(warg::publish))
        .route(
            "/v1/package/{log_id}/record/{record_id}",
            get(warg::get_record),
        )
        .route("/v1/content/{digest}", get(warg::content_sources))
        .route("/v1/proof/consistency", post(warg::prove_consistency))
        .route("/v1/proof/inclusion", post(warg::prove_inclusion))
        .route("/v1/ledger", get(warg::ledger))
        .route("/v1/ledger/records/{start}", get(warg::ledger_records))
        .route("/v1/verify/checkpoint", post(warg::verify_checkpoint))
        .route("/.well-known/wasm-pkg/registry.json", get(well_known))
        .route("/checkpoint", get(c2sp::checkpoint))
        .route("/tile/{*path}", get(c2sp::tile))
        .route("/receipt/{log_id}/{record_id}", get(c2sp::receipt))
        .route("/api/v1/namespaces/{namespace}", get(api::namespace))
        .route(
            "/api/v1/namespaces/{namespace}/publishers/{identity}",
            put(api::add_publisher).delete(api::remove_publisher),
        )
        .route(
            "/api/v1/namespaces/{namespace}/signature-policy",
            put(trust::set_signature_policy),
        )
        .route("/api/v1/packages/{name}", get(api::package))
        .route("/api/v1/packages/{name}/yank", post(api::yank))
        .route(
            "/api/v1/packages/{name}/dependents",
            get(search::dependents),
        )
        .route("/api/v1/search", get(search::search))
        .route("/api/v1/oidc/token", post(api::oidc_token))
        .route(
            "/api/v1/admin/identities",
            get(api::identities).post(api::create_identity),
        )
        .route(
            "/api/v1/admin/identities/{name}/disable",
            post(api::disable_identity),
        )
        .route("/api/v1/admin/identities/{name}/keys", post(api::bind_key))
        .route(
            "/api/v1/admin/identities/{name}/keys/{key_id}",
            delete(api::unbind_key),
        )
        .route(
            "/api/v1/admin/tokens",
            get(api::tokens).post(api::create_token),
        )
        .route("/api/v1/admin/tokens/{id}", delete(api::revoke_token))
        .route(
            "/api/v1/admin/namespaces/{namespace}",
            put(api::set_namespace),
        )
        .route("/api/v1/admin/audit", get(api::audit))
        .route(
            "/api/v1/admin/content/{digest}/withhold",
            post(withhold::withhold),
        )
        .route(
            "/api/v1/admin/content/{digest}/restore",
            post(withhold::restore),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(fallback)
        .method_not_allowed_fallback(warg::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.json_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(middleware_error))
                .timeout(limits.request_timeout),
        );
    let transfers = Router::new()
        .route(
            "/v1/package/{log_id}/record/{record_id}/content/{digest}",
            post(warg::upload_content).put(warg::upload_content),
        )
        .route("/content/{name}", get(content::download))
        .method_not_allowed_fallback(warg::method_not_allowed)
        // Uploads stream to the blob store, which enforces the content limit.
        .layer(DefaultBodyLimit::disable())
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(middleware_error))
                .timeout(limits.upload_timeout),
        );
    // The OCI Distribution API, in three groups by how long a request may
    // take. Blobs stream (the blob store enforces the content limit): only
    // they get the upload timeout.
    let oci_blobs = Router::new()
        .route(
            "/v2/{ns}/{name}/blobs/{digest}",
            get(oci::get_blob)
                .head(oci::head_blob)
                .delete(oci::delete_blob),
        )
        .route("/v2/{ns}/{name}/blobs/uploads/", post(oci::start_upload))
        .route("/v2/{ns}/{name}/blobs/uploads", post(oci::start_upload))
        .route(
            "/v2/{ns}/{name}/blobs/uploads/{id}",
            get(oci::upload_status)
                .patch(oci::upload_chunk)
                .put(oci::finish_upload)
                .delete(oci::cancel_upload),
        )
        .method_not_allowed_fallback(oci::method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(middleware_error))
                .timeout(limits.upload_timeout),
        );
    // A manifest push waits for its records to be published (up to
    // `OCI_PUSH_WAIT`) after its body, which has the ordinary deadline of
    // its own (the handler reads it only once the caller may push).
    let oci_manifests = Router::new()
        .route(
            "/v2/{ns}/{name}/manifests/{reference}",
            get(oci::get_manifest)
                .put(oci::put_manifest)
                .delete(oci::delete_manifest),
        )
        .method_not_allowed_fallback(oci::method_not_allowed)
        .layer(axum::Extension(oci::ManifestBodyDeadline(
            limits.request_timeout,
        )))
        .layer(DefaultBodyLimit::disable())
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(middleware_error))
                .timeout(limits.request_timeout + OCI_PUSH_WAIT),
        );
    let oci = Router::new()
        .route("/v2/", get(oci::ping))
        .route("/v2", get(oci::ping))
        .route("/v2/token", get(oci::token))
        .route("/v2/{ns}/{name}/tags/list", get(oci::tags))
        .route("/v2/{ns}/{name}/referrers/{digest}", get(oci::referrers))
        .method_not_allowed_fallback(oci::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.json_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(middleware_error))
                .timeout(limits.request_timeout),
        )
        .merge(oci_manifests)
        .merge(oci_blobs);
    // The web catalogue's pages (HTML, not part of the API: see
    // `crate::web`), with the ordinary deadline.
    let web = crate::web::router()
        .method_not_allowed_fallback(warg::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(middleware_error))
                .timeout(limits.request_timeout),
        );
    // A standby handles or forwards writes (see `standby`); a forwarded
    // request gets the leader's longest deadline.
    let standby = axum::middleware::from_fn_with_state(
        standby::Standby {
            app: state.clone(),
            forwarder: Arc::new(standby::Forwarder::new(
                (limits.request_timeout + OCI_PUSH_WAIT).max(limits.upload_timeout),
            )),
        },
        standby::forward_writes,
    );
    api.merge(transfers)
        .merge(oci)
        .merge(web)
        .with_state(state)
        .layer(standby)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(middleware_error))
                .load_shed()
                .concurrency_limit(limits.max_in_flight),
        )
        .layer(axum::middleware::from_fn(close_after_refused_body))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(RequestIds::default()))
}

/// A request refused before its body was read leaves unread bytes on the
/// connection, which the server then drops: the refusal says
/// `Connection: close`, so that clients do not reuse the connection (and
/// meet a broken pipe on their next request).
async fn close_after_refused_body(
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(axum::http::header::TRANSFER_ENCODING)
        || headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    let mut response = next.run(request).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}
