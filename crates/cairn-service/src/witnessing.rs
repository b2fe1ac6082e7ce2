//! Witnessing: after each checkpoint, submit it with a consistency proof to
//! the witnesses of the policy (`c2sp.org/tlog-witness`), keep the
//! cosignatures they return, and serve the newest checkpoint whose
//! cosignatures meet the policy's quorum on `/checkpoint`.
//!
//! The HTTP side is behind [`WitnessClient`]; this module holds the
//! protocol logic: which size each witness has, resynchronising on `409`,
//! verifying every cosignature before it is stored, and backing off from
//! failing witnesses. A witness that is down never blocks publishing: the
//! warg checkpoint and the uncosigned C2SP checkpoint are served as soon as
//! they are signed; only the cosigned view waits.

use std::sync::Arc;
use std::time::Duration;

use cairn_crypto::note::{Note, NoteSignature};
use cairn_crypto::signer::BoxFuture;
use cairn_log::Hash;
use cairn_log::checkpoint::C2spCheckpoint;
use cairn_log::policy::{Policy, PolicyWitness};
use cairn_log::proof::{consistency_plan, consistency_proof};
use cairn_log::tree::NodeId;
use cairn_log::witness::encode_add_checkpoint;
use cairn_store::{StoredCheckpoint, StoredCosignature};
use tokio::sync::watch;

use crate::c2sp::ServedNote;
use crate::{Registry, ServiceError};

/// What a witness answered to `add-checkpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WitnessAnswer {
    /// 200: the body (cosignature lines).
    Cosigned(String),
    /// 409 with `text/x.tlog.size`: the witness's latest size for this log.
    Conflict(u64),
    /// Anything else, described for the logs.
    Failed(String),
}

/// Submits checkpoints to one witness.
pub trait WitnessClient: Send + Sync + std::fmt::Debug {
    /// POSTs `body` to the witness's `add-checkpoint` endpoint.
    fn add_checkpoint(&self, body: Vec<u8>) -> BoxFuture<'_, WitnessAnswer>;
}

/// The witnesses to submit to, in the order of `policy.witnesses()`.
#[derive(Debug, Clone)]
pub struct Witnessing {
    /// The policy: its witnesses and quorum.
    pub policy: Policy,
    /// One client per witness of the policy, in the same order.
    pub clients: Vec<Arc<dyn WitnessClient>>,
}

/// Attempts per witness per checkpoint (a `409` resynchronises once).
const ATTEMPTS: usize = 3;
/// Longest wait before a failing witness is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct WitnessState {
    /// The size the witness last cosigned for this log, if known.
    size: Option<u64>,
    /// When the witness may be tried again after failures.
    retry_at: Option<tokio::time::Instant>,
    backoff: Duration,
}

impl Registry {
    /// The consistency proof from `from` to `to` (empty when `from` is 0 or
    /// equal to `to`).
    pub(crate) async fn consistency_hashes(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, ServiceError> {
        if from == 0 || from == to {
            return Ok(Vec::new());
        }
        let plan = consistency_plan(from, to)?;
        let hashes = self.inner.store.log_nodes(&plan).await?;
        let source: std::collections::HashMap<NodeId, Hash> =
            plan.into_iter().zip(hashes).collect();
        Ok(consistency_proof(from, to, &source)?)
    }

    /// Runs the witnessing loop until `shutdown` turns true.
    pub async fn run_witnessing(self, witnessing: Witnessing, mut shutdown: watch::Receiver<bool>) {
        if witnessing.clients.len() != witnessing.policy.witnesses().len() {
            tracing::error!("witnessing needs one client per witness of the policy");
            return;
        }
        if let Err(error) = self.restore_served(&witnessing.policy).await {
            tracing::warn!(%error, "cannot restore the cosigned checkpoint");
        }
        let mut states = vec![
            WitnessState {
                size: None,
                retry_at: None,
                backoff: Duration::from_secs(1),
            };
            witnessing.clients.len()
        ];
        let mut published = self.inner.published.subscribe();
        let mut done: u64 = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let latest = self.latest_checkpoint();
            let mut wait = Duration::from_secs(30);
            if let Some(latest) = latest.filter(|l| l.note.is_some()) {
                let length = latest.checkpoint.checkpoint.log_length;
                if length > done {
                    match self.witness_round(&witnessing, &mut states, &latest).await {
                        Ok(true) => done = length,
                        Ok(false) => wait = Duration::from_secs(1),
                        Err(error) => {
                            tracing::warn!(%error, "witnessing failed");
                            wait = Duration::from_secs(5);
                        }
                    }
                }
                // Witnesses waiting for their backoff are retried in time.
                if length > done
                    && let Some(next) = states.iter().filter_map(|s| s.retry_at).min()
                {
                    wait = wait.min(next.saturating_duration_since(tokio::time::Instant::now()));
                }
            }
            tokio::select! {
                _ = published.changed() => {}
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
            }
        }
    }

    /// Serves the newest stored checkpoint whose cosignatures meet the
    /// quorum (after a restart).
    async fn restore_served(&self, policy: &Policy) -> Result<(), ServiceError> {
        for length in self.inner.store.cosigned_lengths(16).await? {
            if let Some(checkpoint) = self.inner.store.checkpoint(length).await?
                && self.publish_cosigned(policy, &checkpoint).await?
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Submits `latest` to every witness that is not backing off; returns
    /// whether every witness has cosigned it.
    async fn witness_round(
        &self,
        witnessing: &Witnessing,
        states: &mut [WitnessState],
        latest: &StoredCheckpoint,
    ) -> Result<bool, ServiceError> {
        let length = latest.checkpoint.checkpoint.log_length;
        let note_bytes = latest.note.clone().unwrap_or_default();
        let note = Note::parse(note_bytes.as_bytes())
            .map_err(|e| ServiceError::Internal(format!("stored note unreadable: {e}")))?;
        let now = tokio::time::Instant::now();
        let already: Vec<StoredCosignature> = self.inner.store.cosignatures(length).await?;
        let mut jobs = Vec::new();
        for (i, (witness, client)) in witnessing
            .policy
            .witnesses()
            .iter()
            .zip(&witnessing.clients)
            .enumerate()
        {
            let cosigned = already
                .iter()
                .any(|c| c.witness == witness.vkey.name() && c.key_id == witness.vkey.key_id());
            let waiting = states[i].retry_at.is_some_and(|t| t > now);
            if cosigned || waiting {
                continue;
            }
            let state = states[i].clone();
            let note = &note;
            jobs.push(async move {
                (
                    i,
                    self.submit(witness, client.as_ref(), state.size, length, note)
                        .await,
                )
            });
        }
        let metrics = &self.inner.metrics.witness;
        let mut collected = Vec::new();
        for (i, outcome) in futures_util::future::join_all(jobs).await {
            let state = &mut states[i];
            match outcome {
                Ok((size, signature)) => {
                    metrics.cosigned.add(1);
                    state.size = Some(size);
                    state.retry_at = None;
                    state.backoff = Duration::from_secs(1);
                    let witness = &witnessing.policy.witnesses()[i];
                    let timestamp = u64::from_be_bytes(
                        signature
                            .signature
                            .get(..8)
                            .and_then(|t| t.try_into().ok())
                            .unwrap_or_default(),
                    );
                    collected.push(StoredCosignature {
                        log_length: length,
                        witness: witness.vkey.name().to_owned(),
                        key_id: witness.vkey.key_id(),
                        timestamp,
                        line: signature.to_line(),
                    });
                }
                Err((size, reason)) => {
                    metrics.failures.add(1);
                    if size.is_some() {
                        state.size = size;
                    }
                    tracing::warn!(witness = %witnessing.policy.witnesses()[i].name, %reason, length, "witness did not cosign");
                    state.retry_at = Some(tokio::time::Instant::now() + state.backoff);
                    state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if !collected.is_empty() {
            self.inner.store.add_cosignatures(&collected).await?;
        }
        self.publish_cosigned(&witnessing.policy, latest).await?;
        let stored = self.inner.store.cosignatures(length).await?;
        Ok(stored.len() >= witnessing.policy.witnesses().len())
    }

    /// Submits one checkpoint to one witness, resynchronising on `409`.
    /// Returns the witness's new size and its verified cosignature, or the
    /// size it reported (if any) and why it failed.
    async fn submit(
        &self,
        witness: &PolicyWitness,
        client: &dyn WitnessClient,
        mut old: Option<u64>,
        length: u64,
        note: &Note,
    ) -> Result<(u64, NoteSignature), (Option<u64>, String)> {
        let conflicts = &self.inner.metrics.witness.conflicts;
        for _ in 0..ATTEMPTS {
            // SPEC: c2sp.org/tlog-witness — a client that does not know the
            // witness's size MAY send 0 to learn it.
            let from = old.unwrap_or(0);
            if from > length {
                return Err((
                    old,
                    format!(
                        "the witness has cosigned size {from}, beyond this log's {length}: \
                         the log was rolled back or forked (restore the newest backup)"
                    ),
                ));
            }
            let proof = self
                .consistency_hashes(from, length)
                .await
                .map_err(|e| (old, format!("consistency proof: {e}")))?;
            let body = encode_add_checkpoint(from, &proof, &note.to_bytes());
            match client.add_checkpoint(body).await {
                WitnessAnswer::Cosigned(lines) => {
                    return verify_cosignature(witness, note, &lines)
                        .map(|signature| (length, signature))
                        .map_err(|reason| (old, reason));
                }
                WitnessAnswer::Conflict(size) => {
                    conflicts.add(1);
                    if old == Some(size) {
                        return Err((old, format!("409 again for size {size}")));
                    }
                    old = Some(size);
                }
                WitnessAnswer::Failed(reason) => return Err((old, reason)),
            }
        }
        Err((old, "too many 409 answers".into()))
    }

    /// Serves `checkpoint` with its cosignatures if they meet the quorum
    /// and it is newer than what is served. Returns whether it is served.
    async fn publish_cosigned(
        &self,
        policy: &Policy,
        checkpoint: &StoredCheckpoint,
    ) -> Result<bool, ServiceError> {
        let length = checkpoint.checkpoint.checkpoint.log_length;
        if self.served_note().is_some_and(|s| s.length >= length) {
            return Ok(false);
        }
        let Some(note) = &checkpoint.note else {
            return Ok(false);
        };
        let mut cosigned = Note::parse(note.as_bytes())
            .map_err(|e| ServiceError::Internal(format!("stored note unreadable: {e}")))?;
        let cosignatures = self.inner.store.cosignatures(length).await?;
        let mut names = Vec::new();
        for witness in policy.witnesses() {
            let Some(stored) = cosignatures
                .iter()
                .find(|c| c.witness == witness.vkey.name() && c.key_id == witness.vkey.key_id())
            else {
                continue;
            };
            let line = stored.line.trim_end_matches('\n');
            match NoteSignature::parse_line(line) {
                Ok(signature) => {
                    cosigned.add_signature(signature);
                    names.push(witness.name.as_str());
                }
                Err(error) => tracing::warn!(%error, "stored cosignature unreadable"),
            }
        }
        if !policy.quorum_met(&names) {
            return Ok(false);
        }
        if let Ok(mut served) = self.inner.served.write() {
            *served = Some(Arc::new(ServedNote {
                length,
                bytes: cosigned.to_bytes(),
            }));
        }
        Ok(true)
    }
}

/// Finds the witness's cosignature among the answered lines and verifies
/// it over the checkpoint body. Lines from other keys are ignored.
fn verify_cosignature(
    witness: &PolicyWitness,
    note: &Note,
    lines: &str,
) -> Result<NoteSignature, String> {
    let vkey = &witness.vkey;
    C2spCheckpoint::parse(note.text()).map_err(|e| e.to_string())?;
    for line in lines.lines().filter(|l| !l.is_empty()) {
        let signature = NoteSignature::parse_line(line)
            .map_err(|e| format!("the witness answered a malformed line: {e}"))?;
        if signature.name != vkey.name() || signature.key_id != vkey.key_id() {
            continue;
        }
        vkey.verify(note.text(), &signature.signature)
            .map_err(|e| format!("the witness's cosignature does not verify: {e}"))?;
        return Ok(signature);
    }
    Err(format!(
        "the answer holds no cosignature by {}",
        vkey.name()
    ))
}
