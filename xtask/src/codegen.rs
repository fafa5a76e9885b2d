//! `cargo xtask codegen [--check]`: regenerates the checked-in Cap'n Proto bindings
//! (`crates/flist-format/src/flist_capnp.rs` from `crates/flist-format/schema/flist.capnp`).
//!
//! Needs the Cap'n Proto compiler `capnp` on PATH (Debian: `apt-get install capnproto`).
//! The Rust code generator is the `capnpc` crate linked into xtask, pinned to the same minor
//! version as the `capnp` runtime the workspace uses, so generated code and runtime match.
//! `--check` regenerates into a temporary directory and fails if the checked-in file differs.

use std::path::Path;

use anyhow::{bail, Context, Result};

const SCHEMA_DIR: &str = "crates/flist-format/schema";
const SCHEMA: &str = "crates/flist-format/schema/flist.capnp";
const OUT_DIR: &str = "crates/flist-format/src";
const OUT_FILE: &str = "flist_capnp.rs";

/// Regenerates generated code.
pub fn run(args: &[String]) -> Result<()> {
    let check = match args.first().map(String::as_str) {
        None => false,
        Some("--check") => true,
        Some(other) => bail!("usage: cargo xtask codegen [--check] (unknown argument {other:?})"),
    };
    if crate::which("capnp").is_none() {
        bail!(
            "the Cap'n Proto compiler `capnp` is not on PATH.\n\
             Install it (Debian: apt-get install -y capnproto) and run again."
        );
    }
    let root = crate::root();
    let tmp = std::env::temp_dir().join(format!("xtask-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = generate(&root, &tmp);
    let outcome = result.and_then(|()| {
        let fresh = tmp.join(OUT_FILE);
        let current = root.join(OUT_DIR).join(OUT_FILE);
        let new = std::fs::read(&fresh).with_context(|| format!("reading {}", fresh.display()))?;
        if check {
            let old = std::fs::read(&current)
                .with_context(|| format!("reading {}", current.display()))?;
            if old != new {
                bail!("{} is stale: run `cargo xtask codegen`", current.display());
            }
            println!("{} is up to date", current.display());
        } else {
            std::fs::write(&current, new)
                .with_context(|| format!("writing {}", current.display()))?;
            println!("wrote {}", current.display());
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&tmp);
    outcome
}

fn generate(root: &Path, out: &Path) -> Result<()> {
    capnpc::CompilerCommand::new()
        .src_prefix(root.join(SCHEMA_DIR))
        .file(root.join(SCHEMA))
        .output_path(out)
        .run()
        .with_context(|| format!("compiling {SCHEMA}"))
}
