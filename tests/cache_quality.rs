//! Precision and recall of the semantic match on tests/fixtures/cache_pairs.jsonl, with and
//! without the verification step. `cargo test --test cache_quality -- --nocapture` prints it.
//!
//! A pair counts as predicted hit when cosine >= threshold (and, with verification, when
//! `verify::Signature` finds no differing answer-changing token). Precision = correct hits /
//! predicted hits; recall = correct hits / pairs that should hit.
//! Fails when, at [`GATE_THRESHOLD`] with verification, precision < 0.98 or recall falls below
//! [`RECALL_FLOOR`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use airgate::cache::{refusal, Signature};
use common::quality::Score;

/// The threshold the fixture is gated at (the recommendation, chosen on the tuning half of
/// tests/fixtures/cache_eval; see tests/cache_eval.rs).
const GATE_THRESHOLD: f32 = 0.90;
/// Recall floor on this set. It fell from 0.93 to 0.45 when verification began to require the
/// differing words to be synonyms: its paraphrases are loose ("vacation days" / "paid time
/// off"). The floor catches a further fall; precision is the promise.
const RECALL_FLOOR: f64 = 0.40;

struct Pair {
    a: String,
    b: String,
    hit: bool,
    kind: String,
    holdout: bool,
    cosine: f32,
    verified: bool,
    reason: Option<&'static str>,
}

fn score(pairs: &[&Pair], threshold: f32, verify: bool) -> Score {
    Score::of(
        pairs
            .iter()
            .map(|p| (p.cosine >= threshold && (!verify || p.verified), p.hit)),
    )
}

/// Prints the precision/recall table (run with `--nocapture` to see it) and gates it.
#[test]
fn precision_and_recall_on_the_labelled_pairs() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cache_pairs.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let e = common::embedder();
    let wordnet = common::wordnet();
    let mut pairs = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let a = v["a"].as_str().unwrap().to_string();
        let b = v["b"].as_str().unwrap().to_string();
        let vs = e.embed_batch_blocking(&[&a, &b]).unwrap();
        let reason = refusal(
            &a,
            &Signature::of(&a),
            &b,
            &Signature::of(&b),
            Some(&wordnet),
        );
        pairs.push(Pair {
            cosine: common::cosine(&vs[0], &vs[1]),
            verified: reason.is_none(),
            reason,
            hit: v["expect"] == "hit",
            kind: v["kind"].as_str().unwrap().to_string(),
            holdout: v["split"] == "holdout",
            a,
            b,
        });
    }
    let positives = pairs.iter().filter(|p| p.hit).count();
    println!(
        "pairs: {} ({} should hit, {} must miss)",
        pairs.len(),
        positives,
        pairs.len() - positives
    );

    let all: Vec<&Pair> = pairs.iter().collect();
    let dev: Vec<&Pair> = pairs.iter().filter(|p| !p.holdout).collect();
    let holdout: Vec<&Pair> = pairs.iter().filter(|p| p.holdout).collect();
    let mut gate = Score::default();
    for (name, set) in [
        ("dev", &dev),
        (
            "holdout (written after the rules were tuned on dev)",
            &holdout,
        ),
        ("all", &all),
    ] {
        let n_hit = set.iter().filter(|p| p.hit).count();
        println!(
            "\n== {name}: {} pairs ({} hit, {} miss)",
            set.len(),
            n_hit,
            set.len() - n_hit
        );
        gate = report(set);
    }

    println!("\nsweep over all (threshold: precision/recall without | with verification)");
    for i in (70..=98).step_by(2) {
        let t = i as f32 / 100.0;
        let (s0, s1) = (score(&all, t, false), score(&all, t, true));
        println!(
            "  {t:.2}: {:.3}/{:.3} | {:.3}/{:.3}",
            s0.precision(),
            s0.recall(),
            s1.precision(),
            s1.recall()
        );
    }
    let pairs = &all;
    let _ = positives;
    let mut by_kind: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for p in pairs.iter() {
        let k = by_kind.entry(p.kind.as_str()).or_default();
        k.0 += 1;
        if p.cosine >= GATE_THRESHOLD {
            k.1 += 1;
            if p.verified {
                k.2 += 1;
            }
        }
    }
    println!("\nby kind at {GATE_THRESHOLD}: pairs / above threshold / above and verified");
    for (k, (n, above, ok)) in &by_kind {
        println!("  {k:<10} {n:>3} {above:>3} {ok:>3}");
    }
    println!("\nerrors at {GATE_THRESHOLD} with verification:");
    for p in pairs.iter() {
        let predicted = p.cosine >= GATE_THRESHOLD && p.verified;
        if predicted != p.hit {
            println!(
                "  {} [{}] cos {:.3} reason {:?}: {:?} / {:?}",
                if p.hit { "FN" } else { "FP" },
                p.kind,
                p.cosine,
                p.reason,
                p.a,
                p.b
            );
        }
    }
    let mut cos: Vec<f32> = pairs
        .iter()
        .filter(|p| !p.hit && p.kind != "topic")
        .map(|p| p.cosine)
        .collect();
    cos.sort_by(f32::total_cmp);
    println!(
        "\nnear misses (not 'topic') cosine: min {:.3} median {:.3}",
        cos[0],
        cos[cos.len() / 2]
    );

    assert!(
        gate.precision() >= 0.98 && gate.recall() >= RECALL_FLOOR,
        "at {GATE_THRESHOLD} with verification: precision {:.3}, recall {:.3}",
        gate.precision(),
        gate.recall()
    );
}

fn report(pairs: &[&Pair]) -> Score {
    let row = |label: &str, t: f32, verify: bool| {
        let s = score(pairs, t, verify);
        println!(
            "{label:<34} threshold {t:.2}  precision {:.3}  recall {:.3}  (tp {} fp {} fn {})",
            s.precision(),
            s.recall(),
            s.tp,
            s.fp,
            s.fn_
        );
        s
    };
    let best = |verify: bool| {
        // best recall with precision >= 0.98, else best F1
        let mut best: Option<(f32, Score)> = None;
        for i in 50..=99 {
            let t = i as f32 / 100.0;
            let s = score(pairs, t, verify);
            let rank = |s: &Score| {
                let f1 = 2.0 * s.precision() * s.recall() / (s.precision() + s.recall()).max(1e-9);
                if s.precision() >= 0.98 {
                    (1, s.recall())
                } else {
                    (0, f1)
                }
            };
            let better = best.is_none_or(|(_, b)| rank(&s) > rank(&b));
            if better {
                best = Some((t, s));
            }
        }
        best.map_or(0.95, |b| b.0)
    };
    row("cosine only", 0.95, false);
    row("cosine + verification", 0.95, true);
    let b0 = best(false);
    let b1 = best(true);
    row("cosine only, best threshold", b0, false);
    row("cosine + verification, best", b1, true);
    row("cosine + verification, gate", GATE_THRESHOLD, true)
}
