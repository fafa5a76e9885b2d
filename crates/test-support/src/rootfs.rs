//! Real Debian trees for tests and benchmarks, made once and cached under the target
//! directory (each behind an exclusive file lock, so concurrent test binaries wait for the
//! first to finish instead of building twice, and complete only after an atomic rename):
//!
//! - [`debootstrap_minbase`]: `debootstrap --variant=minbase` from the host's apt mirror
//!   (the mount tests, `zflist run`'s, `cargo xtask bench convert` and `bench mount`);
//! - [`bootable_debian`]: that tree plus `linux-image-amd64` and an initramfs carrying the
//!   modules a root file system over virtio-9p needs (the `zflist vm boot` test and bench);
//! - [`busybox_static`]: Debian's statically linked busybox (small container flists).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The suite named in the host's `/etc/os-release` and the Debian mirror of its apt
/// sources, for `debootstrap`.
pub fn apt_mirror() -> Option<(String, String)> {
    let os = fs::read_to_string("/etc/os-release").ok()?;
    let suite = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))?
        .trim_matches('"')
        .to_string();
    let mut texts = Vec::new();
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            texts.push(fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    for t in texts {
        for l in t.lines() {
            let l = l.trim();
            let uri = if let Some(u) = l.strip_prefix("URIs:") {
                u.split_whitespace().next()
            } else if let Some(rest) = l.strip_prefix("deb ") {
                rest.split_whitespace().find(|w| w.starts_with("http"))
            } else {
                None
            };
            if let Some(u) = uri {
                if u.ends_with("/debian") {
                    return Some((suite, u.to_string()));
                }
            }
        }
    }
    None
}

/// The Debian minbase root file system cached at `cached` (made with `debootstrap` into a
/// sibling `.partial` directory, renamed when complete), or `None` when `debootstrap` or the
/// apt mirror is unavailable or the bootstrap fails.
pub fn debootstrap_minbase(cached: &Path) -> Option<PathBuf> {
    let _lock = lock(cached)?;
    if cached.join("etc/debian_version").is_file() {
        return Some(cached.to_path_buf());
    }
    let runs = Command::new("debootstrap")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let (suite, mirror) = apt_mirror()?;
    if !runs {
        return None;
    }
    let partial = cached.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    if let Some(parent) = partial.parent() {
        fs::create_dir_all(parent).ok()?;
    }
    let status = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(&suite)
        .arg(&partial)
        .arg(&mirror)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if matches!(status, Ok(s) if s.success()) && fs::rename(&partial, cached).is_ok() {
        return Some(cached.to_path_buf());
    }
    eprintln!("debootstrap {suite} {mirror} failed");
    let _ = fs::remove_dir_all(&partial);
    None
}

/// An exclusive lock on `<cached>.lock`, held until dropped (waits for another holder).
fn lock(cached: &Path) -> Option<nix::fcntl::Flock<fs::File>> {
    let path = cached.with_extension("lock");
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).ok()?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ok()?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok()
}

/// Runs `cmd`, true when it succeeded; its output goes to `log` (kept for a failure report).
fn logged(cmd: &mut Command, log: &Path) -> bool {
    let out = fs::File::create(log).ok();
    let err = out.as_ref().and_then(|f| f.try_clone().ok());
    match (out, err) {
        (Some(o), Some(e)) => cmd.stdout(o).stderr(e),
        _ => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
    };
    matches!(cmd.status(), Ok(s) if s.success())
}

/// The kernel modules a root file system over virtio-9p needs in the initramfs.
pub const NINEP_INITRAMFS_MODULES: &str = "9p\n9pnet\n9pnet_virtio\nvirtio_pci\n";

/// A bootable Debian root file system cached at `cached`: a copy of the minbase tree at
/// `minbase` ([`debootstrap_minbase`]) where `apt-get` (in a `chroot`, with `/proc` mounted
/// in a private mount namespace) installed `linux-image-amd64`, with `MODULES=list` and the
/// 9p modules in `/etc/initramfs-tools/modules`, so the initramfs is small and can mount a
/// root shared over virtio-9p. `None` when a step fails (its log is printed).
pub fn bootable_debian(minbase: &Path, cached: &Path) -> Option<PathBuf> {
    let _lock = lock(cached)?;
    let ready = |p: &Path| p.join("vmlinuz").exists() && p.join("initrd.img").exists();
    if ready(cached) {
        return Some(cached.to_path_buf());
    }
    let partial = cached.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    let log = cached.with_extension("log");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(minbase)
        .arg(&partial)
        .status()
        .is_ok_and(|s| s.success());
    if !copied {
        eprintln!("copying {} failed", minbase.display());
        return None;
    }
    let conf = partial.join("etc/initramfs-tools");
    fs::create_dir_all(conf.join("conf.d")).ok()?;
    fs::write(conf.join("modules"), NINEP_INITRAMFS_MODULES).ok()?;
    fs::write(conf.join("conf.d/zflist-9p.conf"), "MODULES=list\n").ok()?;
    let script = format!(
        "set -e; mount -t proc proc '{root}/proc'; \
         chroot '{root}' sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-image-amd64 initramfs-tools && apt-get clean'",
        root = partial.display()
    );
    let ok = logged(
        Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]),
        &log,
    );
    if ok && ready(&partial) && fs::rename(&partial, cached).is_ok() {
        return Some(cached.to_path_buf());
    }
    eprintln!(
        "installing linux-image-amd64 into a Debian tree failed: {}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    let _ = fs::remove_dir_all(&partial);
    None
}

/// Debian's statically linked busybox (package `busybox-static`, fetched with `apt-get
/// download` and unpacked with `dpkg-deb -x`), cached at `<cached>/bin/busybox`.
pub fn busybox_static(cached: &Path) -> Option<PathBuf> {
    let _lock = lock(cached)?;
    let bin = cached.join("bin/busybox");
    if bin.is_file() {
        return Some(bin);
    }
    let partial = cached.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(partial.join("deb")).ok()?;
    let log = cached.with_extension("log");
    let mut downloaded = logged(
        Command::new("apt-get")
            .args(["download", "-qq", "busybox-static"])
            .current_dir(partial.join("deb")),
        &log,
    );
    if !downloaded {
        // an empty package list (a fresh machine): update once, then try again
        let _ = logged(Command::new("apt-get").args(["update", "-qq"]), &log);
        downloaded = logged(
            Command::new("apt-get")
                .args(["download", "-qq", "busybox-static"])
                .current_dir(partial.join("deb")),
            &log,
        );
    }
    let deb = fs::read_dir(partial.join("deb"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"));
    let unpacked = match (&deb, downloaded) {
        (Some(deb), true) => logged(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb)
                .arg(partial.join("root")),
            &log,
        ),
        _ => false,
    };
    if unpacked && partial.join("root/bin/busybox").is_file() {
        let _ = fs::remove_dir_all(cached);
        if fs::rename(partial.join("root"), cached).is_ok() {
            let _ = fs::remove_dir_all(&partial);
            return Some(bin);
        }
    }
    eprintln!(
        "getting busybox-static failed: {}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    let _ = fs::remove_dir_all(&partial);
    None
}
