//! Admission, the one gate every route passes (AI gateways and `API` routes alike), in this
//! order: who is calling ([`Admission::authenticate`]: a verified JWT, else an mTLS client's
//! certificate subject), whether they may call now ([`Admission::limit`]: request limits and
//! token budgets, all or nothing in one limiter call), and whether the route's access rules
//! let this request through ([`Admission::authorize`]).
//!
//! Each refusal is answered, counted and audited here, the same way for every route: 401
//! `auth_failure`, 429 `rate_limited` with the `x-ratelimit-*` headers of the refused limit,
//! 403 `access_denied`. What a route limits on is its own business: it hands admission a list
//! of [`Limited`] checks.

use std::net::IpAddr;

use http::header::{AUTHORIZATION, HOST};
use http::{HeaderName, HeaderValue};

use super::peer::peer_identity;
use super::rules::{RequestFacts, Rule};
use super::{Check, Decision, JwtVerifier, LimitKey, RateLimiter};
use crate::error::ApiError;
use crate::telemetry::audit::{AuditEvent, AuditLog};
use crate::telemetry::Metrics;

/// Label of a token-budget check; its refusal has its own message and code.
pub const TOKENS: &str = "tokens";

/// What a route asks of its callers, from its configuration.
#[derive(Clone, Copy, Default)]
pub struct Admission<'a> {
    /// Verifies the caller's bearer token, when the route has `authentication`.
    pub verifier: Option<&'a JwtVerifier>,
    /// Named access rules, every one of which must match (`API` `accessControl`).
    pub policies: &'a [(String, Rule)],
}

/// The request's facts admission counts and audits with.
pub struct AdmissionContext<'a> {
    /// The gateway's or API's `namespace/name`.
    pub scope: &'a str,
    /// The route's metric label (`chat_completions`, `api`, ...).
    pub route: &'a str,
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    pub limiter: &'a RateLimiter,
    pub metrics: &'a Metrics,
    pub audit: &'a AuditLog,
}

/// An admitted caller.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The verified user: the token's user claim when authentication is on, else the client
    /// certificate's subject on an mTLS connection.
    pub user: Option<String>,
    /// Approved for `requiresApproval` backends by a verified claim.
    pub approved: bool,
    /// `x-ratelimit-*` headers of the tightest request limit that applied.
    pub rate_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Caller {
    /// The key per-user limits and budgets count against: the user, else the client address.
    pub fn limit_key(&self, ip: IpAddr) -> LimitKey<'_> {
        match &self.user {
            Some(user) => LimitKey::User(user),
            None => LimitKey::Ip(ip),
        }
    }
}

/// One limit of an admission, with its label (`global`, `user`, `api`, [`TOKENS`]) for the
/// metric, the audit reason and the refusal.
pub struct Limited {
    pub label: &'static str,
    pub check: Check,
}

impl AdmissionContext<'_> {
    /// Audits a refusal.
    fn denied(&self, event: &'static str, reason: String, user: Option<&str>) {
        let mut event = AuditEvent::new(event, self.request_id, self.scope, "denied", reason);
        event.source_ip = Some(self.client_ip.to_string());
        event.user = user.map(str::to_string);
        self.audit.record(event);
    }
}

impl Admission<'_> {
    /// Authenticates the caller: a verified JWT when the route has `authentication` (401
    /// otherwise); without one, an mTLS client's certificate subject is the user.
    pub fn authenticate(
        &self,
        ctx: &AdmissionContext<'_>,
        request: &http::request::Parts,
    ) -> Result<Caller, ApiError> {
        let mut caller = Caller {
            user: peer_identity(&request.extensions).map(str::to_string),
            ..Caller::default()
        };
        if let Some(verifier) = self.verifier {
            let authorization = request
                .headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match verifier.verify(authorization) {
                Ok(identity) => {
                    caller.user = Some(identity.user);
                    caller.approved = identity.approved;
                }
                Err(error) => {
                    ctx.metrics
                        .auth_failure(ctx.scope, ctx.route, error.reason());
                    ctx.denied("auth_failure", error.reason().to_string(), None);
                    return Err(ApiError::Unauthorized);
                }
            }
        }
        Ok(caller)
    }

    /// Charges every limit or none, in one limiter call (one Redis round trip); 429 with the
    /// refused limit's headers otherwise. Sets the caller's `x-ratelimit-*` headers to the
    /// tightest request limit's (token budgets have their own numbers). Returns the checks,
    /// charged, in the order given.
    pub async fn limit(
        &self,
        ctx: &AdmissionContext<'_>,
        caller: &mut Caller,
        limits: Vec<Limited>,
    ) -> Result<Vec<Limited>, ApiError> {
        let checks: Vec<Check> = limits.iter().map(|l| l.check.clone()).collect();
        let decisions = match ctx.limiter.admit_all(&checks).await {
            Ok(decisions) => decisions,
            Err((index, decision)) => {
                return Err(refuse(ctx, caller, limits[index].label, &decision))
            }
        };
        caller.rate_headers = decisions
            .iter()
            .zip(&limits)
            .filter(|(_, limited)| limited.label != TOKENS)
            .map(|(decision, _)| decision)
            .min_by_key(|decision| decision.remaining)
            .map(Decision::headers)
            .unwrap_or_default();
        Ok(limits)
    }

    /// The route's access rules: 403 naming the first rule the request does not match.
    pub fn authorize(
        &self,
        ctx: &AdmissionContext<'_>,
        caller: &Caller,
        request: &http::request::Parts,
    ) -> Result<(), ApiError> {
        if self.policies.is_empty() {
            return Ok(());
        }
        let facts = RequestFacts {
            method: &request.method,
            host: request.headers.get(HOST).and_then(|h| h.to_str().ok()),
            path: request.uri.path(),
            query: request.uri.query(),
            headers: &request.headers,
            client_ip: Some(ctx.client_ip),
        };
        match self
            .policies
            .iter()
            .find(|(_, rule)| !rule.evaluate(&facts))
        {
            None => Ok(()),
            Some((name, _)) => {
                let reason = format!("policy {name}");
                ctx.denied("access_denied", reason, caller.user.as_deref());
                Err(ApiError::PermissionDenied(format!(
                    "Access denied by policy `{name}`"
                )))
            }
        }
    }
}

/// Counts, audits and answers a refused limit.
fn refuse(
    ctx: &AdmissionContext<'_>,
    caller: &Caller,
    label: &'static str,
    decision: &Decision,
) -> ApiError {
    ctx.metrics.rate_limited(ctx.scope, ctx.route, label);
    ctx.denied(
        "rate_limited",
        format!("{label} limit"),
        caller.user.as_deref(),
    );
    let (message, code) = match label {
        TOKENS => (
            "Token budget exceeded for this period; retry later".to_string(),
            "token_budget_exceeded",
        ),
        // An API route has one limit: naming it would say nothing.
        "api" => (
            "Rate limit exceeded; retry later".to_string(),
            "rate_limit_exceeded",
        ),
        _ => (
            format!("Rate limit exceeded ({label}); retry later"),
            "rate_limit_exceeded",
        ),
    };
    ApiError::RateLimited {
        message,
        code,
        headers: decision.headers(),
    }
}
