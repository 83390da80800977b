//! The semantic cache as a pipeline stage: looked up after the guard and before routing,
//! replayed on a hit (JSON, or SSE chunks the SDK accepts), filled after a complete answer.
//!
//! Only chat completions are cached. What is stored: complete answers (`finish_reason` `stop`
//! or `length`) from the gateway's first-priority backends; answers from fallbacks are not
//! stored (the seed's design), nor answers the guard cut, nor streams that did not complete.
//! `Cache-Control: no-cache` skips the lookup, `no-store` skips the store.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Map, Value};

use super::{AiRequest, Endpoint};
use crate::cache::{scope_key, ScopeKey, SemanticCache};
use crate::openai::answer::{Answer, ChoiceBody};
use crate::openai::request::Request;
use crate::openai::sse::{done_event, encode_data};
use crate::telemetry::audit::{AuditEvent, AuditLog};
use crate::telemetry::log_rate::LogRate;
use crate::telemetry::Metrics;

/// Lines per second about failed lookups.
static LOOKUP_FAILURE_LOG: LogRate = LogRate::new(5);

pub const CACHE_HEADER: &str = "x-airgate-cache";
pub const SIMILARITY_HEADER: &str = "x-airgate-cache-similarity";
/// Largest streamed answer collected for the cache; longer ones are not stored.
const MAX_COLLECTED_BYTES: usize = 1024 * 1024;

/// The cache as one gateway uses it.
#[derive(Clone)]
pub struct CachePolicy {
    pub cache: Arc<SemanticCache>,
    /// `scope: user`: the authenticated user is part of the scope.
    pub per_user: bool,
    /// What it was built from: a reload keeps the cache (and its entries) while this is the
    /// same.
    pub spec: crate::config::SemanticCacheSpec,
}

impl std::fmt::Debug for CachePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachePolicy")
            .field("per_user", &self.per_user)
            .finish()
    }
}

/// The stage's outcome for one request.
pub enum Lookup {
    /// Served from the cache.
    Hit(Response),
    /// Not served; store the answer with this, when it qualifies.
    Miss(Option<CacheFill>),
    /// The cache was not consulted (not cacheable, `no-cache`, no user for a per-user scope).
    Bypass(Option<CacheFill>),
}

impl Lookup {
    pub fn header(&self) -> &'static str {
        match self {
            Lookup::Hit(_) => "hit",
            Lookup::Miss(_) => "miss",
            Lookup::Bypass(_) => "bypass",
        }
    }
}

/// Who asks, for the audit event and metrics.
pub struct CacheContext<'a> {
    pub gateway: &'a str,
    pub request_id: &'a str,
    pub user: Option<&'a str>,
    pub metrics: &'a Metrics,
    pub audit: &'a AuditLog,
}

pub async fn lookup(
    ctx: &CacheContext<'_>,
    policy: &CachePolicy,
    request: &AiRequest,
    headers: &HeaderMap,
) -> Lookup {
    let outcome = lookup_inner(ctx, policy, request, headers).await;
    ctx.metrics.cache_request(ctx.gateway, outcome.header());
    ctx.metrics.cache_stats(ctx.gateway, &policy.cache.stats());
    outcome
}

async fn lookup_inner(
    ctx: &CacheContext<'_>,
    policy: &CachePolicy,
    request: &AiRequest,
    headers: &HeaderMap,
) -> Lookup {
    if request.endpoint != Endpoint::ChatCompletions {
        return Lookup::Bypass(None);
    }
    let (no_cache, no_store) = cache_control(headers);
    let user = if policy.per_user {
        match ctx.user {
            Some(user) => Some(user),
            None => return Lookup::Bypass(None),
        }
    } else {
        None
    };
    let Some((scope, text)) = scope_key(ctx.gateway, &request.body, user) else {
        return Lookup::Bypass(None);
    };
    let fill = (!no_store).then(|| CacheFill::new(Arc::clone(&policy.cache), scope, text.clone()));
    if no_cache {
        return Lookup::Bypass(fill);
    }
    let started = Instant::now();
    let (found, timings) = policy.cache.lookup_timed(&scope, &text).await;
    ctx.metrics
        .cache_lookup_seconds(ctx.gateway, started.elapsed().as_secs_f64());
    ctx.metrics
        .cache_stage_seconds(ctx.gateway, timings.embed, timings.search);
    match found {
        Ok(Some(hit)) => match replay(&hit.response, request.stream, include_usage(request)) {
            Some(mut response) => {
                let h = response.headers_mut();
                h.insert(CACHE_HEADER, HeaderValue::from_static("hit"));
                if let Ok(v) = HeaderValue::from_str(&format!("{:.4}", hit.similarity)) {
                    h.insert(SIMILARITY_HEADER, v);
                }
                let mut event = AuditEvent::new(
                    "cache_hit",
                    ctx.request_id,
                    ctx.gateway,
                    "served",
                    "semantic cache hit",
                )
                .detail("similarity", f64::from(hit.similarity));
                event.user = ctx.user.map(str::to_string);
                ctx.audit.record(event);
                Lookup::Hit(response)
            }
            None => Lookup::Miss(fill),
        },
        Ok(None) => Lookup::Miss(fill),
        Err(error) => {
            // A full embedding queue fails every lookup: one line per request would let load
            // decide log volume.
            if let Some(suppressed) = LOOKUP_FAILURE_LOG.admit() {
                tracing::warn!(request_id = ctx.request_id, error = %error, suppressed_since_last = suppressed, "cache lookup failed; treated as a miss");
            }
            Lookup::Miss(fill)
        }
    }
}

/// (`no-cache`, `no-store`) from the request's `Cache-Control`.
fn cache_control(headers: &HeaderMap) -> (bool, bool) {
    let directives: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    let has = |name: &str| directives.iter().any(|d| d == name);
    (has("no-cache"), has("no-store"))
}

fn include_usage(request: &AiRequest) -> bool {
    Request::new(&request.body).include_usage()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A stored answer as the client asked for it: the JSON with a fresh `id` and `created`, or the
/// same replayed as SSE chunks.
fn replay(stored: &Bytes, stream: bool, with_usage: bool) -> Option<Response> {
    let Value::Object(mut answer) = serde_json::from_slice::<Value>(stored).ok()? else {
        return None;
    };
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_secs();
    answer.insert("id".into(), json!(id));
    answer.insert("created".into(), json!(created));
    if !stream {
        let mut response = Response::new(Body::from(Value::Object(answer).to_string()));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Some(response);
    }
    let answer = Value::Object(answer);
    let view = Answer::new(&answer);
    let model = view.model().cloned().unwrap_or(Value::Null);
    let chunk = |choices: Value| json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices});
    let mut out = Vec::new();
    for choice in view.choice_list()? {
        let index = choice.index_value().cloned().unwrap_or(json!(0));
        let message = choice.message()?;
        let mut delta = Map::new();
        delta.insert("role".into(), json!("assistant"));
        delta.insert(
            "content".into(),
            message.content().cloned().unwrap_or(json!("")),
        );
        if let Some(Value::Array(calls)) = message.tool_calls() {
            delta.insert("tool_calls".into(), Value::Array(indexed(calls)));
        }
        out.push(encode_data(
            &chunk(json!([{"index": index, "delta": delta, "finish_reason": null}])).to_string(),
        ));
        let finish = choice
            .finish_reason_value()
            .cloned()
            .unwrap_or(json!("stop"));
        out.push(encode_data(
            &chunk(json!([{"index": index, "delta": {}, "finish_reason": finish}])).to_string(),
        ));
    }
    if with_usage {
        let mut usage = chunk(json!([]));
        usage["usage"] = view.usage_value().cloned().unwrap_or(Value::Null);
        out.push(encode_data(&usage.to_string()));
    }
    out.push(done_event());
    let body: Vec<u8> = out.concat();
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(response)
}

/// A whole answer's tool calls as a stream's first delta carries them: each with its `index`.
fn indexed(calls: &[Value]) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut c = c.clone();
            if let Value::Object(m) = &mut c {
                m.insert("index".into(), json!(i));
            }
            c
        })
        .collect()
}

/// What to store once the answer is known to qualify.
pub struct CacheFill {
    cache: Arc<SemanticCache>,
    scope: ScopeKey,
    text: String,
    /// Streams: the content collected so far, the finish reason and the model.
    content: String,
    finish: Option<String>,
    model: Value,
    usage: Value,
    aborted: bool,
}

impl CacheFill {
    fn new(cache: Arc<SemanticCache>, scope: ScopeKey, text: String) -> Self {
        Self {
            cache,
            scope,
            text,
            content: String::new(),
            finish: None,
            model: Value::Null,
            usage: Value::Null,
            aborted: false,
        }
    }

    /// Stores a whole JSON answer (`json` is `body` parsed) when every choice completed.
    pub fn store_whole(self, json: &Value, body: &Bytes) {
        let complete = Answer::new(json).choice_list().is_some_and(|choices| {
            !choices.is_empty() && choices.iter().all(|c| finished(c.finish_reason()))
        });
        if complete {
            self.spawn_store(body.clone());
        }
    }

    /// Streams: whether chunks are still collected (not once the answer is known not to be
    /// stored), so the relay parses an event for the cache only while it is.
    pub fn wants_chunks(&self) -> bool {
        !self.aborted
    }

    /// Streams: takes one chunk, parsed, as the client received it.
    pub fn observe_chunk(&mut self, chunk: &Value) {
        if self.aborted {
            return;
        }
        let chunk = Answer::new(chunk);
        if let Some(model) = chunk.model() {
            self.model = model.clone();
        }
        if let Some(usage) = chunk.usage_value() {
            self.usage = usage.clone();
        }
        for choice in chunk.choices() {
            let delta = choice.delta();
            let has_tools = delta.and_then(ChoiceBody::tool_calls).is_some();
            if choice.index().unwrap_or(0) != 0 || has_tools {
                // Several choices or streamed tool calls: not collected.
                self.aborted = true;
                return;
            }
            if let Some(text) = delta.and_then(ChoiceBody::content_str) {
                self.content.push_str(text);
                if self.content.len() > MAX_COLLECTED_BYTES {
                    self.aborted = true;
                }
            }
            if let Some(reason) = choice.finish_reason() {
                self.finish = Some(reason.to_string());
            }
        }
    }

    /// The guard cut the stream, or it failed: nothing is stored.
    pub fn abort(&mut self) {
        self.aborted = true;
    }

    /// Streams: stores the collected answer if the stream completed.
    pub fn complete(self) {
        if self.aborted || !finished(self.finish.as_deref()) {
            return;
        }
        let answer = json!({
            "id": "chatcmpl-cached",
            "object": "chat.completion",
            "created": now_secs(),
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.content}, "finish_reason": self.finish}],
            "usage": self.usage,
        });
        let body = Bytes::from(answer.to_string());
        self.spawn_store(body);
    }

    fn spawn_store(self, body: Bytes) {
        self.cache.store_in_background(self.scope, self.text, body);
    }
}

/// A complete answer, as the cache stores it: `stop` or `length`.
fn finished(reason: Option<&str>) -> bool {
    matches!(reason, Some("stop" | "length"))
}
