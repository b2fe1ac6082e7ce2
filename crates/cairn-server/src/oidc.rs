//! Fetching the keys of trusted OIDC issuers (JWKS), with a cache. The
//! verification itself is `cairn_crypto::jwt` (through `cairn_service::oidc`).
//!
//! Anyone can send a token naming a trusted issuer, so fetching is bounded
//! and never lets one issuer hold up another:
//!
//! * each issuer has its own cache slot (built once: the issuers are
//!   configuration). Reading cached keys takes a short synchronous lock
//!   that is never held across an `await`;
//! * fetches are single-flight per issuer (an async lock taken only by
//!   callers that must fetch), so a slow issuer delays only tokens of that
//!   issuer whose keys are not cached;
//! * the discovery document and the JWKS are streamed with a running size
//!   limit ([`MAX_DOCUMENT_BYTES`]): the fetch is abandoned as soon as the
//!   body grows past it, and the whole fetch has a deadline;
//! * a failed fetch is remembered for [`FAILURE_TTL`]: tokens of that issuer
//!   are answered 503 with `Retry-After` from the cache instead of hammering
//!   the issuer (or letting anyone make the registry do so).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cairn_service::oidc::{Claims, JwkSet, JwtError, OidcIssuer, unverified_issuer, verify_jwt};

/// How long fetched keys are used before fetching them again.
const KEYS_TTL: Duration = Duration::from_secs(600);
/// How soon keys may be fetched again when a token names an unknown key
/// (an issuer rotating its keys).
const REFETCH_AFTER: Duration = Duration::from_secs(30);
/// How long a failed fetch is answered from the cache.
pub const FAILURE_TTL: Duration = Duration::from_secs(10);
/// The largest JWKS or discovery document read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// The deadline of one HTTP request to an issuer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What is known about one issuer's keys.
#[derive(Debug, Default)]
struct Cached {
    /// The last keys fetched, and when.
    keys: Option<(Instant, Arc<JwkSet>)>,
    /// The last fetch failure, when, and why (cleared by a success).
    failure: Option<(Instant, String)>,
}

/// One trusted issuer: its configuration and its cache.
#[derive(Debug)]
struct Slot {
    issuer: OidcIssuer,
    /// Never held across an `await`.
    cached: Mutex<Cached>,
    /// Held while fetching: one fetch per issuer at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// What the cache says without fetching.
enum Lookup {
    Keys(Arc<JwkSet>),
    Failed { retry_after: u32, reason: String },
    Fetch,
}

impl Slot {
    fn lookup(&self, refresh: bool) -> Lookup {
        let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, keys)) = &cached.keys {
            let age = at.elapsed();
            if age < KEYS_TTL && !(refresh && age > REFETCH_AFTER) {
                return Lookup::Keys(keys.clone());
            }
        }
        if let Some((at, reason)) = &cached.failure {
            let age = at.elapsed();
            if age < FAILURE_TTL {
                let left = FAILURE_TTL.saturating_sub(age).as_secs().saturating_add(1);
                return Lookup::Failed {
                    retry_after: u32::try_from(left).unwrap_or(u32::MAX),
                    reason: reason.clone(),
                };
            }
        }
        Lookup::Fetch
    }

    fn store(&self, fetched: &Result<JwkSet, String>) -> Result<Arc<JwkSet>, String> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        match fetched {
            Ok(keys) => {
                let keys = Arc::new(keys.clone());
                cached.keys = Some((Instant::now(), keys.clone()));
                cached.failure = None;
                Ok(keys)
            }
            Err(reason) => {
                cached.failure = Some((Instant::now(), reason.clone()));
                Err(reason.clone())
            }
        }
    }
}

/// The trusted issuers and their keys.
#[derive(Debug)]
pub struct Verifier {
    slots: HashMap<String, Slot>,
    http: reqwest::Client,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token is refused (401).
    #[error("{0}")]
    Token(#[from] JwtError),
    /// The issuer's keys could not be fetched (503 with `Retry-After`).
    #[error("cannot fetch the keys of {issuer}: {reason}")]
    Keys {
        /// The issuer.
        issuer: String,
        /// Why.
        reason: String,
        /// Seconds until the keys are fetched again.
        retry_after: u32,
    },
}

impl Verifier {
    /// A verifier trusting `issuers`.
    pub fn new(issuers: Vec<OidcIssuer>) -> Self {
        Self {
            slots: issuers
                .into_iter()
                .map(|issuer| {
                    (
                        issuer.issuer.clone(),
                        Slot {
                            issuer,
                            cached: Mutex::new(Cached::default()),
                            fetching: tokio::sync::Mutex::new(()),
                        },
                    )
                })
                .collect(),
            http: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .connect_timeout(FETCH_TIMEOUT)
                .redirect(reqwest::redirect::Policy::limited(3))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Whether any issuer is trusted.
    pub fn enabled(&self) -> bool {
        !self.slots.is_empty()
    }

    /// GETs `url` and parses its JSON body, reading at most
    /// [`MAX_DOCUMENT_BYTES`] of it.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: status {}", response.status()));
        }
        let too_large =
            || format!("GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                // Dropping the response closes the connection.
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))
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

    /// The issuer's keys: cached, or fetched by one caller at a time;
    /// `refresh` asks for keys fetched in the last [`REFETCH_AFTER`].
    async fn keys(&self, slot: &Slot, refresh: bool) -> Result<Arc<JwkSet>, VerifyError> {
        let failed = |retry_after, reason| VerifyError::Keys {
            issuer: slot.issuer.issuer.clone(),
            reason,
            retry_after,
        };
        // The cache's answer, if it has one (keys, or a recent failure).
        let cached = || match slot.lookup(refresh) {
            Lookup::Keys(keys) => Some(Ok(keys)),
            Lookup::Failed {
                retry_after,
                reason,
            } => Some(Err(failed(retry_after, reason))),
            Lookup::Fetch => None,
        };
        if let Some(answer) = cached() {
            return answer;
        }
        let _fetching = slot.fetching.lock().await;
        // Whoever held the lock before may have just fetched (or failed).
        if let Some(answer) = cached() {
            return answer;
        }
        let fetched = self.fetch_keys(&slot.issuer).await;
        slot.store(&fetched).map_err(|reason| {
            failed(
                u32::try_from(FAILURE_TTL.as_secs()).unwrap_or(u32::MAX),
                reason,
            )
        })
    }

    /// Verifies `jwt` against its (trusted) issuer's keys; returns the
    /// issuer and the claims.
    pub async fn verify(&self, jwt: &str, now: i64) -> Result<(OidcIssuer, Claims), VerifyError> {
        let claimed = unverified_issuer(jwt)?;
        let slot = self.slots.get(&claimed).ok_or(JwtError::Issuer(claimed))?;
        let keys = self.keys(slot, false).await?;
        let issuer = &slot.issuer;
        match verify_jwt(jwt, issuer, &keys, now) {
            Err(JwtError::UnknownKey(_)) => {
                let keys = self.keys(slot, true).await?;
                Ok((issuer.clone(), verify_jwt(jwt, issuer, &keys, now)?))
            }
            other => Ok((issuer.clone(), other?)),
        }
    }
}
