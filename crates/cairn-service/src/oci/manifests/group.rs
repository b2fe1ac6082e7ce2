//! Group commit of OCI pushes, in the sequencer's batches.
//!
//! A push is answered only once a checkpoint covers its records, so its
//! records need not be stored before they are sequenced: a push validated
//! by its request is queued here, and the sequencer builds its records in
//! its next batch and commits them with the batch — manifest rows, content
//! rows, records, checkpoint: one durable commit for every push of a batch.
//! A crash before that commit loses only pushes nobody was told about.
//!
//! The records are built on the heads of each package's logs as the
//! sequencer, their only writer, knows them. The pushes to one package in a
//! batch share **one metadata record** (an entry each, each attributed to
//! its pusher) and, for releases, **one warg release record** (a release
//! entry each, signed by the publisher key on behalf of one identity: the
//! releases of a second identity wait for the next batch). Each push is
//! checked against the state the pushes before it leave (a version
//! released twice, a tag made immutable), so a push refused is refused
//! alone.
//!
//! A package whose logs have a pending record (a warg publish, a delete) is
//! left out: its pushes wait for the batch after that record's, and are
//! then built on the heads it leaves.
//!
//! In a namespace that holds releases until they are signed
//! ([`crate::hold`]), the entry of a push that makes a release is followed,
//! in the same record, by the `releaseHeld` entry that holds it, and the
//! entry of a signature that meets a held release's requirement by the
//! `releaseReleased` entry that serves it
//! ([`cairn_protocol::ext::hold::follow_up`]).
//!
//! A push whose caller went away (a client that disconnected, a deadline)
//! before its batch took it is dropped.
//!
//! On a node of a cluster the queue is open only while the node leads: when
//! its term ends (deposed, its lease lost, shutting down) the queue closes
//! and every push in it — and every push that arrives later, or that a
//! batch puts back — is answered at once with a retryable 503; a batch the
//! fence refused answers its own pushes the same way.

use std::sync::Mutex;

use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::ExtEntry;
use cairn_protocol::ext::hold::follow_up;
use cairn_protocol::ext::meta::MetaState;
use cairn_protocol::package::PackageState;
use cairn_protocol::{LogId, PackageName, RecordId};
use cairn_store::{NewPending, OciManifestRow};
use semver::Version;
use tokio::sync::oneshot;

use super::{Push, lock};
use crate::identity::Caller;
use crate::oci::OciError;
use crate::{Registry, ServiceError};

/// At most this many pushes share one metadata record…
const MAX_GROUP_PUSHES: usize = 64;
/// …and their entries at most this many bytes (a record has 256 KiB).
const MAX_GROUP_ENTRY_BYTES: usize = 128 * 1024;

/// What became of a grouped push.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Stored: published once these records are.
    Stored(Vec<(LogId, RecordId)>),
    /// Already recorded (a retried push): visible once its records are
    /// published.
    Recorded,
    /// Refused.
    Refused(OciError),
}

struct Waiting {
    push: Push,
    reply: oneshot::Sender<Outcome>,
}

impl Waiting {
    fn answer(self, outcome: Outcome) {
        let _ = self.reply.send(outcome);
    }
}

/// The queue of pushes waiting for the next group commit.
#[derive(Default)]
pub(crate) struct PushGroup {
    queue: Mutex<Vec<Waiting>>,
    /// What the store last said about pending records.
    pub(super) known: super::known::PendingKnown,
    /// The last batch was refused because a pending record (decided on
    /// another node, or after the check) was ahead of a push.
    met_pending: std::sync::atomic::AtomicBool,
    /// No sequencer takes pushes here now (read and written only while
    /// `queue` is locked, so no push is queued after the queue closed).
    closed: std::sync::atomic::AtomicBool,
}

/// Why a push is refused by a node that does not sequence.
const NOT_SEQUENCING: &str =
    "this node stopped sequencing (another node leads now); nothing was stored; retry";

fn refuse(waiting: Waiting) {
    waiting.answer(Outcome::Refused(
        ServiceError::unavailable(NOT_SEQUENCING).into(),
    ));
}

impl std::fmt::Debug for PushGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushGroup").finish_non_exhaustive()
    }
}

/// The records built for the pushes to one package in a batch, what they
/// make visible, and whom to answer.
pub(crate) struct BuiltPushes {
    /// The metadata record, then the release record if any.
    pub(crate) records: Vec<NewPending>,
    /// New manifests, stored invisible with the batch…
    pub(crate) manifests: Vec<OciManifestRow>,
    /// …with their bytes.
    pub(crate) manifest_bytes: Vec<(Sha256Digest, Vec<u8>)>,
    /// The wasm layers' content (digest, size), stored with the batch.
    pub(crate) contents: Vec<(Sha256Digest, u64)>,
    members: Vec<Waiting>,
}

impl BuiltPushes {
    /// The batch holding the records is committed: each push waits for
    /// their outcome (already known to the sequencer) and the checkpoint.
    pub(crate) fn committed(self) {
        let records: Vec<(LogId, RecordId)> = self
            .records
            .iter()
            .map(|r| (r.log_id, r.record_id))
            .collect();
        for member in self.members {
            member.answer(Outcome::Stored(records.clone()));
        }
    }

    /// The batch failed: nothing of these pushes was stored.
    pub(crate) fn failed(self, reason: &str) {
        for member in self.members {
            member.answer(Outcome::Refused(
                ServiceError::unavailable(format!("the push could not be logged: {reason}; retry"))
                    .into(),
            ));
        }
    }
}

impl Registry {
    /// Queues `push` for the sequencer's next batch and waits until
    /// `deadline` for its outcome.
    pub(super) async fn push_grouped(
        &self,
        push: Push,
        deadline: tokio::time::Instant,
    ) -> Result<Outcome, OciError> {
        let (reply, answer) = oneshot::channel();
        {
            let group = &self.inner.push_group;
            let mut queue = lock(&group.queue);
            if group.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(ServiceError::unavailable(NOT_SEQUENCING).into());
            }
            queue.push(Waiting { push, reply });
        }
        self.wake_sequencer();
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(outcome)) => Ok(outcome),
            // The sequencer was stopped holding the push (its term ended
            // in a database call that did not return): nothing was stored.
            Ok(Err(_)) => Err(ServiceError::unavailable(NOT_SEQUENCING).into()),
            Err(_) => Err(ServiceError::unavailable(
                "the push could not be logged in time (the registry is busy, or another publish \
                 of this package is in progress); retry",
            )
            .into()),
        }
    }

    /// Whether pushes are queued.
    pub(crate) fn pushes_queued(&self) -> bool {
        !lock(&self.inner.push_group.queue).is_empty()
    }

    /// Takes the queued pushes (at most `limit` records' worth: two per
    /// package) and builds their records on the packages' committed heads.
    /// Pushes refused or already recorded are answered; pushes of a package
    /// with a pending record, or beyond the limits, stay queued.
    pub(crate) async fn build_pushes(&self, limit: usize) -> Vec<BuiltPushes> {
        let waiting: Vec<Waiting> = std::mem::take(&mut *lock(&self.inner.push_group.queue))
            .into_iter()
            .filter(|w| !w.reply.is_closed())
            .collect();
        if waiting.is_empty() {
            return Vec::new();
        }
        // By package, in arrival order.
        let mut packages: Vec<(PackageName, Vec<Waiting>)> = Vec::new();
        for item in waiting {
            let package = &item.push.repository.package;
            match packages.iter_mut().find(|(p, _)| p == package) {
                Some((_, items)) => items.push(item),
                None => packages.push((package.clone(), vec![item])),
            }
        }
        let mut later = Vec::new();
        let mut built = Vec::new();
        let log_ids: Vec<LogId> = packages
            .iter()
            .flat_map(|(p, _)| [LogId::package(p), LogId::package_meta(p)])
            .collect();
        match self.live_pending_logs(&log_ids).await {
            Ok(busy) => {
                let mut records = 0;
                for (package, items) in packages {
                    if records + 2 > limit
                        || busy.contains(&LogId::package(&package))
                        || busy.contains(&LogId::package_meta(&package))
                    {
                        later.extend(items);
                        continue;
                    }
                    let (group, left) = self.build_package_group(&package, items).await;
                    later.extend(left);
                    if let Some(group) = group {
                        records += group.records.len();
                        built.push(group);
                    }
                }
            }
            // Tried again with the next batch.
            Err(error) => {
                tracing::warn!(%error, "cannot tell which packages have pending records");
                later.extend(packages.into_iter().flat_map(|(_, items)| items));
            }
        }
        self.put_back(later);
        built
    }

    /// The records of the pushes of `items` (all to `package`) on its logs'
    /// current heads: the stored part, and the pushes left for a later
    /// group. Pushes refused or already recorded are answered here.
    async fn build_package_group(
        &self,
        package: &PackageName,
        items: Vec<Waiting>,
    ) -> (Option<BuiltPushes>, Vec<Waiting>) {
        let (package_state, meta_state) = match self.oci_states(package).await {
            Ok(states) => states,
            Err(error) => {
                for item in items {
                    item.answer(Outcome::Refused(error.clone().into()));
                }
                return (None, Vec::new());
            }
        };
        // Whether the publisher key may release here, once for the group.
        let releasing = self.release_signer(package, &package_state);
        // What new releases are held to, once for the group.
        let requirement = self.hold_requirement(package.namespace());
        let mut meta = meta_state.clone();
        let mut members = Vec::new();
        let mut later = Vec::new();
        let mut entries = Vec::new();
        let mut entry_bytes = 0;
        let mut releases: Vec<(Version, Sha256Digest)> = Vec::new();
        let mut releaser: Option<Caller> = None;
        let mut manifests = Vec::new();
        let mut manifest_bytes = Vec::new();
        let mut contents = Vec::new();
        for item in items {
            if members.len() >= MAX_GROUP_PUSHES || entry_bytes >= MAX_GROUP_ENTRY_BYTES {
                later.push(item);
                continue;
            }
            let release = item.push.release();
            if release.is_some()
                && releaser
                    .as_ref()
                    .is_some_and(|r| r.identity != item.push.caller.identity)
            {
                later.push(item);
                continue;
            }
            let refusal = match (&release, &releasing) {
                (Some(_), Err(refusal)) => Some(refusal),
                _ => None,
            };
            let entry = match self.push_entry(&item.push, &package_state, &meta, &releases, refusal)
            {
                Ok(Some(entry)) => entry,
                Ok(None) => {
                    item.answer(Outcome::Recorded);
                    continue;
                }
                Err(error) => {
                    item.answer(Outcome::Refused(error));
                    continue;
                }
            };
            // The hold of a release it makes, the release of a hold its
            // signatures meet: logged with it, or it is refused (only a
            // package that may hold anything pays for the copy).
            let may_hold = requirement.is_some() || meta.holds().next().is_some();
            let applied = if may_hold {
                let mut pushed = meta.clone();
                pushed.apply_entry(&entry).and_then(|()| {
                    let follow = follow_up(&pushed, &entry, requirement.as_ref());
                    for next in &follow {
                        pushed.apply_entry(next)?;
                    }
                    meta = pushed;
                    Ok(follow)
                })
            } else {
                meta.apply_entry(&entry).map(|()| Vec::new())
            };
            let follow = match applied {
                Ok(follow) => follow,
                Err(error) => {
                    item.answer(Outcome::Refused(super::denied(format!(
                        "refused by the metadata log's rules: {error}"
                    ))));
                    continue;
                }
            };
            entry_bytes += serde_json::to_vec(&entry).map_or(0, |b| b.len());
            entry_bytes += serde_json::to_vec(&follow).map_or(0, |b| b.len());
            if let Some((version, content, _)) = release {
                releases.push((version, content));
                releaser.get_or_insert_with(|| item.push.caller.clone());
            }
            // Every wasm layer is content (published once a release names it).
            contents.extend(item.push.layer);
            if matches!(entry, ExtEntry::Manifest(_)) {
                manifests.push(item.push.row.clone());
                manifest_bytes.push((item.push.digest, item.push.body.to_vec()));
            }
            entries.push(entry);
            entries.extend(follow);
            members.push(item);
        }
        if members.is_empty() {
            return (None, later);
        }
        match self
            .group_records(
                package,
                &package_state,
                &meta_state,
                releaser.as_ref().zip(releasing.ok()),
                &releases,
                entries,
            )
            .await
        {
            Ok(records) => (
                Some(BuiltPushes {
                    records,
                    manifests,
                    manifest_bytes,
                    contents,
                    members,
                }),
                later,
            ),
            Err(error) => {
                for member in members {
                    member.answer(Outcome::Refused(error.clone()));
                }
                (None, later)
            }
        }
    }

    /// The metadata record of `entries` and, when the group releases, the
    /// warg release record of `releases` (whose id the entries then link).
    async fn group_records(
        &self,
        package: &PackageName,
        package_state: &PackageState,
        meta_state: &MetaState,
        releaser: Option<(&Caller, super::records::ReleaseSigner)>,
        releases: &[(Version, Sha256Digest)],
        mut entries: Vec<ExtEntry>,
    ) -> Result<Vec<NewPending>, OciError> {
        let mut release = None;
        if let Some((caller, signer)) = releaser {
            let envelope = self
                .publisher_release(package_state, caller, signer, releases)
                .await?;
            let record = envelope.record_id();
            for entry in &mut entries {
                let link = match entry {
                    ExtEntry::Manifest(m) => m.release.as_mut(),
                    ExtEntry::Tag(t) => t.release.as_mut(),
                    _ => None,
                };
                if let Some(link) = link {
                    link.record = record;
                }
            }
            release = Some(NewPending {
                record_id: record,
                log_id: LogId::package(package),
                package_name: Some(package.to_string()),
                content_bytes: envelope.content_bytes().to_vec(),
                key_id: envelope.key_id().to_string(),
                signature: envelope.signature().to_string(),
                missing: Vec::new(),
                created_at_ms: self.inner.clock.now_ms(),
            });
        }
        // The metadata record first: it attributes the release to the
        // identity that pushed before the release itself is sequenced. Both
        // are validated by the sequencer, which sequences them next.
        let (_, meta) = self
            .signed_meta_record(package, meta_state, entries)
            .await?;
        Ok(std::iter::once(meta).chain(release).collect())
    }
}

impl Registry {
    /// The store refused a batch because a live pending record is ahead of
    /// a push built on its log's head: forget what the store said about
    /// pending records (it was stale) and remember it for
    /// [`Registry::take_pushes_met_pending`].
    pub(crate) fn pushes_met_pending(&self) {
        let group = &self.inner.push_group;
        group.known.forget();
        group
            .met_pending
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the last batch was refused for a pending record ahead of a
    /// push (and clears it).
    pub(crate) fn take_pushes_met_pending(&self) -> bool {
        self.inner
            .push_group
            .met_pending
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    /// Puts the pushes of a batch that stored nothing back at the head of
    /// the queue, in their order: they are built again, on the heads the
    /// pending record ahead of them leaves.
    pub(crate) fn requeue_pushes(&self, built: Vec<BuiltPushes>) {
        self.put_back(built.into_iter().flat_map(|b| b.members).collect());
    }

    /// Puts `again` back at the head of the queue, ahead of the pushes that
    /// arrived meanwhile, in their order — or, if the queue closed
    /// meanwhile, answers them.
    fn put_back(&self, again: Vec<Waiting>) {
        if again.is_empty() {
            return;
        }
        let group = &self.inner.push_group;
        let mut queue = lock(&group.queue);
        if group.closed.load(std::sync::atomic::Ordering::SeqCst) {
            drop(queue);
            again.into_iter().for_each(refuse);
            return;
        }
        let newer = std::mem::take(&mut *queue);
        *queue = again;
        queue.extend(newer);
    }

    /// Closes the queue: this node does not sequence now (a standby, or a
    /// leader whose term ended). Every queued push is answered at once
    /// with a retryable error (nothing of them was stored), and so is every
    /// push until [`Registry::open_pushes`].
    pub(crate) fn close_pushes(&self) {
        let group = &self.inner.push_group;
        let waiting = {
            let mut queue = lock(&group.queue);
            group
                .closed
                .store(true, std::sync::atomic::Ordering::SeqCst);
            std::mem::take(&mut *queue)
        };
        waiting.into_iter().for_each(refuse);
    }

    /// Opens the queue: this node's sequencer takes pushes again.
    pub(crate) fn open_pushes(&self) {
        let group = &self.inner.push_group;
        let _queue = lock(&group.queue);
        group
            .closed
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
