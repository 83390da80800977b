//! Middleware shared by every public route: the request id and request-smuggling defences.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::HeaderValue;

use super::framing::Taint;
use crate::error::ApiError;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 128;

/// The request's id: the client's `x-request-id` when it is sane, else a new UUID.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn request_context(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut response = match smuggling_check(&request).or_else(|| ambiguous_credentials(&request)) {
        Some(rejection) => rejection,
        None => {
            request.extensions_mut().insert(RequestId(id.clone()));
            next.run(request).await
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
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
