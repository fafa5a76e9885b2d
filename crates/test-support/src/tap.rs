//! A recording TCP proxy: listens on a free loopback port, forwards every connection to an
//! upstream port and keeps a copy of what clients sent. Tests use it to check what goes on
//! the wire to a real server (e.g. that a password is never sent in plain text).
//!
//! ```no_run
//! let server = test_support::ZdbServer::start();
//! let tap = test_support::tap::Tap::start(server.port());
//! // connect the client under test to tap.port() ...
//! assert!(!tap.sent_contains(b"secret"));
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A running proxy. Dropping it stops accepting new connections.
#[derive(Debug)]
pub struct Tap {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Tap {
    /// Starts a proxy to `127.0.0.1:<upstream>`.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (sent, stop) = (sent.clone(), stop.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        continue;
                    };
                    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                        continue;
                    };
                    let sent = sent.clone();
                    std::thread::spawn(move || pump(client, server, Some(sent)));
                    std::thread::spawn(move || pump(s2, c2, None));
                }
            });
        }
        Tap { port, sent, stop }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything clients sent so far (all connections, interleaved per read).
    pub fn sent(&self) -> Vec<u8> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether clients sent `needle` (anywhere in the recorded bytes).
    pub fn sent_contains(&self, needle: &[u8]) -> bool {
        let sent = self.sent();
        !needle.is_empty() && sent.windows(needle.len()).any(|w| w == needle)
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, record: Option<Arc<Mutex<Vec<u8>>>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(r) = &record {
            r.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
