//! Operator commands that append operator records: defining namespaces and
//! rotating the operator key.
//!
//! They work whether or not a server is running on the database: if one
//! holds the writer lock, the record is handed to it through the store and
//! its sequencer publishes it; otherwise the sequencer runs here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cairn_crypto::{PublicKey, SignatureAlgorithm};
use cairn_protocol::LogId;
use cairn_protocol::operator::OperatorState;
use cairn_protocol::record::{OperatorEntry, OperatorPermission};
use cairn_service::{
    Registry, ServiceConfig, SystemClock, signer_uri_meta_key, submit_operator_record,
    wait_for_record,
};
use cairn_store::{SqlStore, Store};

use crate::config::Settings;
use crate::signers::{self, KeyUri};

/// How long a command waits for its record to be published.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(120);

async fn connect(settings: &Settings) -> anyhow::Result<SqlStore> {
    let store = SqlStore::connect(&settings.database_url, 4)
        .await
        .with_context(|| format!("cannot open database {}", settings.database_display()))?;
    store.migrate().await?;
    Ok(store)
}

/// Appends an operator record with `entries`, signed by the configured
/// operator key, and waits until a checkpoint covers it.
async fn append(
    settings: &Settings,
    store: SqlStore,
    entries: Vec<OperatorEntry>,
) -> anyhow::Result<()> {
    let keys = crate::signing_keys(settings, &store).await?;
    match store.lock_writer().await {
        Ok(lock) => {
            // No server is running: sequence the record here.
            let public_url = crate::config::default_public_url(settings);
            let origin = crate::origin(settings, &store, &public_url).await?;
            let store: Arc<dyn Store> = Arc::new(store);
            let blobs = Arc::new(cairn_blob::FsBlobStore::open(&settings.blob_dir).await?);
            let (registry, sequencer) = Registry::start(
                store,
                blobs,
                keys,
                Arc::new(SystemClock),
                ServiceConfig {
                    origin,
                    ..ServiceConfig::default()
                },
            )
            .await?;
            let result = registry.append_operator_record(entries).await;
            sequencer.shutdown().await;
            lock.release().await;
            result?;
        }
        Err(_) => {
            // A server holds the database: hand it the record.
            let record =
                submit_operator_record(&store, keys.operator.as_ref(), &SystemClock, entries)
                    .await?;
            wait_for_record(&store, &LogId::operator(), &record, PUBLISH_TIMEOUT)
                .await
                .context("the running server did not publish the record")?;
        }
    }
    Ok(())
}

/// `cairn namespace create`: appends a `defineNamespace` operator record.
pub async fn define_namespace(settings: &Settings, namespace: &str) -> anyhow::Result<()> {
    if !cairn_protocol::name::is_valid_namespace(namespace) {
        anyhow::bail!("invalid namespace `{namespace}`: use lowercase kebab case, e.g. `my-org`");
    }
    let store = connect(settings).await?;
    append(
        settings,
        store,
        vec![OperatorEntry::DefineNamespace {
            namespace: namespace.to_owned(),
        }],
    )
    .await
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotation {
    /// The key id that signed before.
    pub old_key_id: String,
    /// The new key.
    pub new_key: PublicKey,
    /// Where the new key lives (to configure as `--operator-key`).
    pub new_uri: KeyUri,
}

/// `cairn operator rotate --new-key URI`: appends an operator record,
/// signed by the current operator key, that grants the new key every
/// operator permission and revokes them from the current key. Checkpoints
/// covering the record and every later one are signed with the new key.
pub async fn rotate_operator_key(
    settings: &Settings,
    new_key: &KeyUri,
) -> anyhow::Result<Rotation> {
    let new_uri = new_key.absolute()?;
    let store = connect(settings).await?;
    let current = signers::open(&settings.operator_key, SignatureAlgorithm::EcdsaP256Sha256)
        .await
        .context("cannot open the current operator key (it signs the rotation)")?;
    let next = signers::open(&new_uri, SignatureAlgorithm::EcdsaP256Sha256)
        .await
        .context("cannot open the new operator key")?;
    // The new key must be able to sign before anything is logged.
    let probe = b"cairn operator key rotation probe";
    let signature = next
        .sign(probe)
        .await
        .context("the new operator key cannot sign")?;
    next.public_key()
        .verify(probe, &signature)
        .context("the new operator key returned an invalid signature")?;
    let (PublicKey::EcdsaP256(old_public), PublicKey::EcdsaP256(new_public)) =
        (current.public_key(), next.public_key())
    else {
        anyhow::bail!("operator keys must be ECDSA P-256");
    };
    if old_public == new_public {
        anyhow::bail!("the new key is the current operator key");
    }
    let row = store
        .log(&LogId::operator())
        .await?
        .context("the registry is not initialised")?;
    let state: OperatorState = serde_json::from_str(&row.state)
        .map_err(|e| anyhow::anyhow!("operator state unreadable: {e}"))?;
    let old_key_id = old_public.key_id();
    let held: Vec<OperatorPermission> = OperatorPermission::ALL
        .into_iter()
        .filter(|p| state.has_permission(&old_key_id, *p))
        .collect();
    if !held.contains(&OperatorPermission::Commit) {
        anyhow::bail!(
            "the configured operator key {old_key_id} does not hold `commit`; configure the key \
             that signs this registry's checkpoints with --operator-key"
        );
    }
    // Recorded before the record is submitted: the server that sequences
    // the rotation opens the new key from here.
    store
        .set_meta(
            &signer_uri_meta_key(&new_public.key_id()),
            &new_uri.to_string(),
        )
        .await?;
    append(
        settings,
        store,
        vec![
            OperatorEntry::GrantFlat {
                key: new_public.clone(),
                permissions: held.clone(),
            },
            OperatorEntry::RevokeFlat {
                key_id: old_key_id.clone(),
                permissions: held,
            },
        ],
    )
    .await?;
    Ok(Rotation {
        old_key_id: old_key_id.to_string(),
        new_key: next.public_key().clone(),
        new_uri,
    })
}

/// `cairn operator vkey`: the C2SP verifier key of the note key.
pub async fn note_verifier_key(settings: &Settings) -> anyhow::Result<String> {
    let store = connect(settings).await?;
    if let Some(pinned) = store.meta("note_verifier_key").await? {
        return Ok(pinned);
    }
    let note = signers::open(&settings.note_key, SignatureAlgorithm::Ed25519).await?;
    let public_url = crate::config::default_public_url(settings);
    let origin = crate::origin(settings, &store, &public_url).await?;
    let PublicKey::Ed25519(key) = note.public_key() else {
        anyhow::bail!("the note key must be Ed25519");
    };
    Ok(cairn_crypto::note::VerifierKey::ed25519(&origin, *key)?.to_string())
}
