//! The checks every routed request passes, in one middleware (they were six layers, each
//! boxing the request's future and cloning the router per request), in the same order:
//! 0. CORS, preflights and JSON 405s ([`crate::compat`]);
//! 1. a request id in scope, answered in `X-Request-Id` ([`crate::request_id`]);
//! 2. cross-site request forgery ([`crate::csrf`]);
//! 3. the minimum request body rate ([`crate::guard::rate_limited`]);
//! 4. the per-client and server-wide slots of heavy requests ([`crate::ui::limits`]);
//! 5. a mirror refuses writes ([`crate::mirror::refuse_write`]).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::Ordering;

use crate::state::Shared;
use crate::ui::limits;

/// The middleware.
pub async fn gate(State(st): State<Shared>, req: Request, next: Next) -> Response {
    crate::compat::around(req, |req| crate::request_id::with_id(checks(st, req, next))).await
}

async fn checks(st: Shared, req: Request, next: Next) -> Response {
    if let Some(refused) = crate::csrf::check(&st, &req) {
        return refused;
    }
    let (req, cut) = crate::guard::rate_limited(&st.config.limits, req);
    let permits = if limits::is_heavy(req.uri().path()) {
        let (path, ip) = (req.uri().path().to_string(), limits::client_ip(&req));
        match limits::admit(&st, &path, ip).await {
            Ok(p) => p,
            Err(refused) => return refused,
        }
    } else {
        None
    };
    if let Some(refused) = crate::mirror::refuse_write(&st, &req) {
        return refused;
    }
    let resp = next.run(req).await;
    drop(permits);
    match cut {
        Some(c) if c.load(Ordering::SeqCst) => crate::guard::too_slow(&st.config.limits),
        _ => resp,
    }
}
