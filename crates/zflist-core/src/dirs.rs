//! The user's cache and configuration directories (XDG base directories).

use std::path::PathBuf;

/// `$<var>`, else `$HOME/<fallback>`, joined with `zflist/<leaf>`.
fn xdg(var: &str, fallback: &str, leaf: &str) -> Option<PathBuf> {
    let base = std::env::var_os(var)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|s| !s.is_empty())
                .map(|h| PathBuf::from(h).join(fallback))
        })?;
    let dir = base.join("zflist");
    Some(if leaf.is_empty() { dir } else { dir.join(leaf) })
}

/// `$XDG_CACHE_HOME/zflist/<leaf>`, else `$HOME/.cache/zflist/<leaf>` (`layers` for image
/// layers, `chunks` for the mount's chunk cache).
pub fn cache_dir(leaf: &str) -> Option<PathBuf> {
    xdg("XDG_CACHE_HOME", ".cache", leaf)
}

/// `$XDG_CONFIG_HOME/zflist`, else `$HOME/.config/zflist`.
pub fn config_dir() -> Option<PathBuf> {
    xdg("XDG_CONFIG_HOME", ".config", "")
}
