//! The response guard against a hostile backend, each test written as the backend's exact bytes:
//! every text a client displays is scanned, in whole answers and in streams alike, and what
//! cannot be scanned fails closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{BackendYaml, GatewayYaml, ScriptedBackend, TestGateway};
use serde_json::{json, Value};

const GUARD: &str = r#"  contentGuard:
    enabled: true
    scanPrompts: true
    scanResponses: true
    blockPatterns:
      - name: secrets
        regex: "(?i)(confidential|internal-only|secret)"
        action: block
      - name: emails
        detector: email
        action: redact
"#;

/// What the client receives when the backend answers `body` as `content_type`.
async fn through_guard(
    content_type: &'static str,
    body: &'static str,
    stream: bool,
) -> (u16, String) {
    let backend = ScriptedBackend::raw(content_type, body).await;
    let yaml = GatewayYaml::new()
        .backend(BackendYaml::new("b", &backend.url))
        .render()
        + GUARD;
    let gw = TestGateway::start(&yaml).await;
    let response = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "mock-model", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn assert_clean(received: &str, forbidden: &[&str]) {
    let lower = received.to_lowercase();
    for word in forbidden {
        assert!(
            !lower.contains(word),
            "{word:?} reached the client: {received}"
        );
    }
}

/// The `data:` payloads of a received stream.
fn events(received: &str) -> Vec<String> {
    received
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

fn last_finish_reason(received: &str) -> Option<String> {
    events(received)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .flat_map(|v| v["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["finish_reason"].as_str().map(str::to_string))
        .next_back()
}

// --------------------------------------------------------------------------- whole answers

#[tokio::test]
async fn a_refusal_that_matches_is_removed_not_only_flagged() {
    let (status, received) = through_guard(
        "application/json",
        r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"mock-model","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I cannot share the confidential memo"},"finish_reason":"stop"}]}"#,
        false,
    )
    .await;
    assert_eq!(status, 200);
    assert_clean(&received, &["confidential", "memo"]);
    let body: Value = serde_json::from_str(&received).unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
}

#[tokio::test]
async fn a_duplicate_key_cannot_smuggle_text_past_the_scan() {
    // A parser that keeps the first of two keys would display the first value.
    let (status, received) = through_guard(
        "application/json",
        r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"mock-model","choices":[{"index":0,"message":{"role":"assistant","content":"the confidential plan","content":"nothing to see"},"finish_reason":"stop"}]}"#,
        false,
    )
    .await;
    assert_eq!(status, 200);
    assert_clean(&received, &["confidential"]);
    assert!(received.contains("nothing to see"), "{received}");
}

#[tokio::test]
async fn whole_answers_scan_legacy_function_calls_reasoning_and_logprobs() {
    for body in [
        r#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"function_call":{"name":"lookup","arguments":"{\"q\":\"internal-only\"}"}},"finish_reason":"function_call"}]}"#,
        r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"ok","reasoning_content":"the secret is 42"},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"logprobs":{"content":[{"token":"sec","logprob":-0.1,"bytes":[115,101,99]},{"token":"ret","logprob":-0.2,"bytes":[114,101,116]}]},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"logprobs":{"content":[{"token":"ok","logprob":-0.1,"top_logprobs":[{"token":"Secret","logprob":-3.0}]}]},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"ok","x_vendor_note":"confidential"},"finish_reason":"stop"}]}"#,
    ] {
        let (status, received) = through_guard("application/json", body, false).await;
        assert_eq!(status, 200, "{body}");
        assert_clean(
            &received,
            &["internal-only", "secret", "\"sec\"", "confidential"],
        );
        let json: Value = serde_json::from_str(&received).unwrap();
        assert_eq!(
            json["choices"][0]["finish_reason"], "content_filter",
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_redact_match_in_logprob_tokens_cuts_the_choice() {
    let (_, received) = through_guard(
        "application/json",
        r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"write to ann@example.com"},"logprobs":{"content":[{"token":"ann@","logprob":-0.1},{"token":"example.com","logprob":-0.1}]},"finish_reason":"stop"}]}"#,
        false,
    )
    .await;
    assert_clean(&received, &["ann@", "example.com"]);
    let json: Value = serde_json::from_str(&received).unwrap();
    assert_eq!(json["choices"][0]["finish_reason"], "content_filter");
}

#[tokio::test]
async fn a_whole_answer_that_is_not_json_fails_closed() {
    let (status, received) =
        through_guard("application/json", "the confidential memo, not JSON", false).await;
    assert_eq!(status, 502);
    assert_clean(&received, &["confidential"]);
}

// --------------------------------------------------------------------------- streams

#[tokio::test]
async fn a_streamed_refusal_split_over_chunks_is_cut_before_its_match() {
    let (status, received) = through_guard(
        "text/event-stream",
        concat!(
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mock-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"refusal\":\"This is conf\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mock-model\",\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"idential\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mock-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        ),
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert_clean(&received, &["conf"]);
    assert!(received.contains("This is "), "{received}");
    assert_eq!(
        last_finish_reason(&received).as_deref(),
        Some("content_filter")
    );
}

#[tokio::test]
async fn streamed_legacy_function_call_arguments_and_reasoning_are_scanned() {
    for stream in [
        concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"function_call\":{\"name\":\"lookup\",\"arguments\":\"{\\\"q\\\":\\\"top se\"}},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"arguments\":\"cret\\\"}\"}},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"function_call\"}]}\n\n",
            "data: [DONE]\n\n"
        ),
        concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"The user wants the sec\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"ret\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"No.\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        ),
        concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"ok\",\"x_vendor_note\":\"internal-only\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        ),
    ] {
        let (status, received) = through_guard("text/event-stream", stream, true).await;
        assert_eq!(status, 200);
        assert_clean(&received, &["se\\\"", "secret", "sec", "internal-only"]);
        assert_eq!(last_finish_reason(&received).as_deref(), Some("content_filter"), "{received}");
    }
}

#[tokio::test]
async fn streamed_logprob_tokens_are_held_back_and_scanned() {
    // The content is clean; the tokens spell the blocked word, split over two chunks.
    let (_, received) = through_guard(
        "text/event-stream",
        concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"a\"},\"logprobs\":{\"content\":[{\"token\":\"conf\",\"logprob\":-0.1,\"bytes\":[99,111,110,102],\"top_logprobs\":[]}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"},\"logprobs\":{\"content\":[{\"token\":\"idential\",\"logprob\":-0.1,\"bytes\":[],\"top_logprobs\":[]}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        ),
        true,
    )
    .await;
    assert_clean(&received, &["conf", "[99,111"]);
    assert_eq!(
        last_finish_reason(&received).as_deref(),
        Some("content_filter")
    );
    // An alternative token stands alone.
    let (_, received) = through_guard(
        "text/event-stream",
        concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"ok\"},\"logprobs\":{\"content\":[{\"token\":\"ok\",\"logprob\":-0.1,\"top_logprobs\":[{\"token\":\"SECRET\",\"logprob\":-4.0}]}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        ),
        true,
    )
    .await;
    assert_clean(&received, &["secret"]);
    assert_eq!(
        last_finish_reason(&received).as_deref(),
        Some("content_filter")
    );
}

#[tokio::test]
async fn clean_streamed_logprobs_arrive_whole_and_in_order() {
    let (status, received) = through_guard(
        "text/event-stream",
        concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"logprobs\":{\"content\":[{\"token\":\"Hel\",\"logprob\":-0.1,\"bytes\":[72,101,108],\"top_logprobs\":[]}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo se\"},\"logprobs\":{\"content\":[{\"token\":\"lo\",\"logprob\":-0.2,\"bytes\":[108,111],\"top_logprobs\":[]},{\"token\":\" se\",\"logprob\":-0.3,\"bytes\":[32,115,101],\"top_logprobs\":[]}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ven\"},\"logprobs\":{\"content\":[{\"token\":\"ven\",\"logprob\":-0.4,\"bytes\":[118,101,110],\"top_logprobs\":[]}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        ),
        true,
    )
    .await;
    assert_eq!(status, 200);
    let mut content = String::new();
    let mut tokens = Vec::new();
    for data in events(&received) {
        let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
            continue;
        };
        for choice in chunk["choices"].as_array().unwrap() {
            content.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
            for entry in choice["logprobs"]["content"]
                .as_array()
                .into_iter()
                .flatten()
            {
                tokens.push((
                    entry["token"].as_str().unwrap().to_string(),
                    entry["logprob"].as_f64().unwrap(),
                ));
            }
        }
    }
    assert_eq!(content, "Hello seven");
    assert_eq!(
        tokens,
        vec![
            ("Hel".into(), -0.1),
            ("lo".into(), -0.2),
            (" se".into(), -0.3),
            ("ven".into(), -0.4)
        ]
    );
    assert_eq!(last_finish_reason(&received).as_deref(), Some("stop"));
    assert!(received.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_stream_event_that_is_not_json_ends_the_stream_with_an_error() {
    let (status, received) = through_guard(
        "text/event-stream",
        concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: the confidential memo\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        ),
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert_clean(&received, &["confidential", "[done]"]);
    let last: Value = serde_json::from_str(events(&received).last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_unscannable");
}

#[tokio::test]
async fn sse_comments_and_data_less_events_are_not_forwarded() {
    let (status, received) = through_guard(
        "text/event-stream",
        concat!(
            ": the confidential memo\n\n",
            "event: note\nid: internal-only\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            // Lines riding along with the end marker are not forwarded either.
            "data: [DONE]\n: confidential tail\nid: internal-only\n\n"
        ),
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert_clean(
        &received,
        &["confidential", "internal-only", "event:", "id:"],
    );
    assert!(received.ends_with("data: [DONE]\n\n"), "{received}");
    assert_eq!(last_finish_reason(&received).as_deref(), Some("stop"));
}
