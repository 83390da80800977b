//! CORS for `API` routes: preflights are answered by the gateway; actual requests from an allowed
//! origin get the `Access-Control-Allow-*` headers on the way back.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method};

use crate::config::CorsSpec;

#[derive(Debug, Clone)]
pub struct Cors {
    spec: CorsSpec,
}

/// What CORS says about one request.
#[derive(Debug, PartialEq)]
pub enum CorsVerdict {
    /// Not a cross-origin request, or no CORS configured: nothing to add.
    NotCors,
    /// A preflight the gateway answers itself (204 with these headers, or 403 when empty).
    Preflight(Option<HeaderMap>),
    /// An allowed cross-origin request: add these headers to the answer.
    Allowed(HeaderMap),
    /// A cross-origin request from an origin not on the list: answered without CORS headers,
    /// so the browser withholds it.
    Denied,
}

impl Cors {
    pub fn new(spec: CorsSpec) -> Self {
        Self { spec }
    }

    pub fn verdict(&self, method: &Method, headers: &HeaderMap) -> CorsVerdict {
        let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else {
            return CorsVerdict::NotCors;
        };
        let allowed_origin = self.origin_allowed(origin);
        let preflight =
            method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            let requested = headers
                .get(ACCESS_CONTROL_REQUEST_METHOD)
                .and_then(|m| m.to_str().ok())
                .unwrap_or("");
            if !allowed_origin || !self.method_allowed(requested) {
                return CorsVerdict::Preflight(None);
            }
            let mut out = self.common(origin);
            insert_list(
                &mut out,
                ACCESS_CONTROL_ALLOW_METHODS,
                &self.spec.allow_methods,
            );
            insert_list(
                &mut out,
                ACCESS_CONTROL_ALLOW_HEADERS,
                &self.spec.allow_headers,
            );
            if let Some(max_age) = self.spec.max_age {
                out.insert(
                    ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from(max_age.0.as_secs()),
                );
            }
            return CorsVerdict::Preflight(Some(out));
        }
        if !allowed_origin {
            return CorsVerdict::Denied;
        }
        let mut out = self.common(origin);
        insert_list(
            &mut out,
            ACCESS_CONTROL_EXPOSE_HEADERS,
            &self.spec.expose_headers,
        );
        CorsVerdict::Allowed(out)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.spec
            .allow_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    fn method_allowed(&self, method: &str) -> bool {
        self.spec.allow_methods.is_empty()
            || self
                .spec
                .allow_methods
                .iter()
                .any(|m| m == "*" || m.eq_ignore_ascii_case(method))
    }

    fn common(&self, origin: &str) -> HeaderMap {
        let mut out = HeaderMap::new();
        let wildcard =
            self.spec.allow_origins.iter().any(|o| o == "*") && !self.spec.allow_credentials;
        let value = if wildcard { "*" } else { origin };
        if let Ok(value) = HeaderValue::from_str(value) {
            out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        if !wildcard {
            out.insert(VARY, HeaderValue::from_static("Origin"));
        }
        if self.spec.allow_credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        out
    }
}

fn insert_list(headers: &mut HeaderMap, name: http::HeaderName, items: &[String]) {
    if items.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&items.join(", ")) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn seed_cors() -> Cors {
        let spec: CorsSpec = serde_yaml_ng::from_str(
            "allowOrigins: [\"https://app.internal.company.local\"]\nallowMethods: [GET, POST]\nallowHeaders: [Authorization, Content-Type]\n",
        )
        .unwrap();
        Cors::new(spec)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn preflight_from_the_allowed_origin_lists_methods_and_headers() {
        let v = seed_cors().verdict(
            &Method::OPTIONS,
            &headers(&[
                ("origin", "https://app.internal.company.local"),
                ("access-control-request-method", "POST"),
            ]),
        );
        let CorsVerdict::Preflight(Some(h)) = v else {
            unreachable!("{v:?}")
        };
        assert_eq!(
            h[ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.internal.company.local"
        );
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(
            h[ACCESS_CONTROL_ALLOW_HEADERS],
            "Authorization, Content-Type"
        );
    }

    #[test]
    fn other_origins_and_methods_are_refused() {
        let cors = seed_cors();
        let evil = headers(&[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ]);
        assert_eq!(
            cors.verdict(&Method::OPTIONS, &evil),
            CorsVerdict::Preflight(None)
        );
        let delete = headers(&[
            ("origin", "https://app.internal.company.local"),
            ("access-control-request-method", "DELETE"),
        ]);
        assert_eq!(
            cors.verdict(&Method::OPTIONS, &delete),
            CorsVerdict::Preflight(None)
        );
        assert_eq!(
            cors.verdict(
                &Method::GET,
                &headers(&[("origin", "https://evil.example")])
            ),
            CorsVerdict::Denied
        );
        assert_eq!(
            cors.verdict(&Method::GET, &HeaderMap::new()),
            CorsVerdict::NotCors
        );
    }
}
