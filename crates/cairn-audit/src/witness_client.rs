//! The log's side of `c2sp.org/tlog-witness` over HTTP.

use std::time::Duration;

use cairn_crypto::signer::BoxFuture;
use cairn_log::witness::{ADD_CHECKPOINT_PATH, SIZE_CONTENT_TYPE, parse_size_body};
use cairn_service::{WitnessAnswer, WitnessClient};

/// Largest witness answer read (the transparency-dev client allows 16 KiB).
const MAX_ANSWER: usize = 16 * 1024;

/// A witness reached at its submission prefix.
#[derive(Debug, Clone)]
pub struct HttpWitness {
    url: String,
    http: reqwest::Client,
}

impl HttpWitness {
    /// A client of the witness whose submission prefix is `prefix`.
    pub fn new(prefix: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            url: format!("{}/{ADD_CHECKPOINT_PATH}", prefix.trim_end_matches('/')),
            http,
        })
    }

    async fn post(&self, body: Vec<u8>) -> WitnessAnswer {
        let response = match self.http.post(&self.url).body(body).send().await {
            Ok(response) => response,
            Err(e) => return WitnessAnswer::Failed(format!("POST {}: {e}", self.url)),
        };
        let status = response.status();
        let size_body = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == SIZE_CONTENT_TYPE);
        let bytes = match response.bytes().await {
            Ok(bytes) if bytes.len() <= MAX_ANSWER => bytes,
            Ok(_) => return WitnessAnswer::Failed("the witness answer is too large".into()),
            Err(e) => return WitnessAnswer::Failed(format!("reading the answer: {e}")),
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match status.as_u16() {
            200 => WitnessAnswer::Cosigned(text),
            // SPEC: c2sp.org/tlog-witness — 409 with text/x.tlog.size and
            // the witness's size: resend from that size. A 409 without it
            // means the roots differ at equal sizes.
            409 if size_body => match parse_size_body(&text) {
                Some(size) => WitnessAnswer::Conflict(size),
                None => WitnessAnswer::Failed(format!("unreadable 409 answer: {text:?}")),
            },
            code => WitnessAnswer::Failed(format!(
                "HTTP {code}: {}",
                text.trim().chars().take(200).collect::<String>()
            )),
        }
    }
}

impl WitnessClient for HttpWitness {
    fn add_checkpoint(&self, body: Vec<u8>) -> BoxFuture<'_, WitnessAnswer> {
        Box::pin(self.post(body))
    }
}
