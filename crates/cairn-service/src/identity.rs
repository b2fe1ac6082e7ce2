//! Identities, API tokens, and who may publish where.
//!
//! * **Identities** (people, robot accounts, CI workflows trusted through
//!   OIDC, and the registry itself) live in the registry log, with the warg
//!   keys bound to them and each namespace's owners and publishers: every
//!   change is a signed, logged record an auditor can check.
//! * **Tokens** are random, shown once, stored as SHA-256 only, scoped to
//!   namespaces and actions, expiring and revocable. They are credentials,
//!   not facts about the registry, so they are not logged; what a token was
//!   used for is (the identity and token id are in the records it made).
//! * Every administrative action is appended to the admin audit log.
//!
//! This module is the one place that decides whether a caller may do
//! something; the HTTP layers only extract credentials.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cairn_crypto::{KeyId, Sha256Digest};
use cairn_protocol::ext::Attribution;
use cairn_protocol::ext::meta::MetaState;
use cairn_protocol::ext::registry::{Access, RegistryState, authorize};
use cairn_protocol::{PackageName, RecordId};
use cairn_store::{TokenKind, TokenRow};
use rand::RngCore as _;

use crate::{Registry, ServiceError};

/// The prefix of every token string.
pub const TOKEN_PREFIX: &str = "cairn_";
/// How long a session token from the OCI token endpoint lives.
pub const SESSION_TTL: Duration = Duration::from_secs(15 * 60);

/// Something a token may allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Pull over OCI when anonymous reads are off.
    Read,
    /// Publish releases, push manifests and tags. Implies [`Action::Sign`].
    Publish,
    /// Attach signatures and attestations over OCI: referrers (manifests
    /// with a subject), cosign's `sha256-<hex>.<suffix>` tags and the
    /// referrers tag schema's `sha256-<hex>` indexes, and their blobs;
    /// never releases or other tags. Reads like [`Action::Read`].
    Sign,
    /// Yank releases.
    Yank,
    /// Administer identities, tokens and namespaces.
    Admin,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 5] = [
        Self::Read,
        Self::Publish,
        Self::Sign,
        Self::Yank,
        Self::Admin,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Publish => "publish",
            Self::Sign => "sign",
            Self::Yank => "yank",
            Self::Admin => "admin",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// An authenticated caller.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    /// The identity it acts as.
    pub identity: String,
    /// The token's id (never its secret).
    pub token_id: String,
    /// The token an administrator (or an OIDC exchange) issued: the token
    /// itself, or for a session the one it was exchanged for. Records name
    /// this one.
    pub issued_token: String,
    /// Namespaces it may act in (`*`: all).
    pub namespaces: Vec<String>,
    /// Actions it may take.
    pub actions: Vec<Action>,
    /// API, session or OIDC.
    pub kind: TokenKind,
    /// For OIDC tokens: the claims recorded with what it does.
    pub claims: BTreeMap<String, String>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("identity", &self.identity)
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// Whether the token allows `action` in `namespace` (`None`: not tied
    /// to a namespace, e.g. administration). `publish` implies `sign`.
    pub fn allows(&self, action: Action, namespace: Option<&str>) -> bool {
        (self.actions.contains(&action)
            || (action == Action::Sign && self.actions.contains(&Action::Publish)))
            && match namespace {
                Some(ns) => self.namespaces.iter().any(|n| n == "*" || n == ns),
                None => self.namespaces.iter().any(|n| n == "*"),
            }
    }

    /// The attribution of what this caller does.
    pub fn attribution(&self) -> Attribution {
        Attribution {
            identity: self.identity.clone(),
            via: match self.kind {
                TokenKind::Oidc => "oidc".into(),
                TokenKind::Api | TokenKind::Session => "token".into(),
            },
            token: Some(self.issued_token.clone()),
            claims: self.claims.clone(),
        }
    }
}

/// Why authentication failed (always answered 401, with this message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a cairn token.
    #[error("malformed token")]
    Malformed,
    /// Unknown id or wrong secret.
    #[error("unknown token")]
    Unknown,
    /// Revoked.
    #[error("the token has been revoked")]
    Revoked,
    /// Expired.
    #[error("the token has expired")]
    Expired,
    /// Its identity is disabled or gone.
    #[error("the token's identity is disabled")]
    IdentityDisabled,
}

/// A new token: its row and the secret string, shown once.
pub struct NewToken {
    /// What is stored.
    pub row: TokenRow,
    /// `cairn_<id>_<secret>`: show it once, never store or log it.
    pub secret: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.row.id)
            .finish_non_exhaustive()
    }
}

/// What a token may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenScope {
    /// Namespaces (`*` for all).
    pub namespaces: Vec<String>,
    /// Actions.
    pub actions: Vec<Action>,
}

pub(crate) fn hash_secret(secret: &str) -> Sha256Digest {
    Sha256Digest::of(secret.as_bytes())
}

/// Splits `cairn_<id>_<secret>`.
pub(crate) fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let valid = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (valid(id, 20) && valid(secret, 43)).then_some((id, secret))
}

/// Mints a token for `identity` (not stored yet).
pub(crate) fn mint(
    identity: &str,
    scope: &TokenScope,
    kind: TokenKind,
    description: &str,
    now_ms: i64,
    expires_at_ms: Option<i64>,
) -> NewToken {
    let mut id = [0u8; 10];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    NewToken {
        row: TokenRow {
            id: id.clone(),
            secret_hash: hash_secret(&secret),
            identity: identity.to_owned(),
            namespaces: scope.namespaces.clone(),
            actions: scope
                .actions
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            description: description.to_owned(),
            kind,
            created_at_ms: now_ms,
            expires_at_ms,
            revoked_at_ms: None,
            parent: None,
            claims: BTreeMap::new(),
        },
        secret: format!("{TOKEN_PREFIX}{id}_{secret}"),
    }
}

/// Whether a package record of `package`, signed by `signer`, may be
/// sequenced: the rules of the registry log ([`authorize`]), and, when the
/// registry requires owners, a namespace that has them.
pub(crate) fn check_publisher(
    registry: &RegistryState,
    meta: Option<&MetaState>,
    package: &PackageName,
    signer: &KeyId,
    record: &RecordId,
    require_owners: bool,
) -> Result<Option<String>, String> {
    let namespace = package.namespace();
    if require_owners && registry.namespace(namespace).is_none() {
        return Err(format!(
            "namespace `{namespace}` has no owners and this registry requires them; \
             claim it with `cairn namespace create {namespace} --owner IDENTITY`"
        ));
    }
    authorize(registry, meta, namespace, signer, record)
}

impl Registry {
    /// Authenticates a token string.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ServiceError> {
        let unauthorized = |e: AuthError| ServiceError::unauthorized(e.to_string());
        let (id, secret) = parse_token(token).ok_or(unauthorized(AuthError::Malformed))?;
        let row = self
            .inner
            .store
            .token(id)
            .await?
            .ok_or(unauthorized(AuthError::Unknown))?;
        if row.secret_hash != hash_secret(secret) {
            return Err(unauthorized(AuthError::Unknown));
        }
        if row.revoked_at_ms.is_some() {
            return Err(unauthorized(AuthError::Revoked));
        }
        let now = self.inner.clock.now_ms();
        if row.expires_at_ms.is_some_and(|at| at <= now) {
            return Err(unauthorized(AuthError::Expired));
        }
        let disabled = |registry: &Registry| {
            registry
                .registry_log()
                .identity(&row.identity)
                .is_none_or(|i| i.disabled)
        };
        if disabled(self) {
            // A standby's copy of the registry log may be a poll interval
            // behind (an identity created a moment ago): look again in the
            // store (a no-op on the leader, whose copy is never behind).
            self.reload_log_states().await?;
            if disabled(self) {
                return Err(unauthorized(AuthError::IdentityDisabled));
            }
        }
        // A session works only while the token it was exchanged for does.
        if let Some(parent) = &row.parent {
            let parent = self.inner.store.token(parent).await?;
            match parent {
                Some(p) if p.revoked_at_ms.is_some() => {
                    return Err(unauthorized(AuthError::Revoked));
                }
                Some(p) if p.expires_at_ms.is_some_and(|at| at <= now) => {
                    return Err(unauthorized(AuthError::Expired));
                }
                Some(_) => {}
                None => return Err(unauthorized(AuthError::Revoked)),
            }
        }
        Ok(Caller {
            identity: row.identity,
            issued_token: row.parent.clone().unwrap_or_else(|| row.id.clone()),
            token_id: row.id,
            namespaces: row.namespaces,
            actions: row
                .actions
                .iter()
                .filter_map(|a| Action::parse(a))
                .collect(),
            kind: row.kind,
            claims: row.claims,
        })
    }

    /// Requires `caller` to hold `action` in `namespace`; for publishing,
    /// signing and yanking, also that its identity may publish there (owner
    /// or publisher of a claimed namespace, or an open one).
    pub fn require(
        &self,
        caller: &Caller,
        action: Action,
        namespace: Option<&str>,
    ) -> Result<(), ServiceError> {
        if !caller.allows(action, namespace) {
            return Err(ServiceError::forbidden(format!(
                "token {} does not allow `{}`{}",
                caller.token_id,
                action.as_str(),
                namespace.map_or_else(String::new, |ns| format!(" in `{ns}`"))
            )));
        }
        if let (Action::Publish | Action::Sign | Action::Yank, Some(ns)) = (action, namespace) {
            let registry = self.registry_log();
            let access = registry.access(ns, Some(&caller.identity));
            let allowed = match access {
                Access::Unclaimed => !self.inner.config.require_owners,
                other => other.allowed(),
            };
            if !allowed || registry.namespace(ns).is_some_and(|n| n.upstream.is_some()) {
                return Err(ServiceError::forbidden(format!(
                    "`{}` may not publish in namespace `{ns}`",
                    caller.identity
                )));
            }
        }
        Ok(())
    }

    /// Issues a short-lived session token for `caller`, narrowed to
    /// `scope` (the OCI token endpoint).
    pub async fn issue_session(
        &self,
        caller: &Caller,
        scope: &TokenScope,
        kind: TokenKind,
        ttl: Duration,
    ) -> Result<NewToken, ServiceError> {
        let now = self.inner.clock.now_ms();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let parent = self.inner.store.token(&caller.token_id).await?;
        // Never outlive the token it is exchanged for; a session of a
        // session hangs off the original token.
        let mut expires = now.saturating_add(ttl_ms);
        let mut root = caller.token_id.clone();
        if let Some(parent) = &parent {
            if let Some(at) = parent.expires_at_ms {
                expires = expires.min(at);
            }
            if let Some(grandparent) = &parent.parent {
                root = grandparent.clone();
            }
        }
        let mut token = mint(&caller.identity, scope, kind, "session", now, Some(expires));
        token.row.parent = Some(root);
        token.row.claims = caller.claims.clone();
        self.inner.store.insert_token(&token.row).await?;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_never_print_their_secret() {
        let token = mint(
            "alice",
            &TokenScope {
                namespaces: vec!["my-org".into()],
                actions: vec![Action::Publish],
            },
            TokenKind::Api,
            "ci",
            1,
            None,
        );
        let (id, secret) = parse_token(&token.secret).unwrap();
        assert_eq!(id, token.row.id);
        assert_eq!(hash_secret(secret), token.row.secret_hash);
        assert!(!format!("{token:?}").contains(secret));
        for bad in [
            "",
            "cairn_",
            "cairn_x_y",
            "other_0123456789abcdef0123_abc",
            &token.secret[..30],
        ] {
            assert!(parse_token(bad).is_none(), "{bad}");
        }
        let caller = Caller {
            identity: "alice".into(),
            token_id: id.into(),
            issued_token: id.into(),
            namespaces: vec!["my-org".into()],
            actions: vec![Action::Publish],
            kind: TokenKind::Api,
            claims: BTreeMap::new(),
        };
        assert!(caller.allows(Action::Publish, Some("my-org")));
        assert!(!caller.allows(Action::Publish, Some("other")));
        assert!(!caller.allows(Action::Yank, Some("my-org")));
        assert!(!caller.allows(Action::Admin, None));
        assert!(
            caller.allows(Action::Sign, Some("my-org")),
            "publish implies sign"
        );
        let signer = Caller {
            actions: vec![Action::Sign],
            ..caller
        };
        assert!(signer.allows(Action::Sign, Some("my-org")));
        assert!(!signer.allows(Action::Publish, Some("my-org")));
        assert_eq!(Action::parse("sign"), Some(Action::Sign));
    }
}
