//! The hub's repository model: catalog, content-addressed flist files, links, tags, audit.
//!
//! [`Hub::open`] a data directory, then:
//! - reads: [`Hub::repositories`], [`Hub::list`], [`Hub::list_all`], [`Hub::resolve`],
//!   [`Hub::resolve_in_tag`], [`Hub::tag_links`], [`Hub::dump`], [`Hub::metadata`];
//! - writes, each taking the acting [`Actor`] and audited in the same transaction:
//!   [`Hub::put_flist`], [`Hub::store_flist`], [`Hub::link`], [`Hub::crosslink`], [`Hub::rename`], [`Hub::delete`],
//!   [`Hub::promote`], [`Hub::tag_add`], [`Hub::tag_remove`], [`Hub::crosstag`],
//!   [`Hub::crosstag_remove`] (merges are built by `flist_convert::merge` and stored with
//!   [`Hub::store_flist`]);
//! - identity and jobs: [`Hub::create_token`], [`Hub::check_token`], [`Hub::revoke_token`],
//!   [`Hub::job_create`] and friends (jobs left running by a crash read as failed);
//! - browsing (web pages): [`Hub::dir_page`], [`Hub::search_paths`] over the path index
//!   ([`paths`]), [`Hub::repo_summaries`], [`Hub::recent_flists`], [`Hub::references_to`];
//! - maintenance: [`Hub::import_legacy`], [`Hub::integrity_check`], [`Hub::gc`],
//!   [`Hub::audit_log`], the hub's own public backends over time and re-stamping flist
//!   files ([`Hub::record_own_backend`], [`Hub::flist_files`], [`Hub::replace_flist_file`]).
//!
//! Everything blocks: call it from `spawn_blocking` in async code.
//!
//! # Example
//! ```
//! use hub_repo::{Actor, FlistInfo, Hub};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = tempfile::tempdir()?;
//! let hub = Hub::open(data.path())?;
//! let alice = Actor::new("alice", Vec::new());
//!
//! // publish a flist file as alice/app.flist (stored by content, one transaction)
//! let file = std::fs::File::open(test_support::fixture("fixture.flist"))?;
//! let staged = hub.stage_reader(file)?;
//! hub.put_flist(&alice, "alice", "app.flist", staged, FlistInfo::default())?;
//!
//! let listed = hub.list("alice")?.expect("the repository exists");
//! assert_eq!(listed[0].name, "app.flist");
//! let found = hub.resolve("alice", "app.flist")?;
//! assert_eq!(found.sha256.len(), 64);
//! // nobody writes into someone else's repository
//! let bob = Actor::new("bob", Vec::new());
//! let again = hub.stage_reader(std::fs::File::open(test_support::fixture("fixture.flist"))?)?;
//! assert!(hub.put_flist(&bob, "alice", "x.flist", again, FlistInfo::default()).is_err());
//! # Ok(()) }
//! ```

mod actor;
mod audit;
mod backends;
mod blobs;
pub mod browse;
mod db;
mod entries;
mod error;
mod gc;
mod hub;
pub mod inspect;
mod integrity;
mod jobs;
mod legacy;
mod lock;
mod migrate;
mod model;
pub mod names;
mod orgs;
pub mod paths;
mod reads;
mod replica;
mod sessions;
mod sql;
mod stats;
mod store;
mod tags;
mod tokens;
mod users;

pub use actor::Actor;
pub use backends::{same_backend, FlistFile, OwnBackend};
pub use blobs::StagedFlist;
pub use error::{io_is_full, RepoError};
pub use gc::{GcOptions, GcReport};
pub use hub::{now, Hub, MAX_HOPS};
pub use jobs::{JobRecord, JobState};
pub use legacy::ImportReport;
pub use lock::STALE_TEMP_SECS;
pub use migrate::SCHEMA_VERSION;
pub use model::*;
pub use replica::{is_hex_sha256, Change, RepoSnapshot, SnapBlob, SnapEntry, SnapTag, SnapTagLink};
pub use sessions::SessionInfo;
pub use stats::{CatalogStats, EntryBackend};
pub use tokens::{token_hash, TokenCheck, TokenInfo};
pub use users::{UserInfo, MIN_PASSWORD_LEN};
