//! Finding the registry a command works on.
//!
//! Only `cairn serve` creates a registry (its data directory, database and
//! keys). Every other command that opens one (administration, `fsck`, `gc`,
//! `migrate`, `operator …`) first checks that the settings name a registry
//! that exists, and otherwise fails with a sentence naming the directory
//! and what to do — rather than a database driver's "unable to open
//! database file", or, worse, an empty database created in the wrong
//! place:
//!
//! * with SQLite, the database file and its directory must exist;
//! * with PostgreSQL (which cannot be checked without connecting), the
//!   data directory must exist when a key file is in it (as the operator,
//!   note and publisher keys are by default).

use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::signers::KeyUri;

/// The SQLite database file a `sqlite:` URL names, as the store opens it.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

/// Fails unless `settings` name an existing registry (see the module
/// documentation).
pub fn require(settings: &Settings) -> anyhow::Result<()> {
    let default_url = format!("sqlite://{}", settings.data_dir.join("cairn.db").display());
    let hint = |dir: &Path| {
        if settings.database_url == default_url {
            format!(
                "start `cairn serve --data-dir {}` once to initialise it, or pass the \
                 --data-dir (or --database-url) of an existing registry",
                dir.display()
            )
        } else {
            "start `cairn serve` with the same --database-url once to initialise it, or pass \
             the --database-url of an existing registry"
                .to_owned()
        }
    };
    match sqlite_path(&settings.database_url) {
        Some(file) => {
            let dir = match file.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dir.is_dir() {
                anyhow::bail!(
                    "no registry at {}: the directory does not exist; {}",
                    dir.display(),
                    hint(&dir)
                );
            }
            if !file.is_file() {
                anyhow::bail!(
                    "no registry at {}: it holds no database ({} does not exist); {}",
                    dir.display(),
                    file.display(),
                    hint(&dir)
                );
            }
        }
        None => {
            let dir = &settings.data_dir;
            let inside = |key: &KeyUri| matches!(key, KeyUri::File(path) if path.starts_with(dir));
            let keys = [
                &settings.operator_key,
                &settings.note_key,
                &settings.publisher_key,
            ];
            if !dir.is_dir() && keys.into_iter().any(inside) {
                anyhow::bail!(
                    "no registry at {}: the directory (its key files) does not exist; start \
                     `cairn serve --data-dir {}` once to initialise it, or pass the --data-dir \
                     of an existing registry",
                    dir.display(),
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ServeArgs, StoreArgs, resolve};

    fn settings(data_dir: &Path, database_url: Option<String>) -> Settings {
        resolve(&ServeArgs {
            store: StoreArgs {
                data_dir: Some(data_dir.to_path_buf()),
                database_url,
                ..StoreArgs::default()
            },
            ..ServeArgs::default()
        })
        .unwrap()
    }

    fn error(settings: &Settings) -> String {
        require(settings).unwrap_err().to_string()
    }

    #[test]
    fn a_missing_directory_is_named_with_what_to_do() {
        let missing = Path::new("/nonexistent/cairn-registry");
        let message = error(&settings(missing, None));
        assert!(
            message.starts_with(
                "no registry at /nonexistent/cairn-registry: the directory does not exist; \
                 start `cairn serve --data-dir /nonexistent/cairn-registry` once"
            ),
            "{message}"
        );
        let message = error(&settings(
            missing,
            Some("postgres://cairn@db/cairn".to_owned()),
        ));
        assert!(
            message.starts_with("no registry at /nonexistent/cairn-registry: the directory"),
            "{message}"
        );
    }

    #[test]
    fn a_directory_without_a_database_is_not_a_registry() {
        let dir = tempfile::tempdir().unwrap();
        let message = error(&settings(dir.path(), None));
        assert!(message.contains("it holds no database"), "{message}");
        std::fs::write(dir.path().join("cairn.db"), b"").unwrap();
        require(&settings(dir.path(), None)).unwrap();
        let elsewhere = format!("sqlite://{}/other.db", dir.path().display());
        let message = error(&settings(dir.path(), Some(elsewhere)));
        assert!(
            message.contains("with the same --database-url"),
            "{message}"
        );
    }
}
