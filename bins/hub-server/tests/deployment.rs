//! The production layout of `deployment/` run on this machine: `hub-server serve --config`
//! from `hub.production.toml` (addresses pointed at loopback), chunks in a private real 0-db
//! with a password-protected namespace as `zdb-setup.sh` makes it, readers served by the
//! hub's own 0-db endpoint (`zdb_listen`); upload, download, extract.

mod common;

use std::path::Path;

use common::{free_port, ok, run, serve, zflist_bin, BIN};
use serde_json::Value;

fn deployment(file: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deployment")
        .join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `hub.production.toml` with the values of `keys` replaced (each key must be present).
fn production_config(keys: &[(&str, String)]) -> String {
    let mut text = deployment("hub.production.toml");
    for (k, v) in keys {
        let prefix = format!("{k} = ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("hub.production.toml has no {k}"))
            .to_string();
        text = text.replace(&line, &format!("{k} = {v:?}"));
    }
    text
}

#[tokio::test]
async fn production_layout_with_a_real_zdb() {
    // The units and the setup script describe the layout tested below.
    let hub_unit = deployment("hub-server.service");
    assert!(hub_unit.contains("serve --config /etc/flist-hub/hub.toml"));
    let zdb_unit = deployment("zdb.service");
    assert!(zdb_unit.contains("--mode user") && zdb_unit.contains("--port 9901"));
    assert!(zdb_unit.contains("--listen 127.0.0.1"));
    let setup = deployment("zdb-setup.sh");
    assert!(setup.contains("-p 9901") && setup.contains("NSSET hub password"));
    assert!(deployment("hub.production.toml").contains("zdb_listen = \"0.0.0.0:9900\""));
    assert!(deployment("nginx.conf").contains("proxy_request_buffering off"));

    // 0-db as zdb-setup.sh configures it: namespace `hub`, password, public read-only.
    let zdb = test_support::ZdbServer::start();
    zdb.namespace(
        "hub",
        test_support::NsConfig {
            password: Some("ns-secret".into()),
            public: true,
            ..Default::default()
        },
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let (port, hub_zport) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let config = production_config(&[
        ("listen", format!("127.0.0.1:{port}")),
        ("data_dir", cwd.join("data").display().to_string()),
        ("public_url", base.clone()),
        ("store", zdb.url("hub", Some("ns-secret"))),
        ("zdb_listen", format!("127.0.0.1:{hub_zport}")),
    ]);
    assert!(config.contains("log_format = \"json\""));
    std::fs::write(cwd.join("hub.toml"), &config).expect("config");
    let server = serve(cwd, port, &["--config", "hub.toml"]).await;
    let client = reqwest::Client::new();
    let (s, ready) = {
        let r = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz");
        (r.status(), r.json::<Value>().await.expect("json"))
    };
    assert_eq!(s, 200, "{ready}");

    // An operator creates an account and a token for CI.
    let data = cwd.join("data");
    let data = data.to_str().expect("utf8");
    ok(&run(
        cwd,
        Path::new(BIN),
        &["user", "add", "ci", "--password-stdin", "--data-dir", data],
        Some("ci account password\n"),
    ));
    let out = run(
        cwd,
        Path::new(BIN),
        &[
            "token",
            "create",
            "--user",
            "ci",
            "--ttl",
            "1h",
            "--data-dir",
            data,
        ],
        None,
    );
    ok(&out);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let me = client
        .get(format!("{base}/api/flist/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    assert_eq!(
        me.status(),
        200,
        "token {token:?}: {}; log:\n{}",
        me.text().await.unwrap_or_default(),
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );

    // Upload.
    let tree = test_support::sample::sample_tree();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(test_support::sample::tar_gz(&tree))
            .file_name("app.tar.gz"),
    );
    let r = client
        .post(format!("{base}/api/flist/me/upload"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = r.status();
    assert_eq!(
        status,
        200,
        "{} (token {token:?}); log:\n{}",
        r.text().await.unwrap_or_default(),
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );
    assert!(zdb.entries("hub") >= 4, "chunks are in the 0-db namespace");

    // Download: the flist announces the hub's 0-db endpoint, never the password.
    let flist = client
        .get(format!("{base}/ci/app.flist"))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    std::fs::write(cwd.join("app.flist"), &flist).expect("write");
    let md: Value = client
        .get(format!("{base}/api/flist/ci/app.flist/metadata"))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(
        md["backend"],
        serde_json::json!({"host": "127.0.0.1", "port": hub_zport}),
        "{md}"
    );
    assert!(!String::from_utf8_lossy(&flist).contains("ns-secret"));
    // Chunks are not served over HTTP in this layout: readers use the 0-db protocol.
    assert_eq!(
        client
            .get(format!("{base}/chunks/00/0011"))
            .send()
            .await
            .expect("chunks")
            .status(),
        404
    );

    // Extract with zflist, through the hub's endpoint (no password, no store flag) ...
    let zflist = zflist_bin();
    ok(&run(cwd, &zflist, &["extract", "app.flist", "out"], None));
    assert_eq!(test_support::sample::read_tree(&cwd.join("out")), tree);
    // ... and as flists announcing the 0-db's own address and namespace did: any namespace
    // reads the same chunks.
    let old_style = format!("zdb://127.0.0.1:{hub_zport}/hub");
    ok(&run(
        cwd,
        &zflist,
        &["extract", "app.flist", "out2", "--store", &old_style],
        None,
    ));
    assert_eq!(test_support::sample::read_tree(&cwd.join("out2")), tree);

    drop(server);
    let log = std::fs::read_to_string(cwd.join(format!("serve-{port}.log"))).expect("log");
    assert!(
        !log.contains("ns-secret"),
        "the namespace password never reaches the log"
    );
    // check: the backend answers.
    let rep = ok(&run(
        cwd,
        Path::new(BIN),
        &["check", "--config", "hub.toml", "--data-dir", data],
        None,
    ));
    assert!(rep.contains("0 unreachable backends: clean"), "{rep}");
}

/// `deployment/Dockerfile` and `deployment/cluster/`: what cannot run here (no Docker
/// engine) is checked by reading; the load balancer's configuration runs for real in
/// front of three hubs.
#[tokio::test]
async fn cluster_layout_files_and_the_load_balancer() {
    // The image: both binaries, non-root, a data volume, the health check on /readyz.
    let docker = deployment("Dockerfile");
    for needle in [
        "cargo build --release --locked -p hub-server -p zflist",
        "FROM debian:bookworm-slim",
        "USER hub:hub",
        "VOLUME [\"/var/lib/flist-hub\"]",
        "HUB_LISTEN=0.0.0.0:5555",
        "HEALTHCHECK",
        "http://127.0.0.1:5555/readyz",
    ] {
        assert!(docker.contains(needle), "Dockerfile lacks {needle:?}");
    }
    assert!(!docker.contains("USER root"));

    // compose: PostgreSQL, an S3 server, three hubs on the shared catalog and store, nginx.
    let mut compose: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&deployment("cluster/compose.yaml")).expect("compose.yaml");
    compose.apply_merge().expect("merge keys");
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for s in ["postgres", "s3", "hub1", "hub2", "hub3", "nginx"] {
        assert!(names.contains(&s), "no service {s} in {names:?}");
    }
    assert!(compose["services"]["postgres"]["image"]
        .as_str()
        .is_some_and(|i| i.starts_with("postgres:15")));
    let mut caches = Vec::new();
    for hub in ["hub1", "hub2", "hub3"] {
        let h = &compose["services"][hub];
        let env = &h["environment"];
        let catalog = env["HUB_CATALOG"].as_str().expect("HUB_CATALOG");
        let store = env["HUB_STORE"].as_str().expect("HUB_STORE");
        assert!(
            catalog.starts_with("postgres://hub:${POSTGRES_PASSWORD")
                && catalog.ends_with("@postgres:5432/hub")
        );
        assert!(store.starts_with("s3://${S3_ACCESS_KEY") && store.contains("@s3:8333/"));
        // The store URL of the file parses once the variables are filled in.
        let filled = store
            .replace("${S3_ACCESS_KEY:?set S3_ACCESS_KEY in .env}", "AK")
            .replace("${S3_SECRET_KEY:?set S3_SECRET_KEY in .env}", "SECRET");
        let url = flist_store::StoreUrl::parse(&filled).expect("HUB_STORE parses");
        assert!(!url.to_string().contains("SECRET"));
        assert_eq!(env["HUB_LISTEN"].as_str(), Some("0.0.0.0:5555"));
        assert_eq!(
            h["build"]["dockerfile"].as_str(),
            Some("deployment/Dockerfile")
        );
        assert_eq!(
            h["depends_on"]["postgres"]["condition"].as_str(),
            Some("service_healthy")
        );
        caches.push(h["volumes"][0].as_str().expect("cache volume").to_owned());
    }
    caches.sort();
    caches.dedup();
    assert_eq!(caches.len(), 3, "each replica has its own cache volume");
    assert!(compose["services"]["s3"]["command"]
        .as_str()
        .is_some_and(|c| c.contains("-s3.port=8333")));
    assert_eq!(
        compose["services"]["nginx"]["volumes"][0].as_str(),
        Some("./nginx.conf:/etc/nginx/conf.d/default.conf:ro")
    );
    let env_example = deployment("cluster/env.example");
    for var in [
        "POSTGRES_PASSWORD",
        "S3_ACCESS_KEY",
        "S3_SECRET_KEY",
        "PUBLIC_URL",
    ] {
        assert!(
            env_example.contains(&format!("{var}=")),
            "env.example lacks {var}"
        );
    }

    // nginx.conf as the nginx image loads it (inside `http {}`), with the replicas' names
    // pointed at three real hubs on this machine.
    let conf = deployment("cluster/nginx.conf");
    assert!(conf.contains("proxy_request_buffering off") && conf.contains("proxy_buffering off"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hubs = Vec::new();
    let mut ports = Vec::new();
    for i in 0..3 {
        let cwd = dir.path().join(format!("hub{i}"));
        std::fs::create_dir_all(&cwd).expect("hub dir");
        let port = free_port();
        hubs.push(Some(serve(&cwd, port, &[]).await));
        ports.push(port);
    }
    let for_here = |lb_port: u16| {
        let mut c = conf.replace("listen 80;", &format!("listen 127.0.0.1:{lb_port};"));
        for (i, p) in ports.iter().enumerate() {
            c = c.replace(&format!("hub{}:5555", i + 1), &format!("127.0.0.1:{p}"));
        }
        c
    };
    test_support::nginx::Nginx::check(for_here).expect("nginx -t accepts cluster/nginx.conf");
    let lb = test_support::nginx::Nginx::start(for_here);
    let client = reqwest::Client::new();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..9 {
        let r = client
            .get(format!("{}/readyz", lb.url()))
            .send()
            .await
            .expect("GET /readyz through nginx");
        assert_eq!(r.status(), 200);
        let upstream = r.headers()["x-upstream"]
            .to_str()
            .expect("header")
            .to_owned();
        seen.insert(upstream);
    }
    assert_eq!(seen.len(), 3, "requests reach every replica: {seen:?}");
    let r = client
        .get(format!("{}/metrics", lb.url()))
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 404, "metrics stay on the backend network");
    // A replica dies: reads keep being answered by the others.
    drop(hubs[1].take());
    for _ in 0..9 {
        let r = client
            .get(format!("{}/api/repositories", lb.url()))
            .send()
            .await
            .expect("GET through nginx");
        assert_eq!(r.status(), 200, "a dead replica is skipped");
    }
}
