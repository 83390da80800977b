//! Token and latency accounting of one answer: usage as the backend reports it, or an estimate
//! marked as such when it reports none; time to first token and time per output token for
//! streams. Feeds `airgate_tokens_total`, the TTFT/TPOT histograms and the GenAI metrics.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::runtime::MetricsFlags;
use super::Endpoint;
use crate::openai::answer::Answer;
use crate::openai::request::Request;
use crate::openai::sse::string_values;
use crate::telemetry::metrics::Generation;
use crate::telemetry::Metrics;

/// Bytes per token of the estimate used when a backend reports no usage (about right for
/// English with BPE tokenizers; marked `estimated` wherever it is used).
const BYTES_PER_TOKEN: u64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

/// `usage.prompt_tokens` and `usage.completion_tokens` of an answer or chunk: none without a
/// prompt count, a missing completion count is 0.
pub fn usage_of(json: &Value) -> Option<Usage> {
    let counts = Answer::new(json).usage();
    Some(Usage {
        prompt: counts.prompt_tokens?,
        completion: counts.completion_tokens.unwrap_or(0),
    })
}

/// Estimates tokens from text length.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(BYTES_PER_TOKEN)
}

pub struct Accounting {
    pub metrics: Arc<Metrics>,
    pub gateway: String,
    /// Model label (bounded, or empty when `includeModelName` is off).
    pub model: String,
    pub endpoint: Endpoint,
    pub started: Instant,
    pub flags: MetricsFlags,
    /// Used when the backend reports no usage.
    pub prompt_estimate: u64,
    /// The prompt's text, kept only when some backend has a tokenizer.
    pub prompt_text: Option<String>,
    /// The answering backend's tokenizer, set once it is known.
    pub tokenizer: Option<Arc<tokenizers::Tokenizer>>,
}

impl Accounting {
    /// Records the answer: `usage` as reported; else counted with the backend's tokenizer
    /// (`completion_text`), else estimated (`completion_estimate`), and marked estimated.
    pub fn finish(
        &self,
        usage: Option<Usage>,
        completion_estimate: u64,
        completion_text: Option<&str>,
        first_token: Option<Instant>,
    ) {
        if !self.flags.enabled {
            return;
        }
        let now = Instant::now();
        let (tokens, estimated) = match usage {
            Some(u) => ((u.prompt, u.completion), false),
            None => (self.estimate(completion_estimate, completion_text), true),
        };
        let latency = self.flags.latency;
        let ttft = first_token.map(|t| t.duration_since(self.started).as_secs_f64());
        let tpot = first_token
            .filter(|_| tokens.1 > 1)
            .map(|t| now.duration_since(t).as_secs_f64() / (tokens.1 - 1) as f64);
        self.metrics.observe_generation(&Generation {
            gateway: &self.gateway,
            model: &self.model,
            operation: operation_name(self.endpoint),
            tokens: self.flags.token_count.then_some(tokens),
            estimated,
            duration: latency.then(|| now.duration_since(self.started).as_secs_f64()),
            time_to_first_token: ttft.filter(|_| latency),
            time_per_output_token: tpot.filter(|_| latency),
        });
    }
}

impl Accounting {
    /// (prompt, completion) without reported usage: the tokenizer's count where there is one.
    fn estimate(&self, completion_estimate: u64, completion_text: Option<&str>) -> (u64, u64) {
        let count = |text: &str| {
            self.tokenizer
                .as_ref()
                .and_then(|t| t.encode(text, false).ok())
                .map(|e| e.len() as u64)
        };
        let prompt = self
            .prompt_text
            .as_deref()
            .and_then(count)
            .unwrap_or(self.prompt_estimate);
        let completion = completion_text
            .and_then(count)
            .unwrap_or(completion_estimate);
        (prompt, completion)
    }
}

/// Longest text kept for counting with a tokenizer.
pub const MAX_COUNTED_TEXT: usize = 1024 * 1024;

/// The prompt texts of a request ([`Request::prompt_texts`]), each followed by a newline, as
/// long as they fit in [`MAX_COUNTED_TEXT`].
pub fn prompt_text(body: &serde_json::Map<String, Value>) -> String {
    let mut out = String::new();
    for text in Request::new(body).prompt_texts() {
        if out.len() + text.len() <= MAX_COUNTED_TEXT {
            out.push_str(text);
            out.push('\n');
        }
    }
    out
}

/// The generated text of a whole answer: each choice's message content or text.
pub fn answer_text(json: &Value) -> String {
    Answer::new(json)
        .choices()
        .filter_map(|choice| choice.content_text(false))
        .collect()
}

/// `gen_ai.operation.name` of the semantic conventions.
pub fn operation_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "chat",
        Endpoint::Completions => "text_completion",
        Endpoint::Embeddings => "embeddings",
    }
}

/// Whether a chunk's JSON text carries generated text or a tool call (checked on the text, so
/// unguarded streams need no parsing): its arrival is the first token.
pub fn carries_token(data: &str) -> bool {
    ["\"content\"", "\"text\"", "\"arguments\""]
        .iter()
        .any(|key| string_values(data, key).any(|value| !value.starts_with('"')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_recognised_in_either_json_style() {
        assert!(carries_token(r#"{"choices":[{"delta":{"content":"Hi"}}]}"#));
        assert!(carries_token(r#"{"choices": [{"text": "Hi"}]}"#));
        assert!(!carries_token(
            r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(!carries_token(
            r#"{"choices":[{"delta":{"content":null}}]}"#
        ));
    }
}
