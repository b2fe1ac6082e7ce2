//! [`DigestAliases`] on SQL.

use async_trait::async_trait;
use cairn_crypto::{Sha256Digest, Sha512Digest};
use sqlx::Row as _;

use super::{SqlStore, digest};
use crate::{DigestAliases, OciManifestRow, StoreError, StoreResult};

fn sha512(bytes: &[u8]) -> StoreResult<Sha512Digest> {
    Sha512Digest::from_slice(bytes)
        .map_err(|_| StoreError::Corrupt("bad SHA-512 subject digest".into()))
}

#[async_trait]
impl DigestAliases for SqlStore {
    async fn record_alias(&self, sha512: &Sha512Digest, sha256: &Sha256Digest) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO digest_aliases (sha512, sha256) VALUES ($1, $2) \
             ON CONFLICT (sha512) DO NOTHING",
        )
        .bind(sha512.0.to_vec())
        .bind(sha256.0.to_vec())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn alias(&self, sha512: &Sha512Digest) -> StoreResult<Option<Sha256Digest>> {
        // From the writer: an alias recorded a moment ago (by the upload
        // the client just finished) must resolve.
        sqlx::query("SELECT sha256 FROM digest_aliases WHERE sha512 = $1")
            .bind(sha512.0.to_vec())
            .fetch_optional(&self.write)
            .await?
            .map(|row| digest(&row.try_get::<Vec<u8>, _>(0)?, "alias"))
            .transpose()
    }

    async fn record_sha512_subject(
        &self,
        repository: &str,
        referrer: &Sha256Digest,
        subject: &Sha512Digest,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO oci_sha512_subjects (repository, referrer, subject) VALUES ($1, $2, $3) \
             ON CONFLICT (repository, referrer) DO NOTHING",
        )
        .bind(repository.to_owned())
        .bind(referrer.0.to_vec())
        .bind(subject.0.to_vec())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn sha512_subject(
        &self,
        repository: &str,
        referrer: &Sha256Digest,
    ) -> StoreResult<Option<Sha512Digest>> {
        sqlx::query(
            "SELECT subject FROM oci_sha512_subjects WHERE repository = $1 AND referrer = $2",
        )
        .bind(repository.to_owned())
        .bind(referrer.0.to_vec())
        .fetch_optional(&self.read)
        .await?
        .map(|row| sha512(&row.try_get::<Vec<u8>, _>(0)?))
        .transpose()
    }

    async fn referrers_page_sha512(
        &self,
        repository: &str,
        subject: &Sha512Digest,
        artifact_type: Option<&str>,
        after: Option<(i64, &Sha256Digest)>,
        limit: u32,
    ) -> StoreResult<Vec<OciManifestRow>> {
        self.referrers_page_where(
            "subject = (SELECT sha256 FROM digest_aliases WHERE sha512 = $2) \
             OR digest IN (SELECT referrer FROM oci_sha512_subjects \
             WHERE repository = $1 AND subject = $2)",
            repository,
            subject.0.to_vec(),
            artifact_type,
            after,
            limit,
        )
        .await
    }
}
