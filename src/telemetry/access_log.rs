//! The access log: one JSON line per request (time, request id, method, path, status,
//! duration, gateway, backend, model, tokens when known, cache and guard outcome, client IP,
//! user), with the seed's header rules: `Authorization` and `Cookie` are always redacted; other
//! headers are dropped unless configured `keep` or `redact`.
//!
//! Lines go through a bounded queue to a writer thread: writing never blocks a request; a full
//! queue drops the line and counts it. Streamed answers are logged when the stream ends
//! ([`DeferredLine`]), with their tokens and whole duration.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::audit::{AuditEvent, AuditLog};
use super::batching::{self, drain_in_batches, Queued};

const QUEUE: usize = 10_000;
/// Headers never logged in clear, whatever the configuration says.
const ALWAYS_REDACTED: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "set-cookie",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMode {
    Keep,
    Drop,
    Redact,
}

impl HeaderMode {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "keep" => Some(Self::Keep),
            "drop" => Some(Self::Drop),
            "redact" => Some(Self::Redact),
            _ => None,
        }
    }
}

/// Which request headers appear in the log, and how.
#[derive(Debug, Clone)]
pub struct HeaderRules {
    pub default: HeaderMode,
    /// Lower-case header name to mode.
    pub names: BTreeMap<String, HeaderMode>,
}

impl Default for HeaderRules {
    fn default() -> Self {
        Self {
            default: HeaderMode::Drop,
            names: BTreeMap::new(),
        }
    }
}

impl HeaderRules {
    fn apply(&self, headers: &HeaderMap) -> Map<String, Value> {
        let mut out = Map::new();
        for (name, value) in headers {
            let key = name.as_str();
            let mode = if ALWAYS_REDACTED.contains(&key) {
                match self.names.get(key).copied().unwrap_or(self.default) {
                    HeaderMode::Drop => HeaderMode::Drop,
                    _ => HeaderMode::Redact,
                }
            } else {
                self.names.get(key).copied().unwrap_or(self.default)
            };
            match mode {
                HeaderMode::Drop => {}
                HeaderMode::Redact => {
                    out.insert(key.to_string(), Value::from("REDACTED"));
                }
                HeaderMode::Keep => {
                    out.insert(
                        key.to_string(),
                        Value::from(value.to_str().unwrap_or("<binary>")),
                    );
                }
            }
        }
        out
    }
}

/// One request, as logged.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AccessRecord {
    pub time: String,
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub duration_ms: f64,
    pub gateway: String,
    pub backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    /// `not_scanned`, `passed`, `blocked`, or `answer_scanned` flags below.
    pub prompt_scanned: bool,
    pub answer_scanned: bool,
    pub client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub headers: Map<String, Value>,
    /// The shutdown grace ended before the answer did: the stream got an error event, or the
    /// request a 503.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cut_by_shutdown: bool,
    /// The changes the gateway made to the request (`default_max_tokens`, `prompt_redacted`,
    /// ...), absent when there were none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AccessTarget {
    Off,
    Stdout,
    File(PathBuf),
}

impl AccessTarget {
    pub fn parse(value: &str) -> Self {
        match value {
            "off" => Self::Off,
            "-" => Self::Stdout,
            path => Self::File(PathBuf::from(path)),
        }
    }
}

#[derive(Clone)]
pub struct AccessLog {
    sender: Option<mpsc::Sender<Queued<AccessRecord>>>,
    rules: Arc<HeaderRules>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    pub fn disabled() -> Self {
        Self {
            sender: None,
            rules: Arc::new(HeaderRules::default()),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn start(target: &AccessTarget, rules: HeaderRules) -> std::io::Result<Self> {
        let writer: Box<dyn Write + Send> = match target {
            AccessTarget::Off => return Ok(Self::disabled()),
            AccessTarget::Stdout => Box::new(std::io::stdout()),
            AccessTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (sender, receiver) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("airgate-access-log".into())
            .spawn(move || write_loop(receiver, BufWriter::with_capacity(64 * 1024, writer)))?;
        Ok(Self {
            sender: Some(sender),
            rules: Arc::new(rules),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Queues one record; never waits. `headers` are filtered by the rules here; the line is
    /// serialised by the writer thread, off the request path.
    pub fn write(&self, mut record: AccessRecord, headers: &HeaderMap) {
        let Some(sender) = &self.sender else { return };
        record.time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        record.headers = self.rules.apply(headers);
        if sender.try_send(Queued::Record(record)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every line queued so far is written and flushed, at most `timeout` (see
    /// [`AuditLog::flush`]).
    pub async fn flush(&self, timeout: std::time::Duration) -> bool {
        match &self.sender {
            Some(sender) => batching::flush(sender, timeout).await,
            None => true,
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Serialises and writes the queued records in batches (see [`drain_in_batches`]).
fn write_loop(receiver: mpsc::Receiver<Queued<AccessRecord>>, mut writer: impl Write) {
    drain_in_batches(
        receiver,
        &mut writer,
        |writer, record| {
            if serde_json::to_writer(&mut *writer, &record).is_ok() {
                let _ = writer.write_all(b"\n");
            }
        },
        |writer| {
            let _ = writer.flush();
        },
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn credentials_are_redacted_even_when_keep_is_the_default() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("Bearer secret-token"),
        );
        headers.insert("cookie", HeaderValue::from_static("session=abc"));
        headers.insert("user-agent", HeaderValue::from_static("openai-python"));
        headers.insert("x-tenant", HeaderValue::from_static("finance"));
        let rules = HeaderRules {
            default: HeaderMode::Keep,
            names: BTreeMap::from([("x-tenant".to_string(), HeaderMode::Drop)]),
        };
        let out = rules.apply(&headers);
        assert_eq!(out["authorization"], "REDACTED");
        assert_eq!(out["cookie"], "REDACTED");
        assert_eq!(out["user-agent"], "openai-python");
        assert!(!out.contains_key("x-tenant"));
        let text = serde_json::to_string(&out).unwrap();
        assert!(!text.contains("secret-token") && !text.contains("abc"));
        assert!(HeaderRules::default().apply(&headers).is_empty());
    }
}

/// The access-log line and the `request_served` audit event of a streamed answer, written when
/// the stream ends so that they carry the tokens and the whole duration: the handler hands them
/// over, the stream reports its end, and whichever comes second writes them.
#[derive(Clone, Default)]
pub struct DeferredLine(Arc<parking_lot::Mutex<Deferred>>);

#[derive(Default)]
enum Deferred {
    #[default]
    Waiting,
    Line(Box<PendingLine>),
    Ended(StreamEnd),
    Written,
}

struct PendingLine {
    log: AccessLog,
    record: AccessRecord,
    headers: HeaderMap,
    started: std::time::Instant,
    audit: Option<(AuditLog, AuditEvent)>,
}

impl DeferredLine {
    /// From the handler, once the response head is ready.
    pub fn hand_over(
        &self,
        log: &AccessLog,
        record: AccessRecord,
        headers: HeaderMap,
        started: std::time::Instant,
        audit: Option<(AuditLog, AuditEvent)>,
    ) {
        let mut state = self.0.lock();
        let pending = PendingLine {
            log: log.clone(),
            record,
            headers,
            started,
            audit,
        };
        match std::mem::take(&mut *state) {
            Deferred::Ended(end) => {
                write_pending(pending, end);
                *state = Deferred::Written;
            }
            _ => *state = Deferred::Line(Box::new(pending)),
        }
    }

    /// From the stream, when it ends: (prompt, completion) tokens when known, and whether the
    /// shutdown cut it.
    pub fn stream_ended(&self, tokens: Option<(u64, u64)>, cut_by_shutdown: bool) {
        let mut state = self.0.lock();
        let end = StreamEnd {
            tokens,
            cut_by_shutdown,
            at: std::time::Instant::now(),
        };
        match std::mem::take(&mut *state) {
            Deferred::Line(pending) => {
                write_pending(*pending, end);
                *state = Deferred::Written;
            }
            _ => *state = Deferred::Ended(end),
        }
    }
}

/// How a stream ended.
struct StreamEnd {
    tokens: Option<(u64, u64)>,
    cut_by_shutdown: bool,
    at: std::time::Instant,
}

fn write_pending(pending: PendingLine, end: StreamEnd) {
    let StreamEnd {
        tokens,
        cut_by_shutdown,
        at,
    } = end;
    let PendingLine {
        log,
        mut record,
        headers,
        started,
        audit,
    } = pending;
    record.duration_ms = at.duration_since(started).as_secs_f64() * 1000.0;
    record.prompt_tokens = tokens.map(|t| t.0);
    record.completion_tokens = tokens.map(|t| t.1);
    record.cut_by_shutdown = cut_by_shutdown;
    log.write(record, &headers);
    if let Some((audit, mut event)) = audit {
        if cut_by_shutdown {
            event = event.detail("cut_by_shutdown", true);
        }
        if let Some((prompt, completion)) = tokens {
            event = event
                .detail("prompt_tokens", prompt)
                .detail("completion_tokens", completion);
        }
        audit.record(event);
    }
}
