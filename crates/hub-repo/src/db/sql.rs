//! One query API over both catalog engines: the seams write their queries once, in SQLite's
//! spelling (`?1` parameters), and run them through [`Connection`], [`Stmt`] and [`Row`],
//! which look like rusqlite's. On PostgreSQL, [`crate::db::pg`] rewrites each statement once
//! (its dialect layer: `$1` parameters, `ILIKE`, the quoted `"user"` column, `ON CONFLICT DO
//! NOTHING`) and caches the prepared statement per connection.
//!
//! Values cross the seam as [`Value`]s: integers (`BIGINT` on PostgreSQL, booleans stored as
//! 0/1 as SQLite does), text, blobs, reals and NULL.

use std::cell::RefCell;

use crate::db::pg::PgConn;

pub use crate::db::value::{DbError, Result, Value};

/// A Rust value that binds to a parameter.
pub trait ToSql {
    /// The value bound.
    fn to_value(&self) -> Value;
}

/// A Rust value read from a column.
pub trait FromSql: Sized {
    /// Converts the column's value (`col` for errors).
    fn from_value(v: Value, col: usize) -> Result<Self>;
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToSql> ToSql for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}
impl ToSql for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToSql for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToSql for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToSql for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl ToSql for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToSql for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl ToSql for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
macro_rules! int_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_value(&self) -> Value {
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
        impl FromSql for $t {
            fn from_value(v: Value, col: usize) -> Result<Self> {
                match v {
                    Value::Int(i) => <$t>::try_from(i)
                        .map_err(|_| DbError::Type(col, format!("{i} out of range"))),
                    other => Err(DbError::Type(col, format!("expected an integer, got {other:?}"))),
                }
            }
        }
    )*};
}
int_to_sql!(i64, i32, u32, u64, usize, u16, u8);

impl FromSql for bool {
    fn from_value(v: Value, col: usize) -> Result<Self> {
        i64::from_value(v, col).map(|i| i != 0)
    }
}
impl FromSql for f64 {
    fn from_value(v: Value, col: usize) -> Result<Self> {
        match v {
            Value::Real(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            other => Err(DbError::Type(
                col,
                format!("expected a number, got {other:?}"),
            )),
        }
    }
}
impl FromSql for String {
    fn from_value(v: Value, col: usize) -> Result<Self> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(DbError::Type(col, format!("expected text, got {other:?}"))),
        }
    }
}
impl FromSql for Vec<u8> {
    fn from_value(v: Value, col: usize) -> Result<Self> {
        match v {
            Value::Blob(b) => Ok(b),
            Value::Text(s) => Ok(s.into_bytes()),
            other => Err(DbError::Type(col, format!("expected bytes, got {other:?}"))),
        }
    }
}
impl FromSql for Value {
    fn from_value(v: Value, _col: usize) -> Result<Self> {
        Ok(v)
    }
}
impl<T: FromSql> FromSql for Option<T> {
    fn from_value(v: Value, col: usize) -> Result<Self> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v, col).map(Some),
        }
    }
}

/// Parameters of a statement: `params![a, b]`, an array `[a, b]`, or `()` for none.
pub trait Params {
    /// The values, in order.
    fn values(self) -> Vec<Value>;
}
impl Params for () {
    fn values(self) -> Vec<Value> {
        Vec::new()
    }
}
impl Params for &[&dyn ToSql] {
    fn values(self) -> Vec<Value> {
        self.iter().map(|p| p.to_value()).collect()
    }
}
impl Params for Vec<Value> {
    fn values(self) -> Vec<Value> {
        self
    }
}
impl<T: ToSql, const N: usize> Params for [T; N] {
    fn values(self) -> Vec<Value> {
        self.iter().map(|p| p.to_value()).collect()
    }
}
impl<T: ToSql, const N: usize> Params for &[T; N] {
    fn values(self) -> Vec<Value> {
        self.iter().map(|p| p.to_value()).collect()
    }
}

/// Parameters of mixed types: `params![repo, 3i64, None::<String>]`.
macro_rules! params {
    () => { () };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::db::sql::ToSql),+] as &[&dyn $crate::db::sql::ToSql]
    };
}
pub(crate) use params;

/// `.optional()` on a single-row query: no row is `None`.
pub trait OptionalExtension<T> {
    /// `Ok(None)` instead of [`DbError::NoRows`].
    fn optional(self) -> Result<Option<T>>;
}
impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A column position (0-based).
pub trait RowIndex {
    /// The position.
    fn index(self) -> usize;
}
impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// A row of a result.
pub enum Row<'r> {
    /// SQLite's.
    Lite(&'r rusqlite::Row<'r>),
    /// PostgreSQL's.
    Pg(&'r postgres::Row),
}

impl Row<'_> {
    /// The value of column `idx` (0-based), converted.
    pub fn get<I: RowIndex, T: FromSql>(&self, idx: I) -> Result<T> {
        let idx = idx.index();
        let v = match self {
            Row::Lite(r) => lite_value(r.get_ref(idx)?),
            Row::Pg(r) => crate::db::pg::column(r, idx)?,
        };
        T::from_value(v, idx)
    }
}

fn lite_value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A connection of either engine, or a transaction on it: what [`crate::db::Db::read`] and
/// [`crate::db::Db::write`] hand the seams.
pub enum Connection<'a> {
    /// SQLite (a reader, or the writer inside an immediate transaction).
    Lite(&'a rusqlite::Connection),
    /// PostgreSQL (autocommit for reads; inside `BEGIN`/`COMMIT` for writes).
    Pg(&'a RefCell<PgConn>),
}

/// Which engine a connection is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl<'a> Connection<'a> {
    /// The engine.
    pub fn engine(&self) -> Engine {
        match self {
            Connection::Lite(_) => Engine::Sqlite,
            Connection::Pg(_) => Engine::Postgres,
        }
    }

    /// A statement, prepared once per connection.
    pub fn prepare_cached(&self, sql: &str) -> Result<Stmt<'a>> {
        match self {
            Connection::Lite(c) => Ok(Stmt::Lite(c.prepare_cached(sql)?)),
            Connection::Pg(c) => {
                c.borrow_mut().prepare(sql)?;
                Ok(Stmt::Pg(c, sql.to_string()))
            }
        }
    }

    /// [`Connection::prepare_cached`] (statements are always cached).
    pub fn prepare(&self, sql: &str) -> Result<Stmt<'a>> {
        self.prepare_cached(sql)
    }

    /// Runs a statement; the number of rows changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// The first row of a query, mapped (`DbError::NoRows` without one).
    pub fn query_row<P: Params, T>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Runs statements without parameters (schema changes).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Connection::Lite(c) => Ok(c.execute_batch(sql)?),
            Connection::Pg(c) => c.borrow_mut().batch(sql),
        }
    }
}

/// A prepared statement.
pub enum Stmt<'a> {
    /// SQLite's, from the connection's cache.
    Lite(rusqlite::CachedStatement<'a>),
    /// PostgreSQL's: the connection it runs on and its SQL (prepared once per connection).
    Pg(&'a RefCell<PgConn>, String),
}

/// [`Stmt`] under rusqlite's name.
pub type CachedStatement<'a> = Stmt<'a>;

impl Stmt<'_> {
    /// Runs it; the number of rows changed.
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let values = params.values();
        match self {
            Stmt::Lite(st) => Ok(st.execute(rusqlite::params_from_iter(values.iter()))?),
            Stmt::Pg(c, st) => c.borrow_mut().execute(st, &values),
        }
    }

    /// Every row, each mapped by `f` (read whole before `f` runs on PostgreSQL).
    pub fn query_map<P: Params, T>(
        &mut self,
        params: P,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let values = params.values();
        let mut out = Vec::new();
        match self {
            Stmt::Lite(st) => {
                let mut rows = st.query(rusqlite::params_from_iter(values.iter()))?;
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Lite(r)));
                }
            }
            Stmt::Pg(c, st) => {
                let rows = c.borrow_mut().query(st, &values)?;
                out.extend(rows.iter().map(|r| f(&Row::Pg(r))));
            }
        }
        Ok(out.into_iter())
    }

    /// The first row, mapped by `f` (`DbError::NoRows` without one).
    pub fn query_row<P: Params, T>(
        &mut self,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let values = params.values();
        match self {
            Stmt::Lite(st) => {
                let mut rows = st.query(rusqlite::params_from_iter(values.iter()))?;
                match rows.next()? {
                    Some(r) => f(&Row::Lite(r)),
                    None => Err(DbError::NoRows),
                }
            }
            Stmt::Pg(c, st) => {
                let rows = c.borrow_mut().query(st, &values)?;
                match rows.first() {
                    Some(r) => f(&Row::Pg(r)),
                    None => Err(DbError::NoRows),
                }
            }
        }
    }

    /// Whether the query returns a row.
    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool> {
        self.query_row(params, |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
    }
}
