//! What the replayed logs say the OCI door must serve, and the judgement of
//! what it did serve. No I/O: the caller asks the door and passes the
//! answers in.
//!
//! From each package's metadata log and package log (replayed and verified
//! by [`crate::fsck::replay_all`]):
//!
//! * every tag the metadata log sets must serve the manifest it names
//!   (the rule of `cairn fsck`, [`OciLogs::check_tag`]), unless the tag is
//!   a version the package log yanked (then the door answers 404);
//! * every manifest the metadata log records must be served by digest, as
//!   bytes that hash to it;
//! * every release of the package log that no tag of the metadata log
//!   names (published over warg) is served as a manifest derived from it:
//!   an image manifest with the version annotation, a wasm config whose
//!   `layerDigests` and `created` are the release's, and one layer, the
//!   released content ([`OciLogs::live_release`]); a yanked one is 404;
//! * every answer that carries a `Cairn-Record` header names the record
//!   the logs say made the manifest visible under that reference.
//!
//! A manifest derived from a release is not re-derived byte for byte: that
//! needs the released bytes and inspecting them (`cairn fsck` re-derives
//! from the blob store). A `451` is accepted where the registry log
//! withholds the content (or, for a manifest that is not a release,
//! withholds anything).

use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::hold::Requirement;
use cairn_protocol::ext::meta::{MetaState, version_tag};
use cairn_protocol::ext::registry::RegistryState;
use cairn_protocol::package::PackageState;
use cairn_protocol::{LogId, PackageName, RecordId, Timestamp};
use cairn_service::fsck::oci::OciLogs;
use cairn_service::oci::{IMAGE_MANIFEST, WASM_CONFIG};
use semver::Version;

/// A log record named as the reason something is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Logged {
    /// Its log.
    pub log_id: LogId,
    /// The record.
    pub record_id: RecordId,
}

impl std::fmt::Display for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.log_id, self.record_id)
    }
}

/// What a reference must serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Must {
    /// This manifest: bytes hashing to it.
    Manifest(Sha256Digest),
    /// The manifest derived from a release published over warg.
    Derived {
        /// The version.
        version: Version,
        /// The released content: the only layer.
        content: Sha256Digest,
        /// The release record's timestamp: the config's `created`.
        created: Timestamp,
    },
    /// Nothing: a yanked version answers 404.
    Yanked,
}

/// One reference of one repository and what the logs say it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// `namespace/name`.
    pub repository: String,
    /// A tag or a digest.
    pub reference: String,
    /// Whether `reference` is a tag.
    pub is_tag: bool,
    /// What it must serve.
    pub must: Must,
    /// The record that says so, when the logs name one.
    pub record: Option<Logged>,
    /// Whether a `451` (withheld) answer agrees with the logs.
    pub may_be_withheld: bool,
    /// Whether a `403` agrees with the logs: the manifest is a release held
    /// until signed (its hold unanswered while its namespace's policy
    /// requires signatures), which only the namespace's signers may read.
    pub may_be_held: bool,
}

impl Expectation {
    /// The path asked for.
    pub fn path(&self) -> String {
        format!("/v2/{}/manifests/{}", self.repository, self.reference)
    }
}

/// What the door answered to one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// `Docker-Content-Digest`.
    pub digest: Option<String>,
    /// `Cairn-Record`.
    pub record: Option<String>,
    /// The body (GET only).
    pub body: Vec<u8>,
}

/// The logs of one package, as replayed.
#[derive(Clone, Copy, Debug)]
pub struct PackageLogs<'a> {
    /// The package.
    pub package: &'a PackageName,
    /// Its metadata log.
    pub meta: Option<&'a MetaState>,
    /// Its package log.
    pub releases: Option<&'a PackageState>,
}

/// Everything the logs say the door serves, with the rules of `cairn
/// fsck` ([`OciLogs`]) loaded with the same states.
#[derive(Debug)]
pub struct Expected {
    /// One per reference to ask.
    pub expectations: Vec<Expectation>,
    logs: OciLogs,
}

impl Expected {
    /// What the door must serve for `packages`, given the registry log
    /// (for withheld content).
    pub fn new(packages: &[PackageLogs<'_>], registry: Option<&RegistryState>) -> Self {
        let mut logs = OciLogs::new();
        for p in packages {
            logs.add_states(p.package, p.meta, p.releases);
        }
        let withheld = |digest: Option<&Sha256Digest>| match (registry, digest) {
            (Some(registry), Some(digest)) => registry.withheld(digest).is_some(),
            (Some(registry), None) => registry.withheld_all().next().is_some(),
            (None, _) => false,
        };
        // Whether `package`'s namespace holds releases now.
        let holding = |package: &PackageName| {
            registry
                .and_then(|r| r.namespace(package.namespace()))
                .and_then(|n| Requirement::of(&n.policy))
                .is_some()
        };
        let mut expectations = Vec::new();
        for p in packages {
            let repository = cairn_service::oci_repository(p.package);
            let meta_log = LogId::package_meta(p.package);
            let package_log = LogId::package(p.package);
            let release = |version: &Version| p.releases.and_then(|s| s.release(version));
            let in_meta = |record_id: &RecordId| Logged {
                log_id: meta_log,
                record_id: *record_id,
            };
            let mut tagged = std::collections::BTreeSet::new();
            let holds = holding(p.package);
            if let Some(meta) = p.meta {
                let held = |digest: &Sha256Digest| holds && meta.held_manifest(digest).is_some();
                // The content a logged manifest released, if still live.
                let content = |digest: &Sha256Digest| {
                    meta.manifest(digest)?
                        .release
                        .as_ref()
                        .and_then(release)?
                        .content()
                        .copied()
                };
                for (tag, digest) in meta.tags() {
                    let version = version_tag(tag);
                    if let Some(v) = &version {
                        tagged.insert(v.clone());
                    }
                    let yanked = version
                        .as_ref()
                        .and_then(release)
                        .is_some_and(|r| r.yanked());
                    expectations.push(Expectation {
                        repository: repository.clone(),
                        reference: tag.to_owned(),
                        is_tag: true,
                        must: if yanked {
                            Must::Yanked
                        } else {
                            Must::Manifest(*digest)
                        },
                        record: meta.tag_record(tag).map(in_meta),
                        may_be_withheld: withheld(content(digest).as_ref()),
                        may_be_held: held(digest),
                    });
                }
                for (digest, _) in meta.manifests() {
                    expectations.push(Expectation {
                        repository: repository.clone(),
                        reference: digest.to_string(),
                        is_tag: false,
                        must: Must::Manifest(*digest),
                        record: meta.manifest_record(digest).map(in_meta),
                        may_be_withheld: withheld(content(digest).as_ref()),
                        may_be_held: held(digest),
                    });
                }
            }
            for r in p.releases.iter().flat_map(|s| s.releases()) {
                if tagged.contains(&r.version) {
                    continue;
                }
                let version = r.version.to_string();
                let must = match logs.live_release(&repository, &version) {
                    Some((_, live)) => Must::Derived {
                        version: r.version.clone(),
                        content: live.content,
                        created: live.created,
                    },
                    None => Must::Yanked,
                };
                expectations.push(Expectation {
                    repository: repository.clone(),
                    reference: version,
                    is_tag: true,
                    may_be_withheld: withheld(r.content()),
                    may_be_held: false,
                    must,
                    record: Some(Logged {
                        log_id: package_log,
                        record_id: r.record_id,
                    }),
                });
            }
        }
        Self { expectations, logs }
    }

    /// What is wrong with the door's answers to `expectation` (`head` to
    /// HEAD, `get` to GET), for people; empty when they agree with the
    /// logs. `config` is the config blob a derived manifest names, as GET
    /// answered it.
    pub fn judge(
        &mut self,
        expectation: &Expectation,
        head: &Answer,
        get: &Answer,
        config: Option<&Answer>,
    ) -> Vec<String> {
        let path = expectation.path();
        let mut wrong = Vec::new();
        if expectation.must == Must::Yanked {
            for (method, answer) in [("HEAD", head), ("GET", get)] {
                if answer.status != 404 {
                    wrong.push(format!(
                        "{method} {path} answers {} but the version is yanked in the package log",
                        answer.status
                    ));
                }
            }
            return wrong;
        }
        for (method, answer) in [("HEAD", head), ("GET", get)] {
            if (answer.status == 451 && expectation.may_be_withheld)
                || (answer.status == 403 && expectation.may_be_held)
            {
                return wrong;
            }
            if answer.status != 200 {
                wrong.push(format!(
                    "{method} {path} answers {}, but the log says it serves a manifest",
                    answer.status
                ));
            }
        }
        if !wrong.is_empty() {
            return wrong;
        }
        let hashed = Sha256Digest::of(&get.body);
        if get.digest.as_deref() != Some(&hashed.to_string()) {
            wrong.push(format!(
                "GET {path} serves bytes hashing to {hashed} with Docker-Content-Digest {}",
                get.digest.as_deref().unwrap_or("missing")
            ));
        }
        if head.digest != get.digest {
            wrong.push(format!(
                "HEAD {path} answers digest {} but GET serves {hashed}",
                head.digest.as_deref().unwrap_or("missing")
            ));
        }
        for (method, answer) in [("HEAD", head), ("GET", get)] {
            if let (Some(named), Some(logged)) = (&answer.record, &expectation.record)
                && *named != logged.to_string()
            {
                wrong.push(format!(
                    "{method} {path} names record {named}, but the log says {logged}"
                ));
            }
        }
        match &expectation.must {
            Must::Manifest(logged) => {
                let differs = if expectation.is_tag {
                    self.logs
                        .check_tag(&expectation.repository, &expectation.reference, &hashed)
                        .is_some()
                } else {
                    hashed != *logged
                };
                if differs {
                    wrong.push(format!(
                        "GET {path} serves manifest {hashed}, but the log says {logged}"
                    ));
                }
            }
            Must::Derived {
                version,
                content,
                created,
            } => wrong.extend(derived_problems(
                &path, &get.body, version, content, created, config,
            )),
            Must::Yanked => {}
        }
        wrong
    }
}

/// What is wrong with a served derived manifest (and its config).
fn derived_problems(
    path: &str,
    body: &[u8],
    version: &Version,
    content: &Sha256Digest,
    created: &Timestamp,
    config: Option<&Answer>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(body) else {
        return vec![format!("GET {path} serves a manifest that is not JSON")];
    };
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .map(|l| l.iter().filter_map(|l| l["digest"].as_str()).collect())
        .unwrap_or_default();
    if layers != [content.to_string().as_str()] {
        wrong.push(format!(
            "GET {path} serves layers {layers:?}, but the package log releases {content}"
        ));
    }
    if manifest["mediaType"] != IMAGE_MANIFEST || manifest["config"]["mediaType"] != WASM_CONFIG {
        wrong.push(format!(
            "GET {path} serves a manifest that is not a wasm image manifest"
        ));
    }
    if manifest["annotations"]["org.opencontainers.image.version"] != version.to_string().as_str() {
        wrong.push(format!(
            "GET {path} serves a manifest whose version annotation is not {version}"
        ));
    }
    let Some(config) = config else {
        return wrong;
    };
    let named = manifest["config"]["digest"].as_str().unwrap_or_default();
    let hashed = Sha256Digest::of(&config.body);
    let parsed = serde_json::from_slice::<serde_json::Value>(&config.body).unwrap_or_default();
    if config.status != 200 || named != hashed.to_string() {
        wrong.push(format!(
            "the config {named} of {path} is not served (status {}, bytes hashing to {hashed})",
            config.status
        ));
    } else if parsed["layerDigests"] != serde_json::json!([content.to_string()])
        || parsed["created"] != cairn_service::oci::derive::rfc3339(created).as_str()
    {
        wrong.push(format!(
            "the config {named} of {path} does not describe the release (layerDigests, created)"
        ));
    }
    wrong
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn answer(body: &[u8], record: Option<&str>) -> Answer {
        Answer {
            status: 200,
            digest: Some(Sha256Digest::of(body).to_string()),
            record: record.map(str::to_owned),
            body: body.to_vec(),
        }
    }

    fn setup(must: Must, is_tag: bool) -> (Expected, Expectation) {
        let package: PackageName = "acme:app".parse().unwrap();
        let expected = Expected::new(
            &[PackageLogs {
                package: &package,
                meta: None,
                releases: None,
            }],
            None,
        );
        let expectation = Expectation {
            repository: "acme/app".into(),
            reference: "sha256:x".into(),
            is_tag,
            must,
            record: Some(Logged {
                log_id: LogId::package_meta(&package),
                record_id: RecordId(Sha256Digest::of(b"record")),
            }),
            may_be_withheld: false,
            may_be_held: false,
        };
        (expected, expectation)
    }

    #[test]
    fn the_logged_manifest_is_clean() {
        let body = b"{\"schemaVersion\":2}";
        let (mut expected, e) = setup(Must::Manifest(Sha256Digest::of(body)), false);
        let record = e.record.unwrap().to_string();
        let a = answer(body, Some(&record));
        assert_eq!(expected.judge(&e, &a, &a, None), Vec::<String>::new());
    }

    #[test]
    fn each_lie_is_reported() {
        let body = b"{\"schemaVersion\":2}";
        let (mut expected, e) = setup(Must::Manifest(Sha256Digest::of(b"other")), false);
        let a = answer(body, None);
        let wrong = expected.judge(&e, &a, &a, None);
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert!(wrong[0].contains("but the log says"), "{wrong:?}");

        // Bytes that do not hash to the digest header; another record.
        let (mut expected, e) = setup(Must::Manifest(Sha256Digest::of(body)), false);
        let mut lying = answer(body, Some("sha256:a/sha256:b"));
        lying.digest = Some(Sha256Digest::of(b"x").to_string());
        let wrong = expected.judge(&e, &lying, &lying, None);
        assert!(wrong.iter().any(|w| w.contains("hashing to")), "{wrong:?}");
        assert!(
            wrong.iter().any(|w| w.contains("names record")),
            "{wrong:?}"
        );

        // A yanked version that is served.
        let (mut expected, e) = setup(Must::Yanked, true);
        let a = answer(body, None);
        assert_eq!(expected.judge(&e, &a, &a, None).len(), 2);
        let gone = Answer {
            status: 404,
            ..Answer::default()
        };
        assert!(expected.judge(&e, &gone, &gone, None).is_empty());
    }

    #[test]
    fn derived_manifests_must_carry_the_release() {
        let content = Sha256Digest::of(b"wasm");
        let created = Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        let package: PackageName = "acme:app".parse().unwrap();
        let version: Version = "1.0.0".parse().unwrap();
        let derived =
            cairn_service::oci::derive::derive(&package, &version, &content, 4, &created, None);
        let must = Must::Derived {
            version: version.clone(),
            content,
            created,
        };
        let (mut expected, e) = setup(must, true);
        let a = answer(&derived.manifest, None);
        let config = answer(&derived.config, None);
        assert!(expected.judge(&e, &a, &a, Some(&config)).is_empty());
        let other = cairn_service::oci::derive::derive(
            &package,
            &version,
            &Sha256Digest::of(b"other"),
            4,
            &created,
            None,
        );
        let a = answer(&other.manifest, None);
        let config = answer(&other.config, None);
        let wrong = expected.judge(&e, &a, &a, Some(&config));
        assert_eq!(wrong.len(), 2, "{wrong:?}");
    }
}
