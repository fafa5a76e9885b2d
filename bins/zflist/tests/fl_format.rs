//! The rfs `.fl` format through the real `zflist`: the golden files written by rfs v2.0.7
//! read exactly (find, extract byte-identical with modes, owners, links, empty files and
//! specials; the routed one over its two stores), `pack --format fl` giving rfs's block ids
//! and keys, `convert` round trips over a directory, Redis and a real 0-db, and every
//! command that takes an flist taking a `.fl`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::{p, stdout_ok, zflist_with};
use flist_format::{Block, Flist, Kind};
use serde_json::Value;
use sha2::{Digest, Sha256};
use test_support::{fixture, rfs_fixture, NsConfig, RedisServer, ZdbServer};

fn zf(args: &[&str]) -> String {
    stdout_ok(&zflist_with(args, &[]))
}

fn json(args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = zf(&a);
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

fn read_json(path: PathBuf) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn fixture_store() -> String {
    format!("dir://{}", rfs_fixture("store").display())
}

/// `ls -l`-like description of a tree on disk, by path: type and full mode, owner, mtime
/// (not of directories: their mtime changes as entries are created), size and sha256,
/// link target, device numbers.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let md = fs::symlink_metadata(&path).unwrap();
            let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
            let ft = md.file_type();
            let head = format!("{:o} {}:{}", md.mode(), md.uid(), md.gid());
            let desc = if ft.is_dir() {
                stack.push(path.clone());
                head
            } else if ft.is_symlink() {
                format!("{head} -> {}", fs::read_link(&path).unwrap().display())
            } else if ft.is_file() {
                let data = fs::read(&path).unwrap();
                format!(
                    "{head} {} {} {}",
                    md.mtime(),
                    data.len(),
                    hex::encode(Sha256::digest(&data))
                )
            } else if ft.is_block_device() || ft.is_char_device() {
                format!("{head} {} dev {}", md.mtime(), md.rdev())
            } else {
                format!("{head} {}", md.mtime())
            };
            out.insert(rel, desc);
        }
    }
    out
}

fn untar(archive: &Path, dest: &Path) {
    fs::create_dir_all(dest).unwrap();
    let st = std::process::Command::new("tar")
        .args(["--numeric-owner", "-xzf", p(archive), "-C", p(dest)])
        .status()
        .unwrap();
    assert!(st.success(), "tar -x {}", archive.display());
}

fn is_root() -> bool {
    // /proc/self belongs to the process's effective user.
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn find_of_the_rfs_fixture_is_the_reference_find_of_the_same_tree() {
    let ours = json(&["find", p(&rfs_fixture("fixture.fl"))]);
    let reference = read_json(fixture("fixture.zflist-find.json"));
    let set = |v: &Value| -> BTreeSet<(String, u64)> {
        v["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["path"].as_str().unwrap().to_string(),
                    e["size"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let (ours, reference) = (&ours["response"], &reference["response"]);
    assert_eq!(set(ours), set(reference));
    for k in ["regular", "symlink", "directory", "special", "fullsize"] {
        assert_eq!(ours[k], reference[k], "{k}");
    }
}

#[test]
fn the_rfs_fixture_extracts_byte_identical_to_its_source_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    untar(&fixture("fixture-tree.tar.gz"), &src);
    let out = tmp.path().join("out");
    zf(&[
        "extract",
        p(&rfs_fixture("fixture.fl")),
        p(&out),
        "--store",
        &fixture_store(),
    ]);
    let (want, got) = (describe(&src), describe(&out));
    if is_root() {
        // Owners, fifos and devices are restored as root: the whole tree is identical.
        assert_eq!(got, want);
    } else {
        for (path, desc) in &want {
            if !desc.contains(" dev ") {
                assert_eq!(
                    got.get(path)
                        .map(|d| d.split(' ').skip(2).collect::<Vec<_>>()),
                    Some(desc.split(' ').skip(2).collect()),
                    "{path}"
                );
            }
        }
    }
    // Empty files, links and modes are there (also checked above, named for the reader).
    assert!(got["/empty"].ends_with(&format!(" 0 {}", hex::encode(Sha256::digest(b"")))));
    assert!(got["/sublink"].ends_with("-> dir/sub"));
    assert!(got["/setuid-bin"].starts_with("104755 "));
    assert!(got["/secret"].starts_with("100600 1000:1000"));
}

#[test]
fn the_routed_rfs_fixture_extracts_over_its_two_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let low = format!("00-7f=dir://{}", rfs_fixture("low").display());
    let high = format!("80-ff=dir://{}", rfs_fixture("high").display());
    zf(&[
        "extract",
        p(&rfs_fixture("routed.fl")),
        p(&out),
        "--store",
        &low,
        "--store",
        &high,
    ]);
    let manifest = read_json(rfs_fixture("small.manifest.json"));
    let got = describe(&out);
    assert_eq!(got.len(), manifest.as_object().unwrap().len());
    for (path, e) in manifest.as_object().unwrap() {
        let d = &got[path];
        assert!(
            d.starts_with(&format!(
                "{:o} ",
                u32::from_str_radix(e["mode"].as_str().unwrap().trim_start_matches("0o"), 8)
                    .unwrap()
            )),
            "{path}: {d}"
        );
        if let Some(sha) = e["sha256"].as_str() {
            assert!(d.ends_with(&format!(" {} {sha}", e["size"])), "{path}: {d}");
        }
        if let Some(t) = e["target"].as_str() {
            assert!(d.ends_with(&format!("-> {t}")), "{path}: {d}");
        }
    }
    // Each half alone is not enough: the router is what reads it.
    let half = zflist_with(
        &[
            "extract",
            p(&rfs_fixture("routed.fl")),
            p(&tmp.path().join("x")),
            "--store",
            &format!("dir://{}", rfs_fixture("low").display()),
        ],
        &[],
    );
    assert!(!half.status.success());
}

/// Every file's blocks of an `.fl`, by path.
fn blocks_by_path(fl: &Path) -> BTreeMap<String, Vec<Block>> {
    let f = Flist::open(fl).unwrap();
    f.tree
        .walk()
        .filter_map(|id| match &f.tree.node(id).kind {
            Kind::File { blocks, .. } => Some((f.tree.path_of(id), blocks.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn pack_format_fl_gives_the_block_ids_and_keys_rfs_gave() {
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("dir://{}", tmp.path().join("store").display());
    for (tree, fl) in [
        ("fixture-tree.tar.gz", rfs_fixture("fixture.fl")),
        ("small", rfs_fixture("routed.fl")),
    ] {
        let archive = if tree == "small" {
            rfs_fixture("small.tar.gz")
        } else {
            fixture(tree)
        };
        let src = tmp.path().join(format!("src-{tree}"));
        untar(&archive, &src);
        let want = blocks_by_path(&fl);
        // From the directory (as rfs packed it), with --format, and from the archive by
        // the output's extension.
        let from_dir = tmp.path().join(format!("{tree}-dir.out"));
        zf(&[
            "pack",
            p(&src),
            "-o",
            p(&from_dir),
            "--format",
            "fl",
            "--store",
            &store,
        ]);
        assert_eq!(
            blocks_by_path(&from_dir),
            want,
            "{tree}: pack of the directory"
        );
        let from_tar = tmp.path().join(format!("{tree}-tar.fl"));
        zf(&["pack", p(&archive), "-o", p(&from_tar), "--store", &store]);
        assert_eq!(
            blocks_by_path(&from_tar),
            want,
            "{tree}: pack of the archive"
        );
        // The blocks we stored are byte for byte rfs's.
        if tree == "small" {
            for b in want.values().flatten() {
                let dir = if b.id()[0] < 128 { "low" } else { "high" };
                let theirs = fs::read(rfs_fixture(dir).join(b.id_hex())).unwrap();
                let h = b.id_hex();
                let ours = fs::read(tmp.path().join("store").join(&h[..2]).join(&h)).unwrap();
                assert_eq!(ours, theirs);
            }
        }
        // Same tree as rfs recorded (by find), and it reads back.
        let find = |f: &Path| {
            json(&["find", p(f)])["response"]["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.to_string())
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(find(&from_dir), find(&fl), "{tree}");
        let inspect = json(&["inspect", p(&from_dir)]);
        assert_eq!(inspect["response"]["format"], "fl");
        assert_eq!(inspect["response"]["routes"][0]["url"], store.as_str());
    }
}

/// The source tree of the round trips: every kind of entry with content.
fn sample(root: &Path) {
    untar(&fixture("fixture-tree.tar.gz"), root);
    // no devices or fifos outside root (extract would skip them)
    if !is_root() {
        for name in ["fifo", "chardev", "blockdev"] {
            let _ = fs::remove_file(root.join(name));
        }
    }
}

/// `.flist → .fl → .flist` and `.fl → .flist → .fl` through `store`: every step extracts
/// to the source tree, and the trip back gives the same chunk keys as the start.
fn round_trips(store: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample(&src);
    let want = describe(&src);
    let check = |flist: &Path, name: &str| {
        let out = tmp.path().join(format!("out-{name}"));
        zf(&["extract", p(flist), p(&out), "--store", store]);
        assert_eq!(describe(&out), want, "{name} over {store}");
        zf(&["verify", p(flist), "--deep", "--store", store]);
    };
    let a = tmp.path().join("a.flist");
    zf(&["pack", p(&src), "-o", p(&a), "--store", store]);
    let b = tmp.path().join("b.fl");
    let report = json(&[
        "convert",
        p(&a),
        p(&b),
        "--from-store",
        store,
        "--store",
        store,
    ]);
    assert_eq!(report["response"]["format"], "fl");
    let c = tmp.path().join("c.flist");
    zf(&[
        "convert",
        p(&b),
        p(&c),
        "--from-store",
        store,
        "--store",
        store,
    ]);
    for (f, n) in [(&a, "a.flist"), (&b, "b.fl"), (&c, "c.flist")] {
        check(f, n);
    }
    assert_eq!(
        blocks_by_path(&a),
        blocks_by_path(&c),
        ".flist → .fl → .flist keeps the chunks"
    );
    let find = |f: &Path| json(&["find", p(f)])["response"].clone();
    assert_eq!(find(&a), find(&c));

    // And from rfs's own file: .fl → .flist → .fl.
    let d = tmp.path().join("d.flist");
    zf(&[
        "convert",
        p(&rfs_fixture("fixture.fl")),
        p(&d),
        "--from-store",
        &fixture_store(),
        "--store",
        store,
    ]);
    let e = tmp.path().join("e.fl");
    zf(&[
        "convert",
        p(&d),
        p(&e),
        "--from-store",
        store,
        "--store",
        store,
    ]);
    assert_eq!(
        blocks_by_path(&e),
        blocks_by_path(&rfs_fixture("fixture.fl")),
        ".fl → .flist → .fl keeps rfs's blocks"
    );
    let out = tmp.path().join("out-e");
    zf(&["extract", p(&e), p(&out), "--store", store]);
    let mut got = describe(&out);
    if !is_root() {
        got.retain(|k, _| !["/fifo", "/chardev", "/blockdev"].contains(&k.as_str()));
    }
    let mut reference = describe(&{
        let r = tmp.path().join("ref");
        untar(&fixture("fixture-tree.tar.gz"), &r);
        r
    });
    if !is_root() {
        reference.retain(|k, _| !["/fifo", "/chardev", "/blockdev"].contains(&k.as_str()));
    }
    assert_eq!(
        got, reference,
        ".fl → .flist → .fl extracts to the source tree"
    );
}

#[test]
fn round_trips_over_a_directory_store() {
    let tmp = tempfile::tempdir().unwrap();
    round_trips(&format!("dir://{}", tmp.path().join("chunks").display()));
}

#[test]
fn round_trips_over_redis() {
    let server = RedisServer::start();
    round_trips(&server.url());
}

#[test]
fn round_trips_over_a_real_zero_db() {
    let server = ZdbServer::start();
    server.namespace(
        "blocks",
        NsConfig {
            password: Some("pw".into()),
            public: true,
            ..NsConfig::default()
        },
    );
    round_trips(&server.url("blocks", Some("pw")));
}

#[test]
fn every_flist_command_takes_an_fl() {
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("dir://{}", tmp.path().join("store").display());
    let src = tmp.path().join("src");
    untar(&rfs_fixture("small.tar.gz"), &src);
    let fl = tmp.path().join("small.fl");
    zf(&["pack", p(&src), "-o", p(&fl), "--store", &store]);
    // The routes recorded by pack are used by every reader: no --store from here on.
    let v = json(&["verify", p(&fl), "--deep"]);
    assert_eq!(v["response"]["failure"], 0);
    assert_eq!(
        zf(&["cat", p(&fl), "/hello.txt"]),
        fs::read_to_string(src.join("hello.txt")).unwrap()
    );
    let i = json(&["inspect", p(&fl)]);
    assert_eq!(i["response"]["regular"], 2);
    // diff: same flist, and the same tree converted to .flist (contents compared by bytes)
    zf(&["diff", p(&fl), p(&fl)]);
    let flist = tmp.path().join("small.flist");
    zf(&["convert", p(&fl), p(&flist)]);
    let d = zflist_with(&["diff", p(&fl), p(&flist)], &[]);
    // The note is on stderr: stdout holds the result only.
    let note = String::from_utf8_lossy(&d.stderr);
    assert!(
        note.contains("zflist: diff: note:") && note.contains("not compared"),
        "{d:?}"
    );
    assert!(
        !String::from_utf8_lossy(&d.stdout).contains("note:"),
        "{d:?}"
    );
    zf(&["diff", p(&fl), p(&flist), "--content", "--store", &store]);
    // derive: an .fl base gives an .fl with rfs blocks for the new file
    let derived = tmp.path().join("derived.fl");
    zf(&[
        "derive",
        p(&fl),
        "-o",
        p(&derived),
        "--set",
        "/new.txt=fresh",
        "--rm",
        "/link",
        "--store",
        &store,
    ]);
    assert_eq!(zf(&["cat", p(&derived), "/new.txt"]), "fresh");
    let f = Flist::open(&derived).unwrap();
    assert!(f.tree.lookup("link").is_none());
    assert_eq!(
        f.codecs().into_iter().collect::<Vec<_>>(),
        [flist_format::Codec::Rfs]
    );
    // a session opened from an .fl stays an .fl: find, put, merge another .fl, commit
    let mnt = tmp.path().join("mnt");
    zf(&["--mnt", p(&mnt), "open", p(&fl)]);
    let listed = json(&["--mnt", p(&mnt), "find"]);
    assert_eq!(listed["response"]["regular"], 2);
    fs::write(tmp.path().join("added.txt"), b"added\n").unwrap();
    zf(&[
        "--mnt",
        p(&mnt),
        "--store",
        &store,
        "put",
        p(&tmp.path().join("added.txt")),
        "/added.txt",
    ]);
    zf(&["--mnt", p(&mnt), "merge", p(&derived)]);
    let refused = zflist_with(&["--mnt", p(&mnt), "merge", p(&flist)], &[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("convert"),
        "{refused:?}"
    );
    let committed = tmp.path().join("committed.fl");
    zf(&["--mnt", p(&mnt), "commit", p(&committed)]);
    let out = tmp.path().join("out");
    zf(&["extract", p(&committed), p(&out), "--store", &store]);
    assert_eq!(fs::read(out.join("added.txt")).unwrap(), b"added\n");
    assert_eq!(fs::read(out.join("new.txt")).unwrap(), b"fresh");
    assert_eq!(
        fs::read(out.join("random.bin")).unwrap(),
        fs::read(src.join("random.bin")).unwrap()
    );
    // committing an .fl session as .flist needs a conversion, and says so
    let wrong = zflist_with(
        &["--mnt", p(&mnt), "commit", p(&tmp.path().join("x.flist"))],
        &[],
    );
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("convert"),
        "{wrong:?}"
    );
}

#[test]
fn every_flist_command_takes_an_fl_url() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    fs::create_dir_all(&site).unwrap();
    let server = test_support::http::FileServer::start(&site);
    let src = tmp.path().join("src");
    untar(&rfs_fixture("small.tar.gz"), &src);
    // A boot.yaml whose "kernel" is text: check-vm has to read its bytes to say so.
    fs::create_dir_all(src.join("boot")).unwrap();
    fs::write(
        src.join("boot/boot.yaml"),
        "kernel: /boot/vmlinuz\ninitrd: /boot/initrd.img\n",
    )
    .unwrap();
    fs::write(
        src.join("boot/vmlinuz"),
        b"not a kernel at all\n".repeat(100),
    )
    .unwrap();
    fs::write(src.join("boot/initrd.img"), b"not an initrd\n").unwrap();
    // Published as a website would: the .fl, its .md5 and its blocks over http, the
    // route naming the http store (nothing else given to the readers below).
    let store = format!("dir://{}", site.join("chunks").display());
    let file = site.join("app.fl");
    let public = format!("{}/chunks", server.url());
    zf(&[
        "pack",
        p(&src),
        "-o",
        p(&file),
        "--store",
        &store,
        "--public-backend",
        &public,
    ]);
    let md5 = hex::encode(md5::Md5::digest(fs::read(&file).unwrap()));
    fs::write(site.join("app.fl.md5"), format!("{md5}\n")).unwrap();
    let routes = Flist::open(&file).unwrap().metadata.routes;
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].url, public);
    let url = format!("{}/app.fl", server.url());

    let i = json(&["inspect", &url]);
    assert_eq!(i["response"]["md5_checked"], true, "{i}");
    assert_eq!(i["response"]["regular"], 5, "{i}");
    assert_eq!(
        zf(&["find", &url]),
        zf(&["find", p(&file)]),
        "find of the URL is find of the file"
    );
    let v = json(&["verify", &url, "--deep"]);
    assert_eq!(v["response"]["failure"], 0, "{v}");
    assert_eq!(
        zf(&["cat", &url, "/hello.txt"]),
        fs::read_to_string(src.join("hello.txt")).unwrap()
    );
    let out = tmp.path().join("out");
    zf(&["extract", &url, p(&out)]);
    if is_root() {
        assert_eq!(describe(&out), describe(&src));
    } else {
        assert_eq!(
            fs::read(out.join("random.bin")).unwrap(),
            fs::read(src.join("random.bin")).unwrap()
        );
    }
    zf(&["diff", &url, p(&file)]);
    // derive from the URL: the result is an .fl sharing the base's blocks
    let derived = tmp.path().join("derived.fl");
    zf(&[
        "derive",
        &url,
        "-o",
        p(&derived),
        "--set",
        "/new.txt=fresh",
        "--store",
        &store,
    ]);
    assert_eq!(zf(&["cat", p(&derived), "/new.txt"]), "fresh");
    assert_eq!(
        zf(&["cat", p(&derived), "/hello.txt"]),
        fs::read_to_string(src.join("hello.txt")).unwrap()
    );
    // a session: open the URL, merge it into another
    let mnt = tmp.path().join("mnt");
    zf(&["--mnt", p(&mnt), "open", p(&derived)]);
    zf(&["--mnt", p(&mnt), "merge", &url]);
    let listed = json(&["--mnt", p(&mnt), "find"]);
    assert_eq!(listed["response"]["regular"], 6, "{listed}");
    // convert the URL to an .flist, which extracts to the same tree
    let flist = tmp.path().join("app.flist");
    let other = format!("dir://{}", tmp.path().join("other").display());
    zf(&["convert", &url, p(&flist), "--store", &other]);
    let back = tmp.path().join("back");
    zf(&["extract", p(&flist), p(&back), "--store", &other]);
    assert_eq!(
        fs::read(back.join("random.bin")).unwrap(),
        fs::read(src.join("random.bin")).unwrap()
    );
    // check-vm reads the kernel's first bytes through the route
    let vm = zflist_with(&["check-vm", &url], &[]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&vm.stdout),
        String::from_utf8_lossy(&vm.stderr)
    );
    assert!(said.contains("not a Linux kernel image"), "{said}");
    assert!(
        server.requests("/app.fl.md5") >= 8,
        "every command checked the md5"
    );
    assert!(server.requests_under("/chunks/") > 0);
}

#[test]
fn convert_lists_what_the_target_cannot_record() {
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("dir://{}", tmp.path().join("store").display());
    // The reference .flist names uid 1000 "cloudsdk": .fl keeps the number only.
    let chunks = format!("dir://{}", tmp.path().join("ref").display());
    fs::create_dir_all(tmp.path().join("ref")).unwrap();
    for e in fs::read_dir(fixture("chunks")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let d = tmp.path().join("ref").join(&name[..2]);
        fs::create_dir_all(&d).unwrap();
        fs::copy(e.path(), d.join(&name)).unwrap();
    }
    let out = tmp.path().join("x.fl");
    let r = json(&[
        "convert",
        p(&fixture("fixture.flist")),
        p(&out),
        "--from-store",
        &chunks,
        "--store",
        &store,
    ]);
    let lost = r["response"]["not_carried"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{r}");
    assert_eq!(lost[0]["count"], 1);
    assert!(lost[0]["example"]
        .as_str()
        .unwrap()
        .contains("/secret cloudsdk"));
    let run = zflist_with(
        &[
            "convert",
            p(&fixture("fixture.flist")),
            p(&out),
            "--from-store",
            &chunks,
            "--store",
            &store,
        ],
        &[],
    );
    stdout_ok(&run);
    // A warning, on stderr (stdout holds the result only).
    let warned = String::from_utf8_lossy(&run.stderr);
    assert!(
        warned.contains("zflist: convert: warning: not carried by .fl: owner or group names"),
        "{warned}"
    );
    // The routed .fl has two routes; an .flist records one backend.
    let low = format!("00-7f=dir://{}", rfs_fixture("low").display());
    let high = format!("80-ff=dir://{}", rfs_fixture("high").display());
    let back = tmp.path().join("r.flist");
    let r = json(&[
        "convert",
        p(&rfs_fixture("routed.fl")),
        p(&back),
        "--from-store",
        &low,
        "--from-store",
        &high,
        "--store",
        &store,
    ]);
    assert_eq!(r["response"]["not_carried"][0]["count"], 2, "{r}");
    // A missing block names itself, and no file is written.
    let gone = tmp.path().join("gone.flist");
    let fail = zflist_with(
        &[
            "convert",
            p(&rfs_fixture("routed.fl")),
            p(&gone),
            "--from-store",
            &low.replace("00-7f", "00-ff"),
            "--store",
            &store,
        ],
        &[],
    );
    assert!(!fail.status.success());
    assert!(
        String::from_utf8_lossy(&fail.stderr).contains("missing"),
        "{fail:?}"
    );
    assert!(!gone.exists());
}
