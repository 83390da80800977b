//! OpenAI's error shape `{"error":{"message","type","param","code"}}`, and the normaliser that
//! turns what backends really send (vLLM's integer `code`, old vLLM's flat `{"object":"error"}`,
//! FastAPI's `{"detail": ...}`, plain text) into it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorObject {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ErrorObject {
    pub fn new(message: impl Into<String>, kind: &str, code: Option<&str>) -> Self {
        Self {
            message: message.into(),
            kind: kind.to_string(),
            param: None,
            code: code.map(str::to_string),
        }
    }
}

/// Longest upstream message kept; a backend's error page must not flood the client.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Turns a backend's error body of any known dialect into OpenAI's shape.
pub fn normalize_upstream_error(status: u16, body: &[u8]) -> ErrorBody {
    let fallback_kind = kind_for_status(status);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let object = match parsed {
        Some(Value::Object(map)) => {
            let inner = match map.get("error") {
                Some(Value::Object(inner)) => Some(inner.clone()),
                Some(Value::String(message)) => {
                    let mut m = serde_json::Map::new();
                    m.insert("message".into(), Value::String(message.clone()));
                    Some(m)
                }
                _ => None,
            };
            let source = inner.unwrap_or(map);
            let message = text_field(&source, "message")
                .or_else(|| text_field(&source, "detail"))
                .unwrap_or_else(|| format!("upstream answered HTTP {status}"));
            ErrorObject {
                message: truncate(&message),
                kind: text_field(&source, "type").unwrap_or_else(|| fallback_kind.to_string()),
                param: text_field(&source, "param"),
                code: text_field(&source, "code"),
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("upstream answered HTTP {status}")
            } else {
                truncate(text)
            };
            ErrorObject::new(message, fallback_kind, None)
        }
    };
    ErrorBody { error: object }
}

/// A field as text: strings as they are, numbers (vLLM's integer `code`) printed, null as absent.
fn text_field(map: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// OpenAI's error `type` for a status.
pub fn kind_for_status(status: u16) -> &'static str {
    match status {
        400 | 404 | 405 | 409 | 413 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        408 => "timeout_error",
        429 => "rate_limit_error",
        _ => "server_error",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vllm_integer_code_becomes_a_string() {
        let body =
            br#"{"error":{"message":"bad","type":"BadRequestError","param":null,"code":400}}"#;
        let e = normalize_upstream_error(400, body).error;
        assert_eq!(e.code.as_deref(), Some("400"));
        assert_eq!(e.kind, "BadRequestError");
        assert_eq!(e.message, "bad");
        assert_eq!(e.param, None);
    }

    #[test]
    fn old_vllm_flat_object_is_lifted() {
        let body = br#"{"object":"error","message":"model x not found","type":"NotFoundError","param":null,"code":404}"#;
        let e = normalize_upstream_error(404, body).error;
        assert_eq!(e.message, "model x not found");
        assert_eq!(e.kind, "NotFoundError");
        assert_eq!(e.code.as_deref(), Some("404"));
    }

    #[test]
    fn fastapi_detail_and_plain_text_are_kept_as_message() {
        let e = normalize_upstream_error(422, br#"{"detail":"field required"}"#).error;
        assert_eq!(e.message, "field required");
        assert_eq!(e.kind, "invalid_request_error");
        let e = normalize_upstream_error(502, b"<html>Bad Gateway</html>").error;
        assert_eq!(e.message, "<html>Bad Gateway</html>");
        assert_eq!(e.kind, "server_error");
        let e = normalize_upstream_error(500, b"").error;
        assert_eq!(e.message, "upstream answered HTTP 500");
    }

    #[test]
    fn long_messages_are_truncated() {
        let body = "x".repeat(5000);
        let e = normalize_upstream_error(500, body.as_bytes()).error;
        assert_eq!(e.message.len(), MAX_MESSAGE_CHARS);
    }
}
