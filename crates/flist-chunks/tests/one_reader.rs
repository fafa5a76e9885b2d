//! The architecture says chunks are read through this crate only: no other crate's sources
//! (tests, examples and the format's codec aside) decode a chunk or check a plaintext hash,
//! and the mount stays free of the converters.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&p).expect("read source");
            out.push((p, text));
        }
    }
}

#[test]
fn no_other_crate_decodes_or_checks_chunks_itself() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for parent in ["crates", "bins"] {
        for e in std::fs::read_dir(workspace.join(parent))
            .expect("workspace")
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            // the codec itself, and this layer
            if name == "flist-format" || name == "flist-chunks" {
                continue;
            }
            sources(&e.path().join("src"), &mut files);
        }
    }
    assert!(files.len() > 50, "sources found: {}", files.len());
    for (path, text) in &files {
        for needle in ["decode_chunk(", "matches_plain(", "decode_block("] {
            assert!(
                !text.contains(needle),
                "{} calls {needle}: read chunks through flist-chunks",
                path.display()
            );
        }
    }
}

#[test]
fn the_mount_depends_on_the_reading_layer_not_on_the_converters() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest =
        std::fs::read_to_string(workspace.join("crates/flist-mount/Cargo.toml")).expect("manifest");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("a [dependencies] table");
    let has = |d: &str| deps.lines().any(|l| l.trim_start().starts_with(d));
    assert!(
        has("flist-chunks"),
        "flist-mount reads through flist-chunks"
    );
    assert!(
        !has("flist-convert"),
        "flist-mount depends on flist-convert"
    );
}
