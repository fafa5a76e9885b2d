//! `zflist mount` / `umount` for real: `/dev/fuse`, a `hub-server` process over HTTP, a real
//! `redis-server` as the hub's chunk store, `chroot`, `diff -r`, a kernel overlayfs.
//! Runs as root (as CI does).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use test_support::RedisServer;

mod common;
use common::*;

/// A Debian root file system: `debootstrap --variant=minbase` from the host's apt mirror,
/// made once and kept under the target directory; a generated tree when that fails.
fn debian_rootfs(scratch: &Path) -> PathBuf {
    let cached = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debootstrap-minbase");
    test_support::rootfs::debootstrap_minbase(&cached).unwrap_or_else(|| {
        eprintln!("no debootstrap tree: using a generated tree");
        generated_rootfs(&scratch.join("rootfs"))
    })
}

/// A usr-merged tree with the host's `/bin/sh`, `cat`, `ls`, `wc` and their libraries,
/// `/etc/debian_version`, 300 more commands and 64 MiB of incompressible data.
fn generated_rootfs(root: &Path) -> PathBuf {
    for d in [
        "usr/bin",
        "usr/lib",
        "usr/lib64",
        "etc",
        "tmp",
        "usr/share/data",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    let mut libs = Vec::new();
    for bin in ["/bin/dash", "/bin/cat", "/bin/ls", "/usr/bin/wc"] {
        let name = Path::new(bin).file_name().unwrap();
        fs::copy(bin, root.join("usr/bin").join(name)).unwrap();
        let out = run(Command::new("ldd").arg(bin), "ldd");
        for l in out.lines() {
            if let Some(path) = l.split_whitespace().find(|w| w.starts_with('/')) {
                libs.push(path.to_string());
            }
        }
    }
    std::os::unix::fs::symlink("dash", root.join("usr/bin/sh")).unwrap();
    for lib in libs {
        let dest = root.join(lib.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&lib, &dest).unwrap();
    }
    fs::copy("/etc/debian_version", root.join("etc/debian_version"))
        .or_else(|_| fs::write(root.join("etc/debian_version"), "12.0\n").map(|_| 0))
        .unwrap();
    for i in 0..300 {
        let f = root.join(format!("usr/bin/tool{i}"));
        fs::write(&f, format!("#!/bin/sh\necho tool {i}\n")).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut blob = vec![0u8; 64 << 20];
    for w in blob.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        w.copy_from_slice(&state.to_le_bytes()[..w.len()]);
    }
    fs::write(root.join("usr/share/data/blob"), blob).unwrap();
    root.to_path_buf()
}

fn tree_size(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}

fn chroot_answer(root: &Path) -> String {
    run(
        Command::new("chroot")
            .arg(root)
            .args([
                "/bin/sh",
                "-c",
                "cat /etc/debian_version; ls /usr/bin | wc -l",
            ])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C"),
        "chroot",
    )
}

#[test]
fn debian_rootfs_from_the_hub_by_url() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let src = debian_rootfs(s);
    let image = tree_size(&src);
    let expected = format!(
        "{}{}\n",
        fs::read_to_string(src.join("etc/debian_version")).unwrap(),
        fs::read_dir(src.join("usr/bin")).unwrap().count()
    );

    let mut redis = RedisServer::start();
    let hub = start_hub(&redis.url(), &redis.zdb_url());
    let flist = s.join("debian.flist");
    run(
        zflist().args(["pack", p(&src), "-o", p(&flist), "--store", &redis.url()]),
        "pack",
    );
    let answer = hub.upload_flist(&flist);
    assert_eq!(answer["status"], "success", "{answer}");
    let url = format!("{}/alice/debian.flist", hub.base);
    let flist_bytes = fs::read(&flist).unwrap();

    // Cold: from the hub's URL, chunks from the hub's store (the flist's backend).
    let cache = s.join("cache");
    let mp = s.join("mnt");
    let m = MountProc::start(&url, &mp, &["--cache", p(&cache)]);
    assert_eq!(chroot_answer(&mp), expected);
    let stats = m.stop();
    let fetched = stats["fetched_bytes"].as_u64().unwrap();
    assert!(fetched > 0, "{stats}");
    assert!(
        fetched * 10 < image,
        "fetched {fetched} bytes of a {image}-byte image: {stats}"
    );

    // Every byte equal to the source (another, empty cache).
    let m = MountProc::start(&url, &mp, &["--cache", p(&s.join("cache2"))]);
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference", "--exclude=dev", p(&mp), p(&src)])
        .output()
        .unwrap();
    assert!(
        diff.status.success() && diff.stdout.is_empty(),
        "diff -r: {}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );

    // GNU diff calls two distinct device nodes different even when type, numbers and mode
    // are equal (two identical `mknod`s on one file system differ for it): compare /dev by
    // stat instead.
    if src.join("dev").is_dir() {
        use std::os::unix::fs::MetadataExt;
        for e in fs::read_dir(src.join("dev")).unwrap().flatten() {
            let a = fs::symlink_metadata(e.path()).unwrap();
            let b = fs::symlink_metadata(mp.join("dev").join(e.file_name())).unwrap();
            assert_eq!(
                (a.file_type(), a.rdev(), a.mode(), a.uid(), a.gid()),
                (b.file_type(), b.rdev(), b.mode(), b.uid(), b.gid()),
                "{:?}",
                e.path()
            );
        }
    }

    // A writable root: overlayfs with the mount as its lower layer.
    let (upper, work, merged) = (s.join("upper"), s.join("work"), s.join("merged"));
    for d in [&upper, &work, &merged] {
        fs::create_dir_all(d).unwrap();
    }
    run(
        Command::new("mount").args([
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!(
                "lowerdir={},upperdir={},workdir={}",
                p(&mp),
                p(&upper),
                p(&work)
            ),
            p(&merged),
        ]),
        "mount overlay",
    );
    let wrote = Command::new("chroot")
        .arg(&merged)
        .args([
            "/bin/sh",
            "-c",
            "echo written > /etc/new-file && echo 99 > /etc/debian_version && rm /usr/bin/wc && cat /etc/new-file /etc/debian_version",
        ])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let _ = Command::new("umount").arg(&merged).status();
    assert_eq!(ok(&wrote, "writing through the overlay"), "written\n99\n");
    assert_eq!(
        fs::read_to_string(upper.join("etc/new-file")).unwrap(),
        "written\n"
    );
    assert_eq!(
        fs::read(mp.join("etc/debian_version")).unwrap(),
        fs::read(src.join("etc/debian_version")).unwrap(),
        "the lower layer is unchanged"
    );
    assert!(!mp.join("etc/new-file").exists());
    assert!(mp.join("usr/bin/wc").exists());
    drop(m);
    assert_eq!(
        fs::read(&flist).unwrap(),
        flist_bytes,
        "the flist never changes"
    );
    // The store stops: the same command runs from the cache; metadata needs no store.
    redis.stop();
    let m = MountProc::start(&url, &mp, &["--cache", p(&cache)]);
    assert_eq!(chroot_answer(&mp), expected);
    let listing = run(Command::new("find").arg(&mp), "find");
    assert!(listing.lines().count() > 100);
    let stats = m.stop();
    assert_eq!(stats["fetched_chunks"], 0, "{stats}");
    assert!(stats["disk_hits"].as_u64().unwrap() > 0, "{stats}");

    // Writes to the mount itself are refused.
    let m = MountProc::start(p(&flist), &mp, &["--store", &redis.url(), "--no-cache"]);
    let err = fs::write(mp.join("etc/debian_version"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected: {err}");
    let _ = m.stop();
}

/// A small flist with a 3 MiB file, packed into a `dir://` store.
fn small_flist(s: &Path) -> (PathBuf, String, Vec<u8>) {
    let src = s.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/hostname"), "orig\n").unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i: u32| (i * 7 % 251) as u8)
        .collect();
    fs::write(src.join("big"), &big).unwrap();
    let store = format!("dir://{}", p(&s.join("store")));
    let flist = s.join("small.flist");
    run(
        zflist().args(["pack", p(&src), "-o", p(&flist), "--store", &store]),
        "pack",
    );
    (flist, store, big)
}

#[test]
fn overrides_signals_and_stale_mounts() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let (flist, store, big) = small_flist(s);
    let keys = s.join("keys");
    fs::write(&keys, "ssh-ed25519 AAAA user@host\n").unwrap();
    let mp = s.join("mnt");
    let m = MountProc::start(
        p(&flist),
        &mp,
        &[
            "--store",
            &store,
            "--no-cache",
            "--override",
            "/etc/hostname=vm1",
            "--override",
            &format!("/root/.ssh/authorized_keys=@{}", p(&keys)),
        ],
    );
    assert_eq!(fs::read_to_string(mp.join("etc/hostname")).unwrap(), "vm1");
    assert_eq!(
        fs::read_to_string(mp.join("root/.ssh/authorized_keys")).unwrap(),
        "ssh-ed25519 AAAA user@host\n"
    );
    // A read in the middle fetches only the chunks it covers (plus read-ahead, none here:
    // the read is not sequential).
    let mut f = fs::File::open(mp.join("big")).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(1024 * 1024 + 5)).unwrap();
    let mut buf = vec![0u8; 100];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(buf, big[1024 * 1024 + 5..1024 * 1024 + 105]);
    drop(f);
    let stats = m.stop();
    assert_eq!(stats["ended"], "signal");
    assert_eq!(stats["fetched_chunks"], 1, "{stats}");

    // SIGINT unmounts cleanly too.
    let m = MountProc::start(p(&flist), &mp, &["--store", &store, "--no-cache"]);
    m.signal("-INT");
    let mut m = m;
    let out = m.child.take().unwrap().wait_with_output().unwrap();
    ok(&out, "mount after SIGINT");
    assert!(!is_mounted(&mp));

    // `zflist umount` of a live mount: the mount process ends by itself.
    let mut m = MountProc::start(p(&flist), &mp, &["--store", &store, "--no-cache"]);
    let out = run(zflist().args(["umount", p(&mp)]), "umount");
    assert!(out.contains("unmounted"), "{out}");
    let out = m.child.take().unwrap().wait_with_output().unwrap();
    let env: Value = serde_json::from_str(ok(&out, "mount").trim()).unwrap();
    assert_eq!(env["response"]["ended"], "unmounted");

    // A killed mount process leaves a stale mount: reported, refused, cleared.
    let m = MountProc::start(p(&flist), &mp, &["--store", &store, "--no-cache"]);
    m.signal("-KILL");
    let mut m = m;
    let _ = m.child.take().unwrap().wait();
    assert!(is_mounted(&mp));
    let err = fs::metadata(&mp).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(107), "ENOTCONN: {err}");
    let again = zflist()
        .args(["mount", p(&flist), p(&mp), "--store", &store])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let msg = String::from_utf8_lossy(&again.stderr);
    assert!(
        msg.contains("stale mount") && msg.contains("zflist umount"),
        "{msg}"
    );
    let out = run(zflist().args(["umount", p(&mp)]), "umount stale");
    assert!(
        out.contains("stale mount (its process is gone): cleared"),
        "{out}"
    );
    assert!(!is_mounted(&mp));
    let out = zflist().args(["umount", p(&mp)]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a mount point"));
}

#[test]
fn concurrent_mounts_share_one_cache() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let (flist, store, big) = small_flist(s);
    let cache = s.join("cache");
    let (a, b) = (s.join("a"), s.join("b"));
    let ma = MountProc::start(p(&flist), &a, &["--store", &store, "--cache", p(&cache)]);
    let mb = MountProc::start(p(&flist), &b, &["--store", &store, "--cache", p(&cache)]);
    let readers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|mp| std::thread::spawn(move || fs::read(mp.join("big")).unwrap()))
        .collect();
    for r in readers {
        assert!(r.join().unwrap() == big);
    }
    let (sa, sb) = (ma.stop(), mb.stop());
    let chunks = big.len().div_ceil(512 * 1024) as u64;
    let fetched = sa["fetched_chunks"].as_u64().unwrap() + sb["fetched_chunks"].as_u64().unwrap();
    assert!(fetched >= chunks, "{sa} {sb}");
    // One file per chunk, no temporary leftovers.
    let mut files = 0;
    for d in fs::read_dir(cache.join("chunks")).unwrap().flatten() {
        files += fs::read_dir(d.path()).unwrap().count() as u64;
    }
    assert_eq!(files, chunks);
    assert_eq!(fs::read_dir(cache.join("tmp")).unwrap().count(), 0);
    // A bounded cache keeps under its bound.
    let small = s.join("small-cache");
    let m = MountProc::start(
        p(&flist),
        &a,
        &[
            "--store",
            &store,
            "--cache",
            p(&small),
            "--cache-size",
            "1M",
        ],
    );
    assert!(fs::read(a.join("big")).unwrap() == big);
    let _ = m.stop();
    let mut used = 0;
    for d in fs::read_dir(small.join("chunks")).unwrap().flatten() {
        for f in fs::read_dir(d.path()).unwrap().flatten() {
            used += f.metadata().unwrap().len();
        }
    }
    assert!(
        used <= 1 << 20,
        "cache holds {used} bytes over its 1 MiB bound"
    );
}

#[test]
fn record_access_stores_the_prefetch_list_in_the_flist() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let (flist, store, big) = small_flist(s);
    let before = flist_format::Flist::open(&flist).unwrap();
    assert_eq!(before.metadata.prefetch().unwrap(), None);
    let mp = s.join("mnt");
    let m = MountProc::start(
        p(&flist),
        &mp,
        &["--store", &store, "--no-cache", "--record-access"],
    );
    // listing and stat are not recorded; opening is, once, in order
    assert_eq!(fs::read_dir(&mp).unwrap().count(), 2);
    assert_eq!(fs::metadata(mp.join("etc/hostname")).unwrap().len(), 5);
    assert_eq!(fs::read(mp.join("big")).unwrap(), big);
    assert_eq!(
        fs::read_to_string(mp.join("etc/hostname")).unwrap(),
        "orig\n"
    );
    assert_eq!(fs::read(mp.join("big")).unwrap().len(), big.len());
    let stats = m.stop();
    assert_eq!(stats["recorded_files"], 2, "{stats}");

    // Kept in the flist's metadata: one more key, nothing else changes.
    let after = flist_format::Flist::open(&flist).unwrap();
    assert_eq!(
        after.metadata.prefetch().unwrap().unwrap(),
        ["/big", "/etc/hostname"]
    );
    assert_eq!(after.find_response(), before.find_response());
    assert_eq!(after.metadata.len(), before.metadata.len() + 1);

    // A later mount (--no-prefetch or not) serves the same bytes.
    let m = MountProc::start(p(&flist), &mp, &["--store", &store, "--no-cache"]);
    assert_eq!(fs::read(mp.join("big")).unwrap(), big);
    m.stop();

    // Recording needs a file to write to.
    let out = zflist()
        .args([
            "mount",
            "http://127.0.0.1:9/x.flist",
            p(&mp),
            "--record-access",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("--record-access") && msg.contains("download"),
        "{msg}"
    );
}

/// A mount whose chunk store stops answering fails reads with EIO and logs the first failure
/// (once, not once per read), then logs the recovery when the store answers again (issue 27
/// item 12).
#[test]
fn a_store_outage_is_logged_once_and_its_end_too() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let src = s.join("src");
    fs::create_dir_all(&src).unwrap();
    let body = |i: usize| format!("file {i}\n").repeat(2000);
    for i in 0..5 {
        fs::write(src.join(format!("f{i}")), body(i)).unwrap();
    }
    let mut redis = RedisServer::start();
    let store = redis.url();
    let pack = |out: &str| {
        run(
            zflist().args(["pack", p(&src), "-o", p(&s.join(out)), "--store", &store]),
            "pack",
        )
    };
    pack("a.flist");
    let mp = s.join("mnt");
    let mut m = MountProc::start(
        p(&s.join("a.flist")),
        &mp,
        &["--store", &store, "--no-cache"],
    );
    assert_eq!(fs::read_to_string(mp.join("f0")).unwrap(), body(0));

    // The store goes away: reads fail with EIO.
    redis.stop();
    for i in 1..4 {
        let err = fs::read(mp.join(format!("f{i}"))).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5), "EIO expected: {err}");
    }
    // It comes back (empty: persistence is off; the same pack puts the chunks back).
    redis.restart();
    pack("b.flist");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let back = loop {
        match fs::read_to_string(mp.join("f4")) {
            Ok(t) => break t,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => panic!("reads never worked again: {e}"),
        }
    };
    assert_eq!(back, body(4));

    m.signal("-TERM");
    let out = m.child.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reads fail with EIO until the chunk store answers"))
        .collect();
    assert_eq!(failures.len(), 1, "the first failure, once: {log}");
    assert!(
        failures[0].contains("ERROR") && failures[0].contains("reading f1: store redis://"),
        "names the file and the store's error: {log}"
    );
    // Plain lines (stderr is no terminal here), without the FUSE library's chatter.
    assert!(
        !log.contains('\u{1b}') && !log.contains("Not Implemented"),
        "{log}"
    );
    let recovered: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the chunk store answers again"))
        .collect();
    assert_eq!(recovered.len(), 1, "the recovery, once: {log}");
    assert!(recovered[0].contains("failed while it did not"), "{log}");
    let at = |needle: &str| log.find(needle).unwrap();
    assert!(at("reads fail with EIO") < at("answers again"), "{log}");
}
