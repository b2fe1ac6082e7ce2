//! A namespace's trust rules: which keys and which keyless identities may
//! sign its components.
//!
//! An identity rule is written `ISSUER=IDENTITY_REGEX`, with the meaning
//! of cosign's `--certificate-oidc-issuer ISSUER
//! --certificate-identity-regexp IDENTITY_REGEX`: the certificate's Fulcio
//! issuer extension must equal `ISSUER` exactly, and its SAN (email or URI)
//! must match the regular expression **as a whole** (the rule is anchored:
//! `https://github.com/acme/.*` does not match
//! `https://evil.example/https://github.com/acme/x`). The text is split at
//! the first `=`, so the regular expression may contain `=`; OIDC issuer
//! URLs do not. The syntax is RE2's (Go `regexp`, as cosign), with ASCII
//! `\w`, `\d` and `\s`.

use regex_lite::Regex;

use crate::error::{PolicyError, Refusal};
use crate::keys::PublicKey;
use crate::verdict::Verdict;

/// One keyless identity rule.
#[derive(Debug, Clone)]
pub struct IdentityRule {
    issuer: String,
    identity: String,
    regex: Regex,
}

impl IdentityRule {
    /// Parses `ISSUER=IDENTITY_REGEX`.
    pub fn parse(rule: &str) -> Result<Self, PolicyError> {
        let invalid = |reason: &str| PolicyError::InvalidIdentityRule {
            rule: rule.to_owned(),
            reason: reason.to_owned(),
        };
        let (issuer, identity) = rule
            .split_once('=')
            .ok_or_else(|| invalid("expected ISSUER=IDENTITY_REGEX"))?;
        if issuer.trim().is_empty() || issuer.trim() != issuer {
            return Err(invalid(
                "the issuer must be non-empty, without surrounding spaces",
            ));
        }
        if identity.is_empty() {
            return Err(invalid("the identity regular expression is empty"));
        }
        let regex = Regex::new(&format!("^(?:{identity})$"))
            .map_err(|e| invalid(&format!("bad regular expression: {e}")))?;
        Ok(Self {
            issuer: issuer.to_owned(),
            identity: identity.to_owned(),
            regex,
        })
    }

    /// The OIDC issuer this rule requires.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The identity regular expression as written (unanchored text).
    pub fn identity_pattern(&self) -> &str {
        &self.identity
    }

    /// Whether a certificate with this issuer and SAN satisfies the rule.
    pub fn matches(&self, issuer: &str, identity: &str) -> bool {
        self.issuer == issuer && self.regex.is_match(identity)
    }
}

impl std::fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.issuer, self.identity)
    }
}

/// The keys and identities a namespace trusts. Empty trusts nothing.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    /// Listed public keys: a signature any of them verifies is trusted.
    pub keys: Vec<PublicKey>,
    /// Keyless identity rules: a Fulcio certificate matching any of them is
    /// trusted.
    pub identities: Vec<IdentityRule>,
}

impl TrustPolicy {
    /// Builds a policy from PEM public keys and `ISSUER=IDENTITY_REGEX`
    /// rules, failing on the first invalid entry (named in the error).
    pub fn parse<K: AsRef<str>, R: AsRef<str>>(
        keys: &[K],
        identities: &[R],
    ) -> Result<Self, PolicyError> {
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                PublicKey::from_pem(pem.as_ref()).map_err(|e| match e {
                    PolicyError::InvalidKey(reason) => {
                        PolicyError::InvalidKey(format!("key {}: {reason}", i + 1))
                    }
                    other => other,
                })
            })
            .collect::<Result<_, _>>()?;
        let identities = identities
            .iter()
            .map(|rule| IdentityRule::parse(rule.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { keys, identities })
    }

    /// Whether the policy trusts no one.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.identities.is_empty()
    }

    /// Whether some identity rule allows this certificate issuer and SAN.
    pub fn allows_identity(&self, issuer: &str, identity: &str) -> bool {
        self.identities.iter().any(|r| r.matches(issuer, identity))
    }
}

/// The policy check "an attestation of `required` predicate type is
/// present": the first verdict whose predicate type is `required`, or a
/// refusal naming what was found instead.
pub fn require_predicate_type<'a>(
    verdicts: &'a [Verdict],
    required: &str,
) -> Result<&'a Verdict, Refusal> {
    if let Some(found) = verdicts
        .iter()
        .find(|v| v.predicate_type.as_deref() == Some(required))
    {
        return Ok(found);
    }
    let mut found: Vec<&str> = verdicts
        .iter()
        .map(|v| v.predicate_type.as_deref().unwrap_or("none"))
        .collect();
    found.sort_unstable();
    found.dedup();
    Err(Refusal::WrongPredicateType {
        required: required.to_owned(),
        found: if found.is_empty() {
            "none".to_owned()
        } else {
            found.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_rules_are_anchored_and_split_at_the_first_equals() {
        let rule = IdentityRule::parse(
            "https://token.actions.githubusercontent.com=https://github.com/acme/.*@refs/heads/main",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let issuer = "https://token.actions.githubusercontent.com";
        assert!(rule.matches(
            issuer,
            "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
        ));
        assert!(!rule.matches(
            issuer,
            "https://evil.example/https://github.com/acme/x@refs/heads/main"
        ));
        assert!(!rule.matches(
            issuer,
            "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main2"
        ));
        assert!(!rule.matches(
            "https://accounts.google.com",
            "https://github.com/acme/a@refs/heads/main"
        ));
        let with_equals = IdentityRule::parse("https://issuer.example=a=b")
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(with_equals.matches("https://issuer.example", "a=b"));
    }

    #[test]
    fn invalid_rules_say_why() {
        for (rule, reason) in [
            ("no-equals", "expected ISSUER=IDENTITY_REGEX"),
            ("=x", "issuer must be non-empty"),
            ("https://i.example=", "is empty"),
            ("https://i.example=(", "bad regular expression"),
        ] {
            let error = IdentityRule::parse(rule).err().map(|e| e.to_string());
            assert!(
                error.as_deref().is_some_and(|e| e.contains(reason)),
                "{rule}: {error:?}"
            );
        }
    }
}
