//! The OpenAPI stage of an `API` request: after admission (CORS preflights are answered before
//! it, so they never need a declared `OPTIONS`), before the proxy.
//!
//! The path after the API's prefix and the method must be declared (404, 405 with `Allow`);
//! an operation with a request body has its `Content-Type` checked (415) and, for a JSON body
//! with a schema, the body is read within the API body limit and the process's body memory
//! budget (413, 408, 503), parsed strictly (400) and validated (400 naming the JSON pointer and
//! the schema keyword). The bytes read are the bytes forwarded. While the spec cannot be
//! obtained, `enforce` answers 503 (fail closed).
//!
//! In `report` mode nothing is refused: the same violations are counted and logged, and the
//! request goes on. Every violation is counted (`airgate_openapi_violations_total{api, kind,
//! action}`), audited (`openapi_violation`) and logged (rate-limited), with places and rules
//! only: no value of the request's body is ever written.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use http_body::Body as _;

use super::proxy::Payload;
use super::{max_body_bytes, ApiContext, ApiRoute, BODY_READ_TIMEOUT};
use crate::body::{self, BodyReservation};
use crate::error::ApiError;
use crate::openapi::{BodyCheck, CompiledSpec, Violation};
use crate::telemetry::audit::AuditEvent;
use crate::telemetry::log_rate::LogRate;

/// Lines per second about requests that depart from their spec (clients decide how many).
static VIOLATION_LOG: LogRate = LogRate::new(5);

/// What a route does with its `openApiSpec` (absent when there is none or it is `off`).
#[derive(Debug)]
pub struct OpenApiPolicy {
    pub mode: Mode,
    pub spec: SpecState,
}

/// `enforce` or `report` (`off` compiles to no policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Report,
}

impl Mode {
    fn action(self) -> &'static str {
        match self {
            Mode::Enforce => "refused",
            Mode::Report => "reported",
        }
    }
}

/// The compiled spec, or why there is none.
#[derive(Debug)]
pub enum SpecState {
    Ready(Arc<CompiledSpec>),
    /// Could not be read or fetched (and no last known good); the reason is for logs.
    Unavailable(String),
}

/// Who asked, for the records.
#[derive(Clone, Copy)]
pub(super) struct Asker<'a> {
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    pub user: Option<&'a str>,
}

/// The body to forward, and its share of the body memory budget while it is held.
pub(super) struct Checked {
    pub body: Payload,
    pub reservation: Option<BodyReservation>,
}

impl Checked {
    pub(super) fn unread(body: Body) -> Self {
        Self {
            body: Payload::Streamed(body),
            reservation: None,
        }
    }
}

/// Checks the request against the route's spec; the body to forward, or the refusal.
pub(super) async fn check(
    ctx: ApiContext<'_>,
    route: &ApiRoute,
    policy: &OpenApiPolicy,
    parts: &http::request::Parts,
    rest: &str,
    body: Body,
    asker: Asker<'_>,
) -> Result<Checked, ApiError> {
    let record = |violation: &Violation, template: Option<&str>| {
        let refusal = note(ctx, route, policy.mode, violation, template, parts, asker);
        match policy.mode {
            Mode::Enforce => Err(refusal),
            Mode::Report => Ok(()),
        }
    };
    let spec = match &policy.spec {
        SpecState::Ready(spec) => spec,
        SpecState::Unavailable(why) => {
            ctx.metrics
                .openapi_violation(&route.id, "spec_unavailable", policy.mode.action());
            if let Some(suppressed) = VIOLATION_LOG.admit() {
                tracing::warn!(
                    api = %route.id,
                    request_id = asker.request_id,
                    action = policy.mode.action(),
                    reason = %why,
                    suppressed_since_last = suppressed,
                    "the API's OpenAPI spec is unavailable"
                );
            }
            return match policy.mode {
                Mode::Enforce => Err(ApiError::SpecUnavailable),
                Mode::Report => Ok(Checked::unread(body)),
            };
        }
    };
    let matched = match spec.operation(&parts.method, rest) {
        Ok(matched) => matched,
        Err(violation) => {
            record(&violation, None)?;
            return Ok(Checked::unread(body));
        }
    };
    let template = Some(matched.item.template.as_str());
    let declared_length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let empty = body.is_end_stream() || declared_length == Some(0);
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes());
    let expectation = match matched.operation.body_check(spec, content_type, empty) {
        BodyCheck::Pass => return Ok(Checked::unread(body)),
        BodyCheck::Refuse(violation) => {
            record(&violation, template)?;
            return Ok(Checked::unread(body));
        }
        BodyCheck::Read(expectation) => expectation,
    };
    let (bytes, reservation) = body::read(
        &parts.headers,
        body,
        max_body_bytes(),
        BODY_READ_TIMEOUT,
        ctx.body_budget,
    )
    .await?;
    if let Err(violation) = expectation.check(&bytes) {
        record(&violation, template)?;
    }
    Ok(Checked {
        body: Payload::Read(bytes),
        reservation: Some(reservation),
    })
}

/// Counts, audits and logs a violation; the answer it gets in `enforce` mode.
fn note(
    ctx: ApiContext<'_>,
    route: &ApiRoute,
    mode: Mode,
    violation: &Violation,
    template: Option<&str>,
    parts: &http::request::Parts,
    asker: Asker<'_>,
) -> ApiError {
    let (kind, action) = (violation.kind(), mode.action());
    ctx.metrics.openapi_violation(&route.id, kind, action);
    let reason = violation.to_string();
    let mut event = AuditEvent::new(
        "openapi_violation",
        asker.request_id,
        &route.id,
        match mode {
            Mode::Enforce => "denied",
            Mode::Report => "allowed",
        },
        kind,
    )
    .detail("method", parts.method.as_str())
    .detail("message", reason.clone());
    if let Some(template) = template {
        event = event.detail("operation", template);
    }
    if let Violation::Schema(schema) = violation {
        event = event
            .detail("pointer", schema.pointer.clone())
            .detail("keyword", schema.keyword.clone());
    }
    event.user = asker.user.map(str::to_string);
    event.source_ip = Some(asker.client_ip.to_string());
    ctx.audit.record(event);
    if let Some(suppressed) = VIOLATION_LOG.admit() {
        tracing::warn!(
            api = %route.id,
            request_id = asker.request_id,
            kind,
            action,
            method = %parts.method,
            operation = template.unwrap_or(""),
            reason = %reason,
            suppressed_since_last = suppressed,
            "request does not follow the API's OpenAPI spec"
        );
    }
    refusal(violation, parts, reason)
}

/// The answer to a refused request, in the error shape of every route.
fn refusal(violation: &Violation, parts: &http::request::Parts, message: String) -> ApiError {
    match violation {
        Violation::UnknownPath => ApiError::RouteNotFound {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
        },
        Violation::MethodNotAllowed { allow } => ApiError::MethodNotAllowed {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            allow: Some(allow.clone()),
        },
        Violation::UnsupportedMediaType { .. } => ApiError::UnsupportedMediaType(message),
        Violation::MissingBody => ApiError::InvalidBody {
            message,
            param: None,
            code: "missing_body",
        },
        Violation::InvalidJson(_) => ApiError::InvalidBody {
            message,
            param: None,
            code: "invalid_json",
        },
        Violation::Schema(schema) => ApiError::InvalidBody {
            message,
            param: (!schema.pointer.is_empty()).then(|| schema.pointer.clone()),
            code: "schema_violation",
        },
    }
}
