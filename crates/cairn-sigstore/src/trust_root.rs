//! A Sigstore `trusted_root.json` (protobuf-specs `TrustedRoot`, JSON
//! form): the Fulcio CAs, Rekor logs, CT logs and timestamp authorities a
//! deployment trusts, each with the window in which it is valid.
//!
//! SPEC: sigstore/protobuf-specs `sigstore_trustroot.proto` — `TrustedRoot
//! { mediaType, tlogs[], certificateAuthorities[], ctlogs[],
//! timestampAuthorities[] }`; `TransparencyLogInstance { baseUrl,
//! hashAlgorithm, publicKey { rawBytes, keyDetails, validFor }, logId {
//! keyId } }`; `CertificateAuthority { subject, uri, certChain {
//! certificates[] { rawBytes } }, validFor { start, end } }`. Bytes are
//! base64, times RFC 3339. Chains are ordered leaf-most first, the root
//! last.
//!
//! Parsing checks everything it keeps (keys, certificates, times), so a
//! root that loads can be used without further errors. CT logs are loaded
//! and exposed but not used by the verification (see the crate
//! documentation). A timestamp authority's chain starts with its signing
//! certificate (or the CA issuing it) and ends with its root; its
//! `validFor` bounds the `genTime` of the timestamps it may vouch for.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use x509_cert::Certificate;
use x509_cert::der::Decode as _;

use crate::error::PolicyError;
use crate::keys::PublicKey;

/// A validity window in seconds since the epoch; an open end is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Validity {
    /// The first second of validity.
    pub start: Option<i64>,
    /// The last second of validity.
    pub end: Option<i64>,
}

impl Validity {
    /// Whether `time` lies in the window.
    pub fn contains(&self, time: i64) -> bool {
        self.start.is_none_or(|s| s <= time) && self.end.is_none_or(|e| time <= e)
    }
}

/// A certificate authority (Fulcio) or timestamp authority.
#[derive(Debug, Clone)]
pub struct CertificateAuthority {
    /// Where the authority serves (informational).
    pub uri: String,
    /// The chain, leaf-most (issuing) certificate first, root last.
    pub chain: Vec<Certificate>,
    /// When the authority may issue.
    pub validity: Validity,
}

/// A transparency log (Rekor) or certificate transparency log.
#[derive(Debug, Clone)]
pub struct TransparencyLog {
    /// Where the log serves (informational).
    pub base_url: String,
    /// The log id entries name (`logId.keyId`).
    pub log_id: Vec<u8>,
    /// The log's signing key.
    pub key: PublicKey,
    /// When the key may sign.
    pub validity: Validity,
}

impl TransparencyLog {
    /// The signed-note key hint of this log's checkpoints: the first four
    /// bytes of SHA-256 of the DER key.
    pub(crate) fn key_hint(&self) -> [u8; 4] {
        let digest = crate::Sha256Digest::of(self.key.spki_der()).0;
        [digest[0], digest[1], digest[2], digest[3]]
    }
}

/// The trust anchors of a deployment.
#[derive(Debug, Clone, Default)]
pub struct TrustedRoot {
    /// Fulcio CAs.
    pub certificate_authorities: Vec<CertificateAuthority>,
    /// Rekor logs.
    pub tlogs: Vec<TransparencyLog>,
    /// Certificate transparency logs (loaded, not used).
    pub ctlogs: Vec<TransparencyLog>,
    /// RFC 3161 timestamp authorities.
    pub timestamp_authorities: Vec<CertificateAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRoot {
    media_type: Option<String>,
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawAuthority>,
    #[serde(default)]
    ctlogs: Vec<RawLog>,
    #[serde(default)]
    timestamp_authorities: Vec<RawAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    #[serde(default)]
    base_url: String,
    public_key: RawKey,
    log_id: RawLogId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    raw_bytes: String,
    #[serde(default)]
    key_details: String,
    valid_for: Option<RawValidity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuthority {
    #[serde(default)]
    uri: String,
    cert_chain: RawChain,
    valid_for: Option<RawValidity>,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct RawValidity {
    start: Option<String>,
    end: Option<String>,
}

const MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.trustedroot";

impl TrustedRoot {
    /// Parses `trusted_root.json`.
    pub fn from_json(json: &[u8]) -> Result<Self, PolicyError> {
        let invalid = PolicyError::InvalidTrustedRoot;
        let raw: RawRoot = serde_json::from_slice(json).map_err(|e| invalid(e.to_string()))?;
        if let Some(media_type) = &raw.media_type
            && !media_type.starts_with(MEDIA_TYPE_PREFIX)
        {
            return Err(invalid(format!("unknown mediaType `{media_type}`")));
        }
        let logs = |raw: Vec<RawLog>, what: &str| -> Result<Vec<TransparencyLog>, PolicyError> {
            raw.into_iter()
                .enumerate()
                .map(|(i, log)| parse_log(log).map_err(|e| invalid(format!("{what}[{i}]: {e}"))))
                .collect()
        };
        let authorities = |raw: Vec<RawAuthority>,
                           what: &str|
         -> Result<Vec<CertificateAuthority>, PolicyError> {
            raw.into_iter()
                .enumerate()
                .map(|(i, ca)| {
                    parse_authority(ca).map_err(|e| invalid(format!("{what}[{i}]: {e}")))
                })
                .collect()
        };
        Ok(Self {
            tlogs: logs(raw.tlogs, "tlogs")?,
            ctlogs: logs(raw.ctlogs, "ctlogs")?,
            certificate_authorities: authorities(
                raw.certificate_authorities,
                "certificateAuthorities",
            )?,
            timestamp_authorities: authorities(raw.timestamp_authorities, "timestampAuthorities")?,
        })
    }

    /// The Rekor logs with this log id whose key is valid at `time`.
    pub(crate) fn rekor_keys_at<'a>(
        &'a self,
        log_id: &'a [u8],
        time: i64,
    ) -> impl Iterator<Item = &'a TransparencyLog> + 'a {
        self.tlogs
            .iter()
            .filter(move |log| log.log_id == log_id && log.validity.contains(time))
    }
}

fn parse_log(raw: RawLog) -> Result<TransparencyLog, String> {
    let der = decode(&raw.public_key.raw_bytes, "publicKey.rawBytes")?;
    // SPEC: protobuf-specs `PublicKeyDetails` — `PKCS1_RSA_*` keys are a
    // bare RSAPublicKey, every other kind a DER SubjectPublicKeyInfo.
    let key = if raw.public_key.key_details.starts_with("PKCS1_RSA") {
        PublicKey::from_pkcs1_rsa(&der)
    } else {
        PublicKey::from_der(&der)
    }
    .map_err(|e| e.to_string())?;
    Ok(TransparencyLog {
        base_url: raw.base_url,
        log_id: decode(&raw.log_id.key_id, "logId.keyId")?,
        key,
        validity: parse_validity(raw.public_key.valid_for)?,
    })
}

fn parse_authority(raw: RawAuthority) -> Result<CertificateAuthority, String> {
    if raw.cert_chain.certificates.is_empty() {
        return Err("empty certChain".into());
    }
    let chain = raw
        .cert_chain
        .certificates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let der = decode(&c.raw_bytes, "certificates.rawBytes")?;
            Certificate::from_der(&der).map_err(|e| format!("certificate {i}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(CertificateAuthority {
        uri: raw.uri,
        chain,
        validity: parse_validity(raw.valid_for)?,
    })
}

fn parse_validity(raw: Option<RawValidity>) -> Result<Validity, String> {
    let Some(raw) = raw else {
        return Ok(Validity::default());
    };
    let time = |t: Option<String>| {
        t.map(|t| crate::time::parse_rfc3339(&t).ok_or(format!("bad time `{t}`")))
            .transpose()
    };
    Ok(Validity {
        start: time(raw.start)?,
        end: time(raw.end)?,
    })
}

fn decode(text: &str, what: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|e| format!("{what} is not base64: {e}"))
}
