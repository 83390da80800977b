//! The embedder against sentence-transformers' own vectors (tests/fixtures/minilm_reference.json).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use airgate::cache::{CacheError, Embedder, DIMENSION};
use common::{cosine, embedder};

struct Item {
    text: String,
    embedding: Vec<f32>,
}

fn reference() -> Vec<Item> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_reference.json"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| Item {
            text: it["text"].as_str().unwrap().to_string(),
            embedding: it["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

const MIN_COSINE: f32 = 0.9999;

fn check(label: &str, items: &[Item], got: &[Vec<f32>]) -> f32 {
    assert_eq!(items.len(), got.len());
    let mut min = f32::MAX;
    for (it, v) in items.iter().zip(got) {
        assert_eq!(v.len(), DIMENSION);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{label}: not normalised: {norm}");
        let c = cosine(v, &it.embedding);
        assert!(c >= MIN_COSINE, "{label}: cosine {c} for {:?}", it.text);
        min = min.min(c);
    }
    eprintln!("{label}: min cosine {min:.7} over {} texts", items.len());
    min
}

#[test]
fn alone_matches_reference() {
    let e = embedder();
    let items = reference();
    let got: Vec<Vec<f32>> = items
        .iter()
        .map(|it| {
            e.embed_batch_blocking(&[it.text.as_str()])
                .unwrap()
                .remove(0)
        })
        .collect();
    check("alone", &items, &got);
}

#[test]
fn batched_texts_match_reference() {
    let e = embedder();
    let items = reference();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    // One batch with everything (texts of 3 to 256 tokens stacked, unpadded) ...
    let all = e.embed_batch_blocking(&texts).unwrap();
    check("one batch of 14", &items, &all);
    // ... and batches of 4 as the reference was made, in reverse order.
    let mut rev: Vec<&str> = texts.clone();
    rev.reverse();
    let mut got = Vec::new();
    for chunk in rev.chunks(4) {
        got.extend(e.embed_batch_blocking(chunk).unwrap());
    }
    got.reverse();
    check("batches of 4, reversed", &items, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_embeds_are_batched_and_match() {
    // its own instance, so the batch counters see only this test
    let e = std::sync::Arc::new(Embedder::load(&common::model_dir(), 1, 16).unwrap());
    let items = reference();
    let tasks: Vec<_> = items
        .iter()
        .map(|it| {
            let e = e.clone();
            let t = it.text.clone();
            tokio::spawn(async move { e.embed(t).await })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap().unwrap());
    }
    check("concurrent async", &items, &got);
    let after = e.stats();
    let (batches, texts) = (after.batches, after.texts);
    eprintln!("14 concurrent embeds ran as {batches} batches");
    assert!(
        texts >= 14 && batches < texts,
        "no batching: {batches} batches for {texts} texts"
    );
}

#[test]
fn missing_model_says_how_to_fetch() {
    let dir = std::env::temp_dir().join("airgate-no-model-here");
    let err = Embedder::load(&dir, 1, 4).unwrap_err();
    assert!(matches!(err, CacheError::Model { .. }));
    assert!(err.to_string().contains("models/fetch.sh"), "{err}");
}

#[test]
fn corrupt_model_says_how_to_fetch() {
    let dir = std::env::temp_dir().join(format!("airgate-corrupt-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = common::model_dir();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("model.safetensors"), b"not a safetensors file").unwrap();
    let err = Embedder::load(&dir, 1, 4).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    assert!(err.to_string().contains("models/fetch.sh"), "{err}");
}
