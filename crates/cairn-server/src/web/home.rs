//! The front page: a search box, the releases published last (those the
//! caller may read), the latest checkpoint with the log's origin and
//! verifier key, and how to point `wkg`, `oras` and `warg` at the registry.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use cairn_service::search::RecentRelease;
use serde::Serialize;

use super::log::{CheckpointView, checkpoint_view};
use crate::http::AppState;

/// Releases listed on the front page.
const RECENT: u32 = 20;

#[derive(Serialize)]
struct Home {
    recent: Vec<RecentRelease>,
    checkpoint: Option<CheckpointView>,
}

pub(super) async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    super::page(&state, "home.html", async |_site| {
        let registry = &state.registry;
        let caller = super::caller(registry, &headers).await?;
        let recent = registry.recent_releases(caller.as_ref(), RECENT).await?;
        let checkpoint = match registry.authorize_log_read(caller.as_ref()) {
            Ok(()) => checkpoint_view(registry),
            Err(_) => None,
        };
        Ok(Home { recent, checkpoint })
    })
    .await
}
