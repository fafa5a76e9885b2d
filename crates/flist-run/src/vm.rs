//! Booting an flist's kernel under QEMU with the flist as the root file system.
//!
//! The root is the mounted flist (with its writable overlay) shared over virtio-9p with the
//! mount tag [`ROOT_TAG`]; the kernel command line tells the initramfs to mount it
//! (`root=zflistroot rootfstype=9p rootflags=trans=virtio,...`), which needs the `9p`,
//! `9pnet`, `9pnet_virtio` and `virtio_pci` modules in the initramfs (checked beforehand by
//! `flist_convert::vmcheck`). The serial console is the VM's stdout; the VM powering off (or
//! rebooting: `-no-reboot`) ends QEMU.
//!
//! KVM is used when `/dev/kvm` can be opened and is backed by the hardware virtualisation
//! modules (`kvm_intel`, `kvm_amd`); other backends (such as `kvm_pvm`, which runs only
//! guest kernels built for it) and machines without KVM get software emulation (TCG).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::RunError;

/// The 9p mount tag of the root file system.
pub const ROOT_TAG: &str = "zflistroot";
/// The QEMU program (override with `$ZFLIST_QEMU`).
pub const QEMU: &str = "qemu-system-x86_64";

/// How QEMU runs the guest's instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// `kvm` or `tcg`.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The accelerator to use: `requested`, else KVM when usable (see the module doc), else
/// TCG; with a note for the user when KVM is present but not used.
pub fn choose_accel(requested: Option<Accel>) -> (Accel, Option<String>) {
    if let Some(a) = requested {
        return (a, None);
    }
    let openable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !openable {
        return (Accel::Tcg, None);
    }
    let hardware = ["kvm_intel", "kvm_amd"]
        .iter()
        .any(|m| Path::new("/sys/module").join(m).exists());
    if hardware {
        return (Accel::Kvm, None);
    }
    let backend = std::fs::read_dir("/sys/module")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("kvm_"))
        .unwrap_or_else(|| "an unknown module".into());
    (
        Accel::Tcg,
        Some(format!(
            "/dev/kvm is backed by {backend}, not by hardware virtualisation (kvm_intel/kvm_amd): using software emulation (--accel kvm to force)"
        )),
    )
}

/// The kernel command line: the 9p root and the serial console first, then the flist's
/// `cmdline` without the `root=`, `rootfstype=` and `rootflags=` it may give for a disk
/// (returned, to tell the user).
pub fn kernel_cmdline(flist_cmdline: Option<&str>) -> (String, Vec<String>) {
    let mut line = format!(
        "console=ttyS0 root={ROOT_TAG} rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose rw"
    );
    let mut dropped = Vec::new();
    for word in flist_cmdline.unwrap_or("").split_whitespace() {
        if ["root=", "rootfstype=", "rootflags="]
            .iter()
            .any(|p| word.starts_with(p))
        {
            dropped.push(word.to_string());
        } else {
            line.push(' ');
            line.push_str(word);
        }
    }
    (line, dropped)
}

/// The guest's network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VmNet {
    /// No network device.
    #[default]
    None,
    /// QEMU's user-mode network (outgoing connections through the host).
    User,
}

/// What to boot.
#[derive(Clone, Debug)]
pub struct VmSpec {
    /// The kernel file (inside the mounted flist).
    pub kernel: PathBuf,
    /// The initramfs file.
    pub initrd: PathBuf,
    /// The directory shared as the root file system.
    pub root: PathBuf,
    /// The kernel command line ([`kernel_cmdline`]).
    pub cmdline: String,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// Network.
    pub net: VmNet,
}

/// The QEMU program: `$ZFLIST_QEMU`, else [`QEMU`].
pub fn qemu_program() -> PathBuf {
    std::env::var_os("ZFLIST_QEMU")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(QEMU))
}

/// QEMU's arguments for `spec` (serial console on stdio, no display, no reboot).
pub fn qemu_args(spec: &VmSpec) -> Vec<String> {
    // QEMU option values escape ',' by doubling it
    let esc = |p: &Path| p.display().to_string().replace(',', ",,");
    let mut args: Vec<String> = vec![
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        "stdio".into(),
        "-no-reboot".into(),
        "-accel".into(),
        match spec.accel {
            Accel::Kvm => "kvm".into(),
            Accel::Tcg => "tcg,thread=multi".into(),
        },
        "-cpu".into(),
        match spec.accel {
            Accel::Kvm => "host".into(),
            Accel::Tcg => "max".into(),
        },
        "-smp".into(),
        spec.cpus.max(1).to_string(),
        "-m".into(),
        format!("{}M", spec.memory_mib.max(64)),
        "-kernel".into(),
        spec.kernel.display().to_string(),
        "-initrd".into(),
        spec.initrd.display().to_string(),
        "-append".into(),
        spec.cmdline.clone(),
        "-fsdev".into(),
        format!(
            "local,id=zflistroot,path={},security_model=passthrough,multidevs=remap",
            esc(&spec.root)
        ),
        "-device".into(),
        format!("virtio-9p-pci,fsdev=zflistroot,mount_tag={ROOT_TAG}"),
    ];
    match spec.net {
        VmNet::None => args.extend(["-nic".into(), "none".into()]),
        VmNet::User => args.extend(["-nic".into(), "user,model=virtio-net-pci".into()]),
    }
    args
}

/// How a boot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmOutcome {
    /// QEMU's exit code (0 when the guest powered off or rebooted).
    pub exit_code: i32,
    /// From QEMU's start to its exit.
    pub elapsed: Duration,
    /// From QEMU's start to the first byte on the console.
    pub first_output: Option<Duration>,
    /// True when the timeout stopped the VM.
    pub timed_out: bool,
    /// True when a signal to this process stopped the VM.
    pub interrupted: bool,
}

/// SIGINT, SIGTERM and SIGHUP caught to stop the VM: installed before anything is
/// mounted, so a signal never ends the caller before it has cleaned up.
#[derive(Debug)]
pub struct StopSignals {
    streams: Vec<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Installs the handlers on the runtime behind `handle` (they stay installed).
    pub fn install(handle: &tokio::runtime::Handle) -> Result<StopSignals, RunError> {
        use tokio::signal::unix::{signal, SignalKind};
        let _guard = handle.enter();
        let mut streams = Vec::new();
        for kind in [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ] {
            streams.push(
                signal(kind)
                    .map_err(|e| RunError::Vm(format!("installing a signal handler: {e}")))?,
            );
        }
        Ok(StopSignals { streams })
    }
}

/// Boots `spec`: the console goes to this process's stdout; a signal `signals` catches
/// stops QEMU, as does `timeout`.
pub fn boot(
    spec: &VmSpec,
    timeout: Option<Duration>,
    handle: &tokio::runtime::Handle,
    signals: StopSignals,
) -> Result<VmOutcome, RunError> {
    let program = qemu_program();
    let _guard = handle.enter();
    let mut signals = signals.streams;
    let start = Instant::now();
    let mut child = Command::new(&program)
        .args(qemu_args(spec))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            RunError::Vm(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} is not installed: vm boot runs the VM with QEMU (Debian: apt-get install qemu-system-x86)",
                    program.display()
                )
            } else {
                format!("starting {}: {e}", program.display())
            })
        })?;
    let first = Arc::new(OnceLock::new());
    let copier = child.stdout.take().map(|mut out| {
        let first = first.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let stdout = std::io::stdout();
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = first.set(start.elapsed());
                        let mut lock = stdout.lock();
                        let _ = lock.write_all(&buf[..n]);
                        let _ = lock.flush();
                    }
                }
            }
        })
    });
    let pid = Pid::from_raw(child.id() as i32);
    let mut timed_out = false;
    let mut interrupted = false;
    let mut stop_sent: Option<Instant> = None;
    let status = handle.block_on(async {
        loop {
            let any = std::future::poll_fn(|cx| {
                for s in signals.iter_mut() {
                    if s.poll_recv(cx).is_ready() {
                        return std::task::Poll::Ready(());
                    }
                }
                std::task::Poll::Pending
            });
            tokio::select! {
                () = any => {
                    interrupted = true;
                    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
                    stop_sent.get_or_insert_with(Instant::now);
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    match child.try_wait() {
                        Ok(Some(st)) => return Ok(st),
                        Ok(None) => {}
                        Err(e) => return Err(RunError::Vm(format!("waiting for QEMU: {e}"))),
                    }
                    if timeout.is_some_and(|t| start.elapsed() > t) && stop_sent.is_none() {
                        timed_out = true;
                        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
                        stop_sent = Some(Instant::now());
                    }
                    if stop_sent.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
                        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    }
                }
            }
        }
    })?;
    if let Some(c) = copier {
        let _ = c.join();
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(VmOutcome {
        exit_code: status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(255),
        elapsed: start.elapsed(),
        first_output: first.get().copied(),
        timed_out,
        interrupted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_keeps_the_flists_words_but_its_disk_root() {
        let (line, dropped) = kernel_cmdline(Some(
            "console=tty0 root=/dev/vda rootflags=x quiet init=/sbin/x",
        ));
        assert!(line.starts_with("console=ttyS0 root=zflistroot rootfstype=9p"));
        assert!(line.ends_with(" console=tty0 quiet init=/sbin/x"), "{line}");
        assert_eq!(dropped, ["root=/dev/vda", "rootflags=x"]);
        assert_eq!(kernel_cmdline(None).1, Vec::<String>::new());
    }

    #[test]
    fn qemu_arguments() {
        let spec = VmSpec {
            kernel: "/m/boot/vmlinuz".into(),
            initrd: "/m/boot/initrd.img".into(),
            root: "/tmp/a,b/root".into(),
            cmdline: kernel_cmdline(None).0,
            memory_mib: 512,
            cpus: 2,
            accel: Accel::Tcg,
            net: VmNet::None,
        };
        let args = qemu_args(&spec).join(" ");
        assert!(
            args.contains("path=/tmp/a,,b/root,security_model=passthrough"),
            "{args}"
        );
        assert!(
            args.contains("-accel tcg,thread=multi -cpu max -smp 2 -m 512M"),
            "{args}"
        );
        assert!(args.contains("mount_tag=zflistroot"));
        assert!(args.contains("-nic none"));
    }
}
