//! `cairn audit verify-package`: prove one package's full history against
//! a trusted checkpoint.
//!
//! The warg checkpoint is tied to the trusted C2SP checkpoint by a
//! consistency proof from the log's tiles; the operator log is replayed to
//! verify the warg checkpoint's signature; every record of the package is
//! validated in order and proven included in the log at its index; and the
//! package's head is proven to be its value in the signed map.

use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_crypto::{EcdsaSignature, KeyId};
use cairn_log::leaf::{log_leaf_hash, map_leaf_hash};
use cairn_log::map::{self, MapKey};
use cairn_log::proof::{inclusion_plan, inclusion_proof, verify_inclusion};
use cairn_log::tree::NodeId;
use cairn_protocol::operator::OperatorState;
use cairn_protocol::package::PackageState;
use cairn_protocol::record::{OperatorPermission, OperatorRecord, PackageRecord};
use cairn_protocol::wire::{FetchLogsRequest, PublishedRecord, SignedCheckpoint};
use cairn_protocol::{Envelope, LogId, PackageName, RecordId};

use crate::follow::inconsistency;
use crate::remote::Remote;
use crate::{AuditError, Evidence, Verified};

/// What was proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageReport {
    /// The package.
    pub name: PackageName,
    /// The warg checkpoint the history was proven at.
    pub log_length: u64,
    /// The trusted C2SP checkpoint it was tied to.
    pub trusted_size: u64,
    /// Records of the package.
    pub records: u64,
    /// Its releases: version and whether yanked.
    pub releases: Vec<(String, bool)>,
}

/// Fetches the operator log and the package log below `length`.
async fn fetch(
    remote: &Remote,
    length: u64,
    log_id: LogId,
) -> Result<(Vec<PublishedRecord>, Vec<PublishedRecord>), AuditError> {
    let mut operator = Vec::new();
    let mut package = Vec::new();
    let mut operator_token = None;
    let mut package_token = None;
    loop {
        let Some(response) = remote
            .fetch_logs_if_known(&FetchLogsRequest {
                log_length: length,
                limit: Some(1000),
                operator: operator_token.clone(),
                packages: BTreeMap::from([(log_id, package_token.clone())]),
            })
            .await?
        else {
            // The registry says the log does not exist: no records.
            return Ok((operator, Vec::new()));
        };
        let before = operator.len() + package.len();
        for record in response.operator {
            operator_token = Some(record.fetch_token.clone());
            operator.push(record);
        }
        for (id, list) in response.packages {
            if id != log_id {
                return Err(AuditError::Inconsistent(format!("answered for log {id}")));
            }
            for record in list {
                package_token = Some(record.fetch_token.clone());
                package.push(record);
            }
        }
        if !response.more || operator.len() + package.len() == before {
            break;
        }
    }
    Ok((operator, package))
}

/// A log proven against a trusted checkpoint: the warg checkpoint it was
/// proven at, the operator log's state there, and the log's records, each
/// validated by the caller, proven included at its index, the last one
/// proven to be the log's head in the signed map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenLog {
    /// The warg checkpoint the records are proven at.
    pub warg: SignedCheckpoint,
    /// The operator log's state at that checkpoint.
    pub operator: OperatorState,
    /// The log's records, in order.
    pub records: Vec<PublishedRecord>,
}

impl ProvenLog {
    /// Evidence against the log: `summary` with `details`, the trusted
    /// C2SP checkpoint and the warg checkpoint the records are proven at.
    pub fn evidence(
        &self,
        remote: &Remote,
        trusted: &Verified,
        summary: String,
        details: Vec<String>,
    ) -> AuditError {
        evidence(remote, trusted, &self.warg, summary, details)
    }
}

fn evidence(
    remote: &Remote,
    trusted: &Verified,
    warg: &SignedCheckpoint,
    summary: String,
    details: Vec<String>,
) -> AuditError {
    let json = serde_json::to_vec_pretty(warg).unwrap_or_default();
    AuditError::Evidence(Box::new(Evidence {
        summary,
        checkpoints: vec![
            ("trusted C2SP checkpoint".into(), trusted.note.clone()),
            (
                format!("warg, {}/v1/fetch/checkpoint", remote.url()),
                [json, b"\n".to_vec()].concat(),
            ),
        ],
        details,
    }))
}

/// Proves the log `log_id` (named `name` in messages) against `trusted` (a
/// verified C2SP checkpoint of the same registry): the warg checkpoint is
/// tied to it, the operator log replayed, each record passed in order to
/// `validate` (which checks it against the operator state and returns its
/// record id), proven included, and the head proven in the signed map.
/// Refuses a log with no records.
pub async fn prove_log(
    remote: &Remote,
    trusted: &Verified,
    log_id: LogId,
    name: &str,
    mut validate: impl FnMut(&OperatorState, &PublishedRecord) -> Result<RecordId, AuditError>,
) -> Result<ProvenLog, AuditError> {
    let warg = remote.warg_checkpoint().await?;
    let length = warg.contents.checkpoint.log_length;
    let log_root = warg.contents.checkpoint.log_root;
    let evidence =
        |summary: String, details: Vec<String>| evidence(remote, trusted, &warg, summary, details);
    if let Some((proof, why)) = inconsistency(
        remote,
        (trusted.checkpoint.size, trusted.checkpoint.root),
        (length, log_root),
    )
    .await?
    {
        let mut details = vec![format!("consistency: {why}")];
        details.extend(proof.iter().map(|h| format!("  {}", STANDARD.encode(h.0))));
        return Err(evidence(
            "the warg checkpoint is not consistent with the trusted checkpoint".into(),
            details,
        ));
    }

    let (operator_records, package_records) = fetch(remote, length, log_id).await?;
    if package_records.is_empty() {
        return Err(AuditError::Refused(format!(
            "{name} has no records below {length}"
        )));
    }

    // The operator log, then the checkpoint's signature.
    let mut operator = OperatorState::new();
    let mut included: Vec<(u64, LogId, RecordId)> = Vec::new();
    for record in &operator_records {
        let envelope = Envelope::<OperatorRecord>::from_parts(
            decode(record)?,
            KeyId::new(record.envelope.key_id.clone()),
            &record.envelope.signature,
        )
        .map_err(|e| AuditError::Inconsistent(format!("operator record: {e}")))?;
        operator = operator.validate(&envelope).map_err(|e| {
            AuditError::Inconsistent(format!(
                "operator record at {} does not validate: {e}",
                record.registry_index
            ))
        })?;
        included.push((
            record.registry_index,
            LogId::operator(),
            envelope.record_id(),
        ));
    }
    let key_id = KeyId::new(warg.key_id.clone());
    let signed = operator.public_key(&key_id).is_some_and(|key| {
        warg.signature
            .parse::<EcdsaSignature>()
            .is_ok_and(|sig| key.verify(&warg.contents.signing_message(), &sig).is_ok())
    }) && operator.has_permission(&key_id, OperatorPermission::Commit);
    if !signed {
        return Err(AuditError::Inconsistent(format!(
            "the warg checkpoint is not signed by an operator key holding `commit` ({key_id})"
        )));
    }

    // The log itself.
    let mut last_index = None;
    for record in &package_records {
        if last_index.is_some_and(|last| record.registry_index <= last) {
            return Err(AuditError::Inconsistent("records out of order".into()));
        }
        last_index = Some(record.registry_index);
        let record_id = validate(&operator, record)?;
        included.push((record.registry_index, log_id, record_id));
    }

    // Every record is in the log at its index.
    let mut nodes: HashSet<NodeId> = HashSet::new();
    for (index, ..) in &included {
        nodes.extend(
            inclusion_plan(*index, length).map_err(|e| AuditError::Inconsistent(e.to_string()))?,
        );
    }
    let nodes: Vec<NodeId> = nodes.into_iter().collect();
    let hashes = remote.hashes(length, &nodes).await?;
    for (index, log, record_id) in &included {
        let proof = inclusion_proof(*index, length, &hashes)
            .map_err(|e| AuditError::Inconsistent(e.to_string()))?;
        let leaf = log_leaf_hash(&log.0, &record_id.0);
        if let Err(e) = verify_inclusion(*index, length, &leaf, &proof, &log_root) {
            let mut details = vec![format!(
                "record {record_id} of log {log} at index {index}: {e}"
            )];
            details.extend(proof.iter().map(|h| format!("  {}", STANDARD.encode(h.0))));
            return Err(evidence(
                format!(
                    "record {record_id} served for {name} is not in the signed log at index {index}"
                ),
                details,
            ));
        }
    }

    // The head is the log's value in the signed map.
    let (head_index, _, head_record) = included
        .last()
        .copied()
        .ok_or_else(|| AuditError::Refused(format!("{name} has no records")))?;
    let proofs = remote.prove_inclusion(length, vec![head_index]).await?;
    let bundle = STANDARD
        .decode(&proofs.map)
        .map_err(|_| AuditError::Inconsistent("map bundle is not base64".into()))?;
    let map_proof = map::decode_bundle(&bundle)
        .map_err(|e| AuditError::Inconsistent(format!("map bundle: {e}")))?
        .into_iter()
        .next()
        .ok_or_else(|| AuditError::Inconsistent("empty map bundle".into()))?;
    let found = map_proof
        .evaluate(
            &MapKey::for_log_id(&log_id.0),
            &map_leaf_hash(&head_record.0),
        )
        .map_err(|e| AuditError::Inconsistent(format!("map proof: {e}")))?;
    if found != warg.contents.checkpoint.map_root {
        return Err(evidence(
            format!("the head of {name} is not its value in the signed map"),
            vec![format!(
                "head {head_record} at {head_index} evaluates to map root {found}, signed {}",
                warg.contents.checkpoint.map_root
            )],
        ));
    }

    Ok(ProvenLog {
        warg,
        operator,
        records: package_records,
    })
}

/// Proves the package log of `name` against `trusted`, validating every
/// record; returns its validated state with the proven log.
pub async fn prove_package(
    remote: &Remote,
    trusted: &Verified,
    name: &PackageName,
) -> Result<(PackageState, ProvenLog), AuditError> {
    let mut state = PackageState::new();
    let proven = prove_log(
        remote,
        trusted,
        LogId::package(name),
        name.as_str(),
        |_, record| {
            let envelope = Envelope::<PackageRecord>::from_parts(
                decode(record)?,
                KeyId::new(record.envelope.key_id.clone()),
                &record.envelope.signature,
            )
            .map_err(|e| AuditError::Inconsistent(format!("record: {e}")))?;
            state = std::mem::take(&mut state)
                .validate(&envelope)
                .map_err(|e| {
                    AuditError::Inconsistent(format!(
                        "record at {} of {name} does not validate: {e}",
                        record.registry_index
                    ))
                })?;
            Ok(envelope.record_id())
        },
    )
    .await?;
    Ok((state, proven))
}

/// Proves the history of `name` against `trusted` (a verified C2SP
/// checkpoint of the same registry).
pub async fn verify_package(
    remote: &Remote,
    trusted: &Verified,
    name: &PackageName,
) -> Result<PackageReport, AuditError> {
    let (state, proven) = prove_package(remote, trusted, name).await?;
    Ok(PackageReport {
        name: name.clone(),
        log_length: proven.warg.contents.checkpoint.log_length,
        trusted_size: trusted.checkpoint.size,
        records: proven.records.len() as u64,
        releases: state
            .releases()
            .map(|r| (r.version.to_string(), r.yanked()))
            .collect(),
    })
}

/// The bytes of a record's `contentBytes`.
pub fn decode(record: &PublishedRecord) -> Result<Vec<u8>, AuditError> {
    STANDARD
        .decode(&record.envelope.content_bytes)
        .map_err(|_| {
            AuditError::Inconsistent(format!(
                "record {}: contentBytes is not base64",
                record.registry_index
            ))
        })
}
