//! RFC 3161 signed timestamps: a timestamp authority (TSA) of the trusted
//! root vouching that a signature existed at its `genTime`.
//!
//! A Sigstore bundle may carry, in
//! `verificationMaterial.timestampVerificationData.rfc3161Timestamps[]`,
//! timestamps over its signature bytes (the message signature's, or the
//! DSSE envelope's). cosign 3 and sigstore-go request them, and for a
//! Rekor v2 entry, which carries no integrated time, a timestamp is the
//! only proof of when the signature was made. A verified timestamp's
//! `genTime` is then a signing time like a Rekor integrated time: the
//! certificate must have been valid at it.
//!
//! What is checked, in order ([`verify`]):
//! 1. the bytes are a `TimeStampResp` whose status is granted, holding a
//!    token, or a bare `TimeStampToken`: CMS `ContentInfo` of type
//!    `id-signedData`, whose encapsulated content type is `id-ct-TSTInfo`;
//! 2. the `messageImprint` is the hash, with its stated algorithm (SHA-256,
//!    SHA-384 or SHA-512), of exactly the signature bytes: a timestamp of
//!    other bytes proves nothing about this signature;
//! 3. `genTime` is not later than the verifier's now;
//! 4. the one `SignerInfo` has signed attributes whose content type is
//!    `id-ct-TSTInfo` and whose message digest is the hash of the
//!    `TSTInfo`, and its signature over those attributes verifies with the
//!    key of the signer certificate (found by its `sid` among the
//!    certificates the token carries and the trusted TSA certificates);
//! 5. the signer certificate is the first certificate of a trusted TSA's
//!    chain, or is issued by it; every certificate of that path is valid at
//!    `genTime` and issued by the next, every one but the signer is a CA,
//!    the TSA's `validFor` contains `genTime`, and the signer has the
//!    critical `timeStamping` extended key usage (RFC 3161 §2.3).
//!
//! Certificates a token carries are never anchors: only the trusted root
//! decides which TSAs count. Not checked: the ESS `signingCertificate`
//! attribute (the signer is already pinned by `sid` and the trusted chain),
//! the TSA's policy OID, `accuracy` (the time is taken as given, to the
//! second) and a nonce (the bundle's creator made the request, not the
//! verifier).
//!
//! SPEC: RFC 3161 §2.4.2 (`TimeStampResp`, `TimeStampToken`, `TSTInfo`),
//! RFC 5652 §5 (`SignedData`, `SignerInfo`; §5.4: the signature is over the
//! DER of the signed attributes as a `SET OF`; §11.1–11.2: the content-type
//! and message-digest attributes), sigstore/protobuf-specs
//! `RFC3161SignedTimestamp.signed_timestamp`.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use sha2::Digest as _;
use x509_cert::Certificate;
use x509_cert::der::asn1::{ObjectIdentifier, OctetString};
use x509_cert::der::{Decode as _, Encode as _, Tag, Tagged as _};
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectKeyIdentifier};
use x509_tsp::{TimeStampResp, TstInfo};

use crate::certificate::{basic_constraints, check_validity, extension, verify_issued};
use crate::error::Refusal;
use crate::keys::PublicKey;
use crate::time::x509_seconds;
use crate::trust_root::{CertificateAuthority, TrustedRoot};
use crate::verdict::TimestampProof;

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");

fn refuse(why: impl Into<String>) -> Refusal {
    Refusal::UntrustedTimestamp(why.into())
}

/// Verifies one signed timestamp (DER `TimeStampResp` or
/// `TimeStampToken`) over `signature` against the trusted TSAs; answers
/// the authority and the time it vouches for.
pub(crate) fn verify(
    root: &TrustedRoot,
    now: i64,
    token: &[u8],
    signature: &[u8],
) -> Result<TimestampProof, Refusal> {
    let content = content_info(token)?;
    if content.content_type != ID_SIGNED_DATA {
        return Err(refuse(format!(
            "the token's content type is {}, not signedData",
            content.content_type
        )));
    }
    let signed_data: SignedData = content
        .content
        .decode_as()
        .map_err(|e| refuse(format!("the token's SignedData: {e}")))?;
    let encapsulated = &signed_data.encap_content_info;
    if encapsulated.econtent_type != ID_CT_TST_INFO {
        return Err(refuse(format!(
            "the signed content type is {}, not id-ct-TSTInfo",
            encapsulated.econtent_type
        )));
    }
    let tst_der = encapsulated
        .econtent
        .as_ref()
        .filter(|content| content.tag() == Tag::OctetString)
        .map(|content| content.value())
        .ok_or_else(|| refuse("the token holds no TSTInfo"))?;
    let tst = TstInfo::from_der(tst_der).map_err(|e| refuse(format!("TSTInfo: {e}")))?;

    let imprint = &tst.message_imprint;
    let expected = hash(imprint.hash_algorithm.oid, signature).ok_or_else(|| {
        refuse(format!(
            "message imprint hash {}",
            imprint.hash_algorithm.oid
        ))
    })?;
    if imprint.hashed_message.as_bytes() != expected.as_slice() {
        return Err(refuse(
            "the timestamp is over other bytes than the signature",
        ));
    }
    let gen_time = i64::try_from(tst.gen_time.to_unix_duration().as_secs())
        .map_err(|_| refuse("genTime out of range"))?;
    if gen_time > now {
        return Err(refuse(format!("genTime {gen_time} is in the future")));
    }

    let [signer_info] = signed_data.signer_infos.0.as_slice() else {
        return Err(refuse("the token has not exactly one SignerInfo"));
    };
    check_signed_attributes(signer_info, tst_der)?;
    let candidates: Vec<&Certificate> = signed_data
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(certificate) => Some(certificate),
            CertificateChoices::Other(_) => None,
        })
        .chain(
            root.timestamp_authorities
                .iter()
                .filter_map(|t| t.chain.first()),
        )
        .collect();
    let signer = candidates
        .into_iter()
        .find(|c| identifies(&signer_info.sid, c))
        .ok_or_else(|| refuse("no certificate of the token or of a trusted TSA is its signer"))?;
    check_signature(signer_info, signer)?;
    let authority = trusted_authority(root, signer, gen_time)?;
    Ok(TimestampProof {
        authority: if authority.uri.is_empty() {
            signer.tbs_certificate.subject.to_string()
        } else {
            authority.uri.clone()
        },
        gen_time,
    })
}

/// The token of a `TimeStampResp`, or the bytes as a token.
fn content_info(der: &[u8]) -> Result<ContentInfo, Refusal> {
    if let Ok(response) = TimeStampResp::from_der(der) {
        use cmpv2::status::PkiStatus;
        if !matches!(
            response.status.status,
            PkiStatus::Accepted | PkiStatus::GrantedWithMods
        ) {
            return Err(refuse(format!(
                "the timestamp response's status is {:?}",
                response.status.status
            )));
        }
        return response
            .time_stamp_token
            .ok_or_else(|| refuse("the timestamp response holds no token"));
    }
    ContentInfo::from_der(der)
        .map_err(|e| refuse(format!("neither a TimeStampResp nor a TimeStampToken: {e}")))
}

/// The hash of `bytes` with the digest algorithm `oid`, if supported.
fn hash(oid: ObjectIdentifier, bytes: &[u8]) -> Option<Vec<u8>> {
    match oid {
        SHA256 => Some(sha2::Sha256::digest(bytes).to_vec()),
        SHA384 => Some(sha2::Sha384::digest(bytes).to_vec()),
        SHA512 => Some(sha2::Sha512::digest(bytes).to_vec()),
        _ => None,
    }
}

/// RFC 5652 §5.3 and §11: signed attributes are present, with one
/// content type (`id-ct-TSTInfo`) and one message digest (of the
/// `TSTInfo`).
fn check_signed_attributes(signer_info: &SignerInfo, tst_der: &[u8]) -> Result<(), Refusal> {
    let attributes = signer_info
        .signed_attrs
        .as_ref()
        .ok_or_else(|| refuse("the SignerInfo has no signed attributes"))?;
    let single = |oid: ObjectIdentifier, what: &str| {
        let mut found = attributes.iter().filter(|a| a.oid == oid);
        match (found.next(), found.next()) {
            (Some(attribute), None) if attribute.values.len() == 1 => {
                Ok(attribute.values.as_slice()[0].clone())
            }
            _ => Err(refuse(format!(
                "the signed attributes lack a single {what}"
            ))),
        }
    };
    let content_type: ObjectIdentifier = single(ID_CONTENT_TYPE, "content type")?
        .decode_as()
        .map_err(|e| refuse(format!("content-type attribute: {e}")))?;
    if content_type != ID_CT_TST_INFO {
        return Err(refuse(
            "the signed content-type attribute is not id-ct-TSTInfo",
        ));
    }
    let digest: OctetString = single(ID_MESSAGE_DIGEST, "message digest")?
        .decode_as()
        .map_err(|e| refuse(format!("message-digest attribute: {e}")))?;
    let expected = hash(signer_info.digest_alg.oid, tst_der)
        .ok_or_else(|| refuse(format!("digest algorithm {}", signer_info.digest_alg.oid)))?;
    if digest.as_bytes() != expected.as_slice() {
        return Err(refuse("the signed message digest is not the TSTInfo's"));
    }
    Ok(())
}

/// Whether `certificate` is the one `sid` names.
fn identifies(sid: &SignerIdentifier, certificate: &Certificate) -> bool {
    let tbs = &certificate.tbs_certificate;
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => {
            id.issuer == tbs.issuer && id.serial_number == tbs.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(id) => {
            extension::<SubjectKeyIdentifier>(certificate, SUBJECT_KEY_IDENTIFIER)
                .ok()
                .flatten()
                .is_some_and(|own| own == *id)
        }
    }
}

/// The SignerInfo's signature over the DER `SET OF` its signed attributes
/// are, with `signer`'s key.
fn check_signature(signer_info: &SignerInfo, signer: &Certificate) -> Result<(), Refusal> {
    let key = PublicKey::from_spki(&signer.tbs_certificate.subject_public_key_info)
        .map_err(|e| refuse(format!("the TSA key: {e}")))?;
    let signed = signer_info
        .signed_attrs
        .as_ref()
        .map(|attributes| attributes.to_der())
        .transpose()
        .map_err(|e| refuse(format!("signed attributes: {e}")))?
        .unwrap_or_default();
    // CMS names either the full signature algorithm or only the key's,
    // the hash then being the digest algorithm's.
    let algorithm = match (
        signer_info.signature_algorithm.oid,
        signer_info.digest_alg.oid,
    ) {
        (EC_PUBLIC_KEY, SHA256) => ECDSA_SHA256,
        (EC_PUBLIC_KEY, SHA384) => ECDSA_SHA384,
        (RSA_ENCRYPTION, SHA256) => RSA_SHA256,
        (RSA_ENCRYPTION, SHA384) => RSA_SHA384,
        (RSA_ENCRYPTION, SHA512) => RSA_SHA512,
        (named, _) => named,
    };
    key.verify_x509(algorithm, &signed, signer_info.signature.as_bytes())
        .map_err(|e| refuse(format!("the TSA's signature: {e}")))
}

/// The trusted TSA whose chain vouches for `signer` at `gen_time`.
fn trusted_authority<'r>(
    root: &'r TrustedRoot,
    signer: &Certificate,
    gen_time: i64,
) -> Result<&'r CertificateAuthority, Refusal> {
    let mut reason = "the signer is not a trusted timestamp authority".to_owned();
    for authority in &root.timestamp_authorities {
        let Some(first) = authority.chain.first() else {
            continue;
        };
        // The trusted chain starts with the signing certificate itself, or
        // with the CA that issued it.
        let path: Vec<&Certificate> = if first == signer {
            authority.chain.iter().collect()
        } else if first.tbs_certificate.subject == signer.tbs_certificate.issuer
            && verify_issued(signer, first).is_ok()
        {
            std::iter::once(signer).chain(&authority.chain).collect()
        } else {
            continue;
        };
        if !authority.validity.contains(gen_time) {
            reason = format!(
                "the timestamp authority {} was not valid at genTime {gen_time}",
                authority.uri
            );
            continue;
        }
        check_path(&path, gen_time)?;
        return Ok(authority);
    }
    Err(refuse(reason))
}

/// The signer (first) and the CAs above it at `gen_time`.
fn check_path(path: &[&Certificate], gen_time: i64) -> Result<(), Refusal> {
    for (i, certificate) in path.iter().enumerate() {
        if check_validity(certificate, gen_time).is_err() {
            let validity = &certificate.tbs_certificate.validity;
            return Err(refuse(format!(
                "TSA certificate {i} was not valid at genTime {gen_time} (valid {}..{})",
                x509_seconds(&validity.not_before),
                x509_seconds(&validity.not_after)
            )));
        }
        let is_ca = basic_constraints(certificate)?.is_some_and(|b| b.ca);
        if i > 0 && !is_ca {
            return Err(refuse(format!(
                "TSA certificate {i} of the trusted chain is not a CA"
            )));
        }
        if let Some(parent) = path.get(i + 1)
            && (parent.tbs_certificate.subject != certificate.tbs_certificate.issuer
                || verify_issued(certificate, parent).is_err())
        {
            return Err(refuse(format!(
                "TSA certificate {i} is not issued by the next of the trusted chain"
            )));
        }
    }
    let Some(signer) = path.first() else {
        return Err(refuse("an empty TSA chain"));
    };
    let critical_time_stamping = signer
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == EXTENDED_KEY_USAGE)
        .is_some_and(|e| e.critical)
        && extension::<ExtendedKeyUsage>(signer, EXTENDED_KEY_USAGE)?
            .is_some_and(|usages| usages.0.contains(&TIME_STAMPING));
    if !critical_time_stamping {
        return Err(refuse(
            "the TSA certificate lacks the critical timeStamping extended key usage",
        ));
    }
    Ok(())
}
