//! Replaying the registry log from its records: the check that `cairn fsck`
//! runs on a database and `cairn audit fsck` runs over the public API.
//!
//! Records are applied in registry order. Each must sit at the next index,
//! carry the record id its bytes hash to, and pass its log's validation
//! state machine; the log tree is rebuilt leaf by leaf, and the map of log
//! heads can be computed at any point (at every checkpoint length) and
//! compared with what was signed.
//!
//! Like the rest of this crate it does no I/O: the caller feeds records in
//! and reads results out.

use std::collections::{BTreeSet, HashMap};

use cairn_crypto::{EcdsaSignature, KeyId, Sha256Digest};
use cairn_log::checkpoint::TimestampedCheckpoint;
use cairn_log::leaf::{log_leaf_hash, map_leaf_hash};
use cairn_log::map::{self, MapKey, MapNode};
use cairn_log::tree::NodeId;
use cairn_log::{Hash, LogWriter};

use crate::ext::meta::MetaState;
use crate::ext::registry::{RegistryState, authorize};
use crate::ext::{ExtRecord, REGISTRY_LOG_NAME, meta_log_package};
use crate::operator::OperatorState;
use crate::package::PackageState;
use crate::record::{OperatorPermission, OperatorRecord, PackageRecord, RecordKind as _};
use crate::{Envelope, LogId, PackageName, RecordId};

/// One sequenced record, as stored or as fetched.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// Its registry index.
    pub registry_index: u64,
    /// Its log.
    pub log_id: &'a LogId,
    /// The record id it is stored or listed under.
    pub record_id: &'a RecordId,
    /// The envelope's exact content bytes.
    pub content_bytes: &'a [u8],
    /// The envelope's key id.
    pub key_id: &'a str,
    /// The envelope's signature string.
    pub signature: &'a str,
    /// The log's listed name (`v1/fetch/names`, the `logs` table): a
    /// package name, `cairn-meta:<package>` or `cairn-registry`; `None`
    /// for the operator log. Without it a record is replayed as a package
    /// record whose namespace is unknown (no authorization check).
    pub name: Option<&'a str>,
}

/// A log's replayed state and head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayedLog<S> {
    /// The validation state after its last valid record.
    pub state: S,
    /// Registry index of its last record.
    pub head_index: u64,
    /// Number of its records.
    pub record_count: u64,
    /// Id of its last record.
    pub head_record: RecordId,
}

/// The replay of a registry log.
#[derive(Debug, Default)]
pub struct Replay {
    writer: LogWriter,
    operator: Option<ReplayedLog<OperatorState>>,
    registry: Option<ReplayedLog<RegistryState>>,
    metas: HashMap<LogId, ReplayedLog<MetaState>>,
    packages: HashMap<LogId, ReplayedLog<PackageState>>,
    /// Log heads not yet folded into the map.
    pending_map: HashMap<LogId, RecordId>,
    map_nodes: HashMap<Hash, MapNode>,
    map_root: Option<Hash>,
    contents: BTreeSet<Sha256Digest>,
}

impl Replay {
    /// An empty replay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records replayed so far (the next expected index).
    pub fn size(&self) -> u64 {
        self.writer.size()
    }

    /// The log root of the records replayed so far.
    pub fn log_root(&self) -> Hash {
        self.writer.root()
    }

    /// The operator log's state, if it has records.
    pub fn operator(&self) -> Option<&ReplayedLog<OperatorState>> {
        self.operator.as_ref()
    }

    /// The state of every package log that has a valid record.
    pub fn packages(&self) -> &HashMap<LogId, ReplayedLog<PackageState>> {
        &self.packages
    }

    /// The registry log's state, if it has records.
    pub fn registry(&self) -> Option<&ReplayedLog<RegistryState>> {
        self.registry.as_ref()
    }

    /// The state of every package metadata log that has a valid record.
    pub fn metas(&self) -> &HashMap<LogId, ReplayedLog<MetaState>> {
        &self.metas
    }

    /// Every content digest a valid record released.
    pub fn contents(&self) -> &BTreeSet<Sha256Digest> {
        &self.contents
    }

    /// Applies the next record. The log tree always advances (the record is
    /// in the log whatever it holds), and the new log nodes are returned for
    /// comparison with stored ones. A record that does not validate leaves
    /// its log's state unchanged and is reported in [`Applied::invalid`]. A
    /// record out of order is an error that stops the replay (nothing is
    /// applied).
    pub fn apply(&mut self, record: RecordRef<'_>) -> Result<Applied, ReplayError> {
        if record.registry_index != self.writer.size() {
            return Err(ReplayError::OutOfOrder {
                found: record.registry_index,
                expected: self.writer.size(),
            });
        }
        let nodes = self
            .writer
            .append(log_leaf_hash(&record.log_id.0, &record.record_id.0));
        self.pending_map.insert(*record.log_id, *record.record_id);
        let invalid = self
            .validate(record)
            .err()
            .map(|reason| ReplayError::Invalid {
                index: record.registry_index,
                record_id: *record.record_id,
                reason,
            });
        Ok(Applied { nodes, invalid })
    }

    fn validate(&mut self, record: RecordRef<'_>) -> Result<(), String> {
        let key_id = KeyId::new(record.key_id);
        let operator = self
            .operator
            .as_ref()
            .map(|l| l.state.clone())
            .unwrap_or_default();
        if *record.log_id == LogId::operator() {
            let envelope = decode::<OperatorRecord>(record, key_id)?;
            let state = operator.validate(&envelope).map_err(|e| e.to_string())?;
            self.operator = Some(advance(self.operator.as_ref(), state, record));
            return Ok(());
        }
        if *record.log_id == LogId::registry() {
            if record.name.is_some_and(|n| n != REGISTRY_LOG_NAME) {
                return Err("the registry log is listed under another name".into());
            }
            let envelope = decode::<ExtRecord>(record, key_id)?;
            let current = self
                .registry
                .as_ref()
                .map(|l| l.state.clone())
                .unwrap_or_default();
            let state = current
                .validate(&envelope, &operator)
                .map_err(|e| e.to_string())?;
            self.registry = Some(advance(self.registry.as_ref(), state, record));
            return Ok(());
        }
        if let Some(package) = record.name.and_then(meta_log_package) {
            if LogId::package_meta(&package) != *record.log_id {
                return Err(format!("log id is not the metadata log of `{package}`"));
            }
            let envelope = decode::<ExtRecord>(record, key_id)?;
            let current = self.metas.get(record.log_id);
            let state = current
                .map(|l| l.state.clone())
                .unwrap_or_default()
                .validate(&envelope, &operator)
                .map_err(|e| e.to_string())?;
            self.contents.extend(envelope.record().contents());
            let next = advance(current, state, record);
            self.metas.insert(*record.log_id, next);
            return Ok(());
        }
        let package = match record.name {
            Some(name) => {
                let package = PackageName::new(name).map_err(|e| e.to_string())?;
                if LogId::package(&package) != *record.log_id {
                    return Err(format!("log id is not the log of `{package}`"));
                }
                Some(package)
            }
            None => None,
        };
        let envelope = decode::<PackageRecord>(record, key_id)?;
        let current = self.packages.get(record.log_id);
        let state = current
            .map(|l| l.state.clone())
            .unwrap_or_default()
            .validate(&envelope)
            .map_err(|e| e.to_string())?;
        // Who may publish in a claimed namespace, as the registry log said
        // when the record was sequenced.
        if let (Some(package), Some(registry)) = (&package, &self.registry) {
            let meta = self
                .metas
                .get(&LogId::package_meta(package))
                .map(|l| &l.state);
            authorize(
                &registry.state,
                meta,
                package.namespace(),
                envelope.key_id(),
                record.record_id,
            )?;
        }
        self.contents.extend(envelope.record().contents());
        let next = advance(current, state, record);
        self.packages.insert(*record.log_id, next);
        Ok(())
    }

    /// The map root of the records replayed so far. Only the latest map tree
    /// is kept (about two nodes per log).
    pub fn map_root(&mut self) -> Result<Hash, cairn_log::Error> {
        if !self.pending_map.is_empty() {
            let updates: Vec<(MapKey, Hash)> = self
                .pending_map
                .drain()
                .map(|(log, record)| (MapKey::for_log_id(&log.0), map_leaf_hash(&record.0)))
                .collect();
            let keys: Vec<MapKey> = updates.iter().map(|(key, _)| *key).collect();
            let replaced = map::load(&self.map_nodes, self.map_root, &keys)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let update = map::apply_parallel(&replaced, self.map_root, &updates, threads)?;
            for hash in replaced.keys() {
                self.map_nodes.remove(hash);
            }
            self.map_nodes.extend(update.new_nodes);
            self.map_root = update.root;
        }
        Ok(self.map_root.unwrap_or_else(map::empty_root))
    }

    /// Checks a signed warg checkpoint of the current size: its roots must
    /// be the replayed ones and its signature must verify under a key that
    /// holds `commit` in the operator log as replayed. Returns the problems.
    pub fn check_checkpoint(
        &mut self,
        checkpoint: &TimestampedCheckpoint,
        key_id: &str,
        signature: &str,
    ) -> Result<Vec<String>, cairn_log::Error> {
        let mut problems = Vec::new();
        let c = &checkpoint.checkpoint;
        if c.log_length != self.size() {
            problems.push(format!(
                "checkpoint {} checked at size {}",
                c.log_length,
                self.size()
            ));
            return Ok(problems);
        }
        if c.log_root != self.log_root() {
            problems.push(format!(
                "checkpoint {} has log root {}, recomputed {}",
                c.log_length,
                c.log_root,
                self.log_root()
            ));
        }
        let map_root = self.map_root()?;
        if c.map_root != map_root {
            problems.push(format!(
                "checkpoint {} has map root {}, recomputed {map_root}",
                c.log_length, c.map_root
            ));
        }
        let key_id = KeyId::new(key_id);
        let operator = self.operator.as_ref().map(|l| &l.state);
        let key = operator.and_then(|o| o.public_key(&key_id));
        let verified = key.is_some_and(|key| {
            signature
                .parse::<EcdsaSignature>()
                .is_ok_and(|sig| key.verify(&checkpoint.signing_message(), &sig).is_ok())
        });
        if !verified {
            problems.push(format!(
                "checkpoint {}: the signature does not verify under operator key {key_id}",
                c.log_length
            ));
        } else if !operator.is_some_and(|o| o.has_permission(&key_id, OperatorPermission::Commit)) {
            problems.push(format!(
                "checkpoint {}: signed by {key_id}, which does not hold `commit` at this length",
                c.log_length
            ));
        }
        Ok(problems)
    }
}

fn decode<R: crate::record::RecordKind>(
    record: RecordRef<'_>,
    key_id: KeyId,
) -> Result<Envelope<R>, String> {
    let envelope =
        Envelope::<R>::from_parts(record.content_bytes.to_vec(), key_id, record.signature)
            .map_err(|e| e.to_string())?;
    if envelope.record_id() != *record.record_id {
        return Err("the record id does not match its bytes".into());
    }
    Ok(envelope)
}

fn advance<S>(current: Option<&ReplayedLog<S>>, state: S, record: RecordRef<'_>) -> ReplayedLog<S> {
    ReplayedLog {
        state,
        head_index: record.registry_index,
        record_count: current.map_or(0, |l| l.record_count) + 1,
        head_record: *record.record_id,
    }
}

/// What applying one record did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The log nodes the record completed.
    pub nodes: Vec<(NodeId, Hash)>,
    /// Why the record does not validate, if it does not.
    pub invalid: Option<ReplayError>,
}

/// Why a record could not be replayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The record is not at the next index.
    #[error("a record is at index {found} but {expected} was expected")]
    OutOfOrder {
        /// Its index.
        found: u64,
        /// The next index.
        expected: u64,
    },
    /// The record does not validate.
    #[error("record {record_id} at {index} does not validate: {reason}")]
    Invalid {
        /// Its index.
        index: u64,
        /// Its id.
        record_id: RecordId,
        /// Why.
        reason: String,
    },
}
