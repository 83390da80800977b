//! Parsing a request body as JSON for validation, strictly: an object with the same member
//! name twice is refused. Parsers disagree on which of the two counts (`serde_json` keeps the
//! last, others the first), so a body validated with one value could reach the service with
//! the other. The errors say where, never what: no value of the body is quoted.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not JSON the gateway validates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON (or not UTF-8, or nested deeper than 128 levels), at this line and column.
    Syntax { line: usize, column: usize },
    /// An object has the same member name twice.
    DuplicateKey { line: usize, column: usize },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax { line, column } => {
                write!(f, "is not valid JSON (line {line}, column {column})")
            }
            JsonError::DuplicateKey { line, column } => write!(
                f,
                "has an object with the same member name twice (line {line}, column {column})"
            ),
        }
    }
}

/// The marker of a duplicate name in `serde_json`'s error.
const DUPLICATE: &str = "airgate: duplicate member name";

/// Parses `bytes` as one JSON value (whitespace around it allowed).
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|error| {
        let (line, column) = (error.line(), error.column());
        if error.is_data() && error.to_string().starts_with(DUPLICATE) {
            JsonError::DuplicateKey { line, column }
        } else {
            JsonError::Syntax { line, column }
        }
    })
}

/// A JSON value, refusing duplicate member names.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(A::Error::custom(DUPLICATE));
            }
            let value = access.next_value_seed(Strict)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_serde_json_parses() {
        let text = br#" {"a": [1, -2, 3.5, true, null, "x\u00e9"], "b": {"c": {}}, "n": 18446744073709551615} "#;
        assert_eq!(
            parse(text).unwrap(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
        let order = parse(br#"{"z": 1, "a": 2}"#).unwrap();
        assert_eq!(order.as_object().unwrap().keys().next().unwrap(), "z");
    }

    #[test]
    fn duplicate_names_are_refused_at_any_depth() {
        assert_eq!(
            parse(br#"{"amount": 1, "amount": 2}"#),
            Err(JsonError::DuplicateKey {
                line: 1,
                column: 22
            })
        );
        assert!(matches!(
            parse(br#"{"a": [{"k": 1, "k": 1}]}"#),
            Err(JsonError::DuplicateKey { .. })
        ));
        assert!(parse(br#"{"a": {"k": 1}, "b": {"k": 1}}"#).is_ok());
    }

    #[test]
    fn syntax_errors_say_where_and_never_what() {
        for bad in [
            &b"{\"card\": 4111111111111111"[..],
            b"{\"card\": \"4111111111111111\"} trailing",
            b"{\"card\": \"\\ud800\"}",
            b"\xff",
            b"",
            b"{'card': 1}",
        ] {
            let error = parse(bad).unwrap_err();
            assert!(matches!(error, JsonError::Syntax { .. }), "{error:?}");
            assert!(!error.to_string().contains("4111"), "{error}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
