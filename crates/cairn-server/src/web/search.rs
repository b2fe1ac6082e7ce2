//! The search page: one box for everything. `import:PATTERN`,
//! `export:PATTERN` and `namespace:NS` are filters (the patterns of
//! `GET /api/v1/search`: `wasi:cli/*`, `wasi:http/incoming-handler@0.2.*`),
//! any other word is a part of the package name. Results come a page at a
//! time from the search service; the "next page" link carries `after`.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use cairn_service::ServiceError;
use cairn_service::search::{DEFAULT_PAGE, SearchPage, SearchRequest};
use serde::{Deserialize, Serialize};

use crate::http::AppState;

#[derive(Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    q: String,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Serialize)]
struct Results {
    query: String,
    results: Option<SearchPage>,
}

/// The search the text of the box asks for.
pub(super) fn parse_query(text: &str) -> Result<SearchRequest, ServiceError> {
    let mut request = SearchRequest {
        limit: DEFAULT_PAGE,
        ..SearchRequest::default()
    };
    let once = |slot: &mut Option<String>, what: &str, value: &str| {
        if slot.is_some() {
            return Err(ServiceError::bad_request(format!(
                "`{what}` is given twice"
            )));
        }
        if value.is_empty() {
            return Err(ServiceError::bad_request(format!(
                "`{what}` needs a value, e.g. {what}:wasi:cli/*"
            )));
        }
        *slot = Some(value.to_owned());
        Ok(())
    };
    for word in text.split_whitespace() {
        if let Some(pattern) = word.strip_prefix("import:") {
            once(&mut request.import, "import:", pattern)?;
        } else if let Some(pattern) = word.strip_prefix("export:") {
            once(&mut request.export, "export:", pattern)?;
        } else if let Some(namespace) = word.strip_prefix("namespace:") {
            once(&mut request.namespace, "namespace:", namespace)?;
        } else {
            once(&mut request.text, "name text", word)?;
        }
    }
    Ok(request)
}

pub(super) async fn page(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    super::page(&state, "search.html", async |_site| {
        let registry = &state.registry;
        let caller = super::caller(registry, &headers).await?;
        let query = params.q.trim().to_owned();
        if query.is_empty() {
            // The form alone (still asking a private registry for a token).
            registry.read_scope(caller.as_ref())?;
            return Ok(Results {
                query,
                results: None,
            });
        }
        let mut request = parse_query(&query)?;
        request.after = params.after.clone();
        let results = registry.search(caller.as_ref(), &request).await?;
        Ok(Results {
            query,
            results: Some(results),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_splits_into_filters_and_name_text() {
        let r = parse_query("import:wasi:cli/* export:wasi:http/* namespace:acme app").unwrap();
        assert_eq!(r.import.as_deref(), Some("wasi:cli/*"));
        assert_eq!(r.export.as_deref(), Some("wasi:http/*"));
        assert_eq!(r.namespace.as_deref(), Some("acme"));
        assert_eq!(r.text.as_deref(), Some("app"));
        for bad in ["import:", "a b", "import:x import:y"] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
    }
}
