//! Semantic checks on parsed resources. Every check runs; all failures are returned.

use std::collections::HashMap;

use crate::config::AuthenticationSpec;

use crate::config::resources::{
    AiGateway, AiRateLimitSpec, Api, BackendSpec, BackendTlsSpec, ContentGuardSpec, LimitSpec,
    ObjectMeta, PatternSpec, RateLimitStrategy, RoutingSpec, SemanticCacheSpec, TracingSpec,
};
use crate::config::units::Duration;

/// A failed check: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub field: String,
    pub message: String,
}

/// JOSE algorithm names accepted in `authentication.jwt.algorithms`.
const JWT_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "ES512", "EdDSA",
];

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn non_empty(&mut self, field: impl Into<String>, value: &str) {
        if value.trim().is_empty() {
            self.add(field, "must not be empty");
        }
    }

    fn positive_duration(&mut self, field: impl Into<String>, value: Duration) {
        if value.is_zero() {
            self.add(field, "must be greater than zero");
        }
    }
}

pub(crate) fn gateway(gateway: &AiGateway) -> Vec<FieldError> {
    let mut errors = Errors::default();
    metadata(&gateway.metadata, &mut errors);
    let spec = &gateway.spec;
    if spec.backends.is_empty() {
        errors.add("spec.backends", "at least one backend is required");
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, backend) in spec.backends.iter().enumerate() {
        let field = format!("spec.backends[{i}]");
        if let Some(first) = names.get(backend.name.as_str()) {
            errors.add(
                format!("{field}.name"),
                format!(
                    "duplicate backend name {:?} (already used by spec.backends[{first}])",
                    backend.name
                ),
            );
        } else {
            names.insert(&backend.name, i);
        }
        backend_spec(&field, backend, &mut errors);
    }
    if let Some(guard) = &spec.content_guard {
        content_guard(guard, &mut errors);
    }
    if let Some(cache) = &spec.semantic_cache {
        semantic_cache(cache, &mut errors);
    }
    if let Some(rate_limit) = &spec.rate_limit {
        ai_rate_limit(rate_limit, &mut errors);
    }
    if let Some(auth) = &spec.authentication {
        authentication(auth, &mut errors);
    }
    if let Some(tracing) = &spec.tracing {
        tracing_spec(tracing, &mut errors);
    }
    if let Some(routing) = &spec.routing {
        routing_spec(routing, &mut errors);
    }
    errors.0
}

pub(crate) fn api(api: &Api) -> Vec<FieldError> {
    let mut errors = Errors::default();
    metadata(&api.metadata, &mut errors);
    let spec = &api.spec;

    if let Some(openapi) = &spec.open_api_spec {
        match (&openapi.path, &openapi.url) {
            (None, None) => errors.add("spec.openApiSpec", "set path or url"),
            (path, url) => {
                if let Some(path) = path {
                    errors.non_empty("spec.openApiSpec.path", path);
                }
                if let Some(url) = url {
                    if let Err(message) = check_http_url(url) {
                        errors.add("spec.openApiSpec.url", message);
                    }
                }
            }
        }
    }

    errors.non_empty("spec.service.name", &spec.service.name);
    if let Some(namespace) = &spec.service.namespace {
        errors.non_empty("spec.service.namespace", namespace);
    }
    match (&spec.service.port.number, &spec.service.port.name) {
        (None, None) => errors.add("spec.service.port", "set number or name"),
        (Some(_), Some(_)) => errors.add("spec.service.port", "set number or name, not both"),
        (Some(0), None) => errors.add("spec.service.port.number", "must be between 1 and 65535"),
        (None, Some(name)) => errors.non_empty("spec.service.port.name", name),
        (Some(_), None) => {}
    }

    if let Some(cors) = &spec.cors {
        for (i, origin) in cors.allow_origins.iter().enumerate() {
            errors.non_empty(format!("spec.cors.allowOrigins[{i}]"), origin);
        }
        for (i, method) in cors.allow_methods.iter().enumerate() {
            if method != "*" && !is_header_name(method) {
                errors.add(
                    format!("spec.cors.allowMethods[{i}]"),
                    format!("{method:?} is not a valid HTTP method"),
                );
            }
        }
        for (list, values) in [
            ("allowHeaders", &cors.allow_headers),
            ("exposeHeaders", &cors.expose_headers),
        ] {
            for (i, header) in values.iter().enumerate() {
                if header != "*" && !is_header_name(header) {
                    errors.add(
                        format!("spec.cors.{list}[{i}]"),
                        format!("{header:?} is not a valid HTTP header name"),
                    );
                }
            }
        }
    }

    if let Some(rate_limit) = &spec.rate_limit {
        if rate_limit.limit == 0 {
            errors.add("spec.rateLimit.limit", "must be greater than zero");
        }
        errors.positive_duration("spec.rateLimit.period", rate_limit.period);
        if RateLimitStrategy::parse(&rate_limit.strategy).is_none() {
            errors.add(
                "spec.rateLimit.strategy",
                format!(
                    "invalid strategy {:?}: expected \"ip\", \"user\" or \"header:NAME\" \
                     with NAME a valid HTTP header name",
                    rate_limit.strategy
                ),
            );
        }
    }

    if let Some(auth) = &spec.authentication {
        authentication(auth, &mut errors);
    }
    if let Some(prefix) = &spec.path_prefix {
        if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.starts_with("/v1") {
            errors.add(
                "spec.pathPrefix",
                format!("{prefix:?} must start with '/', not end with '/', and not shadow /v1"),
            );
        }
    }
    if let Some(url) = &spec.service.url {
        if let Err(message) = check_http_url(url) {
            errors.add("spec.service.url", message);
        }
    }
    if spec.service.port.number.is_none() && spec.service.url.is_none() {
        errors.add(
            "spec.service.port",
            "a named port is not resolved (AirGate does not read Services, in cluster mode either): give port.number or service.url",
        );
    }

    if let Some(access) = &spec.access_control {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, policy) in access.policies.iter().enumerate() {
            let field = format!("spec.accessControl.policies[{i}]");
            errors.non_empty(format!("{field}.name"), &policy.name);
            errors.non_empty(format!("{field}.rule"), &policy.rule);
            if let Some(first) = names.get(policy.name.as_str()) {
                errors.add(
                    format!("{field}.name"),
                    format!(
                        "duplicate policy name {:?} (already used by spec.accessControl.policies[{first}])",
                        policy.name
                    ),
                );
            } else {
                names.insert(&policy.name, i);
            }
        }
    }
    errors.0
}

fn metadata(meta: &ObjectMeta, errors: &mut Errors) {
    errors.non_empty("metadata.name", &meta.name);
    if meta.name.contains('/') {
        errors.add("metadata.name", "must not contain '/'");
    }
    if let Some(namespace) = &meta.namespace {
        errors.non_empty("metadata.namespace", namespace);
        if namespace.contains('/') {
            errors.add("metadata.namespace", "must not contain '/'");
        }
    }
}

fn backend_spec(field: &str, backend: &BackendSpec, errors: &mut Errors) {
    errors.non_empty(format!("{field}.name"), &backend.name);
    if let Err(message) = check_http_url(&backend.url) {
        errors.add(format!("{field}.url"), message);
    }
    if backend.models.is_empty() {
        errors.add(format!("{field}.models"), "at least one model is required");
    }
    for (j, model) in backend.models.iter().enumerate() {
        errors.non_empty(format!("{field}.models[{j}]"), model);
    }
    errors.positive_duration(format!("{field}.timeout"), backend.timeout);
    for (name, value) in &backend.headers {
        if !is_header_name(name) {
            errors.add(
                format!("{field}.headers"),
                format!("{name:?} is not a valid HTTP header name"),
            );
        }
        if !is_header_value(value) {
            errors.add(
                format!("{field}.headers.{name}"),
                "not a valid HTTP header value (control characters such as newlines are not allowed)",
            );
        }
    }
    if let Some(tls) = &backend.tls {
        if !backend.url.to_ascii_lowercase().starts_with("https://") {
            errors.add(
                format!("{field}.tls"),
                "TLS settings need an https:// url (the connection would be plain HTTP)",
            );
        }
        backend_tls(&format!("{field}.tls"), tls, errors);
    }
    if let Some(health) = &backend.health_check {
        let field = format!("{field}.healthCheck");
        if let Some(path) = &health.path {
            if !path.starts_with('/') {
                errors.add(format!("{field}.path"), "must start with '/'");
            }
        }
        errors.positive_duration(format!("{field}.interval"), health.interval);
        errors.positive_duration(format!("{field}.timeout"), health.timeout);
    }
}

/// `tls` of a backend or of `spec.routing`: secret names that Kubernetes would accept (they are
/// folder names under `--secrets-dir`, so nothing like `../x`), a name a certificate can carry.
fn backend_tls(field: &str, tls: &BackendTlsSpec, errors: &mut Errors) {
    for (key, name) in [
        ("caSecretName", &tls.ca_secret_name),
        ("clientCertSecretName", &tls.client_cert_secret_name),
    ] {
        if let Some(name) = name {
            if !is_secret_name(name) {
                errors.add(
                    format!("{field}.{key}"),
                    format!(
                        "{name:?} is not a Kubernetes secret name (lowercase letters, digits, \
                         '-' and '.', starting and ending with a letter or digit, at most 253 \
                         characters)"
                    ),
                );
            }
        }
    }
    if let Some(name) = &tls.server_name {
        if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
            errors.add(
                format!("{field}.serverName"),
                format!("{name:?} is not a DNS name or an IP address"),
            );
        }
    }
}

/// A DNS-1123 subdomain, what Kubernetes accepts as a Secret's name.
fn is_secret_name(name: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    name.len() <= 253
        && edge(name.as_bytes().first())
        && edge(name.as_bytes().last())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn content_guard(guard: &ContentGuardSpec, errors: &mut Errors) {
    for (list, patterns) in [
        ("blockPatterns", &guard.block_patterns),
        ("allowPatterns", &guard.allow_patterns),
    ] {
        for (i, pattern) in patterns.iter().enumerate() {
            pattern_spec(&format!("spec.contentGuard.{list}[{i}]"), pattern, errors);
        }
    }
}

fn pattern_spec(field: &str, pattern: &PatternSpec, errors: &mut Errors) {
    match (&pattern.regex, &pattern.detector) {
        (Some(_), Some(_)) => errors.add(field, "set exactly one of regex or detector, not both"),
        (None, None) => errors.add(field, "set exactly one of regex or detector"),
        (Some(regex), None) if regex.is_empty() => {
            errors.add(format!("{field}.regex"), "must not be empty");
        }
        (None, Some(detector)) => errors.non_empty(format!("{field}.detector"), detector),
        (Some(_), None) => {}
    }
    if let Some(name) = &pattern.name {
        errors.non_empty(format!("{field}.name"), name);
    }
}

fn semantic_cache(cache: &SemanticCacheSpec, errors: &mut Errors) {
    errors.positive_duration("spec.semanticCache.ttl", cache.ttl);
    let t = cache.similarity_threshold;
    // Written so that NaN fails too.
    if !(t > 0.0 && t <= 1.0) {
        errors.add(
            "spec.semanticCache.similarityThreshold",
            format!("must be greater than 0 and at most 1, got {t}"),
        );
    }
    if cache.max_cache_size.0 == 0 {
        errors.add(
            "spec.semanticCache.maxCacheSize",
            "must be greater than zero",
        );
    }
}

fn ai_rate_limit(rate_limit: &AiRateLimitSpec, errors: &mut Errors) {
    for (key, limit) in [
        ("global", &rate_limit.global),
        ("perUser", &rate_limit.per_user),
    ] {
        if let Some(limit) = limit {
            limit_spec(&format!("spec.rateLimit.{key}"), limit, errors);
        }
    }
}

fn limit_spec(field: &str, limit: &LimitSpec, errors: &mut Errors) {
    if limit.limit == 0 {
        errors.add(format!("{field}.limit"), "must be greater than zero");
    }
    errors.positive_duration(format!("{field}.period"), limit.period);
    if limit.tokens == Some(0) {
        errors.add(format!("{field}.tokens"), "must be greater than zero");
    }
}

fn tracing_spec(tracing: &TracingSpec, errors: &mut Errors) {
    let rate = tracing.sample_rate;
    if !(0.0..=1.0).contains(&rate) {
        errors.add(
            "spec.tracing.sampleRate",
            format!("must be between 0 and 1, got {rate}"),
        );
    }
    if let Some(endpoint) = &tracing.endpoint {
        errors.non_empty("spec.tracing.endpoint", endpoint);
    }
    if let Some(protocol) = &tracing.protocol {
        errors.non_empty("spec.tracing.protocol", protocol);
    }
}

fn routing_spec(routing: &RoutingSpec, errors: &mut Errors) {
    errors.positive_duration(
        "spec.routing.streamIdleTimeout",
        routing.stream_idle_timeout,
    );
    errors.positive_duration("spec.routing.bodyReadTimeout", routing.body_read_timeout);
    if routing.max_body_size.0 == 0 {
        errors.add("spec.routing.maxBodySize", "must be greater than zero");
    }
    if routing.failure_threshold == 0 {
        errors.add("spec.routing.failureThreshold", "must be greater than zero");
    }
    if routing.max_attempts == Some(0) {
        errors.add("spec.routing.maxAttempts", "must be greater than zero");
    }
    if let Some(tls) = &routing.tls {
        backend_tls("spec.routing.tls", tls, errors);
    }
}

/// Checks an absolute `http://` or `https://` URL with a host (and a valid port, if any).
pub(crate) fn check_http_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let rest_start = if lower.starts_with("http://") {
        "http://".len()
    } else if lower.starts_with("https://") {
        "https://".len()
    } else {
        return Err(format!(
            "invalid URL {url:?}: must start with http:// or https://"
        ));
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid URL {url:?}: must not contain spaces or control characters"
        ));
    }
    let rest = &url[rest_start..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "invalid URL {url:?}: credentials in URLs are not supported, use headers"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(format!("invalid URL {url:?}: unterminated IPv6 address"));
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("invalid URL {url:?}: invalid IPv6 address"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => {
                    return Err(format!(
                        "invalid URL {url:?}: unexpected text after the host"
                    ))
                }
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("invalid URL {url:?}: missing host"));
    }
    if !authority.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(format!("invalid URL {url:?}: invalid host {host:?}"));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("invalid URL {url:?}: invalid port {port:?}")),
        }
    }
    Ok(())
}

/// An HTTP header name (RFC 9110 token). Also used for methods, which are tokens too.
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// An HTTP header value: no control characters other than horizontal tab.
pub(crate) fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// `spec.authentication` of `AIGateway` and `API`.
fn authentication(auth: &AuthenticationSpec, errors: &mut Errors) {
    if let Some(jwt) = &auth.jwt {
        errors.non_empty("spec.authentication.jwt.secretName", &jwt.secret_name);
        for (key, value) in [
            ("issuer", &jwt.issuer),
            ("audience", &jwt.audience),
            ("userClaim", &jwt.user_claim),
            ("secretKey", &jwt.secret_key),
        ] {
            if let Some(value) = value {
                errors.non_empty(format!("spec.authentication.jwt.{key}"), value);
            }
        }
        for (i, algorithm) in jwt.algorithms.iter().enumerate() {
            if !JWT_ALGORITHMS.contains(&algorithm.as_str()) {
                errors.add(
                    format!("spec.authentication.jwt.algorithms[{i}]"),
                    format!(
                        "unknown algorithm {algorithm:?}; expected one of {}",
                        JWT_ALGORITHMS.join(", ")
                    ),
                );
            }
        }
    }
    if let Some(approval) = auth.jwt.as_ref().and_then(|j| j.approval.as_ref()) {
        errors.non_empty("spec.authentication.jwt.approval.claim", &approval.claim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "http://vllm-service.ml-team:8000",
            "https://api.approved-cloud.internal",
            "HTTPS://Example.com/v1?x=1",
            "http://[::1]:8080/",
            "http://127.0.0.1",
        ] {
            assert_eq!(check_http_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ftp://host",
            "vllm:8000",
            "http://",
            "http:///path",
            "http://host:0",
            "http://host:99999",
            "http://host:abc",
            "http://user:pw@host",
            "http://ho st",
            "http://[::1",
        ] {
            assert!(check_http_url(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn secret_names_are_kubernetes_names() {
        for ok in ["backend-ca", "a", "tls.client-1"] {
            assert!(is_secret_name(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../etc",
            "Backend",
            "-a",
            "a-",
            "a/b",
            &"a".repeat(254),
        ] {
            assert!(!is_secret_name(bad), "{bad}");
        }
    }

    #[test]
    fn header_names_and_values() {
        assert!(is_header_name("X-Internal-Routing"));
        assert!(!is_header_name("Bad Header"));
        assert!(!is_header_name(""));
        assert!(!is_header_name("X:Y"));
        assert!(is_header_value("approved-gateway-only"));
        assert!(!is_header_value("a\r\nInjected: 1"));
    }
}
