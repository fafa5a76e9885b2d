//! The hub's HTTP API, web pages, jobs and identity.
//!
//! [`server::start`] (or [`server::start_on`] with a bound listener) opens the data
//! directory, the chunk store and the identity keys from a [`HubConfig`] and serves:
//! - the JSON API of `shared/spec/hub-api.md` (public reads, `/api/flist/me/...` writes
//!   authenticated by hub tokens or ES384 JWTs, `INFO` method, uploads, merge);
//! - downloads with ETag/Range/HEAD, `.md5`/`.txt`/`.json`/`.md` companions;
//! - the web app ([`ui`]: templated pages, owner forms, path search) and the 3Bot login flow;
//! - job progress over Server-Sent Events at `/listen/<id>`.
//!
//! Errors on `/api/*` are JSON (`{"status":"error","message"}`) with real status codes.
//!
//! # Example
//! ```
//! use hub_http::config::HubConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = tempfile::tempdir()?;
//! let config = HubConfig {
//!     listen: "127.0.0.1:0".parse()?, // any free port
//!     data_dir: data.path().to_path_buf(),
//!     ..HubConfig::default()
//! };
//! let server = hub_http::server::start(config).await?;
//!
//! let base = format!("http://{}", server.addr);
//! let ready = reqwest::get(format!("{base}/healthz")).await?;
//! assert!(ready.status().is_success());
//! let repos: serde_json::Value = reqwest::get(format!("{base}/api/repositories")).await?.json().await?;
//! assert_eq!(repos, serde_json::json!([]));
//!
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod api;
pub mod auth;
pub mod author_sig;
pub mod changes;
pub mod chunks;
pub mod chunks_api;
pub mod compat;
pub mod config;
pub mod contents;
pub mod csrf;
pub mod derive;
pub mod docker;
pub mod downloads;
pub mod error;
pub mod fastpath;
pub mod files;
pub mod formats;
pub mod gate;
pub mod guard;
pub mod health;
pub mod jobs;
pub mod login;
pub mod lookup;
mod merge;
pub mod migrate;
pub mod mirror;
pub mod mirror_chunks;
pub mod observe;
pub mod openapi;
mod produce;
pub mod reach;
pub mod render;
pub mod request_id;
pub mod restamp;
pub mod server;
pub mod signing;
pub mod state;
pub mod threebot;
pub mod ui;
pub mod upload;
pub mod visibility;
pub mod web;
pub mod zdb;

pub use config::HubConfig;
pub use error::ApiError;
pub use server::{router, start, start_on, Server, ServerError};
