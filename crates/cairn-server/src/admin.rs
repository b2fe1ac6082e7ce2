//! Administration from the command line (identities, tokens, namespaces)
//! and operator key rotation.
//!
//! They work whether or not a server is running on the database: if one
//! holds the writer lock, the record is handed to it through the store and
//! its sequencer publishes it; otherwise the sequencer runs here.

use std::sync::Arc;

use anyhow::Context as _;
use cairn_crypto::{PublicKey, SignatureAlgorithm};
use cairn_protocol::LogId;
use cairn_protocol::operator::OperatorState;
use cairn_protocol::record::{OperatorEntry, OperatorPermission};
use cairn_service::admin::AdminCtx;
use cairn_service::{
    Registry, SequencerHandle, ServiceConfig, SigningKeys, SystemClock, signer_uri_meta_key,
};
use cairn_store::{MetaStore as _, SqlStore, WriterLock};

use crate::config::Settings;
use crate::signers::{self, KeyUri};

/// Opens the store for a command. If no server holds the database, the
/// writer lock is taken first and then pending migrations are applied (the
/// lock comes back with the store). If a server holds it, nothing is
/// migrated under it: a database that needs migrations is refused with
/// what to do.
async fn connect(settings: &Settings) -> anyhow::Result<(SqlStore, Option<WriterLock>)> {
    let store = SqlStore::connect(&settings.database_url, 4)
        .await
        .with_context(|| format!("cannot open database {}", settings.database_display()))?;
    // On PostgreSQL the servers of a cluster sequence under the sequencer
    // lease, not this lock: a live lease is a running server too.
    let locked = match store.lock_writer().await {
        Ok(lock) => match leading_node(&store).await {
            Some(node) => {
                lock.release().await;
                Err(format!("node {node} is sequencing this database"))
            }
            None => Ok(lock),
        },
        Err(held) => Err(held.to_string()),
    };
    match locked {
        Ok(lock) => {
            store.pending_migrations().await?;
            store.migrate().await?;
            Ok((store, Some(lock)))
        }
        Err(held) => {
            let pending = store.pending_migrations().await?;
            if !pending.is_empty() {
                let pending: Vec<String> = pending.iter().map(i64::to_string).collect();
                anyhow::bail!(
                    "the database needs migrations {}, but another cairn process holds it \
                     ({held}); upgrade and restart that server first, or stop it and run \
                     `cairn migrate`",
                    pending.join(", ")
                );
            }
            Ok((store, None))
        }
    }
}

/// The node holding a live sequencer lease, if any (PostgreSQL clusters;
/// a database without the lease table has no node of this version).
async fn leading_node(store: &SqlStore) -> Option<String> {
    if *store.backend() != cairn_store::Backend::Postgres {
        return None;
    }
    let lease = cairn_store::LeaseStore::lease(store).await.ok()?;
    lease.remaining.map(|_| lease.holder)
}

/// Administration from the command line: through a running server's
/// sequencer if one holds the database (records are handed to it through
/// the store), otherwise with a sequencer run here for the command.
pub struct AdminSession {
    store: Arc<SqlStore>,
    keys: SigningKeys,
    local: Option<(Registry, SequencerHandle, WriterLock)>,
}

impl std::fmt::Debug for AdminSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSession")
            .field("local", &self.local.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminSession {
    /// Opens the store and the operator key of `settings`.
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let (store, lock) = connect(settings).await?;
        let store = Arc::new(store);
        let keys = crate::signing_keys(settings, store.as_ref()).await?;
        let local = match lock {
            Some(lock) => {
                // No server is running: run the sequencer here. Only now
                // may the blob store be opened for writing (opening it
                // clears its staging area, which a running server uses).
                let public_url = crate::config::default_public_url(settings);
                let origin = crate::origin(settings, store.as_ref(), &public_url).await?;
                let blobs = crate::blobs::open(settings).await?;
                let (registry, sequencer) = Registry::start(
                    store.clone(),
                    blobs,
                    keys.clone(),
                    Arc::new(SystemClock),
                    ServiceConfig {
                        origin,
                        // Fenced like a node's, should a server start
                        // while this command sequences.
                        leader_lease: settings.leader_lease.clone().map(|mut lease| {
                            lease.node = format!("cli:{}", lease.node);
                            // It serves nothing: writes wait for a server.
                            lease.address = String::new();
                            lease
                        }),
                        ..ServiceConfig::default()
                    },
                )
                .await?;
                Some((registry, sequencer, lock))
            }
            None => None,
        };
        Ok(Self { store, keys, local })
    }

    /// Administration as the local operator (`cli`).
    pub fn ctx(&self) -> AdminCtx<'_> {
        match &self.local {
            Some((registry, ..)) => registry.admin("cli", self.keys.operator.as_ref()),
            None => AdminCtx {
                store: self.store.as_ref(),
                signer: self.keys.operator.as_ref(),
                clock: &SystemClock,
                actor: "cli".into(),
                registry: None,
            },
        }
    }

    /// The store.
    pub fn store(&self) -> &SqlStore {
        &self.store
    }

    /// Stops the local sequencer, if one runs.
    pub async fn close(self) {
        if let Some((_, sequencer, lock)) = self.local {
            sequencer.shutdown().await;
            lock.release().await;
        }
    }
}

/// Appends an operator record with `entries`, signed by the configured
/// operator key, and waits until a checkpoint covers it.
async fn append(settings: &Settings, entries: Vec<OperatorEntry>) -> anyhow::Result<()> {
    let session = AdminSession::open(settings).await?;
    let result = session.ctx().append_operator(entries).await;
    session.close().await;
    result?;
    Ok(())
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
    let (store, lock) = connect(settings).await?;
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
    let (_, state) = cairn_service::log_state::log_state_of::<OperatorState>(
        &store,
        &LogId::operator(),
        &OperatorState::default(),
    )
    .await?
    .context("the registry is not initialised")?;
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
    drop(store);
    if let Some(lock) = lock {
        lock.release().await;
    }
    append(
        settings,
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
    let (store, lock) = connect(settings).await?;
    let result = verifier_key_of(settings, &store).await;
    if let Some(lock) = lock {
        lock.release().await;
    }
    result
}

async fn verifier_key_of(settings: &Settings, store: &SqlStore) -> anyhow::Result<String> {
    if let Some(pinned) = store.meta("note_verifier_key").await? {
        return Ok(pinned);
    }
    let note = signers::open(&settings.note_key, SignatureAlgorithm::Ed25519).await?;
    let public_url = crate::config::default_public_url(settings);
    let origin = crate::origin(settings, store, &public_url).await?;
    let PublicKey::Ed25519(key) = note.public_key() else {
        anyhow::bail!("the note key must be Ed25519");
    };
    Ok(cairn_crypto::note::VerifierKey::ed25519(&origin, *key)?.to_string())
}
