//! Rows and batches exchanged with a [`crate::Store`].

use cairn_crypto::Sha256Digest;
use cairn_log::Hash;
use cairn_log::checkpoint::TimestampedCheckpoint;
use cairn_log::map::MapNode;
use cairn_log::tree::NodeId;
use cairn_protocol::{LogId, RecordId};

/// The sequenced tree: its size and roots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of records sequenced.
    pub size: u64,
    /// RFC 6962 root.
    pub log_root: Hash,
    /// Map root (`E(256)` when empty).
    pub map_root: Hash,
}

/// A signed warg checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The checkpoint.
    pub checkpoint: TimestampedCheckpoint,
    /// Signing key id.
    pub key_id: String,
    /// Signature string.
    pub signature: String,
    /// The C2SP signed note (tlog-checkpoint) for the same tree, with the
    /// operator's Ed25519 signature line. `None` only for checkpoints signed
    /// before cairn served C2SP checkpoints.
    pub note: Option<String>,
}

/// A witness cosignature on a checkpoint (`c2sp.org/tlog-cosignature`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCosignature {
    /// The checkpoint's length.
    pub log_length: u64,
    /// The witness key name.
    pub witness: String,
    /// The witness key id.
    pub key_id: u32,
    /// The witness's timestamp (Unix seconds).
    pub timestamp: u64,
    /// The signature line, as added to the note (with its newline).
    pub line: String,
}

/// Which kind of log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    /// The operator log.
    Operator,
    /// A package log.
    Package,
    /// cairn's registry log (identities, keys, namespace ownership).
    Registry,
    /// A package's metadata log (OCI manifests and tags, yank reasons).
    PackageMeta,
}

impl LogKind {
    pub(crate) fn to_db(self) -> i64 {
        match self {
            Self::Operator => 0,
            Self::Package => 1,
            Self::Registry => 2,
            Self::PackageMeta => 3,
        }
    }

    pub(crate) fn from_db(value: i64) -> Option<Self> {
        match value {
            0 => Some(Self::Operator),
            1 => Some(Self::Package),
            2 => Some(Self::Registry),
            3 => Some(Self::PackageMeta),
            _ => None,
        }
    }
}

/// One log: its head and the latest snapshot of its validation state.
///
/// The log's current state is the snapshot's state with the log's records
/// after the snapshot (registry indices above [`LogSnapshot::index`], at most
/// `head_index`) replayed through the validator: the service does that
/// (`cairn_service::log_state`), the store only keeps both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRow {
    /// The log id.
    pub log_id: LogId,
    /// Operator or package.
    pub kind: LogKind,
    /// Package name (`None` for the operator log).
    pub name: Option<String>,
    /// Registry index of the head record.
    pub head_index: u64,
    /// Record id of the head record.
    pub head_record: RecordId,
    /// Number of records in the log.
    pub record_count: u64,
    /// The latest snapshot of the log's validation state; `None` when none
    /// was stored (the state is replayed from the log's first record).
    ///
    /// Written by [`crate::Store::commit_batch`]: `Some` replaces the stored
    /// snapshot, `None` keeps it (only the head moves).
    pub snapshot: Option<LogSnapshot>,
}

/// A log's validation state after its first [`LogSnapshot::records`]
/// records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSnapshot {
    /// How many of the log's records it covers (at least one, at most the
    /// log's record count).
    pub records: u64,
    /// The registry index of the last record it covers.
    pub index: u64,
    /// The validator state after those records, serialised as JSON by the
    /// service.
    pub state: String,
}

impl LogRow {
    /// Whether the snapshot covers every record of the log (its state is
    /// the log's current state, with nothing to replay).
    pub fn snapshot_is_current(&self) -> bool {
        self.snapshot
            .as_ref()
            .is_some_and(|s| s.records == self.record_count)
    }
}

/// A sequenced record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Its leaf index in the registry log.
    pub registry_index: u64,
    /// Its record id.
    pub record_id: RecordId,
    /// Its log.
    pub log_id: LogId,
    /// The envelope's exact content bytes.
    pub content_bytes: Vec<u8>,
    /// The envelope's key id.
    pub key_id: String,
    /// The envelope's signature string, as received.
    pub signature: String,
}

/// Where a pending record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingState {
    /// Waiting for content uploads.
    Sourcing,
    /// Ready for the sequencer.
    Queued,
    /// Refused; kept for status queries for a while.
    Rejected,
}

impl PendingState {
    pub(crate) fn to_db(self) -> i64 {
        match self {
            Self::Sourcing => 0,
            Self::Queued => 1,
            Self::Rejected => 2,
        }
    }

    pub(crate) fn from_db(value: i64) -> Option<Self> {
        match value {
            0 => Some(Self::Sourcing),
            1 => Some(Self::Queued),
            2 => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// A record to accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPending {
    /// Its record id.
    pub record_id: RecordId,
    /// Its log.
    pub log_id: LogId,
    /// Package name (`None` for operator records).
    pub package_name: Option<String>,
    /// Exact content bytes.
    pub content_bytes: Vec<u8>,
    /// Key id.
    pub key_id: String,
    /// Signature string.
    pub signature: String,
    /// Content digests not yet stored (empty: the record is queued at once).
    pub missing: Vec<Sha256Digest>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// An accepted, not yet sequenced (or rejected) record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRecord {
    /// Arrival order.
    pub seq: i64,
    /// The record.
    pub record: NewPending,
    /// Its state.
    pub state: PendingState,
    /// Why it was rejected.
    pub reason: Option<String>,
}

/// Where a record stands (see [`crate::PendingStore::record_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordStatus {
    /// Accepted, not sequenced: its state, missing content and rejection reason.
    Pending {
        /// Sourcing, queued or rejected.
        state: PendingState,
        /// Content still missing.
        missing: Vec<Sha256Digest>,
        /// Why it was rejected.
        reason: Option<String>,
    },
    /// Sequenced at this registry index.
    Sequenced {
        /// Its registry index.
        registry_index: u64,
    },
}

/// Stored content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRow {
    /// Its digest.
    pub digest: Sha256Digest,
    /// Size in bytes.
    pub size: u64,
    /// Whether a sequenced record references it.
    pub published: bool,
}

/// Everything one sequencer batch writes, atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The tree size the batch extends (must equal the stored size).
    pub old_size: u64,
    /// The tree after the batch.
    pub head: Option<TreeHead>,
    /// New records, in registry order starting at `old_size`.
    pub records: Vec<StoredRecord>,
    /// New or updated log rows: each row's head replaces the stored one;
    /// its snapshot, when `Some`, replaces the stored snapshot, and when
    /// `None` the stored snapshot is kept.
    pub logs: Vec<LogRow>,
    /// New log nodes.
    pub log_nodes: Vec<(NodeId, Hash)>,
    /// New map nodes.
    pub map_nodes: Vec<(Hash, MapNode)>,
    /// OCI manifests pushed with records built by this batch, stored
    /// invisible (`oci_visible` makes those whose record is sequenced
    /// visible).
    pub oci_manifests: Vec<OciManifestRow>,
    /// The bytes of the manifests pushed by this batch's records (digest,
    /// bytes), stored with the records: a pushed manifest's only copy (see
    /// [`crate::OciStore::manifest_bytes`]).
    pub manifest_bytes: Vec<(Sha256Digest, Vec<u8>)>,
    /// Content (digest, size) of the wasm layers of the pushes whose records
    /// this batch builds, not yet published (`published_contents` publishes
    /// what a sequenced release names).
    pub contents: Vec<(Sha256Digest, u64)>,
    /// Pending records (log, record) that were sequenced (their pending rows
    /// are deleted).
    pub sequenced: Vec<(LogId, RecordId)>,
    /// Pending records (log, record) refused by the sequencer, with the reason.
    pub rejected: Vec<(LogId, RecordId, String)>,
    /// Content now referenced by a sequenced record.
    pub published_contents: Vec<Sha256Digest>,
    /// OCI manifests (repository, digest) whose records were sequenced:
    /// they become visible.
    pub oci_visible: Vec<(String, Sha256Digest)>,
    /// OCI tags (repository, tag, manifest) set by sequenced records.
    pub oci_tags: Vec<(String, String, Sha256Digest)>,
    /// Content released by sequenced records, linked to the repository of
    /// the releasing package (`namespace/name`) so that reads of it are
    /// checked against that namespace.
    pub blob_links: Vec<(String, Sha256Digest)>,
    /// OCI tags (repository, tag) deleted by sequenced records.
    pub oci_untagged: Vec<(String, String)>,
    /// OCI manifests (repository, digest) deleted by sequenced records:
    /// their rows are removed.
    pub oci_deleted: Vec<(String, Sha256Digest)>,
    /// What the batch adds to the search index (see [`crate::SearchStore`]).
    pub search: crate::SearchUpdate,
    /// The signed checkpoint of the tree after the batch, stored in the same
    /// transaction (so a batch's records and the checkpoint that covers them
    /// cost one durable commit). `None` when it is signed afterwards.
    pub checkpoint: Option<StoredCheckpoint>,
    /// The committing sequencer's lease, checked in the batch's transaction
    /// (see [`crate::LeaseStore`]); `None` for a single-node registry.
    pub fence: Option<crate::Fence>,
}

/// What an API token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A long-lived API token created by an administrator.
    Api,
    /// A short-lived token issued by the OCI token endpoint.
    Session,
    /// A short-lived token issued for an OIDC identity token.
    Oidc,
}

impl TokenKind {
    pub(crate) fn to_db(self) -> i64 {
        match self {
            Self::Api => 0,
            Self::Session => 1,
            Self::Oidc => 2,
        }
    }

    pub(crate) fn from_db(value: i64) -> Option<Self> {
        match value {
            0 => Some(Self::Api),
            1 => Some(Self::Session),
            2 => Some(Self::Oidc),
            _ => None,
        }
    }
}

/// A stored API token. The secret itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// Its public id.
    pub id: String,
    /// SHA-256 of the secret.
    pub secret_hash: Sha256Digest,
    /// The identity it acts as.
    pub identity: String,
    /// Namespaces it may act in (`*` for all).
    pub namespaces: Vec<String>,
    /// Actions it may take (`read`, `publish`, `yank`, `admin`).
    pub actions: Vec<String>,
    /// What it is for.
    pub description: String,
    /// API, session or OIDC.
    pub kind: TokenKind,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// When it stops working (Unix milliseconds).
    pub expires_at_ms: Option<i64>,
    /// When it was revoked (Unix milliseconds).
    pub revoked_at_ms: Option<i64>,
    /// For a session token: the id of the token it was exchanged for.
    pub parent: Option<String>,
    /// For an OIDC token: the claims recorded with what it publishes.
    pub claims: std::collections::BTreeMap<String, String>,
}

/// One administrative action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Order.
    pub seq: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Who (an identity, or `cli` for local commands).
    pub actor: String,
    /// What (`identity.create`, `token.revoke`, …).
    pub action: String,
    /// JSON details; never a secret.
    pub details: String,
}

/// A stored OCI manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciManifestRow {
    /// `namespace/name`.
    pub repository: String,
    /// Its digest (the bytes live in the blob store).
    pub digest: Sha256Digest,
    /// Its media type.
    pub media_type: String,
    /// Its artifact type (for the referrers API).
    pub artifact_type: Option<String>,
    /// The manifest it refers to.
    pub subject: Option<Sha256Digest>,
    /// Its size.
    pub size: u64,
    /// Its annotations, as a JSON object.
    pub annotations: String,
    /// Whether the record that logs it is sequenced.
    pub visible: bool,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}
