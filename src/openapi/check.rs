//! Checking one request against a [`CompiledSpec`], without HTTP plumbing: the path and method
//! ([`CompiledSpec::operation`]), what to do with the body ([`Operation::body_check`]), and
//! the body itself ([`BodyExpectation::check`]). Every refusal is a [`Violation`], whose
//! message names places and rules, never a value the request carried.

use std::fmt;

use http::Method;

use super::compile::{essence, is_json, CompiledSpec, Operation, PathItem, RequestBody};
use super::json::{self, JsonError};
use super::schema::{self, SchemaViolation};
use super::tape::BodyValidator;

/// How a request departs from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// No path of the spec (below its base path) matches.
    UnknownPath,
    /// The path is declared, the method is not; `allow` lists those that are.
    MethodNotAllowed { allow: String },
    /// The body's media type is not one the operation declares (or none was sent).
    UnsupportedMediaType { declared: Vec<String> },
    /// The operation requires a body and the request has none.
    MissingBody,
    /// The body is not JSON, or has a duplicate member name.
    InvalidJson(JsonError),
    /// The body does not satisfy the operation's schema.
    Schema(SchemaViolation),
}

impl Violation {
    /// Low-cardinality name for metrics, logs and the audit record.
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::UnknownPath => "unknown_path",
            Violation::MethodNotAllowed { .. } => "method_not_allowed",
            Violation::UnsupportedMediaType { .. } => "unsupported_media_type",
            Violation::MissingBody => "missing_body",
            Violation::InvalidJson(_) => "invalid_json",
            Violation::Schema(_) => "schema",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::UnknownPath => {
                f.write_str("the path is not declared by the API's OpenAPI spec")
            }
            Violation::MethodNotAllowed { allow } => {
                write!(
                    f,
                    "the method is not declared for this path (allowed: {allow})"
                )
            }
            Violation::UnsupportedMediaType { declared } if declared.is_empty() => {
                f.write_str("the request body's Content-Type is not one the operation declares")
            }
            Violation::UnsupportedMediaType { declared } => write!(
                f,
                "the request body's Content-Type is not one the operation declares ({})",
                declared.join(", ")
            ),
            Violation::MissingBody => f.write_str("the operation requires a request body"),
            Violation::InvalidJson(error) => write!(f, "request body {error}"),
            Violation::Schema(SchemaViolation {
                pointer,
                keyword,
                reason,
            }) => {
                let place = if pointer.is_empty() {
                    String::new()
                } else {
                    format!(" {pointer}")
                };
                write!(
                    f,
                    "request body{place}: {reason} (schema keyword: {keyword})"
                )
            }
        }
    }
}

/// The path item and operation a request was matched to.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub item: &'a PathItem,
    pub operation: &'a Operation,
}

impl CompiledSpec {
    /// The operation for `method` on `path` (the request's path after the `API`'s prefix,
    /// percent-encoded as received). `HEAD` is allowed where `GET` is.
    pub fn operation(&self, method: &Method, path: &str) -> Result<Matched<'_>, Violation> {
        let path = match &self.base_path {
            None => path,
            Some(base) => match path.strip_prefix(base.as_str()) {
                Some("") => "/",
                Some(rest) if rest.starts_with('/') => rest,
                _ => return Err(Violation::UnknownPath),
            },
        };
        let index = self.matcher.find(path).ok_or(Violation::UnknownPath)?;
        let item = self.items.get(index).ok_or(Violation::UnknownPath)?;
        let wanted = if method == Method::HEAD && !item.declares(&Method::HEAD) {
            &Method::GET
        } else {
            method
        };
        item.operations
            .iter()
            .find(|(declared, _)| declared == wanted)
            .map(|(_, operation)| Matched { item, operation })
            .ok_or_else(|| Violation::MethodNotAllowed {
                allow: item.allow.clone(),
            })
    }
}

impl PathItem {
    fn declares(&self, method: &Method) -> bool {
        self.operations.iter().any(|(m, _)| m == method)
    }
}

/// What to do with a request's body.
#[derive(Debug)]
pub enum BodyCheck<'a> {
    /// Nothing to check: forward it as it comes.
    Pass,
    /// Read it (bounded), then [`BodyExpectation::check`] it.
    Read(BodyExpectation<'a>),
    /// Refused from the headers alone.
    Refuse(Violation),
}

/// What a read body must be.
#[derive(Debug)]
pub struct BodyExpectation<'a> {
    spec: &'a CompiledSpec,
    body: &'a RequestBody,
    /// The schema of the JSON media type the request declared; `None` when no
    /// `Content-Type` was sent (then only an empty body passes).
    validator: Option<&'a BodyValidator>,
}

impl Operation {
    /// Decides from the headers: `content_type` as sent, `empty` when the body is known to be
    /// empty (`Content-Length: 0`, or no body at all).
    pub fn body_check<'a>(
        &'a self,
        spec: &'a CompiledSpec,
        content_type: Option<&[u8]>,
        empty: bool,
    ) -> BodyCheck<'a> {
        let Some(body) = &self.body else {
            return BodyCheck::Pass;
        };
        let unsupported = || {
            BodyCheck::Refuse(Violation::UnsupportedMediaType {
                declared: body.declared(),
            })
        };
        let missing = || {
            if body.required {
                BodyCheck::Refuse(Violation::MissingBody)
            } else {
                BodyCheck::Pass
            }
        };
        let Some(content_type) = content_type else {
            if empty {
                return missing();
            }
            // a body without a type passes only if it turns out empty
            return BodyCheck::Read(BodyExpectation {
                spec,
                body,
                validator: None,
            });
        };
        let Ok(content_type) = std::str::from_utf8(content_type) else {
            return unsupported();
        };
        let essence = essence(content_type);
        let Some(entry) = body.content.iter().find(|e| e.range.contains(&essence)) else {
            return unsupported();
        };
        match &entry.validator {
            Some(validator) if is_json(&essence) => BodyCheck::Read(BodyExpectation {
                spec,
                body,
                validator: Some(validator),
            }),
            _ if empty => missing(),
            _ => BodyCheck::Pass,
        }
    }
}

impl RequestBody {
    fn declared(&self) -> Vec<String> {
        self.content
            .iter()
            .map(|entry| match &entry.range {
                super::compile::MediaRange::Exact(exact) => exact.clone(),
                super::compile::MediaRange::AnySubtype(kind) => format!("{kind}/*"),
                super::compile::MediaRange::Any => "*/*".to_string(),
            })
            .collect()
    }
}

impl BodyExpectation<'_> {
    /// Checks the whole body: present when required, JSON, valid against the schema.
    pub fn check(&self, bytes: &[u8]) -> Result<(), Violation> {
        if bytes.is_empty() {
            return if self.body.required {
                Err(Violation::MissingBody)
            } else {
                Ok(())
            };
        }
        let Some(validator) = self.validator else {
            return Err(Violation::UnsupportedMediaType {
                declared: self.body.declared(),
            });
        };
        let instance = json::parse(bytes).map_err(Violation::InvalidJson)?;
        // the common case asks only for a yes, which skips building the error's location
        if validator.is_valid(instance.root()) {
            return Ok(());
        }
        match validator.validate(instance.root()) {
            Ok(()) => Ok(()),
            Err(error) => Err(Violation::Schema(schema::describe(
                &error,
                &instance.to_value(),
                &self.spec.names,
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::openapi::document::parse;

    const SPEC: &str = r##"
openapi: 3.0.3
servers: [{url: /v3}]
paths:
  /charges:
    get: {}
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/NewCharge'}
  /charges/{id}:
    get: {}
  /charges/{id}/capture:
    post:
      requestBody:
        content:
          application/json: {schema: {type: object}}
          text/plain: {}
components:
  schemas:
    NewCharge:
      type: object
      required: [amount, currency]
      properties:
        amount: {type: integer, minimum: 1}
        currency: {type: string, enum: [EUR, USD]}
"##;

    fn spec() -> CompiledSpec {
        CompiledSpec::compile(&parse(SPEC).unwrap()).unwrap()
    }

    #[test]
    fn paths_and_methods_below_the_base_path() {
        let spec = spec();
        let found = spec.operation(&Method::GET, "/v3/charges/ch_1").unwrap();
        assert_eq!(found.item.template, "/charges/{id}");
        assert!(spec.operation(&Method::HEAD, "/v3/charges/ch_1").is_ok());
        assert_eq!(
            spec.operation(&Method::GET, "/charges").unwrap_err(),
            Violation::UnknownPath
        );
        assert_eq!(
            spec.operation(&Method::GET, "/v3x/charges").unwrap_err(),
            Violation::UnknownPath
        );
        assert_eq!(
            spec.operation(&Method::DELETE, "/v3/charges/ch_1")
                .unwrap_err(),
            Violation::MethodNotAllowed {
                allow: "GET, HEAD".into()
            }
        );
    }

    fn body<'a>(
        spec: &'a CompiledSpec,
        path: &str,
        content_type: Option<&str>,
        empty: bool,
    ) -> BodyCheck<'a> {
        let found = spec.operation(&Method::POST, path).unwrap();
        found
            .operation
            .body_check(spec, content_type.map(str::as_bytes), empty)
    }

    #[test]
    fn the_content_type_decides_what_is_read() {
        let spec = spec();
        assert!(matches!(
            body(
                &spec,
                "/v3/charges",
                Some("application/json; charset=utf-8"),
                false
            ),
            BodyCheck::Read(_)
        ));
        let BodyCheck::Refuse(refused) = body(&spec, "/v3/charges", Some("text/plain"), false)
        else {
            panic!("text/plain accepted");
        };
        assert_eq!(refused.kind(), "unsupported_media_type");
        assert!(
            refused.to_string().contains("application/json"),
            "{refused}"
        );
        assert!(matches!(
            body(&spec, "/v3/charges", None, true),
            BodyCheck::Refuse(Violation::MissingBody)
        ));
        assert!(matches!(
            body(&spec, "/v3/charges/c/capture", Some("text/plain"), false),
            BodyCheck::Pass
        ));
        assert!(matches!(
            body(&spec, "/v3/charges/c/capture", None, true),
            BodyCheck::Pass
        ));
    }

    fn check(spec: &CompiledSpec, bytes: &str) -> Result<(), Violation> {
        let BodyCheck::Read(expectation) =
            body(spec, "/v3/charges", Some("application/json"), false)
        else {
            panic!("not read");
        };
        expectation.check(bytes.as_bytes())
    }

    #[test]
    fn bodies_are_checked_against_the_schema() {
        let spec = spec();
        assert_eq!(check(&spec, r#"{"amount": 5, "currency": "EUR"}"#), Ok(()));
        let wrong = check(&spec, r#"{"amount": "5", "currency": "EUR"}"#).unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "request body /amount: must be an integer (schema keyword: type)"
        );
        let missing = check(&spec, r#"{"amount": 5}"#).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "request body: missing required property \"currency\" (schema keyword: required)"
        );
        assert_eq!(check(&spec, "").unwrap_err(), Violation::MissingBody);
        assert_eq!(
            check(&spec, r#"{"amount": 5, "amount": 6, "currency": "EUR"}"#)
                .unwrap_err()
                .kind(),
            "invalid_json"
        );
        assert_eq!(check(&spec, "{").unwrap_err().kind(), "invalid_json");
    }

    #[test]
    fn a_body_without_content_type_passes_only_when_empty() {
        let spec = spec();
        let found = spec
            .operation(&Method::POST, "/v3/charges/c/capture")
            .unwrap();
        let BodyCheck::Read(expectation) = found.operation.body_check(&spec, None, false) else {
            panic!("not read");
        };
        assert_eq!(expectation.check(b""), Ok(()));
        assert_eq!(
            expectation.check(b"{}").unwrap_err().kind(),
            "unsupported_media_type"
        );
    }
}
