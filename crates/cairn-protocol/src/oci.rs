//! OCI manifests as untrusted bytes: the JSON model of image manifests,
//! image indexes and wasm configs, and the checks every manifest pushed to
//! the registry passes before anything looks at what it references.
//!
//! [`parse_manifest`] decides what a manifest *is* — its schema version,
//! its media type (declared in the body, in the `Content-Type` header, or
//! both, and then they must agree), its descriptors with well-formed
//! digests, its subject — without reading a blob or a database: whether the
//! referenced blobs exist, whether a wasm layer is valid WebAssembly and
//! whether a namespace accepts it are decided by the service. Nothing here
//! panics on any input (a fuzz target, `oci_manifest`, holds it to that).

use std::collections::{BTreeMap, BTreeSet};

use cairn_crypto::{Sha256Digest, Sha512Digest};
use serde::Deserialize;

/// OCI image manifest media type.
pub const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Why manifest (or config) bytes were refused. The message is shown to the
/// client as a `MANIFEST_INVALID` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ManifestError {
    /// What is wrong, safe to show.
    pub message: String,
}

impl ManifestError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A digest as the OCI door accepts it: SHA-256, the name cairn gives all
/// content, or SHA-512, the spec's other registered algorithm, which the
/// registry resolves to the SHA-256 of the same bytes (an alias recorded
/// once the bytes were hashed both ways).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OciDigest {
    /// `sha256:<64 lowercase hex>`.
    Sha256(Sha256Digest),
    /// `sha512:<128 lowercase hex>`.
    Sha512(Sha512Digest),
}

impl OciDigest {
    /// The SHA-256, when that is the algorithm.
    pub fn sha256(&self) -> Option<Sha256Digest> {
        match self {
            Self::Sha256(digest) => Some(*digest),
            Self::Sha512(_) => None,
        }
    }
}

impl From<Sha256Digest> for OciDigest {
    fn from(digest: Sha256Digest) -> Self {
        Self::Sha256(digest)
    }
}

impl std::fmt::Display for OciDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sha256(digest) => digest.fmt(f),
            Self::Sha512(digest) => digest.fmt(f),
        }
    }
}

impl std::str::FromStr for OciDigest {
    type Err = ManifestError;

    fn from_str(digest: &str) -> Result<Self, Self::Err> {
        parse_oci_digest(digest)
    }
}

/// A descriptor whose digest has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// The media type of what it points at.
    pub media_type: String,
    /// The digest of what it points at (SHA-512 digests are resolved by the
    /// registry).
    pub digest: OciDigest,
    /// The size it claims.
    pub size: u64,
}

/// A manifest that passed [`parse_manifest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedManifest {
    /// The digest of the exact bytes.
    pub digest: Sha256Digest,
    /// [`IMAGE_MANIFEST`] or [`IMAGE_INDEX`].
    pub media_type: String,
    /// The declared `artifactType`.
    pub artifact_type: Option<String>,
    /// The config's media type, as written (also in an index, unchecked).
    pub config_media_type: Option<String>,
    /// An image manifest's config (always present for one).
    pub config: Option<Descriptor>,
    /// An image manifest's layers (empty for an index).
    pub layers: Vec<Descriptor>,
    /// An index's manifests (empty for an image manifest).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to.
    pub subject: Option<OciDigest>,
    /// The annotations (empty when absent).
    pub annotations: BTreeMap<String, String>,
}

impl ParsedManifest {
    /// Whether it is an image manifest (else an index).
    pub fn is_image_manifest(&self) -> bool {
        self.media_type == IMAGE_MANIFEST
    }

    /// The SHA-512 digests it names (descriptors and subject): the aliases
    /// [`ParsedManifest::resolve`] needs, for the caller to look up.
    pub fn sha512_names(&self) -> BTreeSet<Sha512Digest> {
        self.config
            .iter()
            .chain(&self.layers)
            .chain(&self.manifests)
            .map(|d| d.digest)
            .chain(self.subject)
            .filter_map(|d| match d {
                OciDigest::Sha512(digest) => Some(digest),
                OciDigest::Sha256(_) => None,
            })
            .collect()
    }

    /// The same manifest with every descriptor naming its content by
    /// SHA-256, through `aliases` (SHA-512 → SHA-256 of the same bytes).
    /// A descriptor named by a SHA-512 without an alias is an error (its
    /// content is unknown); a subject without one is kept by its SHA-512
    /// only (a subject need not exist).
    pub fn resolve(
        self,
        aliases: &BTreeMap<Sha512Digest, Sha256Digest>,
    ) -> Result<ResolvedManifest, Sha512Digest> {
        let sha256 = |digest: &OciDigest| match digest {
            OciDigest::Sha256(digest) => Ok(*digest),
            OciDigest::Sha512(name) => aliases.get(name).copied().ok_or(*name),
        };
        let resolve = |d: Descriptor| {
            Ok(ResolvedDescriptor {
                digest: sha256(&d.digest)?,
                name: d.digest,
                media_type: d.media_type,
                size: d.size,
            })
        };
        let all = |ds: Vec<Descriptor>| ds.into_iter().map(resolve).collect::<Result<Vec<_>, _>>();
        Ok(ResolvedManifest {
            digest: self.digest,
            media_type: self.media_type,
            artifact_type: self.artifact_type,
            config_media_type: self.config_media_type,
            config: self.config.map(resolve).transpose()?,
            layers: all(self.layers)?,
            manifests: all(self.manifests)?,
            subject: self.subject.as_ref().and_then(|s| sha256(s).ok()),
            subject_name: self.subject,
            annotations: self.annotations,
        })
    }
}

/// A descriptor of a [`ResolvedManifest`]: the SHA-256 of what it points
/// at, whichever digest the manifest names it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedDescriptor {
    /// The media type of what it points at.
    pub media_type: String,
    /// The SHA-256 of what it points at.
    pub digest: Sha256Digest,
    /// The digest the manifest names it by (`digest` itself, or a SHA-512).
    pub name: OciDigest,
    /// The size it claims.
    pub size: u64,
}

/// A [`ParsedManifest`] whose descriptors name content by SHA-256
/// ([`ParsedManifest::resolve`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedManifest {
    /// The SHA-256 of the exact bytes.
    pub digest: Sha256Digest,
    /// [`IMAGE_MANIFEST`] or [`IMAGE_INDEX`].
    pub media_type: String,
    /// The declared `artifactType`.
    pub artifact_type: Option<String>,
    /// The config's media type, as written (also in an index, unchecked).
    pub config_media_type: Option<String>,
    /// An image manifest's config (always present for one).
    pub config: Option<ResolvedDescriptor>,
    /// An image manifest's layers (empty for an index).
    pub layers: Vec<ResolvedDescriptor>,
    /// An index's manifests (empty for an image manifest).
    pub manifests: Vec<ResolvedDescriptor>,
    /// The SHA-256 of the manifest this one refers to, when it is known
    /// (named by SHA-256, or by a SHA-512 with an alias).
    pub subject: Option<Sha256Digest>,
    /// The subject as the manifest names it.
    pub subject_name: Option<OciDigest>,
    /// The annotations (empty when absent).
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson {
    media_type: String,
    digest: String,
    size: u64,
    /// The content itself, base64-encoded (image-spec 1.1).
    #[serde(default)]
    data: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<DescriptorJson>,
    #[serde(default)]
    layers: Option<Vec<DescriptorJson>>,
    #[serde(default)]
    manifests: Option<Vec<DescriptorJson>>,
    #[serde(default)]
    subject: Option<DescriptorJson>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Parses an OCI digest (`sha256:<64 lowercase hex>`); the message is the
/// one the OCI door answers for a bad digest.
pub fn parse_digest(digest: &str) -> Result<Sha256Digest, ManifestError> {
    digest.parse().map_err(|_| {
        ManifestError::new(format!(
            "invalid digest `{}`: only sha256:<64 lowercase hex> is supported",
            digest.chars().take(80).collect::<String>()
        ))
    })
}

/// Parses an OCI digest of either supported algorithm
/// (`sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`); anything
/// else, another algorithm included, is refused with the message the OCI
/// door answers.
// SPEC: OCI image-spec descriptor.md — registered algorithms are sha256
// and sha512; an implementation that meets an unsupported algorithm MUST
// treat the digest as invalid.
pub fn parse_oci_digest(digest: &str) -> Result<OciDigest, ManifestError> {
    let parsed = match digest.split_once(':') {
        Some(("sha512", _)) => digest.parse().ok().map(OciDigest::Sha512),
        _ => digest.parse().ok().map(OciDigest::Sha256),
    };
    parsed.ok_or_else(|| {
        ManifestError::new(format!(
            "invalid digest `{}`: use sha256:<64 lowercase hex> or sha512:<128 lowercase hex>",
            digest.chars().take(80).collect::<String>()
        ))
    })
}

fn descriptor(json: &DescriptorJson) -> Result<Descriptor, ManifestError> {
    let digest = parse_oci_digest(&json.digest)
        .map_err(|e| ManifestError::new(format!("descriptor digest: {}", e.message)))?;
    if let Some(data) = &json.data {
        check_embedded_data(json, data)?;
    }
    Ok(Descriptor {
        media_type: json.media_type.clone(),
        digest,
        size: json.size,
    })
}

/// Checks a descriptor's `data`: base64 of exactly the content that its
/// digest and size name.
// SPEC: OCI image-spec descriptor.md — `data` "MUST conform to the Base 64
// encoding" and "The decoded data MUST be identical to the referenced
// content".
fn check_embedded_data(json: &DescriptorJson, data: &str) -> Result<(), ManifestError> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| ManifestError::new("descriptor data is not base64"))?;
    let hashed = if json.digest.starts_with("sha512:") {
        Sha512Digest::of(&decoded).to_string()
    } else {
        Sha256Digest::of(&decoded).to_string()
    };
    if decoded.len() as u64 != json.size || hashed != json.digest {
        return Err(ManifestError::new(format!(
            "descriptor data of {} is not the content it describes",
            json.digest.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// Whether `media_type` is a non-distributable layer of the image spec
/// (`application/vnd.oci.image.layer.nondistributable.v1.tar`, `+gzip`,
/// `+zstd`): its bytes are fetched from the descriptor's `urls`, and a
/// registry need not hold them.
pub fn is_nondistributable_layer(media_type: &str) -> bool {
    const NONDISTRIBUTABLE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    media_type
        .strip_prefix(NONDISTRIBUTABLE)
        .is_some_and(|rest| ["", "+gzip", "+zstd"].contains(&rest))
}

/// Parses and checks a pushed manifest: JSON with `schemaVersion` 2; a
/// media type that is an OCI image manifest or index, the same in the body
/// and in `content_type` (parameters after `;` ignored) when both say one,
/// else whichever does, else an image manifest; an image manifest has a
/// config; the descriptors that matter for its type (config and layers, or
/// manifests) and the subject have valid digests.
pub fn parse_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<ParsedManifest, ManifestError> {
    let manifest: ManifestJson = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::new(format!("not a manifest: {e}")))?;
    if manifest.schema_version != 2 {
        return Err(ManifestError::new("schemaVersion must be 2"));
    }
    let content_type = content_type.map(|c| c.split(';').next().unwrap_or(c).trim());
    let media_type = match (&manifest.media_type, content_type) {
        (Some(declared), Some(header)) if declared != header => {
            return Err(ManifestError::new(format!(
                "Content-Type {header} differs from the manifest's mediaType {declared}"
            )));
        }
        (Some(declared), _) => declared.clone(),
        (None, Some(header)) => header.to_owned(),
        (None, None) => IMAGE_MANIFEST.to_owned(),
    };
    if media_type != IMAGE_MANIFEST && media_type != IMAGE_INDEX {
        return Err(ManifestError::new(format!(
            "unsupported manifest type {media_type}: use an OCI image manifest or index"
        )));
    }
    let subject = manifest
        .subject
        .as_ref()
        .map(|s| descriptor(s).map(|d| d.digest))
        .transpose()?;
    let (config, layers, manifests) = if media_type == IMAGE_MANIFEST {
        let config = manifest
            .config
            .as_ref()
            .ok_or_else(|| ManifestError::new("an image manifest needs a config"))?;
        let config = descriptor(config)?;
        let layers = manifest
            .layers
            .iter()
            .flatten()
            .map(descriptor)
            .collect::<Result<Vec<_>, _>>()?;
        (Some(config), layers, Vec::new())
    } else {
        let manifests = manifest
            .manifests
            .iter()
            .flatten()
            .map(descriptor)
            .collect::<Result<Vec<_>, _>>()?;
        (None, Vec::new(), manifests)
    };
    Ok(ParsedManifest {
        digest: Sha256Digest::of(bytes),
        media_type,
        artifact_type: manifest.artifact_type,
        config_media_type: manifest.config.map(|c| c.media_type),
        config,
        layers,
        manifests,
        subject,
        annotations: manifest.annotations.unwrap_or_default(),
    })
}

/// What a wasm config (`application/vnd.wasm.config.v0+json`) claims about
/// its layer; only the fields the registry checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct WasmConfig {
    /// The digests of the layers it describes.
    #[serde(default, rename = "layerDigests")]
    pub layer_digests: Option<Vec<String>>,
    /// The component's world, if it is a component.
    #[serde(default)]
    pub component: Option<ComponentConfig>,
}

/// The imports and exports a wasm config claims.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ComponentConfig {
    /// Exported interfaces.
    #[serde(default)]
    pub exports: Vec<String>,
    /// Imported interfaces.
    #[serde(default)]
    pub imports: Vec<String>,
}

/// Parses a wasm config blob.
pub fn parse_wasm_config(bytes: &[u8]) -> Result<WasmConfig, ManifestError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::new(format!("the config is not a wasm config: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn manifest(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.wasm.config.v0+json","digest":"{D}","size":2}},"layers":[{{"mediaType":"application/wasm","digest":"{D}","size":8}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifests_parse() {
        let body = manifest("");
        let parsed = parse_manifest(body.as_bytes(), None).unwrap();
        assert_eq!(parsed.media_type, IMAGE_MANIFEST);
        assert_eq!(parsed.digest, Sha256Digest::of(body.as_bytes()));
        assert_eq!(parsed.layers.len(), 1);
        assert_eq!(parsed.layers[0].size, 8);
        assert!(parsed.subject.is_none());
        let with_subject = manifest(&format!(
            r#","subject":{{"mediaType":"{IMAGE_MANIFEST}","digest":"{D}","size":1}}"#
        ));
        let parsed = parse_manifest(
            with_subject.as_bytes(),
            Some(&format!("{IMAGE_MANIFEST}; charset=utf-8")),
        )
        .unwrap();
        assert_eq!(parsed.subject, Some(D.parse().unwrap()));
    }

    #[test]
    fn bad_manifests_are_refused_with_their_reason() {
        let cases: &[(String, Option<&str>, &str)] = &[
            ("{".into(), None, "not a manifest"),
            (
                manifest("").replace("\"schemaVersion\":2", "\"schemaVersion\":1"),
                None,
                "schemaVersion must be 2",
            ),
            (
                manifest(&format!(r#","mediaType":"{IMAGE_MANIFEST}""#)),
                Some(IMAGE_INDEX),
                "differs from the manifest's mediaType",
            ),
            (
                manifest(""),
                Some("application/vnd.docker.distribution.manifest.v2+json"),
                "unsupported manifest type",
            ),
            (
                r#"{"schemaVersion":2,"layers":[]}"#.into(),
                None,
                "an image manifest needs a config",
            ),
            (
                manifest("").replacen(D, "sha256:AB", 1),
                None,
                "descriptor digest: invalid digest `sha256:AB`",
            ),
        ];
        for (body, content_type, expected) in cases {
            let error = parse_manifest(body.as_bytes(), *content_type).unwrap_err();
            assert!(error.message.contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn sha512_names_resolve_through_aliases() {
        let sha512 = Sha512Digest::of(b"layer");
        let sha256 = Sha256Digest::of(b"layer");
        let subject = Sha512Digest::of(b"subject");
        let body = manifest(&format!(
            r#","subject":{{"mediaType":"{IMAGE_MANIFEST}","digest":"{subject}","size":1}}"#
        ))
        .replacen(
            &format!("\"{D}\",\"size\":8"),
            &format!("\"{sha512}\",\"size\":8"),
            1,
        );
        let parsed = parse_manifest(body.as_bytes(), None).unwrap();
        assert_eq!(parsed.layers[0].digest, OciDigest::Sha512(sha512));
        assert_eq!(parsed.subject, Some(OciDigest::Sha512(subject)));
        assert_eq!(
            parsed.sha512_names(),
            [sha512, subject].into_iter().collect::<BTreeSet<_>>()
        );
        assert_eq!(parsed.clone().resolve(&BTreeMap::new()), Err(sha512));
        let resolved = parsed
            .resolve(&[(sha512, sha256)].into_iter().collect())
            .unwrap();
        assert_eq!(resolved.layers[0].digest, sha256);
        assert_eq!(resolved.layers[0].name, OciDigest::Sha512(sha512));
        assert_eq!(resolved.config.unwrap().digest, D.parse().unwrap());
        // An unknown subject is kept by its name.
        assert_eq!(resolved.subject, None);
        assert_eq!(resolved.subject_name, Some(OciDigest::Sha512(subject)));
        for bad in ["md5:00", "sha384:00", "sha512:AB", "sha512:00"] {
            let error = parse_oci_digest(bad).unwrap_err();
            assert!(error.message.contains("invalid digest"), "{bad}");
        }
    }

    #[test]
    fn indexes_check_their_manifests_only() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{IMAGE_INDEX}","manifests":[{{"mediaType":"{IMAGE_MANIFEST}","digest":"{D}","size":3}}],"layers":[{{"mediaType":"x","digest":"bad","size":1}}]}}"#
        );
        let parsed = parse_manifest(body.as_bytes(), None).unwrap();
        assert_eq!(parsed.manifests.len(), 1);
        assert!(parsed.layers.is_empty() && parsed.config.is_none());
        let bad = body.replacen(D, "sha256:zz", 1);
        assert!(parse_manifest(bad.as_bytes(), None).is_err());
    }

    #[test]
    fn embedded_data_must_be_the_content() {
        use base64::Engine as _;
        let content = b"{}";
        let digest = Sha256Digest::of(content);
        let with = |data: &str, digest: &str, size: usize| {
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{digest}","size":{size},"data":"{data}"}},"layers":[],"x-custom":{{"kept":true}}}}"#
            )
        };
        let good = base64::engine::general_purpose::STANDARD.encode(content);
        let body = with(&good, &digest.to_string(), 2);
        let parsed = parse_manifest(body.as_bytes(), None).unwrap();
        assert_eq!(parsed.config.unwrap().size, 2);
        for (data, digest, size) in [
            ("e30", digest.to_string(), 2),
            ("!!", digest.to_string(), 2),
            (good.as_str(), digest.to_string(), 3),
            (good.as_str(), Sha256Digest::of(b"[]").to_string(), 2),
        ] {
            let body = with(data, &digest, size);
            assert!(parse_manifest(body.as_bytes(), None).is_err(), "{body}");
        }
    }

    #[test]
    fn nondistributable_layers() {
        for media_type in [
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        ] {
            assert!(is_nondistributable_layer(media_type), "{media_type}");
        }
        for media_type in [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+bzip",
            "application/wasm",
        ] {
            assert!(!is_nondistributable_layer(media_type), "{media_type}");
        }
    }

    #[test]
    fn wasm_configs() {
        let config =
            parse_wasm_config(br#"{"layerDigests":["a"],"component":{"exports":["x"]}}"#).unwrap();
        assert_eq!(config.layer_digests, Some(vec!["a".to_owned()]));
        assert_eq!(config.component.unwrap().exports, vec!["x".to_owned()]);
        assert!(
            parse_wasm_config(b"1")
                .unwrap_err()
                .message
                .starts_with("the config is not a wasm config")
        );
    }
}
