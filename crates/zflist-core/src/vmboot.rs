//! `zflist vm boot`: boot the VM an flist describes, locally, the way a node would:
//! `/boot/boot.yaml` checked as `check-vm` does, configuration files overridden for this
//! boot (`--config`), the flist mounted lazily with a writable overlay on top, and QEMU
//! booting the flist's kernel and initramfs with that tree as its root over virtio-9p (see
//! [`flist_run::vm`]). The serial console is stdout; the VM powering off ends the command,
//! which then says what it fetched and how long the boot took.

use std::time::Duration;

use flist_convert::vmcheck;
use flist_mount::Override;
use flist_run::vm::{self, Accel, VmNet, VmSpec};
use flist_run::RunError;
use serde_json::json;

use crate::backend::StoreConfig;
use crate::error::{Context, Error, Result};
use crate::failover::Hubs;
use crate::mount::ChunkCacheArgs;
use crate::response::Response;
use crate::run::{chunk_count, finish, mount_lower, open};

/// `zflist vm <command>`.
#[derive(clap::Args, Clone, Debug)]
pub struct VmArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: VmCommand,
}

/// The `vm` commands.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum VmCommand {
    /// Boot the VM an flist describes (/boot/boot.yaml) under QEMU, with the flist as its
    /// root file system over virtio-9p and the serial console on stdout, until it powers
    /// off.
    #[command(
        after_help = "EXAMPLES:\n  zflist vm boot ubuntu-vm.flist\n  zflist vm boot https://hub.example/alice/vm.flist --config /etc/hostname=./hostname --memory 1G --timeout 300"
    )]
    Boot(VmBootArgs),
}

/// `--accel`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccelArg {
    /// KVM when it is backed by hardware virtualisation, else software emulation.
    #[default]
    Auto,
    /// KVM.
    Kvm,
    /// Software emulation (TCG).
    Tcg,
}

/// `--net` of `vm boot`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VmNetArg {
    /// No network device.
    #[default]
    None,
    /// QEMU's user-mode network.
    User,
}

/// `zflist vm boot <FLIST|URL> [--config /path=FILE]... [--memory M] [--timeout S]`
#[derive(clap::Args, Clone, Debug, Default)]
pub struct VmBootArgs {
    /// `.flist` file or `http(s)://` URL of one.
    pub flist: String,
    /// Hubs to fail over to.
    #[command(flatten)]
    pub hubs: Hubs,
    /// Replace or add a file in the VM for this boot (repeatable): `/path=FILE` (a local
    /// file; `/path=@FILE` too).
    #[arg(long = "config", value_name = "/PATH=FILE")]
    pub config: Vec<String>,
    /// Memory of the VM (e.g. 512M, 2G).
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    pub memory: String,
    /// Virtual CPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u32,
    /// Stop the VM after this many seconds (an error); default: wait for it to power off.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Accelerator.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelArg,
    /// The VM's network.
    #[arg(long, value_enum, default_value = "none")]
    pub net: VmNetArg,
    /// Keep the writable layer (what the VM wrote) instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// The chunk cache.
    #[command(flatten)]
    pub cache: ChunkCacheArgs,
}

/// `/path=FILE` (or `/path=@FILE`) → the override with the local file's content.
fn config_override(function: &str, spec: &str) -> Result<Override> {
    let (path, file) = spec
        .split_once('=')
        .ok_or_else(|| Error::usage(function, format!("--config {spec:?}: expected /path=FILE")))?;
    let file = file.strip_prefix('@').unwrap_or(file);
    Override::parse(&format!("{path}=@{file}")).ctx(function)
}

/// `vm boot`: see the module doc. `notice` receives lines for stderr before the boot.
pub fn boot(args: &VmBootArgs, stores: &StoreConfig, notice: &dyn Fn(&str)) -> Result<Response> {
    let f = "vm boot";
    let overrides = args
        .config
        .iter()
        .map(|c| config_override(f, c))
        .collect::<Result<Vec<_>>>()?;
    let memory = flist_mount::parse_size(&args.memory)
        .filter(|m| *m >= 64 << 20)
        .ok_or_else(|| {
            Error::usage(
                f,
                format!(
                    "--memory {:?}: expected a size of at least 64M, such as 512M or 2G",
                    args.memory
                ),
            )
        })?;
    let timeout = match args.timeout {
        Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(Error::usage(
                f,
                format!("--timeout {t}: expected seconds > 0"),
            ))
        }
        None => None,
    };
    let opened = open(f, "zflist vm boot", &args.flist, stores)?;
    let report = vmcheck::check_vm(&opened.flist.tree, &opened.store);
    if !report.ok {
        return Err(RunError::Vm(crate::vm::not_bootable(&args.flist, &report))).ctx(f);
    }
    let tree = &opened.flist.tree;
    let inside = |path: Option<&String>| -> Result<String> {
        let p = path.map(String::as_str).unwrap_or_default();
        tree.resolve(p)
            .map(|id| tree.path_of(id))
            .map_err(|e| Error::usage(f, e))
    };
    let kernel = inside(report.kernel.as_ref())?;
    let initrd = inside(report.initrd.as_ref())?;
    if report
        .kernel_format
        .as_deref()
        .is_some_and(|k| k.contains("arm64"))
    {
        return Err(RunError::Vm(format!(
            "{}: an arm64 kernel; vm boot runs x86_64 kernels",
            args.flist
        )))
        .ctx(f);
    }
    let (cmdline, dropped) = vm::kernel_cmdline(report.cmdline.as_deref());
    if !dropped.is_empty() {
        notice(&format!(
            "the root file system is the flist over virtio-9p: ignoring {} from boot.yaml's cmdline",
            dropped.join(" ")
        ));
    }
    let (accel, accel_note) = vm::choose_accel(match args.accel {
        AccelArg::Auto => None,
        AccelArg::Kvm => Some(Accel::Kvm),
        AccelArg::Tcg => Some(Accel::Tcg),
    });
    if let Some(n) = accel_note {
        notice(&n);
    }
    let total_chunks = chunk_count(&opened.flist);
    let crate::run::Opened { flist, store } = opened;
    let signals = vm::StopSignals::install(store.handle()).ctx(f)?;
    let (mut layer, mounted) = mount_lower(
        f,
        flist,
        &store,
        &args.flist,
        args.keep,
        &args.cache,
        overrides,
    )?;
    let booted = layer.mount().ctx(f).and_then(|()| {
        let spec = VmSpec {
            kernel: layer.lower().join(&kernel),
            initrd: layer.lower().join(&initrd),
            root: layer.root(),
            cmdline: cmdline.clone(),
            memory_mib: memory >> 20,
            cpus: args.cpus,
            accel,
            net: match args.net {
                VmNetArg::None => VmNet::None,
                VmNetArg::User => VmNet::User,
            },
        };
        vm::boot(&spec, timeout, store.handle(), signals).ctx(f)
    });
    let unmounted = layer.unmount().ctx(f);
    let (stats, kept) = finish(f, mounted, layer)?;
    unmounted?;
    let outcome = booted?;
    let secs = outcome.elapsed.as_secs_f64();
    let first = outcome
        .first_output
        .map(|d| format!("{:.2} s", d.as_secs_f64()))
        .unwrap_or_else(|| "never".into());
    let mut text = format!(
        "zflist: VM {} after {secs:.2} s ({} acceleration, first console output after {first}); fetched {} of the flist's {total_chunks} chunks ({} bytes) from the store, {} from the disk cache\n",
        if outcome.timed_out {
            "stopped by --timeout"
        } else if outcome.interrupted {
            "stopped by a signal"
        } else {
            "powered off"
        },
        accel.name(),
        stats.fetched_chunks,
        stats.fetched_bytes,
        stats.disk_hits
    );
    if let Some(k) = &kept {
        text.push_str(&format!(
            "zflist: kept the writable layer at {}\n",
            k.display()
        ));
    }
    let json = json!({
        "exit_code": outcome.exit_code,
        "seconds": secs,
        "first_output_seconds": outcome.first_output.map(|d| d.as_secs_f64()),
        "accel": accel.name(),
        "cmdline": cmdline,
        "timed_out": outcome.timed_out,
        "fetched_chunks": stats.fetched_chunks,
        "fetched_bytes": stats.fetched_bytes,
        "disk_hits": stats.disk_hits,
        "flist_chunks": total_chunks,
        "kept_layer": kept.map(|k| k.display().to_string()),
    });
    let r = Response::new(json, text);
    Ok(if outcome.timed_out {
        r.failed(format!(
            "the VM was still running after {} s: stopped",
            args.timeout.unwrap_or_default()
        ))
    } else if outcome.interrupted {
        r.failed("interrupted: the VM was stopped")
    } else if outcome.exit_code != 0 {
        r.failed(format!("QEMU exited with code {}", outcome.exit_code))
    } else {
        r
    })
}
