//! The architecture says chunk stores know nothing of flists: this crate must not depend on
//! the format crate, must not parse JSON (the flist `backend` metadata is JSON), and no
//! source file may mention the metadata's fields. `flist-convert::backend` is the one place
//! where a backend becomes a store URL.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&p).expect("read source");
            out.push((p.display().to_string(), text));
        }
    }
}

#[test]
fn no_flist_metadata_code_in_the_store_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("manifest");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("a [dependencies] table");
    for forbidden in ["flist-format", "flist-convert", "serde_json", "serde"] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(forbidden)),
            "flist-store depends on {forbidden}"
        );
    }
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    assert!(files.len() > 5, "sources found: {}", files.len());
    for (path, text) in &files {
        for needle in [
            "backend_json",
            "KEY_BACKEND",
            "\"namespace\"",
            "\"host\"",
            "flist_format",
            "serde_json",
        ] {
            assert!(!text.contains(needle), "{path} mentions {needle}");
        }
    }
}
