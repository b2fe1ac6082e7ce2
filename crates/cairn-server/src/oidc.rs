//! Fetching the keys of trusted OIDC issuers (JWKS), with a cache. The
//! verification itself is `cairn_service::oidc`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_service::oidc::{JwkSet, JwtError, OidcIssuer, unverified_issuer, verify_jwt};
use tokio::sync::Mutex;

/// How long fetched keys are used before fetching them again.
const KEYS_TTL: Duration = Duration::from_secs(600);
/// How soon keys may be fetched again when a token names an unknown key
/// (an issuer rotating its keys).
const REFETCH_AFTER: Duration = Duration::from_secs(30);
/// The largest JWKS or discovery document read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The trusted issuers and their keys.
#[derive(Debug)]
pub struct Verifier {
    issuers: Vec<OidcIssuer>,
    http: reqwest::Client,
    keys: Mutex<HashMap<String, (Instant, JwkSet)>>,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token is refused (401).
    #[error("{0}")]
    Token(#[from] JwtError),
    /// The issuer's keys could not be fetched (503).
    #[error("cannot fetch the keys of {issuer}: {reason}")]
    Keys {
        /// The issuer.
        issuer: String,
        /// Why.
        reason: String,
    },
}

impl Verifier {
    /// A verifier trusting `issuers`.
    pub fn new(issuers: Vec<OidcIssuer>) -> Self {
        Self {
            issuers,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::limited(3))
                .build()
                .unwrap_or_default(),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any issuer is trusted.
    pub fn enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: status {}", response.status()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("GET {url}: the document is too large"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("GET {url}: {e}"))
    }

    async fn fetch_keys(&self, issuer: &OidcIssuer) -> Result<JwkSet, String> {
        let url = match &issuer.jwks_url {
            Some(url) => url.clone(),
            None => {
                let discovery: serde_json::Value = self
                    .get_json(&format!(
                        "{}/.well-known/openid-configuration",
                        issuer.issuer.trim_end_matches('/')
                    ))
                    .await?;
                discovery["jwks_uri"]
                    .as_str()
                    .ok_or("the discovery document has no jwks_uri")?
                    .to_owned()
            }
        };
        self.get_json(&url).await
    }

    async fn keys(&self, issuer: &OidcIssuer, refresh: bool) -> Result<JwkSet, VerifyError> {
        let mut cache = self.keys.lock().await;
        if let Some((at, keys)) = cache.get(&issuer.issuer) {
            let age = at.elapsed();
            if age < KEYS_TTL && !(refresh && age > REFETCH_AFTER) {
                return Ok(keys.clone());
            }
        }
        let keys = self
            .fetch_keys(issuer)
            .await
            .map_err(|reason| VerifyError::Keys {
                issuer: issuer.issuer.clone(),
                reason,
            })?;
        cache.insert(issuer.issuer.clone(), (Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// Verifies `jwt` against its (trusted) issuer's keys; returns the
    /// issuer and the claims.
    pub async fn verify(
        &self,
        jwt: &str,
        now: i64,
    ) -> Result<(OidcIssuer, serde_json::Map<String, serde_json::Value>), VerifyError> {
        let claimed = unverified_issuer(jwt)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == claimed)
            .ok_or(JwtError::Issuer(claimed))?;
        let keys = self.keys(issuer, false).await?;
        match verify_jwt(jwt, issuer, &keys, now) {
            Err(JwtError::UnknownKey(_)) => {
                let keys = self.keys(issuer, true).await?;
                Ok((issuer.clone(), verify_jwt(jwt, issuer, &keys, now)?))
            }
            other => Ok((issuer.clone(), other?)),
        }
    }
}
