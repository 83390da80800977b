//! Live configuration, on the real binary and a real folder: a ConfigMap-style symlink swap, an
//! in-place rewrite, SIGHUP, an invalid change kept out, a stream open across a reload, and
//! rate-limit state carried across one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use airgate_test_support::mock::{Fault, MockConfig, MockServer};
use common::process::GatewayProcess;
use serde_json::{json, Value};

/// Long enough for a loaded CI machine; the gateway's own target is 2 s.
const DEADLINE: Duration = Duration::from_secs(10);

/// A gateway `test/gw` serving `model` from `backend`, with `extra` appended to its spec.
fn gateway(model: &str, backend: &str, extra: &str) -> String {
    format!(
        "apiVersion: hub.traefik.io/v1alpha1\nkind: AIGateway\nmetadata:\n  name: gw\n  namespace: test\nspec:\n  backends:\n    - name: a\n      url: {backend}\n      models: [{model}]\n      timeout: 60s\n{extra}"
    )
}

async fn mock(inter_token_delay: Duration) -> MockServer {
    MockServer::start(MockConfig {
        inter_token_delay,
        ..MockConfig::default()
    })
    .await
    .unwrap()
}

/// The configured models `/v1/models` lists (`auto` aside).
async fn models(gw: &GatewayProcess) -> Vec<String> {
    let list: Value = reqwest::get(format!("{}/v1/models", gw.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .filter(|id| id != "auto")
        .collect()
}

/// Waits until `/v1/models` lists `model`; how long it took.
async fn wait_for_model(gw: &GatewayProcess, model: &str) -> Duration {
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        if models(gw).await.iter().any(|m| m == model) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{model} was not served within {DEADLINE:?}: {:?}\n{}",
        models(gw).await,
        gw.output()
    );
}

/// Waits until the audit log holds `n` events of `kind`; returns them.
async fn wait_for_audit(gw: &GatewayProcess, kind: &str, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let events: Vec<Value> = gw
            .lines("audit.jsonl")
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect();
        if events.len() >= n {
            return events;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{n} {kind} events not written: {events:?}\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of a metric sample line that starts with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Writes `yaml` as `dir/..{version}/gateway.yaml` and points `dir/..data` at it the way the
/// kubelet updates a mounted ConfigMap: a new symlink renamed over the old one.
fn configmap_version(dir: &Path, version: &str, yaml: &str) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("gateway.yaml"), yaml).unwrap();
    let staged = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    symlink(format!("..{version}"), &staged).unwrap();
    std::fs::rename(&staged, dir.join("..data")).unwrap();
    let visible = dir.join("gateway.yaml");
    if std::fs::symlink_metadata(&visible).is_err() {
        symlink("..data/gateway.yaml", &visible).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_swap_is_served_and_an_invalid_change_is_kept_out() {
    let backend = mock(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    configmap_version(&config, "v1", &gateway("model-a", &backend.url(), ""));
    let gw = GatewayProcess::start_at(dir, &config, &[]).await;
    assert_eq!(models(&gw).await, vec!["model-a"]);

    configmap_version(&config, "v2", &gateway("model-b", &backend.url(), ""));
    let took = wait_for_model(&gw, "model-b").await;
    println!("a ConfigMap swap served after {took:?}");
    assert_eq!(models(&gw).await, vec!["model-b"]);
    let applied = wait_for_audit(&gw, "config_applied", 2).await;
    assert_eq!(applied[0]["details"]["generation"], 1);
    assert_eq!(applied[1]["details"]["generation"], 2);
    assert_ne!(
        applied[0]["details"]["sha256"],
        applied[1]["details"]["sha256"]
    );

    // A pattern that does not compile: refused whole, the previous configuration serves on.
    let broken = gateway(
        "model-c",
        &backend.url(),
        "  contentGuard:\n    enabled: true\n    blockPatterns:\n      - {name: broken, regex: \"(unclosed\", action: block}\n",
    );
    configmap_version(&config, "v3", &broken);
    let rejected = wait_for_audit(&gw, "config_rejected", 1).await;
    assert!(
        rejected[0]["details"]["first_problem"]
            .as_str()
            .unwrap()
            .contains("spec.contentGuard.blockPatterns[0]"),
        "{}",
        rejected[0]
    );
    assert_eq!(models(&gw).await, vec!["model-b"]);
    // The same refused bytes are refused once, not at every poll (one per second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(wait_for_audit(&gw, "config_rejected", 1).await.len(), 1);
    // A reload compares the bytes before it parses them: the same digest as a full load.
    let loaded = airgate::config::load_path(&config).unwrap();
    assert_eq!(airgate::config::digest_path(&config), Some(loaded.digest));
    let ready = reqwest::get(format!("{}/readyz", gw.admin)).await.unwrap();
    assert_eq!(ready.status(), 200);
    let text = gw.metrics().await;
    assert_eq!(metric(&text, "airgate_config_generation "), Some(2.0));
    assert_eq!(
        metric(&text, "airgate_config_last_reload_success "),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "airgate_config_reloads_total{result=\"failure\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "airgate_config_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    assert!(
        gw.output().contains("spec.contentGuard.blockPatterns[0]"),
        "the refusal is logged with its field: {}",
        gw.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_rewrite_is_served_and_sighup_reloads_the_same_bytes() {
    let backend = mock(Duration::ZERO).await;
    let gw = GatewayProcess::start(&gateway("model-a", &backend.url(), ""), &[]).await;
    let file = gw.dir.path().join("gateway.yaml");
    std::fs::write(&file, gateway("model-b", &backend.url(), "")).unwrap();
    wait_for_model(&gw, "model-b").await;
    wait_for_audit(&gw, "config_applied", 2).await;
    // SIGHUP reloads even unchanged bytes (a secret beside them may have been rotated).
    gw.signal("HUP");
    let applied = wait_for_audit(&gw, "config_applied", 3).await;
    assert_eq!(applied[2]["details"]["generation"], 3);
    assert_eq!(
        applied[2]["details"]["sha256"],
        applied[1]["details"]["sha256"]
    );
    assert_eq!(models(&gw).await, vec!["model-b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_removed_by_a_reload_no_longer_reports_a_state() {
    let backend = mock(Duration::ZERO).await;
    let gw = GatewayProcess::start(&gateway("model-a", &backend.url(), ""), &[]).await;
    let before = gw.metrics().await;
    let up =
        |backend: &str| format!("airgate_backend_up{{backend=\"{backend}\",gateway=\"test/gw\"}}");
    assert_eq!(metric(&before, &up("a")), Some(1.0), "{before}");
    // the same gateway, its backend renamed: `a` is gone from the configuration
    let renamed = gateway("model-b", &backend.url(), "").replace("- name: a", "- name: b");
    std::fs::write(gw.dir.path().join("gateway.yaml"), renamed).unwrap();
    wait_for_model(&gw, "model-b").await;
    let after = gw.metrics().await;
    assert_eq!(metric(&after, &up("b")), Some(1.0), "{after}");
    assert_eq!(metric(&after, &up("a")), None, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_open_across_a_reload_completes_intact() {
    // 16 tokens, 150 ms apart: the stream is open for about 2.4 s
    let backend = mock(Duration::from_millis(150)).await;
    let gw = GatewayProcess::start(&gateway("mock-model", &backend.url(), ""), &[]).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&json!({"model": "mock-model", "stream": true,
            "messages": [{"role": "user", "content": "count"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let file = gw.dir.path().join("gateway.yaml");
    std::fs::write(&file, gateway("other-model", &backend.url(), "")).unwrap();
    let text = response.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");
    let chunks = text.matches("\"delta\"").count();
    assert!(chunks >= 16, "{chunks} chunks: {text}");
    // the reload happened while the stream was open
    let applied = wait_for_audit(&gw, "config_applied", 2).await;
    assert_eq!(applied[1]["details"]["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_state_carries_across_a_reload() {
    let backend = mock(Duration::ZERO).await;
    let limit = "  rateLimit:\n    global: {limit: 3, period: 1h}\n";
    let gw = GatewayProcess::start(&gateway("model-a", &backend.url(), limit), &[]).await;
    let client = reqwest::Client::new();
    let send = |model: &'static str| {
        client
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(send("model-a").await.unwrap().status(), 200);
    }
    let file = gw.dir.path().join("gateway.yaml");
    std::fs::write(&file, gateway("model-b", &backend.url(), limit)).unwrap();
    wait_for_model(&gw, "model-b").await;
    // one request is left of the three, not three more
    let statuses = [
        send("model-b").await.unwrap().status().as_u16(),
        send("model-b").await.unwrap().status().as_u16(),
    ];
    assert_eq!(statuses, [200, 429]);
}

/// Compiles `yaml` as a reload would, against `previous`.
fn compile_against(
    yaml: &str,
    previous: Option<&airgate::gateway::Snapshot>,
) -> airgate::gateway::Snapshot {
    let loaded = airgate::config::parse_str(Path::new("gw.yaml"), yaml).unwrap();
    let (embedder, wordnet) = (common::embedder(), common::wordnet());
    let trust = airgate::routing::BackendTrust::default();
    let ctx = airgate::app::CompileContext {
        secrets_dir: Path::new("/nonexistent"),
        backend_trust: &trust,
        embedder: Some(&embedder),
        wordnet: Some(&wordnet),
        previous,
        secrets_by_namespace: false,
    };
    airgate::app::compile(&loaded, &ctx).unwrap()
}

/// What a reload keeps: a backend's health while its URL is the same, and a gateway's cache
/// (the entries in it) while its settings are the same; both start afresh otherwise.
#[test]
fn a_reload_keeps_backend_health_and_the_cache_only_while_they_are_unchanged() {
    let cache =
        "  semanticCache: {enabled: true, ttl: 1h, similarityThreshold: 0.9, maxCacheSize: 1MB}\n";
    let first = compile_against(&gateway("m", "http://10.0.0.1:8000", cache), None);
    let gw = first.gateway("test", "gw").unwrap();
    gw.backends[0].set_probe_healthy(false);

    let other_model = compile_against(&gateway("m2", "http://10.0.0.1:8000", cache), Some(&first));
    let kept = other_model.gateway("test", "gw").unwrap();
    assert!(
        !kept.backends[0].probe_healthy(),
        "the down verdict was forgotten"
    );
    let (before, after) = (gw.cache.as_ref().unwrap(), kept.cache.as_ref().unwrap());
    assert!(
        std::sync::Arc::ptr_eq(&before.cache, &after.cache),
        "the cache was rebuilt"
    );

    let looser = cache.replace("0.9", "0.8");
    let moved = compile_against(
        &gateway("m2", "http://10.0.0.2:8000", &looser),
        Some(&other_model),
    );
    let fresh = moved.gateway("test", "gw").unwrap();
    assert!(
        fresh.backends[0].probe_healthy(),
        "a new URL is a new server"
    );
    assert!(!std::sync::Arc::ptr_eq(
        &after.cache,
        &fresh.cache.as_ref().unwrap().cache
    ));
}

/// A reload whose backend answers 500 is rolled back to the configuration before it, within
/// the rollback window, and its bytes are not applied again by the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_whose_answers_fail_is_rolled_back() {
    let good = mock(Duration::ZERO).await;
    let bad = MockServer::start(MockConfig {
        fault: Fault::status(500),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let flags = ["--rollback-window", "30s", "--rollback-min-requests", "5"];
    let gw = GatewayProcess::start(&gateway("mock-model", &good.url(), ""), &flags).await;
    let client = reqwest::Client::new();
    let send = || async {
        client
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    for _ in 0..3 {
        assert_eq!(send().await, 200);
    }
    let file = gw.dir.path().join("gateway.yaml");
    std::fs::write(&file, gateway("mock-model", &bad.url(), "")).unwrap();
    wait_for_audit(&gw, "config_applied", 2).await;
    let started = Instant::now();
    let mut failed = 0;
    while gw
        .lines("audit.jsonl")
        .iter()
        .all(|e| e["event"] != "config_rolled_back")
    {
        assert!(started.elapsed() < DEADLINE, "no rollback: {}", gw.output());
        if send().await >= 500 {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed >= 5, "{failed} failed answers before the rollback");
    let rolled = &wait_for_audit(&gw, "config_rolled_back", 1).await[0];
    assert_eq!(rolled["details"]["failed_generation"], 2, "{rolled}");
    assert_eq!(rolled["details"]["restored_generation"], 1, "{rolled}");
    assert_eq!(rolled["details"]["previous_error_ratio"], 0.0, "{rolled}");
    assert!(
        rolled["details"]["error_ratio"].as_f64().unwrap() > 0.05,
        "{rolled}"
    );
    assert_eq!(send().await, 200, "the previous configuration serves again");
    let text = gw.metrics().await;
    assert_eq!(
        metric(
            &text,
            "airgate_config_reloads_total{result=\"rolled_back\"}"
        ),
        Some(1.0)
    );
    assert_eq!(metric(&text, "airgate_config_generation "), Some(1.0));
    // the poll does not apply the failed bytes again
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(send().await, 200);
    assert_eq!(wait_for_audit(&gw, "config_applied", 2).await.len(), 2);
}
