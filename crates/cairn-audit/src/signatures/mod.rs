//! `cairn audit signatures`: recheck every signature verdict the log holds.
//!
//! 1. Verify and replay the whole log ([`crate::fsck::replay_all`]).
//! 2. Replay it again, record by record, to know each namespace's trust
//!    rules (its publish policy in the registry log) at the moment each
//!    metadata record carrying verdicts was sequenced: the rules in force
//!    for that push.
//! 3. For every logged verdict, fetch the signature manifest and the
//!    signature layer's blob from the OCI door, as any reader would
//!    (anonymous, or with a read token); the manifest must hash to its
//!    logged digest.
//! 4. Recompute the verdict with the registry's verification code against
//!    those rules and the trusted root the auditor was given
//!    ([`recheck`]). A verified verdict must come out identical; an
//!    unverified one must have been logged where the namespace had no
//!    rules; every blob must hash to the digest its verdict names.
//!
//! What does not hold is evidence ([`AuditError::Evidence`], exit 2): the
//! signed checkpoint and, per verdict, what is wrong and the signed record
//! that logged it. Keyless verdicts are reported as not rechecked when no
//! trusted root is given (keyed ones are still rechecked), as are the
//! verdicts of manifests deleted since, or withheld.

pub mod recheck;

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_protocol::ext::signature::SignatureCheck;
use cairn_protocol::ext::{ExtEntry, ExtRecord, meta_log_package};
use cairn_protocol::record::RecordKind as _;
use cairn_protocol::replay::{RecordRef, Replay};
use cairn_protocol::{LogId, PackageName, RecordId};
use cairn_sigstore::TrustedRoot;

use crate::fsck::{Audited, replay_all};
use crate::oci::{Door, Fetched};
use crate::remote::Remote;
use crate::{AuditError, Evidence, Trust};
use recheck::{Context, Layer, Outcome};

/// The largest signature manifest read (the door's manifest limit).
const MAX_MANIFEST: usize = 4 * 1024 * 1024;
/// The largest signature blob read (the push path's limit).
const MAX_BLOB: usize = 4 * 1024 * 1024;
/// What the door is asked to serve a signature manifest as.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// What a clean recheck covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureReport {
    /// The checkpoint size the logs were replayed at.
    pub size: u64,
    /// Logged verdicts.
    pub verdicts: u64,
    /// Verified verdicts by a listed key, recomputed identically.
    pub keyed: u64,
    /// Verified keyless verdicts, recomputed identically.
    pub keyless: u64,
    /// Unverified verdicts, logged where the namespace had no trust rules.
    pub unverified: u64,
    /// Verdicts not recomputed, each with the reason.
    pub not_rechecked: Vec<String>,
}

/// The verdicts one metadata log entry carries.
#[derive(Debug, Clone)]
struct Logged {
    package: PackageName,
    /// The signature manifest.
    manifest: Sha256Digest,
    checks: Vec<SignatureCheck>,
    /// The record's registry index, log and id.
    index: u64,
    log_id: LogId,
    record_id: RecordId,
    /// The record's timestamp, in seconds.
    now: i64,
    /// The namespace's policy in force, and the index of the record that
    /// set it (`None`: never set, no trust rules).
    policy: PublishPolicy,
    policy_at: Option<u64>,
}

impl Logged {
    fn describe(&self, position: usize) -> String {
        format!(
            "verdict {} of record {} (entry {} of the log, metadata log of {}) about signature \
             manifest {}",
            position + 1,
            self.record_id,
            self.index,
            self.package,
            self.manifest
        )
    }
}

/// Every logged verdict, with the trust rules in force when it was logged.
fn logged(audited: &Audited) -> Result<Vec<Logged>, AuditError> {
    let mut replay = Replay::new();
    let mut set_at: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for (index, (log_id, record_id, record)) in audited.records.iter().enumerate() {
        let index = index as u64;
        let content = STANDARD
            .decode(&record.envelope.content_bytes)
            .map_err(|_| {
                AuditError::Inconsistent(format!("record {index}: contentBytes is not base64"))
            })?;
        let name = audited.names.get(log_id).map(String::as_str);
        replay
            .apply(RecordRef {
                registry_index: index,
                log_id,
                record_id,
                content_bytes: &content,
                key_id: &record.envelope.key_id,
                signature: &record.envelope.signature,
                name,
            })
            .map_err(|e| AuditError::Inconsistent(e.to_string()))?;
        let is_registry = *log_id == LogId::registry();
        let package = name.and_then(meta_log_package);
        if !is_registry && package.is_none() {
            continue;
        }
        let Ok(decoded) = ExtRecord::decode(&content) else {
            continue;
        };
        if is_registry {
            for entry in &decoded.entries {
                if let ExtEntry::Namespace(namespace) = entry {
                    set_at.insert(namespace.namespace.clone(), index);
                }
            }
            continue;
        }
        let Some(package) = package else { continue };
        let namespace = package.namespace();
        let policy = replay
            .registry()
            .and_then(|r| r.state.namespace(namespace))
            .map(|entry| entry.policy.clone())
            .unwrap_or_default();
        for entry in &decoded.entries {
            let (manifest, checks) = match entry {
                ExtEntry::Manifest(m) => (m.digest, &m.signatures),
                ExtEntry::Tag(t) => (t.digest, &t.signatures),
                _ => continue,
            };
            if checks.is_empty() {
                continue;
            }
            out.push(Logged {
                package: package.clone(),
                manifest,
                checks: checks.clone(),
                index,
                log_id: *log_id,
                record_id: *record_id,
                now: decoded.timestamp.seconds,
                policy: policy.clone(),
                policy_at: set_at.get(namespace).copied(),
            });
        }
    }
    Ok(out)
}

/// Rechecks every logged signature verdict of the registry behind `remote`
/// against what `door` serves, with `root` as the Sigstore trusted root
/// (`None`: keyless verdicts are not recomputed). Verdicts that do not hold
/// are returned as [`AuditError::Evidence`].
pub async fn check(
    remote: &Remote,
    door: &Door,
    trust: &Trust,
    root: Option<&TrustedRoot>,
    mut progress: impl FnMut(&str),
) -> Result<SignatureReport, AuditError> {
    let audited = replay_all(remote, trust, &mut progress).await?;
    let all = logged(&audited)?;
    let mut report = SignatureReport {
        size: audited.checkpoint.checkpoint.size,
        ..SignatureReport::default()
    };
    let mut failures: Vec<(String, &Logged)> = Vec::new();
    let mut blobs: BTreeMap<(String, String), Fetched> = BTreeMap::new();
    for (done, logged) in all.iter().enumerate() {
        progress(&format!(
            "rechecking the verdicts of entry {} of {}",
            done + 1,
            all.len()
        ));
        report.verdicts += logged.checks.len() as u64;
        let repository = cairn_service::oci_repository(&logged.package);
        let not_rechecked = |why: &str| {
            (0..logged.checks.len())
                .map(|i| format!("{}: not rechecked: {why}", logged.describe(i)))
                .collect::<Vec<_>>()
        };
        let meta = audited
            .replay
            .metas()
            .get(&LogId::package_meta(&logged.package));
        if meta.is_some_and(|m| m.state.is_deleted(&logged.manifest)) {
            report
                .not_rechecked
                .extend(not_rechecked("the manifest was deleted since"));
            continue;
        }
        let path = format!("/v2/{repository}/manifests/{}", logged.manifest);
        let manifest = match door.fetch(&path, MANIFEST_TYPES, MAX_MANIFEST).await? {
            Fetched::Body(body) => body,
            Fetched::Status(451) => {
                report
                    .not_rechecked
                    .extend(not_rechecked("the manifest is withheld (HTTP 451)"));
                continue;
            }
            Fetched::Status(status) => {
                failures.push((
                    format!("the door does not serve the signature manifest (HTTP {status})"),
                    logged,
                ));
                continue;
            }
            Fetched::Broken(why) => {
                failures.push((format!("the signature manifest: {why}"), logged));
                continue;
            }
        };
        let served = Sha256Digest(cairn_sigstore::Sha256Digest::of(&manifest).0);
        if served != logged.manifest {
            failures.push((
                format!("the manifest served under that digest hashes to {served}"),
                logged,
            ));
            continue;
        }
        let layers: Vec<Layer> = match recheck::signature_layers(&manifest) {
            Ok(layers) => layers,
            Err(why) => {
                failures.push((why, logged));
                continue;
            }
        };
        if layers.len() != logged.checks.len() {
            failures.push((
                format!(
                    "the manifest has {} signature layers, the record logs {} verdicts",
                    layers.len(),
                    logged.checks.len()
                ),
                logged,
            ));
            continue;
        }
        let context = Context {
            namespace: logged.package.namespace(),
            policy: &logged.policy,
            root,
            now: logged.now,
        };
        for (position, (check, layer)) in logged.checks.iter().zip(&layers).enumerate() {
            let key = (repository.clone(), layer.digest.clone());
            if !blobs.contains_key(&key) {
                let path = format!("/v2/{repository}/blobs/{}", layer.digest);
                let fetched = door.fetch(&path, "*/*", MAX_BLOB).await?;
                blobs.insert(key.clone(), fetched);
            }
            let outcome = match blobs.get(&key) {
                Some(Fetched::Body(blob)) => recheck::recheck(check, layer, blob, &context),
                Some(Fetched::Status(status)) => Outcome::Fails(format!(
                    "the door does not serve its signature blob {} (HTTP {status})",
                    layer.digest
                )),
                Some(Fetched::Broken(why)) => Outcome::Fails(format!(
                    "the door does not serve its signature blob {} whole: {why}",
                    layer.digest
                )),
                None => Outcome::Fails("the signature blob was not fetched".into()),
            };
            match outcome {
                Outcome::Verified { keyless: true } => report.keyless += 1,
                Outcome::Verified { keyless: false } => report.keyed += 1,
                Outcome::Unverified => report.unverified += 1,
                Outcome::NotRechecked(why) => report.not_rechecked.push(format!(
                    "{}: not rechecked: {why}",
                    logged.describe(position)
                )),
                Outcome::Fails(why) => {
                    let rules = match logged.policy_at {
                        Some(at) => format!(
                            "the trust rules of namespace `{}` were set by entry {at}",
                            logged.package.namespace()
                        ),
                        None => format!(
                            "namespace `{}` had no policy in the registry log",
                            logged.package.namespace()
                        ),
                    };
                    failures.push((format!("verdict {}: {why} ({rules})", position + 1), logged));
                }
            }
        }
    }
    if failures.is_empty() {
        return Ok(report);
    }
    Err(evidence(remote, &audited, &failures))
}

/// The evidence: the verified checkpoint and, per failure, what is wrong
/// and the signed record that logged the verdict.
fn evidence(remote: &Remote, audited: &Audited, failures: &[(String, &Logged)]) -> AuditError {
    let mut details = Vec::new();
    for (why, logged) in failures {
        details.push(format!("{} of {}: {why}", logged.manifest, logged.package));
        details.push(format!(
            "  logged by record {} of log {} (entry {}); receipt: {}/receipt/{}/{}",
            logged.record_id,
            logged.log_id,
            logged.index,
            remote.url(),
            logged.log_id,
            logged.record_id
        ));
        if let Some((_, _, record)) = usize::try_from(logged.index)
            .ok()
            .and_then(|i| audited.records.get(i))
            && let Some(json) = STANDARD
                .decode(&record.envelope.content_bytes)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
        {
            details.push(format!("  record: {json}"));
        }
    }
    AuditError::Evidence(Box::new(Evidence {
        summary: format!(
            "{} logged signature verdicts do not hold against what the registry serves",
            failures.len()
        ),
        checkpoints: vec![(
            format!("{}/checkpoint, verified", remote.url()),
            audited.checkpoint.note.clone(),
        )],
        details,
    }))
}
