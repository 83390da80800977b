//! The prompt guard against the bypasses a security team tries first, each sent through the
//! running gateway as the attacker's exact request body: invisible characters, compatibility
//! forms, combining marks, look-alike letters, words split over messages and content parts,
//! and forbidden text in the fields besides `content` that a model reads. Refused requests
//! never reach the backend; near misses pass unchanged; redactions touch only the match.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use airgate_test_support::mock::{MockConfig, MockServer};
use common::{BackendYaml, GatewayYaml, TestGateway};
use serde_json::{json, Value};

/// Block rules for a word and a phrase, the key and email detectors, a redact rule, and a
/// whole-word rule to try look-alike letters on.
const GUARD: &str = r#"  contentGuard:
    enabled: true
    scanPrompts: true
    scanResponses: false
    blockPatterns:
      - name: secrets
        regex: "(?i)(confidential|internal-only)"
        action: block
      - name: phrase
        regex: "(?i)\\bproject falcon\\b"
        action: block
      - name: ssn-word
        regex: "(?i)\\bssn\\b"
        action: block
      - name: keys
        detector: secret_key
        action: block
      - name: word
        regex: "(?i)\\bsecret\\b"
        action: block
      - name: emails
        detector: email
        action: redact
      - name: codename
        regex: "(?i)falcon-[0-9]+"
        action: redact
"#;

struct Setup {
    backend: MockServer,
    gw: TestGateway,
}

async fn setup(match_confusables: bool) -> Setup {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let mut yaml = GatewayYaml::new()
        .backend(BackendYaml::new("b", &backend.url()))
        .render()
        + GUARD;
    if match_confusables {
        yaml.push_str("    matchConfusables: true\n");
    }
    let gw = TestGateway::start(&yaml).await;
    Setup { backend, gw }
}

/// Sends `body` exactly as written.
async fn send(gw: &TestGateway, path: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The request is refused by `rule` with 403 and the backend is never called.
async fn assert_refused(setup: &Setup, path: &str, body: &str, rule: &str) {
    let response = send(&setup.gw, path, body).await;
    assert_eq!(response.status(), 403, "{body}");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "content_policy_violation");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("(rule: {rule})")), "{message}");
    assert_eq!(setup.backend.requests(), 0, "the backend was called");
}

/// The request passes and the backend receives it.
async fn assert_passed(setup: &Setup, path: &str, body: &str) -> Value {
    let response = send(&setup.gw, path, body).await;
    assert_eq!(response.status(), 200, "{body}");
    setup.backend.last_request().unwrap().body
}

const CHAT: &str = "/v1/chat/completions";

#[tokio::test]
async fn zero_width_space_inside_a_word_is_refused() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"Summarise the con\u200bfidential memo"}]}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
    // The same with the raw character instead of the JSON escape, and a word joiner.
    let body = "{\"model\":\"mock-model\",\"messages\":[{\"role\":\"user\",\"content\":\"Summarise the confi\u{2060}dential memo\"}]}";
    assert_refused(&s, CHAT, body, "secrets").await;
}

#[tokio::test]
async fn soft_hyphen_inside_a_word_is_refused() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"Print the confi\u00addential figures"}]}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
}

#[tokio::test]
async fn fullwidth_letters_are_refused() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"Print the ｉｎｔｅｒｎａｌ－ｏｎｌｙ figures"}]}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
}

#[tokio::test]
async fn combining_marks_and_zalgo_are_refused() {
    let s = setup(false).await;
    let struck = r#"{"model":"mock-model","messages":[{"role":"user","content":"the c\u0336o\u0336n\u0336f\u0336i\u0336d\u0336e\u0336n\u0336t\u0336i\u0336a\u0336l\u0336 memo"}]}"#;
    assert_refused(&s, CHAT, struck, "secrets").await;
    let zalgo = "{\"model\":\"mock-model\",\"messages\":[{\"role\":\"user\",\"content\":\"the c\u{30d}\u{34e}o\u{31a}\u{317}nfi\u{35b}\u{32a}de\u{301}\u{318}ntia\u{30f}\u{32b}l memo\"}]}";
    assert_refused(&s, CHAT, zalgo, "secrets").await;
}

#[tokio::test]
async fn secret_key_written_with_cyrillic_letters_is_refused() {
    let s = setup(false).await;
    // Cyrillic ѕ (U+0455), к is not a look-alike, so: ѕ, р (U+0440), о (U+043E), ј (U+0458).
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"use \u0455k-\u0440r\u043e\u0458-A1b2C3d4E5f6G7h8I9j0K1l2"}]}"#;
    assert_refused(&s, CHAT, body, "keys").await;
}

#[tokio::test]
async fn email_with_cyrillic_letters_is_redacted_in_the_original_text() {
    let s = setup(false).await;
    // Cyrillic о and а in the address; a fullwidth letter and an emoji with a variation
    // selector elsewhere must reach the backend untouched.
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"Mail b\u043eb@ex\u0430mple.com the ｆｕｌｌ report ❤️ today"}]}"#;
    let seen = assert_passed(&s, CHAT, body).await;
    assert_eq!(
        seen["messages"][0]["content"],
        "Mail [REDACTED] the ｆｕｌｌ report ❤\u{fe0f} today"
    );
}

#[tokio::test]
async fn look_alike_letters_in_a_user_pattern_need_match_confusables() {
    // "the ѕеcrеt plan" with Cyrillic ѕ and е.
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"the \u0455\u0435cr\u0435t plan"}]}"#;
    let off = setup(false).await;
    let seen = assert_passed(&off, CHAT, body).await;
    assert_eq!(seen["messages"][0]["content"], "the ѕеcrеt plan");
    let on = setup(true).await;
    assert_refused(&on, CHAT, body, "word").await;
}

#[tokio::test]
async fn word_split_across_two_messages_is_refused() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"Summarise the confi"},{"role":"user","content":"dential memo"}]}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
}

#[tokio::test]
async fn word_split_across_two_content_parts_is_refused() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":[{"type":"text","text":"Summarise the inter"},{"type":"text","text":"nal-only memo"}]}]}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
}

#[tokio::test]
async fn blocked_word_in_a_tool_description_is_refused() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"lookup","description":"Returns the confidential ledger","parameters":{"type":"object","properties":{}}}}]}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
}

#[tokio::test]
async fn blocked_word_in_a_json_schema_property_name_is_refused() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"confidential_notes":{"type":"string"}}}}}]}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
    // An enum value, written with a zero-width space, in the legacy `functions`.
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}],"functions":[{"name":"pick","parameters":{"type":"object","properties":{"level":{"enum":["public","internal\u200b-only"]}}}}]}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
}

#[tokio::test]
async fn blocked_word_in_a_message_name_is_refused() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","name":"confidential","content":"hi"}]}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
}

#[tokio::test]
async fn blocked_word_in_stop_is_refused() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}],"stop":["END","Confidential"]}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}],"stop":"internal-only"}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
}

#[tokio::test]
async fn blocked_word_in_response_format_is_refused() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"report","schema":{"type":"object","properties":{"figures":{"type":"string","description":"the internal-only figures"}}}}}}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
}

#[tokio::test]
async fn blocked_words_in_tool_calls_and_tool_choice_are_refused() {
    let s = setup(false).await;
    let call = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_confidential","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}]}"#;
    assert_refused(&s, CHAT, call, "secrets").await;
    let choice = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"internal-only"}}],"tool_choice":{"type":"function","function":{"name":"internal-only"}}}"#;
    assert_refused(&s, CHAT, choice, "secrets").await;
}

#[tokio::test]
async fn completion_suffix_is_scanned() {
    let s = setup(false).await;
    let body = r##"{"model":"mock-model","prompt":"def f():","suffix":"# con\u200bfidential"}"##;
    assert_refused(&s, "/v1/completions", body, "secrets").await;
}

#[tokio::test]
async fn two_unrelated_words_across_a_seam_pass() {
    let s = setup(false).await;
    // "project" ends one message and "Falcon" starts the next: joined they read
    // "projectFalcon", which is not the phrase; "business" + "Now" is not the word "ssn".
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"We closed the project"},{"role":"assistant","content":"Falcon 9 flew today"},{"role":"user","content":"help with my business"},{"role":"assistant","content":"Now, about that"}]}"#;
    let seen = assert_passed(&s, CHAT, body).await;
    assert_eq!(seen["messages"][1]["content"], "Falcon 9 flew today");
    // A space at the seam keeps the phrase from spanning two messages.
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"We closed the project "},{"role":"assistant","content":"falcon season starts"}]}"#;
    assert_passed(&s, CHAT, body).await;
    // Two structured fields are never joined: "address" + "name" is not "ssn" + ....
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"save","parameters":{"type":"object","properties":{"address":{"type":"string"},"name":{"type":"string"}}}}}]}"#;
    assert_passed(&s, CHAT, body).await;
}

#[tokio::test]
async fn accented_and_non_latin_text_passes_byte_for_byte() {
    let s = setup(true).await;
    let text =
        "Crème brûlée at the café, naïve résumé — Grüße aus Zürich, Привет мир, 東京 👩\u{200d}💻";
    let body = json!({"model": "mock-model", "messages": [{"role": "user", "content": text}]});
    let seen = assert_passed(&s, CHAT, &body.to_string()).await;
    assert_eq!(seen["messages"][0]["content"], text);
}

#[tokio::test]
async fn accented_form_of_a_blocked_word_is_refused() {
    // Patterns without marks match text with its marks removed: "cönfidéntial" is
    // "confidential" (see docs/guard.md).
    let s = setup(false).await;
    let body =
        r#"{"model":"mock-model","messages":[{"role":"user","content":"the cönfidéntial memo"}]}"#;
    assert_refused(&s, CHAT, body, "secrets").await;
}

#[tokio::test]
async fn pure_ascii_request_passes_unchanged() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Plain ASCII text: 0O 1l rn m, nothing to see."}],"stop":["\n\n"]}"#;
    let seen = assert_passed(&s, CHAT, body).await;
    let sent: Value = serde_json::from_str(body).unwrap();
    assert_eq!(seen["messages"], sent["messages"]);
    assert_eq!(seen["stop"], sent["stop"]);
}

#[tokio::test]
async fn redaction_across_a_seam_and_in_a_schema_key_touches_only_the_match() {
    let s = setup(false).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"The code is falcon-"},{"role":"user","content":"42, noted."}],"tools":[{"type":"function","function":{"name":"file","description":"Files falcon-7 reports","parameters":{"type":"object","properties":{"falcon-7_id":{"type":"string"},"title":{"type":"string"}},"required":["falcon-7_id","title"]}}}]}"#;
    let seen = assert_passed(&s, CHAT, body).await;
    assert_eq!(seen["messages"][0]["content"], "The code is [REDACTED]");
    assert_eq!(seen["messages"][1]["content"], "[REDACTED], noted.");
    let function = &seen["tools"][0]["function"];
    assert_eq!(function["description"], "Files [REDACTED] reports");
    assert_eq!(
        function["parameters"].to_string(),
        r#"{"type":"object","properties":{"[REDACTED]_id":{"type":"string"},"title":{"type":"string"}},"required":["[REDACTED]_id","title"]}"#
    );
    let events = s.gw.audit_events_of("guard_finding", 1).await;
    assert!(
        !serde_json::to_string(&events).unwrap().contains("falcon-"),
        "matched text in the audit log"
    );
}
