//! `cairn audit …` and `cairn witness`: thin command-line wrappers over
//! `cairn-audit`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cairn_audit::remote::Remote;
use cairn_audit::state::StateDir;
use cairn_audit::witness_server::{Witness, WitnessConfig};
use cairn_audit::{AuditError, Trust};
use cairn_crypto::SignatureAlgorithm;
use cairn_crypto::note::VerifierKey;
use cairn_log::policy::Policy;
use cairn_protocol::PackageName;

use crate::config::{AuditCommand, TrustArgs, WitnessArgs};
use crate::progress::Progress;
use crate::signers::{self, KeyUri};

pub(crate) fn trust(args: &TrustArgs) -> anyhow::Result<Trust> {
    let vkey: VerifierKey = args
        .vkey
        .parse()
        .map_err(|e| anyhow::anyhow!("--vkey is not a C2SP verifier key: {e}"))?;
    let policy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                Policy::parse(&text)
                    .with_context(|| format!("invalid policy {}", path.display()))?,
            )
        }
        None => None,
    };
    Ok(Trust { vkey, policy })
}

/// Prints an audit failure (with its evidence) and turns it into an exit
/// code.
fn failed(error: &AuditError) -> ExitCode {
    match error {
        AuditError::Evidence(evidence) => println!("{evidence}"),
        other => eprintln!("error: {other}"),
    }
    ExitCode::from(error.exit_code())
}

/// Prints what one `follow` step did.
fn print_step(trust: &Trust, step: &cairn_audit::follow::Step) {
    match step.previous {
        None => println!(
            "trusting {} checkpoint {} (first use)",
            trust.origin(),
            step.current
        ),
        Some(previous) if previous == step.current => {
            println!("checkpoint {} unchanged", step.current)
        }
        Some(previous) => println!(
            "checkpoint {previous} -> {}: consistent{}",
            step.current,
            if step.cosigned_by.is_empty() {
                String::new()
            } else {
                format!(", cosigned by {}", step.cosigned_by.join(", "))
            }
        ),
    }
    if let Some(oci) = &step.oci {
        println!(
            "OCI door: {} references of {} repositories serve what the logs at checkpoint {} say",
            oci.references, oci.repositories, oci.size
        );
    }
}

/// Runs an audit command.
pub async fn audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Follow {
            url,
            trust: args,
            state,
            interval,
            oci,
            token,
        } => {
            let trust = trust(&args)?;
            let remote = Remote::new(&url)?;
            let state = StateDir::open(&state)?;
            let door = if oci {
                Some(cairn_audit::oci::Door::new(&url, token.as_deref())?)
            } else {
                None
            };
            let result = cairn_audit::follow::follow(
                &remote,
                &trust,
                &state,
                interval.map(Duration::from_secs),
                door.as_ref(),
                |step| print_step(&trust, step),
            )
            .await;
            Ok(match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => failed(&error),
            })
        }
        AuditCommand::Fsck { url, trust: args } => {
            let trust = trust(&args)?;
            let remote = Remote::new(&url)?;
            let mut progress = Progress::stderr();
            let audited = cairn_audit::fsck::fsck(&remote, &trust, |p| {
                progress.update(|| format!("audited {p}"));
            })
            .await;
            progress.clear();
            match audited {
                Ok(summary) => {
                    println!(
                        "audited {} entries ({} tiles), {} records in {} package logs; the C2SP \
                         checkpoint {} and the warg checkpoint {} match the log",
                        summary.size,
                        summary.tiles,
                        summary.records,
                        summary.packages,
                        summary.c2sp_size,
                        summary.warg_size
                    );
                    println!("no problems found");
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => Ok(failed(&error)),
            }
        }
        AuditCommand::Signatures {
            url,
            trust: args,
            trusted_root,
            token,
        } => {
            let trust = trust(&args)?;
            let root = match &trusted_root {
                Some(path) => Some(crate::trusted_root::load(path)?),
                None => None,
            };
            let remote = Remote::new(&url)?;
            let door = cairn_audit::oci::Door::new(&url, token.as_deref())?;
            let mut progress = Progress::stderr();
            let checked =
                cairn_audit::signatures::check(&remote, &door, &trust, root.as_deref(), |p| {
                    progress.update(|| p.to_owned());
                })
                .await;
            progress.clear();
            match checked {
                Ok(report) => {
                    for note in &report.not_rechecked {
                        println!("{note}");
                    }
                    println!(
                        "{} signature verdicts logged at checkpoint {}: {} keyed and {} keyless \
                         verified verdicts recomputed identically, {} unverified where no trust \
                         rules applied, {} not rechecked",
                        report.verdicts,
                        report.size,
                        report.keyed,
                        report.keyless,
                        report.unverified,
                        report.not_rechecked.len()
                    );
                    println!("no problems found");
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => Ok(failed(&error)),
            }
        }
        AuditCommand::VerifyPackage {
            url,
            package,
            trust: args,
            state,
        } => {
            let trust = trust(&args)?;
            let name = PackageName::new(package.clone())
                .map_err(|e| anyhow::anyhow!("invalid package name: {e}"))?;
            let remote = Remote::new(&url)?;
            let trusted = match &state {
                Some(dir) => {
                    let bytes = StateDir::open(dir)?.trusted()?.ok_or_else(|| {
                        anyhow::anyhow!(
                            "{} holds no trusted checkpoint; run `follow` first",
                            dir.display()
                        )
                    })?;
                    Trust {
                        policy: None,
                        ..trust.clone()
                    }
                    .verify(&bytes)?
                }
                None => trust.verify(&remote.checkpoint().await?)?,
            };
            match cairn_audit::package::verify_package(&remote, &trusted, &name).await {
                Ok(report) => {
                    println!(
                        "{}: {} records proven at checkpoint {} (consistent with trusted checkpoint {})",
                        report.name, report.records, report.log_length, report.trusted_size
                    );
                    for (version, yanked) in &report.releases {
                        println!("  {version}{}", if *yanked { " (yanked)" } else { "" });
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => Ok(failed(&error)),
            }
        }
        AuditCommand::VerifyReceipt { file, trust: args } => {
            let trust = trust(&args)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            match cairn_audit::receipt::verify_receipt(&bytes, &trust) {
                Ok(facts) => {
                    println!(
                        "record {} of log {} is entry {} of {} checkpoint {}{}",
                        facts.record_id,
                        facts.log_id,
                        facts.index,
                        trust.origin(),
                        facts.size,
                        if facts.cosigned_by.is_empty() {
                            String::new()
                        } else {
                            format!(", cosigned by {}", facts.cosigned_by.join(", "))
                        }
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => Ok(failed(&error)),
            }
        }
    }
}

/// A witness ready to serve, with its verifier key.
pub async fn witness(args: &WitnessArgs) -> anyhow::Result<Arc<Witness>> {
    let logs = args
        .logs
        .iter()
        .map(|l| {
            l.parse::<VerifierKey>()
                .map_err(|e| anyhow::anyhow!("--log `{l}` is not a C2SP verifier key: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let uri: KeyUri = args.key.parse()?;
    let signer =
        signers::open_or_create(&uri, SignatureAlgorithm::Ed25519, true, "witness").await?;
    Ok(Arc::new(
        Witness::new(
            WitnessConfig {
                name: args.name.clone(),
                logs,
                state_dir: args.state.clone(),
            },
            signer,
        )
        .map_err(anyhow::Error::msg)?,
    ))
}
