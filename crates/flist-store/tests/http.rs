//! The read-only HTTP store against a real (minimal, keep-alive) HTTP/1.1 server on
//! loopback that serves a `dir://` store's files.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use flist_store::{DirStore, Store, StoreError};

/// Serves `root` read-only; counts accepted connections.
fn serve(root: PathBuf) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let root = root.clone();
            std::thread::spawn(move || {
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                loop {
                    let mut request = String::new();
                    if r.read_line(&mut request).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let mut parts = request.split_whitespace();
                    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    let rel = path.trim_start_matches("/base/");
                    let body = if path.starts_with("/base/") && !rel.contains("..") {
                        std::fs::read(root.join(rel)).ok()
                    } else {
                        None
                    };
                    let resp = match (&body, path) {
                        (_, p) if p.contains("forbidden") => {
                            b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n".to_vec()
                        }
                        (Some(b), _) => {
                            let mut v =
                                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", b.len())
                                    .into_bytes();
                            if method == "GET" {
                                v.extend_from_slice(b);
                            }
                            v
                        }
                        (None, _) => {
                            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec()
                        }
                    };
                    if w.write_all(&resp).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, conns)
}

#[tokio::test]
async fn reads_over_http_with_keep_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DirStore::new(tmp.path()).unwrap();
    let items: Vec<(Vec<u8>, Bytes)> = (0..200u32)
        .map(|i| {
            (
                i.to_be_bytes().to_vec(),
                Bytes::from(vec![i as u8; 1000 + i as usize]),
            )
        })
        .collect();
    dir.set_many(&items).await.unwrap();
    let (port, conns) = serve(tmp.path().to_path_buf());
    let store = flist_store::open(&format!("http://127.0.0.1:{port}/base/"))
        .await
        .unwrap();
    assert!(!store.is_writable());

    let mut keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
    keys.push(vec![0xde, 0xad]);
    let got = store.get_many(&keys).await.unwrap();
    assert!(got[..200]
        .iter()
        .zip(&items)
        .all(|(g, (_, v))| g.as_ref() == Some(v)));
    assert_eq!(got[200], None);
    let ex = store.exists_many(&keys).await.unwrap();
    assert!(ex[..200].iter().all(|e| *e) && !ex[200]);
    assert_eq!(
        store.get(&keys[3]).await.unwrap().as_ref(),
        Some(&items[3].1)
    );
    // 401 requests over a handful of kept-alive connections.
    assert!(
        conns.load(Ordering::SeqCst) <= 16,
        "{} connections",
        conns.load(Ordering::SeqCst)
    );

    let err = store.set(b"k", Bytes::new()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unsupported { .. }), "{err}");
    assert!(matches!(
        store
            .set_many(&[(b"k".to_vec(), Bytes::new())])
            .await
            .unwrap_err(),
        StoreError::Unsupported { .. }
    ));

    let forbidden = flist_store::open(&format!("http://127.0.0.1:{port}/forbidden"))
        .await
        .unwrap();
    assert!(matches!(
        forbidden.get(b"k").await.unwrap_err(),
        StoreError::Auth { .. }
    ));

    // Nothing listening: a connection error naming the store.
    let port = test_support::redis::free_port();
    let dead = flist_store::open(&format!("http://127.0.0.1:{port}/base"))
        .await
        .unwrap();
    let err = dead.get(b"k").await.unwrap_err();
    assert!(matches!(err, StoreError::Connection { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}
