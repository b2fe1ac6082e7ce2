//! `cairn audit follow --oci`: watch the OCI door against the signed log.
//!
//! 1. Verify and replay the whole log ([`crate::fsck::replay_all`]: every
//!    entry against the signed roots, every record through the validators).
//! 2. From the replayed package and metadata logs, list what every tag and
//!    every logged manifest digest must serve ([`expect`]).
//! 3. Ask the door (HEAD and GET, with a token if given) and judge each
//!    answer against the logs.
//! 4. A difference is not yet evidence: the door makes a push visible when
//!    its record is sequenced, a moment before a checkpoint covers it. After
//!    a grace period the checkpoint is read again; if the log grew, the
//!    whole check starts again from the larger log; if not, the differing
//!    references are asked again, and what still differs is evidence: the
//!    signed checkpoint, what was served, and the signed record that says
//!    otherwise, with where its receipt is.
//!
//! It is not a check of the log itself (that is `follow` and `fsck`), nor of
//! blobs other than the configs of derived manifests.

pub mod expect;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_protocol::ext::meta_log_package;
use cairn_protocol::wire::PublishedRecord;
use cairn_protocol::{LogId, PackageName, RecordId};

use crate::fsck::{Audited, replay_all};
use crate::remote::Remote;
use crate::{AuditError, Evidence, Trust};
use expect::{Answer, Expectation, Expected, Must, PackageLogs};

/// How long a difference is given to be covered by a new checkpoint.
const GRACE: Duration = Duration::from_secs(2);
/// Most replays while the log keeps growing under differences.
const ROUNDS: usize = 3;
/// The largest manifest or config read (the door's own manifest limit).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// What a clean check covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciReport {
    /// The checkpoint size the logs were replayed at.
    pub size: u64,
    /// Repositories checked.
    pub repositories: u64,
    /// References asked (each with HEAD and GET).
    pub references: u64,
}

/// The OCI door of a registry: `/v2/<name>/manifests/<reference>`.
#[derive(Debug)]
pub struct Door {
    base: String,
    http: reqwest::Client,
}

impl Door {
    /// The door of the registry at `url`, asked with `token` (`Bearer`) if
    /// given.
    pub fn new(url: &str, token: Option<&str>) -> Result<Self, AuditError> {
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
        })
    }

    /// Asks `path` (`/v2/…`) with `method`. Statuses that say nothing about
    /// the logs (401, 429, 5xx; 403 unless `held`, the reference being a
    /// release held until signed) are errors, not answers.
    async fn ask(
        &self,
        method: reqwest::Method,
        path: &str,
        held: bool,
    ) -> Result<Answer, AuditError> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method} {url}");
        let mut response = self
            .http
            .request(method, &url)
            .header(
                reqwest::header::ACCEPT,
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            )
            .send()
            .await
            .map_err(|e| AuditError::Network(format!("{what}: {e}")))?;
        let status = response.status().as_u16();
        match status {
            403 if held => {}
            401 | 403 => {
                return Err(AuditError::Local(format!(
                    "{what}: HTTP {status}; the OCI door needs a token with read access (--token)"
                )));
            }
            429 | 500.. => {
                return Err(AuditError::Network(format!("{what}: HTTP {status}")));
            }
            _ => {}
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let digest = header("docker-content-digest");
        let record = header("cairn-record");
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| AuditError::Network(format!("{what}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(AuditError::Network(format!("{what}: response too large")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            digest,
            record,
            body,
        })
    }

    /// GETs `path` (`/v2/…`) accepting `accept`, reading at most `limit`
    /// bytes. Like [`Door::ask`], statuses that say nothing about the logs
    /// are errors; a transfer that breaks after a `200` is
    /// [`Fetched::Broken`] (cairn ends a blob whose stored bytes fail their
    /// digest that way), not a network error.
    pub(crate) async fn fetch(
        &self,
        path: &str,
        accept: &str,
        limit: usize,
    ) -> Result<Fetched, AuditError> {
        let url = format!("{}{path}", self.base);
        let what = format!("GET {url}");
        let mut response = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| AuditError::Network(format!("{what}: {e}")))?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            401 | 403 => {
                return Err(AuditError::Local(format!(
                    "{what}: HTTP {status}; the OCI door needs a token with read access (--token)"
                )));
            }
            429 | 500.. => return Err(AuditError::Network(format!("{what}: HTTP {status}"))),
            _ => return Ok(Fetched::Status(status)),
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Ok(Fetched::Broken(format!("larger than {limit} bytes")));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(Fetched::Body(body)),
                Err(e) => {
                    return Ok(Fetched::Broken(format!(
                        "the transfer broke after {} bytes: {e}",
                        body.len()
                    )));
                }
            }
        }
    }

    /// HEAD and GET of the reference, and the config a derived manifest
    /// names.
    async fn answers(
        &self,
        expectation: &Expectation,
    ) -> Result<(Answer, Answer, Option<Answer>), AuditError> {
        let path = expectation.path();
        let held = expectation.may_be_held;
        let head = self.ask(reqwest::Method::HEAD, &path, held).await?;
        let get = self.ask(reqwest::Method::GET, &path, held).await?;
        let config = match &expectation.must {
            Must::Derived { .. } if get.status == 200 => {
                let named = serde_json::from_slice::<serde_json::Value>(&get.body)
                    .ok()
                    .and_then(|m| m["config"]["digest"].as_str().map(str::to_owned));
                match named.and_then(|d| d.parse::<cairn_crypto::Sha256Digest>().ok()) {
                    Some(digest) => Some(
                        self.ask(
                            reqwest::Method::GET,
                            &format!("/v2/{}/blobs/{digest}", expectation.repository),
                            false,
                        )
                        .await?,
                    ),
                    None => None,
                }
            }
            _ => None,
        };
        Ok((head, get, config))
    }
}

/// What a [`Door::fetch`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// The whole body of a `200`.
    Body(Vec<u8>),
    /// Another status that is an answer (404, 451, …).
    Status(u16),
    /// A `200` whose body did not arrive whole, or was too large.
    Broken(String),
}

/// One reference whose answers contradict the logs.
struct Difference {
    expectation: Expectation,
    wrong: Vec<String>,
}

/// What the logs say the door serves, from a verified replay.
fn expected(audited: &Audited) -> Expected {
    let replay = &audited.replay;
    let mut packages: HashMap<PackageName, (Option<LogId>, Option<LogId>)> = HashMap::new();
    for (log_id, name) in &audited.names {
        if let Some(package) = meta_log_package(name) {
            packages.entry(package).or_default().0 = Some(*log_id);
        } else if let Ok(package) = PackageName::new(name.clone())
            && LogId::package(&package) == *log_id
        {
            packages.entry(package).or_default().1 = Some(*log_id);
        }
    }
    let mut names: Vec<&PackageName> = packages.keys().collect();
    names.sort_by_key(|p| p.to_string());
    let logs: Vec<PackageLogs<'_>> = names
        .into_iter()
        .map(|package| {
            let (meta, releases) = packages[package];
            PackageLogs {
                package,
                meta: meta
                    .and_then(|id| replay.metas().get(&id))
                    .map(|l| &l.state),
                releases: releases
                    .and_then(|id| replay.packages().get(&id))
                    .map(|l| &l.state),
            }
        })
        .collect();
    Expected::new(&logs, replay.registry().map(|r| &r.state))
}

/// Asks the door about each expectation and keeps what differs.
async fn differences(
    door: &Door,
    expected: &mut Expected,
    expectations: &[Expectation],
) -> Result<Vec<Difference>, AuditError> {
    let mut out = Vec::new();
    for expectation in expectations {
        let (head, get, config) = door.answers(expectation).await?;
        let wrong = expected.judge(expectation, &head, &get, config.as_ref());
        if !wrong.is_empty() {
            out.push(Difference {
                expectation: expectation.clone(),
                wrong,
            });
        }
    }
    Ok(out)
}

/// Checks what the OCI door serves against the verified, replayed log.
/// Evidence is returned as [`AuditError::Evidence`].
pub async fn check(
    remote: &Remote,
    door: &Door,
    trust: &Trust,
    mut progress: impl FnMut(&str),
) -> Result<OciReport, AuditError> {
    for round in 1..=ROUNDS {
        let audited = replay_all(remote, trust, &mut progress).await?;
        let size = audited.checkpoint.checkpoint.size;
        let mut expected = expected(&audited);
        let all = expected.expectations.clone();
        let report = OciReport {
            size,
            repositories: all
                .iter()
                .map(|e| e.repository.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len() as u64,
            references: all.len() as u64,
        };
        progress(&format!(
            "asking the OCI door about {} references",
            all.len()
        ));
        let found = differences(door, &mut expected, &all).await?;
        if found.is_empty() {
            return Ok(report);
        }
        tokio::time::sleep(GRACE).await;
        let now = trust.verify(&remote.checkpoint().await?)?;
        if now.checkpoint.size != size {
            if round < ROUNDS {
                progress("the log grew while differences were seen; checking again");
                continue;
            }
            return Err(AuditError::Refused(format!(
                "the OCI door served what checkpoint {size} contradicts, but the log kept \
                 growing ({} now); check again later",
                now.checkpoint.size
            )));
        }
        let again: Vec<Expectation> = found.into_iter().map(|d| d.expectation).collect();
        let found = differences(door, &mut expected, &again).await?;
        if found.is_empty() {
            return Ok(report);
        }
        return Err(evidence(remote, &audited, &found));
    }
    Err(AuditError::Refused(
        "the log kept growing under the check; check again later".into(),
    ))
}

/// The evidence: the verified checkpoint, what was served, and for each
/// difference the signed record that says otherwise.
fn evidence(remote: &Remote, audited: &Audited, found: &[Difference]) -> AuditError {
    let by_id: HashMap<(LogId, RecordId), (u64, &PublishedRecord)> = audited
        .records
        .iter()
        .enumerate()
        .map(|(index, (log, id, record))| ((*log, *id), (index as u64, record)))
        .collect();
    let size = audited.checkpoint.checkpoint.size;
    let mut details = Vec::new();
    for difference in found {
        let e = &difference.expectation;
        details.push(format!("{} of {}:", e.reference, e.repository));
        details.extend(difference.wrong.iter().map(|w| format!("  {w}")));
        let Some(logged) = e.record else {
            continue;
        };
        let name = audited
            .names
            .get(&logged.log_id)
            .map_or("?", String::as_str);
        details.push(format!(
            "  the signed record: {} of log {} ({name})",
            logged.record_id, logged.log_id
        ));
        if let Some((index, record)) = by_id.get(&(logged.log_id, logged.record_id)) {
            details.push(format!(
                "    entry {index} of the log, included in checkpoint {size}; receipt: {}/receipt/{}/{}",
                remote.url(),
                logged.log_id,
                logged.record_id
            ));
            details.push(format!("    keyId: {}", record.envelope.key_id));
            details.push(format!("    signature: {}", record.envelope.signature));
            details.push(format!(
                "    contentBytes: {}",
                record.envelope.content_bytes
            ));
            // cairn's own records are JSON: shown as read.
            if let Some(json) = STANDARD
                .decode(&record.envelope.content_bytes)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .filter(|text| serde_json::from_str::<serde_json::Value>(text).is_ok())
            {
                details.push(format!("    record: {json}"));
            }
        }
    }
    AuditError::Evidence(Box::new(Evidence {
        summary: format!(
            "the OCI door serves what the signed log contradicts ({} references)",
            found.len()
        ),
        checkpoints: vec![(
            format!("{}/checkpoint, verified", remote.url()),
            audited.checkpoint.note.clone(),
        )],
        details,
    }))
}
