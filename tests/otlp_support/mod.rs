//! In-test OTLP receivers (HTTP/protobuf via axum, gRPC via tonic) collecting exported spans.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One exported span plus the `service.name` of its resource.
#[derive(Debug, Clone)]
pub struct Received {
    pub span: Span,
    pub service_name: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    pub requests: Arc<Mutex<usize>>,
    pub json_requests: Arc<Mutex<usize>>,
    /// `x-collector-token` header / metadata of the last export.
    pub token: Arc<Mutex<Option<String>>>,
}

impl Collector {
    fn ingest(&self, request: ExportTraceServiceRequest) {
        *self.requests.lock().unwrap() += 1;
        let mut spans = self.spans.lock().unwrap();
        for rs in request.resource_spans {
            let service_name = rs.resource.as_ref().and_then(|r| {
                r.attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
            });
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Received {
                        span,
                        service_name: service_name.clone(),
                    });
                }
            }
        }
    }

    pub fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.spans.lock().unwrap().len()
    }

    /// Waits until at least `n` spans arrived (or the timeout passed); returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        while self.count() < n && start.elapsed() < timeout {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.spans()
    }
}

/// OTLP/HTTP protobuf receiver on 127.0.0.1:0; returns its base URL.
pub async fn http_receiver() -> (String, Collector) {
    let collector = Collector::default();
    let state = collector.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                *state.token.lock().unwrap() = headers
                    .get("x-collector-token")
                    .map(|v| v.to_str().unwrap().to_owned());
                let json = headers
                    .get("content-type")
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                let request = if json {
                    *state.json_requests.lock().unwrap() += 1;
                    serde_json::from_slice::<ExportTraceServiceRequest>(&body).unwrap()
                } else {
                    ExportTraceServiceRequest::decode(body).unwrap()
                };
                state.ingest(request);
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), collector)
}

struct GrpcService(Collector);

#[tonic::async_trait]
impl TraceService for GrpcService {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        *self.0.token.lock().unwrap() = request
            .metadata()
            .get("x-collector-token")
            .map(|v| v.to_str().unwrap().to_owned());
        self.0.ingest(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// OTLP/gRPC receiver on 127.0.0.1:0; returns its URL.
pub async fn grpc_receiver() -> (String, Collector) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(GrpcService(collector.clone()));
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    (format!("http://{addr}"), collector)
}

/// A port nothing listens on.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

pub fn attr_str(span: &Span, key: &str) -> Option<String> {
    match attr(span, key) {
        Some(Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

pub fn attr_int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

pub fn find<'a>(spans: &'a [Received], name: &str) -> &'a Span {
    &spans
        .iter()
        .find(|r| r.span.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no span {name:?} among {:?}",
                spans.iter().map(|r| &r.span.name).collect::<Vec<_>>()
            )
        })
        .span
}
