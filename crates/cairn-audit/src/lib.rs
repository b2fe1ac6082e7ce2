//! Auditing a cairn registry from the outside, and witnessing.
//!
//! * [`follow`]: keep a trusted checkpoint in a directory; on each new
//!   checkpoint verify its signatures (and a witness quorum), prove it
//!   consistent with the trusted one from the log's tiles, and refuse to move
//!   backwards. A fork stops it with the evidence: both signed checkpoints
//!   and the proof that does not reconcile them.
//! * [`fsck`]: download every tile and entry, recompute every hash and the
//!   map root, and re-validate every operator and package log.
//! * [`package`]: prove one package's full history against a trusted
//!   checkpoint.
//! * [`receipt`]: verify a `c2sp.org/tlog-proof` receipt offline.
//! * [`oci`]: check what the OCI door serves for every tag and manifest
//!   against the replayed metadata and package logs.
//! * [`signatures`]: recheck every logged signature verdict from the
//!   signature manifests and blobs the OCI door serves, against the trust
//!   rules in force when it was logged and a Sigstore trusted root.
//! * [`verify`]: prove that what a consumer fetched (a `wkg.lock`, a file,
//!   an OCI manifest) is what the log says was released.
//! * [`witness_server`] and [`witness_client`]: both sides of
//!   `c2sp.org/tlog-witness`.
//!
//! An auditor trusts nothing the registry serves without checking it
//! against a signed checkpoint; the only inputs it trusts are the log's
//! verifier key, an optional witness policy, its own stored state and, to
//! recheck keyless signatures, the Sigstore trusted root it is given.

pub mod follow;
pub mod fsck;
pub mod oci;
pub mod package;
pub mod receipt;
pub mod remote;
pub mod signatures;
pub mod state;
pub mod verify;
pub mod witness_client;
pub mod witness_server;

use std::fmt;

use cairn_crypto::note::{Note, VerifierKey};
use cairn_log::checkpoint::C2spCheckpoint;
use cairn_log::policy::Policy;
use thiserror::Error;

/// Why an audit stopped.
#[derive(Debug, Error)]
pub enum AuditError {
    /// The registry could not be reached or answered something unreadable.
    /// Nothing is known to be wrong with the log; retry later.
    #[error("{0}")]
    Network(String),
    /// The registry served something that does not verify (a bad signature,
    /// a tile of the wrong size, a record that does not validate). The
    /// message says what.
    #[error("the registry served inconsistent data: {0}")]
    Inconsistent(String),
    /// Proof that the log misbehaved: two signed checkpoints that cannot
    /// both be true, or signed data that contradicts what the log serves.
    #[error("{0}")]
    Evidence(Box<Evidence>),
    /// The auditor refused to proceed (e.g. a checkpoint older than the
    /// trusted one), without proof of misbehaviour.
    #[error("{0}")]
    Refused(String),
    /// Local state or arguments are unusable.
    #[error("{0}")]
    Local(String),
}

impl AuditError {
    /// The process exit code for this error: 1 network, 2 evidence of
    /// misbehaviour or inconsistent data, 3 refused, 4 local problem.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Network(_) => 1,
            Self::Inconsistent(_) | Self::Evidence(_) => 2,
            Self::Refused(_) => 3,
            Self::Local(_) => 4,
        }
    }
}

/// What proves a log misbehaved, printed for humans and kept as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// What is wrong, in one sentence.
    pub summary: String,
    /// The signed checkpoints involved, verbatim, each with where it came from.
    pub checkpoints: Vec<(String, Vec<u8>)>,
    /// The proof or data that shows the contradiction.
    pub details: Vec<String>,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "SECURITY ERROR: {}", self.summary)?;
        for (source, note) in &self.checkpoints {
            writeln!(f)?;
            writeln!(f, "--- signed checkpoint ({source}) ---")?;
            write!(f, "{}", String::from_utf8_lossy(note))?;
            writeln!(f, "--- end ---")?;
        }
        if !self.details.is_empty() {
            writeln!(f)?;
            for detail in &self.details {
                writeln!(f, "{detail}")?;
            }
        }
        Ok(())
    }
}

/// What an auditor trusts: the log's verifier key (its name is the log's
/// origin) and, optionally, a witness policy whose quorum every checkpoint
/// must meet.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The log's C2SP verifier key.
    pub vkey: VerifierKey,
    /// Witnesses and quorum, if required.
    pub policy: Option<Policy>,
}

/// A checkpoint whose signatures verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed note, verbatim.
    pub note: Vec<u8>,
    /// Its body.
    pub checkpoint: C2spCheckpoint,
    /// The witnesses (policy names) whose cosignatures verified.
    pub cosigned_by: Vec<String>,
}

impl Trust {
    /// The log's origin.
    pub fn origin(&self) -> &str {
        self.vkey.name()
    }

    /// Verifies a signed checkpoint: the origin is the log's, the log's key
    /// signed it, every signature by a known key verifies, and the witness
    /// quorum (if any) is met.
    pub fn verify(&self, note: &[u8]) -> Result<Verified, AuditError> {
        let parsed = Note::parse(note).map_err(|e| {
            AuditError::Inconsistent(format!("the checkpoint is not a signed note: {e}"))
        })?;
        let checkpoint = C2spCheckpoint::parse(parsed.text())
            .map_err(|e| AuditError::Inconsistent(format!("malformed checkpoint: {e}")))?;
        if checkpoint.origin != self.origin() {
            return Err(AuditError::Inconsistent(format!(
                "the checkpoint's origin is `{}`, expected `{}`",
                checkpoint.origin,
                self.origin()
            )));
        }
        let mut verifiers = vec![self.vkey.clone()];
        if let Some(policy) = &self.policy {
            verifiers.extend(policy.witnesses().iter().map(|w| w.vkey.clone()));
        }
        let verified = parsed
            .verify(&verifiers)
            .map_err(|e| AuditError::Inconsistent(format!("checkpoint signatures: {e}")))?;
        if !verified
            .iter()
            .any(|v| v.name == self.vkey.name() && v.key_id == self.vkey.key_id())
        {
            return Err(AuditError::Inconsistent(
                "the checkpoint is not signed by the log's key".into(),
            ));
        }
        let mut cosigned_by = Vec::new();
        if let Some(policy) = &self.policy {
            for witness in policy.witnesses() {
                if verified
                    .iter()
                    .any(|v| v.name == witness.vkey.name() && v.key_id == witness.vkey.key_id())
                {
                    cosigned_by.push(witness.name.clone());
                }
            }
            let names: Vec<&str> = cosigned_by.iter().map(String::as_str).collect();
            if !policy.quorum_met(&names) {
                return Err(AuditError::Refused(format!(
                    "checkpoint {} does not meet the witness quorum (cosigned by: {})",
                    checkpoint.size,
                    if names.is_empty() {
                        "nobody".to_owned()
                    } else {
                        names.join(", ")
                    }
                )));
            }
        }
        Ok(Verified {
            note: note.to_vec(),
            checkpoint,
            cosigned_by,
        })
    }
}
