//! `check-vm` with a real Linux kernel, signed flists from a real `hub-server`, and derived
//! flists (CLI and hub), all through the real binaries; mounts through `/dev/fuse` (root).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::*;

fn fails_with(out: &Output, function: &str, needle: &str) {
    assert!(!out.status.success(), "expected {function} to fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("zflist: {function}: ")) && err.contains(needle),
        "expected {needle:?} in: {err}"
    );
}

/// A real kernel: the host's `/boot/vmlinuz-*`, else Debian's cloud kernel package
/// downloaded with apt and unpacked with `dpkg-deb` (kept under the target directory).
fn real_kernel() -> PathBuf {
    if let Ok(dir) = fs::read_dir("/boot") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("vmlinuz-") && e.path().is_file() {
                return e.path();
            }
        }
    }
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("linux-image");
    let find = |dir: &Path| -> Option<PathBuf> {
        fs::read_dir(dir.join("boot"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
    };
    if let Some(k) = find(&cache.join("root")) {
        return k;
    }
    let depends = |pkg: &str| -> Option<String> {
        let out = Command::new("apt-cache")
            .args(["depends", pkg])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("Depends: "))
            .map(|s| s.trim().to_string())
            .filter(|s| s.starts_with("linux-image-"))
    };
    let meta = "linux-image-cloud-amd64";
    let pkg = depends(meta).or_else(|| {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        depends(meta)
    });
    let pkg = pkg.expect("no kernel package known to apt (linux-image-cloud-amd64)");
    let dl = cache.join("download");
    fs::create_dir_all(&dl).unwrap();
    run(
        Command::new("apt-get")
            .args(["download", "-qq", &pkg])
            .current_dir(&dl),
        "apt-get download",
    );
    let deb = fs::read_dir(&dl)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap();
    let partial = cache.join("root.partial");
    let _ = fs::remove_dir_all(&partial);
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial),
        "dpkg-deb -x",
    );
    fs::rename(&partial, cache.join("root")).unwrap();
    find(&cache.join("root")).unwrap()
}

/// A newc cpio archive, gzip-compressed by `gzip`: `/init` and `members` (path, content).
fn initrd_with(dir: &Path, name: &str, members: &[(&str, &[u8])]) -> PathBuf {
    fn entry(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
        let namesize = name.len() + 1;
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            namesize as u32,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut cpio = Vec::new();
    entry(&mut cpio, 1, 0o100755, "init", b"#!/bin/sh\nexec /bin/sh\n");
    for (i, (path, data)) in members.iter().enumerate() {
        entry(&mut cpio, i as u32 + 2, 0o100644, path, data);
    }
    entry(&mut cpio, 0, 0, "TRAILER!!!", b"");
    let raw = dir.join(name);
    fs::write(&raw, cpio).unwrap();
    run(Command::new("gzip").args(["-kf"]).arg(&raw), "gzip");
    dir.join(format!("{name}.gz"))
}

const MODULES: &str = "usr/lib/modules/6.1.0-1-amd64";

/// An initramfs that can mount a root over virtio-9p: `9p` and `9pnet` as module files,
/// `9pnet_virtio` and `virtio_pci` built into the kernel (its `modules.builtin`).
fn initrd(dir: &Path) -> PathBuf {
    initrd_with(
        dir,
        "initrd.cpio",
        &[
            (&format!("{MODULES}/kernel/fs/9p/9p.ko"), &[1; 3000]),
            (&format!("{MODULES}/kernel/net/9p/9pnet.ko.xz"), &[2; 100]),
            (
                &format!("{MODULES}/modules.builtin"),
                b"kernel/net/9p/9pnet_virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\n",
            ),
        ],
    )
}

fn vm_tree(root: &Path, kernel: &Path, initrd: Option<&Path>, yaml: &str) {
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::copy(kernel, root.join("boot/vmlinuz")).unwrap();
    if let Some(i) = initrd {
        fs::copy(i, root.join("boot/initrd.img")).unwrap();
    }
    fs::write(root.join("boot/boot.yaml"), yaml).unwrap();
    std::os::unix::fs::symlink("vmlinuz", root.join("boot/kernel-link")).unwrap();
}

fn pack(src: &Path, out: &Path, store: &str) {
    run(
        zflist().args(["pack", p(src), "-o", p(out), "--store", store]),
        "pack",
    );
}

#[test]
fn check_vm_with_a_real_kernel() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let kernel = real_kernel();
    let initrd = initrd(s);
    let store = format!("dir://{}", p(&s.join("store")));
    let good = "kernel: /boot/kernel-link\ninitrd: /boot/initrd.img\ncmdline: console=ttyS0 root=/dev/vda\n";
    vm_tree(&s.join("good"), &kernel, Some(&initrd), good);
    pack(&s.join("good"), &s.join("good.flist"), &store);
    let out = zflist()
        .args([
            "--json",
            "check-vm",
            p(&s.join("good.flist")),
            "--store",
            &store,
        ])
        .output()
        .unwrap();
    let env: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(env["success"], true, "{env}");
    let r = &env["response"];
    assert_eq!(r["ok"], true);
    assert_eq!(r["kernel_format"], "bzImage", "{r}");
    assert_eq!(r["initrd_format"], "gzip-compressed cpio (newc)");
    assert_eq!(r["cmdline"], "console=ttyS0 root=/dev/vda");
    // The same VM as an rfs .fl: its routes lead check-vm to the blocks (no --store).
    let fl = s.join("good.fl");
    run(
        zflist().args(["pack", p(&s.join("good")), "-o", p(&fl), "--store", &store]),
        "pack .fl",
    );
    let out = zflist()
        .args(["--json", "check-vm", p(&fl)])
        .output()
        .unwrap();
    let env: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(env["success"], true, "{env}");
    assert_eq!(env["response"]["kernel_format"], "bzImage");
    assert_eq!(env["response"]["ok"], true);

    // Modules, but not those a root over virtio-9p needs (only 9pnet).
    let no_9p = initrd_with(
        s,
        "no9p.cpio",
        &[
            (&format!("{MODULES}/kernel/fs/ext4/ext4.ko"), &[3; 100]),
            (&format!("{MODULES}/kernel/net/9p/9pnet.ko"), &[3; 100]),
        ],
    );
    let cases: [(&str, Option<&Path>, &str, &str); 7] = [
        (
            "missing-initrd",
            None,
            "kernel: /boot/vmlinuz\ninitrd: /boot/initrd.img\n",
            "initrd /boot/initrd.img: /boot/initrd.img does not exist",
        ),
        (
            "relative",
            Some(&initrd),
            "kernel: boot/vmlinuz\ninitrd: /boot/initrd.img\n",
            "kernel \"boot/vmlinuz\" is a relative path: it must be absolute",
        ),
        (
            "dir-kernel",
            Some(&initrd),
            "kernel: /boot\ninitrd: /boot/initrd.img\n",
            "kernel /boot is a directory, not a regular file",
        ),
        (
            "broken-yaml",
            Some(&initrd),
            "kernel: [/boot/vmlinuz\ninitrd: /boot/initrd.img\n",
            "/boot/boot.yaml is not valid YAML",
        ),
        (
            "not-a-kernel",
            Some(&initrd),
            "kernel: /boot/boot.yaml\ninitrd: /boot/initrd.img\n",
            "kernel /boot/boot.yaml: not a Linux kernel image",
        ),
        (
            "kernel-as-initrd",
            Some(&initrd),
            "kernel: /boot/vmlinuz\ninitrd: /boot/vmlinuz\n",
            "initrd /boot/vmlinuz: not an initramfs",
        ),
        (
            "no-9p",
            Some(&no_9p),
            "kernel: /boot/vmlinuz\ninitrd: /boot/initrd.img\n",
            "initrd /boot/initrd.img lacks the 9p modules (9p, 9pnet_virtio, virtio_pci): the VM's root file system is shared over virtio-9p",
        ),
    ];
    for (name, initrd, yaml, message) in cases {
        let dir = s.join(name);
        vm_tree(&dir, &kernel, initrd, yaml);
        let flist = s.join(format!("{name}.flist"));
        pack(&dir, &flist, &store);
        let out = zflist()
            .args(["check-vm", p(&flist), "--store", &store])
            .output()
            .unwrap();
        fails_with(&out, "check-vm", message);
    }
    // The initramfs lacks them, but the kernel has them built in (the flist's modules.builtin).
    let dir = s.join("builtin");
    vm_tree(
        &dir,
        &kernel,
        Some(&no_9p),
        "kernel: /boot/vmlinuz\ninitrd: /boot/initrd.img\n",
    );
    fs::create_dir_all(dir.join("lib/modules/6.1.0-1-amd64")).unwrap();
    fs::write(
        dir.join("lib/modules/6.1.0-1-amd64/modules.builtin"),
        "kernel/fs/9p/9p.ko\nkernel/net/9p/9pnet_virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\n",
    )
    .unwrap();
    pack(&dir, &s.join("builtin.flist"), &store);
    let out = zflist()
        .args(["check-vm", p(&s.join("builtin.flist")), "--store", &store])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a VM flist at all.
    fs::create_dir_all(s.join("plain/etc")).unwrap();
    fs::write(s.join("plain/etc/hostname"), "x").unwrap();
    pack(&s.join("plain"), &s.join("plain.flist"), &store);
    let out = zflist()
        .args(["check-vm", p(&s.join("plain.flist")), "--store", &store])
        .output()
        .unwrap();
    fails_with(
        &out,
        "check-vm",
        "/boot/boot.yaml is missing: this is not a VM flist",
    );
}

#[test]
fn signed_flists_from_the_hub() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let store = format!("dir://{}", p(&s.join("store")));
    fs::create_dir_all(s.join("src/etc")).unwrap();
    fs::write(s.join("src/etc/motd"), "signed content\n").unwrap();
    let flist = s.join("app.flist");
    pack(&s.join("src"), &flist, &store);
    let hub = start_hub(&store, "none");
    assert_eq!(hub.upload_flist(&flist)["status"], "success");
    let url = format!("{}/alice/app.flist", hub.base);

    // The hub publishes its key and signs what it serves.
    let (code, body) = hub.get("/api/signing-key");
    assert_eq!(code, 200);
    let key = serde_json::from_slice::<Value>(&body).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, light) = hub.get("/api/flist/alice/app.flist/light");
    assert_eq!(code, 200);
    let light: Value = serde_json::from_slice(&light).unwrap();
    assert_eq!(light["signed"], true, "{light}");
    assert_eq!(light["vm"]["is_vm"], false, "{light}");
    run(
        zflist().args(["verify", &url, "--signature", "--hub", &hub.base]),
        "verify by URL with the hub's key",
    );

    // Local copies: untampered passes; a changed byte or a new name fails.
    let (_, bytes) = hub.get("/alice/app.flist");
    let (_, sig) = hub.get("/alice/app.flist.sig");
    let dir = s.join("dl");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("app.flist"), &bytes).unwrap();
    fs::write(dir.join("app.flist.sig"), &sig).unwrap();
    let keyfile = s.join("hub.pub");
    fs::write(&keyfile, format!("{key}\n")).unwrap();
    let good = dir.join("app.flist");
    let out = run(
        zflist().args(["verify", p(&good), "--signature", "--key", p(&keyfile)]),
        "verify",
    );
    assert!(out.contains("signature OK"), "{out}");

    let tampered = s.join("tampered");
    fs::create_dir_all(&tampered).unwrap();
    let mut changed = bytes.clone();
    let i = changed.len() / 2;
    changed[i] ^= 0x01;
    fs::write(tampered.join("app.flist"), &changed).unwrap();
    fs::write(tampered.join("app.flist.sig"), &sig).unwrap();
    let bad = tampered.join("app.flist");
    let out = zflist()
        .args(["verify", p(&bad), "--signature", "--key", &key])
        .output()
        .unwrap();
    fails_with(&out, "verify", "its bytes changed");

    let renamed = dir.join("other.flist");
    fs::write(&renamed, &bytes).unwrap();
    fs::write(dir.join("other.flist.sig"), &sig).unwrap();
    let out = zflist()
        .args(["verify", p(&renamed), "--signature", "--key", &key])
        .output()
        .unwrap();
    fails_with(
        &out,
        "verify",
        "but the signature is for \"alice/app.flist\"",
    );

    // mount --require-signature: the untampered flist mounts, the others are refused.
    let mp = s.join("mnt");
    let m = MountProc::start(
        p(&good),
        &mp,
        &[
            "--store",
            &store,
            "--no-cache",
            "--require-signature",
            p(&keyfile),
        ],
    );
    assert_eq!(
        fs::read_to_string(mp.join("etc/motd")).unwrap(),
        "signed content\n"
    );
    let _ = m.stop();
    for f in [&bad, &renamed] {
        fs::create_dir_all(&mp).unwrap();
        let out = zflist()
            .args([
                "mount",
                p(f),
                p(&mp),
                "--store",
                &store,
                "--require-signature",
                &key,
            ])
            .output()
            .unwrap();
        fails_with(&out, "mount", "signature of");
        assert!(!is_mounted(&mp));
    }
    let (code, _) = hub.get("/alice/nope.flist.sig");
    assert_eq!(code, 404);

    // Authors sign their own flists.
    let author_key = s.join("author.key");
    let out = run(
        zflist().args([
            "--json",
            "sign",
            p(&flist),
            "--key",
            p(&author_key),
            "--name",
            "alice/app.flist",
        ]),
        "sign",
    );
    let env: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(env["response"]["created_key"], true);
    let public = env["response"]["key"].as_str().unwrap().to_string();
    run(
        zflist().args([
            "verify",
            p(&flist),
            "--signature",
            "--key",
            &public,
            "--name",
            "alice/app.flist",
        ]),
        "verify the author's signature",
    );
    let out = zflist()
        .args(["verify", p(&flist), "--signature", "--key", &key])
        .output()
        .unwrap();
    fails_with(&out, "verify", "not by the trusted key");

    // The hub keeps an author signature sent with upload-flist: the flist is stored byte for
    // byte (this hub records no backend, so the author packs with --no-backend), the hub
    // serves the author's document next to its own, and `verify --signature` of the hub URL
    // passes with the author's key as with the hub's.
    let upload = |file: &Path, sig: &Path| -> (u16, Value) {
        let out = run(
            Command::new("curl").args([
                "-sS",
                "-w",
                "\n%{http_code}",
                "-H",
                &format!("Authorization: bearer {}", hub.token),
                "-F",
                &format!("file=@{}", p(file)),
                "-F",
                &format!("signature=@{}", p(sig)),
                &format!("{}/api/flist/me/upload-flist", hub.base),
            ]),
            "upload-flist with a signature",
        );
        let (json, code) = out.trim_end().rsplit_once('\n').unwrap();
        (code.parse().unwrap(), serde_json::from_str(json).unwrap())
    };
    let authored_dir = s.join("authored");
    fs::create_dir_all(&authored_dir).unwrap();
    let authored = authored_dir.join("authored.flist");
    let authored_sig = authored_dir.join("authored.flist.sig");
    run(
        zflist().args([
            "pack",
            p(&s.join("src")),
            "-o",
            p(&authored),
            "--store",
            &store,
            "--no-backend",
        ]),
        "pack --no-backend",
    );
    let sign_as = |file: &Path, name: &str| {
        run(
            zflist().args(["sign", p(file), "--key", p(&author_key), "--name", name]),
            "sign",
        );
    };
    sign_as(&authored, "alice/authored.flist");
    let (code, answer) = upload(&authored, &authored_sig);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        answer["payload"]["author_signature"]["key"], public,
        "{answer}"
    );
    let (_, served) = hub.get("/alice/authored.flist");
    assert_eq!(served, fs::read(&authored).unwrap(), "stored byte for byte");
    let (code, doc) = hub.get("/alice/authored.flist.author.sig");
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    let local: Value = serde_json::from_slice(&fs::read(&authored_sig).unwrap()).unwrap();
    assert_eq!(doc, local);
    let (_, light) = hub.get("/api/flist/alice/authored.flist/light");
    let light: Value = serde_json::from_slice(&light).unwrap();
    assert_eq!(light["author_signature"]["key"], public, "{light}");
    assert_eq!(light["signed"], true, "{light}");
    let authored_url = format!("{}/alice/authored.flist", hub.base);
    let out = run(
        zflist().args(["verify", &authored_url, "--signature", "--key", &public]),
        "verify the hub's copy with the author's key",
    );
    assert!(out.contains("signature OK"), "{out}");
    run(
        zflist().args(["verify", &authored_url, "--signature", "--hub", &hub.base]),
        "the hub's own signature still holds",
    );
    // An entry without an author signature does not pass with the author's key.
    let (code, _) = hub.get("/alice/app.flist.author.sig");
    assert_eq!(code, 404);
    let out = zflist()
        .args(["verify", &url, "--signature", "--key", &public])
        .output()
        .unwrap();
    fails_with(&out, "verify", "not by the trusted key");

    // Refused with a clear reason, nothing stored: a signature of other bytes, of another
    // name, or of an flist whose backend the hub would have to rewrite.
    let refused = |file: &Path, sig: &Path, needle: &str| {
        let (code, answer) = upload(file, sig);
        assert_eq!(code, 400, "{answer}");
        let message = answer.to_string();
        assert!(message.contains(needle), "{needle:?} not in {message}");
        let entry = file.file_name().unwrap().to_str().unwrap();
        let (code, _) = hub.get(&format!("/alice/{entry}"));
        assert_eq!(code, 404, "{entry} was stored");
    };
    let other = s.join("other");
    fs::create_dir_all(&other).unwrap();
    let tampered_copy = other.join("changed.flist");
    let mut bytes = fs::read(&authored).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    fs::write(&tampered_copy, &bytes).unwrap();
    fs::copy(&authored_sig, other.join("changed.flist.sig")).unwrap();
    refused(
        &tampered_copy,
        &other.join("changed.flist.sig"),
        "its bytes changed",
    );
    let renamed_copy = other.join("renamed.flist");
    fs::copy(&authored, &renamed_copy).unwrap();
    fs::copy(&authored_sig, other.join("renamed.flist.sig")).unwrap();
    refused(
        &renamed_copy,
        &other.join("renamed.flist.sig"),
        "alice/renamed.flist",
    );
    let with_backend = other.join("backend.flist");
    run(
        zflist().args([
            "pack",
            p(&s.join("src")),
            "-o",
            p(&with_backend),
            "--store",
            &store,
            "--public-backend",
            "zdb://hub.example.org:9900/public",
        ]),
        "pack --public-backend",
    );
    sign_as(&with_backend, "alice/backend.flist");
    refused(
        &with_backend,
        &other.join("backend.flist.sig"),
        "--no-backend",
    );
}

#[test]
fn derive_shares_the_base_chunks() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let store_dir = s.join("store");
    let store = format!("dir://{}", p(&store_dir));
    // 200 MiB in four files, every 512 KiB chunk distinct.
    let src = s.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::create_dir_all(src.join("data")).unwrap();
    fs::write(src.join("etc/motd"), "base motd\n").unwrap();
    let chunk = 512 * 1024;
    for f in 0..4u32 {
        let mut data = vec![0u8; 100 * chunk];
        for (i, c) in data.chunks_mut(chunk).enumerate() {
            let tag = (f * 1000 + i as u32).to_le_bytes();
            for (j, b) in c.iter_mut().enumerate() {
                *b = tag[j % 4] ^ (j / 4096) as u8;
            }
        }
        fs::write(src.join(format!("data/part{f}")), data).unwrap();
    }
    let base = s.join("base.flist");
    pack(&src, &base, &store);
    let count = || -> usize {
        fs::read_dir(&store_dir)
            .unwrap()
            .flatten()
            .filter(|d| d.path().is_dir())
            .map(|d| fs::read_dir(d.path()).unwrap().count())
            .sum()
    };
    let before = count();
    assert!(before >= 400, "{before}");
    let key = s.join("key");
    fs::write(&key, vec![b'k'; 1024]).unwrap();
    let derived = s.join("derived.flist");
    let out = run(
        zflist().args([
            "--json",
            "derive",
            p(&base),
            "-o",
            p(&derived),
            "--set",
            &format!("/root/.ssh/authorized_keys=@{}", p(&key)),
            "--set",
            "/etc/motd=derived motd",
            "--store",
            &store,
        ]),
        "derive",
    );
    let env: Value = serde_json::from_str(out.trim()).unwrap();
    // The 1 KiB key and the short motd: two new chunks, nothing else written.
    assert_eq!(env["response"]["chunks_written"], 2, "{env}");
    assert_eq!(count(), before + 2);
    // One 1 KiB override alone writes exactly one chunk.
    let one = s.join("one.flist");
    fs::write(&key, vec![b'j'; 1024]).unwrap();
    let out = run(
        zflist().args([
            "--json",
            "derive",
            p(&base),
            "-o",
            p(&one),
            "--set",
            &format!("/root/.ssh/authorized_keys=@{}", p(&key)),
            "--store",
            &store,
        ]),
        "derive one",
    );
    let env: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(env["response"]["chunks_written"], 1, "{env}");
    assert_eq!(count(), before + 3);

    let mp = s.join("mnt");
    let m = MountProc::start(p(&one), &mp, &["--store", &store, "--no-cache"]);
    assert_eq!(
        fs::read(mp.join("root/.ssh/authorized_keys")).unwrap(),
        vec![b'j'; 1024]
    );
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference", "--exclude=root"])
        .arg(&mp)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    let _ = m.stop();

    // Bad derivations name the problem and leave no output.
    let out = zflist()
        .args([
            "derive",
            p(&base),
            "-o",
            p(&s.join("x.flist")),
            "--rm",
            "/nope",
            "--store",
            &store,
        ])
        .output()
        .unwrap();
    fails_with(&out, "derive", "/nope: no such entry in the base flist");
    assert!(!s.join("x.flist").exists());

    // On the hub: POST /api/flist/me/derive/<target>.
    let hub = start_hub(&store, "none");
    let small_src = s.join("small");
    fs::create_dir_all(small_src.join("etc")).unwrap();
    fs::write(small_src.join("etc/motd"), "official\n").unwrap();
    fs::write(small_src.join("etc/hostname"), "base\n").unwrap();
    let small = s.join("official.flist");
    pack(&small_src, &small, &store);
    assert_eq!(hub.upload_flist(&small)["status"], "success");
    let (code, answer) = hub.post_json(
        "/api/flist/me/derive/custom.flist",
        r#"{"base":"alice/official.flist","files":{"/root/.ssh/authorized_keys":"ssh-ed25519 AAAA me"},"remove":["/etc/motd"]}"#,
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["payload"]["chunks_written"], 1, "{answer}");
    let m = MountProc::start(
        &format!("{}/alice/custom.flist", hub.base),
        &mp,
        &["--store", &store, "--no-cache"],
    );
    assert_eq!(
        fs::read_to_string(mp.join("root/.ssh/authorized_keys")).unwrap(),
        "ssh-ed25519 AAAA me"
    );
    assert!(!mp.join("etc/motd").exists());
    assert_eq!(
        fs::read_to_string(mp.join("etc/hostname")).unwrap(),
        "base\n"
    );
    let _ = m.stop();
    for (body, needle) in [
        (
            r#"{"base":"alice/missing.flist","files":{"/a":"b"}}"#,
            "not found",
        ),
        (
            r#"{"base":"alice/official.flist","remove":["/nope"]}"#,
            "no such entry",
        ),
        (
            r#"{"base":"alice/official.flist","files":{"etc/x":"b"}}"#,
            "must be absolute",
        ),
        (r#"{"base":"alice/official.flist"}"#, "nothing to change"),
    ] {
        let (code, answer) = hub.post_json("/api/flist/me/derive/bad.flist", body);
        assert!(code == 400 || code == 404, "{code} {answer}");
        assert!(answer.to_string().contains(needle), "{needle}: {answer}");
    }
}
