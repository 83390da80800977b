//! A typed view of an OpenAI request body (chat completions, completions, embeddings), and the
//! one list of its prompt texts ([`Request::prompt_texts`], [`content_parts`]) that token
//! counting and the cache's last user message both read.
//!
//! A view over the parsed map, not a struct deserialized with `#[serde(flatten)] rest`: the
//! map is what the gateway re-serialises to the backend, and `serde_json` keeps its keys in the
//! client's order (`preserve_order`). A struct would write its named fields first and the
//! flattened rest after, so the backend would get the fields in another order than today; the
//! view reads the same map in place and nothing about the forwarded bytes changes.
//!
//! The prompt guard (`gateway::content_filter::prompt`) deliberately scans more than these
//! texts: every string a model reads (tools, `stop`, response schemas, ...).

use serde_json::{Map, Value};

/// The chat messages.
pub const MESSAGES: &str = "messages";
/// Completions' input.
pub const PROMPT: &str = "prompt";
/// Embeddings' input.
pub const INPUT: &str = "input";

/// A request body, read in place.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a>(&'a Map<String, Value>);

impl<'a> Request<'a> {
    pub fn new(body: &'a Map<String, Value>) -> Self {
        Self(body)
    }

    /// `model`, as sent.
    pub fn model(self) -> Option<&'a Value> {
        self.0.get("model")
    }

    /// `stream`, as sent.
    pub fn stream(self) -> Option<&'a Value> {
        self.0.get("stream")
    }

    /// `stream_options.include_usage` is `true`.
    pub fn include_usage(self) -> bool {
        self.0
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true)
    }

    /// `messages`, when it is an array.
    pub fn messages(self) -> Option<&'a [Value]> {
        self.0
            .get(MESSAGES)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
    }

    /// A parameter, when present and not `null` (`null` means "absent" to OpenAI).
    pub fn param(self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// An integer parameter (`max_tokens`, `n`, ...), when it is an unsigned integer.
    pub fn count(self, name: &str) -> Option<u64> {
        self.param(name).and_then(Value::as_u64)
    }

    /// Every prompt text, in order: each message's content (a string, or the `text` of each
    /// part), then `prompt` and `input` (a string, or the strings of an array; token ids are
    /// not text).
    pub fn prompt_texts(self) -> impl Iterator<Item = &'a str> {
        let messages = self.messages().unwrap_or_default().iter();
        let contents = messages
            .filter_map(|m| m.get("content"))
            .flat_map(|c| content_parts(c).unwrap_or_default())
            .filter_map(|part| part.text);
        let inputs = [PROMPT, INPUT]
            .into_iter()
            .filter_map(|key| self.0.get(key))
            .flat_map(input_strings);
        contents.chain(inputs)
    }
}

/// One piece of a message's `content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentPart<'a> {
    /// The text: the content string, or a part's `text` when it is a string.
    pub text: Option<&'a str>,
    /// A plain text: the content string, or a part of `type` `text` with a string `text`.
    /// Any other part (image, audio, file, or malformed) is not.
    pub plain: bool,
}

/// The pieces of a message's `content`: a string is one plain text, an array one piece per
/// part; `None` for any other content (`null`, a number, an object).
pub fn content_parts(content: &Value) -> Option<Vec<ContentPart<'_>>> {
    match content {
        Value::String(text) => Some(vec![ContentPart {
            text: Some(text),
            plain: true,
        }]),
        Value::Array(parts) => Some(parts.iter().map(part).collect()),
        _ => None,
    }
}

fn part(part: &Value) -> ContentPart<'_> {
    let text = part.get("text").and_then(Value::as_str);
    let typed_text = part.get("type").and_then(Value::as_str) == Some("text");
    ContentPart {
        text,
        plain: typed_text && text.is_some(),
    }
}

/// `prompt` or `input`: a string, or the strings of an array.
fn input_strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(text) => vec![text],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(body: Value) -> Vec<String> {
        let body = body.as_object().unwrap();
        Request::new(body)
            .prompt_texts()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn prompt_texts_are_message_contents_then_prompt_and_input() {
        let found = texts(json!({"messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}, {"text": "b"}]},
            {"role": "assistant", "content": null, "tool_calls": []},
        ], "prompt": ["p", 1], "input": "i"}));
        assert_eq!(found, vec!["s", "a", "b", "p", "i"]);
    }

    #[test]
    fn content_parts_mark_what_is_plain_text() {
        let content = json!([{"type": "text", "text": "a"}, {"text": "b"}, "c"]);
        let parts = content_parts(&content);
        let plain: Vec<_> = parts.unwrap().iter().map(|p| (p.text, p.plain)).collect();
        assert_eq!(
            plain,
            vec![(Some("a"), true), (Some("b"), false), (None, false)]
        );
        assert!(content_parts(&json!(null)).is_none());
    }
}
