//! A read-only 0-db endpoint in front of any [`Store`]: what ZOS nodes and the reference
//! readers need to fetch chunks (`GET`, `MGET`, `EXISTS`, `CHECK` over RESP), whatever the
//! store behind it (a directory, 0-db, Redis, a router).
//!
//! It speaks the 0-db dialect: `INFO` names `0-db (zdb)`, `SELECT <namespace>` accepts any
//! namespace (all read the same store: chunks are content-addressed), `NSINFO` describes a
//! public user-key namespace. Every write command (`SET`, `DEL`, `FLUSH`, `NSNEW`, ...) is
//! answered with an error naming it, and nothing changes.
//!
//! Requests go through the client's codec ([`super::codec::RequestReader`]), so no client
//! can make the server hold more than its limits: arguments longer than a key are dropped
//! as they arrive, a bulk length beyond 0-db's largest value, a bad type byte or a missing
//! CRLF ends that connection only (after an error reply). Per connection the server reads
//! requests only when the replies to the previous ones are written (TCP back-pressure on a
//! client that pipelines without reading), a reply write that makes no progress in time
//! ends the connection (slow readers), an unfinished request times out, idle connections
//! time out after a longer while, and the number of connections is capped. Values fetched
//! for replies count against one byte budget shared by all connections, so memory stays
//! bounded however many clients fetch at once.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::codec::{self, Request, RequestLimits, RequestReader};
use crate::Store;

/// Longest key (0-db's limit).
const MAX_KEY: usize = 255;
/// Longest namespace name accepted by `SELECT`/`NSINFO` (0-db's limit).
const MAX_NAMESPACE: usize = 128;
/// Keys fetched from the store at once for one connection (pipelined `GET`s, `MGET`).
const FETCH_WINDOW: usize = 16;
/// Requests parsed from one read before their replies are written.
const BATCH_CMDS: usize = 256;
/// What the reply budget assumes a value weighs before it is fetched (an encoded 512 KiB
/// chunk is at most about 612 KiB).
const VALUE_ESTIMATE: usize = 640 * 1024;

/// Values up to this size are copied into one reply buffer with their neighbours.
const SMALL_REPLY: usize = 16 * 1024;

/// Unit of the reply budget.
const BUDGET_UNIT: usize = 64 * 1024;
/// Bytes read from a socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Write buffer per connection (larger values are written straight through).
const WRITE_BUF: usize = 64 * 1024;

/// Commands that would change something: refused by name.
const WRITES: &[&str] = &[
    "SET",
    "SETX",
    "DEL",
    "FLUSH",
    "FLUSHALL",
    "FLUSHDB",
    "NSNEW",
    "NSDEL",
    "NSSET",
    "NSJUMP",
    "RELOAD",
    "STOP",
    "MIRROR",
    "MASTER",
    "REPLICATE",
    "HOOKS",
    "WAIT",
];

/// `CHECK`'s test of a stored value: `(key, value) -> intact`.
pub type CheckFn = Arc<dyn Fn(&[u8], &[u8]) -> bool + Send + Sync>;

/// Tuning of a [`ZdbEndpoint`].
#[derive(Clone)]
pub struct ServerOptions {
    /// Connections served at once; more are answered `-ERR max number of clients reached`
    /// and closed.
    pub max_connections: usize,
    /// A connection with no request in progress is closed after this long.
    pub idle_timeout: Duration,
    /// A request begun must be complete within this long.
    pub request_timeout: Duration,
    /// A reply write must make progress within this long (a client that does not read
    /// its replies is disconnected).
    pub write_timeout: Duration,
    /// Bytes of fetched values held for replies by all connections together.
    pub reply_budget: usize,
    /// Request limits (argument count and sizes).
    pub limits: RequestLimits,
    /// `CHECK <key>`: whether a stored value is intact for its key (for content-addressed
    /// chunks, that its hash is the key). Without it, `CHECK` answers `:1` for any stored
    /// value.
    pub check: Option<CheckFn>,
    /// `server_revision` in `INFO`.
    pub revision: String,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("reply_budget", &self.reply_budget)
            .field("limits", &self.limits)
            .field("check", &self.check.is_some())
            .field("revision", &self.revision)
            .finish()
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 4096,
            idle_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            reply_budget: 256 << 20,
            limits: RequestLimits::default(),
            check: None,
            revision: concat!("flist-store ", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// Counters of a [`ZdbEndpoint`].
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused because `max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Commands answered.
    pub commands: AtomicU64,
    /// Write commands refused.
    pub writes_refused: AtomicU64,
    /// Connections ended by a protocol error.
    pub protocol_errors: AtomicU64,
    /// Connections ended by a timeout (idle, unfinished request, stalled reply).
    pub timeouts: AtomicU64,
}

/// A read-only 0-db protocol endpoint over a store (see the module documentation).
#[derive(Clone)]
pub struct ZdbEndpoint {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    opts: ServerOptions,
    stats: EndpointStats,
    slots: Arc<Semaphore>,
    budget: Arc<Semaphore>,
    budget_units: u32,
}

impl std::fmt::Debug for ZdbEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZdbEndpoint")
            .field("store", &self.inner.store.to_string())
            .field("opts", &self.inner.opts)
            .finish()
    }
}

/// How a connection ended early.
enum End {
    /// The client went away, asked to `QUIT`, or its socket failed.
    Gone,
    /// A timeout (idle, unfinished request, stalled write).
    Timeout,
}

impl ZdbEndpoint {
    /// An endpoint serving `store` read-only.
    pub fn new(store: Arc<dyn Store>, opts: ServerOptions) -> Self {
        let units = (opts.reply_budget / BUDGET_UNIT).clamp(1, Semaphore::MAX_PERMITS);
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        ZdbEndpoint {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(opts.max_connections.max(1))),
                budget: Arc::new(Semaphore::new(units as usize)),
                budget_units: units,
                store,
                opts,
                stats: EndpointStats::default(),
            }),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &EndpointStats {
        &self.inner.stats
    }

    /// Accepts connections on `listener` until `shutdown` completes, each served on its own
    /// task; the connections still open then are closed.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        // Dropped on return: every connection task sees its receiver close and ends.
        let (_stop, stopped) = tokio::sync::watch::channel(());
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => return,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait a little instead of spinning.
                    tracing::warn!("0-db endpoint: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            match self.inner.slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let mut stopped = stopped.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = this.serve_connection(stream) => {}
                            _ = stopped.changed() => {}
                        }
                        drop(slot);
                    });
                }
                Err(_) => {
                    self.inner
                        .stats
                        .connections_refused
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("0-db endpoint: refusing {peer}: too many connections");
                    tokio::spawn(async move {
                        let mut s = stream;
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            s.write_all(b"-ERR max number of clients reached\r\n"),
                        )
                        .await;
                    });
                }
            }
        }
    }

    /// Serves one client connection (any byte stream) until it ends.
    pub async fn serve_connection<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin,
    {
        let st = &self.inner.stats;
        st.connections.fetch_add(1, Ordering::Relaxed);
        st.connections_total.fetch_add(1, Ordering::Relaxed);
        let (rd, wr) = tokio::io::split(stream);
        let mut conn = Conn {
            ep: &self.inner,
            rd,
            wr: BufWriter::with_capacity(WRITE_BUF, wr),
            buf: BytesMut::with_capacity(READ_CHUNK),
            reader: RequestReader::new(self.inner.opts.limits),
        };
        if let Err(End::Timeout) = conn.run().await {
            st.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        st.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One client connection.
struct Conn<'a, R, W> {
    ep: &'a Inner,
    rd: R,
    wr: BufWriter<W>,
    buf: BytesMut,
    reader: RequestReader,
}

impl<R, W> Conn<'_, R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    async fn run(&mut self) -> Result<(), End> {
        loop {
            let mut batch = Vec::new();
            let mut fault = None;
            while batch.len() < BATCH_CMDS {
                match self.reader.next(&mut self.buf) {
                    Ok(Some(req)) => batch.push(req),
                    Ok(None) => break,
                    Err(e) => {
                        fault = Some(e);
                        break;
                    }
                }
            }
            let more_parsed = batch.len() == BATCH_CMDS;
            let quit = self.execute(&batch).await?;
            if let (Some(e), false) = (&fault, quit) {
                self.ep
                    .stats
                    .protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
                let mut out = Vec::new();
                codec::encode_error(&format!("ERR Protocol error: {e}"), &mut out);
                self.send(&out).await?;
            }
            self.flush().await?;
            if quit || fault.is_some() {
                return Err(End::Gone);
            }
            if more_parsed {
                continue; // the buffer may hold more requests
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes, within the idle or request timeout.
    async fn fill(&mut self) -> Result<(), End> {
        let limit = if self.reader.in_request(&self.buf) {
            self.ep.opts.request_timeout
        } else {
            self.ep.opts.idle_timeout
        };
        self.buf.reserve(READ_CHUNK);
        match tokio::time::timeout(limit, self.rd.read_buf(&mut self.buf)).await {
            Err(_) => Err(End::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) => Err(End::Gone),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Time allowed to write `len` bytes: the write timeout plus 64 KiB/s.
    fn write_limit(&self, len: usize) -> Duration {
        self.ep.opts.write_timeout + Duration::from_millis((len / 64) as u64)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), End> {
        let limit = self.write_limit(bytes.len());
        match tokio::time::timeout(limit, self.wr.write_all(bytes)).await {
            Err(_) => Err(End::Timeout),
            Ok(Err(_)) => Err(End::Gone),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        let limit = self.write_limit(self.wr.buffer().len());
        match tokio::time::timeout(limit, self.wr.flush()).await {
            Err(_) => Err(End::Timeout),
            Ok(Err(_)) => Err(End::Gone),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Answers the requests in order; consecutive `GET`s and `EXISTS` go to the store as
    /// batches. True when the client asked to `QUIT`.
    async fn execute(&mut self, batch: &[Request]) -> Result<bool, End> {
        let mut i = 0;
        while i < batch.len() {
            let req = &batch[i];
            // The common case, runs of `GET`/`EXISTS <key>`, is recognised without
            // building the command's name.
            if let Some(run) = simple_read(req) {
                let mut keys = Vec::new();
                while let Some(r) = batch.get(i) {
                    if simple_read(r) != Some(run) || keys.len() >= FETCH_WINDOW * 8 {
                        break;
                    }
                    keys.push(r.args[1].clone());
                    i += 1;
                }
                self.count(keys.len());
                match run {
                    SimpleRead::Get => self.values(&keys).await?,
                    SimpleRead::Exists => self.exists(&keys).await?,
                }
                continue;
            }
            i += 1;
            if req.args.is_empty() {
                continue; // an empty command gets no reply
            }
            self.count(1);
            let name = command_name(req);
            if self.one(&name, req).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn count(&self, n: usize) {
        self.ep
            .stats
            .commands
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Answers one command that is not part of a `GET`/`EXISTS` run; true on `QUIT`.
    async fn one(&mut self, name: &str, req: &Request) -> Result<bool, End> {
        let mut out = Vec::new();
        let argc = req.args.len();
        if name == "QUIT" {
            codec::encode_status("OK", &mut out);
            self.send(&out).await?;
            return Ok(true);
        }
        if WRITES.contains(&name) {
            self.ep.stats.writes_refused.fetch_add(1, Ordering::Relaxed);
            codec::encode_error(
                &format!("{name} refused: this 0-db endpoint is read-only"),
                &mut out,
            );
            self.send(&out).await?;
            return Ok(false);
        }
        if req.dropped.is_some() {
            codec::encode_error("Argument too long", &mut out);
            self.send(&out).await?;
            return Ok(false);
        }
        match name {
            "PING" => match argc {
                1 => codec::encode_status("PONG", &mut out),
                _ => codec::encode_bulk(&req.args[1], &mut out),
            },
            "SELECT" => {
                if !(2..=4).contains(&argc) {
                    codec::encode_error("Invalid argument", &mut out);
                } else if req.args[1].len() > MAX_NAMESPACE {
                    codec::encode_error("Namespace too long", &mut out);
                } else {
                    // Every namespace is public and reads the same store.
                    codec::encode_status("OK", &mut out);
                }
            }
            "AUTH" => codec::encode_error(
                "Access denied: this 0-db endpoint is read-only and has no administrator",
                &mut out,
            ),
            "INFO" => codec::encode_bulk(self.info().as_bytes(), &mut out),
            "NSINFO" => {
                if argc != 2 {
                    codec::encode_error("Invalid argument", &mut out);
                } else if req.args[1].len() > MAX_NAMESPACE {
                    codec::encode_error("Namespace too long", &mut out);
                } else {
                    let text = self.nsinfo(&String::from_utf8_lossy(&req.args[1])).await;
                    codec::encode_bulk(text.as_bytes(), &mut out);
                }
            }
            "NSLIST" => {
                codec::encode_array_header(1, &mut out);
                codec::encode_bulk(b"default", &mut out);
            }
            "DBSIZE" => match self.ep.store.key_count().await {
                Ok(Some(n)) => codec::encode_int(i64::try_from(n).unwrap_or(i64::MAX), &mut out),
                Ok(None) => codec::encode_error(
                    "DBSIZE is not available here: the store behind this endpoint cannot count \
                     its keys cheaply",
                    &mut out,
                ),
                Err(e) => {
                    tracing::warn!("0-db endpoint: DBSIZE: {e}");
                    codec::encode_error("Internal Error", &mut out);
                }
            },
            "GET" | "EXISTS" | "CHECK" => {
                if argc != 2 {
                    codec::encode_error("Invalid arguments", &mut out);
                } else if !valid_key(&req.args[1]) {
                    codec::encode_error("Invalid key", &mut out);
                } else if name == "CHECK" {
                    self.check(&req.args[1], &mut out).await;
                } else {
                    // (`execute` batches these; answered the same way one by one)
                    if name == "GET" {
                        self.values(&req.args[1..]).await?;
                    } else {
                        self.exists(&req.args[1..]).await?;
                    }
                    return Ok(false);
                }
            }
            "MGET" => {
                if argc < 2 {
                    codec::encode_error("Invalid arguments", &mut out);
                } else if !req.args[1..].iter().all(|k| valid_key(k)) {
                    codec::encode_error("Invalid key", &mut out);
                } else {
                    codec::encode_array_header(argc - 1, &mut out);
                    self.send(&out).await?;
                    self.values(&req.args[1..]).await?;
                    return Ok(false);
                }
            }
            other => codec::encode_error(&format!("Command not supported: {other}"), &mut out),
        }
        self.send(&out).await?;
        Ok(false)
    }

    /// Bulk replies (or nil) for `keys`, fetched in windows under the reply budget.
    async fn values(&mut self, keys: &[Bytes]) -> Result<(), End> {
        for part in keys.chunks(FETCH_WINDOW) {
            let estimate = part.len() * VALUE_ESTIMATE;
            let mut held = vec![self.reserve(estimate).await];
            let want: Vec<Vec<u8>> = part.iter().map(|k| k.to_vec()).collect();
            let values = match self.ep.store.get_many(&want).await {
                Ok(v) => v.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::warn!("0-db endpoint: GET: {e}");
                    part.iter().map(|_| Err(())).collect()
                }
            };
            let fetched: usize = values
                .iter()
                .map(|v| {
                    v.as_ref()
                        .ok()
                        .and_then(Option::as_ref)
                        .map_or(0, Bytes::len)
                })
                .sum();
            if fetched > estimate {
                // Never wait for more while holding some (two connections could wait on
                // each other): the budget is exceeded by at most one window's surplus.
                held.push(self.try_reserve(fetched - estimate));
            }
            // Small replies are gathered and written at once; a big value goes out by itself
            // (never copied).
            let mut out = Vec::new();
            for v in values {
                match v {
                    Ok(Some(v)) if v.len() <= SMALL_REPLY => {
                        codec::encode_arg_header(v.len(), &mut out);
                        out.extend_from_slice(&v);
                        out.extend_from_slice(b"\r\n");
                    }
                    Ok(Some(v)) => {
                        codec::encode_arg_header(v.len(), &mut out);
                        self.send(&out).await?;
                        out.clear();
                        self.send(&v).await?;
                        out.extend_from_slice(b"\r\n");
                    }
                    Ok(None) => codec::encode_nil(&mut out),
                    Err(()) => codec::encode_error("Internal Error", &mut out),
                }
            }
            self.send(&out).await?;
            drop(held);
        }
        Ok(())
    }

    /// `:1`/`:0` for each key.
    async fn exists(&mut self, keys: &[Bytes]) -> Result<(), End> {
        let want: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        let mut out = Vec::with_capacity(keys.len() * 4);
        match self.ep.store.exists_many(&want).await {
            Ok(found) => {
                for f in found {
                    codec::encode_int(i64::from(f), &mut out);
                }
            }
            Err(e) => {
                tracing::warn!("0-db endpoint: EXISTS: {e}");
                for _ in keys {
                    codec::encode_error("Internal Error", &mut out);
                }
            }
        }
        self.send(&out).await
    }

    /// `CHECK <key>`: nil when absent, `:1` when the value is intact, `:0` otherwise.
    async fn check(&mut self, key: &[u8], out: &mut Vec<u8>) {
        let held = self.reserve(VALUE_ESTIMATE).await;
        match self.ep.store.get(key).await {
            Ok(None) => codec::encode_nil(out),
            Ok(Some(v)) => {
                let ok = match self.ep.opts.check.clone() {
                    None => true,
                    // Hashing a chunk takes a while: off the executor.
                    Some(f) => {
                        let k = key.to_vec();
                        tokio::task::spawn_blocking(move || f(&k, &v))
                            .await
                            .unwrap_or(false)
                    }
                };
                codec::encode_int(i64::from(ok), out);
            }
            Err(e) => {
                tracing::warn!("0-db endpoint: CHECK: {e}");
                codec::encode_error("Internal Error", out);
            }
        }
        drop(held);
    }

    /// Units of the reply budget for `bytes` (at most the whole budget).
    fn units(&self, bytes: usize) -> u32 {
        let units = bytes.div_ceil(BUDGET_UNIT).max(1);
        u32::try_from(units)
            .unwrap_or(u32::MAX)
            .min(self.ep.budget_units)
    }

    /// Permits of the reply budget for `bytes`, waited for.
    async fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let units = self.units(bytes);
        self.ep.budget.clone().acquire_many_owned(units).await.ok()
    }

    /// Permits of the reply budget for `bytes` if free now.
    fn try_reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let units = self.units(bytes);
        self.ep.budget.clone().try_acquire_many_owned(units).ok()
    }

    fn info(&self) -> String {
        let s = &self.ep.stats;
        format!(
            "# server\nserver_name: 0-db (zdb)\nserver_revision: {}\n\
             mode: read-only\n\n# clients\nclients_connected: {}\nclients_lifetime: {}\n\n\
             # stats\ncommands_executed: {}\ncommands_refused: {}\n",
            self.ep.opts.revision,
            s.connections.load(Ordering::Relaxed),
            s.connections_total.load(Ordering::Relaxed),
            s.commands.load(Ordering::Relaxed),
            s.writes_refused.load(Ordering::Relaxed),
        )
    }

    async fn nsinfo(&self, ns: &str) -> String {
        let ns: String = ns.chars().filter(|c| !c.is_control()).collect();
        let entries = match self.ep.store.key_count().await {
            Ok(Some(n)) => format!("entries: {n}\n"),
            _ => String::new(),
        };
        format!(
            "# namespace\nname: {ns}\n{entries}public: yes\nworm: no\nlocked: no\n\
             password: no\nmode: userkey\n"
        )
    }
}

/// A request answered in a batch with its neighbours: `GET <key>` or `EXISTS <key>`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SimpleRead {
    Get,
    Exists,
}

/// Which [`SimpleRead`] `req` is, if any (one valid key, nothing dropped).
fn simple_read(req: &Request) -> Option<SimpleRead> {
    if req.args.len() != 2 || req.dropped.is_some() || !valid_key(&req.args[1]) {
        return None;
    }
    let name = &req.args[0];
    if name.eq_ignore_ascii_case(b"GET") {
        Some(SimpleRead::Get)
    } else if name.eq_ignore_ascii_case(b"EXISTS") {
        Some(SimpleRead::Exists)
    } else {
        None
    }
}

/// The command name, upper case (printable ASCII only, at most 32 characters, for replies).
fn command_name(req: &Request) -> String {
    req.args
        .first()
        .map(|a| {
            a.iter()
                .take(32)
                .map(|&b| {
                    if b.is_ascii_graphic() {
                        char::from(b.to_ascii_uppercase())
                    } else {
                        '?'
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn valid_key(k: &[u8]) -> bool {
    !k.is_empty() && k.len() <= MAX_KEY
}
