//! [`OciStore`] on SQL: the `oci_*` tables, `manifest_bytes` and the
//! listings over `contents`. What a batch commit writes to them is in
//! `oci/batch.rs`.

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::writes::Writes;
use super::{SqlStore, digest, i64_from, u64_from};
use crate::{OciManifestRow, OciStore, StoreResult};

pub(super) mod batch;

pub(super) use batch::{link_released, unpublish};

const MANIFEST_COLUMNS: &str = "repository, digest, media_type, artifact_type, subject, size, annotations, visible, created_at";

fn manifest_from_row(row: &AnyRow) -> StoreResult<OciManifestRow> {
    let subject: Option<Vec<u8>> = row.try_get("subject")?;
    let visible: i64 = row.try_get("visible")?;
    Ok(OciManifestRow {
        repository: row.try_get("repository")?,
        digest: digest(&row.try_get::<Vec<u8>, _>("digest")?, "manifest")?,
        media_type: row.try_get("media_type")?,
        artifact_type: row.try_get("artifact_type")?,
        subject: subject.map(|s| digest(&s, "subject")).transpose()?,
        size: u64_from(row.try_get("size")?, "manifest size")?,
        annotations: row.try_get("annotations")?,
        visible: visible != 0,
        created_at_ms: row.try_get("created_at")?,
    })
}

#[async_trait]
impl OciStore for SqlStore {
    async fn link_blob(
        &self,
        repository: &str,
        digest_value: &Sha256Digest,
        size: u64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO oci_blobs (repository, digest, size) VALUES ($1, $2, $3) \
             ON CONFLICT (repository, digest) DO NOTHING",
        )
        .bind(repository.to_owned())
        .bind(digest_value.0.to_vec())
        .bind(i64_from(size)?)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn repository_blob(
        &self,
        repository: &str,
        digest_value: &Sha256Digest,
    ) -> StoreResult<Option<u64>> {
        sqlx::query("SELECT size FROM oci_blobs WHERE repository = $1 AND digest = $2")
            .bind(repository.to_owned())
            .bind(digest_value.0.to_vec())
            .fetch_optional(&self.read)
            .await?
            .map(|row| u64_from(row.try_get(0)?, "blob size"))
            .transpose()
    }

    async fn insert_manifest(&self, manifest: &OciManifestRow) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        Self::insert_manifest_in(&mut tx, manifest).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn manifest(
        &self,
        repository: &str,
        digest_value: &Sha256Digest,
    ) -> StoreResult<Option<OciManifestRow>> {
        sqlx::query(&format!(
            "SELECT {MANIFEST_COLUMNS} FROM oci_manifests WHERE repository = $1 AND digest = $2"
        ))
        .bind(repository.to_owned())
        .bind(digest_value.0.to_vec())
        .fetch_optional(&self.read)
        .await?
        .map(|row| manifest_from_row(&row))
        .transpose()
    }

    async fn referrers(
        &self,
        repository: &str,
        subject: &Sha256Digest,
    ) -> StoreResult<Vec<OciManifestRow>> {
        sqlx::query(&referrers_sql())
            .bind(repository.to_owned())
            .bind(subject.0.to_vec())
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(manifest_from_row)
            .collect()
    }

    async fn tag(&self, repository: &str, tag: &str) -> StoreResult<Option<Sha256Digest>> {
        self.named_digest("oci_tags", "tag", repository, tag, "tag")
            .await
    }

    async fn tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(String, Sha256Digest)>> {
        sqlx::query(
            "SELECT tag, digest FROM oci_tags WHERE repository = $1 AND tag > $2 ORDER BY tag LIMIT $3",
        )
        .bind(repository.to_owned())
        .bind(after.unwrap_or("").to_owned())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                digest(&row.try_get::<Vec<u8>, _>(1)?, "tag")?,
            ))
        })
        .collect()
    }

    async fn manifest_bytes(&self, digest: &Sha256Digest) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query("SELECT bytes FROM manifest_bytes WHERE digest = $1")
            .bind(digest.0.to_vec())
            .fetch_optional(&self.read)
            .await?
            .map(|row| Ok(row.try_get::<Vec<u8>, _>(0)?))
            .transpose()
    }

    async fn derived(&self, repository: &str, version: &str) -> StoreResult<Option<Sha256Digest>> {
        self.named_digest(
            "oci_derived",
            "version",
            repository,
            version,
            "derived manifest",
        )
        .await
    }

    async fn insert_derived(
        &self,
        repository: &str,
        version: &str,
        digest_value: &Sha256Digest,
    ) -> StoreResult<Sha256Digest> {
        sqlx::query(
            "INSERT INTO oci_derived (repository, version, digest) VALUES ($1, $2, $3) \
             ON CONFLICT (repository, version) DO NOTHING",
        )
        .bind(repository.to_owned())
        .bind(version.to_owned())
        .bind(digest_value.0.to_vec())
        .execute(&self.write)
        .await?;
        // Read back from the writer: the first stored wins.
        let row =
            sqlx::query("SELECT digest FROM oci_derived WHERE repository = $1 AND version = $2")
                .bind(repository.to_owned())
                .bind(version.to_owned())
                .fetch_one(&self.write)
                .await?;
        digest(&row.try_get::<Vec<u8>, _>(0)?, "derived manifest")
    }

    async fn blob_repositories(
        &self,
        digest_value: &Sha256Digest,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        sqlx::query(
            "SELECT repository FROM oci_blobs WHERE digest = $1 ORDER BY repository LIMIT $2",
        )
        .bind(digest_value.0.to_vec())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| Ok(row.try_get(0)?))
        .collect()
    }

    async fn all_tags(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, Sha256Digest)>> {
        self.named_digests_page("oci_tags", "tag", after, limit)
            .await
    }

    async fn all_manifests(
        &self,
        after: Option<(&str, &Sha256Digest)>,
        limit: u32,
    ) -> StoreResult<Vec<OciManifestRow>> {
        let (repository, last) = match after {
            Some((repository, digest)) => (repository.to_owned(), digest.0.to_vec()),
            None => (String::new(), Vec::new()),
        };
        sqlx::query(&format!(
            "SELECT {MANIFEST_COLUMNS} FROM oci_manifests \
             WHERE repository > $1 OR (repository = $1 AND digest > $2) \
             ORDER BY repository, digest LIMIT $3"
        ))
        .bind(repository)
        .bind(last)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(manifest_from_row)
        .collect()
    }

    async fn all_blob_links(
        &self,
        after: Option<(&str, &Sha256Digest)>,
        limit: u32,
    ) -> StoreResult<Vec<(String, Sha256Digest, u64)>> {
        let (repository, last) = match after {
            Some((repository, digest)) => (repository.to_owned(), digest.0.to_vec()),
            None => (String::new(), Vec::new()),
        };
        sqlx::query(
            "SELECT repository, digest, size FROM oci_blobs \
             WHERE repository > $1 OR (repository = $1 AND digest > $2) \
             ORDER BY repository, digest LIMIT $3",
        )
        .bind(repository)
        .bind(last)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                digest(&row.try_get::<Vec<u8>, _>(1)?, "blob")?,
                u64_from(row.try_get(2)?, "blob size")?,
            ))
        })
        .collect()
    }

    async fn link_released_content(&self, links: &[(String, Sha256Digest)]) -> StoreResult<()> {
        let mut writes = Writes::new(self.is_sqlite());
        link_released(&mut writes, links);
        let mut tx = self.begin_write().await?;
        writes.run(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn all_derived(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, Sha256Digest)>> {
        self.named_digests_page("oci_derived", "version", after, limit)
            .await
    }

    async fn all_contents(
        &self,
        after: Option<&Sha256Digest>,
        limit: u32,
    ) -> StoreResult<Vec<crate::ContentRow>> {
        let last = after.map(|d| d.0.to_vec()).unwrap_or_default();
        sqlx::query(
            "SELECT digest, size, published FROM contents WHERE digest > $1 \
             ORDER BY digest LIMIT $2",
        )
        .bind(last)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            Ok(crate::ContentRow {
                digest: digest(&row.try_get::<Vec<u8>, _>(0)?, "content")?,
                size: u64_from(row.try_get(1)?, "content size")?,
                published: row.try_get::<i64, _>(2)? != 0,
            })
        })
        .collect()
    }

    async fn derived_versions(
        &self,
        repository: &str,
        digest_value: &Sha256Digest,
    ) -> StoreResult<Vec<String>> {
        sqlx::query(
            "SELECT version FROM oci_derived WHERE repository = $1 AND digest = $2 ORDER BY version",
        )
        .bind(repository.to_owned())
        .bind(digest_value.0.to_vec())
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| Ok(row.try_get(0)?))
        .collect()
    }

    async fn unlink_blob(
        &self,
        digest_value: &Sha256Digest,
    ) -> StoreResult<Option<Vec<(String, u64)>>> {
        let mut tx = self.begin_write().await?;
        let recorded = sqlx::query("SELECT 1 FROM contents WHERE digest = $1")
            .bind(digest_value.0.to_vec())
            .fetch_optional(&mut *tx)
            .await?;
        if recorded.is_some() {
            tx.commit().await?;
            return Ok(None);
        }
        let links = sqlx::query(
            "SELECT repository, size FROM oci_blobs WHERE digest = $1 ORDER BY repository",
        )
        .bind(digest_value.0.to_vec())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, u64_from(row.try_get(1)?, "blob size")?)))
        .collect::<StoreResult<Vec<(String, u64)>>>()?;
        sqlx::query("DELETE FROM oci_blobs WHERE digest = $1")
            .bind(digest_value.0.to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(links))
    }

    async fn referrers_page(
        &self,
        repository: &str,
        subject: &Sha256Digest,
        artifact_type: Option<&str>,
        after: Option<(i64, &Sha256Digest)>,
        limit: u32,
    ) -> StoreResult<Vec<OciManifestRow>> {
        self.referrers_page_where(
            "subject = $2",
            repository,
            subject.0.to_vec(),
            artifact_type,
            after,
            limit,
        )
        .await
    }
}

impl SqlStore {
    /// A page of visible manifests of `repository` that refer to `subject`
    /// (bound as `$2`, selected by `subject_clause`), in `(created_at,
    /// digest)` order after `after`, of `artifact_type` if given.
    pub(super) async fn referrers_page_where(
        &self,
        subject_clause: &str,
        repository: &str,
        subject: Vec<u8>,
        artifact_type: Option<&str>,
        after: Option<(i64, &Sha256Digest)>,
        limit: u32,
    ) -> StoreResult<Vec<OciManifestRow>> {
        let (created_at, last) = match after {
            Some((at, digest)) => (at, digest.0.to_vec()),
            None => (i64::MIN, Vec::new()),
        };
        let sql = referrers_page_sql(subject_clause, artifact_type.is_some());
        let mut query = sqlx::query(&sql)
            .bind(repository.to_owned())
            .bind(subject)
            .bind(created_at)
            .bind(last)
            .bind(i64::from(limit));
        if let Some(artifact_type) = artifact_type {
            query = query.bind(artifact_type.to_owned());
        }
        query
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(manifest_from_row)
            .collect()
    }

    /// The digest `name` names in `repository` in a `(repository, <column>)
    /// -> digest` table (`oci_tags` by tag, `oci_derived` by version);
    /// `what` names it in an error.
    async fn named_digest(
        &self,
        table: &'static str,
        column: &'static str,
        repository: &str,
        name: &str,
        what: &str,
    ) -> StoreResult<Option<Sha256Digest>> {
        sqlx::query(&format!(
            "SELECT digest FROM {table} WHERE repository = $1 AND {column} = $2"
        ))
        .bind(repository.to_owned())
        .bind(name.to_owned())
        .fetch_optional(&self.read)
        .await?
        .map(|row| digest(&row.try_get::<Vec<u8>, _>(0)?, what))
        .transpose()
    }

    /// A key-ordered page of a `(repository, <name>) -> digest` table
    /// (`oci_tags` by tag, `oci_derived` by version), after `after`.
    async fn named_digests_page(
        &self,
        table: &'static str,
        name: &'static str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, Sha256Digest)>> {
        let (repository, last) = after.unwrap_or(("", ""));
        sqlx::query(&format!(
            "SELECT repository, {name}, digest FROM {table} \
             WHERE repository > $1 OR (repository = $1 AND {name} > $2) \
             ORDER BY repository, {name} LIMIT $3"
        ))
        .bind(repository.to_owned())
        .bind(last.to_owned())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                digest(&row.try_get::<Vec<u8>, _>(2)?, table)?,
            ))
        })
        .collect()
    }
}

/// The visible referrers of the subject `$2` in repository `$1`, in the
/// order they are served (through `oci_manifests_by_subject`).
pub(super) fn referrers_sql() -> String {
    format!(
        "SELECT {MANIFEST_COLUMNS} FROM oci_manifests WHERE repository = $1 AND subject = $2 \
         AND visible = 1 ORDER BY created_at, digest"
    )
}

/// A page of the visible manifests of repository `$1` that
/// `subject_clause` selects (its subject bound as `$2`), after `($3, $4)`
/// in `(created_at, digest)` order, at most `$5`, of artifact type `$6`
/// when `by_artifact_type`.
pub(super) fn referrers_page_sql(subject_clause: &str, by_artifact_type: bool) -> String {
    let filter = if by_artifact_type {
        "AND artifact_type = $6 "
    } else {
        ""
    };
    format!(
        "SELECT {MANIFEST_COLUMNS} FROM oci_manifests WHERE repository = $1 \
         AND ({subject_clause}) \
         AND visible = 1 AND (created_at > $3 OR (created_at = $3 AND digest > $4)) {filter}\
         ORDER BY created_at, digest LIMIT $5"
    )
}
