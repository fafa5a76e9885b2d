//! Operations on a whole data directory, as methods of [`Hub`](crate::Hub): garbage
//! collection (`gc.rs`), the integrity check (`integrity.rs`), importing an old hub's tree
//! (`legacy.rs`), the hub's own public backends and re-stamping flist files to the current
//! one (`backends.rs`), figures for monitoring and the readiness probe (`stats.rs`). They read
//! across the seams (catalog, accounts, jobs, files); nothing below uses them.

pub(crate) mod backends;
pub(crate) mod gc;
mod integrity;
pub(crate) mod legacy;
pub(crate) mod stats;
pub(crate) mod transfer;
