//! Statements of the search queries, built piece by piece: `$N`
//! placeholders in order, index-friendly glob conditions, and the one
//! dialect difference (SQLite's `GLOB`, PostgreSQL's `LIKE`).

use sqlx::Any;

use crate::search::InterfaceFilter;
use crate::{Backend, StoreError, StoreResult};

/// A value bound to a statement.
pub(super) use crate::sql::writes::Bind as Value;

/// A statement built piece by piece, with `$N` placeholders in order.
pub(super) struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(super) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(super) fn bind(&mut self, value: Value) -> &mut Self {
        self.values.push(value);
        let n = self.values.len();
        self.text.push_str(&format!("${n}"));
        self
    }

    pub(super) fn arg(&mut self, value: &str) -> &mut Self {
        self.bind(Value::Text(value.to_owned()))
    }

    /// ` AND column IN (…)` over `items`.
    pub(super) fn any_of(&mut self, column: &str, items: &[String]) -> &mut Self {
        self.push(&format!(" AND {column} IN ("));
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.push(",");
            }
            self.arg(item);
        }
        self.push(")")
    }

    /// ` AND column` matches `glob` (`*` any run of characters): an equality
    /// without `*`, else a range on the literal prefix (so an index is
    /// used) and the glob itself.
    pub(super) fn glob(
        &mut self,
        backend: &Backend,
        column: &str,
        glob: &str,
    ) -> StoreResult<&mut Self> {
        if !glob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":/@.-+*".contains(c))
        {
            return Err(StoreError::Conflict(format!("invalid pattern `{glob}`")));
        }
        let Some(star) = glob.find('*') else {
            self.push(&format!(" AND {column} = "));
            self.arg(glob);
            return Ok(self);
        };
        let prefix = &glob[..star];
        if let Some(end) = prefix_end(prefix) {
            self.push(&format!(" AND {column} >= "));
            self.arg(prefix);
            self.push(&format!(" AND {column} < "));
            self.arg(&end);
        }
        match backend {
            Backend::Sqlite { .. } => {
                self.push(&format!(" AND {column} GLOB "));
                self.arg(glob);
            }
            Backend::Postgres => {
                self.push(&format!(" AND {column} LIKE "));
                self.arg(&glob.replace('*', "%"));
            }
        }
        Ok(self)
    }

    /// ` AND` the columns of interface row `alias` match `filter`.
    pub(super) fn interface(
        &mut self,
        backend: &Backend,
        alias: &str,
        filter: &InterfaceFilter,
    ) -> StoreResult<&mut Self> {
        self.push(&format!(" AND {alias}.direction = "));
        self.interface_rest(backend, alias, filter)
    }

    /// [`Sql::interface`] for a row better found another way than by the
    /// name index: by its package (and release) through the primary key,
    /// or by its namespace and name through `search_interfaces_by_namespace`.
    /// The unary `+` keeps the planner off the indexes that lead with
    /// `direction` (the name index would scan its whole name range).
    pub(super) fn interface_off_name_index(
        &mut self,
        backend: &Backend,
        alias: &str,
        filter: &InterfaceFilter,
    ) -> StoreResult<&mut Self> {
        self.push(&format!(" AND +{alias}.direction = "));
        self.interface_rest(backend, alias, filter)
    }

    fn interface_rest(
        &mut self,
        backend: &Backend,
        alias: &str,
        filter: &InterfaceFilter,
    ) -> StoreResult<&mut Self> {
        self.bind(Value::Int(filter.direction.to_db()));
        self.glob(backend, &format!("{alias}.name"), &filter.name)?;
        if let Some(version) = &filter.version {
            self.glob(backend, &format!("{alias}.version"), version)?;
        }
        Ok(self)
    }

    pub(super) fn query(&self) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments<'_>> {
        self.values
            .iter()
            .cloned()
            .fold(sqlx::query(&self.text), crate::sql::writes::bind)
    }
}

/// The least string greater than every string starting with `prefix`
/// (`None` for an empty prefix: no bound).
pub(super) fn prefix_end(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_bound_every_extension() {
        assert_eq!(prefix_end("wasi:cli/").as_deref(), Some("wasi:cli0"));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a\x7f").as_deref(), Some("b"));
    }
}
