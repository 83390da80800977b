//! The `airgate` command as users run it: `validate` and `crds`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::process::run_airgate;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[test]
fn seed_and_demo_configs_validate_with_not_enforced_warnings() {
    let (code, out) = run_airgate(&["validate", &repo("config/seed"), &repo("config/demo")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: "), "{out}");
    // the spec is enforced; its absolute path exists only in a pod: a warning saying what
    // serve does, not an error
    assert!(
        !out.contains("spec.openApiSpec: parsed but not enforced"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("warning:")
            && l.contains("(API finance/payment-gateway): spec.openApiSpec.path: cannot read /specs/payment-v3.yaml")
            && l.contains("503")),
        "{out}"
    );
    assert!(
        !out.contains("spec.contentGuard: parsed"),
        "the guard is enforced: {out}"
    );
}

#[test]
fn a_typo_fails_with_file_document_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read_to_string(repo("config/seed/ai-gateway.yaml")).unwrap();
    let broken = seed.replace("similarityThreshold", "similarityTreshold");
    let file = dir.path().join("gw.yaml");
    std::fs::write(
        &file,
        format!(
            "{}\n---\n{broken}",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}"
        ),
    )
    .unwrap();
    let (code, out) = run_airgate(&["validate", &file.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{out}"));
    // the file, the line of the misspelt field's mapping, the document
    assert!(line.contains("gw.yaml:58: document 2"), "{line}");
    assert!(line.contains("spec.semanticCache"), "{line}");
    assert!(line.contains("similarityTreshold"), "{line}");
}

#[test]
fn bad_duration_names_the_backend_index() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read_to_string(repo("config/seed/ai-gateway.yaml")).unwrap();
    let broken = seed.replacen(
        "      timeout: 30s\n      \n    - name: approved",
        "      timeout: 30x\n      \n    - name: approved",
        1,
    );
    assert_ne!(seed, broken, "fixture edit did not apply");
    let file = dir.path().join("gw.yaml");
    std::fs::write(&file, broken).unwrap();
    let (code, out) = run_airgate(&["validate", &file.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("spec.backends[1].timeout"), "{out}");
}

#[test]
fn serve_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    std::fs::write(&file, "apiVersion: airgate.io/v1alpha1\nkind: AIGateway\nmetadata: {name: x}\nspec: {backends: []}\n").unwrap();
    let (code, out) = run_airgate(&[
        "serve",
        "--config",
        &file.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("configuration error"), "{out}");
}

#[test]
fn crds_print_both_kinds() {
    let (code, out) = run_airgate(&["crds"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("name: aigateways.airgate.io"));
    assert!(out.contains("name: apis.airgate.io"));
    assert!(out.contains("similarityThreshold"));
}

#[test]
fn audit_verify_reports_intact_and_tampered_chains() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let log = airgate::telemetry::audit::AuditLog::start(
            &airgate::telemetry::audit::AuditTarget::File(file.clone()),
        )
        .unwrap();
        for i in 0..3 {
            log.record(airgate::telemetry::audit::AuditEvent::new(
                "guard_violation",
                &format!("r{i}"),
                "ns/gw",
                "blocked",
                "rule x",
            ));
        }
        for _ in 0..100 {
            if std::fs::read_to_string(&file)
                .unwrap_or_default()
                .lines()
                .count()
                == 3
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let (code, out) = run_airgate(&["audit", "verify", &file.display().to_string()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 records"), "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("\"r1\"", "\"r9\"", 1)).unwrap();
    let (code, out) = run_airgate(&["audit", "verify", &file.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 2"), "{out}");
}

#[test]
fn committed_crds_match_the_code() {
    let (code, out) = run_airgate(&["crds"]);
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(repo("k8s/crds.yaml")).unwrap();
    assert!(
        committed == out,
        "k8s/crds.yaml is stale: run `airgate crds > k8s/crds.yaml`"
    );
}

#[test]
fn validate_with_a_secrets_dir_reports_every_missing_secret() {
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = run_airgate(&[
        "validate",
        &repo("config/seed"),
        "--secrets-dir",
        &empty.path().display().to_string(),
    ]);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("payment-gateway.yaml:36: document 1 (API finance/payment-gateway): spec.authentication.jwt"), "{line}");
    assert!(line.contains("payment-jwt-secret"), "{line}");
    let (code, out) = run_airgate(&[
        "validate",
        &repo("config/seed"),
        "--secrets-dir",
        &repo("config/seed-secrets"),
    ]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn credentials_in_a_config_never_reach_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    std::fs::write(
        &file,
        "apiVersion: hub.traefik.io/v1alpha1\nkind: AIGateway\nmetadata: {name: g}\nspec:\n  backends:\n    - name: a\n      url: \"http://admin:S3cretPass@vllm:8000\"\n      models: [m]\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let (code, out) = run_airgate(&["validate", &file]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("spec.backends[0].url"), "{out}");
    assert!(
        !out.contains("S3cretPass") && !out.contains("admin:"),
        "{out}"
    );
    let (code, out) = run_airgate(&[
        "serve",
        "--config",
        &file,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("S3cretPass"), "{out}");
}

/// `airgate diff` on the seed: the same files pass, a model taken out of a backend and an
/// `API` path prefix changed fail with their checks (text and JSON), an unreadable input is 2.
#[test]
fn diff_reports_breaking_changes_with_its_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let seed = repo("config/seed/ai-gateway.yaml");
    let text = std::fs::read_to_string(&seed).unwrap();
    let (code, out) = run_airgate(&["diff", &seed, &seed]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: no breaking change"), "{out}");

    let changed = dir.path().join("ai-gateway.yaml");
    let without = text.replace("        - llama-3-8b-instruct\n", "");
    assert_ne!(without, text, "fixture edit did not apply");
    std::fs::write(&changed, &without).unwrap();
    let new = changed.display().to_string();
    let (code, out) = run_airgate(&["diff", &seed, &new]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("(AIGateway ml-team/sovereign-ai-gateway): spec.backends: model-removed: model \"llama-3-8b-instruct\""),
        "{out}"
    );
    let (code, out) = run_airgate(&["diff", "--format", "json", &seed, &new]);
    assert_eq!(code, 1, "{out}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["breaking"][0]["check"], "model-removed");
    assert_eq!(json["breaking"][0]["field"], "spec.backends");
    // placed on the line of the field, in text and JSON as in SARIF
    let line = 1 + without
        .lines()
        .position(|l| l.trim_start().starts_with("backends:"))
        .unwrap();
    assert_eq!(json["breaking"][0]["line"], line, "{json}");
    let (_, out) = run_airgate(&["diff", &seed, &new]);
    assert!(
        out.contains(&format!("breaking: {new}:{line}: document ")),
        "{out}"
    );

    let (code, out) = run_airgate(&[
        "diff",
        &seed,
        &dir.path().join("missing.yaml").display().to_string(),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("error:"), "{out}");
}

/// `airgate diff` on two config folders, each an `API` whose OpenAPI spec sits beside it
/// (`specs/`, a relative path): a removed path fails with oasdiff's check id in text and JSON,
/// a widening passes, NEW's spec unreadable is 2, specs unreadable on both sides are a warning.
#[test]
fn diff_reports_breaking_changes_inside_openapi_specs() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/openapi-diff");
    let folder = |spec: Option<&Path>| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("api.yaml"),
            "apiVersion: airgate.io/v1alpha1\nkind: API\nmetadata: {name: petstore, namespace: shop}\nspec:\n  openApiSpec: {path: specs/petstore.yaml}\n  service: {name: petstore, port: {number: 8080}}\n",
        )
        .unwrap();
        if let Some(spec) = spec {
            std::fs::create_dir(dir.path().join("specs")).unwrap();
            std::fs::copy(spec, dir.path().join("specs/petstore.yaml")).unwrap();
        }
        dir
    };
    let path = |dir: &tempfile::TempDir| dir.path().display().to_string();
    // OLD and NEW folders holding a fixture pair's specs.
    let sides = |case: &str| {
        let case = cases.join(case);
        let side = |name: &str| folder(Some(&case.join(name)));
        (side("old.yaml"), side("new.yaml"))
    };

    let (old, new) = sides("01-petstore-path-removed");
    let (code, out) = run_airgate(&["diff", &path(&old), &path(&new)]);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("breaking:"))
        .unwrap_or_else(|| panic!("{out}"));
    let api = std::fs::read_to_string(new.path().join("api.yaml")).unwrap();
    let spec_line = 1 + api
        .lines()
        .position(|l| l.trim_start().starts_with("openApiSpec:"))
        .unwrap();
    assert!(
        line.contains(&format!("api.yaml:{spec_line}: document 1 (API shop/petstore): spec.openApiSpec: api-path-removed-without-deprecation: POST /user/createWithArray: api path removed without deprecation")),
        "{line}"
    );
    // The place is in OLD's spec, where the path was.
    let old_spec = old.path().join("specs/petstore.yaml");
    assert!(
        line.contains(&format!(
            "({}#/paths/~1user~1createWithArray/post)",
            old_spec.display()
        )),
        "{line}"
    );
    let (code, out) = run_airgate(&["diff", "--format", "json", &path(&old), &path(&new)]);
    assert_eq!(code, 1, "{out}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["breaking"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(
        json["breaking"][0]["check"],
        "api-path-removed-without-deprecation"
    );
    assert_eq!(json["breaking"][0]["field"], "spec.openApiSpec");
    assert_eq!(json["warnings"], serde_json::json!([]));

    let (old, new) = sides("09-stripe-request-enum-value-added");
    let (code, out) = run_airgate(&["diff", &path(&old), &path(&new)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: no breaking change"), "{out}");

    // NEW's spec missing where OLD's was read: the change cannot be judged.
    let missing = folder(None);
    let (code, out) = run_airgate(&["diff", &path(&old), &path(&missing)]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("error: ")
            && l.contains("(API shop/petstore): spec.openApiSpec: NEW's spec: cannot read")),
        "{out}"
    );
    // Unreadable on both sides (a path only the pod has): compared no further, said so.
    let (code, out) = run_airgate(&["diff", &path(&missing), &path(&folder(None))]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("warning: ") && out.contains("not compared: neither spec can be read"),
        "{out}"
    );
}
