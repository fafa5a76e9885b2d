//! Request ids: every request gets one (answered in `X-Request-Id`); a server-side failure
//! answers 5xx naming only that id, and the details go to the log under the same id.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// Response header carrying the request id.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

fn fresh() -> String {
    let mut raw = [0u8; 8];
    let _ = getrandom::fill(&mut raw);
    hex::encode(raw)
}

/// The id of the request being handled (a fresh one outside a request, e.g. on a blocking
/// thread, so a log line and a message still match).
pub fn current() -> String {
    CURRENT.try_with(Clone::clone).unwrap_or_else(|_| fresh())
}

/// The id a server-side error was logged under (a response extension; the middleware answers
/// it in [`HEADER`] so the header always matches the message and the log).
#[derive(Clone, Debug)]
pub struct LoggedId(pub String);

/// Middleware: assigns the id, runs the request with it in scope, and answers it.
pub async fn layer(req: Request, next: Next) -> Response {
    let id = fresh();
    let mut resp = CURRENT.scope(id.clone(), next.run(req)).await;
    let id = match resp.extensions().get::<LoggedId>() {
        Some(l) => l.0.clone(),
        None => id,
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}
