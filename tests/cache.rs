//! SemanticCache behaviour: scopes, TTL, LRU by bytes, tombstone rebuilds, concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use airgate::cache::{
    entry_bytes, scope_key, CacheSettings, ScopeKey, SemanticCache, DIMENSION, HNSW_MIN_ENTRIES,
    REBUILD_SHARE,
};
use bytes::Bytes;
use serde_json::{json, Value};

fn settings(ttl: Duration, max_bytes: u64, verify: bool) -> CacheSettings {
    CacheSettings {
        ttl,
        similarity_threshold: 0.80,
        max_bytes,
        verify,
    }
}

fn cache(s: CacheSettings) -> SemanticCache {
    SemanticCache::new(s, common::embedder())
}

fn key(body: Value, user: Option<&str>) -> (ScopeKey, String) {
    scope_key("gw", body.as_object().unwrap(), user).unwrap()
}

fn chat(system: &str, model: &str, temperature: f64, question: &str) -> Value {
    json!({"model": model, "temperature": temperature, "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": question}]})
}

/// Deterministic pseudo-random unit vectors.
fn unit_vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            let mut v: Vec<f32> = (0..DIMENSION)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                })
                .collect();
            let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            v.iter_mut().for_each(|a| *a /= n);
            v
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paraphrase_hits_and_scopes_are_isolated() {
    let c = cache(settings(Duration::from_secs(60), 1 << 20, true));
    let (k, text) = key(
        chat("You are HR.", "m", 0.2, "How do I reset my password?"),
        None,
    );
    c.store(k, &text, Bytes::from_static(b"{\"a\":1}"))
        .await
        .unwrap();

    let hit = c
        .lookup(&k, "I forgot my password, how can I reset it?")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hit.response, Bytes::from_static(b"{\"a\":1}"));
    assert!(
        hit.similarity >= 0.80 && hit.similarity < 1.0,
        "{}",
        hit.similarity
    );
    let exact = c
        .lookup(&k, "How do I reset my password?")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exact.similarity, 1.0);

    let q = "How do I reset my password?";
    for other in [
        key(chat("You are IT.", "m", 0.2, q), None).0,
        key(chat("You are HR.", "m2", 0.2, q), None).0,
        key(chat("You are HR.", "m", 0.9, q), None).0,
        key(chat("You are HR.", "m", 0.2, q), Some("alice")).0,
        scope_key(
            "gw2",
            chat("You are HR.", "m", 0.2, q).as_object().unwrap(),
            None,
        )
        .unwrap()
        .0,
    ] {
        assert_ne!(other, k);
        assert!(c.lookup(&other, q).await.unwrap().is_none());
    }
    // user scope: alice's entry is not bob's
    let (ka, _) = key(chat("You are HR.", "m", 0.2, q), Some("alice"));
    let (kb, _) = key(chat("You are HR.", "m", 0.2, q), Some("bob"));
    c.store(ka, q, Bytes::from_static(b"alice")).await.unwrap();
    assert!(c.lookup(&kb, q).await.unwrap().is_none());
    assert_eq!(
        c.lookup(&ka, q).await.unwrap().unwrap().response,
        Bytes::from_static(b"alice")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_rejects_a_different_order_number() {
    for (verify, expect_hit) in [(true, false), (false, true)] {
        let mut s = settings(Duration::from_secs(60), 1 << 20, verify);
        s.similarity_threshold = 0.95;
        let c = cache(s);
        let (k, text) = key(
            chat("ops", "m", 0.0, "Approve the refund for order 48213"),
            None,
        );
        c.store(k, &text, Bytes::from_static(b"ok")).await.unwrap();
        let hit = c
            .lookup(&k, "Approve the refund for order 48214")
            .await
            .unwrap();
        assert_eq!(hit.is_some(), expect_hit, "verify {verify}");
        assert_eq!(c.stats().rejected, u64::from(verify));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_are_never_served() {
    let c = cache(settings(Duration::from_millis(300), 1 << 20, true));
    let (k, text) = key(
        chat("s", "m", 0.0, "What is the dress code at the office?"),
        None,
    );
    c.store(k, &text, Bytes::from_static(b"x")).await.unwrap();
    assert!(c
        .lookup(&k, "What is the office dress code?")
        .await
        .unwrap()
        .is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(c
        .lookup(&k, "What is the office dress code?")
        .await
        .unwrap()
        .is_none());
    assert!(c.lookup(&k, &text).await.unwrap().is_none());
    let st = c.stats();
    assert_eq!(
        (st.entries, st.bytes, st.expirations, st.scopes),
        (0, 0, 1, 0)
    );
}

#[test]
fn lru_eviction_by_bytes() {
    let response = Bytes::from(vec![b'x'; 1000]);
    let per = entry_bytes("entry 0", &response);
    let c = cache(settings(Duration::from_secs(60), 3 * per, false));
    let k = ScopeKey([7; 32]);
    let vs = unit_vectors(4, 1);
    for (i, v) in vs.iter().enumerate().take(3) {
        c.store_embedded(k, &format!("entry {i}"), v.clone(), response.clone());
    }
    assert_eq!(c.stats().entries, 3);
    assert_eq!(c.stats().bytes, 3 * per);
    // use entry 0, so entry 1 is the least recently used
    assert!(c.lookup_embedded(&k, "entry 0", &vs[0]).is_some());
    c.store_embedded(k, "entry 3", vs[3].clone(), response.clone());
    let st = c.stats();
    assert_eq!((st.entries, st.evictions), (3, 1));
    assert!(st.bytes <= 3 * per);
    assert!(
        c.lookup_embedded(&k, "other", &vs[1]).is_none(),
        "entry 1 should be evicted"
    );
    for i in [0, 2, 3] {
        let hit = c.lookup_embedded(&k, "other", &vs[i]).unwrap();
        assert!(hit.similarity > 0.999);
    }
    // an entry larger than the whole budget is not stored
    c.store_embedded(
        k,
        "big",
        vs[0].clone(),
        Bytes::from(vec![b'x'; 4 * per as usize]),
    );
    assert_eq!(c.stats().entries, 3);
}

fn wait_for(c: &SemanticCache, what: &str, f: impl Fn(&SemanticCache) -> bool) {
    let start = Instant::now();
    while !f(c) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}: {:?}",
            c.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn tombstones_trigger_a_background_rebuild() {
    let response = Bytes::from_static(b"r");
    let per = entry_bytes("entry 000", &response);
    let capacity = 100u64;
    let c = cache(settings(Duration::from_secs(60), capacity * per, false));
    let k = ScopeKey([9; 32]);
    let vs = unit_vectors(200, 2);
    for (i, v) in vs.iter().enumerate().take(HNSW_MIN_ENTRIES) {
        c.store_embedded(k, &format!("entry {i:03}"), v.clone(), response.clone());
    }
    wait_for(&c, "index build", |c| c.stats().rebuilds >= 1);
    // 136 more: 100 fit, so 100 are evicted in LRU order -> tombstones -> rebuilds
    for (i, v) in vs.iter().enumerate().skip(HNSW_MIN_ENTRIES) {
        c.store_embedded(k, &format!("entry {i:03}"), v.clone(), response.clone());
    }
    let st = c.stats();
    assert_eq!(st.entries, 100);
    assert_eq!(st.evictions, 100);
    wait_for(&c, "rebuild", |c| c.stats().rebuilds >= 2);
    // The share is of the index's points (live entries and tombstones), as the index counts
    // it: 25 tombstones beside 100 live entries are exactly at the share, not over it.
    wait_for(&c, "tombstones under the share", |c| {
        let s = c.stats();
        (s.tombstones as f64) <= REBUILD_SHARE * (s.entries + s.tombstones) as f64
    });
    // every live entry is found through the rebuilt index, no evicted one is
    for (i, v) in vs.iter().enumerate() {
        let hit = c.lookup_embedded(&k, "query", v);
        if i < 100 {
            assert!(
                hit.is_none_or(|h| h.similarity < 0.99),
                "evicted entry {i} served"
            );
        } else {
            assert!(
                hit.is_some_and(|h| h.similarity > 0.999),
                "live entry {i} not found"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_stores_make_one_entry() {
    let c = Arc::new(cache(settings(Duration::from_secs(60), 1 << 20, true)));
    let (k, text) = key(chat("s", "m", 0.0, "How do I book a meeting room?"), None);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let c = c.clone();
            let text = text.clone();
            tokio::spawn(async move { c.store(k, &text, Bytes::from(format!("{i}"))).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(c.stats().entries, 1);
    // and concurrent different prompts are all stored
    let prompts: [&'static str; 4] = [
        "a question about vpn",
        "a question about payroll",
        "a question about laptops",
        "a question about badges",
    ];
    let tasks: Vec<_> = prompts
        .into_iter()
        .map(|p| {
            let c = c.clone();
            tokio::spawn(async move { c.store(k, p, Bytes::from_static(b"x")).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(c.stats().entries, 5);
}
