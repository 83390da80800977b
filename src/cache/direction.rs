//! Direction: two prompts with the same words can ask opposite things. "Convert Celsius to
//! Fahrenheit" and "Convert Fahrenheit to Celsius" embed almost identically (MiniLM is close to
//! a bag of words), and every word-level check passes, since no word differs. What differs is
//! which word is the source and which the target of a directional preposition.
//!
//! The check is grammatical, not a table of domain words: the prepositions that mark a source
//! (`from`), a target (`to`, `into`, `onto`, `toward(s)`) or a comparison (`than`) are a closed
//! class. Two prompts disagree on direction when
//! - the same relation is reversed: "X to Y" in one, "Y to X" in the other;
//! - a word that follows the preposition in one prompt stands before the same preposition in
//!   the other (within a few words), and the other way round: "copies the production database
//!   to staging" against "copies the staging database to production";
//! - a word is a source in one prompt and a target or comparison in the other: "traffic from
//!   10.0.0.0/8" against "traffic to 10.0.0.0/8";
//! - for the prepositions other than `to` (which also marks infinitives: "how to convert"), a
//!   word that follows the preposition in one prompt occurs in the other, but not after it.
//!
//! A word that only one prompt has is not judged here: substitutions are the word checks' job.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::verify::number_word;

const TARGET: &[&str] = &["to", "into", "onto", "toward", "towards"];
const SOURCE: &[&str] = &["from"];
const COMPARISON: &[&str] = &["than"];

/// Words skipped to find a preposition's object or the words before it: articles, possessives,
/// demonstratives, object pronouns and the commonest auxiliaries (a closed class).
const SKIP: &[&str] = &[
    "the", "a", "an", "my", "your", "our", "their", "his", "her", "its", "this", "that", "these",
    "those", "some", "me", "us", "them", "it", "is", "are", "do", "does",
];

/// How many words before a preposition count as its left side.
const LEFT_WINDOW: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Target,
    Source,
    Comparison,
}

fn role_of(word: &str) -> Option<Role> {
    if TARGET.contains(&word) {
        Some(Role::Target)
    } else if SOURCE.contains(&word) {
        Some(Role::Source)
    } else if COMPARISON.contains(&word) {
        Some(Role::Comparison)
    } else {
        None
    }
}

/// One occurrence of a directional preposition.
struct Relation<'a> {
    preposition: &'a str,
    /// The nearest word before it (skipped words aside), if any.
    before: Option<&'a str>,
    /// Words in the window before it.
    left: HashSet<&'a str>,
    /// The first word after it (skipped words aside): its object.
    object: &'a str,
}

struct Analysis<'a> {
    words: HashSet<&'a str>,
    relations: Vec<Relation<'a>>,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || matches!(c, '.' | '/' | ':' | '%' | '-' | '_')))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '%'))
        .filter(|w| !w.is_empty())
        .map(|w| {
            // Number words read as digits, so "more than one year" and "more than 1 year" agree.
            let w = w.to_lowercase();
            if w == "one" {
                return "1".to_string();
            }
            number_word(&w).map_or(w, str::to_string)
        })
        .collect()
}

fn analyse(words: &[String]) -> Analysis<'_> {
    let content = |w: &&String| !SKIP.contains(&w.as_str());
    let mut relations = Vec::new();
    for (i, word) in words.iter().enumerate() {
        if role_of(word).is_none() {
            continue;
        }
        let Some(object) = words[i + 1..].iter().find(content) else {
            continue;
        };
        let left: Vec<&str> = words[i.saturating_sub(LEFT_WINDOW)..i]
            .iter()
            .filter(content)
            .map(String::as_str)
            .collect();
        relations.push(Relation {
            preposition: word,
            before: left.last().copied(),
            left: left.into_iter().collect(),
            object,
        });
    }
    Analysis {
        words: words.iter().map(String::as_str).collect(),
        relations,
    }
}

/// Whether the two prompts disagree on a direction (see the module documentation).
pub fn disagree(a: &str, b: &str) -> bool {
    let (words_a, words_b) = (words(a), words(b));
    let (a, b) = (analyse(&words_a), analyse(&words_b));
    reversed(&a, &b) || crossed(&a, &b) || roles_differ(&a, &b) || moved(&a, &b) || moved(&b, &a)
}

/// "X to Y" against "Y to X".
fn reversed(a: &Analysis<'_>, b: &Analysis<'_>) -> bool {
    a.relations.iter().any(|ra| {
        b.relations.iter().any(|rb| {
            ra.preposition == rb.preposition
                && ra.object != rb.object
                && ra.before == Some(rb.object)
                && rb.before == Some(ra.object)
        })
    })
}

/// The object of one side stands before the same preposition on the other side, both ways.
fn crossed(a: &Analysis<'_>, b: &Analysis<'_>) -> bool {
    a.relations.iter().any(|ra| {
        b.relations.iter().any(|rb| {
            ra.preposition == rb.preposition
                && ra.object != rb.object
                && rb.left.contains(ra.object)
                && ra.left.contains(rb.object)
        })
    })
}

/// A word is an object in both prompts, but of prepositions of different roles only.
fn roles_differ(a: &Analysis<'_>, b: &Analysis<'_>) -> bool {
    let (ra, rb) = (roles(a), roles(b));
    ra.iter()
        .any(|(word, roles)| rb.get(word).is_some_and(|other| roles.is_disjoint(other)))
}

/// Each object's roles.
fn roles<'a>(x: &Analysis<'a>) -> BTreeMap<&'a str, BTreeSet<Role>> {
    let mut map: BTreeMap<&'a str, BTreeSet<Role>> = BTreeMap::new();
    for r in &x.relations {
        if let Some(role) = role_of(r.preposition) {
            map.entry(r.object).or_default().insert(role);
        }
    }
    map
}

/// For prepositions other than `to`: an object in `a` that `b` has, but never after that
/// preposition, while `b` uses the preposition too.
fn moved(a: &Analysis<'_>, b: &Analysis<'_>) -> bool {
    a.relations
        .iter()
        .filter(|r| r.preposition != "to")
        .any(|ra| {
            let b_objects: Vec<&str> = b
                .relations
                .iter()
                .filter(|rb| rb.preposition == ra.preposition)
                .map(|rb| rb.object)
                .collect();
            !b_objects.is_empty() && b.words.contains(ra.object) && !b_objects.contains(&ra.object)
        })
}

#[cfg(test)]
mod tests {
    use super::disagree;

    #[test]
    fn reversed_conversions_and_transfers_disagree() {
        for (a, b) in [
            ("Convert 5 km to miles.", "Convert 5 miles to km."),
            ("EUR to GBP rate", "GBP to EUR rate"),
            (
                "Write a function that converts Celsius to Fahrenheit.",
                "Write a function that converts Fahrenheit to Celsius.",
            ),
            (
                "How do I transfer money from my savings account to my checking account?",
                "How do I transfer money from my checking account to my savings account?",
            ),
            (
                "Block traffic from 10.0.0.0/8 on the firewall",
                "Block traffic to 10.0.0.0/8 on the firewall",
            ),
            ("Is Rust faster than Go?", "Is Go faster than Rust?"),
        ] {
            assert!(disagree(a, b), "{a:?} / {b:?}");
            assert!(disagree(b, a), "{b:?} / {a:?}");
        }
    }

    #[test]
    fn paraphrases_and_infinitives_agree() {
        for (a, b) in [
            (
                "How do I convert a JSON file to YAML in Python?",
                "In Python, could you show me how to convert a JSON file to YAML?",
            ),
            (
                "How much does a wire from the UK to the US cost?",
                "To send a wire from the UK to the US, how much does it cost?",
            ),
            (
                "Tax rate on stocks held for more than one year?",
                "tax rate on stocks held for more than 1 year",
            ),
            (
                "How do I reset my password?",
                "What are the steps to reset my password?",
            ),
            ("Convert 5 km to miles.", "Convert 5 km into miles."),
        ] {
            assert!(!disagree(a, b), "{a:?} / {b:?}");
            assert!(!disagree(b, a), "{b:?} / {a:?}");
        }
    }
}
