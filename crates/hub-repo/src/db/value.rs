//! The values and errors that cross the catalog's query API ([`crate::db::sql`]), shared
//! by both engines (kept apart so that the PostgreSQL client does not depend on the API that
//! wraps it).

/// A failure of the catalog database, whichever engine.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (or could not be reached).
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    /// A query expected a row and found none.
    #[error("query returned no rows")]
    NoRows,
    /// A column held a value of another type than the one asked for.
    #[error("column {0}: {1}")]
    Type(usize, String),
}

impl DbError {
    /// The database could not be reached or dropped the connection (a transient fault: the
    /// operation can be retried once it is back).
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Postgres(e) => match e.as_db_error() {
                // connection exceptions, shutting down, too many connections
                Some(db) => {
                    let code = db.code().code();
                    code.starts_with("08") || code.starts_with("57P") || code == "53300"
                }
                None => {
                    e.is_closed()
                        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                }
            },
            DbError::Sqlite(_) | DbError::NoRows | DbError::Type(..) => false,
        }
    }

    /// SQLite's error code, when SQLite failed.
    pub fn sqlite_error_code(&self) -> Option<rusqlite::ErrorCode> {
        match self {
            DbError::Sqlite(e) => e.sqlite_error_code(),
            _ => None,
        }
    }
}

/// The result of a database call.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// A value bound to a parameter or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// An integer (booleans are 0 and 1).
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}
