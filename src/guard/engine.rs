//! The scan engine shared by whole-text scanning and streaming (see the
//! module documentation of `guard` for the rule and its proof).

use std::sync::Arc;

use regex_automata::{hybrid::dfa::Cache, Anchored, Input};

use super::compile::{Matcher, PatternSet, Rule};
use super::{Action, FailReason, Finding, ScanBudget, ScanOutcome, StreamStep, REDACTED};

/// Offsets in this module are global byte offsets into the whole text unless
/// named `local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hit {
    rule: usize,
    start: usize,
    end: usize,
}

type Fail = (String, FailReason);

/// Frontier value of a rule whose search has finished (end of input).
const DONE: usize = usize::MAX;

struct Engine {
    /// Left context + text not yet decided / released.
    buf: String,
    /// Global offset of `buf[0]`.
    base: usize,
    /// Output emitted up to this global offset.
    released: usize,
    /// Per rule: where its whole-text search loop stands.
    frontier: Vec<usize>,
    /// Block-list hits whose allow status is not decided yet.
    pending: Vec<Hit>,
    /// Non-allowed `block` hits awaiting ordering.
    candidates: Vec<Hit>,
    allow_spans: Vec<(usize, usize)>,
    /// Confirmed redact spans not yet emitted.
    redactions: Vec<(usize, usize)>,
    findings: Vec<Finding>,
    redacted_any: bool,
}

/// The finding of rule `rule` matching `start..end` (shared with the prompt scan).
pub(super) fn finding(set: &PatternSet, rule: usize, start: usize, end: usize) -> Finding {
    let r = &set.rules[rule];
    Finding {
        rule: r.label.clone(),
        action: r.action,
        audit_level: r.level,
        start,
        end,
    }
}

fn next_boundary(hay: &str, local: usize) -> usize {
    match hay[local..].chars().next() {
        Some(c) => local + c.len_utf8(),
        None => local + 1,
    }
}

/// First start position `>= from` (local) whose attempt is not decided by
/// the text in `hay` (see module docs). Returns `hay.len()` at most.
fn first_alive(rule: &Rule, hay: &str, from: usize, cache: Option<&mut Cache>) -> usize {
    let n = hay.len();
    if from >= n {
        return n;
    }
    match (&rule.matcher, cache) {
        (Matcher::Fancy { window, .. }, _) => {
            // Decided iff n - s >= window.
            let mut p = (n + 1).saturating_sub(*window).max(from);
            while p < n && !hay.is_char_boundary(p) {
                p += 1;
            }
            p.min(n)
        }
        (Matcher::Linear { pref, .. }, Some(cache)) => {
            let bytes = hay.as_bytes();
            let input = Input::new(hay).range(from..n).anchored(Anchored::Yes);
            let Ok(mut sid) = pref.start_state_reverse(cache, &input) else {
                return from;
            };
            let mut best = n;
            let mut i = n;
            while i > from {
                i -= 1;
                match pref.next_state(cache, sid, bytes[i]) {
                    Ok(s) => sid = s,
                    Err(_) => return from,
                }
                // Matches are reported one byte late: this is about i + 1.
                if sid.is_match() && hay.is_char_boundary(i + 1) {
                    best = i + 1;
                }
                if sid.is_dead() {
                    return best;
                }
            }
            let next = if from > 0 {
                pref.next_state(cache, sid, bytes[from - 1])
            } else {
                pref.next_eoi_state(cache, sid)
            };
            match next {
                Ok(s) if !s.is_match() => best,
                _ => from,
            }
        }
        // No cache: cannot decide anything early (conservative).
        (Matcher::Linear { .. }, None) => from,
    }
}

/// Advances one rule's search loop over `hay` as far as it is decided.
fn advance(
    rule: &Rule,
    hay: &str,
    base: usize,
    frontier: &mut usize,
    eof: bool,
    mut cache: Option<&mut Cache>,
) -> Result<Vec<(usize, usize)>, FailReason> {
    let mut out = Vec::new();
    if *frontier == DONE {
        return Ok(out);
    }
    let n = hay.len();
    let mut lf = frontier.saturating_sub(base);
    let mut alive: Option<usize> = None;
    loop {
        if lf > n {
            break;
        }
        let dec = if eof {
            n + 1
        } else {
            match alive {
                Some(a) if a >= lf => a,
                _ => {
                    let a = first_alive(rule, hay, lf, cache.as_deref_mut());
                    alive = Some(a);
                    a
                }
            }
        };
        if lf >= dec {
            break;
        }
        match rule
            .find_at(hay, lf)
            .map_err(|_| FailReason::BacktrackLimit)?
        {
            Some((s, e)) if s < dec => {
                if e > s {
                    let len = match rule.validator {
                        Some(v) => v(&hay[s..e]),
                        None => Some(e - s),
                    };
                    if let Some(len) = len.filter(|&l| l > 0 && l <= e - s) {
                        out.push((base + s, base + s + len));
                    }
                    lf = e;
                } else {
                    lf = next_boundary(hay, s);
                }
            }
            _ => {
                lf = dec;
                break;
            }
        }
    }
    *frontier = if eof || lf > n { DONE } else { base + lf };
    Ok(out)
}

/// Every match of one rule in a whole text (the same leftmost-first loop as [`scan_whole`],
/// validators applied), for the prompt scan, which resolves allow-list containment itself.
pub(crate) fn rule_hits(rule: &Rule, hay: &str) -> Result<Vec<(usize, usize)>, FailReason> {
    let mut frontier = 0;
    advance(rule, hay, 0, &mut frontier, true, None)
}

pub(crate) fn merge(spans: &mut [(usize, usize)]) -> Vec<(usize, usize)> {
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for &(s, e) in spans.iter() {
        match merged.last_mut() {
            Some(last) if s < last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

impl Engine {
    fn new(set: &PatternSet, text: String) -> Self {
        Engine {
            buf: text,
            base: 0,
            released: 0,
            frontier: vec![0; set.rules.len()],
            pending: Vec::new(),
            candidates: Vec::new(),
            allow_spans: Vec::new(),
            redactions: Vec::new(),
            findings: Vec::new(),
            redacted_any: false,
        }
    }

    /// One pass over the buffer: advance every rule, resolve hits. Returns a
    /// violation once it is certain to be the whole-text one.
    fn pass(
        &mut self,
        set: &PatternSet,
        budget: &mut ScanBudget,
        caches: &mut [Option<Cache>],
        eof: bool,
    ) -> Result<Option<Finding>, Fail> {
        let end = self.base + self.buf.len();
        let lo = self
            .frontier
            .iter()
            .copied()
            .min()
            .unwrap_or(end)
            .clamp(self.base, end);
        if !budget.charge(end - lo) {
            return Err(("*".into(), FailReason::ScanBudgetExceeded));
        }
        for (ri, rule) in set.rules.iter().enumerate() {
            // Block-list rules come first, so `pending` is complete here.
            if eof && rule.is_allow() && self.pending.is_empty() && set.all_linear {
                // No block-list hit is left to check for containment, so the
                // allow rules' matches cannot matter (and, being linear,
                // they cannot fail).
                self.frontier[ri] = DONE;
                continue;
            }
            let cache = caches.get_mut(ri).and_then(Option::as_mut);
            let hits = advance(
                rule,
                &self.buf,
                self.base,
                &mut self.frontier[ri],
                eof,
                cache,
            )
            .map_err(|r| (rule.label.clone(), r))?;
            if rule.is_allow() {
                self.allow_spans.extend(hits);
            } else {
                self.pending
                    .extend(hits.into_iter().map(|(start, end)| Hit {
                        rule: ri,
                        start,
                        end,
                    }));
            }
        }
        // Resolve allow containment.
        let allow_front = self.frontier[set.n_block..]
            .iter()
            .copied()
            .min()
            .unwrap_or(DONE);
        let mut still = Vec::new();
        for h in std::mem::take(&mut self.pending) {
            if h.start >= allow_front {
                still.push(h);
                continue;
            }
            if self
                .allow_spans
                .iter()
                .any(|&(a, b)| a <= h.start && h.end <= b)
            {
                continue;
            }
            match set.rules[h.rule].action {
                Action::Block => self.candidates.push(h),
                Action::Redact => {
                    self.redactions.push((h.start, h.end));
                    self.redacted_any = true;
                    self.findings.push(finding(set, h.rule, h.start, h.end));
                }
                Action::Audit | Action::Allow => {
                    self.findings.push(finding(set, h.rule, h.start, h.end))
                }
            }
        }
        self.pending = still;
        // Allow spans that can no longer contain a future block hit.
        let block_lo = self.frontier[..set.n_block]
            .iter()
            .chain(self.pending.iter().map(|h| &h.start))
            .copied()
            .min()
            .unwrap_or(DONE);
        self.allow_spans.retain(|&(_, b)| b > block_lo);
        // The first violation, once nothing can precede it.
        if let Some(c) = self.candidates.iter().min_by_key(|h| (h.start, h.rule)) {
            let key = (c.start, c.rule);
            let blocked_by_frontier = (0..set.n_block)
                .any(|j| set.rules[j].action == Action::Block && (self.frontier[j], j) < key);
            let blocked_by_pending = self
                .pending
                .iter()
                .any(|p| set.rules[p.rule].action == Action::Block && (p.start, p.rule) < key);
            if eof || !(blocked_by_frontier || blocked_by_pending) {
                return Ok(Some(finding(set, c.rule, c.start, c.end)));
            }
        }
        Ok(None)
    }

    /// Emits the decided output and trims the buffer.
    fn release(&mut self, set: &PatternSet, eof: bool) -> Result<String, Fail> {
        let end = self.base + self.buf.len();
        let mut p0 = end;
        if !eof {
            for j in 0..set.n_block {
                if matches!(set.rules[j].action, Action::Block | Action::Redact) {
                    p0 = p0.min(self.frontier[j]);
                }
            }
            for h in self.pending.iter().chain(self.candidates.iter()) {
                if matches!(set.rules[h.rule].action, Action::Block | Action::Redact) {
                    p0 = p0.min(h.start);
                }
            }
        }
        p0 = p0.clamp(self.released, end);
        let merged = merge(&mut self.redactions);
        let mut p = p0;
        for &(s, e) in &merged {
            if s < p0 && p0 < e {
                p = s;
            }
        }
        let mut out = String::new();
        let mut cur = self.released;
        for &(s, e) in merged.iter().filter(|&&(_, e)| e <= p) {
            out.push_str(&self.buf[cur - self.base..s - self.base]);
            out.push_str(REDACTED);
            cur = e;
        }
        out.push_str(&self.buf[cur - self.base..p - self.base]);
        self.redactions.retain(|&(_, e)| e > p);
        self.released = p;
        if !eof {
            // Text still needed for matching starts here.
            let mut keep = p;
            let mut culprit: Option<usize> = None;
            for (ri, &f) in self.frontier.iter().enumerate() {
                if f < keep {
                    keep = f;
                    culprit = Some(ri);
                }
            }
            for h in self.pending.iter().chain(self.candidates.iter()) {
                if h.start < keep {
                    keep = h.start;
                    culprit = Some(h.rule);
                }
            }
            let keep = keep.max(self.base);
            let held = self.buf[keep - self.base..].chars().count();
            if held > set.limits.max_holdback_chars {
                let rule = culprit.map_or_else(|| "*".to_string(), |r| set.rules[r].label.clone());
                return Err((rule, FailReason::HoldbackOverflow));
            }
            let mut cut = keep.saturating_sub(set.context_bytes).max(self.base) - self.base;
            while !self.buf.is_char_boundary(cut) {
                cut -= 1;
            }
            self.buf.drain(..cut);
            self.base += cut;
        }
        Ok(out)
    }

    fn sorted_findings(&self) -> Vec<Finding> {
        let mut f = self.findings.clone();
        f.sort_by(|a, b| (a.start, a.end, &a.rule).cmp(&(b.start, b.end, &b.rule)));
        f
    }
}

pub(crate) fn scan_whole(set: &PatternSet, text: &str, budget: &mut ScanBudget) -> ScanOutcome {
    if let Some(pf) = &set.prefilter {
        // The engine's single pass would charge `text.len()` (all frontiers
        // start at 0); when that is affordable, decide the common no-match
        // case with one set search.
        if budget.remaining() >= text.len() && !pf.is_match(text) && budget.charge(text.len()) {
            return ScanOutcome::Clean {
                findings: Vec::new(),
                redacted: None,
            };
        }
    }
    let mut engine = Engine::new(set, text.to_owned());
    match engine.pass(set, budget, &mut [], true) {
        Err((rule, reason)) => ScanOutcome::Failed { rule, reason },
        Ok(Some(finding)) => ScanOutcome::Violation { finding },
        Ok(None) => match engine.release(set, true) {
            Err((rule, reason)) => ScanOutcome::Failed { rule, reason },
            Ok(out) => ScanOutcome::Clean {
                findings: engine.sorted_findings(),
                redacted: engine.redacted_any.then_some(out),
            },
        },
    }
}

/// Incremental scanner for one streamed response.
pub struct StreamScanner {
    set: Arc<PatternSet>,
    budget: ScanBudget,
    engine: Engine,
    caches: Vec<Option<Cache>>,
    utf8_tail: Vec<u8>,
    /// Set once a terminal step (violation / failure / finish) happened.
    terminal: Option<StreamStep>,
}

impl std::fmt::Debug for StreamScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamScanner")
            .field("base", &self.engine.base)
            .field("held", &self.engine.buf.len())
            .field("terminal", &self.terminal)
            .finish()
    }
}

impl StreamScanner {
    pub fn new(set: Arc<PatternSet>, budget: ScanBudget) -> Self {
        let caches = set
            .rules
            .iter()
            .map(|r| match &r.matcher {
                Matcher::Linear { pref, .. } => Some(Cache::new(pref)),
                Matcher::Fancy { .. } => None,
            })
            .collect();
        let engine = Engine::new(&set, String::new());
        StreamScanner {
            set,
            budget,
            engine,
            caches,
            utf8_tail: Vec::new(),
            terminal: None,
        }
    }

    /// Feeds a chunk; returns what may be sent now.
    pub fn push(&mut self, chunk: &str) -> StreamStep {
        if let Some(t) = &self.terminal {
            return t.clone();
        }
        if chunk.is_empty() {
            return StreamStep::Release(String::new());
        }
        self.engine.buf.push_str(chunk);
        self.step(false)
    }

    /// Feeds raw bytes; an incomplete UTF-8 sequence at the end is kept for
    /// the next call, invalid bytes become U+FFFD.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> StreamStep {
        let mut data = std::mem::take(&mut self.utf8_tail);
        data.extend_from_slice(bytes);
        let mut text = String::new();
        let mut rest: &[u8] = &data;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    text.push_str(s);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(len) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[len..];
                        }
                        None => {
                            self.utf8_tail = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        self.push(&text)
    }

    /// End of stream: releases the rest (or reports the violation).
    pub fn finish(&mut self) -> StreamStep {
        if let Some(t) = &self.terminal {
            return t.clone();
        }
        if !self.utf8_tail.is_empty() {
            self.utf8_tail.clear();
            self.engine.buf.push(char::REPLACEMENT_CHARACTER);
        }
        let step = self.step(true);
        self.terminal = Some(match &step {
            StreamStep::Release(_) => StreamStep::Release(String::new()),
            other => other.clone(),
        });
        step
    }

    /// Audit and redact findings confirmed so far (discovery order).
    pub fn findings(&self) -> &[Finding] {
        &self.engine.findings
    }

    /// Matching budget left.
    pub fn budget(&self) -> &ScanBudget {
        &self.budget
    }

    /// Chars currently held back (not yet released).
    pub fn held_chars(&self) -> usize {
        let local = self.engine.released.saturating_sub(self.engine.base);
        self.engine
            .buf
            .get(local..)
            .map_or(0, |s| s.chars().count())
    }

    fn step(&mut self, eof: bool) -> StreamStep {
        let set = Arc::clone(&self.set);
        let result = self
            .engine
            .pass(&set, &mut self.budget, &mut self.caches, eof)
            .and_then(|v| match v {
                Some(f) => Ok(Err(f)),
                None => self.engine.release(&set, eof).map(Ok),
            });
        let step = match result {
            Ok(Ok(text)) => return StreamStep::Release(text),
            Ok(Err(finding)) => StreamStep::Violation(finding),
            Err((rule, reason)) => StreamStep::Failed { rule, reason },
        };
        self.terminal = Some(step.clone());
        step
    }
}
