//! Content-guard benchmarks.
//!
//! * `scan/*`: whole-text prompt scanning throughput (MB/s) of the seed
//!   configuration (`config/seed/ai-gateway.yaml`: two block rules, one allow
//!   rule) and of the seed plus every built-in detector, on clean business
//!   prose of 1 KB and 64 KB (no match: the common case), with and without
//!   allow-list words sprinkled in.
//! * `stream/*`: cost per streamed chunk of a 4 KB clean answer pushed in
//!   chunks of 4, 8 and 16 bytes (the reported time is total / chunks).
//! * `prompt/*`: the prompt scan (normalised views, seams) against the raw
//!   scan of the same text in the same run, seed plus detectors: clean ASCII
//!   prose (1 KB, 64 KB), prose full of non-ASCII (accents, Cyrillic, CJK,
//!   fullwidth, emoji with variation selectors, zero-width characters), and a
//!   chat request of 8 messages with two tools (raw = each text scanned on its
//!   own, as the prompt guard did before).
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
    Action, AuditLevel, GuardLimits, PatternSet, Prompt, PromptOutcome, RuleSpec, ScanOutcome,
    StreamScanner, StreamStep, TextKind, DETECTORS,
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

/// `prose` with every fourth word replaced by non-ASCII text that matches no rule.
fn non_ascii_prose(len: usize) -> String {
    const FOREIGN: &[&str] = &[
        "café",
        "naïve",
        "Zürich",
        "Привет",
        "東京の天気",
        "❤\u{fe0f}",
        "ｆｕｌｌ",
        "con\u{200b}tract",
        "résumé",
        "Ωμέγα",
        "👩\u{200d}💻",
        "e\u{301}te\u{301}",
    ];
    let mut out = String::with_capacity(len + 64);
    for (i, word) in prose(len, false).split(' ').enumerate() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(if i % 4 == 3 {
            FOREIGN[(i / 4) % FOREIGN.len()]
        } else {
            word
        });
        if out.len() >= len {
            break;
        }
    }
    out
}

/// A chat request's texts: a system prompt, 7 turns of ~500 bytes, and two tools with a
/// JSON schema each (names, descriptions, keys, enum values).
fn chat_request() -> Vec<(String, TextKind)> {
    let mut texts = vec![(prose(300, false), TextKind::Prose)];
    for turn in 0..7 {
        texts.push((format!("user{turn}"), TextKind::Field));
        texts.push((prose(480 + turn * 7, turn % 2 == 0), TextKind::Prose));
    }
    for (name, props) in [
        ("lookup_order", ["order_id", "region", "currency"]),
        ("schedule_meeting", ["attendees", "start_time", "agenda"]),
    ] {
        texts.push((name.to_string(), TextKind::Field));
        texts.push((prose(160, false), TextKind::Field));
        for word in ["type", "object", "properties"] {
            texts.push((word.to_string(), TextKind::Field));
        }
        for prop in props {
            texts.push((prop.to_string(), TextKind::Field));
            texts.push(("type".to_string(), TextKind::Field));
            texts.push(("string".to_string(), TextKind::Field));
            texts.push(("description".to_string(), TextKind::Field));
            texts.push((prose(60, false), TextKind::Field));
        }
    }
    texts
}

fn prompt_of(texts: &[(String, TextKind)]) -> Prompt {
    let mut p = Prompt::new();
    for (t, k) in texts {
        p.push(t, *k);
    }
    p
}

fn assert_prompt_clean(set: &PatternSet, p: &Prompt) {
    match set.scan_prompt(p, &mut set.budget()) {
        PromptOutcome::Clean { findings, redacted }
            if findings.is_empty() && redacted.is_empty() => {}
        other => panic!("bench prompt is not clean: {other:?}"),
    }
}

fn bench_prompt(c: &mut Criterion) {
    let set = seed_with_detectors_set();
    let mut group = c.benchmark_group("prompt");
    group.sample_size(10);
    let cases = [
        ("ascii", "1KB", prose(1024, false)),
        ("ascii", "64KB", prose(64 * 1024, false)),
        ("non-ascii", "1KB", non_ascii_prose(1024)),
        ("non-ascii", "64KB", non_ascii_prose(64 * 1024)),
    ];
    for (kind, size, text) in &cases {
        assert_clean(&set, text);
        let p = prompt_of(&[(text.clone(), TextKind::Prose)]);
        assert_prompt_clean(&set, &p);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("{kind}/raw"), size),
            text,
            |b, t| b.iter(|| black_box(set.scan(black_box(t), &mut set.budget()))),
        );
        group.bench_with_input(
            BenchmarkId::new(format!("{kind}/prompt"), size),
            &p,
            |b, p| b.iter(|| black_box(set.scan_prompt(black_box(p), &mut set.budget()))),
        );
    }
    let texts = chat_request();
    let bytes: usize = texts.iter().map(|(t, _)| t.len()).sum();
    for (t, _) in &texts {
        assert_clean(&set, t);
    }
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(
        BenchmarkId::new("chat+tools/raw", format!("{}texts", texts.len())),
        |b| {
            b.iter(|| {
                let mut budget = set.budget();
                for (t, _) in &texts {
                    black_box(set.scan(black_box(t), &mut budget));
                }
            })
        },
    );
    group.bench_function(
        BenchmarkId::new("chat+tools/prompt", format!("{}texts", texts.len())),
        |b| {
            b.iter(|| {
                // Building the joined prompt is part of the cost.
                let p = prompt_of(black_box(&texts));
                black_box(set.scan_prompt(&p, &mut set.budget()))
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench_scan, bench_stream, bench_prompt);
criterion_main!(benches);
