//! The web catalogue: HTML pages served by `cairn serve` itself at `/`.
//!
//! Every page is rendered on the server from the same use cases as the
//! JSON API (`cairn_service`: search, package and namespace views, the
//! latest checkpoint) with minijinja templates compiled into the binary,
//! HTML auto-escaping on; the stylesheet and the scripts are embedded too
//! ([`assets`]). Links carry the path of `--public-url`, so the pages work
//! behind a proxy that serves the registry under a prefix.
//!
//! Reads are authorised exactly as on the API. A private registry
//! (`--anonymous-read false`) answers an anonymous page request with a
//! token form and nothing else: the page's script keeps the token in
//! `sessionStorage` and fetches the page again with `Authorization:
//! Bearer`, so the server renders only what that token may read.
//!
//! What this module is *not*: an API. Nothing here is in `openapi/`.
//! Pages read through the service's use cases; the few reads made for
//! people only (a release's WIT, tag history, the diff of two versions,
//! the checkpoint history, one record) are in `cairn_service::catalogue`
//! and recompute what the log already says.

mod assets;
mod diff;
mod home;
mod log;
mod namespace;
mod package;
mod record;
mod search;
mod wit;

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_service::identity::Caller;
use cairn_service::{Registry, ServiceError};
use minijinja::Environment;
use minijinja::value::Serde;
use serde::Serialize;

use crate::http::AppState;

/// The pages and assets; merged into the application's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::page))
        .route("/search", get(search::page))
        .route("/packages/{name}", get(package::page))
        .route("/packages/{name}/diff", get(diff::page))
        .route("/packages/{name}/versions/{version}/wit", get(wit::page))
        .route("/namespaces/{namespace}", get(namespace::page))
        .route("/log", get(log::page))
        .route("/log/record", get(record::page))
        .route("/assets/{file}", get(assets::serve))
}

/// Where the registry is reached, from `--public-url`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Site {
    /// The public URL without a trailing `/`.
    url: String,
    /// Its path (`""` or `/prefix`): every link starts with it.
    base: String,
    /// Its host and port: what OCI clients and `wkg` are given.
    host: String,
    /// The C2SP origin of the log.
    origin: String,
    /// Whether reads need a token.
    private: bool,
    /// The note key's verifier key: what the pages' checks trust unless
    /// the browser pinned another.
    verifier_key: String,
}

impl Site {
    fn of(registry: &Registry) -> Self {
        let config = registry.config();
        let url = config.public_url.trim_end_matches('/').to_owned();
        let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let (host, base) = match after_scheme.split_once('/') {
            Some((host, path)) => (host.to_owned(), format!("/{path}")),
            None => (after_scheme.to_owned(), String::new()),
        };
        Self {
            url,
            base,
            host,
            origin: config.origin.clone(),
            private: registry.reads_are_private(),
            verifier_key: registry.note_verifier_key().to_string(),
        }
    }
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("templates/base.html")),
            ("home.html", include_str!("templates/home.html")),
            ("search.html", include_str!("templates/search.html")),
            ("package.html", include_str!("templates/package.html")),
            ("namespace.html", include_str!("templates/namespace.html")),
            ("log.html", include_str!("templates/log.html")),
            ("wit.html", include_str!("templates/wit.html")),
            ("diff.html", include_str!("templates/diff.html")),
            ("record.html", include_str!("templates/record.html")),
            ("token.html", include_str!("templates/token.html")),
            ("error.html", include_str!("templates/error.html")),
        ] {
            // The templates are part of the binary: a syntax error in one
            // fails the tests that render it, and the page answers 500.
            if let Err(error) = env.add_template(name, source) {
                tracing::error!(%error, template = name, "web template does not compile");
            }
        }
        env
    })
}

/// An HTML answer.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Pages depend on the caller's token: never shared by caches.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Renders template `name` with `page` (and the site as `site`).
fn render(site: &Site, status: StatusCode, name: &str, page: &impl Serialize) -> Response {
    let context = minijinja::context! {
        site => Serde(site),
        page => Serde(page),
    };
    match environment()
        .get_template(name)
        .and_then(|t| t.render(context))
    {
        Ok(body) => html(status, body),
        Err(error) => {
            tracing::error!(%error, template = name, "web page failed to render");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><html lang=\"en\"><title>cairn</title><h1>Internal error</h1></html>"
                    .to_owned(),
            )
        }
    }
}

#[derive(Serialize)]
struct ErrorPage {
    title: &'static str,
    message: String,
}

/// A page for a failed read: the token form where credentials are
/// missing or refused, else the error's message (never internals).
fn error_page(site: &Site, error: &ServiceError) -> Response {
    let code = match error {
        ServiceError::Warg(warg) => warg.status(),
        ServiceError::Client { kind, .. } => kind.status(),
        ServiceError::Unavailable { .. } => 503,
        ServiceError::Internal(_) => 500,
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = if status.is_server_error() {
        tracing::error!(%error, "web page failed");
        "the registry could not answer; try again shortly".to_owned()
    } else {
        error.to_string()
    };
    if status == StatusCode::UNAUTHORIZED {
        return render(
            site,
            status,
            "token.html",
            &ErrorPage {
                title: "Token needed",
                message,
            },
        );
    }
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::BAD_REQUEST => "Bad request",
        _ => "Error",
    };
    render(site, status, "error.html", &ErrorPage { title, message })
}

/// The caller of a page request (`Authorization: Bearer`, sent by the
/// page's script on a private registry).
async fn caller(registry: &Registry, headers: &HeaderMap) -> Result<Option<Caller>, ServiceError> {
    crate::http::auth::caller(registry, headers).await
}

/// Runs a page: its answer, or the page for its error.
async fn page<T, F>(state: &AppState, name: &str, build: F) -> Response
where
    T: Serialize,
    F: AsyncFnOnce(&Site) -> Result<T, ServiceError>,
{
    let site = Site::of(&state.registry);
    match build(&site).await {
        Ok(page) => render(&site, StatusCode::OK, name, &page),
        Err(error) => error_page(&site, &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let env = environment();
        for name in [
            "base.html",
            "home.html",
            "search.html",
            "package.html",
            "namespace.html",
            "log.html",
            "wit.html",
            "diff.html",
            "record.html",
            "token.html",
            "error.html",
        ] {
            env.get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
