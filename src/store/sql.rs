//! Portable SQL: the one place that knows the two backends speak slightly different SQL.
//!
//! Queries are written once, in the subset SQLite and PostgreSQL share, with numbered `$1, $2, …`
//! placeholders: PostgreSQL's only form, and one sqlx's SQLite driver binds by number too.
//! Statements assembled at run time go through [`Sql`], which writes each backend's own
//! placeholder as values are bound (sqlx's `QueryBuilder<Any>` always writes `?`, which
//! PostgreSQL rejects). Not `$N` on SQLite there: SQLite resolves each `$N` by a linear search
//! of the names seen so far, so a 16,000-value insert costs O(n²) to prepare (measured: the
//! writer fell from ~100k to ~1k records/s); plain `?` is numbered as it is parsed.
//!
//! Rows arrive as `AnyRow`. The `Any` driver decodes strictly by the value's runtime type, and
//! SQLite has no boolean type and returns integers from integer-valued expressions, so
//! [`flag`] and [`num`] accept either representation.
//!
//! The rules the shared subset follows (each one a difference that bit):
//! - the `user` column is always written `"user"` (a reserved word in PostgreSQL, where a bare
//!   `user` is the session user);
//! - integer sums are `CAST(… AS BIGINT)` (PostgreSQL's `SUM(bigint)` is `numeric`, which the
//!   `Any` driver cannot decode);
//! - booleans are stored as 0/1 integers in both schemas, so they sum and compare the same way;
//! - upserts qualify the target table's columns (`t.c + excluded.c`) and use `CASE` instead of
//!   the two-argument `MAX` (PostgreSQL spells it `GREATEST`);
//! - subqueries in `FROM` carry an alias; new rows' keys come back with `RETURNING`.

use std::fmt::Write as _;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Arguments, Encode, Row, Type};

/// Which backend a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A statement assembled at run time with its bound values.
pub(super) struct Sql<'a> {
    dialect: Dialect,
    text: String,
    args: AnyArguments<'a>,
    bound: u32,
}

impl<'a> Sql<'a> {
    pub(super) fn new(dialect: Dialect, head: impl Into<String>) -> Sql<'a> {
        Sql {
            dialect,
            text: head.into(),
            args: AnyArguments::default(),
            bound: 0,
        }
    }

    /// Appends SQL text (no placeholders in it).
    pub(super) fn push(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    /// Appends a placeholder and binds `value` to it.
    pub(super) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        self.bound += 1;
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                let _ = write!(self.text, "${}", self.bound);
            }
        }
        // Encoding into `AnyArguments` only pushes an enum value; it cannot fail.
        let _ = self.args.add(value);
        self
    }

    /// Appends ` VALUES (…), (…)`: `row` binds one row's values through the [`Values`] it gets.
    pub(super) fn values<T>(
        &mut self,
        rows: impl IntoIterator<Item = T>,
        mut row: impl FnMut(&mut Values<'_, 'a>, T),
    ) {
        self.text.push_str(" VALUES ");
        for (i, item) in rows.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.text.push('(');
            row(
                &mut Values {
                    sql: self,
                    first: true,
                },
                item,
            );
            self.text.push(')');
        }
    }

    /// The statement, ready to execute or fetch.
    ///
    /// On PostgreSQL the statement is not kept prepared: sqlx 0.8's `Any` driver declares a
    /// NULL `f64` as `float4` (`AnyArguments::convert_to` swaps `Real` and `Double`), and a
    /// cached statement keeps the types of its first execution, so a later batch with a value
    /// where the first had NULL fails with "incorrect binary data format". Built statements
    /// differ from batch to batch anyway (row counts, NULL patterns), so little is lost.
    pub(super) fn build(&mut self) -> sqlx::query::Query<'_, Any, AnyArguments<'_>> {
        // Arguments borrowing for `'a` also live for the shorter borrow of `self`.
        let args: AnyArguments<'_> = std::mem::take(&mut self.args);
        sqlx::query_with(&self.text, args).persistent(self.dialect == Dialect::Sqlite)
    }
}

/// One row of a `VALUES` list: each `bind` adds a comma-separated placeholder.
pub(super) struct Values<'s, 'a> {
    sql: &'s mut Sql<'a>,
    first: bool,
}

impl<'a> Values<'_, 'a> {
    pub(super) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + Encode<'a, Any> + Type<Any>,
    {
        if !std::mem::take(&mut self.first) {
            self.sql.text.push_str(", ");
        }
        self.sql.bind(value);
        self
    }
}

/// A 0/1 integer (either backend) or a boolean column as `bool`.
pub(super) fn flag(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    match row.try_get::<i64, _>(col) {
        Ok(v) => Ok(v != 0),
        Err(_) => row.try_get::<bool, _>(col),
    }
}

/// A number as `f64`, whether the backend returned a float or an integer (SQLite returns an
/// integer from `SUM` over whole-valued reals and from integer literals).
pub(super) fn num(row: &AnyRow, col: &str) -> Result<f64, sqlx::Error> {
    opt_num(row, col).map(|v| v.unwrap_or(0.0))
}

/// An optional number (`NULL` stays `None`).
pub(super) fn opt_num(row: &AnyRow, col: &str) -> Result<Option<f64>, sqlx::Error> {
    match row.try_get::<Option<f64>, _>(col) {
        Ok(v) => Ok(v),
        Err(_) => row
            .try_get::<Option<i64>, _>(col)
            .map(|v| v.map(|v| v as f64)),
    }
}

/// A non-negative count as `u64` (negative values, which the schema never stores, read as 0).
pub(super) fn count(row: &AnyRow, col: &str) -> Result<u64, sqlx::Error> {
    row.try_get::<Option<i64>, _>(col)
        .map(|v| v.unwrap_or(0).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_writes_each_backends_placeholders_in_order() {
        for (dialect, want) in [
            (
                Dialect::Sqlite,
                "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) RETURNING ?",
            ),
            (
                Dialect::Postgres,
                "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) RETURNING $5",
            ),
        ] {
            let mut q = Sql::new(dialect, "INSERT INTO t (a, b)");
            q.values([1i64, 2], |v, x| {
                v.bind(x).bind(x * 10);
            });
            q.push(" RETURNING ").bind(5i64);
            assert_eq!(q.text, want);
            assert_eq!(q.bound, 5);
        }
    }
}
