//! Publishing the log's C2SP views to an object sink (`cairn serve
//! --publish-tiles`): after each checkpoint, every newly completed full
//! tile is written once, then the partial tiles of the checkpoint's size,
//! then the checkpoint itself — at the paths the HTTP API serves them
//! (`c2sp.org/tlog-tiles`), so the sink's URL is a tile URL base that
//! auditors, witnesses and a CDN read without touching the registry.
//!
//! # Order, and what a reader sees
//!
//! The checkpoint object is replaced last, after every tile of its tree is
//! written, so a reader never sees a checkpoint whose tiles are missing.
//! Full tiles are immutable (`Cache-Control: public, max-age=31536000,
//! immutable`); so are partial tiles, since `tile/L/N.p/W` always holds the
//! same `W` hashes. The checkpoint is `no-cache`, as on `/checkpoint`.
//!
//! # Progress, and restarts
//!
//! A small object, [`PROGRESS_PATH`], holds the log's origin and the tree
//! size up to which every full tile is written. The full tiles are written
//! in steps of [`STEP`] entries, each ending with the progress object, so
//! a restart (or a catch-up over a long log) resumes where the last step
//! ended and never writes a full tile twice except those of a step cut
//! short by a crash. At start the publisher reads the progress object; it
//! refuses to write into a prefix that holds another log (another origin)
//! or more of this log than the database has (a database restored from an
//! older backup beside a newer bucket): those need an operator.
//!
//! # Never in the way
//!
//! The publisher runs beside the sequencer and only reads: it waits on the
//! same notification as the rest of the registry (a new checkpoint), and
//! a failing sink is retried with backoff, logged and counted
//! (`cairn_tiles_publish_errors_total`), never blocking a publish.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_blob::{BlobError, ObjectHeaders, ObjectSink};
use cairn_log::tiles::{self, Tile, TileKind};
use futures_util::StreamExt as _;
use tokio::sync::watch;

use crate::{Registry, ServiceError};

/// The checkpoint's path (`c2sp.org/tlog-tiles`).
pub const CHECKPOINT_PATH: &str = "checkpoint";
/// The progress object's path: `<origin>\n<size>\n`, every full tile of
/// the tree of `size` leaves is written.
pub const PROGRESS_PATH: &str = "cairn-tiles-published";
/// Entries per step of full tiles: 256 level-0 tiles, 256 entry bundles
/// and one level-1 tile, then the progress object.
pub const STEP: u64 = 65_536;

/// Headers of every tile, full or partial.
// SPEC: c2sp.org/tlog-tiles — tiles are immutable and cacheable forever.
pub const TILE_HEADERS: ObjectHeaders = ObjectHeaders {
    content_type: "application/octet-stream",
    cache_control: "public, max-age=31536000, immutable",
};
/// Headers of the checkpoint, as `/checkpoint` answers them.
// SPEC: c2sp.org/tlog-tiles — the checkpoint changes; not cached for long.
pub const CHECKPOINT_HEADERS: ObjectHeaders = ObjectHeaders {
    content_type: "text/plain; charset=utf-8",
    cache_control: "no-cache",
};
const PROGRESS_HEADERS: ObjectHeaders = ObjectHeaders {
    content_type: "text/plain; charset=utf-8",
    cache_control: "no-store",
};

/// Tiles written at once.
const PARALLEL: usize = 8;
/// First wait after a failure; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the served checkpoint is looked at without a notification
/// (a checkpoint that gathered its witnesses' cosignatures is replaced).
const IDLE: Duration = Duration::from_secs(5);

/// The hash tiles and entry bundles that are full in a tree of `new`
/// leaves and not in a tree of `old` leaves.
pub fn new_full_tiles(old: u64, new: u64) -> Vec<Tile> {
    let mut out = Vec::new();
    let full = |size: u64, kind: TileKind| match kind {
        TileKind::Hashes { level } => tiles::hashes_at_level(size, level) / tiles::TILE_WIDTH,
        TileKind::Entries => size / tiles::TILE_WIDTH,
    };
    let mut kinds = vec![TileKind::Entries];
    let mut level = 0u8;
    while level <= tiles::MAX_LEVEL && tiles::hashes_at_level(new, level) >= tiles::TILE_WIDTH {
        kinds.push(TileKind::Hashes { level });
        level += 1;
    }
    for kind in kinds {
        for index in full(old.min(new), kind)..full(new, kind) {
            out.push(Tile {
                kind,
                index,
                width: tiles::FULL_WIDTH,
            });
        }
    }
    out
}

/// The partial tiles at the right edge of a tree of `size` leaves: what a
/// reader of a checkpoint of that size needs beyond the full tiles.
pub fn partial_tiles(size: u64) -> Vec<Tile> {
    let mut out = Vec::new();
    let mut push = |kind, available: u64| {
        if let Ok(width @ 1..) = u16::try_from(available % tiles::TILE_WIDTH) {
            out.push(Tile {
                kind,
                index: available / tiles::TILE_WIDTH,
                width,
            });
        }
    };
    push(TileKind::Entries, size);
    let mut level = 0u8;
    while level <= tiles::MAX_LEVEL && tiles::hashes_at_level(size, level) > 0 {
        push(
            TileKind::Hashes { level },
            tiles::hashes_at_level(size, level),
        );
        level += 1;
    }
    out
}

fn encode_progress(origin: &str, size: u64) -> String {
    format!("{origin}\n{size}\n")
}

fn parse_progress(text: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(text).ok()?;
    let mut lines = text.strip_suffix('\n')?.split('\n');
    let origin = lines.next()?.to_owned();
    let size = lines.next()?.parse().ok()?;
    lines.next().is_none().then_some((origin, size))
}

/// Why a round of publishing failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    /// The log could not be read.
    #[error("reading the log: {0}")]
    Log(#[from] ServiceError),
    /// The sink refused or failed a write or a read.
    #[error("{0}")]
    Sink(#[from] BlobError),
    /// The sink holds something this registry must not write over.
    #[error("{0}")]
    Refused(String),
}

/// What is known to be in the sink.
#[derive(Debug, Default)]
struct Published {
    /// Every full tile of the tree of this size is written.
    full: u64,
    /// Full tiles beyond `full` already written (a step that failed part
    /// way): not written again when it is retried.
    written: HashSet<Tile>,
    /// The size whose partial tiles were written by this process.
    partial: Option<u64>,
    /// The checkpoint this process wrote last.
    checkpoint: Option<Vec<u8>>,
}

impl Registry {
    /// The C2SP checkpoint `/checkpoint` serves, with its size.
    fn served_checkpoint(&self) -> Option<(u64, Vec<u8>)> {
        if let Some(served) = self.served_note() {
            return Some((served.length, served.bytes.clone()));
        }
        let latest = self.latest_checkpoint()?;
        let note = latest.note.as_ref()?;
        Some((
            latest.checkpoint.checkpoint.log_length,
            note.as_bytes().to_vec(),
        ))
    }

    /// Publishes tiles and checkpoints to `sink` until `shutdown` turns
    /// true (a round in progress is abandoned; everything it wrote stays
    /// valid, and the next start resumes from the progress object).
    pub async fn run_tile_publisher(
        self,
        sink: Arc<dyn ObjectSink>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let metrics = self.metrics().clone();
        let mut checkpoints = self.inner.published.subscribe();
        let mut published: Option<Published> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let _ = checkpoints.borrow_and_update();
            let outcome = tokio::select! {
                outcome = self.publish_round(sink.as_ref(), &mut published) => outcome,
                _ = shutdown.changed() => return,
            };
            match outcome {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    tokio::select! {
                        _ = checkpoints.changed() => {}
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(IDLE) => {}
                    }
                }
                Err(error) => {
                    metrics.tiles.errors.add(1);
                    tracing::warn!(
                        sink = %sink.location(),
                        %error,
                        retry_in = ?backoff,
                        "publishing tiles failed"
                    );
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Reads what the sink already holds: the size of the tree whose full
    /// tiles are all written, after checking the sink holds this log.
    async fn read_progress(&self, sink: &dyn ObjectSink) -> Result<u64, PublishError> {
        let origin = &self.inner.config.origin;
        let Some(bytes) = sink.get(PROGRESS_PATH).await? else {
            // No progress yet: a prefix holding another log's checkpoint is
            // not written over.
            if let Some(existing) = sink.get(CHECKPOINT_PATH).await? {
                let first = existing.split(|b| *b == b'\n').next().unwrap_or_default();
                if first != origin.as_bytes() {
                    return Err(PublishError::Refused(format!(
                        "{} holds a checkpoint of another log (origin `{}`); refusing to write \
                         over it: publish to another prefix",
                        sink.location(),
                        String::from_utf8_lossy(first)
                    )));
                }
            }
            return Ok(0);
        };
        let (found, size) = parse_progress(&bytes).ok_or_else(|| {
            PublishError::Refused(format!(
                "{}/{PROGRESS_PATH} is unreadable; remove it to publish every tile again",
                sink.location()
            ))
        })?;
        if &found != origin {
            return Err(PublishError::Refused(format!(
                "{} holds the tiles of another log (origin `{found}`, this log is `{origin}`); \
                 refusing to write over them: publish to another prefix",
                sink.location()
            )));
        }
        let length = self.latest_length();
        if size > length {
            return Err(PublishError::Refused(format!(
                "{} holds the tiles of {size} records but this log has {length} (was the \
                 database restored from an older backup?); refusing to write over them",
                sink.location()
            )));
        }
        Ok(size)
    }

    async fn put_tile(&self, sink: &dyn ObjectSink, tile: Tile) -> Result<(), PublishError> {
        let data = self.tile_data(tile).await?;
        sink.put(&tile.path(), Bytes::from(data.bytes), TILE_HEADERS)
            .await?;
        Ok(())
    }

    /// Writes `tiles` (at most [`PARALLEL`] at once); returns those
    /// written and the first failure.
    async fn put_tiles(
        &self,
        sink: &dyn ObjectSink,
        tiles: Vec<Tile>,
    ) -> (Vec<Tile>, Option<PublishError>) {
        let results: Vec<(Tile, Result<(), PublishError>)> = futures_util::stream::iter(tiles)
            .map(|tile| async move { (tile, self.put_tile(sink, tile).await) })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut written = Vec::new();
        let mut failure = None;
        for (tile, result) in results {
            match result {
                Ok(()) => written.push(tile),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        (written, failure)
    }

    /// Brings the sink up to the served checkpoint: new full tiles (in
    /// steps, each ending with the progress object), the partial tiles of
    /// its size, then the checkpoint.
    async fn publish_round(
        &self,
        sink: &dyn ObjectSink,
        state: &mut Option<Published>,
    ) -> Result<(), PublishError> {
        let Some((size, note)) = self.served_checkpoint() else {
            return Ok(());
        };
        if state.is_none() {
            let full = self.read_progress(sink).await?;
            *state = Some(Published {
                full,
                ..Published::default()
            });
        }
        let Some(published) = state.as_mut() else {
            return Ok(());
        };
        // The sink's checkpoint never moves backwards (a cosigned
        // checkpoint may be older than one published before its witnesses
        // answered).
        if size < published.full
            || (size == published.full && published.checkpoint.as_deref() == Some(note.as_slice()))
        {
            return Ok(());
        }
        let metrics = &self.inner.metrics.tiles;
        while published.full < size {
            let end = ((published.full / STEP + 1) * STEP).min(size);
            let missing: Vec<Tile> = new_full_tiles(published.full, end)
                .into_iter()
                .filter(|t| !published.written.contains(t))
                .collect();
            let (written, failure) = self.put_tiles(sink, missing).await;
            metrics.full.add(written.len() as u64);
            published.written.extend(written);
            if let Some(error) = failure {
                return Err(error);
            }
            sink.put(
                PROGRESS_PATH,
                Bytes::from(encode_progress(&self.inner.config.origin, end)),
                PROGRESS_HEADERS,
            )
            .await?;
            published.full = end;
            published.written.clear();
        }
        if published.partial != Some(size) {
            let (written, failure) = self.put_tiles(sink, partial_tiles(size)).await;
            metrics.partial.add(written.len() as u64);
            if let Some(error) = failure {
                return Err(error);
            }
            published.partial = Some(size);
        }
        // Last: the checkpoint, once every tile of its tree is there.
        sink.put(
            CHECKPOINT_PATH,
            Bytes::from(note.clone()),
            CHECKPOINT_HEADERS,
        )
        .await?;
        published.checkpoint = Some(note);
        metrics.set_published_size(size);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(tiles: Vec<Tile>) -> Vec<String> {
        tiles.iter().map(Tile::path).collect()
    }

    #[test]
    fn full_tiles_appear_once_as_the_tree_grows() {
        assert!(new_full_tiles(0, 255).is_empty());
        assert_eq!(
            paths(new_full_tiles(0, 256)),
            ["tile/entries/000", "tile/0/000"]
        );
        assert!(new_full_tiles(256, 511).is_empty());
        assert_eq!(
            paths(new_full_tiles(300, 800)),
            [
                "tile/entries/001",
                "tile/entries/002",
                "tile/0/001",
                "tile/0/002"
            ]
        );
        let at = 65_536;
        let tiles = new_full_tiles(at - 1, at);
        assert_eq!(
            paths(tiles),
            ["tile/entries/255", "tile/0/255", "tile/1/000"]
        );
        // Growing step by step writes exactly the tiles of growing at once.
        let mut stepwise = HashSet::new();
        let mut size = 0;
        for next in [1, 255, 256, 300, 70_000, 131_072, 140_000] {
            for tile in new_full_tiles(size, next) {
                assert!(stepwise.insert(tile), "{} twice", tile.path());
            }
            size = next;
        }
        let whole: HashSet<Tile> = new_full_tiles(0, size).into_iter().collect();
        assert_eq!(stepwise, whole);
        for tile in whole {
            assert!(tile.is_full() && tiles::tile_exists(size, &tile));
        }
    }

    #[test]
    fn partial_tiles_are_the_right_edge() {
        assert!(partial_tiles(0).is_empty());
        assert_eq!(
            paths(partial_tiles(300)),
            ["tile/entries/001.p/44", "tile/0/001.p/44", "tile/1/000.p/1"]
        );
        assert_eq!(
            paths(partial_tiles(512)),
            ["tile/1/000.p/2"],
            "no partial level-0 tile at a multiple of 256"
        );
        assert_eq!(paths(partial_tiles(65_536)), ["tile/2/000.p/1"]);
        for size in [1, 255, 257, 65_537, 1_234_567] {
            for tile in partial_tiles(size) {
                assert!(!tile.is_full() && tiles::tile_exists(size, &tile));
                // The widest tile at that index: nothing the tree holds is left out.
                assert_eq!(tiles::tile_at(size, tile.kind, tile.index), Some(tile));
            }
        }
    }

    #[test]
    fn progress_round_trips_and_refuses_garbage() {
        let text = encode_progress("registry.example/log", 1234);
        assert_eq!(
            parse_progress(text.as_bytes()),
            Some(("registry.example/log".to_owned(), 1234))
        );
        for bad in ["", "origin\n", "origin\n12", "origin\nx\n", "o\n1\n2\n"] {
            assert_eq!(parse_progress(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
