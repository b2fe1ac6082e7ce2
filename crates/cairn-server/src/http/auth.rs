//! Credentials on requests: `Authorization: Bearer <token>` (warg clients,
//! OCI clients after the token flow) or `Authorization: Basic` with the
//! token as the password (OCI clients given a username and password).
//! Tokens are never logged.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_service::identity::Caller;
use cairn_service::{Registry, ServiceError};

/// The token a request carries, if any. A malformed `Authorization`
/// header is an error (it is never silently ignored).
pub fn token(headers: &HeaderMap) -> Result<Option<String>, ServiceError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ServiceError::unauthorized("malformed Authorization header"))?;
    let (scheme, credentials) = value
        .split_once(' ')
        .ok_or_else(|| ServiceError::unauthorized("malformed Authorization header"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Ok(Some(credentials.trim().to_owned())),
        "basic" => {
            let decoded = STANDARD
                .decode(credentials.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| ServiceError::unauthorized("malformed Basic credentials"))?;
            let (_, password) = decoded
                .split_once(':')
                .ok_or_else(|| ServiceError::unauthorized("malformed Basic credentials"))?;
            Ok(Some(password.to_owned()))
        }
        _ => Err(ServiceError::unauthorized(
            "unsupported Authorization scheme: use Bearer or Basic",
        )),
    }
}

/// The authenticated caller of a request, if it carries a token.
pub async fn caller(
    registry: &Registry,
    headers: &HeaderMap,
) -> Result<Option<Caller>, ServiceError> {
    match token(headers)? {
        Some(token) => registry.authenticate(&token).await.map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn extracts_bearer_and_basic_passwords() {
        assert_eq!(token(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            token(&headers("Bearer abc")).unwrap().as_deref(),
            Some("abc")
        );
        let basic = format!("Basic {}", STANDARD.encode("user:cairn_x"));
        assert_eq!(token(&headers(&basic)).unwrap().as_deref(), Some("cairn_x"));
        for bad in [
            "Bearer",
            "Digest x",
            "Basic !!!",
            &format!("Basic {}", STANDARD.encode("nocolon")),
        ] {
            assert!(token(&headers(bad)).is_err(), "{bad}");
        }
    }
}
