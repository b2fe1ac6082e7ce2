//! `cairn verify oci`: is the manifest the OCI door serves the one the log
//! recorded?
//!
//! The manifest is fetched as an OCI client fetches it (by tag or digest,
//! with the token if given) and hashed. The package's metadata log is
//! proven like a package log ([`crate::package::prove_log`], each record
//! validated into a [`MetaState`] against the operator log), and says which
//! manifest each tag names and which blobs each manifest references. For a
//! version (a version tag, or a logged manifest that became a release) the
//! package log is proven too, and the release's content must be a layer of
//! the manifest. A tag the metadata log says names another manifest, blobs
//! other than the logged ones, or a layer other than the released content
//! are evidence. A release published over warg has no logged manifest (its
//! manifest is derived when pulled); its version tag verifies by the
//! release's content alone.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_crypto::{KeyId, Sha256Digest};
use cairn_protocol::ext::ExtEntry;
use cairn_protocol::ext::ExtRecord;
use cairn_protocol::ext::meta::{MetaState, version_tag};
use cairn_protocol::oci::{IMAGE_INDEX, IMAGE_MANIFEST, OciDigest, ParsedManifest, parse_manifest};
use cairn_protocol::wire::PublishedRecord;
use cairn_protocol::{Envelope, LogId, PackageName, RecordId};
use semver::Version;

use super::release::{find_release, record_details};
use super::{Checked, Logged, Status, Verifier};
use crate::AuditError;
use crate::package::{ProvenLog, decode, prove_log, prove_package};

/// The largest manifest read.
const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// A tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `:tag`.
    Tag(String),
    /// `@sha256:…`.
    Digest(Sha256Digest),
}

/// `REGISTRY/NS/NAME:TAG` or `REGISTRY/NS/NAME@DIGEST`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciReference {
    /// Where the OCI door is: `scheme://host`.
    pub base: String,
    /// `ns/name`.
    pub repository: String,
    /// `ns:name`.
    pub package: PackageName,
    /// The tag or digest.
    pub reference: Reference,
}

impl std::fmt::Display for OciReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reference {
            Reference::Tag(tag) => write!(f, "{}/{}:{tag}", self.base, self.repository),
            Reference::Digest(d) => write!(f, "{}/{}@{d}", self.base, self.repository),
        }
    }
}

/// Parses an OCI reference. The scheme may be given (`http://host/…`);
/// without one, a host that is `registry_url`'s is reached like it, any
/// other over HTTPS.
pub fn parse_reference(text: &str, registry_url: &str) -> Result<OciReference, AuditError> {
    let bad = |why: &str| AuditError::Local(format!("`{text}` is not an OCI reference: {why}"));
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) if scheme == "http" || scheme == "https" => (Some(scheme), rest),
        Some(_) => return Err(bad("the scheme must be http or https")),
        None => (None, text),
    };
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("expected REGISTRY/NS/NAME:TAG or REGISTRY/NS/NAME@DIGEST"))?;
    let (repository, reference) = if let Some((repository, digest)) = path.split_once('@') {
        let digest = digest
            .parse()
            .map_err(|_| bad("the digest must be sha256:<64 hex>"))?;
        (repository, Reference::Digest(digest))
    } else {
        let (repository, tag) = path
            .rsplit_once(':')
            .ok_or_else(|| bad("a tag (:TAG) or a digest (@sha256:…) is needed"))?;
        if !cairn_protocol::ext::meta::is_valid_tag(tag) {
            return Err(bad("invalid tag"));
        }
        (repository, Reference::Tag(tag.to_owned()))
    };
    let (namespace, name) = repository
        .split_once('/')
        .filter(|(_, name)| !name.contains('/'))
        .ok_or_else(|| bad("the repository must be NS/NAME"))?;
    let package = PackageName::new(format!("{namespace}:{name}"))
        .map_err(|e| bad(&format!("invalid package name: {e}")))?;
    let registry = registry_url.trim_end_matches('/');
    let base = match scheme {
        Some(scheme) => format!("{scheme}://{host}"),
        None => match registry.split_once("://") {
            Some((scheme, authority)) if authority == host => format!("{scheme}://{host}"),
            _ => format!("https://{host}"),
        },
    };
    Ok(OciReference {
        base,
        repository: repository.to_owned(),
        package,
        reference,
    })
}

/// A manifest as the metadata log recorded it.
#[derive(Debug, Clone)]
struct LoggedManifest {
    /// Config, then layers.
    blobs: Vec<Sha256Digest>,
    /// The release it became, with its content.
    release: Option<(Version, Sha256Digest)>,
    /// The record that recorded it.
    record: PublishedRecord,
}

/// A proven metadata log.
#[derive(Debug, Default)]
struct MetaLog {
    state: MetaState,
    manifests: BTreeMap<Sha256Digest, LoggedManifest>,
    /// The last record that set each tag.
    tag_records: BTreeMap<String, PublishedRecord>,
    proven: Option<ProvenLog>,
}

fn meta_record_id(record: &PublishedRecord) -> String {
    decode(record)
        .map(|bytes| RecordId::cairn(&bytes).to_string())
        .unwrap_or_default()
}

impl Verifier {
    async fn prove_meta(&self, package: &PackageName) -> Result<MetaLog, AuditError> {
        let mut log = MetaLog::default();
        let name = cairn_protocol::ext::meta_log_name(package);
        let proven = prove_log(
            &self.remote,
            &self.trusted,
            LogId::package_meta(package),
            &name,
            |operator, record| {
                let envelope = Envelope::<ExtRecord>::from_parts(
                    decode(record)?,
                    KeyId::new(record.envelope.key_id.clone()),
                    &record.envelope.signature,
                )
                .map_err(|e| AuditError::Inconsistent(format!("metadata record: {e}")))?;
                log.state = std::mem::take(&mut log.state)
                    .validate(&envelope, operator)
                    .map_err(|e| {
                        AuditError::Inconsistent(format!(
                            "record at {} of {name} does not validate: {e}",
                            record.registry_index
                        ))
                    })?;
                for entry in &envelope.record().entries {
                    match entry {
                        ExtEntry::Manifest(m) => {
                            log.manifests.insert(
                                m.digest,
                                LoggedManifest {
                                    blobs: m.blobs.clone(),
                                    release: m
                                        .release
                                        .as_ref()
                                        .map(|r| (r.version.clone(), r.content)),
                                    record: record.clone(),
                                },
                            );
                            for tag in &m.tags {
                                log.tag_records.insert(tag.clone(), record.clone());
                            }
                        }
                        ExtEntry::Tag(t) => {
                            log.tag_records.insert(t.tag.clone(), record.clone());
                            if let (Some(link), Some(m)) =
                                (&t.release, log.manifests.get_mut(&t.digest))
                            {
                                m.release = Some((link.version.clone(), link.content));
                            }
                        }
                        ExtEntry::Mirrored(m) => {
                            log.manifests.entry(m.digest).or_insert(LoggedManifest {
                                blobs: m.blobs.clone(),
                                release: Some((m.version.clone(), m.content)),
                                record: record.clone(),
                            });
                            log.tag_records
                                .insert(m.version.to_string(), record.clone());
                        }
                        _ => {}
                    }
                }
                Ok(envelope.record_id())
            },
        )
        .await;
        match proven {
            Ok(proven) => log.proven = Some(proven),
            // No metadata log: nothing was ever pushed over OCI.
            Err(AuditError::Refused(_)) => return Ok(MetaLog::default()),
            Err(error) => return Err(error),
        }
        Ok(log)
    }

    /// Fetches the manifest `reference` names from the OCI door and checks
    /// it against the log.
    pub async fn check_oci(&self, reference: &OciReference, token: Option<&str>) -> Checked {
        let shown = match &reference.reference {
            Reference::Tag(tag) => tag.clone(),
            Reference::Digest(digest) => digest.to_string(),
        };
        let (digest, status, logged) = match self.fetch_manifest(reference, token).await {
            Err(error) => (Sha256Digest([0; 32]), Status::Failed(error), None),
            Ok((bytes, content_type)) => {
                let digest = Sha256Digest::of(&bytes);
                match self
                    .check_manifest(reference, &bytes, content_type.as_deref())
                    .await
                {
                    Ok((status, logged)) => (digest, status, logged),
                    Err(error) => (digest, Status::Failed(error), None),
                }
            }
        };
        Checked {
            package: reference.package.to_string(),
            version: shown,
            digest,
            status,
            logged,
        }
    }

    async fn fetch_manifest(
        &self,
        reference: &OciReference,
        token: Option<&str>,
    ) -> Result<(Vec<u8>, Option<String>), AuditError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("cairn-verify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AuditError::Network(format!("cannot build an HTTP client: {e}")))?;
        let target = match &reference.reference {
            Reference::Tag(tag) => tag.clone(),
            Reference::Digest(digest) => digest.to_string(),
        };
        let url = format!(
            "{}/v2/{}/manifests/{target}",
            reference.base, reference.repository
        );
        let mut request = http.get(&url).header(
            reqwest::header::ACCEPT,
            format!("{IMAGE_MANIFEST}, {IMAGE_INDEX}"),
        );
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| AuditError::Network(format!("GET {url}: {e}")))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| AuditError::Network(format!("GET {url}: {e}")))?;
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(AuditError::Network(format!(
                "GET {url}: HTTP {status}: {}",
                text.trim()
            )));
        }
        if bytes.len() > MAX_MANIFEST {
            return Err(AuditError::Network(format!(
                "GET {url}: manifest too large"
            )));
        }
        Ok((bytes.to_vec(), content_type))
    }

    async fn check_manifest(
        &self,
        reference: &OciReference,
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<(Status, Option<Logged>), AuditError> {
        let package = &reference.package;
        let digest = Sha256Digest::of(bytes);
        if let Reference::Digest(asked) = &reference.reference
            && *asked != digest
        {
            return Err(AuditError::Inconsistent(format!(
                "the registry answered {asked} with bytes whose digest is {digest}"
            )));
        }
        let manifest = parse_manifest(bytes, content_type)
            .map_err(|e| AuditError::Inconsistent(format!("the served manifest: {e}")))?;
        let meta = self.prove_meta(package).await?;

        // Which manifest the log says this is, and which version it is.
        let (entry, version) = match &reference.reference {
            Reference::Tag(tag) => match meta.state.tag(tag) {
                Some(named) if *named != digest => {
                    let mut details = vec![format!(
                        "the OCI door serves manifest {digest} for {}:{tag}",
                        reference.repository
                    )];
                    if let Some(record) = meta.tag_records.get(tag) {
                        details.push(format!(
                            "--- signed metadata record {} (registry index {}) that sets tag {tag} ---",
                            meta_record_id(record),
                            record.registry_index
                        ));
                        details.push(
                            serde_json::to_string_pretty(&record.envelope).unwrap_or_default(),
                        );
                        details.push(String::from_utf8_lossy(&decode(record)?).into_owned());
                        details.push("--- end ---".into());
                    }
                    return Err(meta_evidence(
                        self,
                        &meta,
                        format!(
                            "tag {tag} of {} names {named} in the signed metadata log, but the \
                             registry serves {digest}",
                            reference.repository
                        ),
                        details,
                    ));
                }
                Some(_) => (meta.manifests.get(&digest), version_tag(tag)),
                None => match version_tag(tag) {
                    Some(version) => (None, Some(version)),
                    None => {
                        return Ok((
                            Status::NotLogged(format!(
                                "the metadata log of {package} never set tag {tag}"
                            )),
                            None,
                        ));
                    }
                },
            },
            Reference::Digest(_) => match meta.manifests.get(&digest) {
                Some(entry) => (Some(entry), entry.release.as_ref().map(|(v, _)| v.clone())),
                None => {
                    return Ok((
                        Status::NotLogged(format!(
                            "manifest {digest} is not recorded in the metadata log of {package} \
                             (a manifest derived from a warg release verifies by its version tag)"
                        )),
                        None,
                    ));
                }
            },
        };

        if let Some(entry) = entry {
            let served = served_blobs(&manifest);
            // A SHA-512 descriptor names the same bytes as the logged
            // SHA-256 only by the registry's word: it is not compared.
            let differs = served.len() != entry.blobs.len()
                || served
                    .iter()
                    .zip(&entry.blobs)
                    .any(|(s, l)| s.sha256().is_some_and(|s| s != *l));
            if !entry.blobs.is_empty() && differs {
                return Err(meta_evidence(
                    self,
                    &meta,
                    format!("manifest {digest} references other blobs than its signed record says"),
                    vec![
                        format!(
                            "served: {}",
                            served
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        format!(
                            "logged in record {} (registry index {}): {}",
                            meta_record_id(&entry.record),
                            entry.record.registry_index,
                            join(&entry.blobs)
                        ),
                    ],
                ));
            }
        }
        let Some(version) = version else {
            let logged = entry.map(|e| Logged {
                record: meta_record_id(&e.record),
                registry_index: e.record.registry_index,
                log_length: meta
                    .proven
                    .as_ref()
                    .map_or(0, |p| p.warg.contents.checkpoint.log_length),
            });
            return Ok((Status::Verified, logged));
        };

        // The release: its signed content must be a layer of the manifest.
        let (state, proven) = match prove_package(&self.remote, &self.trusted, package).await {
            Ok(proof) => proof,
            Err(AuditError::Refused(why)) => return Ok((Status::NotLogged(why), None)),
            Err(error) => return Err(error),
        };
        let Some(facts) = find_release(&state, &proven, &version)? else {
            return Ok((
                Status::NotLogged(format!("the log of {package} holds no release {version}")),
                None,
            ));
        };
        let logged = Logged {
            record: facts.record_id.to_string(),
            registry_index: facts.record.registry_index,
            log_length: proven.warg.contents.checkpoint.log_length,
        };
        let linked = entry.and_then(|e| e.release.as_ref().map(|(_, content)| *content));
        if linked.is_some_and(|content| content != facts.content) {
            return Err(proven.evidence(
                &self.remote,
                &self.trusted,
                format!(
                    "the metadata log links manifest {digest} to {package}@{version} with other \
                     content than the release record"
                ),
                record_details(self, package, &proven, &facts),
            ));
        }
        if !manifest
            .layers
            .iter()
            .any(|l| l.digest.sha256() == Some(facts.content))
        {
            if manifest.layers.iter().any(|l| l.digest.sha256().is_none()) {
                return Err(AuditError::Refused(format!(
                    "manifest {digest} names its layers by SHA-512; the release's content \
                     {} cannot be compared without the layer's SHA-256",
                    facts.content
                )));
            }
            let mut details = vec![format!(
                "manifest {digest} served for {}: layers {}",
                reference,
                manifest
                    .layers
                    .iter()
                    .map(|l| l.digest.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )];
            details.extend(record_details(self, package, &proven, &facts));
            return Err(proven.evidence(
                &self.remote,
                &self.trusted,
                format!(
                    "the registry serves {package}@{version} as a manifest without the released \
                     content {}",
                    facts.content
                ),
                details,
            ));
        }
        let status = if facts.yanked {
            Status::Yanked
        } else {
            Status::Verified
        };
        Ok((status, Some(logged)))
    }
}

fn meta_evidence(
    verifier: &Verifier,
    meta: &MetaLog,
    summary: String,
    details: Vec<String>,
) -> AuditError {
    match &meta.proven {
        Some(proven) => proven.evidence(&verifier.remote, &verifier.trusted, summary, details),
        None => AuditError::Inconsistent(summary),
    }
}

fn served_blobs(manifest: &ParsedManifest) -> Vec<OciDigest> {
    manifest
        .config
        .iter()
        .chain(&manifest.layers)
        .map(|d| d.digest)
        .collect()
}

fn join(digests: &[Sha256Digest]) -> String {
    digests
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn references() {
        let r = parse_reference("127.0.0.1:5000/test/app:1.0.0", "http://127.0.0.1:5000/").unwrap();
        assert_eq!(r.base, "http://127.0.0.1:5000");
        assert_eq!(r.repository, "test/app");
        assert_eq!(r.package.as_str(), "test:app");
        assert_eq!(r.reference, Reference::Tag("1.0.0".into()));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse_reference(&format!("registry.example/test/app@{d}"), "http://other").unwrap();
        assert_eq!(r.base, "https://registry.example");
        assert_eq!(r.reference, Reference::Digest(d.parse().unwrap()));
        let r = parse_reference("http://h:1/test/app:latest", "https://x").unwrap();
        assert_eq!(r.base, "http://h:1");
        for bad in [
            "test/app",
            "h/test/app",
            "h/a/b/c:1",
            "h/test/app@sha256:zz",
            "ftp://h/test/app:1",
            "h/test/app:-x",
        ] {
            assert!(parse_reference(bad, "http://h").is_err(), "{bad}");
        }
    }
}
