//! Listings of the OCI door — a repository's tags and a manifest's
//! referrers — answered a page at a time, never by loading a whole listing.
//!
//! Tags are the merge of two sorted sources: the live releases of the
//! package (already in memory as its validated log state) and the tag rows
//! of the store, read in pages from the cursor. Referrers are read from the
//! store a page at a time (filtered by artifact type in the query, so a
//! page is full whenever more follow); the page after is named by the last
//! digest of the one before.
//!
//! A manifest's referrers are also those attached without the referrers
//! API: manifests tagged with cosign's `sha256-<hex>.<suffix>` and those
//! listed by the referrers tag schema's index (`sha256-<hex>`). Most have
//! their subject stored (a push by either scheme records it), so the store
//! query finds them; the rest (a manifest recorded before it was tagged,
//! an index pushed before the schema was checked) are read from those
//! tags — a bounded number of rows — and merged into the same order.

use std::collections::{BTreeSet, VecDeque};

use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::meta::version_tag;
use cairn_store::OciManifestRow;

use super::access::AttachmentTag;
use super::manifests::TagPage;
use super::{IMAGE_INDEX, OciCode, OciError, Repository};
use crate::identity::Caller;
use crate::{Registry, ServiceError};

/// The most tags in one page (also when the client does not ask for `n`).
pub const MAX_TAGS_PAGE: usize = 10_000;
/// The most manifests in one referrers index.
pub const MAX_REFERRERS_PAGE: usize = 1000;
/// Tag rows read from the store at a time.
const TAG_CHUNK: usize = 1000;
/// The most attachment tags (and referrers tag schema entries) of one
/// subject read for a referrers listing.
const MAX_ATTACHMENT_TAGS: usize = 1000;

/// A page of a referrers index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrersPage {
    /// The image index (JSON).
    pub index: Vec<u8>,
    /// Whether the artifact type filter was applied.
    pub filtered: bool,
    /// The last digest of this page, when more follow.
    pub next: Option<Sha256Digest>,
}

impl Registry {
    /// The first `n` tags after `last` (exclusive, byte order): version tags
    /// of live releases, and the tags pushed to the repository except
    /// version tags of yanked releases — and of held releases
    /// ([`crate::hold`]) unless `show_held`. Returns them and whether more
    /// follow.
    async fn tag_page(
        &self,
        repository: &Repository,
        n: usize,
        last: Option<&str>,
        show_held: bool,
    ) -> Result<(Vec<String>, bool), OciError> {
        let (state, meta) = self.oci_states(&repository.package).await?;
        let held = if show_held {
            BTreeSet::new()
        } else {
            self.held_versions(&repository.package, &meta)
        };
        let after = |tag: &str| last.is_none_or(|l| tag > l);
        let mut releases: VecDeque<String> = state
            .releases()
            .filter(|r| !r.yanked() && !held.contains(&r.version))
            .map(|r| r.version.to_string())
            .filter(|t| after(t))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let yanked = |tag: &str| {
            version_tag(tag)
                .and_then(|v| state.release(&v).map(|r| r.yanked() || held.contains(&v)))
                .unwrap_or(false)
        };
        let chunk = (n + 1).clamp(1, TAG_CHUNK);
        let mut stored: VecDeque<String> = VecDeque::new();
        let mut cursor = last.map(str::to_owned);
        let mut exhausted = false;
        let mut out = Vec::new();
        while out.len() <= n {
            if stored.is_empty() && !exhausted {
                let rows = self
                    .inner
                    .store
                    .tags(
                        &repository.name,
                        cursor.as_deref(),
                        u32::try_from(chunk).unwrap_or(u32::MAX),
                    )
                    .await?;
                exhausted = rows.len() < chunk;
                if let Some((tag, _)) = rows.last() {
                    cursor = Some(tag.clone());
                }
                stored.extend(rows.into_iter().map(|(t, _)| t).filter(|t| !yanked(t)));
                if stored.is_empty() && !exhausted {
                    continue;
                }
            }
            let next = match (stored.front(), releases.front()) {
                (None, None) => break,
                (Some(a), Some(b)) if a == b => {
                    releases.pop_front();
                    stored.pop_front()
                }
                (Some(a), Some(b)) if a < b => stored.pop_front(),
                (Some(_), None) => stored.pop_front(),
                (_, Some(_)) => releases.pop_front(),
            };
            out.extend(next);
        }
        let more = out.len() > n;
        out.truncate(n);
        Ok((out, more))
    }

    /// `GET /v2/<name>/tags/list?n=&last=`: at most `n` (and at most
    /// [`MAX_TAGS_PAGE`]) tags after `last`, in byte order. Held releases
    /// are listed only to the namespace's publishers and signers.
    pub async fn oci_tags(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<TagPage, OciError> {
        let repository = Repository::parse(repository)?;
        self.oci_may_read(caller, &repository)?;
        if !self.repository_exists(&repository).await? {
            // SPEC: wkg treats exactly this (404 NAME_UNKNOWN, alone) as
            // "no versions yet".
            return Err(OciError::new(
                OciCode::NameUnknown,
                format!("repository {} is unknown", repository.name),
            ));
        }
        let n = n.unwrap_or(MAX_TAGS_PAGE).min(MAX_TAGS_PAGE);
        let show_held = self.sees_held(caller, &repository);
        let (tags, more) = self.tag_page(&repository, n, last, show_held).await?;
        let next = if more { tags.last().cloned() } else { None };
        Ok(TagPage {
            name: repository.name,
            tags,
            next,
        })
    }

    /// `GET /v2/<name>/referrers/<digest>?artifactType=&n=&last=`: an image
    /// index of the manifests whose subject is `digest`, at most `n` (and
    /// at most [`MAX_REFERRERS_PAGE`]) of them, after the referrer `last`.
    pub async fn oci_referrers(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        digest: &str,
        artifact_type: Option<&str>,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<ReferrersPage, OciError> {
        let repository = Repository::parse(repository)?;
        self.oci_may_read(caller, &repository)?;
        // A SHA-512 subject lists the referrers of the content it is an
        // alias of, and those pushed naming it while it was unknown.
        let subject_name = super::parse_oci_digest(digest)?;
        let subject = self.oci_sha256(&subject_name).await?;
        let store = &self.inner.store;
        // Attached by tag but without a stored subject: merged below.
        let mut tagged = match &subject {
            Some(subject) => self.attached_by_tags(&repository, subject).await?,
            None => Vec::new(),
        };
        if let Some(artifact_type) = artifact_type {
            tagged.retain(|row| row.artifact_type.as_deref() == Some(artifact_type));
        }
        let after = match last {
            None => None,
            Some(last) => {
                let last = super::parse_digest(last)?;
                let named = self
                    .oci_has_sha512_subject(&repository.name, &subject_name, &last)
                    .await?;
                // An unknown cursor starts nowhere: an empty page.
                let created = store
                    .manifest(&repository.name, &last)
                    .await?
                    .filter(|m| {
                        m.visible
                            && ((subject.is_some() && m.subject == subject)
                                || named
                                || tagged.iter().any(|t| t.digest == last))
                    })
                    .map_or(i64::MAX, |m| m.created_at_ms);
                Some((created, last))
            }
        };
        let n = n.unwrap_or(MAX_REFERRERS_PAGE).clamp(1, MAX_REFERRERS_PAGE);
        let mut rows = self
            .oci_referrer_rows(
                &repository.name,
                &subject_name,
                artifact_type,
                after.as_ref().map(|(at, d)| (*at, d)),
                u32::try_from(n + 1).unwrap_or(u32::MAX),
            )
            .await?;
        // Both sources in the store's order (creation time, then digest).
        rows.extend(tagged.into_iter().filter(|row| {
            after
                .as_ref()
                .is_none_or(|(at, last)| (row.created_at_ms, row.digest) > (*at, *last))
        }));
        rows.sort_by_key(|row| (row.created_at_ms, row.digest));
        rows.dedup_by_key(|row| row.digest);
        let more = rows.len() > n;
        rows.truncate(n);
        let next = if more {
            rows.last().map(|r| r.digest)
        } else {
            None
        };
        let manifests: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                let mut descriptor = serde_json::json!({
                    "mediaType": row.media_type,
                    "digest": row.digest.to_string(),
                    "size": row.size,
                });
                if let Some(artifact_type) = &row.artifact_type {
                    descriptor["artifactType"] = serde_json::Value::String(artifact_type.clone());
                }
                if let Ok(annotations) = serde_json::from_str::<serde_json::Value>(&row.annotations)
                    && annotations.as_object().is_some_and(|a| !a.is_empty())
                {
                    descriptor["annotations"] = annotations;
                }
                descriptor
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": IMAGE_INDEX,
            "manifests": manifests,
        });
        Ok(ReferrersPage {
            index: serde_json::to_vec(&index).map_err(|e| ServiceError::Internal(e.to_string()))?,
            filtered: artifact_type.is_some(),
            next,
        })
    }

    /// The visible manifests of `repository` attached to `subject` by tag
    /// whose stored subject is not `subject` (those the store query does
    /// not find): named by a cosign tag `sha256-<hex>.<suffix>`, or listed
    /// by the referrers tag schema's index `sha256-<hex>`. At most
    /// [`MAX_ATTACHMENT_TAGS`] of each are read.
    async fn attached_by_tags(
        &self,
        repository: &Repository,
        subject: &Sha256Digest,
    ) -> Result<Vec<OciManifestRow>, OciError> {
        let store = &self.inner.store;
        let prefix = format!("sha256-{}", subject.to_hex());
        let mut digests = BTreeSet::new();
        // Tags sort bytewise, so every tag with the prefix follows it.
        let mut cursor = prefix.clone();
        let mut scanned = 0;
        'scan: loop {
            let rows = store
                .tags(
                    &repository.name,
                    Some(&cursor),
                    u32::try_from(TAG_CHUNK).unwrap_or(u32::MAX),
                )
                .await?;
            for (tag, digest) in &rows {
                if !tag.starts_with(&prefix) || scanned == MAX_ATTACHMENT_TAGS {
                    break 'scan;
                }
                scanned += 1;
                if AttachmentTag::parse(tag) == Some(AttachmentTag::Cosign(*subject)) {
                    digests.insert(*digest);
                }
            }
            match rows.last() {
                Some((tag, _)) if rows.len() == TAG_CHUNK => cursor = tag.clone(),
                _ => break,
            }
        }
        if let Some(index) = store.tag(&repository.name, &prefix).await?
            && let Some(row) = store.manifest(&repository.name, &index).await?
            && row.visible
            && row.media_type == IMAGE_INDEX
        {
            // Validated when it was pushed; an index that no longer reads
            // (its bytes collected, or rules that changed since) lists
            // nothing rather than failing the whole listing.
            let parsed = match self.read_manifest_bytes(&index).await {
                Ok(bytes) => cairn_protocol::oci::parse_manifest(&bytes, Some(IMAGE_INDEX))
                    .map_err(|e| e.message),
                Err(e) if e.code == OciCode::BlobUnknown => Err(e.message),
                Err(e) => return Err(e),
            };
            let children = match parsed {
                Ok(parsed) => parsed.manifests,
                Err(reason) => {
                    tracing::warn!(%index, %reason, "referrers index skipped");
                    Vec::new()
                }
            };
            for child in children.iter().take(MAX_ATTACHMENT_TAGS) {
                if let Some(sha256) = self.oci_sha256(&child.digest).await? {
                    digests.insert(sha256);
                }
            }
        }
        let mut rows = Vec::new();
        for digest in digests {
            if let Some(row) = store.manifest(&repository.name, &digest).await?
                && row.visible
                && row.subject != Some(*subject)
            {
                rows.push(row);
            }
        }
        Ok(rows)
    }
}
