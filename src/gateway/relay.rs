//! Relaying an upstream SSE stream to the client, event by event.
//!
//! Nothing is buffered beyond the event being decoded. A stream that stalls (no chunk for the idle
//! timeout), breaks, or closes before `data: [DONE]` is ended with an SSE error event, so the
//! OpenAI SDK raises instead of returning a truncated answer. When the client goes away the relay
//! is dropped, which drops the upstream response and so cancels the upstream request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, Stream, StreamExt};

use super::cache_stage::CacheFill;
use super::content_filter::{StreamGuard, StreamVerdict};
use super::guard_events::{GuardReporter, Stage};
use super::usage::UsageTap;
use crate::openai::answer::EventJson;
use crate::openai::sse::{done_event, encode_data, string_values, SseDecoder, SseEvent};
use crate::openai::{ErrorBody, ErrorObject};
use crate::routing::InFlight;
use crate::shutdown::Shutdown;
use crate::telemetry::log_rate::LogRate;
use crate::telemetry::Metrics;

/// Lines per second about streams ended with an error event (each is counted in
/// `airgate_stream_terminations_total`).
static STREAM_ERROR_LOG: LogRate = LogRate::new(5);

/// Largest single upstream SSE event accepted.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// What a relay is made of.
pub struct RelayParts {
    /// The first upstream chunk, already received when the answer was committed.
    pub first: Bytes,
    pub upstream: BoxStream<'static, Result<Bytes, String>>,
    pub idle_timeout: Duration,
    /// When the shutdown grace ends, the stream is cut with an error event.
    pub shutdown: Shutdown,
    pub gateway: String,
    pub metrics: Arc<Metrics>,
    pub in_flight: InFlight,
    /// The response scanner, when `scanResponses` is on.
    pub guard: Option<(StreamGuard, GuardReporter)>,
    /// Takes the usage from the stream and settles the token reservation.
    pub usage: UsageTap,
    /// Collects the answer for the semantic cache.
    pub fill: Option<CacheFill>,
}

pub struct Relay {
    upstream: BoxStream<'static, Result<Bytes, String>>,
    first: Option<Bytes>,
    decoder: SseDecoder,
    idle_timeout: Duration,
    shutdown: Shutdown,
    finished: bool,
    gateway: String,
    metrics: Arc<Metrics>,
    guard: Option<(StreamGuard, GuardReporter)>,
    /// Whether a chunk carried a non-null `finish_reason`: a stream that reaches `[DONE]`
    /// without one was cut short upstream (llama.cpp's server does that when interrupted).
    saw_finish: bool,
    usage: UsageTap,
    fill: Option<CacheFill>,
    _in_flight: InFlight,
}

impl Relay {
    pub fn new(parts: RelayParts) -> Self {
        Self {
            upstream: parts.upstream,
            first: Some(parts.first),
            decoder: SseDecoder::new(MAX_EVENT_BYTES),
            idle_timeout: parts.idle_timeout,
            shutdown: parts.shutdown,
            finished: false,
            gateway: parts.gateway,
            metrics: parts.metrics,
            guard: parts.guard,
            saw_finish: false,
            usage: parts.usage,
            fill: parts.fill,
            _in_flight: parts.in_flight,
        }
    }

    /// The client-facing body stream.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
        futures::stream::unfold(self, |mut relay| async move {
            relay.next_output().await.map(|out| (Ok(out), relay))
        })
    }

    async fn next_output(&mut self) -> Option<Bytes> {
        loop {
            if self.finished {
                return None;
            }
            let next = match self.first.take() {
                Some(first) => Ok(Some(Ok(first))),
                None => {
                    let upstream = tokio::time::timeout(self.idle_timeout, self.upstream.next());
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cut_now() => return Some(self.cut_by_shutdown()),
                        next = upstream => next,
                    }
                }
            };
            let chunk = match next {
                Err(_) => {
                    let secs = self.idle_timeout.as_secs_f64();
                    return Some(self.fail(
                        "stalled",
                        &format!("The upstream stream stalled: no data for {secs}s"),
                    ));
                }
                Ok(None) => {
                    return Some(self.fail(
                        "truncated",
                        "The upstream closed the stream before it was complete",
                    ))
                }
                Ok(Some(Err(_))) => {
                    return Some(self.fail("upstream_error", "The upstream stream failed"))
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            let events = match self.decoder.push(&chunk) {
                Ok(events) => events,
                Err(e) => return Some(self.fail("event_too_large", &e.to_string())),
            };
            if events.is_empty() {
                continue;
            }
            let mut out = BytesMut::new();
            for event in events {
                // Parsed at most once, on the first consumer's demand, for all of them.
                let mut json = EventJson::new(&event.data);
                if !self.usage.observe(&mut json) {
                    continue;
                }
                self.saw_finish = self.saw_finish || has_finish_reason(&event.data);
                if event.is_done() && !self.saw_finish {
                    out.extend_from_slice(&self.fail(
                        "truncated",
                        "The upstream ended the stream without a finish_reason",
                    ));
                    break;
                }
                self.forward(&event, json, &mut out);
                if self.finished {
                    break;
                }
            }
            return Some(out.freeze());
        }
    }

    /// Appends what the client gets for one upstream event: the raw event, or with the guard on,
    /// the event rewritten to the text the guard releases (and at a refusal, a final
    /// `content_filter` chunk and `[DONE]`).
    fn forward(&mut self, event: &SseEvent, mut json: EventJson<'_>, out: &mut BytesMut) {
        let Some((guard, reporter)) = self.guard.as_mut() else {
            out.extend_from_slice(&event.raw);
            if event.is_done() {
                self.finished = true;
                self.complete_fill();
            } else if let Some(fill) = self.fill.as_mut().filter(|f| f.wants_chunks()) {
                if let Some(chunk) = json.json() {
                    fill.observe_chunk(chunk);
                }
            }
            return;
        };
        let verdict = if event.is_done() {
            guard.on_done()
        } else if event.data.is_empty() {
            // A comment or an event without data: nothing a client shows, and nothing the
            // guard can vouch for either, so it is not forwarded.
            return;
        } else {
            Some(guard.on_event(json.take()))
        };
        match verdict {
            None => {}
            Some(StreamVerdict::Unscannable) => {
                let error = self.fail(
                    "unscannable",
                    "The backend's stream could not be scanned by the content guard",
                );
                out.extend_from_slice(&error);
                self.fill = None;
                return;
            }
            Some(StreamVerdict::Forward(chunk)) => {
                out.extend_from_slice(&encode_data(&chunk.to_string()));
                if let Some(fill) = self.fill.as_mut() {
                    fill.observe_chunk(&chunk);
                }
            }
            Some(StreamVerdict::Stop {
                final_chunk,
                refusal,
            }) => {
                out.extend_from_slice(&encode_data(&final_chunk));
                out.extend_from_slice(&done_event());
                reporter.refusal(Stage::Response, &refusal);
                self.fill = None;
                self.finished = true;
                return;
            }
        }
        if event.is_done() {
            reporter.findings(Stage::Response, guard.findings());
            // The marker alone: lines that came with it (comments, `id:`) were not scanned.
            out.extend_from_slice(&done_event());
            self.finished = true;
            self.complete_fill();
        }
    }

    /// The stream completed: its answer may be stored.
    fn complete_fill(&mut self) {
        if let Some(fill) = self.fill.take() {
            fill.complete();
        }
    }

    /// Ends the stream with an error event the OpenAI SDK raises on (code `upstream_{reason}`).
    fn fail(&mut self, reason: &str, message: &str) -> Bytes {
        self.end_with_error(reason, &format!("upstream_{reason}"), message)
    }

    /// The shutdown grace is over: the stream ends with an error event, no `[DONE]`, and its
    /// records say it was cut. Nothing is stored in the cache.
    fn cut_by_shutdown(&mut self) -> Bytes {
        self.usage.mark_cut_by_shutdown();
        self.fill = None;
        self.end_with_error(
            "shutdown",
            "gateway_shutdown",
            "The gateway is shutting down; the stream was cut before it ended",
        )
    }

    fn end_with_error(&mut self, reason: &str, code: &str, message: &str) -> Bytes {
        self.finished = true;
        self.metrics.stream_terminated(&self.gateway, reason);
        if let Some(suppressed) = STREAM_ERROR_LOG.admit() {
            tracing::warn!(gateway = %self.gateway, reason, suppressed_since_last = suppressed, "stream ended with an error event");
        }
        let body = ErrorBody {
            error: ErrorObject::new(message, "server_error", Some(code)),
        };
        let json = serde_json::to_string(&body).unwrap_or_default();
        encode_data(&json)
    }
}

impl Drop for Relay {
    /// A stream dropped unfinished after the shutdown cut (its connection was closed before
    /// the cut event could be sent) is still recorded as cut by shutdown.
    fn drop(&mut self) {
        if !self.finished && self.shutdown.is_cut() {
            self.usage.mark_cut_by_shutdown();
        }
    }
}

/// Whether a chunk's JSON text carries `"finish_reason"` with a string value (not `null`),
/// checked on the text so that unguarded streams need no JSON parsing.
fn has_finish_reason(data: &str) -> bool {
    string_values(data, "\"finish_reason\"").next().is_some()
}

#[cfg(test)]
mod tests {
    use super::has_finish_reason;

    #[test]
    fn finish_reason_is_found_in_either_json_style() {
        assert!(has_finish_reason(
            r#"{"choices":[{"finish_reason":"stop"}]}"#
        ));
        assert!(has_finish_reason(
            r#"{"choices": [{"finish_reason": "length"}]}"#
        ));
        assert!(!has_finish_reason(
            r#"{"choices":[{"finish_reason":null}]}"#
        ));
        assert!(!has_finish_reason(
            r#"{"choices": [{"finish_reason": null, "x": "finish_reason"}]}"#
        ));
        assert!(!has_finish_reason("[DONE]"));
    }
}
