//! The semantic cache's match decision on `tests/fixtures/cache_eval/pairs.jsonl`: 1,144 labelled
//! pairs in 237 templates, split once by template into a tuning half and a test half
//! (`tests/fixtures/cache_eval/README.md`), and on `dev.jsonl`, 135 development pairs written
//! later to tune on. `cargo nextest run --test cache_eval --no-capture` prints precision and
//! recall per half, per threshold, and acceptance per contrast class.
//!
//! Rule: verification is tuned on the tuning half and the development pairs only. A test-half
//! figure is reported, never tuned on; a code change made after seeing one must say so in
//! docs/cache.md.
//!
//! A pair is predicted a hit when cosine >= threshold and verification accepts it, with `a`
//! as the stored prompt and `b` as the new one, as in the gateway. Precision = correct hits /
//! predicted hits; recall = correct hits / pairs that should hit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use airgate::cache::{refusal, Signature};
use common::quality::Score;
use serde_json::Value;

/// The threshold the docs and the demo recommend, chosen on the tuning half before the
/// verifier reached precision 1.0 there (docs/cache.md, "Choosing the threshold").
const RECOMMENDED: f32 = 0.90;
/// What the recommended threshold must give on the test half (issue 10): precision, recall.
const TEST_GOAL: (f64, f64) = (0.98, 0.75);

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

/// Whether verification refuses a cached `a` for a new prompt `b`.
fn refused(a: &str, b: &str, wordnet: &airgate::cache::wordnet::WordNet) -> Option<&'static str> {
    refusal(b, &Signature::of(b), a, &Signature::of(a), Some(wordnet))
}

/// The lines of a JSON Lines fixture of pairs, each with the cosine of its `a` and `b`.
fn with_cosines(name: &str) -> Vec<(Value, f32)> {
    let lines: Vec<Value> = fixture(name)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<&str> = lines
        .iter()
        .flat_map(|v| [v["a"].as_str().unwrap(), v["b"].as_str().unwrap()])
        .collect();
    let vectors = common::embedder().embed_batch_blocking(&texts).unwrap();
    let cosines = vectors.chunks(2).map(|p| common::cosine(&p[0], &p[1]));
    lines.into_iter().zip(cosines).collect()
}

fn load() -> Vec<Pair> {
    let split: Value = serde_json::from_str(&fixture("split.json")).unwrap();
    let test: BTreeSet<&str> = split["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let wordnet = common::wordnet();
    with_cosines("pairs.jsonl")
        .into_iter()
        .map(|(v, cosine)| {
            let (a, b) = (v["a"].as_str().unwrap(), v["b"].as_str().unwrap());
            Pair {
                class: v["class"].as_str().unwrap().to_string(),
                hit: v["expect"] == "hit",
                test_half: test.contains(v["template"].as_str().unwrap()),
                cosine,
                refused: refused(a, b, &wordnet),
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
        tested.precision() >= TEST_GOAL.0 && tested.recall() >= TEST_GOAL.1,
        "test half at {RECOMMENDED}: precision {:.3}, recall {:.3}",
        tested.precision(),
        tested.recall()
    );
}

/// The development pairs (tuning material: every error is printed), written after the first
/// test-half report for the classes where wrong hits remained (direction, tense, age and dose,
/// time), without looking at the test half's pairs.
#[test]
fn development_pairs() {
    let wordnet = common::wordnet();
    let mut predictions = Vec::new();
    for (v, cosine) in with_cosines("dev.jsonl") {
        let (a, b) = (v["a"].as_str().unwrap(), v["b"].as_str().unwrap());
        let hit = v["expect"] == "hit";
        let why = refused(a, b, &wordnet);
        let predicted = cosine >= RECOMMENDED && why.is_none();
        if predicted != hit {
            println!(
                "  {} [{}] cos {cosine:.3} refused {why:?}: {a:?} / {b:?}",
                if hit { "FN" } else { "FP" },
                v["class"].as_str().unwrap()
            );
        }
        predictions.push((predicted, hit));
    }
    let dev = Score::of(predictions);
    println!(
        "development pairs at {RECOMMENDED:.2}: precision {:.3}, recall {:.3} (fp {})",
        dev.precision(),
        dev.recall(),
        dev.fp
    );
    // two known wrong hits: a pronoun that changes roles ("owes us" / "do we owe") and a swap
    // across a comma ("who should the patient notify, the GP or ...")
    assert!(dev.fp <= 2, "{} wrong hits", dev.fp);
    assert!(dev.recall() >= 0.75, "recall {:.3}", dev.recall());
}
