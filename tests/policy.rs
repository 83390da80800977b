//! `airgate validate` as a policy gate: the built-in rule packs (each rule broken by a manifest
//! made to break it), pack selection by `compliance` labels on resources and `Namespace`
//! documents, user rules in CEL (firing, passing and broken), and the JSON and SARIF outputs
//! (the SARIF validated against the OASIS SARIF 2.1.0 schema).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use airgate::policy::finding::{Finding, Severity};
use airgate::policy::gate::{self, Input};
use airgate::policy::report::Report;
use airgate::policy::rules;
use common::process::run_airgate;
use serde_json::Value;

/// An AI gateway that satisfies every pack when labelled with it.
const GATEWAY: &str = r#"apiVersion: airgate.io/v1alpha1
kind: AIGateway
metadata:
  name: gw
  namespace: team
  labels: {compliance: PACK}
spec:
  backends:
    - name: a
      url: http://vllm.team.svc:8000
      models: [m]
      timeout: 20s
  authentication:
    jwt: {secretName: s, issuer: "https://idp", audience: gw, algorithms: [HS256]}
  rateLimit:
    perUser: {limit: 10, period: 1m}
  contentGuard:
    blockPatterns:
      - detector: credit_card
        action: block
      - detector: us_ssn
        action: redact
  semanticCache:
    ttl: 600
    similarityThreshold: 0.95
    maxCacheSize: 1GB
    scope: user
"#;

/// An API that satisfies every pack when labelled with it.
const API: &str = r#"apiVersion: airgate.io/v1alpha1
kind: API
metadata:
  name: api
  namespace: team
  labels: {compliance: PACK}
spec:
  service: {name: backend, port: {number: 8080}}
  timeout: 10s
  cors: {allowOrigins: ["https://app.team.example"]}
  rateLimit: {limit: 10, period: 1m}
  authentication:
    jwt: {secretName: s, issuer: "https://idp", audience: api, algorithms: [HS256]}
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

/// Validates `files` (written to a fresh folder) in process, with an optional policy file.
fn check(files: &[(&str, &str)], policy: Option<&str>) -> Report {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    let policy = policy.map(|text| write(dir.path(), "policy.rules", text));
    let input = Input {
        path: dir.path().to_path_buf(),
        loaded: airgate::app::load(dir.path()),
    };
    gate::check(vec![input], policy.as_deref())
}

fn rule_ids(report: &Report) -> BTreeSet<String> {
    report.findings.iter().map(|f| f.rule.clone()).collect()
}

fn only(report: &Report, rule: &str) -> Finding {
    let found: Vec<&Finding> = report.findings.iter().filter(|f| f.rule == rule).collect();
    assert_eq!(found.len(), 1, "{rule}: {:#?}", report.findings);
    found[0].clone()
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn the_compliant_manifests_pass_every_pack() {
    for pack in ["pci-dss", "hipaa"] {
        let report = check(
            &[
                ("gw.yaml", &GATEWAY.replace("PACK", pack)),
                ("api.yaml", &API.replace("PACK", pack)),
            ],
            None,
        );
        assert!(report.findings.is_empty(), "{pack}: {:#?}", report.findings);
        assert_eq!(report.exit_code(), 0);
    }
}

/// (rule, pack label, gateway or API, text replaced, replacement, line the finding names)
struct Case {
    rule: &'static str,
    pack: &'static str,
    api: bool,
    from: &'static str,
    to: &'static str,
    line_at: &'static str,
}

const CASES: &[Case] = &[
    Case { rule: "baseline.cors-wildcard-with-credentials", pack: "none", api: true, from: r#"cors: {allowOrigins: ["https://app.team.example"]}"#, to: r#"cors: {allowOrigins: ["*"], allowCredentials: true}"#, line_at: "allowCredentials" },
    Case { rule: "baseline.jwt-algorithms-pinned", pack: "none", api: false, from: ", algorithms: [HS256]", to: "", line_at: "jwt:" },
    Case { rule: "baseline.timeout-explicit", pack: "none", api: false, from: "      timeout: 20s\n", to: "", line_at: "- name: a" },
    Case { rule: "baseline.url-credentials", pack: "none", api: false, from: "url: http://vllm.team.svc:8000", to: "url: http://vllm.team.svc:8000/v1?api_key=abc123", line_at: "url:" },
    Case { rule: "baseline.credential-header-literal", pack: "none", api: false, from: "      timeout: 20s\n", to: "      timeout: 20s\n      headers:\n        X-Internal-Routing: approved\n        Authorization: \"Bearer abc123\"\n", line_at: "Authorization" },
    Case { rule: "baseline.block-pattern-matches-empty", pack: "none", api: false, from: "      - detector: us_ssn\n", to: "      - regex: \"(?i)(secret)*\"\n        action: block\n      - detector: us_ssn\n", line_at: "regex:" },
    Case { rule: "pci-dss.authentication-required", pack: "pci-dss", api: true, from: "  authentication:\n    jwt: {secretName: s, issuer: \"https://idp\", audience: api, algorithms: [HS256]}\n", to: "", line_at: "spec:" },
    Case { rule: "pci-dss.rate-limit-required", pack: "pci-dss", api: false, from: "  rateLimit:\n    perUser: {limit: 10, period: 1m}\n", to: "", line_at: "spec:" },
    Case { rule: "pci-dss.card-number-detector", pack: "pci-dss", api: false, from: "      - detector: credit_card\n        action: block\n", to: "", line_at: "blockPatterns:" },
    Case { rule: "pci-dss.jwt-issuer-audience", pack: "pci-dss", api: true, from: " audience: api,", to: "", line_at: "jwt:" },
    Case { rule: "pci-dss.cors-no-wildcard", pack: "pci-dss", api: true, from: r#"["https://app.team.example"]"#, to: r#"["https://app.team.example", "*"]"#, line_at: "cors:" },
    Case { rule: "pci-dss.no-plain-http-outside-cluster", pack: "pci-dss", api: false, from: "url: http://vllm.team.svc:8000", to: "url: http://llm.example.com:8000", line_at: "url:" },
    Case { rule: "pci-dss.cache-per-user", pack: "pci-dss", api: false, from: "    scope: user\n", to: "", line_at: "semanticCache:" },
    Case { rule: "hipaa.authentication-required", pack: "hipaa", api: false, from: "  authentication:\n    jwt: {secretName: s, issuer: \"https://idp\", audience: gw, algorithms: [HS256]}\n", to: "", line_at: "spec:" },
    Case { rule: "hipaa.identifier-detectors", pack: "hipaa", api: false, from: "      - detector: us_ssn\n        action: redact\n", to: "", line_at: "blockPatterns:" },
    Case { rule: "hipaa.no-plain-http-outside-cluster", pack: "hipaa", api: true, from: "  service: {name: backend, port: {number: 8080}}\n", to: "  service: {name: backend, port: {number: 8080}, url: \"http://10.20.0.7:8080\"}\n", line_at: "service:" },
    Case { rule: "hipaa.cache-per-user", pack: "hipaa", api: false, from: "    scope: user\n", to: "    scope: gateway\n", line_at: "scope:" },
];

#[test]
fn each_built_in_rule_fails_a_manifest_made_to_break_it() {
    let covered: BTreeSet<&str> = CASES.iter().map(|c| c.rule).collect();
    let catalogue: BTreeSet<&str> = rules::catalogue().map(|r| r.id).collect();
    assert_eq!(covered, catalogue, "every built-in rule needs a case");

    for case in CASES {
        let base = if case.api { API } else { GATEWAY };
        let base = base.replace(
            "labels: {compliance: PACK}",
            &format!("labels: {{compliance: {}}}", case.pack),
        );
        let base = if case.pack == "none" {
            base.replace("  labels: {compliance: none}\n", "")
        } else {
            base
        };
        let broken = base.replace(case.from, case.to);
        assert_ne!(broken, base, "{}: the edit did not apply", case.rule);
        let report = check(&[("r.yaml", &broken)], None);
        let finding = only(&report, case.rule);
        let severity = rules::find(case.rule).unwrap().severity;
        assert_eq!(finding.severity, severity, "{}", case.rule);
        assert_eq!(
            report.exit_code(),
            i32::from(severity == Severity::Error),
            "{}",
            case.rule
        );
        assert_eq!(
            finding.line,
            Some(line_of(&broken, case.line_at)),
            "{}: {finding}",
            case.rule
        );
        assert_eq!(finding.document, Some(1));
        assert!(finding.file.ends_with("r.yaml"), "{}", case.rule);
        assert!(finding.field.is_some(), "{}", case.rule);
        // the pack's other rules stay quiet: the finding is this edit's
        let others: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.rule != case.rule)
            .collect();
        assert!(others.is_empty(), "{}: {others:#?}", case.rule);
    }
}

#[test]
fn secrets_in_findings_are_named_not_shown() {
    let broken = GATEWAY
        .replace("  labels: {compliance: PACK}\n", "")
        .replace(
            "url: http://vllm.team.svc:8000",
            "url: http://vllm.team.svc:8000/?token=tok-S3CRET",
        )
        .replace(
            "      timeout: 20s\n",
            "      timeout: 20s\n      headers: {X-Api-Key: key-S3CRET}\n",
        );
    let report = check(&[("r.yaml", &broken)], None);
    let text = report.render(airgate::policy::report::Format::Text);
    assert!(
        text.contains("baseline.url-credentials")
            && text.contains("baseline.credential-header-literal"),
        "{text}"
    );
    assert!(!text.contains("S3CRET"), "{text}");
}

#[test]
fn a_namespace_document_selects_packs_for_its_resources() {
    let unlabelled = API
        .replace("  labels: {compliance: PACK}\n", "")
        .replace("  namespace: team\n", "  namespace: clinic\n")
        .replace("  authentication:\n    jwt: {secretName: s, issuer: \"https://idp\", audience: api, algorithms: [HS256]}\n", "");
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: clinic\n  labels: {compliance: hipaa}\n";
    let report = check(&[("api.yaml", &unlabelled), ("ns.yaml", namespace)], None);
    assert_eq!(
        only(&report, "hipaa.authentication-required").severity,
        Severity::Error
    );
    assert_eq!(report.exit_code(), 1);

    // another namespace's label does not apply
    let elsewhere = namespace.replace("name: clinic", "name: lab");
    let report = check(&[("api.yaml", &unlabelled), ("ns.yaml", &elsewhere)], None);
    assert!(
        !rule_ids(&report).iter().any(|r| r.starts_with("hipaa.")),
        "{:#?}",
        report.findings
    );
    assert_eq!(report.exit_code(), 0);
}

#[test]
fn a_misspelt_compliance_label_is_reported_not_ignored() {
    let report = check(&[("api.yaml", &API.replace("PACK", "pci_dss"))], None);
    let finding = only(&report, rules::UNKNOWN_PACK_RULE);
    assert_eq!(finding.severity, Severity::Warning);
    assert!(finding.message.contains("pci_dss"), "{finding}");
}

/// The seed's manifests with the seed's finance `Namespace`: the payment API is labelled
/// `pci-dss`, so that pack is on for it (removing its rate limit fails), and it passes.
#[test]
fn the_seed_manifests_pass_with_their_pci_dss_label() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed = |name: &str| std::fs::read_to_string(root.join("config/seed").join(name)).unwrap();
    let namespace = std::fs::read_to_string(
        root.join("tests/fixtures/policy/finance-namespace-isolation.yaml"),
    )
    .unwrap();
    let files = [
        ("ai-gateway.yaml", seed("ai-gateway.yaml")),
        ("payment-gateway.yaml", seed("payment-gateway.yaml")),
        ("finance-namespace-isolation.yaml", namespace),
    ];
    let as_refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let report = check(&as_refs, None);
    assert_eq!(report.exit_code(), 0, "{:#?}", report.findings);
    assert!(report
        .findings
        .iter()
        .all(|f| f.severity == Severity::Warning));

    let payment = seed("payment-gateway.yaml");
    let unlimited = payment.replace(
        "  rateLimit:\n    limit: 5000\n    period: 1m\n    strategy: ip\n",
        "",
    );
    assert_ne!(unlimited, payment);
    let report = check(&[("payment-gateway.yaml", &unlimited)], None);
    assert_eq!(
        only(&report, "pci-dss.rate-limit-required")
            .resource
            .as_deref(),
        Some("API finance/payment-gateway")
    );
}

const POLICY: &str = r#"# team rules
- id: team-label
  match:
    kinds: [API]
  expression: "has(object.metadata.labels) && 'team' in object.metadata.labels"
  message: every API names its owning team
  field: metadata.labels
- id: short-timeouts
  match:
    kinds: [AIGateway]
    labels: {compliance: none}
  expression: "object.spec.backends.all(b, !has(b.timeout) || b.timeout != '5m')"
  message: no backend waits five minutes
  severity: warning
- id: clinic-only
  match:
    namespaceLabels: {tier: restricted}
  expression: "namespaceObject.metadata.name == 'clinic'"
  message: restricted namespaces are clinic only
"#;

#[test]
fn a_user_cel_rule_fires_where_it_matches_and_passes_elsewhere() {
    let api = API.replace("  labels: {compliance: PACK}\n", "");
    let gateway = GATEWAY
        .replace("PACK", "none")
        .replace("timeout: 20s", "timeout: 5m");
    let report = check(&[("api.yaml", &api), ("gw.yaml", &gateway)], Some(POLICY));
    // the unknown-pack warning for `compliance: none` is expected alongside
    let finding = only(&report, "team-label");
    assert_eq!(finding.severity, Severity::Error);
    assert_eq!(finding.message, "every API names its owning team");
    assert_eq!(finding.resource.as_deref(), Some("API team/api"));
    assert_eq!(finding.line, Some(line_of(&api, "metadata:")), "{finding}");
    let warning = only(&report, "short-timeouts");
    assert_eq!(warning.severity, Severity::Warning);
    assert!(
        !rule_ids(&report).contains("clinic-only"),
        "no namespace is restricted"
    );
    assert_eq!(report.exit_code(), 1);

    let labelled = API.replace("labels: {compliance: PACK}", "labels: {team: payments}");
    let report = check(&[("api.yaml", &labelled)], Some(POLICY));
    assert!(report.findings.is_empty(), "{:#?}", report.findings);

    // namespaceLabels select through the Namespace document, which the expression sees
    let namespace =
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n  labels: {tier: restricted}\n";
    let report = check(
        &[("api.yaml", &labelled), ("ns.yaml", namespace)],
        Some(POLICY),
    );
    assert_eq!(
        only(&report, "clinic-only").message,
        "restricted namespaces are clinic only"
    );
}

#[test]
fn a_broken_cel_rule_is_a_finding_not_a_crash() {
    let policy = r#"- id: syntax
  expression: "object.spec.(("
  message: m
- id: no-such-field
  expression: "object.spec.doesNotExist == 1"
  message: m
- id: not-a-bool
  expression: "size(object.spec)"
  message: m
- id: misspelt
  expresion: "true"
  message: m
- id: baseline.mine
  expression: "true"
  message: m
- id: huge
  expression: "EXPR"
  message: m
"#
    .replace("EXPR", &"1 + ".repeat(2000));
    let api = API.replace("labels: {compliance: PACK}", "labels: {team: t}");
    let report = check(&[("api.yaml", &api)], Some(&policy));
    let at = |rule: &str| -> Vec<Finding> {
        report
            .findings
            .iter()
            .filter(|f| f.rule == rule)
            .cloned()
            .collect()
    };

    let syntax = at("syntax");
    assert_eq!(syntax.len(), 1, "{:#?}", report.findings);
    assert!(
        syntax[0].message.contains("does not compile"),
        "{}",
        syntax[0]
    );
    assert!(syntax[0].file.ends_with("policy.rules"));
    assert_eq!(syntax[0].line, Some(line_of(&policy, "object.spec.((")));

    let missing = &at("no-such-field")[0];
    assert!(
        missing.message.contains("failed on this resource"),
        "{missing}"
    );
    assert_eq!(missing.resource.as_deref(), Some("API team/api"));
    assert!(
        at("not-a-bool")[0].message.contains("must return a bool"),
        "{:#?}",
        at("not-a-bool")
    );

    let file_problems = at("policy-file");
    assert_eq!(file_problems.len(), 2, "{file_problems:#?}");
    assert!(file_problems
        .iter()
        .any(|f| f.message.contains("expresion")));
    assert!(file_problems
        .iter()
        .any(|f| f.message.contains("built-in prefix")));
    assert!(at("huge")[0].message.contains("more than"));
    assert!(report
        .findings
        .iter()
        .all(|f| f.severity == Severity::Error));
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn a_policy_file_that_is_not_a_list_is_reported() {
    let report = check(
        &[("api.yaml", &API.replace("PACK", "pci-dss"))],
        Some("id: x\n"),
    );
    let finding = only(&report, "policy-file");
    assert!(finding.message.contains("list of rules"), "{finding}");
    assert_eq!(report.exit_code(), 1);
}

/// One folder with an error (a rule), a warning and a loader error in another input.
fn mixed_inputs() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::create_dir(&good).unwrap();
    let api = API
        .replace("PACK", "pci-dss")
        .replace(r#"["https://app.team.example"]"#, r#"["*"]"#)
        .replace(", algorithms: [HS256]", "");
    write(&good, "api.yaml", &api);
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        GATEWAY
            .replace("PACK", "hipaa")
            .replace("timeout: 20s", "timeout: 20x"),
    )
    .unwrap();
    let (good, bad) = (good.display().to_string(), bad.display().to_string());
    (dir, good, bad)
}

#[test]
fn json_output_names_file_line_document_field_and_rule() {
    let (_dir, good, bad) = mixed_inputs();
    let (code, out) = run_airgate(&["validate", &good, &bad, "--format", "json"]);
    assert_eq!(code, 1, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let findings = json["findings"].as_array().unwrap();
    let wildcard = findings
        .iter()
        .find(|f| f["rule"] == "pci-dss.cors-no-wildcard")
        .unwrap();
    assert_eq!(wildcard["severity"], "error");
    assert_eq!(wildcard["line"], 10);
    assert_eq!(wildcard["document"], 1);
    assert_eq!(wildcard["field"], "spec.cors.allowOrigins[0]");
    assert_eq!(wildcard["resource"], "API team/api");
    assert!(wildcard["file"].as_str().unwrap().ends_with("api.yaml"));
    let schema = findings.iter().find(|f| f["rule"] == "schema").unwrap();
    assert_eq!(schema["field"], "spec.backends[0].timeout");
    assert_eq!(schema["line"], 12);
    assert_eq!(json["summary"]["errors"], 2);
    assert_eq!(json["summary"]["warnings"], 1);
}

/// Parses `out` and checks it against the committed SARIF 2.1.0 schema.
fn valid_sarif(out: &str) -> (Value, jsonschema::Validator) {
    let log: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sarif-schema-2.1.0.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::draft4::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&log)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{out}");
    (log, validator)
}

#[test]
fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let (_dir, good, bad) = mixed_inputs();
    let (code, out) = run_airgate(&["validate", &good, &bad, "--format", "sarif"]);
    assert_eq!(code, 1, "{out}");
    let (log, validator) = valid_sarif(&out);

    // and a log the schema refuses is refused: the check can fail
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["level"] = Value::from("fatal");
    assert!(!validator.is_valid(&broken));

    let run = &log["runs"][0];
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{out}");
    let wildcard = results
        .iter()
        .find(|r| r["ruleId"] == "pci-dss.cors-no-wildcard")
        .unwrap();
    assert_eq!(wildcard["level"], "error");
    let location = &wildcard["locations"][0]["physicalLocation"];
    assert_eq!(location["region"]["startLine"], 10);
    assert!(location["artifactLocation"]["uri"]
        .as_str()
        .unwrap()
        .ends_with("good/api.yaml"));
    let index = wildcard["ruleIndex"].as_u64().unwrap() as usize;
    let rule = &run["tool"]["driver"]["rules"][index];
    assert_eq!(rule["id"], "pci-dss.cors-no-wildcard");
    assert!(rule["fullDescription"]["text"]
        .as_str()
        .unwrap()
        .contains("PCI DSS v4.0"));
    let warning = results
        .iter()
        .find(|r| r["ruleId"] == "baseline.jwt-algorithms-pinned")
        .unwrap();
    assert_eq!(warning["level"], "warning");
}

#[test]
fn warnings_alone_exit_zero_and_text_lines_carry_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let api = API
        .replace("PACK", "pci-dss")
        .replace(", algorithms: [HS256]", "");
    let file = write(dir.path(), "api.yaml", &api).display().to_string();
    let (code, out) = run_airgate(&["validate", &file]);
    assert_eq!(code, 0, "{out}");
    let expected = format!("warning: {file}:13: document 1 (API team/api): spec.authentication.jwt: baseline.jwt-algorithms-pinned: ");
    assert!(out.contains(&expected), "{out}");
    assert!(out.contains("ok: "), "{out}");
}

#[test]
fn docs_policy_md_lists_every_built_in_rule_with_its_severity() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/policy.md"))
            .unwrap();
    for rule in rules::catalogue() {
        let row = format!(
            "| `{}` | {} | {} | {} | {} |",
            rule.id,
            rule.severity.as_str(),
            rule.summary,
            rule.reason,
            rule.requirement
        );
        assert!(
            docs.contains(&row),
            "docs/policy.md lacks or misstates: {row}"
        );
    }
}

#[test]
fn diff_sarif_places_each_breaking_change_on_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = GATEWAY.replace("  labels: {compliance: PACK}\n", "");
    let old = write(dir.path(), "old.yaml", &gateway);
    let new = write(
        dir.path(),
        "new.yaml",
        &gateway.replace("models: [m]", "models: [n]"),
    );
    let (code, out) = run_airgate(&[
        "diff",
        "--format",
        "sarif",
        &old.display().to_string(),
        &new.display().to_string(),
    ]);
    assert_eq!(code, 1, "{out}");
    let (log, _) = valid_sarif(&out);
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{out}");
    assert_eq!(results[0]["ruleId"], "model-removed");
    assert_eq!(results[0]["level"], "error");
    let location = &results[0]["locations"][0]["physicalLocation"];
    assert_eq!(
        location["region"]["startLine"],
        line_of(&gateway, "backends:")
    );
    assert!(location["artifactLocation"]["uri"]
        .as_str()
        .unwrap()
        .ends_with("new.yaml"));
}
