//! The reverse proxy of `API` routes: streams the request to the service and the answer back,
//! without the hop-by-hop headers, with `X-Forwarded-*` and `x-request-id` added.

use std::net::IpAddr;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use http::header::{CONNECTION, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Limited};

use super::{max_body_bytes, ApiRoute};
use crate::error::ApiError;
use crate::telemetry::log_rate::LogRate;

/// Lines per second about services that failed (a client decides how often it asks).
static PROXY_LOG: LogRate = LogRate::new(5);
use super::ApiContext;

/// Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The request body as the proxy gets it.
pub enum Payload {
    /// Not read yet: streamed to the service as it arrives, within the API body limit.
    Streamed(Body),
    /// Read whole already (to be validated): sent as one buffer of known length.
    Read(bytes::Bytes),
}

/// Who asked for what, besides the request itself.
pub struct Exchange<'a> {
    /// The path after the API's prefix.
    pub rest: &'a str,
    pub request_id: &'a str,
    pub client_ip: IpAddr,
}

pub async fn forward(
    ctx: ApiContext<'_>,
    route: &ApiRoute,
    exchange: Exchange<'_>,
    parts: http::request::Parts,
    body: Payload,
) -> Response {
    let Exchange {
        rest,
        request_id,
        client_ip,
    } = exchange;
    let mut url = format!("{}{rest}", route.upstream);
    if let Some(query) = parts.uri.query() {
        url.push('?');
        url.push_str(query);
    }
    let mut headers = strip_hop_by_hop(&parts.headers);
    headers.remove(HOST);
    add_forwarded(&mut headers, &parts.headers, client_ip, request_id);
    let body = match body {
        Payload::Streamed(body) => {
            let limit = usize::try_from(max_body_bytes()).unwrap_or(usize::MAX);
            reqwest::Body::wrap_stream(Limited::new(body, limit).into_data_stream())
        }
        Payload::Read(bytes) => reqwest::Body::from(bytes),
    };
    let client = ctx.client.clone();
    let send = client
        .request(parts.method, &url)
        .headers(headers)
        .body(body)
        .send();
    let upstream = match tokio::time::timeout(route.timeout, send).await {
        Err(_) => {
            return ApiError::GatewayTimeout {
                message: "The service did not answer in time".into(),
                code: "upstream_timeout",
            }
            .into_response()
        }
        Ok(Err(error)) if error.is_body() || error.is_request() && is_too_large(&error) => {
            return ApiError::PayloadTooLarge {
                limit: max_body_bytes(),
            }
            .into_response()
        }
        Ok(Err(error)) => {
            if let Some(suppressed) = PROXY_LOG.admit() {
                tracing::warn!(api = %route.id, error = %error, suppressed_since_last = suppressed, "API service unreachable");
            }
            return ApiError::BadGateway {
                message: "The service could not be reached".into(),
                code: "upstream_unreachable",
            }
            .into_response();
        }
        Ok(Ok(upstream)) => upstream,
    };
    let status = upstream.status();
    if status.is_informational() {
        // The client's `Upgrade` was not forwarded, so a 101 (or any 1xx as a final answer)
        // would switch the client's connection to a protocol nobody negotiated.
        if let Some(suppressed) = PROXY_LOG.admit() {
            tracing::warn!(api = %route.id, status = status.as_u16(), suppressed_since_last = suppressed, "API service answered 1xx");
        }
        return ApiError::BadGateway {
            message: "The service answered with an informational status".into(),
            code: "upstream_protocol_error",
        }
        .into_response();
    }
    let response_headers = strip_hop_by_hop(upstream.headers());
    let stream = upstream.bytes_stream().map_err(std::io::Error::other);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

fn is_too_large(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if inner.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = inner.source();
    }
    false
}

/// A copy without hop-by-hop headers, nor those the `Connection` header names.
fn strip_hop_by_hop(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let lower = name.as_str();
        if HOP_BY_HOP.contains(&lower) || named.iter().any(|n| n == lower) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.remove(TRANSFER_ENCODING);
    out.remove(UPGRADE);
    out
}

fn add_forwarded(
    headers: &mut HeaderMap,
    original: &HeaderMap,
    client_ip: IpAddr,
    request_id: &str,
) {
    let forwarded_for = match original
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(chain) => format!("{chain}, {client_ip}"),
        None => client_ip.to_string(),
    };
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("x-forwarded-for", &forwarded_for);
    set("x-forwarded-proto", "http");
    if let Some(host) = original.get(HOST).and_then(|h| h.to_str().ok()) {
        set("x-forwarded-host", host);
    }
    set("x-request-id", request_id);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        let out = strip_hop_by_hop(&h);
        assert!(out.get("x-secret-hop").is_none());
        assert!(out.get("keep-alive").is_none());
        assert!(out.get("connection").is_none());
        assert_eq!(out["authorization"], "Bearer t");
    }
}
