//! `hub-server` replicas on one PostgreSQL catalog (the `cluster` group): what one replica
//! writes, the others list within their watch interval, caches included (before, a
//! replica's listing cache, keyed on its catalog generation, kept answering the catalog as
//! it was until that replica wrote something itself); with an S3 store (SeaweedFS) three
//! replicas behind the deployment's nginx answer as one hub, flist files included.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{names, upload_ok};

use sha2::Digest;
use test_support::seaweed::SeaweedServer;
use test_support::{HubProcess, Postgres};

fn bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_hub-server").into()
}

/// Waits (at most 10 s; a replica hears of a commit by its notification) until `h` lists
/// `want` for alice.
fn lists(h: &HubProcess, want: &[&str]) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = names(h, "alice");
        if got == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(got);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_replica_lists_what_another_wrote() {
    let url = Postgres::shared().create_database("replicas");
    let env = [("HUB_CATALOG", url.as_str()), ("HUB_AUTHENTICATION", "off")];
    let (a, b) = (
        HubProcess::start_with_env(&bin(), &env),
        HubProcess::start_with_env(&bin(), &env),
    );
    upload_ok(&a.url(), "one.tar.gz", b"one");
    // b caches its listing now...
    lists(&b, &["one.flist"]).expect("b lists a's first upload");
    // ...and a writes again: b must not keep answering from that cache.
    upload_ok(&a.url(), "two.tar.gz", b"two");
    lists(&b, &["one.flist", "two.flist"]).expect("b still lists its cached listing");
    upload_ok(&b.url(), "three.tar.gz", b"three");
    lists(&a, &["one.flist", "three.flist", "two.flist"]).expect("a lists b's upload");
}

fn port_of(h: &HubProcess) -> u16 {
    h.url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// The deployment's `cluster/nginx.conf` with its three replicas pointed at `hubs`.
fn load_balancer(hubs: &[&HubProcess]) -> test_support::nginx::Nginx {
    let conf = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deployment/cluster/nginx.conf"),
    )
    .expect("cluster/nginx.conf");
    let ports: Vec<u16> = hubs.iter().map(|h| port_of(h)).collect();
    test_support::nginx::Nginx::start(|lb_port| {
        let mut c = conf.replace("listen 80;", &format!("listen 127.0.0.1:{lb_port};"));
        for (i, p) in ports.iter().enumerate() {
            c = c.replace(&format!("hub{}:5555", i + 1), &format!("127.0.0.1:{p}"));
        }
        c
    })
}

/// Three replicas with their own data directories on one catalog and one S3 bucket, behind
/// nginx: uploads through the load balancer land on any replica, and every replica lists
/// them and serves the very same flist file (fetched from the bucket by the replicas that
/// did not convert it); a delete on one is seen by all; with a replica dead, the others
/// keep answering. Before, each replica kept its flist files in its own data directory and
/// the others answered its entries' downloads with an error.
#[test]
fn three_replicas_behind_nginx_answer_as_one_hub() {
    let catalog = Postgres::shared().create_database("three");
    let store = SeaweedServer::shared().url(&format!("three-{}", std::process::id()));
    let env = [
        ("HUB_CATALOG", catalog.as_str()),
        ("HUB_STORE", store.as_str()),
        ("HUB_AUTHENTICATION", "off"),
    ];
    let mut hubs: Vec<Option<HubProcess>> = (0..3)
        .map(|_| Some(HubProcess::start_with_env(&bin(), &env)))
        .collect();
    let lb = {
        let live: Vec<&HubProcess> = hubs.iter().flatten().collect();
        load_balancer(&live)
    };
    let want = ["a.flist", "b.flist", "c.flist", "d.flist"];
    for n in &want {
        // A different tree each: four flist files.
        upload_ok(&lb.url(), &n.replace(".flist", ".tar.gz"), n.as_bytes());
    }
    // Each upload was converted by one replica: the others hold no copy of its file yet
    // (the downloads below are what fetches them from the bucket).
    let local_files: usize = hubs
        .iter()
        .flatten()
        .map(|h| walk_files(&h.data_dir().join("flists")))
        .sum();
    assert_eq!(local_files, want.len(), "one local copy per upload");
    // ...and every replica lists them all and serves the same bytes for each.
    for n in &want {
        let mut digests = std::collections::BTreeSet::new();
        for h in hubs.iter().flatten() {
            lists(h, &want).expect("every replica lists every upload");
            let (status, body) = h.get(&format!("/alice/{n}"));
            assert_eq!(
                status,
                200,
                "{n} from {}: {}",
                h.url(),
                String::from_utf8_lossy(&body)
            );
            let f = tempfile::NamedTempFile::new().expect("temp");
            std::fs::write(f.path(), &body).expect("write");
            let flist = flist_format::Flist::open(f.path()).expect("a readable flist");
            // Every replica serves its chunks at /chunks/ from the private bucket (what
            // a hub with an S3 store announces unless told a public backend).
            let key = flist
                .tree
                .walk()
                .find_map(|id| match &flist.tree.node(id).kind {
                    flist_format::Kind::File { blocks, .. } => {
                        blocks.first().map(|b| hex::encode(b.id()))
                    }
                    _ => None,
                })
                .expect("a chunk");
            for other in hubs.iter().flatten() {
                let (status, chunk) = other.get(&format!("/chunks/{}/{key}", &key[..2]));
                assert_eq!(status, 200, "chunk {key} from {}", other.url());
                assert!(!chunk.is_empty());
            }
            digests.insert(hex::encode(sha2::Sha256::digest(&body)));
        }
        assert_eq!(
            digests.len(),
            1,
            "{n}: replicas serve different files: {digests:?}"
        );
    }
    // A delete through one replica is seen by the others.
    let r = reqwest::blocking::Client::new()
        .delete(format!(
            "{}/api/flist/me/a.flist",
            hubs[2].as_ref().expect("hub").url()
        ))
        .header("x-hub-user", "alice")
        .send()
        .expect("delete");
    assert_eq!(r.status(), 200, "{:?}", r.text());
    for h in hubs.iter().flatten() {
        lists(h, &want[1..]).expect("the delete is seen everywhere");
        assert_eq!(h.get("/alice/a.flist").0, 404);
    }
    // One replica dies: the load balancer's answers do not change.
    drop(hubs[0].take());
    for n in &want[1..] {
        for _ in 0..3 {
            let r = reqwest::blocking::get(format!("{}/alice/{n}", lb.url())).expect("GET");
            assert_eq!(r.status(), 200, "{n} with a replica down");
        }
    }
}

/// Number of files under `dir`, recursively.
fn walk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// Runs `hub-server args…` (with `stdin`), asserting success; its standard output.
fn admin(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(bin())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hub-server");
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes()).expect("stdin");
    }
    let out = child.wait_with_output().expect("hub-server");
    assert!(
        out.status.success(),
        "hub-server {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every admin command takes the cluster's settings and works from any machine that reaches
/// the database and the store (here: a data directory of its own each time): accounts,
/// organisations, visibility, tokens; a running replica sees the result at once.
#[test]
fn administration_works_on_the_cluster_from_anywhere() {
    let catalog = Postgres::shared().create_database("admin");
    let store = SeaweedServer::shared().url(&format!("admin-{}", std::process::id()));
    let hub = HubProcess::start_with_env(
        &bin(),
        &[
            ("HUB_CATALOG", catalog.as_str()),
            ("HUB_STORE", store.as_str()),
        ],
    );
    let elsewhere = |args: &[&str], stdin: &str| {
        let scratch = tempfile::tempdir().expect("scratch");
        let dir = scratch.path().display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", &dir, "--catalog", &catalog, "--store", &store]);
        admin(&all, stdin)
    };
    elsewhere(
        &["user", "add", "carol", "--password-stdin"],
        "a long enough password\n",
    );
    elsewhere(&["org", "create", "team", "--owner", "carol"], "");
    elsewhere(&["repo", "visibility", "team", "private"], "");
    assert!(elsewhere(&["org", "list"], "").contains("team"));
    let token = elsewhere(&["token", "create", "--user", "carol"], "");
    let token = token.trim();
    assert!(!token.is_empty());
    // The replica: the private repository is hidden from strangers, the token works.
    let (status, body) = hub.get("/api/repositories");
    assert_eq!(status, 200);
    assert!(!String::from_utf8_lossy(&body).contains("\"team\""));
    let (status, body) = hub.request(
        "GET",
        "/api/flist/me",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("carol"));
}
