//! Hostile clients, each test written as the attacker's exact bytes on a real socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use airgate_test_support::mock::{MockConfig, MockServer};
use common::{BackendYaml, GatewayYaml, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway() -> (TestGateway, MockServer) {
    let backend = MockServer::start(MockConfig::named("a")).await.unwrap();
    let yaml = GatewayYaml::new().backend(BackendYaml::new("a", &backend.url()));
    (TestGateway::start(&yaml.render()).await, backend)
}

/// Reads one HTTP/1.1 response (head and a `Content-Length` or chunked body); `None` when the
/// connection closed first.
async fn read_response(socket: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut byte)).await {
            Ok(Ok(1)) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    match length {
        Some(n) => {
            let mut body = vec![0u8; n];
            socket.read_exact(&mut body).await.ok()?;
            buf.extend_from_slice(&body);
        }
        None if head.contains("transfer-encoding: chunked") => {
            while !buf.ends_with(b"\r\n0\r\n\r\n") {
                match socket.read(&mut byte).await {
                    Ok(1) => buf.push(byte[0]),
                    _ => break,
                }
            }
        }
        None => {}
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Sends each request on one keep-alive connection, waiting for each answer before the next,
/// as a client would; returns each answer's status line ("closed" once the connection is gone).
async fn in_turn(gw: &TestGateway, requests: &[&[u8]]) -> Vec<String> {
    let mut socket = TcpStream::connect(gw.addr).await.unwrap();
    let mut statuses = Vec::new();
    for request in requests {
        if socket.write_all(request).await.is_err() {
            statuses.push("closed".to_string());
            continue;
        }
        let status = match read_response(&mut socket).await {
            Some(answer) => answer.lines().next().unwrap_or_default().to_string(),
            None => "closed".to_string(),
        };
        statuses.push(status);
    }
    statuses
}

/// The request that must be refused whatever came before it on the connection.
const SMUGGLED: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 72\r\nTransfer-Encoding: chunked\r\n\r\n48\r\n{\"model\":\"mock-model\",\"messages\":[{\"role\":\"user\",\"content\":\"smuggled\"}]}\r\n0\r\n\r\n";

#[tokio::test]
async fn smuggling_is_refused_after_a_request_ended_by_bare_line_feeds() {
    let (gw, backend) = gateway().await;
    let statuses = in_turn(&gw, &[b"GET /v1/models HTTP/1.1\nHost: gw\n\n", SMUGGLED]).await;
    assert_eq!(statuses[0], "HTTP/1.1 200 OK", "{statuses:?}");
    assert_eq!(statuses[1], "HTTP/1.1 400 Bad Request", "{statuses:?}");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn smuggling_is_refused_after_an_upgrade_that_was_not_switched() {
    let (gw, backend) = gateway().await;
    let upgrade: &[u8] = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let statuses = in_turn(&gw, &[upgrade, SMUGGLED]).await;
    assert_eq!(statuses[0], "HTTP/1.1 200 OK", "{statuses:?}");
    assert_eq!(statuses[1], "HTTP/1.1 400 Bad Request", "{statuses:?}");
    let h2c: &[u8] = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let statuses = in_turn(&gw, &[h2c, SMUGGLED]).await;
    assert_eq!(statuses[1], "HTTP/1.1 400 Bad Request", "{statuses:?}");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn smuggling_is_refused_after_clean_keep_alive_requests() {
    let (gw, backend) = gateway().await;
    let clean: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 69\r\n\r\n{\"model\":\"mock-model\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";
    let statuses = in_turn(&gw, &[clean, clean, SMUGGLED]).await;
    assert_eq!(
        statuses[..2],
        ["HTTP/1.1 200 OK".to_string(), "HTTP/1.1 200 OK".to_string()],
        "{statuses:?}"
    );
    assert_eq!(statuses[2], "HTTP/1.1 400 Bad Request", "{statuses:?}");
    assert_eq!(backend.requests(), 2);
}

async fn gateway_with_limits(limits: airgate::server::ServerLimits) -> (TestGateway, MockServer) {
    let backend = MockServer::start(MockConfig::named("a")).await.unwrap();
    let yaml = GatewayYaml::new().backend(BackendYaml::new("a", &backend.url()));
    (
        TestGateway::start_with_limits(&yaml.render(), limits).await,
        backend,
    )
}

/// Whether the server closed `socket` within `wait` (a read returns end of file or an error).
async fn closed_within(socket: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn connections_that_never_send_a_byte_are_closed_after_the_header_timeout() {
    let limits = airgate::server::ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (gw, _backend) = gateway_with_limits(limits).await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    for socket in silent.iter_mut() {
        assert!(
            closed_within(socket, Duration::from_secs(3)).await,
            "a silent connection stayed open"
        );
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    let limits = airgate::server::ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (gw, _backend) = gateway_with_limits(limits).await;
    let mut socket = TcpStream::connect(gw.addr).await.unwrap();
    socket
        .write_all(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut socket)
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut socket, Duration::from_secs(3)).await,
        "an idle keep-alive connection stayed open"
    );
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_counted() {
    let limits = airgate::server::ServerLimits {
        max_connections: 5,
        ..Default::default()
    };
    let stats = std::sync::Arc::clone(&limits.stats);
    let (gw, _backend) = gateway_with_limits(limits).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // The accept loop has taken the five (the next one is refused only once they are open).
    for _ in 0..100 {
        if stats.open() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.open(), 5);
    let mut extra = TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(2)).await);
    assert_eq!(stats.refused(), 1);
    // Closing one makes room again.
    drop(held.pop());
    for _ in 0..100 {
        if stats.open() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let statuses = in_turn(&gw, &[b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n"]).await;
    assert_eq!(statuses[0], "HTTP/1.1 200 OK");
}

/// Many large prompts at once: past the process-wide budget for buffered bodies a request gets
/// 503 with `retry-after` before its body is read, and the budget comes back when requests end.
#[tokio::test]
async fn large_prompts_past_the_body_memory_budget_get_503_before_their_body_is_read() {
    let backend = MockServer::start(MockConfig::named("a")).await.unwrap();
    let yaml = GatewayYaml::new().backend(BackendYaml::new("a", &backend.url()));
    let gw = TestGateway::start_with(
        &yaml.render(),
        common::GatewayOptions {
            body_budget: Some(airgate::body::BodyBudget::new(1024 * 1024)),
            ..Default::default()
        },
    )
    .await;
    let content = "x".repeat(600 * 1024);
    let body =
        format!(r#"{{"model":"mock-model","messages":[{{"role":"user","content":"{content}"}}]}}"#);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The first upload declares 600 KiB and sends only its head: its share is reserved.
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    first.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The second does not fit: 503 at once, with nothing of its body sent.
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    second.write_all(head.as_bytes()).await.unwrap();
    let answer = read_response(&mut second).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("gateway_overloaded"), "{answer}");
    // The first completes; its share comes back and the next large prompt is served.
    first.write_all(body.as_bytes()).await.unwrap();
    let answer = read_response(&mut first).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(gw.state.body_budget.available(), 1024 * 1024);
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    third.write_all(head.as_bytes()).await.unwrap();
    third.write_all(body.as_bytes()).await.unwrap();
    let answer = read_response(&mut third).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
