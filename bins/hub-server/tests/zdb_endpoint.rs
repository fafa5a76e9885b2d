//! `hub-server serve --zdb-listen`: the default hub (a `dir://` store) as a read-only 0-db
//! chunk server, with the real binaries. A plain RESP client (`redis-cli`, the store crate,
//! raw sockets) fetches an uploaded flist's chunks (`GET`, `MGET`, `EXISTS`, `CHECK`);
//! `SET`/`DEL`/`FLUSH` are refused and change nothing; new flists announce the endpoint and
//! `zflist extract <URL>` reads through it. Then what a hostile or careless client may do:
//! pipelining, 1,000 idle connections, a client that never reads its replies, malformed
//! frames (huge bulk length, bad type byte, truncated) — each hurts only its own connection,
//! and the hub's memory stays flat.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;

use bytes::Bytes;
use common::big::vm_rss_kb;
use common::{free_port, ok, run, serve, zflist_bin, BIN};
use serde_json::{json, Value};
use test_support::archive::{gzip, RawTar};
use test_support::redis::{encode, read_reply};
use test_support::RedisReply;

/// One RESP connection.
struct Resp {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Resp {
    fn connect(port: u16) -> Resp {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the 0-db endpoint");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        Resp {
            w: s.try_clone().expect("clone"),
            r: BufReader::new(s),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("send");
    }

    fn reply(&mut self) -> RedisReply {
        read_reply(&mut self.r).expect("a reply")
    }

    fn call(&mut self, args: &[&[u8]]) -> RedisReply {
        self.send(&encode(args));
        self.reply()
    }

    /// True when the server closed the connection (EOF), after any replies before it.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.r.read_to_end(&mut rest).is_ok()
    }
}

fn error_text(r: &RedisReply) -> &str {
    match r {
        RedisReply::Error(e) => e,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// `redis-cli -p <port>` with `script` on stdin (one command a line, `"\xNN"` escapes):
/// its raw stdout.
fn redis_cli(port: u16, script: &str) -> Vec<u8> {
    let mut c = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli (Debian: apt-get install -y redis-tools)");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let out = c.wait_with_output().expect("redis-cli");
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

fn escaped(key: &[u8]) -> String {
    let mut s = String::from("\"");
    for b in key {
        s.push_str(&format!("\\x{b:02x}"));
    }
    s.push('"');
    s
}

/// Chunk files in a `dir://` store.
fn chunk_files(root: &Path) -> usize {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|d| d.path().is_dir())
        .map(|d| std::fs::read_dir(d.path()).map(|r| r.count()).unwrap_or(0))
        .sum()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A hub with an account and a token, in `cwd` (./hub-data).
async fn hub_with_token(cwd: &Path, port: u16, zport: u16) -> (common::Serve, String) {
    let server = serve(cwd, port, &["--zdb-listen", &format!("127.0.0.1:{zport}")]).await;
    ok(&run(
        cwd,
        Path::new(BIN),
        &["user", "add", "alice", "--password-stdin"],
        Some("alice's long password\n"),
    ));
    let out = run(
        cwd,
        Path::new(BIN),
        &["token", "create", "--user", "alice", "--ttl", "1h"],
        None,
    );
    ok(&out);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (server, token)
}

#[tokio::test]
async fn default_hub_serves_its_chunks_over_zdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let (port, zport) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let (server, token) = hub_with_token(cwd, port, zport).await;
    let backend = json!({"host": "127.0.0.1", "port": zport});
    let mut banner = String::new();
    for _ in 0..100 {
        banner = std::fs::read_to_string(&server.log).expect("log");
        if banner.contains("0-db endpoint") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        banner.contains(&format!(
            "0-db endpoint (read-only chunks for ZOS nodes and 0-db readers) on 127.0.0.1:{zport}"
        )),
        "{banner}"
    );

    // Upload an archive: files of several chunks, and small ones.
    let big = noise(1, 1_300_000);
    let mut t = RawTar::new();
    t.file("bin/big", &big)
        .file("etc/motd", b"hello from the hub\n")
        .file("etc/empty", b"");
    let archive = gzip(&t.finish());
    let client = reqwest::Client::new();
    let part = reqwest::multipart::Part::bytes(archive).file_name("app.tar.gz");
    let r = client
        .post(format!("{base}/api/flist/me/upload"))
        .bearer_auth(&token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    // The flist announces the hub's own 0-db endpoint, and so do .txt and .json.
    let md: Value = client
        .get(format!("{base}/api/flist/alice/app.flist/metadata"))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(md["backend"], backend, "{md}");
    let txt = client
        .get(format!("{base}/alice/app.flist.txt"))
        .send()
        .await
        .expect("txt")
        .text()
        .await
        .expect("text");
    assert!(
        txt.contains(&format!("Storage:  zdb://127.0.0.1:{zport}")),
        "{txt}"
    );

    // Its chunk keys, from the flist itself.
    let bytes = client
        .get(format!("{base}/alice/app.flist"))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    let fl = cwd.join("app.flist");
    std::fs::write(&fl, &bytes).expect("write");
    let flist = flist_format::Flist::open(&fl).expect("open flist");
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for id in flist.tree.walk() {
        if let flist_format::Kind::File { blocks, .. } = &flist.tree.node(id).kind {
            keys.extend(blocks.iter().map(|b| b.id().to_vec()));
        }
    }
    assert!(keys.len() >= 3, "{} chunks", keys.len());
    let chunks = cwd.join("hub-data/chunks");
    let on_disk = |k: &[u8]| {
        let h = hex::encode(k);
        std::fs::read(chunks.join(&h[..2]).join(&h)).expect("chunk file")
    };

    // The store crate as a plain RESP client: GET, MGET (get_many), EXISTS.
    let store = flist_store::open(&format!("zdb://127.0.0.1:{zport}"))
        .await
        .expect("open the endpoint as a zdb:// store");
    for k in &keys {
        assert_eq!(
            store.get(k).await.expect("GET").as_deref(),
            Some(&on_disk(k)[..])
        );
    }
    let mut wanted = keys.clone();
    wanted.push(vec![0xab; 16]);
    let got = store.get_many(&wanted).await.expect("MGET");
    for (k, v) in keys.iter().zip(&got) {
        assert_eq!(v.as_deref(), Some(&on_disk(k)[..]));
    }
    assert_eq!(got.last(), Some(&None));
    let found = store.exists_many(&wanted).await.expect("EXISTS");
    assert_eq!(found.iter().filter(|f| **f).count(), keys.len());
    assert!(!found[keys.len()]);

    // redis-cli, as an operator would poke it.
    let out = redis_cli(zport, "PING\nINFO\nSELECT anything\nNSINFO default\n");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("PONG\n"), "{out}");
    assert!(out.contains("server_name: 0-db (zdb)"), "{out}");
    assert!(out.contains("\nOK\n"), "{out}");
    assert!(out.contains("mode: userkey"), "{out}");
    let k0 = &keys[0];
    let mut got = redis_cli(zport, &format!("GET {}\n", escaped(k0)));
    assert_eq!(got.pop(), Some(b'\n'));
    assert_eq!(got, on_disk(k0));
    let out = redis_cli(
        zport,
        &format!(
            "EXISTS {}\nEXISTS \"nope\"\nCHECK {}\nMGET {} \"nope\"\n",
            escaped(k0),
            escaped(&keys[1]),
            escaped(&keys[2])
        ),
    );
    assert!(
        out.starts_with(b"1\n0\n1\n"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );

    // Writes are refused, naming the command, and change nothing.
    let files = chunk_files(&chunks);
    let out = redis_cli(
        zport,
        &format!(
            "SET newkey value\nSET {} garbage\nDEL {}\nFLUSH\nNSNEW x\nNSSET default public 0\n",
            escaped(k0),
            escaped(k0)
        ),
    );
    let out = String::from_utf8_lossy(&out);
    for cmd in ["SET", "SET", "DEL", "FLUSH", "NSNEW", "NSSET"] {
        assert!(
            out.contains(&format!("{cmd} refused: this 0-db endpoint is read-only")),
            "{cmd}: {out}"
        );
    }
    assert_eq!(chunk_files(&chunks), files);
    assert_eq!(
        on_disk(k0),
        store.get(k0).await.expect("GET").expect("still there")
    );
    assert!(!store.exists(b"newkey").await.expect("EXISTS"));
    let refused = store
        .set(b"another", Bytes::from_static(b"value"))
        .await
        .expect_err("the endpoint is read-only");
    assert!(refused.to_string().contains("read-only"), "{refused}");
    assert_eq!(chunk_files(&chunks), files);

    // zflist extract by URL: the flist's backend is the endpoint, and it reads through it.
    let metrics = || async {
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let before = metric(&metrics().await, "hub_zdb_commands_total");
    let out = Command::new(zflist_bin())
        .args(["extract", &format!("{base}/alice/app.flist")])
        .arg(cwd.join("out"))
        .output()
        .expect("zflist extract");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(cwd.join("out/bin/big")).expect("big"), big);
    assert_eq!(
        std::fs::read(cwd.join("out/etc/motd")).expect("motd"),
        b"hello from the hub\n"
    );
    let text = metrics().await;
    assert!(
        metric(&text, "hub_zdb_commands_total") > before,
        "extract did not read through the 0-db endpoint:\n{text}"
    );
    assert!(metric(&text, "hub_zdb_writes_refused_total") >= 7, "{text}");
    drop(server);
}

/// Puts `n` values of `size` bytes into the hub's `dir://` store; their keys.
async fn big_values(cwd: &Path, n: u64, size: usize) -> Vec<Vec<u8>> {
    let store = flist_store::open(&format!("dir://{}", cwd.join("hub-data/chunks").display()))
        .await
        .expect("dir store");
    let mut keys = Vec::new();
    for i in 0..n {
        let v = noise(100 + i, size);
        let k = flist_format::codec::blake2b::<16>(&v).to_vec();
        store.set(&k, Bytes::from(v)).await.expect("set");
        keys.push(k);
    }
    keys
}

#[tokio::test]
async fn hostile_and_careless_clients_hurt_only_themselves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let (port, zport) = (free_port(), free_port());
    let server = serve(cwd, port, &["--zdb-listen", &format!("127.0.0.1:{zport}")]).await;
    let pid = server.child.id();
    const SIZE: usize = 512 * 1024;
    let keys = big_values(cwd, 32, SIZE).await;
    let value = |i: usize| noise(100 + i as u64, SIZE);

    // A healthy client, connected first and checked last.
    let mut healthy = Resp::connect(zport);
    assert_eq!(
        healthy.call(&[b"SELECT", b"default"]),
        RedisReply::Status("OK".into())
    );
    let rss_start = vm_rss_kb(pid);

    // Pipelining: 600 mixed commands in one write, answered in order.
    let mut p = Resp::connect(zport);
    let mut script = Vec::new();
    for i in 0..120 {
        script.extend(encode(&[b"GET", &keys[i % keys.len()]]));
        script.extend(encode(&[b"EXISTS", &keys[(i + 1) % keys.len()]]));
        script.extend(encode(&[b"GET", b"missing-key"]));
        script.extend(encode(&[b"MGET", &keys[i % 7], b"missing", &keys[i % 5]]));
        script.extend(b"PING\r\n");
    }
    p.send(&script);
    for i in 0..120 {
        assert_eq!(p.reply(), RedisReply::Bulk(Some(value(i % keys.len()))));
        assert_eq!(p.reply(), RedisReply::Int(1));
        assert_eq!(p.reply(), RedisReply::Bulk(None));
        assert_eq!(
            p.reply(),
            RedisReply::Array(vec![
                RedisReply::Bulk(Some(value(i % 7))),
                RedisReply::Bulk(None),
                RedisReply::Bulk(Some(value(i % 5))),
            ])
        );
        assert_eq!(p.reply(), RedisReply::Status("PONG".into()));
    }

    // 1,000 idle connections (half of them after a SELECT): others are served as before,
    // and they cost the hub little memory.
    let mut idle = Vec::new();
    for i in 0..1000 {
        let mut c = Resp::connect(zport);
        if i % 2 == 0 {
            assert_eq!(
                c.call(&[b"SELECT", b"default"]),
                RedisReply::Status("OK".into())
            );
        }
        idle.push(c);
    }
    let mut fresh = Resp::connect(zport);
    assert_eq!(
        fresh.call(&[b"GET", &keys[3]]),
        RedisReply::Bulk(Some(value(3)))
    );
    let rss_idle = vm_rss_kb(pid);
    assert!(
        rss_idle < rss_start + 64 * 1024,
        "1,000 idle connections grew the hub from {rss_start} KiB to {rss_idle} KiB"
    );
    assert_eq!(idle[1].call(&[b"PING"]), RedisReply::Status("PONG".into()));

    // A slow reader: 2,000 pipelined GETs of 512 KiB (1 GiB of replies), never read. The
    // hub stops reading its requests once the socket is full; its memory stays flat and
    // others are served meanwhile.
    let mut slow = Resp::connect(zport);
    let mut flood = Vec::new();
    for i in 0..2000 {
        flood.extend(encode(&[b"GET", &keys[i % keys.len()]]));
    }
    let w = slow.w.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let mut w = w;
        let _ = w.write_all(&flood); // blocks once both socket buffers are full
    });
    std::thread::sleep(Duration::from_secs(2));
    for (i, k) in keys.iter().enumerate().take(8) {
        assert_eq!(fresh.call(&[b"GET", k]), RedisReply::Bulk(Some(value(i))));
    }
    let rss_slow = vm_rss_kb(pid);
    assert!(
        rss_slow < rss_start + 128 * 1024,
        "a client not reading 1 GiB of replies grew the hub from {rss_start} KiB to {rss_slow} KiB"
    );

    // Malformed frames: an error, then that connection (only) is closed.
    let mut huge = Resp::connect(zport);
    huge.send(b"*2\r\n$3\r\nGET\r\n$99999999999\r\n");
    assert!(error_text(&huge.reply()).contains("Protocol error"));
    assert!(huge.closed());
    let mut over = Resp::connect(zport);
    over.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8388609\r\n");
    assert!(error_text(&over.reply()).contains("too large"));
    assert!(over.closed());
    let mut typed = Resp::connect(zport);
    typed.send(b"*2\r\n$3\r\nGET\r\n:5\r\n");
    assert!(error_text(&typed.reply()).contains("Protocol error"));
    assert!(typed.closed());
    let mut unterminated = Resp::connect(zport);
    unterminated.send(b"*2\r\n$3\r\nGET\r\n$2\r\nabXY");
    assert!(error_text(&unterminated.reply()).contains("CRLF"));
    assert!(unterminated.closed());
    // Truncated: no answer yet, the connection waits for the rest (until the request
    // timeout); nobody else notices.
    let mut truncated = Resp::connect(zport);
    truncated.send(b"*2\r\n$3\r\nGET\r\n$16\r\nabc");
    // An 8 MiB SET value (0-db's largest) is read and dropped, never kept: the command is
    // refused by name and the connection goes on.
    let mut setter = Resp::connect(zport);
    let eight = vec![b'x'; 8 << 20];
    assert!(error_text(&setter.call(&[b"SET", b"k", &eight])).contains("SET refused"));
    assert_eq!(
        setter.call(&[b"GET", &keys[0]]),
        RedisReply::Bulk(Some(value(0)))
    );

    // Everyone else is fine.
    assert_eq!(
        healthy.call(&[b"MGET", &keys[1], &keys[2]]),
        RedisReply::Array(vec![
            RedisReply::Bulk(Some(value(1))),
            RedisReply::Bulk(Some(value(2))),
        ])
    );
    assert_eq!(idle[998].call(&[b"EXISTS", &keys[9]]), RedisReply::Int(1));
    let rss_end = vm_rss_kb(pid);
    eprintln!(
        "hub RSS: start {rss_start} KiB, 1,000 idle connections {rss_idle} KiB, slow reader \
         {rss_slow} KiB, end {rss_end} KiB"
    );
    assert!(
        rss_end < rss_start + 128 * 1024,
        "the hub grew from {rss_start} KiB to {rss_end} KiB"
    );
    truncated.send(b"defghijklmnop\r\n");
    assert_eq!(truncated.reply(), RedisReply::Bulk(None));

    // The slow reader, reading at last, gets its replies in order.
    for i in 0..50 {
        assert_eq!(slow.reply(), RedisReply::Bulk(Some(value(i % keys.len()))));
    }
    let _ = slow.w.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metric(&metrics, "hub_zdb_protocol_errors_total") >= 4,
        "{metrics}"
    );
    assert!(metric(&metrics, "hub_zdb_connections") >= 1000, "{metrics}");
    drop(idle);
    drop(server);
}
