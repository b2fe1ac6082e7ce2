//! Local key files: `ecdsa-p256:<base64 scalar>` (operator keys) or
//! `ed25519:<base64 seed>` (note and witness keys), mode 0600.

use std::io::Write as _;
use std::path::Path;

use cairn_crypto::signer::LocalKey;
use cairn_crypto::{EcdsaPrivateKey, Ed25519PrivateKey};
use zeroize::Zeroizing;

/// Reads a key file of either kind, refusing files readable by other users.
pub fn read_any_key(path: &Path) -> anyhow::Result<LocalKey> {
    let text = read_private(path)?;
    let text = text.trim();
    if text.starts_with("ed25519:") {
        return Ed25519PrivateKey::parse(text)
            .map(LocalKey::Ed25519)
            .map_err(|e| {
                anyhow::anyhow!("key {} is not a valid ed25519 key: {e}", path.display())
            });
    }
    EcdsaPrivateKey::parse(text)
        .map(LocalKey::EcdsaP256)
        .map_err(|e| {
            anyhow::anyhow!(
                "key {} is neither an ecdsa-p256 nor an ed25519 private key: {e}",
                path.display()
            )
        })
}

fn read_private(path: &Path) -> anyhow::Result<Zeroizing<String>> {
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
    Ok(Zeroizing::new(std::fs::read_to_string(path).map_err(
        |e| anyhow::anyhow!("cannot read key {}: {e}", path.display()),
    )?))
}

/// Reads an ECDSA P-256 key file (`ecdsa-p256:<base64 scalar>`), refusing
/// files readable by other users.
pub fn read_key(path: &Path) -> anyhow::Result<EcdsaPrivateKey> {
    match read_any_key(path)? {
        LocalKey::EcdsaP256(key) => Ok(key),
        LocalKey::Ed25519(_) => anyhow::bail!(
            "key {} is an ed25519 key, but an ecdsa-p256 key is needed",
            path.display()
        ),
    }
}

/// Writes a new key to `path` with mode 0600. Never overwrites.
pub fn write_new_key(path: &Path, key: &LocalKey) -> anyhow::Result<()> {
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
        .map_err(|e| anyhow::anyhow!("cannot create key {}: {e}", path.display()))?;
    let text = match key {
        LocalKey::EcdsaP256(key) => key.to_warg_string(),
        LocalKey::Ed25519(key) => key.to_key_string(),
    };
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

/// Generates an ECDSA P-256 key from the operating system's random number
/// generator.
pub fn generate() -> EcdsaPrivateKey {
    EcdsaPrivateKey::generate(&mut rand::rngs::OsRng)
}

/// Generates an Ed25519 key from the operating system's random number
/// generator.
pub fn generate_ed25519() -> Ed25519PrivateKey {
    Ed25519PrivateKey::generate(&mut rand::rngs::OsRng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_keys_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = generate();
        write_new_key(&path, &LocalKey::EcdsaP256(key.clone())).unwrap();
        assert_eq!(read_key(&path).unwrap().public_key(), key.public_key());
        assert!(
            write_new_key(&path, &LocalKey::EcdsaP256(key)).is_err(),
            "never overwrites"
        );
        let ed_path = dir.path().join("e");
        let ed = generate_ed25519();
        write_new_key(&ed_path, &LocalKey::Ed25519(ed.clone())).unwrap();
        match read_any_key(&ed_path).unwrap() {
            LocalKey::Ed25519(read) => assert_eq!(read.public_key(), ed.public_key()),
            LocalKey::EcdsaP256(_) => panic!("wrong kind"),
        }
        assert!(read_key(&ed_path).is_err());
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
