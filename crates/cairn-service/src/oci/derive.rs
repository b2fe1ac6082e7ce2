//! The OCI view of a release published over warg: a manifest and a config
//! derived deterministically from the logged release (its version, content
//! digest and size, record timestamp) and from what the content's bytes
//! are. Anyone can re-derive them, byte for byte, so they need no record of
//! their own.

use cairn_crypto::Sha256Digest;
use cairn_protocol::{PackageName, Timestamp};
use semver::Version;
use serde_json::json;

use super::{IMAGE_MANIFEST, WASM_CONFIG, WASM_LAYER};

/// A derived manifest and config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// Its digest.
    pub manifest_digest: Sha256Digest,
    /// The config's bytes.
    pub config: Vec<u8>,
    /// Its digest.
    pub config_digest: Sha256Digest,
}

/// RFC 3339 UTC with nanoseconds, as `chrono` writes it (what oci-wasm
/// puts in `created`).
pub fn rfc3339(timestamp: &Timestamp) -> String {
    // Days to civil date (Howard Hinnant's algorithm), for 1970..=9999.
    let days = timestamp.seconds.div_euclid(86_400);
    let secs = timestamp.seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let fraction = if timestamp.nanos == 0 {
        String::new()
    } else {
        format!(".{:09}", timestamp.nanos)
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Derives the manifest and config of `package@version`, whose content is
/// `content` (`size` bytes), released by a record stamped `created`, and
/// described by `wasm` (what inspecting the bytes found, if WebAssembly).
pub fn derive(
    package: &PackageName,
    version: &Version,
    content: &Sha256Digest,
    size: u64,
    created: &Timestamp,
    wasm: Option<&cairn_wasm::WasmInfo>,
) -> Derived {
    let component = wasm
        .filter(|w| w.kind != cairn_wasm::Kind::Module)
        .map(|w| json!({"exports": w.exports, "imports": w.imports, "target": null}));
    let os = if component.is_some() {
        "wasip2"
    } else {
        "wasip1"
    };
    // SPEC: oci-wasm `WasmConfig` — fields in this order, `author` null.
    let config = format!(
        "{{\"created\":{},\"author\":null,\"architecture\":\"wasm\",\"os\":\"{os}\",\"layerDigests\":[\"{content}\"],\"component\":{}}}",
        serde_json::Value::String(rfc3339(created)),
        component.map_or_else(|| "null".to_owned(), |c| c.to_string())
    )
    .into_bytes();
    let config_digest = Sha256Digest::of(&config);
    // Keys sorted, no whitespace: the canonical form oci-client writes.
    let manifest = json!({
        "annotations": {"org.opencontainers.image.version": version.to_string()},
        "config": {
            "digest": config_digest.to_string(),
            "mediaType": WASM_CONFIG,
            "size": config.len(),
        },
        "layers": [{
            "annotations": {"org.opencontainers.image.title": format!("{}.wasm", package.name())},
            "digest": content.to_string(),
            "mediaType": WASM_LAYER,
            "size": size,
        }],
        "mediaType": IMAGE_MANIFEST,
        "schemaVersion": 2,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    Derived {
        manifest_digest: Sha256Digest::of(&manifest),
        manifest,
        config,
        config_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        let t = |seconds, nanos| rfc3339(&Timestamp { seconds, nanos });
        assert_eq!(t(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(t(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(t(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(t(253_402_300_799, 0), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn derivation_is_deterministic_and_parses() {
        let package: PackageName = "ns:hello".parse().unwrap();
        let version: Version = "1.2.3".parse().unwrap();
        let content = Sha256Digest::of(b"wasm");
        let created = Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        let a = derive(&package, &version, &content, 4, &created, None);
        let b = derive(&package, &version, &content, 4, &created, None);
        assert_eq!(a, b);
        let manifest: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(manifest["layers"][0]["digest"], content.to_string());
        assert_eq!(manifest["config"]["digest"], a.config_digest.to_string());
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.version"],
            "1.2.3"
        );
        let config: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(config["layerDigests"][0], content.to_string());
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["os"], "wasip1");
    }
}
