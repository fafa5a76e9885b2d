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
        tokio::task::spawn_blocking(move || hub.accounts().create_token(&user, &orgs, 3600, None))
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
