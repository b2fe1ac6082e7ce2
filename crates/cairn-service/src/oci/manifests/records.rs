//! The records a push submits: the metadata log record (operator key) and
//! the warg release (publisher key).

use cairn_crypto::{KeyId, PublicKey, Sha256Digest, Signature};
use cairn_protocol::ext::meta::MetaState;
use cairn_protocol::ext::{ExtEntry, ExtRecord, meta_log_name};
use cairn_protocol::package::PackageState;
use cairn_protocol::record::{
    PackageEntry, PackagePermission, PackageRecord, Record, RecordKind as _,
};
use cairn_protocol::{Envelope, LogId, PackageName, Timestamp};
use cairn_store::NewPending;
use semver::Version;

use super::*;
use crate::identity::Caller;
use crate::oci::{OciCode, OciError};
use crate::{Registry, ServiceError};

/// The publisher key, allowed to release in a package.
pub(super) struct ReleaseSigner {
    signer: std::sync::Arc<dyn cairn_crypto::Signer>,
    key: cairn_crypto::EcdsaPublicKey,
}

impl Registry {
    /// Builds, signs (operator key) and validates a metadata log record.
    pub(crate) async fn meta_record(
        &self,
        package: &PackageName,
        state: &MetaState,
        entries: Vec<ExtEntry>,
    ) -> Result<NewPending, ServiceError> {
        let (envelope, pending) = self.signed_meta_record(package, state, entries).await?;
        state
            .clone()
            .validate(&envelope, &self.operator_state())
            .map_err(|e| {
                ServiceError::conflict(format!("refused by the metadata log's rules: {e}"))
            })?;
        Ok(pending)
    }

    /// Builds and signs (operator key) a metadata log record on `state`'s
    /// head, without validating it: for the sequencer, which validates what
    /// it sequences.
    pub(super) async fn signed_meta_record(
        &self,
        package: &PackageName,
        state: &MetaState,
        entries: Vec<ExtEntry>,
    ) -> Result<(Envelope<ExtRecord>, NewPending), ServiceError> {
        let keys = self.keys();
        let envelope = crate::admin::build_ext_record(
            state.head(),
            keys.operator.as_ref(),
            self.inner.clock.as_ref(),
            entries,
        )
        .await?;
        let pending = crate::admin::ext_pending(
            &envelope,
            LogId::package_meta(package),
            meta_log_name(package),
            self.inner.clock.as_ref(),
        );
        Ok((envelope, pending))
    }

    /// The publisher key, if it may release in `package`: always in a new
    /// package; in an existing one if its log grants the key `release`
    /// (a package created over OCI, or one whose warg CLI owner granted it).
    pub(super) fn release_signer(
        &self,
        package: &PackageName,
        state: &PackageState,
    ) -> Result<ReleaseSigner, OciError> {
        let signer = self.publisher_signer().ok_or_else(|| {
            OciError::new(OciCode::Unsupported, "this registry has no publisher key")
        })?;
        let PublicKey::EcdsaP256(key) = signer.public_key().clone() else {
            return Err(
                ServiceError::Internal("the publisher key must be ECDSA P-256".into()).into(),
            );
        };
        if state.head().is_some()
            && !state.has_permission(&key.key_id(), PackagePermission::Release)
        {
            return Err(denied(format!(
                "{package} was created with the warg CLI; to publish over OCI, grant the registry's \
                 publisher key the release permission: `warg publish grant --name {package} {key}`"
            )));
        }
        Ok(ReleaseSigner { signer, key })
    }

    /// A warg package record releasing each of `releases` (version,
    /// content), signed by the publisher key on behalf of `caller`. A new
    /// package log is initialised by the publisher key, which grants
    /// `release` and `yank` to the warg keys bound to the pushing identity
    /// (so it can also publish with the warg CLI).
    pub(super) async fn publisher_release(
        &self,
        state: &PackageState,
        caller: &Caller,
        publisher: ReleaseSigner,
        releases: &[(Version, Sha256Digest)],
    ) -> Result<Envelope<PackageRecord>, OciError> {
        let mut entries = Vec::new();
        if state.head().is_none() {
            entries.push(PackageEntry::Init {
                key: publisher.key.clone(),
            });
            let registry = self.registry_log();
            if let Some(identity) = registry.identity(&caller.identity) {
                for key_id in &identity.keys {
                    if let Some((_, key)) = registry.key(key_id) {
                        entries.push(PackageEntry::GrantFlat {
                            key: key.clone(),
                            permissions: vec![PackagePermission::Release, PackagePermission::Yank],
                        });
                    }
                }
            }
        }
        entries.extend(
            releases
                .iter()
                .map(|(version, content)| PackageEntry::Release {
                    version: version.clone(),
                    content: *content,
                }),
        );
        // Validated by the sequencer, which sequences it.
        self.signed_package_record(state, publisher.signer.as_ref(), entries)
            .await
    }

    /// Builds and signs a package record with `signer` on `state`'s head,
    /// and validates it.
    pub(crate) async fn sign_package_record(
        &self,
        state: &PackageState,
        signer: &dyn cairn_crypto::Signer,
        entries: Vec<PackageEntry>,
    ) -> Result<Envelope<PackageRecord>, OciError> {
        let envelope = self.signed_package_record(state, signer, entries).await?;
        state
            .clone()
            .validate(&envelope)
            .map_err(|e| denied(format!("the release would be invalid: {e}")))?;
        Ok(envelope)
    }

    /// Builds and signs a package record with `signer` on `state`'s head.
    async fn signed_package_record(
        &self,
        state: &PackageState,
        signer: &dyn cairn_crypto::Signer,
        entries: Vec<PackageEntry>,
    ) -> Result<Envelope<PackageRecord>, OciError> {
        let key_id: KeyId = crate::keys::ecdsa_key_id(signer)?;
        let now = self
            .inner
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| ServiceError::Internal("the clock is before 1970".into()))?;
        let mut timestamp = Timestamp::from_unix(now.as_secs(), now.subsec_nanos())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        if let Some(head) = state.head()
            && head.timestamp > timestamp
        {
            timestamp = head.timestamp;
        }
        let record: PackageRecord = Record {
            prev: state.head().map(|h| h.record_id),
            version: 0,
            timestamp,
            entries,
        };
        let bytes = record.encode();
        let message = Envelope::<PackageRecord>::signing_message(&bytes);
        let signature = match signer.sign(&message).await {
            Ok(Signature::EcdsaP256(signature)) => signature,
            Ok(Signature::Ed25519(_)) => {
                return Err(
                    ServiceError::Internal("the publisher key must be ECDSA P-256".into()).into(),
                );
            }
            Err(e) => {
                return Err(ServiceError::Unavailable {
                    retry_after: 5,
                    reason: format!("cannot sign with the publisher key: {e}"),
                }
                .into());
            }
        };
        Ok(Envelope::from_signed(record, bytes, key_id, signature))
    }
}
