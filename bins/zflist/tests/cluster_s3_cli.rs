//! `zflist pack/verify/extract --store s3://…` against a real SeaweedFS (the `cluster`
//! group), as a user runs them.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::{p, stdout_ok as ok, zflist_with as zflist};

use std::fs;

use test_support::seaweed::{ACCESS_KEY, SECRET_KEY};
use test_support::SeaweedServer;

fn tree(root: &std::path::Path) {
    fs::create_dir_all(root.join("etc/deep")).unwrap();
    fs::write(root.join("etc/motd"), b"hello from s3\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(root.join("etc/deep/big.bin"), big).unwrap();
    std::os::unix::fs::symlink("motd", root.join("etc/link")).unwrap();
}

#[test]
fn pack_verify_extract_through_s3() {
    let s3 = SeaweedServer::shared();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src);
    let flist = tmp.path().join("app.flist");
    let url = s3.url("cli-pack");

    let out = ok(&zflist(
        &["pack", p(&src), "-o", p(&flist), "--store", &url],
        &[],
    ));
    assert!(out.contains("written"), "{out}");
    assert!(!out.contains(SECRET_KEY), "{out}");
    let out = ok(&zflist(&["verify", p(&flist), "--store", &url], &[]));
    assert!(out.contains("0 missing"), "{out}");
    let dest = tmp.path().join("out");
    ok(&zflist(
        &["extract", p(&flist), p(&dest), "--store", &url],
        &[],
    ));
    assert_eq!(
        fs::read(dest.join("etc/deep/big.bin")).unwrap(),
        fs::read(src.join("etc/deep/big.bin")).unwrap()
    );
    assert_eq!(
        fs::read_link(dest.join("etc/link")).unwrap().to_str(),
        Some("motd")
    );

    // The same bucket with the credentials from the environment.
    let bare = s3.url_without_credentials("cli-pack");
    let out = ok(&zflist(
        &["verify", p(&flist), "--store", &bare],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    ));
    assert!(out.contains("0 missing"), "{out}");

    // A wrong secret: one clear line, exit status 1, no secret.
    let wrong = format!(
        "s3://{ACCESS_KEY}:wrong-{SECRET_KEY}@127.0.0.1:{}/cli-pack",
        s3.port()
    );
    let out = zflist(&["verify", p(&flist), "--store", &wrong], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains(SECRET_KEY), "{err}");
}
