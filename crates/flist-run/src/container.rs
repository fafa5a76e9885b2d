//! The entrypoint as PID 1 of new namespaces, with the flist's overlay as root.
//!
//! Two sides, one program:
//!
//! 1. [`start`] (the caller, e.g. `zflist run`, which serves the FUSE mount): a dedicated
//!    thread calls `unshare(CLONE_NEWPID)`, which puts that thread's *next child* into a
//!    new PID namespace, and spawns `init_exe __container-init` — the child is PID 1
//!    there. A close-on-exec pipe tells the caller whether the entrypoint was `exec`ed (the
//!    pipe closes) or why not (the init writes the reason).
//! 2. [`init_main`] (the child, single-threaded): new mount, UTS, IPC (and network) namespaces;
//!    every mount made private; the overlay mounted; `pivot_root` into it and the old root
//!    detached; `/proc`, a `tmpfs` `/dev` with the usual nodes, `devpts` and `/dev/shm`, a
//!    read-only `/sys`; the host name; the host's `resolv.conf` when it shares the host's
//!    network; then `exec` of the entrypoint, which stays PID 1.
//!
//! [`Container::wait`] forwards the signals the caller receives (SIGINT, SIGTERM, SIGHUP,
//! SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH) to the entrypoint — as PID 1 it ignores those it has
//! no handler for, so a third SIGINT/SIGTERM kills it — and returns its exit code (128 + the
//! signal number when a signal ended it). When PID 1 ends, the kernel kills whatever else
//! runs in its PID namespace, and the mount namespace (with its overlay) goes with it.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::layer::mount_overlay;

/// The argument that makes the program act as a container's init ([`init_main`]).
pub const INIT_ARG: &str = "__container-init";
/// Environment variable carrying the [`ContainerSpec`] (JSON) to the init.
const SPEC_ENV: &str = "ZFLIST_CONTAINER_SPEC";
/// Environment variable naming the init's error pipe.
const ERR_FD_ENV: &str = "ZFLIST_CONTAINER_ERRFD";

/// The container's network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Net {
    /// The host's network namespace (the default).
    #[default]
    Host,
    /// A new, empty network namespace (only a loopback device, down).
    None,
}

/// What the init needs to set up the container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The read-only flist (the FUSE mount point).
    pub lower: PathBuf,
    /// The overlay's upper directory.
    pub upper: PathBuf,
    /// The overlay's work directory.
    pub work: PathBuf,
    /// Where the overlay is mounted (then becomes `/`).
    pub root: PathBuf,
    /// The program's absolute path inside the flist.
    pub program: String,
    /// `argv`, `argv[0]` as recorded.
    pub argv: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside the flist (created when missing).
    pub workdir: String,
    /// Host name.
    pub hostname: String,
    /// Network.
    pub net: Net,
}

/// A started container: its PID 1, as seen from the caller.
#[derive(Debug)]
pub struct Container {
    child: Child,
}

/// Starts the container: `init_exe` must call [`init_main`] when its first argument is
/// [`INIT_ARG`]. Returns once the entrypoint has been `exec`ed, or with the init's reason
/// (program missing, not executable, a mount refused...). No other process may be spawned
/// by the caller meanwhile (it would inherit the init's error pipe).
pub fn start(spec: &ContainerSpec, init_exe: &Path) -> Result<Container, RunError> {
    let json = serde_json::to_string(spec).map_err(|e| RunError::Start(e.to_string()))?;
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| RunError::sys("creating the init's error pipe", e))?;
    fcntl(&write_end, FcntlArg::F_SETFD(FdFlag::empty()))
        .map_err(|e| RunError::sys("passing the error pipe to the init", e))?;
    let raw = write_end.as_raw_fd();
    let exe = init_exe.to_path_buf();
    let spawned = std::thread::spawn(move || -> Result<Child, RunError> {
        // Only this thread's children enter the new PID namespace; the thread ends here.
        nix::sched::unshare(CloneFlags::CLONE_NEWPID)
            .map_err(|e| RunError::sys("creating a PID namespace", e))?;
        Command::new(&exe)
            .arg(INIT_ARG)
            .env(SPEC_ENV, json)
            .env(ERR_FD_ENV, raw.to_string())
            .spawn()
            .map_err(|e| RunError::io("starting the container's init", &exe, e))
    })
    .join()
    .map_err(|_| RunError::Start("the thread starting the container panicked".into()))?;
    drop(write_end);
    let mut child = spawned?;
    let mut message = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut message);
    if !message.trim().is_empty() {
        let _ = child.wait();
        return Err(RunError::Start(message.trim().to_string()));
    }
    Ok(Container { child })
}

/// Signals forwarded to the entrypoint.
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

impl Container {
    /// The entrypoint's process id (in the caller's PID namespace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the entrypoint to end, forwarding the signals `signals` catches (on the
    /// runtime behind `handle`). Returns its exit code, 128 + N when signal N ended it.
    /// `notice` receives a line for the user (the kill after the third interrupt).
    pub fn wait(
        mut self,
        handle: &tokio::runtime::Handle,
        signals: Forwarded,
        notice: impl Fn(&str),
    ) -> Result<i32, RunError> {
        let _guard = handle.enter();
        let mut streams = signals.streams;
        let pid = Pid::from_raw(self.child.id() as i32);
        let mut interrupts = 0;
        let status = handle.block_on(async {
            loop {
                let any_signal = futures_select(&mut streams);
                tokio::select! {
                    s = any_signal => {
                        if matches!(s, Signal::SIGINT | Signal::SIGTERM) {
                            interrupts += 1;
                        }
                        if interrupts >= 3 {
                            notice("interrupted three times: killing the container");
                            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                        } else {
                            let _ = nix::sys::signal::kill(pid, s);
                            if interrupts == 2 && matches!(s, Signal::SIGINT | Signal::SIGTERM) {
                                notice("the entrypoint runs as PID 1 and ignores signals it has no handler for: interrupt once more to kill it");
                            }
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {
                        match self.child.try_wait() {
                            Ok(Some(st)) => return Ok(st),
                            Ok(None) => {}
                            Err(e) => return Err(RunError::io("waiting for", "the container", e)),
                        }
                    }
                }
            }
        })?;
        Ok(match (status.code(), status.signal()) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            _ => 255,
        })
    }
}

/// Handlers of the signals a container's entrypoint gets passed: installed before anything
/// is mounted, so that from then on these signals are caught (and later forwarded) instead
/// of ending the caller before it has cleaned up.
#[derive(Debug)]
pub struct Forwarded {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Forwarded {
    /// Installs the handlers on the runtime behind `handle` (they stay installed).
    pub fn install(handle: &tokio::runtime::Handle) -> Result<Forwarded, RunError> {
        use tokio::signal::unix::{signal, SignalKind};
        let _guard = handle.enter();
        let mut streams = Vec::new();
        for s in FORWARDED {
            let stream = signal(SignalKind::from_raw(s as i32))
                .map_err(|e| RunError::Start(format!("installing a {s} handler: {e}")))?;
            streams.push((s, stream));
        }
        Ok(Forwarded { streams })
    }
}

/// The first signal any of `streams` delivers.
async fn futures_select(streams: &mut [(Signal, tokio::signal::unix::Signal)]) -> Signal {
    std::future::poll_fn(|cx| {
        for (s, stream) in streams.iter_mut() {
            if stream.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*s);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The init: sets the container up and `exec`s the entrypoint. Never returns; on failure
/// the reason goes to the caller's error pipe (or stderr) and the process exits 125.
pub fn init_main() -> ! {
    let errfd = std::env::var(ERR_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    let spec = std::env::var(SPEC_ENV)
        .map_err(|_| format!("{INIT_ARG}: no container description in the environment"))
        .and_then(|j| serde_json::from_str::<ContainerSpec>(&j).map_err(|e| e.to_string()));
    let err_pipe = errfd.and_then(take_error_pipe);
    let failure = match spec {
        Ok(spec) => match setup_and_exec(&spec) {
            Ok(never) => match never {},
            Err(e) => e,
        },
        Err(e) => e,
    };
    match err_pipe {
        Some(mut f) => {
            use std::io::Write;
            let _ = f.write_all(failure.as_bytes());
        }
        None => eprintln!("{failure}"),
    }
    std::process::exit(125)
}

/// The inherited error pipe, reopened close-on-exec through `/proc/self/fd` (so a
/// successful `exec` closes it) and its inherited number closed.
fn take_error_pipe(fd: i32) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{fd}"))
        .ok();
    let _ = nix::unistd::close(fd);
    file
}

fn errno_text(e: nix::errno::Errno) -> String {
    e.desc().to_lowercase()
}

fn setup_and_exec(spec: &ContainerSpec) -> Result<std::convert::Infallible, String> {
    let sys = |what: String| move |e: nix::errno::Errno| format!("{what}: {}", errno_text(e));
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if spec.net == Net::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    nix::sched::unshare(flags).map_err(sys("creating the namespaces".into()))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("making the mounts private".into()))?;
    mount_overlay(&spec.lower, &spec.upper, &spec.work, &spec.root).map_err(|e| e.to_string())?;
    let resolv = if spec.net == Net::Host {
        std::fs::read("/etc/resolv.conf").ok()
    } else {
        None
    };
    nix::unistd::chdir(&spec.root).map_err(sys(format!("entering {}", spec.root.display())))?;
    nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root into the flist".into()))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(sys("detaching the host's root".into()))?;
    nix::unistd::chdir("/").map_err(sys("entering /".into()))?;
    mount_api_filesystems(spec)?;
    nix::unistd::sethostname(&spec.hostname)
        .map_err(sys(format!("setting the host name {}", spec.hostname)))?;
    if let Some(r) = resolv {
        // inside the new root: a link in the flist cannot lead outside
        let p = Path::new("/etc/resolv.conf");
        if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(p);
        }
        if Path::new("/etc").is_dir() {
            let _ = std::fs::write(p, r);
        }
    }
    let workdir = Path::new(&spec.workdir);
    std::fs::create_dir_all(workdir)
        .and_then(|()| std::env::set_current_dir(workdir))
        .map_err(|e| format!("entering the working directory {}: {e}", spec.workdir))?;
    let mut cmd = Command::new(&spec.program);
    if let Some((first, rest)) = spec.argv.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.env_clear().envs(
        spec.env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    let e = cmd.exec();
    Err(match e.raw_os_error() {
        Some(nix::libc::ENOENT) => format!(
            "entrypoint {}: cannot be executed: it or its interpreter (#! line) does not exist in the flist",
            spec.argv.first().map(String::as_str).unwrap_or(&spec.program)
        ),
        Some(nix::libc::EACCES) => format!(
            "entrypoint {}: permission denied (not executable, or on a noexec mount)",
            spec.argv.first().map(String::as_str).unwrap_or(&spec.program)
        ),
        Some(nix::libc::ENOEXEC) => format!(
            "entrypoint {}: not a program this machine can run (wrong architecture, or a script without #! line)",
            spec.argv.first().map(String::as_str).unwrap_or(&spec.program)
        ),
        _ => format!("entrypoint {}: {e}", spec.program),
    })
}

/// `/proc`, `/dev` (tmpfs with null, zero, full, random, urandom, tty; `pts`, `shm`, the
/// `fd`/`stdin`/`stdout`/`stderr`/`ptmx` links) and a read-only `/sys`.
fn mount_api_filesystems(spec: &ContainerSpec) -> Result<(), String> {
    let sys = |what: &str| {
        let what = what.to_string();
        move |e: nix::errno::Errno| format!("mounting {what}: {}", errno_text(e))
    };
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_point("/proc")?;
    nix::mount::mount(Some("proc"), "/proc", Some("proc"), nosuid, None::<&str>)
        .map_err(sys("/proc"))?;
    mount_point("/dev")?;
    nix::mount::mount(
        Some("tmpfs"),
        "/dev",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(sys("/dev"))?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = format!("/dev/{name}");
        nix::sys::stat::mknod(
            path.as_str(),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(major, minor),
        )
        .map_err(|e| format!("creating {path}: {}", errno_text(e)))?;
        // mknod applies the umask
        let _ = nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            path.as_str(),
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        );
    }
    for dir in ["/dev/pts", "/dev/shm"] {
        std::fs::create_dir(dir).map_err(|e| format!("creating {dir}: {e}"))?;
    }
    nix::mount::mount(
        Some("devpts"),
        "/dev/pts",
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(sys("/dev/pts"))?;
    nix::mount::mount(
        Some("shm"),
        "/dev/shm",
        Some("tmpfs"),
        nosuid,
        Some("mode=1777,size=65536k"),
    )
    .map_err(sys("/dev/shm"))?;
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(target, link).map_err(|e| format!("creating {link}: {e}"))?;
    }
    mount_point("/sys")?;
    let ro = nosuid | MsFlags::MS_RDONLY;
    if nix::mount::mount(Some("sysfs"), "/sys", Some("sysfs"), ro, None::<&str>).is_err() {
        // sysfs of the host's network namespace may be refused: nothing rather than rw
        let _ = spec;
    }
    Ok(())
}

/// Makes sure `path` is a directory of the new root (created in the writable layer when the
/// flist has none; a link or file there is replaced).
fn mount_point(path: &str) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => std::fs::remove_file(path)
            .and_then(|()| std::fs::create_dir(path))
            .map_err(|e| format!("replacing {path} by a directory: {e}")),
        Err(_) => std::fs::create_dir(path).map_err(|e| format!("creating {path}: {e}")),
    }
}
