//! [`ApiError`]: every failure of an `/api/*` handler, answered as JSON with a real status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hub_contract::ErrorBody;
use hub_repo::RepoError;

/// An API failure: status code plus message, rendered as
/// `{"status":"error","message":"..."}`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// For server-side failures: the request id the details were logged under.
    pub request_id: Option<String>,
}

impl ApiError {
    /// An error with a status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            request_id: None,
        }
    }
    /// 400.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    /// 401.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }
    /// 403.
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, m)
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    /// 500 (the detail is logged, not sent).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::server(StatusCode::INTERNAL_SERVER_ERROR, "internal error", detail)
    }
    /// A server-side failure: `status` and `public` are answered with the request id, the
    /// `detail` (paths, causes) is only logged under that id.
    pub fn server(status: StatusCode, public: &str, detail: impl std::fmt::Display) -> Self {
        let id = crate::request_id::current();
        tracing::error!(request_id = %id, "{public}: {detail}");
        ApiError {
            status,
            message: format!("{public} (request id {id})"),
            request_id: Some(id),
        }
    }
    /// 507: storage is full (`what` names it: the flist storage, the catalog).
    pub fn storage_full(what: &str, detail: impl std::fmt::Display) -> Self {
        Self::server(
            StatusCode::INSUFFICIENT_STORAGE,
            &format!("insufficient storage: the hub's {what} is full; nothing was changed"),
            detail,
        )
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        let status = match &e {
            RepoError::InvalidName { .. } | RepoError::Invalid(_) => StatusCode::BAD_REQUEST,
            RepoError::NotFound(_) => StatusCode::NOT_FOUND,
            RepoError::Conflict(_) => StatusCode::CONFLICT,
            RepoError::Forbidden(_) => StatusCode::FORBIDDEN,
            RepoError::Cycle(_) => StatusCode::CONFLICT,
            RepoError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RepoError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            RepoError::Cancelled => StatusCode::REQUEST_TIMEOUT,
            RepoError::Files { .. } => {
                return ApiError::server(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "flist file store unavailable: try again later",
                    e,
                )
            }
            _ if e.full_storage().is_some() => {
                return ApiError::storage_full(e.full_storage().unwrap_or("storage"), e)
            }
            _ if e.is_unavailable() => {
                return ApiError::server(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "catalog unavailable: try again later",
                    e,
                )
            }
            RepoError::Format { .. } | RepoError::Io { .. } | RepoError::Database { .. } => {
                return ApiError::internal(e)
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<flist_store::StoreError> for ApiError {
    /// The store's own message names its address and server paths: it is logged under the
    /// request id, the answer says only which component failed (507 when it is full).
    fn from(e: flist_store::StoreError) -> Self {
        if store_is_full(&e) {
            return ApiError::storage_full("chunk store", e);
        }
        ApiError::server(
            StatusCode::SERVICE_UNAVAILABLE,
            "chunk store unavailable: try again later",
            e,
        )
    }
}

/// True when the store refused a write for lack of room (a full disk under a directory
/// store, a full 0-db namespace).
pub fn store_is_full(e: &flist_store::StoreError) -> bool {
    match e {
        flist_store::StoreError::NamespaceFull { .. } => true,
        flist_store::StoreError::Io { source, .. } => hub_repo::io_is_full(source),
        _ => false,
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("worker task failed: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The old hub answered authentication failures with `message` first; clients that
        // compare bodies see the same.
        let body = if self.status == StatusCode::UNAUTHORIZED {
            ErrorBody::unauthorized(self.message)
        } else {
            ErrorBody::new(self.message)
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // a component (catalog, chunk store) is down: load balancers and clients retry
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        if let Some(id) = self.request_id {
            resp.extensions_mut()
                .insert(crate::request_id::LoggedId(id));
        }
        resp
    }
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;
