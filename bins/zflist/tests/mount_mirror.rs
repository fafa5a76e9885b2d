//! Issue 16 from the client's side: a primary and a `--mirror-chunks` mirror (two real
//! `hub-server` processes, each with its own data directory and `dir://` store). After the
//! primary is stopped entirely, `zflist extract` and `zflist mount` (real FUSE) of a mirrored
//! flist through the mirror give the source tree; a client given a dead hub and the mirror
//! (`--hub dead --hub mirror`: a closed port, a hub answering 503, a hub that never answers
//! connects) extracts without error, losing at most the connect timeout.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = out.stdout;
    let cut = text.iter().rposition(|&b| b == b'\n').unwrap();
    let code = std::str::from_utf8(&text[cut + 1..])
        .unwrap()
        .parse()
        .unwrap_or(0);
    (code, text[..cut].to_vec())
}

fn get_json(url: &str) -> Value {
    let (code, body) = curl(&[url]);
    assert_eq!(code, 200, "{url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn serve(data: &Path, port: u16, extra: &[&str]) -> Server {
    let child = Command::new(hub_server_bin())
        .args(["serve", "--data-dir", p(data)])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = Server(child);
    let t = Instant::now();
    while curl(&[&format!("http://127.0.0.1:{port}/api/repositories")]).0 != 200 {
        assert!(t.elapsed() < Duration::from_secs(30), "hub did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// A tree of several kinds of entries, with a 3 MiB file of distinct chunks.
fn source_tree(root: &Path) -> PathBuf {
    let src = root.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::create_dir_all(src.join("usr/share")).unwrap();
    fs::write(src.join("etc/hostname"), "mirrored\n").unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut blob = vec![0u8; 3 << 20];
    for w in blob.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        w.copy_from_slice(&state.to_le_bytes()[..w.len()]);
    }
    fs::write(src.join("usr/share/blob"), blob).unwrap();
    std::os::unix::fs::symlink("../etc/hostname", src.join("usr/name")).unwrap();
    src
}

fn same_tree(a: &Path, b: &Path) {
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference", p(a), p(b)])
        .output()
        .unwrap();
    assert!(
        diff.status.success() && diff.stdout.is_empty(),
        "diff -r {} {}: {}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
}

/// A "hub" that answers every request with 503 (a failing primary), counting requests.
fn failing_hub() -> (u16, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (port, hits)
}

/// A "hub" whose accept queue is full: connecting to it hangs (the kernel drops the SYNs),
/// like a host that is down. Keep the returned streams alive.
fn hanging_hub() -> (u16, socket2::Socket, std::net::TcpStream) {
    use socket2::{Domain, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&SockAddr::from(addr)).unwrap();
    s.listen(0).unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    // The one queued connection the backlog allows; later connects wait.
    let filler = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    (port, s, filler)
}

#[test]
fn mirror_with_chunks_serves_extract_and_mount_after_the_primary_stops() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let src = source_tree(s);
    let archive = s.join("app.tar.gz");
    run(
        Command::new("tar").args(["-czf", p(&archive), "-C", p(&src), "."]),
        "tar",
    );

    let (pport, mport) = (
        test_support::redis::free_port(),
        test_support::redis::free_port(),
    );
    let (pbase, mbase) = (
        format!("http://127.0.0.1:{pport}"),
        format!("http://127.0.0.1:{mport}"),
    );
    let pdata = s.join("primary");
    let mut primary = serve(&pdata, pport, &[]);
    let token = test_support::hub::issue_token(&hub_server_bin(), &pdata, "alice", &[]);
    let auth = format!("Authorization: bearer {token}");
    let (code, body) = curl(&[
        "-H",
        &auth,
        "-F",
        &format!("file=@{}", p(&archive)),
        &format!("{pbase}/api/flist/me/upload"),
    ]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, _) = curl(&[
        "-H",
        &auth,
        &format!("{pbase}/api/flist/me/app.flist/link/latest.flist"),
    ]);
    assert_eq!(code, 200);
    let primary_md = get_json(&format!("{pbase}/api/flist/alice/app.flist/metadata"));
    assert_eq!(primary_md["backend"]["url"], format!("{pbase}/chunks"));
    // The primary's own file: its backend names the primary's /chunks/.
    let original = s.join("original.flist");
    run(
        Command::new("curl").args([
            "-sSf",
            "-o",
            p(&original),
            &format!("{pbase}/alice/app.flist"),
        ]),
        "download",
    );

    let mdata = s.join("mirror");
    let _mirror = serve(
        &mdata,
        mport,
        &[
            "--mirror-of",
            &pbase,
            "--sync-interval",
            "1s",
            "--mirror-chunks",
        ],
    );
    let t = Instant::now();
    loop {
        let st = get_json(&format!("{mbase}/api/mirror"));
        if st["syncs"].as_u64().unwrap_or(0) >= 1 {
            assert_eq!(st["chunks"], true, "{st}");
            assert!(st["chunks_copied"].as_u64().unwrap() >= 6, "{st}");
            assert_eq!(st["pending_chunks"], 0, "{st}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no sync: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The mirror serves the flist stamped with its own backend, the primary's as an
    // alternative; the listing's md5 is the one of the bytes it serves.
    let md = get_json(&format!("{mbase}/api/flist/alice/app.flist/metadata"));
    assert_eq!(md["backend"]["url"], format!("{mbase}/chunks"), "{md}");
    assert!(
        md["backend-mirrors"]
            .to_string()
            .contains(&format!("{pbase}/chunks")),
        "{md}"
    );
    let (_, served) = curl(&[&format!("{mbase}/alice/app.flist")]);
    let (_, md5) = curl(&[&format!("{mbase}/alice/app.flist.md5")]);
    {
        use md5::Digest;
        let have = hex::encode(md5::Md5::digest(&served));
        assert!(String::from_utf8_lossy(&md5).starts_with(&have));
    }

    // The primary goes away entirely.
    let _ = primary.0.kill();
    primary.0.wait().unwrap();
    assert_ne!(curl(&[&format!("{pbase}/api/repositories")]).0, 200);

    // extract through the mirror (the entry and its link).
    for name in ["app.flist", "latest.flist"] {
        let out = s.join(format!("out-{name}"));
        run(
            zflist().args(["extract", &format!("{mbase}/alice/{name}"), p(&out)]),
            "extract through the mirror",
        );
        same_tree(&out, &src);
    }

    // mount through the mirror (no cache: every read goes to the mirror's /chunks/).
    let mp = s.join("mnt");
    let m = MountProc::start(&format!("{mbase}/alice/app.flist"), &mp, &["--no-cache"]);
    same_tree(&mp, &src);
    let stats = m.stop();
    assert!(stats["fetched_chunks"].as_u64().unwrap() >= 6, "{stats}");

    // A client told about a dead hub first: the primary's URL (port now closed), then the
    // mirror. The flist comes from the mirror, losing at most the connect timeout.
    let out = s.join("out-failover");
    let t = Instant::now();
    let text = run(
        zflist().args([
            "--json",
            "extract",
            "--hub",
            &pbase,
            "--hub",
            &mbase,
            "--connect-timeout",
            "3",
            &format!("{pbase}/alice/app.flist"),
            p(&out),
        ]),
        "extract with failover",
    );
    let lost = t.elapsed();
    same_tree(&out, &src);
    assert!(lost < Duration::from_secs(3 + 2), "took {lost:?}: {text}");
    let inspected: Value = serde_json::from_str(
        run(
            zflist().args([
                "--json",
                "inspect",
                &format!("{pbase}/alice/app.flist"),
                "--hub",
                &format!("{pbase},{mbase}"),
            ]),
            "inspect with failover",
        )
        .trim(),
    )
    .unwrap();
    assert_eq!(
        inspected["response"]["file"],
        format!("{mbase}/alice/app.flist"),
        "the dead hub was skipped for the mirror: {inspected}"
    );

    // A hub that does not answer connects at all: the client waits at most the connect
    // timeout (1 s here) for it, then extracts from the mirror.
    let (hang, _listener, _filler) = hanging_hub();
    let hang = format!("http://127.0.0.1:{hang}");
    let out = s.join("out-hanging");
    let t = Instant::now();
    run(
        zflist().args([
            "extract",
            "--hub",
            &hang,
            "--hub",
            &mbase,
            "--connect-timeout",
            "1",
            &format!("{hang}/alice/app.flist"),
            p(&out),
        ]),
        "extract past a hub that does not answer",
    );
    let lost = t.elapsed();
    same_tree(&out, &src);
    assert!(
        lost >= Duration::from_millis(900),
        "the hanging hub was not tried ({lost:?})"
    );
    assert!(lost < Duration::from_secs(1 + 2), "took {lost:?}");

    // A hub answering 503 is tried, then skipped (ZFLIST_HUB as a comma list).
    let (bad, hits) = failing_hub();
    let bad = format!("http://127.0.0.1:{bad}");
    let out = s.join("out-503");
    run(
        zflist().env("ZFLIST_HUB", format!("{bad},{mbase}")).args([
            "extract",
            &format!("{bad}/alice/app.flist"),
            p(&out),
        ]),
        "extract past a failing hub",
    );
    same_tree(&out, &src);
    assert!(
        hits.load(Ordering::SeqCst) >= 1,
        "the failing hub was not tried"
    );

    // The primary's own file names the dead primary's /chunks/: its chunks come from the
    // mirror's /chunks/ given with --hub (without it the extraction fails).
    let out = s.join("out-original");
    let fail = zflist()
        .args(["extract", p(&original), p(&out)])
        .output()
        .unwrap();
    assert!(!fail.status.success());
    let _ = fs::remove_dir_all(s.join(".out-original.zflist-partial"));
    run(
        zflist().args([
            "extract",
            "--hub",
            &pbase,
            "--hub",
            &mbase,
            p(&original),
            p(&out),
        ]),
        "extract the primary's file through the mirror's chunks",
    );
    same_tree(&out, &src);

    // Several plain --store URLs are copies of one store, read in order: the dead primary's
    // /chunks/ first, then the mirror's.
    let out = s.join("out-stores");
    run(
        zflist().args([
            "extract",
            p(&original),
            p(&out),
            "--store",
            &format!("{pbase}/chunks"),
            "--store",
            &format!("{mbase}/chunks"),
        ]),
        "extract with two stores",
    );
    same_tree(&out, &src);
}
