//! The Sigstore trusted root named by `--trusted-root`: read once at
//! start, checked, never fetched. A file that cannot be used stops the
//! server with a message saying what to fix (see ops/trusted-root.md).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use cairn_sigstore::TrustedRoot;

/// Reads and checks `trusted_root.json` at `path`.
pub fn load(path: &Path) -> anyhow::Result<Arc<TrustedRoot>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("--trusted-root {}: cannot read the file", path.display()))?;
    let root = TrustedRoot::from_json(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "--trusted-root {}: {e} (expected a Sigstore trusted_root.json, as `cosign trusted-root \
             create` or the Sigstore TUF repository write it)",
            path.display()
        )
    })?;
    if root.certificate_authorities.is_empty() || root.tlogs.is_empty() {
        anyhow::bail!(
            "--trusted-root {}: it names {} certificate authorities and {} transparency logs; \
             keyless verification needs at least one of each",
            path.display(),
            root.certificate_authorities.len(),
            root.tlogs.len()
        );
    }
    Ok(Arc::new(root))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn unusable_roots_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let error = load(&missing).unwrap_err().to_string();
        assert!(error.contains("cannot read the file"), "{error}");

        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, b"{not json").unwrap();
        let error = load(&garbage).unwrap_err().to_string();
        assert!(error.contains("invalid trusted root"), "{error}");

        let empty = dir.path().join("empty.json");
        std::fs::write(
            &empty,
            br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#,
        )
        .unwrap();
        let error = load(&empty).unwrap_err().to_string();
        assert!(error.contains("needs at least one of each"), "{error}");
    }
}
