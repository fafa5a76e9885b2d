//! Start what an flist describes, on this machine, the way a node would.
//!
//! - [`entrypoint`]: the command an flist records — the docker conversion's `entrypoint`,
//!   `environ` and `workdir` metadata, or the hub's `/.startup.toml` — and its program
//!   looked up in the tree (links followed inside the flist, `PATH` searched) so a missing
//!   or non-executable entrypoint is a clear error before anything is mounted.
//! - [`container`]: the entrypoint as PID 1 of new mount, PID, UTS and IPC namespaces (and
//!   optionally network), on a writable overlay of the mounted flist, after `pivot_root`,
//!   with `/proc`, a minimal `/dev` and a read-only `/sys`. Without `unsafe` and without
//!   `fork`: a thread enters a new PID namespace for its children and spawns this program
//!   again as the namespace's init ([`container::INIT_ARG`]), which sets the namespaces up
//!   and `exec`s the entrypoint, so the entrypoint itself is PID 1.
//! - [`layer`]: the writable layer — a kernel overlayfs whose lower directory is the
//!   read-only FUSE mount, its upper and work directories in a private temporary directory
//!   removed afterwards (unless kept).
//! - [`vm`]: QEMU's command line for `/boot/boot.yaml`'s kernel and initramfs with the
//!   mounted flist as the root file system over virtio-9p, and the accelerator choice.
//!
//! Everything here needs root (mounts, namespaces); [`require_root`] says so clearly.
//!
//! A container, as `zflist run` starts it: the recorded command checked against the tree,
//! the flist mounted lazily at the layer's `lower/`, the entrypoint started as PID 1 on the
//! overlay, its exit code returned, everything unmounted and removed afterwards.
//!
//! ```no_run
//! use flist_run::{container, entrypoint, ContainerSpec, Entrypoint, Layer, Net, INIT_ARG};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // the same program is the container's init: dispatch before anything else
//!     if std::env::args().nth(1).as_deref() == Some(INIT_ARG) {
//!         container::init_main();
//!     }
//!     flist_run::require_root("starting a container")?;
//!     let flist = flist_format::Flist::open("app.flist")?;
//!     let store = flist_store::BlockingStore::open("zdb://hub.example:9900")?;
//!     // the docker conversion's entrypoint/env/workdir (or /.startup.toml's), plus overrides
//!     let recorded = Entrypoint::recorded(&flist.metadata, None)?;
//!     let entry = Entrypoint::with_overrides(recorded, None, &[], &["DEBUG=1".into()])?;
//!     let program =
//!         entrypoint::find_program(&flist.tree, &entry.argv[0], &entry.workdir, entry.path_var())?;
//!     let hostname = flist_run::hostname_for("app.flist");
//!     let signals = container::Forwarded::install(store.handle())?;
//!     let layer = Layer::create(None, false)?;
//!     let mounted = flist_mount::mount(
//!         flist,
//!         store.store().clone(),
//!         store.handle().clone(),
//!         &layer.lower(),
//!         &flist_mount::MountOptions { allow_other: true, ..Default::default() },
//!     )?;
//!     let spec = ContainerSpec {
//!         lower: layer.lower(),
//!         upper: layer.upper(),
//!         work: layer.work(),
//!         root: layer.root(),
//!         program,
//!         argv: entry.argv.clone(),
//!         env: entry.process_env(&hostname),
//!         workdir: entry.workdir.clone(),
//!         hostname,
//!         net: Net::Host,
//!     };
//!     let code = container::start(&spec, &std::env::current_exe()?)?
//!         .wait(store.handle(), signals, |line| eprintln!("{line}"))?;
//!     let stats = mounted.unmount()?;
//!     layer.finish()?; // removes the writes (kept with `Layer::create(None, true)`)
//!     println!("exit code {code}, {} bytes fetched", stats.fetched_bytes);
//!     Ok(())
//! }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod container;
pub mod entrypoint;
pub mod error;
pub mod layer;
pub mod vm;

pub use container::{Container, ContainerSpec, Net, INIT_ARG};
pub use entrypoint::Entrypoint;
pub use error::RunError;
pub use layer::Layer;

/// Fails unless the process runs as root, saying why `what` needs it.
pub fn require_root(what: &str) -> Result<(), RunError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(RunError::NotRoot(what.to_string()))
    }
}

/// A host name from an flist's name or URL: `alice/app-1.2.flist` → `app-1-2`. Letters,
/// digits and `-` only, at most 63 characters; `flist` when nothing is left.
pub fn hostname_for(name: &str) -> String {
    let base = name
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(name);
    let base = base.split(['?', '#']).next().unwrap_or(base);
    let stem = base
        .strip_suffix(".flist")
        .or_else(|| base.strip_suffix(".fl"))
        .unwrap_or(base);
    let mut out = String::new();
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.trim_matches('-').chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "flist".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostnames() {
        assert_eq!(super::hostname_for("app.flist"), "app");
        assert_eq!(
            super::hostname_for("https://hub.example/alice/Web_App-1.2.flist"),
            "web-app-1-2"
        );
        assert_eq!(super::hostname_for("/tmp/x/.flist"), "flist");
        assert_eq!(super::hostname_for(&"a".repeat(100)).len(), 63);
        assert_eq!(super::hostname_for("x.fl"), "x");
    }
}
