//! Reads for the web catalogue that no JSON endpoint needed before: a
//! package's tag history (from its metadata log), the interfaces of each
//! of its releases (from the search index), a release's content bytes up
//! to a bound (for its WIT view), the checkpoint history with witness
//! cosignatures, and one record of the log.
//!
//! Each read is what an auditor could recompute from the log; none
//! authorises by itself: callers check `authorize_namespace_read` or
//! `authorize_log_read` first, as for the JSON API.

use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::{ExtEntry, ExtRecord};
use cairn_protocol::record::{OperatorRecord, PackageEntry, PackageRecord, RecordKind};
use cairn_protocol::{LogId, PackageName, RecordId};
use cairn_store::{Direction, InterfaceFilter, StoredCheckpoint, StoredCosignature};
use serde::Serialize;

use crate::oci::derive::rfc3339;
use crate::{Registry, ServiceError};

/// Metadata-log records read for one tag history, at most.
pub const MAX_HISTORY_RECORDS: u32 = 5_000;
/// Interface rows read for one package's releases, at most.
const MAX_INTERFACE_ROWS: u32 = 20_000;
/// Checkpoints read for one page of history, at most per query.
const CHECKPOINT_QUERY: u32 = 1_000;

/// What happened to a tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TagEvent {
    /// The tag.
    pub tag: String,
    /// `created`, `moved` or `deleted`.
    pub action: &'static str,
    /// The manifest it names from then on (for a deletion: the one it
    /// named until then).
    pub digest: Sha256Digest,
    /// For a move, the manifest it named before.
    pub previous: Option<Sha256Digest>,
    /// The identity that did it.
    pub by: String,
    /// When (the record's timestamp, RFC 3339).
    pub at: String,
    /// The metadata record.
    pub record: RecordId,
}

/// The interfaces of one release, as the search index holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReleaseInterfaces {
    /// The version.
    pub version: String,
    /// Whether it is yanked.
    pub yanked: bool,
    /// Imported interface names, sorted.
    pub imports: Vec<String>,
    /// Exported interface names, sorted.
    pub exports: Vec<String>,
}

/// A release's content, read for showing it.
#[derive(Debug)]
pub enum ContentRead {
    /// The bytes.
    Bytes(Vec<u8>),
    /// Larger than the limit asked for.
    TooLarge {
        /// Its size.
        size: u64,
    },
    /// Not published, withheld, or missing from the blob store.
    Unavailable,
}

/// A checkpoint with the cosignatures witnesses returned for it.
#[derive(Clone, Debug)]
pub struct CosignedCheckpoint {
    /// The checkpoint.
    pub checkpoint: StoredCheckpoint,
    /// Its cosignatures.
    pub cosignatures: Vec<StoredCosignature>,
}

/// One record, decoded for people.
#[derive(Clone, Debug, Serialize)]
pub struct RecordView {
    /// Its log.
    pub log_id: LogId,
    /// The log's name (a package name, `ns:name` with the metadata
    /// suffix, or none for the operator and registry logs).
    pub log_name: Option<String>,
    /// `operator`, `package`, `metadata` or `registry`.
    pub log_kind: &'static str,
    /// The record id.
    pub record_id: RecordId,
    /// Its index in the registry log.
    pub registry_index: u64,
    /// The signing key's id.
    pub key_id: String,
    /// The record's timestamp (RFC 3339), if it decodes.
    pub timestamp: Option<String>,
    /// Its entries, one line (or JSON text) each.
    pub entries: Vec<String>,
}

/// The tag events of `records` (a metadata log's decoded records with
/// their ids, oldest first), in log order.
pub fn tag_events(records: &[(RecordId, ExtRecord)]) -> Vec<TagEvent> {
    let mut current: std::collections::BTreeMap<String, Sha256Digest> = Default::default();
    let mut events = Vec::new();
    for (id, record) in records {
        for entry in &record.entries {
            match entry {
                ExtEntry::Tag(tag) => {
                    let previous = current.insert(tag.tag.clone(), tag.digest);
                    if previous == Some(tag.digest) {
                        continue;
                    }
                    events.push(TagEvent {
                        tag: tag.tag.clone(),
                        action: if previous.is_some() {
                            "moved"
                        } else {
                            "created"
                        },
                        digest: tag.digest,
                        previous,
                        by: tag.by.identity.clone(),
                        at: rfc3339(&record.timestamp),
                        record: *id,
                    });
                }
                ExtEntry::Untag(untag) => {
                    current.remove(&untag.tag);
                    events.push(TagEvent {
                        tag: untag.tag.clone(),
                        action: "deleted",
                        digest: untag.digest,
                        previous: None,
                        by: untag.by.identity.clone(),
                        at: rfc3339(&record.timestamp),
                        record: *id,
                    });
                }
                _ => {}
            }
        }
    }
    events
}

impl Registry {
    /// Every creation, move and deletion of a tag of package `name`, in
    /// log order, from its metadata log up to the latest checkpoint (at
    /// most [`MAX_HISTORY_RECORDS`] records; `true` when cut there).
    pub async fn tag_history(&self, name: &str) -> Result<(Vec<TagEvent>, bool), ServiceError> {
        let package = PackageName::new(name.to_owned())
            .map_err(|e| ServiceError::bad_request(e.to_string()))?;
        let log_id = LogId::package_meta(&package);
        let below = self.latest_length();
        let mut after = None;
        let mut records = Vec::new();
        let mut cut = false;
        loop {
            let page = self
                .inner
                .store
                .log_records(&log_id, after, below, 500)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.registry_index);
            for stored in &page {
                match ExtRecord::decode(&stored.content_bytes) {
                    Ok(record) => records.push((stored.record_id, record)),
                    Err(error) => {
                        tracing::warn!(%error, "an undecodable metadata record is left out of a tag history");
                    }
                }
            }
            if records.len() >= MAX_HISTORY_RECORDS as usize {
                cut = true;
                break;
            }
        }
        Ok((tag_events(&records), cut))
    }

    /// The imports and exports of each release of package `name` that the
    /// search index holds, in no particular order.
    pub async fn release_interfaces(
        &self,
        name: &str,
    ) -> Result<Vec<ReleaseInterfaces>, ServiceError> {
        let store = &self.inner.store;
        let packages = [name.to_owned()];
        let mut releases: std::collections::BTreeMap<String, ReleaseInterfaces> =
            Default::default();
        for hit in store
            .matching_releases(&packages, &[], MAX_INTERFACE_ROWS)
            .await?
        {
            releases
                .entry(hit.version.clone())
                .or_insert(ReleaseInterfaces {
                    version: hit.version,
                    yanked: hit.yanked,
                    ..ReleaseInterfaces::default()
                });
        }
        for direction in [Direction::Import, Direction::Export] {
            let every = InterfaceFilter {
                direction,
                name: "*".to_owned(),
                version: None,
            };
            for hit in store
                .matching_releases(&packages, &[every], MAX_INTERFACE_ROWS)
                .await?
            {
                let release = releases
                    .entry(hit.version.clone())
                    .or_insert(ReleaseInterfaces {
                        version: hit.version.clone(),
                        yanked: hit.yanked,
                        ..ReleaseInterfaces::default()
                    });
                for (d, interface) in &hit.matched {
                    let list = match d {
                        Direction::Import => &mut release.imports,
                        Direction::Export => &mut release.exports,
                    };
                    list.push(interface.full());
                }
            }
        }
        Ok(releases
            .into_values()
            .map(|mut r| {
                r.imports.sort();
                r.imports.dedup();
                r.exports.sort();
                r.exports.dedup();
                r
            })
            .collect())
    }

    /// Published content `digest` whole, if it has at most `limit` bytes.
    pub async fn read_content_bounded(
        &self,
        digest: &Sha256Digest,
        limit: u64,
    ) -> Result<ContentRead, ServiceError> {
        let Some(size) = self.published_content_size(digest).await? else {
            return Ok(ContentRead::Unavailable);
        };
        if size > limit {
            return Ok(ContentRead::TooLarge { size });
        }
        if self.refuse_withheld(digest).is_err() {
            return Ok(ContentRead::Unavailable);
        }
        Ok(match self.inner.blobs.read_all(digest, limit).await {
            Ok(Some(bytes)) => ContentRead::Bytes(bytes),
            Ok(None) => ContentRead::Unavailable,
            Err(cairn_blob::BlobError::TooLarge { .. }) => ContentRead::TooLarge { size },
            Err(other) => return Err(other.into()),
        })
    }

    /// Up to `limit` checkpoints shorter than `before` (all when `None`),
    /// newest first, each with its cosignatures.
    pub async fn checkpoint_history(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<CosignedCheckpoint>, ServiceError> {
        let store = &self.inner.store;
        let end = before
            .unwrap_or(u64::MAX)
            .min(self.latest_length().saturating_add(1));
        let want = limit.max(1) as usize;
        // Lengths are distinct and below `end`: look back over a span that
        // doubles until it holds `want` checkpoints or reaches the start.
        let mut span = u64::from(limit.max(1));
        let found = loop {
            let start = end.saturating_sub(span);
            let mut found = Vec::new();
            let mut after = start.checked_sub(1);
            loop {
                let page = store.checkpoints(after, CHECKPOINT_QUERY).await?;
                let full = page.len() == CHECKPOINT_QUERY as usize;
                let last = page.last().map(|c| c.checkpoint.checkpoint.log_length);
                found.extend(
                    page.into_iter()
                        .filter(|c| c.checkpoint.checkpoint.log_length < end),
                );
                match last {
                    Some(last) if full && last < end => after = Some(last),
                    _ => break,
                }
            }
            if found.len() >= want || start == 0 {
                break found;
            }
            span = span.saturating_mul(2);
        };
        let mut out = Vec::new();
        for checkpoint in found.into_iter().rev().take(want) {
            let cosignatures = store
                .cosignatures(checkpoint.checkpoint.checkpoint.log_length)
                .await?;
            out.push(CosignedCheckpoint {
                checkpoint,
                cosignatures,
            });
        }
        Ok(out)
    }

    /// Record `record_id` of log `log_id` (hex or `sha256:` forms), if
    /// sequenced.
    pub async fn record_view(
        &self,
        log_id: &str,
        record_id: &str,
    ) -> Result<RecordView, ServiceError> {
        let parsed_log: LogId = log_id
            .parse()
            .map_err(|e| ServiceError::bad_request(format!("invalid log id: {e}")))?;
        let parsed_record: RecordId = record_id
            .parse()
            .map_err(|e| ServiceError::bad_request(format!("invalid record id: {e}")))?;
        let store = &self.inner.store;
        let record = store
            .record_by_id(&parsed_log, &parsed_record)
            .await?
            .filter(|r| r.registry_index < self.latest_length())
            .ok_or_else(|| {
                ServiceError::not_found(format!(
                    "record {parsed_record} of log {parsed_log} is not in the log"
                ))
            })?;
        let log_name = store
            .log_names(&[parsed_log])
            .await?
            .into_iter()
            .find_map(|(_, name)| name);
        let bytes = &record.content_bytes;
        let (log_kind, timestamp, entries) = if parsed_log == LogId::operator() {
            match OperatorRecord::decode(bytes) {
                Ok(r) => (
                    "operator",
                    Some(rfc3339(&r.timestamp)),
                    r.entries.iter().map(|e| format!("{e:?}")).collect(),
                ),
                Err(_) => ("operator", None, Vec::new()),
            }
        } else if parsed_log == LogId::registry() || is_meta(log_name.as_deref()) {
            let kind = if parsed_log == LogId::registry() {
                "registry"
            } else {
                "metadata"
            };
            match ExtRecord::decode(bytes) {
                Ok(r) => (
                    kind,
                    Some(rfc3339(&r.timestamp)),
                    r.entries
                        .iter()
                        .map(|e| serde_json::to_string_pretty(e).unwrap_or_default())
                        .collect(),
                ),
                Err(_) => (kind, None, Vec::new()),
            }
        } else {
            match PackageRecord::decode(bytes) {
                Ok(r) => (
                    "package",
                    Some(rfc3339(&r.timestamp)),
                    r.entries.iter().map(package_entry).collect(),
                ),
                Err(_) => ("package", None, Vec::new()),
            }
        };
        Ok(RecordView {
            log_id: parsed_log,
            log_name,
            log_kind,
            record_id: parsed_record,
            registry_index: record.registry_index,
            key_id: record.key_id,
            timestamp,
            entries,
        })
    }
}

fn is_meta(name: Option<&str>) -> bool {
    name.and_then(cairn_protocol::ext::meta_log_package)
        .is_some()
}

fn package_entry(entry: &PackageEntry) -> String {
    match entry {
        PackageEntry::Init { key } => format!("init: key {}", key.key_id()),
        PackageEntry::GrantFlat { key, permissions } => {
            format!("grant {permissions:?} to key {}", key.key_id())
        }
        PackageEntry::RevokeFlat {
            key_id,
            permissions,
        } => format!("revoke {permissions:?} from key {key_id}"),
        PackageEntry::Release { version, content } => {
            format!("release {version}: content {content}")
        }
        PackageEntry::Yank { version } => format!("yank {version}"),
    }
}

#[cfg(test)]
mod tests {
    use cairn_protocol::ext::Attribution;
    use cairn_protocol::ext::meta::{TagEntry, UntagEntry};
    use cairn_protocol::timestamp::Timestamp;

    use super::*;

    fn by(who: &str) -> Attribution {
        Attribution {
            identity: who.into(),
            via: "token".into(),
            token: None,
            claims: Default::default(),
        }
    }

    fn record(seconds: i64, entries: Vec<ExtEntry>) -> (RecordId, ExtRecord) {
        let record = ExtRecord {
            prev: None,
            version: 0,
            timestamp: Timestamp { seconds, nanos: 0 },
            entries,
        };
        (RecordId::cairn(&record.encode()), record)
    }

    #[test]
    fn tags_are_created_moved_and_deleted() {
        let a = Sha256Digest::of(b"a");
        let b = Sha256Digest::of(b"b");
        let tag = |t: &str, d, who| {
            ExtEntry::Tag(TagEntry {
                tag: t.into(),
                digest: d,
                release: None,
                signatures: Vec::new(),
                by: by(who),
            })
        };
        let records = [
            record(
                10,
                vec![tag("latest", a, "alice"), tag("1.0.0", a, "alice")],
            ),
            record(20, vec![tag("latest", a, "alice")]),
            record(30, vec![tag("latest", b, "bob")]),
            record(
                40,
                vec![ExtEntry::Untag(UntagEntry {
                    tag: "latest".into(),
                    digest: b,
                    by: by("carol"),
                })],
            ),
        ];
        let events = tag_events(&records);
        let summary: Vec<(&str, &str, Option<Sha256Digest>, &str)> = events
            .iter()
            .filter(|e| e.tag == "latest")
            .map(|e| (e.action, e.by.as_str(), e.previous, e.at.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("created", "alice", None, "1970-01-01T00:00:10Z"),
                ("moved", "bob", Some(a), "1970-01-01T00:00:30Z"),
                ("deleted", "carol", None, "1970-01-01T00:00:40Z"),
            ]
        );
        assert_eq!(events[2].digest, b);
        assert_eq!(events[2].record, records[2].0);
        assert_eq!(events.iter().filter(|e| e.tag == "1.0.0").count(), 1);
    }
}
