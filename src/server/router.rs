//! The route table. The default gateway answers at `/v1/...`; every gateway also answers at
//! `/gateways/{namespace}/{name}/v1/...`. Anything else is a 404 in OpenAI's error shape.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::middleware::{request_context, ClientIp, RequestId, RequestSnapshot};
use super::AppState;
use crate::apis;
use crate::error::ApiError;
use crate::gateway::pipeline::{self, RequestContext};
use crate::gateway::{models, Endpoint, Gateway, Snapshot};

const NAMED_PREFIX: &str = "/gateways/{namespace}/{name}";

pub fn public_router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/v1/models", get(list_models_default))
        .route(&format!("{NAMED_PREFIX}/v1/models"), get(list_models_named));
    for endpoint in [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
    ] {
        router = router
            .route(
                endpoint.path(),
                post(
                    move |State(state): State<Arc<AppState>>,
                          Extension(RequestSnapshot(snapshot)): Extension<RequestSnapshot>,
                          Extension(id): Extension<RequestId>,
                          Extension(ip): Extension<ClientIp>,
                          request: Request| async move {
                        let gateway = default_gateway(&snapshot)?;
                        Ok::<_, ApiError>(
                            serve_ai(&state, &gateway, (&id, ip), endpoint, request).await,
                        )
                    },
                ),
            )
            .route(
                &format!("{NAMED_PREFIX}{}", endpoint.path()),
                post(
                    move |State(state): State<Arc<AppState>>,
                          Path((namespace, name)): Path<(String, String)>,
                          Extension(RequestSnapshot(snapshot)): Extension<RequestSnapshot>,
                          Extension(id): Extension<RequestId>,
                          Extension(ip): Extension<ClientIp>,
                          request: Request| async move {
                        let gateway = named_gateway(&snapshot, &namespace, &name)?;
                        Ok::<_, ApiError>(
                            serve_ai(&state, &gateway, (&id, ip), endpoint, request).await,
                        )
                    },
                ),
            );
    }
    router
        .fallback(api_or_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            request_context,
        ))
        .with_state(state)
}

async fn serve_ai(
    state: &Arc<AppState>,
    gateway: &Arc<Gateway>,
    (id, ClientIp(client_ip)): (&RequestId, ClientIp),
    endpoint: Endpoint,
    request: Request,
) -> Response {
    let ctx = RequestContext {
        gateway,
        metrics: &state.metrics,
        audit: &state.audit,
        limiter: &state.limiter,
        request_id: &id.0,
        client_ip,
        approved: false,
        user: None,
        sampled: false,
        shutdown: &state.shutdown,
        body_budget: &state.body_budget,
    };
    pipeline::handle(ctx, endpoint, request).await
}

fn default_gateway(snapshot: &Snapshot) -> Result<Arc<Gateway>, ApiError> {
    snapshot.default.clone().ok_or_else(|| {
        ApiError::RouteNotFound {
            method: "POST".into(),
            path: "/v1 (no default AIGateway: use /gateways/{namespace}/{name}/v1 or annotate one with airgate.io/default: \"true\")".into(),
        }
    })
}

fn named_gateway(
    snapshot: &Snapshot,
    namespace: &str,
    name: &str,
) -> Result<Arc<Gateway>, ApiError> {
    snapshot
        .gateway(namespace, name)
        .ok_or_else(|| ApiError::RouteNotFound {
            method: "POST".into(),
            path: format!("/gateways/{namespace}/{name} (no such AIGateway)"),
        })
}

async fn list_models_default(
    Extension(RequestSnapshot(snapshot)): Extension<RequestSnapshot>,
) -> Result<Response, ApiError> {
    let gateway = default_gateway(&snapshot)?;
    Ok(Json(models::list(&gateway)).into_response())
}

async fn list_models_named(
    Extension(RequestSnapshot(snapshot)): Extension<RequestSnapshot>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let gateway = named_gateway(&snapshot, &namespace, &name)?;
    Ok(Json(models::list(&gateway)).into_response())
}

/// Anything that is not an AI route: an `API` route when a prefix matches, else 404 (logged by
/// the records layer all the same: scanners and misconfigured clients show up in the access
/// log).
async fn api_or_not_found(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<RequestId>,
    Extension(ClientIp(client_ip)): Extension<ClientIp>,
    Extension(RequestSnapshot(snapshot)): Extension<RequestSnapshot>,
    request: Request,
) -> Response {
    let found =
        apis::find(&snapshot.apis, request.uri().path()).map(|(r, rest)| (Arc::clone(r), rest));
    let client = snapshot.api_client.clone();
    let Some((route, rest)) = found else {
        return ApiError::RouteNotFound {
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
        }
        .into_response();
    };
    let ctx = apis::ApiContext {
        audit: &state.audit,
        limiter: &state.limiter,
        metrics: &state.metrics,
        client: &client,
        body_budget: &state.body_budget,
    };
    apis::handle(ctx, &route, rest, &id.0, client_ip, request).await
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
        allow: None,
    }
    .into_response()
}

/// The admin listener: metrics and probes, never exposed with the public routes.
pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<Arc<AppState>>| async move {
                state.metrics.sync_process(state.process_counts());
                let snapshot = state.snapshot.load();
                // cache sizes change after the request that stored the answer: read them now
                for gateway in snapshot.gateways() {
                    if let Some(policy) = &gateway.cache {
                        state
                            .metrics
                            .cache_stats(&gateway.id, &policy.cache.stats());
                    }
                }
                // what a reload removed no longer reports a state (a probe of the old
                // configuration may still write one after the swap: pruned at each scrape)
                state.metrics.retain_gauges(
                    |id, backend| {
                        snapshot
                            .gateway_by_id(id)
                            .is_some_and(|g| g.backends.iter().any(|b| b.name == backend))
                    },
                    |id| {
                        snapshot
                            .gateway_by_id(id)
                            .is_some_and(|g| g.cache.is_some())
                    },
                );
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    state.metrics.render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(state): State<Arc<AppState>>| async move {
                if state.shutdown.is_draining() {
                    (http::StatusCode::SERVICE_UNAVAILABLE, "shutting down")
                } else if state.is_ready() {
                    (http::StatusCode::OK, "ready")
                } else {
                    (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "no configuration loaded",
                    )
                }
            }),
        )
        .with_state(state)
}
