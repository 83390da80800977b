//! The exact-match part of a cache key: everything that can change the answer except the
//! text of the last user message, which is compared semantically.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::openai::request::{content_parts, Request, MESSAGES};

/// SHA-256 over the canonical JSON of the request's context (see [`scope_key`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeKey(pub [u8; 32]);

impl ScopeKey {
    /// Lower-case hex, for logs.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for ScopeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScopeKey({})", &self.to_hex()[..16])
    }
}

/// Request fields that never change the answer's content.
const IGNORED_FIELDS: [&str; 3] = ["stream", "stream_options", "user"];

/// The scope of a chat-completions request, and the text to embed.
///
/// The scope covers: the gateway id, `user` when given (pass it only for `scope: user`), and
/// every request field except `stream`, `stream_options` and `user` — the model, sampling
/// parameters (temperature, top_p, max_tokens, n, seed, stop, tools, tool_choice,
/// response_format, ...) and all of `messages` except the content of the last one (system
/// prompt, earlier turns, and the last message's other fields such as `name`). It is hashed
/// from canonical JSON: keys sorted, integral floats written as integers.
///
/// Returns `None` when the request is not cacheable: no `messages`, the last message is not
/// from `user`, its content is not plain text (string, or text parts only) or is blank, or
/// `n` is greater than 1.
pub fn scope_key(
    gateway: &str,
    body: &Map<String, Value>,
    user: Option<&str>,
) -> Option<(ScopeKey, String)> {
    let request = Request::new(body);
    let (last, history) = request.messages()?.split_last()?;
    let last = last.as_object()?;
    if last.get("role")?.as_str()? != "user" {
        return None;
    }
    let text = message_text(last.get("content")?)?;
    if text.trim().is_empty() {
        return None;
    }
    if request.param("n").is_some_and(|n| n.as_u64() != Some(1)) {
        return None;
    }

    let mut fields = Map::new();
    for (k, v) in body {
        if k == MESSAGES || IGNORED_FIELDS.contains(&k.as_str()) {
            continue;
        }
        fields.insert(k.clone(), canonical(v));
    }
    let mut last_meta = Map::new();
    for (k, v) in last {
        if k != "content" {
            last_meta.insert(k.clone(), canonical(v));
        }
    }
    let mut scope = Map::new();
    scope.insert("v".into(), Value::from(1));
    scope.insert("gateway".into(), Value::from(gateway));
    if let Some(user) = user {
        scope.insert("user".into(), Value::from(user));
    }
    scope.insert("request".into(), Value::Object(fields));
    scope.insert("history".into(), canonical(&Value::Array(history.to_vec())));
    scope.insert("last".into(), Value::Object(last_meta));

    let mut out = String::new();
    write_canonical(&Value::Object(scope), &mut out);
    let digest = Sha256::digest(out.as_bytes());
    Some((ScopeKey(digest.into()), text))
}

/// The text of a user message: its [`content_parts`] joined by newlines, when every one is
/// plain text. Any other part (image, audio, file) makes the message uncacheable.
fn message_text(content: &Value) -> Option<String> {
    let texts = content_parts(content)?
        .into_iter()
        .map(|part| part.text.filter(|_| part.plain))
        .collect::<Option<Vec<&str>>>()?;
    Some(texts.join("\n"))
}

/// Integral floats become integers so `1` and `1.0` give the same key.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        _ => v.clone(),
    }
}

/// JSON with object keys sorted at every level (independent of `preserve_order`).
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(v) = o.get(*k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        _ => out.push_str(&v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn key(v: Value, user: Option<&str>) -> Option<ScopeKey> {
        scope_key("gw", &body(v), user).map(|(k, _)| k)
    }

    #[test]
    fn last_user_text_is_not_in_the_key() {
        let a = scope_key(
            "gw",
            &body(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})),
            None,
        )
        .unwrap();
        let b = scope_key(
            "gw",
            &body(json!({"messages": [{"role": "user", "content": "hello"}], "model": "m", "stream": true, "user": "x"})),
            None,
        )
        .unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, "hi");
        assert_eq!(b.1, "hello");
    }

    #[test]
    fn everything_else_is() {
        let base = json!({"model": "m", "temperature": 0.2, "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]});
        let k = key(base.clone(), None).unwrap();
        let variants = [
            json!({"model": "m2", "temperature": 0.2, "messages": [
                {"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]}),
            json!({"model": "m", "temperature": 0.3, "messages": [
                {"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]}),
            json!({"model": "m", "temperature": 0.2, "messages": [
                {"role": "system", "content": "be long"}, {"role": "user", "content": "q"}]}),
            json!({"model": "m", "temperature": 0.2, "seed": 1, "messages": [
                {"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]}),
            json!({"model": "m", "temperature": 0.2, "messages": [
                {"role": "system", "content": "be brief"}, {"role": "user", "content": "q", "name": "bob"}]}),
        ];
        for v in variants {
            assert_ne!(key(v.clone(), None).unwrap(), k, "{v}");
        }
        assert_ne!(key(base.clone(), Some("alice")).unwrap(), k);
        assert_ne!(
            key(base.clone(), Some("alice")),
            key(base.clone(), Some("bob"))
        );
        assert_ne!(scope_key("gw2", &body(base.clone()), None).unwrap().0, k);
    }

    #[test]
    fn canonical_numbers_and_key_order() {
        let a = key(
            json!({"model": "m", "max_tokens": 10, "top_p": 1, "messages": [{"role": "user", "content": "q"}]}),
            None,
        );
        let b = key(
            json!({"top_p": 1.0, "messages": [{"content": "q", "role": "user"}], "max_tokens": 10, "model": "m"}),
            None,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn not_cacheable() {
        assert!(key(json!({"model": "m"}), None).is_none());
        assert!(key(json!({"model": "m", "messages": []}), None).is_none());
        assert!(key(json!({"model": "m", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}), None).is_none());
        assert!(key(
            json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "q"}]}),
            None
        )
        .is_none());
        assert!(key(
            json!({"model": "m", "messages": [{"role": "user", "content": "  "}]}),
            None
        )
        .is_none());
        assert!(key(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "x"}}]}]}), None).is_none());
        let parts = scope_key(
            "gw",
            &body(
                json!({"model": "m", "n": 1, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}),
            ),
            None,
        )
        .unwrap();
        assert_eq!(parts.1, "a\nb");
    }
}
