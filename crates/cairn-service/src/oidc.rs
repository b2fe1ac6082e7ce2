//! OIDC trusted publishing: a CI workflow exchanges the identity token its
//! platform issued (a JWT) for a short-lived cairn token, without any
//! stored secret.
//!
//! The operator configures which issuers the registry trusts (and the
//! audience their tokens must carry); a namespace's owners name trusted
//! publishers in its ownership record (logged): an issuer, claim rules
//! (`repository = my-org/app`, `ref = refs/tags/*`) and the identity the
//! publishes are attributed to. A JWT is accepted when its signature
//! verifies against the issuer's published keys (RS256 or ES256), it is
//! within its validity period, its audience is the configured one, and a
//! trusted publisher's rules match its claims. The token it buys may
//! publish in those namespaces for at most 15 minutes (never past the
//! JWT's own expiry), and every record it makes carries the claims.
//!
//! A trusted publisher acts as a dedicated identity of kind
//! `trusted-publisher`, never as an owner or a direct publisher of any
//! namespace: a workflow that matches the rules gets exactly the rights the
//! rule grants, not a person's. A rule must name at least one claim (with
//! none it would match every token the issuer signs, for anyone's
//! repository). [`validate_trusted_publishers`] checks this when a rule is
//! set; the exchange checks the identity again.
//!
//! Fetching the keys is the HTTP layer's job; verifying a JWT is
//! `cairn_crypto::jwt` (re-exported here); this module matches and exchanges.

use std::collections::BTreeMap;

use cairn_protocol::ext::registry::{IdentityKind, RegistryState, TrustedPublisher};
use cairn_store::TokenKind;

pub use cairn_crypto::jwt::{
    Claims, Jwk, JwkSet, JwtError, LEEWAY_SECS, MAX_JWT_BYTES, OidcIssuer, unverified_issuer,
    verify_jwt,
};

use crate::identity::{Action, NewToken, TokenScope, mint};
use crate::{Registry, ServiceError};

/// The longest a token bought with a JWT lives.
const OIDC_TOKEN_TTL_SECS: i64 = 15 * 60;
/// Claims copied into the attribution of what an OIDC token publishes
/// (besides `sub` and the claims a trusted publisher's rules name).
const PROVENANCE_CLAIMS: &[&str] = &[
    "repository",
    "workflow",
    "job_workflow_ref",
    "ref",
    "sha",
    "run_id",
    "run_attempt",
];

/// Where `identity` owns or publishes directly, if anywhere (the first
/// such namespace and the role).
fn direct_role<'a>(registry: &'a RegistryState, identity: &str) -> Option<(&'a str, &'static str)> {
    registry.namespaces().find_map(|entry| {
        if entry.owners.iter().any(|o| o == identity) {
            Some((entry.namespace.as_str(), "an owner"))
        } else if entry.publishers.iter().any(|p| p == identity) {
            Some((entry.namespace.as_str(), "a publisher"))
        } else {
            None
        }
    })
}

/// Checks a namespace's trusted publishers before they are recorded, with
/// the `owners` and `publishers` the same record gives the namespace:
///
/// * each rule passes [`check_trust_rule`];
/// * each rule's identity exists, is of kind `trusted-publisher`, and is
///   neither an owner nor a publisher of this or any namespace;
/// * no owner or publisher of this namespace is a `trusted-publisher`
///   identity (it may publish only through OIDC).
///
/// Every refusal is a 400 saying what to change.
pub fn validate_trusted_publishers(
    registry: &RegistryState,
    owners: &[String],
    publishers: &[String],
    trusted: &[TrustedPublisher],
) -> Result<(), ServiceError> {
    for member in owners.iter().chain(publishers) {
        if registry
            .identity(member)
            .is_some_and(|i| i.kind == IdentityKind::TrustedPublisher)
        {
            return Err(ServiceError::bad_request(format!(
                "`{member}` is a trusted-publisher identity: it publishes only through OIDC \
                 and cannot be an owner or publisher"
            )));
        }
    }
    for rule in trusted {
        check_trust_rule(rule)?;
        let identity = &rule.identity;
        match registry.identity(identity).map(|i| i.kind) {
            None => {
                return Err(ServiceError::bad_request(format!(
                    "unknown identity `{identity}`: a trusted publisher needs an identity of \
                     kind trusted-publisher (`cairn namespace trust` creates one)"
                )));
            }
            Some(IdentityKind::TrustedPublisher) => {}
            Some(kind) => {
                return Err(ServiceError::bad_request(format!(
                    "identity `{identity}` is a {} identity; a trusted publisher must act as a \
                     dedicated identity of kind trusted-publisher, never a person's or a \
                     robot's (use a new name with `cairn namespace trust`)",
                    kind_name(kind)
                )));
            }
        }
        let here = if owners.contains(identity) {
            Some("an owner")
        } else if publishers.contains(identity) {
            Some("a publisher")
        } else {
            None
        };
        if let Some(role) = here {
            return Err(ServiceError::bad_request(format!(
                "identity `{identity}` would be {role} of this namespace; a trusted publisher \
                 is never an owner or publisher"
            )));
        }
        if let Some((namespace, role)) = direct_role(registry, identity) {
            return Err(ServiceError::bad_request(format!(
                "identity `{identity}` is {role} of namespace `{namespace}`; a trusted \
                 publisher is never an owner or publisher"
            )));
        }
    }
    Ok(())
}

/// Checks one trust rule on its own: it names an issuer and at least one
/// claim, and no claim rule matches any value (empty, or a bare `*`). A
/// rule without claims would match every token the issuer signs.
pub fn check_trust_rule(rule: &TrustedPublisher) -> Result<(), ServiceError> {
    let identity = &rule.identity;
    if rule.issuer.trim().is_empty() {
        return Err(ServiceError::bad_request(format!(
            "the trusted publisher `{identity}` names no issuer"
        )));
    }
    if rule.claims.is_empty() {
        return Err(ServiceError::bad_request(format!(
            "the trusted publisher `{identity}` for {} has no claim rules: it would match \
                 every token that issuer signs; name at least one claim, e.g. \
                 repository=my-org/app",
            rule.issuer
        )));
    }
    for (name, value) in &rule.claims {
        if name.is_empty() || value.is_empty() || value == "*" {
            return Err(ServiceError::bad_request(format!(
                "the trusted publisher `{identity}` has the claim rule `{name}={value}`, \
                     which matches any value; give an exact value or a prefix ending in `*`"
            )));
        }
    }
    Ok(())
}

fn kind_name(kind: IdentityKind) -> &'static str {
    match kind {
        IdentityKind::User => "user",
        IdentityKind::Robot => "robot",
        IdentityKind::TrustedPublisher => "trusted-publisher",
        IdentityKind::Registry => "registry",
    }
}

/// The claim as a string (numbers and booleans as their JSON text).
fn claim_text(claims: &Claims, name: &str) -> Option<String> {
    match claims.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether a trusted publisher's rules match the claims: each rule is an
/// exact value, or a prefix ending in `*`.
pub fn rules_match(publisher: &TrustedPublisher, claims: &Claims) -> bool {
    // A rule without claims would match every token of the issuer; such a
    // rule is refused when set, and never matches here.
    !publisher.claims.is_empty()
        && publisher.claims.iter().all(|(name, rule)| {
            let Some(value) = claim_text(claims, name) else {
                return false;
            };
            match rule.strip_suffix('*') {
                Some(prefix) => value.starts_with(prefix),
                None => value == *rule,
            }
        })
}

/// What an exchange bought.
#[derive(Debug)]
pub struct OidcToken {
    /// The token (its secret is shown once).
    pub token: NewToken,
    /// The namespaces it may publish in.
    pub namespaces: Vec<String>,
}

impl Registry {
    /// Exchanges a verified JWT's `claims` for a short-lived token of the
    /// trusted publisher they match, in the namespaces that trust it
    /// (`namespace` narrows the choice). The claims recorded with every
    /// publish are `sub`, those the rules name, and provenance claims.
    pub async fn oidc_exchange(
        &self,
        issuer: &OidcIssuer,
        claims: &Claims,
        namespace: Option<&str>,
    ) -> Result<OidcToken, ServiceError> {
        let registry = self.registry_log();
        let mut matches: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for entry in registry.namespaces() {
            if namespace.is_some_and(|ns| ns != entry.namespace) {
                continue;
            }
            for publisher in &entry.trusted_publishers {
                if publisher.issuer == issuer.issuer && rules_match(publisher, claims) {
                    let slot = matches.entry(publisher.identity.clone()).or_default();
                    slot.0.push(entry.namespace.clone());
                    slot.1.extend(publisher.claims.keys().cloned());
                }
            }
        }
        let subject = claim_text(claims, "sub").unwrap_or_default();
        let (identity, (namespaces, rule_claims)) = match matches.len() {
            0 => {
                return Err(ServiceError::unauthorized(format!(
                    "no namespace trusts this workflow: sub `{subject}`"
                )));
            }
            1 => matches
                .into_iter()
                .next()
                .ok_or_else(|| ServiceError::Internal("a match disappeared".into()))?,
            _ => {
                return Err(ServiceError::bad_request(format!(
                    "this workflow is trusted by several identities ({}); say which namespace",
                    matches.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        };
        let Some(state) = registry.identity(&identity).filter(|i| !i.disabled) else {
            return Err(ServiceError::unauthorized(format!(
                "trusted publisher identity `{identity}` is disabled"
            )));
        };
        // Defence in depth: rules recorded before these checks existed (or
        // by a path that skipped them) never buy a person's rights.
        if state.kind != IdentityKind::TrustedPublisher {
            return Err(ServiceError::forbidden(format!(
                "the trust rule names `{identity}`, a {} identity; OIDC tokens are issued only \
                 for identities of kind trusted-publisher",
                kind_name(state.kind)
            )));
        }
        if let Some((ns, role)) = direct_role(&registry, &identity) {
            return Err(ServiceError::forbidden(format!(
                "the trust rule names `{identity}`, {role} of namespace `{ns}`; OIDC tokens \
                 are never issued for owners or publishers"
            )));
        }
        let mut recorded = BTreeMap::new();
        for name in std::iter::once("sub")
            .chain(rule_claims.iter().map(String::as_str))
            .chain(PROVENANCE_CLAIMS.iter().copied())
        {
            if let Some(value) = claim_text(claims, name) {
                recorded.insert(name.to_owned(), value);
            }
        }
        let now = self.inner.clock.now_ms();
        let exp_ms = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .map_or(i64::MAX, |exp| exp.saturating_mul(1000));
        let expires = now
            .saturating_add(OIDC_TOKEN_TTL_SECS * 1000)
            .min(exp_ms.max(now + 1000));
        let mut token = mint(
            &identity,
            &TokenScope {
                namespaces: namespaces.clone(),
                actions: vec![Action::Read, Action::Publish],
            },
            TokenKind::Oidc,
            &format!("oidc {}", issuer.issuer),
            now,
            Some(expires),
        );
        token.row.claims = recorded;
        self.inner.store.insert_token(&token.row).await?;
        self.inner
            .store
            .append_audit(
                now,
                &identity,
                "oidc.exchange",
                &serde_json::json!({
                    "token": token.row.id,
                    "issuer": issuer.issuer,
                    "claims": token.row.claims,
                    "namespaces": namespaces,
                })
                .to_string(),
            )
            .await?;
        Ok(OidcToken { token, namespaces })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_rules_are_exact_or_prefixes() {
        let mut publisher = TrustedPublisher {
            identity: "ci".into(),
            issuer: "https://ci.example".into(),
            claims: BTreeMap::from([
                ("repository".into(), "my-org/app".into()),
                ("ref".into(), "refs/tags/*".into()),
            ]),
        };
        let claims = |repo: &str, r#ref: &str| {
            serde_json::json!({"repository": repo, "ref": r#ref})
                .as_object()
                .unwrap()
                .clone()
        };
        assert!(rules_match(
            &publisher,
            &claims("my-org/app", "refs/tags/v1")
        ));
        assert!(!rules_match(
            &publisher,
            &claims("my-org/app", "refs/heads/main")
        ));
        assert!(!rules_match(
            &publisher,
            &claims("my-org/app2", "refs/tags/v1")
        ));
        assert!(!rules_match(&publisher, &serde_json::Map::new()));
        // A rule without claims matches nothing.
        publisher.claims.clear();
        assert!(!rules_match(
            &publisher,
            &claims("my-org/app", "refs/tags/v1")
        ));
    }
}
