//! The world's RFC 3161 timestamp authority (part of `support`, in a file
//! of its own): a TSA whose `TimeStampResp`s are encoded with the `cms`
//! and `x509-tsp` types, and the trusted-root and bundle pieces naming it.

use super::*;

/// An RFC 3161 timestamp authority: a P-256 root CA and a signing
/// certificate with the critical `timeStamping` extended key usage, both
/// valid for years around [`T0`], answering `TimeStampResp`s signed the
/// way RFC 3161 and CMS say (signed attributes with content type and
/// message digest, the signing certificate included).
pub struct Tsa {
    pub uri: String,
    pub root_der: Vec<u8>,
    pub leaf_der: Vec<u8>,
    leaf: x509_cert::Certificate,
    key: SigningKey,
}

const ID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const ID_CT_TST_INFO: &str = "1.2.840.113549.1.9.16.1.4";
const ID_SHA256: &str = "2.16.840.1.101.3.4.2.1";

fn oid(text: &str) -> x509_cert::der::asn1::ObjectIdentifier {
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap(text)
}

impl Tsa {
    pub fn new(label: &str) -> Self {
        use x509_cert::der::Decode as _;
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.distinguished_name = name(&format!("{label} root"));
        root.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.not_before = at(T0 - 86_400 * 365);
        root.not_after = at(T0 + 86_400 * 365 * 10);
        let root_cert = root.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root, root_key);

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name = name(label);
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.not_before = at(T0 - 86_400 * 30);
        leaf.not_after = at(T0 + 86_400 * 365 * 5);
        // SPEC: RFC 3161 §2.3 — exactly one EKU, timeStamping, critical.
        let mut eku = CustomExtension::from_oid_content(
            &[2, 5, 29, 37],
            vec![
                0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08,
            ],
        );
        eku.set_criticality(true);
        leaf.custom_extensions = vec![eku];
        let leaf_cert = leaf.signed_by(&key, &root_issuer).unwrap();
        Self {
            uri: format!("https://{label}.test/api/v1/timestamp"),
            root_der: root_cert.der().to_vec(),
            leaf_der: leaf_cert.der().to_vec(),
            leaf: x509_cert::Certificate::from_der(leaf_cert.der()).unwrap(),
            key: SigningKey::from_pkcs8_der(&key.serialize_der()).unwrap(),
        }
    }

    /// The `timestampAuthorities[]` entry of a trusted root naming this
    /// TSA (signing certificate first, as Sigstore's roots list it).
    pub fn root_entry(&self, valid_for: Value) -> Value {
        json!({
            "subject": { "organization": "sigstore.test", "commonName": "tsa" },
            "uri": self.uri,
            "certChain": { "certificates": [
                { "rawBytes": b64(&self.leaf_der) },
                { "rawBytes": b64(&self.root_der) },
            ] },
            "validFor": valid_for,
        })
    }

    /// A DER `TimeStampResp` granting a timestamp of `signed` (SHA-256
    /// message imprint) at `gen_time`.
    pub fn timestamp(&self, signed: &[u8], gen_time: i64) -> Vec<u8> {
        use x509_cert::der::Encode as _;
        x509_tsp::TimeStampResp {
            status: cmpv2::status::PkiStatusInfo {
                status: cmpv2::status::PkiStatus::Accepted,
                status_string: None,
                fail_info: None,
            },
            time_stamp_token: Some(self.token(signed, gen_time)),
        }
        .to_der()
        .unwrap()
    }

    /// The `TimeStampToken` (CMS `ContentInfo`) of [`Tsa::timestamp`].
    pub fn token(&self, signed: &[u8], gen_time: i64) -> cms::content_info::ContentInfo {
        use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
        use cms::content_info::{CmsVersion, ContentInfo};
        use cms::signed_data::{
            CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo,
            SignerInfos,
        };
        use x509_cert::attr::Attribute;
        use x509_cert::der::asn1::{GeneralizedTime, Int, OctetString, SetOfVec};
        use x509_cert::der::{Any, Encode as _, Tag};
        use x509_cert::spki::AlgorithmIdentifierOwned;

        let sha256_id = AlgorithmIdentifierOwned {
            oid: oid(ID_SHA256),
            parameters: None,
        };
        let tst_info = x509_tsp::TstInfo {
            version: x509_tsp::TspVersion::V1,
            policy: oid("1.3.6.1.4.1.57264.2"),
            message_imprint: x509_tsp::MessageImprint {
                hash_algorithm: AlgorithmIdentifier {
                    oid: oid(ID_SHA256),
                    parameters: None,
                },
                hashed_message: OctetString::new(sha256(signed).to_vec()).unwrap(),
            },
            // The time as serial: positive, minimal (no leading zero byte).
            serial_number: Int::new(
                &gen_time.to_be_bytes()[gen_time.leading_zeros() as usize / 8..],
            )
            .unwrap(),
            gen_time: GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(
                u64::try_from(gen_time).unwrap(),
            ))
            .unwrap(),
            accuracy: None,
            ordering: false,
            nonce: None,
            tsa: None,
            extensions: None,
        }
        .to_der()
        .unwrap();
        let attribute = |id: &str, value: Any| Attribute {
            oid: oid(id),
            values: SetOfVec::try_from(vec![value]).unwrap(),
        };
        let signed_attributes = SetOfVec::try_from(vec![
            attribute(
                "1.2.840.113549.1.9.3",
                Any::encode_from(&oid(ID_CT_TST_INFO)).unwrap(),
            ),
            attribute(
                "1.2.840.113549.1.9.4",
                Any::new(Tag::OctetString, sha256(&tst_info).to_vec()).unwrap(),
            ),
        ])
        .unwrap();
        let signature: Signature = self.key.sign(&signed_attributes.to_der().unwrap());
        let signer_info = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: self.leaf.tbs_certificate.issuer.clone(),
                serial_number: self.leaf.tbs_certificate.serial_number.clone(),
            }),
            digest_alg: sha256_id.clone(),
            signed_attrs: Some(signed_attributes),
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: oid("1.2.840.10045.4.3.2"),
                parameters: None,
            },
            signature: OctetString::new(signature.to_der().as_bytes().to_vec()).unwrap(),
            unsigned_attrs: None,
        };
        let signed_data = SignedData {
            version: CmsVersion::V3,
            digest_algorithms: SetOfVec::try_from(vec![sha256_id]).unwrap(),
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: oid(ID_CT_TST_INFO),
                econtent: Some(Any::new(Tag::OctetString, tst_info).unwrap()),
            },
            certificates: Some(CertificateSet(
                SetOfVec::try_from(vec![CertificateChoices::Certificate(self.leaf.clone())])
                    .unwrap(),
            )),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info]).unwrap()),
        };
        ContentInfo {
            content_type: oid(ID_SIGNED_DATA),
            content: Any::encode_from(&signed_data).unwrap(),
        }
    }
}

type AlgorithmIdentifier = x509_cert::spki::AlgorithmIdentifier<x509_cert::der::Any>;

/// [`trusted_root`] with `tsa` as its timestamp authority for `valid_for`.
pub fn trusted_root_with_tsa(
    fulcio: &Fulcio,
    rekor: &Rekor,
    tsa: &Tsa,
    valid_for: Value,
) -> Vec<u8> {
    let mut root: Value = serde_json::from_slice(&trusted_root(fulcio, rekor)).unwrap();
    root["timestampAuthorities"] = json!([tsa.root_entry(valid_for)]);
    serde_json::to_vec(&root).unwrap()
}

/// `timestampVerificationData` holding `timestamps` (DER), as a bundle's
/// `verificationMaterial` carries it.
pub fn timestamp_data(timestamps: &[Vec<u8>]) -> Value {
    json!({
        "rfc3161Timestamps": timestamps
            .iter()
            .map(|t| json!({ "signedTimestamp": b64(t) }))
            .collect::<Vec<_>>(),
    })
}
