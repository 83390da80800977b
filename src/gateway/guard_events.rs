//! Reporting what the content guard found: a metric and an audit event per finding or refusal.
//! Events name the rule, the action and the audit level, never the matched text.

use std::sync::Arc;

use super::content_filter::Refusal;
use crate::guard::{Action, AuditLevel, Finding};
use crate::telemetry::audit::{AuditEvent, AuditLog};
use crate::telemetry::log_rate::LogRate;
use crate::telemetry::Metrics;

/// Lines per second about refusals.
static REFUSAL_LOG: LogRate = LogRate::new(5);

/// Where in the exchange the guard looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Prompt,
    Response,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Prompt => "prompt",
            Stage::Response => "response",
        }
    }
}

/// Owned so a streaming relay can keep it after the handler returned.
#[derive(Clone)]
pub struct GuardReporter {
    pub gateway: String,
    pub request_id: String,
    /// Who sent the request and from where, so a finding can be tied to a caller.
    pub user: Option<String>,
    pub client_ip: String,
    pub metrics: Arc<Metrics>,
    pub audit: AuditLog,
}

impl GuardReporter {
    fn attributed(&self, mut event: AuditEvent) -> AuditEvent {
        event.user.clone_from(&self.user);
        event.source_ip = Some(self.client_ip.clone());
        event
    }

    pub fn findings(&self, stage: Stage, findings: &[Finding]) {
        for finding in findings {
            let action = action_label(finding.action);
            self.metrics
                .guard_event(&self.gateway, stage.as_str(), &finding.rule, action);
            let event = AuditEvent::new(
                "guard_finding",
                &self.request_id,
                &self.gateway,
                "allowed",
                format!("rule {}", finding.rule),
            )
            .detail("stage", stage.as_str())
            .detail("rule", finding.rule.clone())
            .detail("action", action)
            .detail("audit_level", level_label(finding.audit_level));
            self.audit.record(self.attributed(event));
        }
    }

    pub fn refusal(&self, stage: Stage, refusal: &Refusal) {
        let action = refusal.label();
        self.metrics
            .guard_event(&self.gateway, stage.as_str(), refusal.rule(), action);
        let mut event = AuditEvent::new(
            "guard_violation",
            &self.request_id,
            &self.gateway,
            "blocked",
            format!("rule {}", refusal.rule()),
        )
        .detail("stage", stage.as_str())
        .detail("rule", refusal.rule().to_string())
        .detail("action", action);
        if let Refusal::Violation(finding) | Refusal::Unredactable(finding) = refusal {
            event = event.detail("audit_level", level_label(finding.audit_level));
        }
        self.audit.record(self.attributed(event));
        // A client decides how many refusals there are: the log gets at most a few lines a
        // second; the metric and the audit record above count every one.
        if let Some(suppressed) = REFUSAL_LOG.admit() {
            tracing::warn!(request_id = %self.request_id, gateway = %self.gateway, stage = stage.as_str(), rule = refusal.rule(), action, suppressed_since_last = suppressed, "content guard refused");
        }
    }
}

fn action_label(action: Action) -> &'static str {
    match action {
        Action::Block => "block",
        Action::Redact => "redact",
        Action::Audit => "audit",
        Action::Allow => "allow",
    }
}

fn level_label(level: AuditLevel) -> &'static str {
    match level {
        AuditLevel::Low => "low",
        AuditLevel::Medium => "medium",
        AuditLevel::High => "high",
        AuditLevel::Critical => "critical",
    }
}
