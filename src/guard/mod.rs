//! Content guard: tenant-configured block / allow patterns and built-in
//! detectors, applied to whole request bodies and to streamed responses.
//!
//! # Rules
//!
//! A [`PatternSet`] is compiled once per configuration from `blockPatterns`
//! and `allowPatterns` ([`RuleSpec`]s). Each rule is either a user regex or a
//! built-in detector ([`DETECTORS`]: `credit_card`, `us_ssn`, `iban`,
//! `email`, `private_key`, `secret_key`). A detector is a linear-time `regex`
//! candidate pattern plus an optional validator (Luhn, mod-97, SSN ranges).
//!
//! ## Which engine runs a user pattern
//!
//! * Patterns the linear-time `regex` crate accepts (no backreferences, no
//!   look-around) run on `regex` — exactly the engine fancy-regex would
//!   delegate them to. They cannot backtrack catastrophically, so the static
//!   nested-quantifier check is **not** applied to them: `(a+)+$` is accepted
//!   and runs in linear time.
//! * Patterns that need fancy features run on `fancy_regex` with an explicit
//!   `backtrack_limit` ([`GuardLimits::backtrack_limit`]). For them a
//!   conservative static check rejects (with a position) any quantified group
//!   (max repetitions > 1) whose body contains an unbounded quantifier
//!   (`(a+)+`, `(.*)*`, `(\w+\s?)+`), and any unbounded repetition of a group
//!   whose alternation branches may start with the same character (`(a|a)*`,
//!   `(a|ab)*`, `(\d|x)*`). Fancy patterns must also have a bounded match
//!   window (match length + look-ahead, and look-behind) of at most
//!   `max_holdback_chars` bytes, because the streaming scanner decides them
//!   with a fixed window (see below). At run time a
//!   `BacktrackLimitExceeded` (or stack overflow) is a fail-closed
//!   [`FailReason::BacktrackLimit`], never a pass.
//!
//! Patterns longer than [`MAX_PATTERN_CHARS`] characters, patterns that match
//! the empty string (linear patterns) and patterns whose compiled form exceeds
//! [`MAX_COMPILED_BYTES`] are rejected.
//!
//! ## Whole-text semantics
//!
//! For every rule independently, matches are the leftmost-first,
//! non-overlapping sequence obtained by searching from offset 0, continuing
//! at the end of each match (empty matches are skipped by one character and
//! never reported; detector candidates failing validation are dropped and the
//! search continues after the candidate). A block-list match lying entirely
//! inside some allow-list match is ignored. Of the remaining block-list
//! matches: any `block` match is a violation (the reported one is the first
//! by `(start, rule index)`); `redact` matches are replaced by
//! `[REDACTED]` (overlapping spans merged into one marker); `audit` matches
//! only produce findings. `findings` in [`ScanOutcome::Clean`] holds the
//! audit **and** redact findings.
//!
//! Every pass charges the bytes it scans to the request's [`ScanBudget`];
//! running out is a fail-closed [`FailReason::ScanBudgetExceeded`].
//!
//! ## Prompts: normalised views, seams
//!
//! [`PatternSet::scan`] and [`StreamScanner`] match raw text (answers). The
//! prompt scan, [`PatternSet::scan_prompt`], matches each rule against its
//! *view* of a request's texts (`normalize`: invisible characters removed,
//! NFKC, combining marks removed unless the pattern names one, the ASCII
//! confusables skeleton of `confusables` for detectors and, with
//! `matchConfusables`, user patterns), joins the texts with line breaks and
//! also matches across the seams of running text (`prompt`), then maps every
//! match back to original offsets, applying the whole-text semantics above to
//! the mapped matches. A pure-ASCII request is every rule's view as it is.
//! Answers stay raw because the streaming proof below is over the raw text and
//! normalisation is not chunk-local (a mark in the next chunk changes the
//! view of the character before it); see docs/guard.md.
//!
//! ## Prefilter and allow skipping (whole text)
//!
//! When every rule is linear and there are at least three block-list rules,
//! the set also holds one `regex::RegexSet` of the block-list patterns,
//! built from the same pattern strings with the same syntax options as each
//! rule's own regex. [`PatternSet::scan`] first runs `is_match` on the text
//! (if the budget can pay the `text.len()` the engine pass would charge).
//! Any match the per-rule loop could report (`find_at(text, pos)` returns a
//! span of `text` matching the rule, assertions evaluated on `text`) is a
//! match of the set in `text`; so when the set finds none, no block-list
//! rule has a match, the outcome is `Clean` with no findings and no
//! redaction, and charging `text.len()` is exactly what the engine would
//! have charged. Otherwise the normal engine runs (the set only costs time).
//! Allow rules only filter block-list matches, so at end of input, when all
//! rules are linear (no allow rule can fail) and no block-list match awaits
//! its allow decision, the allow rules are not run at all; this also applies
//! to [`StreamScanner::finish`], where release at end of input does not look
//! at frontiers. (With fewer block-list rules the per-rule regexes, each with
//! its own literal prefilter, are as fast as the set, so it is not built.)
//!
//! # Streaming: the holdback rule and why it is exact
//!
//! [`StreamScanner`] keeps the not-yet-released text and, after every chunk,
//! re-runs the very same per-rule search loop on it, but only accepts what is
//! *decided*. Call the text received so far `T'` (length `n`) and any
//! continuation of it `T`.
//!
//! **Decided start positions.** A match attempt starting at `s` is *decided*
//! in `T'` when its result (no match, or which match wins) is the same for
//! every continuation `T`:
//!
//! * linear rules: we compute `Pref`, the prefix closure of the rule's
//!   language with all assertions (`\b`, `^`, `$`) relaxed to "true", compile
//!   it *reversed* into a lazy DFA (`MatchKind::All`), and run it backwards
//!   from `n`. Every `s` with `T'[s..n] ∉ Pref` is decided: no continuation
//!   can yield a match from `s` that ends after `n`, and every match from `s`
//!   that ends before `n` evaluates its assertions on bytes already present,
//!   so the set of successful paths — hence the leftmost-first winner — is
//!   fixed. (`ε ∈ Pref`, so a match ending exactly at `n`, whose `$`/`\b`
//!   needs the next byte, keeps `s` undecided.) Relaxing assertions only
//!   enlarges `Pref`, so the test is conservative.
//! * fancy rules: their match window `W` (max bytes examined forward from the
//!   start, including look-ahead and one extra character for end assertions)
//!   is bounded at compile time, so `s` is decided iff `n - s >= W`.
//!
//! **Rule frontier.** For each rule we keep the position `f` where its
//! whole-text search loop currently stands. Let `a` be the first undecided
//! start `>= f`. `find_at(T', f)` returning a match starting before `a` is
//! also `find_at(T, f)`'s result, because all starts in `[f, s]` are decided
//! (leftmost-first picks the first start with a match, and each start's
//! winner is fixed). We record it and continue at its end. Otherwise no match
//! starts in `[f, a)` for any continuation and the frontier moves to `a`.
//! Hence the sequence of matches found by streaming is, at every moment, a
//! prefix of the whole-text sequence, and at `finish` (end of input, all
//! starts decided) it is the whole-text sequence.
//!
//! **Allow / ordering.** A block match `m` is resolved once every allow rule's
//! frontier is `> m.start` (later allow matches start there, so cannot
//! contain `m`). A resolved non-allowed `block` match is reported once no
//! block-action rule can still produce a match ordered before it (frontier
//! `> m.start`, or `== m.start` with a larger rule index) and no unresolved
//! block-action match precedes it. So the reported [`Finding`] equals the
//! whole-text one.
//!
//! **Release.** Output is released up to
//! `P = min(frontiers of block/redact rules, starts of unresolved or pending
//! block/redact matches)`, moved back to the start of a merged redaction span
//! if `P` falls strictly inside one. Future matches of those rules start at
//! or after their frontier `>= P`, so no byte before `P` can become part of a
//! future block or redact match, and no merged redaction span crosses `P`.
//! The concatenation of released text is therefore always a prefix of the
//! whole-text (redacted) output, and no byte of a blocking match is ever
//! released. Text that cannot be part of a match is released at once.
//!
//! **Bound.** The retained window (from the smallest frontier / pending start)
//! must stay within `max_holdback_chars`; when deciding would need more, the
//! scanner fails closed with [`FailReason::HoldbackOverflow`]. For bounded
//! patterns the window is at most [`PatternSet::holdback_chars`] (max match
//! length + 1 char), which never exceeds the cap.
//!
//! **Theorem.** If neither run ends in `Failed`, streaming returns the same
//! verdict and the same finding as [`PatternSet::scan`] on the concatenated
//! text, the same audit/redact findings, and the released text concatenates
//! to the whole-text output (redacted when a redact rule fired). `Failed`
//! outcomes may differ (streaming re-scans the held window, so it spends more
//! budget, can overflow the holdback, and may stop at a violation before
//! reaching a region that would exhaust the backtrack limit).
//!
//! Streaming works on `char` boundaries; [`StreamScanner::push_bytes`] keeps
//! an incomplete UTF-8 tail between calls (invalid bytes become U+FFFD).

mod compile;
mod confusables;
mod detectors;
mod engine;
mod hir_tools;
mod normalize;
mod prompt;
#[cfg(test)]
mod prompt_tests;
mod static_check;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use compile::PatternSet;
pub use detectors::DETECTORS;
pub use engine::StreamScanner;
pub use prompt::{Prompt, PromptOutcome, TextKind};

/// Maximum length of a tenant pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 1_000;
/// Size limit for one compiled pattern (regex `size_limit`, fancy-regex
/// `delegate_size_limit`, NFA size of the streaming analysis automaton).
pub const MAX_COMPILED_BYTES: usize = 2 << 20;
/// Text that replaces a redacted match.
pub const REDACTED: &str = "[REDACTED]";

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Refuse the request / cut the stream.
    Block,
    /// Replace the match with `[REDACTED]` and go on.
    Redact,
    /// Let it through, record a finding.
    Audit,
    /// Only meaningful in `allowPatterns` (the action of allow rules is
    /// ignored; `allow` in `blockPatterns` is a compile error).
    Allow,
}

/// Severity carried into findings (default `medium`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AuditLevel {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

/// One configured rule: exactly one of `regex` / `detector`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub detector: Option<String>,
    pub action: Action,
    #[serde(default)]
    pub audit_level: Option<AuditLevel>,
}

impl RuleSpec {
    /// A regex rule.
    pub fn from_regex(pattern: impl Into<String>, action: Action) -> Self {
        RuleSpec {
            name: None,
            regex: Some(pattern.into()),
            detector: None,
            action,
            audit_level: None,
        }
    }

    /// A built-in detector rule.
    pub fn from_detector(detector: impl Into<String>, action: Action) -> Self {
        RuleSpec {
            name: None,
            regex: None,
            detector: Some(detector.into()),
            action,
            audit_level: None,
        }
    }

    /// Sets the rule name reported in findings.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the audit level.
    pub fn level(mut self, level: AuditLevel) -> Self {
        self.audit_level = Some(level);
        self
    }
}

/// Resource limits, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct GuardLimits {
    /// fancy-regex backtrack limit per search (default 100 000).
    pub backtrack_limit: usize,
    /// Matching work allowed per request, in bytes scanned (default 32 MiB).
    pub max_scan_bytes_per_request: usize,
    /// Hard cap of the streaming holdback window, in chars (default 512).
    pub max_holdback_chars: usize,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            backtrack_limit: 100_000,
            max_scan_bytes_per_request: 32 << 20,
            max_holdback_chars: 512,
        }
    }
}

/// A rule that failed to compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{list}[{index}] {pattern:?}: {message}{}", match .position { Some(p) => format!(" (at position {p})"), None => String::new() })]
pub struct PatternError {
    pub index: usize,
    /// `"blockPatterns"` or `"allowPatterns"`.
    pub list: &'static str,
    /// The pattern (or detector name) as configured.
    pub pattern: String,
    /// Byte offset in the pattern, when known.
    pub position: Option<usize>,
    pub message: String,
}

/// Remaining matching work (bytes scanned) for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanBudget {
    remaining: usize,
}

impl ScanBudget {
    pub fn new(limits: GuardLimits) -> Self {
        ScanBudget {
            remaining: limits.max_scan_bytes_per_request,
        }
    }

    /// Bytes of matching work still allowed.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Charges `bytes`; false (and nothing charged) when that would exceed
    /// the budget.
    pub(crate) fn charge(&mut self, bytes: usize) -> bool {
        match self.remaining.checked_sub(bytes) {
            Some(r) => {
                self.remaining = r;
                true
            }
            None => false,
        }
    }
}

/// One rule match that counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Rule name, or `blockPatterns[i]`, or the detector name.
    pub rule: String,
    pub action: Action,
    pub audit_level: AuditLevel,
    /// Byte offsets in the original (unredacted) text.
    pub start: usize,
    pub end: usize,
}

/// Why a scan failed closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FailReason {
    /// fancy-regex hit its backtrack limit (or its stack limit).
    BacktrackLimit,
    /// The request's [`ScanBudget`] is exhausted.
    ScanBudgetExceeded,
    /// Streaming would need a window larger than `max_holdback_chars`.
    HoldbackOverflow,
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailReason::BacktrackLimit => "backtrack limit exceeded",
            FailReason::ScanBudgetExceeded => "scan budget exceeded",
            FailReason::HoldbackOverflow => "holdback window overflow",
        })
    }
}

/// Result of [`PatternSet::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    Clean {
        /// Audit and redact findings, ordered by (start, end, rule).
        findings: Vec<Finding>,
        /// `Some` when a redact rule fired: the text with `[REDACTED]`.
        redacted: Option<String>,
    },
    Violation {
        finding: Finding,
    },
    /// Fail closed. `rule` is the rule being evaluated (`"*"` for the budget).
    Failed {
        rule: String,
        reason: FailReason,
    },
}

/// Result of one streaming step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStep {
    /// Text safe to send now (possibly empty), redactions applied.
    Release(String),
    /// Stop the stream; nothing of the match was released.
    Violation(Finding),
    /// Fail closed.
    Failed { rule: String, reason: FailReason },
}
