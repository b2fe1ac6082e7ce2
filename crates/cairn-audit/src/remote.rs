//! A reader of a cairn registry's public API: the C2SP checkpoint and
//! tiles, and the warg endpoints an auditor needs (checkpoint, logs, names,
//! map proofs).
//!
//! Nothing read here is trusted: every caller verifies what it gets against
//! a signed checkpoint.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use cairn_log::tiles::{self, Tile, TileKind};
use cairn_log::tree::{self, HashReader as _, NodeId};
use cairn_log::{Hash, tiles::TileHashReader};
use cairn_protocol::LogId;
use cairn_protocol::wire::{
    FetchLogsRequest, FetchLogsResponse, FetchNamesRequest, FetchNamesResponse, InclusionRequest,
    InclusionResponse, SignedCheckpoint,
};

use crate::AuditError;

/// Most bytes accepted for one response (a full entry bundle is at most
/// 256 × 64 KiB; cairn's entries are 150 bytes).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// A registry's public API.
#[derive(Debug)]
pub struct Remote {
    base: String,
    http: reqwest::Client,
    tiles: Mutex<HashMap<Tile, Vec<u8>>>,
}

impl Remote {
    /// A reader of the registry at `url` (`https://registry.example.com`).
    pub fn new(url: &str) -> Result<Self, AuditError> {
        Self::with_token(url, None)
    }

    /// A reader that sends `token` (`Authorization: Bearer`) with every
    /// request, for a registry that does not serve anonymous readers.
    pub fn with_token(url: &str, token: Option<&str>) -> Result<Self, AuditError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| AuditError::Local("the token is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("cairn-audit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AuditError::Network(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            http,
            tiles: Mutex::new(HashMap::new()),
        })
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn read(&self, response: reqwest::Response, what: &str) -> Result<Vec<u8>, AuditError> {
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| AuditError::Network(format!("{what}: {e}")))?;
        if bytes.len() > MAX_BODY {
            return Err(AuditError::Network(format!("{what}: response too large")));
        }
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(AuditError::Network(format!(
                "{what}: HTTP {status}: {}",
                text.trim()
            )));
        }
        Ok(bytes.to_vec())
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>, AuditError> {
        let url = format!("{}/{path}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| AuditError::Network(format!("GET {url}: {e}")))?;
        self.read(response, &format!("GET {url}")).await
    }

    async fn post<T: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<R, AuditError> {
        let url = format!("{}/{path}", self.base);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| AuditError::Network(format!("POST {url}: {e}")))?;
        let bytes = self.read(response, &format!("POST {url}")).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| AuditError::Network(format!("POST {url}: unreadable answer: {e}")))
    }

    /// `GET /checkpoint`: the signed C2SP checkpoint note.
    pub async fn checkpoint(&self) -> Result<Vec<u8>, AuditError> {
        self.get("checkpoint").await
    }

    /// `GET /tile/…`, cached for the life of this reader (tiles are
    /// immutable).
    pub async fn tile(&self, tile: Tile) -> Result<Vec<u8>, AuditError> {
        if let Some(data) = self.tiles.lock().ok().and_then(|t| t.get(&tile).cloned()) {
            return Ok(data);
        }
        let data = self.get(&tile.path()).await?;
        let expected = match tile.kind {
            TileKind::Hashes { .. } => Some(usize::from(tile.width) * 32),
            TileKind::Entries => None,
        };
        if expected.is_some_and(|len| len != data.len()) {
            return Err(AuditError::Inconsistent(format!(
                "{} has {} bytes, a tile of width {} has {}",
                tile.path(),
                data.len(),
                tile.width,
                usize::from(tile.width) * 32
            )));
        }
        if let Ok(mut cache) = self.tiles.lock() {
            cache.insert(tile, data.clone());
        }
        Ok(data)
    }

    /// The hashes of `nodes` in the tree of `size` leaves, computed from the
    /// hash tiles (fetched concurrently, at most 8 at a time).
    pub async fn hashes(
        &self,
        size: u64,
        nodes: &[NodeId],
    ) -> Result<HashMap<NodeId, Hash>, AuditError> {
        use futures_util::StreamExt as _;
        let needed = tiles::tiles_for_nodes(size, nodes)
            .map_err(|e| AuditError::Inconsistent(e.to_string()))?;
        let fetched: Vec<Result<(Tile, Vec<u8>), AuditError>> = futures_util::stream::iter(needed)
            .map(|tile| async move { self.tile(tile).await.map(|data| (tile, data)) })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut local = HashMap::new();
        for item in fetched {
            let (tile, data) = item?;
            local.insert(tile, data);
        }
        let reader = Fetched(local);
        let hashes = TileHashReader::new(size, &reader)
            .read_hashes(nodes)
            .map_err(|e| AuditError::Inconsistent(e.to_string()))?;
        Ok(nodes.iter().copied().zip(hashes).collect())
    }

    /// The root of the tree of `size` leaves, from tiles.
    pub async fn root(&self, size: u64) -> Result<Hash, AuditError> {
        let plan = tree::root_nodes(size);
        let hashes = self.hashes(size, &plan).await?;
        tree::root(&hashes, size).map_err(|e| AuditError::Inconsistent(e.to_string()))
    }

    /// `GET v1/fetch/checkpoint`: the signed warg checkpoint.
    pub async fn warg_checkpoint(&self) -> Result<SignedCheckpoint, AuditError> {
        let bytes = self.get("v1/fetch/checkpoint").await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| AuditError::Network(format!("unreadable warg checkpoint: {e}")))
    }

    /// `POST v1/fetch/logs`.
    pub async fn fetch_logs(
        &self,
        request: &FetchLogsRequest,
    ) -> Result<FetchLogsResponse, AuditError> {
        self.post("v1/fetch/logs", request).await
    }

    /// `POST v1/fetch/logs` for logs that may not exist: `None` when the
    /// registry answers that one does not (warg's 404 of type `log`).
    pub async fn fetch_logs_if_known(
        &self,
        request: &FetchLogsRequest,
    ) -> Result<Option<FetchLogsResponse>, AuditError> {
        let url = format!("{}/v1/fetch/logs", self.base);
        let response = self
            .http
            .post(&url)
            .json(request)
            .send()
            .await
            .map_err(|e| AuditError::Network(format!("POST {url}: {e}")))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            let bytes = response.bytes().await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if body["type"] == "log" {
                return Ok(None);
            }
            let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(AuditError::Network(format!(
                "POST {url}: HTTP 404: {}",
                text.trim()
            )));
        }
        let bytes = self.read(response, &format!("POST {url}")).await?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AuditError::Network(format!("POST {url}: unreadable answer: {e}")))
    }

    /// `POST v1/fetch/names`.
    pub async fn fetch_names(&self, logs: Vec<LogId>) -> Result<FetchNamesResponse, AuditError> {
        self.post("v1/fetch/names", &FetchNamesRequest { packages: logs })
            .await
    }

    /// `POST v1/proof/inclusion`.
    pub async fn prove_inclusion(
        &self,
        log_length: u64,
        leafs: Vec<u64>,
    ) -> Result<InclusionResponse, AuditError> {
        self.post(
            "v1/proof/inclusion",
            &InclusionRequest { log_length, leafs },
        )
        .await
    }
}

/// Tiles already fetched, for the synchronous tile hash reader.
struct Fetched(HashMap<Tile, Vec<u8>>);

impl cairn_log::tiles::TileReader for Fetched {
    type Error = cairn_log::Error;

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, cairn_log::Error> {
        tiles
            .iter()
            .map(|tile| {
                self.0
                    .get(tile)
                    .cloned()
                    .ok_or_else(|| cairn_log::Error::MissingHash(tile.path()))
            })
            .collect()
    }
}
