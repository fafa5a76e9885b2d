//! The hub's upload routes in process, over arbitrary request bodies: multipart parsing,
//! archive conversion, homemade-flist checks. Shared by the fuzz target
//! `fuzz/fuzz_targets/upload_multipart.rs` and the stable test
//! `crates/hub-http/tests/upload_fuzz.rs` (included by path in both).
//!
//! Input: byte 0 picks the route (bit 0) and how the body is labelled (bits 1-2); the rest is
//! the body. Whatever the bytes, the hub must answer without a server error (a client's
//! garbage is a 4xx) and leave nothing in its temp folder.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use tower::ServiceExt;

/// The multipart boundary the seeds use.
pub const BOUNDARY: &str = "fuzzboundary";

/// A hub (temp data directory, `dir://` chunk store) and a token for `alice`.
pub struct UploadHarness {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    token: String,
    tmp: PathBuf,
    _dir: tempfile::TempDir,
}

impl UploadHarness {
    /// Starts the hub.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut cfg = hub_http::HubConfig {
            data_dir: dir.path().join("data"),
            max_upload_bytes: 1 << 20,
            ..hub_http::HubConfig::default()
        };
        cfg.limits.max_flist_database_bytes = 8 << 20;
        let state = rt
            .block_on(hub_http::server::build_state(cfg))
            .expect("hub state");
        let (token, _) = state
            .hub
            .accounts()
            .create_token("alice", &[], 3600, None)
            .expect("token");
        let tmp = state.hub.catalog().tmp_dir().to_path_buf();
        let app = hub_http::router(state);
        UploadHarness {
            rt,
            app,
            token,
            tmp,
            _dir: dir,
        }
    }

    /// Sends one input; panics on a server error or a temp file left behind. Returns the
    /// status (0 for an empty input).
    pub fn run(&self, data: &[u8]) -> u16 {
        let Some((&sel, body)) = data.split_first() else {
            return 0;
        };
        let route = if sel & 1 == 0 {
            "/api/flist/me/upload"
        } else {
            "/api/flist/me/upload-flist"
        };
        let content_type = match (sel >> 1) & 3 {
            0 => format!("multipart/form-data; boundary={BOUNDARY}"),
            1 => format!("multipart/form-data; boundary=\"{BOUNDARY}\"; charset=utf-8"),
            2 => "multipart/form-data".to_string(),
            _ => "application/octet-stream".to_string(),
        };
        let req = Request::post(route)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .header("content-length", body.len())
            .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))))
            .body(Body::from(body.to_vec()))
            .expect("request");
        let (status, text) = self.rt.block_on(async {
            let resp = self.app.clone().oneshot(req).await.expect("infallible");
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        });
        assert!(
            !status.is_server_error(),
            "{route} answered {status} to a client's bytes: {text}"
        );
        // Blocking clean-up may finish just after the answer.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left: Vec<_> = std::fs::read_dir(&self.tmp)
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{route} ({status}) left temp files: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        status.as_u16()
    }
}

impl Default for UploadHarness {
    fn default() -> Self {
        Self::new()
    }
}
