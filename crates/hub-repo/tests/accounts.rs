//! Accounts from the web: a user changes their password, an admin disables an account (its
//! sessions end, its tokens are revoked, it cannot sign in or get new ones) and enables it
//! again, invitations let one person sign up once, before they expire.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use hub_repo::{Hub, InviteCheck, RepoError, TokenCheck};

fn hub() -> (tempfile::TempDir, Hub) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = common::open(dir.path().join("data")).expect("open hub");
    (dir, hub)
}

#[test]
fn a_user_changes_their_password_knowing_the_current_one() {
    let (_d, hub) = hub();
    let a = hub.accounts();
    a.user_add("alice", "first password", false).unwrap();
    let (session, _) = a.create_session("alice", &[], "password", 3600).unwrap();
    let e = a
        .change_password("alice", "wrong password", "second password")
        .unwrap_err();
    assert!(matches!(e, RepoError::Forbidden(_)), "{e}");
    assert!(a
        .verify_password("alice", "first password")
        .unwrap()
        .is_some());
    // too short: refused, nothing changed
    assert!(a
        .change_password("alice", "first password", "short")
        .is_err());
    assert!(a.check_session(&session).unwrap().is_some());
    a.change_password("alice", "first password", "second password")
        .unwrap();
    assert!(a
        .verify_password("alice", "first password")
        .unwrap()
        .is_none());
    assert!(a
        .verify_password("alice", "second password")
        .unwrap()
        .is_some());
    // the change ends the sessions
    assert_eq!(a.check_session(&session).unwrap(), None);
    // an unknown account: the same refusal as a wrong password
    let e = a
        .change_password("nobody", "x", "second password")
        .unwrap_err();
    assert!(matches!(e, RepoError::Forbidden(_)), "{e}");
}

#[test]
fn a_disabled_account_loses_its_sessions_and_tokens_and_cannot_sign_in() {
    let (_d, hub) = hub();
    let a = hub.accounts();
    a.user_add("bob", "bob's password", false).unwrap();
    let (session, _) = a.create_session("bob", &[], "password", 3600).unwrap();
    let (token, _) = a.create_token("bob", &[], 3600, Some("ci")).unwrap();
    assert_eq!(a.user_set_disabled("bob", true).unwrap(), 1);
    assert!(a.is_disabled("bob").unwrap());
    assert_eq!(a.check_session(&session).unwrap(), None);
    assert_eq!(a.check_token(&token).unwrap(), TokenCheck::Revoked);
    assert!(a
        .verify_password("bob", "bob's password")
        .unwrap()
        .is_none());
    assert!(matches!(
        a.create_session("bob", &[], "token", 3600),
        Err(RepoError::Forbidden(_))
    ));
    assert!(matches!(
        a.create_token("bob", &[], 3600, None),
        Err(RepoError::Forbidden(_))
    ));
    let listed = a.user_list().unwrap();
    assert!(listed.iter().any(|u| u.name == "bob" && u.disabled));
    // enabled again: signs in, gets new tokens; the revoked one stays revoked
    assert_eq!(a.user_set_disabled("bob", false).unwrap(), 0);
    assert!(a
        .verify_password("bob", "bob's password")
        .unwrap()
        .is_some());
    assert!(a.create_token("bob", &[], 3600, None).is_ok());
    assert_eq!(a.check_token(&token).unwrap(), TokenCheck::Revoked);
    assert!(matches!(
        a.user_set_disabled("nobody", true),
        Err(RepoError::NotFound(_))
    ));
}

#[test]
fn invitations_open_a_closed_hub_once() {
    let (_d, hub) = hub();
    let a = hub.accounts();
    // closed hub, no invitation
    let e = a
        .signup("carol", "carol's password", None, false)
        .unwrap_err();
    assert!(matches!(e, RepoError::Forbidden(_)), "{e}");
    assert!(!a.user_exists("carol").unwrap());
    let (code, _) = a.invite_create("admin", 3600).unwrap();
    assert!(matches!(
        a.invite_check(&code).unwrap(),
        InviteCheck::Valid { .. }
    ));
    // a refused name does not spend the invitation
    assert!(a
        .signup("api", "a good password", Some(&code), false)
        .is_err());
    assert!(matches!(
        a.invite_check(&code).unwrap(),
        InviteCheck::Valid { .. }
    ));
    let u = a
        .signup("carol", "carol's password", Some(&code), false)
        .unwrap();
    assert!(!u.admin);
    assert!(a
        .verify_password("carol", "carol's password")
        .unwrap()
        .is_some());
    assert_eq!(a.invite_check(&code).unwrap(), InviteCheck::Spent);
    // used once
    let e = a
        .signup("dave", "dave's password", Some(&code), false)
        .unwrap_err();
    assert!(matches!(e, RepoError::Forbidden(_)), "{e}");
    assert!(!a.user_exists("dave").unwrap());
    assert_eq!(a.invite_check("not-a-code").unwrap(), InviteCheck::Unknown);
    // an open hub takes sign-ups without invitations, never as admin, never a taken name
    assert!(
        !a.signup("erin", "erin's password", None, true)
            .unwrap()
            .admin
    );
    assert!(matches!(
        a.signup("erin", "another password", None, true),
        Err(RepoError::Conflict(_))
    ));
}
