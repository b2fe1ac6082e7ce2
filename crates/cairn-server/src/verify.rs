//! `cairn verify …`: a consumer's check that what it fetched is what the
//! registry's log says was released (a thin wrapper over
//! `cairn_audit::verify`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use cairn_audit::remote::Remote;
use cairn_audit::state::StateDir;
use cairn_audit::verify::{Checked, Verifier, exit_code};
use cairn_audit::{AuditError, Trust};
use cairn_crypto::Sha256Digest;
use cairn_protocol::PackageName;
use clap::{Args, Subcommand};

use crate::config::TrustArgs;
use crate::progress::Progress;

/// Locks with at least this many packages show progress on a terminal.
const PROGRESS_FROM: usize = 10;

/// Options every `cairn verify` command takes.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The registry's URL (its log and warg API).
    #[arg(long, env = "CAIRN_REGISTRY")]
    pub registry: String,
    /// Trust options: the pinned verifier key, and a witness policy.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Directory remembering the checkpoint trusted by earlier runs: each
    /// run proves the registry's current checkpoint consistent with it
    /// (a split view is evidence) before trusting the newer one.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Fail (exit 1) when a dependency's release was yanked.
    #[arg(long)]
    pub deny_yanked: bool,
    /// Print one JSON document with a result per dependency.
    #[arg(long)]
    pub json: bool,
    /// A token (`Authorization: Bearer`) for a registry without anonymous
    /// reads.
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `cairn verify …`. Exit codes: 0 everything verified, 1 something not
/// verified (never logged, yanked with `--deny-yanked`, registry
/// unreachable), 2 evidence of misbehaviour or inconsistent data (the
/// signed statements are printed), 3 refused (e.g. witness quorum not met),
/// 4 local problem.
#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Verify every package version of a `wkg.lock`: its digest must be the
    /// content of the logged release of exactly that name and version.
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Registry, trust and output options.
        #[command(flatten)]
        args: VerifyArgs,
    },
    /// Verify a file: its SHA-256 must be the content of the logged release.
    File {
        /// `ns:name@version`.
        release: String,
        /// The file.
        file: PathBuf,
        /// Registry, trust and output options.
        #[command(flatten)]
        args: VerifyArgs,
    },
    /// Verify what the OCI door serves for `REGISTRY/NS/NAME:TAG` or
    /// `REGISTRY/NS/NAME@DIGEST` against the package's metadata log and,
    /// for a version, the release's content.
    Oci {
        /// One or more references.
        #[arg(required = true)]
        references: Vec<String>,
        /// Registry, trust and output options.
        #[command(flatten)]
        args: VerifyArgs,
    },
}

/// Runs a verify command.
pub async fn run(command: VerifyCommand) -> anyhow::Result<ExitCode> {
    let args = match &command {
        VerifyCommand::Lock { args, .. }
        | VerifyCommand::File { args, .. }
        | VerifyCommand::Oci { args, .. } => args.clone(),
    };
    // Everything local is checked before the registry is asked.
    let trust = crate::commands::trust(&args.trust)?;
    let task = Task::parse(command, &args)?;
    let remote = Remote::with_token(&args.registry, args.token.as_deref())?;
    let state = args.state.as_deref().map(StateDir::open).transpose()?;
    let verifier = match Verifier::open(remote, &trust, state.as_ref()).await {
        Ok(verifier) => verifier,
        Err(error) => return Ok(failed(&error, args.json)),
    };
    let results = match task {
        Task::Lock(locked) => {
            let total = locked
                .iter()
                .map(|l| &l.package)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let mut progress = if total >= PROGRESS_FROM {
                Progress::stderr()
            } else {
                Progress::hidden()
            };
            let results = verifier
                .check_lock(&locked, |done, total| {
                    progress.update(|| format!("verifying packages: {done}/{total}"));
                })
                .await;
            progress.clear();
            results
        }
        Task::File(package, version, digest) => {
            verifier
                .check_package(&package, &[(version, digest)], "the file")
                .await
        }
        Task::Oci(references) => {
            let mut results = Vec::new();
            for reference in &references {
                results.push(verifier.check_oci(reference, args.token.as_deref()).await);
            }
            results
        }
    };
    let code = exit_code(&results, args.deny_yanked);
    if args.json {
        report_json(&verifier, &trust, &results, code);
    } else {
        report_text(&verifier, &trust, &results, args.deny_yanked);
    }
    Ok(ExitCode::from(code))
}

enum Task {
    Lock(Vec<cairn_audit::verify::lock::Locked>),
    File(PackageName, semver::Version, Sha256Digest),
    Oci(Vec<cairn_audit::verify::oci::OciReference>),
}

impl Task {
    fn parse(command: VerifyCommand, args: &VerifyArgs) -> anyhow::Result<Self> {
        Ok(match command {
            VerifyCommand::Lock { path, .. } => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Self::Lock(cairn_audit::verify::lock::parse(&text)?)
            }
            VerifyCommand::File { release, file, .. } => {
                let (name, version) = release
                    .rsplit_once('@')
                    .with_context(|| format!("`{release}`: expected ns:name@version"))?;
                let package = PackageName::new(name.to_owned())
                    .map_err(|e| anyhow::anyhow!("invalid package name `{name}`: {e}"))?;
                let version = version
                    .parse()
                    .with_context(|| format!("`{version}` is not a semantic version"))?;
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                Self::File(package, version, Sha256Digest::of(&bytes))
            }
            VerifyCommand::Oci { references, .. } => Self::Oci(
                references
                    .iter()
                    .map(|r| cairn_audit::verify::oci::parse_reference(r, &args.registry))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// Prints why verification could not start, and turns it into an exit
/// code.
fn failed(error: &AuditError, json: bool) -> ExitCode {
    if json {
        let mut value = serde_json::json!({
            "status": "error",
            "message": error.to_string(),
            "exitCode": error.exit_code(),
        });
        if let AuditError::Evidence(evidence) = error {
            value["status"] = "evidence".into();
            value["message"] = evidence.summary.clone().into();
            value["evidence"] = evidence.to_string().into();
        }
        println!("{value:#}");
    } else {
        match error {
            AuditError::Evidence(evidence) => println!("{evidence}"),
            other => eprintln!("error: {other}"),
        }
    }
    ExitCode::from(error.exit_code())
}

fn report_json(verifier: &Verifier, trust: &Trust, results: &[Checked], code: u8) {
    let value = serde_json::json!({
        "registry": verifier.remote.url(),
        "origin": trust.origin(),
        "checkpoint": verifier.trusted.checkpoint.size,
        "cosignedBy": verifier.trusted.cosigned_by,
        "exitCode": code,
        "results": results.iter().map(Checked::to_json).collect::<Vec<_>>(),
    });
    println!("{value:#}");
}

fn report_text(verifier: &Verifier, trust: &Trust, results: &[Checked], deny_yanked: bool) {
    let mut counts = [0usize; 4];
    for checked in results {
        println!("{checked}");
        let slot = match checked.status.exit_code(deny_yanked) {
            0 if checked.status.name() == "yanked" => 1,
            0 => 0,
            2 => 3,
            _ => 2,
        };
        counts[slot] += 1;
    }
    for checked in results {
        if let cairn_audit::verify::Status::Failed(AuditError::Evidence(evidence)) = &checked.status
        {
            println!();
            println!("{evidence}");
        }
    }
    println!(
        "{} verified, {} yanked, {} not verified, {} with evidence of misbehaviour \
         (against {} checkpoint {}{})",
        counts[0] + counts[1],
        counts[1],
        counts[2],
        counts[3],
        trust.origin(),
        verifier.trusted.checkpoint.size,
        if verifier.trusted.cosigned_by.is_empty() {
            String::new()
        } else {
            format!(", cosigned by {}", verifier.trusted.cosigned_by.join(", "))
        }
    );
}
