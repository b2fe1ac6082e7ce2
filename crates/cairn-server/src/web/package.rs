//! A package's page: its versions newest first, each with when and by whom
//! it was published, the key that signed it, its content (digest and
//! size), whether and why it was yanked, and commands that fetch exactly
//! it, the signatures and attestations logged for it with their
//! verdicts, and links to its WIT and to a comparison with the version
//! before; its tags, the versions they point at and every creation, move
//! and deletion of each (from the metadata log, with who and when); and,
//! for each release record, its inclusion receipt, which the page's
//! script can verify in the browser (`assets/verify.js`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use cairn_service::catalogue::TagEvent;
use cairn_service::packages::{PackageInfo, VersionSignature};
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
    signatures: Vec<Signature>,
    /// The version before it (for the comparison link).
    previous: Option<String>,
}

/// A signature or attestation of a version, as the metadata log judged it.
#[derive(Serialize)]
struct Signature {
    /// `signature` or `attestation`.
    kind: &'static str,
    verified: bool,
    format: String,
    /// Who signed: a key fingerprint or a keyless identity.
    signer: Option<String>,
    predicate_type: Option<String>,
    reason: Option<String>,
    /// The manifest carrying it.
    manifest: String,
    /// The transparency log entry (Rekor) that recorded it.
    rekor_index: Option<u64>,
}

fn signature(s: &VersionSignature) -> Signature {
    let check = &s.check;
    let signer = match (&check.key_fingerprint, &check.identity, &check.issuer) {
        (Some(key), _, _) => Some(format!("key {key}")),
        (None, Some(identity), Some(issuer)) => Some(format!("{identity} (issuer {issuer})")),
        (None, Some(identity), None) => Some(identity.clone()),
        _ => None,
    };
    Signature {
        kind: if check.predicate_type.is_some() {
            "attestation"
        } else {
            "signature"
        },
        verified: check.is_verified(),
        format: serde_json::to_value(check.format)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        signer,
        predicate_type: check.predicate_type.clone(),
        reason: check.reason.clone(),
        manifest: s.manifest.to_string(),
        rekor_index: check.log_index,
    }
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
    /// Each tag's events, newest first, tags by name.
    tag_history: Vec<(String, Vec<TagEvent>)>,
    /// Whether the history was cut at the records read.
    history_cut: bool,
}

fn view(
    site: &Site,
    info: PackageInfo,
    sizes: &BTreeMap<String, u64>,
    events: Vec<TagEvent>,
    history_cut: bool,
) -> Package {
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
                signatures: v.signatures.iter().map(signature).collect(),
                previous: None,
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
    let older: Vec<Option<String>> = (0..versions.len())
        .map(|i| versions.get(i + 1).map(|v| v.version.clone()))
        .collect();
    for (version, previous) in versions.iter_mut().zip(older) {
        version.previous = previous;
    }
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
    let mut tag_history: BTreeMap<String, Vec<TagEvent>> = BTreeMap::new();
    for event in events.into_iter().rev() {
        tag_history
            .entry(event.tag.clone())
            .or_default()
            .push(event);
    }
    Package {
        tag_history: tag_history.into_iter().collect(),
        history_cut,
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
        let (events, cut) = registry.tag_history(&info.name).await?;
        Ok(view(site, info, &sizes, events, cut))
    })
    .await
}
