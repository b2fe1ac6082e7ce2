//! Key pins: a registry signs only with the keys it was initialised with.
//!
//! Three keys sign for a registry, and each is fixed when the registry is
//! initialised (the first start on an empty database):
//!
//! * the **operator key** (ECDSA P-256): the operator log's `init` record
//!   names it; afterwards the operator log says which key holds `commit`
//!   (a rotation is an operator record, so it moves there too);
//! * the **note key** (Ed25519): its C2SP verifier key — which carries the
//!   checkpoint origin — is pinned in the store's meta table
//!   (`note_verifier_key`), and the origin is pinned on its own (`origin`);
//! * the **publisher key** (ECDSA P-256, signs the records of OCI pushes):
//!   its key id is pinned (`publisher_key_id`), and it is bound to the
//!   registry's own identity in the registry log.
//!
//! # Contract
//!
//! * A start on an initialised registry with a key that is not the pinned
//!   one is refused ([`StartupError::WrongKey`]) with a message that names
//!   the key, what the registry expects, what was found and what to do.
//! * Nothing here creates a key. The binary creates a missing key file only
//!   where [`Pins::may_create`] allows it — an empty database with no pin
//!   for that key — and otherwise refuses with [`Pins::missing`]. So a node
//!   joining an existing registry never invents a key: it is given copies
//!   of the registry's keys (or their KMS URIs).
//! * A pin, once written, is never replaced. A registry initialised before
//!   the publisher key was pinned gets its pin once, from the key it is
//!   started with, provided the registry log binds that key to the
//!   registry's identity (or binds no publisher key yet).

use cairn_crypto::{EcdsaPublicKey, KeyId, PublicKey, Signer};
use cairn_protocol::LogId;
use cairn_protocol::ext::registry::RegistryState;
use cairn_protocol::operator::OperatorState;
use cairn_protocol::record::OperatorPermission;
use cairn_store::Store;

use crate::StartupError;
use crate::admin::PUBLISHER_IDENTITY;
use crate::keys::signer_uri_meta_key;

/// Meta key of the pinned checkpoint origin.
pub const ORIGIN_PIN: &str = "origin";
/// Meta key of the pinned C2SP verifier key of the note key.
pub const NOTE_PIN: &str = "note_verifier_key";
/// Meta key of the operator key a registry is being initialised for.
pub const OPERATOR_INIT_PIN: &str = "operator_init_key";
/// Meta key of the pinned publisher key id (registries pinned before key
/// ids were used hold the public key, `ecdsa-p256:…`, which names the same
/// key).
pub const PUBLISHER_PIN: &str = "publisher_key_id";

/// One of the registry's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinnedKey {
    /// The operator key.
    Operator,
    /// The note key.
    Note,
    /// The publisher key.
    Publisher,
}

impl PinnedKey {
    /// Its name in messages (`operator`, `note`, `publisher`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Note => "note",
            Self::Publisher => "publisher",
        }
    }

    /// The `cairn serve` option that configures it.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Operator => "--operator-key",
            Self::Note => "--note-key",
            Self::Publisher => "--publisher-key",
        }
    }
}

/// What a store says the registry's keys are, read before any key is
/// opened.
#[derive(Clone, Debug, Default)]
pub struct Pins {
    /// Whether the registry holds a log (its tree head exists).
    pub initialised: bool,
    /// The operator keys that may sign: those holding `commit` in the
    /// operator log, or the key the registry is being initialised for;
    /// each with where it was last configured, if recorded.
    pub operator: Vec<(KeyId, Option<String>)>,
    /// The pinned C2SP verifier key of the note key.
    pub note: Option<String>,
    /// The publisher keys the registry accepts: the pinned one, or (before
    /// the pin exists) those the registry log binds to its identity.
    pub publisher: Vec<KeyId>,
}

impl Pins {
    /// Reads the pins of `store`.
    pub async fn read(store: &dyn Store) -> Result<Self, StartupError> {
        let initialised = store.tree_head().await?.is_some();
        let mut operator_keys = Vec::new();
        if initialised {
            let operator = operator_state(store).await?;
            for key_id in operator.holders(OperatorPermission::Commit) {
                let uri = store.meta(&signer_uri_meta_key(key_id)).await?;
                operator_keys.push((key_id.clone(), uri));
            }
        } else if let Some(key_id) = store.meta(OPERATOR_INIT_PIN).await? {
            let key_id = KeyId::new(key_id);
            let uri = store.meta(&signer_uri_meta_key(&key_id)).await?;
            operator_keys.push((key_id, uri));
        }
        let publisher = match pinned_publisher(store).await? {
            Some(key_id) => vec![key_id],
            None => bound_publisher_keys(&registry_state(store).await?),
        };
        Ok(Self {
            initialised,
            operator: operator_keys,
            note: store.meta(NOTE_PIN).await?,
            publisher,
        })
    }

    /// Whether a new `key` may be created: only for a registry that is
    /// being initialised and has no pin for that key.
    pub fn may_create(&self, key: PinnedKey) -> bool {
        !self.initialised
            && match key {
                PinnedKey::Operator => self.operator.is_empty(),
                PinnedKey::Note => self.note.is_none(),
                PinnedKey::Publisher => self.publisher.is_empty(),
            }
    }

    /// What the registry expects for `key`, for messages.
    pub fn expected(&self, key: PinnedKey) -> String {
        match key {
            PinnedKey::Operator => describe_operator_keys(&self.operator),
            PinnedKey::Note => match &self.note {
                Some(vkey) => format!("note key {vkey}"),
                None => "a note key (none is pinned yet)".into(),
            },
            PinnedKey::Publisher => describe_key_ids("publisher", &self.publisher),
        }
    }

    /// The refusal for a `key` that is missing at `location` (a file that
    /// does not exist) when [`Pins::may_create`] does not allow creating it.
    pub fn missing(&self, key: PinnedKey, location: &str) -> String {
        let name = key.name();
        let flag = key.flag();
        if key == PinnedKey::Publisher && self.publisher.is_empty() {
            return format!(
                "the {name} key {location} is missing, and this registry has no {name} key yet; \
                 a node never creates keys for an existing registry: create one with \
                 `cairn keygen --out PATH` and configure it with {flag} (it is pinned at the next start)"
            );
        }
        format!(
            "the {name} key {location} is missing, but this registry is already initialised and \
             expects {}; a node never creates keys for an existing registry (a new key cannot sign \
             for it): copy the registry's {name} key from another node or restore it from backup \
             (key files have mode 0600), and configure it with {flag}",
            self.expected(key)
        )
    }
}

/// The refusal for a configured `key` found to be `found` (where it lives:
/// `location`) when the registry expects `expected`.
fn wrong_key(key: PinnedKey, expected: &str, found: &str, location: &str) -> StartupError {
    let name = key.name();
    StartupError::WrongKey(format!(
        "the configured {name} key does not belong to this registry: it expects {expected}, but \
         {location} holds {name} key {found}; configure the registry's {name} key with {} \
         (a copy of its key file, or its KMS URI)",
        key.flag()
    ))
}

fn describe_key_ids(name: &str, keys: &[KeyId]) -> String {
    match keys {
        [] => format!("a {name} key (none is pinned yet)"),
        [one] => format!("{name} key {one}"),
        many => format!(
            "one of the {name} keys {}",
            many.iter()
                .map(KeyId::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn describe_operator_keys(keys: &[(KeyId, Option<String>)]) -> String {
    let described: Vec<String> = keys
        .iter()
        .map(|(key_id, uri)| match uri {
            Some(uri) => format!("{key_id} (last configured at {uri})"),
            None => key_id.to_string(),
        })
        .collect();
    match described.as_slice() {
        [] => "an operator key (none is recorded yet)".into(),
        [one] => format!("operator key {one}, the key that holds `commit` in its operator log"),
        many => format!(
            "one of the operator keys {}, which hold `commit` in its operator log",
            many.join(", ")
        ),
    }
}

async fn operator_state(store: &dyn Store) -> Result<OperatorState, StartupError> {
    let row = store
        .log(&LogId::operator())
        .await?
        .ok_or_else(|| StartupError::Inconsistent("the operator log is missing".into()))?;
    crate::log_state::log_state(store, &row, &OperatorState::default())
        .await
        .map_err(crate::bootstrap::state_unreadable)
}

async fn registry_state(store: &dyn Store) -> Result<RegistryState, StartupError> {
    Ok(crate::bootstrap::load_registry_log(store).await?.0)
}

/// The publisher keys the registry log binds to the registry's identity.
fn bound_publisher_keys(registry_log: &RegistryState) -> Vec<KeyId> {
    registry_log
        .identity(PUBLISHER_IDENTITY)
        .map(|identity| identity.keys.iter().cloned().collect())
        .unwrap_or_default()
}

/// The pinned publisher key id, read from either stored form.
async fn pinned_publisher(store: &dyn Store) -> Result<Option<KeyId>, StartupError> {
    match store.meta(PUBLISHER_PIN).await? {
        Some(pin) => parse_publisher_pin(&pin),
        None => Ok(None),
    }
}

/// A stored publisher pin: a key id, or (as pinned by earlier versions) the
/// public key, or `""` (no publisher key was pinned).
fn parse_publisher_pin(pin: &str) -> Result<Option<KeyId>, StartupError> {
    if pin.is_empty() {
        return Ok(None);
    }
    if pin.starts_with("sha256:") {
        return Ok(Some(KeyId::new(pin)));
    }
    let key: EcdsaPublicKey = pin.parse().map_err(|e| {
        StartupError::Inconsistent(format!(
            "the pinned publisher key `{pin}` is neither a key id nor a public key: {e}"
        ))
    })?;
    Ok(Some(key.key_id()))
}

/// Checks the configured origin against the pinned one, pinning it at
/// initialisation.
pub(crate) async fn check_origin(store: &dyn Store, origin: &str) -> Result<(), StartupError> {
    let pinned = store.set_meta_once(ORIGIN_PIN, origin).await?;
    if pinned != origin {
        return Err(StartupError::WrongKey(format!(
            "this registry's checkpoint origin is `{pinned}`, but `{origin}` is configured; \
             the origin never changes (auditors and witnesses pin it): configure --origin {pinned}"
        )));
    }
    Ok(())
}

/// Checks the note key (its verifier key `vkey` under the configured
/// origin, from `note`) against the pinned one, pinning it at
/// initialisation.
pub(crate) async fn check_note(
    store: &dyn Store,
    vkey: &str,
    note: &dyn Signer,
) -> Result<(), StartupError> {
    let pinned = store.set_meta_once(NOTE_PIN, vkey).await?;
    if pinned != vkey {
        return Err(wrong_key(
            PinnedKey::Note,
            &format!("note key {pinned} (auditors and witnesses pin it)"),
            vkey,
            &note.describe(),
        ));
    }
    Ok(())
}

/// Checks, for a registry that is being initialised, that the operator
/// key is the one initialisation started with, pinning it if it is first.
pub(crate) async fn check_initialising_operator(
    store: &dyn Store,
    key_id: &KeyId,
    signer: &dyn Signer,
) -> Result<(), StartupError> {
    let pinned = store
        .set_meta_once(OPERATOR_INIT_PIN, key_id.as_str())
        .await?;
    if pinned != key_id.as_str() {
        return Err(StartupError::WrongKey(format!(
            "this store is being initialised for operator key {pinned}, but {} holds operator key \
             {key_id}; configure that key with --operator-key, or use an empty store",
            signer.describe()
        )));
    }
    Ok(())
}

/// Checks that the operator key may sign checkpoints under `operator` (the
/// operator log as sequenced).
pub(crate) async fn check_operator(
    store: &dyn Store,
    key_id: &KeyId,
    signer: &dyn Signer,
    operator: &OperatorState,
) -> Result<(), StartupError> {
    if operator.public_key(key_id).is_some()
        && operator.has_permission(key_id, OperatorPermission::Commit)
    {
        return Ok(());
    }
    let mut holders = Vec::new();
    for holder in operator.holders(OperatorPermission::Commit) {
        let uri = store.meta(&signer_uri_meta_key(holder)).await?;
        holders.push((holder.clone(), uri));
    }
    Err(wrong_key(
        PinnedKey::Operator,
        &describe_operator_keys(&holders),
        &format!("{key_id} (it does not hold `commit` in the operator log)"),
        &signer.describe(),
    ))
}

/// Checks the publisher key against the pinned one and pins it when no
/// pin exists yet: at initialisation, or once for a registry initialised
/// before the pin existed (if the registry log binds it, or binds no
/// publisher key yet).
pub(crate) async fn check_publisher(
    store: &dyn Store,
    publisher: &dyn Signer,
    registry_log: &RegistryState,
) -> Result<(), StartupError> {
    let PublicKey::EcdsaP256(key) = publisher.public_key() else {
        return Err(StartupError::WrongKey(format!(
            "the publisher key must be ECDSA P-256, but {} is Ed25519",
            publisher.describe()
        )));
    };
    let key_id = key.key_id();
    let location = publisher.describe();
    let pinned = match pinned_publisher(store).await? {
        Some(pinned) => pinned,
        None => {
            let bound = bound_publisher_keys(registry_log);
            if !bound.is_empty() && !bound.contains(&key_id) {
                return Err(wrong_key(
                    PinnedKey::Publisher,
                    &format!(
                        "{} (bound to `{PUBLISHER_IDENTITY}` in its registry log)",
                        describe_key_ids("publisher", &bound)
                    ),
                    key_id.as_str(),
                    &location,
                ));
            }
            tracing::info!(publisher_key = %key_id, "pinning the publisher key");
            let stored = store.set_meta_once(PUBLISHER_PIN, key_id.as_str()).await?;
            match parse_publisher_pin(&stored)? {
                Some(pinned) => pinned,
                None => {
                    // An empty pin named no key: replace it with this one.
                    store.set_meta(PUBLISHER_PIN, key_id.as_str()).await?;
                    key_id.clone()
                }
            }
        }
    };
    if pinned != key_id {
        return Err(wrong_key(
            PinnedKey::Publisher,
            &format!("publisher key {pinned} (pinned when it was initialised)"),
            key_id.as_str(),
            &location,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_only_for_a_new_registry_without_a_pin() {
        let empty = Pins::default();
        for key in [PinnedKey::Operator, PinnedKey::Note, PinnedKey::Publisher] {
            assert!(empty.may_create(key));
        }
        let half = Pins {
            operator: vec![(KeyId::new("sha256:aa"), None)],
            ..Pins::default()
        };
        assert!(!half.may_create(PinnedKey::Operator));
        assert!(half.may_create(PinnedKey::Note));
        let initialised = Pins {
            initialised: true,
            ..Pins::default()
        };
        for key in [PinnedKey::Operator, PinnedKey::Note, PinnedKey::Publisher] {
            assert!(!initialised.may_create(key));
        }
    }

    #[test]
    fn a_missing_key_is_refused_with_what_is_expected() {
        let pins = Pins {
            initialised: true,
            operator: vec![(KeyId::new("sha256:op"), Some("file:/k/op.key".into()))],
            note: Some("example.com/log+01020304+AAAA".into()),
            publisher: vec![KeyId::new("sha256:pub")],
        };
        let message = pins.missing(PinnedKey::Publisher, "file:/d/publisher.key");
        assert!(message.contains("publisher key file:/d/publisher.key is missing"));
        assert!(message.contains("sha256:pub"));
        assert!(message.contains("--publisher-key"));
        let message = pins.missing(PinnedKey::Operator, "file:/d/operator.key");
        assert!(message.contains("sha256:op (last configured at file:/k/op.key)"));
        let message = pins.missing(PinnedKey::Note, "file:/d/note.key");
        assert!(message.contains("example.com/log+01020304+AAAA"));
        let legacy = Pins {
            initialised: true,
            ..Pins::default()
        };
        assert!(
            legacy
                .missing(PinnedKey::Publisher, "file:/d/publisher.key")
                .contains("cairn keygen")
        );
    }
}
