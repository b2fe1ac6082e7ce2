//! A reverse proxy serving the registry under a path prefix, as behind a
//! real one: it can tamper with the inclusion receipts it forwards, serves
//! a test-only page that puts a token in the tab's session storage, and
//! can add a test script to a page (`__keys=1`) that presses keys.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::dom::between;

/// A reverse proxy serving the registry under `prefix`.
#[derive(Clone)]
pub struct Proxy {
    pub upstream: Arc<OnceLock<String>>,
    pub prefix: String,
    pub tamper: Arc<AtomicBool>,
    pub url: String,
}

impl Proxy {
    pub async fn start(prefix: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            upstream: Arc::new(OnceLock::new()),
            prefix: prefix.to_owned(),
            tamper: Arc::new(AtomicBool::new(false)),
            url: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        proxy
    }

    /// The URL of the registry behind the proxy.
    pub fn public_url(&self) -> String {
        format!("{}{}", self.url, self.prefix)
    }
}

/// Flips a character of the first hash of an inclusion receipt's proof.
fn tampered(receipt: &str) -> String {
    let mut lines: Vec<String> = receipt.split('\n').map(str::to_owned).collect();
    let at = lines.iter().position(|l| l.starts_with("index ")).unwrap() + 1;
    assert!(!lines[at].is_empty(), "a receipt with an empty proof");
    let first = if lines[at].starts_with('A') { "B" } else { "A" };
    lines[at].replace_range(0..1, first);
    lines.join("\n")
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Some(query) = path.strip_prefix("/__test/login?") {
        // What the token form does, without typing: a token in this tab's
        // session storage, then the page.
        let token = between(&format!("{query}&"), "token=", "&")
            .unwrap()
            .to_owned();
        let next = format!("{}/", proxy.prefix);
        let page = format!(
            "<!doctype html><script>sessionStorage.setItem('cairn.token', {});\
             location.replace({});</script>",
            serde_json::Value::String(token),
            serde_json::Value::String(next)
        );
        return Response::builder()
            .header("content-type", "text/html")
            .body(Body::from(page))
            .unwrap();
    }
    if path == format!("{}/__test/keys.js", proxy.prefix) {
        return Response::builder()
            .header("content-type", "text/javascript")
            .body(Body::from(KEYS_JS))
            .unwrap();
    }
    let Some(rest) = path.strip_prefix(&proxy.prefix) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("outside the prefix"))
            .unwrap();
    };
    let upstream = proxy.upstream.get().unwrap();
    let mut outgoing = reqwest::Client::new().request(
        request.method().clone(),
        format!("{upstream}{}", if rest.is_empty() { "/" } else { rest }),
    );
    for (name, value) in request.headers() {
        if name != "host" && name != "connection" {
            outgoing = outgoing.header(name, value);
        }
    }
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    let answer = outgoing.body(body).send().await.unwrap();
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    let mut bytes = answer.bytes().await.unwrap().to_vec();
    if rest.starts_with("/receipt/") && proxy.tamper.load(Ordering::SeqCst) {
        bytes = tampered(std::str::from_utf8(&bytes).unwrap()).into_bytes();
    }
    if path.contains("__keys=1") {
        // After the page's own scripts (deferred scripts run in order).
        let page = String::from_utf8(bytes).unwrap().replace(
            "</head>",
            &format!(
                "<script src=\"{}/__test/keys.js\" defer></script></head>",
                proxy.prefix
            ),
        );
        bytes = page.into_bytes();
    }
    response.body(Body::from(bytes)).unwrap()
}

/// Presses keys on a search page as a person would, starting in the
/// search box, and records where the focus went after each key in
/// `data-focus-trail` on the body (`|`-separated: the focused link's
/// text, or `#id` of another element). Enter on a result link is the
/// browser's own behaviour for links; the script records the link's
/// `href` instead of leaving the page.
const KEYS_JS: &str = r##"(function () {
  function name(el) {
    if (!el) { return "none"; }
    if (el.tagName === "A") { return el.textContent; }
    return "#" + (el.id || el.tagName);
  }
  function press(key) {
    var target = document.activeElement || document.body;
    var event = new KeyboardEvent("keydown", { key: key, bubbles: true, cancelable: true });
    target.dispatchEvent(event);
    return name(document.activeElement);
  }
  var box = document.getElementById("search-q");
  box.focus();
  var trail = [name(document.activeElement)];
  ["ArrowDown", "ArrowDown", "ArrowDown", "ArrowUp", "End", "Home", "ArrowUp"].forEach(function (k) {
    trail.push(press(k));
  });
  press("ArrowDown");
  var focused = document.activeElement;
  trail.push("enter:" + (focused && focused.tagName === "A" ? focused.getAttribute("href") : "none"));
  document.body.setAttribute("data-focus-trail", trail.join("|"));
})();
"##;
