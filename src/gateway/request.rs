//! Parsing and validating an AI request. The body stays a JSON map, so every field the gateway
//! does not interpret (tools, response_format, seed, logprobs, n, ...) reaches the backend as it
//! came; only fields that would redirect traffic are removed.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::openai::request::{Request, INPUT, MESSAGES, PROMPT};

/// The OpenAI endpoints the gateway proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }

    /// Metric label.
    pub fn route(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }

    /// The field that carries the input and must be present.
    fn input_field(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => MESSAGES,
            Endpoint::Completions => PROMPT,
            Endpoint::Embeddings => INPUT,
        }
    }
}

/// Request fields that, in some gateways, let the caller choose the upstream (LiteLLM honours
/// `api_base`). AirGate only ever contacts configured backends, so these are dropped.
pub const REDIRECT_FIELDS: &[&str] = &[
    "api_base",
    "base_url",
    "api_key",
    "api_version",
    "custom_llm_provider",
    "extra_headers",
];

#[derive(Debug, Clone)]
pub struct AiRequest {
    pub endpoint: Endpoint,
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// What the gateway changed in the body, in order ([`Rewrite`]).
    pub rewrites: Vec<Rewrite>,
}

/// A change the gateway makes to a request before a backend sees it. The body changes only
/// through these: each is named, kept on the request ([`AiRequest::rewrote`]), logged at debug
/// level, and listed in the access-log line and the `request_served` audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Fields that would let the caller choose the upstream were dropped ([`REDIRECT_FIELDS`]).
    RedirectFieldsDropped,
    /// A token budget applies and the request had no `max_tokens`: the budget's default was set.
    DefaultMaxTokens,
    /// The content guard redacted part of the prompt.
    PromptRedacted,
    /// A stream was asked to report its usage (`stream_options.include_usage`) for metrics or
    /// the budget; the usage chunk is not shown to a client that did not ask.
    StreamUsageRequested,
}

impl Rewrite {
    pub fn name(self) -> &'static str {
        match self {
            Rewrite::RedirectFieldsDropped => "redirect_fields_dropped",
            Rewrite::DefaultMaxTokens => "default_max_tokens",
            Rewrite::PromptRedacted => "prompt_redacted",
            Rewrite::StreamUsageRequested => "stream_usage_requested",
        }
    }
}

impl AiRequest {
    pub fn parse(endpoint: Endpoint, bytes: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::invalid(
                format!("We could not parse the JSON body of your request: {e}"),
                None,
            )
        })?;
        let Value::Object(mut body) = value else {
            return Err(ApiError::invalid(
                "The request body must be a JSON object",
                None,
            ));
        };
        let view = Request::new(&body);
        let model = match view.model() {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "`model` must be a non-empty string",
                    Some("model"),
                ))
            }
            None => {
                return Err(ApiError::invalid(
                    "you must provide a model parameter",
                    Some("model"),
                ))
            }
        };
        let stream = match view.stream() {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ApiError::invalid(
                    "`stream` must be a boolean",
                    Some("stream"),
                ))
            }
        };
        if stream && endpoint == Endpoint::Embeddings {
            return Err(ApiError::invalid(
                "embeddings cannot be streamed",
                Some("stream"),
            ));
        }
        validate_input(endpoint, &body)?;
        validate_counts(&body)?;
        let dropped = REDIRECT_FIELDS
            .iter()
            .filter(|field| body.remove(**field).is_some())
            .count();
        let mut request = Self {
            endpoint,
            body,
            model,
            stream,
            rewrites: Vec::new(),
        };
        if dropped > 0 {
            request.rewrote(Rewrite::RedirectFieldsDropped);
        }
        Ok(request)
    }

    /// Records a change the gateway made to the body.
    pub fn rewrote(&mut self, rewrite: Rewrite) {
        tracing::debug!(rewrite = rewrite.name(), "request rewritten");
        self.rewrites.push(rewrite);
    }

    /// The JSON sent to a backend, with `model` set to the name that backend knows.
    pub fn upstream_body(&self, upstream_model: &str) -> Result<bytes::Bytes, ApiError> {
        let serialized = if upstream_model == self.model {
            serde_json::to_vec(&self.body)
        } else {
            let mut body = self.body.clone();
            body.insert("model".into(), Value::String(upstream_model.to_string()));
            serde_json::to_vec(&body)
        };
        serialized
            .map(bytes::Bytes::from)
            .map_err(|e| ApiError::Internal(format!("serializing upstream body: {e}")))
    }
}

/// Largest `max_tokens` / `max_completion_tokens` accepted: a signed 32-bit integer, as
/// inference servers parse it. Larger values are no real limit, and unchecked they once wrapped
/// the token reservation to a small number.
pub const MAX_TOKENS_PARAM: u64 = i32::MAX as u64;

/// Largest `n` (choices per request) and `best_of` accepted, as OpenAI's API documents `n`.
pub const MAX_CHOICES: u64 = 128;

/// Integer parameters that size the answer, and their accepted ranges. Each multiplies or bounds
/// the completion tokens reserved against a budget, so each must be an integer in range: a
/// float, a string or an out-of-range value is refused, never read as "absent".
const COUNT_PARAMS: &[(&str, u64)] = &[
    ("max_tokens", MAX_TOKENS_PARAM),
    ("max_completion_tokens", MAX_TOKENS_PARAM),
    ("n", MAX_CHOICES),
    ("best_of", MAX_CHOICES),
];

fn validate_counts(body: &Map<String, Value>) -> Result<(), ApiError> {
    let body = Request::new(body);
    for (param, max) in COUNT_PARAMS {
        if let Some(value) = body.param(param) {
            if !value.as_u64().is_some_and(|v| (1..=*max).contains(&v)) {
                return Err(ApiError::invalid(
                    format!("`{param}` must be an integer between 1 and {max}"),
                    Some(param),
                ));
            }
        }
    }
    Ok(())
}

fn validate_input(endpoint: Endpoint, body: &Map<String, Value>) -> Result<(), ApiError> {
    let field = endpoint.input_field();
    let Some(input) = body.get(field) else {
        return Err(ApiError::invalid(
            format!("Missing required parameter: '{field}'"),
            Some(field),
        ));
    };
    match (endpoint, input) {
        (Endpoint::ChatCompletions, Value::Array(messages)) => {
            if messages.is_empty() {
                return Err(ApiError::invalid(
                    "`messages` must not be empty",
                    Some("messages"),
                ));
            }
            for (i, message) in messages.iter().enumerate() {
                let has_role = message
                    .as_object()
                    .and_then(|m| m.get("role"))
                    .is_some_and(Value::is_string);
                if !has_role {
                    return Err(ApiError::invalid(
                        format!("`messages[{i}]` must be an object with a string `role`"),
                        Some(&format!("messages[{i}]")),
                    ));
                }
            }
            Ok(())
        }
        (Endpoint::ChatCompletions, _) => Err(ApiError::invalid(
            "`messages` must be an array",
            Some("messages"),
        )),
        (_, Value::String(_) | Value::Array(_)) => Ok(()),
        (_, _) => Err(ApiError::invalid(
            format!("`{field}` must be a string or an array"),
            Some(field),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn param(e: ApiError) -> Option<String> {
        e.body().error.param
    }

    #[test]
    fn unknown_fields_are_kept_and_redirect_fields_dropped() {
        let raw = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}],"seed":7,"api_base":"http://evil","base_url":"http://evil"}"#;
        let r = AiRequest::parse(Endpoint::ChatCompletions, raw).unwrap();
        assert!(r.body.contains_key("tools"));
        assert_eq!(r.body["seed"], 7);
        assert!(!r.body.contains_key("api_base"));
        assert!(!r.body.contains_key("base_url"));
        assert_eq!(r.rewrites, [Rewrite::RedirectFieldsDropped]);
        let clean = AiRequest::parse(Endpoint::Completions, br#"{"model":"m","prompt":"x"}"#);
        assert!(clean.unwrap().rewrites.is_empty());
        let up: Value = serde_json::from_slice(&r.upstream_body("real").unwrap()).unwrap();
        assert_eq!(up["model"], "real");
        assert_eq!(up["tools"][0]["type"], "function");
    }

    #[test]
    fn invalid_requests_name_the_parameter() {
        let e = |raw: &[u8]| AiRequest::parse(Endpoint::ChatCompletions, raw).unwrap_err();
        assert_eq!(param(e(br#"{"messages":[]}"#)).as_deref(), Some("model"));
        assert_eq!(param(e(br#"{"model":"m"}"#)).as_deref(), Some("messages"));
        assert_eq!(
            param(e(br#"{"model":"m","messages":"hi"}"#)).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param(e(br#"{"model":"m","messages":[{"content":"x"}]}"#)).as_deref(),
            Some("messages[0]")
        );
        assert_eq!(
            param(e(
                br#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#
            ))
            .as_deref(),
            Some("stream")
        );
        assert_eq!(e(b"not json").status(), 400);
        assert_eq!(e(b"[1,2]").status(), 400);
    }

    #[test]
    fn token_counts_must_be_integers_in_range() {
        let e = |extra: &str| {
            let raw =
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],{extra}}}"#);
            AiRequest::parse(Endpoint::ChatCompletions, raw.as_bytes())
                .err()
                .map(|e| (e.status().as_u16(), param(e)))
        };
        let refused = |param: &str| Some((400, Some(param.to_string())));
        // The attacker's numbers: u64::MAX wrapped the reservation; a float was read as absent.
        assert_eq!(
            e(r#""max_tokens":18446744073709551615"#),
            refused("max_tokens")
        );
        assert_eq!(
            e(r#""max_completion_tokens":100.5"#),
            refused("max_completion_tokens")
        );
        assert_eq!(
            e(r#""max_completion_tokens":100.0"#),
            refused("max_completion_tokens")
        );
        assert_eq!(e(r#""max_tokens":1e9"#), refused("max_tokens"));
        assert_eq!(e(r#""max_tokens":-1"#), refused("max_tokens"));
        assert_eq!(e(r#""max_tokens":0"#), refused("max_tokens"));
        assert_eq!(e(r#""max_tokens":"100""#), refused("max_tokens"));
        assert_eq!(e(r#""max_tokens":2147483648"#), refused("max_tokens"));
        assert_eq!(e(r#""n":129"#), refused("n"));
        assert_eq!(e(r#""n":2.5"#), refused("n"));
        assert_eq!(e(r#""max_tokens":2147483647"#), None);
        assert_eq!(e(r#""max_tokens":null,"n":128"#), None);
    }

    #[test]
    fn each_endpoint_requires_its_input() {
        assert!(AiRequest::parse(Endpoint::Completions, br#"{"model":"m","prompt":"x"}"#).is_ok());
        assert!(AiRequest::parse(Endpoint::Completions, br#"{"model":"m"}"#).is_err());
        assert!(AiRequest::parse(Endpoint::Embeddings, br#"{"model":"m","input":["a"]}"#).is_ok());
        assert!(AiRequest::parse(Endpoint::Embeddings, br#"{"model":"m","input":1}"#).is_err());
        assert!(AiRequest::parse(
            Endpoint::Embeddings,
            br#"{"model":"m","input":"a","stream":true}"#
        )
        .is_err());
    }
}
