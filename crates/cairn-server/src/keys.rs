//! The operator key file.

use std::io::Write as _;
use std::path::Path;

use cairn_crypto::EcdsaPrivateKey;
use zeroize::Zeroizing;

/// Reads an operator key file (`ecdsa-p256:<base64 scalar>`), refusing
/// files readable by other users.
pub fn read_key(path: &Path) -> anyhow::Result<EcdsaPrivateKey> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|e| anyhow::anyhow!("cannot read operator key {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "operator key {} is accessible by other users (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read operator key {}: {e}", path.display()))?,
    );
    EcdsaPrivateKey::parse(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "operator key {} is not an ecdsa-p256 private key: {e}",
            path.display()
        )
    })
}

/// Writes a new key to `path` with mode 0600. Never overwrites.
pub fn write_new_key(path: &Path, key: &EcdsaPrivateKey) -> anyhow::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create operator key {}: {e}", path.display()))?;
    file.write_all(key.to_warg_string().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

/// Generates a key from the operating system's random number generator.
pub fn generate() -> EcdsaPrivateKey {
    EcdsaPrivateKey::generate(&mut rand::rngs::OsRng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_keys_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = generate();
        write_new_key(&path, &key).unwrap();
        assert_eq!(read_key(&path).unwrap().public_key(), key.public_key());
        assert!(write_new_key(&path, &key).is_err(), "never overwrites");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(
                read_key(&path)
                    .unwrap_err()
                    .to_string()
                    .contains("chmod 600")
            );
        }
    }
}
