//! Accounts from the web: a user's account page (password change), sign-up (open when
//! `signup = true`, else only with an admin's invitation) and the admin page (accounts
//! listed, disabled or enabled — disabling ends sessions and revokes tokens — passwords
//! reset, invitations made).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use hub_repo::{Actor, InviteCheck, MIN_PASSWORD_LEN};
use serde::Deserialize;
use serde_json::json;

use super::{check_same_origin, no_store, redirect_with, Ctx};
use crate::error::ApiError;
use crate::state::Shared;

/// Lifetime of an invitation.
const INVITE_TTL_SECS: i64 = 7 * 86_400;

/// `GET /account`: who you are, your password.
pub async fn account(State(st): State<Shared>, ctx: Ctx) -> Response {
    let actor = match ctx.require() {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let user = actor.user.clone();
    let r = st
        .blocking(move |hub| {
            let admin = hub.accounts().is_admin(&user)?;
            let info = hub
                .accounts()
                .user_list()?
                .into_iter()
                .find(|u| u.name == user);
            Ok((admin, info))
        })
        .await;
    let (admin, info) = match r {
        Ok(x) => x,
        Err(e) => return ctx.error(&e),
    };
    no_store(ctx.render(
        "account.html",
        "Your account",
        json!({"user": actor.user, "admin": admin, "local": info.is_some(),
               "updated": info.map(|i| i.updated), "min_len": MIN_PASSWORD_LEN}),
    ))
}

/// Form changing one's password.
#[derive(Deserialize)]
pub struct PasswordChange {
    #[serde(default)]
    current: String,
    password: String,
    confirm: String,
}

/// `POST /account/password`: checks the current password, sets the new one, ends every
/// session (this one too: sign in again).
pub async fn change_password(
    State(st): State<Shared>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<PasswordChange>,
) -> Response {
    let actor = match ctx.require_form(&headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if f.password != f.confirm {
        return redirect_with("/account", "error", "The new passwords differ.");
    }
    let user = actor.user.clone();
    let r = st
        .blocking(move |hub| {
            Ok(hub
                .accounts()
                .change_password(&user, &f.current, &f.password)?)
        })
        .await;
    match r {
        Ok(()) => redirect_with(
            "/login-method",
            "ok",
            "Password changed: sign in with the new one.",
        ),
        Err(e) => redirect_with("/account", "error", &e.message),
    }
}

/// Query of the sign-up page.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignupQuery {
    invite: String,
}

/// `GET /signup`: the form, when the hub is open or the invitation is valid.
pub async fn signup_page(
    State(st): State<Shared>,
    ctx: Ctx,
    Query(q): Query<SignupQuery>,
) -> Response {
    let invite = q.invite.trim().to_string();
    let code = invite.clone();
    let check = if invite.is_empty() {
        None
    } else {
        match st
            .blocking(move |hub| Ok(hub.accounts().invite_check(&code)?))
            .await
        {
            Ok(c) => Some(c),
            Err(e) => return ctx.error(&e),
        }
    };
    let refused = match (&check, st.config.signup) {
        (Some(InviteCheck::Valid { .. }), _) | (None, true) => None,
        (Some(_), _) => Some(
            "This invitation is used, expired or unknown: ask an admin of this hub for a new one.",
        ),
        (None, false) => {
            Some("This hub does not take sign-ups: ask an admin of this hub for an invitation.")
        }
    };
    let status = if refused.is_some() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    no_store(ctx.render_status(
        status,
        "signup.html",
        "Create an account",
        json!({"invite": invite, "refused": refused, "min_len": MIN_PASSWORD_LEN,
               "expires": match check { Some(InviteCheck::Valid { expires }) => Some(expires), _ => None }}),
    ))
}

/// Sign-up form.
#[derive(Deserialize)]
pub struct Signup {
    username: String,
    password: String,
    confirm: String,
    #[serde(default)]
    invite: String,
}

/// `POST /signup`: creates the account and signs it in (to `/account`).
pub async fn signup(
    State(st): State<Shared>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<Signup>,
) -> Response {
    if let Err(e) = check_same_origin(&headers) {
        return ctx.error(&e);
    }
    let back = if f.invite.trim().is_empty() {
        "/signup".to_string()
    } else {
        format!("/signup?invite={}", super::qv(f.invite.trim()))
    };
    if f.password != f.confirm {
        return redirect_with(&back, "error", "The passwords differ.");
    }
    let name = f.username.trim().to_string();
    let open = st.config.signup;
    let n2 = name.clone();
    let r = st
        .blocking(move |hub| {
            let code = Some(f.invite.as_str()).filter(|c| !c.trim().is_empty());
            Ok(hub.accounts().signup(&n2, &f.password, code, open)?)
        })
        .await;
    match r {
        Ok(_) => {
            tracing::info!(user = %name, "account created by sign-up");
            // the account page: a new account has no repository page before its first flist
            match crate::login::start_session(
                &st,
                &name,
                Vec::new(),
                "password",
                StatusCode::SEE_OTHER,
                "/account",
            )
            .await
            {
                Ok(resp) => resp,
                Err(e) => ctx.error(&e),
            }
        }
        Err(e) => redirect_with(&back, "error", &e.message),
    }
}

/// The signed-in admin, or the page to show instead (sign-in, or 403).
#[allow(clippy::result_large_err)]
async fn require_admin(st: &Shared, ctx: &Ctx) -> Result<Actor, Response> {
    let actor = ctx.require()?.clone();
    let user = actor.user.clone();
    match st
        .blocking(move |hub| Ok(hub.accounts().is_admin(&user)?))
        .await
    {
        Ok(true) => Ok(actor),
        Ok(false) => Err(ctx.error(&ApiError::forbidden(
            "This page is for the admins of this hub.",
        ))),
        Err(e) => Err(ctx.error(&e)),
    }
}

/// [`require_admin`] for a form POST: it must also come from the hub's own pages.
#[allow(clippy::result_large_err)]
async fn require_admin_form(
    st: &Shared,
    ctx: &Ctx,
    headers: &HeaderMap,
) -> Result<Actor, Response> {
    check_same_origin(headers).map_err(|e| ctx.error(&e))?;
    require_admin(st, ctx).await
}

async fn admin_page(st: &Shared, ctx: &Ctx, invite: Option<(String, i64)>) -> Response {
    let actor = match require_admin(st, ctx).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let r = st
        .blocking(move |hub| {
            let users = hub.accounts().user_list()?;
            let mut rows = Vec::with_capacity(users.len());
            for u in users {
                let tokens = hub.accounts().list_tokens(&u.name)?.len();
                rows.push(
                    json!({"name": u.name, "admin": u.admin, "created": u.created,
                                 "updated": u.updated, "disabled": u.disabled, "tokens": tokens}),
                );
            }
            Ok(rows)
        })
        .await;
    let rows = match r {
        Ok(r) => r,
        Err(e) => return ctx.error(&e),
    };
    let base = st.config.public_url();
    let invite = invite.map(|(code, expires)| {
        json!({"url": format!("{base}/signup?invite={code}"), "expires": expires})
    });
    no_store(ctx.render(
        "admin.html",
        "Accounts",
        json!({"users": rows, "me": actor.user, "invite": invite, "signup": st.config.signup,
               "min_len": MIN_PASSWORD_LEN}),
    ))
}

/// `GET /admin`: every account, with its switches.
pub async fn admin(State(st): State<Shared>, ctx: Ctx) -> Response {
    admin_page(&st, &ctx, None).await
}

/// Form disabling or enabling an account.
#[derive(Deserialize)]
pub struct Disable {
    user: String,
    /// `1`: disable, `0`: enable.
    disable: u8,
}

/// `POST /admin/disable`
pub async fn admin_disable(
    State(st): State<Shared>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<Disable>,
) -> Response {
    let actor = match require_admin_form(&st, &ctx, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let disable = f.disable == 1;
    if disable && f.user == actor.user {
        return redirect_with("/admin", "error", "You cannot disable your own account.");
    }
    let user = f.user.clone();
    let r = st
        .blocking(move |hub| Ok(hub.accounts().user_set_disabled(&user, disable)?))
        .await;
    match r {
        Ok(tokens) => {
            tracing::info!(admin = %actor.user, user = %f.user, disable, "account switched");
            let text = if disable {
                format!(
                    "Disabled {}: its sessions ended and {tokens} token{} revoked.",
                    f.user,
                    if tokens == 1 { " was" } else { "s were" }
                )
            } else {
                format!("Enabled {} again.", f.user)
            };
            redirect_with("/admin", "ok", &text)
        }
        Err(e) => redirect_with("/admin", "error", &e.message),
    }
}

/// Form resetting a password.
#[derive(Deserialize)]
pub struct Reset {
    user: String,
    password: String,
}

/// `POST /admin/password`: sets a new password (the account's sessions end).
pub async fn admin_password(
    State(st): State<Shared>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(f): Form<Reset>,
) -> Response {
    let actor = match require_admin_form(&st, &ctx, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let user = f.user.clone();
    let r = st
        .blocking(move |hub| Ok(hub.accounts().user_passwd(&user, &f.password)?))
        .await;
    match r {
        Ok(()) => {
            tracing::info!(admin = %actor.user, user = %f.user, "password reset");
            redirect_with(
                "/admin",
                "ok",
                &format!("New password set for {}: its sessions ended.", f.user),
            )
        }
        Err(e) => redirect_with("/admin", "error", &e.message),
    }
}

/// `POST /admin/invite`: makes an invitation and shows its link once.
pub async fn admin_invite(State(st): State<Shared>, ctx: Ctx, headers: HeaderMap) -> Response {
    let actor = match require_admin_form(&st, &ctx, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let by = actor.user.clone();
    match st
        .blocking(move |hub| Ok(hub.accounts().invite_create(&by, INVITE_TTL_SECS)?))
        .await
    {
        Ok(inv) => admin_page(&st, &ctx, Some(inv)).await,
        Err(e) => ctx.error(&e),
    }
}
