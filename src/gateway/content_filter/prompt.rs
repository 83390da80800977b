//! The texts of a request the prompt guard scans (`scanPrompts`): every message's `content` (a
//! string, or the `text` of each part of an array), `refusal`, every tool call's
//! `function.arguments`, `prompt` (/v1/completions) and `input` (/v1/embeddings).

use serde_json::{Map, Value};

use super::{message_texts, scan_texts, Scan};
use crate::gateway::Endpoint;
use crate::guard::{PatternSet, ScanBudget};

/// Scans the request's texts; redactions are written back into the body.
pub fn scan_request(
    set: &PatternSet,
    endpoint: Endpoint,
    body: &mut Map<String, Value>,
    budget: &mut ScanBudget,
) -> Scan {
    let mut texts = Vec::new();
    match endpoint {
        Endpoint::ChatCompletions => {
            if let Some(Value::Array(messages)) = body.get_mut("messages") {
                for message in messages.iter_mut().filter_map(Value::as_object_mut) {
                    message_texts(message, &mut texts);
                }
            }
        }
        Endpoint::Completions => strings_in(body.get_mut("prompt"), &mut texts),
        Endpoint::Embeddings => strings_in(body.get_mut("input"), &mut texts),
    }
    scan_texts(set, texts, budget)
}

/// A string, or the strings of an array (token-id arrays are not text and are skipped).
fn strings_in<'a>(value: Option<&'a mut Value>, out: &mut Vec<&'a mut String>) {
    match value {
        Some(Value::String(text)) => out.push(text),
        Some(Value::Array(items)) => {
            for item in items.iter_mut() {
                if let Value::String(text) = item {
                    out.push(text);
                }
            }
        }
        _ => {}
    }
}
