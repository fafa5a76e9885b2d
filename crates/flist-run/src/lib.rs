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

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod container;
pub mod entrypoint;
pub mod error;
pub mod layer;
pub mod vm;

pub use container::{Container, ContainerSpec, Net};
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
