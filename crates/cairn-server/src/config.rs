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

use crate::signers::KeyUri;

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
    /// Log lines on stderr: `text` (coloured only on a terminal) or `json`
    /// (one object per line, for log shippers). The filter is `CAIRN_LOG`.
    #[arg(
        long,
        global = true,
        env = "CAIRN_LOG_FORMAT",
        value_enum,
        default_value_t = crate::logging::LogFormat::Text
    )]
    pub log_format: crate::logging::LogFormat,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry server.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(StoreArgs),
    /// Generate a key file (mode 0600) and print its public key: ECDSA
    /// P-256 (operator keys, warg signing keys) or Ed25519 (`--ed25519`:
    /// note and witness keys).
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// Generate an Ed25519 key instead of ECDSA P-256.
        #[arg(long)]
        ed25519: bool,
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
    /// Manage identities (people, robot accounts) and their warg keys.
    Identity {
        /// The identity command.
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Manage API tokens.
    Token {
        /// The token command.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the admin audit log.
    AdminLog {
        /// Only entries after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The operator's keys.
    Operator {
        /// The operator command.
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Audit a cairn registry from its public API. Exit codes: 0 clean,
    /// 1 registry unreachable, 2 evidence of misbehaviour or inconsistent
    /// data (printed), 3 refused (e.g. a checkpoint older than the trusted
    /// one), 4 local problem.
    Audit {
        /// The audit command.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Verify what you fetched (a `wkg.lock`, a file, an OCI manifest)
    /// against the registry's log. Exit codes: 0 verified, 1 not verified,
    /// 2 evidence of misbehaviour (printed), 3 refused, 4 local problem.
    Verify {
        /// The verify command.
        #[command(subcommand)]
        command: crate::verify::VerifyCommand,
    },
    /// Run a tlog-witness (`c2sp.org/tlog-witness`) for the logs given.
    Witness(WitnessArgs),
    /// Withhold content from every door (a legal takedown, a secret leaked
    /// inside a component), or serve it again. The decision is logged; the
    /// records naming the content stay and keep verifying.
    Content {
        /// The content command.
        #[command(subcommand)]
        command: ContentCommand,
    },
    /// Delete the stored bytes of withheld content, and blobs and upload
    /// leftovers nothing references (older than `--grace`). Without
    /// `--apply`, only lists what it would delete.
    Gc(GcArgs),
}

/// What an auditor trusts.
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// The log's C2SP verifier key (`cairn operator vkey` prints it); its
    /// name is the log's origin.
    #[arg(long, env = "CAIRN_AUDIT_VKEY")]
    pub vkey: String,
    /// A tlog-policy file whose witness quorum every checkpoint must meet.
    #[arg(long, env = "CAIRN_AUDIT_POLICY")]
    pub policy: Option<PathBuf>,
}

/// `cairn audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Follow the log: verify each new checkpoint and its consistency with
    /// the trusted one kept in `--state`; never move backwards.
    Follow {
        /// The registry's URL.
        url: String,
        /// Trust options.
        #[command(flatten)]
        trust: TrustArgs,
        /// Directory holding the trusted checkpoint (and any evidence).
        #[arg(long)]
        state: PathBuf,
        /// Check again every this many seconds; without it, check once.
        #[arg(long)]
        interval: Option<u64>,
        /// After each step, replay the whole log and check that the OCI
        /// door serves, for every tag and every logged manifest, what the
        /// metadata and package logs say (exit 2 with the contradicting
        /// signed record if not).
        #[arg(long)]
        oci: bool,
        /// A token (`Authorization: Bearer`) for the OCI door's reads.
        #[arg(
            long,
            env = "CAIRN_AUDIT_TOKEN",
            hide_env_values = true,
            requires = "oci"
        )]
        token: Option<String>,
    },
    /// Download every tile and entry, recompute every hash and the map root,
    /// and re-validate every operator and package log.
    Fsck {
        /// The registry's URL.
        url: String,
        /// Trust options.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Recheck every logged signature verdict: fetch each signature
    /// manifest and blob over the OCI door and verify it again against the
    /// namespace's trust rules in force when it was logged (exit 2 with the
    /// signed record when one does not hold).
    Signatures {
        /// The registry's URL.
        url: String,
        /// Trust options.
        #[command(flatten)]
        trust: TrustArgs,
        /// The Sigstore `trusted_root.json` the registry verifies keyless
        /// signatures with; without it keyless verdicts are not rechecked
        /// (keyed ones are).
        #[arg(long, env = "CAIRN_AUDIT_TRUSTED_ROOT")]
        trusted_root: Option<PathBuf>,
        /// A token (`Authorization: Bearer`) for the OCI door's reads.
        #[arg(long, env = "CAIRN_AUDIT_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Prove a package's full history against a trusted checkpoint.
    VerifyPackage {
        /// The registry's URL.
        url: String,
        /// The package, `namespace:name`.
        package: String,
        /// Trust options.
        #[command(flatten)]
        trust: TrustArgs,
        /// A `follow` state directory whose checkpoint to trust; without it
        /// the log's current checkpoint is verified and used.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Verify an inclusion receipt (`GET /receipt/{logId}/{recordId}`)
    /// offline.
    VerifyReceipt {
        /// The receipt file.
        file: PathBuf,
        /// Trust options.
        #[command(flatten)]
        trust: TrustArgs,
    },
}

/// Options of `cairn witness`.
#[derive(Debug, Clone, Args)]
pub struct WitnessArgs {
    /// The witness key (Ed25519): `file:PATH` or `awskms:///KEY`. A missing
    /// key file is created.
    #[arg(long, env = "CAIRN_WITNESS_KEY")]
    pub key: String,
    /// The witness's name (a schema-less URL identifying it).
    #[arg(long, env = "CAIRN_WITNESS_NAME")]
    pub name: String,
    /// A log to witness, by its C2SP verifier key (repeatable).
    #[arg(long = "log", required = true)]
    pub logs: Vec<String>,
    /// Directory for the latest cosigned checkpoint of each log.
    #[arg(long, env = "CAIRN_WITNESS_STATE")]
    pub state: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "CAIRN_WITNESS_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
}

/// `cairn operator …`.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Rotate the operator key: append an operator record, signed by the
    /// current key, that grants the new key every operator permission and
    /// revokes them from the current one. Later checkpoints are signed with
    /// the new key. Works with the server running or stopped.
    Rotate {
        /// The new key: `file:PATH` or `awskms:///KEY`.
        #[arg(long)]
        new_key: String,
        /// Store options (`--operator-key` names the current key).
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the C2SP verifier key of the note key (give it to auditors).
    Vkey {
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
        /// The checkpoint origin, if not the stored one.
        #[arg(long, env = "CAIRN_ORIGIN")]
        origin: Option<String>,
    },
}

/// `cairn namespace …`.
#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace: define it in the operator log and record its
    /// owners (and policy) in the registry log. Names confusable with an
    /// existing namespace (`myorg` vs `my-org`) are refused.
    Create {
        /// The namespace, lowercase kebab case (e.g. `my-org`).
        namespace: String,
        /// An identity that owns the namespace (repeatable).
        #[arg(long = "owner")]
        owners: Vec<String>,
        /// Open the namespace to any warg key (development registries).
        #[arg(long, conflicts_with_all = ["owners", "upstream"])]
        open: bool,
        /// Import the namespace read-only from this upstream OCI registry
        /// (e.g. `https://ghcr.io`); its packages are mirrored on demand.
        #[arg(long)]
        upstream: Option<String>,
        /// Prepended to `<namespace>/<name>` on the upstream (e.g. `webassembly/`).
        #[arg(long, default_value = "", requires = "upstream")]
        upstream_prefix: String,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a namespace's owners, publishers and policy.
    Show {
        /// The namespace.
        namespace: String,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Add or remove owners and publishers.
    Members {
        /// The namespace.
        namespace: String,
        /// Identities to add as owners.
        #[arg(long)]
        add_owner: Vec<String>,
        /// Identities to remove from the owners.
        #[arg(long)]
        remove_owner: Vec<String>,
        /// Identities to add as publishers.
        #[arg(long)]
        add_publisher: Vec<String>,
        /// Identities to remove from the publishers.
        #[arg(long)]
        remove_publisher: Vec<String>,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set the namespace's publish policy (checked before anything is logged).
    Policy {
        /// The namespace.
        namespace: String,
        /// Largest content in bytes.
        #[arg(long)]
        max_bytes: Option<u64>,
        /// Accept core modules besides components.
        #[arg(long)]
        allow_modules: bool,
        /// Accept content that is not WebAssembly.
        #[arg(long)]
        allow_other: bool,
        /// Do not require a WIT package's embedded name and version to be
        /// the release's coordinates.
        #[arg(long)]
        no_name_check: bool,
        /// Only imports matching one of these patterns are accepted
        /// (e.g. `wasi:*`, `wasi:http/*`; repeatable).
        #[arg(long)]
        allow_import: Vec<String>,
        /// Imports matching one of these patterns are refused (e.g.
        /// `wasi:sockets/*`; repeatable).
        #[arg(long)]
        deny_import: Vec<String>,
        /// Tags that may not move once set, besides versions (which never
        /// do): patterns where `*` matches anything, e.g. `v*` (repeatable).
        #[arg(long)]
        immutable_tags: Vec<String>,
        /// A public key whose signatures are trusted: a PEM file as
        /// `cosign generate-key-pair` writes `cosign.pub` (ECDSA P-256 or
        /// P-384, Ed25519, RSA; repeatable).
        #[arg(long, value_name = "PATH")]
        signature_key: Vec<PathBuf>,
        /// A keyless signer: `ISSUER=IDENTITY_REGEX`, as cosign's
        /// `--certificate-oidc-issuer` and `--certificate-identity-regexp`
        /// (the regular expression must match the whole identity;
        /// repeatable).
        #[arg(long, value_name = "ISSUER=IDENTITY_REGEX")]
        signature_identity: Vec<String>,
        /// Every release needs a signature by a listed key or identity.
        #[arg(long)]
        require_signature: bool,
        /// An in-toto attestation of this predicate type, by a listed key
        /// or identity, is required; attestations of other types are
        /// refused (e.g. `https://slsa.dev/provenance/v1`; repeatable).
        #[arg(long, value_name = "PREDICATE_TYPE")]
        require_attestation: Vec<String>,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Trust a CI workflow to publish through OIDC (trusted publishing):
    /// tokens from `--issuer` whose claims match `--claim`s are exchanged
    /// for short-lived publish tokens acting as `--identity`.
    Trust {
        /// The namespace.
        namespace: String,
        /// The identity publishes are attributed to (created if missing).
        #[arg(long)]
        identity: String,
        /// The token issuer, e.g. `https://token.actions.githubusercontent.com`.
        #[arg(long)]
        issuer: String,
        /// A claim the token must carry, `name=value` or `name=prefix*`
        /// (repeatable; at least one).
        #[arg(long = "claim", required = true)]
        claims: Vec<String>,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `cairn identity …`.
#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Create an identity (a logged record).
    Create {
        /// Its name: 1 to 64 of a-z, 0-9, `.`, `_`, `-`.
        name: String,
        /// A robot account instead of a person.
        #[arg(long)]
        robot: bool,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List identities and their keys.
    List {
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable an identity: revoke its tokens; its keys stop publishing.
    Disable {
        /// The identity.
        name: String,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Bind a warg signing key to an identity.
    AddKey {
        /// The identity.
        name: String,
        /// The public key, `ecdsa-p256:…`.
        #[arg(long)]
        key: String,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Unbind a warg signing key.
    RemoveKey {
        /// The identity.
        name: String,
        /// The key id, `sha256:…`.
        #[arg(long)]
        key_id: String,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `cairn token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token. The token is printed once and stored only as a
    /// hash.
    Create {
        /// The identity it acts as.
        #[arg(long)]
        identity: String,
        /// A namespace it may act in, or `*` (repeatable).
        #[arg(long = "namespace", required = true)]
        namespaces: Vec<String>,
        /// Comma-separated actions: read, publish, sign, yank, admin.
        #[arg(long, default_value = "publish")]
        actions: String,
        /// Days until it expires (none: until revoked).
        #[arg(long)]
        expires_in_days: Option<u64>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this identity's.
        #[arg(long)]
        identity: Option<String>,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token.
    Revoke {
        /// The token id.
        id: String,
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
    /// The operator key (ECDSA P-256): `file:PATH` (or a path) or
    /// `awskms:///KEY-ID|ARN|alias/NAME`. Default: `<data dir>/operator.key`
    /// (created only when the registry is initialised; afterwards it must
    /// be the key holding `commit` in the operator log).
    #[arg(long, env = "CAIRN_OPERATOR_KEY")]
    pub operator_key: Option<String>,
    /// The note key (Ed25519) that signs C2SP checkpoints: `file:PATH` or
    /// `awskms:///KEY`. Default: `<data dir>/note.key` (created only when
    /// the registry is initialised; afterwards it must be the pinned one).
    #[arg(long, env = "CAIRN_NOTE_KEY")]
    pub note_key: Option<String>,
    /// The publisher key (ECDSA P-256) that signs the warg records of OCI
    /// pushes: `file:PATH` or `awskms:///KEY`. Default:
    /// `<data dir>/publisher.key` (created only when the registry is
    /// initialised; afterwards it must be the pinned one).
    #[arg(long, env = "CAIRN_PUBLISHER_KEY")]
    pub publisher_key: Option<String>,
    /// Where blobs are stored: `file:PATH` (a directory) or
    /// `s3://BUCKET/PREFIX` (an S3 bucket, reached through the standard
    /// AWS environment; see docs/storage.md). Default: `file:<data
    /// dir>/blobs` (or `--blob-dir`).
    #[arg(long, env = "CAIRN_BLOB_STORE")]
    pub blob_store: Option<String>,
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
    /// Seconds a connection may take to send a request's headers before it
    /// is closed. Default: 10
    #[arg(long, env = "CAIRN_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<u64>,
    /// OCI upload sessions one identity may have open at once; beyond it,
    /// 429. Default: 64
    #[arg(long, env = "CAIRN_MAX_UPLOAD_SESSIONS")]
    pub max_upload_sessions: Option<u64>,
    /// Bytes one identity's open OCI upload sessions may hold together;
    /// beyond it, 429. Default: 4 × --max-content-bytes
    #[arg(long, env = "CAIRN_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// OCI manifest pushes one identity may have in progress at once;
    /// beyond it, 429. Default: 16
    #[arg(long, env = "CAIRN_MAX_MANIFEST_PUSHES")]
    pub max_manifest_pushes: Option<usize>,
    /// Database connections. Default: 16
    #[arg(long, env = "CAIRN_DB_CONNECTIONS")]
    pub db_connections: Option<u32>,
    /// The origin of the C2SP checkpoints: a schema-less URL that never
    /// changes. Default: the one the registry was first started with, or
    /// the public URL without its scheme.
    #[arg(long, env = "CAIRN_ORIGIN")]
    pub origin: Option<String>,
    /// Serve Prometheus metrics at `/metrics` on this address. Default: off.
    #[arg(long, env = "CAIRN_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// A tlog-policy file naming the witnesses that cosign checkpoints.
    /// Default: no witnesses.
    #[arg(long, env = "CAIRN_WITNESS_POLICY")]
    pub witness_policy: Option<PathBuf>,
    /// Refuse publishing into namespaces that have no owners (claimed with
    /// `cairn namespace create`). Default: false
    #[arg(long, env = "CAIRN_REQUIRE_OWNERS", value_name = "BOOL")]
    pub require_owners: Option<bool>,
    /// Let anyone read without credentials, on every door (OCI, warg,
    /// content downloads, the package and namespace API). When false, reads
    /// need a token allowing `read` in the namespace. Default: true
    #[arg(long, env = "CAIRN_ANONYMOUS_READ", value_name = "BOOL")]
    pub anonymous_read: Option<bool>,
    /// With `--anonymous-read false`, keep the log's own views public
    /// (checkpoints, tiles, proofs, ledger, receipts: hashes, never record
    /// contents) for auditors and witnesses. Default: false
    #[arg(long, env = "CAIRN_PUBLIC_LOG", value_name = "BOOL")]
    pub public_log: Option<bool>,
    /// OIDC issuers trusted for trusted publishing (configuration file
    /// only: `[[oidc_issuers]]` tables with `issuer`, `audience` and
    /// optionally `jwks_url`).
    #[arg(skip)]
    #[serde(default)]
    pub oidc_issuers: Vec<cairn_service::oidc::OidcIssuer>,
    /// Answer authorised blob downloads (OCI blob GETs, warg content
    /// downloads) with `307` to a presigned URL of the S3 object, valid
    /// for 5 minutes, instead of streaming the bytes. Needs an `s3://`
    /// blob store. Default: false
    #[arg(long, env = "CAIRN_BLOB_REDIRECT", value_name = "BOOL")]
    pub blob_redirect: Option<bool>,
    /// A Sigstore `trusted_root.json` (Fulcio CAs, Rekor keys): keyless
    /// signatures pushed into namespaces with trust rules are verified
    /// against it. Read at start; nothing is fetched. Default: none (only
    /// listed keys verify). See ops/trusted-root.md.
    #[arg(long, env = "CAIRN_TRUSTED_ROOT")]
    pub trusted_root: Option<PathBuf>,
    /// Publish the log's tiles and checkpoint (c2sp.org/tlog-tiles) to
    /// `s3://BUCKET/PREFIX` (reached through the standard AWS environment)
    /// or `file:PATH` (a directory), after each checkpoint, for auditors,
    /// witnesses and a CDN. Default: off. See docs/tiles.md.
    #[arg(long, env = "CAIRN_PUBLISH_TILES", value_name = "URL")]
    pub publish_tiles: Option<String>,
    /// This node's name in the sequencer lease (PostgreSQL only: every
    /// `cairn serve` on one PostgreSQL database is a node; one sequences,
    /// the others stand by). Default: the host name and process id. See
    /// ops/nodes.md.
    #[arg(long, env = "CAIRN_NODE_ID")]
    pub node_id: Option<String>,
    /// Seconds the sequencer lease lasts without renewal (PostgreSQL only):
    /// a dead leader is replaced after at most this plus the renewal
    /// interval. Default: 6
    #[arg(long, env = "CAIRN_LEASE_DURATION")]
    pub lease_duration: Option<u64>,
    /// Seconds between renewals of the sequencer lease, and between a
    /// standby's attempts to take it (PostgreSQL only); at most half the
    /// lease duration. Default: 2
    #[arg(long, env = "CAIRN_LEASE_RENEW_INTERVAL")]
    pub lease_renew_interval: Option<u64>,
    /// The URL the other nodes of the cluster reach this node at
    /// (PostgreSQL only): recorded with the sequencer lease while this node
    /// leads, the standbys forward to it the writes that need the leader
    /// (OCI manifest pushes and deletes, `/api` writes). Default:
    /// `http://<listen address>`. See ops/nodes.md.
    #[arg(long, env = "CAIRN_ADVERTISE_URL", value_name = "URL")]
    pub advertise_url: Option<String>,
}

/// Where `--publish-tiles` writes the log's tiles and checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishTiles {
    /// Files under a directory (`file:PATH`).
    Dir(PathBuf),
    /// Objects of an S3 bucket under a prefix (`s3://BUCKET/PREFIX`).
    S3(cairn_blob::S3Config),
}

impl PublishTiles {
    /// Parses `file:PATH` or `s3://BUCKET/PREFIX` (with the `AWS_*`
    /// environment as client settings).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        match url.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Ok(Self::Dir(PathBuf::from(path))),
            _ => cairn_blob::S3Config::parse(url)
                .map(|s3| Self::S3(s3.with_env()))
                .map_err(|e| {
                    anyhow::anyhow!("--publish-tiles: {e} (use file:PATH or s3://BUCKET/PREFIX)")
                }),
        }
    }
}

/// Settings with every default applied.
#[derive(Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Database URL (may contain a password: never print it; use
    /// [`Settings::database_display`]).
    pub database_url: String,
    /// Operator key.
    pub operator_key: KeyUri,
    /// Note key.
    pub note_key: KeyUri,
    /// Publisher key.
    pub publisher_key: KeyUri,
    /// Listen address.
    pub listen: SocketAddr,
    /// Public URL, if given.
    pub public_url: Option<String>,
    /// Blob directory (the filesystem store, when `blob_s3` is `None`).
    pub blob_dir: PathBuf,
    /// The S3 blob store, if blobs live in a bucket.
    pub blob_s3: Option<cairn_blob::S3Config>,
    /// Whether authorised blob downloads are redirected to presigned URLs.
    pub blob_redirect: bool,
    /// The Sigstore trusted root file, if any (read at start).
    pub trusted_root: Option<PathBuf>,
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
    /// Time a connection may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Open OCI upload sessions per identity.
    pub max_upload_sessions: u64,
    /// Bytes of open OCI upload sessions per identity.
    pub max_upload_bytes: u64,
    /// OCI manifest pushes in progress per identity.
    pub max_manifest_pushes: usize,
    /// Database connections.
    pub db_connections: u32,
    /// C2SP checkpoint origin, if configured.
    pub origin: Option<String>,
    /// Metrics listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Witness policy file.
    pub witness_policy: Option<PathBuf>,
    /// Whether publishing needs a namespace with owners.
    pub require_owners: bool,
    /// Whether OCI pulls need no credentials.
    pub anonymous_read: bool,
    /// Whether the log's own views stay public when reads are private.
    pub public_log: bool,
    /// Trusted OIDC issuers.
    pub oidc_issuers: Vec<cairn_service::oidc::OidcIssuer>,
    /// Where the log's tiles and checkpoint are published, if anywhere.
    pub publish_tiles: Option<PublishTiles>,
    /// Leader election, for a node on PostgreSQL (`None` on SQLite, whose
    /// database has one writing process).
    pub leader_lease: Option<cairn_service::leader::LeaseConfig>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("database", &self.database_display())
            .field("operator_key", &self.operator_key)
            .field("note_key", &self.note_key)
            .field("origin", &self.origin)
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("blob_dir", &self.blob_dir)
            .field("blob_s3", &self.blob_s3)
            .field("publish_tiles", &self.publish_tiles)
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
    let operator_key = match args
        .store
        .operator_key
        .clone()
        .or(file.store.operator_key.clone())
    {
        Some(uri) => uri
            .parse()
            .map_err(|e| anyhow::anyhow!("--operator-key: {e}"))?,
        None => KeyUri::File(data_dir.join("operator.key")),
    };
    let note_key = match args.store.note_key.clone().or(file.store.note_key.clone()) {
        Some(uri) => uri
            .parse()
            .map_err(|e| anyhow::anyhow!("--note-key: {e}"))?,
        None => KeyUri::File(data_dir.join("note.key")),
    };
    let publisher_key = match args
        .store
        .publisher_key
        .clone()
        .or(file.store.publisher_key.clone())
    {
        Some(uri) => uri
            .parse()
            .map_err(|e| anyhow::anyhow!("--publisher-key: {e}"))?,
        None => KeyUri::File(data_dir.join("publisher.key")),
    };
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
    let blob_dir = args.blob_dir.clone().or(file.blob_dir.clone());
    let (blob_dir, blob_s3) = match args
        .store
        .blob_store
        .clone()
        .or(file.store.blob_store.clone())
    {
        None => (blob_dir.unwrap_or_else(|| data_dir.join("blobs")), None),
        Some(_) if blob_dir.is_some() => {
            anyhow::bail!("give --blob-store or --blob-dir, not both")
        }
        Some(uri) => match uri.strip_prefix("file:") {
            Some(path) if !path.is_empty() => (PathBuf::from(path), None),
            _ => {
                let s3 = cairn_blob::S3Config::parse(&uri).map_err(|e| {
                    anyhow::anyhow!("--blob-store: {e} (use file:PATH or s3://BUCKET/PREFIX)")
                })?;
                (data_dir.join("blobs"), Some(s3.with_env()))
            }
        },
    };
    let publish_tiles = match args.publish_tiles.as_ref().or(file.publish_tiles.as_ref()) {
        Some(url) => Some(PublishTiles::parse(url)?),
        None => None,
    };
    let leader_lease = leader_lease(args, &file, &database_url)?;
    let settings = Settings {
        leader_lease,
        publish_tiles,
        blob_redirect: args.blob_redirect.or(file.blob_redirect).unwrap_or(false),
        trusted_root: args.trusted_root.clone().or(file.trusted_root.clone()),
        blob_s3,
        blob_dir,
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        public_url: args
            .public_url
            .clone()
            .or(file.public_url.clone())
            .map(|u| u.trim_end_matches('/').to_owned()),
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
        header_read_timeout: Duration::from_secs(
            args.header_read_timeout
                .or(file.header_read_timeout)
                .unwrap_or(10),
        ),
        max_upload_sessions: args
            .max_upload_sessions
            .or(file.max_upload_sessions)
            .unwrap_or(64),
        max_upload_bytes: match args.max_upload_bytes.or(file.max_upload_bytes) {
            Some(bytes) => bytes,
            None => args
                .max_content_bytes
                .or(file.max_content_bytes)
                .unwrap_or(100 * 1024 * 1024)
                .saturating_mul(4),
        },
        max_manifest_pushes: args
            .max_manifest_pushes
            .or(file.max_manifest_pushes)
            .unwrap_or(16),
        db_connections: args.db_connections.or(file.db_connections).unwrap_or(16),
        origin: args.origin.clone().or(file.origin.clone()),
        metrics_listen: args.metrics_listen.or(file.metrics_listen),
        witness_policy: args.witness_policy.clone().or(file.witness_policy.clone()),
        require_owners: args.require_owners.or(file.require_owners).unwrap_or(false),
        anonymous_read: args.anonymous_read.or(file.anonymous_read).unwrap_or(true),
        public_log: args.public_log.or(file.public_log).unwrap_or(false),
        oidc_issuers: if args.oidc_issuers.is_empty() {
            file.oidc_issuers.clone()
        } else {
            args.oidc_issuers.clone()
        },
        data_dir,
        database_url,
        operator_key,
        note_key,
        publisher_key,
    };
    if settings.blob_redirect && settings.blob_s3.is_none() {
        anyhow::bail!("--blob-redirect needs an S3 blob store (--blob-store s3://BUCKET/PREFIX)");
    }
    if settings.publish_tiles.is_some() && !settings.anonymous_read && !settings.public_log {
        anyhow::bail!(
            "--publish-tiles makes the log's views (checkpoint, tiles) public, but reads are \
             private (--anonymous-read false): add --public-log true, or drop --publish-tiles"
        );
    }
    if settings.blob_s3.is_some() && settings.max_content_bytes > cairn_blob::MAX_COPY_BYTES {
        anyhow::bail!(
            "--max-content-bytes may be at most {} (5 GiB) with an S3 blob store",
            cairn_blob::MAX_COPY_BYTES
        );
    }
    if settings.header_read_timeout.is_zero() {
        anyhow::bail!("--header-read-timeout must be at least 1 second");
    }
    if settings.max_upload_sessions == 0
        || settings.max_upload_bytes == 0
        || settings.max_manifest_pushes == 0
    {
        anyhow::bail!(
            "--max-upload-sessions, --max-upload-bytes and --max-manifest-pushes must be at least 1 \
             (0 would refuse every OCI push)"
        );
    }
    if let Some(origin) = &settings.origin
        && !cairn_crypto::note::is_valid_key_name(origin)
    {
        anyhow::bail!("--origin must be a schema-less URL without spaces or `+`, got `{origin}`");
    }
    if let Some(url) = &settings.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        anyhow::bail!("--public-url must be an absolute http:// or https:// URL, got `{url}`");
    }
    Ok(settings)
}

/// The node's lease settings on PostgreSQL; on SQLite, where one process
/// writes the database, asking for them is refused.
fn leader_lease(
    args: &ServeArgs,
    file: &ServeArgs,
    database_url: &str,
) -> anyhow::Result<Option<cairn_service::leader::LeaseConfig>> {
    let node = args.node_id.clone().or(file.node_id.clone());
    let duration = args.lease_duration.or(file.lease_duration);
    let renew = args.lease_renew_interval.or(file.lease_renew_interval);
    let advertise = args.advertise_url.clone().or(file.advertise_url.clone());
    if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
        if node.is_some() || duration.is_some() || renew.is_some() || advertise.is_some() {
            anyhow::bail!(
                "--node-id, --lease-duration, --lease-renew-interval and --advertise-url are for a \
                 cluster, which needs PostgreSQL: a SQLite database is written by one process \
                 (use --database-url postgres://… for several nodes)"
            );
        }
        return Ok(None);
    }
    let node = match node {
        Some(node) if !node.trim().is_empty() => node,
        Some(_) => anyhow::bail!("--node-id must not be empty"),
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "cairn".into());
            format!("{host}:{}", std::process::id())
        }
    };
    let mut lease = cairn_service::leader::LeaseConfig::new(node);
    if let Some(url) = advertise {
        let url = url.trim().trim_end_matches('/');
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or_default();
        if host.is_empty() || host.contains('/') {
            anyhow::bail!(
                "--advertise-url must be http://HOST[:PORT] or https://HOST[:PORT] (the URL the \
                 other nodes reach this one at), not `{url}`"
            );
        }
        lease.address = url.to_owned();
    }
    if let Some(seconds) = duration {
        lease.duration = Duration::from_secs(seconds);
    }
    if let Some(seconds) = renew {
        lease.renew_every = Duration::from_secs(seconds);
    }
    if lease.renew_every.is_zero() || lease.renew_every * 2 > lease.duration {
        anyhow::bail!(
            "--lease-renew-interval ({} s) must be at least 1 and at most half of \
             --lease-duration ({} s)",
            lease.renew_every.as_secs(),
            lease.duration.as_secs()
        );
    }
    Ok(Some(lease))
}

/// The public URL for commands that do not bind a listener: the
/// configured one, or `http://<listen address>`.
pub fn default_public_url(settings: &Settings) -> String {
    settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.listen))
}

/// Resolves store options (for commands other than `serve`), which must
/// name an existing registry ([`crate::registry_dir::require`]): only
/// `serve` creates one.
pub fn resolve_store(store: &StoreArgs) -> anyhow::Result<Settings> {
    let settings = resolve(&ServeArgs {
        store: store.clone(),
        ..ServeArgs::default()
    })?;
    crate::registry_dir::require(&settings)?;
    Ok(settings)
}

/// `cairn content …`.
#[derive(Debug, Subcommand)]
pub enum ContentCommand {
    /// Stop serving content: log a `contentWithheld` record with the
    /// reason. Every door answers 451 with it; `cairn gc --apply` may then
    /// delete the bytes.
    Withhold {
        /// The content digest, `sha256:<hex>` (or `sha256-<hex>`).
        digest: String,
        /// Why (1 to 1024 bytes); shown to clients and public in the log.
        #[arg(long)]
        reason: String,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Serve withheld content again (bytes deleted by `cairn gc` stay
    /// unavailable until the same content is pushed again).
    Restore {
        /// The content digest, `sha256:<hex>` (or `sha256-<hex>`).
        digest: String,
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List withheld content, with the reasons.
    List {
        /// Store options.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Options of `cairn gc`.
#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    /// Store options.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Directory of content blobs. Default: `<data dir>/blobs`
    #[arg(long, env = "CAIRN_BLOB_DIR")]
    pub blob_dir: Option<PathBuf>,
    /// Delete; without it, only list what would be deleted.
    #[arg(long)]
    pub apply: bool,
    /// Unreferenced blobs and upload sessions younger than this are kept
    /// (`90s`, `30m`, `24h`, `7d`; at least the upload timeout).
    #[arg(long, default_value = "24h", value_parser = crate::gc::unreferenced::parse_duration)]
    pub grace: std::time::Duration,
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
            KeyUri::File(PathBuf::from("/srv/cairn/operator.key"))
        );
        assert_eq!(
            settings.note_key,
            KeyUri::File(PathBuf::from("/srv/cairn/note.key"))
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
