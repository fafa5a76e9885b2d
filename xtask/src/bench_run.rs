//! The launch rows of `cargo xtask bench mount`: how soon an flist starts and how little of
//! it is fetched to get there (issue #28), each against a baseline measured in the same run
//! on the same tree from the local disk.
//!
//! - Container: the Debian minbase tree (cached under `target/tmp/`), packed into a fresh
//!   `dir://` store, its entrypoint recorded with the session's `metadata entrypoint`
//!   (`bash` printing a line, then the OS name). `zflist run` with no disk cache (cold) and
//!   with a warm one, time to the first byte on stdout, vs the same command in new
//!   namespaces `chroot`ed into the tree on disk (`unshare ... chroot`). Share: bytes
//!   fetched / bytes of the flist's chunks in the store (goal < 5 %).
//! - VM: the bootable Debian tree (minbase + `linux-image-amd64`, 9p initramfs), packed, with
//!   `/boot/boot.yaml` and an init script added in a session. `zflist vm boot` cold and warm,
//!   time to the init's marker on the console, vs QEMU booting the same kernel, initramfs and
//!   init with the tree on disk (an overlay of it) as the 9p root. Share: as above (goal
//!   < 20 %). Best of 2 boots per row, alternating (a software-emulated boot takes ~20 s).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::bench_convert::{shell_time, verdict};

const MARKER: &str = "ZFLIST-BENCH-MARKER";
const CONTAINER_CMD: &str = "echo ready; . /etc/os-release; echo \"$PRETTY_NAME\"";
const INIT: &str = "#!/bin/sh\necho ZFLIST-BENCH-MARKER\necho o > /proc/sysrq-trigger\nsleep 60\n";

/// Seconds to a point, and the bytes fetched to get there.
type Timed = (f64, u64);

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

fn check(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Spawns `cmd` (stdout piped), returns the seconds until a stdout line satisfying `hit`
/// (the first byte when `hit` is `None`) and the whole stdout once it exits successfully.
fn time_to(mut cmd: Command, hit: Option<&str>, what: &str) -> Result<(f64, String)> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    let mut seen = None;
    let mut all = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            break;
        }
        if seen.is_none() && hit.is_none_or(|h| line.contains(h)) {
            seen = Some(start.elapsed().as_secs_f64());
        }
        all.push_str(&line);
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait()?;
    let Some(t) = seen else {
        bail!("{what}: never printed {hit:?}\nstdout: {all}\nstderr: {err}");
    };
    // `zflist run` exits with the entrypoint's code (0 here); QEMU with 0 on power-off
    if !status.success() {
        bail!("{what} failed ({status}): {err}");
    }
    Ok((t, all))
}

/// `fetched_bytes` of the JSON envelope on the last line of `stdout`.
fn fetched_bytes(stdout: &str) -> Result<u64> {
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(last).with_context(|| format!("no JSON envelope in {last:?}"))?;
    v["response"]["fetched_bytes"]
        .as_u64()
        .with_context(|| format!("no fetched_bytes in {v}"))
}

struct Zflist {
    bin: PathBuf,
}

impl Zflist {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str], what: &str) -> Result<String> {
        check(self.cmd().args(args), what)
    }
}

/// Prints the launch rows (needs root, `/dev/fuse`, QEMU, debootstrap and apt).
pub fn run() -> Result<()> {
    crate::require_tools(&["unshare", "chroot", "qemu-system-x86_64", "debootstrap"])?;
    crate::cargo(&["build", "--release", "-p", "zflist", "--bin", "zflist"])?;
    let root = crate::root();
    let z = Zflist {
        bin: root.join("target/release/zflist"),
    };
    let work = root.join("target/bench-run");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("cleaning {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let tmp = root.join("target/tmp");
    let minbase = test_support::rootfs::debootstrap_minbase(&tmp.join("debootstrap-minbase"))
        .context("debootstrap of the Debian minbase tree failed")?;
    let p = |x: &Path| x.display().to_string();

    // --- container ---
    let store_dir = work.join("store-container");
    let store = format!("dir://{}", p(&store_dir));
    let base = work.join("minbase.flist");
    z.run(
        &[
            "pack",
            &p(&minbase),
            "-o",
            &p(&base),
            "--store",
            &store,
            "-q",
        ],
        "zflist pack",
    )?;
    let mnt = work.join("session");
    let app = work.join("app.flist");
    let session = |args: &[&str]| -> Result<String> {
        let mut all = vec!["--mnt", mnt.to_str().unwrap_or_default(), "--store", &store];
        all.extend_from_slice(args);
        z.run(&all, &format!("zflist {}", args[0]))
    };
    session(&["open", &p(&base)])?;
    session(&[
        "metadata",
        "entrypoint",
        "--",
        "/bin/bash",
        "-c",
        CONTAINER_CMD,
    ])?;
    session(&["commit", &p(&app)])?;
    session(&["close"])?;
    let total_c = dir_bytes(&store_dir);
    let mut baseline = f64::INFINITY;
    let mut cold = (f64::INFINITY, 0);
    let mut warm = (f64::INFINITY, 0);
    for round in 0..3 {
        let mut b = Command::new("unshare");
        b.args(["--mount", "--uts", "--ipc", "--pid", "--fork", "chroot"])
            .arg(&minbase)
            .args(["/bin/bash", "-c", CONTAINER_CMD]);
        baseline = baseline.min(time_to(b, None, "unshare chroot")?.0);
        let mut c = z.cmd();
        c.args(["run", &p(&app), "--store", &store, "--no-cache", "--json"]);
        let (t, out) = time_to(c, None, "zflist run (no disk cache)")?;
        if t < cold.0 {
            cold = (t, fetched_bytes(&out)?);
        }
        let cache = work.join(format!("cache-{round}"));
        let warm_run = || {
            let mut c = z.cmd();
            c.args([
                "run",
                &p(&app),
                "--store",
                &store,
                "--cache",
                &p(&cache),
                "--json",
            ]);
            time_to(c, None, "zflist run (warm cache)")
        };
        warm_run()?;
        let (t, out) = warm_run()?;
        if t < warm.0 {
            warm = (t, fetched_bytes(&out)?);
        }
    }

    // --- VM ---
    let bootable = test_support::rootfs::bootable_debian(&minbase, &tmp.join("debian-bootable"))
        .context("installing linux-image-amd64 into the Debian tree failed")?;
    let vstore_dir = work.join("store-vm");
    let vstore = format!("dir://{}", p(&vstore_dir));
    let vbase = work.join("debian-vm-base.flist");
    z.run(
        &[
            "pack",
            &p(&bootable),
            "-o",
            &p(&vbase),
            "--store",
            &vstore,
            "-q",
        ],
        "zflist pack (VM)",
    )?;
    std::fs::write(work.join("init"), INIT)?;
    std::fs::write(
        work.join("boot.yaml"),
        "kernel: /vmlinuz\ninitrd: /initrd.img\ncmdline: \"quiet init=/usr/sbin/zflist-bench-init\"\n",
    )?;
    let vm = work.join("debian-vm.flist");
    let vsession = |args: &[&str]| -> Result<String> {
        let mut all = vec![
            "--mnt",
            mnt.to_str().unwrap_or_default(),
            "--store",
            &vstore,
        ];
        all.extend_from_slice(args);
        z.run(&all, &format!("zflist {}", args[0]))
    };
    vsession(&["open", &p(&vbase)])?;
    vsession(&["put", &p(&work.join("init")), "/usr/sbin/zflist-bench-init"])?;
    vsession(&["chmod", "755", "/usr/sbin/zflist-bench-init"])?;
    vsession(&["put", &p(&work.join("boot.yaml")), "/boot/boot.yaml"])?;
    vsession(&["commit", &p(&vm)])?;
    vsession(&["close"])?;
    let total_v = dir_bytes(&vstore_dir);
    let (accel, _) = flist_run::vm::choose_accel(None);
    // baseline: the same QEMU command line, the root an overlay of the tree on disk with the
    // init added in the upper layer
    let over = work.join("overlay");
    for d in ["upper/usr/sbin", "work", "root"] {
        std::fs::create_dir_all(over.join(d))?;
    }
    std::fs::write(over.join("upper/usr/sbin/zflist-bench-init"), INIT)?;
    shell_time(&format!(
        "chmod 755 {u}/usr/sbin/zflist-bench-init && mount -t overlay overlay -o lowerdir={l},upperdir={u},workdir={w} {r}",
        u = p(&over.join("upper")),
        l = p(&bootable),
        w = p(&over.join("work")),
        r = p(&over.join("root"))
    ))?;
    let spec = flist_run::vm::VmSpec {
        kernel: bootable.join("vmlinuz"),
        initrd: bootable.join("initrd.img"),
        root: over.join("root"),
        cmdline: flist_run::vm::kernel_cmdline(Some("quiet init=/usr/sbin/zflist-bench-init")).0,
        memory_mib: 512,
        cpus: 1,
        accel,
        net: flist_run::vm::VmNet::None,
    };
    let boot = |cache: Option<&Path>| -> Result<Timed> {
        let mut c = z.cmd();
        c.args([
            "vm",
            "boot",
            &p(&vm),
            "--store",
            &vstore,
            "--json",
            "--timeout",
            "900",
        ]);
        match cache {
            Some(d) => c.args(["--cache", &p(d)]),
            None => c.arg("--no-cache"),
        };
        let (t, out) = time_to(c, Some(MARKER), "zflist vm boot")?;
        Ok((t, fetched_bytes(&out)?))
    };
    // best of 2, the three alternating; the warm cache filled by one boot first
    let vcache = work.join("vm-cache");
    let boots = || -> Result<(f64, Timed, Timed)> {
        boot(Some(&vcache))?;
        let (mut base, mut cold, mut warm) =
            (f64::INFINITY, (f64::INFINITY, 0), (f64::INFINITY, 0));
        for _ in 0..2 {
            let mut q = Command::new(flist_run::vm::qemu_program());
            q.args(flist_run::vm::qemu_args(&spec)).stdin(Stdio::null());
            base = base.min(time_to(q, Some(MARKER), "qemu (tree on disk)")?.0);
            let c = boot(None)?;
            if c.0 < cold.0 {
                cold = c;
            }
            let w = boot(Some(&vcache))?;
            if w.0 < warm.0 {
                warm = w;
            }
        }
        Ok((base, cold, warm))
    };
    let measured = boots();
    let _ = shell_time(&format!("umount {}", p(&over.join("root"))));
    let (vm_baseline, vm_cold, vm_warm) = measured?;

    let pct = |a: u64, b: u64| 100.0 * a as f64 / b.max(1) as f64;
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "container: {} (Debian minbase, {:.0} MB of chunks); VM: {} (+ linux-image-amd64, {:.0} MB of chunks), {}; stores: dir:// on the same disk",
        p(&minbase),
        mb(total_c),
        p(&bootable),
        mb(total_v),
        accel.name()
    );
    println!("| row | ours | baseline | ratio | goal | verdict |");
    println!("|---|---|---|---|---|---|");
    for (label, t) in [("no disk cache", cold.0), ("warm chunk cache", warm.0)] {
        println!(
            "| zflist run: time to the container's first output ({label}, best of 3) | {t:.3} s | unshare + chroot on disk {baseline:.3} s | {:.1}× | — | — |",
            t / baseline
        );
    }
    let share_c = pct(cold.1, total_c);
    println!(
        "| zflist run: share of the flist's bytes fetched (no disk cache) | {share_c:.2} % ({:.1} MB) | {:.0} MB | — | < 5 % | {} |",
        mb(cold.1),
        mb(total_c),
        verdict(share_c < 5.0)
    );
    println!(
        "| zflist run: bytes fetched from the store with a warm cache | {:.1} MB | — | — | — | — |",
        mb(warm.1)
    );
    for (label, t) in [
        ("no disk cache", vm_cold.0),
        ("warm chunk cache", vm_warm.0),
    ] {
        println!(
            "| zflist vm boot: time to the VM's marker ({label}, best of 2) | {t:.1} s | QEMU, tree on disk {vm_baseline:.1} s | {:.2}× | — | — |",
            t / vm_baseline
        );
    }
    let share_v = pct(vm_cold.1, total_v);
    println!(
        "| zflist vm boot: share of the flist's bytes fetched (no disk cache) | {share_v:.2} % ({:.1} MB) | {:.0} MB | — | < 20 % | {} |",
        mb(vm_cold.1),
        mb(total_v),
        verdict(share_v < 20.0)
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
