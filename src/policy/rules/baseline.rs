//! The `baseline` pack, on for every resource: mistakes that weaken any deployment.

use serde_json::Value;

use crate::policy::finding::Severity;

use super::{Pack, Rule, Subject, Target, Violation};

pub static RULES: &[Rule] = &[
    Rule {
        id: "baseline.cors-wildcard-with-credentials",
        pack: Pack::Baseline,
        severity: Severity::Error,
        summary: "no wildcard CORS origin together with allowCredentials",
        reason: "browsers refuse `*` with credentials, so the gateway answers with the caller's own Origin: any web page can then make credentialed calls and read the answers",
        requirement: "OWASP ASVS 4.0.3 V14.5.3",
        check: cors_wildcard_with_credentials,
    },
    Rule {
        id: "baseline.jwt-algorithms-pinned",
        pack: Pack::Baseline,
        severity: Severity::Warning,
        summary: "every JWT configuration lists its algorithms (authentication.jwt.algorithms)",
        reason: "the accepted algorithms then follow the key's type; pinning them keeps a key change from silently widening what tokens verify",
        requirement: "RFC 8725 (JWT BCP) 3.1; OWASP ASVS 4.0.3 V3.5.3",
        check: jwt_algorithms_pinned,
    },
    Rule {
        id: "baseline.timeout-explicit",
        pack: Pack::Baseline,
        severity: Severity::Warning,
        summary: "every backend and API sets its timeout",
        reason: "the 30 s default is rarely right: too long for a health-checked chat backend, too short for a batch API; an explicit value is a decision",
        requirement: "operational hygiene (Envoy, Traefik and Kong ask for explicit upstream timeouts)",
        check: timeout_explicit,
    },
    Rule {
        id: "baseline.url-credentials",
        pack: Pack::Baseline,
        severity: Severity::Error,
        summary: "no credential in a backend, service or spec URL (query parameters such as api_key, token, sig)",
        reason: "URLs are logged, shown in status and kept in git history; a credential in one is leaked (credentials before the host are already refused)",
        requirement: "OWASP ASVS 4.0.3 V8.3.1, V2.10.4",
        check: url_credentials,
    },
    Rule {
        id: "baseline.credential-header-literal",
        pack: Pack::Baseline,
        severity: Severity::Warning,
        summary: "no credential written as a literal backend header (Authorization, API keys, cookies)",
        reason: "a manifest is read by everyone with access to the repository or the resource; AirGate has no Secret-backed header yet, so put such backends behind mTLS (backends[].tls) where you can",
        requirement: "OWASP ASVS 4.0.3 V2.10.4",
        check: credential_header_literal,
    },
    Rule {
        id: "baseline.block-pattern-matches-empty",
        pack: Pack::Baseline,
        severity: Severity::Error,
        summary: "no content-guard block pattern matches the empty string",
        reason: "such a pattern matches at every position of every text: the guard then blocks everything, or, where empty matches are skipped, the pattern never blocks what was meant",
        requirement: "configuration correctness",
        check: block_pattern_matches_empty,
    },
];

fn cors_wildcard_with_credentials(target: &Target) -> Vec<Violation> {
    let Subject::Api(api) = target.subject else {
        return Vec::new();
    };
    match &api.spec.cors {
        Some(cors) if cors.allow_credentials && cors.allow_origins.iter().any(|o| o == "*") => {
            vec![Violation::new(
                "spec.cors.allowCredentials",
                "allowCredentials with a `*` origin: every origin may make credentialed calls",
            )]
        }
        _ => Vec::new(),
    }
}

fn jwt_algorithms_pinned(target: &Target) -> Vec<Violation> {
    match target.subject.jwt() {
        Some(jwt) if jwt.algorithms.is_empty() => vec![Violation::new(
            "spec.authentication.jwt",
            "no `algorithms`: the accepted algorithms follow the key's type",
        )],
        _ => Vec::new(),
    }
}

/// Read from the document as written: the typed resource carries the default.
fn timeout_explicit(target: &Target) -> Vec<Violation> {
    let raw = target.raw;
    if raw.is_null() {
        return Vec::new();
    }
    match target.subject {
        Subject::Gateway(_) => raw
            .pointer("/spec/backends")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, backend)| backend.get("timeout").is_none())
            .map(|(i, _)| {
                Violation::new(
                    format!("spec.backends[{i}]"),
                    "no `timeout`: the 30s default applies",
                )
            })
            .collect(),
        Subject::Api(_) if raw.pointer("/spec/timeout").is_none() => vec![Violation::new(
            "spec",
            "no `timeout` (an AirGate extension): the 30s default applies",
        )],
        Subject::Api(_) => Vec::new(),
    }
}

/// Query parameter names that carry a credential.
fn is_credential_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('-', "_");
    const EXACT: &[&str] = &["key", "sig", "signature", "auth", "code", "pwd", "pass"];
    const PARTS: &[&str] = &[
        "token",
        "secret",
        "password",
        "passwd",
        "apikey",
        "api_key",
        "credential",
        "signature",
        "access_key",
    ];
    EXACT.contains(&name.as_str()) || PARTS.iter().any(|part| name.contains(part))
}

fn url_credentials(target: &Target) -> Vec<Violation> {
    let mut urls = super::checks::data_urls(target);
    if let Subject::Api(api) = target.subject {
        if let Some(url) = api.spec.open_api_spec.as_ref().and_then(|s| s.url.clone()) {
            urls.push(("spec.openApiSpec.url".to_string(), url));
        }
    }
    if let Subject::Gateway(g) = target.subject {
        if let Some(url) = g.spec.tracing.as_ref().and_then(|t| t.endpoint.clone()) {
            urls.push(("spec.tracing.endpoint".to_string(), url));
        }
    }
    urls.into_iter()
        .filter_map(|(field, url)| {
            let query = url.split_once('?')?.1.split('#').next().unwrap_or_default();
            let name = query
                .split('&')
                .map(|pair| pair.split('=').next().unwrap_or_default())
                .find(|name| is_credential_name(name))?;
            Some(Violation::new(
                field,
                format!("query parameter {name:?} carries a credential in the URL (its value is not shown)"),
            ))
        })
        .collect()
}

/// Header names that carry a credential.
fn is_credential_header(name: &str, value: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let value = value.trim_start().to_ascii_lowercase();
    const NAMES: &[&str] = &["authorization", "proxy-authorization", "cookie"];
    NAMES.contains(&name.as_str())
        || [
            "token", "secret", "api-key", "apikey", "api_key", "password",
        ]
        .iter()
        .any(|part| name.contains(part))
        || value.starts_with("bearer ")
        || value.starts_with("basic ")
}

fn credential_header_literal(target: &Target) -> Vec<Violation> {
    let Subject::Gateway(g) = target.subject else {
        return Vec::new();
    };
    g.spec
        .backends
        .iter()
        .enumerate()
        .flat_map(|(i, backend)| {
            backend
                .headers
                .iter()
                .filter(|(name, value)| is_credential_header(name, value))
                .map(move |(name, _)| {
                    Violation::new(
                        format!("spec.backends[{i}].headers.{name}"),
                        format!("header {name:?} looks like a credential written in the manifest (its value is not shown)"),
                    )
                })
        })
        .collect()
}

/// Compiled size allowed for a pattern checked here (the guard has its own limits).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

fn matches_empty(pattern: &str) -> Option<bool> {
    match regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
    {
        Ok(regex) => Some(regex.is_match("")),
        // look-around and back-references: the guard compiles these with fancy-regex
        Err(_) => fancy_regex::Regex::new(pattern)
            .ok()
            .and_then(|regex| regex.is_match("").ok()),
    }
}

fn block_pattern_matches_empty(target: &Target) -> Vec<Violation> {
    let Subject::Gateway(g) = target.subject else {
        return Vec::new();
    };
    let Some(guard) = &g.spec.content_guard else {
        return Vec::new();
    };
    guard
        .block_patterns
        .iter()
        .enumerate()
        .filter(|(_, p)| p.regex.as_deref().and_then(matches_empty) == Some(true))
        .map(|(i, _)| {
            Violation::new(
                format!("spec.contentGuard.blockPatterns[{i}].regex"),
                "this pattern matches the empty string",
            )
        })
        .collect()
}
