//! The audit log: one JSON line per event that matters to a security team (guard violations for
//! now; the observability issue adds more events, SIEM sinks and a hash chain).
//!
//! Recording never blocks a request: events go through a bounded queue to a writer task; when the
//! queue is full the event is dropped and counted, and the count is written as its own event once
//! the writer catches up. Events never carry prompt or answer text.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// Events queued before new ones are dropped.
const QUEUE: usize = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub time: String,
    pub event: &'static str,
    pub request_id: String,
    pub gateway: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    pub outcome: &'static str,
    pub reason: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
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
}

/// Where audit events go.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditTarget {
    Stdout,
    File(PathBuf),
    Disabled,
}

impl AuditTarget {
    /// `-` is stdout, `off` disables, anything else is a file path (appended to).
    pub fn parse(value: &str) -> Self {
        match value {
            "-" => AuditTarget::Stdout,
            "off" => AuditTarget::Disabled,
            path => AuditTarget::File(PathBuf::from(path)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditLog {
    sender: Option<mpsc::Sender<AuditEvent>>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    pub fn disabled() -> Self {
        Self {
            sender: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Starts the writer task. Fails when the file cannot be opened for appending.
    pub fn start(target: &AuditTarget) -> std::io::Result<Self> {
        let writer: Box<dyn Write + Send> = match target {
            AuditTarget::Disabled => return Ok(Self::disabled()),
            AuditTarget::Stdout => Box::new(std::io::stdout()),
            AuditTarget::File(path) => Box::new(open_append(path)?),
        };
        let (sender, receiver) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let task_dropped = Arc::clone(&dropped);
        tokio::task::spawn_blocking(move || write_loop(receiver, writer, &task_dropped));
        Ok(Self {
            sender: Some(sender),
            dropped,
        })
    }

    /// Queues an event; never waits.
    pub fn record(&self, event: AuditEvent) {
        if let Some(sender) = &self.sender {
            if sender.try_send(event).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn write_loop(
    mut receiver: mpsc::Receiver<AuditEvent>,
    mut writer: Box<dyn Write + Send>,
    dropped: &AtomicU64,
) {
    let mut reported_drops = 0;
    while let Some(event) = receiver.blocking_recv() {
        write_event(&mut writer, &event);
        // Drain what is queued before flushing, so bursts cost one flush.
        while let Ok(event) = receiver.try_recv() {
            write_event(&mut writer, &event);
        }
        let drops = dropped.load(Ordering::Relaxed);
        if drops > reported_drops {
            let event = AuditEvent::new(
                "audit_events_dropped",
                "",
                "",
                "failure",
                "audit queue full",
            )
            .detail("dropped_total", drops);
            write_event(&mut writer, &event);
            reported_drops = drops;
        }
        if let Err(e) = writer.flush() {
            tracing::error!(error = %e, "audit log flush failed");
        }
    }
}

fn write_event(writer: &mut Box<dyn Write + Send>, event: &AuditEvent) {
    let line = match serde_json::to_string(event) {
        Ok(line) => line,
        Err(e) => {
            tracing::error!(error = %e, "audit event not serialisable");
            return;
        }
    };
    if let Err(e) = writeln!(writer, "{line}") {
        tracing::error!(error = %e, "audit log write failed");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_written_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::start(&AuditTarget::File(path.clone())).unwrap();
        log.record(
            AuditEvent::new("guard_violation", "r1", "ns/gw", "blocked", "rule x")
                .detail("stage", "prompt"),
        );
        log.record(AuditEvent::new(
            "guard_violation",
            "r2",
            "ns/gw",
            "blocked",
            "rule y",
        ));
        let mut lines = Vec::new();
        for _ in 0..100 {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            lines = text.lines().map(str::to_string).collect();
            if lines.len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(lines.len(), 2);
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["event"], "guard_violation");
        assert_eq!(first["request_id"], "r1");
        assert_eq!(first["details"]["stage"], "prompt");
        assert!(first["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn targets_parse() {
        assert_eq!(AuditTarget::parse("-"), AuditTarget::Stdout);
        assert_eq!(AuditTarget::parse("off"), AuditTarget::Disabled);
        assert_eq!(AuditTarget::parse("/x"), AuditTarget::File("/x".into()));
    }
}
