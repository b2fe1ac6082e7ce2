//! Opening the sink of `--publish-tiles` (a directory or an S3 bucket),
//! which the server hands to the tile publisher
//! (`cairn_service::tile_publisher`).

use std::sync::Arc;

use anyhow::Context as _;
use cairn_blob::{DirObjectSink, ObjectSink, S3ObjectSink};

use crate::config::PublishTiles;

/// Opens the sink `target` names. A directory is created if missing; a
/// bucket is not contacted (an unreachable one is retried and reported by
/// the publisher, never in the way of the registry).
pub async fn open_sink(target: &PublishTiles) -> anyhow::Result<Arc<dyn ObjectSink>> {
    Ok(match target {
        PublishTiles::Dir(path) => Arc::new(
            DirObjectSink::open(path)
                .await
                .with_context(|| format!("--publish-tiles: cannot use {}", path.display()))?,
        ),
        PublishTiles::S3(s3) => Arc::new(
            S3ObjectSink::new(s3)
                .with_context(|| format!("--publish-tiles: cannot use s3://{}", s3.bucket))?,
        ),
    })
}
