//! A catalog holding a 200,000-entry flist, and the resident memory of a process: shared by
//! the load tests of the web pages and of the other heavy public routes.

use std::path::Path;

use flist_format::{Flist, Kind, Meta, Metadata, Tree};
use hub_repo::{Actor, FlistInfo, Hub};

/// Resident set size of process `pid` in KiB (0 when it is gone).
pub fn vm_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// 200,101 entries: `/big` holds 100,000 files, `/d000`..`/d099` 1,000 files each.
pub fn big_tree() -> Tree {
    let m = Meta::root(0o755, 1_700_000_000);
    let f = Meta::root(0o644, 1_700_000_000);
    let mut tree = Tree::new(m.clone());
    let big = tree.mkdir_p("big", &m).expect("mkdir");
    for i in 0..100_000u64 {
        tree.insert(
            big,
            &format!("file-{i:06}.dat"),
            f.clone(),
            Kind::File {
                size: i,
                blocks: vec![],
            },
        )
        .expect("insert");
    }
    for d in 0..100 {
        let dir = tree.mkdir_p(&format!("d{d:03}"), &m).expect("mkdir");
        for i in 0..1000u64 {
            tree.insert(
                dir,
                &format!("entry-{i:04}"),
                f.clone(),
                Kind::File {
                    size: i,
                    blocks: vec![],
                },
            )
            .expect("insert");
        }
    }
    tree
}

/// Stores the 200,000-entry flist as `bigrepo/big.flist` in the catalog under `data`, its
/// metadata and dump computed at upload as the hub does. With `raw`, the same tree (other
/// metadata, so another file) is also stored as `bigrepo/raw.flist` without them, as a
/// mirror or a legacy import may store a file: the hub parses it when first asked.
pub fn seed(data: &Path, raw: bool) {
    let tree = big_tree();
    assert!(tree.len() > 200_000, "{} entries", tree.len());
    let hub = Hub::open(data).expect("open hub");
    let actor = Actor::new("bigrepo", vec![]);
    let tmp = data.join("big.flist.tmp");
    let mut fl = Flist {
        tree,
        metadata: Metadata::new(),
    };
    fl.write(&tmp).expect("write flist");
    let staged = hub.catalog().stage_file(&tmp).expect("stage");
    hub.catalog()
        .put_flist(
            &actor,
            "bigrepo",
            "big.flist",
            staged,
            hub_repo::inspect::info_of(&fl, None),
        )
        .expect("put");
    if raw {
        fl.metadata
            .set("readme", "# raw\nthe same tree, parsed on demand");
        fl.write(&tmp).expect("write flist");
        let staged = hub.catalog().stage_file(&tmp).expect("stage");
        hub.catalog()
            .put_flist(&actor, "bigrepo", "raw.flist", staged, FlistInfo::default())
            .expect("put raw");
    }
}
