//! The one error type that becomes an HTTP answer, in OpenAI's error shape.
//! The status is an exhaustive match; 5xx details that could leak internals are logged, not shown.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::openai::{ErrorBody, ErrorObject};

/// One failed upstream attempt, as named in a 503 message.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptFailure {
    pub backend: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or semantically invalid request.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    /// No backend lists the requested model.
    #[error("The model `{0}` does not exist or is not served by this gateway")]
    ModelNotFound(String),
    /// No route at this path.
    #[error("Unknown request URL: {method} {path}")]
    RouteNotFound { method: String, path: String },
    /// The body is larger than the configured limit.
    #[error("Request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// The client did not send its body in time.
    #[error("Timed out reading the request body")]
    RequestTimeout,
    /// No valid bearer token; the reason goes to the audit log, never to the client.
    #[error("Invalid or missing bearer token")]
    Unauthorized,
    /// A request limit or the token budget refused the request.
    #[error("{message}")]
    RateLimited {
        message: String,
        code: &'static str,
        headers: Vec<(http::HeaderName, HeaderValue)>,
    },
    /// The caller may not use what it asked for.
    #[error("{0}")]
    PermissionDenied(String),
    /// The content guard refused the prompt; names the rule, never the matched text.
    #[error("Content policy violation (rule: {rule})")]
    ContentPolicy { rule: String },
    /// Every candidate backend failed before answering.
    #[error("{}", no_backend_message(model, attempts))]
    NoBackendAvailable {
        model: String,
        attempts: Vec<AttemptFailure>,
    },
    /// Every candidate answered 429: the fleet is busy, not broken.
    #[error("{}", rate_limited_message(model, attempts))]
    UpstreamRateLimited {
        model: String,
        attempts: Vec<AttemptFailure>,
        /// The shortest `Retry-After` the backends asked for (bounded when read).
        retry_after: Option<std::time::Duration>,
    },
    /// A backend's own non-retriable error answer, normalised, with its status.
    #[error("{}", body.error.message)]
    Upstream { status: u16, body: ErrorBody },
    /// The gateway's own 502: a backend answered something it cannot pass on (a redirect, an
    /// answer the guard cannot scan) or could not be reached.
    #[error("{message}")]
    BadGateway { message: String, code: &'static str },
    /// The gateway's own 504: a service did not answer in time.
    #[error("{message}")]
    GatewayTimeout { message: String, code: &'static str },
    /// The path exists, the method does not; `allow` is the `Allow` header, when known.
    #[error("Method {method} is not allowed on {path}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: Option<String>,
    },
    /// The request's body does not follow the `API`'s OpenAPI spec (missing, not JSON, or
    /// against its schema). The message names the JSON pointer and the schema keyword, never a
    /// value of the body.
    #[error("{message}")]
    InvalidBody {
        message: String,
        /// The JSON pointer that failed, when there is one.
        param: Option<String>,
        code: &'static str,
    },
    /// The body's `Content-Type` is not one the operation declares.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The `API` enforces an OpenAPI spec that could not be obtained: refused, fail closed.
    #[error(
        "The OpenAPI spec of this API is unavailable; requests are refused until it can be read"
    )]
    SpecUnavailable,
    /// The process-wide memory budget for buffered request bodies is used up.
    #[error("The gateway is at its memory budget for request bodies; retry shortly")]
    Overloaded,
    /// The gateway is shutting down and the grace period for this request is over.
    #[error("The gateway is shutting down; retry the request")]
    ShuttingDown,
    /// A bug or an internal fault; the detail is logged, never shown.
    #[error("internal error")]
    Internal(String),
}

fn no_backend_message(model: &str, attempts: &[AttemptFailure]) -> String {
    if attempts.is_empty() {
        return format!("No backend is available for model `{model}`");
    }
    let tried: Vec<String> = attempts
        .iter()
        .map(|a| format!("{}: {}", a.backend, a.reason))
        .collect();
    format!(
        "No backend could serve model `{model}`; attempts: {}",
        tried.join("; ")
    )
}

fn rate_limited_message(model: &str, attempts: &[AttemptFailure]) -> String {
    let names: Vec<&str> = attempts.iter().map(|a| a.backend.as_str()).collect();
    format!(
        "Every backend for model `{model}` is rate limited ({}); retry later",
        names.join(", ")
    )
}

/// Seconds a client is asked to wait when every backend answered 429 and none said how long.
const UPSTREAM_RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_string),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } | ApiError::InvalidBody { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::SpecUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ModelNotFound(_) | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PermissionDenied(_) | ApiError::ContentPolicy { .. } => StatusCode::FORBIDDEN,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NoBackendAvailable { .. } | ApiError::ShuttingDown | ApiError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::UpstreamRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Upstream { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            ApiError::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Low-cardinality name for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::InvalidBody { .. } => "invalid_body",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::SpecUnavailable => "openapi_spec_unavailable",
            ApiError::ModelNotFound(_) => "model_not_found",
            ApiError::RouteNotFound { .. } => "route_not_found",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::PermissionDenied(_) => "permission_denied",
            ApiError::Unauthorized => "unauthorized",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::ContentPolicy { .. } => "content_policy_violation",
            ApiError::NoBackendAvailable { .. } => "no_backend_available",
            ApiError::UpstreamRateLimited { .. } => "upstream_rate_limited",
            ApiError::Upstream { .. } => "upstream_error",
            ApiError::BadGateway { .. } => "bad_gateway",
            ApiError::GatewayTimeout { .. } => "gateway_timeout",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::ShuttingDown => "gateway_shutdown",
            ApiError::Overloaded => "gateway_overloaded",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        let object = match self {
            ApiError::InvalidRequest { message, param } => ErrorObject {
                param: param.clone(),
                ..ErrorObject::new(message.clone(), "invalid_request_error", None)
            },
            ApiError::ModelNotFound(model) => ErrorObject {
                param: Some("model".into()),
                ..ErrorObject::new(
                    format!("The model `{model}` does not exist or is not served by this gateway"),
                    "invalid_request_error",
                    Some("model_not_found"),
                )
            },
            ApiError::InvalidBody {
                message,
                param,
                code,
            } => ErrorObject {
                param: param.clone(),
                ..ErrorObject::new(message.clone(), "invalid_request_error", Some(code))
            },
            ApiError::UnsupportedMediaType(message) => ErrorObject::new(
                message.clone(),
                "invalid_request_error",
                Some("unsupported_media_type"),
            ),
            ApiError::SpecUnavailable => ErrorObject::new(
                self.to_string(),
                "server_error",
                Some("openapi_spec_unavailable"),
            ),
            ApiError::RouteNotFound { .. } => ErrorObject::new(
                self.to_string(),
                "invalid_request_error",
                Some("unknown_url"),
            ),
            ApiError::PayloadTooLarge { .. } => ErrorObject::new(
                self.to_string(),
                "invalid_request_error",
                Some("request_too_large"),
            ),
            ApiError::RequestTimeout => {
                ErrorObject::new(self.to_string(), "invalid_request_error", Some("timeout"))
            }
            ApiError::PermissionDenied(message) => ErrorObject::new(
                message.clone(),
                "permission_error",
                Some("permission_denied"),
            ),
            ApiError::Unauthorized => ErrorObject::new(
                self.to_string(),
                "authentication_error",
                Some("invalid_api_key"),
            ),
            ApiError::RateLimited { code, .. } => {
                ErrorObject::new(self.to_string(), "rate_limit_error", Some(code))
            }
            ApiError::ContentPolicy { .. } => ErrorObject::new(
                self.to_string(),
                "permission_error",
                Some("content_policy_violation"),
            ),
            ApiError::NoBackendAvailable { .. } => ErrorObject::new(
                self.to_string(),
                "server_error",
                Some("no_backend_available"),
            ),
            ApiError::UpstreamRateLimited { .. } => ErrorObject::new(
                self.to_string(),
                "rate_limit_error",
                Some("upstream_rate_limited"),
            ),
            ApiError::Upstream { body, .. } => body.error.clone(),
            ApiError::BadGateway { message, code } | ApiError::GatewayTimeout { message, code } => {
                ErrorObject::new(message.clone(), "server_error", Some(code))
            }
            ApiError::MethodNotAllowed { .. } => {
                ErrorObject::new(self.to_string(), "invalid_request_error", None)
            }
            ApiError::Overloaded => {
                ErrorObject::new(self.to_string(), "server_error", Some("gateway_overloaded"))
            }
            ApiError::ShuttingDown => {
                ErrorObject::new(self.to_string(), "server_error", Some("gateway_shutdown"))
            }
            ApiError::Internal(_) => ErrorObject::new(
                "Internal gateway error",
                "server_error",
                Some("internal_error"),
            ),
        };
        ErrorBody { error: object }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(detail = %detail, "internal error");
        }
        let status = self.status();
        let mut response = (status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        match &self {
            // The OpenAI SDK retries 5xx by itself; a fleet that is down would see the load tripled.
            ApiError::NoBackendAvailable { .. } => {
                headers.insert("x-should-retry", HeaderValue::from_static("false"));
            }
            ApiError::UpstreamRateLimited { retry_after, .. } => {
                let seconds = retry_after.map_or(UPSTREAM_RETRY_AFTER_SECS, |d| d.as_secs());
                headers.insert("retry-after", HeaderValue::from(seconds));
            }
            ApiError::Unauthorized => {
                headers.insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"airgate\", error=\"invalid_token\""),
                );
            }
            ApiError::RateLimited {
                headers: limit_headers,
                ..
            } => {
                for (name, value) in limit_headers {
                    headers.insert(name.clone(), value.clone());
                }
            }
            ApiError::MethodNotAllowed {
                allow: Some(allow), ..
            } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(http::header::ALLOW, value);
                }
            }
            ApiError::RequestTimeout | ApiError::PayloadTooLarge { .. } => {
                headers.insert("connection", HeaderValue::from_static("close"));
            }
            // Another replica can answer, or this one shortly: the SDK's own retry is welcome
            // here. The unread body stays unread: the connection is closed.
            ApiError::ShuttingDown | ApiError::Overloaded => {
                headers.insert("connection", HeaderValue::from_static("close"));
                headers.insert("retry-after", HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_openai_contract() {
        assert_eq!(ApiError::invalid("x", None).status(), 400);
        assert_eq!(ApiError::ModelNotFound("m".into()).status(), 404);
        assert_eq!(ApiError::PayloadTooLarge { limit: 1 }.status(), 413);
        assert_eq!(ApiError::RequestTimeout.status(), 408);
        let e = ApiError::NoBackendAvailable {
            model: "m".into(),
            attempts: vec![AttemptFailure {
                backend: "a".into(),
                reason: "connection refused".into(),
            }],
        };
        assert_eq!(e.status(), 503);
        assert_eq!(
            e.body().error.message,
            "No backend could serve model `m`; attempts: a: connection refused"
        );
    }

    #[test]
    fn internal_detail_is_not_shown() {
        let e = ApiError::Internal("secret path /etc/x".into());
        assert!(!e.body().error.message.contains("secret"));
    }
}
