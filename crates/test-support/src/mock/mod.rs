//! A small OpenAI-compatible mock backend ("vLLM as seen by clients").
//!
//! Used in-process by the gateway's integration tests ([`MockServer`]), and as
//! the `airgate-mock` binary by the benchmark and the README demo.
//!
//! Endpoints:
//! - `POST /v1/chat/completions`, `POST /v1/completions` (stream and not),
//! - `POST /v1/embeddings` (deterministic 8-dimension unit vectors derived from a
//!   hash of each input; `encoding_format: "base64"` is honoured),
//! - `GET /v1/models` (OpenAI list shape, `owned_by` is the mock's name),
//! - `GET /health` (200 when `health_route` is true and the mock is healthy,
//!   503 after [`MockServer::set_healthy`]`(false)`, 404 when the route is disabled).
//! - any method on `/rest/...` (a plain REST service for `API` routes: the body is read and
//!   dropped, the answer is `{"ok":true}`; never faulted, not counted).
//!
//! Answers are deterministic: token `i` of the completion is, in order,
//! `"Mock "`, `"answer "`, `"from "`, `"{name}: "`, then words from a fixed list,
//! each followed by a space. The answer has `min(max_tokens, completion_tokens)`
//! tokens (`max_completion_tokens` is accepted as well); `finish_reason` is
//! `"length"` when `max_tokens` cut the answer short (`max_tokens < completion_tokens`),
//! else `"stop"`. A stream carries one token per chunk, so the concatenated stream
//! equals the non-stream content.
//!
//! Faults ([`Fault`]) apply to the `POST /v1/*` routes only; `/v1/models` and
//! `/health` are never faulted (use [`MockServer::set_healthy`] for health).

mod handlers;
mod wire;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use handlers::router;

/// The JSON shape of an injected error body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ErrorBody {
    /// Standard OpenAI: `{"error":{"message","type","param":null,"code":"..."|null}}`.
    #[default]
    OpenAi,
    /// vLLM (recent): `{"error":{"message","type":"BadRequestError","param":null,"code":400}}`
    /// with an integer `code`.
    VllmIntCode,
    /// Old vLLM: `{"object":"error","message","type","param":null,"code":500}`.
    FlatObject,
}

/// Fault injected on the `POST /v1/*` routes; switchable at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behave normally.
    #[default]
    None,
    /// Answer with this HTTP status and an error body of the given shape
    /// (after `latency`). An invalid status code is sent as 500.
    Status { status: u16, body: ErrorBody },
    /// Accept the request and never answer; the connection stays open
    /// (until the client gives up or the mock shuts down).
    Hang,
    /// Send `200` response headers (`text/event-stream` for stream requests,
    /// `application/json` otherwise), then nothing.
    HeadersThenHang,
    /// Streams: send `after_chunks` SSE events (the role chunk counts), then abort the
    /// connection abruptly (the body yields an error: no `[DONE]`, no terminating chunk).
    /// Non-stream requests: send the first half of the JSON body, then abort.
    DieMidStream { after_chunks: usize },
    /// Like [`Fault::DieMidStream`] but stall forever instead of aborting.
    StallMidStream { after_chunks: usize },
}

impl Fault {
    /// `Fault::Status` with the standard OpenAI error body.
    pub fn status(status: u16) -> Self {
        Fault::Status {
            status,
            body: ErrorBody::OpenAi,
        }
    }
}

/// Parses the binary's `--fault` syntax: `none`, `status:500`, `status:400:vllm`,
/// `status:500:flat`, `status:500:openai`, `hang`, `headers-then-hang`,
/// `die-mid-stream:3`, `stall-mid-stream:3`.
impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split(':');
        let kind = parts.next().unwrap_or("").to_ascii_lowercase();
        let arg = parts.next();
        let arg2 = parts.next();
        let count = |a: Option<&str>| -> Result<usize, String> {
            a.ok_or_else(|| format!("fault `{s}` needs a chunk count, e.g. `{kind}:3`"))?
                .parse::<usize>()
                .map_err(|e| format!("fault `{s}`: bad chunk count: {e}"))
        };
        let fault = match kind.as_str() {
            "none" | "" => Fault::None,
            "status" => {
                let status = arg
                    .unwrap_or("500")
                    .parse::<u16>()
                    .map_err(|e| format!("fault `{s}`: bad status: {e}"))?;
                let body = match arg2.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("openai") => ErrorBody::OpenAi,
                    Some("vllm") | Some("vllm-int-code") => ErrorBody::VllmIntCode,
                    Some("flat") | Some("flat-object") => ErrorBody::FlatObject,
                    Some(other) => {
                        return Err(format!(
                            "fault `{s}`: unknown error body `{other}` (openai|vllm|flat)"
                        ))
                    }
                };
                Fault::Status { status, body }
            }
            "hang" => Fault::Hang,
            "headers-then-hang" => Fault::HeadersThenHang,
            "die-mid-stream" => Fault::DieMidStream {
                after_chunks: count(arg)?,
            },
            "stall-mid-stream" => Fault::StallMidStream {
                after_chunks: count(arg)?,
            },
            _ => {
                return Err(format!(
                    "unknown fault `{s}` (none|status:CODE[:openai|vllm|flat]|hang|headers-then-hang|die-mid-stream:N|stall-mid-stream:N)"
                ))
            }
        };
        Ok(fault)
    }
}

/// Configuration of a mock backend.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Appears in answers ("Mock answer from {name}: ...") and in `owned_by`.
    pub name: String,
    /// Served by `GET /v1/models` (requests for other models are answered anyway).
    pub models: Vec<String>,
    /// Delay before the response headers.
    pub latency: Duration,
    /// Delay between streamed tokens (zero: as fast as possible).
    pub inter_token_delay: Duration,
    /// Completion length when `max_tokens` does not cut it shorter.
    pub completion_tokens: usize,
    /// Fault injected on `POST /v1/*`.
    pub fault: Fault,
    /// `GET /health` exists (else 404, like llama.cpp's server without it).
    pub health_route: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            name: "mock".to_string(),
            models: vec!["mock-model".to_string()],
            latency: Duration::ZERO,
            inter_token_delay: Duration::ZERO,
            completion_tokens: 16,
            fault: Fault::None,
            health_route: true,
        }
    }
}

impl MockConfig {
    /// Default configuration with this name.
    pub fn named(name: &str) -> Self {
        MockConfig {
            name: name.to_string(),
            ..MockConfig::default()
        }
    }

    pub fn models(mut self, models: &[&str]) -> Self {
        self.models = models.iter().map(|m| m.to_string()).collect();
        self
    }

    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub fn inter_token_delay(mut self, delay: Duration) -> Self {
        self.inter_token_delay = delay;
        self
    }

    pub fn tokens(mut self, completion_tokens: usize) -> Self {
        self.completion_tokens = completion_tokens;
        self
    }

    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    pub fn no_health_route(mut self) -> Self {
        self.health_route = false;
        self
    }
}

/// The last `POST /v1/*` request the mock received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    /// The parsed JSON body (`Value::Null` when the body was not JSON).
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Settings that can change at run time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dynamic {
    pub(crate) fault: Fault,
    pub(crate) latency: Duration,
    pub(crate) inter_token_delay: Duration,
    pub(crate) completion_tokens: usize,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    /// `"{name}: "`, the fourth token of every answer.
    pub(crate) name_token: String,
    pub(crate) models: Vec<String>,
    pub(crate) health_route: bool,
    pub(crate) healthy: AtomicBool,
    pub(crate) dynamic: Mutex<Dynamic>,
    pub(crate) requests: AtomicUsize,
    pub(crate) health_requests: AtomicUsize,
    pub(crate) models_requests: AtomicUsize,
    pub(crate) cancelled_streams: AtomicUsize,
    pub(crate) completed_streams: AtomicUsize,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) id_seq: AtomicU64,
    pub(crate) last_request: Mutex<Option<RecordedRequest>>,
    pub(crate) shutdown: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Shared state of a mock: configuration, fault switch and counters.
/// Cheap to clone; give it to [`router`] to serve it yourself.
#[derive(Clone)]
pub struct MockState {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for MockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockState")
            .field("name", &self.inner.name)
            .field("dynamic", &*lock(&self.inner.dynamic))
            .finish_non_exhaustive()
    }
}

impl MockState {
    pub fn new(cfg: MockConfig) -> Self {
        let (shutdown, _) = watch::channel(false);
        MockState {
            inner: Arc::new(Inner {
                name_token: format!("{}: ", cfg.name),
                name: cfg.name,
                models: cfg.models,
                health_route: cfg.health_route,
                healthy: AtomicBool::new(true),
                dynamic: Mutex::new(Dynamic {
                    fault: cfg.fault,
                    latency: cfg.latency,
                    inter_token_delay: cfg.inter_token_delay,
                    completion_tokens: cfg.completion_tokens,
                }),
                requests: AtomicUsize::new(0),
                health_requests: AtomicUsize::new(0),
                models_requests: AtomicUsize::new(0),
                cancelled_streams: AtomicUsize::new(0),
                completed_streams: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                id_seq: AtomicU64::new(0),
                last_request: Mutex::new(None),
                shutdown,
            }),
        }
    }

    pub(crate) fn dynamic(&self) -> Dynamic {
        *lock(&self.inner.dynamic)
    }

    /// The current configuration (with the current fault and timings).
    pub fn config(&self) -> MockConfig {
        let d = self.dynamic();
        MockConfig {
            name: self.inner.name.clone(),
            models: self.inner.models.clone(),
            latency: d.latency,
            inter_token_delay: d.inter_token_delay,
            completion_tokens: d.completion_tokens,
            fault: d.fault,
            health_route: self.inner.health_route,
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn set_fault(&self, fault: Fault) {
        lock(&self.inner.dynamic).fault = fault;
    }

    pub fn fault(&self) -> Fault {
        self.dynamic().fault
    }

    pub fn set_latency(&self, latency: Duration) {
        lock(&self.inner.dynamic).latency = latency;
    }

    pub fn set_inter_token_delay(&self, delay: Duration) {
        lock(&self.inner.dynamic).inter_token_delay = delay;
    }

    pub fn set_tokens(&self, completion_tokens: usize) {
        lock(&self.inner.dynamic).completion_tokens = completion_tokens;
    }

    /// When false, `GET /health` answers 503 (if the route exists).
    pub fn set_healthy(&self, healthy: bool) {
        self.inner.healthy.store(healthy, Ordering::Relaxed);
    }

    /// `POST /v1/*` requests received (faulted ones included).
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    pub fn health_requests(&self) -> usize {
        self.inner.health_requests.load(Ordering::SeqCst)
    }

    pub fn models_requests(&self) -> usize {
        self.inner.models_requests.load(Ordering::SeqCst)
    }

    /// SSE streams whose body was dropped before `[DONE]` was sent (client went
    /// away, or the mock aborted/stalled it through a fault and then it was dropped).
    pub fn cancelled_streams(&self) -> usize {
        self.inner.cancelled_streams.load(Ordering::SeqCst)
    }

    /// SSE streams that sent `[DONE]`.
    pub fn completed_streams(&self) -> usize {
        self.inner.completed_streams.load(Ordering::SeqCst)
    }

    /// `POST /v1/*` requests being handled now (a stream counts until its body ends or is dropped).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.inner.last_request).clone()
    }

    /// Sets every counter to zero and forgets the last request.
    pub fn reset_counters(&self) {
        let i = &self.inner;
        for c in [
            &i.requests,
            &i.health_requests,
            &i.models_requests,
            &i.cancelled_streams,
            &i.completed_streams,
        ] {
            c.store(0, Ordering::SeqCst);
        }
        *lock(&i.last_request) = None;
    }

    /// Ends every hang, stall and delayed stream, and stops a server started
    /// through [`MockServer`]. Irreversible.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

/// A mock backend served on a local TCP port. Shuts down on drop.
#[derive(Debug)]
pub struct MockServer {
    state: MockState,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Starts on `127.0.0.1:0` (a free port).
    pub async fn start(cfg: MockConfig) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::start_on(cfg, listener).await
    }

    /// Starts on an already bound listener.
    pub async fn start_on(cfg: MockConfig, listener: TcpListener) -> std::io::Result<MockServer> {
        let addr = listener.local_addr()?;
        let state = MockState::new(cfg);
        let app = router(state.clone());
        let mut stop = state.inner.shutdown.subscribe();
        let listener = listener.tap_io(|tcp| {
            // Latency matters more than throughput for small SSE frames.
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "mock server stopped with an error");
            }
        });
        Ok(MockServer {
            state,
            addr,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state (also reachable through the delegating methods below).
    pub fn state(&self) -> &MockState {
        &self.state
    }

    pub fn config(&self) -> MockConfig {
        self.state.config()
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state.set_fault(fault)
    }

    pub fn fault(&self) -> Fault {
        self.state.fault()
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state.set_latency(latency)
    }

    pub fn set_inter_token_delay(&self, delay: Duration) {
        self.state.set_inter_token_delay(delay)
    }

    pub fn set_tokens(&self, completion_tokens: usize) {
        self.state.set_tokens(completion_tokens)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.state.set_healthy(healthy)
    }

    pub fn requests(&self) -> usize {
        self.state.requests()
    }

    pub fn health_requests(&self) -> usize {
        self.state.health_requests()
    }

    pub fn models_requests(&self) -> usize {
        self.state.models_requests()
    }

    pub fn cancelled_streams(&self) -> usize {
        self.state.cancelled_streams()
    }

    pub fn completed_streams(&self) -> usize {
        self.state.completed_streams()
    }

    pub fn in_flight(&self) -> usize {
        self.state.in_flight()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state.last_request()
    }

    pub fn reset_counters(&self) {
        self.state.reset_counters()
    }

    /// Stops accepting, ends hangs and open streams, and waits until the
    /// listener and every connection are closed.
    pub async fn shutdown(mut self) {
        self.state.shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // The serving task notices, closes the listener and its connections.
        self.state.shutdown();
    }
}
