//! A release's WIT page: the world a component imports and exports, or
//! the interfaces and types of a WIT package, with their doc comments and
//! anchors (`#greet`, `#greet.person`).
//!
//! The page is computed on request from the stored bytes
//! ([`cairn_wasm::wit::view`]), for content of at most [`MAX_BYTES`];
//! larger content, core modules and content that is not WebAssembly get a
//! message instead. Views are cached by content digest (content is
//! immutable, so a cached view never goes stale; authorisation is checked
//! before the cache is read). A component carries no doc comments of the
//! interfaces it names; where the WIT package defining them is a release
//! of this registry that the reader may read, its comments are shown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use cairn_crypto::Sha256Digest;
use cairn_service::catalogue::ContentRead;
use cairn_service::identity::Caller;
use cairn_service::{Registry, ServiceError};
use cairn_wasm::wit::WitView;
use serde::Serialize;

use crate::http::AppState;

/// The largest content whose WIT is shown.
pub(super) const MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Views kept in memory, at most.
const CACHE_ENTRIES: usize = 128;
/// WIT packages read for doc comments of one component, at most.
const MAX_DOC_PACKAGES: usize = 8;

type Cached = Arc<Result<WitView, String>>;

fn cache() -> &'static Mutex<HashMap<Sha256Digest, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<Sha256Digest, Cached>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The view of published content `digest`, or why there is none.
async fn view_of(registry: &Registry, digest: &Sha256Digest) -> Result<Cached, ServiceError> {
    if let Some(hit) = cache().lock().ok().and_then(|c| c.get(digest).cloned()) {
        return Ok(hit);
    }
    let limit = MAX_BYTES.min(registry.config().max_content_bytes);
    let bytes = match registry.read_content_bounded(digest, limit).await? {
        ContentRead::Bytes(bytes) => bytes,
        ContentRead::TooLarge { size } => {
            return Ok(Arc::new(Err(format!(
                "the content has {size} bytes; WIT is shown for content of at most {limit} bytes"
            ))));
        }
        // Not cached: it may be served again later.
        ContentRead::Unavailable => {
            return Ok(Arc::new(Err(
                "the content is not available from this registry".to_owned(),
            )));
        }
    };
    let view = tokio::task::spawn_blocking(move || cairn_wasm::wit::view(&bytes))
        .await
        .map_err(|e| ServiceError::Internal(format!("WIT view task failed: {e}")))?
        .map_err(|e| format!("no WIT to show: {e}"));
    let view = Arc::new(view);
    if let Ok(mut cache) = cache().lock() {
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(*digest, view.clone());
    }
    Ok(view)
}

/// Fills the doc comments of a component's interfaces from the WIT
/// packages of this registry that define them, where `caller` may read
/// them; a package that is missing or unreadable is skipped.
async fn fill_docs(registry: &Registry, caller: Option<&Caller>, view: &mut WitView) {
    for (package, version) in view.packages_named().into_iter().take(MAX_DOC_PACKAGES) {
        let namespace = package
            .split_once(':')
            .map_or(package.as_str(), |(ns, _)| ns);
        if registry
            .authorize_namespace_read(caller, namespace)
            .is_err()
        {
            continue;
        }
        let Ok(info) = registry.package_info(&package).await else {
            continue;
        };
        let content = info
            .versions
            .iter()
            .filter(|v| !v.yanked)
            .find(|v| version.as_deref() == Some(v.version.to_string().as_str()))
            .and_then(|v| v.content);
        let Some(content) = content else { continue };
        if let Ok(found) = view_of(registry, &content).await
            && let Ok(wit) = found.as_ref()
            && wit.kind == cairn_wasm::Kind::WitPackage
        {
            view.fill_docs(wit);
        }
    }
}

#[derive(Serialize)]
struct WitPage {
    name: String,
    version: String,
    content: String,
    view: Option<WitView>,
    message: Option<String>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    super::page(&state, "wit.html", async |_site| {
        let registry = &state.registry;
        let caller = super::caller(registry, &headers).await?;
        let namespace = name.split_once(':').map_or(name.as_str(), |(ns, _)| ns);
        registry.authorize_namespace_read(caller.as_ref(), namespace)?;
        let info = registry.package_info(&name).await?;
        let release = info
            .versions
            .iter()
            .find(|v| v.version.to_string() == version)
            .ok_or_else(|| ServiceError::not_found(format!("`{name}` has no version {version}")))?;
        let Some(content) = release.content else {
            return Ok(WitPage {
                name: info.name.clone(),
                version,
                content: String::new(),
                view: None,
                message: Some(if release.yanked {
                    "this version is yanked: its content is no longer named by the log".to_owned()
                } else {
                    "this release's content is not held by this registry".to_owned()
                }),
            });
        };
        let found = view_of(registry, &content).await?;
        let (view, message) = match found.as_ref() {
            Ok(view) => {
                let mut view = view.clone();
                if view.kind == cairn_wasm::Kind::Component {
                    fill_docs(registry, caller.as_ref(), &mut view).await;
                }
                (Some(view), None)
            }
            Err(message) => (None, Some(message.clone())),
        };
        Ok(WitPage {
            name: info.name.clone(),
            version,
            content: content.to_string(),
            view,
            message,
        })
    })
    .await
}
