//! `cairn audit fsck`: re-derive a registry's whole log from its public API.
//!
//! 1. Verify the C2SP checkpoint (size N) and read the warg checkpoint
//!    (size M); audit the tree of S = max(N, M) leaves.
//! 2. Download every entry bundle and every hash tile of that tree; every
//!    entry must hash to its level-0 tile hash, every higher tile hash must
//!    be the hash of the full tile below it, and the roots at N and M must
//!    be the signed ones.
//! 3. Fetch every record of every log named by the entries through
//!    `v1/fetch/logs`; each must sit at the index its entry gives and hash
//!    to the record id its entry gives.
//! 4. Replay every operator and package log through the validators, compute
//!    the map of log heads at M and check the warg checkpoint's map root and
//!    signature against the operator log as replayed.
//!
//! Any contradiction between signed data and what the registry serves is
//! reported as [`crate::Evidence`] with the signed checkpoints.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_log::hash::leaf_hash;
use cairn_log::leaf::parse_log_leaf;
use cairn_log::tiles::{self, TileKind};
use cairn_log::tree::perfect_root;
use cairn_log::{Hash, LogWriter};
use cairn_protocol::ext::{REGISTRY_LOG_NAME, meta_log_package};
use cairn_protocol::replay::{RecordRef, Replay};
use cairn_protocol::wire::{FetchLogsRequest, PublishedRecord, SignedCheckpoint};
use cairn_protocol::{LogId, PackageName, RecordId};

use crate::remote::Remote;
use crate::{AuditError, Evidence, Trust, Verified};

/// Package logs per `fetch/logs` request.
const LOGS_PER_REQUEST: usize = 500;

/// What a clean audit covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckSummary {
    /// Size of the audited tree.
    pub size: u64,
    /// Size of the verified C2SP checkpoint.
    pub c2sp_size: u64,
    /// Size of the verified warg checkpoint.
    pub warg_size: u64,
    /// Tiles and entry bundles downloaded.
    pub tiles: u64,
    /// Records fetched and validated.
    pub records: u64,
    /// Package logs validated.
    pub packages: u64,
}

struct Audit<'a> {
    remote: &'a Remote,
    c2sp: Verified,
    warg: SignedCheckpoint,
}

impl Audit<'_> {
    fn evidence(&self, summary: String, details: Vec<String>) -> AuditError {
        let warg = serde_json::to_vec_pretty(&self.warg).unwrap_or_default();
        AuditError::Evidence(Box::new(Evidence {
            summary,
            checkpoints: vec![
                (
                    format!("C2SP, {}/checkpoint", self.remote.url()),
                    self.c2sp.note.clone(),
                ),
                (
                    format!("warg, {}/v1/fetch/checkpoint", self.remote.url()),
                    [warg, b"\n".to_vec()].concat(),
                ),
            ],
            details,
        }))
    }
}

fn hex(hash: &Hash) -> String {
    STANDARD.encode(hash.0)
}

/// Audits the registry behind `remote`; `progress` is told what is done.
pub async fn fsck(
    remote: &Remote,
    trust: &Trust,
    progress: impl FnMut(&str),
) -> Result<FsckSummary, AuditError> {
    replay_all(remote, trust, progress)
        .await
        .map(|audited| audited.summary)
}

/// What a clean audit verified and replayed, for checks built on it
/// (`cairn audit follow --oci`).
#[derive(Debug)]
pub struct Audited {
    /// What it covered.
    pub summary: FsckSummary,
    /// The verified C2SP checkpoint.
    pub checkpoint: Verified,
    /// Every log replayed through the validators.
    pub replay: Replay,
    /// Every log's listed name, checked against its log id.
    pub names: BTreeMap<LogId, String>,
    /// Every record, by registry index: its log, its id, and the record
    /// as served.
    pub records: Vec<(LogId, RecordId, PublishedRecord)>,
}

/// [`fsck`], keeping what it verified and replayed.
pub async fn replay_all(
    remote: &Remote,
    trust: &Trust,
    mut progress: impl FnMut(&str),
) -> Result<Audited, AuditError> {
    let c2sp = trust.verify(&remote.checkpoint().await?)?;
    let warg = remote.warg_checkpoint().await?;
    let audit = Audit { remote, c2sp, warg };
    let n = audit.c2sp.checkpoint.size;
    let m = audit.warg.contents.checkpoint.log_length;
    let size = n.max(m);
    let mut summary = FsckSummary {
        size,
        c2sp_size: n,
        warg_size: m,
        ..FsckSummary::default()
    };

    // 2. Entries and level-0 tiles.
    let mut leaves: Vec<Hash> = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut entries: Vec<(Hash, Hash)> = Vec::with_capacity(leaves.capacity());
    let mut index = 0u64;
    while index < size {
        let bundle = index / tiles::TILE_WIDTH;
        let (Some(entry_tile), Some(hash_tile)) = (
            tiles::tile_at(size, TileKind::Entries, bundle),
            tiles::tile_at(size, TileKind::Hashes { level: 0 }, bundle),
        ) else {
            break;
        };
        let data = remote.tile(entry_tile).await?;
        let hashes = tiles::decode_hash_tile(&remote.tile(hash_tile).await?, hash_tile.width)
            .map_err(|e| AuditError::Inconsistent(format!("{}: {e}", hash_tile.path())))?;
        summary.tiles += 2;
        let decoded = tiles::decode_entries(&data)
            .map_err(|e| AuditError::Inconsistent(format!("{}: {e}", entry_tile.path())))?;
        if decoded.len() != usize::from(entry_tile.width) {
            return Err(AuditError::Inconsistent(format!(
                "{} holds {} entries, expected {}",
                entry_tile.path(),
                decoded.len(),
                entry_tile.width
            )));
        }
        for (i, (entry, tile_hash)) in decoded.iter().zip(&hashes).enumerate() {
            let leaf = leaf_hash(entry);
            let at = index + i as u64;
            if leaf != *tile_hash {
                return Err(audit.evidence(
                    format!("log entry {at} does not hash to its leaf hash in the tiles"),
                    vec![
                        format!("{} entry {i} hashes to {}", entry_tile.path(), hex(&leaf)),
                        format!("{} hash {i} is {}", hash_tile.path(), hex(tile_hash)),
                    ],
                ));
            }
            let parsed = parse_log_leaf(entry).ok_or_else(|| {
                AuditError::Inconsistent(format!("log entry {at} is not a warg log leaf"))
            })?;
            leaves.push(leaf);
            entries.push(parsed);
        }
        index += u64::from(entry_tile.width);
        progress(&format!("{index} of {size} entries"));
    }

    // Higher tiles must be the hashes of full tiles below them.
    let mut level_hashes = leaves.clone();
    let mut level: u8 = 1;
    while tiles::hashes_at_level(size, level) > 0 {
        let next: Vec<Hash> = level_hashes
            .chunks_exact(256)
            .filter_map(perfect_root)
            .collect();
        for (start, expected) in next.chunks(256).enumerate() {
            let Some(tile) = tiles::tile_at(size, TileKind::Hashes { level }, start as u64) else {
                break;
            };
            let served = tiles::decode_hash_tile(&remote.tile(tile).await?, tile.width)
                .map_err(|e| AuditError::Inconsistent(format!("{}: {e}", tile.path())))?;
            summary.tiles += 1;
            if let Some(i) = (0..served.len()).find(|&i| expected.get(i) != served.get(i)) {
                return Err(audit.evidence(
                    format!("hash tile {} contradicts the tiles below it", tile.path()),
                    vec![format!(
                        "hash {i} is {}, the full tile below hashes to {}",
                        hex(&served[i]),
                        expected.get(i).map_or_else(|| "nothing".into(), hex)
                    )],
                ));
            }
        }
        level_hashes = next;
        level += 1;
    }

    // The signed roots.
    let mut writer = LogWriter::new();
    let mut roots = BTreeMap::new();
    for (i, leaf) in leaves.iter().enumerate() {
        writer.append(*leaf);
        let len = i as u64 + 1;
        if len == n || len == m {
            roots.insert(len, writer.root());
        }
    }
    let root_at = |len: u64| {
        if len == 0 {
            cairn_log::hash::empty_root()
        } else {
            roots.get(&len).copied().unwrap_or_default()
        }
    };
    if root_at(n) != audit.c2sp.checkpoint.root {
        return Err(audit.evidence(
            format!("the entries of the log do not give the signed root at size {n}"),
            vec![format!(
                "recomputed {}, signed {}",
                hex(&root_at(n)),
                hex(&audit.c2sp.checkpoint.root)
            )],
        ));
    }
    let warg_root = audit.warg.contents.checkpoint.log_root;
    if root_at(m) != warg_root {
        return Err(audit.evidence(
            format!(
                "the entries of the log do not give the warg checkpoint's log root at size {m}"
            ),
            vec![format!("recomputed {}, signed {}", root_at(m), warg_root)],
        ));
    }

    // 3. Every record, from the warg API.
    let records = fetch_all(remote, size, &entries).await?;
    for (i, record) in records.iter().enumerate() {
        if record.is_none() {
            return Err(audit.evidence(
                format!("the registry does not serve the record at index {i}"),
                vec![format!(
                    "entry {i}: log {}, record {}",
                    entries[i].0, entries[i].1
                )],
            ));
        }
    }
    let names = check_names(&audit, &entries).await?;

    // 4. Replay.
    let mut replay = Replay::new();
    let mut problems = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let Some((log_id, published)) = record else {
            continue;
        };
        let content = STANDARD
            .decode(&published.envelope.content_bytes)
            .map_err(|_| {
                AuditError::Inconsistent(format!("record {i}: contentBytes is not base64"))
            })?;
        let record_id = RecordId(entries[i].1);
        let applied = replay
            .apply(RecordRef {
                name: names.get(log_id).map(String::as_str),
                registry_index: i as u64,
                log_id,
                record_id: &record_id,
                content_bytes: &content,
                key_id: &published.envelope.key_id,
                signature: &published.envelope.signature,
            })
            .map_err(|e| AuditError::Inconsistent(e.to_string()))?;
        if let Some(invalid) = applied.invalid {
            problems.push(format!(
                "{invalid} (the record served by v1/fetch/logs for log {log_id})"
            ));
        }
        if replay.size() == m {
            let checked = replay
                .check_checkpoint(
                    &audit.warg.contents,
                    &audit.warg.key_id,
                    &audit.warg.signature,
                )
                .map_err(|e| AuditError::Inconsistent(e.to_string()))?;
            problems.extend(checked);
        }
        summary.records += 1;
    }
    if !problems.is_empty() {
        return Err(audit.evidence(
            "records served by the registry contradict its signed log".into(),
            problems,
        ));
    }
    summary.packages = replay.packages().len() as u64;
    let records = records
        .into_iter()
        .zip(&entries)
        .filter_map(|(record, (_, id))| record.map(|(log, r)| (log, RecordId(*id), r)))
        .collect();
    Ok(Audited {
        summary,
        checkpoint: audit.c2sp,
        replay,
        names,
        records,
    })
}

/// Fetches every record below `size`, placed at its registry index with
/// its log id. A record listed under another log than its entry says is
/// an error.
async fn fetch_all(
    remote: &Remote,
    size: u64,
    entries: &[(Hash, Hash)],
) -> Result<Vec<Option<(LogId, PublishedRecord)>>, AuditError> {
    let mut records: Vec<Option<(LogId, PublishedRecord)>> = vec![None; entries.len()];
    let mut place = |log_id: LogId, record: PublishedRecord| -> Result<(), AuditError> {
        let index = usize::try_from(record.registry_index)
            .ok()
            .filter(|i| *i < entries.len())
            .ok_or_else(|| {
                AuditError::Inconsistent(format!(
                    "a record of log {log_id} has index {} beyond the tree",
                    record.registry_index
                ))
            })?;
        if entries[index].0 != log_id.0 {
            return Err(AuditError::Inconsistent(format!(
                "the record at index {index} is listed under log {log_id}, but the log entry says {}",
                entries[index].0
            )));
        }
        records[index] = Some((log_id, record));
        Ok(())
    };
    // The operator log.
    let mut operator_token: Option<String> = None;
    loop {
        let response = remote
            .fetch_logs(&FetchLogsRequest {
                log_length: size,
                limit: Some(1000),
                operator: operator_token.clone(),
                packages: BTreeMap::new(),
            })
            .await?;
        let got = response.operator.len();
        for record in response.operator {
            operator_token = Some(record.fetch_token.clone());
            place(LogId::operator(), record)?;
        }
        if !response.more || got == 0 {
            break;
        }
    }
    // Package logs, a chunk at a time.
    let mut logs: Vec<LogId> = entries
        .iter()
        .map(|(log, _)| LogId(*log))
        .filter(|log| *log != LogId::operator())
        .collect();
    logs.sort();
    logs.dedup();
    for chunk in logs.chunks(LOGS_PER_REQUEST) {
        let mut tokens: BTreeMap<LogId, Option<String>> =
            chunk.iter().map(|log| (*log, None)).collect();
        loop {
            let response = remote
                .fetch_logs(&FetchLogsRequest {
                    log_length: size,
                    limit: Some(1000),
                    operator: operator_token.clone(),
                    packages: tokens.clone(),
                })
                .await?;
            let mut progressed = false;
            for (log_id, list) in response.packages {
                if !tokens.contains_key(&log_id) {
                    return Err(AuditError::Inconsistent(format!(
                        "v1/fetch/logs answered log {log_id}, which was not asked for"
                    )));
                }
                for record in list {
                    tokens.insert(log_id, Some(record.fetch_token.clone()));
                    place(log_id, record)?;
                    progressed = true;
                }
            }
            if !response.more || !progressed {
                break;
            }
        }
    }
    Ok(records)
}

/// Every log's listed name must hash to its log id: package logs by their
/// package name, metadata logs as `cairn-meta:<package>`, the registry log
/// as `cairn-registry`. Returns the names.
async fn check_names(
    audit: &Audit<'_>,
    entries: &[(Hash, Hash)],
) -> Result<BTreeMap<LogId, String>, AuditError> {
    let mut logs: Vec<LogId> = entries
        .iter()
        .map(|(log, _)| LogId(*log))
        .filter(|log| *log != LogId::operator())
        .collect();
    logs.sort();
    logs.dedup();
    let mut out = BTreeMap::new();
    for chunk in logs.chunks(1000) {
        let names = audit.remote.fetch_names(chunk.to_vec()).await?;
        for log in chunk {
            let Some(Some(name)) = names.packages.get(log) else {
                return Err(AuditError::Inconsistent(format!("log {log} has no name")));
            };
            let expected = if name == REGISTRY_LOG_NAME {
                LogId::registry()
            } else if let Some(package) = meta_log_package(name) {
                LogId::package_meta(&package)
            } else {
                let parsed = PackageName::new(name.clone())
                    .map_err(|e| AuditError::Inconsistent(format!("log {log}: {e}")))?;
                LogId::package(&parsed)
            };
            if expected != *log {
                return Err(audit.evidence(
                    format!("the registry names log {log} `{name}`, whose log id differs"),
                    vec![format!("the log id of `{name}` is {expected}")],
                ));
            }
            out.insert(*log, name.clone());
        }
    }
    Ok(out)
}
