//! `cargo xtask test [GROUP|CRATE] [-- CARGO-TEST-ARGS]`: which tests a run covers.
//!
//! - `all` (the default): every crate's unit, integration, example and doc tests.
//! - `fast`: unit and integration tests of every crate except the slow groups below (no doc
//!   tests).
//! - a slow group (see [`SLOW`]): `oci` (a real registry and skopeo), `browser` (a real
//!   Chromium), `mount` (FUSE, containers), `vm` (QEMU), `cluster` (PostgreSQL and
//!   SeaweedFS): the integration test targets whose file name starts with one of its
//!   prefixes.
//! - a crate name (`flist-store`, `zflist`, `hub-http`, ...): that crate's tests.
//!
//! A new slow integration test joins its group by its file name (`tests/oci_*.rs`,
//! `tests/browser_*.rs`, ...), or by adding a prefix here.

use std::path::Path;

use anyhow::{bail, Result};

/// Slow groups: (name, file-name prefixes of its integration test targets, what it needs).
pub const SLOW: &[(&str, &[&str], &str)] = &[
    (
        "oci",
        &["oci", "docker"],
        "OCI images: a real docker-registry and skopeo",
    ),
    (
        "browser",
        &["browser", "web"],
        "web pages in a real Chromium (chromium-driver)",
    ),
    (
        "mount",
        &["mount", "vm_sign_derive"],
        "FUSE mounts as root, a debootstrap root file system, a Debian kernel via apt, `zflist run` containers",
    ),
    (
        "vm",
        &["vm_boot"],
        "`zflist vm boot`: QEMU boots a debootstrap tree with linux-image-amd64 (cached under target/)",
    ),
    (
        "cluster",
        &["cluster"],
        "a throwaway PostgreSQL 15 cluster and SeaweedFS (S3), started by the harness",
    ),
];

/// Names of the integration test targets of the workspace members.
fn test_targets() -> Vec<String> {
    let root = crate::root();
    let mut names = Vec::new();
    for parent in ["crates", "bins"] {
        let Ok(dirs) = std::fs::read_dir(root.join(parent)) else {
            continue;
        };
        for d in dirs.flatten() {
            collect(&d.path().join("tests"), &mut names);
        }
    }
    for single in ["xtask", "benches"] {
        collect(&root.join(single).join("tests"), &mut names);
    }
    names.sort();
    names.dedup();
    names
}

fn collect(tests: &Path, names: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(tests) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".rs") {
            names.push(stem.to_owned());
        } else if path.join("main.rs").is_file() {
            names.push(name);
        }
    }
}

fn slow_group_of(target: &str) -> Option<&'static str> {
    SLOW.iter()
        .find(|(_, prefixes, _)| prefixes.iter().any(|p| target.starts_with(p)))
        .map(|(g, _, _)| *g)
}

/// Workspace member package names (from each member's Cargo.toml `name = `).
fn packages() -> Vec<String> {
    let root = crate::root();
    let mut out = Vec::new();
    let mut dirs = Vec::new();
    for parent in ["crates", "bins"] {
        if let Ok(rd) = std::fs::read_dir(root.join(parent)) {
            dirs.extend(rd.flatten().map(|d| d.path()));
        }
    }
    dirs.push(root.join("xtask"));
    dirs.push(root.join("benches"));
    for d in dirs {
        let Ok(text) = std::fs::read_to_string(d.join("Cargo.toml")) else {
            continue;
        };
        if let Some(name) = text.lines().find_map(|l| {
            let l = l.trim();
            l.strip_prefix("name")
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_owned())
        }) {
            out.push(name);
        }
    }
    out
}

/// The cargo invocations (argument lists) a group runs.
pub fn plan(group: &str) -> Result<Vec<Vec<String>>> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    if group == "all" {
        return Ok(vec![
            s(&["test", "--workspace", "--all-targets"]),
            s(&["test", "--workspace", "--doc"]),
        ]);
    }
    if group == "fast" {
        let mut args = s(&["test", "--workspace", "--lib", "--bins"]);
        for t in test_targets() {
            if slow_group_of(&t).is_none() {
                args.push("--test".into());
                args.push(t);
            }
        }
        return Ok(vec![args]);
    }
    if SLOW.iter().any(|(g, _, _)| *g == group) {
        let targets: Vec<String> = test_targets()
            .into_iter()
            .filter(|t| slow_group_of(t) == Some(group))
            .collect();
        if targets.is_empty() {
            bail!("group {group}: no test target in it yet");
        }
        let mut args = s(&["test", "--workspace"]);
        for t in targets {
            args.push("--test".into());
            args.push(t);
        }
        return Ok(vec![args]);
    }
    if packages().iter().any(|p| p == group) {
        return Ok(vec![s(&["test", "-p", group])]);
    }
    bail!(
        "unknown test group or crate {group:?}. Groups: all, fast, {}; crates: {}",
        SLOW.iter()
            .map(|(g, _, _)| *g)
            .collect::<Vec<_>>()
            .join(", "),
        packages().join(", ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn targets_of(plan: &[Vec<String>]) -> Vec<String> {
        plan.iter()
            .flat_map(|args| {
                args.windows(2)
                    .filter(|w| w[0] == "--test")
                    .map(|w| w[1].clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn fast_leaves_out_the_slow_groups_and_they_hold_them() {
        let all = test_targets();
        assert!(all.iter().any(|t| t == "oci_images"), "{all:?}");
        let fast = targets_of(&plan("fast").expect("fast"));
        let oci = targets_of(&plan("oci").expect("oci"));
        assert!(oci.iter().any(|t| t == "oci_images") && oci.iter().any(|t| t == "docker"));
        assert!(fast.iter().all(|t| !oci.contains(t)), "{fast:?}");
        assert!(fast.iter().any(|t| t == "zdb") && fast.iter().any(|t| t == "cli"));
        let cluster = targets_of(&plan("cluster").expect("cluster"));
        assert!(cluster.iter().any(|t| t == "cluster_s3"), "{cluster:?}");
        assert!(fast.iter().all(|t| !cluster.contains(t)), "{fast:?}");
        // Every target is in fast or in one slow group.
        for t in all {
            assert!(fast.contains(&t) || slow_group_of(&t).is_some(), "{t}");
        }
    }

    #[test]
    fn crates_and_unknown_names() {
        assert_eq!(
            plan("flist-store").expect("crate"),
            vec![vec!["test".to_string(), "-p".into(), "flist-store".into()]]
        );
        let err = plan("nosuch").unwrap_err().to_string();
        assert!(err.contains("fast") && err.contains("flist-store"), "{err}");
    }
}
