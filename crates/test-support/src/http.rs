//! A small, real HTTP/1.1 file server on a free loopback port: serves a directory read-only
//! (`GET`/`HEAD`, keep-alive), counts requests per path, and can be told to answer `503`
//! for paths containing a string (to inject store failures). Enough to serve an `.flist`,
//! its `.md5` and a `dir://` store's files as an `http://` chunk store.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    requests: HashMap<String, usize>,
    failing: Vec<String>,
}

/// A running file server; stops accepting when dropped (its threads end with the test).
pub struct FileServer {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl FileServer {
    /// Serves `root` on `127.0.0.1:<free port>`.
    pub fn start(root: &Path) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (root, st) = (root.clone(), st.clone());
                std::thread::spawn(move || serve_connection(stream, &root, &st));
            }
        });
        FileServer { port, state }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests seen for `path` (e.g. `/x.flist.md5`).
    pub fn requests(&self, path: &str) -> usize {
        self.lock().requests.get(path).copied().unwrap_or(0)
    }

    /// Requests seen for paths starting with `prefix`.
    pub fn requests_under(&self, prefix: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// From now on, paths containing `needle` answer `503 Service Unavailable`.
    pub fn fail_paths_containing(&self, needle: &str) {
        self.lock().failing.push(needle.to_string());
    }

    /// Stops injecting failures.
    pub fn heal(&self) {
        self.lock().failing.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn serve_connection(stream: TcpStream, root: &Path, state: &Mutex<State>) {
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(stream);
    loop {
        let mut request = String::new();
        if r.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
                break;
            }
        }
        let mut parts = request.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let path = path.split('?').next().unwrap_or("").to_string();
        let failing = {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            *s.requests.entry(path.clone()).or_default() += 1;
            s.failing.iter().any(|n| path.contains(n.as_str()))
        };
        let file: Option<PathBuf> = {
            let rel = path.trim_start_matches('/');
            let safe = !rel.split('/').any(|c| c == ".." || c.is_empty());
            safe.then(|| root.join(rel)).filter(|p| p.is_file())
        };
        let (status, body) = if failing {
            ("503 Service Unavailable", Vec::new())
        } else {
            match file.and_then(|f| std::fs::read(f).ok()) {
                Some(b) => ("200 OK", b),
                None => ("404 Not Found", Vec::new()),
            }
        };
        let mut out = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(&body);
        }
        if w.write_all(&out).is_err() {
            return;
        }
    }
}
