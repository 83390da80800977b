//! Routes, request handling, SSE bodies and fault injection.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use bytes::Bytes;
use futures::{stream, StreamExt};
use serde_json::Value;

use super::wire::{self, Usage};
use super::{lock, Fault, Inner, MockState, RecordedRequest};

/// The mock's routes, served with `state`. [`super::MockServer`] serves this;
/// tests may mount it themselves.
pub fn router(state: MockState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/rest/{*path}", any(rest))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(64 << 20))
        .with_state(state)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }
}

async fn chat(State(s): State<MockState>, headers: HeaderMap, body: Bytes) -> Response {
    handle(s.inner, Endpoint::Chat, headers, body).await
}

async fn completions(State(s): State<MockState>, headers: HeaderMap, body: Bytes) -> Response {
    handle(s.inner, Endpoint::Completions, headers, body).await
}

async fn embeddings(State(s): State<MockState>, headers: HeaderMap, body: Bytes) -> Response {
    handle(s.inner, Endpoint::Embeddings, headers, body).await
}

async fn models(State(s): State<MockState>) -> Response {
    let inner = &s.inner;
    inner.models_requests.fetch_add(1, Ordering::SeqCst);
    let list = wire::ModelList {
        object: "list",
        data: inner
            .models
            .iter()
            .map(|m| wire::ModelCard {
                id: m,
                object: "model",
                created: 0,
                owned_by: &inner.name,
            })
            .collect(),
    };
    json_response(StatusCode::OK, to_bytes(&list))
}

async fn health(State(s): State<MockState>) -> Response {
    let inner = &s.inner;
    inner.health_requests.fetch_add(1, Ordering::SeqCst);
    if !inner.health_route {
        return not_found().await;
    }
    let status = if inner.healthy.load(Ordering::Relaxed) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// FastAPI's (vLLM's) answer for an unknown route.
/// A plain REST service for `API` routes (the load tests' OpenAPI section): any method, any
/// path under `/rest/`, the body read and dropped, `{"ok":true}`.
async fn rest(_body: Bytes) -> Response {
    json_response(StatusCode::OK, Bytes::from_static(br#"{"ok":true}"#))
}

async fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        Bytes::from_static(br#"{"detail":"Not Found"}"#),
    )
}

fn to_bytes<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn stream_response(body: Body, sse: bool) -> Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    if sse {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    } else {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    r
}

fn openai_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        wire::error_body(super::ErrorBody::OpenAi, status.as_u16(), message),
    )
}

fn shutting_down() -> Response {
    openai_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "airgate-mock is shutting down",
    )
}

async fn until_shutdown(inner: &Inner) {
    let mut rx = inner.shutdown.subscribe();
    let _ = rx.wait_for(|stopped| *stopped).await;
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Counts a `POST /v1/*` request as in flight until its response body ends or
/// is dropped; for SSE bodies, records completion or cancellation.
struct Tracker {
    inner: Arc<Inner>,
    sse: bool,
    done: bool,
}

impl Tracker {
    fn new(inner: Arc<Inner>) -> Self {
        inner.requests.fetch_add(1, Ordering::SeqCst);
        inner.in_flight.fetch_add(1, Ordering::SeqCst);
        Tracker {
            inner,
            sse: false,
            done: false,
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if self.sse && !self.done {
            self.inner.cancelled_streams.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the request asks for.
struct Plan {
    model: String,
    stream: bool,
    include_usage: bool,
    prompt_tokens: usize,
    /// Completion tokens to send.
    n: usize,
    finish: &'static str,
    /// Embeddings: one vector per input.
    vectors: Vec<[f32; wire::EMBEDDING_DIMS]>,
    base64: bool,
}

impl Plan {
    fn new(inner: &Inner, ep: Endpoint, body: &Value, completion_tokens: usize) -> Plan {
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .or(inner.models.first().map(String::as_str))
            .unwrap_or("mock-model")
            .to_string();
        let stream = ep != Endpoint::Embeddings
            && body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let max_tokens = body
            .get("max_tokens")
            .filter(|v| !v.is_null())
            .or_else(|| body.get("max_completion_tokens"))
            .and_then(Value::as_u64)
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
        let (n, finish) = match max_tokens {
            Some(m) if m < completion_tokens => (m, "length"),
            _ => (completion_tokens, "stop"),
        };
        let (prompt_tokens, vectors, base64) = match ep {
            Endpoint::Chat => (wire::chat_prompt_tokens(body), Vec::new(), false),
            Endpoint::Completions => (
                body.get("prompt").map_or(0, wire::input_tokens),
                Vec::new(),
                false,
            ),
            Endpoint::Embeddings => {
                let input = body.get("input").unwrap_or(&Value::Null);
                let vectors = wire::embedding_inputs(input)
                    .into_iter()
                    .map(wire::embedding)
                    .collect();
                let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
                (wire::input_tokens(input), vectors, base64)
            }
        };
        Plan {
            model,
            stream,
            include_usage,
            prompt_tokens,
            n,
            finish,
            vectors,
            base64,
        }
    }
}

async fn handle(inner: Arc<Inner>, ep: Endpoint, headers: HeaderMap, body: Bytes) -> Response {
    let mut tracker = Tracker::new(inner.clone());
    let d = *lock(&inner.dynamic);

    let (plan, value) = match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v.is_object() => (Ok(Plan::new(&inner, ep, &v, d.completion_tokens)), v),
        Ok(v) => (Err("the request body must be a JSON object".to_string()), v),
        Err(e) => (Err(format!("invalid JSON body: {e}")), Value::Null),
    };
    *lock(&inner.last_request) = Some(RecordedRequest {
        method: "POST".to_string(),
        path: ep.path().to_string(),
        headers,
        body: value,
    });

    if !d.latency.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(d.latency) => {}
            _ = until_shutdown(&inner) => return shutting_down(),
        }
    }

    let stream_requested = plan.as_ref().is_ok_and(|p| p.stream);
    match d.fault {
        Fault::Status { status, body } => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = format!(
                "Mock {} injected an error with status {}",
                inner.name,
                code.as_u16()
            );
            return json_response(code, wire::error_body(body, code.as_u16(), &message));
        }
        Fault::Hang => {
            until_shutdown(&inner).await;
            return shutting_down();
        }
        Fault::HeadersThenHang => {
            tracker.sse = stream_requested;
            let body = stream::once(async move {
                until_shutdown(&tracker.inner).await;
                drop(tracker);
                Err::<Bytes, _>(io::Error::other("airgate-mock is shutting down"))
            });
            return stream_response(Body::from_stream(body), stream_requested);
        }
        Fault::None | Fault::DieMidStream { .. } | Fault::StallMidStream { .. } => {}
    }

    let plan = match plan {
        Ok(p) => p,
        Err(message) => return openai_error(StatusCode::BAD_REQUEST, &message),
    };

    let seq = inner.id_seq.fetch_add(1, Ordering::Relaxed);
    let created = now_secs();
    if plan.stream {
        tracker.sse = true;
        let id = match ep {
            Endpoint::Chat => format!("chatcmpl-mock{seq:x}"),
            _ => format!("cmpl-mock{seq:x}"),
        };
        let state = Sse {
            tracker,
            chat: ep == Endpoint::Chat,
            id,
            created,
            model: plan.model,
            n: plan.n,
            finish: plan.finish,
            usage: plan
                .include_usage
                .then(|| Usage::new(plan.prompt_tokens, plan.n)),
            delay: d.inter_token_delay,
            fault: d.fault,
            sent: 0,
            finished: false,
        };
        let body = stream::unfold(state, next_event);
        return stream_response(Body::from_stream(body), true);
    }

    let body = match ep {
        Endpoint::Chat => {
            let id = format!("chatcmpl-mock{seq:x}");
            let content = wire::answer(&inner, plan.n);
            to_bytes(&wire::ChatCompletion {
                id: &id,
                object: "chat.completion",
                created,
                model: &plan.model,
                choices: [wire::ChatChoice {
                    index: 0,
                    message: wire::Message {
                        role: "assistant",
                        content: &content,
                    },
                    logprobs: None,
                    finish_reason: plan.finish,
                }],
                usage: Usage::new(plan.prompt_tokens, plan.n),
            })
        }
        Endpoint::Completions => {
            let id = format!("cmpl-mock{seq:x}");
            let text = wire::answer(&inner, plan.n);
            to_bytes(&wire::TextCompletion {
                id: &id,
                object: "text_completion",
                created,
                model: &plan.model,
                choices: &[wire::TextChoice {
                    index: 0,
                    text: &text,
                    logprobs: None,
                    finish_reason: Some(plan.finish),
                }],
                usage: Some(Usage::new(plan.prompt_tokens, plan.n)),
            })
        }
        Endpoint::Embeddings => {
            let id = format!("embd-mock{seq:x}");
            let data = plan
                .vectors
                .iter()
                .enumerate()
                .map(|(index, v)| wire::EmbeddingItem {
                    index,
                    object: "embedding",
                    embedding: if plan.base64 {
                        wire::EmbeddingData::Base64(wire::base64_f32(v))
                    } else {
                        wire::EmbeddingData::Floats(*v)
                    },
                })
                .collect();
            to_bytes(&wire::EmbeddingList {
                id: &id,
                object: "list",
                created,
                model: &plan.model,
                data,
                usage: wire::EmbeddingUsage {
                    prompt_tokens: plan.prompt_tokens,
                    total_tokens: plan.prompt_tokens,
                },
            })
        }
    };

    match d.fault {
        Fault::DieMidStream { .. } | Fault::StallMidStream { .. } => partial_json(
            tracker,
            body,
            matches!(d.fault, Fault::StallMidStream { .. }),
        ),
        _ => json_response(StatusCode::OK, body),
    }
}

/// Non-stream request under a mid-stream fault: announce the full length, send
/// half of the body, then abort (or stall).
fn partial_json(tracker: Tracker, body: Bytes, stall: bool) -> Response {
    let full_len = body.len();
    let half = body.slice(..full_len / 2);
    let tail = stream::once(async move {
        if stall {
            until_shutdown(&tracker.inner).await;
        } else {
            // Return Pending once so hyper flushes what was sent before the abort.
            tokio::task::yield_now().await;
        }
        drop(tracker);
        Err::<Bytes, _>(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "airgate-mock: injected mid-body fault",
        ))
    });
    let body = stream::iter([Ok::<Bytes, io::Error>(half)]).chain(tail);
    let mut r = stream_response(Body::from_stream(body), false);
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(full_len));
    r
}

/// State of one SSE body.
struct Sse {
    tracker: Tracker,
    chat: bool,
    id: String,
    created: u64,
    model: String,
    n: usize,
    finish: &'static str,
    usage: Option<Usage>,
    delay: Duration,
    fault: Fault,
    /// Events sent so far.
    sent: usize,
    finished: bool,
}

#[derive(Clone, Copy, Debug)]
enum Event {
    Role,
    Token(usize),
    Finish,
    Usage,
    Done,
    End,
}

impl Sse {
    /// Chat: role, tokens, finish, [usage], [DONE]. Completions: tokens, finish, [usage], [DONE].
    fn event(&self, k: usize) -> Event {
        let first_token = usize::from(self.chat);
        let finish = first_token + self.n;
        let usage = usize::from(self.usage.is_some());
        if self.chat && k == 0 {
            Event::Role
        } else if k < finish {
            Event::Token(k - first_token)
        } else if k == finish {
            Event::Finish
        } else if usage == 1 && k == finish + 1 {
            Event::Usage
        } else if k == finish + 1 + usage {
            Event::Done
        } else {
            Event::End
        }
    }

    fn chat_chunk(&self, delta: wire::Delta<'_>, finish: Option<&str>) -> Bytes {
        wire::sse(&wire::ChatChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &[wire::ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
            usage: None,
        })
    }

    fn text_chunk(&self, text: &str, finish: Option<&str>) -> Bytes {
        wire::sse(&wire::TextCompletion {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices: &[wire::TextChoice {
                index: 0,
                text,
                logprobs: None,
                finish_reason: finish,
            }],
            usage: None,
        })
    }

    fn render(&self, ev: Event) -> Bytes {
        let inner = &self.tracker.inner;
        match ev {
            Event::Role => self.chat_chunk(
                wire::Delta {
                    role: Some("assistant"),
                    content: Some(""),
                },
                None,
            ),
            Event::Token(i) => {
                let t = wire::token(inner, i);
                if self.chat {
                    self.chat_chunk(
                        wire::Delta {
                            role: None,
                            content: Some(t),
                        },
                        None,
                    )
                } else {
                    self.text_chunk(t, None)
                }
            }
            Event::Finish => {
                if self.chat {
                    self.chat_chunk(wire::Delta::default(), Some(self.finish))
                } else {
                    self.text_chunk("", Some(self.finish))
                }
            }
            Event::Usage => {
                if self.chat {
                    wire::sse(&wire::ChatChunk {
                        id: &self.id,
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: &self.model,
                        choices: &[],
                        usage: self.usage,
                    })
                } else {
                    wire::sse(&wire::TextCompletion {
                        id: &self.id,
                        object: "text_completion",
                        created: self.created,
                        model: &self.model,
                        choices: &[],
                        usage: self.usage,
                    })
                }
            }
            Event::Done => Bytes::from_static(wire::SSE_DONE),
            Event::End => Bytes::new(),
        }
    }
}

fn aborted(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, msg)
}

async fn next_event(mut st: Sse) -> Option<(io::Result<Bytes>, Sse)> {
    if st.finished {
        return None;
    }
    let ev = st.event(st.sent);
    if let Event::End = ev {
        st.finished = true;
        return None;
    }
    match st.fault {
        Fault::DieMidStream { after_chunks } if st.sent >= after_chunks => {
            // Return Pending once so hyper flushes the chunks sent before the abort.
            tokio::task::yield_now().await;
            st.finished = true;
            return Some((
                Err(aborted("airgate-mock: injected die-mid-stream fault")),
                st,
            ));
        }
        Fault::StallMidStream { after_chunks } if st.sent >= after_chunks => {
            until_shutdown(&st.tracker.inner).await;
            st.finished = true;
            return Some((Err(aborted("airgate-mock is shutting down")), st));
        }
        _ => {}
    }
    if let Event::Token(i) = ev {
        if i > 0 && !st.delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(st.delay) => {}
                _ = until_shutdown(&st.tracker.inner) => {
                    st.finished = true;
                    return Some((Err(aborted("airgate-mock is shutting down")), st));
                }
            }
        }
    }
    let bytes = st.render(ev);
    if let Event::Done = ev {
        st.tracker.done = true;
        st.tracker
            .inner
            .completed_streams
            .fetch_add(1, Ordering::SeqCst);
    }
    st.sent += 1;
    Some((Ok(bytes), st))
}
