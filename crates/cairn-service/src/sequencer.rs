//! The sequencer: the only writer of the log.
//!
//! It takes queued records in batches (group commit), re-validates each
//! against its log, assigns registry indices, computes the new log and map
//! roots, commits everything in one transaction, then signs and stores a
//! checkpoint for the batch. It never signs when nothing changed.
//!
//! # Crash points
//!
//! Each is marked `CRASH POINT` in the code with why recovery is clean. In
//! short: the batch commit is atomic, and a checkpoint is only ever signed
//! for a tree that is already durably committed, so a length can never get
//! two different roots, and start-up finishes whatever a crash interrupted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cairn_crypto::note::Note;
use cairn_log::checkpoint::{Checkpoint, TimestampedCheckpoint, c2sp_body};
use cairn_log::leaf::{log_leaf_hash, map_leaf_hash};
use cairn_log::map::{self, MapKey};
use cairn_log::{Hash, LogWriter};
use cairn_protocol::ext::meta::MetaState;
use cairn_protocol::ext::registry::RegistryState;
use cairn_protocol::ext::{ExtEntry, ExtRecord, REGISTRY_LOG_NAME, meta_log_package};
use cairn_protocol::operator::{NamespaceState, OperatorState};
use cairn_protocol::package::PackageState;
use cairn_protocol::record::{OperatorRecord, PackageRecord, RecordKind as _};
use cairn_protocol::{Envelope, LogId, PackageName};
use cairn_store::{
    Batch, LogKind, LogRow, LogSnapshot, PendingRecord, StoredCheckpoint, StoredRecord, TreeHead,
};
use tokio::sync::watch;

use crate::log_state::snapshot_of;
use crate::maps::root_node;
use crate::oci::BuiltPushes;
use crate::{CachedLog, LogState, Registry, ServiceError};

pub(crate) struct Sequencer {
    pub(crate) registry: Registry,
    pub(crate) writer: LogWriter,
    pub(crate) map_root: Hash,
    pub(crate) operator: OperatorState,
    pub(crate) operator_row: Option<LogRow>,
    /// The registry log (identities, keys, namespace ownership) as sequenced.
    pub(crate) registry_log: RegistryState,
    pub(crate) registry_row: Option<LogRow>,
    /// The part of the latest map tree seen so far.
    pub(crate) resident: crate::maps::ResidentMap,
    /// The lease this sequencer was elected with, when the registry is a
    /// node of a cluster: every commit is fenced with it ([`crate::leader`]).
    pub(crate) term: Option<Arc<crate::leader::Term>>,
}

enum Accepted {
    Operator(OperatorState),
    Registry(RegistryState),
    Package(PackageState, Vec<cairn_crypto::Sha256Digest>),
    Meta(
        Box<MetaState>,
        OciProjection,
        Vec<cairn_crypto::Sha256Digest>,
    ),
}

/// What a metadata record changes in the OCI tables.
#[derive(Default)]
struct OciProjection {
    visible: Vec<(String, cairn_crypto::Sha256Digest)>,
    tags: Vec<(String, String, cairn_crypto::Sha256Digest)>,
    /// Tags and manifests deleted: their rows go in the same commit.
    untagged: Vec<(String, String)>,
    deleted: Vec<(String, cairn_crypto::Sha256Digest)>,
}

impl OciProjection {
    fn of(package: &PackageName, entries: &[ExtEntry]) -> Self {
        let repository = crate::oci_repository(package);
        let mut projection = Self::default();
        for entry in entries {
            match entry {
                ExtEntry::Manifest(m) => {
                    projection.visible.push((repository.clone(), m.digest));
                    for tag in &m.tags {
                        projection
                            .tags
                            .push((repository.clone(), tag.clone(), m.digest));
                    }
                }
                ExtEntry::Tag(t) => {
                    projection
                        .tags
                        .push((repository.clone(), t.tag.clone(), t.digest))
                }
                ExtEntry::Mirrored(m) => {
                    projection.visible.push((repository.clone(), m.digest));
                    projection
                        .tags
                        .push((repository.clone(), m.version.to_string(), m.digest));
                }
                ExtEntry::Untag(u) => projection
                    .untagged
                    .push((repository.clone(), u.tag.clone())),
                ExtEntry::ManifestDeleted(d) => {
                    projection.deleted.push((repository.clone(), d.digest))
                }
                _ => {}
            }
        }
        projection
    }
}

/// The `seq` of the records built for OCI pushes in a batch (never stored
/// as pending records, they come after every stored one).
const PUSH_SEQ: i64 = i64::MAX;

/// A batch updating at most this many logs' map leaves hashes them on the
/// sequencer's own thread (a few dozen microseconds each).
const INLINE_MAP_UPDATES: usize = 8;

/// How long an OCI upload session may stay unfinished.
const UPLOAD_RETENTION_MS: i64 = 24 * 3600 * 1000;

impl Sequencer {
    /// Runs until `shutdown` turns true.
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let registry = self.registry.clone();
        registry.set_health(|h| h.sequencer_running = true);
        let mut backoff = Duration::from_millis(100);
        let mut last_expiry: Option<Instant> = None;
        // Pending records other nodes insert wake the sequencer at once;
        // the poll interval is the fallback while the feed is not live.
        let mut changes = registry.changes();
        // Warm the resident copy of the map in the background; start-up
        // itself stays O(log n).
        let mut warming = Some(tokio::spawn({
            let registry = registry.clone();
            let root = crate::maps::root_node(&self.map_root);
            let limit = registry.inner.config.resident_map_nodes;
            async move { registry.read_map_tree(root, limit).await }
        }));
        loop {
            // A deposed leader stops at once: its lease is another node's.
            if *shutdown.borrow() || self.deposed() {
                break;
            }
            if warming.as_ref().is_some_and(|w| w.is_finished())
                && let Some(task) = warming.take()
            {
                match task.await {
                    Ok(Ok(nodes)) => {
                        let loaded = nodes.len();
                        self.resident
                            .merge_reachable(crate::maps::root_node(&self.map_root), nodes);
                        tracing::info!(loaded, resident = self.resident.len(), "map tree warmed");
                    }
                    Ok(Err(error)) => tracing::warn!(%error, "warming the map tree failed"),
                    Err(error) => tracing::warn!(%error, "warming the map tree failed"),
                }
            }
            let result = async {
                self.ensure_checkpoint().await?;
                if last_expiry.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    self.expire().await?;
                    last_expiry = Some(Instant::now());
                }
                self.step().await
            }
            .await;
            match result {
                Ok(true) => {
                    backoff = Duration::from_millis(100);
                    registry.set_health(|h| h.sequencer_error = None);
                    continue;
                }
                Ok(false) => {
                    backoff = Duration::from_millis(100);
                    registry.set_health(|h| h.sequencer_error = None);
                    tokio::select! {
                        _ = registry.inner.wake.notified() => {}
                        _ = crate::cluster::others_wrote(&mut changes) => {}
                        _ = tokio::time::sleep(registry.inner.config.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(_) if self.deposed() => break,
                Err(error) => {
                    tracing::error!(%error, "sequencer step failed; retrying in {backoff:?}");
                    let message = error.to_string();
                    registry.set_health(|h| h.sequencer_error = Some(message));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        registry.set_health(|h| h.sequencer_running = false);
    }

    async fn expire(&self) -> Result<(), ServiceError> {
        let config = &self.registry.inner.config;
        let now = self.registry.inner.clock.now_ms();
        let timeout = i64::try_from(config.sourcing_timeout.as_millis()).unwrap_or(i64::MAX);
        let retention = i64::try_from(config.rejected_retention.as_millis()).unwrap_or(i64::MAX);
        let expired = self
            .registry
            .inner
            .store
            .expire_pending(
                now.saturating_sub(timeout),
                &format!(
                    "content was not uploaded within {} seconds",
                    config.sourcing_timeout.as_secs()
                ),
                now.saturating_sub(retention),
            )
            .await?;
        if expired > 0 {
            tracing::info!(expired, "expired records whose content never arrived");
        }
        // Session tokens an hour past their expiry, and OCI uploads
        // abandoned for a day.
        let store = &self.registry.inner.store;
        let tokens = store
            .delete_expired_tokens(now.saturating_sub(3_600_000))
            .await?;
        let stale = store
            .stale_uploads(now.saturating_sub(UPLOAD_RETENTION_MS), 1000)
            .await?;
        for id in &stale {
            self.registry.inner.blobs.upload_abort(id).await?;
            store.delete_upload(id).await?;
        }
        if tokens > 0 || !stale.is_empty() {
            tracing::info!(
                tokens,
                uploads = stale.len(),
                "swept expired tokens and abandoned uploads"
            );
        }
        Ok(())
    }

    /// Sequences one batch; returns whether there was anything to do.
    pub(crate) async fn step(&mut self) -> Result<bool, ServiceError> {
        let max_batch = self.registry.inner.config.max_batch;
        let queued = self.registry.queued_records(max_batch).await?;
        // OCI pushes: their records are built here, on the heads this
        // sequencer committed, and committed with the batch.
        let pushes = if self.registry.pushes_queued() {
            let room = usize::try_from(max_batch)
                .unwrap_or(usize::MAX)
                .saturating_sub(queued.len())
                .max(2);
            // Boxed: a separate state machine keeps the sequencer's future
            // shallow.
            Box::pin(self.registry.build_pushes(room)).await
        } else {
            Vec::new()
        };
        if queued.is_empty() && pushes.is_empty() {
            return Ok(false);
        }
        let started = Instant::now();
        let sequenced = self.sequence(queued, &pushes).await;
        match &sequenced {
            Ok(()) => pushes.into_iter().for_each(BuiltPushes::committed),
            // Refused for a pending record ahead of a push: nothing was
            // stored, and the pushes are built again after that record.
            // Not a failure of the sequencer: the next step goes on.
            Err(_) if self.registry.take_pushes_met_pending() => {
                self.registry.requeue_pushes(pushes);
                return Ok(true);
            }
            Err(error) => {
                let reason = error.to_string();
                for built in pushes {
                    built.failed(&reason);
                }
            }
        }
        sequenced?;
        let signing = Instant::now();
        self.ensure_checkpoint().await?;
        self.registry
            .inner
            .metrics
            .batch_latency
            .observe(started.elapsed());
        tracing::debug!(signed = ?signing.elapsed(), "checkpoint stored");
        Ok(true)
    }

    async fn load_package_logs(
        &self,
        queued: &[PendingRecord],
    ) -> Result<HashMap<LogId, Arc<CachedLog>>, ServiceError> {
        let mut wanted: Vec<LogId> = Vec::new();
        for pending in queued {
            let id = pending.record.log_id;
            if id == LogId::operator() || id == LogId::registry() {
                continue;
            }
            wanted.push(id);
            // A package record is authorized against its metadata log.
            if let Some(name) = pending.record.package_name.as_deref()
                && let Ok(package) = PackageName::new(name)
            {
                wanted.push(LogId::package_meta(&package));
            }
        }
        let mut logs = HashMap::new();
        let mut misses = Vec::new();
        for id in wanted {
            if logs.contains_key(&id) || misses.contains(&id) {
                continue;
            }
            match self.registry.cached_log(&id) {
                Some(cached) => {
                    logs.insert(id, cached);
                }
                None => misses.push(id),
            }
        }
        let store = self.registry.inner.store.as_ref();
        for row in store.logs(&misses).await? {
            let cached = Arc::new(CachedLog::load(store, row, &self.operator).await?);
            self.registry.cache_log(cached.clone());
            logs.insert(cached.row.log_id, cached);
        }
        Ok(logs)
    }

    fn validate(
        &self,
        pending: &PendingRecord,
        operator: &OperatorState,
        registry_log: &RegistryState,
        logs: &HashMap<LogId, Arc<CachedLog>>,
    ) -> Result<Accepted, String> {
        let record = &pending.record;
        let key_id = cairn_crypto::KeyId::new(record.key_id.clone());
        if record.log_id == LogId::operator() {
            let envelope = Envelope::<OperatorRecord>::from_parts(
                record.content_bytes.clone(),
                key_id,
                &record.signature,
            )
            .map_err(|e| e.to_string())?;
            return operator
                .clone()
                .validate(&envelope)
                .map(Accepted::Operator)
                .map_err(|e| e.to_string());
        }
        if record.log_id == LogId::registry() {
            let envelope = Envelope::<ExtRecord>::from_parts(
                record.content_bytes.clone(),
                key_id,
                &record.signature,
            )
            .map_err(|e| e.to_string())?;
            return registry_log
                .clone()
                .validate(&envelope, operator)
                .map(Accepted::Registry)
                .map_err(|e| e.to_string());
        }
        let name = record
            .package_name
            .as_deref()
            .ok_or("package record without a package name")?;
        if let Some(package) = meta_log_package(name) {
            if LogId::package_meta(&package) != record.log_id {
                return Err("log id does not match the package name".into());
            }
            let envelope = Envelope::<ExtRecord>::from_parts(
                record.content_bytes.clone(),
                key_id,
                &record.signature,
            )
            .map_err(|e| e.to_string())?;
            let state = logs
                .get(&record.log_id)
                .and_then(|l| l.meta())
                .cloned()
                .unwrap_or_default();
            let projection = OciProjection::of(&package, &envelope.record().entries);
            let contents = envelope.record().contents();
            return state
                .validate(&envelope, operator)
                .map(|state| Accepted::Meta(Box::new(state), projection, contents))
                .map_err(|e| e.to_string());
        }
        let name = PackageName::new(name).map_err(|e| e.to_string())?;
        if LogId::package(&name) != record.log_id {
            return Err("log id does not match the package name".into());
        }
        match operator.namespace(name.namespace()) {
            Some(NamespaceState::Defined) => {}
            Some(NamespaceState::Imported { .. }) => {
                return Err(format!(
                    "namespace `{}` is imported from another registry",
                    name.namespace()
                ));
            }
            None => {
                return Err(format!(
                    "namespace `{}` is not defined on this registry",
                    name.namespace()
                ));
            }
        }
        let envelope = Envelope::<PackageRecord>::from_parts(
            record.content_bytes.clone(),
            key_id,
            &record.signature,
        )
        .map_err(|e| e.to_string())?;
        // Who may publish, as the registry log says now (a revocation
        // sequenced before this record applies to it).
        let meta = logs.get(&LogId::package_meta(&name)).and_then(|l| l.meta());
        crate::identity::check_publisher(
            registry_log,
            meta,
            &name,
            envelope.key_id(),
            &record.record_id,
            self.registry.inner.config.require_owners,
        )?;
        let state = logs
            .get(&record.log_id)
            .and_then(|l| l.package())
            .cloned()
            .unwrap_or_default();
        let contents = envelope.record().contents();
        state
            .validate(&envelope)
            .map(|state| Accepted::Package(state, contents))
            .map_err(|e| e.to_string())
    }

    /// Validates, orders and commits `queued`, then the records built for
    /// `pushes`, as one batch.
    async fn sequence(
        &mut self,
        mut queued: Vec<PendingRecord>,
        pushes: &[BuiltPushes],
    ) -> Result<(), ServiceError> {
        let started = Instant::now();
        queued.extend(pushes.iter().flat_map(|built| {
            built.records.iter().map(|record| PendingRecord {
                seq: PUSH_SEQ,
                record: record.clone(),
                state: cairn_store::PendingState::Queued,
                reason: None,
            })
        }));
        let mut logs = self.load_package_logs(&queued).await?;
        let loaded_logs = started.elapsed();
        let mut writer = self.writer.clone();
        let mut operator = self.operator.clone();
        let mut operator_row = self.operator_row.clone();
        let mut registry_log = self.registry_log.clone();
        let mut registry_row = self.registry_row.clone();
        let mut batch = Batch {
            old_size: writer.size(),
            oci_manifests: pushes
                .iter()
                .flat_map(|b| b.manifests.iter().cloned())
                .collect(),
            contents: pushes
                .iter()
                .flat_map(|b| b.contents.iter().copied())
                .collect(),
            manifest_bytes: pushes
                .iter()
                .flat_map(|b| b.manifest_bytes.iter().cloned())
                .collect(),
            ..Batch::default()
        };
        let mut map_updates: HashMap<LogId, Hash> = HashMap::new();
        let mut touched: Vec<LogId> = Vec::new();

        for pending in &queued {
            let record = &pending.record;
            let accepted = match self.validate(pending, &operator, &registry_log, &logs) {
                Ok(accepted) => accepted,
                Err(reason) => {
                    tracing::info!(record = %record.record_id, %reason, "record rejected");
                    batch
                        .rejected
                        .push((record.log_id, record.record_id, reason));
                    continue;
                }
            };
            let index = writer.size();
            batch
                .log_nodes
                .extend(writer.append(log_leaf_hash(&record.log_id.0, &record.record_id.0)));
            batch.records.push(StoredRecord {
                registry_index: index,
                record_id: record.record_id,
                log_id: record.log_id,
                content_bytes: record.content_bytes.clone(),
                key_id: record.key_id.clone(),
                signature: record.signature.clone(),
            });
            // Only stored pending records have a row to delete (a push's
            // records are built for this batch).
            if pending.seq != PUSH_SEQ {
                batch.sequenced.push((record.log_id, record.record_id));
            }
            map_updates.insert(record.log_id, map_leaf_hash(&record.record_id.0));
            match accepted {
                Accepted::Operator(state) => {
                    let count = operator_row.as_ref().map_or(0, |r| r.record_count);
                    // The operator and registry logs are written rarely and
                    // held whole: each record stores their state.
                    operator_row = Some(LogRow {
                        log_id: LogId::operator(),
                        kind: LogKind::Operator,
                        name: None,
                        head_index: index,
                        head_record: record.record_id,
                        record_count: count + 1,
                        snapshot: Some(snapshot_of(&state, count + 1, index)?),
                    });
                    operator = state;
                }
                Accepted::Registry(state) => {
                    let count = registry_row.as_ref().map_or(0, |r| r.record_count);
                    registry_row = Some(LogRow {
                        log_id: LogId::registry(),
                        kind: LogKind::Registry,
                        name: Some(REGISTRY_LOG_NAME.into()),
                        head_index: index,
                        head_record: record.record_id,
                        record_count: count + 1,
                        snapshot: Some(snapshot_of(&state, count + 1, index)?),
                    });
                    registry_log = state;
                }
                Accepted::Package(state, contents) => {
                    crate::search::index_package_record(&mut batch.search, record, index, &state);
                    touch(
                        &mut logs,
                        &mut touched,
                        record,
                        index,
                        LogKind::Package,
                        LogState::Package(state),
                    );
                    if let Some(repository) = record
                        .package_name
                        .as_deref()
                        .and_then(|name| name.split_once(':'))
                        .map(|(ns, name)| format!("{ns}/{name}"))
                    {
                        batch
                            .blob_links
                            .extend(contents.iter().map(|c| (repository.clone(), *c)));
                    }
                    batch.published_contents.extend(contents);
                }
                Accepted::Meta(state, projection, contents) => {
                    crate::search::index_meta_record(&mut batch.search, record);
                    touch(
                        &mut logs,
                        &mut touched,
                        record,
                        index,
                        LogKind::PackageMeta,
                        LogState::Meta(*state),
                    );
                    batch.oci_visible.extend(projection.visible);
                    batch.oci_tags.extend(projection.tags);
                    // Removed before the batch's additions are applied: a
                    // log has one record in a batch (one live pending record
                    // per log, and pushes are built only for logs without
                    // one), and a deleting record sets nothing.
                    batch.oci_untagged.extend(projection.untagged);
                    batch.oci_deleted.extend(projection.deleted);
                    batch.published_contents.extend(contents);
                }
            }
        }
        if batch.records.is_empty() && batch.rejected.is_empty() {
            return Ok(());
        }

        let mut new_map_root = self.map_root;
        let mut map_loaded = started.elapsed();
        let mut replaced = None;
        if !batch.records.is_empty() {
            let updates: Vec<(MapKey, Hash)> = map_updates
                .iter()
                .map(|(log_id, value)| (MapKey::for_log_id(&log_id.0), *value))
                .collect();
            let keys: Vec<MapKey> = updates.iter().map(|(k, _)| *k).collect();
            let root = root_node(&self.map_root);
            let loaded = self
                .registry
                .load_map_paths(root, &keys, Some(&self.resident))
                .await?;
            map_loaded = started.elapsed();
            let threads = self.registry.inner.config.map_threads;
            // Hashing a batch's map paths is CPU work (up to 256 hashes a
            // log): a large batch's is kept off the runtime threads that
            // serve requests; a small one's takes less than the hand-off to
            // another thread would.
            let (update, loaded) = if updates.len() <= INLINE_MAP_UPDATES {
                (map::apply(&loaded, root, &updates)?, loaded)
            } else {
                tokio::task::spawn_blocking(move || {
                    map::apply_parallel(&loaded, root, &updates, threads).map(|u| (u, loaded))
                })
                .await
                .map_err(|e| ServiceError::Internal(format!("map update task failed: {e}")))??
            };
            replaced = Some(loaded);
            new_map_root = update.root_hash();
            batch.map_nodes = update.new_nodes;
            batch.head = Some(TreeHead {
                size: writer.size(),
                log_root: writer.root(),
                map_root: new_map_root,
            });
            // A package or metadata log's state is stored every
            // `SNAPSHOT_EVERY` records; in between only its head moves.
            for log_id in &touched {
                if let Some(log) = logs.get_mut(log_id) {
                    let mut row = log.row.clone();
                    if log.due_snapshot() {
                        row.snapshot = Some(LogSnapshot {
                            records: row.record_count,
                            index: row.head_index,
                            state: log.state_json()?,
                        });
                        Arc::make_mut(log).snapshot_records = row.record_count;
                    }
                    batch.logs.push(row);
                }
            }
            for (row, before) in [
                (&operator_row, &self.operator_row),
                (&registry_row, &self.registry_row),
            ] {
                if row != before
                    && let Some(row) = row
                {
                    batch.logs.push(row.clone());
                }
            }
        }

        // The checkpoint of the new tree is signed before the commit and
        // stored with the batch: one durable write covers both. Not when the
        // batch changes the operator log (a key rotation takes effect for
        // the checkpoint after it is committed), nor when a signer fails
        // (the batch is committed without, and `ensure_checkpoint` reports
        // the failure and signs later).
        if let Some(head) = &batch.head
            && operator == self.operator
        {
            match self
                .sign_checkpoint(head.size, head.log_root, head.map_root)
                .await
            {
                Ok(stored) => batch.checkpoint = Some(stored),
                Err(error) => {
                    tracing::debug!(%error, "the checkpoint is signed after the commit");
                }
            }
        }

        // CRASH POINT 1 — before the commit: nothing of this batch is stored.
        // Its records stay queued and are sequenced again, from the same
        // stored tree, after a restart or on the next step. A signed
        // checkpoint of the batch was never served and is simply lost.
        let prepared = started.elapsed();
        let registry = self.registry.clone();
        let gate = registry.inner.commit_gate.write().await;
        self.commit(&mut batch).await?;
        // CRASH POINT 2 — committed: with its checkpoint (start-up reads it
        // from the store), or without one (signing failed): then the stored
        // tree is ahead of the latest checkpoint and `ensure_checkpoint`
        // (run on every step and at start-up) signs one for the stored tree,
        // whose roots were fixed by this commit.

        self.writer = writer;
        self.map_root = new_map_root;
        if let Some(row) = operator_row {
            self.operator_row = Some(row);
        }
        if self.operator != operator {
            self.operator = operator.clone();
            if let Ok(mut shared) = self.registry.inner.operator.write() {
                *shared = Arc::new(operator);
            }
        }
        if let Some(row) = registry_row {
            self.registry_row = Some(row);
        }
        if self.registry_log != registry_log {
            self.registry_log = registry_log.clone();
            if let Ok(mut shared) = self.registry.inner.registry_log.write() {
                *shared = Arc::new(registry_log);
            }
        }
        if let Some(replaced) = &replaced {
            self.resident.advance(replaced, &batch.map_nodes);
        }
        for log_id in &touched {
            if let Some(log) = logs.get(log_id) {
                self.registry.cache_log(log.clone());
            }
        }
        if let Ok(mut outcomes) = self.registry.inner.outcomes.lock() {
            for record in &batch.records {
                outcomes.insert((record.log_id, record.record_id), Ok(record.registry_index));
            }
            for (log_id, record_id, reason) in &batch.rejected {
                outcomes.insert((*log_id, *record_id), Err(reason.clone()));
            }
        }
        drop(gate);
        if let Some(stored) = batch.checkpoint.take() {
            self.announce(stored);
        }
        let metrics = &self.registry.inner.metrics;
        metrics.batches.add(1);
        metrics
            .records_sequenced
            .add(u64::try_from(batch.records.len()).unwrap_or(0));
        metrics
            .records_rejected
            .add(u64::try_from(batch.rejected.len()).unwrap_or(0));
        let done = u64::try_from(batch.records.len() + batch.rejected.len()).unwrap_or(0);
        metrics.batch_records.observe(done);
        // The backlog counts stored pending records; pushes' records never
        // were.
        let pushed: usize = pushes.iter().map(|b| b.records.len()).sum();
        let stored_done = done.saturating_sub(u64::try_from(pushed).unwrap_or(0));
        let _ = self
            .registry
            .backlog()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(stored_done))
            });
        tracing::debug!(
            sequenced = batch.records.len(),
            rejected = batch.rejected.len(),
            size = self.writer.size(),
            ?loaded_logs,
            ?map_loaded,
            ?prepared,
            committed = ?started.elapsed(),
            "batch committed"
        );
        Ok(())
    }

    /// Signs and stores a checkpoint if the sequenced tree is ahead of the
    /// latest one. Never signs when nothing changed.
    ///
    /// Both views of the tree are signed before anything is stored: the warg
    /// checkpoint with the operator key and the C2SP note with the note key.
    /// If either signature cannot be made, nothing is stored or served and
    /// the step fails (publishes wait with 503 until it succeeds): there is
    /// never an unsigned or half-signed checkpoint.
    pub(crate) async fn ensure_checkpoint(&mut self) -> Result<(), ServiceError> {
        let size = self.writer.size();
        let latest_length = self
            .registry
            .latest_checkpoint()
            .as_ref()
            .map_or(0, |c| c.checkpoint.checkpoint.log_length);
        if size == latest_length {
            return Ok(());
        }
        if size < latest_length {
            return Err(ServiceError::Internal(format!(
                "sequenced tree ({size}) is behind the latest checkpoint ({latest_length})"
            )));
        }
        let stored = self
            .sign_checkpoint(size, self.writer.root(), self.map_root)
            .await?;
        // CRASH POINT 3 — signed, not stored: the signatures were never
        // served and are simply lost; new ones are made for the same roots.
        self.store_checkpoint(&stored).await?;
        // CRASH POINT 4 — stored, not yet announced: start-up reads the
        // latest checkpoint from the store.
        self.announce(stored);
        Ok(())
    }

    /// Signs both views of the tree of `size` leaves with roots `log_root`
    /// and `map_root`: the warg checkpoint with the operator key and the
    /// C2SP note with the note key. Stores nothing.
    async fn sign_checkpoint(
        &self,
        size: u64,
        log_root: Hash,
        map_root: Hash,
    ) -> Result<StoredCheckpoint, ServiceError> {
        // A rotation sequenced in this tree takes effect for its checkpoint.
        self.registry.follow_rotation(&self.operator).await?;
        let latest = self.registry.latest_checkpoint();
        let keys = self.registry.keys();
        let timestamp = self
            .registry
            .inner
            .clock
            .now_secs()
            .max(latest.as_ref().map_or(0, |c| c.checkpoint.timestamp));
        let checkpoint = TimestampedCheckpoint {
            checkpoint: Checkpoint {
                log_root,
                log_length: size,
                map_root,
            },
            timestamp,
        };
        let body = c2sp_body(keys.note_verifier.name(), size, &log_root);
        let message = checkpoint.signing_message();
        let signing = Instant::now();
        let (signature, note_signature) = tokio::try_join!(
            self.registry.sign_operator(&keys.operator, &message),
            self.registry.sign_note_body(&keys, &body),
        )?;
        let metrics = &self.registry.inner.metrics;
        metrics.checkpoint_signing.observe(signing.elapsed());
        let mut note = Note::new(body).map_err(|e| ServiceError::Internal(e.to_string()))?;
        note.add_signature(note_signature);
        Ok(StoredCheckpoint {
            checkpoint,
            key_id: keys.operator_key_id.to_string(),
            signature: signature.to_string(),
            note: Some(String::from_utf8_lossy(&note.to_bytes()).into_owned()),
        })
    }

    /// Serves a stored checkpoint and wakes the requests waiting for it.
    fn announce(&self, stored: StoredCheckpoint) {
        let inner = &self.registry.inner;
        let size = stored.checkpoint.checkpoint.log_length;
        inner.metrics.checkpoints.add(1);
        if let Ok(mut latest) = inner.latest.write() {
            *latest = Some(Arc::new(stored));
        }
        inner.published.send_replace(size);
    }
}

/// Records a package or metadata log's new state in the batch's working set.
fn touch(
    logs: &mut HashMap<LogId, Arc<CachedLog>>,
    touched: &mut Vec<LogId>,
    record: &cairn_store::NewPending,
    index: u64,
    kind: LogKind,
    state: LogState,
) {
    let (count, snapshot_records) = logs
        .get(&record.log_id)
        .map_or((0, 0), |l| (l.row.record_count, l.snapshot_records));
    let row = LogRow {
        log_id: record.log_id,
        kind,
        name: record.package_name.clone(),
        head_index: index,
        head_record: record.record_id,
        record_count: count + 1,
        snapshot: None,
    };
    logs.insert(
        record.log_id,
        Arc::new(CachedLog {
            row,
            snapshot_records,
            state,
        }),
    );
    if !touched.contains(&record.log_id) {
        touched.push(record.log_id);
    }
}
