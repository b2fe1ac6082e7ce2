//! Operator keys in AWS KMS.
//!
//! [`AwsKmsSigner`] implements [`cairn_crypto::Signer`] with an asymmetric
//! KMS key; the private key never leaves KMS. It supports the two key specs
//! cairn signs with:
//!
//! * `ECC_NIST_P256` with `ECDSA_SHA_256` — warg checkpoints and operator
//!   records. KMS hashes the `RAW` message with SHA-256 itself, which is
//!   exactly warg's `PREFIX:bytes` rule, and returns a DER signature, which
//!   is what warg carries (`ecdsa-p256:<base64 DER>`).
//! * `ECC_NIST_EDWARDS25519` with `ED25519_SHA_512` and `MessageType::Raw` —
//!   pure Ed25519 (RFC 8032) for C2SP notes. (`ED25519_PH_SHA_512` is
//!   Ed25519ph, a different signature: never used.)
//!
//! Messages are sent as `RAW` (at most 4096 bytes), never as a digest.
//! Region, credentials and endpoint come from the standard AWS
//! configuration chain. Every signature is verified against the public key
//! read with `GetPublicKey` before it is returned.
//!
//! This is the only crate that depends on the AWS SDK.

use std::time::Duration;

use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use cairn_crypto::signer::BoxFuture;
use cairn_crypto::{
    EcdsaPublicKey, EcdsaSignature, Ed25519PublicKey, PublicKey, Signature, Signer, SignerError,
};

/// The largest message KMS signs in `RAW` mode.
// SPEC: AWS KMS Sign — "Message … up to 4096 bytes" when MessageType is RAW.
pub const MAX_RAW_MESSAGE: usize = 4096;

/// How long one KMS call may take before it is abandoned (and retried by
/// the caller).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Error codes after which a retry may succeed.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "KMSInternalException",
    "KMSInternal",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalFailure",
];

#[cfg(feature = "testing")]
pub mod testing;

/// The HTTPS client of the SDK: rustls with ring.
pub(crate) fn http_client() -> aws_sdk_kms::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// A signer backed by an AWS KMS asymmetric key.
#[derive(Debug)]
pub struct AwsKmsSigner {
    client: Client,
    key_id: String,
    public: PublicKey,
    algorithm: SigningAlgorithmSpec,
}

/// Classifies an SDK error: transient failures (network, timeouts,
/// throttling, KMS-side faults) may succeed on retry; everything else
/// (access denied, disabled or missing key, wrong key usage) needs an
/// operator.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    error: SdkError<E, R>,
) -> SignerError {
    match &error {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            SignerError::Unavailable(format!("{what}: {}", describe(&error)))
        }
        // Connections refused or closed, timeouts, and credentials that
        // could not be fetched (e.g. from instance metadata) are dispatch
        // failures a retry may cure; a request the SDK itself refused to
        // build (a "user" error) is not.
        SdkError::DispatchFailure(failure) if !failure.is_user() => {
            SignerError::Unavailable(format!("{what}: {}", describe(&error)))
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            let message = service.err().message().unwrap_or("");
            if TRANSIENT_CODES.contains(&code) {
                SignerError::Unavailable(format!("{what}: {code}: {message}"))
            } else {
                SignerError::Refused(format!("{what}: {code}: {message}"))
            }
        }
        _ => SignerError::Refused(format!("{what}: {}", describe(&error))),
    }
}

fn describe<E: std::error::Error + 'static, R: std::fmt::Debug>(error: &SdkError<E, R>) -> String {
    // The Display of SdkError is terse ("dispatch failure"); the source
    // chain says what happened.
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl AwsKmsSigner {
    /// Connects to the KMS key `key_id` (key id, ARN or `alias/NAME`) with
    /// the standard AWS configuration chain (environment, profiles, instance
    /// roles; `AWS_ENDPOINT_URL` for a KMS-compatible endpoint).
    pub async fn connect(key_id: &str) -> Result<Self, SignerError> {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        Self::with_client(Client::new(&config), key_id).await
    }

    /// Uses `client` for the key `key_id`; reads its public key and checks
    /// that it is a signing key cairn can use.
    pub async fn with_client(client: Client, key_id: &str) -> Result<Self, SignerError> {
        let output = client
            .get_public_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| classify("GetPublicKey", e))?;
        let der = output
            .public_key()
            .ok_or_else(|| SignerError::InvalidOutput("GetPublicKey returned no key".into()))?
            .as_ref();
        // Some KMS implementations omit `KeySpec` here (moto reports only
        // the deprecated `CustomerMasterKeySpec`): the key's own encoding
        // says what it is.
        let (public, algorithm) = if let Ok(key) = EcdsaPublicKey::from_spki_der(der) {
            (PublicKey::EcdsaP256(key), SigningAlgorithmSpec::EcdsaSha256)
        } else if let Ok(key) = Ed25519PublicKey::from_spki_der(der) {
            (PublicKey::Ed25519(key), SigningAlgorithmSpec::Ed25519Sha512)
        } else {
            return Err(SignerError::Refused(format!(
                "KMS key {key_id} is neither ECC_NIST_P256 nor ECC_NIST_EDWARDS25519"
            )));
        };
        let algorithms = output.signing_algorithms();
        if !algorithms.is_empty() && !algorithms.contains(&algorithm) {
            return Err(SignerError::Refused(format!(
                "KMS key {key_id} does not allow {}",
                algorithm.as_str()
            )));
        }
        Ok(Self {
            client,
            key_id: key_id.to_owned(),
            public,
            algorithm,
        })
    }

    async fn sign_raw(&self, message: &[u8]) -> Result<Signature, SignerError> {
        if message.len() > MAX_RAW_MESSAGE {
            return Err(SignerError::Refused(format!(
                "message of {} bytes exceeds the KMS RAW limit of {MAX_RAW_MESSAGE}",
                message.len()
            )));
        }
        let output = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(self.algorithm.clone())
            .send()
            .await
            .map_err(|e| classify("Sign", e))?;
        let bytes = output
            .signature()
            .ok_or_else(|| SignerError::InvalidOutput("Sign returned no signature".into()))?
            .as_ref();
        let signature = match &self.public {
            PublicKey::EcdsaP256(_) => Signature::EcdsaP256(
                EcdsaSignature::from_der(bytes)
                    .map_err(|e| SignerError::InvalidOutput(format!("bad DER signature: {e}")))?,
            ),
            PublicKey::Ed25519(_) => Signature::Ed25519(bytes.try_into().map_err(|_| {
                SignerError::InvalidOutput(format!(
                    "an Ed25519 signature has 64 bytes, KMS returned {}",
                    bytes.len()
                ))
            })?),
        };
        self.public.verify(message, &signature).map_err(|e| {
            SignerError::InvalidOutput(format!("the KMS signature does not verify: {e}"))
        })?;
        Ok(signature)
    }
}

impl Signer for AwsKmsSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Signature, SignerError>> {
        Box::pin(self.sign_raw(message))
    }

    fn describe(&self) -> String {
        format!("awskms:///{}", self.key_id)
    }
}
