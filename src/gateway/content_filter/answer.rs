//! The texts of an answer the response guard scans (`scanResponses`): each choice's
//! `message.content`, `message.refusal`, tool call arguments, and `text` (/v1/completions);
//! streamed, the same fields of each chunk's deltas.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{message_texts, scan_texts, Refusal, Scan};
use crate::gateway::Endpoint;
use crate::guard::{FailReason, Finding, PatternSet, ScanBudget, StreamScanner, StreamStep};

/// Scans a whole (non-streamed) answer. A choice with a refused text is cut: its texts emptied,
/// its tool calls removed, its `finish_reason` set to `content_filter`. Returns every finding
/// and the first refusal.
pub fn scan_response(set: &PatternSet, body: &mut Value, budget: &mut ScanBudget) -> Scan {
    let mut total = Scan::default();
    let Some(choices) = body.get_mut("choices").and_then(Value::as_array_mut) else {
        return total;
    };
    for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
        let mut texts = Vec::new();
        for (key, value) in choice.iter_mut() {
            match (key.as_str(), value) {
                ("text", Value::String(text)) => texts.push(text),
                ("message", Value::Object(message)) => message_texts(message, &mut texts),
                _ => {}
            }
        }
        let scan = scan_texts(set, texts, budget);
        total.findings.extend(scan.findings);
        if let Some(refusal) = scan.refusal {
            cut_choice(choice);
            total.refusal.get_or_insert(refusal);
        }
    }
    total
}

fn cut_choice(choice: &mut Map<String, Value>) {
    if let Some(Value::String(text)) = choice.get_mut("text") {
        text.clear();
    }
    if let Some(Value::Object(message)) = choice.get_mut("message") {
        message.insert("content".into(), Value::String(String::new()));
        message.remove("tool_calls");
        message.remove("function_call");
    }
    choice.insert(
        "finish_reason".into(),
        Value::String("content_filter".into()),
    );
}

/// Which text of a streamed choice a scanner follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// `delta.content` (chat) or `text` (completions).
    Content,
    /// `delta.tool_calls[index].function.arguments`.
    ToolArguments(u64),
}

/// Most scanners one stream may open (choices times tool calls); past it the stream fails closed.
const MAX_SCANNERS: usize = 64;

/// What to send for one upstream event.
#[derive(Debug)]
pub enum StreamVerdict {
    /// The event, rewritten with only the text that is safe to release.
    Forward(String),
    /// End the stream: send this final chunk (`finish_reason: content_filter`) and `[DONE]`.
    Stop {
        final_chunk: String,
        refusal: Refusal,
    },
}

/// Scans a streamed answer chunk by chunk with one holdback scanner per text (per choice, and
/// per tool call), so a match split across chunks is caught before its last part leaves.
pub struct StreamGuard {
    set: Arc<PatternSet>,
    endpoint: Endpoint,
    scanners: BTreeMap<(u64, Slot), StreamScanner>,
    /// `id`, `object`, `created`, `model` of the last chunk, for chunks the guard writes itself.
    template: Map<String, Value>,
    findings: Vec<Finding>,
}

impl StreamGuard {
    pub fn new(set: Arc<PatternSet>, endpoint: Endpoint) -> Self {
        Self {
            set,
            endpoint,
            scanners: BTreeMap::new(),
            template: Map::new(),
            findings: Vec::new(),
        }
    }

    /// Audit and redact findings so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Handles one `data:` payload. Payloads that are not JSON chunks pass unchanged.
    pub fn on_event(&mut self, data: &str) -> StreamVerdict {
        let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(data) else {
            return StreamVerdict::Forward(data.to_string());
        };
        self.remember_template(&chunk);
        if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
            for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
                let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Err(refusal) = self.guard_choice(index, choice) {
                    return self.stop(index, refusal);
                }
            }
        }
        StreamVerdict::Forward(Value::Object(chunk).to_string())
    }

    /// At `[DONE]`: releases what every open scanner still holds, as one extra chunk.
    pub fn on_done(&mut self) -> Option<StreamVerdict> {
        let keys: Vec<(u64, Slot)> = self.scanners.keys().copied().collect();
        let mut choices: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
        for (index, slot) in keys {
            let released = match self.finish(index, slot) {
                Ok(text) => text,
                Err(refusal) => return Some(self.stop(index, refusal)),
            };
            if released.is_empty() {
                continue;
            }
            let choice = choices.entry(index).or_insert_with(|| {
                let mut c = Map::new();
                c.insert("index".into(), json!(index));
                c
            });
            self.put_text(choice, slot, released);
        }
        if choices.is_empty() {
            return None;
        }
        let mut chunk = self.template.clone();
        chunk.insert(
            "choices".into(),
            Value::Array(choices.into_values().map(Value::Object).collect()),
        );
        Some(StreamVerdict::Forward(Value::Object(chunk).to_string()))
    }

    fn remember_template(&mut self, chunk: &Map<String, Value>) {
        for key in ["id", "object", "created", "model", "system_fingerprint"] {
            if let Some(value) = chunk.get(key) {
                self.template.insert(key.into(), value.clone());
            }
        }
    }

    /// Replaces each text of the choice by what its scanner releases; on the choice's last chunk
    /// (`finish_reason` set) the scanners are flushed into it.
    fn guard_choice(&mut self, index: u64, choice: &mut Map<String, Value>) -> Result<(), Refusal> {
        let finishing = choice.get("finish_reason").is_some_and(|f| !f.is_null());
        match self.endpoint {
            Endpoint::Completions => {
                if let Some(Value::String(text)) = choice.get_mut("text") {
                    *text = self.push(index, Slot::Content, text)?;
                }
            }
            _ => {
                if let Some(Value::Object(delta)) = choice.get_mut("delta") {
                    if let Some(Value::String(text)) = delta.get_mut("content") {
                        *text = self.push(index, Slot::Content, text)?;
                    }
                    if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                        for call in calls.iter_mut() {
                            let call_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                            if let Some(Value::String(args)) =
                                call.pointer_mut("/function/arguments")
                            {
                                *args = self.push(index, Slot::ToolArguments(call_index), args)?;
                            }
                        }
                    }
                }
            }
        }
        if finishing {
            let slots: Vec<Slot> = self
                .scanners
                .keys()
                .filter(|(i, _)| *i == index)
                .map(|(_, slot)| *slot)
                .collect();
            for slot in slots {
                let released = self.finish(index, slot)?;
                if !released.is_empty() {
                    self.put_text(choice, slot, released);
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, index: u64, slot: Slot, text: &str) -> Result<String, Refusal> {
        if !self.scanners.contains_key(&(index, slot)) && self.scanners.len() >= MAX_SCANNERS {
            return Err(Refusal::Failed {
                rule: "*".into(),
                reason: FailReason::ScanBudgetExceeded,
            });
        }
        let set = &self.set;
        let scanner = self
            .scanners
            .entry((index, slot))
            .or_insert_with(|| StreamScanner::new(Arc::clone(set), set.budget()));
        step(scanner.push(text))
    }

    /// Flushes and closes one scanner.
    fn finish(&mut self, index: u64, slot: Slot) -> Result<String, Refusal> {
        let Some(mut scanner) = self.scanners.remove(&(index, slot)) else {
            return Ok(String::new());
        };
        let result = step(scanner.finish());
        self.findings.extend(scanner.findings().iter().cloned());
        result
    }

    /// Appends released text to the choice's field for that slot.
    fn put_text(&self, choice: &mut Map<String, Value>, slot: Slot, released: String) {
        match (self.endpoint, slot) {
            (Endpoint::Completions, _) => append(choice, "text", released),
            (_, Slot::Content) => {
                if let Some(delta) = object_field(choice, "delta") {
                    append(delta, "content", released);
                }
            }
            (_, Slot::ToolArguments(call_index)) => {
                let Some(delta) = object_field(choice, "delta") else {
                    return;
                };
                let calls = delta
                    .entry("tool_calls")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(calls) = calls {
                    calls.push(json!({"index": call_index, "function": {"arguments": released}}));
                }
            }
        }
    }

    fn stop(&mut self, index: u64, refusal: Refusal) -> StreamVerdict {
        let mut chunk = self.template.clone();
        let choice = match self.endpoint {
            Endpoint::Completions => {
                json!({"index": index, "text": "", "finish_reason": "content_filter"})
            }
            _ => json!({"index": index, "delta": {}, "finish_reason": "content_filter"}),
        };
        chunk.insert("choices".into(), Value::Array(vec![choice]));
        self.scanners.clear();
        StreamVerdict::Stop {
            final_chunk: Value::Object(chunk).to_string(),
            refusal,
        }
    }
}

fn step(step: StreamStep) -> Result<String, Refusal> {
    match step {
        StreamStep::Release(text) => Ok(text),
        StreamStep::Violation(finding) => Err(Refusal::Violation(finding)),
        StreamStep::Failed { rule, reason } => Err(Refusal::Failed { rule, reason }),
    }
}

fn object_field<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let value = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    value.as_object_mut()
}

fn append(map: &mut Map<String, Value>, key: &str, text: String) {
    match map.get_mut(key) {
        Some(Value::String(existing)) => existing.push_str(&text),
        _ => {
            map.insert(key.into(), Value::String(text));
        }
    }
}
