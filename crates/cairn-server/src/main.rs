//! The `cairn` command.

use std::process::ExitCode;

use anyhow::Context as _;
use cairn_crypto::signer::LocalKey;
use cairn_server::config::{self, Cli, Command, FsckArgs, OperatorCommand};
use cairn_server::progress::{self, Progress};
use cairn_server::{admin, keys, open_store};
use cairn_service::fsck::fsck;
use cairn_store::{SqlStore, Store as _};
use clap::Parser as _;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cairn_server::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Every error and its causes as sentences: `error: a: b`.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let settings = config::resolve(&args)?;
            let server = cairn_server::start(settings).await?;
            println!(
                "operator public key: {}",
                server.registry.operator_public_key()
            );
            println!(
                "checkpoint verifier key: {}",
                server.registry.note_verifier_key()
            );
            println!(
                "listening on http://{} (public URL {})",
                server.addr, server.public_url
            );
            let stop = server.shutdown_sender();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutting down");
                let _ = stop.send(true);
            });
            server.wait().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(store) => {
            let settings = config::resolve_store(&store)?;
            let (_store, _lock) = open_store(&settings).await?;
            println!("database {} is up to date", settings.database_display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { out, ed25519 } => {
            if ed25519 {
                let key = keys::generate_ed25519();
                keys::write_new_key(&out, &LocalKey::Ed25519(key.clone()))?;
                println!("wrote {} (mode 0600)", out.display());
                println!("public key: {}", key.public_key());
            } else {
                let key = keys::generate();
                keys::write_new_key(&out, &LocalKey::EcdsaP256(key.clone()))?;
                println!("wrote {} (mode 0600)", out.display());
                println!("public key: {}", key.public_key());
                println!("key id: {}", key.public_key().key_id());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Fsck(args) => fsck_command(args).await,
        Command::Namespace { command } => cairn_server::manage::namespace(command).await,
        Command::Identity { command } => cairn_server::manage::identity(command).await,
        Command::Token { command } => cairn_server::manage::token(command).await,
        Command::AdminLog { after, store } => cairn_server::manage::admin_log(after, store).await,
        Command::Operator {
            command: OperatorCommand::Rotate { new_key, store },
        } => {
            let settings = config::resolve_store(&store)?;
            let new_key = new_key.parse()?;
            let rotation = admin::rotate_operator_key(&settings, &new_key).await?;
            println!(
                "operator key rotated: {} -> {} ({})",
                rotation.old_key_id,
                rotation.new_key,
                match &rotation.new_key {
                    cairn_crypto::PublicKey::EcdsaP256(key) => key.key_id().to_string(),
                    cairn_crypto::PublicKey::Ed25519(_) => String::new(),
                }
            );
            println!(
                "checkpoints are now signed with the new key; set --operator-key {} (CAIRN_OPERATOR_KEY) \
                 before the next restart",
                rotation.new_uri
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => cairn_server::commands::audit(command).await,
        Command::Verify { command } => cairn_server::verify::run(command).await,
        Command::Content { command } => cairn_server::manage::content(command).await,
        Command::Gc(args) => cairn_server::gc::run(args).await,
        Command::Witness(args) => {
            let witness = cairn_server::commands::witness(&args).await?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let (addr, task) =
                cairn_audit::witness_server::serve(witness.clone(), args.listen, stopped)
                    .await
                    .map_err(anyhow::Error::msg)?;
            println!("witness key: {}", witness.vkey());
            println!("listening on http://{addr} (POST /add-checkpoint)");
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop.send(true);
            });
            task.await
                .context("witness task")?
                .context("witness server")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Operator {
            command: OperatorCommand::Vkey { store, origin },
        } => {
            let mut settings = config::resolve_store(&store)?;
            if origin.is_some() {
                settings.origin = origin;
            }
            println!("{}", admin::note_verifier_key(&settings).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `cairn fsck`: exit 0 when clean, 2 with a report of the problems.
async fn fsck_command(args: FsckArgs) -> anyhow::Result<ExitCode> {
    let mut settings = config::resolve_store(&args.store)?;
    cairn_server::blobs::use_dir(&mut settings, args.blob_dir)?;
    let store = SqlStore::connect(&settings.database_url, 4)
        .await
        .with_context(|| format!("cannot open database {}", settings.database_display()))?;
    let blobs = if args.skip_blobs {
        None
    } else {
        Some(cairn_server::blobs::open_existing(&settings).await?)
    };
    // The records to replay, for the progress line (fsck reads the head
    // again; a server running meanwhile may add a few).
    let total = store.tree_head().await?.map_or(0, |head| head.size);
    let mut progress = Progress::stderr();
    let report = fsck(
        &store,
        blobs.as_deref().map(|b| b as &dyn cairn_blob::BlobStore),
        |n| {
            progress.update(|| {
                format!(
                    "checked {} / {} records",
                    progress::count(n),
                    progress::count(total.max(n))
                )
            });
        },
    )
    .await;
    progress.clear();
    let report = report?;
    println!(
        "checked {} records, {} log nodes, {} checkpoints, {} logs, {} OCI and content rows, {} blobs",
        report.records,
        report.nodes,
        report.checkpoints,
        report.logs,
        report.oci_rows,
        report.blobs
    );
    if report.is_clean() {
        println!("no problems found");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} problems found:", report.problem_count);
    for problem in &report.problems {
        println!("  - {problem}");
    }
    if report.problem_count > report.problems.len() as u64 {
        println!(
            "  … and {} more",
            report.problem_count - report.problems.len() as u64
        );
    }
    Ok(ExitCode::from(2))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
