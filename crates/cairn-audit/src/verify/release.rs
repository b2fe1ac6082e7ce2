//! Is this digest the content of the logged release `name@version`?
//!
//! The package log is proven with [`crate::package::prove_package`]; the
//! release record is then found by the id the validated state names and
//! decoded again, so the content compared is the one in the signed record
//! (also for a yanked release, whose state no longer carries it).

use std::collections::BTreeMap;

use cairn_crypto::{KeyId, Sha256Digest};
use cairn_protocol::package::PackageState;
use cairn_protocol::record::{PackageEntry, PackageRecord};
use cairn_protocol::wire::PublishedRecord;
use cairn_protocol::{Envelope, LogId, PackageName, RecordId};
use futures_util::StreamExt as _;
use semver::Version;

use super::lock::Locked;
use super::{CONCURRENCY, Checked, Logged, Status, Verifier};
use crate::AuditError;
use crate::package::{ProvenLog, decode, prove_package};

/// A release as its signed record states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFacts {
    /// The record, as served.
    pub record: PublishedRecord,
    /// Its id.
    pub record_id: RecordId,
    /// The content it releases.
    pub content: Sha256Digest,
    /// Whether the release was yanked since.
    pub yanked: bool,
}

/// The release of `version` in a proven package log, if there is one.
pub fn find_release(
    state: &PackageState,
    proven: &ProvenLog,
    version: &Version,
) -> Result<Option<ReleaseFacts>, AuditError> {
    let Some(release) = state.release(version) else {
        return Ok(None);
    };
    for record in &proven.records {
        let envelope = Envelope::<PackageRecord>::from_parts(
            decode(record)?,
            KeyId::new(record.envelope.key_id.clone()),
            &record.envelope.signature,
        )
        .map_err(|e| AuditError::Inconsistent(format!("record: {e}")))?;
        if envelope.record_id() != release.record_id {
            continue;
        }
        let content = envelope
            .record()
            .entries
            .iter()
            .find_map(|entry| match entry {
                PackageEntry::Release {
                    version: released,
                    content,
                } if released == version => Some(*content),
                _ => None,
            });
        return match content {
            Some(content) => Ok(Some(ReleaseFacts {
                record: record.clone(),
                record_id: release.record_id,
                content,
                yanked: release.yanked(),
            })),
            None => Err(AuditError::Inconsistent(format!(
                "record {} does not release {version}",
                release.record_id
            ))),
        };
    }
    Err(AuditError::Inconsistent(format!(
        "the release record {} of {version} is not in the log",
        release.record_id
    )))
}

/// The lines of evidence that show a signed release record.
pub fn record_details(
    verifier: &Verifier,
    package: &PackageName,
    proven: &ProvenLog,
    facts: &ReleaseFacts,
) -> Vec<String> {
    let record_id = facts.record_id;
    vec![
        format!(
            "--- signed release record {record_id} of {package} (registry index {}, proven \
             included in the warg checkpoint above, log length {}) ---",
            facts.record.registry_index, proven.warg.contents.checkpoint.log_length
        ),
        serde_json::to_string_pretty(&facts.record.envelope).unwrap_or_default(),
        "--- end ---".into(),
        format!("it releases content {}", facts.content),
        format!(
            "a receipt for it: {}/receipt/{}/{record_id}",
            verifier.remote.url(),
            LogId::package(package)
        ),
    ]
}

/// A copy of an error, for every version it stopped.
fn duplicate(error: &AuditError) -> AuditError {
    match error {
        AuditError::Network(m) => AuditError::Network(m.clone()),
        AuditError::Inconsistent(m) => AuditError::Inconsistent(m.clone()),
        AuditError::Evidence(e) => AuditError::Evidence(e.clone()),
        AuditError::Refused(m) => AuditError::Refused(m.clone()),
        AuditError::Local(m) => AuditError::Local(m.clone()),
    }
}

impl Verifier {
    /// Proves the log of `package` and checks each `(version, digest)`
    /// fetched against it; `what` names where the digests came from in
    /// evidence (`the lock`, `the file`).
    pub async fn check_package(
        &self,
        package: &PackageName,
        wanted: &[(Version, Sha256Digest)],
        what: &str,
    ) -> Vec<Checked> {
        let checked = |version: &Version, digest: &Sha256Digest, status, logged| Checked {
            package: package.to_string(),
            version: version.to_string(),
            digest: *digest,
            status,
            logged,
        };
        let (state, proven) = match prove_package(&self.remote, &self.trusted, package).await {
            Ok(proof) => proof,
            // The only refusal of a proof: the package has no log.
            Err(AuditError::Refused(why)) => {
                return wanted
                    .iter()
                    .map(|(v, d)| checked(v, d, Status::NotLogged(why.clone()), None))
                    .collect();
            }
            Err(error) => {
                return wanted
                    .iter()
                    .map(|(v, d)| checked(v, d, Status::Failed(duplicate(&error)), None))
                    .collect();
            }
        };
        let log_length = proven.warg.contents.checkpoint.log_length;
        wanted
            .iter()
            .map(|(version, digest)| {
                let facts = match find_release(&state, &proven, version) {
                    Ok(Some(facts)) => facts,
                    Ok(None) => {
                        let why = format!(
                            "the log of {package} holds no release {version} (log length {log_length})"
                        );
                        return checked(version, digest, Status::NotLogged(why), None);
                    }
                    Err(error) => return checked(version, digest, Status::Failed(error), None),
                };
                let logged = Some(Logged {
                    record: facts.record_id.to_string(),
                    registry_index: facts.record.registry_index,
                    log_length,
                });
                let status = if facts.content != *digest {
                    let mut details = vec![format!(
                        "{what} names {package}@{version} with digest {digest}"
                    )];
                    details.extend(record_details(self, package, &proven, &facts));
                    Status::Failed(proven.evidence(
                        &self.remote,
                        &self.trusted,
                        format!(
                            "{package}@{version}: {what} has digest {digest} but the signed \
                             release record says {}",
                            facts.content
                        ),
                        details,
                    ))
                } else if facts.yanked {
                    Status::Yanked
                } else {
                    Status::Verified
                };
                checked(version, digest, status, logged)
            })
            .collect()
    }

    /// Checks every locked version, proving each package once and at most
    /// [`CONCURRENCY`] at a time; `progress(done, total)` is called as
    /// packages finish. Results are in the lock's order.
    pub async fn check_lock(
        &self,
        locked: &[Locked],
        mut progress: impl FnMut(usize, usize),
    ) -> Vec<Checked> {
        let mut packages: BTreeMap<&PackageName, Vec<(Version, Sha256Digest)>> = BTreeMap::new();
        for entry in locked {
            packages
                .entry(&entry.package)
                .or_default()
                .push((entry.version.clone(), entry.digest));
        }
        let total = packages.len();
        let mut stream = futures_util::stream::iter(packages)
            .map(|(package, wanted)| async move {
                self.check_package(package, &wanted, "the lock").await
            })
            .buffer_unordered(CONCURRENCY);
        let mut results = Vec::new();
        let mut done = 0;
        while let Some(checked) = stream.next().await {
            done += 1;
            progress(done, total);
            results.extend(checked);
        }
        let position = |c: &Checked| {
            locked
                .iter()
                .position(|l| l.package.as_str() == c.package && l.version.to_string() == c.version)
        };
        results.sort_by_key(position);
        results
    }
}
