//! An AI gateway's side of admission ([`crate::access::admission`] is the gate itself): which
//! limits apply to an AI request (the gateway's global and per-user request limits, and the
//! per-user token budget), and the token [`Reservation`], made up front and settled with the
//! real usage afterwards.
//!
//! The caller's user, for per-user limits, budgets and audit, is the verified JWT's user claim
//! when the gateway has `authentication`; otherwise the verified client certificate's subject
//! when the connection is mTLS ([`crate::access::peer::PeerIdentity`]); otherwise none, and
//! per-user limits count against the client IP.

use std::sync::Arc;

use serde_json::Value;

use super::AiRequest;
use crate::access::admission::{Admission, AdmissionContext, Caller, Limited, TOKENS};
use crate::access::settings::TokenBudget;
use crate::access::{Check, LimitKey, RateLimiter};
use crate::error::ApiError;
use crate::openai::answer::Answer;
use crate::openai::request::Request;

impl super::Gateway {
    /// What this gateway asks of its callers: its JWT verifier; AI gateways have no access
    /// rules of their own.
    pub fn admission(&self) -> Admission<'_> {
        Admission {
            verifier: self.verifier.as_deref(),
            policies: &[],
        }
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
/// before any backend is called ([`Admission::limit`]). A request without `max_tokens` gets the
/// budget's default written into it, so the backend itself stops there (`finish_reason:
/// "length"`) and no answer outruns its reservation. Sets the caller's `x-ratelimit-*` headers.
pub async fn admit(
    ctx: &AdmissionContext<'_>,
    gateway: &super::Gateway,
    caller: &mut Caller,
    request: &mut AiRequest,
    body_len: usize,
) -> Result<Option<Reservation>, ApiError> {
    let limits = &gateway.limits;
    let mut checks = Vec::with_capacity(3);
    if let Some(limit) = limits.global {
        let key = LimitKey::Global.render(ctx.scope);
        checks.push(Limited {
            label: "global",
            check: Check::requests(key, limit, 1),
        });
    }
    if let Some(limit) = limits.per_user {
        let key = caller.limit_key(ctx.client_ip).render(ctx.scope);
        checks.push(Limited {
            label: "user",
            check: Check::requests(key, limit, 1),
        });
    }
    let budget = limits.tokens;
    if let Some(budget) = budget {
        let amount = token_estimate(&budget, request, body_len);
        let key = caller
            .limit_key(ctx.client_ip)
            .render(&format!("{}|{TOKENS}", ctx.scope));
        checks.push(Limited {
            label: TOKENS,
            check: Check::tokens(key, budget.budget, amount),
        });
    }
    let mut charged = gateway.admission().limit(ctx, caller, checks).await?;
    Ok(budget.and_then(|budget| {
        let check = charged.pop().filter(|l| l.label == TOKENS)?.check;
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
