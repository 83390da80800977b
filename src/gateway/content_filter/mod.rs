//! The content guard applied to OpenAI shapes: which texts of a request and of an answer are
//! scanned, how redactions are written back, and how a streamed answer is cut.
//!
//! - [`prompt`]: the texts of a request (`scanPrompts`).
//! - [`answer`]: the texts of a whole answer and of a streamed one (`scanResponses`).
//!
//! The pattern matching itself lives in [`crate::guard`]; this module only finds the texts.

mod answer;
mod prompt;

use std::sync::Arc;

use crate::guard::{FailReason, Finding, PatternSet};

pub use answer::{scan_response, StreamGuard, StreamVerdict};
pub use prompt::scan_request;

/// The guard as one gateway applies it.
#[derive(Debug, Clone)]
pub struct GuardPolicy {
    pub set: Arc<PatternSet>,
    pub scan_prompts: bool,
    pub scan_responses: bool,
    /// Bounds how many large prompts are scanned at once on the blocking pool.
    pub pool: Arc<tokio::sync::Semaphore>,
}

/// Why text was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A `block` rule matched.
    Violation(Finding),
    /// The scan could not finish within its limits: fail closed.
    Failed { rule: String, reason: FailReason },
    /// A `redact` rule matched text that cannot be rewritten (the text log-probability tokens
    /// spell): the text is cut instead.
    Unredactable(Finding),
}

impl Refusal {
    pub fn rule(&self) -> &str {
        match self {
            Refusal::Violation(finding) | Refusal::Unredactable(finding) => &finding.rule,
            Refusal::Failed { rule, .. } => rule,
        }
    }

    /// Low-cardinality label: the action for violations, the failure kind otherwise.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Violation(_) => "block",
            Refusal::Unredactable(_) => "cut_unredactable",
            Refusal::Failed {
                reason: FailReason::BacktrackLimit,
                ..
            } => "fail_closed_backtrack_limit",
            Refusal::Failed {
                reason: FailReason::ScanBudgetExceeded,
                ..
            } => "fail_closed_scan_budget",
            Refusal::Failed {
                reason: FailReason::HoldbackOverflow,
                ..
            } => "fail_closed_holdback_overflow",
        }
    }
}

/// Outcome of scanning a set of texts.
#[derive(Debug, Default)]
pub struct Scan {
    /// Audit and redact findings that let the text through.
    pub findings: Vec<Finding>,
    pub refusal: Option<Refusal>,
}
