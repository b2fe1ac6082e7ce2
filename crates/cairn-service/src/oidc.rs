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
//! Fetching the keys is the HTTP layer's job; this module only verifies.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cairn_protocol::ext::registry::TrustedPublisher;
use cairn_store::TokenKind;
use serde::{Deserialize, Serialize};

use crate::identity::{Action, NewToken, TokenScope, mint};
use crate::{Registry, ServiceError};

/// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: i64 = 60;
/// The longest a token bought with a JWT lives.
const OIDC_TOKEN_TTL_SECS: i64 = 15 * 60;
/// The largest JWT accepted.
pub const MAX_JWT_BYTES: usize = 16 * 1024;
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

/// An issuer the registry trusts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuer {
    /// The `iss` claim, exactly (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// The `aud` the tokens must carry (e.g. the registry's URL).
    pub audience: String,
    /// Where its keys are; default: discovered from
    /// `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_url: Option<String>,
}

/// A JSON Web Key (RFC 7517), the kinds cairn verifies with.
#[derive(Clone, Debug, Deserialize)]
pub struct Jwk {
    /// `RSA` or `EC`.
    pub kty: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// RSA modulus (base64url).
    #[serde(default)]
    pub n: Option<String>,
    /// RSA exponent (base64url).
    #[serde(default)]
    pub e: Option<String>,
    /// EC curve (`P-256`).
    #[serde(default)]
    pub crv: Option<String>,
    /// EC x (base64url).
    #[serde(default)]
    pub x: Option<String>,
    /// EC y (base64url).
    #[serde(default)]
    pub y: Option<String>,
}

/// A JWK set.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// Why a JWT was refused (answered 401 with this message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// An algorithm other than RS256 and ES256.
    #[error("unsupported algorithm `{0}`: RS256 and ES256 are accepted")]
    Algorithm(String),
    /// No key of the issuer has this id.
    #[error("the issuer has no key `{0}`")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    Signature,
    /// `iss` is not a trusted issuer.
    #[error("issuer `{0}` is not trusted by this registry")]
    Issuer(String),
    /// `aud` does not name this registry.
    #[error("the token's audience is not `{0}`")]
    Audience(String),
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Before `nbf` or `iat`.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// No trusted publisher matches.
    #[error("no namespace trusts this workflow: {0}")]
    NoTrustedPublisher(String),
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed(format!("{what} is not base64url")))
}

/// The issuer a JWT claims, read without verifying anything (to know whose
/// keys to fetch).
pub fn unverified_issuer(jwt: &str) -> Result<String, JwtError> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| JwtError::Malformed("expected header.payload.signature".into()))?;
    let claims: serde_json::Value = serde_json::from_slice(&b64(payload, "the payload")?)
        .map_err(|e| JwtError::Malformed(format!("payload: {e}")))?;
    claims["iss"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| JwtError::Malformed("no `iss` claim".into()))
}

fn verify_signature(alg: &str, key: &Jwk, message: &[u8], signature: &[u8]) -> bool {
    use ring::signature;
    let field = |v: &Option<String>| v.as_deref().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
    match (alg, key.kty.as_str()) {
        ("RS256", "RSA") => {
            let (Some(n), Some(e)) = (field(&key.n), field(&key.e)) else {
                return false;
            };
            signature::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok()
        }
        ("ES256", "EC") if key.crv.as_deref() == Some("P-256") => {
            let (Some(x), Some(y)) = (field(&key.x), field(&key.y)) else {
                return false;
            };
            if x.len() != 32 || y.len() != 32 {
                return false;
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok()
        }
        _ => false,
    }
}

/// Verifies `jwt` from `issuer` with its `keys` at `now` (Unix seconds);
/// returns its claims.
pub fn verify_jwt(
    jwt: &str,
    issuer: &OidcIssuer,
    keys: &JwkSet,
    now: i64,
) -> Result<serde_json::Map<String, serde_json::Value>, JwtError> {
    if jwt.len() > MAX_JWT_BYTES {
        return Err(JwtError::Malformed("too long".into()));
    }
    let mut parts = jwt.split('.');
    let (Some(header_part), Some(payload_part), Some(signature_part), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed(
            "expected header.payload.signature".into(),
        ));
    };
    let header: Header = serde_json::from_slice(&b64(header_part, "the header")?)
        .map_err(|e| JwtError::Malformed(format!("header: {e}")))?;
    if header.alg != "RS256" && header.alg != "ES256" {
        return Err(JwtError::Algorithm(header.alg));
    }
    let signature = b64(signature_part, "the signature")?;
    let message = format!("{header_part}.{payload_part}");
    let candidates: Vec<&Jwk> = keys
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.kid == header.kid)
        .collect();
    if candidates.is_empty() {
        return Err(JwtError::UnknownKey(header.kid.unwrap_or_default()));
    }
    if !candidates
        .iter()
        .any(|k| verify_signature(&header.alg, k, message.as_bytes(), &signature))
    {
        return Err(JwtError::Signature);
    }
    let claims: serde_json::Value = serde_json::from_slice(&b64(payload_part, "the payload")?)
        .map_err(|e| JwtError::Malformed(format!("payload: {e}")))?;
    let serde_json::Value::Object(claims) = claims else {
        return Err(JwtError::Malformed("the payload is not an object".into()));
    };
    if claims.get("iss").and_then(|v| v.as_str()) != Some(issuer.issuer.as_str()) {
        return Err(JwtError::Issuer(
            claims
                .get("iss")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    let audience_ok = match claims.get("aud") {
        Some(serde_json::Value::String(aud)) => *aud == issuer.audience,
        Some(serde_json::Value::Array(auds)) => {
            auds.iter().any(|a| a.as_str() == Some(&issuer.audience))
        }
        _ => false,
    };
    if !audience_ok {
        return Err(JwtError::Audience(issuer.audience.clone()));
    }
    let time = |name: &str| claims.get(name).and_then(serde_json::Value::as_i64);
    match time("exp") {
        Some(exp) if exp + LEEWAY_SECS > now => {}
        Some(_) => return Err(JwtError::Expired),
        None => return Err(JwtError::Malformed("no `exp` claim".into())),
    }
    for name in ["nbf", "iat"] {
        if time(name).is_some_and(|t| t - LEEWAY_SECS > now) {
            return Err(JwtError::NotYetValid);
        }
    }
    Ok(claims)
}

/// The claim as a string (numbers and booleans as their JSON text).
fn claim_text(claims: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether a trusted publisher's rules match the claims: each rule is an
/// exact value, or a prefix ending in `*`.
pub fn rules_match(
    publisher: &TrustedPublisher,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    publisher.claims.iter().all(|(name, rule)| {
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
        claims: &serde_json::Map<String, serde_json::Value>,
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
                return Err(ServiceError::unauthorized(
                    JwtError::NoTrustedPublisher(format!("sub `{subject}`")).to_string(),
                ));
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
        if registry.identity(&identity).is_none_or(|i| i.disabled) {
            return Err(ServiceError::unauthorized(format!(
                "trusted publisher identity `{identity}` is disabled"
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
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    fn issuer() -> OidcIssuer {
        OidcIssuer {
            issuer: "https://ci.example".into(),
            audience: "cairn".into(),
            jwks_url: None,
        }
    }

    fn es256(claims: serde_json::Value) -> (String, JwkSet) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k1"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let message = format!("{header}.{payload}");
        let signature = pair.sign(&rng, message.as_bytes()).unwrap();
        let jwt = format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        let keys = JwkSet {
            keys: vec![Jwk {
                kty: "EC".into(),
                kid: Some("k1".into()),
                n: None,
                e: None,
                crv: Some("P-256".into()),
                x: Some(URL_SAFE_NO_PAD.encode(&point[1..33])),
                y: Some(URL_SAFE_NO_PAD.encode(&point[33..65])),
            }],
        };
        (jwt, keys)
    }

    #[test]
    fn jwts_are_checked_completely() {
        let now = 1_000_000;
        let good = serde_json::json!({"iss": "https://ci.example", "aud": "cairn", "exp": now + 300, "iat": now, "sub": "repo:a/b"});
        let (jwt, keys) = es256(good.clone());
        let claims = verify_jwt(&jwt, &issuer(), &keys, now).unwrap();
        assert_eq!(claims["sub"], "repo:a/b");
        assert_eq!(unverified_issuer(&jwt).unwrap(), "https://ci.example");
        // Someone else's key.
        let (_, other_keys) = es256(good.clone());
        assert_eq!(
            verify_jwt(&jwt, &issuer(), &other_keys, now),
            Err(JwtError::Signature)
        );
        // A tampered payload.
        let mut parts: Vec<&str> = jwt.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(good.to_string().replace("a/b", "x/y"));
        parts[1] = &forged;
        assert_eq!(
            verify_jwt(&parts.join("."), &issuer(), &keys, now),
            Err(JwtError::Signature)
        );
        for (claims, error) in [
            (
                serde_json::json!({"iss": "https://ci.example", "aud": "other", "exp": now + 300}),
                JwtError::Audience("cairn".into()),
            ),
            (
                serde_json::json!({"iss": "https://ci.example", "aud": ["x", "cairn"], "exp": now - 61}),
                JwtError::Expired,
            ),
            (
                serde_json::json!({"iss": "https://ci.example", "aud": "cairn", "exp": now + 300, "nbf": now + 100}),
                JwtError::NotYetValid,
            ),
            (
                serde_json::json!({"iss": "https://evil.example", "aud": "cairn", "exp": now + 300}),
                JwtError::Issuer("https://evil.example".into()),
            ),
        ] {
            let (jwt, keys) = es256(claims);
            assert_eq!(verify_jwt(&jwt, &issuer(), &keys, now), Err(error));
        }
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(good.to_string())
        );
        assert_eq!(
            verify_jwt(&none, &issuer(), &keys, now),
            Err(JwtError::Algorithm("none".into()))
        );
    }

    #[test]
    fn claim_rules_are_exact_or_prefixes() {
        let publisher = TrustedPublisher {
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
    }
}
