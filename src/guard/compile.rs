//! Compiling [`RuleSpec`]s into a [`PatternSet`].

use super::detectors::{self, Validator};
use super::hir_tools::{fancy_reach, max_chars, prefix_dfa};
use super::normalize::{self, Fold};
use super::{
    static_check, Action, AuditLevel, GuardLimits, PatternError, RuleSpec, ScanBudget, ScanOutcome,
    MAX_COMPILED_BYTES, MAX_PATTERN_CHARS,
};
use regex_automata::hybrid::dfa::DFA;

const NEST_LIMIT: u32 = 100;
/// Fewest block-list rules for which the `RegexSet` prefilter is built.
const PREFILTER_MIN_RULES: usize = 3;

pub(crate) enum Matcher {
    /// Linear-time engine; streaming decisions via the reverse prefix DFA.
    Linear { re: regex::Regex, pref: Box<DFA> },
    /// Backtracking engine; streaming decisions via a fixed window (bytes).
    Fancy {
        re: Box<fancy_regex::Regex>,
        window: usize,
    },
}

pub(crate) struct Rule {
    pub label: String,
    /// Source pattern (user regex or detector candidate pattern).
    pub pattern: String,
    /// `Action::Allow` for allow-list rules.
    pub action: Action,
    pub level: AuditLevel,
    pub matcher: Matcher,
    pub validator: Option<Validator>,
    /// Max chars of text this rule needs to hold back (None = unbounded).
    pub reach_chars: Option<usize>,
    /// The view of a prompt this rule matches (answers are always matched raw).
    pub fold: Fold,
    /// A user pattern that names no character the confusables skeleton replaces, so it may
    /// be matched against the skeleton (`matchConfusables`); detectors always are.
    pub skeleton_ok: bool,
    pub detector: bool,
}

/// Matcher runtime error (fail closed).
pub(crate) struct MatcherFailed;

impl Rule {
    pub(crate) fn find_at(
        &self,
        hay: &str,
        pos: usize,
    ) -> Result<Option<(usize, usize)>, MatcherFailed> {
        if pos > hay.len() {
            return Ok(None);
        }
        match &self.matcher {
            Matcher::Linear { re, .. } => Ok(re.find_at(hay, pos).map(|m| (m.start(), m.end()))),
            Matcher::Fancy { re, .. } => match re.find_from_pos(hay, pos) {
                Ok(m) => Ok(m.map(|m| (m.start(), m.end()))),
                Err(_) => Err(MatcherFailed),
            },
        }
    }

    pub(crate) fn is_allow(&self) -> bool {
        self.action == Action::Allow
    }
}

/// Compiled block and allow rules of one configuration.
pub struct PatternSet {
    /// Block rules first (index = position in `blockPatterns`), then allow
    /// rules.
    pub(crate) rules: Vec<Rule>,
    pub(crate) n_block: usize,
    pub(crate) limits: GuardLimits,
    pub(crate) holdback: usize,
    /// Bytes of already released text kept as left context (look-behind).
    pub(crate) context_bytes: usize,
    /// Every rule runs on the linear engine (so none can fail at run time).
    pub(crate) all_linear: bool,
    /// One `RegexSet` over the block-list rules, present only when
    /// `all_linear`: when it finds no match in a text, no block-list rule
    /// matches anywhere in it (see module docs, "Prefilter").
    pub(crate) prefilter: Option<regex::RegexSet>,
}

impl std::fmt::Debug for PatternSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternSet")
            .field(
                "rules",
                &self
                    .rules
                    .iter()
                    .map(|r| (&r.label, r.action))
                    .collect::<Vec<_>>(),
            )
            .field("limits", &self.limits)
            .field("holdback", &self.holdback)
            .finish()
    }
}

impl PatternSet {
    /// Compiles the rules; all errors are reported, not just the first.
    pub fn compile(
        block: &[RuleSpec],
        allow: &[RuleSpec],
        limits: GuardLimits,
    ) -> Result<PatternSet, Vec<PatternError>> {
        let mut rules = Vec::with_capacity(block.len() + allow.len());
        let mut errors = Vec::new();
        let lists: [(&'static str, &[RuleSpec]); 2] =
            [("blockPatterns", block), ("allowPatterns", allow)];
        let mut context_bytes = 4usize;
        for (list, specs) in lists {
            for (index, spec) in specs.iter().enumerate() {
                match compile_rule(spec, list, index, &limits) {
                    Ok((rule, back)) => {
                        context_bytes = context_bytes.max(back);
                        rules.push(rule);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let cap = limits.max_holdback_chars;
        let holdback = rules
            .iter()
            .map(|r| r.reach_chars.map_or(cap, |c| c.min(cap)))
            .max()
            .unwrap_or(0);
        let all_linear = rules
            .iter()
            .all(|r| matches!(r.matcher, Matcher::Linear { .. }));
        // With one or two block-list rules, their own regexes (each with its
        // literal prefilter) are as fast as one set pass; measured: seed's two
        // rules 635 vs 380 MiB/s, eight rules 200 vs 380+ MiB/s.
        let prefilter = if all_linear && block.len() >= PREFILTER_MIN_RULES {
            build_prefilter(&rules[..block.len()])
        } else {
            None
        };
        Ok(PatternSet {
            rules,
            n_block: block.len(),
            limits,
            holdback,
            context_bytes,
            all_linear,
            prefilter,
        })
    }

    /// Streaming window derived from the patterns (max match length + 1 char
    /// when all are bounded), never more than `max_holdback_chars`.
    pub fn holdback_chars(&self) -> usize {
        self.holdback
    }

    pub fn limits(&self) -> GuardLimits {
        self.limits
    }

    /// A fresh budget for one request.
    pub fn budget(&self) -> ScanBudget {
        ScanBudget::new(self.limits)
    }

    /// Whether there is anything to check.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Scans a whole text.
    pub fn scan(&self, text: &str, budget: &mut ScanBudget) -> ScanOutcome {
        super::engine::scan_whole(self, text, budget)
    }

    /// `matchConfusables`: user patterns (that name no look-alike character themselves) are
    /// matched against the prompt's confusables skeleton too, as the built-in detectors always
    /// are. Answers are not affected (see the module docs).
    pub fn match_confusables(mut self, on: bool) -> Self {
        for rule in self.rules.iter_mut().filter(|r| !r.detector) {
            rule.fold.confusables = on && rule.skeleton_ok;
        }
        self
    }
}

/// The `RegexSet` over the (linear) block-list rules, with the same syntax
/// options as each rule's own regex; `None` when there is no block-list rule
/// or the set exceeds the size limits (scanning then runs without it).
fn build_prefilter(block: &[Rule]) -> Option<regex::RegexSet> {
    if block.is_empty() {
        return None;
    }
    regex::RegexSetBuilder::new(block.iter().map(|r| r.pattern.as_str()))
        .size_limit(MAX_COMPILED_BYTES.saturating_mul(block.len()))
        .dfa_size_limit(MAX_COMPILED_BYTES)
        .nest_limit(NEST_LIMIT)
        .build()
        .ok()
}

fn compile_rule(
    spec: &RuleSpec,
    list: &'static str,
    index: usize,
    limits: &GuardLimits,
) -> Result<(Rule, usize), PatternError> {
    let shown = spec
        .regex
        .clone()
        .or_else(|| spec.detector.clone())
        .unwrap_or_default();
    let err = |position: Option<usize>, message: String| PatternError {
        index,
        list,
        pattern: shown.clone(),
        position,
        message,
    };
    let is_allow = list == "allowPatterns";
    let action = if is_allow {
        Action::Allow
    } else if spec.action == Action::Allow {
        return Err(err(
            None,
            "action \"allow\" is only valid in allowPatterns".into(),
        ));
    } else {
        spec.action
    };
    let level = spec.audit_level.unwrap_or_default();
    let mut pattern_of_detector = String::new();
    let (label_default, compiled) = match (&spec.regex, &spec.detector) {
        (Some(_), Some(_)) => {
            return Err(err(None, "set either regex or detector, not both".into()))
        }
        (None, None) => return Err(err(None, "set regex or detector".into())),
        (None, Some(name)) => {
            let Some(det) = detectors::lookup(name) else {
                return Err(err(
                    None,
                    format!(
                        "unknown detector {name:?} (known: {})",
                        detectors::DETECTORS.join(", ")
                    ),
                ));
            };
            let hir = regex_syntax::ParserBuilder::new()
                .build()
                .parse(det.pattern)
                .map_err(|e| err(None, format!("internal detector error: {e}")))?;
            let c = compile_linear(det.pattern, &hir).map_err(|m| err(None, m))?;
            pattern_of_detector = det.pattern.to_string();
            (name.clone(), (c, det.validator))
        }
        (Some(pattern), None) => {
            let c = compile_user(pattern, limits).map_err(|(p, m)| err(p, m))?;
            (format!("{list}[{index}]"), (c, None))
        }
    };
    let ((matcher, reach_chars, back), validator) = compiled;
    let is_detector = spec.detector.is_some();
    let (fold, skeleton_ok) = match &spec.regex {
        Some(pattern) if !is_detector => {
            // Fancy patterns do not parse here; their literal text is still checked.
            let hir = regex_syntax::ParserBuilder::new()
                .nest_limit(NEST_LIMIT)
                .build()
                .parse(pattern)
                .ok();
            let marks = normalize::pattern_names(pattern, hir.as_ref(), normalize::is_mark);
            let look_alikes =
                normalize::pattern_names(pattern, hir.as_ref(), normalize::is_confusable);
            (
                Fold {
                    strip_marks: !marks,
                    confusables: false,
                },
                !look_alikes,
            )
        }
        _ => (
            Fold {
                strip_marks: true,
                confusables: true,
            },
            true,
        ),
    };
    Ok((
        Rule {
            label: spec.name.clone().unwrap_or(label_default),
            pattern: match &spec.regex {
                Some(p) => p.clone(),
                None => pattern_of_detector,
            },
            action,
            level,
            matcher,
            validator,
            reach_chars,
            fold,
            skeleton_ok,
            detector: is_detector,
        },
        back,
    ))
}

type Compiled = (Matcher, Option<usize>, usize);

fn compile_linear(pattern: &str, hir: &regex_syntax::hir::Hir) -> Result<Compiled, String> {
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_BYTES)
        .dfa_size_limit(MAX_COMPILED_BYTES)
        .nest_limit(NEST_LIMIT)
        .build()
        .map_err(|e| format!("{e}"))?;
    let pref = prefix_dfa(hir)?;
    let reach = max_chars(hir).map(|c| c.saturating_add(1));
    Ok((
        Matcher::Linear {
            re,
            pref: Box::new(pref),
        },
        reach,
        4,
    ))
}

fn syntax_position(e: &regex_syntax::Error) -> Option<usize> {
    match e {
        regex_syntax::Error::Parse(e) => Some(e.span().start.offset),
        regex_syntax::Error::Translate(e) => Some(e.span().start.offset),
        _ => None,
    }
}

fn compile_user(pattern: &str, limits: &GuardLimits) -> Result<Compiled, (Option<usize>, String)> {
    let len = pattern.chars().count();
    if len > MAX_PATTERN_CHARS {
        return Err((
            Some(MAX_PATTERN_CHARS),
            format!("pattern is {len} characters long; the limit is {MAX_PATTERN_CHARS}"),
        ));
    }
    if pattern.is_empty() {
        return Err((None, "empty pattern".into()));
    }
    let syntax = regex_syntax::ParserBuilder::new()
        .nest_limit(NEST_LIMIT)
        .build()
        .parse(pattern);
    let syntax_err = match syntax {
        Ok(hir) => {
            if hir.properties().minimum_len() == Some(0) {
                return Err((Some(0), "pattern can match the empty string".into()));
            }
            return compile_linear(pattern, &hir).map_err(|m| (None, m));
        }
        Err(e) => e,
    };
    // Not accepted by the linear engine: needs fancy features, or invalid.
    let tree = match fancy_regex::Expr::parse_tree(pattern) {
        Ok(t) => t,
        Err(fancy_regex::Error::ParseError(pos, e)) => return Err((Some(pos), format!("{e}"))),
        Err(e) => return Err((syntax_position(&syntax_err), format!("{e}"))),
    };
    if let Some((pos, msg)) = static_check::check(pattern) {
        return Err((Some(pos), msg));
    }
    let cap = limits.max_holdback_chars;
    let Some(reach) = fancy_reach(&tree.expr) else {
        return Err((
            None,
            format!(
                "patterns using backreferences or look-around must have a bounded length \
                 (at most {cap} bytes including look-around) so streamed responses can be \
                 checked; use bounded repetitions like {{1,50}}"
            ),
        ));
    };
    let window = reach.fwd.max(reach.max).saturating_add(4);
    let back = reach.back.saturating_add(4);
    if window > cap || back > cap {
        return Err((
            None,
            format!(
                "pattern window is {} bytes; patterns using backreferences or look-around \
                 are limited to maxHoldbackChars ({cap})",
                window.max(back)
            ),
        ));
    }
    let re = fancy_regex::RegexBuilder::new(pattern)
        .backtrack_limit(limits.backtrack_limit)
        .delegate_size_limit(MAX_COMPILED_BYTES)
        .delegate_dfa_size_limit(MAX_COMPILED_BYTES)
        .build()
        .map_err(|e| match e {
            fancy_regex::Error::ParseError(pos, e) => (Some(pos), format!("{e}")),
            e => (None, format!("{e}")),
        })?;
    Ok((
        Matcher::Fancy {
            re: Box::new(re),
            window,
        },
        Some(window),
        back,
    ))
}
