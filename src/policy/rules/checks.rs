//! Checks shared by more than one pack (each pack names them with its own id and requirement).

use crate::config::CacheScope;

use super::{Subject, Target, Violation};

/// The resource authenticates callers (a JWT).
pub fn authentication_required(target: &Target) -> Vec<Violation> {
    if target.subject.jwt().is_some() {
        return Vec::new();
    }
    vec![Violation::new(
        "spec.authentication",
        "no authentication: anyone who can reach the route can call it (set authentication.jwt)",
    )]
}

/// The resource limits request rates.
pub fn rate_limit_set(target: &Target) -> Vec<Violation> {
    let limited = match target.subject {
        Subject::Gateway(g) => g
            .spec
            .rate_limit
            .as_ref()
            .is_some_and(|r| r.global.is_some() || r.per_user.is_some()),
        Subject::Api(a) => a.spec.rate_limit.is_some(),
    };
    if limited {
        return Vec::new();
    }
    vec![Violation::new(
        "spec.rateLimit",
        "no rate limit: nothing bounds how fast a caller (or a stolen token) can call",
    )]
}

/// The URLs requests and their answers travel to: backends and the API's service.
pub fn data_urls(target: &Target) -> Vec<(String, String)> {
    match target.subject {
        Subject::Gateway(g) => g
            .spec
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("spec.backends[{i}].url"), b.url.clone()))
            .collect(),
        Subject::Api(a) => a
            .spec
            .service
            .url
            .iter()
            .map(|url| ("spec.service.url".to_string(), url.clone()))
            .collect(),
    }
}

/// No plain `http://` to a host outside the cluster: requests and answers would cross networks
/// in clear text. (An `API` without `service.url` goes to its in-cluster service name.)
pub fn no_plain_http_outside_cluster(target: &Target) -> Vec<Violation> {
    data_urls(target)
        .into_iter()
        .filter_map(|(field, url)| {
            let rest = url.get(..7).filter(|s| s.eq_ignore_ascii_case("http://"))?;
            let host = host_of(&url[rest.len()..]);
            (!is_cluster_host(&host)).then(|| {
                Violation::new(
                    field,
                    format!("plain http:// to {host:?}, which is not a cluster service name: use https:// or the service's in-cluster name (name.namespace.svc)"),
                )
            })
        })
        .collect()
}

/// The host of `authority/path` (port and IPv6 brackets removed), lowercased.
fn host_of(rest: &str) -> String {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Top-level domains that make a two-label host (`example.com`) a public name rather than a
/// service in another namespace (`vllm.ml-team`).
const PUBLIC_SUFFIXES: &[&str] = &[
    "com", "net", "org", "io", "ai", "dev", "app", "cloud", "co", "gov", "mil", "edu", "int",
    "info", "biz", "eu", "uk", "de", "fr", "us", "ch", "nl", "internal", "local", "lan", "corp",
    "home", "intranet",
];

/// A name the cluster's DNS resolves to a Service: `name`, `name.namespace`,
/// `name.namespace.svc[.cluster-domain]`, or loopback (a sidecar on the pod).
pub fn is_cluster_host(host: &str) -> bool {
    if host == "localhost" || host == "::1" || host.starts_with("127.") {
        return true;
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [_] => true,
        [_, namespace] => !PUBLIC_SUFFIXES.contains(namespace),
        _ => labels.get(2) == Some(&"svc"),
    }
}

/// A semantic cache shared by every caller of the gateway could answer one user with what
/// another was told.
pub fn cache_per_user(target: &Target) -> Vec<Violation> {
    let Subject::Gateway(g) = target.subject else {
        return Vec::new();
    };
    match &g.spec.semantic_cache {
        Some(cache) if cache.enabled && cache.scope != Some(CacheScope::User) => {
            vec![Violation::new(
                "spec.semanticCache.scope",
                "the semantic cache is shared by all callers: an answer given to one user can be served to another (set scope: user)",
            )]
        }
        _ => Vec::new(),
    }
}

/// A content guard that scans prompts and answers with `detector` blocking or redacting.
pub fn guard_with_detector(target: &Target, detector: &str, what: &str) -> Vec<Violation> {
    let Subject::Gateway(g) = target.subject else {
        return Vec::new();
    };
    let Some(guard) = g.spec.content_guard.as_ref().filter(|g| g.enabled) else {
        return vec![Violation::new(
            "spec.contentGuard",
            format!("no content guard: {what} in prompts and answers pass unseen (enable it with the {detector} detector)"),
        )];
    };
    let mut violations = Vec::new();
    if !guard.scan_prompts {
        violations.push(Violation::new(
            "spec.contentGuard.scanPrompts",
            format!("prompts are not scanned: {what} reach the model"),
        ));
    }
    if !guard.scan_responses {
        violations.push(Violation::new(
            "spec.contentGuard.scanResponses",
            format!("answers are not scanned: {what} in answers reach the caller"),
        ));
    }
    let on = guard.block_patterns.iter().any(|p| {
        p.detector.as_deref() == Some(detector)
            && matches!(
                p.action,
                crate::config::PatternAction::Block | crate::config::PatternAction::Redact
            )
    });
    if !on {
        violations.push(Violation::new(
            "spec.contentGuard.blockPatterns",
            format!("no `detector: {detector}` with action block or redact"),
        ));
    }
    violations
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cluster_hosts_are_told_from_outside_hosts() {
        for inside in [
            "vllm",
            "vllm-service.ml-team",
            "vllm.ml-team.svc",
            "vllm.ml-team.svc.cluster.local",
            "localhost",
            "127.0.0.1",
            "::1",
        ] {
            assert!(is_cluster_host(inside), "{inside}");
        }
        for outside in [
            "api.approved-cloud.internal",
            "example.com",
            "vllm.ml-team.example.com",
            "10.0.0.7",
            "registry.internal.company.local",
        ] {
            assert!(!is_cluster_host(outside), "{outside}");
        }
        assert_eq!(host_of("Vllm.ML-team:8000/v1"), "vllm.ml-team");
        assert_eq!(host_of("[::1]:80/"), "::1");
    }
}
