//! Typed views of an OpenAI answer: a whole answer (`chat.completion`, `text_completion`) and a
//! stream chunk, their choices and their usage block; and [`EventJson`], one stream event's
//! JSON parsed at most once for every consumer.
//!
//! These are borrowed views over the parsed `serde_json` value, not structs deserialized with
//! `#[serde(flatten)] rest`. The value is what the gateway forwards: when the guard rewrites a
//! chunk or an answer it re-serialises that value, and `serde_json` keeps its keys in document
//! order (`preserve_order`). A struct would write its named fields first and the flattened rest
//! after, reordering what the client receives, and would need a second parse next to the
//! guard's. A view reads the one parsed value in place, so there is one parse and every unknown
//! field stays where it was.
//!
//! Reading is lenient on purpose, as the gateway always read these fields: a field of the wrong
//! type is absent, never an error, because an answer the gateway cannot read is still relayed.
//! Which strings are generated text is defined once, in [`super::fields`]; the views read the
//! plain-string content the token count and the cache collect, by the same field names.

use serde_json::Value;

use super::fields::{CONTENT, DELTA, MESSAGE, TEXT};

/// Most tokens one answer may report for one count. A backend is trusted for its counts, but
/// not to the point of wrapping a counter or a budget: larger values are clamped.
pub const MAX_REPORTED_TOKENS: u64 = u32::MAX as u64;

/// A whole answer or one stream chunk.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a>(&'a Value);

impl<'a> Answer<'a> {
    pub fn new(json: &'a Value) -> Self {
        Self(json)
    }

    /// `model`, as the backend wrote it (any JSON type; kept as sent).
    pub fn model(self) -> Option<&'a Value> {
        self.0.get("model")
    }

    /// `usage` when present and not `null`, as the backend wrote it.
    pub fn usage_value(self) -> Option<&'a Value> {
        self.0.get("usage").filter(|u| !u.is_null())
    }

    /// The usage block's counts (an absent or `null` block has none).
    pub fn usage(self) -> UsageCounts {
        self.0.get("usage").map(UsageCounts::of).unwrap_or_default()
    }

    /// Each element of `choices` (none when it is absent or not an array).
    pub fn choices(self) -> impl Iterator<Item = Choice<'a>> {
        self.choices_array().into_iter().flatten().map(Choice)
    }

    /// The elements of `choices`, when it is an array.
    pub fn choice_list(self) -> Option<Vec<Choice<'a>>> {
        Some(self.choices_array()?.iter().map(Choice).collect())
    }

    /// `choices` is an empty array: a stream's usage-only chunk, with [`Self::usage_value`].
    pub fn has_empty_choices(self) -> bool {
        self.choices_array().is_some_and(Vec::is_empty)
    }

    fn choices_array(self) -> Option<&'a Vec<Value>> {
        self.0.get("choices").and_then(Value::as_array)
    }
}

/// One element of `choices`. Not necessarily an object: every accessor of a choice that is not
/// one answers "absent".
#[derive(Debug, Clone, Copy)]
pub struct Choice<'a>(&'a Value);

impl<'a> Choice<'a> {
    /// `index`, when it is an unsigned integer.
    pub fn index(self) -> Option<u64> {
        self.index_value().and_then(Value::as_u64)
    }

    /// `index` as sent.
    pub fn index_value(self) -> Option<&'a Value> {
        self.0.get("index")
    }

    /// `finish_reason`, when it is a string (`null` while a stream goes on).
    pub fn finish_reason(self) -> Option<&'a str> {
        self.finish_reason_value().and_then(Value::as_str)
    }

    /// `finish_reason` as sent.
    pub fn finish_reason_value(self) -> Option<&'a Value> {
        self.0.get("finish_reason")
    }

    /// `message` of a whole chat answer.
    pub fn message(self) -> Option<ChoiceBody<'a>> {
        self.0.get(MESSAGE).map(ChoiceBody)
    }

    /// `delta` of a streamed chat chunk.
    pub fn delta(self) -> Option<ChoiceBody<'a>> {
        self.0.get(DELTA).map(ChoiceBody)
    }

    /// The choice's generated text as the token count reads it: the `content` of its
    /// `message` (`delta` when `streamed`) when that field is present, else completions'
    /// `text`; only when it is a string.
    pub fn content_text(self, streamed: bool) -> Option<&'a str> {
        let body = if streamed {
            self.delta()
        } else {
            self.message()
        };
        body.and_then(|b| b.0.get(CONTENT))
            .or_else(|| self.0.get(TEXT))
            .and_then(Value::as_str)
    }
}

/// A choice's `message` or `delta` (any JSON type, read leniently).
#[derive(Debug, Clone, Copy)]
pub struct ChoiceBody<'a>(&'a Value);

impl<'a> ChoiceBody<'a> {
    /// `content`, when it is one string (not content parts).
    pub fn content_str(self) -> Option<&'a str> {
        self.0.get(CONTENT).and_then(Value::as_str)
    }

    /// `content` as sent, any JSON type.
    pub fn content(self) -> Option<&'a Value> {
        self.0.get(CONTENT)
    }

    /// `tool_calls`, when present and not `null`.
    pub fn tool_calls(self) -> Option<&'a Value> {
        self.0.get("tool_calls").filter(|t| !t.is_null())
    }
}

/// The counts of a usage block. Each is absent when missing or not an unsigned integer, and
/// clamped to [`MAX_REPORTED_TOKENS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
}

impl UsageCounts {
    fn of(usage: &Value) -> Self {
        let count = |key: &str| usage.get(key).and_then(reported_tokens);
        Self {
            prompt_tokens: count("prompt_tokens"),
            completion_tokens: count("completion_tokens"),
            total_tokens: count("total_tokens"),
        }
    }
}

/// A token count reported by a backend, clamped to [`MAX_REPORTED_TOKENS`].
fn reported_tokens(value: &Value) -> Option<u64> {
    value.as_u64().map(|n| n.min(MAX_REPORTED_TOKENS))
}

/// One stream event's `data`, and its JSON parsed on first demand, at most once: the usage tap,
/// the response guard and the cache collector each ask for it, and an event none of them needs
/// (an unguarded stream without usage or cache) is never parsed.
#[derive(Debug)]
pub struct EventJson<'a> {
    data: &'a str,
    /// `None` until asked; then the parse (`None` when the data is not JSON).
    parsed: Option<Option<Value>>,
}

impl<'a> EventJson<'a> {
    pub fn new(data: &'a str) -> Self {
        Self { data, parsed: None }
    }

    /// The event's text, for the checks that need no parse.
    pub fn data(&self) -> &'a str {
        self.data
    }

    /// The parsed JSON, when the data is JSON.
    pub fn json(&mut self) -> Option<&Value> {
        self.parsed
            .get_or_insert_with(|| serde_json::from_str(self.data).ok())
            .as_ref()
    }

    /// Takes the parsed JSON out (for a consumer that rewrites it); later asks see none.
    pub fn take(&mut self) -> Option<Value> {
        self.json();
        self.parsed.replace(None).flatten()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_counts_are_lenient_and_clamped() {
        let chunk = json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4.5, "total_tokens": 18446744073709551615u64}});
        let answer = Answer::new(&chunk);
        assert!(answer.has_empty_choices());
        assert_eq!(
            answer.usage(),
            UsageCounts {
                prompt_tokens: Some(3),
                completion_tokens: None,
                total_tokens: Some(MAX_REPORTED_TOKENS),
            }
        );
        let null = json!({"usage": null, "choices": [{}]});
        assert_eq!(Answer::new(&null).usage(), UsageCounts::default());
        assert!(Answer::new(&null).usage_value().is_none());
        assert!(!Answer::new(&null).has_empty_choices());
    }

    #[test]
    fn content_text_prefers_the_body_content_field_over_completions_text() {
        let chunk = json!({"choices": [
            {"delta": {"content": "a"}, "text": "x"},
            {"delta": {"content": null}, "text": "x"},
            {"text": "t"},
            "not a choice",
        ]});
        let texts: Vec<_> = Answer::new(&chunk)
            .choices()
            .map(|c| c.content_text(true))
            .collect();
        assert_eq!(texts, vec![Some("a"), None, Some("t"), None]);
    }

    #[test]
    fn an_event_is_parsed_once_and_can_be_taken() {
        let mut event = EventJson::new(r#"{"a":1}"#);
        assert_eq!(event.json(), Some(&json!({"a": 1})));
        assert_eq!(event.take(), Some(json!({"a": 1})));
        assert_eq!(event.json(), None);
        assert_eq!(EventJson::new("[DONE]").json(), None);
    }
}
