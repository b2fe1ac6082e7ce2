//! The registry's signing keys: which are in use, signing with retries and
//! metrics, and following an operator key rotation.
//!
//! Two keys sign every checkpoint: the ECDSA P-256 operator key (warg
//! checkpoints and operator records) and the Ed25519 note key (C2SP
//! checkpoints, key name = the log's origin). Either may live in a KMS; the
//! registry only sees [`Signer`]s.
//!
//! Rotating the operator key is an operator record (grant to the new key,
//! revoke from the old one) signed by the old key. Once that record is
//! sequenced, the old key no longer holds `commit`, and the registry must
//! sign with the new one: it opens it through a [`SignerResolver`] from the
//! URI recorded when the rotation was requested, and never signs another
//! checkpoint with the old key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_crypto::note::{NoteSignature, VerifierKey};
use cairn_crypto::signer::BoxFuture;
use cairn_crypto::{KeyId, PublicKey, Signature, Signer, SignerError, sign_note};
use cairn_protocol::operator::OperatorState;
use cairn_protocol::record::OperatorPermission;

use crate::metrics::KeyRole;
use crate::{Registry, ServiceError};

/// Signing attempts before giving up on one signature.
const SIGN_ATTEMPTS: u32 = 5;
/// First retry delay; doubles on each attempt.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// Opens a [`Signer`] from the URI it was configured with (`file:PATH`,
/// `awskms:///KEY`). Provided by the binary, which knows every kind of key.
pub trait SignerResolver: Send + Sync + std::fmt::Debug {
    /// Opens the signer `uri` names.
    fn open<'a>(&'a self, uri: &'a str) -> BoxFuture<'a, Result<Arc<dyn Signer>, String>>;
}

/// The keys a registry starts with.
#[derive(Clone, Debug)]
pub struct SigningKeys {
    /// ECDSA P-256: operator records and warg checkpoints.
    pub operator: Arc<dyn Signer>,
    /// Ed25519: C2SP checkpoint notes.
    pub note: Arc<dyn Signer>,
    /// ECDSA P-256: the registry's publisher key, which signs the warg
    /// records of OCI pushes (each attributed, in the package's metadata
    /// log, to the identity that pushed). `None`: no OCI publishing.
    pub publisher: Option<Arc<dyn Signer>>,
    /// Opens the new operator key after a rotation. Without it, a running
    /// registry stops signing after a rotation until it is restarted with
    /// the new key.
    pub resolver: Option<Arc<dyn SignerResolver>>,
}

/// The store meta key under which the URI of the operator key `key_id` is
/// recorded (by `cairn operator rotate`, and at initialisation).
pub fn signer_uri_meta_key(key_id: &KeyId) -> String {
    format!("signer_uri:{key_id}")
}

/// The key id of an ECDSA P-256 signer.
pub(crate) fn ecdsa_key_id(signer: &dyn Signer) -> Result<KeyId, ServiceError> {
    match signer.public_key() {
        PublicKey::EcdsaP256(key) => Ok(key.key_id()),
        PublicKey::Ed25519(_) => Err(ServiceError::Internal(format!(
            "the operator key must be ECDSA P-256, but {} is Ed25519",
            signer.describe()
        ))),
    }
}

/// The C2SP verifier key of an Ed25519 note signer under `origin`.
pub(crate) fn note_verifier(signer: &dyn Signer, origin: &str) -> Result<VerifierKey, String> {
    match signer.public_key() {
        PublicKey::Ed25519(key) => VerifierKey::ed25519(origin, *key)
            .map_err(|e| format!("`{origin}` cannot be a note key name: {e}")),
        PublicKey::EcdsaP256(_) => Err(format!(
            "the note key must be Ed25519, but {} is ECDSA P-256",
            signer.describe()
        )),
    }
}

/// The keys in use now.
#[derive(Debug)]
pub(crate) struct ActiveKeys {
    pub(crate) operator: Arc<dyn Signer>,
    pub(crate) operator_key_id: KeyId,
    pub(crate) note: Arc<dyn Signer>,
    pub(crate) note_verifier: VerifierKey,
}

impl Registry {
    /// The keys in use now.
    pub(crate) fn keys(&self) -> Arc<ActiveKeys> {
        match self.inner.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The C2SP verifier key of the note key (`<origin>+<id>+<key>`).
    pub fn note_verifier_key(&self) -> VerifierKey {
        self.keys().note_verifier.clone()
    }

    /// The operator key that signs checkpoints now.
    pub fn operator_key_id(&self) -> KeyId {
        self.keys().operator_key_id.clone()
    }

    /// Calls `attempt` until it succeeds, retrying transient failures with
    /// exponential backoff, and records latency and failures for `role`.
    /// Gives up with [`ServiceError::Unavailable`] (answered 503 with
    /// `Retry-After`): nothing that needed the signature may be published.
    async fn signing<'a, T>(
        &'a self,
        role: KeyRole,
        mut attempt: impl FnMut() -> BoxFuture<'a, Result<T, SignerError>>,
    ) -> Result<T, ServiceError> {
        let metrics = self.inner.metrics.signer(role);
        let mut delay = FIRST_RETRY;
        let mut last = None;
        for n in 1..=SIGN_ATTEMPTS {
            let started = Instant::now();
            match attempt().await {
                Ok(value) => {
                    metrics.latency.observe(started.elapsed());
                    return Ok(value);
                }
                Err(error) if error.is_transient() => {
                    metrics.transient_failures.add(1);
                    tracing::warn!(%error, attempt = n, ?role, "signing failed; retrying");
                    last = Some(error);
                    if n < SIGN_ATTEMPTS {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
                Err(error) => {
                    metrics.permanent_failures.add(1);
                    tracing::error!(%error, ?role, "signing refused");
                    last = Some(error);
                    break;
                }
            }
        }
        let reason = last.map_or_else(|| "no attempt".to_owned(), |e| e.to_string());
        Err(ServiceError::Unavailable {
            retry_after: 5,
            reason: format!("cannot sign with the {role:?} key: {reason}"),
        })
    }

    /// Signs `message` with the operator key `signer` and checks the result.
    pub(crate) async fn sign_operator(
        &self,
        signer: &Arc<dyn Signer>,
        message: &[u8],
    ) -> Result<cairn_crypto::EcdsaSignature, ServiceError> {
        let PublicKey::EcdsaP256(public) = signer.public_key() else {
            return Err(ServiceError::Internal(
                "the operator key must be ECDSA P-256".into(),
            ));
        };
        self.signing(KeyRole::Operator, || {
            let signer = signer.clone();
            let message = message.to_vec();
            let public = public.clone();
            Box::pin(async move {
                match signer.sign(&message).await? {
                    Signature::EcdsaP256(signature) => {
                        public.verify(&message, &signature).map_err(|_| {
                            SignerError::InvalidOutput(
                                "the signature does not verify under the operator key".into(),
                            )
                        })?;
                        Ok(signature)
                    }
                    Signature::Ed25519(_) => Err(SignerError::InvalidOutput(
                        "an ECDSA key returned an Ed25519 signature".into(),
                    )),
                }
            })
        })
        .await
    }

    /// Signs a C2SP note body with the note key.
    pub(crate) async fn sign_note_body(
        &self,
        keys: &ActiveKeys,
        body: &str,
    ) -> Result<NoteSignature, ServiceError> {
        let name = keys.note_verifier.name().to_owned();
        self.signing(KeyRole::Note, || {
            let signer = keys.note.clone();
            let name = name.clone();
            let body = body.to_owned();
            Box::pin(async move { sign_note(signer.as_ref(), &name, &body).await })
        })
        .await
    }

    /// Makes sure the operator key in use may sign checkpoints under
    /// `operator` (the operator log as sequenced). After a rotation it opens
    /// the key that now holds `commit`, from the URI recorded for it.
    pub(crate) async fn follow_rotation(
        &self,
        operator: &OperatorState,
    ) -> Result<(), ServiceError> {
        let keys = self.keys();
        if operator.has_permission(&keys.operator_key_id, OperatorPermission::Commit) {
            return Ok(());
        }
        let holders: Vec<KeyId> = operator
            .holders(OperatorPermission::Commit)
            .cloned()
            .collect();
        let mut reasons = Vec::new();
        for key_id in &holders {
            let Some(uri) = self.inner.store.meta(&signer_uri_meta_key(key_id)).await? else {
                reasons.push(format!("no signer URI is recorded for {key_id}"));
                continue;
            };
            let Some(resolver) = &self.inner.resolver else {
                reasons.push("this process cannot open signers by URI".into());
                break;
            };
            let signer = match resolver.open(&uri).await {
                Ok(signer) => signer,
                Err(e) => {
                    reasons.push(format!("cannot open {uri}: {e}"));
                    continue;
                }
            };
            let opened = ecdsa_key_id(signer.as_ref())?;
            if opened != *key_id {
                reasons.push(format!("{uri} holds key {opened}, not {key_id}"));
                continue;
            }
            tracing::info!(old = %keys.operator_key_id, new = %key_id, %uri, "operator key rotated; signing with the new key");
            let next = Arc::new(ActiveKeys {
                operator: signer,
                operator_key_id: key_id.clone(),
                note: keys.note.clone(),
                note_verifier: keys.note_verifier.clone(),
            });
            match self.inner.keys.write() {
                Ok(mut active) => *active = next,
                Err(poisoned) => *poisoned.into_inner() = next,
            }
            return Ok(());
        }
        Err(ServiceError::Unavailable {
            retry_after: 30,
            reason: format!(
                "the operator key {} no longer holds `commit` and no key that does can be opened ({}); \
                 restart cairn with the new operator key",
                keys.operator_key_id,
                reasons.join("; ")
            ),
        })
    }
}
