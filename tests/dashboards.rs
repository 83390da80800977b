//! The Grafana dashboard (`k8s/grafana-dashboard.json`) and the alerts
//! (`k8s/prometheus-rules.yaml`) query only metrics and labels that the gateway exports.
//!
//! Every PromQL expression of both files is read with a small lexer that knows enough PromQL to
//! find metric selectors, their `{label="value"}` matchers, `by (...)`/`without (...)` clauses
//! (scoped to the aggregation they belong to), `on (...)`/`ignoring (...)` vector matching and
//! `histogram_quantile` arguments. The names found are compared with the `# TYPE` lines and the
//! sample label keys of `Metrics::render()` after one of everything has been recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use airgate::access::{FailurePolicy, RedisFailure};
use airgate::cache::CacheStats;
use airgate::telemetry::metrics::{Generation, RequestLabels};
use airgate::telemetry::Metrics;
use regex::Regex;
use serde_json::Value;

const DASHBOARD: &str = include_str!("../k8s/grafana-dashboard.json");
const RULES: &str = include_str!("../k8s/prometheus-rules.yaml");

/// Labels Prometheus attaches to every series at scrape time (target and Kubernetes metadata):
/// queries may group by them although the gateway never writes them.
const SCRAPE_LABELS: &[&str] = &[
    "instance",
    "job",
    "namespace",
    "pod",
    "container",
    "service",
    "endpoint",
];

const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];

// ---------------------------------------------------------------------------------------------
// What the gateway exports.

/// One metric family of the exposition: its `# TYPE` kind and the label keys of its samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
    samples: usize,
}

type Families = BTreeMap<String, Family>;

/// The text exposition after one sample of every metric family has been recorded through the
/// public methods of [`Metrics`].
fn exposition() -> String {
    let m = Metrics::try_new().unwrap();
    let gateway = "airgate-system/chat";
    m.observe_request(
        &RequestLabels {
            gateway,
            route: "chat_completions",
            model: "llama",
            backend: "vllm-a",
        },
        503,
        Some(0.2),
    );
    m.upstream_attempt(gateway, "vllm-a", "timeout");
    m.failover(gateway, "vllm-a", "timeout");
    m.set_backend_up(gateway, "vllm-a", false);
    m.stream_terminated(gateway, "upstream_error");
    m.guard_event(gateway, "prompt", "ssn", "block");
    m.guard_event(gateway, "response", "ssn", "fail_closed_scan_budget");
    m.auth_failure(gateway, "chat_completions", "missing_token");
    m.rate_limited(gateway, "chat_completions", "user");
    m.cache_request(gateway, "hit");
    m.cache_lookup_seconds(gateway, 0.002);
    m.cache_stats(
        gateway,
        &CacheStats {
            entries: 3,
            bytes: 4096,
            evictions: 1,
            rejected: 1,
            ..CacheStats::default()
        },
    );
    m.observe_generation(&Generation {
        gateway,
        model: "llama",
        operation: "chat",
        tokens: Some((12, 30)),
        estimated: false,
        duration: Some(1.5),
        time_to_first_token: Some(0.3),
        time_per_output_token: Some(0.04),
    });
    let redis = m.redis_options(FailurePolicy::FailOpen);
    let on_error = redis
        .on_error
        .as_ref()
        .expect("redis_options installs a failure hook that counts store errors");
    on_error(RedisFailure::Timeout);
    m.render()
}

/// The family a queried series name belongs to: the family itself for counters and gauges,
/// `<family>_bucket`/`_sum`/`_count` for histograms (and summaries' `_sum`/`_count`).
fn family_of<'a>(families: &'a Families, series: &str) -> Option<&'a str> {
    if let Some((name, family)) = families.get_key_value(series) {
        if family.kind != "histogram" && family.kind != "summary" {
            return Some(name);
        }
    }
    HISTOGRAM_SUFFIXES.iter().find_map(|suffix| {
        let base = series.strip_suffix(suffix)?;
        let (name, family) = families.get_key_value(base)?;
        let fits = family.kind == "histogram" || (family.kind == "summary" && *suffix != "_bucket");
        fits.then_some(name.as_str())
    })
}

/// Families from the `# TYPE name kind` lines, with the label keys of their sample lines.
fn parse_exposition(text: &str) -> Families {
    let mut families = Families::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                panic!("malformed TYPE line: {line}");
            };
            families.insert(
                name.to_string(),
                Family {
                    kind: kind.to_string(),
                    ..Family::default()
                },
            );
        }
    }
    let label = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*""#).unwrap();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let series = &line[..name_end];
        let family = family_of(&families, series)
            .unwrap_or_else(|| panic!("sample of `{series}` has no # TYPE line"))
            .to_string();
        let entry = families.get_mut(&family).unwrap();
        entry.samples += 1;
        if line[name_end..].starts_with('{') {
            let close = line.rfind('}').expect("sample labels are closed");
            for cap in label.captures_iter(&line[name_end..close]) {
                entry.labels.insert(cap[1].to_string());
            }
        }
    }
    families
}

// ---------------------------------------------------------------------------------------------
// What a PromQL expression queries.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str,
    Num,
    /// A Grafana variable outside a string, e.g. `$quantile`.
    Var,
    /// `[5m]`, `[$__rate_interval]`, `[1h:5m]`.
    Range,
    Open,
    Close,
    LBrace,
    RBrace,
    Comma,
    Op(String),
}

fn lex(expr: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' && c != '`' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated string".into());
                }
                i += 1;
                toks.push(Tok::Str);
            }
            '[' => {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or("unterminated range [")?;
                i += close + 1;
                toks.push(Tok::Range);
            }
            '(' | ')' | '{' | '}' | ',' => {
                toks.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    _ => Tok::Comma,
                });
                i += 1;
            }
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    let close = chars[i..]
                        .iter()
                        .position(|&c| c == '}')
                        .ok_or("unterminated ${")?;
                    i += close + 1;
                } else {
                    while i < chars.len() && ident_char(chars[i]) {
                        i += 1;
                    }
                }
                toks.push(Tok::Var);
            }
            _ if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // 0.95, 1e3, 0x1f, and durations such as `offset 5m`.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                toks.push(Tok::Num);
            }
            _ if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            _ if "=!~<>+-*/%^@".contains(c) => {
                let start = i;
                while i < chars.len() && "=!~<>".contains(chars[i]) && i - start < 2 {
                    i += 1;
                }
                if i == start {
                    i += 1;
                }
                toks.push(Tok::Op(chars[start..i].iter().collect()));
            }
            _ => return Err(format!("unexpected character {c:?}")),
        }
    }
    Ok(toks)
}

/// A metric selector: the series name and the label names of its matchers.
#[derive(Debug, Clone, PartialEq)]
struct Selector {
    name: String,
    labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Scope {
    /// `by`/`without` of an aggregation: every selector in these indices must have the labels.
    Aggregation(Range<usize>),
    /// `on`/`ignoring`/`group_left`/`group_right`: some selector of the expression must.
    Matching,
}

#[derive(Debug, Clone, PartialEq)]
struct Grouping {
    labels: Vec<String>,
    without: bool,
    scope: Scope,
}

#[derive(Debug, Default, PartialEq)]
struct Query {
    selectors: Vec<Selector>,
    groupings: Vec<Grouping>,
    /// `histogram_quantile` arguments: the selectors and groupings inside.
    quantiles: Vec<(Range<usize>, Range<usize>)>,
}

const AGGREGATORS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const VECTOR_MATCHING: &[&str] = &["on", "ignoring", "group_left", "group_right"];
const KEYWORDS: &[&str] = &[
    "bool", "and", "or", "unless", "offset", "inf", "nan", "atan2",
];

enum Frame {
    Plain,
    /// An aggregation, with the grouping written before its parenthesis if any.
    Aggregation(Option<(bool, Vec<String>)>, usize),
    Quantile(usize, usize),
}

/// `( label, label, ... )` from `toks[i]`; returns the labels and the index after `)`.
fn label_list(toks: &[Tok], mut i: usize) -> Result<(Vec<String>, usize), String> {
    if toks.get(i) != Some(&Tok::Open) {
        return Err("expected ( after a grouping keyword".into());
    }
    i += 1;
    let mut labels = Vec::new();
    loop {
        match toks.get(i) {
            Some(Tok::Close) => return Ok((labels, i + 1)),
            Some(Tok::Ident(label)) => labels.push(label.clone()),
            Some(Tok::Comma) => {}
            other => return Err(format!("unexpected {other:?} in a label list")),
        }
        i += 1;
    }
}

/// `{ label op "value", ... }` from `toks[i]`; returns the label names and the index after `}`.
fn matchers(toks: &[Tok], mut i: usize) -> Result<(Vec<String>, usize), String> {
    i += 1;
    let mut labels = Vec::new();
    loop {
        match (toks.get(i), toks.get(i + 1), toks.get(i + 2)) {
            (Some(Tok::RBrace), _, _) => return Ok((labels, i + 1)),
            (Some(Tok::Comma), _, _) => i += 1,
            (Some(Tok::Ident(label)), Some(Tok::Op(op)), Some(Tok::Str))
                if ["=", "!=", "=~", "!~"].contains(&op.as_str()) =>
            {
                labels.push(label.clone());
                i += 3;
            }
            other => return Err(format!("unexpected {other:?} in a label matcher")),
        }
    }
}

fn grouping_keyword(tok: Option<&Tok>) -> Option<bool> {
    match tok {
        Some(Tok::Ident(kw)) if kw.eq_ignore_ascii_case("by") => Some(false),
        Some(Tok::Ident(kw)) if kw.eq_ignore_ascii_case("without") => Some(true),
        _ => None,
    }
}

fn parse(expr: &str) -> Result<Query, String> {
    let toks = lex(expr)?;
    let mut q = Query::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                let next = toks.get(i + 1);
                if AGGREGATORS.contains(&lower.as_str())
                    && (next == Some(&Tok::Open) || grouping_keyword(next).is_some())
                {
                    i += 1;
                    let mut before = None;
                    if let Some(without) = grouping_keyword(toks.get(i)) {
                        let (labels, after) = label_list(&toks, i + 1)?;
                        before = Some((without, labels));
                        i = after;
                    }
                    if toks.get(i) != Some(&Tok::Open) {
                        return Err(format!("expected ( after {name}"));
                    }
                    stack.push(Frame::Aggregation(before, q.selectors.len()));
                    i += 1;
                } else if grouping_keyword(Some(&toks[i])).is_some() {
                    return Err(format!("`{name}` outside an aggregation"));
                } else if VECTOR_MATCHING.contains(&lower.as_str()) {
                    i += 1;
                    if toks.get(i) == Some(&Tok::Open) {
                        let (labels, after) = label_list(&toks, i)?;
                        q.groupings.push(Grouping {
                            labels,
                            without: lower == "ignoring",
                            scope: Scope::Matching,
                        });
                        i = after;
                    }
                } else if next == Some(&Tok::Open) {
                    stack.push(if name == "histogram_quantile" {
                        Frame::Quantile(q.selectors.len(), q.groupings.len())
                    } else {
                        Frame::Plain
                    });
                    i += 2;
                } else if KEYWORDS.contains(&lower.as_str()) {
                    i += 1;
                } else {
                    let mut labels = Vec::new();
                    i += 1;
                    if toks.get(i) == Some(&Tok::LBrace) {
                        let (found, after) = matchers(&toks, i)?;
                        labels = found;
                        i = after;
                    }
                    q.selectors.push(Selector {
                        name: name.clone(),
                        labels,
                    });
                }
            }
            Tok::LBrace => return Err("selectors without a metric name are not checked".into()),
            Tok::RBrace => return Err("unbalanced }".into()),
            Tok::Open => {
                stack.push(Frame::Plain);
                i += 1;
            }
            Tok::Close => {
                i += 1;
                match stack.pop().ok_or("unbalanced )")? {
                    Frame::Plain => {}
                    Frame::Aggregation(before, start) => {
                        let grouping = match before {
                            Some(grouping) => Some(grouping),
                            None => match grouping_keyword(toks.get(i)) {
                                Some(without) => {
                                    let (labels, after) = label_list(&toks, i + 1)?;
                                    i = after;
                                    Some((without, labels))
                                }
                                None => None,
                            },
                        };
                        if let Some((without, labels)) = grouping {
                            q.groupings.push(Grouping {
                                labels,
                                without,
                                scope: Scope::Aggregation(start..q.selectors.len()),
                            });
                        }
                    }
                    Frame::Quantile(selectors, groupings) => q
                        .quantiles
                        .push((selectors..q.selectors.len(), groupings..q.groupings.len())),
                }
            }
            _ => i += 1,
        }
    }
    if !stack.is_empty() {
        return Err("unbalanced (".into());
    }
    Ok(q)
}

/// What `expr` queries that the exposition does not have.
fn check(expr: &str, families: &Families) -> Vec<String> {
    let q = match parse(expr) {
        Ok(q) => q,
        Err(e) => return vec![format!("cannot read the expression: {e}")],
    };
    let mut errors = Vec::new();
    if q.selectors.is_empty() {
        errors.push("queries no metric".to_string());
    }
    let has = |family: &str, label: &str| {
        SCRAPE_LABELS.contains(&label)
            || families
                .get(family)
                .is_some_and(|f| f.labels.contains(label))
    };
    let resolved: Vec<Option<&str>> = q
        .selectors
        .iter()
        .map(|s| family_of(families, &s.name))
        .collect();
    for (selector, family) in q.selectors.iter().zip(&resolved) {
        let Some(family) = family else {
            errors.push(format!("`{}` is not exported", selector.name));
            continue;
        };
        if families[*family].samples == 0 {
            errors.push(format!(
                "no sample of `{family}` was recorded: record one in exposition()"
            ));
        }
        for label in &selector.labels {
            if !has(family, label) {
                errors.push(format!("`{}` has no label `{label}`", selector.name));
            }
        }
    }
    for grouping in &q.groupings {
        let keyword = if grouping.without { "without" } else { "by" };
        for label in &grouping.labels {
            match &grouping.scope {
                Scope::Aggregation(range) => {
                    for (selector, family) in q.selectors[range.clone()]
                        .iter()
                        .zip(&resolved[range.clone()])
                    {
                        if family.is_some_and(|f| !has(f, label)) {
                            errors.push(format!(
                                "{keyword} ({label}) over `{}`, which has no label `{label}`",
                                selector.name
                            ));
                        }
                    }
                }
                Scope::Matching => {
                    if !resolved.iter().flatten().any(|f| has(f, label)) {
                        errors.push(format!(
                            "vector matching on `{label}`, which no operand has"
                        ));
                    }
                }
            }
        }
    }
    for (selectors, groupings) in &q.quantiles {
        for (selector, family) in q.selectors[selectors.clone()]
            .iter()
            .zip(&resolved[selectors.clone()])
        {
            let bucket = selector.name.ends_with("_bucket")
                && family.is_some_and(|f| families[f].kind == "histogram");
            if !bucket {
                errors.push(format!(
                    "histogram_quantile over `{}`, which is not a histogram's _bucket series",
                    selector.name
                ));
            }
        }
        for grouping in &q.groupings[groupings.clone()] {
            let keeps_le = grouping.labels.iter().any(|l| l == "le") != grouping.without;
            if matches!(grouping.scope, Scope::Aggregation(_)) && !keeps_le {
                errors.push("histogram_quantile over an aggregation that drops `le`".to_string());
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// The expressions of the dashboard and the rules.

/// Where an expression is (file, panel or alert) and the expression.
type Located = (String, String);

/// Every string `expr` field under `value`, located by the nearest title, alert or record name.
fn collect_exprs(value: &Value, place: &str, out: &mut Vec<Located>) {
    match value {
        Value::Object(map) => {
            let here = ["alert", "record", "title"]
                .iter()
                .find_map(|key| map.get(*key).and_then(Value::as_str))
                .map_or_else(|| place.to_string(), |name| format!("{place} > {name}"));
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("expr", Value::String(expr)) => out.push((here.clone(), expr.clone())),
                    _ => collect_exprs(child, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_exprs(item, place, out);
            }
        }
        _ => {}
    }
}

/// Grafana query variables: `label_values(selector, label)` becomes `count by (label)
/// (selector)`, so the label is checked on the selector's metric like any grouping.
fn variable_exprs(dashboard: &Value, out: &mut Vec<Located>) -> Vec<String> {
    let label_values =
        Regex::new(r"^\s*label_values\(\s*(.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$").unwrap();
    let query_result = Regex::new(r"^\s*query_result\((.+)\)\s*$").unwrap();
    let mut errors = Vec::new();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let name = variable["name"].as_str().unwrap_or("?");
        let place = format!("dashboard > variable ${name}");
        let query = variable["query"]
            .as_str()
            .or_else(|| variable["query"]["query"].as_str())
            .unwrap_or_default();
        if let Some(cap) = label_values.captures(query) {
            out.push((place, format!("count by ({}) ({})", &cap[2], &cap[1])));
        } else if let Some(cap) = query_result.captures(query) {
            out.push((place, cap[1].to_string()));
        } else {
            errors.push(format!("{place}: unsupported variable query {query:?}"));
        }
    }
    errors
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("k8s/grafana-dashboard.json is JSON")
}

fn rules() -> Value {
    serde_yaml_ng::from_str(RULES).expect("k8s/prometheus-rules.yaml is YAML")
}

fn all_exprs() -> (Vec<Located>, Vec<String>) {
    let mut exprs = Vec::new();
    collect_exprs(&dashboard(), "dashboard", &mut exprs);
    let errors = variable_exprs(&dashboard(), &mut exprs);
    collect_exprs(&rules(), "rules", &mut exprs);
    (exprs, errors)
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn dashboard_and_rules_query_only_exported_metrics_and_labels() {
    let families = parse_exposition(&exposition());
    let (exprs, mut errors) = all_exprs();
    assert!(
        exprs.len() > 30,
        "only {} expressions found: the extraction is broken",
        exprs.len()
    );
    for (place, expr) in &exprs {
        for error in check(expr, &families) {
            errors.push(format!("{place}: {error}\n    in: {}", expr.trim()));
        }
    }
    assert!(
        errors.is_empty(),
        "{} problem(s) with the queried metrics (exported: {:?}):\n{}",
        errors.len(),
        families.keys().collect::<Vec<_>>(),
        errors.join("\n")
    );
}

#[test]
fn the_exposition_is_read_with_kinds_and_labels() {
    let families = parse_exposition(&exposition());
    let requests = &families["airgate_requests_total"];
    assert_eq!(requests.kind, "counter");
    assert_eq!(
        requests
            .labels
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["backend", "gateway", "model", "route", "status_class"]
    );
    let duration = &families["airgate_request_duration_seconds"];
    assert_eq!(duration.kind, "histogram");
    assert!(duration.labels.contains("le"));
    assert!(!duration.labels.contains("model"));
    assert_eq!(families["airgate_backend_up"].kind, "gauge");
    assert_eq!(
        family_of(&families, "airgate_time_to_first_token_seconds_bucket"),
        Some("airgate_time_to_first_token_seconds")
    );
    assert_eq!(family_of(&families, "airgate_requests_total_count"), None);
    assert_eq!(
        family_of(&families, "airgate_request_duration_seconds"),
        None
    );
    // One of everything was recorded, so every family's labels are known.
    let empty: Vec<_> = families
        .iter()
        .filter(|(_, f)| f.samples == 0)
        .map(|(name, _)| name)
        .collect();
    assert!(empty.is_empty(), "families without a sample: {empty:?}");
}

#[test]
fn extraction_finds_metrics_not_functions_keywords_labels_or_variables() {
    let q = parse(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(airgate_request_duration_seconds_bucket{gateway=~"$gateway", route!="api"}[$__rate_interval])))
           / on (gateway) group_left
           count(max by (gateway, backend) (airgate_backend_up offset 5m) == bool 0) or vector(0)
           + sum(rate(airgate_tokens_total[5m])) without (estimated)"#,
    )
    .unwrap();
    let names: Vec<_> = q.selectors.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "airgate_request_duration_seconds_bucket",
            "airgate_backend_up",
            "airgate_tokens_total"
        ]
    );
    assert_eq!(q.selectors[0].labels, ["gateway", "route"]);
    assert!(q.selectors[1].labels.is_empty());
    let groupings: Vec<_> = q
        .groupings
        .iter()
        .map(|g| (g.labels.join(","), g.without, g.scope.clone()))
        .collect();
    assert_eq!(
        groupings,
        [
            ("le,route".into(), false, Scope::Aggregation(0..1)),
            ("gateway".into(), false, Scope::Matching),
            ("gateway,backend".into(), false, Scope::Aggregation(1..2)),
            ("estimated".into(), true, Scope::Aggregation(2..3)),
        ]
    );
    assert_eq!(q.quantiles, [(0..1, 0..1)]);
    assert!(parse("sum(rate(x[5m])").is_err());
    assert!(parse(r#"{__name__="x"}"#).is_err());
}

#[test]
fn unknown_metrics_and_labels_are_reported() {
    let families = parse_exposition(&exposition());
    let reported = |expr: &str| check(expr, &families).join("\n");
    assert_eq!(
        reported(
            r#"sum by (backend) (rate(airgate_requests_total{gateway=~"$gateway", status_class="5xx"}[5m]))"#
        ),
        ""
    );
    assert!(
        reported(r#"sum(rate(airgate_made_up_total{gateway="g"}[5m]))"#)
            .contains("`airgate_made_up_total` is not exported")
    );
    // Traefik's names, as in the seed.
    assert!(
        reported(r#"sum(rate(traefik_service_requests_total{code=~"5.."}[5m]))"#)
            .contains("`traefik_service_requests_total` is not exported")
    );
    assert!(reported(r#"airgate_requests_total{status="5xx"}"#)
        .contains("`airgate_requests_total` has no label `status`"));
    assert!(
        reported(r#"sum by (model) (rate(airgate_request_duration_seconds_bucket[5m]))"#)
            .contains("by (model) over `airgate_request_duration_seconds_bucket`")
    );
    assert!(reported("rate(airgate_request_duration_seconds[5m])")
        .contains("`airgate_request_duration_seconds` is not exported"));
    assert!(reported("rate(airgate_requests_total_count[5m])")
        .contains("`airgate_requests_total_count` is not exported"));
    assert!(reported("sum by (kind) (rate(airgate_rate_limit_store_errors_total[5m]))").is_empty());
    assert!(
        reported(r#"sum(rate(airgate_rate_limit_store_errors_total{gateway="g"}[5m]))"#)
            .contains("has no label `gateway`")
    );
    assert!(reported(
        "histogram_quantile(0.95, sum by (route) (rate(airgate_request_duration_seconds_bucket[5m])))"
    )
    .contains("drops `le`"));
    assert!(
        reported("histogram_quantile(0.95, rate(airgate_requests_total[5m]))")
            .contains("not a histogram's _bucket series")
    );
    assert!(
        reported("airgate_backend_up / on (route) airgate_failovers_total")
            .contains("vector matching on `route`")
    );
    assert_eq!(reported("sum by (pod) (airgate_backend_up)"), "");
}

#[test]
fn dashboard_has_its_variables_and_panels() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let variables = d["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    assert_eq!(variable("gateway")["type"], "query");
    assert_eq!(variable("model")["type"], "query");

    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        assert!(panel["gridPos"]["w"].as_u64().unwrap() > 0, "{title}");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }

    let mut exprs = Vec::new();
    collect_exprs(&d, "dashboard", &mut exprs);
    let queried: BTreeSet<String> = exprs
        .iter()
        .flat_map(|(_, e)| parse(e).unwrap().selectors)
        .map(|s| s.name)
        .collect();
    for needed in [
        "airgate_tokens_total",
        "airgate_time_to_first_token_seconds_bucket",
        "airgate_requests_total",
        "airgate_request_duration_seconds_bucket",
        "airgate_cache_requests_total",
        "airgate_guard_events_total",
        "airgate_failovers_total",
        "airgate_rate_limited_total",
        "airgate_backend_up",
    ] {
        assert!(queried.contains(needed), "no panel queries {needed}");
    }
}

#[test]
fn rules_keep_the_seed_alerts_and_watch_airgate() {
    let r = rules();
    assert_eq!(r["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(r["kind"], "PrometheusRule");
    let alerts: BTreeMap<String, Value> = r["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|rule| (rule["alert"].as_str().unwrap().to_string(), rule))
        .collect();
    for (name, rule) in &alerts {
        assert!(rule["expr"].is_string(), "{name}");
        assert!(rule["labels"]["severity"].is_string(), "{name}");
        assert!(rule["annotations"]["summary"].is_string(), "{name}");
    }
    // The seed's two alerts (same names, `for` and severities), and a backend down for 5m.
    for (name, wait, severity, metric) in [
        ("HighErrorRate", "2m", "critical", "airgate_requests_total"),
        (
            "HighLatency",
            "5m",
            "warning",
            "airgate_request_duration_seconds_bucket",
        ),
        ("AirGateBackendDown", "5m", "warning", "airgate_backend_up"),
    ] {
        let rule = &alerts[name];
        assert_eq!(rule["for"], wait, "{name}");
        assert_eq!(rule["labels"]["severity"], severity, "{name}");
        let q = parse(rule["expr"].as_str().unwrap()).unwrap();
        assert!(q.selectors.iter().any(|s| s.name == metric), "{name}");
    }
    assert!(alerts["HighErrorRate"]["expr"]
        .as_str()
        .unwrap()
        .contains(r#"status_class="5xx""#));
    assert!(alerts["HighErrorRate"]["expr"]
        .as_str()
        .unwrap()
        .contains("> 0.05"));
    assert!(alerts["HighLatency"]["expr"]
        .as_str()
        .unwrap()
        .contains("> 0.5"));
    let queried: BTreeSet<String> = alerts
        .values()
        .flat_map(|rule| parse(rule["expr"].as_str().unwrap()).unwrap().selectors)
        .map(|s| s.name)
        .collect();
    for needed in [
        "airgate_guard_events_total",
        "airgate_rate_limit_store_errors_total",
    ] {
        assert!(queried.contains(needed), "no alert on {needed}");
    }
}
