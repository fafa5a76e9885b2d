//! `zflist run` for real: a static busybox container flist made with `zflist pack` (the
//! hub's `/.startup.toml`) and with `zflist docker` from a `docker save` archive written by
//! `skopeo` (the image's entrypoint, command, environment and working directory), run
//! through `/dev/fuse`, overlayfs and new namespaces as root (as CI does).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::json;
use sha2::{Digest, Sha256};
use test_support::registry::{skopeo, Layer, LayerTar, OciLayout};

mod common;
use common::*;

/// The entrypoint: what a publisher wants to see of the container, then exit 3. It also
/// writes to the root and to a file of the flist (`/etc/motd`), which must all vanish; the
/// bytes it writes (`SCRIBBLE-32570`) are not in the script itself.
const ENTRY: &str = r#"#!/bin/sh
echo "pid=$$"
echo "hostname=$(hostname)"
echo "cwd=$(pwd)"
echo "args=$*"
env | sort | sed 's/^/env:/'
echo "SCRIBBLE-$((0x7f3a))" > /scribble
echo "SCRIBBLE-$((0x7f3a))" >> /etc/motd
ls /sys/class/net | sed 's/^/net:/'
exit 3
"#;

const APPLETS: [&str; 9] = [
    "sh", "echo", "env", "sort", "sed", "hostname", "pwd", "ls", "sleep",
];

fn busybox() -> PathBuf {
    let cached = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-static");
    test_support::rootfs::busybox_static(&cached)
        .expect("Debian's busybox-static (apt-get download) is needed for the container tests")
}

/// The container's tree on disk: busybox, its applets, the entrypoint, `/etc/motd`.
fn container_tree(root: &Path, startup_toml: Option<&str>) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("srv")).unwrap();
    fs::copy(busybox(), root.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    fs::write(root.join("entry.sh"), ENTRY).unwrap();
    fs::set_permissions(root.join("entry.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/motd"), "welcome\n").unwrap();
    fs::write(root.join("etc/not-a-program"), "data\n").unwrap();
    if let Some(t) = startup_toml {
        fs::write(root.join(".startup.toml"), t).unwrap();
    }
}

/// The same tree as one image layer.
fn container_layer() -> Vec<u8> {
    let mut t = LayerTar::new()
        .dir("bin", 0o755)
        .dir("etc", 0o755)
        .dir("srv", 0o755)
        .file("bin/busybox", &fs::read(busybox()).unwrap(), 0o755);
    for a in APPLETS {
        t = t.symlink(&format!("bin/{a}"), "busybox");
    }
    t.file("entry.sh", ENTRY.as_bytes(), 0o755)
        .file("etc/motd", b"welcome\n", 0o644)
        .finish()
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

/// Every file under `dir` (recursively).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

struct Env {
    store: String,
    store_dir: PathBuf,
    cache: PathBuf,
    tmp: PathBuf,
}

impl Env {
    fn new(s: &Path) -> Env {
        let tmp = s.join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        Env {
            store: format!("dir://{}", p(&s.join("store"))),
            store_dir: s.join("store"),
            cache: s.join("cache"),
            tmp,
        }
    }

    /// `zflist run FLIST ARGS...` with this store, chunk cache and TMPDIR.
    fn run(&self, flist: &Path, args: &[&str]) -> Output {
        self.command(flist, args).output().unwrap()
    }

    /// `zflist pack TREE -o OUT` into this store.
    fn pack(&self, tree: &Path, out: &Path) {
        run(
            zflist().args(["pack", p(tree), "-o", p(out), "--store", &self.store]),
            "pack",
        );
    }

    fn command(&self, flist: &Path, args: &[&str]) -> Command {
        let mut c = zflist();
        c.args([
            "run",
            p(flist),
            "--store",
            &self.store,
            "--cache",
            p(&self.cache),
        ])
        .args(args)
        .env("TMPDIR", &self.tmp);
        c
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `flist` and checks what a publisher expects to see; `recorded` is the recorded
/// variable (`RECORDED=...`) and `cwd` the recorded working directory.
fn check_run(env: &Env, flist: &Path, hostname: &str, recorded: &str, cwd: &str) {
    let before = sha256(flist);
    let chunks_before = files(&env.store_dir).len();
    let out = env.run(flist, &["-e", "EXTRA=given", "-e", "RECORDED2=overridden"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}\n{}", stderr(&out));
    for line in [
        "pid=1".to_string(),
        format!("hostname={hostname}"),
        format!("cwd={cwd}"),
        format!("env:RECORDED={recorded}"),
        "env:RECORDED2=overridden".into(),
        "env:EXTRA=given".into(),
        format!("env:HOSTNAME={hostname}"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing from:\n{text}"
        );
    }
    // the host's network by default: more than the loopback device
    assert!(
        text.lines().filter(|l| l.starts_with("net:")).count() > 1,
        "{text}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("exited with code 3") && err.contains("chunks"),
        "{err}"
    );
    // writes are gone: no layer left, the flist unchanged, nothing new in the store, and
    // the chunk cache holds none of the written bytes
    assert_eq!(
        fs::read_dir(&env.tmp).unwrap().count(),
        0,
        "a layer was left"
    );
    assert_eq!(sha256(flist), before);
    assert_eq!(files(&env.store_dir).len(), chunks_before);
    for f in files(&env.cache) {
        let data = fs::read(&f).unwrap();
        assert!(
            !data.windows(14).any(|w| w == b"SCRIBBLE-32570"),
            "written bytes in the cache: {}",
            f.display()
        );
    }
    let listing = stdout_ok(&zflist().args(["inspect", p(flist)]).output().unwrap());
    assert!(!listing.contains("scribble"), "{listing}");
    // a second run sees the flist as it was
    let again = env.run(
        flist,
        &["--entrypoint", "/bin/sh", "--", "-c", "cat /etc/motd; ls /"],
    );
    let t = stdout(&again);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        t.starts_with("welcome\n") && !t.contains("SCRIBBLE") && !t.contains("scribble"),
        "{t}"
    );
}

#[test]
fn run_containers_from_pack_and_from_a_docker_archive() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let env = Env::new(s);

    // 1. `zflist pack` of a tree carrying the hub's /.startup.toml
    let startup = "[startup.entry]\nname = \"core.system\"\n\n[startup.entry.args]\nname = \"/entry.sh\"\nargs = [\"from-startup\"]\ndir = \"/srv\"\nenv = { \"RECORDED\" = \"from-startup\", \"RECORDED2\" = \"recorded\" }\n";
    container_tree(&s.join("tree"), Some(startup));
    let packed = s.join("packed-app.flist");
    env.pack(&s.join("tree"), &packed);
    check_run(&env, &packed, "packed-app", "from-startup", "/srv");
    let args = env.run(&packed, &[]);
    assert!(
        stdout(&args).contains("args=from-startup"),
        "{}",
        stdout(&args)
    );

    // 2. `zflist docker` of a `docker save` archive: Entrypoint + Cmd, Env, WorkingDir
    let mut layout = OciLayout::new(&s.join("layout"));
    layout.add_image(
        Some("v1"),
        "linux",
        "amd64",
        json!({
            "Entrypoint": ["/entry.sh"],
            "Cmd": ["from-cmd"],
            "Env": ["PATH=/bin", "RECORDED=from-image", "RECORDED2=recorded"],
            "WorkingDir": "/srv",
        }),
        &[Layer::gzip(&container_layer())],
    );
    let archive = s.join("saved.tar");
    skopeo(&[
        "copy".to_string(),
        format!("oci:{}:v1", layout.path().display()),
        format!("docker-archive:{}:team/app:v1", archive.display()),
    ]);
    let docker = s.join("docker-app.flist");
    run(
        zflist().args([
            "docker",
            &format!("docker-archive:{}", p(&archive)),
            "-o",
            p(&docker),
            "--store",
            &env.store,
            "--no-backend",
            "--no-cache",
        ]),
        "docker",
    );
    check_run(&env, &docker, "docker-app", "from-image", "/srv");
    let args = env.run(&docker, &[]);
    assert!(stdout(&args).contains("args=from-cmd"), "{}", stdout(&args));

    // --keep leaves what the container wrote, and only that
    let kept = env.run(&docker, &["--keep"]);
    let err = stderr(&kept);
    let upper = err
        .lines()
        .find_map(|l| l.strip_prefix("zflist: run: kept the writable layer at "))
        .unwrap_or_else(|| panic!("{err}"));
    let upper = PathBuf::from(upper);
    assert_eq!(
        fs::read_to_string(upper.join("scribble")).unwrap(),
        "SCRIBBLE-32570\n"
    );
    assert!(fs::read_to_string(upper.join("etc/motd"))
        .unwrap()
        .ends_with("SCRIBBLE-32570\n"));
    assert!(!upper.join("bin").exists(), "only the writes are kept");
    fs::remove_dir_all(upper.parent().unwrap()).unwrap();

    // --net none: an empty network namespace
    let none = env.run(&docker, &["--net", "none"]);
    let text = stdout(&none);
    let nets: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("net:"))
        .map(|l| l.trim())
        .collect();
    assert_eq!(nets, ["lo"], "{text}");

    // the JSON envelope carries the exit code and the traffic
    let j = env.run(&docker, &["--json"]);
    assert_eq!(j.status.code(), Some(3));
    let last = stdout(&j).lines().last().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["response"]["exit_code"], 3, "{v}");
    assert_eq!(v["response"]["hostname"], "docker-app");
    assert!(v["response"]["flist_chunks"].as_u64().unwrap() >= 4, "{v}");
}

/// One line on stderr, starting with `zflist: run: ` and containing `needle`.
fn one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success());
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("zflist: run: ") && err.contains(needle),
        "expected {needle:?} in {err}"
    );
    assert_eq!(stdout(out), "");
}

#[test]
fn run_refuses_clearly() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let env = Env::new(s);
    container_tree(&s.join("tree"), None);
    let bare = s.join("bare.flist");
    env.pack(&s.join("tree"), &bare);
    one_line_error(
        &env.run(&bare, &[]),
        "the flist records no entrypoint (no `entrypoint` metadata, no /.startup.toml): give one with --entrypoint",
    );
    one_line_error(
        &env.run(&bare, &["--entrypoint", "/bin/missing"]),
        "entrypoint /bin/missing: /bin/missing does not exist in the flist",
    );
    one_line_error(
        &env.run(&bare, &["--entrypoint", "/etc/not-a-program"]),
        "entrypoint /etc/not-a-program: /etc/not-a-program is not executable (mode 0644)",
    );
    one_line_error(
        &env.run(&bare, &["--", "nosuch", "x"]),
        "entrypoint nosuch: not found in the flist's PATH",
    );
    // a script whose interpreter is missing fails at exec, still in one line
    fs::write(s.join("tree/broken.sh"), "#!/no/such/interpreter\n").unwrap();
    fs::set_permissions(s.join("tree/broken.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let broken = s.join("broken.flist");
    env.pack(&s.join("tree"), &broken);
    one_line_error(
        &env.run(&broken, &["--entrypoint", "/broken.sh"]),
        "entrypoint /broken.sh: cannot be executed: it or its interpreter (#! line) does not exist in the flist",
    );
    assert_eq!(
        fs::read_dir(&env.tmp).unwrap().count(),
        0,
        "a layer was left"
    );
    // not root: refused before anything is read
    let mut c = env.command(&bare, &[]);
    c.uid(65534).gid(65534).current_dir("/");
    one_line_error(&c.output().unwrap(), "zflist run needs root");
}

#[test]
fn run_forwards_signals_and_returns_the_entrypoints_code() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let env = Env::new(s);
    container_tree(&s.join("tree"), None);
    let flist = s.join("sig.flist");
    env.pack(&s.join("tree"), &flist);
    let mut child = env
        .command(
            &flist,
            &[
                "--entrypoint",
                "/bin/sh",
                "--",
                "-c",
                "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    let pid = child.id().to_string();
    run(Command::new("kill").args(["-TERM", &pid]), "kill");
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(7));
    assert_eq!(
        fs::read_dir(&env.tmp).unwrap().count(),
        0,
        "a layer was left"
    );
}
