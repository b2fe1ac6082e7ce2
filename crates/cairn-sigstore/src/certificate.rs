//! Fulcio leaf certificates: reading the facts a keyless verification
//! needs, and checking the chain to a trusted CA at the signing time.
//!
//! What is checked, in order ([`Leaf::verify_at`]):
//! 1. the leaf is issued by the first certificate of a trusted CA's chain
//!    (names and signature), each chain certificate is signed by the next,
//!    each is a CA, and the CA's `validFor` window and every certificate's
//!    own validity contain the signing time;
//! 2. the leaf itself was valid at the signing time;
//! 3. the leaf is not a CA and has the code-signing extended key usage;
//! 4. its Fulcio issuer extension and SAN match an identity rule.
//!
//! SPEC: sigstore/fulcio `docs/oid-info.md` — `1.3.6.1.4.1.57264.1.1`
//! (deprecated) holds the issuer as raw bytes, `1.3.6.1.4.1.57264.1.8` as a
//! DER UTF8String. When both are present they must agree.

use x509_cert::Certificate;
use x509_cert::der::asn1::Utf8StringRef;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, SubjectAltName};
use x509_cert::spki::ObjectIdentifier;

use crate::error::Refusal;
use crate::keys::PublicKey;
use crate::policy::TrustPolicy;
use crate::time::x509_seconds;
use crate::trust_root::TrustedRoot;
use crate::verdict::{Identity, Signer};

const ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
const ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
const EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");

/// A parsed leaf certificate.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    certificate: Certificate,
    der: Vec<u8>,
    /// The certified key.
    pub(crate) key: PublicKey,
}

impl Leaf {
    /// Parses a PEM `CERTIFICATE` (the first block, as cosign's
    /// certificate annotation holds one).
    pub(crate) fn from_pem(pem: &str) -> Result<Self, Refusal> {
        let (label, der) = x509_cert::der::pem::decode_vec(first_pem_block(pem).as_bytes())
            .map_err(|e| Refusal::Malformed(format!("certificate PEM: {e}")))?;
        if label != "CERTIFICATE" {
            return Err(Refusal::Malformed(format!(
                "PEM label `{label}`, expected `CERTIFICATE`"
            )));
        }
        Self::from_der(&der)
    }

    /// Parses a DER certificate.
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, Refusal> {
        let certificate = Certificate::from_der(der)
            .map_err(|e| Refusal::Malformed(format!("certificate DER: {e}")))?;
        let key = PublicKey::from_spki(&certificate.tbs_certificate.subject_public_key_info)
            .map_err(|e| Refusal::Unsupported(format!("certificate key: {e}")))?;
        Ok(Self {
            certificate,
            der: der.to_vec(),
            key,
        })
    }

    /// The certificate's DER.
    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    /// Checks the certificate at `signed_at` against the trusted root and
    /// the identity rules; answers the signer it names.
    pub(crate) fn verify_at(
        &self,
        root: &TrustedRoot,
        policy: &TrustPolicy,
        signed_at: i64,
    ) -> Result<Signer, Refusal> {
        self.chain_to_trusted_ca(root, signed_at)?;
        check_validity(&self.certificate, signed_at)?;
        if basic_constraints(&self.certificate)?.is_some_and(|b| b.ca) {
            return Err(Refusal::NotCodeSigning(
                "the leaf is a CA certificate".into(),
            ));
        }
        let usages = extension::<ExtendedKeyUsage>(&self.certificate, EXTENDED_KEY_USAGE)?
            .ok_or_else(|| Refusal::NotCodeSigning("no extended key usage".into()))?;
        if !usages.0.contains(&CODE_SIGNING) {
            return Err(Refusal::NotCodeSigning(
                "the extended key usage lacks codeSigning".into(),
            ));
        }
        let issuer = self.oidc_issuer()?;
        let identity = self.identity()?;
        if !policy.allows_identity(&issuer, identity.as_str()) {
            return Err(Refusal::IdentityNotAllowed {
                issuer,
                identity: identity.as_str().to_owned(),
            });
        }
        Ok(Signer::Certificate {
            issuer,
            identity,
            certificate_fingerprint: crate::Sha256Digest::of(&self.der).hex(),
        })
    }

    /// Finds a trusted CA whose chain issued the leaf and was valid at
    /// `signed_at`.
    fn chain_to_trusted_ca(&self, root: &TrustedRoot, signed_at: i64) -> Result<(), Refusal> {
        let mut reason = "no trusted Fulcio CA issued it".to_owned();
        for ca in &root.certificate_authorities {
            let Some(issuer) = ca.chain.first() else {
                continue;
            };
            if issuer.tbs_certificate.subject != self.certificate.tbs_certificate.issuer
                || verify_issued(&self.certificate, issuer).is_err()
            {
                continue;
            }
            if !ca.validity.contains(signed_at) {
                reason = format!("the issuing CA {} was not valid at {signed_at}", ca.uri);
                continue;
            }
            match check_ca_chain(&ca.chain, signed_at) {
                Ok(()) => return Ok(()),
                Err(Refusal::UntrustedCertificate(why)) => reason = why,
                Err(other) => return Err(other),
            }
        }
        Err(Refusal::UntrustedCertificate(reason))
    }

    /// The OIDC issuer from the Fulcio extensions.
    fn oidc_issuer(&self) -> Result<String, Refusal> {
        let v2 = raw_extension(&self.certificate, ISSUER_V2)
            .map(|bytes| {
                Utf8StringRef::from_der(bytes)
                    .map(|s| s.as_str().to_owned())
                    .map_err(|e| Refusal::Malformed(format!("issuer extension (v2): {e}")))
            })
            .transpose()?;
        let v1 = raw_extension(&self.certificate, ISSUER_V1)
            .map(|bytes| {
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| Refusal::Malformed("issuer extension (v1) is not UTF-8".into()))
            })
            .transpose()?;
        match (v2, v1) {
            (Some(v2), Some(v1)) if v2 != v1 => Err(Refusal::Malformed(format!(
                "the issuer extensions disagree: `{v2}` and `{v1}`"
            ))),
            (Some(issuer), _) | (None, Some(issuer)) => Ok(issuer),
            (None, None) => Err(Refusal::NotCodeSigning("no Fulcio issuer extension".into())),
        }
    }

    /// The first email or URI subject alternative name.
    fn identity(&self) -> Result<Identity, Refusal> {
        let names = extension::<SubjectAltName>(&self.certificate, SUBJECT_ALT_NAME)?
            .ok_or_else(|| Refusal::NotCodeSigning("no subject alternative name".into()))?;
        names
            .0
            .into_iter()
            .find_map(|name| match name {
                GeneralName::Rfc822Name(email) => Some(Identity::Email(email.to_string())),
                GeneralName::UniformResourceIdentifier(uri) => Some(Identity::Uri(uri.to_string())),
                _ => None,
            })
            .ok_or_else(|| Refusal::NotCodeSigning("no email or URI in the SAN".into()))
    }
}

/// Verifies that `issuer` signed `subject`.
pub(crate) fn verify_issued(subject: &Certificate, issuer: &Certificate) -> Result<(), Refusal> {
    let key = PublicKey::from_spki(&issuer.tbs_certificate.subject_public_key_info)
        .map_err(Refusal::UntrustedCertificate)?;
    let tbs = subject
        .tbs_certificate
        .to_der()
        .map_err(|e| Refusal::Malformed(format!("certificate: {e}")))?;
    let signature = subject
        .signature
        .as_bytes()
        .ok_or_else(|| Refusal::Malformed("certificate signature bits".into()))?;
    key.verify_x509(subject.signature_algorithm.oid, &tbs, signature)
}

/// Checks a trusted CA chain (issuing certificate first) at `signed_at`.
fn check_ca_chain(chain: &[Certificate], signed_at: i64) -> Result<(), Refusal> {
    for (i, certificate) in chain.iter().enumerate() {
        if check_validity(certificate, signed_at).is_err() {
            return Err(Refusal::UntrustedCertificate(format!(
                "CA certificate {i} of the chain was not valid at {signed_at}"
            )));
        }
        if !basic_constraints(certificate)?.is_some_and(|b| b.ca) {
            return Err(Refusal::UntrustedCertificate(format!(
                "certificate {i} of the trusted chain is not a CA"
            )));
        }
        if let Some(parent) = chain.get(i + 1)
            && (parent.tbs_certificate.subject != certificate.tbs_certificate.issuer
                || verify_issued(certificate, parent).is_err())
        {
            return Err(Refusal::UntrustedCertificate(format!(
                "certificate {i} of the trusted chain is not issued by the next"
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_validity(certificate: &Certificate, signed_at: i64) -> Result<(), Refusal> {
    let validity = &certificate.tbs_certificate.validity;
    let not_before = x509_seconds(&validity.not_before);
    let not_after = x509_seconds(&validity.not_after);
    if signed_at < not_before || signed_at > not_after {
        return Err(Refusal::CertificateNotValidAtSigningTime {
            signed_at,
            not_before,
            not_after,
        });
    }
    Ok(())
}

pub(crate) fn basic_constraints(
    certificate: &Certificate,
) -> Result<Option<BasicConstraints>, Refusal> {
    extension::<BasicConstraints>(certificate, BASIC_CONSTRAINTS)
}

/// The value bytes of the extension `oid`, if present.
fn raw_extension(certificate: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    certificate
        .tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

pub(crate) fn extension<'a, T: x509_cert::der::Decode<'a>>(
    certificate: &'a Certificate,
    oid: ObjectIdentifier,
) -> Result<Option<T>, Refusal> {
    raw_extension(certificate, oid)
        .map(|bytes| {
            T::from_der(bytes).map_err(|e| Refusal::Malformed(format!("extension {oid}: {e}")))
        })
        .transpose()
}

/// The first `-----BEGIN … -----END …-----` block of a PEM text (cosign's
/// chain annotation concatenates several).
fn first_pem_block(pem: &str) -> &str {
    let trimmed = pem.trim_start();
    match trimmed.find("-----END ") {
        Some(end) => {
            let tail = &trimmed[end + 9..];
            let close = tail.find("-----").map_or(tail.len(), |i| i + 5);
            &trimmed[..end + 9 + close]
        }
        None => trimmed,
    }
}
