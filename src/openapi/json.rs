//! Parsing a request body as JSON for validation, strictly: an object with the same member
//! name twice is refused. Parsers disagree on which of the two counts (`serde_json` keeps the
//! last, others the first), so a body validated with one value could reach the service with
//! the other. The errors say where, never what: no value of the body is quoted.

use std::fmt;

use std::borrow::Cow;
use std::collections::HashSet;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor,
};
use serde_json::Number;

use super::tape::{next_sibling, Entry, Slot, Tape};

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

/// Parses `bytes` as one JSON value (whitespace around it allowed) into a [`Tape`] that
/// borrows from `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Tape<'_>, JsonError> {
    // about one slot per dozen bytes of a typical body; grown as needed
    let mut slots = Vec::with_capacity(bytes.len() / 12 + 1);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        slots: &mut slots,
        key: None,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    match parsed {
        Ok(()) => Ok(Tape::new(slots)),
        Err(error) => {
            let (line, column) = (error.line(), error.column());
            if error.is_data() && error.to_string().starts_with(DUPLICATE) {
                Err(JsonError::DuplicateKey { line, column })
            } else {
                Err(JsonError::Syntax { line, column })
            }
        }
    }
}

/// Objects with more members than this check for a repeated name with a set rather than by
/// comparing with every earlier name, so that a huge object cannot make the check quadratic.
const SCANNED_MEMBERS: u32 = 32;

/// Appends one JSON value (and its descendants) to the tape, refusing duplicate member names.
/// `key` is the value's member name when it is an object's member.
struct Strict<'t, 'b> {
    slots: &'t mut Vec<Slot<'b>>,
    key: Option<Cow<'b, str>>,
}

impl<'t, 'b> Strict<'t, 'b> {
    fn push(self, value: Entry<'b>) {
        self.open(value);
    }

    /// Pushes a container's slot; its `len` and `end` are set by [`close`] once its members are in.
    fn open(self, value: Entry<'b>) -> (&'t mut Vec<Slot<'b>>, usize) {
        let at = self.slots.len();
        self.slots.push(Slot {
            key: self.key,
            value,
        });
        (self.slots, at)
    }
}

/// Records a container's member count and the end of its subtree.
fn close(slots: &mut [Slot<'_>], at: usize, members: u32) {
    let end = u32::try_from(slots.len()).unwrap_or(u32::MAX);
    if let Some(slot) = slots.get_mut(at) {
        match &mut slot.value {
            Entry::Array { len, end: last } | Entry::Object { len, end: last } => {
                *len = members;
                *last = end;
            }
            _ => {}
        }
    }
}

/// The names of the members already on the tape of the object whose slot is `at` (its own
/// `end` is not known yet: they run to the tape's end, each member's subtree complete).
fn names_so_far<'s>(slots: &'s [Slot<'_>], at: usize) -> impl Iterator<Item = &'s str> {
    let first = u32::try_from(at + 1).unwrap_or(u32::MAX);
    std::iter::successors(Some(first), |&child| Some(next_sibling(slots, child)))
        .map_while(|child| slots.get(child as usize))
        .map(|slot| slot.key.as_deref().unwrap_or(""))
}

impl<'de> DeserializeSeed<'de> for Strict<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.push(Entry::Bool(v));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.push(Entry::Number(v.into()));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.push(Entry::Number(v.into()));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // serde_json's own `Value` does the same with a non-finite number (which JSON cannot
        // write anyway)
        self.push(Number::from_f64(v).map_or(Entry::Null, Entry::Number));
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.push(Entry::String(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.push(Entry::String(Cow::Owned(v.to_string())));
        Ok(())
    }

    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.push(Entry::String(Cow::Owned(v)));
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.push(Entry::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (slots, at) = self.open(Entry::Array { len: 0, end: 0 });
        let mut members = 0u32;
        while seq
            .next_element_seed(Strict {
                slots: &mut *slots,
                key: None,
            })?
            .is_some()
        {
            members = members.saturating_add(1);
        }
        close(slots, at, members);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let (slots, at) = self.open(Entry::Object { len: 0, end: 0 });
        let mut members = 0u32;
        let mut many: Option<HashSet<String>> = None;
        while let Some(Name(name)) = access.next_key()? {
            let repeated = match &mut many {
                None => names_so_far(slots, at).any(|earlier| earlier == name),
                Some(names) => !names.insert(name.to_string()),
            };
            if repeated {
                return Err(A::Error::custom(DUPLICATE));
            }
            access.next_value_seed(Strict {
                slots: &mut *slots,
                key: Some(name),
            })?;
            members = members.saturating_add(1);
            if members == SCANNED_MEMBERS && many.is_none() {
                many = Some(names_so_far(slots, at).map(str::to_string).collect());
            }
        }
        close(slots, at, members);
        Ok(())
    }
}

/// A member name, borrowed from the body when it has no escape.
struct Name<'b>(Cow<'b, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl<'de> Visitor<'de> for NameVisitor {
    type Value = Name<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
        Ok(Name(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
        Ok(Name(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Name<'de>, E> {
        Ok(Name(Cow::Owned(v)))
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
            parse(text).unwrap().to_value(),
            serde_json::from_slice::<serde_json::Value>(text).unwrap()
        );
        let order = parse(br#"{"z": 1, "a": 2}"#).unwrap().to_value();
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
        // past the members compared one by one: the set sees names from before and after
        let members = |n: usize| -> Vec<String> {
            (0..n)
                .map(|i| format!("\"m{i}\": {{\"k\": [{i}]}}"))
                .collect()
        };
        let big = format!("{{{}}}", members(100).join(", "));
        assert!(parse(big.as_bytes()).is_ok());
        for repeat in ["m5", "m31", "m32", "m99"] {
            let text = format!("{{{}, \"{repeat}\": 0}}", members(100).join(", "));
            assert!(
                matches!(parse(text.as_bytes()), Err(JsonError::DuplicateKey { .. })),
                "{repeat}"
            );
        }
        // an escaped name is the same name
        assert!(matches!(
            parse(br#"{"ab": 1, "a\u0062": 2}"#),
            Err(JsonError::DuplicateKey { .. })
        ));
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
