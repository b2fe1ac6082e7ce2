//! The OCI tables' part of a batch commit ([`crate::Store::commit_batch`]):
//! the manifests a batch stores and makes visible, the tags it moves, the
//! bytes of pushed manifests, the blobs it links and what its deletions
//! remove. All in the batch's transaction. ([`crate::OciStore`]'s
//! `insert_manifest` stores one manifest the same way, in its own.)

use cairn_crypto::Sha256Digest;
use sqlx::{Any, Transaction};

use super::MANIFEST_COLUMNS;
use crate::sql::writes::Writes;
use crate::sql::{SqlStore, i64_from, pair_keys, placeholders, write_chunks};
use crate::{OciManifestRow, StoreResult};

impl SqlStore {
    /// Makes the manifests of sequenced pushes visible and moves their
    /// tags (of several moves of one tag in a batch, the last wins).
    pub(in crate::sql) fn publish_oci(
        writes: &mut Writes,
        visible: &[(String, Sha256Digest)],
        tags: &[(String, String, Sha256Digest)],
    ) {
        for chunk in write_chunks(visible) {
            let mut statement = writes.add(publish_manifests_sql(chunk.len()));
            for (repository, digest) in chunk {
                statement.bind(repository.clone()).bind(digest.0.to_vec());
            }
        }
        // One row per tag (the last move wins): a statement may not update
        // a row twice.
        let mut seen = std::collections::HashSet::with_capacity(tags.len());
        let mut last: Vec<&(String, String, Sha256Digest)> = Vec::with_capacity(tags.len());
        for tag in tags.iter().rev() {
            if seen.insert((tag.0.as_str(), tag.1.as_str())) {
                last.push(tag);
            }
        }
        last.reverse();
        for chunk in write_chunks(&last) {
            let mut statement = writes.add(format!(
                "INSERT INTO oci_tags (repository, tag, digest) VALUES {} \
                 ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest",
                placeholders(1, chunk.len(), 3)
            ));
            for (repository, tag, digest) in chunk.iter().copied() {
                statement
                    .bind(repository.clone())
                    .bind(tag.clone())
                    .bind(digest.0.to_vec());
            }
        }
    }

    /// Stores a manifest in `tx`, keeping an existing row.
    pub(in crate::sql) async fn insert_manifest_in(
        tx: &mut Transaction<'_, Any>,
        manifest: &OciManifestRow,
    ) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO oci_manifests ({MANIFEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (repository, digest) DO NOTHING"
        ))
        .bind(manifest.repository.clone())
        .bind(manifest.digest.0.to_vec())
        .bind(manifest.media_type.clone())
        .bind(manifest.artifact_type.clone())
        .bind(manifest.subject.map(|s| s.0.to_vec()))
        .bind(i64_from(manifest.size)?)
        .bind(manifest.annotations.clone())
        .bind(i64::from(manifest.visible))
        .bind(manifest.created_at_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// [`Self::insert_manifest_in`] for many manifests, in few statements.
    pub(in crate::sql) fn insert_manifests_in(
        writes: &mut Writes,
        manifests: &[OciManifestRow],
    ) -> StoreResult<()> {
        for chunk in write_chunks(manifests) {
            let mut statement = writes.add(format!(
                "INSERT INTO oci_manifests ({MANIFEST_COLUMNS}) VALUES {} \
                 ON CONFLICT (repository, digest) DO NOTHING",
                placeholders(1, chunk.len(), 9)
            ));
            for manifest in chunk {
                statement
                    .bind(manifest.repository.clone())
                    .bind(manifest.digest.0.to_vec())
                    .bind(manifest.media_type.clone())
                    .bind(manifest.artifact_type.clone())
                    .bind(manifest.subject.map(|s| s.0.to_vec()))
                    .bind(i64_from(manifest.size)?)
                    .bind(manifest.annotations.clone())
                    .bind(i64::from(manifest.visible))
                    .bind(manifest.created_at_ms);
            }
        }
        Ok(())
    }

    /// Keeps the bytes of pushed manifests (the first stored wins; they
    /// hash to their digest).
    pub(in crate::sql) fn insert_manifest_bytes_in(
        writes: &mut Writes,
        manifests: &[(Sha256Digest, Vec<u8>)],
    ) {
        for chunk in write_chunks(manifests) {
            let mut statement = writes.add(format!(
                "INSERT INTO manifest_bytes (digest, bytes) VALUES {} \
                 ON CONFLICT (digest) DO NOTHING",
                placeholders(1, chunk.len(), 2)
            ));
            for (digest, bytes) in chunk {
                statement.bind(digest.0.to_vec()).bind(bytes.clone());
            }
        }
    }
}

/// Makes `rows` manifests visible, each looked up by its key (bound as
/// repository, digest pairs from `$1`).
pub(in crate::sql) fn publish_manifests_sql(rows: usize) -> String {
    format!(
        "UPDATE oci_manifests SET visible = 1 WHERE {}",
        pair_keys(1, rows, "repository", "digest")
    )
}

/// Links released content to the repositories of the packages releasing
/// it (in a batch commit).
pub(in crate::sql) fn link_released(writes: &mut Writes, links: &[(String, Sha256Digest)]) {
    for (repository, digest_value) in links {
        writes
            .add(
                "INSERT INTO oci_blobs (repository, digest, size) \
                 SELECT $1, digest, size FROM contents WHERE digest = $2 \
                 ON CONFLICT (repository, digest) DO NOTHING",
            )
            .bind(repository.clone())
            .bind(digest_value.0.to_vec());
    }
}

/// Removes what sequenced deletions take away (in a batch commit): the tag
/// rows of deleted tags and the rows of deleted manifests (so they are no
/// longer served, listed as referrers or named by a tag).
pub(in crate::sql) fn unpublish(
    writes: &mut Writes,
    untagged: &[(String, String)],
    deleted: &[(String, Sha256Digest)],
) {
    for (repository, tag) in untagged {
        writes
            .add("DELETE FROM oci_tags WHERE repository = $1 AND tag = $2")
            .bind(repository.clone())
            .bind(tag.clone());
    }
    for (repository, digest_value) in deleted {
        writes
            .add("DELETE FROM oci_manifests WHERE repository = $1 AND digest = $2")
            .bind(repository.clone())
            .bind(digest_value.0.to_vec());
    }
}
