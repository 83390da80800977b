//! Tests of the configuration module: seed files, error reporting, units, validation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use crate::config::*;

const SEED_AI_GATEWAY: &str = include_str!("testdata/seed-examples/ai-gateway.yaml");
const SEED_PAYMENT: &str = include_str!("testdata/seed-examples/payment-gateway.yaml");
const SEED_FILES: &[(&str, &str)] = &[
    ("ai-gateway.yaml", SEED_AI_GATEWAY),
    ("payment-gateway.yaml", SEED_PAYMENT),
    (
        "finance-namespace-isolation.yaml",
        include_str!("testdata/seed-examples/finance-namespace-isolation.yaml"),
    ),
    (
        "observability-config.yaml",
        include_str!("testdata/seed-examples/observability-config.yaml"),
    ),
    (
        "prometheus-rollback-alert.yaml",
        include_str!("testdata/seed-examples/prometheus-rollback-alert.yaml"),
    ),
    (
        "client-example.py",
        include_str!("testdata/seed-examples/client-example.py"),
    ),
];

const MINIMAL_GATEWAY: &str = "\
apiVersion: airgate.io/v1alpha1
kind: AIGateway
metadata:
  name: gw
spec:
  backends:
    - name: a
      url: http://a:8000
      models: [m]
";

fn parse(text: &str) -> Result<LoadedConfig, Vec<ConfigIssue>> {
    parse_str(Path::new("test.yaml"), text)
}

fn errors(text: &str) -> Vec<ConfigIssue> {
    parse(text).expect_err("expected configuration errors")
}

fn fields(issues: &[ConfigIssue]) -> Vec<&str> {
    issues.iter().filter_map(|i| i.field.as_deref()).collect()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
}

fn check_seed_folder(cfg: &LoadedConfig, dir: &Path) {
    assert_eq!(cfg.gateways.len(), 1);
    assert_eq!(cfg.apis.len(), 1);
    assert_eq!(cfg.gateways[0].source.file, dir.join("ai-gateway.yaml"));
    assert_eq!(cfg.apis[0].source.file, dir.join("payment-gateway.yaml"));
    let skipped: Vec<(String, usize, String)> = cfg
        .warnings
        .iter()
        .map(|w| {
            (
                w.file.file_name().unwrap().to_string_lossy().into_owned(),
                w.document.unwrap(),
                w.resource.clone().unwrap(),
            )
        })
        .collect();
    let expected = [
        (
            "finance-namespace-isolation.yaml",
            1,
            "Namespace finance-team",
        ),
        (
            "finance-namespace-isolation.yaml",
            2,
            "ResourceQuota finance-team/finance-compute-quota",
        ),
        (
            "finance-namespace-isolation.yaml",
            3,
            "ResourceQuota finance-team/finance-api-quota",
        ),
        (
            "finance-namespace-isolation.yaml",
            4,
            "NetworkPolicy finance-team/finance-default-deny",
        ),
        (
            "observability-config.yaml",
            1,
            "ConfigMap traefik-system/traefik-observability",
        ),
        (
            "prometheus-rollback-alert.yaml",
            1,
            "PrometheusRule traefik-system/api-gateway-alerts",
        ),
    ];
    let expected: Vec<(String, usize, String)> = expected
        .iter()
        .map(|(f, d, r)| (f.to_string(), *d, r.to_string()))
        .collect();
    assert_eq!(skipped, expected);
    // the Namespace is not served, but validate reads its labels; the others are not read
    assert!(cfg.warnings[0].message.contains("`compliance` label"));
    assert!(cfg.warnings[1]
        .message
        .contains("not a resource AirGate reads"));
}

// ---------------------------------------------------------------------------
// Seed files
// ---------------------------------------------------------------------------

#[test]
fn seed_ai_gateway_loads_with_expected_values() {
    let cfg = parse_str(Path::new("ai-gateway.yaml"), SEED_AI_GATEWAY).unwrap();
    assert!(cfg.warnings.is_empty());
    assert_eq!(cfg.gateways.len(), 1);
    assert!(cfg.apis.is_empty());
    let located = &cfg.gateways[0];
    assert_eq!(located.source.document, 1);
    let gw = &located.resource;
    assert_eq!(gw.api_version, "hub.traefik.io/v1alpha1");
    assert_eq!(gw.metadata.name, "sovereign-ai-gateway");
    assert_eq!(gw.metadata.namespace(), "ml-team");
    assert_eq!(gw.display_name(), "AIGateway ml-team/sovereign-ai-gateway");

    let backends = &gw.spec.backends;
    assert_eq!(backends.len(), 3);
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        ["local-llama-3", "local-mistral", "approved-cloud-fallback"]
    );
    let priorities: Vec<u32> = backends.iter().map(|b| b.priority).collect();
    assert_eq!(priorities, [1, 1, 2]);
    // Explicit 30s on the first two, default 30s on the third.
    for b in backends {
        assert_eq!(b.timeout.get(), StdDuration::from_secs(30));
        assert!(b.health_check.is_none());
    }
    assert_eq!(backends[0].url, "http://vllm-service.ml-team:8000");
    assert_eq!(
        backends[0].models,
        ["llama-3-70b-instruct", "llama-3-8b-instruct"]
    );
    assert!(!backends[0].requires_approval);
    assert!(backends[2].requires_approval);
    assert_eq!(
        backends[2]
            .headers
            .get("X-Internal-Routing")
            .map(String::as_str),
        Some("approved-gateway-only")
    );

    let guard = gw.spec.content_guard.as_ref().unwrap();
    assert!(guard.enabled && guard.scan_prompts && guard.scan_responses);
    assert_eq!(guard.block_patterns.len(), 2);
    assert_eq!(
        guard.block_patterns[0].regex.as_deref(),
        Some("(?i)(confidential|internal-only|secret)")
    );
    assert_eq!(
        guard.block_patterns[1].regex.as_deref(),
        Some(r"(?i)(ssn|credit[\s-]?card|password)")
    );
    assert_eq!(guard.block_patterns[0].action, PatternAction::Block);
    assert_eq!(guard.block_patterns[0].audit_level, Some(AuditLevel::High));
    assert_eq!(
        guard.block_patterns[1].audit_level,
        Some(AuditLevel::Critical)
    );
    assert_eq!(guard.allow_patterns.len(), 1);
    assert_eq!(guard.allow_patterns[0].action, PatternAction::Allow);
    assert_eq!(guard.allow_patterns[0].audit_level, None);
    assert_eq!(guard.max_holdback_chars, None);

    let cache = gw.spec.semantic_cache.as_ref().unwrap();
    assert!(cache.enabled);
    assert_eq!(cache.ttl.get(), StdDuration::from_secs(3600));
    assert_eq!(cache.similarity_threshold, 0.95);
    assert_eq!(cache.max_cache_size, ByteSize(10_000_000_000));
    assert_eq!(cache.eviction_policy, EvictionPolicy::Lru);
    assert_eq!(cache.scope, None);

    let rate = gw.spec.rate_limit.as_ref().unwrap();
    let global = rate.global.as_ref().unwrap();
    assert_eq!(
        (global.limit, global.period, global.tokens),
        (1000, secs(3600), None)
    );
    let per_user = rate.per_user.as_ref().unwrap();
    assert_eq!((per_user.limit, per_user.period), (100, secs(3600)));

    let metrics = gw.spec.metrics.as_ref().unwrap();
    assert!(metrics.enabled && metrics.include_model_name);
    assert!(metrics.include_token_count && metrics.include_latency);
    let tracing = gw.spec.tracing.as_ref().unwrap();
    assert!(tracing.enabled);
    assert_eq!(tracing.sample_rate, 0.1);
    assert_eq!(tracing.endpoint, None);
    assert!(gw.spec.routing.is_none());
    assert!(!gw.is_default());
}

#[test]
fn seed_payment_api_loads_with_expected_values() {
    let cfg = parse_str(Path::new("payment-gateway.yaml"), SEED_PAYMENT).unwrap();
    assert!(cfg.gateways.is_empty());
    assert_eq!(cfg.apis.len(), 1);
    let api = &cfg.apis[0].resource;
    assert_eq!(api.kind, "API");
    assert_eq!(api.display_name(), "API finance/payment-gateway");
    assert_eq!(
        api.metadata.labels.get("team").map(String::as_str),
        Some("fintech")
    );
    assert_eq!(api.metadata.labels.len(), 2);

    let openapi = api.spec.open_api_spec.as_ref().unwrap();
    assert_eq!(openapi.path.as_deref(), Some("/specs/payment-v3.yaml"));
    assert_eq!(
        openapi.url.as_deref(),
        Some("http://registry.internal.company.local/specs/payment-v3.yaml")
    );
    assert_eq!(api.spec.service.name, "payment-backend");
    assert_eq!(api.spec.service.port.number, Some(8080));
    assert_eq!(api.spec.service.port.name, None);

    let cors = api.spec.cors.as_ref().unwrap();
    assert_eq!(cors.allow_origins, ["https://app.internal.company.local"]);
    assert_eq!(cors.allow_methods, ["GET", "POST"]);
    assert_eq!(cors.allow_headers, ["Authorization", "Content-Type"]);
    assert!(cors.expose_headers.is_empty());
    assert!(!cors.allow_credentials);
    assert_eq!(cors.max_age, None);

    let rate = api.spec.rate_limit.as_ref().unwrap();
    assert_eq!((rate.limit, rate.period), (5000, secs(60)));
    assert_eq!(rate.strategy, "ip");
    assert_eq!(rate.strategy(), Some(RateLimitStrategy::Ip));

    let jwt = api
        .spec
        .authentication
        .as_ref()
        .unwrap()
        .jwt
        .as_ref()
        .unwrap();
    assert_eq!(jwt.secret_name, "payment-jwt-secret");
    assert_eq!(
        jwt.issuer.as_deref(),
        Some("https://auth.internal.company.local")
    );
    assert_eq!(jwt.audience.as_deref(), Some("payment-api"));
    assert!(jwt.algorithms.is_empty());

    let policies = &api.spec.access_control.as_ref().unwrap().policies;
    let names: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["require-mfa", "business-hours-only"]);
    assert_eq!(policies[0].rule, "Header(`X-MFA-Verified`, `true`)");
}

#[test]
fn seed_folder_in_tempdir_loads_and_skips_other_kinds_with_warnings() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), SEED_FILES);
    let cfg = load_path(dir.path()).unwrap();
    check_seed_folder(&cfg, dir.path());
}

#[test]
fn shared_seed_examples_folder_loads_directly() {
    // The copy under testdata/ is always checked; the original when this machine has it.
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/testdata/seed-examples");
    let cfg = load_path(&testdata).unwrap();
    check_seed_folder(&cfg, &testdata);
    let shared = PathBuf::from("/work/shared/seed-examples");
    if shared.is_dir() {
        let cfg = load_path(&shared).unwrap();
        check_seed_folder(&cfg, &shared);
    }
}

#[test]
fn load_path_accepts_a_single_file_and_yml() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            ("gw.yml", MINIMAL_GATEWAY),
            ("notes.txt", "not: yaml: at: all: ["),
            (".hidden.yaml", "this is: [broken"),
        ],
    );
    let cfg = load_path(dir.path()).unwrap();
    assert_eq!(cfg.gateways.len(), 1);
    assert_eq!(cfg.gateways[0].source.file, dir.path().join("gw.yml"));

    let cfg = load_path(&dir.path().join("gw.yml")).unwrap();
    assert_eq!(cfg.gateways[0].resource.metadata.name, "gw");
}

#[test]
fn load_path_reports_missing_path_and_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let errs = load_path(&missing).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].file, missing);
    assert!(errs[0].message.starts_with("cannot read configuration"));

    let errs = load_path(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("no *.yaml or *.yml files"));
}

// ---------------------------------------------------------------------------
// Error reporting
// ---------------------------------------------------------------------------

#[test]
fn typo_similarity_treshold_names_file_document_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = SEED_AI_GATEWAY.replace("similarityThreshold", "similarityTreshold");
    write_files(dir.path(), &[("typo.yaml", &text)]);
    let errs = load_path(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert_eq!(e.file, dir.path().join("typo.yaml"));
    assert_eq!(e.document, Some(1));
    assert_eq!(
        e.resource.as_deref(),
        Some("AIGateway ml-team/sovereign-ai-gateway")
    );
    assert_eq!(
        e.field.as_deref(),
        Some("spec.semanticCache.similarityTreshold")
    );
    assert!(
        e.message.contains("unknown field `similarityTreshold`"),
        "{}",
        e.message
    );
    assert!(e.message.contains("`similarityThreshold`"), "{}", e.message);
    let line = SEED_AI_GATEWAY
        .lines()
        .position(|l| l.contains("similarityThreshold"))
        .unwrap()
        + 1;
    assert!(
        e.message.contains(&format!("at line {line} column 5")),
        "{}",
        e.message
    );
    let shown = e.to_string();
    assert!(shown.contains("typo.yaml"), "{shown}");
    assert!(shown.contains("document 1"), "{shown}");
    assert!(shown.contains("similarityTreshold"), "{shown}");
    assert!(shown.starts_with(&format!(
        "{}: document 1 (AIGateway ml-team/sovereign-ai-gateway): spec.semanticCache.similarityTreshold: unknown field",
        dir.path().join("typo.yaml").display()
    )));
}

#[test]
fn bad_duration_in_second_backend_has_indexed_field_path() {
    let text = SEED_AI_GATEWAY.replacen(
        "mistral-7b-instruct-v0.2\n      priority: 1\n      timeout: 30s",
        "mistral-7b-instruct-v0.2\n      priority: 1\n      timeout: 30x",
        1,
    );
    assert_ne!(text, SEED_AI_GATEWAY);
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field.as_deref(), Some("spec.backends[1].timeout"));
    assert!(
        errs[0].message.starts_with(
            r#"invalid duration "30x": expected a number with a unit such as 30s, 1m, 1h"#
        ),
        "{}",
        errs[0].message
    );
}

#[test]
fn errors_in_several_documents_are_all_reported() {
    let text = format!(
        "{MINIMAL_GATEWAY}    - name: b\n      url: http://b\n      models: [m]\n      priority: high\n\
         ---\n{}---\n{}",
        MINIMAL_GATEWAY.replace("name: gw", "name: ok"),
        MINIMAL_GATEWAY
            .replace("name: gw", "name: third")
            .replace("models: [m]", "models: [m]\n      timeout: soon"),
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[0].document, Some(1));
    assert_eq!(errs[0].field.as_deref(), Some("spec.backends[1].priority"));
    assert_eq!(errs[1].document, Some(3));
    assert_eq!(errs[1].resource.as_deref(), Some("AIGateway default/third"));
    assert_eq!(errs[1].field.as_deref(), Some("spec.backends[0].timeout"));
}

#[test]
fn errors_across_files_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            (
                "a.yaml",
                &MINIMAL_GATEWAY.replace("http://a:8000", "a:8000"),
            ),
            ("b.yaml", "key: [unclosed\n"),
            ("c.yaml", MINIMAL_GATEWAY),
        ],
    );
    let errs = load_path(dir.path()).unwrap_err();
    let files: Vec<PathBuf> = errs.iter().map(|e| e.file.clone()).collect();
    // a.yaml: bad URL; b.yaml: syntax; c.yaml duplicates a.yaml's AIGateway default/gw.
    assert_eq!(
        files,
        [
            dir.path().join("a.yaml"),
            dir.path().join("b.yaml"),
            dir.path().join("c.yaml")
        ]
    );
    assert_eq!(errs[0].field.as_deref(), Some("spec.backends[0].url"));
    assert!(errs[1].message.starts_with("invalid YAML"));
    assert!(errs[2].message.contains("duplicate AIGateway default/gw"));
    assert!(errs[2].message.contains("a.yaml: document 1"));
}

#[test]
fn yaml_syntax_errors_give_file_line_numbers() {
    // Line 11 of the file is the broken one (document 2 starts at line 10).
    let text = format!("{MINIMAL_GATEWAY}---\nfoo: [1, 2\nbar: 3\n");
    assert_eq!(text.lines().nth(10), Some("foo: [1, 2"));
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].document, Some(2));
    assert_eq!(errs[0].field, None);
    assert!(
        errs[0].message.starts_with("invalid YAML: "),
        "{}",
        errs[0].message
    );
    assert!(
        errs[0].message.contains("at line 11 column 6"),
        "{}",
        errs[0].message
    );
}

#[test]
fn document_shape_errors() {
    let text = "- just\n- a list\n---\nkind: AIGateway\nmetadata: {name: x}\n---\napiVersion: airgate.io/v1alpha1\n\
                kind: AiGateway\nmetadata: {name: y}\n---\napiVersion: airgate.io/v2\nkind: API\nmetadata: {name: z}\n\
                ---\napiVersion: airgate.io/v1alpha1\nkind: Middleware\nmetadata: {name: w}\n---\n~\n";
    let errs = errors(text);
    let summary: Vec<(Option<usize>, Option<&str>)> = errs
        .iter()
        .map(|e| (e.document, e.field.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (Some(1), None),
            (Some(2), Some("apiVersion")),
            (Some(3), Some("kind")),
            (Some(4), Some("apiVersion")),
            (Some(5), Some("kind")),
        ]
    );
    assert!(errs[0].message.contains("found a sequence"));
    assert_eq!(errs[1].message, "missing required field");
    assert!(errs[2].message.contains("did you mean \"AIGateway\""));
    assert!(errs[3]
        .message
        .contains("unsupported apiVersion \"airgate.io/v2\""));
}

#[test]
fn traefik_hub_kinds_other_than_ours_are_skipped_with_a_warning() {
    let text = format!(
        "apiVersion: hub.traefik.io/v1alpha1\nkind: APIAccess\nmetadata: {{name: acc}}\n---\n{MINIMAL_GATEWAY}"
    );
    let cfg = parse(&text).unwrap();
    assert_eq!(cfg.gateways.len(), 1);
    assert_eq!(cfg.gateways[0].source.document, 2);
    assert_eq!(cfg.warnings.len(), 1);
    assert_eq!(cfg.warnings[0].resource.as_deref(), Some("APIAccess acc"));
}

#[test]
fn issue_display_omits_absent_parts() {
    let full = ConfigIssue::new("/etc/airgate/gw.yaml", "boom")
        .with_resource("AIGateway ns/gw")
        .with_field("spec.backends[0].url");
    let full = ConfigIssue {
        document: Some(2),
        ..full
    };
    assert_eq!(
        full.to_string(),
        "/etc/airgate/gw.yaml: document 2 (AIGateway ns/gw): spec.backends[0].url: boom"
    );
    assert_eq!(
        ConfigIssue::new("f.yaml", "boom").to_string(),
        "f.yaml: boom"
    );
    let source = Source {
        file: "f.yaml".into(),
        document: 3,
    };
    assert_eq!(
        ConfigIssue::at(&source, "boom")
            .with_field("kind")
            .to_string(),
        "f.yaml: document 3: kind: boom"
    );
    let errs = ConfigErrors(vec![ConfigIssue::new("a", "x"), ConfigIssue::new("b", "y")]);
    assert_eq!(errs.to_string(), "a: x\nb: y");
}

// ---------------------------------------------------------------------------
// Semantic validation
// ---------------------------------------------------------------------------

#[test]
fn gateway_semantic_errors_are_all_collected() {
    let text = "\
apiVersion: hub.traefik.io/v1alpha1
kind: AIGateway
metadata: {name: bad, namespace: t}
spec:
  backends:
    - name: a
      url: ftp://a
      models: []
      headers: {\"Bad Header\": x, X-Ok: \"line1\\nline2\"}
    - name: a
      url: http://
      models: [m]
      timeout: 0
      healthCheck: {path: health}
  contentGuard:
    blockPatterns:
      - {regex: x, detector: email, action: block}
      - {action: redact}
      - {regex: \"\", action: audit}
  semanticCache: {ttl: 1h, similarityThreshold: 1.5, maxCacheSize: 1GiB}
  rateLimit:
    global: {limit: 0, period: 1h}
  tracing: {sampleRate: 1.5}
  routing: {failureThreshold: 0, maxAttempts: 0}
";
    let errs = errors(text);
    assert!(errs
        .iter()
        .all(|e| e.resource.as_deref() == Some("AIGateway t/bad")));
    assert!(errs.iter().all(|e| e.document == Some(1)));
    assert_eq!(
        fields(&errs),
        [
            "spec.backends[0].url",
            "spec.backends[0].models",
            "spec.backends[0].headers",
            "spec.backends[0].headers.X-Ok",
            "spec.backends[1].name",
            "spec.backends[1].url",
            "spec.backends[1].timeout",
            "spec.backends[1].healthCheck.path",
            "spec.contentGuard.blockPatterns[0]",
            "spec.contentGuard.blockPatterns[1]",
            "spec.contentGuard.blockPatterns[2].regex",
            "spec.semanticCache.similarityThreshold",
            "spec.rateLimit.global.limit",
            "spec.tracing.sampleRate",
            "spec.routing.failureThreshold",
            "spec.routing.maxAttempts",
        ]
    );
    assert!(errs[4].message.contains("duplicate backend name \"a\""));
    assert!(errs[8].message.contains("not both"));
}

#[test]
fn similarity_threshold_bounds() {
    for (value, ok) in [
        ("0.0", false),
        ("-0.1", false),
        ("0.01", true),
        ("1", true),
        ("1.0001", false),
    ] {
        let text = format!(
            "{MINIMAL_GATEWAY}  semanticCache: {{ttl: 60, similarityThreshold: {value}, maxCacheSize: 1024}}\n"
        );
        assert_eq!(parse(&text).is_ok(), ok, "similarityThreshold {value}");
    }
}

#[test]
fn api_rate_limit_strategy_is_validated() {
    let api = |strategy: &str| {
        format!(
            "apiVersion: airgate.io/v1alpha1\nkind: API\nmetadata: {{name: a}}\nspec:\n  service: {{name: s, port: {{number: 80}}}}\n  rateLimit: {{limit: 10, period: 1m{strategy}}}\n"
        )
    };
    let cfg = parse(&api("")).unwrap();
    let rate = cfg.apis[0].resource.spec.rate_limit.as_ref().unwrap();
    assert_eq!(rate.strategy, "ip");

    let cfg = parse(&api(", strategy: user")).unwrap();
    let rate = cfg.apis[0].resource.spec.rate_limit.as_ref().unwrap();
    assert_eq!(rate.strategy(), Some(RateLimitStrategy::User));

    let cfg = parse(&api(", strategy: \"header:X-Tenant\"")).unwrap();
    let rate = cfg.apis[0].resource.spec.rate_limit.as_ref().unwrap();
    assert_eq!(
        rate.strategy(),
        Some(RateLimitStrategy::Header("X-Tenant".into()))
    );

    for bad in ["cookie", "header:", "header:Bad Name", "IP"] {
        let errs = errors(&api(&format!(", strategy: \"{bad}\"")));
        assert_eq!(fields(&errs), ["spec.rateLimit.strategy"], "{bad}");
        assert!(errs[0]
            .message
            .contains(&format!("invalid strategy \"{bad}\"")));
    }
}

#[test]
fn api_semantic_errors_are_all_collected() {
    let text = "\
apiVersion: airgate.io/v1alpha1
kind: API
metadata: {name: a}
spec:
  openApiSpec: {}
  service: {name: s, port: {number: 80, name: http}}
  authentication: {jwt: {secretName: \"\", algorithms: [RS256, none]}}
  accessControl:
    policies:
      - {name: p, rule: \"Header(`a`, `b`)\"}
      - {name: p, rule: \"\"}
";
    let errs = errors(text);
    assert_eq!(
        fields(&errs),
        [
            "spec.openApiSpec",
            "spec.service.port",
            "spec.authentication.jwt.secretName",
            "spec.authentication.jwt.algorithms[1]",
            "spec.accessControl.policies[1].rule",
            "spec.accessControl.policies[1].name",
        ]
    );
}

#[test]
fn two_apis_with_one_path_prefix_are_rejected() {
    let api = |name: &str| {
        format!(
            "apiVersion: airgate.io/v1alpha1\nkind: API\nmetadata: {{name: {name}, namespace: team}}\nspec:\n  service: {{name: svc, port: {{number: 80}}}}\n  pathPrefix: /payments\n"
        )
    };
    let errs = errors(&format!("{}---\n{}", api("first"), api("second")));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].document, Some(2));
    assert_eq!(errs[0].field.as_deref(), Some("spec.pathPrefix"));
    assert!(
        errs[0]
            .message
            .contains("/payments is already the pathPrefix of API team/first"),
        "{errs:?}"
    );
}

#[test]
fn duplicate_resources_and_two_default_gateways_are_rejected() {
    let default_gw = |name: &str| {
        MINIMAL_GATEWAY.replace(
            "name: gw\n",
            &format!("name: {name}\n  annotations:\n    airgate.io/default: \"true\"\n"),
        )
    };
    let text = format!(
        "{}---\n{}---\n{}",
        default_gw("one"),
        default_gw("two"),
        MINIMAL_GATEWAY.replace("name: gw", "name: one")
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:?}");
    // Cross-resource checks: duplicates first, then the default annotation.
    assert_eq!(errs[0].document, Some(3));
    assert_eq!(errs[0].field.as_deref(), Some("metadata.name"));
    assert!(errs[0].message.contains("duplicate AIGateway default/one"));
    assert!(errs[0].message.contains("test.yaml: document 1"));
    assert_eq!(errs[1].document, Some(2));
    assert_eq!(
        errs[1].field.as_deref(),
        Some("metadata.annotations[\"airgate.io/default\"]")
    );
    assert!(errs[1].message.contains("AIGateway default/one"));

    // Same name in another namespace, or another kind, is fine; one default is fine.
    let text = format!(
        "{}---\n{}",
        default_gw("one"),
        MINIMAL_GATEWAY.replace("name: gw", "name: one\n  namespace: other")
    );
    let cfg = parse(&text).unwrap();
    assert!(cfg.gateways[0].resource.is_default());
    assert!(!cfg.gateways[1].resource.is_default());
}

// ---------------------------------------------------------------------------
// Units
// ---------------------------------------------------------------------------

#[test]
fn duration_parsing_table() {
    let cases: &[(&str, StdDuration)] = &[
        ("30s", StdDuration::from_secs(30)),
        ("1m", StdDuration::from_secs(60)),
        ("1h", StdDuration::from_secs(3600)),
        ("500ms", StdDuration::from_millis(500)),
        ("1h30m", StdDuration::from_secs(5400)),
        ("1h 30m", StdDuration::from_secs(5400)),
        ("3600", StdDuration::from_secs(3600)),
        ("0", StdDuration::ZERO),
        (" 10s ", StdDuration::from_secs(10)),
    ];
    for (text, expected) in cases {
        let parsed: Duration = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed.get(), *expected, "{text}");
        // Display output parses back to the same value.
        assert_eq!(parsed.to_string().parse::<Duration>(), Ok(parsed), "{text}");
    }
    assert_eq!(Duration::from_secs(5400).to_string(), "1h 30m");
    for bad in ["30x", "", "s", "-5s", "1.5", "ten seconds"] {
        let err = bad.parse::<Duration>().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid duration {bad:?}: expected a number with a unit such as 30s, 1m, 1h")
        );
    }
}

#[test]
fn byte_size_parsing_table() {
    let cases: &[(&str, u64)] = &[
        ("10GB", 10_000_000_000),
        ("10GiB", 10 * (1 << 30)),
        ("512MiB", 512 * (1 << 20)),
        ("1024", 1024),
        ("0", 0),
        ("1KB", 1000),
        ("1kb", 1000),
        ("1KiB", 1024),
        ("1Ki", 1024),
        ("1 MB", 1_000_000),
        ("100B", 100),
        ("1.5GB", 1_500_000_000),
        ("0.5KiB", 512),
        ("1TiB", 1 << 40),
    ];
    for (text, expected) in cases {
        let parsed: ByteSize = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed.as_u64(), *expected, "{text}");
        assert_eq!(parsed.to_string().parse::<ByteSize>(), Ok(parsed), "{text}");
    }
    assert_eq!(ByteSize(10_000_000_000).to_string(), "10GB");
    assert_eq!(ByteSize::gib(10).to_string(), "10GiB");
    assert_eq!(ByteSize(1234).to_string(), "1234B");
    assert_eq!(ByteSize(0).to_string(), "0B");
    for bad in [
        "10XB",
        "",
        "GB",
        "1.GB",
        ".5GB",
        "-1",
        "1..2KB",
        "16E",
        "99999999999PB",
    ] {
        let err = bad.parse::<ByteSize>().unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("invalid size {bad:?}: expected a number")),
            "{bad}: {err}"
        );
    }
}

#[test]
fn units_deserialize_from_yaml_numbers_and_strings() {
    #[derive(serde::Deserialize)]
    struct Probe {
        d: Duration,
        s: ByteSize,
    }
    let p: Probe = serde_yaml_ng::from_str("d: 3600\ns: 1024").unwrap();
    assert_eq!((p.d, p.s), (secs(3600), ByteSize(1024)));
    let p: Probe = serde_yaml_ng::from_str("d: \"90\"\ns: \"2MiB\"").unwrap();
    assert_eq!((p.d, p.s), (secs(90), ByteSize::mib(2)));
    for bad in [
        "d: -1\ns: 1",
        "d: 1.5\ns: 1",
        "d: 1\ns: -1",
        "d: 1\ns: 1.5",
        "d: [1]\ns: 1",
    ] {
        assert!(serde_yaml_ng::from_str::<Probe>(bad).is_err(), "{bad}");
    }
    let err = serde_yaml_ng::from_str::<Probe>("d: -1\ns: 1")
        .err()
        .unwrap();
    assert!(err.to_string().contains("invalid duration \"-1\""), "{err}");
}

// ---------------------------------------------------------------------------
// Defaults, serialization, schema
// ---------------------------------------------------------------------------

#[test]
fn defaults_are_applied() {
    let text = format!(
        "{MINIMAL_GATEWAY}      healthCheck: {{}}\n  routing:\n    maxBodySize: 1MiB\n  tracing: {{}}\n  metrics: {{}}\n"
    );
    let cfg = parse(&text).unwrap();
    let gw = &cfg.gateways[0].resource;
    assert_eq!(gw.metadata.namespace(), "default");
    let b = &gw.spec.backends[0];
    assert_eq!(
        (b.priority, b.timeout, b.requires_approval),
        (1, secs(30), false)
    );
    let health = b.health_check.as_ref().unwrap();
    assert_eq!(health, &HealthCheckSpec::default());
    assert_eq!(
        (health.interval, health.timeout, health.enabled),
        (secs(10), secs(2), true)
    );
    assert_eq!(health.path, None);

    let routing = gw.spec.routing.as_ref().unwrap();
    assert_eq!(routing.max_body_size, ByteSize::mib(1));
    assert_eq!(routing.stream_idle_timeout, secs(30));
    assert_eq!(routing.failure_threshold, 3);

    let defaults = RoutingSpec::default();
    assert_eq!(defaults.max_body_size, ByteSize(10 * 1024 * 1024));
    assert_eq!(defaults.stream_idle_timeout, secs(30));
    assert_eq!(defaults.body_read_timeout, secs(30));
    assert_eq!(defaults.cooldown, secs(10));
    assert_eq!(defaults.failure_threshold, 3);
    assert_eq!(defaults.max_attempts, None);

    let tracing = gw.spec.tracing.as_ref().unwrap();
    assert_eq!((tracing.enabled, tracing.sample_rate), (true, 1.0));
    let metrics = gw.spec.metrics.as_ref().unwrap();
    assert!(metrics.enabled && metrics.include_latency);
}

#[test]
fn resources_round_trip_through_yaml() {
    let cfg = parse_str(Path::new("ai-gateway.yaml"), SEED_AI_GATEWAY).unwrap();
    let gw = &cfg.gateways[0].resource;
    let yaml = serde_yaml_ng::to_string(gw).unwrap();
    assert!(yaml.contains("ttl: 1h"), "{yaml}");
    assert!(yaml.contains("maxCacheSize: 10GB"), "{yaml}");
    let again = parse(&yaml).unwrap();
    assert_eq!(&again.gateways[0].resource, gw);

    let cfg = parse_str(Path::new("payment-gateway.yaml"), SEED_PAYMENT).unwrap();
    let api = &cfg.apis[0].resource;
    let again = parse(&serde_yaml_ng::to_string(api).unwrap()).unwrap();
    assert_eq!(&again.apis[0].resource, api);
}

#[test]
fn json_schema_describes_units_and_rejects_unknown_fields() {
    let schema = serde_json::to_value(schemars::schema_for!(AiGateway)).unwrap();
    let defs = &schema["definitions"];
    assert_eq!(defs["Duration"]["x-kubernetes-int-or-string"], true);
    assert_eq!(defs["ByteSize"]["anyOf"][0]["type"], "integer");
    assert_eq!(defs["SemanticCacheSpec"]["additionalProperties"], false);
    assert_eq!(
        defs["BackendSpec"]["properties"]["timeout"]["default"],
        "30s"
    );
    let required = defs["BackendSpec"]["required"].as_array().unwrap();
    assert!(required.contains(&"models".into()));
}

// ---------------------------------------------------------------------------
// Unenforced sections
// ---------------------------------------------------------------------------

#[test]
fn unenforced_sections_are_reported_from_the_table() {
    let mut text = format!("{SEED_AI_GATEWAY}\n---\n{SEED_PAYMENT}");
    text = text.replace(
        "tracing:\n    enabled: true",
        "tracing:\n    enabled: false",
    );
    let cfg = parse(&text).unwrap();

    let warnings = unenforced_warnings(&cfg, &Enforcement::default());
    let got: Vec<(usize, &str, &str)> = warnings
        .iter()
        .map(|w| {
            assert_eq!(w.message, UNENFORCED_MESSAGE);
            assert_eq!(w.file, Path::new("test.yaml"));
            (
                w.document.unwrap(),
                w.resource.as_deref().unwrap(),
                w.field.as_deref().unwrap(),
            )
        })
        .collect();
    let gw = "AIGateway ml-team/sovereign-ai-gateway";
    let api = "API finance/payment-gateway";
    assert_eq!(
        got,
        [
            // tracing is disabled: not listed. Token counters are not built: listed.
            (1, gw, "spec.contentGuard"),
            (1, gw, "spec.semanticCache"),
            (1, gw, "spec.rateLimit"),
            (1, gw, "spec.metrics.includeTokenCount"),
            (2, api, "spec.service"),
            (2, api, "spec.openApiSpec"),
            (2, api, "spec.authentication"),
            (2, api, "spec.rateLimit"),
            (2, api, "spec.cors"),
            (2, api, "spec.accessControl"),
        ]
    );
    assert!(warnings[0]
        .to_string()
        .ends_with("spec.contentGuard: parsed but not enforced yet by this AirGate version"));

    let partial = Enforcement {
        content_guard: true,
        semantic_cache: true,
        api_routes: true,
        api_cors: true,
        ..Enforcement::default()
    };
    let fields: Vec<String> = unenforced_warnings(&cfg, &partial)
        .into_iter()
        .map(|w| w.field.unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.rateLimit",
            "spec.metrics.includeTokenCount",
            "spec.openApiSpec",
            "spec.authentication",
            "spec.rateLimit",
            "spec.accessControl"
        ]
    );

    let all = Enforcement {
        content_guard: true,
        semantic_cache: true,
        ai_rate_limit: true,
        ai_auth: true,
        tracing: true,
        token_metrics: true,
        api_routes: true,
        api_openapi: true,
        api_auth: true,
        api_rate_limit: true,
        api_cors: true,
        api_access_control: true,
    };
    assert!(unenforced_warnings(&cfg, &all).is_empty());
}
