//! Shared test harness: a real hub server on 127.0.0.1:0 and a real HTTP client.
#![allow(dead_code)]

pub mod contract;

use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use hub_http::{HubConfig, Server};
use hub_repo::Actor;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

/// Public backend configured in tests.
pub const PUBLIC_BACKEND: &str = "zdb://hub.example.org:9900/public";

pub struct TestHub {
    pub server: Server,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    /// Every JSON answer received, checked against the OpenAPI document by [`TestHub::stop`].
    pub answers: Mutex<Vec<contract::Answer>>,
}

pub fn test_config(dir: &Path) -> HubConfig {
    HubConfig {
        data_dir: dir.join("data"),
        public_backend: PUBLIC_BACKEND.into(),
        public_url: "http://hub.test".into(),
        official: vec!["official".into()],
        threebot: hub_http::config::ThreebotConfig {
            enabled: true,
            ..Default::default()
        },
        ..HubConfig::default()
    }
}

impl TestHub {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut HubConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = test_config(dir.path());
        f(&mut cfg);
        Self::start_in(dir, cfg).await
    }

    pub async fn start_in(dir: tempfile::TempDir, cfg: HubConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = hub_http::start_on(listener, cfg)
            .await
            .expect("start server");
        let base = format!("http://{}", server.addr);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        TestHub {
            server,
            base,
            dir,
            client,
            answers: Mutex::new(Vec::new()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn hub(&self) -> std::sync::Arc<hub_repo::Hub> {
        self.server.state.hub.clone()
    }

    /// A hub token for `user` (member of `orgs`).
    pub async fn token(&self, user: &str, orgs: &[&str]) -> String {
        let hub = self.hub();
        let (user, orgs): (String, Vec<String>) =
            (user.into(), orgs.iter().map(|s| s.to_string()).collect());
        tokio::task::spawn_blocking(move || {
            // Tokens go to accounts only: make it first (tests of refused names want the
            // token refusal, so a refused account is not an error here).
            let accounts = hub.accounts();
            if !accounts.user_exists(&user).unwrap_or(false) {
                let _ = accounts.user_add(&user, "a long test password", false);
            }
            accounts.create_token(&user, &orgs, 3600, None)
        })
        .await
        .expect("join")
        .expect("token")
        .0
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        self.record("GET", path, status, &v);
        (status, v)
    }

    /// Keeps a JSON answer for the contract check of [`TestHub::stop`].
    pub fn record(&self, method: &str, path: &str, status: u16, body: &Value) {
        if body.is_null() {
            return; // not JSON
        }
        let path = path.strip_prefix(&self.base).unwrap_or(path);
        if let Ok(mut a) = self.answers.lock() {
            a.push(contract::Answer {
                method: method.to_string(),
                path: path.to_string(),
                status,
                body: body.clone(),
            });
        }
    }

    /// Sends `method path` with a bearer token; returns status and JSON body.
    pub async fn call(&self, method: &str, path: &str, token: &str) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = self
            .client
            .request(m, self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        self.record(method, path, status, &v);
        (status, v)
    }

    /// Uploads a file as multipart field `file` to `endpoint`.
    pub async fn upload(
        &self,
        endpoint: &str,
        token: &str,
        filename: &str,
        data: Vec<u8>,
    ) -> (u16, Value) {
        let form = Form::new().part("file", Part::bytes(data).file_name(filename.to_string()));
        let r = self
            .client
            .post(self.url(endpoint))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .expect("upload request");
        let status = r.status().as_u16();
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        self.record("POST", endpoint, status, &v);
        (status, v)
    }

    /// Puts a fixture flist straight into the catalog (set-up for read tests).
    pub async fn put_fixture(&self, repo: &str, name: &str, fixture: &str) {
        let hub = self.hub();
        let (repo, name, fixture) = (repo.to_string(), name.to_string(), fixture.to_string());
        tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(test_support::fixture(&fixture)).expect("fixture");
            let staged = hub.catalog().stage_reader(f).expect("stage");
            let fl = hub_repo::inspect::open_flist(staged.path()).expect("parse");
            let actor = Actor::new(repo.clone(), vec![]);
            hub.catalog()
                .put_flist(
                    &actor,
                    &repo,
                    &name,
                    staged,
                    hub_repo::inspect::info_of(&fl, None),
                )
                .expect("put");
        })
        .await
        .expect("join");
    }

    /// Like [`TestHub::put_fixture`], with the flist's `backend` metadata removed.
    pub async fn put_fixture_without_backend(&self, repo: &str, name: &str, fixture: &str) {
        let hub = self.hub();
        let tmp = self.dir.path().join(format!("nobackend-{name}"));
        let (repo, name, fixture) = (repo.to_string(), name.to_string(), fixture.to_string());
        tokio::task::spawn_blocking(move || {
            let mut fl = flist_format::Flist::open(test_support::fixture(&fixture)).expect("parse");
            fl.metadata.remove("backend");
            fl.write(&tmp).expect("write");
            let staged = hub.catalog().stage_file(&tmp).expect("stage");
            let actor = Actor::new(repo.clone(), vec![]);
            hub.catalog()
                .put_flist(
                    &actor,
                    &repo,
                    &name,
                    staged,
                    hub_repo::inspect::info_of(&fl, None),
                )
                .expect("put");
        })
        .await
        .expect("join");
    }

    /// Copies the fixture chunks into the hub's store, except `skip`.
    pub async fn load_fixture_chunks(&self, skip: Option<&str>) -> usize {
        let dir = test_support::fixture("chunks");
        let mut items = Vec::new();
        for e in std::fs::read_dir(&dir).expect("chunks dir") {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().to_string();
            if Some(name.as_str()) == skip {
                continue;
            }
            let key = hex::decode(&name).expect("hex name");
            items.push((key, Bytes::from(std::fs::read(e.path()).expect("chunk"))));
        }
        let n = items.len();
        self.server
            .state
            .store
            .set_many(&items)
            .await
            .expect("store chunks");
        n
    }

    /// Stops the server, then checks every JSON answer the test received against the
    /// OpenAPI document (see [`contract`]).
    pub async fn stop(self) -> tempfile::TempDir {
        self.server.shutdown().await.expect("shutdown");
        let answers = std::mem::take(&mut *self.answers.lock().expect("answers"));
        if let Err(e) = contract::check(hub_http::openapi::document(), &answers, self.dir.path()) {
            panic!("answers that do not match the OpenAPI document:\n{e}");
        }
        self.dir
    }
}

/// The sum of the samples of metric `name` whose labels include `labels`, in a
/// Prometheus text exposition.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(k, _)| {
            let (n, rest) = k.split_once('{').unwrap_or((k, ""));
            n == name
                && labels
                    .iter()
                    .all(|(lk, lv)| rest.contains(&format!("{lk}=\"{lv}\"")))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// A tiny HTTP server on loopback answering every request with `f(path_and_query)`; returns
/// its port and a counter of requests.
pub async fn tiny_server(
    f: impl Fn(String) -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h2 = hits.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let f = f.clone();
        let hits = h2.clone();
        async move {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            f(pq)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, hits)
}

/// A small tmpfs mounted for the test (we run as root), unmounted on drop.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    pub fn mount(path: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` up to `leave` free bytes with one file; returns it.
pub fn fill(dir: &std::path::Path, leave: u64) -> std::path::PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).expect("filler");
    let block = vec![0x5au8; 64 << 10];
    let mut len = 0u64;
    while std::io::Write::write_all(&mut f, &block).is_ok() {
        len += block.len() as u64;
    }
    let _ = std::io::Write::flush(&mut f);
    drop(f);
    let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(len);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|f| f.set_len(len.saturating_sub(leave)))
        .expect("shrink filler");
    p
}

/// `POST /api/flist/me/docker` with `image` as `token`: status and JSON answer.
pub async fn docker(t: &TestHub, token: &str, image: &str) -> (u16, Value) {
    let r = t
        .client
        .post(t.url("/api/flist/me/docker"))
        .bearer_auth(token)
        .form(&[("image", image)])
        .send()
        .await
        .expect("docker request");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}
