//! The writable layer over a read-only flist mount: a kernel overlayfs whose `lowerdir` is
//! the FUSE mount and whose `upperdir`/`workdir` live in a private temporary directory.
//! Writes land in `upper/`; the flist and the chunk cache never change. The directory is
//! removed when the layer is finished, unless it is kept.
//!
//! ```text
//! zflist-run-XXXXXX/   (0700)
//!   lower/   the FUSE mount of the flist (read-only)
//!   upper/   what the container or VM wrote
//!   work/    overlayfs's scratch directory
//!   root/    the merged tree (the container's or the VM's root)
//! ```

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::error::RunError;

/// A private directory holding the mount points and the overlay's directories.
#[derive(Debug)]
pub struct Layer {
    dir: Option<PathBuf>,
    keep: bool,
    /// True once the overlay is mounted at `root/` in this mount namespace.
    mounted: bool,
}

impl Layer {
    /// Creates `zflist-run-XXXXXX` under `parent` (default: the temporary directory) with
    /// its four subdirectories. `keep`: [`Layer::finish`] leaves `upper/` in place.
    pub fn create(parent: Option<&Path>, keep: bool) -> Result<Layer, RunError> {
        let parent = parent
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("zflist-run-")
            .tempdir_in(&parent)
            .map_err(|e| RunError::io("creating a layer directory in", &parent, e))?
            .keep();
        let layer = Layer {
            dir: Some(dir.clone()),
            keep,
            mounted: false,
        };
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| RunError::io("securing", &dir, e))?;
        for sub in ["lower", "upper", "work", "root"] {
            let p = dir.join(sub);
            std::fs::create_dir(&p).map_err(|e| RunError::io("creating", &p, e))?;
        }
        // overlayfs options are a comma-separated list: refuse paths it would misread
        let shown = dir.to_string_lossy();
        if shown.contains([',', ':', '\\']) || shown.contains(char::is_whitespace) {
            return Err(RunError::io(
                "using",
                &dir,
                std::io::Error::other(
                    "overlayfs cannot take a path with ',', ':', '\\' or spaces: set TMPDIR",
                ),
            ));
        }
        Ok(layer)
    }

    fn dir(&self) -> &Path {
        self.dir.as_deref().unwrap_or(Path::new("/nonexistent"))
    }

    /// The directory holding everything.
    pub fn path(&self) -> &Path {
        self.dir()
    }

    /// Where the flist is mounted read-only.
    pub fn lower(&self) -> PathBuf {
        self.dir().join("lower")
    }

    /// The overlay's upper directory (the writes).
    pub fn upper(&self) -> PathBuf {
        self.dir().join("upper")
    }

    /// The overlay's work directory.
    pub fn work(&self) -> PathBuf {
        self.dir().join("work")
    }

    /// The merged root.
    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }

    /// Mounts the overlay at [`Layer::root`] in this process's mount namespace (a VM's
    /// root; a container mounts it in its own namespace with [`mount_overlay`]).
    pub fn mount(&mut self) -> Result<(), RunError> {
        mount_overlay(&self.lower(), &self.upper(), &self.work(), &self.root())?;
        self.mounted = true;
        Ok(())
    }

    /// Unmounts the overlay mounted by [`Layer::mount`] (before the flist's mount under it
    /// can be unmounted).
    pub fn unmount(&mut self) -> Result<(), RunError> {
        if self.mounted {
            let root = self.root();
            nix::mount::umount2(&root, MntFlags::empty())
                .or_else(|_| nix::mount::umount2(&root, MntFlags::MNT_DETACH))
                .map_err(|e| RunError::sys(format!("unmounting {}", root.display()), e))?;
            self.mounted = false;
        }
        Ok(())
    }

    /// Unmounts the overlay (when mounted here) and removes the directory, or only its
    /// mount points when kept; returns the kept upper directory. The flist's mount at
    /// `lower/` must be gone: a directory with a mount still on it is left alone.
    pub fn finish(mut self) -> Result<Option<PathBuf>, RunError> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Result<Option<PathBuf>, RunError> {
        let Some(dir) = self.dir.clone() else {
            return Ok(None);
        };
        self.unmount()?;
        for sub in ["lower", "root"] {
            let p = dir.join(sub);
            if is_mount_point(&p) {
                self.dir = None;
                return Err(RunError::io(
                    "removing",
                    &p,
                    std::io::Error::other("a file system is still mounted there; left in place"),
                ));
            }
        }
        self.dir = None;
        if self.keep {
            for sub in ["lower", "root", "work"] {
                let _ = std::fs::remove_dir_all(dir.join(sub));
            }
            return Ok(Some(dir.join("upper")));
        }
        std::fs::remove_dir_all(&dir).map_err(|e| RunError::io("removing", &dir, e))?;
        Ok(None)
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

/// True when `path` is on another device than its parent (something is mounted on it).
fn is_mount_point(path: &Path) -> bool {
    let (Ok(m), Some(parent)) = (std::fs::symlink_metadata(path), path.parent()) else {
        return false;
    };
    std::fs::symlink_metadata(parent).is_ok_and(|p| p.dev() != m.dev())
}

/// Mounts an overlayfs of `lower` (read-only) and `upper` (writes) at `target`.
pub fn mount_overlay(
    lower: &Path,
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RunError> {
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| {
        RunError::sys(
            format!(
                "mounting the writable overlay at {} (lower {})",
                target.display(),
                lower.display()
            ),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_removal() {
        let parent = tempfile::tempdir().unwrap();
        let layer = Layer::create(Some(parent.path()), false).unwrap();
        let dir = layer.path().to_path_buf();
        for p in [layer.lower(), layer.upper(), layer.work(), layer.root()] {
            assert!(p.is_dir());
        }
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::write(layer.upper().join("x"), b"1").unwrap();
        assert_eq!(layer.finish().unwrap(), None);
        assert!(!dir.exists());

        let kept = Layer::create(Some(parent.path()), true).unwrap();
        std::fs::write(kept.upper().join("x"), b"1").unwrap();
        let upper = kept.finish().unwrap().unwrap();
        assert_eq!(std::fs::read(upper.join("x")).unwrap(), b"1");
        assert!(!upper.parent().unwrap().join("lower").exists());
    }
}
