//! The [`IdentityStore`] contract, on SQLite and PostgreSQL, through the
//! narrow trait alone: token ids are unique, revocation is final, only
//! short-lived tokens are forgotten, and the audit log pages in order.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeMap;

use cairn_crypto::Sha256Digest;
use cairn_store::testing::{TestDatabase, open};
use cairn_store::{IdentityStore, StoreError, TokenKind, TokenRow};

fn token(
    id: &str,
    identity: &str,
    kind: TokenKind,
    created: i64,
    expires: Option<i64>,
) -> TokenRow {
    TokenRow {
        id: id.into(),
        secret_hash: Sha256Digest::of(id.as_bytes()),
        identity: identity.into(),
        namespaces: vec!["*".into()],
        actions: vec!["read".into(), "publish".into()],
        description: format!("token {id}"),
        kind,
        created_at_ms: created,
        expires_at_ms: expires,
        revoked_at_ms: None,
        parent: None,
        claims: BTreeMap::from([("iss".to_owned(), "test".to_owned())]),
    }
}

fn ids(tokens: &[TokenRow]) -> Vec<&str> {
    tokens.iter().map(|t| t.id.as_str()).collect()
}

#[tokio::test]
async fn tokens_are_unique_revoked_once_and_only_short_lived_ones_expire() {
    for db in TestDatabase::all().await {
        let sql = open(&db).await;
        let store: &dyn IdentityStore = &sql;
        let api = token("api-a", "alice", TokenKind::Api, 10, Some(100));
        let session = token("session-a", "alice", TokenKind::Session, 20, Some(100));
        let oidc = token("oidc-b", "bob", TokenKind::Oidc, 30, Some(100));
        let later = token("api-b", "bob", TokenKind::Api, 40, None);
        for row in [&api, &session, &oidc, &later] {
            store.insert_token(row).await.unwrap();
        }
        assert_eq!(store.token("api-a").await.unwrap().as_ref(), Some(&api));
        assert_eq!(store.token("missing").await.unwrap(), None);

        // An existing id is refused and the stored row kept.
        let mut clash = token("api-a", "mallory", TokenKind::Api, 50, None);
        clash.secret_hash = Sha256Digest::of(b"other");
        assert!(
            matches!(
                store.insert_token(&clash).await,
                Err(StoreError::Conflict(_))
            ),
            "{}",
            db.kind
        );
        assert_eq!(store.token("api-a").await.unwrap().as_ref(), Some(&api));

        // Long-lived tokens only, in creation order; pages continue after
        // the named token, and an unknown one gives an empty page.
        assert_eq!(
            ids(&store.tokens(None).await.unwrap()),
            ["api-a", "oidc-b", "api-b"]
        );
        assert_eq!(
            ids(&store.tokens(Some("bob")).await.unwrap()),
            ["oidc-b", "api-b"]
        );
        assert_eq!(
            ids(&store.tokens_page(None, None, 2).await.unwrap()),
            ["api-a", "oidc-b"]
        );
        assert_eq!(
            ids(&store.tokens_page(None, Some("oidc-b"), 2).await.unwrap()),
            ["api-b"]
        );
        assert!(
            store
                .tokens_page(None, Some("gone"), 2)
                .await
                .unwrap()
                .is_empty()
        );

        // Revocation is final: the first time is kept.
        assert!(store.revoke_token("api-a", 60).await.unwrap());
        assert!(!store.revoke_token("api-a", 70).await.unwrap());
        assert_eq!(
            store.token("api-a").await.unwrap().unwrap().revoked_at_ms,
            Some(60)
        );
        assert_eq!(store.revoke_identity_tokens("alice", 80).await.unwrap(), 1);
        assert_eq!(store.revoke_identity_tokens("alice", 90).await.unwrap(), 0);
        assert_eq!(
            store
                .token("session-a")
                .await
                .unwrap()
                .unwrap()
                .revoked_at_ms,
            Some(80)
        );

        // Only expired session and OIDC tokens are forgotten.
        assert_eq!(store.delete_expired_tokens(100).await.unwrap(), 0);
        assert_eq!(store.delete_expired_tokens(101).await.unwrap(), 2);
        assert_eq!(store.token("session-a").await.unwrap(), None);
        assert_eq!(store.token("oidc-b").await.unwrap(), None);
        assert!(store.token("api-a").await.unwrap().is_some(), "{}", db.kind);
    }
}

#[tokio::test]
async fn the_audit_log_pages_in_order() {
    for db in TestDatabase::all().await {
        let sql = open(&db).await;
        let store: &dyn IdentityStore = &sql;
        assert!(store.audit(None, 10).await.unwrap().is_empty());
        for (at, action) in [
            (1, "identity.create"),
            (2, "token.create"),
            (3, "token.revoke"),
        ] {
            store
                .append_audit(at, "admin", action, r#"{"id":"x"}"#)
                .await
                .unwrap();
        }
        let all = store.audit(None, 10).await.unwrap();
        let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["identity.create", "token.create", "token.revoke"]);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{}", db.kind);
        assert_eq!(all[1].at_ms, 2);
        assert_eq!(all[1].actor, "admin");
        assert_eq!(all[1].details, r#"{"id":"x"}"#);
        let page = store.audit(Some(all[0].seq), 1).await.unwrap();
        assert_eq!(page, vec![all[1].clone()]);
        assert!(store.audit(Some(all[2].seq), 10).await.unwrap().is_empty());
    }
}
