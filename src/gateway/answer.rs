//! The answer stage: what the winning backend's answer goes through before it reaches the
//! client, in one place and outside the failover loop. A whole answer settles its tokens, is
//! scanned by the response guard, and is stored in the cache; a stream is relayed, scanned
//! chunk by chunk, and settles and fills the cache when it ends ([`Relay`], [`UsageTap`]).

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::HeaderValue;

use super::accounting::{answer_text, estimate_tokens, usage_of};
use super::admission::total_tokens;
use super::cache_stage::CacheFill;
use super::content_filter::{scan_response, GuardPolicy, StreamGuard};
use super::guard_events::Stage;
use super::outcome::{Answered, RequestOutcome};
use super::pipeline::RequestContext;
use super::relay::{Relay, RelayParts};
use super::route::{UpstreamAnswer, UpstreamBody};
use super::usage::{Reported, TokenSettlement, UsagePlan, UsageTap};
use super::{AiRequest, Endpoint};
use crate::error::ApiError;

/// What an answer settles: the token reservation, the token and latency metrics, and the
/// cache entry it may become.
pub struct Settlement {
    pub usage: UsagePlan,
    pub tokens: TokenSettlement,
    /// Where to store the answer in the semantic cache, if it qualifies.
    pub fill: Option<CacheFill>,
}

/// Turns the upstream answer into the client's response.
pub fn answer(
    ctx: &RequestContext<'_>,
    request: &AiRequest,
    upstream: UpstreamAnswer,
    mut settlement: Settlement,
    outcome: &mut RequestOutcome,
) -> Answered {
    let UpstreamAnswer {
        backend,
        fallback,
        status,
        body,
    } = upstream;
    outcome.fallback = fallback;
    if let Some(accounting) = settlement.tokens.accounting.as_mut() {
        accounting.tokenizer.clone_from(&backend.tokenizer);
    }
    // only the first-priority backends' answers are cached
    let fill = settlement
        .fill
        .take()
        .filter(|_| backend.priority == ctx.gateway.primary_priority);
    let response = match body {
        UpstreamBody::Refused(error) => error.into_response(),
        UpstreamBody::Stream {
            first,
            rest,
            in_flight,
        } => {
            let guard = ctx
                .gateway
                .guard
                .as_ref()
                .filter(|g| g.scan_responses)
                .map(|g| {
                    (
                        StreamGuard::new(Arc::clone(&g.set), request.endpoint),
                        ctx.reporter(),
                    )
                });
            let relay = Relay::new(RelayParts {
                first,
                upstream: rest,
                idle_timeout: ctx.gateway.settings.stream_idle_timeout,
                shutdown: ctx.shutdown.clone(),
                gateway: ctx.gateway.id.clone(),
                metrics: Arc::clone(ctx.metrics),
                in_flight,
                guard,
                usage: UsageTap::new(settlement.usage, settlement.tokens)
                    .with_access_line(Some(outcome.access_line.clone())),
                fill,
            });
            let mut response = Response::new(Body::from_stream(relay.into_stream()));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            response
        }
        UpstreamBody::Whole {
            bytes,
            content_type,
        } => {
            // parsed once for usage, the guard and the cache
            let mut json = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
            outcome.usage = settle_whole(settlement.tokens, json.as_ref(), bytes.len());
            let policy = ctx.gateway.guard.as_ref().filter(|g| g.scan_responses);
            let scanned = match policy {
                Some(policy) if status.is_success() && request.endpoint != Endpoint::Embeddings => {
                    guard_answer(ctx, policy, json.as_mut())
                }
                _ => Ok(bytes),
            };
            match scanned {
                Err(refused) => refused.into_response(),
                Ok(bytes) => {
                    if let (Some(fill), Some(json)) = (fill.filter(|_| status.is_success()), &json)
                    {
                        fill.store_whole(json, &bytes);
                    }
                    let mut response = Response::new(Body::from(bytes));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        content_type.unwrap_or(HeaderValue::from_static("application/json")),
                    );
                    response
                }
            }
        }
    };
    Answered {
        response,
        backend: backend.name.clone(),
    }
}

/// Settles a whole (non-streamed) answer's tokens; returns its usage.
fn settle_whole(
    tokens: TokenSettlement,
    json: Option<&serde_json::Value>,
    len: usize,
) -> Option<super::accounting::Usage> {
    let usage = json.and_then(usage_of);
    let text = json.filter(|_| tokens.wants_text(usage)).map(answer_text);
    tokens.settle(Reported {
        total: json.and_then(total_tokens),
        usage,
        completion_estimate: estimate_tokens(len),
        text: text.as_deref(),
        first_token: None,
    });
    usage
}

/// Scans a whole answer (`scanResponses`) before any byte of it is sent, and returns the bytes
/// to send: the scanned answer, re-serialised. A refused choice is cut and marked
/// `finish_reason: content_filter`; an answer that is not JSON cannot be scanned and is refused
/// (fail closed).
fn guard_answer(
    ctx: &RequestContext<'_>,
    policy: &GuardPolicy,
    json: Option<&mut serde_json::Value>,
) -> Result<bytes::Bytes, ApiError> {
    let unscannable = || ApiError::BadGateway {
        message: "The backend's answer could not be scanned by the content guard".into(),
        code: "unscannable_answer",
    };
    let json = json.ok_or_else(unscannable)?;
    let mut budget = policy.set.budget();
    let scan = scan_response(&policy.set, json, &mut budget);
    let reporter = ctx.reporter();
    reporter.findings(Stage::Response, &scan.findings);
    if let Some(refusal) = &scan.refusal {
        reporter.refusal(Stage::Response, refusal);
    }
    // What was scanned is what is sent, never the original bytes: JSON with a duplicate key
    // parses to its last value, and a client whose parser keeps the first would display text
    // the guard never saw.
    serde_json::to_vec(json)
        .map(bytes::Bytes::from)
        .map_err(|_| unscannable())
}
