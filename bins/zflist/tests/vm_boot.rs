//! `zflist vm boot` for real: a Debian root file system with `linux-image-amd64` and an
//! initramfs carrying the 9p modules (debootstrap + apt, cached under the target
//! directory), packed with `zflist pack`, given `/boot/boot.yaml` and an init script with the
//! session commands, booted by QEMU (KVM when the hardware offers it, software emulation
//! otherwise) with the lazily mounted flist as its root over virtio-9p. Runs as root.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use sha2::{Digest, Sha256};

mod common;
use common::*;

/// The VM's init: a marker, the overridden configuration file, a write, then power off.
const INIT: &str = r#"#!/bin/sh
echo "ZFLIST-VM-MARKER kernel=$(uname -r) pid=$$"
echo "config=$(cat /etc/zflist-vm-test.conf)"
echo written > /root/written-by-the-vm
echo "wrote=$(cat /root/written-by-the-vm)"
echo o > /proc/sysrq-trigger
sleep 60
"#;

/// Bound of one boot, far above what software emulation on a loaded machine takes.
const TIMEOUT_SECS: &str = "600";

fn bootable_tree() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let minbase = test_support::rootfs::debootstrap_minbase(&tmp.join("debootstrap-minbase"))
        .expect("debootstrap of a Debian minbase tree (the host's apt mirror) is needed");
    test_support::rootfs::bootable_debian(&minbase, &tmp.join("debian-bootable"))
        .expect("installing linux-image-amd64 into the Debian tree is needed")
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The entries of a newc cpio archive, as byte ranges of `data` (header to padded end),
/// with their names; stops at the trailer (which is included).
fn cpio_entries(data: &[u8]) -> Vec<(String, std::ops::Range<usize>)> {
    let hex = |b: &[u8]| usize::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap();
    let pad = |n: usize| n.div_ceil(4) * 4;
    let mut out = Vec::new();
    let mut i = 0;
    while i + 110 <= data.len() && &data[i..i + 6] == b"070701" {
        let size = hex(&data[i + 54..i + 62]);
        let namesize = hex(&data[i + 94..i + 102]);
        let name = String::from_utf8_lossy(&data[i + 110..i + 110 + namesize - 1]).into_owned();
        let end = pad(pad(i + 110 + namesize) + size);
        out.push((name.clone(), i..end));
        i = end;
        if name == "TRAILER!!!" {
            break;
        }
    }
    out
}

/// Debian's initramfs of `tree` without its 9p modules (what `update-initramfs` makes
/// when they are not listed), gzip-compressed.
fn initramfs_without_9p(tree: &Path, out: &Path) -> PathBuf {
    let raw = Command::new("gzip")
        .arg("-dc")
        .arg(tree.join("initrd.img"))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "the bootable tree's initramfs is gzip-compressed"
    );
    let data = raw.stdout;
    let mut kept = Vec::new();
    let mut dropped = 0;
    for (name, range) in cpio_entries(&data) {
        if name.contains("/9p") {
            dropped += 1;
        } else {
            kept.extend_from_slice(&data[range]);
        }
    }
    assert!(dropped >= 3, "the initramfs had 9p modules to drop");
    let cpio = out.with_extension("cpio");
    fs::write(&cpio, kept).unwrap();
    run(Command::new("gzip").arg("-kf").arg(&cpio), "gzip");
    out.with_extension("cpio.gz")
}

#[test]
fn boot_a_debian_flist_under_qemu() {
    let started = Instant::now();
    let tree = bootable_tree();
    eprintln!(
        "bootable tree ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    // A chunk store kept between runs, like a real one (content-addressed: a second pack
    // finds every chunk present and writes nothing).
    let store_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-boot-store");
    let store = format!("dir://{}", p(&store_dir));
    let tmp = s.join("tmp");
    fs::create_dir_all(&tmp).unwrap();

    // The publisher's steps: pack the root file system, add the boot description and an
    // init script in a session, commit.
    let base = s.join("debian.flist");
    let t = Instant::now();
    run(
        zflist().args(["pack", p(&tree), "-o", p(&base), "--store", &store, "-q"]),
        "pack",
    );
    eprintln!("packed in {:.1} s", t.elapsed().as_secs_f64());
    fs::write(s.join("init"), INIT).unwrap();
    fs::write(
        s.join("boot.yaml"),
        "kernel: /vmlinuz\ninitrd: /initrd.img\ncmdline: \"root=/dev/vda init=/usr/sbin/zflist-vm-test-init\"\n",
    )
    .unwrap();
    let mnt = s.join("session");
    let session = |args: &[&str]| {
        run(
            zflist()
                .args(["--mnt", p(&mnt), "--store", &store])
                .args(args),
            &format!("zflist {}", args[0]),
        )
    };
    session(&["open", p(&base)]);
    session(&["put", p(&s.join("init")), "/usr/sbin/zflist-vm-test-init"]);
    session(&["chmod", "755", "/usr/sbin/zflist-vm-test-init"]);
    session(&["put", p(&s.join("boot.yaml")), "/boot/boot.yaml"]);
    let vm = s.join("debian-vm.flist");
    session(&["commit", p(&vm)]);
    let vm_sha = sha256(&vm);

    let check = zflist()
        .args(["check-vm", p(&vm), "--store", &store])
        .output()
        .unwrap();
    let (out, err) = text(&check);
    assert!(check.status.success(), "{out}{err}");
    assert!(out.contains("bootable VM image"), "{out}");

    // Boot with an overridden configuration file.
    let config = s.join("vm-test.conf");
    fs::write(&config, "overridden-for-this-boot\n").unwrap();
    let t = Instant::now();
    let boot = zflist()
        .args([
            "vm",
            "boot",
            p(&vm),
            "--store",
            &store,
            "--cache",
            p(&s.join("cache")),
            "--config",
            &format!("/etc/zflist-vm-test.conf={}", p(&config)),
            "--timeout",
            TIMEOUT_SECS,
        ])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let (out, err) = text(&boot);
    eprintln!("booted in {:.1} s:\n{err}", t.elapsed().as_secs_f64());
    assert!(boot.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    for line in ["config=overridden-for-this-boot", "wrote=written"] {
        assert!(
            out.lines().any(|l| l.trim_end() == line),
            "{line:?} missing:\n{out}"
        );
    }
    let marker = out
        .lines()
        .find(|l| l.starts_with("ZFLIST-VM-MARKER kernel="))
        .unwrap_or_else(|| panic!("no marker in:\n{out}"));
    assert!(marker.contains("-amd64 pid=1"), "{marker}");
    let summary = out
        .lines()
        .find(|l| l.starts_with("zflist: VM powered off after "))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"));
    assert!(
        summary.contains("fetched ") && summary.contains("chunks"),
        "{summary}"
    );
    // the disk root the flist's cmdline names is replaced by the 9p root, and said so
    assert!(err.contains("ignoring root=/dev/vda"), "{err}");
    // what the VM wrote is gone; the flist is unchanged
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "a layer was left");
    assert_eq!(sha256(&vm), vm_sha);
    let listing = stdout_ok(&zflist().args(["inspect", p(&vm)]).output().unwrap());
    assert!(!listing.contains("written-by-the-vm"));

    // A Debian initramfs without the 9p modules: check-vm and vm boot refuse it with the
    // same message, before starting anything.
    let no9p = initramfs_without_9p(&tree, &s.join("initrd-no9p"));
    let bad = s.join("no9p.flist");
    run(
        zflist().args([
            "derive",
            p(&vm),
            "-o",
            p(&bad),
            "--store",
            &store,
            "--set",
            &format!("/boot/initrd-no9p.img=@{}", p(&no9p)),
            "--set",
            "/boot/boot.yaml=kernel: /vmlinuz\ninitrd: /boot/initrd-no9p.img\n",
        ]),
        "derive",
    );
    let check = zflist()
        .args(["check-vm", p(&bad), "--store", &store])
        .output()
        .unwrap();
    let boot = zflist()
        .args(["vm", "boot", p(&bad), "--store", &store, "--timeout", "60"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let (_, check_err) = text(&check);
    let (boot_out, boot_err) = text(&boot);
    assert!(!check.status.success() && !boot.status.success());
    let check_msg = check_err
        .strip_prefix("zflist: check-vm: ")
        .unwrap_or_else(|| panic!("{check_err}"));
    let boot_msg = boot_err
        .strip_prefix("zflist: vm boot: ")
        .unwrap_or_else(|| panic!("{boot_err}"));
    assert_eq!(check_msg, boot_msg);
    assert!(
        boot_msg.contains(
            "initrd /boot/initrd-no9p.img lacks the 9p modules (9p, 9pnet, 9pnet_virtio)"
        ),
        "{boot_msg}"
    );
    assert_eq!(boot_out, "", "nothing booted");
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "a layer was left");
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
}
