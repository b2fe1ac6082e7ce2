//! Command line, environment and configuration file.
//!
//! Every setting can be given as a flag, as a `CAIRN_*` environment
//! variable, or in a TOML file named by `--config` / `CAIRN_CONFIG`.
//! Precedence: flag, then environment, then file, then the default.
//! Loading has no side effects; nothing is created until a command runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// The `cairn` command.
#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "A transparency registry for WebAssembly components"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry server.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(StoreArgs),
    /// Generate an ECDSA P-256 operator key file (mode 0600) and print its public key.
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Recompute every log and map hash from the stored records and compare
    /// them with the stored nodes, log states and checkpoints; re-hash every
    /// released blob. Exits non-zero on any mismatch.
    Fsck(FsckArgs),
    /// Manage namespaces.
    Namespace {
        /// The namespace command.
        #[command(subcommand)]
        command: NamespaceCommand,
    },
}

/// `cairn namespace …`.
#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// Define a namespace (appends a `defineNamespace` operator record).
    Create {
        /// The namespace, lowercase kebab case (e.g. `my-org`).
        namespace: String,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Options naming the store and the operator key.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreArgs {
    /// A TOML configuration file.
    #[arg(long, env = "CAIRN_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory for the embedded database, blobs and the operator key.
    /// Default: ./cairn-data
    #[arg(long, env = "CAIRN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database: `sqlite://PATH` or `postgres://…`. Default: a SQLite file
    /// in the data directory.
    #[arg(long, env = "CAIRN_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The operator key file. Default: `<data dir>/operator.key` (created
    /// on first start).
    #[arg(long, env = "CAIRN_OPERATOR_KEY")]
    pub operator_key: Option<PathBuf>,
}

/// Options of `cairn fsck`.
#[derive(Debug, Clone, Default, Args)]
pub struct FsckArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Directory of content blobs. Default: `<data dir>/blobs`
    #[arg(long, env = "CAIRN_BLOB_DIR")]
    pub blob_dir: Option<PathBuf>,
    /// Do not re-hash the blobs (only the log, the map and the logs' states).
    #[arg(long)]
    pub skip_blobs: bool,
}

/// Options of `cairn serve`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// Store options.
    #[command(flatten)]
    #[serde(flatten)]
    pub store: StoreArgs,
    /// Address to listen on. Default: 127.0.0.1:8080
    #[arg(long, env = "CAIRN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The URL clients use to reach this server (content and upload URLs
    /// are built from it). Default: derived from the listen address.
    #[arg(long, env = "CAIRN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Directory for content blobs. Default: `<data dir>/blobs`
    #[arg(long, env = "CAIRN_BLOB_DIR")]
    pub blob_dir: Option<PathBuf>,
    /// Largest accepted content upload in bytes. Default: 104857600 (100 MiB)
    #[arg(long, env = "CAIRN_MAX_CONTENT_BYTES")]
    pub max_content_bytes: Option<u64>,
    /// Largest accepted record in bytes. Default: 65536
    #[arg(long, env = "CAIRN_MAX_RECORD_BYTES")]
    pub max_record_bytes: Option<usize>,
    /// Namespaces to define when a new registry is initialised (repeatable).
    #[arg(long = "namespace", env = "CAIRN_NAMESPACES", value_delimiter = ',')]
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Seconds before a request (other than an upload) times out. Default: 30
    #[arg(long, env = "CAIRN_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,
    /// Seconds before a content upload times out. Default: 900
    #[arg(long, env = "CAIRN_UPLOAD_TIMEOUT")]
    pub upload_timeout: Option<u64>,
    /// Requests served at once; beyond it requests get 503. Default: 512
    #[arg(long, env = "CAIRN_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Database connections. Default: 16
    #[arg(long, env = "CAIRN_DB_CONNECTIONS")]
    pub db_connections: Option<u32>,
}

/// Settings with every default applied.
#[derive(Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Database URL (may contain a password: never print it; use
    /// [`Settings::database_display`]).
    pub database_url: String,
    /// Operator key file.
    pub operator_key: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Public URL, if given.
    pub public_url: Option<String>,
    /// Blob directory.
    pub blob_dir: PathBuf,
    /// Upload limit.
    pub max_content_bytes: u64,
    /// Record limit.
    pub max_record_bytes: usize,
    /// Initial namespaces.
    pub namespaces: Vec<String>,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Upload timeout.
    pub upload_timeout: Duration,
    /// Concurrent requests.
    pub max_in_flight: usize,
    /// Database connections.
    pub db_connections: u32,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("database", &self.database_display())
            .field("operator_key", &self.operator_key)
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("blob_dir", &self.blob_dir)
            .finish_non_exhaustive()
    }
}

/// A URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Settings {
    /// The database URL without its password.
    pub fn database_display(&self) -> String {
        redact_url(&self.database_url)
    }
}

/// Reads a configuration file.
pub fn read_file(path: &Path) -> anyhow::Result<ServeArgs> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read configuration file {}: {e}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid configuration file {}: {e}", path.display()))
}

fn config_file(store: &StoreArgs) -> anyhow::Result<ServeArgs> {
    match &store.config {
        Some(path) => read_file(path),
        None => Ok(ServeArgs::default()),
    }
}

/// Resolves serve options: flags/env over the file over defaults.
pub fn resolve(args: &ServeArgs) -> anyhow::Result<Settings> {
    let file = config_file(&args.store)?;
    let data_dir = args
        .store
        .data_dir
        .clone()
        .or(file.store.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("cairn-data"));
    let database_url = args
        .store
        .database_url
        .clone()
        .or(file.store.database_url.clone())
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("cairn.db").display()));
    let operator_key = args
        .store
        .operator_key
        .clone()
        .or(file.store.operator_key.clone())
        .unwrap_or_else(|| data_dir.join("operator.key"));
    let namespaces = if args.namespaces.is_empty() {
        file.namespaces.clone()
    } else {
        args.namespaces.clone()
    };
    for namespace in &namespaces {
        if !cairn_protocol::name::is_valid_namespace(namespace) {
            anyhow::bail!(
                "invalid namespace `{namespace}`: use lowercase kebab case, e.g. `my-org`"
            );
        }
    }
    let settings = Settings {
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        public_url: args
            .public_url
            .clone()
            .or(file.public_url.clone())
            .map(|u| u.trim_end_matches('/').to_owned()),
        blob_dir: args
            .blob_dir
            .clone()
            .or(file.blob_dir.clone())
            .unwrap_or_else(|| data_dir.join("blobs")),
        max_content_bytes: args
            .max_content_bytes
            .or(file.max_content_bytes)
            .unwrap_or(100 * 1024 * 1024),
        max_record_bytes: args
            .max_record_bytes
            .or(file.max_record_bytes)
            .unwrap_or(64 * 1024),
        namespaces,
        request_timeout: Duration::from_secs(
            args.request_timeout.or(file.request_timeout).unwrap_or(30),
        ),
        upload_timeout: Duration::from_secs(
            args.upload_timeout.or(file.upload_timeout).unwrap_or(900),
        ),
        max_in_flight: args.max_in_flight.or(file.max_in_flight).unwrap_or(512),
        db_connections: args.db_connections.or(file.db_connections).unwrap_or(16),
        data_dir,
        database_url,
        operator_key,
    };
    if let Some(url) = &settings.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        anyhow::bail!("--public-url must be an absolute http:// or https:// URL, got `{url}`");
    }
    Ok(settings)
}

/// Resolves store options (for commands other than `serve`).
pub fn resolve_store(store: &StoreArgs) -> anyhow::Result<Settings> {
    resolve(&ServeArgs {
        store: store.clone(),
        ..ServeArgs::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cairn.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/cairn\"\nlisten = \"0.0.0.0:9000\"\nnamespaces = [\"acme\"]\nmax_content_bytes = 10\n",
        )
        .unwrap();
        let args = ServeArgs {
            store: StoreArgs {
                config: Some(file),
                ..StoreArgs::default()
            },
            max_content_bytes: Some(20),
            ..ServeArgs::default()
        };
        let settings = resolve(&args).unwrap();
        assert_eq!(settings.data_dir, PathBuf::from("/srv/cairn"));
        assert_eq!(settings.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(settings.namespaces, vec!["acme".to_string()]);
        assert_eq!(settings.max_content_bytes, 20);
        assert_eq!(settings.database_url, "sqlite:///srv/cairn/cairn.db");
        assert_eq!(
            settings.operator_key,
            PathBuf::from("/srv/cairn/operator.key")
        );
        assert_eq!(settings.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn bad_configuration_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cairn.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let args = ServeArgs {
            store: StoreArgs {
                config: Some(file),
                ..StoreArgs::default()
            },
            ..ServeArgs::default()
        };
        assert!(resolve(&args).unwrap_err().to_string().contains("lisen"));
        let bad_ns = ServeArgs {
            namespaces: vec!["My_Org".into()],
            ..ServeArgs::default()
        };
        assert!(resolve(&bad_ns).is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://cairn:s3cret@db:5432/cairn"),
            "postgres://cairn:***@db:5432/cairn"
        );
        assert_eq!(redact_url("sqlite:///x/cairn.db"), "sqlite:///x/cairn.db");
        let settings = resolve(&ServeArgs {
            store: StoreArgs {
                database_url: Some("postgres://u:pw@h/d".into()),
                ..StoreArgs::default()
            },
            ..ServeArgs::default()
        })
        .unwrap();
        assert!(!format!("{settings:?}").contains("pw@"));
    }
}
