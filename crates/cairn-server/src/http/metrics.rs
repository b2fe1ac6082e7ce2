//! The metrics listener: Prometheus text at `/metrics`, on its own address
//! so it can stay private while the registry is public. What is exported
//! is defined in `cairn_service::metrics`.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_service::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// `GET /metrics`: the Prometheus text format (0.0.4), or OpenMetrics
/// when the scraper asks for it (`Accept: application/openmetrics-text`).
async fn metrics(State(registry): State<Registry>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"));
    let body = registry.render_metrics(openmetrics).await;
    let content_type = if openmetrics {
        cairn_service::metrics::OPENMETRICS_TEXT
    } else {
        cairn_service::metrics::PROMETHEUS_TEXT
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// Binds `addr` and serves `/metrics` until `shutdown` turns true; returns
/// the bound address.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "metrics listener failed");
        }
    });
    Ok(bound)
}
