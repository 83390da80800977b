//! The JSON Schemas of request bodies, compiled with `jsonschema`.
//!
//! - **Dialects.** OpenAPI 3.1's Schema Object is JSON Schema 2020-12 and is taken as it is.
//!   OpenAPI 3.0's is a dialect of draft 4 (wright-00) with changes; [`translate_v30`] rewrites
//!   what changes a verdict into draft 4, in place, at every schema position the request side
//!   reaches (`components.schemas`, `components.requestBodies`, each operation's
//!   `requestBody`): `nullable: true` adds `null` to `type` (and to `enum`), or, beside
//!   `allOf`/`$ref`, makes the schema `anyOf: [{type: null}, ...]`; a property marked
//!   `readOnly` is not required in a request (OpenAPI 3.0: "required ... on the response
//!   only"); an empty `required` and an `exclusiveMinimum`/`exclusiveMaximum` without its
//!   bound are dropped (draft 4 refuses both); `id` is dropped (not an OpenAPI 3.0 keyword, a
//!   base URI in draft 4). Draft 4 already reads boolean `exclusiveMinimum`/`exclusiveMaximum`
//!   as 3.0 does. `discriminator`, `xml`, `example`, `externalDocs`, `deprecated` and
//!   `writeOnly` are annotations, ignored.
//! - **References.** The whole (translated) document is registered as one resource, and each
//!   body's validator is `{"$ref": "<document>#/<pointer to its schema>"}`, so local `$ref`s
//!   (`#/components/schemas/Charge`) resolve as JSON pointers into it, recursive schemas
//!   included. Nothing is retrieved: a reference to another document is an error when the
//!   spec is compiled.
//! - **Bounds.** Every schema is checked against its draft's meta-schema first, so a schema
//!   that would not compile is reported with its place. `pattern` uses the `regex` engine
//!   (linear time in the body's size, compiled programs bounded in size): a pattern with
//!   look-around or back-references is refused when the spec is compiled. `format` is
//!   asserted (`date-time`, `email`, `uuid`, ...; unknown formats are ignored).
//! - **Errors without values.** [`describe`] turns a validation error into a message from the
//!   error's kind and the schema's own values (a limit, a required property's name, a
//!   pattern), never the body's, with the instance's JSON pointer in which property names the
//!   spec does not declare are shown as `*`.

use std::collections::HashSet;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, PatternOptions, Registry, Retrieve, Uri, ValidationError};

use super::tape::{BodyJson, BodyValidator};
use serde_json::{Map, Value};

use super::SpecVersion;

/// The URI the document is registered at; never fetched.
const DOCUMENT_URI: &str = "https://openapi.airgate.invalid/spec.json";

/// Deepest schema nesting translated; deeper is refused (the YAML reader stops at 128).
const MAX_DEPTH: usize = 256;

/// Bound of a compiled `pattern` program (bytes), and of its lazy DFA's cache.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The draft a spec's schemas are compiled with.
pub fn draft(version: SpecVersion) -> Draft {
    match version {
        SpecVersion::V3_0 => Draft::Draft4,
        SpecVersion::V3_1 => Draft::Draft202012,
    }
}

/// Rewrites OpenAPI 3.0 schemas into draft 4, in place (see the module documentation).
pub fn translate_v30(document: &mut Value) -> Result<(), String> {
    for (pointer, schema) in schema_roots_mut(document) {
        translate_schema(schema, 0).map_err(|e| format!("{pointer}: {e}"))?;
    }
    Ok(())
}

/// Every schema position of the request side: `(pointer, schema)`.
fn schema_roots_mut(document: &mut Value) -> Vec<(String, &mut Value)> {
    let mut roots = Vec::new();
    let Some(document) = document.as_object_mut() else {
        return roots;
    };
    let (components, paths) = split_two(document, "components", "paths");
    if let Some(components) = components.and_then(Value::as_object_mut) {
        let (schemas, bodies) = split_two(components, "schemas", "requestBodies");
        if let Some(schemas) = schemas.and_then(Value::as_object_mut) {
            for (name, schema) in schemas {
                roots.push((format!("components.schemas.{name}"), schema));
            }
        }
        if let Some(bodies) = bodies.and_then(Value::as_object_mut) {
            for (name, body) in bodies {
                let at = format!("components.requestBodies.{name}");
                roots.extend(media_schemas_mut(body, &at));
            }
        }
    }
    if let Some(paths) = paths.and_then(Value::as_object_mut) {
        for (path, item) in paths {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item {
                if let Some(body) = operation.get_mut("requestBody") {
                    let at = format!("paths.{path}.{method}.requestBody");
                    roots.extend(media_schemas_mut(body, &at));
                }
            }
        }
    }
    roots
}

/// Two members of one map, mutably.
fn split_two<'a>(
    map: &'a mut Map<String, Value>,
    first: &str,
    second: &str,
) -> (Option<&'a mut Value>, Option<&'a mut Value>) {
    let mut a = None;
    let mut b = None;
    for (key, value) in map.iter_mut() {
        if key == first {
            a = Some(value);
        } else if key == second {
            b = Some(value);
        }
    }
    (a, b)
}

/// The `schema` of each media type of a Request Body Object.
fn media_schemas_mut<'a>(body: &'a mut Value, at: &str) -> Vec<(String, &'a mut Value)> {
    let Some(content) = body.get_mut("content").and_then(Value::as_object_mut) else {
        return Vec::new();
    };
    content
        .iter_mut()
        .filter_map(|(media, object)| {
            let schema = object.get_mut("schema")?;
            Some((format!("{at}.content.{media}.schema"), schema))
        })
        .collect()
}

fn translate_schema(schema: &mut Value, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("schemas nested deeper than {MAX_DEPTH} levels"));
    }
    let Some(object) = schema.as_object_mut() else {
        return Ok(());
    };
    // children first: a wrap below moves this object's members
    for key in ["properties", "patternProperties"] {
        if let Some(children) = object.get_mut(key).and_then(Value::as_object_mut) {
            for child in children.values_mut() {
                translate_schema(child, depth + 1)?;
            }
        }
    }
    for key in ["additionalProperties", "items", "not"] {
        if let Some(child) = object.get_mut(key) {
            if child.is_object() {
                translate_schema(child, depth + 1)?;
            } else if let Some(items) = child.as_array_mut() {
                for item in items {
                    translate_schema(item, depth + 1)?;
                }
            }
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(children) = object.get_mut(key).and_then(Value::as_array_mut) {
            for child in children {
                translate_schema(child, depth + 1)?;
            }
        }
    }
    read_only_not_required(object);
    if object
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        object.remove("required");
    }
    for (exclusive, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if object.get(exclusive).is_some_and(Value::is_boolean) && !object.contains_key(bound) {
            object.remove(exclusive);
        }
    }
    if object.get("id").is_some_and(Value::is_string) {
        object.remove("id");
    }
    let nullable = object.remove("nullable") == Some(Value::Bool(true));
    if nullable {
        allow_null(schema);
    }
    Ok(())
}

/// OpenAPI 3.0: "If the property is marked as readOnly being true and is in the required
/// list, the required will take effect on the response only."
fn read_only_not_required(object: &mut Map<String, Value>) {
    let read_only: Vec<String> = object
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, schema)| schema.get("readOnly") == Some(&Value::Bool(true)))
        .map(|(name, _)| name.clone())
        .collect();
    if read_only.is_empty() {
        return;
    }
    if let Some(required) = object.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|name| {
            !name
                .as_str()
                .is_some_and(|n| read_only.contains(&n.to_string()))
        });
    }
}

/// `nullable: true` in draft 4 terms.
fn allow_null(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let null = Value::String("null".into());
    match object.get_mut("type") {
        Some(Value::String(single)) => {
            let single = Value::String(std::mem::take(single));
            object.insert("type".into(), Value::Array(vec![single, null.clone()]));
        }
        Some(Value::Array(types)) if !types.contains(&null) => types.push(null.clone()),
        _ => {}
    }
    if let Some(values) = object.get_mut("enum").and_then(Value::as_array_mut) {
        if !values.contains(&Value::Null) {
            values.push(Value::Null);
        }
    }
    if object.contains_key("type") {
        return;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = object.get_mut(key).and_then(Value::as_array_mut) {
            options.push(serde_json::json!({"type": "null"}));
            return;
        }
    }
    // `allOf` cannot take null as one more member, and draft 4 ignores the siblings of `$ref`:
    // null or the schema as it was
    if object.contains_key("allOf") || object.contains_key("$ref") {
        let inner = std::mem::take(object);
        object.insert(
            "anyOf".into(),
            Value::Array(vec![
                serde_json::json!({"type": "null"}),
                Value::Object(inner),
            ]),
        );
    }
}

/// The request-side schemas of `document`, each checked against its draft's meta-schema.
pub fn check_schemas(document: &Value, version: SpecVersion) -> Result<(), String> {
    let mut document = document.clone();
    for (pointer, schema) in schema_roots_mut(&mut document) {
        let checked = match version {
            SpecVersion::V3_0 => jsonschema::draft4::meta::validate(schema),
            SpecVersion::V3_1 => jsonschema::draft202012::meta::validate(schema),
        };
        if let Err(error) = checked {
            let at = error.instance_path().as_str();
            let place = if at.is_empty() { "/" } else { at };
            return Err(format!(
                "{pointer}: not a valid {} schema at {place} (keyword {})",
                dialect_name(version),
                error.kind().keyword()
            ));
        }
    }
    Ok(())
}

fn dialect_name(version: SpecVersion) -> &'static str {
    match version {
        SpecVersion::V3_0 => "OpenAPI 3.0 (JSON Schema draft 4)",
        SpecVersion::V3_1 => "JSON Schema 2020-12",
    }
}

/// Refuses every retrieval: a spec is compiled from itself alone.
struct NoRetrieval;

impl Retrieve for NoRetrieval {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("{uri} is not fetched: only references inside the spec are resolved").into())
    }
}

/// Builds validators for schemas of one document, found by JSON pointer.
pub struct SchemaCompiler<'a> {
    registry: Registry<'a>,
    draft: Draft,
}

impl<'a> SchemaCompiler<'a> {
    /// Registers `document` (already translated when it is OpenAPI 3.0).
    pub fn new(document: &'a Value, version: SpecVersion) -> Result<Self, String> {
        let draft = draft(version);
        let registry = Registry::new()
            .retriever(NoRetrieval)
            .retrieve_known_draft_meta_schemas(false)
            .add(DOCUMENT_URI, draft.create_resource_ref(document))
            .and_then(|builder| builder.prepare())
            .map_err(|e| format!("the spec's schemas: {e}"))?;
        Ok(Self { registry, draft })
    }

    /// A validator for the schema at `pointer` (a JSON pointer into the document).
    pub fn validator(&self, pointer: &str) -> Result<BodyValidator, String> {
        let root =
            serde_json::json!({ "$ref": format!("{DOCUMENT_URI}#{}", escape_fragment(pointer)) });
        jsonschema::options_for::<BodyJson>()
            .with_draft(self.draft)
            .with_registry(&self.registry)
            .with_retriever(NoRetrieval)
            .with_pattern_options(
                PatternOptions::regex()
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT),
            )
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| compile_error(&e))
    }
}

/// A JSON pointer as a URI fragment: the characters a fragment cannot hold, percent-encoded.
fn escape_fragment(pointer: &str) -> String {
    const FRAGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'[')
        .add(b']')
        .add(b'\\')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    percent_encoding::utf8_percent_encode(pointer, FRAGMENT).to_string()
}

/// A schema that does not compile: its place and the reason, shortened.
fn compile_error(error: &ValidationError<'_>) -> String {
    let mut text = error.to_string();
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    match error.kind() {
        ValidationErrorKind::Referencing(_) => format!("a $ref does not resolve: {text}"),
        _ => format!("a schema does not compile: {text}"),
    }
}

/// Every property name the document's schemas declare (`properties` keys and `required`
/// entries): the names an error message may show.
pub fn declared_names(document: &Value) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut stack = vec![document];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(properties) = map.get("properties").and_then(Value::as_object) {
                    names.extend(properties.keys().cloned());
                }
                if let Some(required) = map.get("required").and_then(Value::as_array) {
                    names.extend(
                        required
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string),
                    );
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names
}

/// A body's schema violation, in words that carry no value of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// The instance's JSON pointer, undeclared property names as `*`; `""` for the root.
    pub pointer: String,
    /// The schema keyword that failed (`type`, `required`, ...).
    pub keyword: String,
    /// What is wrong, e.g. `must be an integer`.
    pub reason: String,
}

/// Describes `error`, found validating `instance` (see the module documentation).
pub fn describe(
    error: &ValidationError<'_>,
    instance: &Value,
    names: &HashSet<String>,
) -> SchemaViolation {
    SchemaViolation {
        pointer: masked_pointer(error.instance_path().as_str(), instance, names),
        keyword: error.kind().keyword().to_string(),
        reason: reason(error.kind()),
    }
}

/// The pointer, walked through `instance` so that an array index is told from an object key
/// made of digits; keys the spec does not declare are shown as `*`.
fn masked_pointer(pointer: &str, instance: &Value, names: &HashSet<String>) -> String {
    let mut out = String::new();
    let mut at = Some(instance);
    for raw in pointer.split('/').skip(1) {
        let key = raw.replace("~1", "/").replace("~0", "~");
        out.push('/');
        match at {
            Some(Value::Array(items)) => {
                out.push_str(raw);
                at = key.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            Some(Value::Object(map)) => {
                if names.contains(&key) {
                    out.push_str(raw);
                } else {
                    out.push('*');
                }
                at = map.get(&key);
            }
            _ => {
                out.push('*');
                at = None;
            }
        }
    }
    out
}

fn reason(kind: &ValidationErrorKind) -> String {
    use ValidationErrorKind as K;
    match kind {
        K::Type { kind } => format!("must be {}", type_words(kind)),
        K::Required { property } => match property.as_str() {
            Some(name) => format!("missing required property {name:?}"),
            None => "missing a required property".to_string(),
        },
        K::AdditionalProperties { unexpected } => format!(
            "has {} propert{} the schema does not allow",
            unexpected.len(),
            if unexpected.len() == 1 { "y" } else { "ies" }
        ),
        K::Minimum { limit } => format!("must be >= {limit}"),
        K::Maximum { limit } => format!("must be <= {limit}"),
        K::ExclusiveMinimum { limit } => format!("must be > {limit}"),
        K::ExclusiveMaximum { limit } => format!("must be < {limit}"),
        K::MultipleOf { multiple_of } => format!("must be a multiple of {multiple_of}"),
        K::MinLength { limit } => format!("must be at least {limit} characters long"),
        K::MaxLength { limit } => format!("must be at most {limit} characters long"),
        K::MinItems { limit } => format!("must have at least {limit} items"),
        K::MaxItems { limit } => format!("must have at most {limit} items"),
        K::MinProperties { limit } => format!("must have at least {limit} properties"),
        K::MaxProperties { limit } => format!("must have at most {limit} properties"),
        K::UniqueItems => "must not have duplicate items".to_string(),
        K::Enum { .. } => "must be one of the values the schema lists".to_string(),
        K::Constant { .. } => "must be the value the schema sets".to_string(),
        K::Pattern { pattern } => format!("must match the pattern {pattern:?}"),
        K::BacktrackLimitExceeded { .. } | K::RegexEngineFailure { .. } => {
            "could not be checked against the schema's pattern".to_string()
        }
        K::Format { format } => format!("must be a valid {format}"),
        K::AnyOf { .. } => "must match at least one of the schemas of anyOf".to_string(),
        K::OneOfNotValid { .. } => "must match one of the schemas of oneOf".to_string(),
        K::OneOfMultipleValid { .. } => {
            "must match exactly one of the schemas of oneOf, and matches several".to_string()
        }
        K::Not { .. } => "must not match the schema of not".to_string(),
        K::FalseSchema => "is not allowed here".to_string(),
        K::Contains => "must contain an item that matches the schema of contains".to_string(),
        K::AdditionalItems { limit } => format!("must have at most {limit} items"),
        K::PropertyNames { .. } => "has a property name the schema does not allow".to_string(),
        K::UnevaluatedItems { .. } => "has items the schema does not allow".to_string(),
        K::UnevaluatedProperties { .. } => "has properties the schema does not allow".to_string(),
        K::ContentEncoding { content_encoding } => {
            format!("must be encoded as {content_encoding}")
        }
        K::FromUtf8 { .. } => "must decode to UTF-8 text".to_string(),
        K::ContentMediaType { content_media_type } => {
            format!("must be a valid {content_media_type} document")
        }
        K::Custom { keyword, .. } => format!("does not satisfy {keyword}"),
        K::Referencing(_) => "could not be checked: a schema reference does not resolve".into(),
    }
}

fn type_words(kind: &TypeKind) -> String {
    let word = |t: jsonschema::JsonType| -> &'static str {
        match t {
            jsonschema::JsonType::Null => "null",
            jsonschema::JsonType::Boolean => "a boolean",
            jsonschema::JsonType::Integer => "an integer",
            jsonschema::JsonType::Number => "a number",
            jsonschema::JsonType::String => "a string",
            jsonschema::JsonType::Array => "an array",
            jsonschema::JsonType::Object => "an object",
        }
    };
    match kind {
        TypeKind::Single(t) => word(*t).to_string(),
        TypeKind::Multiple(set) => set.iter().map(word).collect::<Vec<_>>().join(" or "),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v30(schemas: Value) -> Value {
        let mut doc = json!({"openapi": "3.0.3", "paths": {}, "components": {"schemas": schemas}});
        translate_v30(&mut doc).unwrap();
        doc
    }

    /// Whether `validator` accepts `value`, parsed as a request body would be.
    fn accepts(validator: &BodyValidator, value: Value) -> bool {
        let text = serde_json::to_vec(&value).unwrap();
        validator.is_valid(crate::openapi::json::parse(&text).unwrap().root())
    }

    fn validator(doc: &Value, version: SpecVersion, pointer: &str) -> BodyValidator {
        SchemaCompiler::new(doc, version)
            .unwrap()
            .validator(pointer)
            .unwrap()
    }

    #[test]
    fn nullable_adds_null_to_type_and_enum() {
        let doc = v30(json!({
            "Amount": {"type": "integer", "nullable": true},
            "Currency": {"type": "string", "enum": ["EUR", "USD"], "nullable": true},
            "Plain": {"type": "integer"},
            "NotNullable": {"type": "integer", "nullable": false}
        }));
        assert_eq!(
            doc["components"]["schemas"]["Amount"],
            json!({"type": ["integer", "null"]})
        );
        let amount = validator(&doc, SpecVersion::V3_0, "/components/schemas/Amount");
        assert!(accepts(&amount, json!(null)));
        assert!(accepts(&amount, json!(5)));
        assert!(!accepts(&amount, json!("5")));
        let currency = validator(&doc, SpecVersion::V3_0, "/components/schemas/Currency");
        assert!(accepts(&currency, json!(null)));
        assert!(!accepts(&currency, json!("GBP")));
        for plain in ["Plain", "NotNullable"] {
            let v = validator(
                &doc,
                SpecVersion::V3_0,
                &format!("/components/schemas/{plain}"),
            );
            assert!(!accepts(&v, json!(null)), "{plain}");
        }
    }

    #[test]
    fn nullable_beside_a_ref_or_all_of_allows_null_or_the_referenced_schema() {
        let doc = v30(json!({
            "Card": {"type": "object", "required": ["last4"], "properties": {"last4": {"type": "string"}}},
            "ByRef": {"$ref": "#/components/schemas/Card", "nullable": true},
            "ByAllOf": {"allOf": [{"$ref": "#/components/schemas/Card"}], "nullable": true},
            "ByOneOf": {"oneOf": [{"type": "integer"}, {"type": "string"}], "nullable": true}
        }));
        for name in ["ByRef", "ByAllOf", "ByOneOf"] {
            let v = validator(
                &doc,
                SpecVersion::V3_0,
                &format!("/components/schemas/{name}"),
            );
            assert!(accepts(&v, json!(null)), "{name}");
            assert!(!accepts(&v, json!([])), "{name}");
        }
        let by_ref = validator(&doc, SpecVersion::V3_0, "/components/schemas/ByRef");
        assert!(accepts(&by_ref, json!({"last4": "4242"})));
        assert!(!accepts(&by_ref, json!({})));
    }

    #[test]
    fn boolean_exclusive_bounds_read_as_openapi_3_0_says() {
        let doc = v30(json!({
            "Positive": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
            "Lonely": {"type": "number", "exclusiveMaximum": true}
        }));
        let positive = validator(&doc, SpecVersion::V3_0, "/components/schemas/Positive");
        assert!(!accepts(&positive, json!(0)));
        assert!(accepts(&positive, json!(0.01)));
        assert!(doc["components"]["schemas"]["Lonely"]
            .get("exclusiveMaximum")
            .is_none());
        check_schemas(&doc, SpecVersion::V3_0).unwrap();
    }

    #[test]
    fn read_only_properties_are_not_required_in_a_request() {
        let doc = v30(json!({
            "Charge": {
                "type": "object",
                "required": ["id", "amount"],
                "properties": {"id": {"type": "string", "readOnly": true}, "amount": {"type": "integer"}}
            },
            "Empty": {"type": "object", "required": []}
        }));
        let charge = validator(&doc, SpecVersion::V3_0, "/components/schemas/Charge");
        assert!(accepts(&charge, json!({"amount": 5})));
        assert!(!accepts(&charge, json!({"id": "x"})));
        assert!(doc["components"]["schemas"]["Empty"]
            .get("required")
            .is_none());
    }

    #[test]
    fn nested_schemas_are_translated_and_3_1_is_left_as_it_is() {
        let doc = v30(json!({
            "Outer": {
                "type": "object",
                "properties": {"inner": {"type": "array", "items": {"type": "string", "nullable": true}}}
            }
        }));
        let outer = validator(&doc, SpecVersion::V3_0, "/components/schemas/Outer");
        assert!(accepts(&outer, json!({"inner": ["a", null]})));
        let v31 = json!({"openapi": "3.1.0", "components": {"schemas": {
            "Amount": {"type": ["integer", "null"], "exclusiveMinimum": 0}
        }}});
        let amount = validator(&v31, SpecVersion::V3_1, "/components/schemas/Amount");
        assert!(accepts(&amount, json!(null)));
        assert!(!accepts(&amount, json!(0)));
        assert!(accepts(&amount, json!(1)));
    }

    #[test]
    fn invalid_schemas_and_outside_references_are_refused_at_compile() {
        let bad = v30(json!({"Bad": {"type": "integr"}}));
        let error = check_schemas(&bad, SpecVersion::V3_0).unwrap_err();
        assert!(error.contains("components.schemas.Bad"), "{error}");
        let draft3 =
            v30(json!({"Old": {"type": "object", "properties": {"a": {"required": true}}}}));
        assert!(check_schemas(&draft3, SpecVersion::V3_0).is_err());
        let bool_in_31 =
            json!({"components": {"schemas": {"A": {"minimum": 0, "exclusiveMinimum": true}}}});
        assert!(check_schemas(&bool_in_31, SpecVersion::V3_1).is_err());
        let outside = v30(json!({"Ext": {"$ref": "https://schemas.example/charge.json"}}));
        let compiler = SchemaCompiler::new(&outside, SpecVersion::V3_0);
        let error = match compiler {
            Err(e) => e,
            Ok(c) => c.validator("/components/schemas/Ext").unwrap_err(),
        };
        assert!(
            error.contains("not fetched") || error.contains("resolve"),
            "{error}"
        );
        let missing = v30(json!({"Dangling": {"$ref": "#/components/schemas/Nope"}}));
        let compiler = SchemaCompiler::new(&missing, SpecVersion::V3_0).unwrap();
        assert!(compiler.validator("/components/schemas/Dangling").is_err());
    }

    #[test]
    fn patterns_are_linear_time_regexes() {
        let doc = v30(json!({
            "Ok": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "Lookahead": {"type": "string", "pattern": "^(?=a)a$"}
        }));
        let ok = validator(&doc, SpecVersion::V3_0, "/components/schemas/Ok");
        assert!(accepts(&ok, json!("EUR")));
        assert!(!accepts(&ok, json!("EURO")));
        let compiler = SchemaCompiler::new(&doc, SpecVersion::V3_0).unwrap();
        assert!(compiler.validator("/components/schemas/Lookahead").is_err());
    }

    #[test]
    fn a_recursive_schema_compiles_and_validates() {
        let doc = v30(json!({
            "Node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}, "n": {"type": "integer"}}}
        }));
        let node = validator(&doc, SpecVersion::V3_0, "/components/schemas/Node");
        assert!(accepts(
            &node,
            json!({"children": [{"children": [{"n": 1}]}]})
        ));
        assert!(!accepts(
            &node,
            json!({"children": [{"children": [{"n": "x"}]}]})
        ));
    }

    #[test]
    fn messages_name_the_place_and_the_rule_but_no_value() {
        let doc = v30(json!({
            "Pay": {
                "type": "object",
                "required": ["amount", "card"],
                "additionalProperties": false,
                "properties": {
                    "amount": {"type": "integer"},
                    "card": {"type": "string", "pattern": "^[0-9]{16}$"},
                    "meta": {"type": "object", "additionalProperties": {"type": "integer"}}
                }
            }
        }));
        let names = declared_names(&doc);
        let pay = validator(&doc, SpecVersion::V3_0, "/components/schemas/Pay");
        let check = |body: Value| {
            let text = serde_json::to_vec(&body).unwrap();
            let tape = crate::openapi::json::parse(&text).unwrap();
            let error = pay.validate(tape.root()).unwrap_err();
            describe(&error, &body, &names)
        };
        let wrong = check(json!({"amount": "4111111111111111", "card": "4111111111111111"}));
        assert_eq!(wrong.pointer, "/amount");
        assert_eq!(wrong.keyword, "type");
        assert_eq!(wrong.reason, "must be an integer");
        let missing = check(json!({"amount": 1}));
        assert_eq!(
            (missing.pointer.as_str(), missing.keyword.as_str()),
            ("", "required")
        );
        assert_eq!(missing.reason, "missing required property \"card\"");
        let extra = check(json!({"amount": 1, "card": "4111111111111111", "4111111111111111": 1}));
        assert_eq!(extra.keyword, "additionalProperties");
        assert!(!format!("{extra:?}").contains("4111"), "{extra:?}");
        let map_key = check(
            json!({"amount": 1, "card": "4242424242424242", "meta": {"4111111111111111": "x"}}),
        );
        assert_eq!(map_key.pointer, "/meta/*");
        let bad_card = check(json!({"amount": 1, "card": "4111-1111"}));
        assert_eq!(bad_card.pointer, "/card");
        assert!(!format!("{bad_card:?}").contains("4111-1111"));
    }
}
