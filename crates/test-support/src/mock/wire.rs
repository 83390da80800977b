//! Wire shapes (serialized with borrowed fields: one allocation per body) and
//! the deterministic text / embedding generators.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::{ErrorBody, Inner};

/// Words after the `"Mock answer from {name}: "` prefix.
const WORDS: [&str; 16] = [
    "lorem ",
    "ipsum ",
    "dolor ",
    "sit ",
    "amet ",
    "consectetur ",
    "adipiscing ",
    "elit ",
    "sed ",
    "do ",
    "eiusmod ",
    "tempor ",
    "incididunt ",
    "ut ",
    "labore ",
    "magna ",
];

/// Token `i` of every answer.
pub(crate) fn token(inner: &Inner, i: usize) -> &str {
    match i {
        0 => "Mock ",
        1 => "answer ",
        2 => "from ",
        3 => &inner.name_token,
        _ => WORDS[(i - 4) % WORDS.len()],
    }
}

pub(crate) fn answer(inner: &Inner, n: usize) -> String {
    let mut s = String::with_capacity(n * 8 + inner.name_token.len());
    for i in 0..n {
        s.push_str(token(inner, i));
    }
    s
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Words of a chat message `content` (string, or array of parts with `text`).
fn content_words(content: &Value) -> usize {
    match content {
        Value::String(s) => words(s),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => words(s),
                Value::Object(o) => o.get("text").and_then(Value::as_str).map_or(0, words),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// Prompt tokens of a chat request: words of every message's content.
pub(crate) fn chat_prompt_tokens(body: &Value) -> usize {
    body.get("messages")
        .and_then(Value::as_array)
        .map_or(0, |msgs| {
            msgs.iter()
                .map(|m| m.get("content").map_or(0, content_words))
                .sum()
        })
}

/// Prompt tokens of a completions `prompt` or embeddings `input`: words of
/// strings, one per integer token id, recursively through arrays.
pub(crate) fn input_tokens(v: &Value) -> usize {
    match v {
        Value::String(s) => words(s),
        Value::Number(_) => 1,
        Value::Array(items) => items.iter().map(input_tokens).sum(),
        _ => 0,
    }
}

/// The items of an embeddings `input`: a string, an array of token ids, an
/// array of strings or an array of token-id arrays.
pub(crate) fn embedding_inputs(input: &Value) -> Vec<&Value> {
    match input {
        Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => {
            vec![input]
        }
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

pub(crate) const EMBEDDING_DIMS: usize = 8;

fn fnv1a(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

fn hash_value(h: &mut u64, v: &Value) {
    match v {
        Value::String(s) => fnv1a(h, s.as_bytes()),
        Value::Number(n) => fnv1a(h, &n.as_i64().unwrap_or(0).to_le_bytes()),
        Value::Array(items) => {
            for item in items {
                hash_value(h, item);
            }
        }
        _ => fnv1a(h, b"null"),
    }
}

/// A deterministic unit vector derived from a hash of the input.
pub(crate) fn embedding(input: &Value) -> [f32; EMBEDDING_DIMS] {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    hash_value(&mut h, input);
    let mut out = [0f32; EMBEDDING_DIMS];
    let mut norm = 0f32;
    for x in out.iter_mut() {
        // splitmix64
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // top 24 bits -> [-1, 1)
        *x = ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0;
        norm += *x * *x;
    }
    let norm = norm.sqrt();
    if norm > 0.0 {
        for x in out.iter_mut() {
            *x /= norm;
        }
    }
    out
}

/// Standard base64 (with padding) of the little-endian f32s, as OpenAI's
/// `encoding_format: "base64"`.
pub(crate) fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[derive(Serialize, Clone, Copy)]
pub(crate) struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

// ---- chat ----

#[derive(Serialize)]
pub(crate) struct ChatCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [ChatChoice<'a>; 1],
    pub usage: Usage,
}

#[derive(Serialize)]
pub(crate) struct ChatChoice<'a> {
    pub index: u32,
    pub message: Message<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Message<'a> {
    pub role: &'static str,
    pub content: &'a str,
}

#[derive(Serialize)]
pub(crate) struct ChatChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Serialize)]
pub(crate) struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
}

// ---- completions ----

#[derive(Serialize)]
pub(crate) struct TextCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: &'a [TextChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Serialize)]
pub(crate) struct TextChoice<'a> {
    pub index: u32,
    pub text: &'a str,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'a str>,
}

// ---- embeddings / models ----

#[derive(Serialize)]
pub(crate) struct EmbeddingList<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub data: Vec<EmbeddingItem>,
    pub usage: EmbeddingUsage,
}

#[derive(Serialize)]
pub(crate) struct EmbeddingItem {
    pub index: usize,
    pub object: &'static str,
    pub embedding: EmbeddingData,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum EmbeddingData {
    Floats([f32; EMBEDDING_DIMS]),
    Base64(String),
}

#[derive(Serialize)]
pub(crate) struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Serialize)]
pub(crate) struct ModelList<'a> {
    pub object: &'static str,
    pub data: Vec<ModelCard<'a>>,
}

#[derive(Serialize)]
pub(crate) struct ModelCard<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'a str,
}

// ---- errors ----

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorInner<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorInner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<()>,
    code: Option<&'a str>,
}

#[derive(Serialize)]
struct VllmError<'a> {
    error: VllmErrorInner<'a>,
}

#[derive(Serialize)]
struct VllmErrorInner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<()>,
    code: u16,
}

#[derive(Serialize)]
struct FlatError<'a> {
    object: &'static str,
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<()>,
    code: u16,
}

/// vLLM-style error type names (`HTTPStatus` phrase + "Error").
fn vllm_type(status: u16) -> &'static str {
    match status {
        400 => "BadRequestError",
        401 => "UnauthorizedError",
        403 => "ForbiddenError",
        404 => "NotFoundError",
        408 => "RequestTimeoutError",
        413 => "RequestEntityTooLargeError",
        422 => "UnprocessableEntityError",
        429 => "TooManyRequestsError",
        500 => "InternalServerError",
        501 => "NotImplementedError",
        502 => "BadGatewayError",
        503 => "ServiceUnavailableError",
        504 => "GatewayTimeoutError",
        s if s < 500 => "BadRequestError",
        _ => "InternalServerError",
    }
}

/// OpenAI-style `(type, code)` for a status.
fn openai_type(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("invalid_request_error", Some("permission_denied")),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("rate_limit_error", Some("rate_limit_exceeded")),
        s if s < 500 => ("invalid_request_error", None),
        503 => ("server_error", Some("service_unavailable")),
        _ => ("server_error", None),
    }
}

pub(crate) fn error_body(shape: ErrorBody, status: u16, message: &str) -> Bytes {
    let res = match shape {
        ErrorBody::OpenAi => {
            let (kind, code) = openai_type(status);
            serde_json::to_vec(&OpenAiError {
                error: OpenAiErrorInner {
                    message,
                    kind,
                    param: None,
                    code,
                },
            })
        }
        ErrorBody::VllmIntCode => serde_json::to_vec(&VllmError {
            error: VllmErrorInner {
                message,
                kind: vllm_type(status),
                param: None,
                code: status,
            },
        }),
        ErrorBody::FlatObject => serde_json::to_vec(&FlatError {
            object: "error",
            message,
            kind: vllm_type(status),
            param: None,
            code: status,
        }),
    };
    Bytes::from(res.unwrap_or_default())
}

/// `data: {json}\n\n` for one SSE event.
pub(crate) fn sse<T: Serialize>(event: &T) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"data: ");
    // Serializing these plain structs into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut buf, event);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

pub(crate) const SSE_DONE: &[u8] = b"data: [DONE]\n\n";
