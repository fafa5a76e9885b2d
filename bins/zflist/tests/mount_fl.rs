//! `zflist mount` of an rfs `.fl`: the tree of rfs's routed fixture served over FUSE, its
//! blocks read through the router its two stores make. Runs as root (as CI does).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::os::unix::fs::MetadataExt;

use serde_json::Value;
use sha2::{Digest, Sha256};
use test_support::rfs_fixture;

mod common;
use common::*;

#[test]
fn an_fl_mounts_and_reads_over_its_two_routed_stores() {
    mounts_and_reads(false);
}

#[test]
fn an_fl_url_mounts_and_reads_over_its_two_routed_stores() {
    mounts_and_reads(true);
}

/// Mounts rfs's routed fixture (a file, or a URL of it) and checks every entry against
/// the manifest of its source tree.
fn mounts_and_reads(by_url: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let mp = tmp.path().join("mnt");
    let low = format!("00-7f=dir://{}", rfs_fixture("low").display());
    let high = format!("80-ff=dir://{}", rfs_fixture("high").display());
    let site = tmp.path().join("site");
    fs::create_dir_all(&site).unwrap();
    fs::copy(rfs_fixture("routed.fl"), site.join("routed.fl")).unwrap();
    let server = test_support::http::FileServer::start(&site);
    let fl = if by_url {
        format!("{}/routed.fl", server.url())
    } else {
        p(&rfs_fixture("routed.fl")).to_string()
    };
    let m = MountProc::start(&fl, &mp, &["--store", &low, "--store", &high, "--no-cache"]);
    let manifest: Value =
        serde_json::from_slice(&fs::read(rfs_fixture("small.manifest.json")).unwrap()).unwrap();
    for (path, e) in manifest.as_object().unwrap() {
        let at = mp.join(path.trim_start_matches('/'));
        let md = fs::symlink_metadata(&at).unwrap();
        let mode = u32::from_str_radix(e["mode"].as_str().unwrap().trim_start_matches("0o"), 8);
        assert_eq!(Ok(md.mode()), mode, "{path}");
        assert_eq!(md.mtime() as u64, e["mtime"].as_u64().unwrap(), "{path}");
        if let Some(sha) = e["sha256"].as_str() {
            assert_eq!(
                hex::encode(Sha256::digest(fs::read(&at).unwrap())),
                sha,
                "{path}"
            );
        }
        if let Some(t) = e["target"].as_str() {
            assert_eq!(fs::read_link(&at).unwrap().to_str(), Some(t), "{path}");
        }
    }
    let report = m.stop();
    // Every block of random.bin and hello.txt came from the stores (no cache).
    assert!(report["fetched_chunks"].as_u64().unwrap() >= 4, "{report}");
    assert_eq!(server.requests("/routed.fl"), usize::from(by_url));
}
