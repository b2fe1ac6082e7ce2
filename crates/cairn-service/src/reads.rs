//! Read-only use cases: checkpoint, logs, names, content, ledger, monitor.

use std::collections::BTreeMap;

use cairn_blob::ByteStream;
use cairn_crypto::Sha256Digest;
use cairn_protocol::record::OperatorPermission;
use cairn_protocol::wire::{
    CheckpointVerificationResponse, ContentSource, ContentSourcesResponse, FetchLogsRequest,
    FetchLogsResponse, FetchNamesRequest, FetchNamesResponse, LEDGER_CONTENT_TYPE, LedgerSource,
    LedgerSourcesResponse, PublishedRecord, SignedCheckpoint, VerificationState, WargError,
};
use cairn_protocol::{LogId, PackageName};
use cairn_store::StoredRecord;

use crate::publish::parse_digest;
use crate::{Registry, ServiceError};

/// Records per log per page when the client does not say.
pub const DEFAULT_FETCH_LIMIT: u16 = 100;
/// Most records per log per page.
pub const MAX_FETCH_LIMIT: u16 = 1000;
/// Most package logs in one fetch or names request.
pub const MAX_LOGS_PER_REQUEST: usize = 1000;
/// Entries per ledger page.
pub const LEDGER_PAGE: u64 = 1000;
/// Most records in one `fetch/logs` answer (beyond one per new log).
pub const FETCH_RECORD_BUDGET: u32 = 10_000;
/// About the most bytes of record content in one `fetch/logs` answer
/// (beyond one record per new log).
pub const FETCH_BYTE_BUDGET: usize = 8 * 1024 * 1024;
/// Most sources in one ledger answer (each covers [`LEDGER_PAGE`] entries).
pub const MAX_LEDGER_SOURCES: u64 = 1000;

/// What is left of one `fetch/logs` answer's budget.
struct FetchBudget {
    records: u32,
    bytes: usize,
    /// Whether anything was cut (or a log may have more).
    more: bool,
}

impl FetchBudget {
    /// How many records to ask the store for: the per-log limit within the
    /// budget, at least one for a log the client does not know yet.
    fn want(&mut self, limit: u16, new_log: bool) -> u32 {
        let want = match self.bytes {
            0 => 0,
            _ => u32::from(limit).min(self.records),
        };
        let want = if new_log { want.max(1) } else { want };
        if want < u32::from(limit) {
            // The budget cut this log short (or skipped it).
            self.more = true;
        }
        want
    }

    /// Keeps the records that fit in the byte budget (at least one of a
    /// new log) and charges them.
    fn take(
        &mut self,
        mut records: Vec<StoredRecord>,
        want: u32,
        new_log: bool,
    ) -> Vec<StoredRecord> {
        if records.len() as u64 >= u64::from(want) && want > 0 {
            self.more = true;
        }
        let mut keep = 0;
        for record in &records {
            let size = record.content_bytes.len();
            if size > self.bytes && !(new_log && keep == 0) {
                self.more = true;
                self.bytes = 0;
                break;
            }
            self.bytes = self.bytes.saturating_sub(size);
            keep += 1;
        }
        records.truncate(keep);
        self.records = self
            .records
            .saturating_sub(u32::try_from(keep).unwrap_or(u32::MAX));
        records
    }
}

/// A blob to send: its size and a stream of the requested range.
pub struct ContentDownload {
    /// Total size of the blob.
    pub size: u64,
    /// The bytes of the requested range.
    pub body: ByteStream,
}

impl std::fmt::Debug for ContentDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentDownload")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

fn published(record: &StoredRecord) -> PublishedRecord {
    use base64::Engine as _;
    PublishedRecord {
        envelope: cairn_protocol::wire::EnvelopeBody {
            content_bytes: base64::engine::general_purpose::STANDARD.encode(&record.content_bytes),
            key_id: record.key_id.clone(),
            signature: record.signature.clone(),
        },
        registry_index: record.registry_index,
        // Fetch tokens are registry indices: opaque to clients, stable
        // across restarts, and a direct index lookup for the store.
        fetch_token: record.registry_index.to_string(),
    }
}

impl Registry {
    /// `GET v1/fetch/checkpoint`.
    pub fn fetch_checkpoint(&self) -> Result<SignedCheckpoint, ServiceError> {
        let latest = self
            .latest_checkpoint()
            .ok_or_else(|| ServiceError::unavailable("the registry has no checkpoint yet"))?;
        Ok(SignedCheckpoint {
            contents: latest.checkpoint,
            key_id: latest.key_id.clone(),
            signature: latest.signature.clone(),
        })
    }

    /// 404 `logLength` unless `length` is a checkpoint length.
    pub(crate) async fn require_checkpoint(
        &self,
        length: u64,
    ) -> Result<cairn_store::StoredCheckpoint, ServiceError> {
        if let Some(latest) = self.latest_checkpoint()
            && latest.checkpoint.checkpoint.log_length == length
        {
            return Ok((*latest).clone());
        }
        self.inner
            .store
            .checkpoint(length)
            .await?
            .ok_or_else(|| WargError::CheckpointNotFound(length).into())
    }

    async fn fetch_token(
        &self,
        log_id: &LogId,
        token: &str,
        below: u64,
    ) -> Result<u64, ServiceError> {
        let not_found = || {
            ServiceError::Warg(WargError::FetchTokenNotFound(
                token.chars().take(100).collect(),
            ))
        };
        let index: u64 = token.parse().map_err(|_| not_found())?;
        if index >= below {
            return Err(not_found());
        }
        let record = self.inner.store.records_at(&[index]).await?;
        match record.first() {
            Some(record) if record.log_id == *log_id => Ok(index),
            _ => Err(not_found()),
        }
    }

    /// `POST v1/fetch/logs`.
    ///
    /// One answer is bounded: at most [`FETCH_RECORD_BUDGET`] records and
    /// about [`FETCH_BYTE_BUDGET`] bytes of record content over all logs
    /// (the operator log first, then package logs in request order), except
    /// that a log asked for without a fetch token always gets its first
    /// record (warg clients refuse an empty list for a log they do not know
    /// yet). Whatever is cut sets `more`: the client asks again from the
    /// fetch tokens it got, so it still fetches everything.
    pub async fn fetch_logs(
        &self,
        request: FetchLogsRequest,
    ) -> Result<FetchLogsResponse, ServiceError> {
        let limit = request.limit.unwrap_or(DEFAULT_FETCH_LIMIT);
        if limit == 0 || limit > MAX_FETCH_LIMIT {
            return Err(ServiceError::bad_request(format!(
                "limit must be between 1 and {MAX_FETCH_LIMIT}"
            )));
        }
        if request.packages.len() > MAX_LOGS_PER_REQUEST {
            return Err(ServiceError::bad_request(format!(
                "at most {MAX_LOGS_PER_REQUEST} package logs per request"
            )));
        }
        let length = request.log_length;
        self.require_checkpoint(length).await?;
        let store = &self.inner.store;
        let mut budget = FetchBudget {
            records: FETCH_RECORD_BUDGET,
            bytes: FETCH_BYTE_BUDGET,
            more: false,
        };

        let operator_log = LogId::operator();
        let after = match &request.operator {
            Some(token) => Some(self.fetch_token(&operator_log, token, length).await?),
            None => None,
        };
        let want = budget.want(limit, after.is_none());
        let operator = match want {
            0 => Vec::new(),
            want => {
                store
                    .log_records(&operator_log, after, length, want)
                    .await?
            }
        };
        let operator = budget.take(operator, want, after.is_none());

        let mut packages = BTreeMap::new();
        for (log_id, token) in &request.packages {
            let after = match token {
                Some(token) => Some(self.fetch_token(log_id, token, length).await?),
                None => None,
            };
            let want = budget.want(limit, after.is_none());
            let records = match want {
                0 => Vec::new(),
                want => store.log_records(log_id, after, length, want).await?,
            };
            // SPEC: warg-wire §7.3 — a log with no records below the
            // checkpoint does not exist for this client: 404 `log`, never an
            // empty list (the client would fail with PackageLogEmpty).
            if records.is_empty() && after.is_none() {
                return Err(WargError::LogNotFound(*log_id).into());
            }
            let records = budget.take(records, want, after.is_none());
            packages.insert(*log_id, records.iter().map(published).collect());
        }
        Ok(FetchLogsResponse {
            more: budget.more,
            operator: operator.iter().map(published).collect(),
            packages,
            warnings: Vec::new(),
        })
    }

    /// `POST v1/fetch/names`.
    pub async fn fetch_names(
        &self,
        request: FetchNamesRequest,
    ) -> Result<FetchNamesResponse, ServiceError> {
        if request.packages.len() > MAX_LOGS_PER_REQUEST {
            return Err(ServiceError::bad_request(format!(
                "at most {MAX_LOGS_PER_REQUEST} log ids per request"
            )));
        }
        let found: BTreeMap<LogId, Option<String>> = self
            .inner
            .store
            .log_names(&request.packages)
            .await?
            .into_iter()
            .collect();
        let mut packages = BTreeMap::new();
        for id in &request.packages {
            match found.get(id) {
                Some(name) => {
                    packages.insert(*id, name.clone());
                }
                None => return Err(WargError::LogNotFound(*id).into()),
            }
        }
        Ok(FetchNamesResponse { packages })
    }

    /// The URL content is served from.
    pub fn content_url(&self, digest: &Sha256Digest) -> String {
        format!(
            "{}/content/sha256-{}",
            self.inner.config.public_url,
            digest.to_hex()
        )
    }

    /// `GET v1/content/{digest}`: sources of published content only.
    pub async fn content_sources(
        &self,
        digest: &str,
    ) -> Result<ContentSourcesResponse, ServiceError> {
        let digest = parse_digest(digest)?;
        let content = self.inner.store.content(&digest).await?;
        let Some(content) = content.filter(|c| c.published) else {
            return Err(WargError::ContentDigestNotFound(digest).into());
        };
        Ok(ContentSourcesResponse {
            content_sources: [(
                digest,
                vec![ContentSource::HttpGet {
                    url: self.content_url(&digest),
                    accept_ranges: true,
                    size: Some(content.size),
                }],
            )]
            .into(),
        })
    }

    /// The size of published content, or `None`.
    pub async fn published_content_size(
        &self,
        digest: &Sha256Digest,
    ) -> Result<Option<u64>, ServiceError> {
        Ok(self
            .inner
            .store
            .content(digest)
            .await?
            .filter(|c| c.published)
            .map(|c| c.size))
    }

    /// A URL of the blob store from which published content may be
    /// fetched directly (see [`Registry::oci_blob_redirect`]), if redirects
    /// are configured, the content is published and stored whole, and the
    /// store hands out such URLs. Asked only after the download was
    /// authorised.
    pub async fn content_redirect(
        &self,
        digest: &Sha256Digest,
    ) -> Result<Option<String>, ServiceError> {
        let Some(ttl) = self.inner.config.blob_redirect else {
            return Ok(None);
        };
        let Some(size) = self.published_content_size(digest).await? else {
            return Ok(None);
        };
        if !self.inner.blobs.verify_size(digest, size).await? {
            return Ok(None);
        }
        Ok(self.inner.blobs.presigned_get(digest, ttl).await?)
    }

    /// Reads `[offset, offset + len)` of published content.
    pub async fn read_content(
        &self,
        digest: &Sha256Digest,
        offset: u64,
        len: u64,
    ) -> Result<Option<ContentDownload>, ServiceError> {
        let Some(size) = self.published_content_size(digest).await? else {
            return Ok(None);
        };
        // A stored copy that is gone (withheld and collected) or damaged
        // is never served: it reads as absent until the same bytes are
        // pushed again (which heals the store).
        if !self.inner.blobs.verify_size(digest, size).await? {
            tracing::error!(%digest, "published content is missing or damaged in the blob store");
            return Ok(None);
        }
        let Some(body) = self.inner.blobs.read(digest, offset, len).await? else {
            return Ok(None);
        };
        Ok(Some(ContentDownload { size, body }))
    }

    /// `GET v1/ledger`: the sources of the first [`MAX_LEDGER_SOURCES`]
    /// pages of [`LEDGER_PAGE`] entries. Beyond them (a log of more than a
    /// million records) the answer stays bounded: the pages follow the same
    /// pattern (`v1/ledger/records/<first index>`), and auditors of logs
    /// that large read the tiles.
    pub fn ledger(&self) -> LedgerSourcesResponse {
        let length = self
            .latest_length()
            .min(LEDGER_PAGE.saturating_mul(MAX_LEDGER_SOURCES));
        let mut sources = Vec::new();
        let mut first = 0;
        while first < length {
            let last = (first + LEDGER_PAGE).min(length) - 1;
            sources.push(LedgerSource {
                first_registry_index: first,
                last_registry_index: last,
                url: format!("v1/ledger/records/{first}"),
                content_type: LEDGER_CONTENT_TYPE.into(),
                accept_ranges: false,
            });
            first += LEDGER_PAGE;
        }
        LedgerSourcesResponse {
            hash_algorithm: "sha256".into(),
            sources,
        }
    }

    /// `GET v1/ledger/records/{start}`: up to 1000 entries of 64 bytes
    /// (log id digest ‖ record id digest), all below the latest checkpoint.
    pub async fn ledger_records(&self, start: u64) -> Result<Vec<u8>, ServiceError> {
        let length = self.latest_length();
        if start >= length {
            return Err(ServiceError::Warg(WargError::Message {
                status: 404,
                message: format!("no ledger entries at {start} (the log has {length})"),
            }));
        }
        let records = self
            .inner
            .store
            .records_range(start, (start + LEDGER_PAGE).min(length))
            .await?;
        let mut out = Vec::with_capacity(records.len() * 64);
        for record in records {
            out.extend_from_slice(&record.log_id.0.0);
            out.extend_from_slice(&record.record_id.0.0);
        }
        Ok(out)
    }

    /// `POST v1/verify/checkpoint`.
    pub async fn verify_checkpoint(
        &self,
        checkpoint: SignedCheckpoint,
    ) -> Result<CheckpointVerificationResponse, ServiceError> {
        let cp = checkpoint.contents.checkpoint;
        let checkpoint_state = match self.inner.store.checkpoint(cp.log_length).await? {
            Some(stored) if stored.checkpoint.checkpoint == cp => VerificationState::Verified,
            Some(_) => VerificationState::Invalid,
            None if cp.log_length > self.latest_length() => VerificationState::Unverified,
            None => VerificationState::Invalid,
        };
        let key_id = cairn_crypto::KeyId::new(checkpoint.key_id.clone());
        let operator = self.operator_state();
        let signature_state = match (
            operator.public_key(&key_id),
            checkpoint.signature.parse::<cairn_crypto::EcdsaSignature>(),
        ) {
            (Some(key), Ok(signature))
                if operator.has_permission(&key_id, OperatorPermission::Commit)
                    && key
                        .verify(&checkpoint.contents.signing_message(), &signature)
                        .is_ok() =>
            {
                VerificationState::Verified
            }
            _ => VerificationState::Invalid,
        };
        Ok(CheckpointVerificationResponse {
            checkpoint: checkpoint_state,
            signature: signature_state,
            retry_after: None,
        })
    }

    /// Whether `name` could be published here (namespace defined).
    pub fn namespace_accepts(&self, name: &PackageName) -> bool {
        matches!(
            self.operator_state().namespace(name.namespace()),
            Some(cairn_protocol::operator::NamespaceState::Defined)
        )
    }
}
