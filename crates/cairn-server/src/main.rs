//! The `cairn` command.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cairn_protocol::record::OperatorEntry;
use cairn_server::config::{self, Cli, Command, NamespaceCommand};
use cairn_server::{keys, open_store, operator_signer};
use cairn_service::{SystemClock, fsck::fsck, submit_operator_record, wait_for_record};
use cairn_store::{SqlStore, Store};
use clap::Parser as _;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
        Command::Keygen { out } => {
            let key = keys::generate();
            keys::write_new_key(&out, &key)?;
            println!("wrote {} (mode 0600)", out.display());
            println!("public key: {}", key.public_key());
            println!("key id: {}", key.public_key().key_id());
            Ok(ExitCode::SUCCESS)
        }
        Command::Fsck(args) => {
            let mut settings = config::resolve_store(&args.store)?;
            if let Some(dir) = args.blob_dir {
                settings.blob_dir = dir;
            }
            let store = SqlStore::connect(&settings.database_url, 4)
                .await
                .with_context(|| format!("cannot open database {}", settings.database_display()))?;
            let blobs = if args.skip_blobs {
                None
            } else {
                Some(
                    cairn_blob::FsBlobStore::open_existing(&settings.blob_dir).with_context(
                        || format!("cannot open blob directory {}", settings.blob_dir.display()),
                    )?,
                )
            };
            let report = fsck(
                &store,
                blobs.as_ref().map(|b| b as &dyn cairn_blob::BlobStore),
                |n| {
                    if n % 100_000 == 0 {
                        eprintln!("… {n} records checked");
                    }
                },
            )
            .await?;
            println!(
                "checked {} records, {} log nodes, {} checkpoints, {} logs, {} blobs",
                report.records, report.nodes, report.checkpoints, report.logs, report.blobs
            );
            if report.is_clean() {
                println!("no problems found");
                Ok(ExitCode::SUCCESS)
            } else {
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
        }
        Command::Namespace {
            command: NamespaceCommand::Create { namespace, store },
        } => {
            let settings = config::resolve_store(&store)?;
            define_namespace(&settings, &namespace).await?;
            println!("namespace `{namespace}` defined");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Defines a namespace: through a running server's sequencer if one holds
/// the database, otherwise by running the sequencer here.
async fn define_namespace(settings: &config::Settings, namespace: &str) -> anyhow::Result<()> {
    if !cairn_protocol::name::is_valid_namespace(namespace) {
        anyhow::bail!("invalid namespace `{namespace}`: use lowercase kebab case, e.g. `my-org`");
    }
    let store = SqlStore::connect(&settings.database_url, 4)
        .await
        .with_context(|| format!("cannot open database {}", settings.database_display()))?;
    store.migrate().await?;
    let signer = operator_signer(settings, &store).await?;
    match store.lock_writer().await {
        Ok(lock) => {
            // No server is running: sequence the record here.
            let store: Arc<dyn Store> = Arc::new(store);
            let blobs = Arc::new(cairn_blob::FsBlobStore::open(&settings.blob_dir).await?);
            let (registry, sequencer) = cairn_service::Registry::start(
                store,
                blobs,
                signer,
                Arc::new(SystemClock),
                cairn_service::ServiceConfig::default(),
            )
            .await?;
            let result = registry.define_namespace(namespace).await;
            sequencer.shutdown().await;
            drop(lock);
            result?;
        }
        Err(_) => {
            // A server holds the database: hand it the record.
            let record = submit_operator_record(
                &store,
                signer.as_ref(),
                &SystemClock,
                vec![OperatorEntry::DefineNamespace {
                    namespace: namespace.to_owned(),
                }],
            )
            .await?;
            wait_for_record(
                &store,
                &cairn_protocol::LogId::operator(),
                &record,
                Duration::from_secs(60),
            )
            .await?;
        }
    }
    Ok(())
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
