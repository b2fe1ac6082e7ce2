//! A namespace's page: whether it is this registry's own or imported, its
//! owners and publishers, its publish policy (import rules, content
//! rules, immutable tags), trusted publishers, and its packages a page at
//! a time (the search service with a namespace filter).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use cairn_service::packages::NamespaceInfo;
use cairn_service::search::{DEFAULT_PAGE, SearchPage, SearchRequest};
use serde::{Deserialize, Serialize};

use crate::http::AppState;

#[derive(Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Serialize)]
struct Namespace {
    info: NamespaceInfo,
    packages: SearchPage,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    super::page(&state, "namespace.html", async |_site| {
        let registry = &state.registry;
        let caller = super::caller(registry, &headers).await?;
        registry.authorize_namespace_read(caller.as_ref(), &namespace)?;
        let info = registry.namespace_info(&namespace)?;
        let request = SearchRequest {
            namespace: Some(namespace.clone()),
            after: params.after.clone(),
            limit: DEFAULT_PAGE,
            ..SearchRequest::default()
        };
        let packages = registry.search(caller.as_ref(), &request).await?;
        Ok(Namespace { info, packages })
    })
    .await
}
