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
