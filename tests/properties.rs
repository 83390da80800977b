//! Parsers fed generated input: bearer tokens, request bodies, configuration files, and the
//! response guard's two paths (a whole answer and the same answer streamed) against each other.
//! Properties: no panic, bounded work, and where two paths do one job, the same result.
//!
//! `PROPTEST_CASES` sets the number of cases (256 by default); `scripts/fuzz-long.sh` runs many
//! more. The framing inspector, the SSE decoder, the rule language and the rate-limit arithmetic
//! have their generated-input tests next to their code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use airgate::access::jwt::{JwtSettings, JwtVerifier};
use airgate::config::parse_str;
use airgate::error::ApiError;
use airgate::gateway::content_filter::{scan_response, StreamGuard, StreamVerdict};
use airgate::gateway::{AiRequest, Endpoint};
use airgate::guard::{Action, GuardLimits, PatternSet, RuleSpec};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;
use serde_json::{json, Value};

// ------------------------------------------------------------------------------- JWT

const HMAC_SECRET: &[u8] = b"a-test-secret-of-at-least-thirty-two-bytes!";

fn verifier() -> (tempfile::TempDir, JwtVerifier) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("auth")).unwrap();
    std::fs::write(dir.path().join("auth/secret"), HMAC_SECRET).unwrap();
    let verifier = JwtVerifier::load(&JwtSettings::new("auth"), dir.path()).unwrap();
    (dir, verifier)
}

fn b64(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

/// A token over `header` and `claims`, signed with the test key as HS256.
fn signed(header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let key = EncodingKey::from_secret(HMAC_SECRET);
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{message}.{signature}")
}

fn future() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3600
}

/// Header values an attacker tries: other algorithms, `none`, key ids, critical extensions,
/// embedded keys.
fn hostile_header() -> impl Strategy<Value = Value> {
    let alg = prop::sample::select(vec![
        "HS256", "hs256", "none", "None", "RS256", "ES256", "EdDSA", "HS384", "", "HS256 ",
    ]);
    let extra = prop::sample::select(vec![
        json!({}),
        json!({"kid": "other"}),
        json!({"kid": "../../etc/passwd"}),
        json!({"jku": "http://127.0.0.1:1/keys"}),
        json!({"jwk": {"kty": "oct", "k": "AAAA"}}),
        json!({"typ": "JWT", "cty": "JWT"}),
        json!({"alg": ["HS256"]}),
        json!({"alg": null}),
    ]);
    (alg, extra).prop_map(|(alg, extra)| {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        for (k, v) in extra.as_object().unwrap() {
            header[k] = v.clone();
        }
        header
    })
}

fn claims() -> impl Strategy<Value = Value> {
    let sub = prop_oneof![
        "[a-z0-9]{1,12}".prop_map(Value::from),
        Just(Value::from("")),
        Just(Value::Null),
        Just(json!(["alice"])),
        any::<i64>().prop_map(Value::from),
    ];
    let exp = prop_oneof![
        Just(Value::from(future())),
        Just(Value::from(1)),
        Just(Value::from("9999999999")),
        Just(Value::from(f64::MAX)),
        Just(Value::Null),
    ];
    (sub, exp).prop_map(|(sub, exp)| json!({"sub": sub, "exp": exp}))
}

proptest! {
    #[test]
    fn arbitrary_authorization_values_are_refused_without_panic(value in "\\PC{0,300}") {
        let (_dir, verifier) = verifier();
        prop_assert!(verifier.verify(Some(&value)).is_err());
        let bearer = format!("Bearer {value}");
        prop_assert!(verifier.verify(Some(&bearer)).is_err());
    }

    #[test]
    fn structured_garbage_tokens_are_refused(
        header in prop_oneof![hostile_header().prop_map(|h| b64(&h)), "[A-Za-z0-9_-]{0,60}"],
        payload in prop_oneof![claims().prop_map(|c| b64(&c)), "[A-Za-z0-9_-]{0,60}"],
        signature in "[A-Za-z0-9_-]{0,90}",
        dots in 0usize..4,
    ) {
        let (_dir, verifier) = verifier();
        let mut token = format!("{header}.{payload}.{signature}");
        for _ in 0..dots {
            token.push('.');
        }
        // Never signed with the key: refused, whatever the header says.
        prop_assert!(verifier.verify(Some(&format!("Bearer {token}"))).is_err(), "{}", token);
    }

    #[test]
    fn a_signed_token_passes_only_with_a_pinned_algorithm_and_valid_claims(
        header in hostile_header(),
        claims in claims(),
    ) {
        let (_dir, verifier) = verifier();
        let token = signed(&header, &claims);
        let result = verifier.verify(Some(&format!("Bearer {token}")));
        let header_ok = header["alg"] == "HS256" && header.get("kid").is_none();
        let sub_ok = match &claims["sub"] {
            Value::String(s) => !s.is_empty(),
            Value::Number(_) => true,
            _ => false,
        };
        let exp_ok = claims["exp"].as_i64().is_some_and(|e| e > future() - 60);
        if header_ok && sub_ok && exp_ok {
            let identity = result.unwrap();
            let expected = match &claims["sub"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            prop_assert_eq!(identity.user, expected);
        } else {
            prop_assert!(result.is_err(), "accepted {} {}", header, claims);
        }
    }

    #[test]
    fn any_one_changed_character_of_a_valid_token_is_refused(
        sub in "[a-z]{1,8}",
        at in any::<usize>(),
        replacement in prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.".chars().collect::<Vec<_>>()
        ),
    ) {
        let (_dir, verifier) = verifier();
        let token = signed(&json!({"alg": "HS256", "typ": "JWT"}), &json!({"sub": sub, "exp": future()}));
        let bearer = format!("Bearer {token}");
        prop_assert!(verifier.verify(Some(&bearer)).is_ok());
        let mut chars: Vec<char> = token.chars().collect();
        let at = at % chars.len();
        prop_assume!(chars[at] != replacement);
        chars[at] = replacement;
        let tampered: String = chars.into_iter().collect();
        prop_assert!(verifier.verify(Some(&format!("Bearer {tampered}"))).is_err(), "{}", tampered);
    }
}

// --------------------------------------------------------------------- request bodies

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop::sample::select(vec![
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
    ])
}

/// Values a count parameter may be sent as.
fn count_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        (0u64..3).prop_map(Value::from),
        (2_147_483_640u64..2_147_483_660).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(1.0)),
        Just(json!(1e3)),
        Just(json!("100")),
        Just(json!(true)),
        Just(json!([10])),
        Just(json!(null)),
    ]
}

fn param_of(error: &ApiError) -> Option<String> {
    match error {
        ApiError::InvalidRequest { param, .. } => param.clone(),
        _ => None,
    }
}

proptest! {
    #[test]
    fn arbitrary_bodies_are_an_error_or_a_request_never_a_panic(
        endpoint in endpoint(),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        if let Err(error) = AiRequest::parse(endpoint, &bytes) {
            prop_assert_eq!(error.status().as_u16(), 400);
        }
    }

    #[test]
    fn nesting_of_any_depth_is_refused_cleanly(depth in 1usize..200_000, object in any::<bool>()) {
        let (open, close) = if object { (r#"{"a":"#, "}") } else { ("[", "]") };
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":{}1{}}}]}}"#,
            open.repeat(depth),
            close.repeat(depth)
        );
        // Accepted or refused with 400; serde_json's recursion limit keeps the stack bounded.
        if let Err(error) = AiRequest::parse(Endpoint::ChatCompletions, body.as_bytes()) {
            prop_assert_eq!(error.status().as_u16(), 400);
        }
    }

    #[test]
    fn count_parameters_are_integers_in_range_or_refused_by_name(
        param in prop::sample::select(vec!["max_tokens", "max_completion_tokens", "n", "best_of"]),
        value in count_value(),
    ) {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body[param] = value.clone();
        let max = if param.starts_with("max") { i32::MAX as u64 } else { 128 };
        let valid = value.is_null() || value.as_u64().is_some_and(|v| (1..=max).contains(&v));
        match AiRequest::parse(Endpoint::ChatCompletions, body.to_string().as_bytes()) {
            Ok(request) => {
                prop_assert!(valid, "{} = {} admitted", param, value);
                // What is forwarded is what was validated.
                let forwarded: Value = serde_json::from_slice(&request.upstream_body("m").unwrap()).unwrap();
                prop_assert_eq!(forwarded.get(param).unwrap_or(&Value::Null), &value);
            }
            Err(error) => {
                prop_assert!(!valid, "{} = {} refused", param, value);
                let named = param_of(&error);
                prop_assert_eq!(named.as_deref(), Some(param));
            }
        }
    }
}

// ----------------------------------------------------------------- configuration files

fn seed_texts() -> Vec<String> {
    [
        "config/seed/ai-gateway.yaml",
        "config/seed/payment-gateway.yaml",
        "config/demo/ai-gateway.yaml",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap())
    .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    Indent(usize, usize),
    Dedent(usize),
    ReplaceValue(usize, String),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e400".to_string()),
        Just("0s".to_string()),
        Just("99999999999h".to_string()),
        Just("*anchor".to_string()),
        Just("!!binary AAAA".to_string()),
        Just("[".to_string()),
        Just("{a: [b, {c: d}]}".to_string()),
        Just("\"(a+)+$\"".to_string()),
        Just("~".to_string()),
        "[ -~]{0,20}",
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), 1usize..5).prop_map(|(l, n)| Mutation::Indent(l, n)),
        any::<usize>().prop_map(Mutation::Dedent),
        (any::<usize>(), token).prop_map(|(l, t)| Mutation::ReplaceValue(l, t)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::DeleteLine(l) => {
                lines.remove(l % n);
            }
            Mutation::DuplicateLine(l) => {
                let line = lines[l % n].clone();
                lines.insert(l % n, line);
            }
            Mutation::Indent(l, by) => lines[l % n].insert_str(0, &" ".repeat(*by)),
            Mutation::Dedent(l) => lines[l % n] = lines[l % n].trim_start().to_string(),
            Mutation::ReplaceValue(l, token) => {
                let line = &mut lines[l % n];
                if let Some(colon) = line.find(": ") {
                    line.truncate(colon + 2);
                    line.push_str(token);
                } else {
                    line.push_str(token);
                }
            }
            Mutation::Truncate(l) => lines.truncate(l % n),
        }
    }
    lines.join("\n")
}

fn assert_issues_name_the_file(text: &str) -> Result<(), TestCaseError> {
    let file = Path::new("fuzzed.yaml");
    if let Err(issues) = parse_str(file, text) {
        prop_assert!(!issues.is_empty());
        for issue in &issues {
            prop_assert_eq!(&issue.file, file);
            prop_assert!(!issue.message.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn mutated_seed_manifests_load_or_fail_with_located_errors(
        which in 0usize..3,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let text = mutate(&seed_texts()[which], &mutations);
        assert_issues_name_the_file(&text)?;
    }

    #[test]
    fn arbitrary_text_never_panics_the_loader(text in "\\PC{0,400}") {
        assert_issues_name_the_file(&text)?;
    }

    #[test]
    fn deep_yaml_nesting_is_refused_cleanly(depth in 1usize..100_000, flow in any::<bool>()) {
        let text = if flow {
            format!("apiVersion: airgate.io/v1alpha1\nkind: AIGateway\nmetadata: {{name: x}}\nspec: {}{}", "[".repeat(depth), "]".repeat(depth))
        } else {
            let mut t = "apiVersion: airgate.io/v1alpha1\nkind: AIGateway\nmetadata: {name: x}\nspec:\n".to_string();
            for i in 0..depth.min(500) {
                t.push_str(&" ".repeat(i + 1));
                t.push_str("- \n");
            }
            t
        };
        assert_issues_name_the_file(&text)?;
    }
}

/// The "billion laughs": nine levels of aliases that would expand to 10^9 strings.
#[test]
fn an_alias_bomb_is_refused_without_expanding_it() {
    let mut text =
        String::from("apiVersion: airgate.io/v1alpha1\nkind: AIGateway\nmetadata: {name: x}\nspec:\n  a0: &a0 [\"lol\"]\n");
    for i in 1..10 {
        let previous = format!("*a{}", i - 1);
        text.push_str(&format!(
            "  a{i}: &a{i} [{}]\n",
            vec![previous; 10].join(", ")
        ));
    }
    let issues =
        parse_str(Path::new("bomb.yaml"), &text).expect_err("an alias bomb must be refused");
    assert!(!issues.is_empty());
}

// ------------------------------------------------- the response guard, streamed and whole

/// Pieces answers are built from: parts of blocked and redacted words, and neutral text.
const PIECES: &[&str] = &[
    "conf",
    "idential",
    "CONFIDENTIAL",
    "sec",
    "ret",
    "secret",
    " ",
    "the ",
    "memo",
    "é",
    "日本",
    "\n",
    "{\"a\":",
    "\"",
    "x",
    "1",
];

fn pattern_set() -> Arc<PatternSet> {
    let rules = [
        RuleSpec::from_regex("(?i)confidential", Action::Block).named("secrets"),
        RuleSpec::from_regex("secret", Action::Redact).named("word"),
    ];
    Arc::new(PatternSet::compile(&rules, &[], GuardLimits::default()).unwrap())
}

/// The text-bearing fields of a choice, as a whole answer and as a stream delta carry them.
#[derive(Debug, Clone, Copy)]
enum Field {
    Content,
    Refusal,
    Reasoning,
    ToolArguments,
    FunctionArguments,
}

impl Field {
    fn message(self, text: &str) -> Value {
        match self {
            Field::Content => json!({"role": "assistant", "content": text}),
            Field::Refusal => json!({"role": "assistant", "content": null, "refusal": text}),
            Field::Reasoning => {
                json!({"role": "assistant", "content": "", "reasoning_content": text})
            }
            Field::ToolArguments => json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": text}}]}),
            Field::FunctionArguments => json!({"role": "assistant", "content": null,
                "function_call": {"name": "f", "arguments": text}}),
        }
    }

    fn delta(self, piece: &str) -> Value {
        match self {
            Field::Content => json!({"content": piece}),
            Field::Refusal => json!({"refusal": piece}),
            Field::Reasoning => json!({"reasoning_content": piece}),
            Field::ToolArguments => {
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            }
            Field::FunctionArguments => json!({"function_call": {"arguments": piece}}),
        }
    }

    /// The field's text in a message or delta, if present.
    fn text(self, holder: &Value) -> Option<String> {
        let value = match self {
            Field::Content => &holder["content"],
            Field::Refusal => &holder["refusal"],
            Field::Reasoning => &holder["reasoning_content"],
            Field::ToolArguments => &holder["tool_calls"][0]["function"]["arguments"],
            Field::FunctionArguments => &holder["function_call"]["arguments"],
        };
        value.as_str().map(str::to_string)
    }
}

/// The whole answer after the guard: whether the choice was cut, and the field's text.
fn guard_whole(set: &PatternSet, field: Field, text: &str) -> (bool, String) {
    let mut answer = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": field.message(text), "finish_reason": "stop"}]});
    let mut budget = set.budget();
    let scan = scan_response(set, &mut answer, &mut budget);
    let cut = answer["choices"][0]["finish_reason"] == "content_filter";
    assert_eq!(cut, scan.refusal.is_some());
    (
        cut,
        field
            .text(&answer["choices"][0]["message"])
            .unwrap_or_default(),
    )
}

/// The same answer streamed in `pieces`: whether the stream was stopped, and the field's text
/// the client received.
fn guard_stream(set: &Arc<PatternSet>, field: Field, pieces: &[&str]) -> (bool, String) {
    let mut guard = StreamGuard::new(Arc::clone(set), Endpoint::ChatCompletions);
    let mut received = String::new();
    let mut take = |event: &str| {
        let chunk: Value = serde_json::from_str(event).unwrap();
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            received.push_str(&field.text(&choice["delta"]).unwrap_or_default());
        }
    };
    for piece in pieces {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": field.delta(piece), "finish_reason": null}]});
        match guard.on_event(Some(chunk)) {
            StreamVerdict::Forward(event) => take(&event.to_string()),
            StreamVerdict::Stop { final_chunk, .. } => {
                take(&final_chunk);
                return (true, received);
            }
            StreamVerdict::Unscannable => panic!("a JSON chunk was unscannable"),
        }
    }
    match guard.on_done() {
        Some(StreamVerdict::Forward(event)) => take(&event.to_string()),
        Some(StreamVerdict::Stop { final_chunk, .. }) => {
            take(&final_chunk);
            return (true, received);
        }
        Some(StreamVerdict::Unscannable) => panic!("unscannable at the end"),
        None => {}
    }
    (false, received)
}

fn field() -> impl Strategy<Value = Field> {
    prop::sample::select(vec![
        Field::Content,
        Field::Refusal,
        Field::Reasoning,
        Field::ToolArguments,
        Field::FunctionArguments,
    ])
}

proptest! {
    #[test]
    fn a_streamed_answer_is_guarded_exactly_as_the_whole_answer(
        field in field(),
        pieces in proptest::collection::vec(prop::sample::select(PIECES.to_vec()), 0..24),
        groups in proptest::collection::vec(1usize..4, 0..24),
    ) {
        let set = pattern_set();
        let text: String = pieces.concat();
        // The same text cut into deltas of one to three pieces.
        let mut deltas: Vec<String> = Vec::new();
        let mut rest = pieces.as_slice();
        let mut sizes = groups.into_iter().chain(std::iter::repeat(1));
        while !rest.is_empty() {
            let take = sizes.next().unwrap_or(1).min(rest.len());
            deltas.push(rest[..take].concat());
            rest = &rest[take..];
        }
        let deltas: Vec<&str> = deltas.iter().map(String::as_str).collect();

        let (whole_cut, whole_text) = guard_whole(&set, field, &text);
        let (stream_cut, stream_text) = guard_stream(&set, field, &deltas);
        prop_assert_eq!(whole_cut, stream_cut, "{:?} {:?}", field, deltas);
        if whole_cut {
            // Nothing of the blocked word left in the stream.
            prop_assert!(!stream_text.to_lowercase().contains("confidential"), "{:?}", stream_text);
        } else {
            prop_assert_eq!(&stream_text, &whole_text, "{:?} {:?}", field, deltas);
            prop_assert!(!whole_text.contains("secret"));
        }
    }
}
