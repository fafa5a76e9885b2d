//! [`ApiError`]: every failure of an `/api/*` handler, answered as JSON with a real status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hub_repo::RepoError;
use serde_json::json;

/// An API failure: status code plus message, rendered as
/// `{"status":"error","message":"..."}`.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// An error with a status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
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
        tracing::error!("internal error: {detail}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
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
            RepoError::Format { .. } => StatusCode::BAD_REQUEST,
            RepoError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            RepoError::Io { .. } | RepoError::Sqlite { .. } => return ApiError::internal(e),
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<flist_store::StoreError> for ApiError {
    fn from(e: flist_store::StoreError) -> Self {
        tracing::warn!("chunk store: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("chunk store unavailable: {e}"),
        )
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
            json!({"message": self.message, "status": "error"})
        } else {
            json!({"status": "error", "message": self.message})
        };
        (self.status, Json(body)).into_response()
    }
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;
