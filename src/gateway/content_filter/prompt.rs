//! The texts of a request the prompt guard scans (`scanPrompts`): every text a model reads.
//!
//! - /v1/chat/completions, in the order of the request's keys: each message's `content` (a
//!   string, or the `text` / `refusal` of each part), `refusal`, `name`, and each tool call's
//!   (and the legacy `function_call`'s) `name` and `arguments`; each tool's `function.name`,
//!   `function.description` and `function.parameters` (other tool types: everything in them
//!   but `type`); the legacy `functions[]` likewise; `response_format.json_schema`'s `name`,
//!   `description` and `schema`; `stop`; the function name of `tool_choice` and of the legacy
//!   `function_call`; `prediction.content`. In a JSON schema (`parameters`, `schema`) every
//!   object key and every string value is scanned, since the model reads property names,
//!   descriptions and enum values alike.
//! - /v1/completions: `prompt` (a string or the strings of an array) and `suffix`.
//! - /v1/embeddings: `input` (a string or the strings of an array).
//!
//! Token-id arrays are not text and are skipped. Message contents, content parts and refusals
//! are running text, scanned across their seams; every other text stands alone (see
//! `guard::prompt`). A redaction replaces the matched part of the string it is in; in an
//! object key it renames the key (a renamed key that collides with another key of the same
//! object gets a `~2`, `~3`, ... suffix, so no value is lost). A schema nested deeper than
//! [`MAX_DEPTH`] levels is refused (fail closed) rather than scanned in part.

use serde_json::{Map, Value};

use super::{Refusal, Scan};
use crate::gateway::Endpoint;
use crate::guard::{FailReason, PatternSet, Prompt, PromptOutcome, ScanBudget, TextKind};

/// Deepest nesting walked inside a scanned JSON value (a tool's parameters, a response
/// schema); serde_json already refuses bodies nested deeper than 128.
pub const MAX_DEPTH: usize = 64;

/// Sees each text in reading order; returns its replacement, if any.
type Visit<'v> = dyn FnMut(&str, TextKind) -> Option<String> + 'v;

/// A JSON value nested deeper than [`MAX_DEPTH`].
struct TooDeep;

/// Scans the request's texts as one prompt; redactions are written back into the body.
pub fn scan_request(
    set: &PatternSet,
    endpoint: Endpoint,
    body: &mut Map<String, Value>,
    budget: &mut ScanBudget,
) -> Scan {
    let mut prompt = Prompt::new();
    let collected = walk(endpoint, body, &mut |text, kind| {
        prompt.push(text, kind);
        None
    });
    if collected.is_err() {
        return refused(Refusal::Failed {
            rule: "*".to_string(),
            reason: FailReason::ScanBudgetExceeded,
        });
    }
    match set.scan_prompt(&prompt, budget) {
        PromptOutcome::Violation { finding } => refused(Refusal::Violation(finding)),
        PromptOutcome::Failed { rule, reason } => refused(Refusal::Failed { rule, reason }),
        PromptOutcome::Clean { findings, redacted } => {
            if !redacted.is_empty() {
                // The same walk visits the same texts in the same order.
                let mut pending = redacted.into_iter().peekable();
                let mut index = 0usize;
                let _ = walk(endpoint, body, &mut |_, _| {
                    let here = index;
                    index += 1;
                    pending.next_if(|(k, _)| *k == here).map(|(_, text)| text)
                });
            }
            Scan {
                findings,
                refusal: None,
            }
        }
    }
}

fn refused(refusal: Refusal) -> Scan {
    Scan {
        findings: Vec::new(),
        refusal: Some(refusal),
    }
}

fn walk(
    endpoint: Endpoint,
    body: &mut Map<String, Value>,
    visit: &mut Visit<'_>,
) -> Result<(), TooDeep> {
    match endpoint {
        Endpoint::ChatCompletions => chat(body, visit)?,
        Endpoint::Completions => {
            for (key, value) in body.iter_mut() {
                if matches!(key.as_str(), "prompt" | "suffix") {
                    strings(value, TextKind::Field, visit);
                }
            }
        }
        Endpoint::Embeddings => {
            if let Some(input) = body.get_mut("input") {
                strings(input, TextKind::Field, visit);
            }
        }
    }
    Ok(())
}

fn chat(body: &mut Map<String, Value>, visit: &mut Visit<'_>) -> Result<(), TooDeep> {
    for (key, value) in body.iter_mut() {
        match (key.as_str(), value) {
            ("messages", Value::Array(messages)) => {
                for message in messages.iter_mut().filter_map(Value::as_object_mut) {
                    message_texts(message, visit);
                }
            }
            ("tools", Value::Array(tools)) => {
                for tool in tools.iter_mut().filter_map(Value::as_object_mut) {
                    for (key, value) in tool.iter_mut() {
                        match (key.as_str(), value) {
                            ("type", _) => {}
                            ("function", Value::Object(function)) => declaration(function, visit)?,
                            (_, value) => schema(value, 0, visit)?,
                        }
                    }
                }
            }
            ("functions", Value::Array(functions)) => {
                for function in functions.iter_mut().filter_map(Value::as_object_mut) {
                    declaration(function, visit)?;
                }
            }
            ("response_format", Value::Object(format)) => {
                if let Some(Value::Object(json_schema)) = format.get_mut("json_schema") {
                    for (key, value) in json_schema.iter_mut() {
                        match key.as_str() {
                            "name" | "description" => strings(value, TextKind::Field, visit),
                            "schema" => schema(value, 0, visit)?,
                            _ => {}
                        }
                    }
                }
            }
            ("stop", value) => strings(value, TextKind::Field, visit),
            ("tool_choice" | "function_call", Value::Object(choice)) => {
                for (key, value) in choice.iter_mut() {
                    match (key.as_str(), value) {
                        ("name", value) => strings(value, TextKind::Field, visit),
                        (_, Value::Object(inner)) => {
                            if let Some(name) = inner.get_mut("name") {
                                strings(name, TextKind::Field, visit);
                            }
                        }
                        _ => {}
                    }
                }
            }
            ("prediction", Value::Object(prediction)) => {
                if let Some(content) = prediction.get_mut("content") {
                    content_texts(content, TextKind::Field, visit);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One message's texts, in its keys' order.
fn message_texts(message: &mut Map<String, Value>, visit: &mut Visit<'_>) {
    for (key, value) in message.iter_mut() {
        match (key.as_str(), value) {
            ("content", value) => content_texts(value, TextKind::Prose, visit),
            ("refusal", value) => strings(value, TextKind::Prose, visit),
            ("name", value) => strings(value, TextKind::Field, visit),
            ("tool_calls", Value::Array(calls)) => {
                for call in calls.iter_mut().filter_map(Value::as_object_mut) {
                    for (key, value) in call.iter_mut() {
                        if let ("function" | "custom", Value::Object(f)) = (key.as_str(), value) {
                            call_texts(f, visit);
                        }
                    }
                }
            }
            ("function_call", Value::Object(call)) => call_texts(call, visit),
            _ => {}
        }
    }
}

/// A tool call's `name` and `arguments` (`input` for custom tools).
fn call_texts(call: &mut Map<String, Value>, visit: &mut Visit<'_>) {
    for (key, value) in call.iter_mut() {
        if matches!(key.as_str(), "name" | "arguments" | "input") {
            strings(value, TextKind::Field, visit);
        }
    }
}

/// A function declaration: `name`, `description`, and the `parameters` schema.
fn declaration(function: &mut Map<String, Value>, visit: &mut Visit<'_>) -> Result<(), TooDeep> {
    for (key, value) in function.iter_mut() {
        match key.as_str() {
            "name" | "description" => strings(value, TextKind::Field, visit),
            "parameters" => schema(value, 0, visit)?,
            _ => {}
        }
    }
    Ok(())
}

/// A message content: a string, or the `text` / `refusal` of each part.
fn content_texts(value: &mut Value, kind: TextKind, visit: &mut Visit<'_>) {
    match value {
        Value::String(text) => string(text, kind, visit),
        Value::Array(parts) => {
            for part in parts.iter_mut().filter_map(Value::as_object_mut) {
                for (key, value) in part.iter_mut() {
                    if matches!(key.as_str(), "text" | "refusal") {
                        strings(value, kind, visit);
                    }
                }
            }
        }
        _ => {}
    }
}

/// A string, or the strings of an array (other items, token ids among them, are skipped).
fn strings(value: &mut Value, kind: TextKind, visit: &mut Visit<'_>) {
    match value {
        Value::String(text) => string(text, kind, visit),
        Value::Array(items) => {
            for item in items.iter_mut() {
                if let Value::String(text) = item {
                    string(text, kind, visit);
                }
            }
        }
        _ => {}
    }
}

fn string(text: &mut String, kind: TextKind, visit: &mut Visit<'_>) {
    if let Some(new) = visit(text, kind) {
        *text = new;
    }
}

/// Every key and string of a JSON value (a schema), keys before their values.
fn schema(value: &mut Value, depth: usize, visit: &mut Visit<'_>) -> Result<(), TooDeep> {
    if depth > MAX_DEPTH {
        return Err(TooDeep);
    }
    match value {
        Value::String(text) => string(text, TextKind::Field, visit),
        Value::Array(items) => {
            for item in items.iter_mut() {
                schema(item, depth + 1, visit)?;
            }
        }
        Value::Object(map) => {
            let mut renames = Vec::new();
            for (i, (key, value)) in map.iter_mut().enumerate() {
                if let Some(new) = visit(key, TextKind::Field) {
                    renames.push((i, new));
                }
                schema(value, depth + 1, visit)?;
            }
            if !renames.is_empty() {
                rename_keys(map, renames);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Renames the keys at the given positions, keeping the order and every value.
fn rename_keys(map: &mut Map<String, Value>, renames: Vec<(usize, String)>) {
    let mut renames = renames.into_iter().peekable();
    let old = std::mem::take(map);
    for (i, (key, value)) in old.into_iter().enumerate() {
        let key = renames
            .next_if(|(k, _)| *k == i)
            .map_or(key, |(_, new)| new);
        let mut unique = key.clone();
        let mut n = 1;
        while map.contains_key(&unique) {
            n += 1;
            unique = format!("{key}~{n}");
        }
        map.insert(unique, value);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    fn texts(endpoint: Endpoint, body: Value) -> Vec<(String, TextKind)> {
        let Value::Object(mut body) = body else {
            panic!("not an object")
        };
        let mut out = Vec::new();
        assert!(walk(endpoint, &mut body, &mut |t, k| {
            out.push((t.to_string(), k));
            None
        })
        .is_ok());
        out
    }

    #[test]
    fn walks_every_text_a_model_reads_in_order() {
        let body = json!({
            "model": "m",
            "messages": [
                {"role": "system", "name": "n1", "content": "c1"},
                {"role": "user", "content": [{"type": "text", "text": "p1"}, {"type": "image_url", "image_url": {"url": "data:x"}}]},
                {"role": "assistant", "content": null, "refusal": "r1",
                 "tool_calls": [{"id": "i", "type": "function", "function": {"name": "f1", "arguments": "a1"}}]},
                {"role": "tool", "tool_call_id": "i", "content": "t1"}
            ],
            "tools": [{"type": "function", "function": {"name": "f2", "description": "d2",
                "parameters": {"type": "object", "properties": {"k1": {"type": "string", "enum": ["e1"]}}}}}],
            "functions": [{"name": "f3", "description": "d3"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s1", "schema": {"properties": {"k2": {}}}}},
            "stop": ["x1", "x2"],
            "tool_choice": {"type": "function", "function": {"name": "f4"}},
            "user": "not read by the model",
            "logit_bias": {"50256": -100}
        });
        let got: Vec<String> = texts(Endpoint::ChatCompletions, body)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(
            got,
            [
                "n1",
                "c1",
                "p1",
                "r1",
                "f1",
                "a1",
                "t1",
                "f2",
                "d2",
                "type",
                "object",
                "properties",
                "k1",
                "type",
                "string",
                "enum",
                "e1",
                "f3",
                "d3",
                "s1",
                "properties",
                "k2",
                "x1",
                "x2",
                "f4"
            ]
        );
    }

    #[test]
    fn only_message_texts_are_running_text() {
        let body =
            json!({"messages": [{"role": "user", "name": "n", "content": "c"}], "stop": "s"});
        let kinds: Vec<TextKind> = texts(Endpoint::ChatCompletions, body)
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        assert_eq!(kinds, [TextKind::Field, TextKind::Prose, TextKind::Field]);
    }

    #[test]
    fn completions_and_embeddings() {
        let got = texts(
            Endpoint::Completions,
            json!({"prompt": ["a", [1, 2], "b"], "suffix": "c"}),
        );
        assert_eq!(got.len(), 3);
        assert_eq!(
            texts(Endpoint::Embeddings, json!({"input": [[1, 2]]})).len(),
            0
        );
        assert_eq!(texts(Endpoint::Embeddings, json!({"input": "x"})).len(), 1);
    }

    #[test]
    fn too_deep_a_schema_is_refused() {
        let mut deep = json!("leaf");
        for _ in 0..=MAX_DEPTH + 1 {
            deep = json!({ "p": deep });
        }
        let Value::Object(mut body) =
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": deep}}]})
        else {
            panic!()
        };
        assert!(walk(Endpoint::ChatCompletions, &mut body, &mut |_, _| None).is_err());
    }

    #[test]
    fn renamed_keys_keep_their_order_and_values() {
        let Value::Object(mut map) = json!({"a": 1, "secret_x": 2, "secret_y": 3, "[REDACTED]": 4})
        else {
            panic!()
        };
        rename_keys(
            &mut map,
            vec![(1, "[REDACTED]".into()), (2, "[REDACTED]".into())],
        );
        assert_eq!(
            Value::Object(map).to_string(),
            r#"{"a":1,"[REDACTED]":2,"[REDACTED]~2":3,"[REDACTED]~3":4}"#
        );
    }
}
