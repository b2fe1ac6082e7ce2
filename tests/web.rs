//! The web catalogue in a real browser: headless Chromium loads the pages
//! of a registry holding packages published over the warg door (the warg
//! client) and the OCI door, and the tests assert on the DOM after the
//! pages' scripts ran (`--dump-dom`).
//!
//! The registry is reached through a small proxy that serves it under a
//! path prefix (`--public-url http://proxy/registry`, as behind a reverse
//! proxy): every link, asset and receipt the pages use must carry the
//! prefix, or the proxy answers 404. The proxy can also tamper with the
//! inclusion receipts it forwards, to show that the in-browser
//! verification then fails, and it serves one test-only page that puts a
//! token in the tab's session storage, as the token form does.
//!
//! With `CAIRN_SCREENSHOTS=<dir>` the main pages are also saved as PNG
//! screenshots there (`scripts/screenshots.sh`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_server::config::ServeArgs;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

// ---- the browser ---------------------------------------------------------

/// Chromium, or `None` (skip) outside CI when it is not installed.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and Chromium is missing at {} (Debian package `chromium`)",
        path.display()
    );
    eprintln!("skipping: Chromium is not installed at {}", path.display());
    None
}

/// A fresh browser profile: one tab's storage for a sequence of loads.
struct Browser {
    binary: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    fn new(binary: &Path) -> Self {
        Self {
            binary: binary.to_path_buf(),
            profile: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&self, extra: &[String], url: &str) -> String {
        let mut command = std::process::Command::new(&self.binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(extra)
            .arg(url);
        // Blocking, on a thread of its own: the server under test runs on
        // this runtime.
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            output.status.success(),
            "chromium failed on {url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The DOM of `url` once its scripts ran.
    async fn dom(&self, url: &str) -> String {
        self.run(&["--dump-dom".to_owned()], url).await
    }

    /// The DOM of `url` once `done` holds for it: the pages' scripts
    /// fetch and verify asynchronously, and a loaded machine may end the
    /// browser's virtual time budget first. At most five loads.
    async fn dom_when(&self, url: &str, done: impl Fn(&str) -> bool) -> String {
        let mut dom = String::new();
        for _ in 0..5 {
            dom = self.dom(url).await;
            if done(&dom) {
                break;
            }
        }
        dom
    }

    /// A 1280×900 screenshot of `url` into `path`.
    async fn screenshot(&self, url: &str, path: &Path) {
        self.run(
            &[
                format!("--screenshot={}", path.display()),
                "--window-size=1280,900".to_owned(),
                "--hide-scrollbars".to_owned(),
            ],
            url,
        )
        .await;
        assert!(path.exists(), "no screenshot of {url}");
    }
}

// ---- reading the DOM -------------------------------------------------------

/// The text between `start` (after it) and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

/// The inner text of the element with `id` (up to its closing `tag`).
fn element<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let open = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let from = open + dom[open..].find('>').unwrap() + 1;
    let to = from + dom[from..].find(&format!("</{tag}>")).unwrap();
    &dom[from..to]
}

/// The texts of the links in `html`, in order.
fn link_texts(html: &str) -> Vec<String> {
    html.split("<a ")
        .skip(1)
        .filter_map(|a| between(a, ">", "</a>"))
        .map(str::to_owned)
        .collect()
}

/// Every value of attribute `name` in `dom`.
fn attributes(dom: &str, name: &str) -> Vec<String> {
    dom.split(&format!(" {name}=\""))
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The basics every page must meet: a language, one `h1` first, no
/// heading level skipped, a label for every visible input, and no link,
/// asset or form outside the registry's path prefix.
fn assert_accessible(dom: &str, prefix: &str, page: &str) {
    assert!(dom.contains("<html lang=\"en\""), "{page}: no lang");
    let mut last = 0;
    let mut h1s = 0;
    for part in dom.split("<h").skip(1) {
        let Some(level) = part.chars().next().and_then(|c| c.to_digit(10)) else {
            continue;
        };
        if !part[1..].starts_with([' ', '>']) {
            continue;
        }
        if last == 0 {
            assert_eq!(level, 1, "{page}: the first heading is h{level}");
        }
        assert!(level <= last + 1, "{page}: h{last} is followed by h{level}");
        h1s += usize::from(level == 1);
        last = level;
    }
    assert_eq!(h1s, 1, "{page}: {h1s} h1 headings");
    for input in dom.split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap()];
        if tag.contains("type=\"hidden\"") {
            continue;
        }
        let id = between(tag, "id=\"", "\"").unwrap_or_else(|| panic!("{page}: input without id"));
        assert!(
            dom.contains(&format!("<label for=\"{id}\"")),
            "{page}: input #{id} has no label"
        );
    }
    for url in attributes(dom, "href")
        .into_iter()
        .chain(attributes(dom, "src"))
        .chain(attributes(dom, "action"))
        .chain(attributes(dom, "data-receipt"))
    {
        assert!(
            url.starts_with(&format!("{prefix}/")) || url.starts_with('#') || url.starts_with('?'),
            "{page}: `{url}` is outside {prefix}/"
        );
    }
}

// ---- the proxy -------------------------------------------------------------

/// A reverse proxy serving the registry under `prefix`.
#[derive(Clone)]
struct Proxy {
    upstream: Arc<OnceLock<String>>,
    prefix: String,
    tamper: Arc<AtomicBool>,
    url: String,
}

impl Proxy {
    async fn start(prefix: &str) -> Self {
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
    fn public_url(&self) -> String {
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
    response.body(Body::from(bytes)).unwrap()
}

// ---- the registry ----------------------------------------------------------

/// A component importing each of `imports` (an empty instance each).
fn component(imports: &[&str]) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let mut component = Component::new();
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    component.section(&types);
    let mut section = ComponentImportSection::new();
    for name in imports {
        section.import(*name, ComponentTypeRef::Instance(0));
    }
    component.section(&section);
    component.finish()
}

/// The yank reason, with markup that must be shown, never run.
const REASON: &str = "CVE-2026-0001: reads <script>alert(1)</script> the wrong file";

/// Starts a registry behind `proxy` and publishes: `acme:cli-app` 1.0.0
/// (yanked with [`REASON`]) and 1.1.0 and `acme:http-server` over OCI as
/// alice; `test:tool` and `test:lib` with the warg client, signed by a
/// key bound to bob.
async fn catalogue(db: TestDatabase, proxy: &Proxy, extra: ServeArgs) -> (TestServer, String) {
    let mut server = TestServer::start_with(
        db,
        ServeArgs {
            public_url: Some(proxy.public_url()),
            ..extra
        },
    )
    .await;
    // Clients talk to the server itself; browsers through the proxy.
    server.url = format!("http://{}", server.addr);
    proxy.upstream.set(server.url.clone()).unwrap();
    let alice = identity_with_token(
        &server,
        "alice",
        &["acme"],
        &[Action::Publish, Action::Yank],
    )
    .await;
    claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
    for (repo, tag, wasm) in [
        (
            "acme/cli-app",
            "1.0.0",
            component(&["wasi:cli/environment@0.2.0"]),
        ),
        (
            "acme/cli-app",
            "1.1.0",
            component(&["wasi:cli/environment@0.2.0", "wasi:sockets/tcp@0.2.0"]),
        ),
        (
            "acme/http-server",
            "1.0.0",
            component(&["wasi:http/types@0.2.1"]),
        ),
    ] {
        oci_push(&server, &alice, repo, tag, &wasm).await.unwrap();
    }
    let bob = identity_with_token(&server, "bob", &["test"], &[Action::Publish]).await;
    let key = new_key();
    bind(&server, "bob", &key).await;
    let dir = tempfile::tempdir().unwrap();
    let client = warg_client_with_token(dir.path(), &server.url, Some(bob.as_str())).await;
    for (name, version, wasm) in [
        ("test:tool", "0.1.0", component(&["wasi:cli/stdout@0.2.0"])),
        ("test:lib", "1.0.0", component(&["other:thing/x@1.0.0"])),
    ] {
        publish_release(&client, &key, name, version, wasm)
            .await
            .unwrap();
    }
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/packages/acme:cli-app/yank", server.url))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"version": "1.0.0", "reason": REASON}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    // The yank is visible once a checkpoint covers it.
    eventually(30, "the yank", || async {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/packages/acme:cli-app", server.url))
            .bearer_auth(&alice)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (body["versions"][0]["yank"]["reason"] == REASON).then_some(())
    })
    .await;
    (server, alice)
}

#[tokio::test]
async fn a_browser_uses_the_catalogue_behind_a_path_prefix() {
    let Some(binary) = chromium() else { return };
    let shots = std::env::var_os("CAIRN_SCREENSHOTS").map(PathBuf::from);
    for db in TestDatabase::all().await {
        let proxy = Proxy::start("/registry").await;
        let (server, _) = catalogue(db, &proxy, ServeArgs::default()).await;
        let kind = server.kind();
        let base = proxy.public_url();
        let browser = Browser::new(&binary);

        // Home: the releases published last, the checkpoint and its key.
        let home = browser.dom(&format!("{base}/")).await;
        assert_accessible(&home, "/registry", "home");
        let recent = link_texts(element(&home, "ol", "recent"));
        for name in ["acme:cli-app", "acme:http-server", "test:tool", "test:lib"] {
            assert!(
                recent.iter().any(|r| r == name),
                "{kind}: {name} in {recent:?}"
            );
        }
        assert_eq!(recent[0], "test:lib", "{kind}: newest first");
        let vkey = server.registry().note_verifier_key().to_string();
        assert!(home.contains(&vkey), "{kind}: verifier key");
        assert!(home.contains("wkg config --default-registry 127.0.0.1:"));

        // Search by interface: exactly the components that import it, each
        // a link in a list (reachable with the keyboard, in order).
        let url = format!("{base}/search?q=import%3Awasi%3Acli%2F*");
        let search = browser.dom(&url).await;
        assert_accessible(&search, "/registry", "search");
        let results = element(&search, "ol", "results");
        let names: Vec<String> = results
            .split("<h3>")
            .skip(1)
            .map(|h| link_texts(h)[0].clone())
            .collect();
        assert_eq!(names, ["acme:cli-app", "test:tool"], "{kind}");
        assert!(results.contains("href=\"/registry/packages/acme%3Acli-app\""));
        assert!(results.contains("imports wasi:cli/environment@0.2.0"));
        let none = browser
            .dom(&format!("{base}/search?q=import%3Awasi%3Anothing%2F*"))
            .await;
        assert!(none.contains("id=\"no-results\""), "{kind}");
        // A bad pattern is explained, not a blank page.
        let bad = browser.dom(&format!("{base}/search?q=import%3Aa_b")).await;
        assert!(bad.contains("invalid import pattern"), "{kind}: {bad}");

        // A package: versions newest first, who published them, the yank
        // and its reason (escaped), commands, and the verification.
        let verdicts = |dom: &str| dom.matches("data-verdict=").count() == 2;
        let package = browser
            .dom_when(&format!("{base}/packages/acme:cli-app"), verdicts)
            .await;
        assert_accessible(&package, "/registry", "package");
        let versions = element(&package, "ol", "versions");
        let order: Vec<&str> = versions
            .split("<h3>")
            .skip(1)
            .map(|h| h.split([' ', '<']).next().unwrap())
            .collect();
        assert_eq!(order, ["1.1.0", "1.0.0"], "{kind}");
        assert!(versions.contains("<dd class=\"published-by\">alice</dd>"));
        assert!(
            versions.contains(
                "CVE-2026-0001: reads &lt;script&gt;alert(1)&lt;/script&gt; the wrong file"
            ),
            "{kind}: the reason, escaped"
        );
        assert!(!package.contains("<script>alert"), "{kind}: markup ran");
        assert!(versions.contains("wkg get acme:cli-app@1.1.0"));
        assert!(versions.contains("oras pull 127.0.0.1:"));
        assert!(versions.contains("/acme/cli-app@sha256:"));
        assert_eq!(
            package.matches("data-verdict=\"passed\"").count(),
            2,
            "{kind}: both releases verified in the browser: {package}"
        );
        assert!(package.contains("Verification passed."));
        let tool = browser
            .dom_when(&format!("{base}/packages/test:tool"), |dom| {
                dom.contains("data-verdict=")
            })
            .await;
        assert!(
            tool.contains("<dd class=\"published-by\">bob</dd>"),
            "{kind}"
        );
        assert!(tool.contains("data-verdict=\"passed\""), "{kind}: {tool}");

        // A tampered proof fails, and says so.
        proxy.tamper.store(true, Ordering::SeqCst);
        let tampered = browser
            .dom_when(&format!("{base}/packages/acme:cli-app"), verdicts)
            .await;
        proxy.tamper.store(false, Ordering::SeqCst);
        assert_eq!(
            tampered.matches("data-verdict=\"failed\"").count(),
            2,
            "{kind}: {tampered}"
        );
        assert!(!tampered.contains("data-verdict=\"passed\""));
        assert!(tampered.contains("Verification FAILED: the inclusion proof does not lead"));

        // A namespace: owners, policy and packages.
        let namespace = browser.dom(&format!("{base}/namespaces/acme")).await;
        assert_accessible(&namespace, "/registry", "namespace");
        assert_eq!(element(&namespace, "dd", "owners"), "alice", "{kind}");
        assert_eq!(
            link_texts(element(&namespace, "ol", "packages")),
            ["acme:cli-app", "acme:http-server"],
            "{kind}"
        );

        // The log, and unknown things.
        let log = browser.dom(&format!("{base}/log")).await;
        assert_accessible(&log, "/registry", "log");
        assert!(log.contains("id=\"pin-key\""), "{kind}");
        let length = server
            .registry()
            .latest_checkpoint()
            .unwrap()
            .checkpoint
            .checkpoint
            .log_length;
        assert!(
            log.contains(&format!("id=\"checkpoint-length\">{length}<")),
            "{kind}"
        );
        let missing = reqwest::get(format!("{base}/packages/acme:nothing"))
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        assert!(missing.text().await.unwrap().contains("<h1>Not found</h1>"));

        if let Some(dir) = shots.as_deref().filter(|_| kind == "sqlite") {
            std::fs::create_dir_all(dir).unwrap();
            for (name, path) in [
                ("home", "/".to_owned()),
                ("search", "/search?q=import%3Awasi%3Acli%2F*".to_owned()),
                ("package", "/packages/acme:cli-app".to_owned()),
                ("namespace", "/namespaces/acme".to_owned()),
                ("log", "/log".to_owned()),
            ] {
                browser
                    .screenshot(&format!("{base}{path}"), &dir.join(format!("{name}.png")))
                    .await;
            }
        }
    }
}

#[tokio::test]
async fn a_private_catalogue_shows_only_what_the_token_may_read() {
    let Some(binary) = chromium() else { return };
    for db in TestDatabase::all().await {
        let proxy = Proxy::start("").await;
        let (server, alice) = catalogue(
            db,
            &proxy,
            ServeArgs {
                anonymous_read: Some(false),
                ..ServeArgs::default()
            },
        )
        .await;
        let kind = server.kind();
        let names = ["acme:", "test:tool", "test:lib", "cli-app"];

        // Anonymous: a token form and no package name, on every page.
        for path in [
            "/",
            "/search?q=import%3Awasi%3A*",
            "/search",
            "/packages/acme:cli-app",
            "/packages/test:tool",
            "/namespaces/acme",
        ] {
            let response = reqwest::get(format!("{}{path}", proxy.url)).await.unwrap();
            assert_eq!(response.status(), 401, "{kind} {path}");
            let body = response.text().await.unwrap();
            assert!(body.contains("id=\"token-form\""), "{kind} {path}");
            for name in names {
                assert!(!body.contains(name), "{kind} {path}: {name} leaked");
            }
        }
        let browser = Browser::new(&binary);
        let anonymous = browser.dom(&format!("{}/", proxy.url)).await;
        assert_accessible(&anonymous, "", "token form");
        assert!(anonymous.contains("<label for=\"token-input\">"));
        for name in names {
            assert!(!anonymous.contains(name), "{kind}: {name} leaked");
        }

        // With alice's token (namespace acme only), in the tab's session
        // storage: the page's script fetches the page with it.
        let dom = browser
            .dom_when(
                &format!("{}/__test/login?token={alice}", proxy.url),
                |dom| dom.contains("id=\"recent\""),
            )
            .await;
        let recent = link_texts(element(&dom, "ol", "recent"));
        assert_eq!(
            recent,
            ["acme:http-server", "acme:cli-app", "acme:cli-app"],
            "{kind}"
        );
        assert!(
            !dom.contains("test:tool") && !dom.contains("test:lib"),
            "{kind}"
        );
        assert!(!dom.contains("id=\"token-form\""), "{kind}");
        assert!(!dom.contains(&alice), "{kind}: the token is in the page");

        // The server renders only what the token may read.
        let http = reqwest::Client::new();
        let page = |path: &str| {
            http.get(format!("{}{path}", proxy.url))
                .bearer_auth(&alice)
                .send()
        };
        let search = page("/search?q=import%3Awasi%3A*").await.unwrap();
        assert_eq!(search.status(), 200);
        let search = search.text().await.unwrap();
        assert!(search.contains("acme:cli-app") && !search.contains("test:tool"));
        let other = page("/packages/test:tool").await.unwrap();
        assert_eq!(other.status(), 403, "{kind}");
        assert!(!other.text().await.unwrap().contains("0.1.0"));
        let refused = http
            .get(format!("{}/", proxy.url))
            .bearer_auth("cairn_not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401, "{kind}");
    }
}
