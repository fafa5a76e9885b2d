//! The hub's repository model: catalog, content-addressed flist files, links, tags, audit.
//!
//! [`Hub::open`] a data directory, then reach the model through its seams, each a handle of
//! its own (cheap to clone) with its queries in its own module:
//! - [`Hub::catalog`] ([`Catalog`]): reads ([`Catalog::repositories`], [`Catalog::list`],
//!   [`Catalog::resolve`], [`Catalog::resolve_in_tag`], [`Catalog::tag_links`],
//!   [`Catalog::dump`], [`Catalog::metadata`]); writes, each taking the acting [`Actor`] and
//!   audited in the same transaction ([`Catalog::put_flist`], [`Catalog::store_file`],
//!   [`Catalog::link`], [`Catalog::crosslink`], [`Catalog::rename`], [`Catalog::delete`],
//!   [`Catalog::promote`], [`Catalog::tag_add`], [`Catalog::crosstag`]; merges are built
//!   by `flist_convert::merge` and stored with [`Catalog::store_flist`]); the pages' read
//!   models ([`Catalog::repo_summaries`], [`Catalog::recent_flists`],
//!   [`Catalog::references_to`]); [`Catalog::audit_log`];
//! - [`Hub::accounts`] ([`Accounts`]): local accounts, web sessions, API tokens (stored
//!   hashed), organisations;
//! - [`Hub::jobs`] ([`Jobs`]): persisted jobs (jobs left running by a crash read as failed);
//! - [`Hub::paths`] ([`PathIndex`]): every path of every stored flist, one directory page
//!   at a time, and path search;
//! - [`Hub::replica`] ([`Replica`]): the change feed and repository snapshots of mirrors;
//! - on the data directory as a whole: [`Hub::gc`], [`Hub::integrity_check`],
//!   [`Hub::import_legacy`], [`Hub::stats`], the hub's own public backends over time and
//!   re-stamping flist files ([`Hub::record_own_backend`], [`Hub::flist_files`],
//!   [`Hub::replace_flist_file`]).
//!
//! Layers, bottom up (a module only uses those below it; `cargo xtask arch` checks there is
//! no import cycle): the vocabulary (`error`, `clock`, `names`, `actor`, `model`,
//! `inspect`); the engine (`db`: connections, schema, migrations) and the files (`files`:
//! content-addressed flist files, temp area, data-directory lock); the seams (`paths`,
//! `catalog`, `accounts`, `jobs`, `replica`); `hub` (the data directory opened);
//! `maintenance`.
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
//! let catalog = hub.catalog();
//! let alice = Actor::new("alice", Vec::new());
//!
//! // publish a flist file as alice/app.flist (stored by content, one transaction)
//! let file = std::fs::File::open(test_support::fixture("fixture.flist"))?;
//! let staged = catalog.stage_reader(file)?;
//! catalog.put_flist(&alice, "alice", "app.flist", staged, FlistInfo::default())?;
//!
//! let listed = catalog.list("alice")?.expect("the repository exists");
//! assert_eq!(listed[0].name, "app.flist");
//! let found = catalog.resolve("alice", "app.flist")?;
//! assert_eq!(found.sha256.len(), 64);
//! // nobody writes into someone else's repository
//! let bob = Actor::new("bob", Vec::new());
//! let again = catalog.stage_reader(std::fs::File::open(test_support::fixture("fixture.flist"))?)?;
//! assert!(catalog.put_flist(&bob, "alice", "x.flist", again, FlistInfo::default()).is_err());
//!
//! // the other seams: accounts (tokens go to accounts), jobs, the path index
//! hub.accounts().user_add("alice", "a long password", false)?;
//! let (token, _) = hub.accounts().create_token("alice", &[], 3600, None)?;
//! assert!(matches!(hub.accounts().check_token(&token)?, hub_repo::TokenCheck::Valid(_)));
//! assert!(hub.paths().indexed(&found.sha256)?);
//! # Ok(()) }
//! ```

mod accounts;
mod actor;
mod catalog;
mod clock;
mod db;
mod error;
mod files;
mod hub;
pub mod inspect;
mod jobs;
mod maintenance;
mod model;
pub mod names;
pub mod paths;
mod replica;

pub use accounts::{
    token_hash, Accounts, InviteCheck, OrgMember, OrgRole, SessionInfo, TokenCheck, TokenInfo,
    UserInfo, MIN_PASSWORD_LEN, THREEBOT,
};
pub use actor::Actor;
pub use catalog::{browse, Catalog, MAX_HOPS};
pub use clock::now;
pub use db::schema::SCHEMA_VERSION;
pub use db::sql::DbError;
pub use error::{io_is_full, RepoError};
pub use files::{is_hex_sha256, shared_name, StagedFlist, STALE_TEMP_SECS};
pub use hub::{is_postgres_url, redact_catalog, Hub};
pub use jobs::{JobRecord, JobState, Jobs};
pub use maintenance::backends::{same_backend, FlistFile, OwnBackend};
pub use maintenance::gc::{GcOptions, GcReport};
pub use maintenance::legacy::ImportReport;
pub use maintenance::stats::{CatalogStats, EntryBackend};
pub use maintenance::transfer::{FilesCopy, TableCopy};
pub use model::*;
pub use paths::PathIndex;
pub use replica::{Change, Replica, RepoSnapshot, SnapBlob, SnapEntry, SnapTag, SnapTagLink};
