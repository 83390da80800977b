//! The semantic cache's match decision on `tests/fixtures/cache_eval/pairs.jsonl`: 1,144 labelled
//! pairs in 237 templates, split once by template into a tuning half and a test half
//! (`tests/fixtures/cache_eval/README.md`). `cargo nextest run --test cache_eval --no-capture`
//! prints precision and recall per half, per threshold, and acceptance per contrast class.
//!
//! Rule: verification is tuned on the tuning half only. A test-half figure is reported, never
//! tuned on; a code change made after seeing one must say so in docs/cache.md.
//!
//! A pair is predicted a hit when cosine >= threshold and verification accepts it. Precision =
//! correct hits / predicted hits; recall = correct hits / pairs that should hit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use airgate::cache::{refusal, Signature};
use common::quality::Score;
use serde_json::Value;

/// The threshold the docs and the demo recommend, chosen on the tuning half: the highest
/// precision there with recall at least 0.75.
const RECOMMENDED: f32 = 0.90;
/// Floors on the test half, below today's figures (0.972 / 0.727): they catch a regression.
/// They are not the goal, which is 0.98 / 0.75 (issue 10, not reached yet).
const TEST_FLOOR: (f64, f64) = (0.96, 0.70);

struct Pair {
    class: String,
    hit: bool,
    test_half: bool,
    cosine: f32,
    /// Why verification refused the pair, if it did.
    refused: Option<&'static str>,
    a: String,
    b: String,
}

/// Precision and recall at `threshold`, with or without verification.
fn score(pairs: &[&Pair], threshold: f32, verify: bool) -> Score {
    Score::of(pairs.iter().map(|p| {
        (
            p.cosine >= threshold && (!verify || p.refused.is_none()),
            p.hit,
        )
    }))
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/cache_eval/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn load() -> Vec<Pair> {
    let split: Value = serde_json::from_str(&fixture("split.json")).unwrap();
    let test: BTreeSet<&str> = split["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let lines: Vec<Value> = fixture("pairs.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<&str> = lines
        .iter()
        .flat_map(|v| [v["a"].as_str().unwrap(), v["b"].as_str().unwrap()])
        .collect();
    let vectors = common::embedder().embed_batch_blocking(&texts).unwrap();
    let wordnet = common::wordnet();
    lines
        .iter()
        .zip(vectors.chunks(2))
        .map(|(v, pair)| {
            let (a, b) = (v["a"].as_str().unwrap(), v["b"].as_str().unwrap());
            Pair {
                class: v["class"].as_str().unwrap().to_string(),
                hit: v["expect"] == "hit",
                test_half: test.contains(v["template"].as_str().unwrap()),
                cosine: common::cosine(&pair[0], &pair[1]),
                refused: refusal(a, &Signature::of(a), b, &Signature::of(b), Some(&wordnet)),
                a: a.to_string(),
                b: b.to_string(),
            }
        })
        .collect()
}

fn sweep(name: &str, pairs: &[&Pair]) {
    let hits = pairs.iter().filter(|p| p.hit).count();
    println!(
        "\n== {name}: {} pairs ({hits} hit, {} miss)\nthreshold: precision/recall cosine only | with verification",
        pairs.len(),
        pairs.len() - hits
    );
    for i in (70..=98).step_by(2) {
        let t = i as f32 / 100.0;
        let (plain, verified) = (score(pairs, t, false), score(pairs, t, true));
        println!(
            "  {t:.2}: {:.3}/{:.3} | {:.3}/{:.3} (fp {})",
            plain.precision(),
            plain.recall(),
            verified.precision(),
            verified.recall(),
            verified.fp
        );
    }
}

/// Per class at `threshold`: pairs, above the threshold, above and accepted by verification.
fn by_class(name: &str, pairs: &[&Pair], threshold: f32) {
    let mut classes: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for p in pairs {
        let c = classes.entry(p.class.as_str()).or_default();
        c.0 += 1;
        if p.cosine >= threshold {
            c.1 += 1;
            c.2 += usize::from(p.refused.is_none());
        }
    }
    println!("\n{name} at {threshold:.2}: class / pairs / above threshold / above and accepted");
    for (class, (n, above, accepted)) in classes {
        println!("  {class:<24} {n:>4} {above:>4} {accepted:>4}");
    }
}

#[test]
fn precision_and_recall_on_both_halves() {
    let pairs = load();
    let tune: Vec<&Pair> = pairs.iter().filter(|p| !p.test_half).collect();
    let test: Vec<&Pair> = pairs.iter().filter(|p| p.test_half).collect();
    // The split is by template, once: every contrast and paraphrase class is in both halves.
    for half in [&tune, &test] {
        let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
        for p in half.iter() {
            *classes.entry(p.class.as_str()).or_default() += 1;
        }
        assert_eq!(classes.len(), 17, "{classes:?}");
        assert!(classes.values().all(|n| *n >= 12), "{classes:?}");
    }
    sweep("tuning half", &tune);
    by_class("tuning half", &tune, RECOMMENDED);
    println!("\ntuning-half errors at {RECOMMENDED:.2} with verification:");
    for p in &tune {
        let predicted = p.cosine >= RECOMMENDED && p.refused.is_none();
        if predicted != p.hit {
            println!(
                "  {} [{}] cos {:.3} refused {:?}: {:?} / {:?}",
                if p.hit { "FN" } else { "FP" },
                p.class,
                p.cosine,
                p.refused,
                p.a,
                p.b
            );
        }
    }
    // The test half: figures only, never its pairs (they are not to be tuned on).
    sweep("test half (not tuned on)", &test);
    by_class("test half (not tuned on)", &test, RECOMMENDED);

    let tuned = score(&tune, RECOMMENDED, true);
    assert!(
        tuned.precision() >= 0.98 && tuned.recall() >= 0.75,
        "tuning half at {RECOMMENDED}: precision {:.3}, recall {:.3}",
        tuned.precision(),
        tuned.recall()
    );
    let tested = score(&test, RECOMMENDED, true);
    assert!(
        tested.precision() >= TEST_FLOOR.0 && tested.recall() >= TEST_FLOOR.1,
        "test half at {RECOMMENDED}: precision {:.3}, recall {:.3}",
        tested.precision(),
        tested.recall()
    );
}
