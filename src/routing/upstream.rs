//! The HTTP client towards backends and the one attempt at one backend.
//! Whether to fail over is a property of the attempt's error ([`AttemptError::is_retriable`]).

use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use http::header::{ACCEPT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::encoding::{decoded_body, BodyDecoder};
use super::Backend;

/// Largest upstream error body read to build the client's error message.
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("answered HTTP {status}")]
    Status {
        status: u16,
        body: Bytes,
        /// The backend's `Retry-After`, when it sent one AirGate can read.
        retry_after: Option<Duration>,
    },
    /// A 3xx: AirGate follows no redirect (it only ever contacts configured backends), and
    /// passing one on without its `Location` would be meaningless to the client.
    #[error("answered a redirect (HTTP {0}), which is not followed")]
    Redirect(u16),
    #[error("response failed: {0}")]
    Body(String),
}

impl AttemptError {
    /// Connect errors, timeouts, broken bodies, 5xx and 429 move on to the next candidate.
    /// A redirect is the backend's (mis)configuration, the same for every retry: answered as a
    /// 502 at once, and counted against the backend's health so later requests go elsewhere.
    pub fn is_retriable(&self) -> bool {
        match self {
            AttemptError::Connect(_) | AttemptError::Timeout(_) | AttemptError::Body(_) => true,
            AttemptError::Status { status, .. } => *status >= 500 || *status == 429,
            AttemptError::Redirect(_) => false,
        }
    }

    /// Whether it counts against the backend's health: a 429 means busy, not broken.
    pub fn is_health_failure(&self) -> bool {
        match self {
            AttemptError::Status { status, .. } => *status >= 500,
            _ => true,
        }
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            AttemptError::Connect(_) => "connect_error",
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Status { status, .. } if *status == 429 => "rate_limited",
            AttemptError::Status { status, .. } if *status >= 500 => "server_error",
            AttemptError::Status { .. } => "client_error",
            AttemptError::Redirect(_) => "redirect",
            AttemptError::Body(_) => "body_error",
        }
    }
}

/// One pooled client for the backends that share a TLS configuration ([`super::tls`]). Proxies
/// from the environment are ignored: the gateway only ever contacts the backends declared in
/// config.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    client: reqwest::Client,
}

impl UpstreamClient {
    /// A client whose `https://` connections use `tls` (roots, client certificate, verifier,
    /// ALPN) as it is.
    pub fn with_tls(tls: tokio_rustls::rustls::ClientConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client })
    }

    /// The pooled client itself.
    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends one request; resolves when the response head arrived, within the backend's timeout.
    /// A non-2xx head is read (bounded) and returned as [`AttemptError::Status`]; a body in a
    /// coding AirGate cannot decode is an [`AttemptError::Body`].
    pub async fn send(
        &self,
        backend: &Backend,
        path: &str,
        body: Bytes,
        request_id: &str,
        trace: http::HeaderMap,
    ) -> Result<UpstreamAnswer, AttemptError> {
        // No reqwest-level timeout: it would also cut streams. The deadline covers the head only.
        let url = backend
            .parsed_url(path)
            .map_err(|e| AttemptError::Connect(format!("invalid backend URL: {e}")))?;
        let request = self
            .client
            .post(url)
            .headers(backend.headers.clone())
            .headers(trace)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT_ENCODING, HeaderValue::from_static("identity"))
            .header("x-request-id", request_id)
            .body(body);
        let response = tokio::time::timeout(backend.timeout, request.send())
            .await
            .map_err(|_| AttemptError::Timeout(backend.timeout))?
            .map_err(|e| classify(e, backend.timeout))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(AttemptError::Redirect(status.as_u16()));
        }
        let decoder = BodyDecoder::for_headers(response.headers())
            .map_err(|e| AttemptError::Body(e.to_string()))?;
        let headers = response.headers().clone();
        let body = decoded_body(response, decoder);
        if status.is_success() {
            return Ok(UpstreamAnswer {
                status,
                content_type: headers.get(CONTENT_TYPE).cloned(),
                body,
            });
        }
        Err(AttemptError::Status {
            status: status.as_u16(),
            body: read_bounded(body, MAX_ERROR_BODY, backend.timeout).await,
            retry_after: retry_after(&headers),
        })
    }

    /// GET used by the active health probe.
    pub async fn probe(&self, url: &str, timeout: Duration) -> Result<u16, AttemptError> {
        let response = self
            .client
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| classify(e, timeout))?;
        Ok(response.status().as_u16())
    }
}

fn classify(error: reqwest::Error, timeout: Duration) -> AttemptError {
    if error.is_timeout() {
        AttemptError::Timeout(timeout)
    } else if error.is_connect() {
        AttemptError::Connect(root_cause(&error))
    } else {
        AttemptError::Body(root_cause(&error))
    }
}

/// The innermost error text ("connection refused"), without the URL reqwest prefixes.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// A backend's 2xx answer: its head, and its body decoded as chunks arrive.
pub struct UpstreamAnswer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: BoxStream<'static, Result<Bytes, String>>,
}

/// Longest `Retry-After` passed on to clients: a backend asking for more is still asked again
/// within this bound.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// `Retry-After` in seconds or as an HTTP date, clamped to 1 s ..= [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.clamp(Duration::from_secs(1), MAX_RETRY_AFTER))
}

/// Reads at most `limit` bytes of a body, giving up after `timeout`; errors yield what was read.
async fn read_bounded(
    mut body: BoxStream<'static, Result<Bytes, String>>,
    limit: usize,
    timeout: Duration,
) -> Bytes {
    let mut out = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = body.next().await {
            let room = limit.saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() >= limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    Bytes::from(out)
}
