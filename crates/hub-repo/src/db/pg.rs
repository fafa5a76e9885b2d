//! The PostgreSQL engine: a small pool of `postgres` (synchronous) clients, the dialect layer
//! that turns the seams' SQLite-spelled statements into PostgreSQL's, the schema (one base
//! version plus the same numbered migrations as SQLite), run once under an advisory lock by
//! whichever replica starts first, and writes serialised across replicas by a transaction-
//! scoped advisory lock (the same one-writer-at-a-time order SQLite's immediate transactions
//! give, so no write is lost between replicas).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, Type};
use postgres::{Client, NoTls, Statement};

use crate::db::value::{DbError, Result, Value};
use crate::RepoError;

/// Connections per process.
const POOL: usize = 6;

/// The advisory lock every write transaction takes (one writer at a time, cluster-wide).
const WRITE_LOCK: i64 = 0x666c_6973_7477;
/// The advisory lock migrations take.
const MIGRATE_LOCK: i64 = 0x666c_6973_746d;

/// A catalog URL with its password replaced by `***` (for messages and logs).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    match auth {
        Some(a) => {
            let user = a.split(':').next().unwrap_or("");
            if a.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => format!("{scheme}://{host}"),
    }
}

/// One client and the statements prepared on it; it lives on its own thread (see
/// [`PgConn`]).
struct Slot {
    config: postgres::Config,
    client: Option<Client>,
    cache: HashMap<String, Statement>,
    /// Inside `BEGIN` ... `COMMIT` (a lost connection then fails the transaction).
    in_tx: bool,
}

type Params<'v> = Vec<&'v (dyn postgres::types::ToSql + Sync)>;

fn params(values: &[Value]) -> Params<'_> {
    values
        .iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

impl Slot {
    fn connected(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            self.cache.clear();
            self.client = Some(self.config.connect(NoTls)?);
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => Err(DbError::NoRows),
        }
    }

    /// Runs `op` (`sql` prepared once, then used) on the client. A client the server
    /// dropped since its last use (a restart, an idle timeout) is noticed here: outside a
    /// transaction the operation is retried once on a new connection (it never ran on the
    /// dead one); inside one the transaction fails.
    fn run<T>(
        &mut self,
        sql: Option<&str>,
        op: impl Fn(&mut Client, Option<&Statement>) -> Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut retried = false;
        loop {
            let fresh = self.client.is_none();
            let r = (|| {
                let st = match sql {
                    Some(sql) => Some(self.statement(sql)?),
                    None => None,
                };
                let c = self.connected()?;
                Ok::<_, DbError>(op(c, st.as_ref()))
            })();
            let e = match r {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => DbError::Postgres(e),
                Err(e) => e,
            };
            if !e.is_unavailable() {
                return Err(e);
            }
            self.client = None;
            self.cache.clear();
            if fresh || retried || self.in_tx {
                return Err(e);
            }
            retried = true;
        }
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(st) = self.cache.get(sql) {
            return Ok(st.clone());
        }
        let pg = translate(sql);
        let st = self.connected()?.prepare(&pg)?;
        self.cache.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    /// Prepares `sql` (SQLite's spelling) once, so that errors in it show at prepare time.
    fn prepare(&mut self, sql: &str) -> Result<()> {
        self.run(Some(sql), |_, _| Ok(()))
    }

    fn execute(&mut self, sql: &str, values: &[Value]) -> Result<usize> {
        let p = params(values);
        self.run(Some(sql), |c, st| match st {
            Some(st) => c.execute(st, &p),
            None => Ok(0),
        })
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn query(&mut self, sql: &str, values: &[Value]) -> Result<Vec<postgres::Row>> {
        let p = params(values);
        self.run(Some(sql), |c, st| match st {
            Some(st) => c.query(st, &p),
            None => Ok(Vec::new()),
        })
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.run(None, |c, _| c.batch_execute(sql))
    }
}

type Job = Box<dyn FnOnce(&mut Slot) + Send>;

/// One connection of the pool. The `postgres` client blocks on a runtime of its own, which
/// tokio forbids on a thread that drives async tasks (and a client may be used, or dropped,
/// wherever the hub is): so each client lives on a plain thread of its own, and every call
/// is sent there and waited for (the caller blocks, as on SQLite).
pub struct PgConn {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl PgConn {
    fn new(config: postgres::Config) -> Result<Self, RepoError> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("catalog-pg".into())
            .spawn(move || {
                let mut slot = Slot {
                    config,
                    client: None,
                    cache: HashMap::new(),
                    in_tx: false,
                };
                // ends (dropping the client here) when the pool is dropped
                while let Ok(job) = rx.recv() {
                    job(&mut slot);
                }
            })
            .map_err(|e| RepoError::io("start a catalog connection thread", "catalog", e))?;
        Ok(PgConn { jobs: tx })
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Slot) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move |slot| {
            let _ = tx.send(f(slot));
        });
        if self.jobs.send(job).is_err() {
            return Err(DbError::Type(0, "catalog connection thread ended".into()));
        }
        rx.recv()
            .unwrap_or_else(|_| Err(DbError::Type(0, "catalog connection thread ended".into())))
    }

    /// Prepares `sql` (SQLite's spelling) once, so that errors in it show at prepare time.
    pub(crate) fn prepare(&mut self, sql: &str) -> Result<()> {
        let sql = sql.to_string();
        self.call(move |s| s.prepare(&sql))
    }

    pub(crate) fn execute(&mut self, sql: &str, values: &[Value]) -> Result<usize> {
        let (sql, values) = (sql.to_string(), values.to_vec());
        self.call(move |s| s.execute(&sql, &values))
    }

    pub(crate) fn query(&mut self, sql: &str, values: &[Value]) -> Result<Vec<postgres::Row>> {
        let (sql, values) = (sql.to_string(), values.to_vec());
        self.call(move |s| s.query(&sql, &values))
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        let sql = sql.to_string();
        self.call(move |s| s.batch(&sql))
    }

    fn set_in_tx(&mut self, on: bool) {
        let _ = self.call(move |s| {
            s.in_tx = on;
            Ok(())
        });
    }
}

/// The value of column `idx` of a PostgreSQL row.
pub(crate) fn column(r: &postgres::Row, idx: usize) -> Result<Value> {
    let Some(col) = r.columns().get(idx) else {
        return Err(DbError::Type(idx, "no such column".into()));
    };
    let ty = col.type_().clone();
    let v = if ty == Type::INT8 {
        r.try_get::<_, Option<i64>>(idx)?.map(Value::Int)
    } else if ty == Type::INT4 {
        r.try_get::<_, Option<i32>>(idx)?
            .map(|i| Value::Int(i.into()))
    } else if ty == Type::INT2 {
        r.try_get::<_, Option<i16>>(idx)?
            .map(|i| Value::Int(i.into()))
    } else if ty == Type::OID {
        r.try_get::<_, Option<u32>>(idx)?
            .map(|i| Value::Int(i.into()))
    } else if ty == Type::BOOL {
        r.try_get::<_, Option<bool>>(idx)?
            .map(|b| Value::Int(b.into()))
    } else if ty == Type::FLOAT8 {
        r.try_get::<_, Option<f64>>(idx)?.map(Value::Real)
    } else if ty == Type::FLOAT4 {
        r.try_get::<_, Option<f32>>(idx)?
            .map(|f| Value::Real(f.into()))
    } else if ty == Type::BYTEA {
        r.try_get::<_, Option<Vec<u8>>>(idx)?.map(Value::Blob)
    } else if [
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::UNKNOWN,
    ]
    .contains(&ty)
    {
        r.try_get::<_, Option<String>>(idx)?.map(Value::Text)
    } else {
        return Err(DbError::Type(
            idx,
            format!("unsupported PostgreSQL type {ty} (cast it in the query)"),
        ));
    };
    Ok(v.unwrap_or(Value::Null))
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl postgres::types::ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => {
                if *ty == Type::INT8 {
                    i.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(*i)?.to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(*i)?.to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (*i != 0).to_sql(ty, out)
                } else if *ty == Type::FLOAT8 {
                    (*i as f64).to_sql(ty, out)
                } else {
                    i.to_string().to_sql(ty, out)
                }
            }
            Value::Real(f) => {
                if *ty == Type::FLOAT4 {
                    (*f as f32).to_sql(ty, out)
                } else {
                    f.to_sql(ty, out)
                }
            }
            Value::Text(s) => {
                if *ty == Type::BYTEA {
                    s.as_bytes().to_sql(ty, out)
                } else if *ty == Type::INT8 {
                    s.parse::<i64>()?.to_sql(ty, out)
                } else {
                    s.as_str().to_sql(ty, out)
                }
            }
            Value::Blob(b) => {
                if *ty == Type::BYTEA {
                    b.as_slice().to_sql(ty, out)
                } else {
                    std::str::from_utf8(b)?.to_sql(ty, out)
                }
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// The dialect layer: a statement in SQLite's spelling, in PostgreSQL's. `?N` parameters
/// become `$N` (a bare `?` the next number), `LIKE` (case-insensitive on SQLite) `ILIKE`,
/// the `user` column (a reserved word there) `"user"`, and `INSERT OR IGNORE` an insert
/// `ON CONFLICT DO NOTHING`. String literals are left alone.
pub(crate) fn translate(sql: &str) -> String {
    let (sql, ignore) = match sql.trim_start().strip_prefix("INSERT OR IGNORE INTO") {
        Some(rest) => (format!("INSERT INTO{rest}"), true),
        None => (sql.to_string(), false),
    };
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    let mut highest = 0u32;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                let n = match digits.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => highest + 1,
                };
                highest = highest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::from(c);
                while let Some(d) = chars
                    .peek()
                    .copied()
                    .filter(|d| d.is_ascii_alphanumeric() || *d == '_')
                {
                    word.push(d);
                    chars.next();
                }
                match word.as_str() {
                    "user" => out.push_str("\"user\""),
                    "LIKE" => out.push_str("ILIKE"),
                    _ => out.push_str(&word),
                }
            }
            c => out.push(c),
        }
    }
    if ignore {
        let trimmed = out.trim_end().trim_end_matches(';').to_string();
        out = format!("{trimmed} ON CONFLICT DO NOTHING");
    }
    out
}

/// A pool of clients on one database.
pub(crate) struct PgPool {
    url: String,
    conns: Vec<Mutex<RefCell<PgConn>>>,
    next: AtomicUsize,
    /// Counts the `hub_writes` notifications the listener thread received (see
    /// [`PgPool::wait_for_writes`]).
    heard: Arc<Heard>,
}

/// The channel every committed write notifies (`pg_notify` in `Db::write`).
pub(crate) const WRITES_CHANNEL: &str = "hub_writes";

/// What the listener thread heard: a counter and a condition variable to wait on it.
#[derive(Default)]
struct Heard {
    count: Mutex<u64>,
    changed: Condvar,
}

impl Heard {
    fn bump(&self) {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        self.changed.notify_all();
    }
}

/// Listens on [`WRITES_CHANNEL`] on a connection of its own, on a plain thread (the
/// `postgres` client blocks on its own runtime), until the pool is dropped. A lost
/// connection is reopened every second; (re)connecting counts as a notification, since
/// writes may have gone unheard meanwhile.
fn listen(config: postgres::Config, heard: std::sync::Weak<Heard>) {
    let mut client: Option<Client> = None;
    loop {
        let Some(h) = heard.upgrade() else { return };
        let Some(c) = client.as_mut().filter(|c| !c.is_closed()) else {
            drop(h);
            match config.connect(NoTls).and_then(|mut c| {
                c.batch_execute(&format!("LISTEN {WRITES_CHANNEL}"))
                    .map(|()| c)
            }) {
                Ok(c) => {
                    client = Some(c);
                    if let Some(h) = heard.upgrade() {
                        h.bump();
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
            continue;
        };
        drop(h);
        let heard_one = {
            let mut notes = c.notifications();
            let got = match notes.timeout_iter(Duration::from_secs(1)).next() {
                Ok(Some(_)) => Some(true),
                Ok(None) => Some(false),
                Err(_) => None,
            };
            if got == Some(true) {
                // Several commits may be queued: one wake-up for all of them.
                while let Ok(Some(_)) = notes.iter().next() {}
            }
            got
        };
        if heard_one == Some(true) {
            if let Some(h) = heard.upgrade() {
                h.bump();
            }
        }
        if heard_one.is_none() {
            client = None;
        }
    }
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool").field("url", &self.url).finish()
    }
}

impl PgPool {
    /// Connects to `url` (`postgres://user:pass@host:port/db`) and brings the schema up to
    /// date (once, under the migration lock).
    pub(crate) fn open(url: &str) -> Result<Self, RepoError> {
        let shown = redact(url);
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            RepoError::Invalid(format!("catalog URL {shown}: {e}"))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("flist-hub");
        config.options("-c client_min_messages=warning");
        let conns = (0..POOL)
            .map(|_| PgConn::new(config.clone()).map(|c| Mutex::new(RefCell::new(c))))
            .collect::<Result<Vec<_>, RepoError>>()?;
        let heard = Arc::new(Heard::default());
        let weak = Arc::downgrade(&heard);
        let listener_config = config.clone();
        std::thread::Builder::new()
            .name("catalog-listen".into())
            .spawn(move || listen(listener_config, weak))
            .map_err(|e| RepoError::io("start the catalog listener thread", "catalog", e))?;
        let pool = PgPool {
            url: shown,
            conns,
            next: AtomicUsize::new(0),
            heard,
        };
        Ok(pool)
    }

    /// Waits until a write was committed since the listener's count was `since` (this
    /// process's or another replica's: the notification of `Db::write`), or `timeout`
    /// passed; returns the count, to pass to the next call (0 at first: returns at once).
    pub(crate) fn wait_for_writes(&self, since: u64, timeout: Duration) -> u64 {
        let n = self.heard.count.lock().unwrap_or_else(|p| p.into_inner());
        let (n, _) = self
            .heard
            .changed
            .wait_timeout_while(n, timeout, |n| *n == since)
            .unwrap_or_else(|p| p.into_inner());
        *n
    }

    /// The redacted URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A client of the pool (the first free one, else waits for one).
    pub(crate) fn conn(&self) -> MutexGuard<'_, RefCell<PgConn>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.conns.len() {
            if let Ok(g) = self.conns[(start + i) % self.conns.len()].try_lock() {
                return g;
            }
        }
        self.conns[start % self.conns.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one transaction holding the cluster-wide write lock; commits when it
    /// returns `Ok`, rolls back otherwise.
    pub(crate) fn write<T>(
        cell: &RefCell<PgConn>,
        f: impl FnOnce() -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        use crate::error::SqlContext;
        cell.borrow_mut()
            .batch(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
            ))
            .ctx("begin")?;
        cell.borrow_mut().set_in_tx(true);
        let out = match f() {
            Ok(v) => cell.borrow_mut().batch("COMMIT").ctx("commit").map(|()| v),
            Err(e) => {
                let _ = cell.borrow_mut().batch("ROLLBACK");
                Err(e)
            }
        };
        cell.borrow_mut().set_in_tx(false);
        out
    }

    /// The migration lock's statement (taken by `schema::migrate_pg` in its transaction).
    pub(crate) fn migrate_lock() -> String {
        format!("SELECT pg_advisory_xact_lock({MIGRATE_LOCK})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect() {
        assert_eq!(
            translate("SELECT user FROM tokens WHERE hash = ?1 AND name LIKE ?2 ESCAPE '\\'"),
            "SELECT \"user\" FROM tokens WHERE hash = $1 AND name ILIKE $2 ESCAPE '\\'"
        );
        assert_eq!(
            translate("INSERT OR IGNORE INTO org_members(org, user) VALUES (?, ?)"),
            "INSERT INTO org_members(org, \"user\") VALUES ($1, $2) ON CONFLICT DO NOTHING"
        );
        assert_eq!(translate("SELECT 'user ?1' , ?3"), "SELECT 'user ?1' , $3");
        assert_eq!(translate("SELECT users.name"), "SELECT users.name");
    }

    #[test]
    fn urls_are_shown_without_password() {
        assert_eq!(
            redact("postgres://flist:s3cret@127.0.0.1:5432/hub"),
            "postgres://flist:***@127.0.0.1:5432/hub"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
