//! Conservative static check for catastrophic backtracking, applied to
//! patterns that run on the backtracking (fancy) engine.
//!
//! Flags, with the byte position of the offending quantifier:
//! * a group repeated more than once (`*`, `+`, `{n,m}` with m > 1) whose
//!   body contains an unbounded quantifier (`(a+)+`, `(.*)*`, `(\w+\s?)+$`);
//! * a group repeated without bound whose alternation branches may start
//!   with the same character (`(a|a)*`, `(a|ab)+`, `(\w|x)*`) — only branches
//!   that all start with distinct plain literal characters are accepted.

#[derive(Default)]
struct Frame {
    /// The group body contains an unbounded quantifier.
    unbounded: bool,
    /// First char of each alternation branch (`None` = not a plain literal
    /// or empty branch).
    firsts: Vec<Option<char>>,
    at_branch_start: bool,
}

enum Atom {
    None,
    Simple,
    Group { unbounded: bool, overlap: bool },
}

/// Returns `(position, message)` of the first problem found.
pub(crate) fn check(pattern: &str) -> Option<(usize, String)> {
    // Branches are compared case-insensitively (conservative).
    let casei = true;
    let chars: Vec<(usize, char)> = pattern.char_indices().collect();
    let mut stack: Vec<Frame> = vec![Frame {
        at_branch_start: true,
        ..Frame::default()
    }];
    let mut last = Atom::None;
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        match c {
            '\\' => {
                mark_first(&mut stack, None);
                i += 2;
                last = Atom::Simple;
                continue;
            }
            '[' => {
                mark_first(&mut stack, None);
                i = skip_class(&chars, i);
                last = Atom::Simple;
                continue;
            }
            '(' => {
                // `(?flags)` sets flags and is not a group.
                if chars.get(i + 1).map(|c| c.1) == Some('?') {
                    let mut j = i + 2;
                    while j < chars.len() && (chars[j].1.is_ascii_alphabetic() || chars[j].1 == '-')
                    {
                        j += 1;
                    }
                    if j > i + 2 && chars.get(j).map(|c| c.1) == Some(')') {
                        i = j + 1;
                        last = Atom::None;
                        continue;
                    }
                }
                mark_first(&mut stack, None);
                stack.push(Frame {
                    at_branch_start: true,
                    ..Frame::default()
                });
                // Skip the group prefix (`?:`, `?=`, `?<name>`, ...).
                i += 1;
                if chars.get(i).map(|c| c.1) == Some('?') {
                    while i < chars.len() && !matches!(chars[i].1, ':' | '=' | '!' | '>' | ')') {
                        i += 1;
                    }
                    if chars.get(i).map(|c| c.1) != Some(')') {
                        i += 1;
                    }
                }
                last = Atom::None;
                continue;
            }
            ')' => {
                if stack.len() > 1 {
                    if let Some(mut f) = stack.pop() {
                        if f.at_branch_start {
                            f.firsts.push(None);
                        }
                        let overlap = f.firsts.len() > 1 && branches_overlap(&f.firsts, casei);
                        if f.unbounded {
                            if let Some(parent) = stack.last_mut() {
                                parent.unbounded = true;
                            }
                        }
                        last = Atom::Group {
                            unbounded: f.unbounded,
                            overlap,
                        };
                    }
                }
            }
            '|' => {
                if let Some(f) = stack.last_mut() {
                    if f.at_branch_start {
                        f.firsts.push(None);
                    }
                    f.at_branch_start = true;
                }
                last = Atom::None;
            }
            '*' | '+' | '?' | '{' => {
                let (unbounded, many, next) = quantifier(&chars, i);
                if next == i {
                    // A literal `{`.
                    mark_first(&mut stack, Some(c));
                    last = Atom::Simple;
                    i += 1;
                    continue;
                }
                if let Atom::Group {
                    unbounded: body_unbounded,
                    overlap,
                } = last
                {
                    if many && body_unbounded {
                        return Some((
                            pos,
                            "nested unbounded quantifier (catastrophic backtracking)".into(),
                        ));
                    }
                    if unbounded && overlap {
                        return Some((
                            pos,
                            "repeated alternation with overlapping branches (catastrophic backtracking)"
                                .into(),
                        ));
                    }
                }
                if unbounded {
                    if let Some(f) = stack.last_mut() {
                        f.unbounded = true;
                    }
                }
                last = Atom::None;
                // Lazy / possessive suffix.
                i = next;
                if matches!(chars.get(i).map(|c| c.1), Some('?' | '+')) {
                    i += 1;
                }
                continue;
            }
            _ => {
                mark_first(&mut stack, Some(c));
                last = Atom::Simple;
            }
        }
        i += 1;
    }
    None
}

fn mark_first(stack: &mut [Frame], c: Option<char>) {
    if let Some(f) = stack.last_mut() {
        if f.at_branch_start {
            f.firsts.push(c);
            f.at_branch_start = false;
        }
    }
}

fn branches_overlap(firsts: &[Option<char>], casei: bool) -> bool {
    let mut seen: Vec<char> = Vec::new();
    for f in firsts {
        let Some(c) = f else { return true };
        if matches!(c, '.' | '^' | '$') {
            return true;
        }
        let key = if casei {
            c.to_lowercase().next().unwrap_or(*c)
        } else {
            *c
        };
        if seen.contains(&key) {
            return true;
        }
        seen.push(key);
    }
    false
}

/// Index just past the character class starting at `i` (`[`).
fn skip_class(chars: &[(usize, char)], i: usize) -> usize {
    let at = |j: usize| chars.get(j).map(|c| c.1);
    let mut j = i + 1;
    if at(j) == Some('^') {
        j += 1;
    }
    if at(j) == Some(']') {
        j += 1;
    }
    let mut depth = 1usize;
    while j < chars.len() {
        match chars[j].1 {
            '\\' => j += 1,
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// Parses a quantifier at `i`: (unbounded, max > 1, index after it). For a
/// `{` that is not a quantifier, returns index `i`.
fn quantifier(chars: &[(usize, char)], i: usize) -> (bool, bool, usize) {
    match chars[i].1 {
        '*' | '+' => (true, true, i + 1),
        '?' => (false, false, i + 1),
        _ => {
            let mut j = i + 1;
            let mut text = String::new();
            while j < chars.len() && chars[j].1 != '}' {
                text.push(chars[j].1);
                j += 1;
            }
            if j >= chars.len() {
                return (false, false, i);
            }
            let mut parts = text.splitn(2, ',');
            let lo = parts.next().map(str::trim).unwrap_or("");
            let hi = parts.next().map(str::trim);
            if lo.parse::<usize>().is_err() && !(lo.is_empty() && hi.is_some()) {
                return (false, false, i);
            }
            match hi {
                None => {
                    let n = lo.parse::<usize>().unwrap_or(0);
                    (false, n > 1, j + 1)
                }
                Some("") => (true, true, j + 1),
                Some(h) => match h.parse::<usize>() {
                    Ok(n) => (false, n > 1, j + 1),
                    Err(_) => (false, false, i),
                },
            }
        }
    }
}
