//! Administration: identities, keys, tokens and namespaces.
//!
//! Every operation works on the store, the operator key and the clock
//! ([`AdminCtx`]), so the same code serves the admin HTTP API of a running
//! server and the `cairn` command beside it (or without it): records are
//! submitted to the store and published by whichever sequencer runs on it.
//! Each operation is validated completely before anything is submitted, and
//! appended to the admin audit log once it has taken effect.

use std::time::Duration;

use cairn_crypto::{EcdsaPublicKey, KeyId, Signature, Signer};
use cairn_protocol::ext::registry::{
    IdentityEntry, IdentityKind, IdentityRef, KeyEntry, KeyIdEntry, NamespaceEntry, PublishPolicy,
    RegistryState, TrustedPublisher, Upstream, is_valid_identity_name,
};
use cairn_protocol::ext::{Attribution, ExtEntry, ExtRecord, REGISTRY_LOG_NAME};
use cairn_protocol::name::{is_valid_namespace, namespace_skeleton};
use cairn_protocol::operator::OperatorState;
use cairn_protocol::record::{OperatorEntry, Record, RecordKind as _};
use cairn_protocol::{Envelope, LogId, RecordId, Timestamp};
use cairn_store::{NewPending, Store, StoreError, TokenKind};

use crate::identity::{Action, NewToken, TokenScope, mint};
use crate::{Clock, Registry, ServiceError};

/// Identity names with this prefix belong to the registry itself.
pub const RESERVED_PREFIX: &str = "cairn-";
/// The identity of the registry's publisher key.
pub const PUBLISHER_IDENTITY: &str = "cairn-publisher";

/// How long an administrative command waits for its record.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// What administration needs: the store, the operator key (which signs
/// cairn's own records), the clock, and who is acting.
pub struct AdminCtx<'a> {
    /// The store.
    pub store: &'a dyn Store,
    /// The operator key.
    pub signer: &'a dyn Signer,
    /// The clock.
    pub clock: &'a dyn Clock,
    /// Who is acting (an identity, or `cli` for the local command line).
    pub actor: String,
    /// A registry in this process whose sequencer should be woken.
    pub registry: Option<&'a Registry>,
}

impl std::fmt::Debug for AdminCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCtx")
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

/// Loads a log's current state (the empty state for a log with no record).
async fn stored_state<S: crate::log_state::LogValidator>(
    store: &dyn Store,
    log_id: &LogId,
) -> Result<S, ServiceError> {
    let operator = if S::NEEDS_OPERATOR {
        crate::log_state::operator_state(store).await?
    } else {
        OperatorState::default()
    };
    Ok(crate::log_state::log_state_of(store, log_id, &operator)
        .await?
        .map(|(_, state)| state)
        .unwrap_or_default())
}

/// Builds and signs a cairn record on top of `head`.
pub(crate) async fn build_ext_record(
    head: Option<&cairn_protocol::operator::Head>,
    signer: &dyn Signer,
    clock: &dyn Clock,
    entries: Vec<ExtEntry>,
) -> Result<Envelope<ExtRecord>, ServiceError> {
    let key_id = crate::keys::ecdsa_key_id(signer)?;
    let now = clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ServiceError::Internal("the clock is before 1970".into()))?;
    let mut timestamp = Timestamp::from_unix(now.as_secs(), now.subsec_nanos())
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    if let Some(head) = head
        && head.timestamp > timestamp
    {
        timestamp = head.timestamp;
    }
    let record: ExtRecord = Record {
        prev: head.map(|h| h.record_id),
        version: 0,
        timestamp,
        entries,
    };
    let bytes = record.encode();
    let message = Envelope::<ExtRecord>::signing_message(&bytes);
    let signature = match signer.sign(&message).await {
        Ok(Signature::EcdsaP256(signature)) => signature,
        Ok(Signature::Ed25519(_)) => {
            return Err(ServiceError::Internal(
                "the operator key must be ECDSA P-256".into(),
            ));
        }
        Err(e) => {
            return Err(ServiceError::Unavailable {
                retry_after: 5,
                reason: format!("cannot sign: {e}"),
            });
        }
    };
    Ok(Envelope::from_signed(record, bytes, key_id, signature))
}

/// The pending row of a signed cairn record.
pub(crate) fn ext_pending(
    envelope: &Envelope<ExtRecord>,
    log_id: LogId,
    name: String,
    clock: &dyn Clock,
) -> NewPending {
    NewPending {
        record_id: envelope.record_id(),
        log_id,
        package_name: Some(name),
        content_bytes: envelope.content_bytes().to_vec(),
        key_id: envelope.key_id().to_string(),
        signature: envelope.signature().to_string(),
        missing: Vec::new(),
        created_at_ms: clock.now_ms(),
    }
}

/// The confusable-name rule: two namespaces are confusable when they are
/// equal after removing `-` and folding look-alike characters.
fn confusable_with<'a>(namespace: &str, existing: impl Iterator<Item = &'a str>) -> Option<String> {
    let skeleton = namespace_skeleton(namespace);
    existing
        .filter(|other| *other != namespace)
        .find(|other| namespace_skeleton(other) == skeleton)
        .map(str::to_owned)
}

/// A namespace's settings, for [`AdminCtx::set_namespace`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceSettings {
    /// Owners (identities).
    pub owners: Vec<String>,
    /// Publishers (identities).
    pub publishers: Vec<String>,
    /// Open to any warg key.
    pub open: bool,
    /// Imported from an upstream OCI registry.
    pub upstream: Option<Upstream>,
    /// Publish policy.
    pub policy: PublishPolicy,
    /// Trusted CI publishers.
    pub trusted_publishers: Vec<TrustedPublisher>,
}

impl AdminCtx<'_> {
    pub(crate) fn attribution(&self) -> Attribution {
        Attribution {
            identity: self.actor.clone(),
            via: "operator".into(),
            token: None,
            claims: Default::default(),
        }
    }

    pub(crate) async fn audit(
        &self,
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        self.store
            .append_audit(
                self.clock.now_ms(),
                &self.actor,
                action,
                &details.to_string(),
            )
            .await?;
        Ok(())
    }

    /// The registry log as stored.
    pub async fn registry_log(&self) -> Result<RegistryState, ServiceError> {
        stored_state::<RegistryState>(self.store, &LogId::registry()).await
    }

    async fn operator(&self) -> Result<OperatorState, ServiceError> {
        stored_state::<OperatorState>(self.store, &LogId::operator()).await
    }

    fn wake(&self) {
        if let Some(registry) = self.registry {
            registry.wake_sequencer();
        }
    }

    /// Appends a record to the registry log and waits until a checkpoint
    /// covers it. Retries when another record got there first.
    pub(crate) async fn append_registry(
        &self,
        entries: Vec<ExtEntry>,
    ) -> Result<RecordId, ServiceError> {
        self.append_registry_with(|_| Ok(entries.clone())).await
    }

    /// Appends a record whose entries `build` computes from the registry
    /// log's state, and waits until a checkpoint covers it. This is a
    /// compare-and-swap on the log's head: the record is signed on the
    /// head `build` saw, so if another record lands first the sequencer
    /// refuses it, and `build` runs again on the new state — a
    /// read-modify-write (adding a publisher, changing a policy) never
    /// loses a concurrent change.
    pub(crate) async fn append_registry_with(
        &self,
        mut build: impl FnMut(&RegistryState) -> Result<Vec<ExtEntry>, ServiceError>,
    ) -> Result<RecordId, ServiceError> {
        let log_id = LogId::registry();
        let deadline = tokio::time::Instant::now() + PUBLISH_TIMEOUT;
        loop {
            if self.store.live_pending_for_log(&log_id).await?.is_some() {
                if tokio::time::Instant::now() > deadline {
                    return Err(ServiceError::unavailable("the registry log is busy; retry"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let operator = self.operator().await?;
            let state = stored_state::<RegistryState>(self.store, &log_id).await?;
            let entries = build(&state)?;
            let envelope = build_ext_record(state.head(), self.signer, self.clock, entries).await?;
            state.validate(&envelope, &operator).map_err(|e| {
                ServiceError::bad_request(format!("refused by the registry log's rules: {e}"))
            })?;
            let pending = ext_pending(&envelope, log_id, REGISTRY_LOG_NAME.into(), self.clock);
            match self.store.insert_pending(&pending).await {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => continue,
                Err(other) => return Err(other.into()),
            }
            self.wake();
            let record_id = envelope.record_id();
            match crate::wait_for_record(self.store, &log_id, &record_id, PUBLISH_TIMEOUT).await {
                Ok(_) => return Ok(record_id),
                // Built on a head that moved before it was sequenced: again,
                // from the new state.
                Err(ServiceError::Warg(cairn_protocol::wire::WargError::Message {
                    message,
                    ..
                })) if message.contains("previous record hash does not match")
                    && tokio::time::Instant::now() < deadline => {}
                Err(other) => return Err(other),
            }
        }
    }

    /// Appends an operator record, signed by the operator key, and waits
    /// until a checkpoint covers it.
    pub async fn append_operator(
        &self,
        entries: Vec<OperatorEntry>,
    ) -> Result<RecordId, ServiceError> {
        let record =
            crate::submit_operator_record(self.store, self.signer, self.clock, entries).await?;
        self.wake();
        crate::wait_for_record(self.store, &LogId::operator(), &record, PUBLISH_TIMEOUT).await?;
        Ok(record)
    }

    async fn known(&self, name: &str) -> Result<(), ServiceError> {
        match self.registry_log().await?.identity(name) {
            Some(identity) if !identity.disabled => Ok(()),
            Some(_) => Err(ServiceError::conflict(format!(
                "identity `{name}` is disabled"
            ))),
            None => Err(ServiceError::not_found(format!("no identity `{name}`"))),
        }
    }

    /// Creates an identity (a logged record).
    pub async fn create_identity(
        &self,
        name: &str,
        kind: IdentityKind,
    ) -> Result<RecordId, ServiceError> {
        if name.starts_with(RESERVED_PREFIX) != (kind == IdentityKind::Registry) {
            return Err(ServiceError::bad_request(format!(
                "identity names starting with `{RESERVED_PREFIX}` are the registry's own"
            )));
        }
        if !is_valid_identity_name(name) {
            return Err(ServiceError::bad_request(format!(
                "invalid identity name `{name}`: 1 to 64 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit"
            )));
        }
        if self.registry_log().await?.identity(name).is_some() {
            return Err(ServiceError::conflict(format!(
                "identity `{name}` already exists"
            )));
        }
        let record = self
            .append_registry(vec![ExtEntry::Identity(IdentityEntry {
                name: name.to_owned(),
                kind,
            })])
            .await?;
        self.audit(
            "identity.create",
            serde_json::json!({"identity": name, "kind": kind}),
        )
        .await?;
        Ok(record)
    }

    /// Disables an identity: its tokens are revoked, its keys no longer
    /// publish. Returns how many tokens were revoked.
    pub async fn disable_identity(&self, name: &str) -> Result<u64, ServiceError> {
        self.known(name).await?;
        self.append_registry(vec![ExtEntry::IdentityDisabled(IdentityRef {
            name: name.to_owned(),
        })])
        .await?;
        let revoked = self
            .store
            .revoke_identity_tokens(name, self.clock.now_ms())
            .await?;
        self.audit(
            "identity.disable",
            serde_json::json!({"identity": name, "tokensRevoked": revoked}),
        )
        .await?;
        Ok(revoked)
    }

    /// Binds a warg key to an identity (a logged record).
    pub async fn bind_key(
        &self,
        identity: &str,
        key: &EcdsaPublicKey,
    ) -> Result<RecordId, ServiceError> {
        self.known(identity).await?;
        if let Some((owner, _)) = self.registry_log().await?.key(&key.key_id()) {
            return Err(ServiceError::conflict(format!(
                "key {} is already bound to `{owner}`",
                key.key_id()
            )));
        }
        let record = self
            .append_registry(vec![ExtEntry::KeyBound(KeyEntry {
                identity: identity.to_owned(),
                key: key.clone(),
            })])
            .await?;
        self.audit(
            "key.bind",
            serde_json::json!({"identity": identity, "keyId": key.key_id().to_string()}),
        )
        .await?;
        Ok(record)
    }

    /// Unbinds a warg key (a logged record).
    pub async fn unbind_key(
        &self,
        identity: &str,
        key_id: &KeyId,
    ) -> Result<RecordId, ServiceError> {
        match self.registry_log().await?.key(key_id) {
            Some((owner, _)) if owner == identity => {}
            _ => {
                return Err(ServiceError::not_found(format!(
                    "key {key_id} is not bound to `{identity}`"
                )));
            }
        }
        let record = self
            .append_registry(vec![ExtEntry::KeyUnbound(KeyIdEntry {
                identity: identity.to_owned(),
                key_id: key_id.clone(),
            })])
            .await?;
        self.audit(
            "key.unbind",
            serde_json::json!({"identity": identity, "keyId": key_id.to_string()}),
        )
        .await?;
        Ok(record)
    }

    /// Creates an API token; its secret is returned once and never stored.
    pub async fn create_token(
        &self,
        identity: &str,
        scope: &TokenScope,
        expires_in: Option<Duration>,
        description: &str,
    ) -> Result<NewToken, ServiceError> {
        self.known(identity).await?;
        if scope.actions.is_empty() || scope.namespaces.is_empty() {
            return Err(ServiceError::bad_request(
                "a token needs at least one action and one namespace (or `*`)",
            ));
        }
        for namespace in &scope.namespaces {
            if namespace != "*" && !is_valid_namespace(namespace) {
                return Err(ServiceError::bad_request(format!(
                    "invalid namespace `{namespace}`"
                )));
            }
        }
        let now = self.clock.now_ms();
        let expires = expires_in
            .map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
        let token = mint(identity, scope, TokenKind::Api, description, now, expires);
        self.store.insert_token(&token.row).await?;
        self.audit(
            "token.create",
            serde_json::json!({
                "token": token.row.id,
                "identity": identity,
                "namespaces": scope.namespaces,
                "actions": token.row.actions,
                "expiresAt": expires,
                "description": description,
            }),
        )
        .await?;
        Ok(token)
    }

    /// Revokes a token.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ServiceError> {
        if !self.store.revoke_token(id, self.clock.now_ms()).await? {
            return Err(ServiceError::not_found(format!("no live token `{id}`")));
        }
        self.audit("token.revoke", serde_json::json!({"token": id}))
            .await
    }

    /// Creates or changes a namespace: defines it in the operator log if it
    /// is new (imports it if it has an upstream), then records its
    /// ownership and policy in the registry log. New names confusable with
    /// an existing namespace are refused. The settings replace the
    /// namespace's whole entry; to change part of it, use
    /// [`AdminCtx::update_namespace`].
    pub async fn set_namespace(
        &self,
        namespace: &str,
        settings: NamespaceSettings,
    ) -> Result<RecordId, ServiceError> {
        self.update_namespace(namespace, true, |current| {
            *current = settings.clone();
            Ok(())
        })
        .await
    }

    /// Changes a namespace's settings with `edit`, applied to the settings
    /// as they are when its record is built (again if another change lands
    /// first), so concurrent edits never lose each other's changes.
    /// `create` allows a namespace without an ownership record (`edit`
    /// then starts from empty settings).
    pub async fn update_namespace(
        &self,
        namespace: &str,
        create: bool,
        mut edit: impl FnMut(&mut NamespaceSettings) -> Result<(), ServiceError>,
    ) -> Result<RecordId, ServiceError> {
        if !is_valid_namespace(namespace) {
            return Err(ServiceError::bad_request(format!(
                "invalid namespace `{namespace}`: use lowercase kebab case, e.g. `my-org`"
            )));
        }
        let registry = self.registry_log().await?;
        let mut settings = settings_of(&registry, namespace, create)?;
        edit(&mut settings)?;
        self.check_settings(namespace, &registry, &settings).await?;
        self.define_in_operator_log(namespace, &settings).await?;
        let previous = registry.namespace(namespace).is_some();
        let attribution = self.attribution();
        let mut last = settings;
        let record = self
            .append_registry_with(|state| {
                let mut settings = settings_of(state, namespace, create)?;
                edit(&mut settings)?;
                validate_settings(state, namespace, &settings)?;
                last = settings.clone();
                Ok(vec![ExtEntry::Namespace(NamespaceEntry {
                    namespace: namespace.to_owned(),
                    owners: settings.owners,
                    publishers: settings.publishers,
                    open: settings.open,
                    upstream: settings.upstream,
                    policy: settings.policy,
                    trusted_publishers: settings.trusted_publishers,
                    by: attribution.clone(),
                })])
            })
            .await?;
        self.audit(
            if previous {
                "namespace.update"
            } else {
                "namespace.create"
            },
            serde_json::json!({
                "namespace": namespace,
                "owners": last.owners,
                "publishers": last.publishers,
                "open": last.open,
                "upstream": last.upstream,
                "policy": last.policy,
                "trustedPublishers": last.trusted_publishers,
            }),
        )
        .await?;
        Ok(record)
    }

    /// The checks of a namespace's settings that need the store.
    async fn check_settings(
        &self,
        namespace: &str,
        registry: &RegistryState,
        settings: &NamespaceSettings,
    ) -> Result<(), ServiceError> {
        for identity in settings
            .owners
            .iter()
            .chain(&settings.publishers)
            .chain(settings.trusted_publishers.iter().map(|t| &t.identity))
        {
            self.known(identity).await?;
        }
        if !settings.open && settings.upstream.is_none() && settings.owners.is_empty() {
            return Err(ServiceError::bad_request(format!(
                "namespace `{namespace}` needs an owner (--owner IDENTITY), or --open, or --upstream"
            )));
        }
        validate_settings(registry, namespace, settings)
    }

    /// Defines (or imports) the namespace in the operator log if it is new;
    /// refuses to turn an own namespace into an imported one or back.
    async fn define_in_operator_log(
        &self,
        namespace: &str,
        settings: &NamespaceSettings,
    ) -> Result<(), ServiceError> {
        let operator = self.operator().await?;
        match (operator.namespace(namespace), &settings.upstream) {
            (None, _) => {
                let existing: Vec<&str> = operator.namespaces().map(|(n, _)| n).collect();
                if let Some(other) = confusable_with(namespace, existing.into_iter()) {
                    return Err(ServiceError::conflict(format!(
                        "namespace `{namespace}` is confusable with the existing `{other}` \
                         (names are compared without `-` and with look-alike characters folded)"
                    )));
                }
                let entry = match &settings.upstream {
                    Some(upstream) => OperatorEntry::ImportNamespace {
                        namespace: namespace.to_owned(),
                        registry: upstream.registry.clone(),
                    },
                    None => OperatorEntry::DefineNamespace {
                        namespace: namespace.to_owned(),
                    },
                };
                self.append_operator(vec![entry]).await?;
            }
            (Some(cairn_protocol::operator::NamespaceState::Defined), Some(_)) => {
                return Err(ServiceError::conflict(format!(
                    "namespace `{namespace}` is this registry's own; it cannot become imported"
                )));
            }
            (Some(cairn_protocol::operator::NamespaceState::Imported { .. }), None) => {
                return Err(ServiceError::conflict(format!(
                    "namespace `{namespace}` is imported; it keeps an upstream"
                )));
            }
            (Some(_), _) => {}
        }
        Ok(())
    }

    /// Adds and removes a namespace's owners and publishers (one logged
    /// record, never losing a concurrent change). A namespace keeps at
    /// least one owner.
    pub async fn edit_members(
        &self,
        namespace: &str,
        owners: (&[String], &[String]),
        publishers: (&[String], &[String]),
    ) -> Result<RecordId, ServiceError> {
        fn edit(list: &mut Vec<String>, add: &[String], remove: &[String]) {
            list.retain(|i| !remove.contains(i));
            for identity in add {
                if !list.contains(identity) {
                    list.push(identity.clone());
                }
            }
        }
        self.update_namespace(namespace, false, |settings| {
            let had_owners = !settings.owners.is_empty();
            edit(&mut settings.owners, owners.0, owners.1);
            edit(&mut settings.publishers, publishers.0, publishers.1);
            if had_owners && settings.owners.is_empty() {
                return Err(ServiceError::bad_request(format!(
                    "namespace `{namespace}` would have no owner left"
                )));
            }
            Ok(())
        })
        .await
    }

    /// The current settings of a namespace.
    pub async fn namespace_settings(
        &self,
        namespace: &str,
    ) -> Result<NamespaceSettings, ServiceError> {
        settings_of(&self.registry_log().await?, namespace, false)
    }
}

/// The rules on a namespace's settings that the registry log's state
/// decides (trusted publishers are dedicated identities with claim rules).
fn validate_settings(
    registry: &RegistryState,
    _namespace: &str,
    settings: &NamespaceSettings,
) -> Result<(), ServiceError> {
    crate::oci::signatures::check_policy(&settings.policy)?;
    crate::oidc::validate_trusted_publishers(
        registry,
        &settings.owners,
        &settings.publishers,
        &settings.trusted_publishers,
    )
}

/// A namespace's settings in `registry` (empty settings for a namespace
/// without an ownership record when `create` is set).
fn settings_of(
    registry: &RegistryState,
    namespace: &str,
    create: bool,
) -> Result<NamespaceSettings, ServiceError> {
    match registry.namespace(namespace) {
        Some(entry) => Ok(NamespaceSettings {
            owners: entry.owners.clone(),
            publishers: entry.publishers.clone(),
            open: entry.open,
            upstream: entry.upstream.clone(),
            policy: entry.policy.clone(),
            trusted_publishers: entry.trusted_publishers.clone(),
        }),
        None if create => Ok(NamespaceSettings::default()),
        None => Err(ServiceError::not_found(format!(
            "namespace `{namespace}` has no ownership record"
        ))),
    }
}

impl Registry {
    /// Administration through this registry's store and operator key, as
    /// `actor`.
    pub fn admin<'a>(&'a self, actor: &str, signer: &'a dyn Signer) -> AdminCtx<'a> {
        AdminCtx {
            store: self.inner.store.as_ref(),
            signer,
            clock: self.inner.clock.as_ref(),
            actor: actor.to_owned(),
            registry: Some(self),
        }
    }

    /// The operator key that signs now (for [`Registry::admin`]).
    pub fn operator_signer(&self) -> std::sync::Arc<dyn Signer> {
        self.keys().operator.clone()
    }

    /// The publisher key, if configured.
    pub fn publisher_signer(&self) -> Option<std::sync::Arc<dyn Signer>> {
        self.inner.publisher.clone()
    }

    /// Makes sure the publisher key is bound, in the registry log, to the
    /// registry's own identity, so that auditors can tell the records it
    /// signs (OCI pushes, attributed in metadata logs) from users' records.
    pub async fn ensure_publisher_identity(&self) -> Result<(), ServiceError> {
        let Some(publisher) = self.publisher_signer() else {
            return Ok(());
        };
        let cairn_crypto::PublicKey::EcdsaP256(key) = publisher.public_key().clone() else {
            return Err(ServiceError::Internal(
                "the publisher key must be ECDSA P-256".into(),
            ));
        };
        let log = self.registry_log();
        match log.key(&key.key_id()) {
            Some((owner, _)) if owner == PUBLISHER_IDENTITY => return Ok(()),
            Some((owner, _)) => {
                return Err(ServiceError::Internal(format!(
                    "the publisher key {} is bound to `{owner}`, not to `{PUBLISHER_IDENTITY}`",
                    key.key_id()
                )));
            }
            None => {}
        }
        let signer = self.operator_signer();
        let admin = self.admin("cairn", signer.as_ref());
        let mut entries = Vec::new();
        if log.identity(PUBLISHER_IDENTITY).is_none() {
            entries.push(ExtEntry::Identity(IdentityEntry {
                name: PUBLISHER_IDENTITY.into(),
                kind: IdentityKind::Registry,
            }));
        }
        entries.push(ExtEntry::KeyBound(KeyEntry {
            identity: PUBLISHER_IDENTITY.into(),
            key: key.clone(),
        }));
        admin.append_registry(entries).await?;
        admin
            .audit(
                "key.bind",
                serde_json::json!({"identity": PUBLISHER_IDENTITY, "keyId": key.key_id().to_string()}),
            )
            .await?;
        Ok(())
    }
}

/// Which actions a comma-separated list names.
pub fn parse_actions(list: &str) -> Result<Vec<Action>, ServiceError> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            Action::parse(a).ok_or_else(|| {
                ServiceError::bad_request(format!(
                    "unknown action `{a}`: use read, publish, sign, yank, admin"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusable_namespaces() {
        let existing = ["my-org", "acme", "modern"];
        assert_eq!(
            confusable_with("myorg", existing.into_iter()),
            Some("my-org".into())
        );
        assert_eq!(
            confusable_with("my-0rg", existing.into_iter()),
            Some("my-org".into())
        );
        assert_eq!(
            confusable_with("rnodern", existing.into_iter()),
            Some("modern".into())
        );
        assert_eq!(
            confusable_with("ac-me", existing.into_iter()),
            Some("acme".into())
        );
        assert_eq!(confusable_with("other", existing.into_iter()), None);
        assert_eq!(
            confusable_with("my-org", existing.into_iter()),
            None,
            "itself"
        );
        assert_eq!(
            parse_actions("publish, yank").unwrap(),
            vec![Action::Publish, Action::Yank]
        );
        assert!(parse_actions("fly").is_err());
    }
}
