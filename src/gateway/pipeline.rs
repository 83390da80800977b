//! One AI request, stage by stage, in the order of the architecture diagram:
//!
//! authenticate -> read body -> parse -> admit (limits, budget) -> guard the prompt ->
//! cache lookup -> route with failover ([`super::route`]) -> answer: response guard, cache
//! fill, token settlement ([`super::answer`]) -> outcome: headers, metrics, access log, audit
//! ([`super::outcome`]).
//!
//! Each stage returns what the next needs, or the error that answers the request; what the
//! stages learn along the way goes into the [`RequestOutcome`], finished once by [`handle`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use http::Request;
use tracing::Instrument;

use super::accounting::{estimate_tokens, operation_name, prompt_text, Accounting};
use super::admission::admit;
use super::answer::{answer, Settlement};
use super::cache_stage::{self, CacheContext, CacheFill, Lookup};
use super::content_filter::scan_request;
use super::guard_events::{GuardReporter, Stage};
use super::outcome::{Answered, RequestOutcome, CACHE_BACKEND};
use super::request::Rewrite;
use super::route::route;
use super::usage::{TokenSettlement, UsagePlan};
use super::{AiRequest, Endpoint, Gateway};
use crate::access::admission::AdmissionContext;
use crate::access::RateLimiter;
use crate::body;
use crate::error::ApiError;
use crate::guard::Action;
use crate::shutdown::Shutdown;
use crate::telemetry::audit::AuditLog;
use crate::telemetry::tracing::{self as otel, spans};
use crate::telemetry::Metrics;

pub use super::outcome::BACKEND_HEADER;

/// Prompts larger than this are scanned on the blocking pool instead of the async worker.
const INLINE_SCAN_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy)]
pub struct RequestContext<'a> {
    pub gateway: &'a Arc<Gateway>,
    pub metrics: &'a Arc<Metrics>,
    pub audit: &'a AuditLog,
    pub limiter: &'a RateLimiter,
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    /// Approved for `requiresApproval` backends: set by admission from a verified token claim.
    pub approved: bool,
    /// The authenticated user, once known: guard events carry it.
    pub user: Option<&'a str>,
    /// The request's trace is sampled: stage and attempt spans are built only then.
    pub sampled: bool,
    /// Ends the request (503) or its stream (an error event) when the shutdown grace is over.
    pub shutdown: &'a Shutdown,
    /// The process-wide memory budget for buffered request bodies.
    pub body_budget: &'a body::BodyBudget,
}

impl RequestContext<'_> {
    fn admission(&self, route: &'static str) -> AdmissionContext<'_> {
        AdmissionContext {
            scope: &self.gateway.id,
            route,
            request_id: self.request_id,
            client_ip: self.client_ip,
            limiter: self.limiter,
            metrics: self.metrics,
            audit: self.audit,
        }
    }

    pub(super) fn reporter(&self) -> GuardReporter {
        GuardReporter {
            gateway: self.gateway.id.clone(),
            request_id: self.request_id.to_string(),
            user: self.user.map(str::to_string),
            client_ip: self.client_ip.to_string(),
            metrics: Arc::clone(self.metrics),
            audit: self.audit.clone(),
        }
    }
}

pub async fn handle(
    ctx: RequestContext<'_>,
    endpoint: Endpoint,
    request: Request<Body>,
) -> Response {
    let (parts, body) = request.into_parts();
    let span = spans::request_span(operation_name(endpoint), "", ctx.request_id);
    otel::set_parent_from_headers(&span, &parts.headers);
    let ctx = RequestContext {
        sampled: spans::is_sampled(&span),
        ..ctx
    };
    let mut outcome = RequestOutcome::new(endpoint, Instant::now());
    // A request still waiting for its answer when the shutdown grace ends gets a 503 and its
    // records (a stream already answering is cut by its relay instead).
    let served = tokio::select! {
        biased;
        result = serve(ctx, endpoint, &parts, body, &mut outcome).instrument(span.clone()) => Some(result),
        _ = ctx.shutdown.cut_now() => None,
    };
    let result = served.unwrap_or_else(|| outcome.cut_by_shutdown());
    outcome.finish(&ctx, &span, &parts, result)
}

/// The stages, from the caller's credentials to the answer.
async fn serve(
    ctx: RequestContext<'_>,
    endpoint: Endpoint,
    parts: &http::request::Parts,
    raw_body: Body,
    outcome: &mut RequestOutcome,
) -> Result<Answered, ApiError> {
    let admission = ctx.admission(endpoint.route());
    let mut caller = spans::stage(ctx.sampled, spans::auth_span)
        .in_scope(|| ctx.gateway.admission().authenticate(&admission, parts))?;
    outcome.user.clone_from(&caller.user);
    let user = caller.user.clone();
    let ctx = RequestContext {
        approved: caller.approved,
        user: user.as_deref(),
        ..ctx
    };
    let settings = &ctx.gateway.settings;
    // The reservation holds the body's share of the memory budget until the request is
    // answered (for a stream: until its head is sent).
    let (bytes, _body_reservation) = body::read(
        &parts.headers,
        raw_body,
        settings.max_body_bytes,
        settings.body_read_timeout,
        ctx.body_budget,
    )
    .await?;
    let mut request = AiRequest::parse(endpoint, &bytes)?;
    outcome.model.clone_from(&request.model);
    tracing::Span::current().record(spans::GEN_AI_REQUEST_MODEL, request.model.as_str());
    let reservation = admit(
        &admission,
        ctx.gateway,
        &mut caller,
        &mut request,
        bytes.len(),
    )
    .instrument(spans::stage(ctx.sampled, spans::rate_limit_span))
    .await?;
    outcome.rate_headers.clone_from(&caller.rate_headers);
    note_scans(&ctx, &request, outcome);
    guard_prompt(&ctx, &mut request, bytes.len())
        .instrument(spans::stage(ctx.sampled, || spans::guard_span("prompt")))
        .await?;
    let flags = ctx.gateway.metrics;
    let usage = UsagePlan::prepare(
        &mut request,
        reservation.is_some() || (flags.enabled && flags.token_count),
    );
    outcome.rewrites = request.rewrites.iter().map(|r| r.name()).collect();
    let accounting = accounting(&ctx, &request, outcome, bytes.len());
    let fill = match cache_lookup(&ctx, &request, parts, outcome).await {
        Ok(hit) => return Ok(hit),
        Err(fill) => fill,
    };
    let upstream = route(&ctx, &request).await?;
    let settlement = Settlement {
        usage,
        tokens: TokenSettlement {
            reservation,
            accounting,
        },
        fill,
    };
    Ok(answer(&ctx, &request, upstream, settlement, outcome))
}

/// Whether the prompt and the answer are scanned, for the records.
fn note_scans(ctx: &RequestContext<'_>, request: &AiRequest, outcome: &mut RequestOutcome) {
    outcome.stream = request.stream;
    if let Some(guard) = &ctx.gateway.guard {
        outcome.prompt_scanned = guard.scan_prompts;
        outcome.answer_scanned = guard.scan_responses && request.endpoint != Endpoint::Embeddings;
    }
}

/// The token and latency metrics of the answer, when metrics are on.
fn accounting(
    ctx: &RequestContext<'_>,
    request: &AiRequest,
    outcome: &RequestOutcome,
    body_len: usize,
) -> Option<Accounting> {
    let flags = ctx.gateway.metrics;
    flags.enabled.then(|| Accounting {
        metrics: Arc::clone(ctx.metrics),
        gateway: ctx.gateway.id.clone(),
        model: ctx.gateway.model_label(&request.model).to_string(),
        endpoint: request.endpoint,
        started: outcome.started(),
        flags,
        prompt_estimate: estimate_tokens(body_len),
        prompt_text: ctx
            .gateway
            .backends
            .iter()
            .any(|b| b.tokenizer.is_some())
            .then(|| prompt_text(&request.body)),
        tokenizer: None,
    })
}

/// The semantic cache: `Ok` with the cached answer on a hit; otherwise `Err` with where to
/// store the answer, if it qualifies.
async fn cache_lookup(
    ctx: &RequestContext<'_>,
    request: &AiRequest,
    parts: &http::request::Parts,
    outcome: &mut RequestOutcome,
) -> Result<Answered, Option<CacheFill>> {
    let Some(policy) = &ctx.gateway.cache else {
        return Err(None);
    };
    let cache_ctx = CacheContext {
        gateway: &ctx.gateway.id,
        request_id: ctx.request_id,
        user: ctx.user,
        metrics: ctx.metrics,
        audit: ctx.audit,
    };
    let found = cache_stage::lookup(&cache_ctx, policy, request, &parts.headers)
        .instrument(spans::stage(ctx.sampled, spans::cache_span))
        .await;
    outcome.cache = Some(found.header());
    match found {
        Lookup::Hit(response) => Ok(Answered {
            response,
            backend: CACHE_BACKEND.to_string(),
        }),
        Lookup::Miss(fill) | Lookup::Bypass(fill) => Err(fill),
    }
}

/// Scans the prompt (`scanPrompts`): a refusal is a 403 and the backend is never called;
/// redactions are written into the request. Large prompts are scanned on the blocking pool.
async fn guard_prompt(
    ctx: &RequestContext<'_>,
    request: &mut AiRequest,
    size: usize,
) -> Result<(), ApiError> {
    let Some(policy) = ctx.gateway.guard.as_ref().filter(|g| g.scan_prompts) else {
        return Ok(());
    };
    let endpoint = request.endpoint;
    let scan = if size > INLINE_SCAN_BYTES {
        let set = Arc::clone(&policy.set);
        let mut body = std::mem::take(&mut request.body);
        let _permit = policy
            .pool
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let (body, scan) = tokio::task::spawn_blocking(move || {
            let mut budget = set.budget();
            let scan = scan_request(&set, endpoint, &mut body, &mut budget);
            (body, scan)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("prompt scan task: {e}")))?;
        request.body = body;
        scan
    } else {
        let mut budget = policy.set.budget();
        scan_request(&policy.set, endpoint, &mut request.body, &mut budget)
    };
    if scan.refusal.is_none() && scan.findings.iter().any(|f| f.action == Action::Redact) {
        request.rewrote(Rewrite::PromptRedacted);
    }
    let reporter = ctx.reporter();
    reporter.findings(Stage::Prompt, &scan.findings);
    match scan.refusal {
        Some(refusal) => {
            reporter.refusal(Stage::Prompt, &refusal);
            Err(ApiError::ContentPolicy {
                rule: refusal.rule().to_string(),
            })
        }
        None => Ok(()),
    }
}
