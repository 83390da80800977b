//! Span names, attribute keys and constructors, so every stage names things the same way.
//!
//! Each constructor declares all the fields its span may carry (unset ones as `Empty`), because a
//! `tracing` span only accepts [`Span::record`] for fields declared at creation. The span
//! target is this module (`airgate::…`), which is what the OpenTelemetry layer's filter admits.
//!
//! Record integers as `i64`: `tracing-opentelemetry` turns `u64`/`u32`/`u16` fields into
//! strings (the recorders here convert).

use opentelemetry::{Array, KeyValue, StringValue, Value};
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

// ----- span names ---------------------------------------------------------------------------

/// One client request, from the first byte to the last byte of the answer (kind `server`).
pub const REQUEST: &str = "airgate.request";
/// API key / JWT check.
pub const AUTH: &str = "airgate.auth";
/// Rate limits and token budget (one limiter call).
pub const RATE_LIMIT: &str = "airgate.rate_limit";
/// Content guard scan (prompt or answer).
pub const GUARD: &str = "airgate.guard";
/// Semantic cache lookup.
pub const CACHE: &str = "airgate.cache";
/// One attempt at one backend (kind `client`); failover makes several.
pub const BACKEND_ATTEMPT: &str = "airgate.backend_attempt";

// ----- attribute keys -----------------------------------------------------------------------

/// `chat`, `text_completion`, `embeddings` (see the `OP_*` constants).
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// Always [`GEN_AI_SYSTEM_OPENAI`]: the wire protocol is OpenAI's.
pub const GEN_AI_SYSTEM: &str = "gen_ai.system";
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// A string array attribute; set with [`record_finish_reasons`].
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// Low-cardinality error class (`timeout`, `connect_error`, `500`, `unauthorized`, …).
pub const ERROR_TYPE: &str = "error.type";
/// Backend host (from its URL).
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
/// Name of the configured backend.
pub const AIRGATE_BACKEND: &str = "airgate.backend";
/// 1-based attempt number within one request.
pub const AIRGATE_ATTEMPT: &str = "airgate.attempt";
/// Guard phase: `prompt` or `response`.
pub const AIRGATE_GUARD_PHASE: &str = "airgate.guard.phase";
/// Guard verdict: `allow`, `block`, `redact`, ….
pub const AIRGATE_GUARD_ACTION: &str = "airgate.guard.action";
/// Semantic cache lookup result.
pub const AIRGATE_CACHE_HIT: &str = "airgate.cache.hit";
/// Gateway request id (`x-request-id`).
pub const AIRGATE_REQUEST_ID: &str = "airgate.request_id";
/// `tracing-opentelemetry` special fields.
pub const OTEL_NAME: &str = "otel.name";
pub const OTEL_STATUS_CODE: &str = "otel.status_code";

pub const GEN_AI_SYSTEM_OPENAI: &str = "openai";
pub const OP_CHAT: &str = "chat";
pub const OP_TEXT_COMPLETION: &str = "text_completion";
pub const OP_EMBEDDINGS: &str = "embeddings";

// ----- constructors -------------------------------------------------------------------------

/// The request span, named `"{operation} {model}"` in the trace (e.g. `chat gpt-4o`), or just
/// `"{operation}"` when the model is not known yet (the gateway opens the span before it reads
/// the body, and records `gen_ai.request.model` later).
/// Call [`super::set_parent_from_headers`] on it before entering it.
pub fn request_span(operation: &str, model: &str, request_id: &str) -> Span {
    let span = tracing::info_span!(
        "airgate.request",
        otel.name = %format_args!("{operation}{}{model}", if model.is_empty() { "" } else { " " }),
        otel.kind = "server",
        otel.status_code = Empty,
        gen_ai.operation.name = operation,
        gen_ai.system = GEN_AI_SYSTEM_OPENAI,
        gen_ai.request.model = Empty,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
        airgate.request_id = request_id,
        airgate.backend = Empty,
        airgate.cache.hit = Empty,
    );
    if !model.is_empty() {
        span.record(GEN_AI_REQUEST_MODEL, model);
    }
    span
}

/// Whether `span` (the request span, its parent already set) will be exported. An unsampled
/// request keeps only its request span, which still propagates `traceparent` with the sampled
/// flag off: building the five stage spans of every unsampled request cost about 15% of the
/// CPU of a traced gateway.
pub fn is_sampled(span: &Span) -> bool {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    span.context().span().span_context().is_sampled()
}

/// `make()` when the request is sampled, else a disabled span.
pub fn stage(sampled: bool, make: impl FnOnce() -> Span) -> Span {
    if sampled {
        make()
    } else {
        Span::none()
    }
}

/// Authentication stage.
pub fn auth_span() -> Span {
    tracing::info_span!(
        "airgate.auth",
        otel.status_code = Empty,
        error.type = Empty
    )
}

/// Rate-limit stage: global and per-user limits and the token reservation, one limiter call.
pub fn rate_limit_span() -> Span {
    tracing::info_span!(
        "airgate.rate_limit",
        otel.status_code = Empty,
        error.type = Empty
    )
}

/// Content-guard stage; `phase` is `prompt` or `response`.
pub fn guard_span(phase: &'static str) -> Span {
    tracing::info_span!(
        "airgate.guard",
        otel.status_code = Empty,
        airgate.guard.phase = phase,
        airgate.guard.action = Empty,
        error.type = Empty,
    )
}

/// Semantic-cache lookup; record [`AIRGATE_CACHE_HIT`] on it.
pub fn cache_span() -> Span {
    tracing::info_span!(
        "airgate.cache",
        otel.status_code = Empty,
        airgate.cache.hit = Empty,
        error.type = Empty,
    )
}

/// One backend attempt, `backend_url` being the backend's base URL (host and port are taken
/// from it). Pass its context to the backend with [`super::inject_context`].
pub fn backend_attempt_span(backend: &str, backend_url: &str, attempt: u32, model: &str) -> Span {
    let (address, port) = host_port(backend_url);
    tracing::info_span!(
        "airgate.backend_attempt",
        otel.name = %format_args!("{BACKEND_ATTEMPT} {backend}"),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = Empty,
        gen_ai.system = GEN_AI_SYSTEM_OPENAI,
        gen_ai.request.model = model,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        server.address = address,
        server.port = i64::from(port),
        airgate.backend = backend,
        airgate.attempt = i64::from(attempt),
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

// ----- recorders ----------------------------------------------------------------------------

/// Token usage, on the request span and/or the successful attempt span.
pub fn record_usage(span: &Span, input_tokens: u64, output_tokens: u64) {
    span.record(GEN_AI_USAGE_INPUT_TOKENS, int(input_tokens));
    span.record(GEN_AI_USAGE_OUTPUT_TOKENS, int(output_tokens));
}

/// `gen_ai.response.finish_reasons` as a string array (a `tracing` field cannot hold one).
pub fn record_finish_reasons<S: AsRef<str>>(span: &Span, reasons: &[S]) {
    let values: Vec<StringValue> = reasons
        .iter()
        .map(|r| StringValue::from(r.as_ref().to_owned()))
        .collect();
    span.set_attribute(
        GEN_AI_RESPONSE_FINISH_REASONS,
        Value::Array(Array::String(values)),
    );
}

/// The HTTP status of the answer. Per the HTTP conventions a server span (`airgate.request`) is
/// an error from 500 on, a client span (`airgate.backend_attempt`) from 400 on; then
/// `error.type` is the status code unless already set.
pub fn record_http_status(span: &Span, status: u16, client_span: bool) {
    span.record(HTTP_RESPONSE_STATUS_CODE, i64::from(status));
    let threshold = if client_span { 400 } else { 500 };
    if status >= threshold {
        span.record(OTEL_STATUS_CODE, "error");
        span.record(ERROR_TYPE, status.to_string().as_str());
    }
}

/// Marks the span failed with a low-cardinality `error.type`.
pub fn record_error(span: &Span, error_type: &str) {
    span.record(OTEL_STATUS_CODE, "error");
    span.record(ERROR_TYPE, error_type);
}

/// Any other attribute, typed, without declaring a field (e.g. extra `gen_ai.*` keys).
pub fn set_attribute(span: &Span, key: &'static str, value: impl Into<Value>) {
    span.set_attribute(key, value);
}

/// Extra attributes in one go.
pub fn set_attributes(span: &Span, attributes: impl IntoIterator<Item = KeyValue>) {
    for kv in attributes {
        span.set_attribute(kv.key, kv.value);
    }
}

/// `tracing-opentelemetry` exports unsigned fields as strings; OTLP wants ints.
fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Host and port of a base URL (`http://vllm:8000/v1` → `("vllm", 8000)`); default ports by
/// scheme; `("", 0)` when unparsable.
fn host_port(url: &str) -> (String, u16) {
    match url.parse::<http::Uri>() {
        Ok(uri) => {
            let host = uri.host().unwrap_or_default().to_owned();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            (host, port)
        }
        Err(_) => (String::new(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_base_urls() {
        assert_eq!(host_port("http://vllm:8000/v1"), ("vllm".to_owned(), 8000));
        assert_eq!(
            host_port("https://api.example.com"),
            ("api.example.com".to_owned(), 443)
        );
        assert_eq!(host_port("not a url"), (String::new(), 0));
    }
}
