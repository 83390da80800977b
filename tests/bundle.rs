//! Signed configuration bundles, with keys and signatures made by openssl in cosign's formats
//! (a PEM public key; a base64 signature over the file's bytes): `airgate bundle verify`, and
//! `serve --config-public-key` at start and at reload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use airgate_test_support::mock::{MockConfig, MockServer};
use common::process::{run_airgate, GatewayProcess};

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A key pair in `dir`: `key.pem` (private) and `pub.pem` (public), as cosign's are used.
#[derive(Clone, Copy)]
enum Algorithm {
    P256,
    Ed25519,
}

fn key_pair(dir: &Path, algorithm: Algorithm) -> PathBuf {
    match algorithm {
        Algorithm::P256 => openssl(
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "key.pem",
            ],
            dir,
        ),
        Algorithm::Ed25519 => openssl(
            &["genpkey", "-algorithm", "ed25519", "-out", "key.pem"],
            dir,
        ),
    };
    openssl(
        &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"],
        dir,
    );
    dir.join("pub.pem")
}

/// Signs `file` with `dir/key.pem` into `file.sig`, base64 as `cosign sign-blob` prints it.
fn sign(dir: &Path, file: &Path, algorithm: Algorithm) {
    let file = file.to_str().unwrap();
    let raw = match algorithm {
        Algorithm::P256 => openssl(&["dgst", "-sha256", "-sign", "key.pem", file], dir),
        Algorithm::Ed25519 => openssl(
            &[
                "pkeyutl", "-sign", "-inkey", "key.pem", "-rawin", "-in", file,
            ],
            dir,
        ),
    };
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(raw);
    std::fs::write(format!("{file}.sig"), text + "\n").unwrap();
}

fn gateway(model: &str, backend: &str) -> String {
    format!(
        "apiVersion: hub.traefik.io/v1alpha1\nkind: AIGateway\nmetadata:\n  name: gw\n  namespace: test\nspec:\n  backends:\n    - name: a\n      url: {backend}\n      models: [{model}]\n"
    )
}

#[test]
fn bundle_verify_accepts_a_signed_bundle_and_refuses_a_tampered_one() {
    for algorithm in [Algorithm::P256, Algorithm::Ed25519] {
        let dir = tempfile::tempdir().unwrap();
        let key = key_pair(dir.path(), algorithm);
        let bundle = dir.path().join("bundle.yaml");
        std::fs::write(&bundle, gateway("m", "http://llm:8000")).unwrap();
        sign(dir.path(), &bundle, algorithm);
        let sig = dir.path().join("bundle.yaml.sig");
        let args = |b: &Path| {
            vec![
                "bundle".to_string(),
                "verify".into(),
                "--key".into(),
                key.display().to_string(),
                "--signature".into(),
                sig.display().to_string(),
                b.display().to_string(),
            ]
        };
        let run = |b: &Path| run_airgate(&args(b).iter().map(String::as_str).collect::<Vec<_>>());
        let (code, out) = run(&bundle);
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("ok: "), "{out}");
        // one byte changed: a model name an attacker would rather route to
        std::fs::write(&bundle, gateway("n", "http://llm:8000")).unwrap();
        let (code, out) = run(&bundle);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("signature"), "{out}");
        assert!(out.contains("does not verify"), "{out}");
        // a signature that is not base64 of a signature at all
        std::fs::write(&sig, "not a signature").unwrap();
        let (code, out) = run(&bundle);
        assert_eq!(code, 1, "{out}");
    }
}

#[test]
fn serve_refuses_an_unsigned_or_tampered_bundle_and_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_pair(dir.path(), Algorithm::P256);
    let bundle = dir.path().join("bundle.yaml");
    std::fs::write(&bundle, gateway("m", "http://127.0.0.1:9")).unwrap();
    let serve = |config: &Path| {
        run_airgate(&[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--config-public-key",
            key.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
    };
    // no bundle.yaml.sig
    let (code, out) = serve(&bundle);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature"), "{out}");
    // signed, then changed
    sign(dir.path(), &bundle, Algorithm::P256);
    std::fs::write(&bundle, gateway("n", "http://127.0.0.1:9")).unwrap();
    let (code, out) = serve(&bundle);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not verify"), "{out}");
    // a folder cannot be signed
    let (code, out) = serve(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("a folder cannot be signed"), "{out}");
}

/// Waits until `/v1/models` lists `model`.
async fn wait_for_model(gw: &GatewayProcess, model: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let list = reqwest::get(format!("{}/v1/models", gw.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if list.contains(&format!("\"{model}\"")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{model} not served: {}", gw.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_reload_is_refused_and_a_signed_one_applied() {
    let backend = MockServer::start(MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = key_pair(keys.path(), Algorithm::P256);
    let bundle = dir.path().join("bundle.yaml");
    std::fs::write(&bundle, gateway("model-a", &backend.url())).unwrap();
    sign(keys.path(), &bundle, Algorithm::P256);
    let gw = GatewayProcess::start_at(
        dir,
        &bundle,
        &["--config-public-key", key.to_str().unwrap()],
    )
    .await;
    wait_for_model(&gw, "model-a").await;

    // changed without a new signature: refused, model-a serves on
    std::fs::write(&bundle, gateway("model-b", &backend.url())).unwrap();
    let started = Instant::now();
    let rejected = loop {
        let events: Vec<_> = gw
            .lines("audit.jsonl")
            .into_iter()
            .filter(|e| e["event"] == "config_rejected")
            .collect();
        if let Some(event) = events.first() {
            break event.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rejected["details"]["reason"], "signature", "{rejected}");
    wait_for_model(&gw, "model-a").await;

    // the signature follows: applied, and the record names the key
    sign(keys.path(), &bundle, Algorithm::P256);
    wait_for_model(&gw, "model-b").await;
    let applied: Vec<_> = gw
        .lines("audit.jsonl")
        .into_iter()
        .filter(|e| e["event"] == "config_applied")
        .collect();
    let last = applied.last().unwrap();
    assert_eq!(last["details"]["generation"], 2, "{last}");
    assert_eq!(
        last["details"]["signing_key_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64,
        "{last}"
    );
    // what `sha256sum bundle.yaml` prints: an auditor can match the record to the bundle
    use sha2::Digest as _;
    let sum = hex::encode(sha2::Sha256::digest(std::fs::read(&bundle).unwrap()));
    assert_eq!(last["details"]["sha256"], sum, "{last}");
}
