//! Scanning the texts of one request as one prompt: each rule matches its normalised view of
//! the texts ([`super::normalize`]), matches may run across the seam between two pieces of
//! running text, and redactions are written back into the original texts.
//!
//! # The scanned text
//!
//! The request's texts ([`Prompt::push`], in the order a model reads them) are joined into one
//! text with a line break between each two; every finding's offsets are byte offsets in that
//! joined original text. Every rule matches, in one pass per distinct view, the joined text of
//! its view; a text that is pure ASCII (or unchanged by the fold) is its own view, so a
//! pure-ASCII request is scanned once, as it is, with every rule.
//!
//! # Seams
//!
//! The line break keeps a match inside one text (a pattern that matches line breaks may still
//! span two). Running text ([`TextKind::Prose`]: message contents, content parts, refusals) is
//! also scanned *across* seams: consecutive prose texts (skipping other fields and empty texts)
//! whose seam has a non-whitespace character on both sides are joined with nothing, so
//! `"confi"` + `"dential"`, `"bob@"` + `"example.com"` and `"4111-1111-"` + `"1111-1111"` are
//! found. Where either side is whitespace the texts already separate words, and joining them
//! would only let a phrase pattern span two messages, so the seam stays a line break. Joined
//! seams are scanned in windows reaching `reach` characters to each side (the longest match of
//! the view's rules plus their look-behind, at most `maxHoldbackChars`), and only matches that
//! cross a joined seam count from a window (the others are the main pass's). Inside a window
//! the rest of the text is on the far side of a line break, as in the main pass.
//!
//! Fields (names, keys, arguments, schemas, stop words) are never joined: a tool schema whose
//! properties are `address` and `name` would otherwise read `addressname`.
//!
//! # Verdict
//!
//! The same as [`PatternSet::scan`] on one text, with every match mapped to original offsets:
//! a block-list match lying inside an allow-list match (in original offsets, whatever the two
//! rules' views) is ignored; the first `block` match by `(start, rule index)` is the
//! violation; `redact` matches are merged and each merged span is replaced by `[REDACTED]` in
//! every text it touches (a span across a seam redacts its part on both sides); everything
//! else is a finding. Any rule failing (backtrack limit) or the budget running out fails
//! closed.
//!
//! # Cost
//!
//! Charged to the request's [`ScanBudget`]: one pass per distinct view, its length (as
//! [`PatternSet::scan`] charges one text; a view's length covers building it too), and each
//! seam window, its length. Building the views may not use more bytes than the budget has
//! left, so NFKC's expansion (up to 18 characters for one) is bounded and fails closed.

use std::borrow::Cow;
use std::ops::Range;

use super::compile::{PatternSet, Rule};
use super::engine::{finding, merge, rule_hits};
use super::normalize::{normalize_into, Fold, Normalized, OffsetMap, Out};
use super::{Action, FailReason, Finding, ScanBudget, REDACTED};

/// How a text of a prompt joins the text before it (see the module docs, "Seams").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Running text: message contents, content parts, refusals.
    Prose,
    /// Anything else a model reads: names, object keys, arguments, schema strings, stop words.
    Field,
}

/// The texts of one request, in reading order.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    joined: String,
    fields: Vec<(Range<usize>, TextKind)>,
}

impl Prompt {
    pub fn new() -> Self {
        Prompt::default()
    }

    pub fn push(&mut self, text: &str, kind: TextKind) {
        if !self.fields.is_empty() {
            self.joined.push('\n');
        }
        let start = self.joined.len();
        self.joined.push_str(text);
        self.fields.push((start..self.joined.len(), kind));
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The texts joined by line breaks (what finding offsets refer to).
    pub fn joined(&self) -> &str {
        &self.joined
    }
}

/// Result of [`PatternSet::scan_prompt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptOutcome {
    Clean {
        /// Audit and redact findings, ordered by (start, end, rule); offsets in the joined text.
        findings: Vec<Finding>,
        /// `(text index, redacted text)` for every text a redaction touched, in order.
        redacted: Vec<(usize, String)>,
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

type Fail = (String, FailReason);

fn budget_fail() -> Fail {
    ("*".to_string(), FailReason::ScanBudgetExceeded)
}

fn charge(budget: &mut ScanBudget, bytes: usize) -> Result<(), Fail> {
    if budget.charge(bytes) {
        Ok(())
    } else {
        Err(budget_fail())
    }
}

/// The joined text as some rules see it.
#[derive(Debug, PartialEq, Eq)]
struct View<'p> {
    text: Cow<'p, str>,
    /// `None`: the joined text itself.
    map: Option<OffsetMap>,
    /// Each text's range in the view.
    fields: Vec<Range<usize>>,
}

impl View<'_> {
    fn orig_start(&self, v: usize) -> usize {
        self.map.as_ref().map_or(v, |m| m.start(v))
    }

    fn orig_end(&self, v: usize) -> usize {
        self.map.as_ref().map_or(v, |m| m.end(v))
    }
}

/// Rules sharing one view, with that view's seam windows once built.
struct Group<'p> {
    view: View<'p>,
    /// Rule indices, increasing.
    rules: Vec<usize>,
    windows: Option<Vec<Window>>,
}

/// A stretch of joined running text around one or more joined seams.
struct Window {
    text: String,
    /// Pieces of consecutive view text: (start in `text`, start in the view, length).
    pieces: Vec<(usize, usize, usize)>,
    /// Joined seams, as increasing offsets in `text`.
    seams: Vec<usize>,
}

impl Window {
    fn crosses(&self, s: usize, e: usize) -> bool {
        // Seams are increasing: the first one after `s` decides.
        let i = self.seams.partition_point(|&q| q <= s);
        self.seams.get(i).is_some_and(|&q| q < e)
    }

    fn view_start(&self, s: usize) -> usize {
        let i = self.pieces.partition_point(|&(w, _, len)| w + len <= s);
        match self.pieces.get(i) {
            Some(&(w, v, _)) => v + s.saturating_sub(w),
            None => self.pieces.last().map_or(0, |&(_, v, len)| v + len),
        }
    }

    fn view_end(&self, e: usize) -> usize {
        let i = self.pieces.partition_point(|&(w, _, len)| w + len < e);
        match self.pieces.get(i) {
            Some(&(w, v, len)) => v + e.saturating_sub(w).min(len),
            None => self.pieces.last().map_or(0, |&(_, v, len)| v + len),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Hit {
    start: usize,
    end: usize,
    rule: usize,
}

impl PatternSet {
    /// Scans the texts of one request (see the module documentation of `guard::prompt`).
    pub fn scan_prompt(&self, prompt: &Prompt, budget: &mut ScanBudget) -> PromptOutcome {
        if self.rules.is_empty() || prompt.is_empty() {
            return PromptOutcome::Clean {
                findings: Vec::new(),
                redacted: Vec::new(),
            };
        }
        match self.scan_prompt_inner(prompt, budget) {
            Ok(outcome) => outcome,
            Err((rule, reason)) => PromptOutcome::Failed { rule, reason },
        }
    }

    fn scan_prompt_inner(
        &self,
        prompt: &Prompt,
        budget: &mut ScanBudget,
    ) -> Result<PromptOutcome, Fail> {
        let mut groups = self.views(prompt, &*budget)?;
        let kinds: Vec<TextKind> = prompt.fields.iter().map(|(_, k)| *k).collect();
        let mut charged = vec![false; groups.len()];
        let mut block: Vec<Hit> = Vec::new();
        for (gi, group) in groups.iter_mut().enumerate() {
            let rules: Vec<usize> = group
                .rules
                .iter()
                .copied()
                .filter(|&r| r < self.n_block)
                .collect();
            if rules.is_empty() {
                continue;
            }
            charge(budget, group.view.text.len())?;
            charged[gi] = true;
            if self.may_match(&group.view.text) {
                for &ri in &rules {
                    for (s, e) in self.hits(ri, &group.view.text)? {
                        block.push(Hit {
                            start: group.view.orig_start(s),
                            end: group.view.orig_end(e),
                            rule: ri,
                        });
                    }
                }
            }
            let windows = self.windows_of(
                &mut group.windows,
                &group.view,
                &group.rules,
                &kinds,
                budget,
            )?;
            for window in windows {
                if !self.may_match(&window.text) {
                    continue;
                }
                for &ri in &rules {
                    for (s, e) in self.hits(ri, &window.text)? {
                        if window.crosses(s, e) {
                            block.push(Hit {
                                start: group.view.orig_start(window.view_start(s)),
                                end: group.view.orig_end(window.view_end(e)),
                                rule: ri,
                            });
                        }
                    }
                }
            }
        }
        // Allow rules only filter block-list matches; linear ones cannot fail, so with no
        // block-list match they need not run (as in `PatternSet::scan`).
        let mut allow: Vec<(usize, usize)> = Vec::new();
        if !block.is_empty() || !self.all_linear {
            for (gi, group) in groups.iter_mut().enumerate() {
                let rules: Vec<usize> = group
                    .rules
                    .iter()
                    .copied()
                    .filter(|&r| r >= self.n_block)
                    .collect();
                if rules.is_empty() {
                    continue;
                }
                if !charged[gi] {
                    charge(budget, group.view.text.len())?;
                }
                for &ri in &rules {
                    for (s, e) in self.hits(ri, &group.view.text)? {
                        allow.push((group.view.orig_start(s), group.view.orig_end(e)));
                    }
                }
                let windows = self.windows_of(
                    &mut group.windows,
                    &group.view,
                    &group.rules,
                    &kinds,
                    budget,
                )?;
                for window in windows {
                    for &ri in &rules {
                        for (s, e) in self.hits(ri, &window.text)? {
                            if window.crosses(s, e) {
                                allow.push((
                                    group.view.orig_start(window.view_start(s)),
                                    group.view.orig_end(window.view_end(e)),
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(self.resolve(prompt, block, allow))
    }

    /// Whether any block-list rule may match `text` (the `RegexSet` prefilter, when built).
    fn may_match(&self, text: &str) -> bool {
        self.prefilter.as_ref().is_none_or(|pf| pf.is_match(text))
    }

    fn hits(&self, ri: usize, text: &str) -> Result<Vec<(usize, usize)>, Fail> {
        let rule: &Rule = &self.rules[ri];
        rule_hits(rule, text).map_err(|reason| (rule.label.clone(), reason))
    }

    /// The distinct views the rules need, each with its rules.
    fn views<'p>(&self, prompt: &'p Prompt, budget: &ScanBudget) -> Result<Vec<Group<'p>>, Fail> {
        let identity = || View {
            text: Cow::Borrowed(prompt.joined.as_str()),
            map: None,
            fields: prompt.fields.iter().map(|(r, _)| r.clone()).collect(),
        };
        if prompt.joined.is_ascii() {
            return Ok(vec![Group {
                view: identity(),
                rules: (0..self.rules.len()).collect(),
                windows: None,
            }]);
        }
        let mut groups: Vec<Group<'p>> = Vec::new();
        for strip_marks in [true, false] {
            let rules_of = |confusables: bool| -> Vec<usize> {
                let fold = Fold {
                    strip_marks,
                    confusables,
                };
                (0..self.rules.len())
                    .filter(|&r| self.rules[r].fold == fold)
                    .collect()
            };
            let rules = [rules_of(false), rules_of(true)];
            if rules.iter().all(Vec::is_empty) {
                continue;
            }
            let views = self.view_pair(
                prompt,
                strip_marks,
                [!rules[0].is_empty(), !rules[1].is_empty()],
                budget,
            )?;
            for (view, rules) in views.into_iter().zip(rules) {
                if rules.is_empty() {
                    continue;
                }
                let view = view.unwrap_or_else(identity);
                match groups.iter_mut().find(|g| g.view == view) {
                    Some(group) => {
                        group.rules.extend(rules);
                        group.rules.sort_unstable();
                    }
                    None => groups.push(Group {
                        view,
                        rules,
                        windows: None,
                    }),
                }
            }
        }
        Ok(groups)
    }

    /// The joined text with marks stripped (or kept), without and with the skeleton, as
    /// `want`ed (see `normalize::normalize_into`); `None` where every text is its own view.
    /// Views are not charged here but when scanned (each costs its length once); building
    /// them may not use more than the budget has left.
    fn view_pair<'p>(
        &self,
        prompt: &'p Prompt,
        strip_marks: bool,
        want: [bool; 2],
        budget: &ScanBudget,
    ) -> Result<[Option<View<'p>>; 2], Fail> {
        let joined = prompt.joined.as_str();
        let mut outs: [Option<Out>; 2] =
            want.map(|w| w.then(|| Out::with_capacity(joined.len() + joined.len() / 8)));
        let mut fields: [Vec<Range<usize>>; 2] = [Vec::new(), Vec::new()];
        for (i, (range, _)) in prompt.fields.iter().enumerate() {
            if i > 0 {
                for out in outs.iter_mut().flatten() {
                    out.exact(range.start - 1, "\n");
                }
            }
            let starts = outs
                .each_ref()
                .map(|o| o.as_ref().map_or(0, |o| o.text.len()));
            normalize_into(
                &joined[range.clone()],
                range.start,
                strip_marks,
                &mut outs,
                budget.remaining(),
            )
            .map_err(|_| budget_fail())?;
            for (k, out) in outs.iter().enumerate() {
                if let Some(out) = out {
                    fields[k].push(starts[k]..out.text.len());
                }
            }
        }
        let mut views = [None, None];
        for (k, (out, fields)) in outs.into_iter().zip(fields).enumerate() {
            if let Some(Normalized { text, map }) = out.and_then(|o| o.finish(joined.len())) {
                views[k] = Some(View {
                    text: Cow::Owned(text),
                    map: Some(map),
                    fields,
                });
            }
        }
        Ok(views)
    }

    /// Characters a seam window reaches to each side for these rules.
    fn reach(&self, rules: &[usize]) -> usize {
        let cap = self.limits.max_holdback_chars;
        let longest = rules
            .iter()
            .map(|&r| self.rules[r].reach_chars.map_or(cap, |c| c.min(cap)))
            .max()
            .unwrap_or(0);
        longest + self.context_bytes + 1
    }

    /// A group's seam windows, built (and charged) once.
    fn windows_of<'w>(
        &self,
        windows: &'w mut Option<Vec<Window>>,
        view: &View<'_>,
        rules: &[usize],
        kinds: &[TextKind],
        budget: &mut ScanBudget,
    ) -> Result<&'w [Window], Fail> {
        if windows.is_none() {
            let built = seam_windows(view, kinds, self.reach(rules));
            for w in &built {
                charge(budget, w.text.len())?;
            }
            *windows = Some(built);
        }
        Ok(windows.as_deref().unwrap_or_default())
    }

    fn resolve(
        &self,
        prompt: &Prompt,
        mut block: Vec<Hit>,
        mut allow: Vec<(usize, usize)>,
    ) -> PromptOutcome {
        block.sort_unstable();
        block.dedup();
        // Containment: the allow spans starting at or before `s`, and the furthest end among
        // them.
        allow.sort_unstable();
        let mut furthest = Vec::with_capacity(allow.len());
        let mut reach = 0;
        for &(_, b) in &allow {
            reach = usize::max(reach, b);
            furthest.push(reach);
        }
        let allowed = |h: &Hit| {
            let i = allow.partition_point(|&(a, _)| a <= h.start);
            i > 0 && furthest[i - 1] >= h.end
        };
        let mut violation: Option<Hit> = None;
        let mut findings = Vec::new();
        let mut spans = Vec::new();
        for h in block.iter().filter(|h| !allowed(h)) {
            match self.rules[h.rule].action {
                Action::Block => {
                    if violation.is_none_or(|v| (h.start, h.rule) < (v.start, v.rule)) {
                        violation = Some(*h);
                    }
                }
                Action::Redact => {
                    spans.push((h.start, h.end));
                    findings.push(finding(self, h.rule, h.start, h.end));
                }
                Action::Audit | Action::Allow => {
                    findings.push(finding(self, h.rule, h.start, h.end))
                }
            }
        }
        if let Some(v) = violation {
            return PromptOutcome::Violation {
                finding: finding(self, v.rule, v.start, v.end),
            };
        }
        findings.sort_by(|a, b| (a.start, a.end, &a.rule).cmp(&(b.start, b.end, &b.rule)));
        PromptOutcome::Clean {
            findings,
            redacted: redact_fields(prompt, &merge(&mut spans)),
        }
    }
}

/// Every text that a merged redaction span touches, with its part of each span replaced.
fn redact_fields(prompt: &Prompt, spans: &[(usize, usize)]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut first = 0;
    for (k, (range, _)) in prompt.fields.iter().enumerate() {
        while first < spans.len() && spans[first].1 <= range.start {
            first += 1;
        }
        let mut text = String::new();
        let mut cur = range.start;
        for &(s, e) in spans[first..].iter().take_while(|&&(s, _)| s < range.end) {
            let (s, e) = (s.max(range.start), e.min(range.end));
            if s >= e {
                continue;
            }
            text.push_str(&prompt.joined[cur..s]);
            text.push_str(REDACTED);
            cur = e;
        }
        if cur != range.start {
            text.push_str(&prompt.joined[cur..range.end]);
            out.push((k, text));
        }
    }
    out
}

/// Whether two consecutive pieces of running text are joined with nothing.
fn joins(left: &str, right: &str) -> bool {
    let ws = |c: Option<char>| c.is_none_or(char::is_whitespace);
    !ws(left.chars().next_back()) && !ws(right.chars().next())
}

/// The windows of the joined seams of a view (see the module docs, "Seams").
fn seam_windows(view: &View<'_>, kinds: &[TextKind], reach: usize) -> Vec<Window> {
    let text: &str = &view.text;
    let prose = view
        .fields
        .iter()
        .zip(kinds)
        .filter(|(r, k)| **k == TextKind::Prose && !r.is_empty())
        .map(|(r, _)| r.clone());
    let mut chains: Vec<Vec<Range<usize>>> = Vec::new();
    let mut current: Vec<Range<usize>> = Vec::new();
    for r in prose {
        let joined = current
            .last()
            .is_some_and(|prev| joins(&text[prev.clone()], &text[r.clone()]));
        if !joined {
            if current.len() > 1 {
                chains.push(std::mem::take(&mut current));
            }
            current.clear();
        }
        current.push(r);
    }
    if current.len() > 1 {
        chains.push(current);
    }
    let mut windows = Vec::new();
    for chain in chains {
        // The chain as one text: (offset in it, view range) per piece.
        let mut body = String::new();
        let mut pieces = Vec::with_capacity(chain.len());
        for r in &chain {
            pieces.push((body.len(), r.start, r.len()));
            body.push_str(&text[r.clone()]);
        }
        let seams: Vec<usize> = pieces.iter().skip(1).map(|&(c, _, _)| c).collect();
        // `reach` characters to each side (bytes, when they are all one byte long).
        let ascii = body.is_ascii();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for &q in &seams {
            let (lo, hi) = if ascii {
                (q.saturating_sub(reach), (q + reach).min(body.len()))
            } else {
                let lo = body[..q]
                    .char_indices()
                    .rev()
                    .take(reach)
                    .last()
                    .map_or(q, |(i, _)| i);
                let hi = body[q..]
                    .char_indices()
                    .nth(reach)
                    .map_or(body.len(), |(i, _)| q + i);
                (lo, hi)
            };
            match spans.last_mut() {
                Some(last) if lo <= last.1 => last.1 = hi,
                _ => spans.push((lo, hi)),
            }
        }
        for (lo, hi) in spans {
            windows.push(window(&body, &pieces, &seams, lo..hi, text.len()));
        }
    }
    windows
}

/// The window `range` of a chain `body`, with a line break on each side that is not the start
/// or the end of the whole text (so `^`, `$` and `\b` see what the main pass sees there).
fn window(
    body: &str,
    chain: &[(usize, usize, usize)],
    seams: &[usize],
    range: Range<usize>,
    view_len: usize,
) -> Window {
    // Only the pieces and seams inside `range` (both are increasing), so that many windows
    // over a long chain stay linear.
    let first = chain.partition_point(|&(c, _, len)| c + len <= range.start);
    let last = chain.partition_point(|&(c, _, _)| c < range.end);
    let mut pieces = Vec::new();
    for &(c, v, len) in chain.get(first..last).unwrap_or_default() {
        let (s, e) = (c.max(range.start), (c + len).min(range.end));
        if s < e {
            pieces.push((s, v + (s - c), e - s));
        }
    }
    let lead = usize::from(pieces.first().is_some_and(|&(_, v, _)| v > 0));
    let trail = pieces.last().is_some_and(|&(_, v, len)| v + len < view_len);
    let mut text = String::with_capacity(range.len() + 2);
    if lead == 1 {
        text.push('\n');
    }
    text.push_str(&body[range.clone()]);
    if trail {
        text.push('\n');
    }
    for p in &mut pieces {
        p.0 = p.0 - range.start + lead;
    }
    let lo = seams.partition_point(|&q| q <= range.start);
    let hi = seams.partition_point(|&q| q < range.end);
    let seams = seams
        .get(lo..hi)
        .unwrap_or_default()
        .iter()
        .map(|&q| q - range.start + lead)
        .collect();
    Window {
        text,
        pieces,
        seams,
    }
}
