//! Verifying the JSON Web Tokens a CI platform issues for OIDC trusted
//! publishing (RFC 7519), against its issuer's published keys (RFC 7517).
//!
//! The JOSE part — the header, base64url, the RS256/ES256 signature with
//! `ring` — is the `jsonwebtoken` crate (9.x, its `ring` backend). The claims
//! are checked here, not by the crate: its claim validation reads the system
//! clock (this crate takes `now` as an argument) and lets a token without
//! `iss` or `aud` through unless asked to require them. So this module:
//!
//! * refuses tokens over [`MAX_JWT_BYTES`] and anything that is not three
//!   dot-separated parts;
//! * pins the algorithm to RS256 or ES256 before anything else (`none`, HMAC
//!   and every other algorithm are refused by name);
//! * picks the issuer's key by `kid` (every key of the right type when the
//!   token names none) and verifies the signature;
//! * then checks `iss` (exactly the trusted issuer), `aud` (a string or an
//!   array naming the configured audience), `exp` (required, in the future),
//!   `nbf` and `iat` (not in the future), with [`LEEWAY_SECS`] of clock skew.
//!
//! This is not where keys are fetched (that is the server's job) nor where a
//! token's claims are matched to trusted publishers (`cairn-service`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: i64 = 60;
/// The largest JWT accepted.
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// A token's claims.
pub type Claims = serde_json::Map<String, serde_json::Value>;

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

/// A JSON Web Key (RFC 7517), the kinds cairn verifies with. Unknown
/// members (and keys of other types in a set) are ignored, not refused.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Jwk {
    /// `RSA` or `EC`.
    pub kty: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm the key is for, when the issuer says (`RS256`,
    /// `ES256`); a key for another algorithm is not used.
    #[serde(default)]
    pub alg: Option<String>,
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
    /// Not a JWT: too long, not three parts, bad base64url or JSON, or a
    /// required claim missing.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// An algorithm other than RS256 and ES256 (including `none`).
    #[error("unsupported algorithm `{0}`: RS256 and ES256 are accepted")]
    Algorithm(String),
    /// No key of the issuer has this id (or the type the algorithm needs).
    #[error("the issuer has no key `{0}`")]
    UnknownKey(String),
    /// The signature does not verify with any candidate key.
    #[error("the token's signature does not verify")]
    Signature,
    /// `iss` is not a trusted issuer.
    #[error("issuer `{0}` is not trusted by this registry")]
    Issuer(String),
    /// `aud` does not name this registry.
    #[error("the token's audience is not `{0}`")]
    Audience(String),
    /// Past `exp` (and the leeway).
    #[error("the token has expired")]
    Expired,
    /// Before `nbf` or `iat` (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(format!("{what} is not base64url")))
}

/// The three parts of a compact JWT, or why not.
fn split(jwt: &str) -> Result<(&str, &str, &str), JwtError> {
    if jwt.len() > MAX_JWT_BYTES {
        return Err(JwtError::Malformed(format!(
            "longer than {MAX_JWT_BYTES} bytes"
        )));
    }
    let mut parts = jwt.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => Ok((header, payload, signature)),
        _ => Err(JwtError::Malformed(
            "expected header.payload.signature".into(),
        )),
    }
}

/// The issuer a JWT claims, read without verifying anything (to know whose
/// keys to fetch).
pub fn unverified_issuer(jwt: &str) -> Result<String, JwtError> {
    let (_, payload, _) = split(jwt)?;
    let claims: serde_json::Value = serde_json::from_slice(&b64(payload, "the payload")?)
        .map_err(|e| JwtError::Malformed(format!("payload: {e}")))?;
    claims
        .get("iss")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| JwtError::Malformed("no `iss` claim".into()))
}

/// The `jsonwebtoken` key for `key` under `alg`, if the key is of the type
/// (and curve) the algorithm needs and is not meant for another algorithm.
fn decoding_key(
    alg: jsonwebtoken::Algorithm,
    name: &str,
    key: &Jwk,
) -> Option<jsonwebtoken::DecodingKey> {
    if key.alg.as_deref().is_some_and(|a| a != name) {
        return None;
    }
    match alg {
        jsonwebtoken::Algorithm::RS256 if key.kty == "RSA" => {
            jsonwebtoken::DecodingKey::from_rsa_components(key.n.as_deref()?, key.e.as_deref()?)
                .ok()
        }
        jsonwebtoken::Algorithm::ES256
            if key.kty == "EC" && key.crv.as_deref() == Some("P-256") =>
        {
            let (x, y) = (key.x.as_deref()?, key.y.as_deref()?);
            // `jsonwebtoken` concatenates whatever it decodes; a point is
            // exactly 32 + 32 bytes.
            let exact = |c: &str| URL_SAFE_NO_PAD.decode(c).is_ok_and(|b| b.len() == 32);
            if !exact(x) || !exact(y) {
                return None;
            }
            jsonwebtoken::DecodingKey::from_ec_components(x, y).ok()
        }
        _ => None,
    }
}

/// Maps a `jsonwebtoken` failure; `None` when it means "not this key".
fn library_error(error: &jsonwebtoken::errors::Error) -> Option<JwtError> {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Crypto(_) => None,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            Some(JwtError::Algorithm("mismatched".into()))
        }
        ErrorKind::Base64(_) => Some(JwtError::Malformed("not base64url".into())),
        ErrorKind::Json(e) => Some(JwtError::Malformed(format!("JSON: {e}"))),
        ErrorKind::Utf8(_) => Some(JwtError::Malformed("not UTF-8".into())),
        other => Some(JwtError::Malformed(format!("{other:?}"))),
    }
}

/// Verifies `jwt` from `issuer` with its `keys` at `now` (Unix seconds);
/// returns its claims.
pub fn verify_jwt(
    jwt: &str,
    issuer: &OidcIssuer,
    keys: &JwkSet,
    now: i64,
) -> Result<Claims, JwtError> {
    let (header_part, _, _) = split(jwt)?;
    // Pin the algorithm before the library sees the token.
    let header: Header = serde_json::from_slice(&b64(header_part, "the header")?)
        .map_err(|e| JwtError::Malformed(format!("header: {e}")))?;
    let alg = match header.alg.as_str() {
        "RS256" => jsonwebtoken::Algorithm::RS256,
        "ES256" => jsonwebtoken::Algorithm::ES256,
        _ => return Err(JwtError::Algorithm(header.alg)),
    };
    let candidates: Vec<jsonwebtoken::DecodingKey> = keys
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.kid == header.kid)
        .filter_map(|k| decoding_key(alg, &header.alg, k))
        .collect();
    if candidates.is_empty() {
        return Err(JwtError::UnknownKey(header.kid.unwrap_or_default()));
    }
    // The library checks the signature only; the claims are checked below.
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let mut verified = None;
    for key in &candidates {
        match jsonwebtoken::decode::<Claims>(jwt, key, &validation) {
            Ok(data) => {
                verified = Some(data.claims);
                break;
            }
            Err(error) => {
                if let Some(refused) = library_error(&error) {
                    return Err(refused);
                }
            }
        }
    }
    let claims = verified.ok_or(JwtError::Signature)?;
    check_claims(&claims, issuer, now)?;
    Ok(claims)
}

/// The claim checks, on a token whose signature verified.
fn check_claims(claims: &Claims, issuer: &OidcIssuer, now: i64) -> Result<(), JwtError> {
    let iss = claims.get("iss").and_then(serde_json::Value::as_str);
    if iss != Some(issuer.issuer.as_str()) {
        return Err(JwtError::Issuer(iss.unwrap_or_default().to_owned()));
    }
    let audience_ok = match claims.get("aud") {
        Some(serde_json::Value::String(aud)) => *aud == issuer.audience,
        Some(serde_json::Value::Array(auds)) => auds
            .iter()
            .any(|a| a.as_str() == Some(issuer.audience.as_str())),
        _ => false,
    };
    if !audience_ok {
        return Err(JwtError::Audience(issuer.audience.clone()));
    }
    let time = |name: &str| claims.get(name).and_then(serde_json::Value::as_i64);
    match time("exp") {
        Some(exp) if exp.saturating_add(LEEWAY_SECS) > now => {}
        Some(_) => return Err(JwtError::Expired),
        None => return Err(JwtError::Malformed("no `exp` claim".into())),
    }
    for name in ["nbf", "iat"] {
        if time(name).is_some_and(|t| t.saturating_sub(LEEWAY_SECS) > now) {
            return Err(JwtError::NotYetValid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    const NOW: i64 = 1_000_000;

    fn issuer() -> OidcIssuer {
        OidcIssuer {
            issuer: "https://ci.example".into(),
            audience: "cairn".into(),
            jwks_url: None,
        }
    }

    fn token(header: &str, claims: &serde_json::Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let header = URL_SAFE_NO_PAD.encode(header);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let message = format!("{header}.{payload}");
        let signature = sign(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    struct Es256 {
        pair: EcdsaKeyPair,
        keys: JwkSet,
    }

    impl Es256 {
        fn new() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            let point = pair.public_key().as_ref();
            let keys = JwkSet {
                keys: vec![Jwk {
                    kty: "EC".into(),
                    kid: Some("k1".into()),
                    crv: Some("P-256".into()),
                    x: Some(URL_SAFE_NO_PAD.encode(&point[1..33])),
                    y: Some(URL_SAFE_NO_PAD.encode(&point[33..65])),
                    ..Jwk::default()
                }],
            };
            Self { pair, keys }
        }

        fn sign_with(&self, header: &str, claims: &serde_json::Value) -> String {
            token(header, claims, |m| {
                self.pair
                    .sign(&SystemRandom::new(), m)
                    .unwrap()
                    .as_ref()
                    .to_vec()
            })
        }

        fn sign(&self, claims: &serde_json::Value) -> String {
            self.sign_with(r#"{"alg":"ES256","kid":"k1"}"#, claims)
        }
    }

    fn good() -> serde_json::Value {
        serde_json::json!({"iss": "https://ci.example", "aud": "cairn", "exp": NOW + 300, "iat": NOW, "sub": "repo:a/b"})
    }

    #[test]
    fn es256_tokens_are_checked_completely() {
        let es = Es256::new();
        let jwt = es.sign(&good());
        let claims = verify_jwt(&jwt, &issuer(), &es.keys, NOW).unwrap();
        assert_eq!(claims["sub"], "repo:a/b");
        assert_eq!(unverified_issuer(&jwt).unwrap(), "https://ci.example");
        // Someone else's key.
        let other = Es256::new();
        assert_eq!(
            verify_jwt(&jwt, &issuer(), &other.keys, NOW),
            Err(JwtError::Signature)
        );
        // A tampered payload.
        let mut parts: Vec<&str> = jwt.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(good().to_string().replace("a/b", "x/y"));
        parts[1] = &forged;
        assert_eq!(
            verify_jwt(&parts.join("."), &issuer(), &es.keys, NOW),
            Err(JwtError::Signature)
        );
        for (claims, error) in [
            (
                serde_json::json!({"iss": "https://ci.example", "aud": "other", "exp": NOW + 300}),
                JwtError::Audience("cairn".into()),
            ),
            (
                serde_json::json!({"iss": "https://ci.example", "exp": NOW + 300}),
                JwtError::Audience("cairn".into()),
            ),
            (
                serde_json::json!({"iss": "https://ci.example", "aud": ["x", "cairn"], "exp": NOW - 61}),
                JwtError::Expired,
            ),
            (
                serde_json::json!({"iss": "https://ci.example", "aud": "cairn", "exp": i64::MIN}),
                JwtError::Expired,
            ),
            (
                serde_json::json!({"iss": "https://ci.example", "aud": "cairn"}),
                JwtError::Malformed("no `exp` claim".into()),
            ),
            (
                serde_json::json!({"iss": "https://ci.example", "aud": "cairn", "exp": NOW + 300, "nbf": NOW + 100}),
                JwtError::NotYetValid,
            ),
            (
                serde_json::json!({"iss": "https://ci.example", "aud": "cairn", "exp": NOW + 300, "iat": NOW + 61}),
                JwtError::NotYetValid,
            ),
            (
                serde_json::json!({"iss": "https://evil.example", "aud": "cairn", "exp": NOW + 300}),
                JwtError::Issuer("https://evil.example".into()),
            ),
            (
                serde_json::json!({"iss": ["https://ci.example"], "aud": "cairn", "exp": NOW + 300}),
                JwtError::Issuer(String::new()),
            ),
            (
                serde_json::json!({"aud": "cairn", "exp": NOW + 300}),
                JwtError::Issuer(String::new()),
            ),
        ] {
            assert_eq!(
                verify_jwt(&es.sign(&claims), &issuer(), &es.keys, NOW),
                Err(error),
                "{claims}"
            );
        }
        // Within the leeway.
        let late = serde_json::json!({"iss": "https://ci.example", "aud": ["cairn"], "exp": NOW - 59, "nbf": NOW + 59, "iat": NOW + 59});
        assert!(verify_jwt(&es.sign(&late), &issuer(), &es.keys, NOW).is_ok());
    }

    #[test]
    fn algorithms_keys_and_shapes_are_pinned() {
        let es = Es256::new();
        let payload = URL_SAFE_NO_PAD.encode(good().to_string());
        for alg in ["none", "HS256", "RS512", "ES384", "PS256", "EdDSA"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#));
            assert_eq!(
                verify_jwt(&format!("{header}.{payload}."), &issuer(), &es.keys, NOW),
                Err(JwtError::Algorithm(alg.into()))
            );
        }
        // An ES256 token checked against an RSA key named like its key.
        let jwt = es.sign(&good());
        let rsa = JwkSet {
            keys: vec![Jwk {
                kty: "RSA".into(),
                kid: Some("k1".into()),
                n: Some("AQAB".into()),
                e: Some("AQAB".into()),
                ..Jwk::default()
            }],
        };
        assert_eq!(
            verify_jwt(&jwt, &issuer(), &rsa, NOW),
            Err(JwtError::UnknownKey("k1".into()))
        );
        // An unknown kid; a key meant for another algorithm.
        let other_kid = es.sign_with(r#"{"alg":"ES256","kid":"k9"}"#, &good());
        assert_eq!(
            verify_jwt(&other_kid, &issuer(), &es.keys, NOW),
            Err(JwtError::UnknownKey("k9".into()))
        );
        let mut wrong_use = es.keys.clone();
        wrong_use.keys[0].alg = Some("ES384".into());
        assert_eq!(
            verify_jwt(&jwt, &issuer(), &wrong_use, NOW),
            Err(JwtError::UnknownKey("k1".into()))
        );
        // No kid: every key of the right type is tried.
        let no_kid = es.sign_with(r#"{"alg":"ES256"}"#, &good());
        let mut two = Es256::new().keys;
        two.keys.extend(es.keys.keys.clone());
        assert!(verify_jwt(&no_kid, &issuer(), &two, NOW).is_ok());
        // Shapes.
        let long = format!("{jwt}{}", "A".repeat(MAX_JWT_BYTES));
        for bad in ["", "a.b", "a.b.c.d", &long, &format!("{jwt}.x")] {
            assert!(matches!(
                verify_jwt(bad, &issuer(), &es.keys, NOW),
                Err(JwtError::Malformed(_))
            ));
        }
        let array = es.sign(&serde_json::json!([1, 2]));
        assert!(matches!(
            verify_jwt(&array, &issuer(), &es.keys, NOW),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn rs256_tokens_verify_with_the_issuers_modulus() {
        // The fixed 2048-bit test key the end-to-end tests use.
        let pair = ring::signature::RsaKeyPair::from_der(include_bytes!(
            "../../../tests/fixtures/oidc-rsa.der"
        ))
        .unwrap();
        let keys = JwkSet {
            keys: vec![
                serde_json::from_str(include_str!("../../../tests/fixtures/oidc-rsa.jwk.json"))
                    .unwrap(),
            ],
        };
        let jwt = token(r#"{"alg":"RS256","kid":"rsa-1"}"#, &good(), |m| {
            let mut sig = vec![0; pair.public().modulus_len()];
            pair.sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                m,
                &mut sig,
            )
            .unwrap();
            sig
        });
        assert_eq!(
            verify_jwt(&jwt, &issuer(), &keys, NOW).unwrap()["sub"],
            "repo:a/b"
        );
        // The same signature presented as ES256 finds no EC key.
        let relabelled = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"rsa-1"}"#),
            jwt.split_once('.').unwrap().1
        );
        assert_eq!(
            verify_jwt(&relabelled, &issuer(), &keys, NOW),
            Err(JwtError::UnknownKey("rsa-1".into()))
        );
    }
}
