//! Feeds arbitrary bytes to the OIDC JWT verifier (`cairn_crypto::jwt`):
//! as a whole token, and as the header and payload of a token signed with
//! the trusted key, so the claim checks see arbitrary JSON past the
//! signature. Nothing may panic, and a token the verifier accepts must
//! satisfy every claim rule at the `now` it was checked at.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cairn_crypto::jwt::{Jwk, JwkSet, LEEWAY_SECS, OidcIssuer, unverified_issuer, verify_jwt};
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};

const ISSUER: &str = "https://ci.example";
const AUDIENCE: &str = "cairn";

struct Fixture {
    key: SigningKey,
    issuer: OidcIssuer,
    keys: JwkSet,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = SigningKey::from_slice(&[7; 32]).unwrap_or_else(|_| unreachable!());
        let point = key.verifying_key().to_encoded_point(false);
        let (x, y) = (point.x().map(|x| x.to_vec()), point.y().map(|y| y.to_vec()));
        let ec = Jwk {
            kty: "EC".into(),
            kid: Some("k1".into()),
            crv: Some("P-256".into()),
            x: x.map(|x| URL_SAFE_NO_PAD.encode(x)),
            y: y.map(|y| URL_SAFE_NO_PAD.encode(y)),
            ..Jwk::default()
        };
        // A malformed RSA key beside it: RS256 tokens reach the library's
        // key parsing.
        let rsa = Jwk {
            kty: "RSA".into(),
            kid: Some("r1".into()),
            n: Some("AQAB".into()),
            e: Some("AQAB".into()),
            ..Jwk::default()
        };
        Fixture {
            key,
            issuer: OidcIssuer {
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                jwks_url: None,
            },
            keys: JwkSet {
                keys: vec![ec, rsa],
            },
        }
    })
}

const HEADERS: &[&str] = &[
    r#"{"alg":"ES256","kid":"k1"}"#,
    r#"{"alg":"ES256"}"#,
    r#"{"alg":"RS256","kid":"r1"}"#,
    r#"{"alg":"none"}"#,
    r#"{"alg":"HS256","kid":"k1"}"#,
];

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let now = data
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(1_000_000, i64::from_le_bytes);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = unverified_issuer(text);
        let _ = verify_jwt(text, &fixture.issuer, &fixture.keys, now);
    }
    // A token signed with the trusted key around arbitrary bytes.
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let header = match HEADERS.get(usize::from(selector) % (HEADERS.len() + 1)) {
        Some(header) => URL_SAFE_NO_PAD.encode(header),
        // The header from the input too, up to the first NUL.
        None => {
            let (header, _) = rest.split_at(rest.iter().position(|b| *b == 0).unwrap_or(0));
            URL_SAFE_NO_PAD.encode(header)
        }
    };
    let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(rest));
    let signature: Signature = fixture.key.sign(message.as_bytes());
    let jwt = format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
    if let Ok(claims) = verify_jwt(&jwt, &fixture.issuer, &fixture.keys, now) {
        assert_eq!(claims.get("iss").and_then(|v| v.as_str()), Some(ISSUER));
        let aud = claims.get("aud");
        assert!(
            aud.and_then(|a| a.as_str()) == Some(AUDIENCE)
                || aud
                    .and_then(|a| a.as_array())
                    .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(AUDIENCE)))
        );
        let time = |name: &str| claims.get(name).and_then(|v| v.as_i64());
        let exp = time("exp").unwrap_or_else(|| unreachable!("accepted without exp"));
        assert!(exp.saturating_add(LEEWAY_SECS) > now);
        for name in ["nbf", "iat"] {
            assert!(time(name).is_none_or(|t| t.saturating_sub(LEEWAY_SECS) <= now));
        }
        assert!(jwt.len() <= cairn_crypto::jwt::MAX_JWT_BYTES);
    }
});
