//! Connection-level limits against slow and hostile clients:
//!
//! - **header timeout**: a client has `header_timeout_secs` to send a request's headers, from
//!   the moment the hub waits for them (so an idle keep-alive connection is closed after the
//!   same time); slowly dribbled headers no longer hold a connection forever;
//! - **idle timeout**: a connection whose client stops reading what the hub sends (no byte
//!   accepted for `idle_timeout_secs`) is closed;
//! - **minimum body rate**: a request body arriving slower than `min_body_bytes_per_sec`
//!   (time spent waiting for the client, measured per `body_rate_window_secs`) fails the
//!   request with 408;
//! - **declared length**: a `Content-Length` over the route's limit answers 413 before the
//!   body is read, so `Expect: 100-continue` gets 413, never `100 Continue`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::LimitsConfig;
use crate::error::ApiError;

/// Body limit of ordinary (non-upload) routes: axum's default.
pub const SMALL_BODY_LIMIT: u64 = 2 << 20;

/// The message of a body cut for being too slow (recognised by the upload handlers).
pub const TOO_SLOW: &str = "request body arrives too slowly";

/// Middleware: 413 when the declared `Content-Length` exceeds `limit`, before any byte of the
/// body is read (hyper sends `100 Continue` only when the body is first read).
pub async fn declared_length(limit: u64, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared {
        if n > limit {
            let mut resp = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body of {n} bytes exceeds the limit of {limit} bytes"),
            )
            .into_response();
            // The body is never read: the connection cannot be reused.
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return resp;
        }
    }
    next.run(req).await
}

/// Wraps the request body so that a client sending it slower than the minimum rate fails
/// the request. Only time spent waiting for the client counts: a handler that pauses reading
/// (back-pressure) is not held against it. Returns `req` with its body so wrapped and the
/// flag set when it was cut (`None` when the limit is off); [`too_slow`] is then the answer.
pub fn rate_limited(limits: &LimitsConfig, req: Request) -> (Request, Option<Arc<AtomicBool>>) {
    if limits.min_body_bytes_per_sec == 0 || limits.body_rate_window_secs == 0 {
        return (req, None);
    }
    let window = Duration::from_secs(limits.body_rate_window_secs);
    let min_bytes = limits
        .min_body_bytes_per_sec
        .saturating_mul(limits.body_rate_window_secs);
    let (parts, body) = req.into_parts();
    let cut = Arc::new(AtomicBool::new(false));
    let cut2 = cut.clone();
    struct St {
        inner: axum::body::BodyDataStream,
        waited: Duration,
        bytes: u64,
        done: bool,
    }
    let st = St {
        inner: body.into_data_stream(),
        waited: Duration::ZERO,
        bytes: 0,
        done: false,
    };
    let stream = futures::stream::unfold(st, move |mut st| {
        let cut = cut2.clone();
        async move {
            if st.done {
                return None;
            }
            loop {
                let budget = window.saturating_sub(st.waited);
                let start = tokio::time::Instant::now();
                match tokio::time::timeout(budget, st.inner.next()).await {
                    Ok(Some(Ok(b))) => {
                        st.waited += start.elapsed();
                        st.bytes += b.len() as u64;
                        if st.waited >= window {
                            st.waited = Duration::ZERO;
                            st.bytes = 0;
                        }
                        return Some((Ok::<Bytes, io::Error>(b), st));
                    }
                    Ok(Some(Err(e))) => {
                        st.done = true;
                        return Some((Err(io::Error::other(e)), st));
                    }
                    Ok(None) => return None,
                    Err(_) => {
                        if st.bytes < min_bytes {
                            st.done = true;
                            cut.store(true, Ordering::SeqCst);
                            return Some((
                                Err(io::Error::new(io::ErrorKind::TimedOut, TOO_SLOW)),
                                st,
                            ));
                        }
                        st.waited = Duration::ZERO;
                        st.bytes = 0;
                    }
                }
            }
        }
    });
    (
        Request::from_parts(parts, Body::from_stream(stream)),
        Some(cut),
    )
}

/// The answer to a request whose body was cut by [`rate_limited`]: whatever the handler made
/// of the broken body, the client was too slow.
pub fn too_slow(limits: &LimitsConfig) -> Response {
    let mut resp = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "{TOO_SLOW}: less than {} bytes per second",
            limits.min_body_bytes_per_sec
        ),
    )
    .into_response();
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

/// A TCP stream that fails a write the client has not accepted for `idle` (the client
/// stopped reading).
struct StallGuard<T> {
    io: T,
    idle: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> StallGuard<T> {
    fn guard<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending => {
                let idle = self.idle;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client stopped reading",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.guard(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.guard(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.guard(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Serves `app` on `listener` (HTTP/1.1) with the connection limits until `shutdown`
/// completes, then lets in-flight requests finish.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: LimitsConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let header_timeout = Duration::from_secs(limits.header_timeout_secs.max(1));
    let idle = Duration::from_secs(limits.idle_timeout_secs.max(1));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Small responses are written in pieces: without TCP_NODELAY, Nagle's algorithm and
        // delayed ACKs stall them by ~40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        let io = TokioIo::new(StallGuard {
            io: tcp,
            idle,
            stalled: None,
        });
        let svc =
            app.clone()
                .map_request(move |req: axum::http::Request<hyper::body::Incoming>| {
                    let mut req = req.map(Body::new);
                    // What `into_make_service_with_connect_info` provides: per-client limits.
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    req
                });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true)
            .serve_connection(io, TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
