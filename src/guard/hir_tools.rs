//! Pattern analysis: maximum match length, prefix-closure automata for
//! streaming decisions, and the match window of fancy patterns.

use fancy_regex::{Expr, LookAround};
use regex_automata::{hybrid::dfa::DFA, nfa::thompson, MatchKind};
use regex_syntax::hir::{Hir, HirKind, Repetition};

/// Maximum number of chars a match of `hir` can have; `None` if unbounded.
pub(crate) fn max_chars(hir: &Hir) -> Option<usize> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(0),
        HirKind::Literal(lit) => Some(match std::str::from_utf8(&lit.0) {
            Ok(s) => s.chars().count(),
            Err(_) => lit.0.len(),
        }),
        HirKind::Class(_) => Some(1),
        HirKind::Repetition(rep) => {
            let sub = max_chars(&rep.sub)?;
            if sub == 0 {
                return Some(0);
            }
            let max = rep.max?;
            usize::try_from(max).ok()?.checked_mul(sub)
        }
        HirKind::Capture(cap) => max_chars(&cap.sub),
        HirKind::Concat(subs) => subs
            .iter()
            .try_fold(0usize, |acc, h| acc.checked_add(max_chars(h)?)),
        HirKind::Alternation(subs) => subs
            .iter()
            .try_fold(0usize, |acc, h| Some(acc.max(max_chars(h)?))),
    }
}

/// `hir` with every look-around assertion replaced by the empty string and
/// captures removed (language over-approximation).
fn relax(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Hir::empty(),
        HirKind::Literal(_) | HirKind::Class(_) => hir.clone(),
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            min: rep.min,
            max: rep.max,
            greedy: true,
            sub: Box::new(relax(&rep.sub)),
        }),
        HirKind::Capture(cap) => relax(&cap.sub),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(relax).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(relax).collect()),
    }
}

/// Prefix closure (on char boundaries) of the relaxed language of `hir`.
fn pref(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Hir::empty(),
        HirKind::Literal(lit) => pref_literal(&lit.0),
        HirKind::Class(_) => Hir::alternation(vec![Hir::empty(), hir.clone()]),
        HirKind::Repetition(rep) => match rep.max {
            Some(0) => Hir::empty(),
            max => Hir::concat(vec![
                Hir::repetition(Repetition {
                    min: 0,
                    max: max.map(|m| m - 1),
                    greedy: true,
                    sub: Box::new(relax(&rep.sub)),
                }),
                pref(&rep.sub),
            ]),
        },
        HirKind::Capture(cap) => pref(&cap.sub),
        HirKind::Concat(subs) => pref_concat(subs),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(pref).collect()),
    }
}

/// pref(X·Y) = pref(X) | X·pref(Y), splitting in halves so nesting depth is
/// logarithmic.
fn pref_concat(subs: &[Hir]) -> Hir {
    match subs {
        [] => Hir::empty(),
        [one] => pref(one),
        _ => {
            let (x, y) = subs.split_at(subs.len() / 2);
            let x_relaxed = Hir::concat(x.iter().map(relax).collect());
            Hir::alternation(vec![
                pref_concat(x),
                Hir::concat(vec![x_relaxed, pref_concat(y)]),
            ])
        }
    }
}

fn pref_literal(bytes: &[u8]) -> Hir {
    // Split at char boundaries (byte-wise when not UTF-8).
    let units: Vec<&[u8]> = match std::str::from_utf8(bytes) {
        Ok(s) => s
            .char_indices()
            .map(|(i, c)| &bytes[i..i + c.len_utf8()])
            .collect(),
        Err(_) => bytes.chunks(1).collect(),
    };
    pref_units(&units)
}

fn pref_units(units: &[&[u8]]) -> Hir {
    match units {
        [] => Hir::empty(),
        [one] => Hir::alternation(vec![Hir::empty(), Hir::literal(one.to_vec())]),
        _ => {
            let (x, y) = units.split_at(units.len() / 2);
            let x_lit = Hir::literal(x.concat());
            Hir::alternation(vec![pref_units(x), Hir::concat(vec![x_lit, pref_units(y)])])
        }
    }
}

/// Reverse lazy DFA recognising the prefix closure of the relaxed `hir`.
pub(crate) fn prefix_dfa(hir: &Hir) -> Result<DFA, String> {
    let p = pref(hir);
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .reverse(true)
                .which_captures(thompson::WhichCaptures::None)
                .nfa_size_limit(Some(super::MAX_COMPILED_BYTES * 4)),
        )
        .build_from_hir(&p)
        .map_err(|e| format!("pattern too complex for streaming analysis: {e}"))?;
    DFA::builder()
        .configure(
            DFA::config()
                .match_kind(MatchKind::All)
                .cache_capacity(1 << 20)
                .skip_cache_capacity_check(true)
                .minimum_cache_clear_count(None),
        )
        .build_from_nfa(nfa)
        .map_err(|e| format!("pattern too complex for streaming analysis: {e}"))
}

/// Window of a fancy pattern, in bytes relative to the attempt start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reach {
    /// Max bytes consumed by the match.
    pub max: usize,
    /// Max bytes examined forward (match + look-ahead).
    pub fwd: usize,
    /// Max bytes examined before the attempt start (look-behind).
    pub back: usize,
}

const CHAR: usize = 4;

fn seq(a: Reach, b: Reach) -> Option<Reach> {
    Some(Reach {
        max: a.max.checked_add(b.max)?,
        fwd: a.fwd.max(a.max.checked_add(b.fwd)?),
        back: a.back.max(b.back),
    })
}

fn alt(a: Reach, b: Reach) -> Reach {
    Reach {
        max: a.max.max(b.max),
        fwd: a.fwd.max(b.fwd),
        back: a.back.max(b.back),
    }
}

fn delegate_max(inner: &str, casei: bool) -> Option<usize> {
    let mut parser = regex_syntax::ParserBuilder::new()
        .case_insensitive(casei)
        .build();
    let hir = parser.parse(inner).ok()?;
    hir.properties().maximum_len()
}

fn fixed(n: usize) -> Reach {
    Reach {
        max: n,
        fwd: n,
        back: 0,
    }
}

/// Bounded window of a fancy expression; `None` when unbounded or when the
/// expression uses a construct we do not analyse.
pub(crate) fn fancy_reach(expr: &Expr) -> Option<Reach> {
    let groups = group_max(expr)?;
    reach(expr, groups)
}

/// Upper bound of every capture group's length (used for backreferences).
fn group_max(expr: &Expr) -> Option<usize> {
    let mut best = 0usize;
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        if let Expr::Group(inner) = e {
            // A group containing a backref counts as unbounded (conservative).
            best = best.max(reach(inner, usize::MAX)?.max);
        }
        stack.extend(e.children_iter());
    }
    Some(best)
}

fn reach(expr: &Expr, backref_max: usize) -> Option<Reach> {
    Some(match expr {
        Expr::Empty | Expr::Assertion(_) | Expr::BackrefExistsCondition { .. } => fixed(0),
        Expr::Any { .. } | Expr::GeneralNewline { .. } => fixed(CHAR),
        Expr::Literal { val, casei } => fixed(if *casei {
            val.chars().count().checked_mul(CHAR)?
        } else {
            val.len()
        }),
        Expr::LiteralBytes { bytes } => fixed(bytes.len()),
        Expr::Concat(v) => v
            .iter()
            .try_fold(fixed(0), |acc, e| seq(acc, reach(e, backref_max)?))?,
        Expr::Alt(v) => v
            .iter()
            .try_fold(fixed(0), |acc, e| Some(alt(acc, reach(e, backref_max)?)))?,
        Expr::Group(e) => reach(e, backref_max)?,
        Expr::AtomicGroup(e) => reach(e, backref_max)?,
        Expr::LookAround(e, kind) => {
            let r = reach(e, backref_max)?;
            match kind {
                LookAround::LookAhead | LookAround::LookAheadNeg => Reach {
                    max: 0,
                    fwd: r.fwd,
                    back: r.back,
                },
                LookAround::LookBehind | LookAround::LookBehindNeg => Reach {
                    max: 0,
                    fwd: r.fwd,
                    back: r.back.max(r.max).checked_add(CHAR)?,
                },
            }
        }
        Expr::Repeat { child, hi, .. } => {
            let c = reach(child, backref_max)?;
            if *hi == usize::MAX {
                if c.max == 0 {
                    c
                } else {
                    return None;
                }
            } else if *hi == 0 {
                fixed(0)
            } else {
                Reach {
                    max: c.max.checked_mul(*hi)?,
                    fwd: c.max.checked_mul(*hi - 1)?.checked_add(c.fwd)?,
                    back: c.back,
                }
            }
        }
        Expr::Delegate { inner, casei } => {
            let m = delegate_max(inner, *casei)?;
            Reach {
                max: m,
                fwd: m.checked_add(CHAR)?,
                back: CHAR,
            }
        }
        Expr::Backref { casei, .. } => {
            if backref_max == usize::MAX {
                return None;
            }
            fixed(if *casei {
                backref_max.checked_mul(CHAR)?
            } else {
                backref_max
            })
        }
        Expr::Conditional {
            condition,
            true_branch,
            false_branch,
        } => {
            let c = reach(condition, backref_max)?;
            let t = reach(true_branch, backref_max)?;
            let f = reach(false_branch, backref_max)?;
            alt(seq(c, t)?, seq(c, f)?)
        }
        _ => return None,
    })
}
