//! Rendering an event as a chained record line: the plain JSON format and OCSF (API Activity).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::chain::Chain;
use super::AuditEvent;

/// Output format of the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditFormat {
    /// AirGate's own JSON record (see docs/audit-log.md).
    #[default]
    Json,
    /// OCSF 1.3.0 API Activity (class_uid 6003).
    Ocsf,
}

impl AuditFormat {
    /// `json` or `ocsf`.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "json" => Some(AuditFormat::Json),
            "ocsf" => Some(AuditFormat::Ocsf),
            _ => None,
        }
    }
}

impl std::str::FromStr for AuditFormat {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value).ok_or_else(|| format!("unknown audit format {value:?} (json, ocsf)"))
    }
}

/// OCSF schema version the records follow.
pub const OCSF_VERSION: &str = "1.3.0";
const PRODUCT: &str = "AirGate";

/// Severity of an event, shared by OCSF `severity_id` and the syslog PRI severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// From the guard's `audit_level` detail when present, otherwise from the outcome.
    pub fn of(event: &AuditEvent) -> Self {
        match event.details.get("audit_level").and_then(Value::as_str) {
            Some("low") => return Severity::Low,
            Some("medium") => return Severity::Medium,
            Some("high") => return Severity::High,
            Some("critical") => return Severity::Critical,
            _ => {}
        }
        if is_failure(event.outcome) {
            Severity::Medium
        } else {
            Severity::Informational
        }
    }

    fn ocsf(self) -> (u8, &'static str) {
        match self {
            Severity::Informational => (1, "Informational"),
            Severity::Low => (2, "Low"),
            Severity::Medium => (3, "Medium"),
            Severity::High => (4, "High"),
            Severity::Critical => (5, "Critical"),
        }
    }

    /// RFC 5424 severity.
    pub fn syslog(self) -> u8 {
        match self {
            Severity::Informational => 6,
            Severity::Low => 5,
            Severity::Medium => 4,
            Severity::High => 3,
            Severity::Critical => 2,
        }
    }
}

fn is_failure(outcome: &str) -> bool {
    matches!(
        outcome,
        "blocked" | "denied" | "failure" | "error" | "refused" | "rejected"
    )
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    seq: u64,
    prev_hash: &'a str,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// Renders `event` as the next record of `chain` and advances the chain.
pub(crate) fn render(
    format: AuditFormat,
    event: &AuditEvent,
    chain: &mut Chain,
) -> Result<String, serde_json::Error> {
    match format {
        AuditFormat::Json => {
            let body = serde_json::to_string(&JsonRecord {
                seq: chain.next_seq,
                prev_hash: &chain.prev_hash,
                event,
            })?;
            Ok(chain.seal(&body, 1))
        }
        AuditFormat::Ocsf => {
            let body = serde_json::to_string(&ocsf(event, chain.next_seq, &chain.prev_hash))?;
            // `unmapped` is the last member, so the hash goes before `}}`.
            Ok(chain.seal(&body, 2))
        }
    }
}

fn epoch_millis(time: &str) -> u64 {
    let at = humantime::parse_rfc3339_weak(time).unwrap_or_else(|_| SystemTime::now());
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The OCSF API Activity object; `unmapped` is built last so it is the last member.
pub(crate) fn ocsf(event: &AuditEvent, seq: u64, prev_hash: &str) -> Value {
    let (severity_id, severity) = Severity::of(event).ocsf();
    let (status_id, status) = match event.outcome {
        "allowed" | "success" | "ok" => (1, "Success"),
        outcome if is_failure(outcome) => (2, "Failure"),
        _ => (99, "Other"),
    };
    let security_control = match event.outcome {
        "allowed" => Some((1, "Allowed", 1, "Allowed")),
        "blocked" => Some((2, "Denied", 2, "Blocked")),
        _ => None,
    };
    let mut profiles: Vec<&str> = Vec::new();
    if security_control.is_some() {
        profiles.push("security_control");
    }

    let mut record = Map::new();
    record.insert("activity_id".into(), json!(99));
    record.insert("activity_name".into(), json!(event.event));
    record.insert("category_uid".into(), json!(6));
    record.insert("category_name".into(), json!("Application Activity"));
    record.insert("class_uid".into(), json!(6003));
    record.insert("class_name".into(), json!("API Activity"));
    record.insert("type_uid".into(), json!(600_399));
    record.insert("type_name".into(), json!("API Activity: Other"));
    record.insert("time".into(), json!(epoch_millis(&event.time)));
    record.insert("severity_id".into(), json!(severity_id));
    record.insert("severity".into(), json!(severity));
    record.insert("status_id".into(), json!(status_id));
    record.insert("status".into(), json!(status));
    if !event.reason.is_empty() {
        record.insert("status_detail".into(), json!(event.reason));
    }
    if let Some((action_id, action, disposition_id, disposition)) = security_control {
        record.insert("action_id".into(), json!(action_id));
        record.insert("action".into(), json!(action));
        record.insert("disposition_id".into(), json!(disposition_id));
        record.insert("disposition".into(), json!(disposition));
    }
    record.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "product": {
                "name": PRODUCT,
                "vendor_name": PRODUCT,
                "version": env!("CARGO_PKG_VERSION"),
            },
            "profiles": profiles,
            "log_name": "audit",
            "sequence": seq,
            "original_time": event.time,
        }),
    );
    let mut api = Map::new();
    api.insert("operation".into(), json!(event.event));
    if !event.request_id.is_empty() {
        api.insert("request".into(), json!({ "uid": event.request_id }));
    }
    if !event.gateway.is_empty() {
        api.insert("service".into(), json!({ "name": event.gateway }));
    }
    record.insert("api".into(), Value::Object(api));
    if let Some(user) = &event.user {
        record.insert("actor".into(), json!({ "user": { "name": user } }));
    }
    if let Some(ip) = &event.source_ip {
        record.insert("src_endpoint".into(), json!({ "ip": ip }));
    }
    let mut unmapped = Map::new();
    unmapped.insert("event".into(), json!(event.event));
    unmapped.insert("outcome".into(), json!(event.outcome));
    if !event.details.is_empty() {
        unmapped.insert("details".into(), Value::Object(event.details.clone()));
    }
    unmapped.insert("prev_hash".into(), json!(prev_hash));
    record.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(record)
}
