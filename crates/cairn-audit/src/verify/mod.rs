//! `cairn verify`: prove that what a consumer fetched is what the log says
//! was released — the checksum-database check for `wkg.lock`.
//!
//! The life of one run:
//!
//! 1. **Trust a checkpoint.** The registry's C2SP checkpoint is verified
//!    with the pinned verifier key (and the witness quorum, with a policy).
//!    With a state directory, it is first proven consistent with the
//!    checkpoint an earlier run trusted ([`crate::follow::step`]): a
//!    registry that shows this consumer a history that does not extend the
//!    one it saw before is caught there, with both signed checkpoints as
//!    evidence.
//! 2. **Prove each package's log** against that checkpoint
//!    ([`crate::package::prove_package`]): every record validated in order,
//!    included in the log at its index, the head in the signed map. Packages
//!    are proven concurrently, at most [`CONCURRENCY`] at a time.
//! 3. **Compare.** A dependency verifies when the log holds a release of
//!    exactly its name and version whose content is its digest. A release
//!    published over OCI is a warg release record like one published over
//!    warg (the registry's publisher key signs it), so both verify the same
//!    way. A version the log never released is *not verified*; a digest
//!    other than the released content is *evidence*: the signed release
//!    record and checkpoints are printed; a yanked release is reported.
//! 4. **OCI** ([`oci`]): the manifest the OCI door serves is checked
//!    against the package's metadata log (which manifest each tag names,
//!    which blobs each manifest references) and, for a version, against the
//!    release's content.
//!
//! What this does *not* prove: that the registry serves everything it
//! logged (it may withhold), or that it logged promptly. Witnesses and the
//! state directory bound what a registry can show different consumers; see
//! `docs/verify.md`.

pub mod lock;
pub mod oci;
pub mod release;

use std::fmt;

use cairn_crypto::Sha256Digest;
use serde::Serialize;

use crate::remote::Remote;
use crate::state::StateDir;
use crate::{AuditError, Trust, Verified};

/// How many packages are proven at once.
pub const CONCURRENCY: usize = 16;

/// A registry and the checkpoint everything is proven against.
#[derive(Debug)]
pub struct Verifier {
    /// The registry's public API.
    pub remote: Remote,
    /// The checkpoint every proof is tied to.
    pub trusted: Verified,
}

impl Verifier {
    /// Trusts the registry's current checkpoint: verified with `trust`, and
    /// with `state`, proven consistent with the one trusted before (which
    /// it then replaces). Fails with the evidence of a split view.
    pub async fn open(
        remote: Remote,
        trust: &Trust,
        state: Option<&StateDir>,
    ) -> Result<Self, AuditError> {
        let trusted = match state {
            None => trust.verify(&remote.checkpoint().await?)?,
            Some(state) => {
                // `step` verified the current checkpoint with the policy and
                // kept it when it was newer; when it was not, the stored one
                // has the same size and root. Either way the stored note is
                // the witnessed tree; the log key alone re-verifies it.
                crate::follow::step(&remote, trust, state).await?;
                let note = state.trusted()?.ok_or_else(|| {
                    AuditError::Local("the state directory holds no checkpoint".into())
                })?;
                Trust {
                    vkey: trust.vkey.clone(),
                    policy: None,
                }
                .verify(&note)?
            }
        };
        Ok(Self { remote, trusted })
    }
}

/// What was checked about one dependency.
#[derive(Debug)]
pub enum Status {
    /// Its digest is the content of the logged release.
    Verified,
    /// Its digest is the content of the logged release, which was yanked.
    Yanked,
    /// The log holds no release of it.
    NotLogged(String),
    /// It could not be verified: evidence of misbehaviour, data that does
    /// not verify, or the registry could not be read.
    Failed(AuditError),
}

impl Status {
    /// The process exit code for this status: 0 verified (and yanked,
    /// unless `deny_yanked`), 1 not verified, else the audit error's code
    /// (2 evidence or inconsistent data, 1 network, 3 refused, 4 local).
    pub fn exit_code(&self, deny_yanked: bool) -> u8 {
        match self {
            Self::Verified => 0,
            Self::Yanked => u8::from(deny_yanked),
            Self::NotLogged(_) => 1,
            Self::Failed(error) => error.exit_code(),
        }
    }

    /// A short name: `verified`, `yanked`, `not-logged`, `evidence` or
    /// `error`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Yanked => "yanked",
            Self::NotLogged(_) => "not-logged",
            Self::Failed(AuditError::Evidence(_)) => "evidence",
            Self::Failed(_) => "error",
        }
    }
}

/// Where a verified release is in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Logged {
    /// The release record.
    pub record: String,
    /// Its index in the registry log.
    pub registry_index: u64,
    /// The warg checkpoint (log length) it was proven at.
    pub log_length: u64,
}

/// One dependency and what was found.
#[derive(Debug)]
pub struct Checked {
    /// `ns:name`.
    pub package: String,
    /// The version.
    pub version: String,
    /// The digest that was fetched.
    pub digest: Sha256Digest,
    /// What was found.
    pub status: Status,
    /// The release record, when the log holds one.
    pub logged: Option<Logged>,
}

impl Checked {
    /// The machine-readable result.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::json!({
            "package": self.package,
            "version": self.version,
            "digest": self.digest.to_string(),
            "status": self.status.name(),
        });
        if let Some(logged) = &self.logged {
            value["logged"] = serde_json::json!(logged);
        }
        match &self.status {
            Status::NotLogged(why) => value["message"] = why.clone().into(),
            Status::Failed(AuditError::Evidence(evidence)) => {
                value["message"] = evidence.summary.clone().into();
                value["evidence"] = evidence.to_string().into();
            }
            Status::Failed(error) => value["message"] = error.to_string().into(),
            Status::Verified | Status::Yanked => {}
        }
        value
    }
}

impl fmt::Display for Checked {
    /// One line: `ns:name@1.2.3 sha256:… verified (record … at 12)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} {}: ", self.package, self.version, self.digest)?;
        match &self.status {
            Status::Verified => write!(f, "verified")?,
            Status::Yanked => write!(f, "verified, but the release is YANKED")?,
            Status::NotLogged(why) => write!(f, "NOT VERIFIED: {why}")?,
            Status::Failed(AuditError::Evidence(evidence)) => {
                write!(f, "EVIDENCE: {}", evidence.summary)?
            }
            Status::Failed(error) => write!(f, "NOT VERIFIED: {error}")?,
        }
        if let Some(logged) = &self.logged {
            write!(
                f,
                " (release record {} at index {}, log length {})",
                logged.record, logged.registry_index, logged.log_length
            )?;
        }
        Ok(())
    }
}

/// The exit code of a run: 2 if anything is evidence of misbehaviour, else
/// the highest code of any dependency (0 when all verified).
pub fn exit_code(results: &[Checked], deny_yanked: bool) -> u8 {
    let codes = results.iter().map(|c| c.status.exit_code(deny_yanked));
    if codes.clone().any(|code| code == 2) {
        2
    } else {
        codes.max().unwrap_or(0)
    }
}
