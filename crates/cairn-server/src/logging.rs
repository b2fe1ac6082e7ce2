//! How the `cairn` command logs.
//!
//! Logs go to stderr, filtered by `CAIRN_LOG` (a `tracing` filter such as
//! `info` or `cairn_service=debug`; default `info`). Their format is
//! `--log-format` (`CAIRN_LOG_FORMAT`):
//!
//! * `text` (the default), for people. Coloured only when stderr is a
//!   terminal and `NO_COLOR` is unset: a log file or a pipe never holds
//!   ANSI escape codes.
//! * `json`, for log shippers: one JSON object per line, with `timestamp`,
//!   `level`, `target`, `message` and the event's other fields at the top
//!   level, and the spans it happened in (`span`, `spans`).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The format of log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether text logs on stderr are coloured: only on a terminal, and not
/// when `NO_COLOR` is set (<https://no-color.org>).
pub fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the process's logger. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logger.with_ansi(colour()).init(),
        LogFormat::Json => logger.with_ansi(false).json().flatten_event(true).init(),
    }
}
