//! [`Writes`]: the write statements of a transaction, gathered and sent
//! together when the transaction needs no answer from any of them.
//!
//! Contract: statements run in the order they were added, each with its own
//! binds, inside the transaction passed to [`Writes::run`], and their
//! results (rows affected, rows) are not returned — a statement whose
//! outcome decides what comes next is run on its own. A failing statement
//! fails `run`; the caller's transaction then rolls every one back.
//!
//! On SQLite, `run` sends them as one multi-statement query: each statement
//! is otherwise a round trip to the connection's thread, and those hand-offs
//! (two context switches each) are most of a small batch commit's cost.
//! Placeholders are renumbered (`$N` of a statement becomes `$N+k`, `k` the
//! binds before it), since SQLite numbers `$N` across a query's statements.
//! PostgreSQL prepares one statement at a time, so there `run` sends each in
//! turn.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Transaction};

use crate::StoreResult;

/// A value bound to a placeholder.
#[derive(Clone, Debug)]
pub(super) enum Bind {
    Int(i64),
    Bytes(Vec<u8>),
    Text(String),
    NullableBytes(Option<Vec<u8>>),
    NullableText(Option<String>),
}

impl From<i64> for Bind {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<Vec<u8>> for Bind {
    fn from(value: Vec<u8>) -> Self {
        Self::Bytes(value)
    }
}

impl From<String> for Bind {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<Option<Vec<u8>>> for Bind {
    fn from(value: Option<Vec<u8>>) -> Self {
        Self::NullableBytes(value)
    }
}

impl From<Option<String>> for Bind {
    fn from(value: Option<String>) -> Self {
        Self::NullableText(value)
    }
}

/// Write statements of one transaction, run together by [`Writes::run`].
#[derive(Debug)]
pub(super) struct Writes {
    joined: bool,
    /// Each statement, with the index in `binds` of its first value.
    statements: Vec<(String, usize)>,
    binds: Vec<Bind>,
}

impl Writes {
    /// Statements for a transaction on SQLite (`joined`: sent as one
    /// query) or PostgreSQL (sent one by one).
    pub(super) fn new(joined: bool) -> Self {
        Self {
            joined,
            statements: Vec::new(),
            binds: Vec::new(),
        }
    }

    /// Adds `sql` (placeholders `$1…$n`); bind its `n` values with
    /// [`Statement::bind`] on the answer, in order, before adding another.
    pub(super) fn add(&mut self, sql: impl Into<String>) -> Statement<'_> {
        self.statements.push((sql.into(), self.binds.len()));
        Statement {
            binds: &mut self.binds,
        }
    }

    /// Runs every statement in `tx`, in order.
    pub(super) async fn run(self, tx: &mut Transaction<'_, Any>) -> StoreResult<()> {
        if self.joined && self.statements.len() > 1 {
            let mut sql = String::new();
            for (statement, first) in &self.statements {
                renumber_into(&mut sql, statement, *first);
                sql.push_str(";\n");
            }
            return execute(tx, &sql, self.binds).await;
        }
        let mut binds = self.binds.into_iter();
        let mut statements = self.statements.iter().peekable();
        while let Some((sql, first)) = statements.next() {
            let next = statements.peek().map_or(binds.len() + first, |(_, n)| *n);
            let own: Vec<Bind> = binds.by_ref().take(next - first).collect();
            execute(tx, sql, own).await?;
        }
        Ok(())
    }
}

/// The binds of the statement just added to a [`Writes`].
pub(super) struct Statement<'a> {
    binds: &'a mut Vec<Bind>,
}

impl Statement<'_> {
    /// Binds the next placeholder.
    pub(super) fn bind(&mut self, value: impl Into<Bind>) -> &mut Self {
        self.binds.push(value.into());
        self
    }
}

/// `query` with `value` bound to its next placeholder.
pub(super) fn bind<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    value: Bind,
) -> Query<'q, Any, AnyArguments<'q>> {
    match value {
        Bind::Int(v) => query.bind(v),
        Bind::Bytes(v) => query.bind(v),
        Bind::Text(v) => query.bind(v),
        Bind::NullableBytes(v) => query.bind(v),
        Bind::NullableText(v) => query.bind(v),
    }
}

async fn execute(tx: &mut Transaction<'_, Any>, sql: &str, binds: Vec<Bind>) -> StoreResult<()> {
    let query = binds.into_iter().fold(sqlx::query(sql), bind);
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Appends `sql` to `out` with each placeholder `$N` (outside quoted text)
/// written as `$N+offset`.
fn renumber_into(out: &mut String, sql: &str, offset: usize) {
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = 0usize;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n * 10 + d as usize;
                    chars.next();
                }
                out.push('$');
                out.push_str(&(n + offset).to_string());
            }
            None => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::renumber_into;

    #[test]
    fn placeholders_are_shifted_outside_quoted_text() {
        let mut out = String::new();
        renumber_into(
            &mut out,
            "INSERT INTO t (a, b) VALUES ($1, $12) ON CONFLICT DO UPDATE SET c = '$1', d = \"$2\"",
            10,
        );
        assert_eq!(
            out,
            "INSERT INTO t (a, b) VALUES ($11, $22) ON CONFLICT DO UPDATE SET c = '$1', d = \"$2\""
        );
        let mut unchanged = String::new();
        renumber_into(&mut unchanged, "SELECT $1, $ 2, $x", 0);
        assert_eq!(unchanged, "SELECT $1, $ 2, $x");
    }
}
