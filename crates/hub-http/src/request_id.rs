//! Request ids: every request gets one (answered in `X-Request-Id`); a server-side failure
//! answers 5xx naming only that id, and the details go to the log under the same id.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};

/// Response header carrying the request id.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

/// A process-wide random start, then a counter through a bijective mix (splitmix64's
/// finaliser): ids look random, never repeat within a process, and cost no system call.
fn next_raw() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut raw = [0u8; 8];
        let _ = getrandom::fill(&mut raw);
        u64::from_le_bytes(raw)
    });
    let mut z = seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fresh id: 16 lowercase hex digits.
fn fresh() -> String {
    format!("{:016x}", next_raw())
}

/// A fresh id as a header value (what the fast path answers without a `String`).
pub(crate) fn fresh_header() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v = next_raw();
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_hex() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| fresh()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|i| i.len() == 16
            && i.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))));
        let h = fresh_header();
        assert_eq!(h.len(), 16);
        assert!(!ids.contains(h.to_str().expect("ascii")));
    }
}
