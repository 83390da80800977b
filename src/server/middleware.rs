//! The outermost layer of every public route: the request id, the client's address,
//! request-smuggling defences, and the request's records, written once when the route has
//! answered ([`crate::telemetry::outcome`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::HeaderValue;

use super::framing::Taint;
use super::AppState;
use crate::access::client_ip_from_headers;
use crate::error::ApiError;
use crate::gateway::runtime::Snapshot;
use crate::telemetry::outcome::{self, Outcome, RequestFacts, Sinks};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 128;

/// The request's id: the client's `x-request-id` when it is sane, else a new UUID.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The client's address: the socket peer, or `X-Forwarded-For` from a trusted proxy.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The configuration snapshot a request started on: it is routed on the snapshot its answer
/// is counted on, whatever a reload swaps in meanwhile (a reload is judged, and rolled back, by
/// the answers of the requests it served).
#[derive(Clone)]
pub struct RequestSnapshot(pub Arc<Snapshot>);

pub async fn request_context(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let client_ip = client_ip_of(&state, &request);
    let snapshot = state.snapshot.load_full();
    let answers = Arc::clone(&snapshot.answers);
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    // the access log's header rules read the request's headers after the route took them
    let headers = state
        .access_log
        .is_enabled()
        .then(|| request.headers().clone());
    let mut response = match smuggling_check(&request).or_else(|| ambiguous_credentials(&request)) {
        Some(rejection) => rejection,
        None => {
            let extensions = request.extensions_mut();
            extensions.insert(RequestId(id.clone()));
            extensions.insert(ClientIp(client_ip));
            extensions.insert(RequestSnapshot(snapshot));
            next.run(request).await
        }
    };
    let facts = RequestFacts {
        request_id: &id,
        method: &method,
        path: &path,
        client_ip,
        headers,
        started,
    };
    let sinks = Sinks {
        metrics: &state.metrics,
        audit: &state.audit,
        access_log: &state.access_log,
    };
    let status = response.status().as_u16();
    answers.record(status);
    outcome::finish(
        sinks,
        facts,
        status,
        response.extensions_mut().remove::<Outcome>(),
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The client's address: the socket peer, or `X-Forwarded-For` from a trusted proxy.
fn client_ip_of(state: &AppState, request: &Request) -> IpAddr {
    let peer = super::listener::peer_of(request).map_or(IpAddr::from([127, 0, 0, 1]), |p| p.ip());
    client_ip_from_headers(peer, request.headers(), &state.trusted_proxies)
}

fn is_sane_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A request whose framing two parsers could read differently is refused and its connection
/// closed: the connection inspector ([`super::framing`]) saw it below hyper, or both headers are
/// still here.
fn smuggling_check(request: &Request<Body>) -> Option<Response> {
    let headers = request.headers();
    let lengths = headers.get_all(CONTENT_LENGTH).iter().count();
    let has_te = headers.contains_key(TRANSFER_ENCODING);
    let tainted = request
        .extensions()
        .get::<Taint>()
        .is_some_and(Taint::is_set);
    if tainted || (has_te && lengths > 0) || lengths > 1 {
        let mut response = ApiError::invalid(
            "Ambiguous request framing (Content-Length with Transfer-Encoding)",
            None,
        )
        .into_response();
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return Some(response);
    }
    None
}

/// Two `Authorization` headers: which one counts depends on who reads them (AirGate's JWT check
/// read the first, a service behind an `API` route may read the last), so neither is trusted.
fn ambiguous_credentials(request: &Request<Body>) -> Option<Response> {
    request.headers().get_all(AUTHORIZATION).iter().nth(1)?;
    Some(
        ApiError::invalid(
            "The request carries more than one Authorization header",
            None,
        )
        .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sanitised() {
        assert!(is_sane_id("abc-123_x.y:z"));
        assert!(!is_sane_id(""));
        assert!(!is_sane_id("a b"));
        assert!(!is_sane_id("<script>"));
        assert!(!is_sane_id(&"a".repeat(200)));
    }
}
