//! Content-guard benchmarks.
//!
//! * `scan/*`: whole-text prompt scanning throughput (MB/s) of the seed
//!   configuration (`config/seed/ai-gateway.yaml`: two block rules, one allow
//!   rule) and of the seed plus every built-in detector, on clean business
//!   prose of 1 KB and 64 KB (no match: the common case), with and without
//!   allow-list words sprinkled in.
//! * `stream/*`: cost per streamed chunk of a 4 KB clean answer pushed in
//!   chunks of 4, 8 and 16 bytes (the reported time is total / chunks).
//!
//! Targets: >= 200 MB/s prompt scanning with the seed patterns, <= 5 µs
//! added per streamed chunk.
//!
//! `cargo bench --bench guard -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airgate::guard::{
    Action, AuditLevel, GuardLimits, PatternSet, RuleSpec, ScanOutcome, StreamScanner, StreamStep,
    DETECTORS,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// The seed's `contentGuard` rules.
fn seed_rules() -> (Vec<RuleSpec>, Vec<RuleSpec>) {
    let block = vec![
        RuleSpec::from_regex("(?i)(confidential|internal-only|secret)", Action::Block)
            .level(AuditLevel::High),
        RuleSpec::from_regex(r"(?i)(ssn|credit[\s-]?card|password)", Action::Block)
            .level(AuditLevel::Critical),
    ];
    let allow = vec![RuleSpec::from_regex(
        "(?i)(public|general|approved)",
        Action::Allow,
    )];
    (block, allow)
}

fn seed_set() -> PatternSet {
    let (block, allow) = seed_rules();
    PatternSet::compile(&block, &allow, GuardLimits::default()).expect("seed compiles")
}

fn seed_with_detectors_set() -> PatternSet {
    let (mut block, allow) = seed_rules();
    block.extend(
        DETECTORS
            .iter()
            .map(|d| RuleSpec::from_detector(*d, Action::Block)),
    );
    PatternSet::compile(&block, &allow, GuardLimits::default()).expect("detectors compile")
}

/// Business-prose vocabulary free of every rule's trigger words (and of the
/// allow words, which are added separately).
const WORDS: &[&str] = &[
    "the",
    "team",
    "reviewed",
    "quarterly",
    "revenue",
    "forecast",
    "and",
    "agreed",
    "to",
    "prioritize",
    "customer",
    "retention",
    "across",
    "all",
    "regions",
    "our",
    "pipeline",
    "shows",
    "steady",
    "growth",
    "in",
    "enterprise",
    "accounts",
    "while",
    "marketing",
    "spend",
    "remained",
    "flat",
    "compared",
    "with",
    "last",
    "year",
    "please",
    "summarize",
    "the",
    "key",
    "risks",
    "for",
    "next",
    "planning",
    "cycle",
    "including",
    "supply",
    "chain",
    "delays",
    "hiring",
    "targets",
    "vendor",
    "contracts",
    "renewal",
    "dates",
    "a",
    "draft",
    "proposal",
    "should",
    "outline",
    "budget",
    "options",
    "of",
    "operating",
    "margin",
    "improvements",
    "by",
    "product",
    "line",
    "meeting",
    "notes",
    "from",
    "Tuesday",
    "highlight",
    "open",
    "questions",
    "about",
    "pricing",
    "tiers",
    "discount",
    "policy",
    "onboarding",
    "timeline",
    "support",
    "tickets",
    "escalations",
    "response",
    "times",
    "improved",
    "after",
    "the",
    "migration",
    "we",
    "expect",
    "partners",
    "to",
    "confirm",
    "volumes",
    "before",
    "Friday",
    "could",
    "you",
    "rewrite",
    "this",
    "update",
    "as",
    "an",
    "email",
    "to",
    "stakeholders",
    "with",
    "clear",
    "action",
    "items",
];

const NUMBERS: &[&str] = &[
    "3", "12", "48", "2024", "7.5%", "$1,200", "Q3", "150", "9", "31",
];

/// Deterministic filler prose of exactly `len` bytes (ASCII). With
/// `allow_word`, "approved" / "public" / "general" appear every ~200 bytes.
fn prose(len: usize, allow_word: bool) -> String {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let allow_words = ["approved", "public", "general"];
    let mut out = String::with_capacity(len + 64);
    let mut since_allow = 0usize;
    while out.len() < len {
        let words = 8 + (next() % 10) as usize;
        for w in 0..words {
            let r = next();
            let word = if allow_word && since_allow >= 200 {
                since_allow = 0;
                allow_words[(r % 3) as usize]
            } else if r % 11 == 0 {
                NUMBERS[((r >> 8) % NUMBERS.len() as u64) as usize]
            } else {
                WORDS[((r >> 8) % WORDS.len() as u64) as usize]
            };
            if w == 0 {
                let mut c = word.chars();
                if let Some(f) = c.next() {
                    out.extend(f.to_uppercase());
                    out.push_str(c.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(word);
            }
            since_allow += word.len() + 1;
        }
        out.push_str(if next() % 5 == 0 { ".\n\n" } else { ". " });
    }
    out.truncate(len);
    out
}

/// Checks the bench text really is the no-match case.
fn assert_clean(set: &PatternSet, text: &str) {
    match set.scan(text, &mut set.budget()) {
        ScanOutcome::Clean { findings, redacted } if findings.is_empty() && redacted.is_none() => {}
        other => panic!("bench text is not clean: {other:?}"),
    }
}

fn bench_scan(c: &mut Criterion) {
    let sets = [
        ("seed", seed_set()),
        ("seed+detectors", seed_with_detectors_set()),
    ];
    let mut group = c.benchmark_group("scan");
    group.sample_size(10);
    for (name, set) in &sets {
        for (size_name, size) in [("1KB", 1024usize), ("64KB", 64 * 1024)] {
            for allow_word in [false, true] {
                let text = prose(size, allow_word);
                assert_clean(set, &text);
                let id = if allow_word {
                    format!("{name}/allow-words")
                } else {
                    format!("{name}/clean")
                };
                group.throughput(Throughput::Bytes(text.len() as u64));
                group.bench_with_input(BenchmarkId::new(id, size_name), &text, |b, text| {
                    b.iter(|| {
                        let mut budget = set.budget();
                        black_box(set.scan(black_box(text), &mut budget))
                    })
                });
            }
        }
    }
    group.finish();
}

/// Pushes `chunks` through a fresh scanner; returns the time spent in
/// `push`/`finish` only (scanner creation excluded).
fn stream_once(set: &Arc<PatternSet>, chunks: &[&str]) -> Duration {
    let mut sc = StreamScanner::new(Arc::clone(set), set.budget());
    let t0 = Instant::now();
    for chunk in chunks {
        match sc.push(black_box(chunk)) {
            StreamStep::Release(t) => {
                black_box(t);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    black_box(sc.finish());
    t0.elapsed()
}

fn bench_stream(c: &mut Criterion) {
    let sets = [
        ("seed", Arc::new(seed_set())),
        ("seed+detectors", Arc::new(seed_with_detectors_set())),
    ];
    let answer = prose(4096, false);
    let mut group = c.benchmark_group("stream_per_chunk");
    group.sample_size(10);
    for (name, set) in &sets {
        assert_clean(set, &answer);
        for chunk_len in [4usize, 8, 16] {
            let chunks: Vec<&str> = answer
                .as_bytes()
                .chunks(chunk_len)
                .map(|c| std::str::from_utf8(c).expect("ASCII prose"))
                .collect();
            let n = chunks.len() as u32;
            group.bench_with_input(
                BenchmarkId::new(*name, format!("{chunk_len}B")),
                &chunks,
                |b, chunks| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += stream_once(set, chunks);
                        }
                        // Reported time = time per chunk.
                        total / n
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_scan, bench_stream);
criterion_main!(benches);
