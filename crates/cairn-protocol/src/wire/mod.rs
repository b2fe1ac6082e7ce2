//! JSON types of the warg v1 HTTP API, with the exact field names.
//!
//! SPEC: warg-wire §7 / warg-api `v1/*`. Everything is camelCase; response
//! types skip empty collections like the reference.

mod error;

use std::collections::BTreeMap;

use cairn_crypto::Sha256Digest;
use cairn_log::checkpoint::TimestampedCheckpoint;
use serde::{Deserialize, Serialize};

pub use error::WargError;

use crate::{LogId, RecordId};

fn is_false(b: &bool) -> bool {
    !*b
}

/// `ProtoEnvelopeBody`: a signed record on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvelopeBody {
    /// Base64 (standard, padded) of the record protobuf.
    pub content_bytes: String,
    /// The signer's key id.
    pub key_id: String,
    /// `ecdsa-p256:<base64 DER>`.
    pub signature: String,
}

/// A record in a `fetch/logs` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedRecord {
    /// The envelope.
    #[serde(flatten)]
    pub envelope: EnvelopeBody,
    /// Its position in the registry log.
    pub registry_index: u64,
    /// Opaque token to resume fetching after this record.
    pub fetch_token: String,
}

/// `SerdeEnvelope<TimestampedCheckpoint>`: a signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedCheckpoint {
    /// The checkpoint.
    pub contents: TimestampedCheckpoint,
    /// The operator key id.
    pub key_id: String,
    /// `ecdsa-p256:<base64 DER>` over `WARG-CHECKPOINT-SIGNATURE-V0:` ‖ encoding.
    pub signature: String,
}

/// `POST v1/fetch/logs` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FetchLogsRequest {
    /// A checkpoint length: only records below it are returned.
    pub log_length: u64,
    /// Records per log per page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u16>,
    /// Fetch token of the last operator record the client has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Package logs to fetch, each with the last fetch token (or null).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub packages: BTreeMap<LogId, Option<String>>,
}

/// A warning in a fetch response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchWarning {
    /// The message.
    pub message: String,
}

/// `POST v1/fetch/logs` response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchLogsResponse {
    /// Whether another page follows.
    #[serde(default)]
    pub more: bool,
    /// Operator records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator: Vec<PublishedRecord>,
    /// Package records per requested log (every requested log is a key).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub packages: BTreeMap<LogId, Vec<PublishedRecord>>,
    /// Warnings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<FetchWarning>,
}

/// `POST v1/fetch/names` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchNamesRequest {
    /// Log ids to name.
    pub packages: Vec<LogId>,
}

/// `POST v1/fetch/names` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchNamesResponse {
    /// Name of each log (`null` for the operator log).
    pub packages: BTreeMap<LogId, Option<String>>,
}

/// Where content can be downloaded from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ContentSource {
    /// An absolute URL to GET.
    #[serde(rename_all = "camelCase")]
    HttpGet {
        /// Absolute URL.
        url: String,
        /// Whether the URL supports `Range`.
        #[serde(default, skip_serializing_if = "is_false")]
        accept_ranges: bool,
        /// Content size in bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
}

/// Where missing content must be uploaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum UploadEndpoint {
    /// An HTTP upload.
    #[serde(rename_all = "camelCase")]
    Http {
        /// `POST` or `PUT`.
        method: String,
        /// The URL (absolute or relative to the registry).
        url: String,
        /// Headers (the reference client mishandles these; cairn sends none).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
}

/// Upload instructions for one missing digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingContent {
    /// Endpoints; the client uses the first.
    pub upload: Vec<UploadEndpoint>,
}

/// `POST v1/package/{logId}/record` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishRecordRequest {
    /// `namespace:name`.
    pub package_name: String,
    /// The signed record.
    pub record: EnvelopeBody,
    /// Client-provided content sources (not supported: must be empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub content_sources: BTreeMap<String, Vec<ContentSource>>,
}

/// The state of a published record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum PackageRecordState {
    /// Waiting for content uploads.
    #[serde(rename_all = "camelCase")]
    Sourcing {
        /// Digests still missing.
        missing_content: BTreeMap<Sha256Digest, MissingContent>,
    },
    /// Accepted, not yet covered by a checkpoint.
    Processing,
    /// Rejected.
    #[serde(rename_all = "camelCase")]
    Rejected {
        /// Why.
        reason: String,
    },
    /// Covered by the latest checkpoint.
    #[serde(rename_all = "camelCase")]
    Published {
        /// Its registry index.
        registry_index: u64,
    },
}

/// `PackageRecord` response of publish and record status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageRecordResponse {
    /// The record id.
    pub record_id: RecordId,
    /// Its state.
    #[serde(flatten)]
    pub state: PackageRecordState,
}

/// `GET v1/content/{digest}` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentSourcesResponse {
    /// Sources per digest.
    pub content_sources: BTreeMap<Sha256Digest, Vec<ContentSource>>,
}

/// `POST v1/proof/consistency` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyRequest {
    /// Older checkpoint length.
    pub from: u64,
    /// Newer checkpoint length.
    pub to: u64,
}

/// `POST v1/proof/consistency` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyResponse {
    /// Base64 `LogProofBundle`.
    pub proof: String,
}

/// `POST v1/proof/inclusion` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionRequest {
    /// Checkpoint length.
    pub log_length: u64,
    /// Registry indices (spelled "leafs").
    pub leafs: Vec<u64>,
}

/// `POST v1/proof/inclusion` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionResponse {
    /// Base64 `LogProofBundle`.
    pub log: String,
    /// Base64 `MapProofBundle`.
    pub map: String,
}

/// The packed ledger content type.
pub const LEDGER_CONTENT_TYPE: &str = "application/vnd.warg.ledger.packed";

/// One ledger range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerSource {
    /// First registry index.
    pub first_registry_index: u64,
    /// Last registry index (inclusive).
    pub last_registry_index: u64,
    /// Where to fetch it (relative to the registry URL).
    pub url: String,
    /// Always [`LEDGER_CONTENT_TYPE`].
    pub content_type: String,
    /// Whether `Range` is supported.
    #[serde(default, skip_serializing_if = "is_false")]
    pub accept_ranges: bool,
}

/// `GET v1/ledger` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerSourcesResponse {
    /// Always `sha256`.
    pub hash_algorithm: String,
    /// Ranges covering the latest checkpoint.
    pub sources: Vec<LedgerSource>,
}

/// A verification verdict of the monitor endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VerificationState {
    /// Checked and correct.
    Verified,
    /// Not checked (yet).
    Unverified,
    /// Checked and wrong.
    Invalid,
}

/// `POST v1/verify/checkpoint` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointVerificationResponse {
    /// Whether the checkpoint matches one the registry signed.
    pub checkpoint: VerificationState,
    /// Whether the signature is valid.
    pub signature: VerificationState,
    /// Seconds to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn package_record_shapes_match_the_reference() {
        let id = RecordId(Sha256Digest::of(b"r"));
        let digest = Sha256Digest::of(b"c");
        let sourcing = PackageRecordResponse {
            record_id: id,
            state: PackageRecordState::Sourcing {
                missing_content: [(
                    digest,
                    MissingContent {
                        upload: vec![UploadEndpoint::Http {
                            method: "POST".into(),
                            url: "http://x/u".into(),
                            headers: BTreeMap::new(),
                        }],
                    },
                )]
                .into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&sourcing).unwrap(),
            json!({"recordId": id.to_string(), "state": "sourcing", "missingContent": {
                digest.to_string(): {"upload": [{"type": "http", "method": "POST", "url": "http://x/u"}]}}})
        );
        let published = PackageRecordResponse {
            record_id: id,
            state: PackageRecordState::Published { registry_index: 7 },
        };
        assert_eq!(
            serde_json::to_value(&published).unwrap(),
            json!({"recordId": id.to_string(), "state": "published", "registryIndex": 7})
        );
        let processing: PackageRecordResponse =
            serde_json::from_value(json!({"recordId": id.to_string(), "state": "processing"}))
                .unwrap();
        assert_eq!(processing.state, PackageRecordState::Processing);
    }

    #[test]
    fn fetch_request_rejects_unknown_fields_and_reads_packages() {
        let log = LogId::operator();
        let request: FetchLogsRequest =
            serde_json::from_value(json!({"logLength": 3, "packages": {log.to_string(): null}}))
                .unwrap();
        assert_eq!(request.packages.get(&log), Some(&None));
        assert!(
            serde_json::from_value::<FetchLogsRequest>(json!({"logLength": 1, "x": 1})).is_err()
        );
        assert!(
            serde_json::from_value::<FetchLogsRequest>(
                json!({"logLength": 1, "packages": {"sha256:AB": null}})
            )
            .is_err()
        );
    }

    #[test]
    fn content_source_shape() {
        let source = ContentSource::HttpGet {
            url: "http://h/c".into(),
            accept_ranges: true,
            size: Some(8),
        };
        assert_eq!(
            serde_json::to_value(&source).unwrap(),
            json!({"type": "httpGet", "url": "http://h/c", "acceptRanges": true, "size": 8})
        );
    }
}
