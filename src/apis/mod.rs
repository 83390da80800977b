//! General REST APIs from `API` resources, on the same engine as the AI routes: JWT
//! authentication, rate limits (per IP, user or header value), access rules in Traefik's rule
//! language, CORS, metrics and audit, then a plain streaming reverse proxy to the service.
//!
//! Each API answers at `/apis/{namespace}/{name}/...` and, when `spec.pathPrefix` is set, at that
//! prefix too; the prefix is stripped before the request goes to the service. An API with an
//! `openApiSpec` checks each admitted request against it first ([`openapi`]).

pub mod cors;
pub mod openapi;
pub mod proxy;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, StatusCode};

use crate::access::admission::{Admission, AdmissionContext, Caller, Limited};
use crate::access::rules::Rule;
use crate::access::settings::load_verifier;
use crate::access::{Check, JwtVerifier, Limit, LimitKey, RateLimiter};
use crate::body::BodyBudget;
use crate::config::{Api, RateLimitStrategy};
use crate::error::ApiError;
use crate::telemetry::access_log::AccessRecord;
use crate::telemetry::audit::{AuditEvent, AuditLog};
use crate::telemetry::outcome::{MetricLabels, Outcome};
use crate::telemetry::Metrics;
use cors::{Cors, CorsVerdict};
use openapi::OpenApiPolicy;

/// Default time for the service's response head.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The metric label of every `API` route, and the label of its rate limit.
const API_ROUTE: &str = "api";
/// Largest request body proxied to a service.
const MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Time allowed to receive a body that is read whole to be validated (as `bodyReadTimeout`'s
/// default for AI requests).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One compiled `API` resource.
#[derive(Debug)]
pub struct ApiRoute {
    /// `namespace/name`.
    pub id: String,
    /// Prefixes it answers at, without a trailing slash.
    pub prefixes: Vec<String>,
    /// Service base URL.
    pub upstream: String,
    pub timeout: Duration,
    pub verifier: Option<Arc<JwtVerifier>>,
    pub rate_limit: Option<(Limit, RateLimitStrategy)>,
    pub cors: Option<Cors>,
    pub policies: Vec<(String, Rule)>,
    /// `openApiSpec`, unless absent or `validation: off`.
    pub openapi: Option<OpenApiPolicy>,
}

impl ApiRoute {
    pub fn try_new(api: &Api, secrets_dir: &Path) -> Result<Self, String> {
        let namespace = api.metadata.namespace();
        let spec = &api.spec;
        let mut prefixes = vec![format!("/apis/{namespace}/{}", api.metadata.name)];
        prefixes.extend(spec.path_prefix.clone());
        let upstream = match (&spec.service.url, spec.service.port.number) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(port)) => {
                let service_ns = spec.service.namespace.as_deref().unwrap_or(namespace);
                format!("http://{}.{service_ns}.svc:{port}", spec.service.name)
            }
            (None, None) => return Err("spec.service: give port.number or url".into()),
        };
        let verifier = load_verifier(spec.authentication.as_ref(), secrets_dir)
            .map_err(|e| format!("spec.authentication.jwt: {e}"))?;
        let rate_limit = match &spec.rate_limit {
            Some(rl) => {
                let strategy = RateLimitStrategy::parse(&rl.strategy)
                    .ok_or_else(|| format!("spec.rateLimit.strategy: {:?}", rl.strategy))?;
                Some((Limit::new(rl.limit, rl.period.0), strategy))
            }
            None => None,
        };
        let policies = spec
            .access_control
            .iter()
            .flat_map(|a| a.policies.iter())
            .map(|p| {
                Rule::parse(&p.rule)
                    .map(|rule| (p.name.clone(), rule))
                    .map_err(|e| format!("spec.accessControl policy {}: {e}", p.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            id: api.id(),
            prefixes,
            upstream,
            timeout: spec.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            verifier,
            rate_limit,
            cors: spec.cors.clone().map(Cors::new),
            policies,
            openapi: None,
        })
    }

    /// The route checking requests against its `openApiSpec` as `policy` says.
    pub fn with_openapi(mut self, policy: Option<OpenApiPolicy>) -> Self {
        self.openapi = policy;
        self
    }

    /// The rest of the path after the prefix this route answers at, if it matches.
    fn strip<'a>(&self, path: &'a str) -> Option<(usize, &'a str)> {
        self.prefixes.iter().find_map(|prefix| {
            let rest = path.strip_prefix(prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((prefix.len(), rest))
        })
    }
}

impl ApiRoute {
    /// What this API asks of its callers ([`Admission`]).
    fn admission(&self) -> Admission<'_> {
        Admission {
            verifier: self.verifier.as_deref(),
            policies: &self.policies,
        }
    }

    /// The API's one rate limit, keyed by its strategy: the client address, the user (the JWT's,
    /// else the mTLS client's subject; the address without one), or a header's value.
    fn rate_limit(
        &self,
        caller: &Caller,
        client_ip: IpAddr,
        request: &http::request::Parts,
    ) -> Option<Limited> {
        let (limit, strategy) = self.rate_limit.as_ref()?;
        let key = match strategy {
            RateLimitStrategy::Ip => LimitKey::Ip(client_ip).render(&self.id),
            RateLimitStrategy::User => caller.limit_key(client_ip).render(&self.id),
            RateLimitStrategy::Header(name) => {
                let value = request
                    .headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                LimitKey::Header { name, value }.render(&self.id)
            }
        };
        Some(Limited {
            label: API_ROUTE,
            check: Check::requests(key, *limit, 1),
        })
    }
}

/// Finds the API whose prefix is the longest match for `path`.
pub fn find<'a>(routes: &'a [Arc<ApiRoute>], path: &str) -> Option<(&'a Arc<ApiRoute>, String)> {
    routes
        .iter()
        .filter_map(|route| route.strip(path).map(|(len, rest)| (len, route, rest)))
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, route, rest)| {
            (
                route,
                if rest.is_empty() {
                    "/".to_string()
                } else {
                    rest.to_string()
                },
            )
        })
}

/// What admission decided for one API request.
struct Admitted {
    /// The verified user, when there is one.
    user: Option<String>,
    cors_headers: Option<http::HeaderMap>,
    rate_headers: Vec<(http::HeaderName, HeaderValue)>,
}

/// What serving an `API` request needs from the process: the records admission writes, the
/// limiter and the client towards services. Not the whole server state: `apis` does not depend
/// on `server`. The request's own records are written by the records layer, from the
/// [`Outcome`] put on the response.
#[derive(Clone, Copy)]
pub struct ApiContext<'a> {
    pub metrics: &'a Metrics,
    pub audit: &'a AuditLog,
    pub limiter: &'a RateLimiter,
    /// The snapshot's client towards `API` services.
    pub client: &'a reqwest::Client,
    /// The process-wide budget of buffered request bodies (a validated body is read whole).
    pub body_budget: &'a BodyBudget,
}

/// Serves one request to an API route, stage by stage.
pub async fn handle(
    ctx: ApiContext<'_>,
    route: &Arc<ApiRoute>,
    rest: String,
    request_id: &str,
    client_ip: IpAddr,
    request: Request<Body>,
) -> Response {
    let (parts, body) = request.into_parts();
    let served = format!("{} {}", parts.method, parts.uri.path());
    let mut user = None;
    let mut response = match admit(ctx, route, request_id, client_ip, &parts).await {
        Ok(Err(early)) => early,
        Err(error) => error.into_response(),
        Ok(Ok(admitted)) => {
            user = admitted.user;
            let asker = openapi::Asker {
                request_id,
                client_ip,
                user: user.as_deref(),
            };
            let checked = match &route.openapi {
                None => Ok(openapi::Checked::unread(body)),
                Some(policy) => {
                    openapi::check(ctx, route, policy, &parts, &rest, body, asker).await
                }
            };
            let mut response = match checked {
                Err(error) => error.into_response(),
                Ok(checked) => {
                    let exchange = proxy::Exchange {
                        rest: &rest,
                        request_id,
                        client_ip,
                    };
                    // the body's share of the memory budget is held until it is sent
                    let _reservation = checked.reservation;
                    proxy::forward(ctx, route, exchange, parts, checked.body).await
                }
            };
            let headers = response.headers_mut();
            for (name, value) in admitted.cors_headers.into_iter().flatten() {
                if let Some(name) = name {
                    headers.insert(name, value);
                }
            }
            for (name, value) in admitted.rate_headers {
                headers.entry(name).or_insert(value);
            }
            response
        }
    };
    let status = response.status().as_u16();
    let mut outcome = outcome(route, user.clone());
    if (200..300).contains(&status) {
        let mut event = AuditEvent::new("request_served", request_id, &route.id, "served", served)
            .detail("backend", route.id.clone())
            .detail("status", status);
        event.user = user;
        event.source_ip = Some(client_ip.to_string());
        outcome.audit.push(event);
    }
    response.extensions_mut().insert(outcome);
    response
}

/// What the records layer writes for an API request: the API is both the gateway and the
/// backend of its line and metrics.
fn outcome(route: &ApiRoute, user: Option<String>) -> Outcome {
    Outcome {
        record: AccessRecord {
            gateway: route.id.clone(),
            backend: route.id.clone(),
            user,
            ..AccessRecord::default()
        },
        metrics: Some(MetricLabels {
            gateway: route.id.clone(),
            route: API_ROUTE,
            model: String::new(),
            latency: true,
        }),
        ..Outcome::default()
    }
}

/// CORS, then the one admission every route passes ([`Admission`]): authentication, the rate
/// limit and access rules. `Ok(Err(response))` is an answer the gateway gives itself (a
/// preflight).
async fn admit(
    ctx: ApiContext<'_>,
    route: &ApiRoute,
    request_id: &str,
    client_ip: IpAddr,
    request: &http::request::Parts,
) -> Result<Result<Admitted, Response>, ApiError> {
    let mut cors_headers = None;
    if let Some(cors) = &route.cors {
        match cors.verdict(&request.method, &request.headers) {
            CorsVerdict::Preflight(Some(headers)) => {
                let mut response = StatusCode::NO_CONTENT.into_response();
                response.headers_mut().extend(headers);
                return Ok(Err(response));
            }
            CorsVerdict::Preflight(None) => {
                return Err(ApiError::PermissionDenied("CORS preflight refused".into()));
            }
            CorsVerdict::Allowed(headers) => cors_headers = Some(headers),
            CorsVerdict::Denied | CorsVerdict::NotCors => {}
        }
    }
    let admission_ctx = AdmissionContext {
        scope: &route.id,
        route: API_ROUTE,
        request_id,
        client_ip,
        limiter: ctx.limiter,
        metrics: ctx.metrics,
        audit: ctx.audit,
    };
    let admission = route.admission();
    let mut caller = admission.authenticate(&admission_ctx, request)?;
    let limits = route
        .rate_limit(&caller, client_ip, request)
        .into_iter()
        .collect();
    admission.limit(&admission_ctx, &mut caller, limits).await?;
    admission.authorize(&admission_ctx, &caller, request)?;
    Ok(Ok(Admitted {
        user: caller.user,
        cors_headers,
        rate_headers: caller.rate_headers,
    }))
}

/// Most bytes of a request body the proxy accepts.
pub fn max_body_bytes() -> u64 {
    MAX_BODY_BYTES
}
