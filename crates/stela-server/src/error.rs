//! The one place where errors become HTTP statuses and JSON error bodies.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use stela_service::{ErrorCode, ServiceError};

/// An error answered to a client: `{"code": 400, "type": "error", "message": "…"}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message)
    }
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::BadRequest | ErrorCode::InvalidQuery => StatusCode::BAD_REQUEST,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::QueryTimeout | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let status = status_of(error.code());
        if error.code() == ErrorCode::Unavailable {
            tracing::warn!(error = %error, "database unavailable");
            let message = if error.to_string().contains("outcome is unknown") {
                "the database became unavailable while committing; the change may or may not \
                 have been stored: read it back before retrying"
            } else {
                "the database is unavailable; nothing was changed, retry later"
            };
            return ApiError::new(status, message);
        }
        if status.is_server_error() {
            // The detail goes to the log; the client learns only that it was not its fault.
            tracing::error!(error = %error, "request failed");
            return ApiError::new(
                status,
                "internal server error; the details are in the server log",
            );
        }
        ApiError::new(status, error.to_string())
    }
}

impl From<stela_query::QueryError> for ApiError {
    fn from(error: stela_query::QueryError) -> Self {
        match error.code() {
            stela_query::ErrorCode::UnsupportedOption => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, error.to_string())
            }
            _ => ApiError::bad_request(error.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.status.as_u16(), "type": "error", "message": self.message});
        (self.status, Json(body)).into_response()
    }
}
