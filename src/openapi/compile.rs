//! An OpenAPI document compiled for run-time enforcement ([`CompiledSpec`]): the path
//! templates in a [`PathMatcher`], the methods of each path, and per operation its request
//! body: whether it is required, its media types, and a compiled JSON Schema validator for
//! each JSON one (`application/json`, `*/*+json`, and the ranges `application/*`, `*/*`).
//!
//! - **Base path.** When `servers[0].url` has a path (`/v3`, `https://pay.internal/v3`, with
//!   `{variables}` replaced by their defaults), requests are matched below it: the request's
//!   path after the `API`'s prefix must start with it, and what follows is matched against
//!   `paths`. Anything outside it is an undeclared path. Operation- and path-level `servers`
//!   are not read.
//! - **References.** Path items, request bodies and media-type schemas may be local `$ref`s
//!   (`#/components/requestBodies/NewCharge`), followed at most [`MAX_REF_HOPS`] times; a
//!   reference to another document is an error.
//! - Everything is compiled once, when the configuration is: a spec whose paths or schemas do
//!   not compile is an error naming its place.

use std::collections::HashSet;

use http::Method;
use serde_json::Value;

use super::paths::PathMatcher;
use super::schema::{self, SchemaCompiler};
use super::tape::BodyValidator;
use super::{Spec, SpecVersion};

/// Most `$ref` hops followed to reach a path item, request body or schema.
pub const MAX_REF_HOPS: usize = 16;

/// The HTTP methods a Path Item Object may declare.
const METHODS: &[(&str, Method)] = &[
    ("get", Method::GET),
    ("put", Method::PUT),
    ("post", Method::POST),
    ("delete", Method::DELETE),
    ("options", Method::OPTIONS),
    ("head", Method::HEAD),
    ("patch", Method::PATCH),
    ("trace", Method::TRACE),
];

/// A spec ready to check requests ([`super::check`]).
#[derive(Debug)]
pub struct CompiledSpec {
    pub version: SpecVersion,
    /// `servers[0].url`'s path, without a trailing `/`; `None` when it has none.
    pub(super) base_path: Option<String>,
    pub(super) matcher: PathMatcher,
    pub(super) items: Vec<PathItem>,
    /// Property names the schemas declare: the only ones an error message shows.
    pub(super) names: HashSet<String>,
}

/// One path of `paths`.
#[derive(Debug)]
pub struct PathItem {
    /// As written in the spec (`/charges/{id}`): low cardinality, safe to log.
    pub template: String,
    pub(super) operations: Vec<(Method, Operation)>,
    /// The `Allow` header of a 405: the declared methods, and `HEAD` where `GET` is.
    pub(super) allow: String,
}

/// One operation.
#[derive(Debug, Default)]
pub struct Operation {
    pub(super) body: Option<RequestBody>,
}

/// An operation's `requestBody`.
#[derive(Debug)]
pub struct RequestBody {
    pub(super) required: bool,
    /// Most specific first: exact types, then `type/*`, then `*/*`.
    pub(super) content: Vec<MediaEntry>,
}

/// One media type of a request body.
#[derive(Debug)]
pub struct MediaEntry {
    pub(super) range: MediaRange,
    /// The compiled schema, for a JSON media type (or a range that covers JSON) with one.
    pub(super) validator: Option<BodyValidator>,
}

/// A media type or range, lower case, without parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRange {
    Exact(String),
    /// `application/*`: the type.
    AnySubtype(String),
    Any,
}

impl MediaRange {
    fn parse(text: &str) -> Option<Self> {
        let essence = essence(text);
        let (kind, subtype) = essence.split_once('/')?;
        if kind.is_empty() || subtype.is_empty() {
            return None;
        }
        Some(match (kind, subtype) {
            ("*", "*") => MediaRange::Any,
            ("*", _) => return None,
            (_, "*") => MediaRange::AnySubtype(kind.to_string()),
            _ => MediaRange::Exact(essence),
        })
    }

    /// Whether the request's media type (an essence) is in this range.
    pub(super) fn contains(&self, essence: &str) -> bool {
        match self {
            MediaRange::Exact(exact) => exact == essence,
            MediaRange::AnySubtype(kind) => essence
                .split_once('/')
                .is_some_and(|(request_kind, _)| request_kind == kind),
            MediaRange::Any => true,
        }
    }

    fn specificity(&self) -> u8 {
        match self {
            MediaRange::Exact(_) => 0,
            MediaRange::AnySubtype(_) => 1,
            MediaRange::Any => 2,
        }
    }

    /// Whether a JSON body may be sent under this entry (so its schema is compiled).
    fn covers_json(&self) -> bool {
        match self {
            MediaRange::Exact(exact) => is_json(exact),
            MediaRange::AnySubtype(kind) => kind == "application",
            MediaRange::Any => true,
        }
    }
}

/// A media type's essence: lower case, without parameters (`application/json`).
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `application/json` and every `*/*+json` (`application/merge-patch+json`, ...).
pub fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || essence
            .split_once('/')
            .is_some_and(|(_, subtype)| subtype.ends_with("+json"))
}

impl CompiledSpec {
    /// Compiles `spec`; the error names the place in the spec that does not compile.
    pub fn compile(spec: &Spec) -> Result<Self, String> {
        let mut document = spec.document.clone();
        if spec.version == SpecVersion::V3_0 {
            schema::translate_v30(&mut document)?;
        }
        schema::check_schemas(&document, spec.version)?;
        let compiler = SchemaCompiler::new(&document, spec.version)?;
        let mut matcher = PathMatcher::default();
        let mut items = Vec::new();
        let paths = document.get("paths").and_then(Value::as_object);
        for (template, item) in paths.into_iter().flatten() {
            let at = format!("/paths/{}", escape_pointer(template));
            let (item, item_at) =
                follow(&document, item, &at).map_err(|e| format!("paths.{template}: {e}"))?;
            let item = compile_item(&document, &compiler, template, item, &item_at)
                .map_err(|e| format!("paths.{template}.{e}"))?;
            matcher
                .insert(template, items.len())
                .map_err(|e| e.to_string())?;
            items.push(item);
        }
        Ok(Self {
            version: spec.version,
            base_path: base_path(&document)?,
            matcher,
            names: schema::declared_names(&document),
            items,
        })
    }

    /// The number of paths the spec declares.
    pub fn paths(&self) -> usize {
        self.items.len()
    }
}

fn compile_item(
    document: &Value,
    compiler: &SchemaCompiler<'_>,
    template: &str,
    item: &Value,
    item_at: &str,
) -> Result<PathItem, String> {
    let mut operations = Vec::new();
    for (name, method) in METHODS {
        let Some(operation) = item.get(*name) else {
            continue;
        };
        let at = format!("{item_at}/{name}");
        let body = match operation.get("requestBody") {
            None => None,
            Some(body) => Some(
                compile_body(document, compiler, body, &format!("{at}/requestBody"))
                    .map_err(|e| format!("{name}.requestBody: {e}"))?,
            ),
        };
        operations.push((method.clone(), Operation { body }));
    }
    let mut allow: Vec<&str> = operations.iter().map(|(m, _)| m.as_str()).collect();
    if allow.contains(&"GET") && !allow.contains(&"HEAD") {
        allow.push("HEAD");
    }
    Ok(PathItem {
        template: template.to_string(),
        allow: allow.join(", "),
        operations,
    })
}

fn compile_body(
    document: &Value,
    compiler: &SchemaCompiler<'_>,
    body: &Value,
    at: &str,
) -> Result<RequestBody, String> {
    let (body, body_at) = follow(document, body, at)?;
    let required = match body.get("required") {
        None => false,
        Some(Value::Bool(required)) => *required,
        Some(_) => return Err("`required` must be true or false".into()),
    };
    let mut content = Vec::new();
    let entries = body.get("content").and_then(Value::as_object);
    for (media, object) in entries.into_iter().flatten() {
        let range = MediaRange::parse(media)
            .ok_or_else(|| format!("content: {media:?} is not a media type or range"))?;
        let validator = match object.get("schema") {
            Some(_) if range.covers_json() => {
                let pointer = format!("{body_at}/content/{}/schema", escape_pointer(media));
                Some(
                    compiler
                        .validator(&pointer)
                        .map_err(|e| format!("content.{media}.schema: {e}"))?,
                )
            }
            _ => None,
        };
        content.push(MediaEntry { range, validator });
    }
    content.sort_by_key(|entry| entry.range.specificity());
    Ok(RequestBody { required, content })
}

/// `value`, or what its local `$ref` points to (followed up to [`MAX_REF_HOPS`] times), with
/// its JSON pointer in `document`.
fn follow<'a>(
    document: &'a Value,
    mut value: &'a Value,
    at: &str,
) -> Result<(&'a Value, String), String> {
    let mut pointer = at.to_string();
    for _ in 0..=MAX_REF_HOPS {
        let Some(reference) = value.get("$ref") else {
            return Ok((value, pointer));
        };
        let target = reference
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .ok_or_else(|| {
                format!("$ref {reference}: only references inside the spec (#/...) are read")
            })?;
        value = document
            .pointer(&percent_decode(target))
            .ok_or_else(|| format!("$ref {reference} does not resolve"))?;
        pointer = percent_decode(target);
    }
    Err(format!("more than {MAX_REF_HOPS} $ref hops"))
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A JSON pointer's token for `key` (`/` is `~1`, `~` is `~0`).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `servers[0].url`'s path part, its variables replaced by their defaults.
fn base_path(document: &Value) -> Result<Option<String>, String> {
    let Some(server) = document
        .get("servers")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
    else {
        return Ok(None);
    };
    let Some(url) = server.get("url").and_then(Value::as_str) else {
        return Err("servers[0].url: expected a string".into());
    };
    let mut url = url.to_string();
    let variables = server.get("variables").and_then(Value::as_object);
    for (name, variable) in variables.into_iter().flatten() {
        let default = variable
            .get("default")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("servers[0].variables.{name}: no default"))?;
        url = url.replace(&format!("{{{name}}}"), default);
    }
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |at| &rest[at..]),
        None => url.as_str(),
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.contains(['{', '}']) {
        return Err(format!(
            "servers[0].url: the path {path:?} has a variable without a default"
        ));
    }
    let path = path.trim_end_matches('/');
    Ok((!path.is_empty() && path.starts_with('/')).then(|| path.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::openapi::document::parse;

    #[test]
    fn base_path_comes_from_the_first_server() {
        let base = |servers: &str| {
            let spec = parse(&format!(
                "openapi: 3.0.3\npaths: {{}}\nservers: {servers}\n"
            ))
            .unwrap();
            CompiledSpec::compile(&spec).map(|c| c.base_path)
        };
        assert_eq!(base("[{url: /v3}]"), Ok(Some("/v3".into())));
        assert_eq!(
            base("[{url: 'https://pay.internal/v3/'}]"),
            Ok(Some("/v3".into()))
        );
        assert_eq!(base("[{url: 'https://pay.internal'}]"), Ok(None));
        assert_eq!(
            base("[{url: 'https://pay.internal/'}, {url: /v9}]"),
            Ok(None)
        );
        assert_eq!(
            base("[{url: 'https://{host}/api/{version}', variables: {host: {default: a}, version: {default: v2}}}]"),
            Ok(Some("/api/v2".into()))
        );
        assert!(base("[{url: '/api/{version}'}]").is_err());
    }

    #[test]
    fn bodies_by_reference_and_media_ranges_most_specific_first() {
        let spec = parse(
            r##"
openapi: 3.0.3
paths:
  /charges:
    post:
      requestBody: {$ref: '#/components/requestBodies/NewCharge'}
    get: {}
components:
  requestBodies:
    NewCharge:
      required: true
      content:
        '*/*': {}
        'application/json; charset=utf-8': {schema: {$ref: '#/components/schemas/Charge'}}
        'text/*': {}
  schemas:
    Charge: {type: object}
"##,
        )
        .unwrap();
        let compiled = CompiledSpec::compile(&spec).unwrap();
        assert_eq!(compiled.paths(), 1);
        let item = &compiled.items[0];
        assert_eq!(item.allow, "GET, POST, HEAD");
        let post = &item
            .operations
            .iter()
            .find(|(m, _)| *m == Method::POST)
            .unwrap()
            .1;
        let body = post.body.as_ref().unwrap();
        assert!(body.required);
        let ranges: Vec<&MediaRange> = body.content.iter().map(|e| &e.range).collect();
        assert_eq!(
            ranges,
            vec![
                &MediaRange::Exact("application/json".into()),
                &MediaRange::AnySubtype("text".into()),
                &MediaRange::Any
            ]
        );
        assert!(body.content[0].validator.is_some());
        assert!(
            body.content[2].validator.is_none(),
            "no schema, no validator"
        );
    }

    #[test]
    fn what_does_not_compile_is_named() {
        let error = |text: &str| CompiledSpec::compile(&parse(text).unwrap()).unwrap_err();
        let e = error("openapi: 3.1.0\npaths:\n  /a:\n    post:\n      requestBody: {$ref: 'other.yaml#/x'}\n");
        assert!(
            e.contains("paths./a.post.requestBody") && e.contains("inside the spec"),
            "{e}"
        );
        let e = error(
            "openapi: 3.1.0\npaths:\n  /a:\n    post:\n      requestBody: {$ref: '#/nope'}\n",
        );
        assert!(e.contains("does not resolve"), "{e}");
        let e = error("openapi: 3.1.0\npaths:\n  '/a/{id':\n    get: {}\n");
        assert!(e.contains("/a/{id"), "{e}");
        let e = error("openapi: 3.1.0\npaths:\n  /a:\n    post:\n      requestBody:\n        content:\n          application/json: {schema: {type: integr}}\n");
        assert!(
            e.contains("paths./a.post.requestBody.content.application/json.schema"),
            "{e}"
        );
        let e = error("openapi: 3.1.0\npaths:\n  /a:\n    post:\n      requestBody:\n        content:\n          json: {}\n");
        assert!(e.contains("not a media type"), "{e}");
        let loop_ = "openapi: 3.1.0\npaths:\n  /a: {$ref: '#/components/pathItems/A'}\ncomponents:\n  pathItems:\n    A: {$ref: '#/components/pathItems/A'}\n";
        assert!(error(loop_).contains("hops"));
    }

    #[test]
    fn media_types_and_json() {
        assert!(is_json("application/json"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("application/jsonx"));
        assert!(!is_json("text/plain"));
        assert_eq!(
            essence(" Application/JSON ; charset=UTF-8"),
            "application/json"
        );
        assert!(MediaRange::AnySubtype("application".into()).contains("application/json"));
        assert!(!MediaRange::AnySubtype("application".into()).contains("text/json"));
    }
}
