//! [`ChangeFeed`] on SQL: PostgreSQL's `LISTEN`/`NOTIFY`.
//!
//! Writers call [`SqlStore::notify_pending`] or
//! [`SqlStore::notify_checkpoint`] inside the writing transaction:
//! `pg_notify` there is delivered only when the transaction commits (and
//! identical notifications of one transaction are delivered once). The
//! payload names the store value that wrote (its *origin*), so that a
//! listener skips its own writes.
//!
//! The listener is one task per store value, started by the first
//! [`ChangeFeed::changes`] call, on a connection of its own (not the
//! pool's). Whenever nothing arrived for [`QUIET`] it proves the whole path
//! works — not just that its connection answers: it sends a notification
//! to itself on a channel of its own, through the pool as writers do, and
//! that notification must arrive within [`PING_TIMEOUT`] (a connection
//! behind a transaction-pooling proxy, whose `LISTEN` is lost, fails this
//! too). A lost or silent connection is dropped (the feed is not live) and
//! replaced, with a growing pause, until `LISTEN` succeeds again; then the
//! counts grow by one, since notifications sent meanwhile were lost.
//! SQLite has a single writing process: it sends nothing and has no feed.

use std::hash::{BuildHasher as _, Hasher as _};
use std::str::FromStr as _;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Backend, SqlStore};
use crate::{ChangeCounts, ChangeFeed, Changes, StoreResult};

/// Pending records made live or queued.
const PENDING_CHANNEL: &str = "cairn_pending";
/// Checkpoints stored.
const CHECKPOINT_CHANNEL: &str = "cairn_checkpoint";

/// After this long without a notification, the listener sends one to
/// itself…
const QUIET: Duration = Duration::from_secs(3);
/// …which must arrive within this long.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// Connecting and `LISTEN` must succeed within this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A store value's side of the feed: who it is, and its listener.
pub(super) struct Notifier {
    /// The payload of this store value's notifications.
    origin: String,
    /// The database listened to (`None`: SQLite, no feed).
    url: Option<String>,
    feed: Mutex<Option<Feed>>,
}

struct Feed {
    counts: watch::Receiver<ChangeCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl Notifier {
    /// No feed: a single writing process (SQLite).
    pub(super) fn none() -> Self {
        Self {
            origin: origin(),
            url: None,
            feed: Mutex::new(None),
        }
    }

    /// A feed of the PostgreSQL database at `url`, started on demand.
    pub(super) fn postgres(url: &str) -> Self {
        Self {
            origin: origin(),
            url: Some(url.to_owned()),
            feed: Mutex::new(None),
        }
    }

    /// Others' pending writes heard so far (0 before the feed starts).
    pub(super) fn pending_heard(&self) -> u64 {
        self.lock()
            .as_ref()
            .map_or(0, |feed| feed.counts.borrow().pending)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Feed>> {
        self.feed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes, starting the listener (its pings sent through `pool`)
    /// on the first call.
    fn subscribe(&self, pool: &AnyPool) -> Option<Changes> {
        let url = self.url.as_ref()?;
        let mut feed = self.lock();
        let feed = feed.get_or_insert_with(|| {
            let (sender, counts) = watch::channel(ChangeCounts::default());
            let listener = Listener {
                url: url.clone(),
                origin: self.origin.clone(),
                pool: pool.clone(),
                counts: sender,
            };
            let task = tokio::spawn(listener.run());
            Feed { counts, task }
        });
        Some(Changes::new(feed.counts.clone()))
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(feed) = self.lock().take() {
            feed.task.abort();
        }
    }
}

/// A name for one store value, unique across processes and machines with
/// overwhelming probability (the standard library's per-process random
/// hash keys, the process id and the time).
fn origin() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", hasher.finish())
}

impl SqlStore {
    /// How the listening connection names itself (`application_name` in
    /// `pg_stat_activity`).
    pub const LISTENER_APPLICATION: &str = "cairn-listener";

    /// When `tx` commits, tells the other store values that a pending
    /// record became live or queued.
    pub(super) async fn notify_pending(&self, tx: &mut sqlx::AnyConnection) -> StoreResult<()> {
        self.notify(tx, PENDING_CHANNEL).await
    }

    /// When `tx` commits, tells the other store values that a checkpoint
    /// was stored.
    pub(super) async fn notify_checkpoint(&self, tx: &mut sqlx::AnyConnection) -> StoreResult<()> {
        self.notify(tx, CHECKPOINT_CHANNEL).await
    }

    async fn notify(&self, tx: &mut sqlx::AnyConnection, channel: &str) -> StoreResult<()> {
        if matches!(self.backend, Backend::Postgres) {
            // `pg_notify` returns `void`: selected from, so the row decodes.
            sqlx::query("SELECT 1 FROM pg_notify($1, $2)")
                .bind(channel)
                .bind(self.notifier.origin.as_str())
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

impl ChangeFeed for SqlStore {
    fn changes(&self) -> Option<Changes> {
        self.notifier.subscribe(&self.write)
    }
}

/// The listener task's state.
struct Listener {
    url: String,
    /// The store value's origin: its own writes are skipped.
    origin: String,
    /// The store's pool, which pings are sent through.
    pool: AnyPool,
    counts: watch::Sender<ChangeCounts>,
}

impl Listener {
    /// The channel this listener pings itself on.
    fn ping_channel(&self) -> String {
        format!("cairn_ping_{}", self.origin)
    }

    /// Listens, counts, and listens again when the connection is lost,
    /// until the store value is dropped (and the task aborted).
    async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        loop {
            match tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
                Ok(Ok(mut listener)) => {
                    if failing {
                        tracing::info!("listening for other nodes' writes again");
                    }
                    failing = false;
                    backoff = Duration::from_millis(100);
                    self.counts.send_modify(|c| {
                        c.live = true;
                        c.pending += 1;
                        c.checkpoints += 1;
                    });
                    let lost = self.receive(&mut listener).await;
                    self.counts.send_modify(|c| c.live = false);
                    tracing::warn!(
                        reason = %lost,
                        "stopped hearing other nodes' writes; polling until listening again"
                    );
                }
                Ok(Err(error)) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot listen for other nodes' writes; polling meanwhile");
                }
                Err(_) if !failing => {
                    failing = true;
                    tracing::warn!(
                        "cannot listen for other nodes' writes (no answer); polling meanwhile"
                    );
                }
                _ => {}
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A listening connection of its own (one connection, never shared).
    async fn connect(&self) -> Result<PgListener, sqlx::Error> {
        let options =
            PgConnectOptions::from_str(&self.url)?.application_name(SqlStore::LISTENER_APPLICATION);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options)
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        // A lost connection ends `receive`; a fresh listener replaces it.
        listener.eager_reconnect(false);
        let ping = self.ping_channel();
        listener
            .listen_all([PENDING_CHANNEL, CHECKPOINT_CHANNEL, ping.as_str()])
            .await?;
        Ok(listener)
    }

    /// Counts notifications until the connection is lost or a ping does
    /// not come back; returns why.
    async fn receive(&self, listener: &mut PgListener) -> String {
        let ping_channel = self.ping_channel();
        let mut pings = 0_u64;
        // The ping in flight, and when it must have arrived.
        let mut awaited: Option<(String, Instant)> = None;
        loop {
            let wait = awaited.as_ref().map_or(QUIET, |(_, by)| {
                by.saturating_duration_since(Instant::now())
            });
            match tokio::time::timeout(wait, listener.try_recv()).await {
                Ok(Ok(Some(notification))) => {
                    let channel = notification.channel();
                    if channel == ping_channel {
                        if awaited
                            .as_ref()
                            .is_some_and(|(payload, _)| payload == notification.payload())
                        {
                            awaited = None;
                        }
                        continue;
                    }
                    if notification.payload() == self.origin {
                        continue;
                    }
                    match channel {
                        PENDING_CHANNEL => self.counts.send_modify(|c| c.pending += 1),
                        CHECKPOINT_CHANNEL => self.counts.send_modify(|c| c.checkpoints += 1),
                        _ => {}
                    }
                }
                Ok(Ok(None)) => return "the connection was closed".into(),
                Ok(Err(error)) => return error.to_string(),
                Err(_) if awaited.is_some() => {
                    return format!(
                        "a notification to itself did not arrive within {PING_TIMEOUT:?}"
                    );
                }
                Err(_) => {
                    pings += 1;
                    let payload = pings.to_string();
                    let sent = sqlx::query("SELECT 1 FROM pg_notify($1, $2)")
                        .bind(ping_channel.as_str())
                        .bind(payload.as_str())
                        .execute(&self.pool);
                    match tokio::time::timeout(PING_TIMEOUT, sent).await {
                        Ok(Ok(_)) => awaited = Some((payload, Instant::now() + PING_TIMEOUT)),
                        Ok(Err(error)) => return format!("sending a ping: {error}"),
                        Err(_) => return format!("sending a ping took over {PING_TIMEOUT:?}"),
                    }
                }
            }
        }
    }
}
