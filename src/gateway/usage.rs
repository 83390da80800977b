//! Token usage: the one settlement of an answer's tokens ([`TokenSettlement::settle`], for
//! whole and streamed answers alike), and for streams, the gateway asks the backend for usage
//! (`stream_options.include_usage`) when it needs the figure, takes it from the stream
//! ([`UsageTap`]), and removes the usage-only chunk again when the client did not ask for it.
//!
//! A request that never reached a backend is not settled: its [`Reservation`] is refunded in
//! full when dropped.

use serde_json::{json, Value};

use std::time::Instant;

use crate::telemetry::access_log::DeferredLine;

use super::accounting::{carries_token, usage_of, Accounting, Usage, MAX_COUNTED_TEXT};
use super::admission::{total_tokens, Reservation};
use super::AiRequest;
use crate::openai::answer::{Answer, EventJson};
use crate::openai::request::Request;

#[derive(Debug, Clone, Copy, Default)]
pub struct UsagePlan {
    /// The gateway asked for usage the client did not: drop the usage-only chunk.
    pub strip_usage_chunk: bool,
}

impl UsagePlan {
    /// Makes a streamed request report its usage when `needed`.
    pub fn prepare(request: &mut AiRequest, needed: bool) -> Self {
        if !request.stream || !needed {
            return Self::default();
        }
        if Request::new(&request.body).include_usage() {
            return Self::default();
        }
        let options = request
            .body
            .entry("stream_options")
            .or_insert_with(|| json!({}));
        match options {
            Value::Object(map) => {
                map.insert("include_usage".into(), Value::Bool(true));
            }
            other => *other = json!({"include_usage": true}),
        }
        request.rewrote(super::request::Rewrite::StreamUsageRequested);
        Self {
            strip_usage_chunk: true,
        }
    }
}

/// The token side of an answer: the caller's token reservation and the token and latency
/// metrics, settled once from what the answer reported.
#[derive(Default)]
pub struct TokenSettlement {
    pub reservation: Option<Reservation>,
    pub accounting: Option<Accounting>,
}

/// What an answer reported about its tokens, whole or streamed.
pub struct Reported<'a> {
    /// `usage.total_tokens`, when the backend sent it.
    pub total: Option<u64>,
    pub usage: Option<Usage>,
    /// Completion tokens to assume when there is no usage and no tokenizer.
    pub completion_estimate: u64,
    /// The generated text, for a tokenizer to count when there is no usage.
    pub text: Option<&'a str>,
    pub first_token: Option<Instant>,
}

impl TokenSettlement {
    /// Whether the generated text is wanted: no usage came and a tokenizer will count it.
    pub fn wants_text(&self, usage: Option<Usage>) -> bool {
        usage.is_none()
            && self
                .accounting
                .as_ref()
                .is_some_and(|a| a.tokenizer.is_some())
    }

    /// Charges the reported total against the reservation (the whole reservation when the
    /// backend reported none: an answer that hides its usage pays its full estimate) and
    /// records the token and latency metrics.
    pub fn settle(self, reported: Reported<'_>) {
        if let Some(reservation) = self.reservation {
            let reserved = reservation.reserved();
            reservation.settle(reported.total.unwrap_or(reserved));
        }
        if let Some(accounting) = &self.accounting {
            accounting.finish(
                reported.usage,
                reported.completion_estimate,
                reported.text,
                reported.first_token,
            );
        }
    }
}

/// Watches a stream's events for usage and the first token; when the stream ends, settles the
/// token reservation (with the reported usage, or the whole reservation when none came) and
/// records the token and latency metrics.
pub struct UsageTap {
    plan: UsagePlan,
    total: Option<u64>,
    usage: Option<Usage>,
    first_token: Option<Instant>,
    /// Events that carried text: the completion estimate when no usage comes.
    token_events: u64,
    /// The streamed text, kept only when a tokenizer will count it.
    text: Option<String>,
    /// Settled when the stream ends.
    tokens: Option<TokenSettlement>,
    /// The request's access-log line, written when the stream ends.
    access_line: Option<DeferredLine>,
    /// The shutdown cut the stream before it ended.
    cut_by_shutdown: bool,
}

impl UsageTap {
    /// Also completes the request's access-log line when the stream ends.
    pub fn with_access_line(mut self, line: Option<DeferredLine>) -> Self {
        self.access_line = line;
        self
    }

    pub fn new(plan: UsagePlan, tokens: TokenSettlement) -> Self {
        Self {
            plan,
            total: None,
            usage: None,
            first_token: None,
            token_events: 0,
            text: tokens
                .accounting
                .as_ref()
                .filter(|a| a.tokenizer.is_some())
                .map(|_| String::new()),
            tokens: Some(tokens),
            access_line: None,
            cut_by_shutdown: false,
        }
    }

    /// The shutdown cut the stream: its records say so.
    pub fn mark_cut_by_shutdown(&mut self) {
        self.cut_by_shutdown = true;
    }

    /// Looks at one event; false when the event must not reach the client. The text checks
    /// come first, so an event is parsed only for the usage it names or the text a tokenizer
    /// will count.
    pub fn observe(&mut self, event: &mut EventJson<'_>) -> bool {
        let data = event.data();
        if carries_token(data) {
            self.token_events += 1;
            self.first_token.get_or_insert_with(Instant::now);
            if let (Some(text), Some(chunk)) = (self.text.as_mut(), event.json()) {
                collect_text(text, chunk);
            }
        }
        if !data.contains("\"usage\"") {
            return true;
        }
        let Some(json) = event.json() else {
            return true;
        };
        if let Some(total) = total_tokens(json) {
            self.total = Some(total);
        }
        if let Some(usage) = usage_of(json) {
            self.usage = Some(usage);
        }
        let chunk = Answer::new(json);
        let usage_only = chunk.has_empty_choices() && chunk.usage_value().is_some();
        !(self.plan.strip_usage_chunk && usage_only)
    }
}

impl Drop for UsageTap {
    fn drop(&mut self) {
        if let Some(line) = self.access_line.take() {
            line.stream_ended(
                self.usage.map(|u| (u.prompt, u.completion)),
                self.cut_by_shutdown,
            );
        }
        if let Some(tokens) = self.tokens.take() {
            tokens.settle(Reported {
                total: self.total,
                usage: self.usage,
                completion_estimate: self.token_events,
                text: self.text.as_deref(),
                first_token: self.first_token,
            });
        }
    }
}

/// Appends a chunk's generated text (delta content or text), bounded.
fn collect_text(text: &mut String, chunk: &Value) {
    let pieces = Answer::new(chunk)
        .choices()
        .filter_map(|choice| choice.content_text(true));
    for piece in pieces {
        if text.len() + piece.len() <= MAX_COUNTED_TEXT {
            text.push_str(piece);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::gateway::Endpoint;

    fn observe(tap: &mut UsageTap, data: &str) -> bool {
        tap.observe(&mut EventJson::new(data))
    }

    fn stream_request(body: &str) -> AiRequest {
        AiRequest::parse(Endpoint::ChatCompletions, body.as_bytes()).unwrap()
    }

    #[test]
    fn usage_is_requested_and_its_chunk_stripped_only_when_the_client_did_not_ask() {
        let mut request = stream_request(
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
        );
        let plan = UsagePlan::prepare(&mut request, true);
        assert!(plan.strip_usage_chunk);
        assert_eq!(request.body["stream_options"]["include_usage"], true);
        let mut tap = UsageTap::new(plan, TokenSettlement::default());
        assert!(observe(
            &mut tap,
            r#"{"choices":[{"delta":{"content":"a"}}],"usage":null}"#
        ));
        assert!(!observe(
            &mut tap,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#
        ));
        assert_eq!(tap.total, Some(7));

        let mut asked = stream_request(
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}"#,
        );
        let plan = UsagePlan::prepare(&mut asked, true);
        assert!(!plan.strip_usage_chunk);
        let mut tap = UsageTap::new(plan, TokenSettlement::default());
        assert!(observe(
            &mut tap,
            r#"{"choices":[],"usage":{"total_tokens":7}}"#
        ));
    }

    #[test]
    fn nothing_changes_when_usage_is_not_needed() {
        let mut request = stream_request(
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
        );
        assert!(!UsagePlan::prepare(&mut request, false).strip_usage_chunk);
        assert!(!request.body.contains_key("stream_options"));
    }
}
