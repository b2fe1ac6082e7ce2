//! A record's page: its log, its index in the registry log, its entries
//! decoded, its signing key, and its inclusion receipt, which the page's
//! script verifies in the browser (`assets/verify.js`) like a package
//! page's releases.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use cairn_service::catalogue::RecordView;
use serde::{Deserialize, Serialize};

use crate::http::AppState;

#[derive(Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    log: String,
    #[serde(default)]
    record: String,
}

#[derive(Serialize)]
struct RecordPage {
    record: RecordView,
    /// The package the log belongs to, for a package or metadata log.
    package: Option<String>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    super::page(&state, "record.html", async |_site| {
        let registry = &state.registry;
        let caller = super::caller(registry, &headers).await?;
        registry.authorize_log_read(caller.as_ref())?;
        let record = registry
            .record_view(params.log.trim(), params.record.trim())
            .await?;
        let package = record.log_name.as_deref().map(|name| {
            cairn_protocol::ext::meta_log_package(name)
                .map_or_else(|| name.to_owned(), |p| p.to_string())
        });
        if let Some(package) = &package {
            let namespace = package
                .split_once(':')
                .map_or(package.as_str(), |(ns, _)| ns);
            registry.authorize_namespace_read(caller.as_ref(), namespace)?;
        }
        Ok(RecordPage { record, package })
    })
    .await
}
