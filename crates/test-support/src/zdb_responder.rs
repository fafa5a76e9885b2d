//! A 0-db **fault-injection** responder: a small TCP server on a free loopback port that
//! follows `spec/zero-db.md`, for the few tests that need the server to misbehave in ways
//! the real 0-db cannot be made to (e.g. [`ZdbResponder::hide_namespace_mode`]). Every other
//! 0-db test runs the real server ([`crate::ZdbResponder`]).
//!
//! It implements (namespaces by name with passwords, public read-only access, `SET`
//! replying with the key or nil, sequential-mode namespaces, lock/freeze, size limits,
//! `-No more data` at the end of `SCAN`, `INFO` with `server_name: 0-db (zdb)`, the
//! `AUTH SECURE CHALLENGE` flow). One thread per connection; state shared in memory.
//!
//! Namespaces are set up either over the wire by an admin (`AUTH <admin password>` then
//! `NSNEW`/`NSSET`) or directly with [`ZdbResponder::namespace`].

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::redis::{read_reply, RedisReply};
use crate::zdb::{NsConfig, NsMode};

/// Largest key 0-db accepts.
const MAX_KEY: usize = 255;
/// Largest value 0-db accepts.
const MAX_VALUE: usize = 8 * 1024 * 1024;
/// Most keys per `MGET`.
const MAX_MGET: usize = 1023;

#[derive(Debug, Default)]
struct Namespace {
    config: NsConfig,
    /// Entries in insertion order; deleted ones are `None`.
    log: Vec<Option<(Vec<u8>, Vec<u8>)>>,
    index: HashMap<Vec<u8>, usize>,
    size: usize,
    next_seq: u32,
}

impl Namespace {
    fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        let i = *self.index.get(key)?;
        self.log.get(i)?.as_ref().map(|(_, v)| v)
    }
}

#[derive(Debug)]
struct State {
    namespaces: HashMap<String, Namespace>,
    admin_password: Option<String>,
    secure_selects: usize,
    plain_selects: usize,
    /// Fault: `NSINFO` leaves out the `mode:` line.
    hide_mode: bool,
}

/// A running 0-db responder. Dropping it stops accepting and closes every connection.
#[derive(Debug)]
pub struct ZdbResponder {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl ZdbResponder {
    /// Starts a responder with an open `default` namespace and admin password `admin`.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let mut namespaces = HashMap::new();
        namespaces.insert("default".to_owned(), Namespace::default());
        let state = Arc::new(Mutex::new(State {
            namespaces,
            admin_password: Some("admin".to_owned()),
            secure_selects: 0,
            plain_selects: 0,
            hide_mode: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (state, stop, connections) = (state.clone(), stop.clone(), connections.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if let Ok(c) = conn.try_clone() {
                        connections
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(c);
                    }
                    let state = state.clone();
                    std::thread::spawn(move || serve(conn, state));
                }
            })
        };
        ZdbResponder {
            port,
            state,
            stop,
            connections,
            thread: Some(thread),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `zdb://[:password@]127.0.0.1:<port>/<namespace>`.
    pub fn url(&self, namespace: &str, password: Option<&str>) -> String {
        match password {
            Some(pw) => format!("zdb://:{pw}@127.0.0.1:{}/{namespace}", self.port),
            None => format!("zdb://127.0.0.1:{}/{namespace}", self.port),
        }
    }

    /// Creates (or reconfigures) a namespace.
    pub fn namespace(&self, name: &str, config: NsConfig) {
        let mut st = lock(&self.state);
        st.namespaces.entry(name.to_owned()).or_default().config = config;
    }

    /// Changes a namespace's settings in place.
    pub fn configure(&self, name: &str, f: impl FnOnce(&mut NsConfig)) {
        let mut st = lock(&self.state);
        if let Some(ns) = st.namespaces.get_mut(name) {
            f(&mut ns.config);
        }
    }

    /// A stored value, read directly.
    pub fn stored(&self, namespace: &str, key: &[u8]) -> Option<Vec<u8>> {
        lock(&self.state)
            .namespaces
            .get(namespace)
            .and_then(|ns| ns.get(key).cloned())
    }

    /// Fault: `NSINFO` no longer reports the namespace's mode (as a server that does not
    /// say it is sequential), so only the `SET` reply can reveal a sequential namespace.
    pub fn hide_namespace_mode(&self) {
        lock(&self.state).hide_mode = true;
    }

    /// Successful password `SELECT`s so far: (with `SECURE` proofs, with plain passwords).
    pub fn password_selects(&self) -> (usize, usize) {
        let st = lock(&self.state);
        (st.secure_selects, st.plain_selects)
    }

    /// Number of live entries in a namespace.
    pub fn entries(&self, namespace: &str) -> usize {
        lock(&self.state)
            .namespaces
            .get(namespace)
            .map_or(0, |ns| ns.log.iter().filter(|e| e.is_some()).count())
    }

    /// Sends one command on a fresh raw connection and returns the reply.
    pub fn command(&self, args: &[&[u8]]) -> std::io::Result<RedisReply> {
        let s = TcpStream::connect(("127.0.0.1", self.port))?;
        let mut w = s.try_clone()?;
        let mut r = BufReader::new(s);
        w.write_all(&crate::redis::encode(args))?;
        read_reply(&mut r)
    }
}

impl Drop for ZdbResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for c in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one command (an array of bulk strings); `None` at end of stream.
fn read_command(r: &mut impl BufRead) -> std::io::Result<Option<Vec<Vec<u8>>>> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad command");
    if line.first() != Some(&b'*') || !line.ends_with(b"\r\n") {
        return Err(bad());
    }
    let n: usize = std::str::from_utf8(&line[1..line.len() - 2])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let mut args = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        line.clear();
        r.read_until(b'\n', &mut line)?;
        if line.first() != Some(&b'$') || !line.ends_with(b"\r\n") {
            return Err(bad());
        }
        let len: usize = std::str::from_utf8(&line[1..line.len() - 2])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|l| *l <= 64 * 1024 * 1024)
            .ok_or_else(bad)?;
        let mut v = vec![0u8; len + 2];
        r.read_exact(&mut v)?;
        v.truncate(len);
        args.push(v);
    }
    Ok(Some(args))
}

fn status(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(format!("+{s}\r\n").as_bytes());
}
fn error(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(format!("-{s}\r\n").as_bytes());
}
fn int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(format!(":{n}\r\n").as_bytes());
}
fn bulk(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.extend_from_slice(b"$-1\r\n"),
        Some(v) => {
            out.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
    }
}
fn array_header(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(format!("*{n}\r\n").as_bytes());
}

fn sha1_hex(challenge: &str, password: &str) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(challenge.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    hex::encode(h.finalize())
}

static NONCE: AtomicU64 = AtomicU64::new(0x5eed_0fdb_c0de_0001);

struct Session {
    namespace: String,
    writable: bool,
    admin: bool,
    challenge: Option<String>,
}

fn serve(conn: TcpStream, state: Arc<Mutex<State>>) {
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    let mut session = Session {
        namespace: "default".into(),
        writable: true,
        admin: false,
        challenge: None,
    };
    let mut out = Vec::new();
    while let Ok(Some(args)) = read_command(&mut r) {
        handle(&args, &mut session, &state, &mut out);
        // Pipelining: reply once no more input is buffered (or a lot is pending).
        if r.buffer().is_empty() || out.len() > 1 << 20 {
            if w.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
    }
}

fn handle(args: &[Vec<u8>], s: &mut Session, state: &Mutex<State>, out: &mut Vec<u8>) {
    let Some(cmd) = args.first() else {
        return error(out, "Empty command");
    };
    let cmd = String::from_utf8_lossy(cmd).to_ascii_uppercase();
    let text = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).into_owned());
    let mut st = lock(state);
    match cmd.as_str() {
        "PING" => status(out, "PONG"),
        "INFO" => {
            let body = "# server\nserver_name: 0-db (zdb)\nserver_revision: test-responder\n\
                        instance_id: 1\nmode: mixed\n";
            bulk(out, Some(body.as_bytes()));
        }
        "AUTH" => match (text(1).map(|t| t.to_ascii_uppercase()).as_deref(), text(2)) {
            (Some("SECURE"), Some(arg)) if arg.eq_ignore_ascii_case("CHALLENGE") => {
                let nonce = format!("{:016x}", NONCE.fetch_add(0x9e37_79b9, Ordering::Relaxed));
                s.challenge = Some(nonce.clone());
                bulk(out, Some(nonce.as_bytes()));
            }
            (Some("SECURE"), Some(proof)) => {
                let ok = match (&s.challenge, &st.admin_password) {
                    (Some(c), Some(pw)) => sha1_hex(c, pw) == proof,
                    _ => false,
                };
                s.challenge = None;
                if ok {
                    s.admin = true;
                    status(out, "OK");
                } else {
                    error(out, "Access denied");
                }
            }
            (Some(_), None) => {
                let given = text(1).unwrap_or_default();
                if st.admin_password.as_deref() == Some(given.as_str()) {
                    s.admin = true;
                    status(out, "OK");
                } else {
                    error(out, "Access denied");
                }
            }
            _ => error(out, "Invalid argument"),
        },
        "SELECT" => {
            let Some(name) = text(1) else {
                return error(out, "Invalid argument");
            };
            let Some(ns) = st.namespaces.get(&name) else {
                return error(out, "Namespace not found");
            };
            let (given, secure) = match (text(2), text(3)) {
                (Some(kw), Some(proof)) if kw.eq_ignore_ascii_case("SECURE") => {
                    let ok = match (&s.challenge, &ns.config.password) {
                        (Some(c), Some(pw)) => sha1_hex(c, pw) == proof,
                        _ => false,
                    };
                    s.challenge = None;
                    (Some(ok), true)
                }
                (Some(pw), None) => (
                    Some(ns.config.password.as_deref() == Some(pw.as_str())),
                    false,
                ),
                _ => (None, false),
            };
            let writable = match (&ns.config.password, given) {
                (None, None) => true,
                (None, Some(_)) => true,
                (Some(_), Some(true)) => true,
                (Some(_), Some(false)) => return error(out, "Access denied"),
                (Some(_), None) if ns.config.public || s.admin => s.admin,
                (Some(_), None) => return error(out, "Namespace protected and private"),
            };
            s.namespace = name;
            s.writable = writable;
            if given == Some(true) {
                if secure {
                    st.secure_selects += 1;
                } else {
                    st.plain_selects += 1;
                }
            }
            status(out, "OK");
        }
        "NSNEW" | "NSSET" | "NSDEL" if !s.admin => error(out, "Permission denied"),
        "NSNEW" => {
            let Some(name) = text(1) else {
                return error(out, "Invalid argument");
            };
            if st.namespaces.contains_key(&name) {
                return error(out, "This namespace is not available");
            }
            st.namespaces.insert(name, Namespace::default());
            status(out, "OK");
        }
        "NSDEL" => {
            let Some(name) = text(1) else {
                return error(out, "Invalid argument");
            };
            if st.namespaces.remove(&name).is_none() {
                return error(out, "Namespace not found");
            }
            status(out, "OK");
        }
        "NSSET" => {
            let (Some(name), Some(prop), Some(value)) = (text(1), text(2), text(3)) else {
                return error(out, "Invalid argument");
            };
            let Some(ns) = st.namespaces.get_mut(&name) else {
                return error(out, "Namespace not found");
            };
            let flag = value == "1";
            let c = &mut ns.config;
            match prop.as_str() {
                "password" => c.password = if value == "*" { None } else { Some(value) },
                "public" => c.public = flag,
                "maxsize" => c.maxsize = value.parse().ok().filter(|m| *m > 0),
                "lock" => c.locked = flag,
                "freeze" => c.frozen = flag,
                "mode" if ns.log.is_empty() => {
                    c.mode = if value.starts_with("seq") {
                        NsMode::Sequential
                    } else {
                        NsMode::User
                    }
                }
                "mode" => return error(out, "Cannot change mode, namespace is not empty"),
                _ => return error(out, "Unknown property"),
            }
            status(out, "OK");
        }
        "NSLIST" => {
            let mut names: Vec<&String> = st.namespaces.keys().collect();
            names.sort();
            array_header(out, names.len());
            for n in names {
                bulk(out, Some(n.as_bytes()));
            }
        }
        "NSINFO" => {
            let Some(name) = text(1) else {
                return error(out, "Invalid argument");
            };
            let Some(ns) = st.namespaces.get(&name) else {
                return error(out, "Namespace not found");
            };
            let yn = |b: bool| if b { "yes" } else { "no" };
            let c = &ns.config;
            let body = format!(
                "# namespace\nname: {name}\nentries: {}\npublic: {}\npassword: {}\n\
                 data_size_bytes: {}\ndata_limits_bytes: {}\nmode: {}\nworm: no\nlocked: {}\n\
                 frozen: {}\n",
                ns.log.iter().filter(|e| e.is_some()).count(),
                yn(c.public),
                yn(c.password.is_some()),
                ns.size,
                c.maxsize.unwrap_or(0),
                if c.mode == NsMode::User {
                    "userkey"
                } else {
                    "sequential"
                },
                yn(c.locked),
                yn(c.frozen),
            );
            let body = if st.hide_mode {
                body.lines()
                    .filter(|l| !l.starts_with("mode:"))
                    .map(|l| format!("{l}\n"))
                    .collect()
            } else {
                body
            };
            bulk(out, Some(body.as_bytes()));
        }
        _ => {
            let Some(ns) = st.namespaces.get_mut(&s.namespace) else {
                return error(out, "Namespace not found");
            };
            data_command(&cmd, args, s.writable, ns, out);
        }
    }
}

fn data_command(
    cmd: &str,
    args: &[Vec<u8>],
    writable: bool,
    ns: &mut Namespace,
    out: &mut Vec<u8>,
) {
    if ns.config.frozen {
        return error(out, "Namespace is temporarily frozen (read-write disabled)");
    }
    let write = matches!(cmd, "SET" | "DEL");
    if write && ns.config.locked {
        return error(out, "Namespace is temporarily locked (read-only)");
    }
    if write && !writable {
        return error(out, "Namespace is in read-only mode");
    }
    match cmd {
        "SET" => {
            let (Some(key), Some(value)) = (args.get(1), args.get(2)) else {
                return error(out, "Invalid argument");
            };
            if key.len() > MAX_KEY {
                return error(out, "Key too large");
            }
            if value.len() > MAX_VALUE {
                return error(out, "Payload too large");
            }
            if let Some(max) = ns.config.maxsize {
                if ns.size + value.len() > max {
                    return error(out, "No space left on this namespace");
                }
            }
            let key = match ns.config.mode {
                NsMode::Sequential => {
                    let k = ns.next_seq.to_le_bytes().to_vec();
                    ns.next_seq += 1;
                    k
                }
                NsMode::User => key.clone(),
            };
            if ns.get(&key).map(|v| v == value) == Some(true) {
                return bulk(out, None);
            }
            if let Some(i) = ns.index.get(&key).copied() {
                if let Some(Some((_, old))) = ns.log.get_mut(i).map(Option::take) {
                    ns.size -= old.len();
                }
            }
            ns.size += value.len();
            ns.index.insert(key.clone(), ns.log.len());
            ns.log.push(Some((key.clone(), value.clone())));
            bulk(out, Some(&key));
        }
        "GET" => {
            let Some(key) = args.get(1) else {
                return error(out, "Invalid argument");
            };
            bulk(out, ns.get(key).map(|v| v.as_slice()));
        }
        "MGET" => {
            let keys = &args[1..];
            if keys.is_empty() || keys.len() > MAX_MGET {
                return error(out, "Invalid argument, too many keys");
            }
            array_header(out, keys.len());
            for k in keys {
                bulk(out, ns.get(k).map(|v| v.as_slice()));
            }
        }
        "EXISTS" | "CHECK" => {
            let Some(key) = args.get(1) else {
                return error(out, "Invalid argument");
            };
            int(out, i64::from(ns.get(key).is_some()));
        }
        "DEL" => {
            let Some(key) = args.get(1) else {
                return error(out, "Invalid argument");
            };
            match ns.index.remove(key.as_slice()) {
                Some(i) => {
                    if let Some(Some((_, v))) = ns.log.get_mut(i).map(Option::take) {
                        ns.size -= v.len();
                    }
                    status(out, "OK");
                }
                None => error(out, "Key not found"),
            }
        }
        "DBSIZE" => int(out, ns.log.iter().filter(|e| e.is_some()).count() as i64),
        "SCAN" => {
            // Cursor: the 8-byte little-endian log position to resume at.
            let start = match args.get(1) {
                None => 0,
                Some(c) => match <[u8; 8]>::try_from(c.as_slice()) {
                    Ok(b) => u64::from_le_bytes(b) as usize,
                    Err(_) => return error(out, "Invalid cursor"),
                },
            };
            let mut items = Vec::new();
            let mut pos = start;
            while pos < ns.log.len() && items.len() < 16 {
                if let Some((k, v)) = &ns.log[pos] {
                    items.push((k.clone(), v.len()));
                }
                pos += 1;
            }
            if items.is_empty() {
                return error(out, "No more data");
            }
            array_header(out, 2);
            bulk(out, Some(&(pos as u64).to_le_bytes()));
            array_header(out, items.len());
            for (k, size) in items {
                array_header(out, 3);
                bulk(out, Some(&k));
                int(out, size as i64);
                int(out, 0);
            }
        }
        _ => error(out, &format!("Command not supported: {cmd}")),
    }
}
