//! The audit log: one record per event that matters to a security team, for a SIEM.
//!
//! Records go to a JSON-lines file (rotated by size), stdout or a syslog collector (RFC 5424 over
//! TCP or TLS), as AirGate's JSON record or as OCSF API Activity. Every record carries a hash
//! chain (`seq`, `prev_hash`, `hash`) that [`verify_file`] / [`verify_files`] check. The record
//! format is documented in docs/audit-log.md.
//!
//! Recording never blocks a request: events go through a bounded queue to a writer task; when the
//! queue is full the event is dropped and counted, and the count is written as its own event
//! (`audit_events_dropped`) once the sink accepts records again. Events never carry prompt or
//! answer text.

mod chain;
mod file;
mod format;
mod syslog;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

pub use chain::{
    hash_line, rotation_set, verify_file, verify_files, ChainError, VerifyReport, GENESIS_HASH,
};
pub use format::{AuditFormat, OCSF_VERSION};

use chain::Chain;
use file::RotatingFile;
use syslog::Syslog;

use super::batching::{self, drain_in_batches, Queued};

/// Events queued before new ones are dropped (default of [`AuditConfig::queue_capacity`]).
const QUEUE: usize = 10_000;
/// Records sent to syslog in one write.
const BATCH: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub time: String,
    pub event: &'static str,
    pub request_id: String,
    pub gateway: String,
    pub user: Option<String>,
    pub source_ip: Option<String>,
    pub outcome: &'static str,
    pub reason: String,
    pub details: Map<String, Value>,
}

impl AuditEvent {
    pub fn new(
        event: &'static str,
        request_id: &str,
        gateway: &str,
        outcome: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event,
            request_id: request_id.to_string(),
            gateway: gateway.to_string(),
            user: None,
            source_ip: None,
            outcome,
            reason: reason.into(),
            details: Map::new(),
        }
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// Sets the authenticated user (key name, subject…).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the client address.
    pub fn source_ip(mut self, ip: impl ToString) -> Self {
        self.source_ip = Some(ip.to_string());
        self
    }
}

/// Where audit events go.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditTarget {
    Stdout,
    File(PathBuf),
    /// A syslog collector at `host:port`; TLS needs [`AuditConfig::syslog`]`.tls`.
    Syslog {
        addr: String,
        tls: bool,
    },
    Disabled,
}

impl AuditTarget {
    /// `-` is stdout, `off` disables, `syslog+tcp://host:port` and `syslog+tls://host:port` are a
    /// syslog collector, anything else is a file path (appended to).
    pub fn parse(value: &str) -> Self {
        let syslog = |rest: &str, tls| AuditTarget::Syslog {
            addr: rest.trim_end_matches('/').to_string(),
            tls,
        };
        match value {
            "-" => AuditTarget::Stdout,
            "off" => AuditTarget::Disabled,
            _ => {
                if let Some(rest) = value.strip_prefix("syslog+tcp://") {
                    syslog(rest, false)
                } else if let Some(rest) = value.strip_prefix("syslog+tls://") {
                    syslog(rest, true)
                } else {
                    AuditTarget::File(PathBuf::from(value))
                }
            }
        }
    }
}

/// TLS to the syslog collector (RFC 5425): the collector's certificate must chain to a CA in
/// `ca_file` (PEM, one or more certificates) and be valid for `server_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_file: PathBuf,
    /// Name the certificate must be valid for; empty means the host of the address.
    pub server_name: String,
}

/// Syslog settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogConfig {
    /// `host:port`; may be left empty when the target gives it.
    pub addr: String,
    /// Required for a `syslog+tls://` target, refused for `syslog+tcp://`.
    pub tls: Option<TlsConfig>,
    /// RFC 5424 APP-NAME (empty: `-`).
    pub app_name: String,
    /// RFC 5424 HOSTNAME (empty: `-`).
    pub hostname: String,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            addr: String::new(),
            tls: None,
            app_name: "airgate".to_string(),
            hostname: std::env::var("HOSTNAME").unwrap_or_default(),
        }
    }
}

/// Everything about the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    pub target: AuditTarget,
    pub format: AuditFormat,
    /// File target: rotate before a record would take the file past this size.
    pub rotate_bytes: Option<u64>,
    /// File target: rotated files kept (`audit.jsonl.1` … `.N`).
    pub keep_files: usize,
    pub syslog: Option<SyslogConfig>,
    /// Records queued for the sink before new ones are dropped.
    pub queue_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            target: AuditTarget::Disabled,
            format: AuditFormat::Json,
            rotate_bytes: None,
            keep_files: 5,
            syslog: None,
            queue_capacity: QUEUE,
        }
    }
}

impl AuditConfig {
    pub fn new(target: AuditTarget) -> Self {
        Self {
            target,
            ..Self::default()
        }
    }
}

/// Why the audit log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit log {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log configuration: {0}")]
    Config(String),
    #[error("audit log TLS: {0}")]
    Tls(String),
}

impl From<AuditError> for std::io::Error {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::Open { source, .. } => source,
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    sink_errors: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct AuditLog {
    sender: Option<mpsc::Sender<Queued<AuditEvent>>>,
    counters: Arc<Counters>,
}

impl AuditLog {
    pub fn disabled() -> Self {
        Self {
            sender: None,
            counters: Arc::new(Counters::default()),
        }
    }

    /// Starts the writer task with default settings. Fails when the file cannot be opened for
    /// appending, or for a `syslog+tls://` target (which needs [`AuditLog::start_with`]).
    pub fn start(target: &AuditTarget) -> std::io::Result<Self> {
        Ok(Self::start_with(AuditConfig::new(target.clone()))?)
    }

    /// Starts the writer task. Fails on a file that cannot be opened or invalid settings (an
    /// unreadable CA file, a bad address…); an unreachable collector is not an error: the writer
    /// keeps reconnecting. Must be called within a Tokio runtime.
    pub fn start_with(config: AuditConfig) -> Result<Self, AuditError> {
        if config.rotate_bytes == Some(0) {
            return Err(AuditError::Config(
                "rotate_bytes must be above 0".to_string(),
            ));
        }
        let capacity = config.queue_capacity.max(1);
        let counters = Arc::new(Counters::default());
        let (sender, receiver) = mpsc::channel(capacity);
        match &config.target {
            AuditTarget::Disabled => return Ok(Self::disabled()),
            AuditTarget::Stdout => {
                let sealer = Sealer::new(config.format, Chain::genesis(), &counters);
                let sink = LineSink::Stdout(std::io::BufWriter::with_capacity(
                    64 * 1024,
                    std::io::stdout(),
                ));
                tokio::task::spawn_blocking(move || line_loop(receiver, sink, sealer));
            }
            AuditTarget::File(path) => {
                let chain = file::resume_chain(path);
                let sink = RotatingFile::open(path, config.rotate_bytes, config.keep_files)
                    .map_err(|source| AuditError::Open {
                        path: path.clone(),
                        source,
                    })?;
                let sealer = Sealer::new(config.format, chain, &counters);
                tokio::task::spawn_blocking(move || {
                    line_loop(receiver, LineSink::File(Box::new(sink)), sealer)
                });
            }
            AuditTarget::Syslog { addr, tls } => {
                let mut settings = config.syslog.clone().unwrap_or_default();
                if !settings.addr.is_empty() && settings.addr != *addr {
                    return Err(AuditError::Config(format!(
                        "syslog address {:?} differs from the target's {addr:?}",
                        settings.addr
                    )));
                }
                settings.addr.clone_from(addr);
                let syslog = Syslog::new(&settings, *tls)?;
                let sealer = Sealer::new(config.format, Chain::genesis(), &counters);
                tokio::spawn(syslog_loop(receiver, syslog, sealer));
            }
        }
        Ok(Self {
            sender: Some(sender),
            counters,
        })
    }

    /// Queues an event; never waits.
    pub fn record(&self, event: AuditEvent) {
        if let Some(sender) = &self.sender {
            if sender.try_send(Queued::Record(event)).is_err() {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until every event recorded so far is written and flushed to the sink (for a
    /// syslog collector: sent), at most `timeout`. Shutdown calls it last, so that the tail of
    /// the hash chain is not lost with the process. False when the sink did not confirm in time.
    pub async fn flush(&self, timeout: std::time::Duration) -> bool {
        match &self.sender {
            Some(sender) => batching::flush(sender, timeout).await,
            None => true,
        }
    }

    /// Events dropped because the queue was full (since start).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Sink failures since start: failed connects or TLS handshakes, failed writes.
    pub fn sink_errors(&self) -> u64 {
        self.counters.sink_errors.load(Ordering::Relaxed)
    }
}

/// Turns events into chained lines and reports drops.
struct Sealer {
    format: AuditFormat,
    chain: Chain,
    counters: Arc<Counters>,
    reported_drops: u64,
}

impl Sealer {
    fn new(format: AuditFormat, chain: Chain, counters: &Arc<Counters>) -> Self {
        Self {
            format,
            chain,
            counters: Arc::clone(counters),
            reported_drops: 0,
        }
    }

    /// The record line and its `seq`.
    fn seal(&mut self, event: &AuditEvent) -> Option<(u64, String)> {
        let seq = self.chain.next_seq;
        match format::render(self.format, event, &mut self.chain) {
            Ok(line) => Some((seq, line)),
            Err(e) => {
                tracing::error!(error = %e, "audit event not serialisable");
                None
            }
        }
    }

    /// An `audit_events_dropped` event when events were dropped since the last report.
    fn drop_report(&mut self) -> Option<AuditEvent> {
        let total = self.counters.dropped.load(Ordering::Relaxed);
        if total <= self.reported_drops {
            return None;
        }
        let dropped = total - self.reported_drops;
        self.reported_drops = total;
        Some(
            AuditEvent::new(
                "audit_events_dropped",
                "",
                "",
                "failure",
                "audit queue full or audit sink unavailable",
            )
            .detail("dropped", dropped)
            .detail("dropped_total", total),
        )
    }

    fn sink_error(&self) {
        self.counters.sink_errors.fetch_add(1, Ordering::Relaxed);
    }
}

enum LineSink {
    /// Buffered and flushed once per drained batch: `Stdout` alone is line-buffered, a write
    /// system call per record.
    Stdout(std::io::BufWriter<std::io::Stdout>),
    File(Box<RotatingFile>),
}

impl LineSink {
    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        match self {
            LineSink::Stdout(out) => writeln!(out, "{line}"),
            LineSink::File(file) => file.write_line(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            LineSink::Stdout(out) => out.flush(),
            LineSink::File(file) => file.flush(),
        }
    }
}

fn write_event(sink: &mut LineSink, sealer: &mut Sealer, event: &AuditEvent) {
    if let Some((_, line)) = sealer.seal(event) {
        if let Err(e) = sink.write_line(&line) {
            sealer.sink_error();
            tracing::error!(error = %e, "audit log write failed");
        }
    }
}

/// File and stdout: blocking writes on a blocking thread, in batches (one flush per burst).
fn line_loop(receiver: mpsc::Receiver<Queued<AuditEvent>>, sink: LineSink, sealer: Sealer) {
    drain_in_batches(
        receiver,
        &mut (sink, sealer),
        |(sink, sealer), event| write_event(sink, sealer, &event),
        |(sink, sealer)| {
            if let Some(report) = sealer.drop_report() {
                write_event(sink, sealer, &report);
            }
            if let Err(e) = sink.flush() {
                sealer.sink_error();
                tracing::error!(error = %e, "audit log flush failed");
            }
        },
    );
}

/// Syslog: sealed frames wait in `pending` (bounded by [`BATCH`]) until written; while the
/// collector is unreachable nothing more is taken from the queue, so it fills and `record`
/// drops and counts.
async fn syslog_loop(
    mut receiver: mpsc::Receiver<Queued<AuditEvent>>,
    syslog: Syslog,
    mut sealer: Sealer,
) {
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    // Flush requests, answered once every frame queued before them was sent.
    let mut flushes: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    let mut conn: Option<Box<dyn syslog::Io>> = None;
    let mut backoff = syslog::BACKOFF_MIN;
    let mut failing = false;
    let mut closed = false;
    let push = |pending: &mut VecDeque<Vec<u8>>, sealer: &mut Sealer, event: &AuditEvent| {
        if let Some((seq, line)) = sealer.seal(event) {
            pending.push_back(syslog.frame(event, seq, &line));
        }
    };
    loop {
        if pending.is_empty() {
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
            if closed {
                break;
            }
            match receiver.recv().await {
                Some(Queued::Record(event)) => push(&mut pending, &mut sealer, &event),
                Some(Queued::Flush(done)) => {
                    flushes.push(done);
                    continue;
                }
                None => break,
            }
            while pending.len() < BATCH {
                match receiver.try_recv() {
                    Ok(Queued::Record(event)) => push(&mut pending, &mut sealer, &event),
                    Ok(Queued::Flush(done)) => {
                        flushes.push(done);
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if let Some(open) = conn.as_mut() {
            if !syslog::still_open(open).await {
                tracing::warn!(addr = syslog.addr(), "audit syslog connection closed");
                conn = None;
            }
        }
        let open = match conn.as_mut() {
            Some(open) => open,
            None => match syslog.connect().await {
                Ok(open) => {
                    if failing {
                        tracing::info!(addr = syslog.addr(), "audit syslog reconnected");
                    }
                    failing = false;
                    backoff = syslog::BACKOFF_MIN;
                    conn.insert(open)
                }
                Err(e) => {
                    sealer.sink_error();
                    if !failing {
                        tracing::error!(addr = syslog.addr(), error = %e, "audit syslog unreachable; retrying");
                    } else {
                        tracing::debug!(addr = syslog.addr(), error = %e, "audit syslog still unreachable");
                    }
                    failing = true;
                    if closed {
                        // Shutting down: do not wait for a collector that is gone.
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(syslog::BACKOFF_MAX);
                    continue;
                }
            },
        };
        let bytes: Vec<u8> = pending.iter().flatten().copied().collect();
        match syslog::send(open, &bytes).await {
            Ok(()) => {
                pending.clear();
                if let Some(report) = sealer.drop_report() {
                    push(&mut pending, &mut sealer, &report);
                }
            }
            Err(e) => {
                // Kept and sent again after reconnecting: at least once, never a silent gap.
                sealer.sink_error();
                tracing::warn!(addr = syslog.addr(), error = %e, "audit syslog write failed; reconnecting");
                conn = None;
                failing = true;
            }
        }
    }
    if let Some(mut open) = conn {
        use tokio::io::AsyncWriteExt;
        let _ = open.shutdown().await;
    }
}
