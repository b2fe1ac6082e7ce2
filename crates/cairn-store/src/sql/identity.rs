//! [`IdentityStore`] on SQL: the `tokens` and `admin_audit` tables.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{SqlStore, digest};
use crate::{AuditEntry, IdentityStore, StoreError, StoreResult, TokenKind, TokenRow};

const TOKEN_COLUMNS: &str = "id, secret_hash, identity, namespaces, actions, description, kind, created_at, expires_at, revoked_at, parent, claims";

fn token_from_row(row: &AnyRow) -> StoreResult<TokenRow> {
    let kind: i64 = row.try_get("kind")?;
    Ok(TokenRow {
        id: row.try_get("id")?,
        secret_hash: digest(&row.try_get::<Vec<u8>, _>("secret_hash")?, "token hash")?,
        identity: row.try_get("identity")?,
        namespaces: json_list(&row.try_get::<String, _>("namespaces")?, "token namespaces")?,
        actions: json_list(&row.try_get::<String, _>("actions")?, "token actions")?,
        description: row.try_get("description")?,
        kind: TokenKind::from_db(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("bad token kind {kind}")))?,
        created_at_ms: row.try_get("created_at")?,
        expires_at_ms: row.try_get("expires_at")?,
        revoked_at_ms: row.try_get("revoked_at")?,
        parent: row.try_get("parent")?,
        claims: serde_json::from_str(&row.try_get::<String, _>("claims")?)
            .map_err(|e| StoreError::Corrupt(format!("token claims: {e}")))?,
    })
}

fn json_list(text: &str, what: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

#[async_trait]
impl IdentityStore for SqlStore {
    async fn insert_token(&self, token: &TokenRow) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(token.id.clone())
        .bind(token.secret_hash.0.to_vec())
        .bind(token.identity.clone())
        .bind(serde_json::to_string(&token.namespaces).unwrap_or_default())
        .bind(serde_json::to_string(&token.actions).unwrap_or_default())
        .bind(token.description.clone())
        .bind(token.kind.to_db())
        .bind(token.created_at_ms)
        .bind(token.expires_at_ms)
        .bind(token.revoked_at_ms)
        .bind(token.parent.clone())
        .bind(serde_json::to_string(&token.claims).unwrap_or_else(|_| "{}".into()))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn token(&self, id: &str) -> StoreResult<Option<TokenRow>> {
        sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
            .bind(id.to_owned())
            .fetch_optional(&self.read)
            .await?
            .map(|row| token_from_row(&row))
            .transpose()
    }

    async fn tokens(&self, identity: Option<&str>) -> StoreResult<Vec<TokenRow>> {
        let rows = match identity {
            Some(identity) => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE identity = $1 AND kind <> 1 ORDER BY created_at, id"
                ))
                .bind(identity.to_owned())
                .fetch_all(&self.read)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind <> 1 ORDER BY created_at, id"
                ))
                .fetch_all(&self.read)
                .await?
            }
        };
        rows.iter().map(token_from_row).collect()
    }

    async fn tokens_page(
        &self,
        identity: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<TokenRow>> {
        // Keyset paging on (created_at, id): the page starts after the
        // named token's position.
        let (created, id) = match after {
            Some(after) => {
                let row = sqlx::query("SELECT created_at FROM tokens WHERE id = $1")
                    .bind(after.to_owned())
                    .fetch_optional(&self.read)
                    .await?;
                match row {
                    Some(row) => (row.try_get::<i64, _>(0)?, after.to_owned()),
                    None => return Ok(Vec::new()),
                }
            }
            None => (i64::MIN, String::new()),
        };
        sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind <> 1 \
             AND ($1 = '' OR identity = $1) \
             AND (created_at > $2 OR (created_at = $2 AND id > $3)) \
             ORDER BY created_at, id LIMIT $4"
        ))
        .bind(identity.unwrap_or("").to_owned())
        .bind(created)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn revoke_token(&self, id: &str, at_ms: i64) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at_ms)
                .bind(id.to_owned())
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_identity_tokens(&self, identity: &str, at_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE identity = $2 AND revoked_at IS NULL",
        )
        .bind(at_ms)
        .bind(identity.to_owned())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    async fn delete_expired_tokens(&self, before_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM tokens WHERE kind <> 0 AND expires_at IS NOT NULL AND expires_at < $1",
        )
        .bind(before_ms)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    async fn append_audit(
        &self,
        at_ms: i64,
        actor: &str,
        action: &str,
        details: &str,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO admin_audit (at, actor, action, details) VALUES ($1, $2, $3, $4)")
            .bind(at_ms)
            .bind(actor.to_owned())
            .bind(action.to_owned())
            .bind(details.to_owned())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn audit(&self, after: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        sqlx::query(
            "SELECT seq, at, actor, action, details FROM admin_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            Ok(AuditEntry {
                seq: row.try_get("seq")?,
                at_ms: row.try_get("at")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                details: row.try_get("details")?,
            })
        })
        .collect()
    }
}
