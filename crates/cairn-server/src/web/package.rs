//! A package's page: its versions newest first, each with when and by whom
//! it was published, the key that signed it, its content (digest and
//! size), whether and why it was yanked, and commands that fetch exactly
//! it; its tags and the versions they point at; and, for each release
//! record, its inclusion receipt, which the page's script can verify in
//! the browser (`assets/verify.js`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use cairn_service::packages::PackageInfo;
use serde::Serialize;

use super::Site;
use crate::http::AppState;

#[derive(Serialize)]
struct Version {
    version: String,
    released: Option<String>,
    record: Option<String>,
    published_by: Option<String>,
    signed_by: Option<String>,
    content: Option<String>,
    size: Option<u64>,
    mirrored: bool,
    yanked: bool,
    yank_reason: Option<String>,
    yanked_by: Option<String>,
    /// The OCI manifest of the version tag.
    manifest: Option<String>,
    wkg: String,
    oras: Option<String>,
    warg: String,
}

#[derive(Serialize)]
struct Tag {
    tag: String,
    manifest: String,
    /// The versions whose manifest it names.
    versions: Vec<String>,
}

#[derive(Serialize)]
struct Package {
    name: String,
    namespace: String,
    log_id: String,
    meta_log_id: String,
    latest: Option<String>,
    versions: Vec<Version>,
    tags: Vec<Tag>,
}

fn view(site: &Site, info: PackageInfo, sizes: &BTreeMap<String, u64>) -> Package {
    let namespace = info
        .name
        .split_once(':')
        .map_or(info.name.as_str(), |(ns, _)| ns)
        .to_owned();
    let repository = info.name.replacen(':', "/", 1);
    let mut versions: Vec<Version> = info
        .versions
        .iter()
        .rev()
        .map(|v| {
            let version = v.version.to_string();
            let manifest = info.tags.get(&version).map(ToString::to_string);
            let content = v.content.map(|c| c.to_string());
            Version {
                wkg: format!("wkg get {}@{version}", info.name),
                oras: manifest
                    .as_ref()
                    .map(|m| format!("oras pull {}/{repository}@{m}", site.host)),
                warg: format!("warg download {} --version ={version}", info.name),
                size: content.as_ref().and_then(|c| sizes.get(c).copied()),
                released: v.released.clone(),
                record: v.record.as_ref().map(ToString::to_string),
                published_by: v.published_by.clone(),
                signed_by: v.signed_by.clone(),
                mirrored: v.mirrored,
                yanked: v.yanked,
                yank_reason: v.yank.as_ref().map(|y| y.reason.clone()),
                yanked_by: v.yank.as_ref().map(|y| y.by.identity.clone()),
                manifest,
                content,
                version,
            }
        })
        .collect();
    versions.sort_by(|a, b| {
        match (
            semver::Version::parse(&a.version),
            semver::Version::parse(&b.version),
        ) {
            (Ok(a), Ok(b)) => b.cmp(&a),
            _ => b.version.cmp(&a.version),
        }
    });
    let latest = versions
        .iter()
        .find(|v| !v.yanked && !v.version.contains('-'))
        .or_else(|| versions.iter().find(|v| !v.yanked))
        .map(|v| v.version.clone());
    let tags = info
        .tags
        .iter()
        .map(|(tag, manifest)| Tag {
            tag: tag.clone(),
            manifest: manifest.to_string(),
            versions: versions
                .iter()
                .filter(|v| v.manifest.as_deref() == Some(manifest.to_string().as_str()))
                .map(|v| v.version.clone())
                .collect(),
        })
        .collect();
    Package {
        log_id: info.log_id.to_string(),
        meta_log_id: info.meta_log_id.to_string(),
        name: info.name,
        namespace,
        latest,
        versions,
        tags,
    }
}

pub(super) async fn page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    super::page(&state, "package.html", async |site| {
        let registry = &state.registry;
        let caller = super::caller(registry, &headers).await?;
        let namespace = name.split_once(':').map_or(name.as_str(), |(ns, _)| ns);
        registry.authorize_namespace_read(caller.as_ref(), namespace)?;
        let info = registry.package_info(&name).await?;
        let mut sizes = BTreeMap::new();
        for content in info.versions.iter().filter_map(|v| v.content) {
            if let Some(size) = registry.published_content_size(&content).await? {
                sizes.insert(content.to_string(), size);
            }
        }
        Ok(view(site, info, &sizes))
    })
    .await
}
