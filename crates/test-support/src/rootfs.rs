//! A real Debian root file system for tests and benchmarks: `debootstrap --variant=minbase`
//! from the host's apt mirror, made once and cached (the mount tests and `cargo xtask bench
//! convert` share it).

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
