//! The response guard (`scanResponses`) on whole and streamed answers. Both walk the same
//! definition of an answer's strings ([`crate::openai::fields`]), so a field scanned in one is
//! scanned in the other:
//!
//! - generated text ([`Field::Text`]: content, refusal, reasoning, audio transcript, tool and
//!   legacy function-call names and arguments) is scanned as one text per field; streamed, each
//!   field of each choice has its own holdback scanner, so a match split over chunks is caught
//!   before its last part leaves;
//! - log-probability tokens spell a text too: streamed, their entries are held back with the
//!   same rule and released only once their tokens are; a `redact` match there cannot be
//!   rewritten token by token, so it cuts the choice, as a `block` does;
//! - alternative tokens (`top_logprobs`) and every other string except metadata are scanned as
//!   they stand (in each event, when streamed).
//!
//! A refused choice is cut: its texts are emptied, its tool calls, function call, audio and
//! log-probabilities removed, and `finish_reason` set to `content_filter`. Streamed, the stream
//! ends with such a chunk and `[DONE]`, and nothing of the match has been sent. A whole answer
//! that is not JSON, or a streamed event that is not a JSON object, cannot be scanned: the
//! caller fails closed (502, or an error event that ends the stream).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{Refusal, Scan};
use crate::gateway::Endpoint;
use crate::guard::{
    Action, FailReason, Finding, PatternSet, ScanBudget, ScanOutcome, StreamScanner, StreamStep,
};
use crate::openai::fields::{
    answer_strings, choice_strings, logprob_entry_strings, Field, LogprobList, Slot, TextRef,
};

/// Scans a whole (non-streamed) answer. A choice with a refused text is cut; a refused string
/// outside the choices cuts every choice. Returns every finding and the first refusal.
pub fn scan_response(set: &PatternSet, body: &mut Value, budget: &mut ScanBudget) -> Scan {
    let mut total = Scan::default();
    let Value::Object(answer) = body else {
        // Not an OpenAI answer object: every string in it stands alone.
        let mut texts = Vec::new();
        other_value_strings(body, &mut texts);
        return scan_standalone(set, texts, budget);
    };
    if let Some(Value::Array(choices)) = answer.get_mut("choices") {
        for choice in choices.iter_mut() {
            let scan = match choice {
                Value::Object(choice) => {
                    let scan = scan_choice(set, choice, budget);
                    if scan.refusal.is_some() {
                        cut_choice(choice);
                    }
                    scan
                }
                other => {
                    let mut texts = Vec::new();
                    other_value_strings(other, &mut texts);
                    scan_standalone(set, texts, budget)
                }
            };
            merge(&mut total, scan);
        }
    }
    let mut texts = Vec::new();
    answer_strings(answer, &mut texts);
    let scan = scan_standalone(set, texts, budget);
    let refused = scan.refusal.is_some();
    merge(&mut total, scan);
    if refused {
        if let Some(Value::Array(choices)) = answer.get_mut("choices") {
            for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
                cut_choice(choice);
            }
        }
    }
    total
}

fn merge(total: &mut Scan, scan: Scan) {
    total.findings.extend(scan.findings);
    if let Some(refusal) = scan.refusal {
        total.refusal.get_or_insert(refusal);
    }
}

/// One whole choice: each generated text as it stands (redactions written back), each
/// log-probability list as the text its tokens spell, everything else as it stands.
fn scan_choice(set: &PatternSet, choice: &mut Map<String, Value>, budget: &mut ScanBudget) -> Scan {
    let mut fields = Vec::new();
    choice_strings(choice, &mut fields);
    let mut spelled: BTreeMap<LogprobList, String> = BTreeMap::new();
    let mut standalone = Vec::new();
    let mut scan = Scan::default();
    for (field, text) in fields {
        match field {
            Field::LogprobToken(list) => spelled.entry(list).or_default().push_str(text.as_str()),
            Field::Text(_) => {
                let one = scan_standalone(set, vec![(field, text)], budget);
                merge(&mut scan, one);
                if scan.refusal.is_some() {
                    return scan;
                }
            }
            Field::TopLogprob | Field::Other => standalone.push((field, text)),
        }
    }
    for text in spelled.into_values() {
        let one = scan_unredactable(set, &text, budget);
        merge(&mut scan, one);
        if scan.refusal.is_some() {
            return scan;
        }
    }
    merge(&mut scan, scan_standalone(set, standalone, budget));
    scan
}

/// Scans each string as it stands. Redactions are written back into values; in text that cannot
/// be rewritten (a map key, a token) a redaction is a refusal. A refused value is emptied.
fn scan_standalone(
    set: &PatternSet,
    texts: Vec<(Field, TextRef<'_>)>,
    budget: &mut ScanBudget,
) -> Scan {
    let mut scan = Scan::default();
    for (field, text) in texts {
        let rewritable = matches!(field, Field::Text(_) | Field::Other);
        let outcome = set.scan(text.as_str(), budget);
        let refusal = match outcome {
            ScanOutcome::Clean { findings, redacted } => match (redacted, text) {
                (None, _) => {
                    scan.findings.extend(findings);
                    None
                }
                (Some(redacted), TextRef::Value(value)) if rewritable => {
                    scan.findings.extend(findings);
                    *value = redacted;
                    None
                }
                (Some(_), _) => unredactable(findings),
            },
            ScanOutcome::Violation { finding } => Some(Refusal::Violation(finding)),
            ScanOutcome::Failed { rule, reason } => Some(Refusal::Failed { rule, reason }),
        };
        if let Some(refusal) = refusal {
            scan.refusal = Some(refusal);
            return scan;
        }
    }
    scan
}

/// Scans a text that can only pass or be cut (the text log-probability tokens spell).
fn scan_unredactable(set: &PatternSet, text: &str, budget: &mut ScanBudget) -> Scan {
    let mut scan = Scan::default();
    match set.scan(text, budget) {
        ScanOutcome::Clean { findings, redacted } => {
            if redacted.is_some() {
                scan.refusal = unredactable(findings);
            } else {
                scan.findings = findings;
            }
        }
        ScanOutcome::Violation { finding } => scan.refusal = Some(Refusal::Violation(finding)),
        ScanOutcome::Failed { rule, reason } => {
            scan.refusal = Some(Refusal::Failed { rule, reason })
        }
    }
    scan
}

/// The refusal for a redaction that cannot be written: the first redact finding.
fn unredactable(findings: Vec<Finding>) -> Option<Refusal> {
    let finding = findings.into_iter().find(|f| f.action == Action::Redact)?;
    Some(Refusal::Unredactable(finding))
}

/// Every string of a value that is not an answer object, as [`Field::Other`].
fn other_value_strings<'a>(value: &'a mut Value, out: &mut Vec<(Field, TextRef<'a>)>) {
    match value {
        Value::String(text) => out.push((Field::Other, TextRef::Value(text))),
        Value::Array(items) => {
            for item in items.iter_mut() {
                other_value_strings(item, out);
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                other_value_strings(item, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Empties a refused whole choice: every generated text, tool call, function call, audio and
/// log-probabilities; `finish_reason: content_filter`.
fn cut_choice(choice: &mut Map<String, Value>) {
    if let Some(Value::String(text)) = choice.get_mut("text") {
        text.clear();
    }
    if let Some(Value::Object(message)) = choice.get_mut("message") {
        message.retain(|key, _| key == "role");
        message.insert("content".into(), Value::String(String::new()));
    }
    if choice.contains_key("logprobs") {
        choice.insert("logprobs".into(), Value::Null);
    }
    choice.insert(
        "finish_reason".into(),
        Value::String("content_filter".into()),
    );
}

/// Most scanners one stream may open (choices times fields); past it the stream fails closed.
const MAX_SCANNERS: usize = 64;

/// What to send for one upstream event.
#[derive(Debug)]
pub enum StreamVerdict {
    /// The chunk, rewritten with only the text that is safe to release (the caller encodes it,
    /// and the cache collects it as the client receives it).
    Forward(Value),
    /// End the stream: send this final chunk (`finish_reason: content_filter`) and `[DONE]`.
    Stop {
        final_chunk: String,
        refusal: Refusal,
    },
    /// The event is not a JSON object: it cannot be scanned, so the stream must end with an
    /// error event (fail closed, as a whole answer that is not JSON is a 502).
    Unscannable,
}

/// Log-probability entries of one list of one choice, held back until the text their tokens
/// spell is released by its scanner.
struct HeldEntries {
    scanner: StreamScanner,
    /// Entries not yet released, with their token's byte length.
    queue: VecDeque<(Value, usize)>,
    /// Bytes of held entries' tokens the scanner has already released.
    released: usize,
}

impl HeldEntries {
    fn new(set: &Arc<PatternSet>) -> Self {
        Self {
            scanner: StreamScanner::new(Arc::clone(set), set.budget()),
            queue: VecDeque::new(),
            released: 0,
        }
    }

    /// One step of the tokens' scanner. A redaction cannot be written into tokens, so a redact
    /// finding is a refusal (found before any of its text is released).
    fn step(
        &mut self,
        run: impl FnOnce(&mut StreamScanner) -> StreamStep,
    ) -> Result<String, Refusal> {
        let released = step(run(&mut self.scanner))?;
        if let Some(finding) = self
            .scanner
            .findings()
            .iter()
            .find(|f| f.action == Action::Redact)
        {
            return Err(Refusal::Unredactable(finding.clone()));
        }
        Ok(released)
    }

    /// Counts released token bytes and returns the queued entries whose tokens are now
    /// entirely released.
    fn release(&mut self, text: &str) -> Vec<Value> {
        self.released += text.len();
        let mut out = Vec::new();
        while let Some((_, len)) = self.queue.front() {
            if *len > self.released {
                break;
            }
            self.released -= *len;
            if let Some((entry, _)) = self.queue.pop_front() {
                out.push(entry);
            }
        }
        out
    }
}

/// Scans a streamed answer chunk by chunk (see the module documentation).
pub struct StreamGuard {
    set: Arc<PatternSet>,
    endpoint: Endpoint,
    scanners: BTreeMap<(u64, Slot), StreamScanner>,
    held: BTreeMap<(u64, LogprobList), HeldEntries>,
    /// For strings scanned as they stand.
    budget: ScanBudget,
    /// `id`, `object`, `created`, `model` of the last chunk, for chunks the guard writes itself.
    template: Map<String, Value>,
    findings: Vec<Finding>,
}

impl StreamGuard {
    pub fn new(set: Arc<PatternSet>, endpoint: Endpoint) -> Self {
        let budget = set.budget();
        Self {
            set,
            endpoint,
            scanners: BTreeMap::new(),
            held: BTreeMap::new(),
            budget,
            template: Map::new(),
            findings: Vec::new(),
        }
    }

    /// Audit and redact findings so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Handles one `data:` payload (not `[DONE]`), parsed: `None` when it is not JSON.
    pub fn on_event(&mut self, chunk: Option<Value>) -> StreamVerdict {
        let Some(Value::Object(mut chunk)) = chunk else {
            return StreamVerdict::Unscannable;
        };
        self.remember_template(&chunk);
        if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
            for (position, choice) in choices.iter_mut().enumerate() {
                let index = choice
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64);
                let result = match choice {
                    Value::Object(choice) => self.guard_choice(index, choice),
                    other => self.standalone(other),
                };
                if let Err(refusal) = result {
                    return self.stop(index, refusal);
                }
            }
        }
        let mut texts = Vec::new();
        answer_strings(&mut chunk, &mut texts);
        let scan = scan_standalone(&self.set, texts, &mut self.budget);
        self.findings.extend(scan.findings);
        if let Some(refusal) = scan.refusal {
            return self.stop(0, refusal);
        }
        StreamVerdict::Forward(Value::Object(chunk))
    }

    /// At `[DONE]`: releases what every open scanner still holds, as one extra chunk.
    pub fn on_done(&mut self) -> Option<StreamVerdict> {
        let indexes: Vec<u64> = self
            .scanners
            .keys()
            .map(|(i, _)| *i)
            .chain(self.held.keys().map(|(i, _)| *i))
            .collect();
        let mut choices: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
        for index in indexes {
            let choice = choices.entry(index).or_insert_with(|| {
                let mut c = Map::new();
                c.insert("index".into(), json!(index));
                c
            });
            if let Err(refusal) = self.flush_choice(index, choice) {
                return Some(self.stop(index, refusal));
            }
        }
        choices.retain(|_, choice| choice.len() > 1);
        if choices.is_empty() {
            return None;
        }
        let mut chunk = self.template.clone();
        chunk.insert(
            "choices".into(),
            Value::Array(choices.into_values().map(Value::Object).collect()),
        );
        Some(StreamVerdict::Forward(Value::Object(chunk)))
    }

    fn remember_template(&mut self, chunk: &Map<String, Value>) {
        for key in ["id", "object", "created", "model", "system_fingerprint"] {
            if let Some(value) = chunk.get(key) {
                self.template.insert(key.into(), value.clone());
            }
        }
    }

    /// Every string of a choice that is not an object stands alone.
    fn standalone(&mut self, value: &mut Value) -> Result<(), Refusal> {
        let mut texts = Vec::new();
        other_value_strings(value, &mut texts);
        let scan = scan_standalone(&self.set, texts, &mut self.budget);
        self.findings.extend(scan.findings);
        scan.refusal.map_or(Ok(()), Err)
    }

    /// Replaces each text of the choice by what its scanner releases, holds back log-probability
    /// entries, scans the rest as it stands; on the choice's last chunk (`finish_reason` set)
    /// flushes its scanners into it.
    fn guard_choice(&mut self, index: u64, choice: &mut Map<String, Value>) -> Result<(), Refusal> {
        let finishing = choice.get("finish_reason").is_some_and(|f| !f.is_null());
        let mut entries = take_logprob_entries(choice);
        let mut fields = Vec::new();
        choice_strings(choice, &mut fields);
        let mut standalone = Vec::new();
        for (field, text) in fields {
            match (field, text) {
                (Field::Text(slot), TextRef::Value(text)) => {
                    *text = self.push(index, slot, text)?;
                }
                (field, text) => standalone.push((field, text)),
            }
        }
        let scan = scan_standalone(&self.set, standalone, &mut self.budget);
        self.findings.extend(scan.findings);
        if let Some(refusal) = scan.refusal {
            return Err(refusal);
        }
        let mut released = BTreeMap::new();
        for (list, list_entries) in entries.iter_mut() {
            let out = self.hold(index, *list, std::mem::take(list_entries))?;
            released.insert(*list, out);
        }
        for (list, out) in released {
            put_logprob_entries(choice, list, out);
        }
        if finishing {
            self.flush_choice(index, choice)?;
        }
        Ok(())
    }

    /// Scans new log-probability entries and returns those whose tokens are released.
    fn hold(
        &mut self,
        index: u64,
        list: LogprobList,
        entries: Vec<Value>,
    ) -> Result<Vec<Value>, Refusal> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_room((index, Slot::Content), Some((index, list)))?;
        let set = Arc::clone(&self.set);
        let held = self
            .held
            .entry((index, list))
            .or_insert_with(|| HeldEntries::new(&set));
        let mut out = Vec::new();
        for mut entry in entries {
            let mut token = String::new();
            let mut alternatives = Vec::new();
            let mut fields = Vec::new();
            logprob_entry_strings(&mut entry, list, &mut fields);
            for (field, text) in fields {
                match field {
                    Field::LogprobToken(_) => token.push_str(text.as_str()),
                    _ => alternatives.push((field, text)),
                }
            }
            let scan = scan_standalone(&set, alternatives, &mut self.budget);
            self.findings.extend(scan.findings);
            if let Some(refusal) = scan.refusal {
                return Err(refusal);
            }
            let released = held.step(|scanner| scanner.push(&token))?;
            held.queue.push_back((entry, token.len()));
            out.extend(held.release(&released));
        }
        Ok(out)
    }

    /// Flushes every scanner of one choice into it.
    fn flush_choice(&mut self, index: u64, choice: &mut Map<String, Value>) -> Result<(), Refusal> {
        let slots: Vec<Slot> = self
            .scanners
            .keys()
            .filter(|(i, _)| *i == index)
            .map(|(_, slot)| *slot)
            .collect();
        for slot in slots {
            let released = self.finish(index, slot)?;
            if !released.is_empty() {
                put_text(choice, self.endpoint, slot, released);
            }
        }
        for list in LogprobList::ALL {
            if let Some(mut held) = self.held.remove(&(index, list)) {
                let released = held.step(StreamScanner::finish)?;
                let mut out = held.release(&released);
                // At the end every token is released, whatever their lengths added up to.
                out.extend(held.queue.drain(..).map(|(entry, _)| entry));
                self.findings
                    .extend(held.scanner.findings().iter().cloned());
                put_logprob_entries(choice, list, out);
            }
        }
        Ok(())
    }

    /// Fails closed when a new scanner would exceed [`MAX_SCANNERS`].
    fn ensure_room(
        &self,
        slot: (u64, Slot),
        list: Option<(u64, LogprobList)>,
    ) -> Result<(), Refusal> {
        let new = match list {
            Some(key) => !self.held.contains_key(&key),
            None => !self.scanners.contains_key(&slot),
        };
        if new && self.scanners.len() + self.held.len() >= MAX_SCANNERS {
            return Err(Refusal::Failed {
                rule: "*".into(),
                reason: FailReason::ScanBudgetExceeded,
            });
        }
        Ok(())
    }

    fn push(&mut self, index: u64, slot: Slot, text: &str) -> Result<String, Refusal> {
        self.ensure_room((index, slot), None)?;
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
        self.held.clear();
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

/// Removes the log-probability entries of a streamed choice, per list, so they can be held
/// back; completions' parallel arrays become one entry object per token.
fn take_logprob_entries(choice: &mut Map<String, Value>) -> BTreeMap<LogprobList, Vec<Value>> {
    let mut lists = BTreeMap::new();
    let Some(Value::Object(logprobs)) = choice.get_mut("logprobs") else {
        return lists;
    };
    for (list, key) in [
        (LogprobList::Content, "content"),
        (LogprobList::Refusal, "refusal"),
    ] {
        if let Some(Value::Array(entries)) = logprobs.get_mut(key) {
            lists.insert(list, std::mem::take(entries));
        }
    }
    if let Some(Value::Array(tokens)) = logprobs.get_mut("tokens") {
        let tokens = std::mem::take(tokens);
        let mut columns: Vec<(String, Vec<Value>)> = LEGACY_COLUMNS
            .iter()
            .filter_map(|key| match logprobs.get_mut(*key) {
                Some(Value::Array(column)) => Some((key.to_string(), std::mem::take(column))),
                _ => None,
            })
            .collect();
        let entries = tokens
            .into_iter()
            .enumerate()
            .map(|(i, token)| {
                let mut entry = Map::new();
                entry.insert("token".into(), token);
                for (key, column) in columns.iter_mut() {
                    if let Some(value) = column.get_mut(i) {
                        entry.insert(key.clone(), value.take());
                    }
                }
                Value::Object(entry)
            })
            .collect();
        lists.insert(LogprobList::Legacy, entries);
    }
    lists
}

/// Completions' per-token arrays beside `tokens`.
const LEGACY_COLUMNS: &[&str] = &["token_logprobs", "top_logprobs", "text_offset"];

/// Puts released entries back into a choice's `logprobs` (creating it for a chunk the guard
/// writes itself).
fn put_logprob_entries(choice: &mut Map<String, Value>, list: LogprobList, entries: Vec<Value>) {
    if entries.is_empty() {
        return;
    }
    let Some(logprobs) = object_field(choice, "logprobs") else {
        return;
    };
    match list {
        LogprobList::Content | LogprobList::Refusal => {
            let key = if list == LogprobList::Content {
                "content"
            } else {
                "refusal"
            };
            append_items(logprobs, key, entries);
        }
        LogprobList::Legacy => {
            let mut tokens = Vec::new();
            let mut columns: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
            for mut entry in entries {
                let Some(entry) = entry.as_object_mut() else {
                    continue;
                };
                tokens.push(entry.remove("token").unwrap_or(Value::Null));
                for key in LEGACY_COLUMNS {
                    if let Some(value) = entry.remove(*key) {
                        columns.entry(key).or_default().push(value);
                    }
                }
            }
            append_items(logprobs, "tokens", tokens);
            for (key, values) in columns {
                append_items(logprobs, key, values);
            }
        }
    }
}

fn append_items(map: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    match map.get_mut(key) {
        Some(Value::Array(existing)) => existing.extend(items),
        _ => {
            map.insert(key.into(), Value::Array(items));
        }
    }
}

/// Appends released text to a streamed choice's field for that slot.
fn put_text(choice: &mut Map<String, Value>, endpoint: Endpoint, slot: Slot, released: String) {
    if endpoint == Endpoint::Completions && slot == Slot::Content {
        return append(choice, "text", released);
    }
    let Some(delta) = object_field(choice, "delta") else {
        return;
    };
    let (object, key) = match slot {
        Slot::Content => (Some(delta), "content"),
        Slot::Refusal => (Some(delta), "refusal"),
        Slot::ReasoningContent => (Some(delta), "reasoning_content"),
        Slot::Reasoning => (Some(delta), "reasoning"),
        Slot::AudioTranscript => (object_field(delta, "audio"), "transcript"),
        Slot::FunctionName => (object_field(delta, "function_call"), "name"),
        Slot::FunctionArguments => (object_field(delta, "function_call"), "arguments"),
        Slot::ToolName(call) => (tool_call_function(delta, call), "name"),
        Slot::ToolArguments(call) => (tool_call_function(delta, call), "arguments"),
    };
    if let Some(object) = object {
        append(object, key, released);
    }
}

/// `function` of the delta's tool call with this `index`, added when absent.
fn tool_call_function(
    delta: &mut Map<String, Value>,
    call: u64,
) -> Option<&mut Map<String, Value>> {
    let calls = delta
        .entry("tool_calls")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !calls.is_array() {
        *calls = Value::Array(Vec::new());
    }
    let calls = calls.as_array_mut()?;
    let position = match calls
        .iter()
        .position(|c| c.get("index").and_then(Value::as_u64) == Some(call))
    {
        Some(position) => position,
        None => {
            calls.push(json!({"index": call}));
            calls.len() - 1
        }
    };
    object_field(calls.get_mut(position)?.as_object_mut()?, "function")
}

/// The object at `key`, made one when absent or not an object (always `Some`).
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
