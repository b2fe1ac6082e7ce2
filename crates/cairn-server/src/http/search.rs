//! Search over cairn's own API: `GET /api/v1/search` (packages by name,
//! by the interfaces their releases import or export, by namespace) and
//! `GET /api/v1/packages/{name}/dependents` (releases importing a WIT
//! package's interfaces). Both read the search index only
//! (`cairn_service::search`), are authorised like every other read, and
//! page with `limit` and `after` (the `next` of the previous answer).
//! Errors use the warg format (`{"status": N, "message": "…"}`); an
//! unknown or repeated parameter is a 400, so a typo never widens a search.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cairn_service::search::{SearchRequest, page_limit};

use super::AppState;
use super::error::{ApiError, bad_request, json};

type Result = std::result::Result<Response, ApiError>;

/// The parameters of a request, each at most once and all known.
fn params(
    raw: Option<&str>,
    known: &[&str],
) -> std::result::Result<Vec<(String, String)>, ApiError> {
    let params = super::oci::query(raw);
    for (i, (key, _)) in params.iter().enumerate() {
        if !known.contains(&key.as_str()) {
            return Err(bad_request(format!(
                "unknown parameter `{key}` (known: {})",
                known.join(", ")
            )));
        }
        if params[..i].iter().any(|(k, _)| k == key) {
            return Err(bad_request(format!("parameter `{key}` is given twice")));
        }
    }
    Ok(params)
}

fn take(params: &[(String, String)], key: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// `GET /api/v1/search?q=&prefix=&namespace=&import=&export=&limit=&after=`.
pub(super) async fn search(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result {
    let params = params(
        raw.as_deref(),
        &[
            "q",
            "prefix",
            "namespace",
            "import",
            "export",
            "limit",
            "after",
        ],
    )?;
    let request = SearchRequest {
        text: take(&params, "q"),
        prefix: take(&params, "prefix"),
        namespace: take(&params, "namespace"),
        import: take(&params, "import"),
        export: take(&params, "export"),
        after: take(&params, "after"),
        limit: page_limit(take(&params, "limit").as_deref())?,
    };
    let caller = super::auth::caller(&state.registry, &headers).await?;
    let page = state.registry.search(caller.as_ref(), &request).await?;
    Ok(json(StatusCode::OK, &page))
}

/// `GET /api/v1/packages/{name}/dependents?limit=&after=`.
pub(super) async fn dependents(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result {
    let params = params(raw.as_deref(), &["limit", "after"])?;
    let limit = page_limit(take(&params, "limit").as_deref())?;
    let caller = super::auth::caller(&state.registry, &headers).await?;
    let page = state
        .registry
        .dependents(
            caller.as_ref(),
            &name,
            take(&params, "after").as_deref(),
            limit,
        )
        .await?;
    Ok(json(StatusCode::OK, &page))
}
