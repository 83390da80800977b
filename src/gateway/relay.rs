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

use crate::openai::sse::{encode_data, SseDecoder};
use crate::openai::{ErrorBody, ErrorObject};
use crate::routing::InFlight;
use crate::telemetry::Metrics;

/// Largest single upstream SSE event accepted.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

pub struct Relay {
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    first: Option<Bytes>,
    decoder: SseDecoder,
    idle_timeout: Duration,
    finished: bool,
    gateway: String,
    metrics: Arc<Metrics>,
    _in_flight: InFlight,
}

impl Relay {
    pub fn new(
        first: Bytes,
        upstream: BoxStream<'static, reqwest::Result<Bytes>>,
        idle_timeout: Duration,
        gateway: String,
        metrics: Arc<Metrics>,
        in_flight: InFlight,
    ) -> Self {
        Self {
            upstream,
            first: Some(first),
            decoder: SseDecoder::new(MAX_EVENT_BYTES),
            idle_timeout,
            finished: false,
            gateway,
            metrics,
            _in_flight: in_flight,
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
            let chunk = match self.first.take() {
                Some(first) => first,
                None => match tokio::time::timeout(self.idle_timeout, self.upstream.next()).await {
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
                },
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
                out.extend_from_slice(&event.raw);
                if event.is_done() {
                    self.finished = true;
                    break;
                }
            }
            return Some(out.freeze());
        }
    }

    /// Ends the stream with an error event the OpenAI SDK raises on.
    fn fail(&mut self, reason: &str, message: &str) -> Bytes {
        self.finished = true;
        self.metrics.stream_terminated(&self.gateway, reason);
        tracing::warn!(gateway = %self.gateway, reason, "stream ended with an error event");
        let body = ErrorBody {
            error: ErrorObject::new(message, "server_error", Some(&format!("upstream_{reason}"))),
        };
        let json = serde_json::to_string(&body).unwrap_or_default();
        encode_data(&json)
    }
}
