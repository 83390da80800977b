//! Embedding latency (single vs batch of 8), verification of one candidate, and search latency
//! at 10k entries. `cargo bench --bench cache` (needs models/fetch.sh and models/fetch-wordnet.sh). Kept short: 10 samples, 2 s each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airgate::cache::wordnet::WordNet;
use airgate::cache::{
    refusal, CacheSettings, Embedder, ScopeKey, SemanticCache, Signature, DIMENSION,
};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};

fn model_dir() -> PathBuf {
    std::env::var_os("AIRGATE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2")
        })
}

fn rng(x: &mut u64) -> f32 {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
}

/// Unit vectors of low intrinsic dimension (a 32-d latent space mapped into 384-d, plus a
/// little noise), closer to sentence embeddings than uniform random vectors, on which any
/// HNSW degrades towards a full scan.
fn unit_vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut b = 12345u64;
    let basis: Vec<Vec<f32>> = (0..32)
        .map(|_| (0..DIMENSION).map(|_| rng(&mut b)).collect())
        .collect();
    let mut x = seed;
    (0..n)
        .map(|_| {
            let z: Vec<f32> = (0..32).map(|_| rng(&mut x)).collect();
            let mut v: Vec<f32> = (0..DIMENSION)
                .map(|d| {
                    z.iter().zip(&basis).map(|(a, r)| a * r[d]).sum::<f32>() + 0.01 * rng(&mut x)
                })
                .collect();
            let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            v.iter_mut().for_each(|a| *a /= n);
            v
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

const TEXTS: [&str; 8] = [
    "How do I reset my password?",
    "What is the refund policy for annual subscriptions?",
    "How do I connect to the VPN from home?",
    "Approve the refund for order 48213",
    "Schedule a meeting with the sales team at 9 am on Monday",
    "What was the revenue in Q3 2024?",
    "How do I restart a pod in Kubernetes?",
    "Summarize the key points of our data retention policy.",
];

const PROMPT_20: &str =
    "Could you explain how to reset my corporate VPN password while travelling abroad this week?";
const PARAGRAPH: &str = "Our data retention policy requires that customer records are kept for seven years after the end of the contract, that backups are encrypted at rest, and that any request to delete personal data is answered within thirty days by the privacy team. ";

fn benches(c: &mut Criterion) {
    let embedder = Arc::new(Embedder::load(&model_dir(), 1, 8).unwrap());
    let mut g = c.benchmark_group("embed");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    // Prompts of about 20 and 200 tokens ([CLS] and [SEP] included), as the issue asks.
    let long = PARAGRAPH.repeat(4);
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(model_dir().join("tokenizer.json")).unwrap();
    tokenizer.with_padding(None).with_truncation(None).unwrap();
    for (name, text) in [
        ("single_9_tokens", TEXTS[0]),
        ("single_20_tokens", PROMPT_20),
        ("single_200_tokens", long.as_str()),
    ] {
        let tokens = tokenizer.encode(text, true).unwrap().get_ids().len();
        eprintln!("{name}: {tokens} tokens");
        g.bench_function(name, |b| {
            b.iter(|| embedder.embed_batch_blocking(&[text]).unwrap())
        });
    }
    g.bench_function("batch_of_8", |b| {
        b.iter(|| embedder.embed_batch_blocking(&TEXTS).unwrap())
    });
    g.finish();

    // Verification of one candidate: the signature check and the direction check alone, then
    // with the WordNet word check the gateway runs too.
    let wordnet = Arc::new(WordNet::load(&airgate::cache::wordnet::default_dir()).unwrap());
    let mut g = c.benchmark_group("verify");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for (name, a, b) in [
        (
            "paraphrase",
            "How do I request a refund for a damaged item I ordered last week?",
            "Could you tell me how to request a refund for a damaged item I ordered last week?",
        ),
        (
            "near_miss",
            "Write an SQL query to select all users who signed up in March.",
            "Write an SQL query to delete all users who signed up in March.",
        ),
    ] {
        let (sa, sb) = (Signature::of(a), Signature::of(b));
        g.bench_function(format!("{name}_without_words"), |bench| {
            bench.iter(|| refusal(a, &sa, b, &sb, None))
        });
        g.bench_function(format!("{name}_with_words"), |bench| {
            bench.iter(|| refusal(a, &sa, b, &sb, Some(&wordnet)))
        });
    }
    g.finish();

    let cache = SemanticCache::with_words(
        CacheSettings {
            ttl: Duration::from_secs(3600),
            similarity_threshold: 0.8,
            max_bytes: 1 << 30,
            verify: true,
        },
        embedder,
        Some(wordnet),
    );
    let scope = ScopeKey([1; 32]);
    // AIRGATE_BENCH_ENTRIES=100000 for the 100k figure (about two minutes to fill).
    let entries: usize = std::env::var("AIRGATE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let vs = unit_vectors(entries, 42);
    let t = Instant::now();
    for (i, v) in vs.iter().enumerate() {
        cache.store_embedded(
            scope,
            &format!("stored prompt {i}"),
            v.clone(),
            Bytes::from(i.to_string()),
        );
    }
    while cache.stats().rebuilds == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "stored {entries} entries in {:?}; {:?}",
        t.elapsed(),
        cache.stats()
    );
    // recall@1 against brute force: a slightly perturbed copy of entry j must find entry j,
    // which is also the exact (brute-force) nearest neighbour of the query.
    let probes = 500.min(entries);
    let noise = unit_vectors(probes, 99);
    let mut found = 0;
    let mut exact = 0;
    for (p, n) in noise.iter().enumerate() {
        let j = (p * 7919) % entries;
        let mut q: Vec<f32> = vs[j].iter().zip(n).map(|(a, n)| a + 0.05 * n).collect();
        let norm = dot(&q, &q).sqrt();
        q.iter_mut().for_each(|x| *x /= norm);
        let best = vs
            .iter()
            .enumerate()
            .map(|(i, v)| (dot(v, &q), i))
            .fold((f32::MIN, 0), |a, b| if b.0 > a.0 { b } else { a })
            .1;
        exact += usize::from(best == j);
        let hit = cache.lookup_embedded(&scope, &format!("stored prompt {j}?"), &q);
        let expected = best.to_string();
        found += usize::from(hit.is_some_and(|h| h.response == expected.as_bytes()));
    }
    eprintln!(
        "recall@1 vs brute force over {probes} queries at {entries} entries: {:.3} (brute force found the source entry {exact} times)",
        found as f64 / probes as f64
    );
    let queries = unit_vectors(64, 7);
    let mut g = c.benchmark_group(format!("search_{entries}"));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_secs(1));
    let mut i = 0;
    g.bench_function("miss", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            cache.lookup_embedded(&scope, "a query", &queries[i])
        })
    });
    let mut j = 0;
    g.bench_function("hit", |b| {
        b.iter(|| {
            j = (j + 7) % vs.len();
            // not the identical text (that path skips the index), same numbers (passes verify)
            let hit = cache.lookup_embedded(&scope, &format!("stored prompt {j}?"), &vs[j]);
            assert!(hit.is_some());
            hit
        })
    });
    let mut k = 0;
    g.bench_function("exact_scan_for_comparison", |b| {
        b.iter(|| {
            k = (k + 1) % queries.len();
            vs.iter()
                .map(|v| dot(v, &queries[k]))
                .fold(f32::MIN, f32::max)
        })
    });
    g.finish();
}

criterion_group!(cache_benches, benches);
criterion_main!(cache_benches);
