//! The metrics listener: Prometheus text at `/metrics`, on its own address
//! so it can stay private while the registry is public.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_service::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

async fn metrics(State(registry): State<Registry>) -> Response {
    let size = registry
        .latest_checkpoint()
        .map_or(0, |c| c.checkpoint.checkpoint.log_length);
    let body = registry.metrics().render(&[
        (
            "cairn_checkpoint_size",
            "Records covered by the latest checkpoint.",
            size,
        ),
        (
            "cairn_backlog_records",
            "Records accepted and not yet sequenced.",
            registry.backlog_len(),
        ),
    ]);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
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
