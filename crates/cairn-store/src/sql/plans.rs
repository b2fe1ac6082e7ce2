//! The statements that run for every batch or page, planned by SQLite: each
//! looks its rows up through an index instead of reading a whole table (a
//! scan costs time in proportion to everything ever pushed).
#![allow(clippy::expect_used, reason = "test")]

use sqlx::Row as _;

use super::SqlStore;
use crate::testing::{TestDatabase, open};

/// SQLite's plan of `sql` (with `params` placeholders), one step a line.
async fn plan(store: &SqlStore, sql: &str, params: usize) -> String {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut query = sqlx::query(&explain);
    for _ in 0..params {
        query = query.bind(1_i64);
    }
    query
        .fetch_all(&store.read)
        .await
        .expect("explain")
        .iter()
        .map(|row| row.try_get::<String, _>(3).expect("plan detail"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_no_scan(plan: &str, table: &str, sql: &str) {
    assert!(
        !plan
            .lines()
            .any(|step| step.starts_with(&format!("SCAN {table}"))),
        "{sql}\nscans {table}:\n{plan}"
    );
}

#[tokio::test]
async fn batch_statements_look_rows_up_by_key() {
    let db = TestDatabase::sqlite();
    let store = open(&db).await;
    for rows in [1, 2, 64] {
        let sql = super::oci::batch::publish_manifests_sql(rows);
        assert_no_scan(&plan(&store, &sql, 2 * rows).await, "oci_manifests", &sql);
        let sql = super::pending::delete_pending_sql(rows);
        assert_no_scan(&plan(&store, &sql, 2 * rows).await, "pending", &sql);
        // A batch's releases get their interfaces by key, not by reading
        // every release of the same content.
        let sql =
            super::search::interfaces_sql(&super::pair_keys(1, rows, "r.package", "r.version"));
        let plan = plan(&store, &sql, 2 * rows).await;
        assert_no_scan(&plan, "r", &sql);
        assert!(
            !plan.contains("search_releases_by_content"),
            "{sql}\n{plan}"
        );
    }
}

#[tokio::test]
async fn referrers_are_read_in_index_order() {
    let db = TestDatabase::sqlite();
    let store = open(&db).await;
    let mut statements = vec![(super::oci::referrers_sql(), 2)];
    for by_type in [false, true] {
        statements.push((
            super::oci::referrers_page_sql("subject = $2", by_type),
            5 + usize::from(by_type),
        ));
    }
    for (sql, params) in statements {
        let plan = plan(&store, &sql, params).await;
        assert!(
            plan.contains("USING INDEX oci_manifests_by_subject (repository=? AND subject=?"),
            "{sql}\n{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{sql}\nsorts:\n{plan}");
    }
}
