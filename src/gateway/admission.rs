//! Admission: who is calling (a verified JWT), whether they may call now (global and per-user
//! request limits), and for how many tokens (the per-user token budget, reserved up front and
//! settled with the real usage afterwards).
//!
//! The caller's user, for per-user limits, budgets and audit, is the verified JWT's user claim
//! when the gateway has `authentication`; otherwise the verified client certificate's subject
//! when the connection is mTLS ([`crate::access::peer::PeerIdentity`]); otherwise none, and
//! per-user limits count against the client IP.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::AiRequest;
use crate::access::peer::peer_identity;
use crate::access::settings::TokenBudget;
use crate::access::{Check, Decision, LimitKey, RateLimiter};
use crate::error::ApiError;
use crate::openai::answer::Answer;
use crate::openai::request::Request;
use crate::telemetry::audit::{AuditEvent, AuditLog};
use crate::telemetry::Metrics;

/// The parts of a request's context admission needs.
pub struct AdmissionContext<'a> {
    pub gateway: &'a str,
    pub route: &'a str,
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    pub limiter: &'a RateLimiter,
    pub metrics: &'a Metrics,
    pub audit: &'a AuditLog,
}

/// An admitted caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The verified user: the token's user claim when authentication is on, else the client
    /// certificate's subject on an mTLS connection.
    pub user: Option<String>,
    /// Approved for `requiresApproval` backends by a verified claim.
    pub approved: bool,
    /// `x-ratelimit-*` headers of the tightest limit that applied.
    pub rate_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Caller {
    /// The key per-user limits and budgets count against.
    pub fn limit_key(&self, ip: IpAddr) -> LimitKey<'_> {
        match &self.user {
            Some(user) => LimitKey::User(user),
            None => LimitKey::Ip(ip),
        }
    }
}

impl AdmissionContext<'_> {
    fn event(&self, event: &'static str, outcome: &'static str, reason: String) -> AuditEvent {
        let mut event = AuditEvent::new(event, self.request_id, self.gateway, outcome, reason);
        event.source_ip = Some(self.client_ip.to_string());
        event
    }
}

/// Authenticates the caller (a verified JWT when the gateway has `authentication`); without
/// one, an mTLS client's certificate subject is the user.
pub fn authenticate(
    ctx: &AdmissionContext<'_>,
    gateway: &super::Gateway,
    request: &http::request::Parts,
) -> Result<Caller, ApiError> {
    let mut caller = Caller {
        user: peer_identity(&request.extensions).map(str::to_string),
        approved: false,
        rate_headers: Vec::new(),
    };
    if let Some(verifier) = &gateway.verifier {
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
                    .auth_failure(ctx.gateway, ctx.route, error.reason());
                ctx.audit
                    .record(ctx.event("auth_failure", "denied", error.reason().to_string()));
                return Err(ApiError::Unauthorized);
            }
        }
    }
    Ok(caller)
}

fn refuse(
    ctx: &AdmissionContext<'_>,
    caller: &Caller,
    label: &'static str,
    decision: &Decision,
) -> ApiError {
    ctx.metrics.rate_limited(ctx.gateway, ctx.route, label);
    let mut event = ctx.event("rate_limited", "denied", format!("{label} limit"));
    event.user.clone_from(&caller.user);
    ctx.audit.record(event);
    ApiError::RateLimited {
        message: match label {
            "tokens" => "Token budget exceeded for this period; retry later".to_string(),
            _ => format!("Rate limit exceeded ({label}); retry later"),
        },
        code: if label == "tokens" {
            "token_budget_exceeded"
        } else {
            "rate_limit_exceeded"
        },
        headers: decision.headers(),
    }
}

/// Tokens reserved for one request; settled with the real usage, refunded in full when the
/// request never reached a backend (dropped unsettled).
pub struct Reservation {
    limiter: RateLimiter,
    key: String,
    budget: TokenBudget,
    reserved: u64,
    settled: bool,
}

impl Reservation {
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Charges `actual` tokens instead of the reservation (in the background).
    pub fn settle(mut self, actual: u64) {
        self.settled = true;
        let (limiter, key, budget, reserved) = (
            self.limiter.clone(),
            self.key.clone(),
            self.budget.budget,
            self.reserved,
        );
        spawn_settle(limiter, key, budget, reserved, actual);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            spawn_settle(
                self.limiter.clone(),
                self.key.clone(),
                self.budget.budget,
                self.reserved,
                0,
            );
        }
    }
}

fn spawn_settle(
    limiter: RateLimiter,
    key: String,
    budget: crate::access::Limit,
    reserved: u64,
    actual: u64,
) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move { limiter.settle_tokens(&key, budget, reserved, actual).await });
    }
}

/// Bytes per token assumed when estimating a prompt before the backend counts it. Generous on
/// purpose (JSON framing is counted too): the reservation is settled with the real usage.
const BYTES_PER_TOKEN: u64 = 4;

/// Applies the global and per-user request limits and reserves prompt + completion tokens
/// against the caller's budget, all or nothing and in one limiter call (one Redis round trip),
/// before any backend is called. A request without `max_tokens` gets the budget's default
/// written into it, so the backend itself stops there (`finish_reason: "length"`) and no answer
/// outruns its reservation. Sets the caller's `x-ratelimit-*` headers.
pub async fn admit(
    ctx: &AdmissionContext<'_>,
    gateway: &super::Gateway,
    caller: &mut Caller,
    request: &mut AiRequest,
    body_len: usize,
) -> Result<Option<Reservation>, ApiError> {
    let limits = &gateway.limits;
    let mut checks = Vec::with_capacity(3);
    let mut labels = Vec::with_capacity(3);
    if let Some(limit) = limits.global {
        checks.push(Check::requests(
            LimitKey::Global.render(ctx.gateway),
            limit,
            1,
        ));
        labels.push("global");
    }
    if let Some(limit) = limits.per_user {
        let key = caller.limit_key(ctx.client_ip).render(ctx.gateway);
        checks.push(Check::requests(key, limit, 1));
        labels.push("user");
    }
    let budget = limits.tokens;
    if let Some(budget) = budget {
        let amount = token_estimate(&budget, request, body_len);
        let key = caller
            .limit_key(ctx.client_ip)
            .render(&format!("{}|tokens", ctx.gateway));
        checks.push(Check::tokens(key, budget.budget, amount));
        labels.push("tokens");
    }
    let decisions = match ctx.limiter.admit_all(&checks).await {
        Ok(decisions) => decisions,
        Err((index, decision)) => return Err(refuse(ctx, caller, labels[index], &decision)),
    };
    // The headers describe the tightest request limit (token budgets have their own numbers).
    caller.rate_headers = decisions
        .iter()
        .zip(&labels)
        .filter(|(_, label)| **label != "tokens")
        .map(|(decision, _)| decision)
        .min_by_key(|decision| decision.remaining)
        .map(Decision::headers)
        .unwrap_or_default();
    Ok(budget.and_then(|budget| {
        let check = checks.pop()?;
        Some(Reservation {
            limiter: ctx.limiter.clone(),
            reserved: check.cost,
            key: check.key,
            budget,
            settled: false,
        })
    }))
}

/// Prompt tokens (estimated from the body size) plus the completion's `max_tokens` for each of
/// the `n` (or `best_of`) choices; writes the budget's default `max_tokens` into a request that
/// has none. The parameters were validated by [`AiRequest::parse`]; the sum saturates anyway, so
/// no input can wrap it to a small number.
fn token_estimate(budget: &TokenBudget, request: &mut AiRequest, body_len: usize) -> u64 {
    let prompt = (body_len as u64).div_ceil(BYTES_PER_TOKEN);
    let body = Request::new(&request.body);
    let choices = ["n", "best_of"]
        .iter()
        .filter_map(|k| body.count(k))
        .max()
        .unwrap_or(1);
    let completion = match ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.count(k))
    {
        Some(max) => max,
        None if request.endpoint == super::Endpoint::Embeddings => 0,
        None => {
            request
                .body
                .insert("max_tokens".into(), Value::from(budget.default_max_tokens));
            request.rewrote(super::request::Rewrite::DefaultMaxTokens);
            budget.default_max_tokens
        }
    };
    prompt.saturating_add(completion.saturating_mul(choices))
}

/// `usage.total_tokens` of an answer or a chunk, when present.
pub fn total_tokens(json: &Value) -> Option<u64> {
    Answer::new(json).usage().total_tokens
}

/// Keeps a shared handle usable by a stream after the handler returned.
pub type SharedReservation = Arc<std::sync::Mutex<Option<Reservation>>>;
