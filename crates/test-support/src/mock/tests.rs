#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use super::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn chat_body(stream: bool) -> Value {
    json!({
        "model": "req-model",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there mock"}
        ]
    })
}

async fn post(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", server.url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Parses an SSE body into its `data:` payloads.
fn sse_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap().to_string())
        .collect()
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn chat_non_stream_shape() {
    let server = MockServer::start(MockConfig::named("alpha").tokens(6))
        .await
        .unwrap();
    let resp = post(&server, "/v1/chat/completions", &chat_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "req-model");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "Mock answer from alpha: lorem ipsum "
    );
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11})
    );
    assert_eq!(server.requests(), 1);
    let last = server.last_request().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(last.body, chat_body(false));
    assert_eq!(last.header("content-type"), Some("application/json"));
    eventually("in_flight == 0", || server.in_flight() == 0).await;
}

#[tokio::test]
async fn max_tokens_limits_and_sets_length() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let mut body = chat_body(false);
    body["max_tokens"] = json!(3);
    let v: Value = post(&server, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Mock answer from ");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    // max_tokens above the configured length: configured length, "stop".
    body["max_tokens"] = json!(1000);
    let v: Value = post(&server, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 16);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // max_completion_tokens is honoured too.
    let mut body = chat_body(false);
    body["max_completion_tokens"] = json!(2);
    let v: Value = post(&server, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn chat_stream_sequence_without_usage() {
    let server = MockServer::start(MockConfig::named("s").tokens(4))
        .await
        .unwrap();
    let resp = post(&server, "/v1/chat/completions", &chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = resp.text().await.unwrap();
    let events = sse_events(&text);
    // role + 4 tokens + finish + [DONE]
    assert_eq!(events.len(), 7, "{text}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..6]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "req-model");
        assert_eq!(c["id"], chunks[0]["id"]);
        assert!(c.get("usage").is_none());
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks[1..5]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(content, "Mock answer from s: ");
    for c in &chunks[..5] {
        assert!(c["choices"][0]["finish_reason"].is_null());
    }
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    eventually("completed stream", || server.completed_streams() == 1).await;
    assert_eq!(server.cancelled_streams(), 0);
    eventually("in_flight == 0", || server.in_flight() == 0).await;
}

#[tokio::test]
async fn chat_stream_with_include_usage() {
    let server = MockServer::start(MockConfig::default().tokens(5))
        .await
        .unwrap();
    let mut body = chat_body(true);
    body["stream_options"] = json!({"include_usage": true});
    body["max_tokens"] = json!(2);
    let text = post(&server, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    // role + 2 tokens + finish + usage + [DONE]
    assert_eq!(events.len(), 6, "{text}");
    assert_eq!(events[5], "[DONE]");
    let finish: Value = serde_json::from_str(&events[3]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage: Value = serde_json::from_str(&events[4]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})
    );
}

#[tokio::test]
async fn completions_stream_and_not() {
    let server = MockServer::start(MockConfig::named("c").tokens(3))
        .await
        .unwrap();
    let body = json!({"model": "m", "prompt": "one two three four"});
    let v: Value = post(&server, "/v1/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "Mock answer from ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 4);

    let body = json!({"model": "m", "prompt": "x", "stream": true,
        "stream_options": {"include_usage": true}});
    let text = post(&server, "/v1/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    // 3 tokens + finish + usage + [DONE]
    assert_eq!(events.len(), 6, "{text}");
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["choices"][0]["text"], "Mock ");
    let usage: Value = serde_json::from_str(&events[4]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(events[5], "[DONE]");
}

#[tokio::test]
async fn embeddings_are_deterministic() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let one: Value = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": "hello world"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(one["object"], "list");
    assert_eq!(one["model"], "e");
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    let vec1 = one["data"][0]["embedding"].as_array().unwrap().clone();
    assert_eq!(vec1.len(), 8);
    let norm: f64 = vec1.iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
    assert!((norm - 1.0).abs() < 1e-3);
    assert_eq!(one["usage"]["prompt_tokens"], 2);

    let many: Value = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": ["other", "hello world"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(many["data"].as_array().unwrap().len(), 2);
    assert_eq!(many["data"][1]["index"], 1);
    assert_eq!(many["data"][1]["embedding"].as_array().unwrap(), &vec1);
    assert_ne!(many["data"][0]["embedding"].as_array().unwrap(), &vec1);
}

#[tokio::test]
async fn models_and_health() {
    let server = MockServer::start(MockConfig::named("m").models(&["a", "b"]))
        .await
        .unwrap();
    let c = client();
    let v: Value = c
        .get(format!("{}/v1/models", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(server.models_requests(), 1);

    let health = format!("{}/health", server.url());
    assert_eq!(c.get(&health).send().await.unwrap().status(), 200);
    server.set_healthy(false);
    assert_eq!(c.get(&health).send().await.unwrap().status(), 503);
    assert_eq!(server.health_requests(), 2);
    assert_eq!(server.requests(), 0);

    let no_health = MockServer::start(MockConfig::default().no_health_route())
        .await
        .unwrap();
    let resp = c
        .get(format!("{}/health", no_health.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn status_fault_bodies() {
    let server = MockServer::start(MockConfig::named("f")).await.unwrap();

    server.set_fault(Fault::status(503));
    let resp = post(&server, "/v1/chat/completions", &chat_body(false)).await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    let e = &v["error"];
    assert!(e["message"].as_str().unwrap().contains("503"));
    assert_eq!(e["type"], "server_error");
    assert!(e["param"].is_null());
    assert!(e.as_object().unwrap().contains_key("code"));

    server.set_fault(Fault::Status {
        status: 400,
        body: ErrorBody::VllmIntCode,
    });
    let resp = post(&server, "/v1/chat/completions", &chat_body(true)).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "BadRequestError");
    assert_eq!(v["error"]["code"], 400);
    assert!(v["error"]["param"].is_null());
    assert!(v["error"]["message"].is_string());

    server.set_fault(Fault::Status {
        status: 500,
        body: ErrorBody::FlatObject,
    });
    let resp = post(&server, "/v1/completions", &json!({"prompt": "x"})).await;
    assert_eq!(resp.status(), 500);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "error");
    assert_eq!(v["code"], 500);
    assert_eq!(v["type"], "InternalServerError");
    assert!(v["message"].is_string());
    assert!(v["param"].is_null());

    server.set_fault(Fault::None);
    let resp = post(&server, "/v1/chat/completions", &chat_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(server.requests(), 4);
}

#[tokio::test]
async fn hang_fault_times_out_and_keeps_in_flight() {
    let server = MockServer::start(MockConfig::default().fault(Fault::Hang))
        .await
        .unwrap();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = format!("{}/v1/chat/completions", server.url());
    let started = std::time::Instant::now();
    let fut = c.post(&url).json(&chat_body(false)).send();
    let check = async {
        eventually("in_flight == 1", || server.in_flight() == 1).await;
    };
    let (res, ()) = tokio::join!(fut, check);
    let err = res.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(290));
    // The client gave up: the handler is dropped.
    eventually("in_flight == 0", || server.in_flight() == 0).await;
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn headers_then_hang() {
    let server = MockServer::start(MockConfig::default().fault(Fault::HeadersThenHang))
        .await
        .unwrap();
    let resp = post(&server, "/v1/chat/completions", &chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = resp.bytes_stream();
    let next = tokio::time::timeout(Duration::from_millis(200), body.next()).await;
    assert!(next.is_err(), "no body bytes expected");
    drop(body);
    eventually("cancelled", || server.cancelled_streams() == 1).await;
}

#[tokio::test]
async fn die_mid_stream_errors_after_n_chunks() {
    let server =
        MockServer::start(MockConfig::default().fault(Fault::DieMidStream { after_chunks: 3 }))
            .await
            .unwrap();
    let resp = post(&server, "/v1/chat/completions", &chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut received = Vec::new();
    let mut error = None;
    while let Some(item) = body.next().await {
        match item {
            Ok(b) => received.extend_from_slice(&b),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(error.is_some(), "the body must end with an error");
    let text = String::from_utf8(received).unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 3, "{text}");
    assert!(!text.contains("[DONE]"));
    assert_eq!(server.completed_streams(), 0);

    // Non-stream: a truncated JSON body, then an error.
    let resp = post(&server, "/v1/chat/completions", &chat_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err());
}

#[tokio::test]
async fn stall_mid_stream_sends_n_chunks_then_nothing() {
    let server =
        MockServer::start(MockConfig::default().fault(Fault::StallMidStream { after_chunks: 2 }))
            .await
            .unwrap();
    let resp = post(&server, "/v1/chat/completions", &chat_body(true)).await;
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(300), body.next()).await {
            Ok(Some(Ok(b))) => text.push_str(std::str::from_utf8(&b).unwrap()),
            Ok(other) => panic!("unexpected end of stream: {other:?}"),
            Err(_) => break, // stalled
        }
    }
    assert_eq!(sse_events(&text).len(), 2, "{text}");
    assert_eq!(server.in_flight(), 1);
    drop(body);
    eventually("cancelled", || server.cancelled_streams() == 1).await;
    eventually("in_flight == 0", || server.in_flight() == 0).await;
}

#[tokio::test]
async fn client_drop_mid_stream_counts_cancelled() {
    let server = MockServer::start(
        MockConfig::default()
            .tokens(100)
            .inter_token_delay(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let resp = post(&server, "/v1/chat/completions", &chat_body(true)).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    assert_eq!(server.in_flight(), 1);
    drop(body);
    eventually("cancelled", || server.cancelled_streams() == 1).await;
    assert_eq!(server.completed_streams(), 0);
    eventually("in_flight == 0", || server.in_flight() == 0).await;
}

#[tokio::test]
async fn latency_and_inter_token_delay() {
    let server = MockServer::start(
        MockConfig::default()
            .tokens(5)
            .latency(Duration::from_millis(100))
            .inter_token_delay(Duration::from_millis(30)),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let resp = post(&server, "/v1/chat/completions", &chat_body(true)).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    resp.text().await.unwrap();
    // 4 gaps between 5 tokens.
    assert!(started.elapsed() >= Duration::from_millis(100 + 4 * 30));
}

#[tokio::test]
async fn bad_json_is_400_and_recorded() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let resp = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("content-type", "application/json")
        .header("x-test", "yes")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let last = server.last_request().unwrap();
    assert_eq!(last.body, Value::Null);
    assert_eq!(last.header("x-test"), Some("yes"));
}

#[tokio::test]
async fn drop_closes_listener_and_ends_hangs() {
    let server = MockServer::start(MockConfig::default().fault(Fault::Hang))
        .await
        .unwrap();
    let url = format!("{}/v1/chat/completions", server.url());
    let pending =
        tokio::spawn(async move { client().post(&url).json(&chat_body(false)).send().await });
    eventually("in_flight == 1", || server.in_flight() == 1).await;
    let addr = server.addr();
    server.shutdown().await;
    // The hanging request got an answer (503) instead of hanging forever.
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 503);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn fault_parsing() {
    assert_eq!("none".parse::<Fault>().unwrap(), Fault::None);
    assert_eq!("status:500".parse::<Fault>().unwrap(), Fault::status(500));
    assert_eq!(
        "status:400:vllm".parse::<Fault>().unwrap(),
        Fault::Status {
            status: 400,
            body: ErrorBody::VllmIntCode
        }
    );
    assert_eq!("hang".parse::<Fault>().unwrap(), Fault::Hang);
    assert_eq!(
        "die-mid-stream:3".parse::<Fault>().unwrap(),
        Fault::DieMidStream { after_chunks: 3 }
    );
    assert_eq!(
        "stall-mid-stream:1".parse::<Fault>().unwrap(),
        Fault::StallMidStream { after_chunks: 1 }
    );
    assert!("die-mid-stream".parse::<Fault>().is_err());
    assert!("explode".parse::<Fault>().is_err());
}

#[tokio::test]
async fn router_is_usable_directly() {
    let state = MockState::new(MockConfig::named("direct"));
    let app = router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let v: Value = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Mock answer from direct: "));
    assert_eq!(state.requests(), 1);
    task.abort();
}
