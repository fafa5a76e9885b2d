//! `zdb://` and `redis://`: one RESP client for 0-db and Redis.
//!
//! The two servers share one code path; they differ only in the handshake (0-db selects a
//! namespace by name, optionally with a SECURE challenge; Redis authenticates and selects a
//! numbered database) and in `SET` (0-db replies with the key, or nil when the value was
//! already stored; Redis gets `SET k v NX`, which replies `+OK` or nil). The dialect is
//! chosen from the server's `INFO` (`server_name: 0-db`), not from the URL scheme alone.
//!
//! Batches are split into request windows (bounded in commands and bytes). Each window is
//! pipelined on one pooled connection — all commands written while the replies are read
//! concurrently — and up to `pool_size` windows run at once on separate connections. The
//! same windows serve both servers (`SET`, `EXISTS`, `MGET`). A window that fails before
//! any reply arrived (connection reset or refused, stale pooled connection) is retried on a
//! fresh connection with backoff; any other failure fails the whole batch. Timeouts apply
//! per window.
//!
//! TCP connections acknowledge what they read at once (`TCP_QUICKACK`, re-armed after every
//! read, see `QuickAckRead`). 0-db does not set `TCP_NODELAY`: each reply after the first
//! of a pipelined window waits (Nagle) for the client's ACK of the previous one, and Linux
//! delays that ACK up to 40 ms once the client has stopped sending — the "40 ms stall per
//! pipelined `SET` batch" of `spec/zero-db.md`. And a written window that gets no reply for
//! `NUDGE_AFTER` is followed by a `PING` (see `Conn::exchange`): 0-db can leave commands
//! unread until more bytes arrive. With both, pipelined `SET`s to 0-db cost no more than to
//! Redis.

pub(crate) mod codec;
pub(crate) mod server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::Semaphore;

use crate::error::hex_key;
use crate::url::{Endpoint, StoreUrl};
use crate::{OpenOptions, SetOutcome, Store, StoreError};
use codec::Reply;

/// Most keys in one `MGET` (0-db's hard limit is 1023).
const MGET_MAX: usize = 1023;
/// Keys per `MGET` window (smaller windows spread large fetches over connections).
const MGET_WINDOW: usize = 128;
/// Commands per pipelined window.
const WINDOW_CMDS: usize = 1024;
/// Payload bytes per pipelined window.
const WINDOW_BYTES: usize = 8 * 1024 * 1024;
/// Longest key (0-db limit).
const MAX_KEY: usize = 255;
/// Write buffer per connection; larger arguments bypass it.
const WRITE_BUF: usize = 64 * 1024;
/// Silence after which a written window gets a `PING` (see `Conn::exchange`).
const NUDGE_AFTER: Duration = Duration::from_millis(5);

/// A chunk store on a 0-db or Redis server.
#[derive(Clone)]
pub struct RespStore {
    shared: Arc<Shared>,
}

struct Shared {
    url: StoreUrl,
    name: String,
    opts: OpenOptions,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

impl std::fmt::Debug for RespStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespStore")
            .field("url", &self.shared.name)
            .finish()
    }
}

impl std::fmt::Display for RespStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shared.name)
    }
}

/// What the handshake learnt about the server.
#[derive(Clone, Copy, Debug)]
struct ServerInfo {
    /// 0-db (SET replies with the key) rather than Redis (SET ... NX).
    zdb: bool,
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// The read half of a TCP connection that acknowledges what it read at once.
///
/// Linux delays ACKs (up to 40 ms) on a connection that also sends data. 0-db writes its
/// replies without `TCP_NODELAY`, so the reply to the second command of a pipelined window
/// waits for the ACK of the first: re-arming `TCP_QUICKACK` after every read (the flag is
/// not sticky) sends that ACK now. Harmless for Redis, which sets `TCP_NODELAY` itself.
struct QuickAckRead(tokio::net::tcp::OwnedReadHalf);

impl AsyncRead for QuickAckRead {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // Best effort: a failure only costs the delay this avoids.
            let _ = self.0.as_ref().set_quickack(true);
        }
        polled
    }
}

/// One connection, after its handshake.
struct Conn {
    rd: BoxRead,
    wr: BufWriter<BoxWrite>,
    buf: BytesMut,
    info: ServerInfo,
}

/// One command: its arguments, and the key it is about (for error messages).
struct Cmd<'a> {
    args: Vec<&'a [u8]>,
}

/// Why a pipelined exchange failed, and after how many replies.
struct ExchangeError {
    received: usize,
    kind: ExKind,
}

enum ExKind {
    Io(std::io::Error),
    Closed,
    Protocol(String),
}

impl std::fmt::Display for ExKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExKind::Io(e) => write!(f, "{e}"),
            ExKind::Closed => f.write_str("connection closed by the server"),
            ExKind::Protocol(m) => f.write_str(m),
        }
    }
}

async fn write_cmd(wr: &mut BufWriter<BoxWrite>, cmd: &Cmd<'_>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(64);
    codec::encode_array_header(cmd.args.len(), &mut head);
    for a in &cmd.args {
        codec::encode_arg_header(a.len(), &mut head);
        if a.len() < 4096 {
            head.extend_from_slice(a);
            head.extend_from_slice(b"\r\n");
        } else {
            wr.write_all(&head).await?;
            head.clear();
            wr.write_all(a).await?;
            head.extend_from_slice(b"\r\n");
        }
    }
    wr.write_all(&head).await
}

async fn read_reply(rd: &mut BoxRead, buf: &mut BytesMut) -> Result<Reply, ExKind> {
    loop {
        match codec::take_reply(buf).map_err(ExKind::Protocol)? {
            Ok(reply) => return Ok(reply),
            Err(need) => {
                let want = need
                    .saturating_sub(buf.len())
                    .clamp(16 * 1024, 16 * 1024 * 1024);
                buf.reserve(want);
                if rd.read_buf(buf).await.map_err(ExKind::Io)? == 0 {
                    return Err(ExKind::Closed);
                }
            }
        }
    }
}

impl Conn {
    /// Writes all commands while reading their replies, in order.
    ///
    /// A window of several commands is watched once written: when no reply arrived for
    /// [`NUDGE_AFTER`], a `PING` is sent after it (its `+PONG` is read and dropped after the
    /// window's replies). 0-db (v2.0.7) can stop reading a connection that still holds
    /// unread commands — its edge-triggered loop returns when a read ended exactly at the
    /// end of a command — until more bytes arrive: the `PING` is those bytes.
    async fn exchange(&mut self, cmds: &[Cmd<'_>]) -> Result<Vec<Reply>, ExchangeError> {
        let n = cmds.len();
        let received = AtomicUsize::new(0);
        let nudges = AtomicUsize::new(0);
        let done = tokio::sync::Notify::new();
        let Conn { rd, wr, buf, .. } = self;
        let write = async {
            for c in cmds {
                write_cmd(wr, c).await.map_err(ExKind::Io)?;
            }
            wr.flush().await.map_err(ExKind::Io)?;
            if n < 2 {
                return Ok(());
            }
            let mut seen = received.load(Ordering::Relaxed);
            loop {
                tokio::select! {
                    biased;
                    () = done.notified() => return Ok(()),
                    () = tokio::time::sleep(NUDGE_AFTER) => {}
                }
                let now = received.load(Ordering::Relaxed);
                if now >= n {
                    return Ok(());
                }
                if now == seen {
                    let ping = Cmd {
                        args: vec![b"PING"],
                    };
                    write_cmd(wr, &ping).await.map_err(ExKind::Io)?;
                    wr.flush().await.map_err(ExKind::Io)?;
                    nudges.fetch_add(1, Ordering::Relaxed);
                }
                seen = now;
            }
        };
        let read = async {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(read_reply(rd, buf).await?);
                received.fetch_add(1, Ordering::Relaxed);
            }
            done.notify_one();
            Ok(out)
        };
        let replies = match tokio::try_join!(write, read) {
            Ok(((), replies)) => replies,
            Err(kind) => {
                return Err(ExchangeError {
                    received: received.load(Ordering::Relaxed),
                    kind,
                })
            }
        };
        // The nudges' replies follow the window's, in order.
        for _ in 0..nudges.load(Ordering::Relaxed) {
            let kind = match read_reply(rd, buf).await {
                Ok(Reply::Status(s)) if s.as_ref() == b"PONG" => continue,
                Ok(other) => ExKind::Protocol(format!(
                    "PING after the window: unexpected {}",
                    other.describe()
                )),
                Err(kind) => kind,
            };
            return Err(ExchangeError { received: n, kind });
        }
        Ok(replies)
    }
}

/// Classifies a server error reply.
fn classify(store: &str, key: Option<&[u8]>, msg: &str) -> StoreError {
    let lower = msg.to_ascii_lowercase();
    let store = store.to_owned();
    let key = key.map(hex_key);
    let message = msg.to_owned();
    if lower.contains("locked") || lower.contains("frozen") {
        StoreError::NamespaceLocked {
            store,
            key,
            message,
        }
    } else if lower.contains("no space")
        || lower.contains("full")
        || lower.contains("size limit")
        || lower.contains("maxsize")
        || lower.contains("quota")
        || lower.contains("oom")
    {
        StoreError::NamespaceFull {
            store,
            key,
            message,
        }
    } else if lower.contains("noauth")
        || lower.contains("wrongpass")
        || lower.contains("password")
        || lower.contains("denied")
        || lower.contains("permission")
        || lower.contains("authentication")
        || lower.contains("read-only")
        || lower.contains("readonly")
    {
        StoreError::Auth {
            store,
            message: key.map_or(message.clone(), |k| format!("{message} (key {k})")),
        }
    } else {
        StoreError::Server {
            store,
            key,
            message,
        }
    }
}

impl RespStore {
    /// A store for a `zdb://`, `zdb+unix://`, `redis://` or `redis+unix://` URL. Connects
    /// lazily.
    pub(crate) fn new(url: StoreUrl, opts: OpenOptions) -> Self {
        let name = url.to_string();
        let permits = Semaphore::new(opts.pool_size.max(1));
        RespStore {
            shared: Arc::new(Shared {
                url,
                name,
                opts,
                idle: Mutex::new(Vec::new()),
                permits,
            }),
        }
    }

    fn name(&self) -> &str {
        &self.shared.name
    }

    fn conn_err(&self, key: Option<&[u8]>, message: String) -> StoreError {
        StoreError::Connection {
            store: self.name().to_owned(),
            key: key.map(hex_key),
            message,
        }
    }

    fn protocol(&self, key: Option<&[u8]>, message: String) -> StoreError {
        StoreError::Protocol {
            store: self.name().to_owned(),
            key: key.map(hex_key),
            message,
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), StoreError> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(StoreError::InvalidKey {
                store: self.name().to_owned(),
                key: hex_key(key),
                reason: format!(
                    "keys must be 1 to {MAX_KEY} bytes, this one is {}",
                    key.len()
                ),
            });
        }
        Ok(())
    }

    fn drop_idle(&self) {
        if let Ok(mut idle) = self.shared.idle.lock() {
            idle.clear();
        }
    }

    /// Opens a socket and runs the handshake.
    async fn connect(&self) -> Result<Conn, StoreError> {
        let (endpoint, ..) = resp_parts(&self.shared.url);
        let (rd, wr): (BoxRead, BoxWrite) = match endpoint {
            Endpoint::Tcp { host, port } => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| self.conn_err(None, format!("cannot connect: {e}")))?;
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (Box::new(QuickAckRead(r)), Box::new(w))
            }
            Endpoint::Unix { path } => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| self.conn_err(None, format!("cannot connect: {e}")))?;
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        let mut conn = Conn {
            rd,
            wr: BufWriter::with_capacity(WRITE_BUF, wr),
            buf: BytesMut::with_capacity(64 * 1024),
            info: ServerInfo { zdb: false },
        };
        self.handshake(&mut conn).await?;
        Ok(conn)
    }

    /// One command during the handshake.
    async fn call(&self, conn: &mut Conn, args: &[&[u8]]) -> Result<Reply, StoreError> {
        let cmd = Cmd {
            args: args.to_vec(),
        };
        let mut replies = conn
            .exchange(std::slice::from_ref(&cmd))
            .await
            .map_err(|e| self.conn_err(None, format!("handshake failed: {}", e.kind)))?;
        replies
            .pop()
            .ok_or_else(|| self.protocol(None, "no reply".into()))
    }

    fn auth_err(&self, message: String) -> StoreError {
        StoreError::Auth {
            store: self.name().to_owned(),
            message,
        }
    }

    fn expect_ok(&self, reply: Reply, what: &str) -> Result<(), StoreError> {
        match reply {
            Reply::Status(_) => Ok(()),
            Reply::Error(e) => Err(match classify(self.name(), None, &e) {
                StoreError::Server { message, .. } => StoreError::Server {
                    store: self.name().to_owned(),
                    key: None,
                    message: format!("{what}: {message}"),
                },
                other => other,
            }),
            other => Err(self.protocol(None, format!("{what}: unexpected {}", other.describe()))),
        }
    }

    async fn auth(
        &self,
        conn: &mut Conn,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(u) = username {
            args.push(u.as_bytes());
        }
        if let Some(p) = password {
            args.push(p.as_bytes());
        }
        match self.call(conn, &args).await? {
            Reply::Status(_) => Ok(()),
            Reply::Error(e) => Err(self.auth_err(e)),
            other => Err(self.protocol(None, format!("AUTH: unexpected {}", other.describe()))),
        }
    }

    async fn handshake(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let (_, namespace, db, username, password) = resp_parts(&self.shared.url);
        let is_zdb_url = matches!(self.shared.url, StoreUrl::Zdb { .. });
        let mut authed = false;
        let mut info = self.call(conn, &[b"INFO"]).await?;
        if let Reply::Error(e) = &info {
            if e.to_ascii_uppercase().starts_with("NOAUTH") {
                if password.is_none() {
                    return Err(self.auth_err(format!("the server requires a password: {e}")));
                }
                self.auth(conn, username, password).await?;
                authed = true;
                info = self.call(conn, &[b"INFO"]).await?;
            }
        }
        let text = match info {
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            Reply::Status(b) => String::from_utf8_lossy(&b).into_owned(),
            Reply::Error(e) => return Err(classify(self.name(), None, &format!("INFO: {e}"))),
            other => {
                return Err(self.protocol(None, format!("INFO: unexpected {}", other.describe())))
            }
        };
        let zdb = text.lines().any(|l| {
            let l = l.trim();
            l.starts_with("server_name") && l.contains("0-db")
        });
        conn.info = ServerInfo { zdb };
        if !zdb {
            // Redis.
            if is_zdb_url && namespace != "default" {
                return Err(StoreError::BadNamespace {
                    store: self.name().to_owned(),
                    message: format!(
                        "the server is Redis, not 0-db: it has no namespace {namespace:?} \
                         (use redis://host/db)"
                    ),
                });
            }
            if password.is_some() && !authed {
                self.auth(conn, username, password).await?;
            }
            if db != 0 {
                let db = db.to_string();
                let r = self.call(conn, &[b"SELECT", db.as_bytes()]).await?;
                self.expect_ok(r, "SELECT")?;
            }
            return Ok(());
        }
        // 0-db.
        if db != 0 {
            return Err(StoreError::BadNamespace {
                store: self.name().to_owned(),
                message: "the server is 0-db, which has named namespaces, not numbered \
                          databases (use zdb://host/namespace)"
                    .into(),
            });
        }
        let ns = namespace.as_bytes();
        let reply = match password {
            None => self.call(conn, &[b"SELECT", ns]).await?,
            Some(pw) => match self.call(conn, &[b"AUTH", b"SECURE", b"CHALLENGE"]).await? {
                Reply::Bulk(Some(nonce)) | Reply::Status(nonce) => {
                    use sha1::Digest;
                    let mut h = sha1::Sha1::new();
                    h.update(&nonce);
                    h.update(b":");
                    h.update(pw.as_bytes());
                    let proof = hex::encode(h.finalize());
                    self.call(conn, &[b"SELECT", ns, b"SECURE", proof.as_bytes()])
                        .await?
                }
                // No challenge support: plain-text password.
                _ => self.call(conn, &[b"SELECT", ns, pw.as_bytes()]).await?,
            },
        };
        match reply {
            Reply::Status(_) => {}
            Reply::Error(e) => {
                let lower = e.to_ascii_lowercase();
                return Err(
                    if lower.contains("not found") || lower.contains("no such") {
                        StoreError::BadNamespace {
                            store: self.name().to_owned(),
                            message: format!("namespace {namespace:?}: {e}"),
                        }
                    } else {
                        self.auth_err(format!("SELECT {namespace}: {e}"))
                    },
                );
            }
            other => {
                return Err(self.protocol(None, format!("SELECT: unexpected {}", other.describe())))
            }
        }
        // Refuse sequential namespaces when NSINFO tells (it may be refused to non-admins;
        // SET replies are checked as well).
        if let Reply::Bulk(Some(b)) = self.call(conn, &[b"NSINFO", ns]).await? {
            let text = String::from_utf8_lossy(&b);
            for line in text.lines() {
                if let Some((k, v)) = line.split_once(':') {
                    let v = v.trim().to_ascii_lowercase();
                    if k.trim() == "mode" && v.starts_with("seq") {
                        return Err(StoreError::BadNamespace {
                            store: self.name().to_owned(),
                            message: format!(
                                "namespace {namespace:?} is in sequential mode (the server \
                                 chooses the keys); chunks need a user-key namespace"
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Gets a pooled connection, or makes one (bounded by the connect timeout). On failure,
    /// also says whether retrying makes sense (refused or reset: yes; timed out, refused
    /// credentials: no).
    async fn checkout(&self, first_key: Option<&[u8]>) -> Result<Conn, (StoreError, bool)> {
        if let Some(c) = self.shared.idle.lock().ok().and_then(|mut i| i.pop()) {
            return Ok(c);
        }
        let limit = self.shared.opts.connect_timeout;
        match tokio::time::timeout(limit, self.connect()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e @ StoreError::Connection { .. })) => Err((e, true)),
            Ok(Err(e)) => Err((e, false)),
            Err(_) => Err((
                self.conn_err(
                    first_key,
                    format!("no connection within {limit:?} (connect and handshake timed out)"),
                ),
                false,
            )),
        }
    }

    /// Runs one pipelined window with retries, and interprets its replies.
    async fn round<T>(
        &self,
        operation: &str,
        cmds: &[Cmd<'_>],
        first_key: Option<&[u8]>,
        interpret: impl Fn(ServerInfo, Vec<Reply>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let opts = &self.shared.opts;
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let _permit = self
                .shared
                .permits
                .acquire()
                .await
                .map_err(|_| self.conn_err(first_key, "store closed".into()))?;
            let retry = match self.checkout(first_key).await {
                Ok(mut conn) => {
                    match tokio::time::timeout(opts.timeout, conn.exchange(cmds)).await {
                        Err(_) => {
                            return Err(StoreError::Timeout {
                                store: self.name().to_owned(),
                                key: first_key.map(hex_key),
                                operation: operation.to_owned(),
                                after: opts.timeout,
                            })
                        }
                        Ok(Ok(replies)) => {
                            let info = conn.info;
                            if let Ok(mut idle) = self.shared.idle.lock() {
                                idle.push(conn);
                            }
                            return interpret(info, replies);
                        }
                        Ok(Err(e)) => {
                            self.drop_idle();
                            let transient = matches!(e.kind, ExKind::Io(_) | ExKind::Closed);
                            let err = if let ExKind::Protocol(m) = e.kind {
                                self.protocol(first_key, format!("{operation}: {m}"))
                            } else {
                                self.conn_err(
                                    first_key,
                                    format!(
                                        "{operation}: connection lost after {} of {} replies: {}",
                                        e.received,
                                        cmds.len(),
                                        e.kind
                                    ),
                                )
                            };
                            if !(transient && e.received == 0) {
                                return Err(err);
                            }
                            err
                        }
                    }
                }
                Err((e, true)) => e,
                Err((e, false)) => return Err(e),
            };
            if attempt >= opts.retries {
                return Err(retry);
            }
            attempt += 1;
            tracing::debug!(store = %self.name(), attempt, error = %retry, "retrying");
            drop(_permit);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    fn set_reply(
        &self,
        info: ServerInfo,
        key: &[u8],
        reply: Reply,
    ) -> Result<SetOutcome, StoreError> {
        match reply {
            Reply::Status(s) if !info.zdb && s.as_ref() == b"OK" => Ok(SetOutcome::Written),
            Reply::Bulk(Some(k)) if info.zdb => {
                if k.as_ref() == key {
                    Ok(SetOutcome::Written)
                } else {
                    Err(StoreError::BadNamespace {
                        store: self.name().to_owned(),
                        message: format!(
                            "SET of key {} stored it under key {}: the namespace is in \
                             sequential mode; chunks need a user-key namespace",
                            hex_key(key),
                            hex_key(&k)
                        ),
                    })
                }
            }
            Reply::Bulk(None) => Ok(SetOutcome::AlreadyPresent),
            Reply::Error(e) => Err(classify(self.name(), Some(key), &e)),
            other => Err(self.protocol(Some(key), format!("SET: unexpected {}", other.describe()))),
        }
    }

    fn exists_reply(&self, key: &[u8], reply: Reply) -> Result<bool, StoreError> {
        match reply {
            Reply::Int(n) if n >= 0 => Ok(n > 0),
            Reply::Error(e) => Err(classify(self.name(), Some(key), &e)),
            other => Err(self.protocol(
                Some(key),
                format!("EXISTS: unexpected {}", other.describe()),
            )),
        }
    }

    fn get_reply(&self, key: &[u8], reply: Reply) -> Result<Option<Bytes>, StoreError> {
        match reply {
            Reply::Bulk(v) => Ok(v),
            Reply::Error(e) => Err(classify(self.name(), Some(key), &e)),
            other => Err(self.protocol(Some(key), format!("GET: unexpected {}", other.describe()))),
        }
    }

    /// Splits `n` items into windows of at most `max_cmds` items and about `max_bytes`.
    fn windows(
        n: usize,
        size: impl Fn(usize) -> usize,
        max_cmds: usize,
    ) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut bytes = 0;
        for i in 0..n {
            let s = size(i);
            if i > start && (i - start >= max_cmds || bytes + s > WINDOW_BYTES) {
                out.push(start..i);
                start = i;
                bytes = 0;
            }
            bytes += s;
        }
        if start < n {
            out.push(start..n);
        }
        out
    }

    /// Runs windows concurrently (bounded by the pool size), keeping order.
    async fn run_windows<T, F, Fut>(
        &self,
        windows: Vec<std::ops::Range<usize>>,
        f: F,
    ) -> Result<Vec<T>, StoreError>
    where
        F: Fn(std::ops::Range<usize>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
    {
        let parts: Vec<Vec<T>> = futures::stream::iter(windows)
            .map(f)
            .buffered(self.shared.opts.pool_size.max(1))
            .try_collect()
            .await?;
        Ok(parts.into_iter().flatten().collect())
    }
}

/// (endpoint, namespace, db, username, password) of a RESP URL.
fn resp_parts(url: &StoreUrl) -> (&Endpoint, &str, u32, Option<&str>, Option<&str>) {
    static DEFAULT: std::sync::OnceLock<Endpoint> = std::sync::OnceLock::new();
    match url {
        StoreUrl::Zdb {
            endpoint,
            namespace,
            password,
        } => (endpoint, namespace.as_str(), 0, None, password.as_deref()),
        StoreUrl::Redis {
            endpoint,
            db,
            username,
            password,
        } => (
            endpoint,
            "default",
            *db,
            username.as_deref(),
            password.as_deref(),
        ),
        // Not constructed for other URLs.
        _ => (
            DEFAULT.get_or_init(|| Endpoint::Unix {
                path: "/nonexistent".into(),
            }),
            "default",
            0,
            None,
            None,
        ),
    }
}

#[async_trait]
impl Store for RespStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.check_key(key)?;
        let cmd = Cmd {
            args: vec![b"GET", key],
        };
        self.round("GET", std::slice::from_ref(&cmd), Some(key), |_, mut r| {
            let reply = r
                .pop()
                .ok_or_else(|| self.protocol(Some(key), "no reply".into()))?;
            self.get_reply(key, reply)
        })
        .await
    }

    async fn exists(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.check_key(key)?;
        let cmd = Cmd {
            args: vec![b"EXISTS", key],
        };
        self.round(
            "EXISTS",
            std::slice::from_ref(&cmd),
            Some(key),
            |_, mut r| {
                let reply = r
                    .pop()
                    .ok_or_else(|| self.protocol(Some(key), "no reply".into()))?;
                self.exists_reply(key, reply)
            },
        )
        .await
    }

    async fn set(&self, key: &[u8], value: Bytes) -> Result<SetOutcome, StoreError> {
        let items = [(key.to_vec(), value)];
        let mut out = self.set_many(&items).await?;
        out.pop()
            .ok_or_else(|| self.protocol(Some(key), "no reply".into()))
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        for k in keys {
            self.check_key(k)?;
        }
        let windows = Self::windows(keys.len(), |_| 0, MGET_WINDOW.min(MGET_MAX));
        self.run_windows(windows, |range| async move {
            let part = &keys[range];
            let mut args: Vec<&[u8]> = Vec::with_capacity(part.len() + 1);
            args.push(b"MGET");
            args.extend(part.iter().map(|k| k.as_slice()));
            let cmd = Cmd { args };
            let first = part.first().map(|k| k.as_slice());
            self.round(
                "MGET",
                std::slice::from_ref(&cmd),
                first,
                |_, mut r| match r.pop() {
                    Some(Reply::Array(Some(items))) if items.len() == part.len() => items
                        .into_iter()
                        .zip(part)
                        .map(|(reply, key)| self.get_reply(key, reply))
                        .collect(),
                    Some(Reply::Error(e)) => {
                        Err(classify(self.name(), first, &format!("MGET: {e}")))
                    }
                    Some(other) => Err(self.protocol(
                        first,
                        format!(
                            "MGET of {} keys: unexpected {}",
                            part.len(),
                            other.describe()
                        ),
                    )),
                    None => Err(self.protocol(first, "no reply".into())),
                },
            )
            .await
        })
        .await
    }

    async fn exists_many(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError> {
        for k in keys {
            self.check_key(k)?;
        }
        let windows = Self::windows(keys.len(), |_| 0, WINDOW_CMDS);
        self.run_windows(windows, |range| async move {
            let part = &keys[range];
            let cmds: Vec<Cmd> = part
                .iter()
                .map(|k| Cmd {
                    args: vec![b"EXISTS", k],
                })
                .collect();
            let first = part.first().map(|k| k.as_slice());
            self.round("EXISTS", &cmds, first, |_, replies| {
                replies
                    .into_iter()
                    .zip(part)
                    .map(|(r, k)| self.exists_reply(k, r))
                    .collect()
            })
            .await
        })
        .await
    }

    async fn key_count(&self) -> Result<Option<u64>, StoreError> {
        self.dbsize().await.map(Some)
    }

    async fn set_many(&self, items: &[(Vec<u8>, Bytes)]) -> Result<Vec<SetOutcome>, StoreError> {
        for (k, _) in items {
            self.check_key(k)?;
        }
        let Some(first) = items.first().map(|(k, _)| k.as_slice()) else {
            return Ok(Vec::new());
        };
        // The dialect is known once connected (INFO handshake); ask the pool what it learnt:
        // Redis gets `SET k v NX`, 0-db plain `SET k v`.
        let zdb = self.dialect_zdb(Some(first)).await?;
        // One window shape for both servers (see the module docs for why 0-db pipelines as
        // well as Redis once the client acknowledges replies at once).
        let windows = Self::windows(items.len(), |i| items[i].1.len() + 64, WINDOW_CMDS);
        self.run_windows(windows, |range| async move {
            let part = &items[range];
            let first = part.first().map(|(k, _)| k.as_slice());
            let cmds: Vec<Cmd> = part
                .iter()
                .map(|(k, v)| {
                    let mut args: Vec<&[u8]> = vec![b"SET", k, v];
                    if !zdb {
                        args.push(b"NX");
                    }
                    Cmd { args }
                })
                .collect();
            self.round("SET", &cmds, first, |info, replies| {
                if info.zdb != zdb {
                    return Err(self.protocol(first, "the server changed kind (0-db/Redis)".into()));
                }
                replies
                    .into_iter()
                    .zip(part)
                    .map(|(r, (k, _))| self.set_reply(info, k, r))
                    .collect()
            })
            .await
        })
        .await
    }
}

impl RespStore {
    /// `DBSIZE`: keys in the namespace (0-db) or database (Redis).
    async fn dbsize(&self) -> Result<u64, StoreError> {
        let cmd = Cmd {
            args: vec![b"DBSIZE"],
        };
        self.round(
            "DBSIZE",
            std::slice::from_ref(&cmd),
            None,
            |_, mut r| match r.pop() {
                Some(Reply::Int(n)) if n >= 0 => Ok(n.unsigned_abs()),
                Some(Reply::Error(e)) => Err(classify(self.name(), None, &format!("DBSIZE: {e}"))),
                Some(other) => {
                    Err(self.protocol(None, format!("DBSIZE: unexpected {}", other.describe())))
                }
                None => Err(self.protocol(None, "no reply".into())),
            },
        )
        .await
    }

    /// Whether the server is 0-db (learnt from a connection's handshake).
    async fn dialect_zdb(&self, first_key: Option<&[u8]>) -> Result<bool, StoreError> {
        if let Some(zdb) = self
            .shared
            .idle
            .lock()
            .ok()
            .and_then(|i| i.last().map(|c| c.info.zdb))
        {
            return Ok(zdb);
        }
        // No idle connection: make one (with the usual retries) and pool it.
        self.round(
            "PING",
            &[Cmd {
                args: vec![b"PING"],
            }],
            first_key,
            |info, _| Ok(info.zdb),
        )
        .await
    }
}
