//! The acting identity of a write.

use crate::RepoError;

/// Who performs an operation: the authenticated user, the organisations it belongs to, and
/// which of those identities is acting (`active-user`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The authenticated user.
    pub user: String,
    /// Organisations the user is a member of.
    pub memberof: Vec<String>,
    /// The identity acting: the user itself or one of `memberof`.
    pub active: String,
}

impl Actor {
    /// An actor acting as itself.
    pub fn new(user: impl Into<String>, memberof: Vec<String>) -> Self {
        let user = user.into();
        Actor {
            active: user.clone(),
            user,
            memberof,
        }
    }

    /// A system actor (imports, administration) allowed to write anywhere.
    pub fn system(label: &str) -> Self {
        Actor {
            user: format!("@{label}"),
            memberof: Vec::new(),
            active: format!("@{label}"),
        }
    }

    /// True for [`Actor::system`] actors.
    pub fn is_system(&self) -> bool {
        self.user.starts_with('@')
    }

    /// Selects the acting identity; refused unless it is the user or one of its organisations.
    pub fn acting_as(mut self, active: &str) -> Result<Self, RepoError> {
        if active != self.user && !self.memberof.iter().any(|m| m == active) {
            return Err(RepoError::Forbidden(format!(
                "{} may not act as {active:?}: not a member",
                self.user
            )));
        }
        self.active = active.to_string();
        Ok(self)
    }

    /// May this actor read `repo` were it private? Its own repository, an organisation's it
    /// is a member of now (whatever identity is active), and everything for a system actor.
    pub fn may_read(&self, repo: &str) -> bool {
        self.is_system() || self.user == repo || self.memberof.iter().any(|m| m == repo)
    }

    /// May this actor write into `repo`? Only the active identity's own repository.
    pub fn may_write(&self, repo: &str) -> bool {
        if self.is_system() {
            return true;
        }
        let active_ok = self.active == self.user || self.memberof.contains(&self.active);
        active_ok && repo == self.active
    }

    /// [`Actor::may_write`] as an error.
    pub fn check_write(&self, repo: &str) -> Result<(), RepoError> {
        if self.may_write(repo) {
            Ok(())
        } else {
            Err(RepoError::Forbidden(format!(
                "{} (as {}) may not write into {repo:?}",
                self.user, self.active
            )))
        }
    }
}
