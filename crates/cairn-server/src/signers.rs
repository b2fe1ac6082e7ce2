//! Signing keys named by URI.
//!
//! * `file:PATH` (or a bare path): a local key file, `ecdsa-p256:<base64
//!   scalar>` or `ed25519:<base64 seed>`, mode 0600;
//! * `awskms:///KEY`: an AWS KMS key by id, ARN or `alias/NAME`; region,
//!   credentials and endpoint come from the standard AWS configuration
//!   chain (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, profiles,
//!   instance roles). The private key never leaves KMS.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context as _;
use cairn_crypto::signer::{BoxFuture, LocalKey};
use cairn_crypto::{LocalSigner, SignatureAlgorithm, Signer};
use cairn_service::SignerResolver;

use crate::keys;

/// Where a signing key lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyUri {
    /// A local key file.
    File(PathBuf),
    /// An AWS KMS key (id, ARN or `alias/NAME`).
    AwsKms(String),
}

impl FromStr for KeyUri {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("awskms://") {
            // SPEC: the `awskms:///KEY` form (empty authority) used by
            // sigstore and others; the endpoint comes from the AWS config.
            let key = rest.strip_prefix('/').ok_or_else(|| {
                anyhow::anyhow!(
                    "`{s}`: write AWS KMS keys as awskms:///KEY-ID, awskms:///ARN or \
                     awskms:///alias/NAME (set the endpoint with AWS_ENDPOINT_URL)"
                )
            })?;
            if key.is_empty() {
                anyhow::bail!("`{s}` names no KMS key");
            }
            return Ok(Self::AwsKms(key.to_owned()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                anyhow::bail!("`{s}` names no file");
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if s.contains("://") {
            anyhow::bail!("unsupported key URI `{s}`: use file:PATH or awskms:///KEY");
        }
        if s.is_empty() {
            anyhow::bail!("empty key URI");
        }
        Ok(Self::File(PathBuf::from(s)))
    }
}

impl fmt::Display for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::AwsKms(key) => write!(f, "awskms:///{key}"),
        }
    }
}

impl KeyUri {
    /// The same URI with a relative file path made absolute, so that it
    /// names the same file from any working directory.
    pub fn absolute(&self) -> anyhow::Result<Self> {
        match self {
            Self::File(path) if path.is_relative() => Ok(Self::File(
                std::env::current_dir()
                    .context("cannot read the working directory")?
                    .join(path),
            )),
            other => Ok(other.clone()),
        }
    }

    /// The local file, if this is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::AwsKms(_) => None,
        }
    }
}

/// Opens the signer `uri` names and checks that it is of `algorithm`.
pub async fn open(uri: &KeyUri, algorithm: SignatureAlgorithm) -> anyhow::Result<Arc<dyn Signer>> {
    let signer: Arc<dyn Signer> = match uri {
        KeyUri::File(path) => {
            let key = keys::read_any_key(path)?;
            Arc::new(LocalSigner::new(key, format!("file:{}", path.display())))
        }
        KeyUri::AwsKms(key) => Arc::new(
            cairn_kms::AwsKmsSigner::connect(key)
                .await
                .with_context(|| format!("cannot use AWS KMS key {uri}"))?,
        ),
    };
    let found = signer.public_key().algorithm();
    if found != algorithm {
        anyhow::bail!(
            "{uri} holds a {} key, but a {} key is needed here",
            algorithm_name(found),
            algorithm_name(algorithm)
        );
    }
    Ok(signer)
}

fn algorithm_name(algorithm: SignatureAlgorithm) -> &'static str {
    match algorithm {
        SignatureAlgorithm::EcdsaP256Sha256 => "ECDSA P-256",
        SignatureAlgorithm::Ed25519 => "Ed25519",
    }
}

/// Opens a signing key, creating a new local key file when (and only when)
/// `create` allows it and the file does not exist.
pub async fn open_or_create(
    uri: &KeyUri,
    algorithm: SignatureAlgorithm,
    create: bool,
    what: &str,
) -> anyhow::Result<Arc<dyn Signer>> {
    if let Some(path) = uri.file()
        && !path.exists()
    {
        if !create {
            anyhow::bail!(
                "the {what} key {} is missing, but this registry is already initialised with one; \
                 restore the key file from backup (a new key cannot sign for this registry)",
                path.display()
            );
        }
        let key = match algorithm {
            SignatureAlgorithm::EcdsaP256Sha256 => LocalKey::EcdsaP256(keys::generate()),
            SignatureAlgorithm::Ed25519 => LocalKey::Ed25519(keys::generate_ed25519()),
        };
        keys::write_new_key(path, &key)?;
        println!("created {what} key {} (mode 0600)", path.display());
    }
    open(uri, algorithm).await
}

/// Opens signers by URI for a running registry (operator key rotation).
#[derive(Debug, Default)]
pub struct UriResolver;

impl SignerResolver for UriResolver {
    fn open<'a>(&'a self, uri: &'a str) -> BoxFuture<'a, Result<Arc<dyn Signer>, String>> {
        Box::pin(async move {
            let parsed: KeyUri = uri.parse().map_err(|e: anyhow::Error| e.to_string())?;
            open(&parsed, SignatureAlgorithm::EcdsaP256Sha256)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse() {
        assert_eq!(
            "file:/etc/cairn/op.key".parse::<KeyUri>().unwrap(),
            KeyUri::File("/etc/cairn/op.key".into())
        );
        assert_eq!(
            "file:///etc/k".parse::<KeyUri>().unwrap(),
            KeyUri::File("/etc/k".into())
        );
        assert_eq!(
            "data/op.key".parse::<KeyUri>().unwrap(),
            KeyUri::File("data/op.key".into())
        );
        assert_eq!(
            "awskms:///alias/cairn-operator".parse::<KeyUri>().unwrap(),
            KeyUri::AwsKms("alias/cairn-operator".into())
        );
        assert_eq!(
            "awskms:///arn:aws:kms:eu-west-1:111122223333:key/1234"
                .parse::<KeyUri>()
                .unwrap()
                .to_string(),
            "awskms:///arn:aws:kms:eu-west-1:111122223333:key/1234"
        );
        for bad in ["awskms://host/key", "awskms:///", "gcpkms://x", "file:", ""] {
            assert!(bad.parse::<KeyUri>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn file_keys_are_created_once_and_checked_for_their_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let uri = KeyUri::File(dir.path().join("note.key"));
        let missing = open_or_create(&uri, SignatureAlgorithm::Ed25519, false, "note").await;
        assert!(missing.unwrap_err().to_string().contains("restore"));
        let created = open_or_create(&uri, SignatureAlgorithm::Ed25519, true, "note")
            .await
            .unwrap();
        let again = open_or_create(&uri, SignatureAlgorithm::Ed25519, true, "note")
            .await
            .unwrap();
        assert_eq!(created.public_key(), again.public_key());
        let wrong = open(&uri, SignatureAlgorithm::EcdsaP256Sha256).await;
        assert!(wrong.unwrap_err().to_string().contains("Ed25519"));
    }
}
