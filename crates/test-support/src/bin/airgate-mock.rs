//! `airgate-mock`: the OpenAI-compatible mock backend as a standalone server
//! (for the benchmark and the README demo).
//!
//! ```text
//! airgate-mock --listen 127.0.0.1:8000 --name demo --models demo-model,llama-3-8b-instruct \
//!     --latency-ms 0 --inter-token-ms 0 --tokens 16 [--fault status:500|hang|die-mid-stream:3|stall-mid-stream:3] [--no-health-route]
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use airgate_test_support::mock::{Fault, MockConfig, MockServer};
use clap::Parser;

/// OpenAI-compatible mock backend (behaves like vLLM's OpenAI server as seen by clients).
#[derive(Parser, Debug)]
#[command(name = "airgate-mock", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Name used in answers ("Mock answer from NAME: ...").
    #[arg(long, default_value = "mock")]
    name: String,
    /// Models listed by GET /v1/models (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "mock-model")]
    models: Vec<String>,
    /// Delay before response headers, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay between streamed tokens, in milliseconds.
    #[arg(long, default_value_t = 0)]
    inter_token_ms: u64,
    /// Completion tokens per answer (max_tokens may cut it shorter).
    #[arg(long, default_value_t = 16)]
    tokens: usize,
    /// Fault: none | status:CODE[:openai|vllm|flat] | hang | headers-then-hang |
    /// die-mid-stream:N | stall-mid-stream:N
    #[arg(long, default_value = "none")]
    fault: Fault,
    /// Answer 404 on GET /health (like llama.cpp's server without it).
    #[arg(long)]
    no_health_route: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let models: Vec<&str> = args.models.iter().map(String::as_str).collect();
    let mut cfg = MockConfig::named(&args.name)
        .models(&models)
        .latency(Duration::from_millis(args.latency_ms))
        .inter_token_delay(Duration::from_millis(args.inter_token_ms))
        .tokens(args.tokens)
        .fault(args.fault);
    if args.no_health_route {
        cfg = cfg.no_health_route();
    }

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %args.listen, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let server = match MockServer::start_on(cfg, listener).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the mock");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        url = %server.url(),
        name = %args.name,
        models = %args.models.join(","),
        latency_ms = args.latency_ms,
        inter_token_ms = args.inter_token_ms,
        tokens = args.tokens,
        fault = ?args.fault,
        health_route = !args.no_health_route,
        "airgate-mock listening"
    );

    shutdown_signal().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
