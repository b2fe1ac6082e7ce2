//! A tlog-witness (`c2sp.org/tlog-witness`): `POST /add-checkpoint`.
//!
//! For each log it knows (by origin and note verifier key) the witness keeps
//! the latest checkpoint it cosigned, one file per origin in its state
//! directory. A submission is checked (known origin, valid log signature,
//! `old` equal to the stored size, a consistency proof to the new size), the
//! new checkpoint is persisted — atomically with the comparison, under one
//! lock, with fsync and rename — and only then cosigned.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_crypto::note::VerifierKey;
use cairn_crypto::{PublicKey, Signer, cosign_note};
use cairn_log::Hash;
use cairn_log::checkpoint::C2spCheckpoint;
use cairn_log::proof::verify_consistency;
use cairn_log::witness::{AddCheckpoint, SIZE_CONTENT_TYPE};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};

use crate::state::write_atomic;

/// Largest request accepted: 63 proof lines and a checkpoint with many
/// signatures fit easily.
const MAX_REQUEST: usize = 64 * 1024;

/// A witness's configuration.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// The witness's key name (a schema-less URL identifying it).
    pub name: String,
    /// The logs it witnesses, by their note verifier keys (names = origins).
    pub logs: Vec<VerifierKey>,
    /// Where it keeps the latest cosigned checkpoint of each log.
    pub state_dir: PathBuf,
}

/// What the witness knows about one log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LogState {
    origin: String,
    size: u64,
    /// Base64 root hash.
    root: String,
}

/// The witness.
#[derive(Debug)]
pub struct Witness {
    config: WitnessConfig,
    signer: Arc<dyn Signer>,
    vkey: VerifierKey,
    /// Held from reading a log's state until the new one is persisted.
    lock: Mutex<()>,
}

/// Why a submission was refused, with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: malformed, or old size above the checkpoint's.
    BadRequest(String),
    /// 403: no valid signature by the log's key.
    Forbidden(String),
    /// 404: unknown origin.
    UnknownLog(String),
    /// 409 with `text/x.tlog.size`: `old` is not the witness's size.
    Stale(u64),
    /// 409: same size, different root.
    RootMismatch,
    /// 422: the consistency proof does not verify.
    BadProof(String),
    /// 500: the witness could not persist or sign.
    Internal(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let text = |status: StatusCode, message: String| {
            (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )],
                format!("{message}\n"),
            )
                .into_response()
        };
        match self {
            Self::BadRequest(m) => text(StatusCode::BAD_REQUEST, m),
            Self::Forbidden(m) => text(StatusCode::FORBIDDEN, m),
            Self::UnknownLog(m) => text(StatusCode::NOT_FOUND, m),
            Self::Stale(size) => (
                StatusCode::CONFLICT,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(SIZE_CONTENT_TYPE),
                )],
                format!("{size}\n"),
            )
                .into_response(),
            Self::RootMismatch => text(
                StatusCode::CONFLICT,
                "a checkpoint of this size with another root was cosigned".into(),
            ),
            Self::BadProof(m) => text(StatusCode::UNPROCESSABLE_ENTITY, m),
            Self::Internal(m) => {
                tracing::error!(%m, "witness failure");
                text(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
        }
    }
}

fn state_path(dir: &Path, origin: &str) -> PathBuf {
    dir.join(format!(
        "{}.json",
        hex::encode(Sha256::digest(origin.as_bytes()))
    ))
}

impl Witness {
    /// A witness signing with `signer` (Ed25519).
    pub fn new(config: WitnessConfig, signer: Arc<dyn Signer>) -> Result<Self, String> {
        let PublicKey::Ed25519(key) = signer.public_key() else {
            return Err("a witness key must be Ed25519".into());
        };
        let vkey = VerifierKey::cosignature(&config.name, *key)
            .map_err(|e| format!("invalid witness name `{}`: {e}", config.name))?;
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| format!("cannot create {}: {e}", config.state_dir.display()))?;
        Ok(Self {
            config,
            signer,
            vkey,
            lock: Mutex::new(()),
        })
    }

    /// The witness's cosignature verifier key (for log operators' policies).
    pub fn vkey(&self) -> &VerifierKey {
        &self.vkey
    }

    fn load(&self, origin: &str) -> Result<Option<LogState>, Refusal> {
        let path = state_path(&self.config.state_dir, origin);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Refusal::Internal(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Refusal::Internal(format!("{}: {e}", path.display()))),
        }
    }

    /// Handles one `add-checkpoint` body; returns the cosignature lines.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Result<String, Refusal> {
        let request = AddCheckpoint::parse(body).map_err(|e| Refusal::BadRequest(e.to_string()))?;
        let checkpoint = C2spCheckpoint::parse(request.checkpoint.text())
            .map_err(|e| Refusal::BadRequest(e.to_string()))?;
        let keys: Vec<VerifierKey> = self
            .config
            .logs
            .iter()
            .filter(|k| k.name() == checkpoint.origin)
            .cloned()
            .collect();
        if keys.is_empty() {
            return Err(Refusal::UnknownLog(format!(
                "unknown log `{}`",
                checkpoint.origin.chars().take(100).collect::<String>()
            )));
        }
        // SPEC: c2sp.org/tlog-witness — verify against the log's keys,
        // ignoring unknown ones; a known key whose signature fails
        // verification makes the note invalid.
        request
            .checkpoint
            .verify(&keys)
            .map_err(|e| Refusal::Forbidden(format!("checkpoint signature: {e}")))?;
        if request.old_size > checkpoint.size {
            return Err(Refusal::BadRequest(format!(
                "old size {} is above the checkpoint size {}",
                request.old_size, checkpoint.size
            )));
        }

        let _guard = self.lock.lock().await;
        let current = self.load(&checkpoint.origin)?;
        let (size, root) = match &current {
            Some(state) => (
                state.size,
                STANDARD
                    .decode(&state.root)
                    .ok()
                    .and_then(|r| Hash::from_slice(&r).ok())
                    .ok_or_else(|| Refusal::Internal("stored root unreadable".into()))?,
            ),
            None => (0, cairn_log::hash::empty_root()),
        };
        if request.old_size != size {
            return Err(Refusal::Stale(size));
        }
        if request.old_size == checkpoint.size {
            if !request.proof.is_empty() {
                return Err(Refusal::BadProof(
                    "a proof between equal sizes must be empty".into(),
                ));
            }
            if current.is_some() && root != checkpoint.root {
                return Err(Refusal::RootMismatch);
            }
        } else if request.old_size == 0 {
            // SPEC: c2sp.org/tlog-witness — "The proof MUST be empty if the
            // old size is zero."
            if !request.proof.is_empty() {
                return Err(Refusal::BadProof(
                    "the proof must be empty from size 0".into(),
                ));
            }
        } else {
            verify_consistency(
                request.old_size,
                checkpoint.size,
                &root,
                &checkpoint.root,
                &request.proof,
            )
            .map_err(|e| Refusal::BadProof(e.to_string()))?;
        }
        // SPEC: c2sp.org/tlog-witness — persist before responding,
        // atomically with the comparison (the lock is still held).
        let next = LogState {
            origin: checkpoint.origin.clone(),
            size: checkpoint.size,
            root: STANDARD.encode(checkpoint.root.0),
        };
        let bytes = serde_json::to_vec(&next).map_err(|e| Refusal::Internal(e.to_string()))?;
        write_atomic(
            &state_path(&self.config.state_dir, &checkpoint.origin),
            &bytes,
        )
        .map_err(|e| Refusal::Internal(e.to_string()))?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let cosignature = cosign_note(
            self.signer.as_ref(),
            &self.config.name,
            request.checkpoint.text(),
            timestamp,
        )
        .await
        .map_err(|e| Refusal::Internal(format!("cannot cosign: {e}")))?;
        tracing::info!(origin = %checkpoint.origin, size = checkpoint.size, "cosigned");
        Ok(cosignature.to_line())
    }
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    match witness.add_checkpoint(&body).await {
        Ok(lines) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            lines,
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// The witness's HTTP routes.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(witness)
}

/// Serves `witness` on `addr` until `shutdown` turns true; returns the bound
/// address.
pub async fn serve(
    witness: Arc<Witness>,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let app = router(witness);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok((bound, task))
}

/// The states of all logs (for status output).
pub fn known_logs(dir: &Path) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path())
                && let Ok(state) = serde_json::from_slice::<LogState>(&bytes)
            {
                out.insert(state.origin, state.size);
            }
        }
    }
    out
}
