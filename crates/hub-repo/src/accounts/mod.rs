//! Accounts: who may act on the hub. Local accounts with their passwords, the admin's
//! disable switch (`users.rs`), sign-up invitations and self-service sign-up
//! (`invites.rs`), web
//! sessions (`sessions.rs`), API tokens and when each was last used (`tokens.rs`), and
//! organisation memberships (`orgs.rs`). Credentials are stored hashed; every answer about
//! an unknown name costs what an answer about a known one does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::db::Db;

mod invites;
mod orgs;
mod sessions;
mod tokens;
mod users;

pub use invites::InviteCheck;
pub use orgs::{OrgMember, OrgRole};
pub use sessions::SessionInfo;
pub use tokens::{token_hash, TokenCheck, TokenInfo};
pub use users::{UserInfo, MIN_PASSWORD_LEN, THREEBOT};

/// The accounts of a hub (cheap to clone: a handle on the shared database).
#[derive(Clone, Debug)]
pub struct Accounts {
    db: Arc<Db>,
    /// When each token's use was last recorded (one write a minute per token at most).
    noted: Arc<Mutex<HashMap<i64, i64>>>,
}

impl Accounts {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Accounts {
            db,
            noted: Arc::default(),
        }
    }
}
