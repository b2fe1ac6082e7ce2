//! `cairn audit follow`: move a trusted checkpoint forward, one verified,
//! consistent checkpoint at a time; with `--oci`, after each step, check
//! what the OCI door serves against the replayed logs ([`crate::oci`]).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_log::proof::{consistency_plan, consistency_proof, verify_consistency};

use crate::oci::{Door, OciReport};
use crate::remote::Remote;
use crate::state::StateDir;
use crate::{AuditError, Evidence, Trust, Verified};

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The size trusted before the step, if any.
    pub previous: Option<u64>,
    /// The size trusted after it.
    pub current: u64,
    /// Witnesses whose cosignatures verified on the current checkpoint.
    pub cosigned_by: Vec<String>,
    /// What the OCI door check covered, when asked for.
    pub oci: Option<OciReport>,
}

/// The consistency proof from `old` to `new` (sizes), computed from the
/// log's tiles, with the hashes for the evidence.
async fn prove(remote: &Remote, old: u64, new: u64) -> Result<Vec<cairn_log::Hash>, AuditError> {
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    let plan = consistency_plan(old, new).map_err(|e| AuditError::Inconsistent(e.to_string()))?;
    let hashes = remote.hashes(new, &plan).await?;
    consistency_proof(old, new, &hashes).map_err(|e| AuditError::Inconsistent(e.to_string()))
}

fn fork(
    summary: String,
    trusted: &Verified,
    new: &Verified,
    source: &str,
    proof: &[cairn_log::Hash],
    why: Option<String>,
) -> AuditError {
    let mut details = Vec::new();
    if !proof.is_empty() || why.is_some() {
        details.push(format!(
            "consistency proof from {} to {} (computed from the log's tiles):",
            trusted.checkpoint.size.min(new.checkpoint.size),
            trusted.checkpoint.size.max(new.checkpoint.size)
        ));
        for hash in proof {
            details.push(format!("  {}", STANDARD.encode(hash.0)));
        }
        if let Some(why) = why {
            details.push(format!("verification: {why}"));
        }
    }
    AuditError::Evidence(Box::new(Evidence {
        summary,
        checkpoints: vec![
            (
                "trusted, from the state directory".into(),
                trusted.note.clone(),
            ),
            (format!("new, from {source}"), new.note.clone()),
        ],
        details,
    }))
}

/// Whether the trees `a` and `b` (size, root) are consistent: equal roots at
/// equal sizes, or a consistency proof from the smaller to the larger,
/// computed from the log's tiles, that verifies against both roots. Returns
/// `None` when consistent, else the proof and why it fails.
pub async fn inconsistency(
    remote: &Remote,
    a: (u64, cairn_log::Hash),
    b: (u64, cairn_log::Hash),
) -> Result<Option<(Vec<cairn_log::Hash>, String)>, AuditError> {
    if a.0 == b.0 {
        return Ok((a.1 != b.1).then(|| (Vec::new(), "equal sizes, different roots".to_owned())));
    }
    let (small, large) = if a.0 < b.0 { (a, b) } else { (b, a) };
    let proof = prove(remote, small.0, large.0).await?;
    Ok(
        verify_consistency(small.0, large.0, &small.1, &large.1, &proof)
            .err()
            .map(|e| (proof, e.to_string())),
    )
}

/// Checks that `new` is consistent with `trusted`: equal roots at equal
/// sizes, or a consistency proof (from the tiles of the larger tree) that
/// verifies against both roots.
pub async fn check_consistent(
    remote: &Remote,
    trusted: &Verified,
    new: &Verified,
) -> Result<(), AuditError> {
    let (old, cur) = (&trusted.checkpoint, &new.checkpoint);
    match inconsistency(remote, (old.size, old.root), (cur.size, cur.root)).await {
        Ok(None) => Ok(()),
        Ok(Some((proof, why))) => {
            let summary = if old.size == cur.size {
                format!(
                    "the log signed two different checkpoints of size {} (a split view or a rewritten history)",
                    cur.size
                )
            } else {
                format!(
                    "checkpoints {} and {} of the log are not consistent: the log rewrote its history",
                    old.size.min(cur.size),
                    old.size.max(cur.size)
                )
            };
            let why = (!proof.is_empty()).then_some(why);
            Err(fork(summary, trusted, new, remote.url(), &proof, why))
        }
        Err(AuditError::Network(e)) if cur.size < old.size => Err(AuditError::Refused(format!(
            "the log serves checkpoint {} but checkpoint {} is trusted, and its tiles for the \
             larger tree are gone ({e}); refusing to move backwards",
            cur.size, old.size
        ))),
        Err(other) => Err(other),
    }
}

/// One step: fetch and verify the log's checkpoint, prove it consistent
/// with the trusted one, and trust it if it is newer. Refuses (without
/// changing the state) a checkpoint older than the trusted one.
pub async fn step(remote: &Remote, trust: &Trust, state: &StateDir) -> Result<Step, AuditError> {
    let note = remote.checkpoint().await?;
    let new = trust.verify(&note)?;
    let Some(trusted_bytes) = state.trusted()? else {
        state.trust(&note)?;
        return Ok(Step {
            previous: None,
            current: new.checkpoint.size,
            cosigned_by: new.cosigned_by,
            oci: None,
        });
    };
    // The stored checkpoint was verified when it was trusted; the log key
    // must still verify it (the policy may have changed since).
    let log_only = Trust {
        vkey: trust.vkey.clone(),
        policy: None,
    };
    let trusted = log_only.verify(&trusted_bytes).map_err(|e| {
        AuditError::Local(format!(
            "the trusted checkpoint in the state directory does not verify with this key: {e}"
        ))
    })?;
    let result = check_consistent(remote, &trusted, &new).await;
    if let Err(AuditError::Evidence(evidence)) = &result {
        let kept = state.keep_evidence(evidence)?;
        tracing::error!(path = %kept.display(), "evidence kept");
    }
    result?;
    let previous = trusted.checkpoint.size;
    if new.checkpoint.size < previous {
        return Err(AuditError::Refused(format!(
            "the log serves checkpoint {} but {previous} is trusted; refusing to move backwards \
             (the two are consistent: a stale cache or a rollback)",
            new.checkpoint.size
        )));
    }
    if new.checkpoint.size > previous {
        state.trust(&note)?;
    }
    Ok(Step {
        previous: Some(previous),
        current: new.checkpoint.size,
        cosigned_by: new.cosigned_by,
        oci: None,
    })
}

/// Steps every `interval` until an error; once if `interval` is `None`.
/// With `door`, each step also checks the OCI door against the replayed
/// logs, and keeps any evidence in the state directory.
pub async fn follow(
    remote: &Remote,
    trust: &Trust,
    state: &StateDir,
    interval: Option<Duration>,
    door: Option<&Door>,
    mut report: impl FnMut(&Step),
) -> Result<(), AuditError> {
    loop {
        let mut step = step(remote, trust, state).await?;
        if let Some(door) = door {
            let checked = crate::oci::check(remote, door, trust, |p| {
                tracing::info!(progress = p, "oci check");
            })
            .await;
            if let Err(AuditError::Evidence(evidence)) = &checked {
                let kept = state.keep_evidence(evidence)?;
                tracing::error!(path = %kept.display(), "evidence kept");
            }
            step.oci = Some(checked?);
        }
        report(&step);
        let Some(interval) = interval else {
            return Ok(());
        };
        tokio::time::sleep(interval).await;
    }
}
