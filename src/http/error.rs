//! Every way an HTTP request can be refused, mapped to a status code and a metric outcome in
//! one place.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ingest::IngestError;
use crate::metrics::RequestOutcome;
use crate::payload::PayloadError;

/// Why a webhook request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not a valid event or array of events (400).
    #[error("{0}")]
    Payload(#[from] PayloadError),
    /// The `group` query parameter is not acceptable (400).
    #[error("query parameter group {0}")]
    BadGroup(&'static str),
    /// The body is larger than `--webhook.max-body-bytes` (413).
    #[error("body is larger than {limit} bytes (--webhook.max-body-bytes)")]
    TooLarge {
        /// The limit in force, in bytes.
        limit: u64,
    },
    /// The body did not arrive within `--web.body-timeout` (408).
    #[error("body was not received within {seconds}s (--web.body-timeout)")]
    BodyTimeout {
        /// The timeout in force, in whole seconds (rounded down).
        seconds: u64,
    },
    /// The body could not be read (400).
    #[error("body could not be read: {0}")]
    BodyRead(String),
    /// A secret is configured and the request carries none that matches (401).
    #[error("missing or wrong webhook secret")]
    Unauthorized,
    /// The secret given as the last path segment is wrong (404, as for any unknown path).
    #[error("wrong webhook secret in the path")]
    WrongPathSecret,
    /// The source address is not in `--webhook.allowed-cidrs` (403).
    #[error("source address is not in --webhook.allowed-cidrs")]
    Forbidden,
    /// The source spent its rate budget (429).
    #[error("too many requests from this source (--web.rate-limit)")]
    RateLimited,
    /// The events could not be applied (507 series limit, 503 store or shutdown).
    #[error("{0}")]
    Ingest(#[from] IngestError),
}

impl ApiError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Payload(_) | ApiError::BadGroup(_) | ApiError::BodyRead(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::WrongPathSecret => StatusCode::NOT_FOUND,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Ingest(IngestError::SeriesLimit { .. }) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Ingest(IngestError::Unavailable | IngestError::ShuttingDown) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The `outcome` label it is counted under.
    pub fn outcome(&self) -> RequestOutcome {
        match self {
            ApiError::Payload(e) if e.is_date_out_of_range() => RequestOutcome::DateOutOfRange,
            ApiError::Payload(_) | ApiError::BadGroup(_) | ApiError::BodyRead(_) => {
                RequestOutcome::Invalid
            }
            ApiError::TooLarge { .. } => RequestOutcome::TooLarge,
            ApiError::BodyTimeout { .. } => RequestOutcome::Timeout,
            ApiError::Unauthorized | ApiError::WrongPathSecret => RequestOutcome::Unauthorized,
            ApiError::Forbidden => RequestOutcome::Forbidden,
            ApiError::RateLimited => RequestOutcome::RateLimited,
            ApiError::Ingest(IngestError::SeriesLimit { .. }) => RequestOutcome::SeriesLimit,
            ApiError::Ingest(_) => RequestOutcome::Unavailable,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "status": "refused", "error": self.to_string() });
        if let ApiError::Payload(e) = &self {
            if let Some(field) = e.field() {
                body["field"] = json!(field.as_str());
            }
            if let Some(index) = e.index() {
                body["index"] = json!(index);
            }
        }
        if let ApiError::BadGroup(_) = &self {
            body["field"] = json!("group");
        }
        let mut response = (self.status(), Json(body)).into_response();
        match self {
            ApiError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_client_or_server_error_status() {
        let all = [
            ApiError::BadGroup("is empty"),
            ApiError::TooLarge { limit: 1 },
            ApiError::BodyTimeout { seconds: 1 },
            ApiError::BodyRead("x".into()),
            ApiError::Unauthorized,
            ApiError::WrongPathSecret,
            ApiError::Forbidden,
            ApiError::RateLimited,
            ApiError::Payload(PayloadError::Empty),
            ApiError::Ingest(IngestError::Unavailable),
            ApiError::Ingest(IngestError::SeriesLimit {
                tracked: 1,
                adding: 1,
                max: 1,
            }),
        ];
        for error in all {
            let status = error.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{error:?}"
            );
            assert_ne!(error.outcome(), RequestOutcome::Accepted);
        }
    }
}
