//! A request body as the validator reads it: one flat vector of slots ("tape") in document
//! order, strings borrowed from the body wherever they carry no escape.
//!
//! Why not `serde_json::Value`: a ~1 KB body becomes about 120 separate allocations as a
//! `Value` (every key, every string, every object's index), scattered over the heap. On a
//! gateway whose caches are cold between requests, building and walking that tree cost several
//! times the parse itself. The tape is one allocation (plus one per string with an escape), read
//! front to back. `jsonschema` validates any representation that implements its
//! [`Json`](jsonschema::json::Json) contract; [`BodyJson`] is that implementation, checked by the
//! crate's own conformance test (below).
//!
//! Layout: a container's slot is followed by its members' slots, each member's subtree whole
//! before the next member; the container records its member count and the index one past its
//! last descendant, so siblings are reached by skipping subtrees. An object member's slot
//! carries its name.

use std::borrow::Cow;

use jsonschema::json::{cmp, Array, Json, Node, NodeIdentity, Object};
use jsonschema::types::JsonType;
use serde_json::{Map, Number, Value};

/// One value of the body, with its member name when it is an object's member.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Slot<'b> {
    pub key: Option<Cow<'b, str>>,
    pub value: Entry<'b>,
}

/// What a slot holds. Containers: `len` members, descendants up to (not including) `end`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Entry<'b> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'b, str>),
    Array { len: u32, end: u32 },
    Object { len: u32, end: u32 },
}

/// A parsed body: see [`super::json::parse`]. Never empty: slot 0 is the root.
#[derive(Debug, Clone, PartialEq)]
pub struct Tape<'b> {
    slots: Vec<Slot<'b>>,
}

impl<'b> Tape<'b> {
    pub(super) fn new(slots: Vec<Slot<'b>>) -> Self {
        debug_assert!(!slots.is_empty());
        Self { slots }
    }

    /// The document's root value.
    pub fn root(&self) -> BodyNode<'_> {
        BodyNode {
            slots: &self.slots,
            at: 0,
        }
    }

    /// The body as a `serde_json::Value` (for error descriptions; not on the hot path).
    pub fn to_value(&self) -> Value {
        self.root().to_value().into_owned()
    }
}

/// The slot after `at`'s whole subtree.
pub(super) fn next_sibling(slots: &[Slot<'_>], at: u32) -> u32 {
    match slots.get(at as usize).map(|slot| &slot.value) {
        Some(Entry::Array { end, .. } | Entry::Object { end, .. }) => *end,
        _ => at + 1,
    }
}

/// The `jsonschema` representation of a [`Tape`].
#[derive(Debug)]
pub struct BodyJson;

/// A validator for request bodies parsed by [`super::json::parse`].
pub type BodyValidator = jsonschema::Validator<BodyJson>;

impl Json for BodyJson {
    type Node<'a> = BodyNode<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = ();

    // An object lookup is a scan of its members, so one pass over them beats a few lookups.
    const KEYS_PER_LOOKUP: usize = 2;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(BodyNode<'_>) -> T) -> T {
        let slot = [Slot {
            key: None,
            value: Entry::String(Cow::Borrowed(string)),
        }];
        f(BodyNode {
            slots: &slot,
            at: 0,
        })
    }
}

/// One value of a [`Tape`]: the tape and the value's index. Copying it is free.
#[derive(Debug, Clone, Copy)]
pub struct BodyNode<'a> {
    slots: &'a [Slot<'a>],
    at: u32,
}

impl<'a> BodyNode<'a> {
    fn entry(&self) -> &'a Entry<'a> {
        // `at` only ever comes from this tape's own layout; `Null` keeps a bad index harmless
        match self.slots.get(self.at as usize) {
            Some(slot) => &slot.value,
            None => &Entry::Null,
        }
    }

    fn at(&self, at: u32) -> Self {
        Self {
            slots: self.slots,
            at,
        }
    }

    /// The children (members or elements) of the container this node is.
    fn children(&self) -> Children<'a> {
        let (len, end) = match self.entry() {
            Entry::Array { len, end } | Entry::Object { len, end } => (*len, *end),
            _ => (0, self.at + 1),
        };
        Children {
            node: self.at(self.at + 1),
            left: len,
            end,
        }
    }
}

/// Iterates a container's children by skipping each one's subtree.
#[derive(Debug, Clone)]
pub struct Children<'a> {
    node: BodyNode<'a>,
    left: u32,
    end: u32,
}

impl<'a> Iterator for Children<'a> {
    type Item = BodyNode<'a>;

    fn next(&mut self) -> Option<BodyNode<'a>> {
        if self.left == 0 || self.node.at >= self.end {
            return None;
        }
        let child = self.node;
        self.left -= 1;
        self.node = child.at(next_sibling(child.slots, child.at));
        Some(child)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

/// An object member's name and value.
#[derive(Debug, Clone)]
pub struct Members<'a>(Children<'a>);

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, BodyNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let child = self.0.next()?;
        let name = child
            .slots
            .get(child.at as usize)
            .and_then(|slot| slot.key.as_deref())
            .unwrap_or("");
        Some((name, child))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

/// A container node seen as an object or an array.
#[derive(Debug, Clone, Copy)]
pub struct Container<'a>(BodyNode<'a>);

impl<'a> Node<'a, BodyJson> for BodyNode<'a> {
    type Object = Container<'a>;
    type Array = Container<'a>;
    type Number = &'a Number;

    fn as_object(&self) -> Option<Container<'a>> {
        matches!(self.entry(), Entry::Object { .. }).then_some(Container(*self))
    }

    fn as_array(&self) -> Option<Container<'a>> {
        matches!(self.entry(), Entry::Array { .. }).then_some(Container(*self))
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self.entry() {
            Entry::String(text) => Some(Cow::Borrowed(text.as_ref())),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<&'a Number> {
        match self.entry() {
            Entry::Number(number) => Some(number),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.entry() {
            Entry::Bool(value) => Some(*value),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.entry(), Entry::Null)
    }

    fn json_type(&self) -> JsonType {
        match self.entry() {
            Entry::Null => JsonType::Null,
            Entry::Bool(_) => JsonType::Boolean,
            Entry::Number(_) => JsonType::Number,
            Entry::String(_) => JsonType::String,
            Entry::Array { .. } => JsonType::Array,
            Entry::Object { .. } => JsonType::Object,
        }
    }

    fn string_length_within(&self, min: u64, max: u64) -> Option<bool> {
        let Entry::String(text) = self.entry() else {
            return None;
        };
        // A code point takes one to four bytes, so the count lies in `ceil(bytes / 4)..=bytes`:
        // most strings are decided without counting.
        let bytes = text.len() as u64;
        let fewest = bytes.div_ceil(4);
        if bytes < min || fewest > max {
            return Some(false);
        }
        if min <= fewest && bytes <= max {
            return Some(true);
        }
        Some((min..=max).contains(&(text.chars().count() as u64)))
    }

    fn equals_value(&self, expected: &Value) -> bool {
        match (self.entry(), expected) {
            (Entry::Null, Value::Null) => true,
            (Entry::Bool(value), Value::Bool(other)) => value == other,
            (Entry::String(text), Value::String(other)) => text.as_ref() == other.as_str(),
            (Entry::Number(number), Value::Number(other)) => cmp::equal_numbers(&number, other),
            (Entry::Array { .. }, Value::Array(_)) | (Entry::Object { .. }, Value::Object(_)) => {
                cmp::equal(&self.to_value(), expected)
            }
            _ => false,
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(match self.entry() {
            Entry::Null => Value::Null,
            Entry::Bool(value) => Value::Bool(*value),
            Entry::Number(number) => Value::Number(number.clone()),
            Entry::String(text) => Value::String(text.to_string()),
            Entry::Array { .. } => Value::Array(
                self.children()
                    .map(|child| child.to_value().into_owned())
                    .collect(),
            ),
            Entry::Object { .. } => Value::Object(
                Members(self.children())
                    .map(|(name, child)| (name.to_string(), child.to_value().into_owned()))
                    .collect::<Map<String, Value>>(),
            ),
        })
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::tagged(self.slots.as_ptr() as usize, self.at))
    }
}

impl<'a> Object<'a, BodyJson> for Container<'a> {
    type Node = BodyNode<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        match self.0.entry() {
            Entry::Object { len, .. } => *len as usize,
            _ => 0,
        }
    }

    fn get(&self, key: &Box<str>) -> Option<BodyNode<'a>> {
        Members(self.0.children())
            .find(|(name, _)| *name == key.as_ref())
            .map(|(_, node)| node)
    }

    fn members(&self) -> Members<'a> {
        Members(self.0.children())
    }
}

impl<'a> Array<'a, BodyJson> for Container<'a> {
    type Node = BodyNode<'a>;
    type ElementsIter = Children<'a>;

    fn len(&self) -> usize {
        match self.0.entry() {
            Entry::Array { len, .. } => *len as usize,
            _ => 0,
        }
    }

    fn elements(&self) -> Children<'a> {
        self.0.children()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::json::parse;
    use super::*;

    #[test]
    fn meets_the_contract_jsonschema_relies_on() {
        let text = serde_json::to_vec(&jsonschema::json::conformance::document()).unwrap();
        let tape = parse(&text).unwrap();
        jsonschema::json::conformance::assert_conformance::<BodyJson>(&tape.root());
    }

    #[test]
    fn round_trips_to_the_value_serde_json_parses() {
        let text = br#"{"a": [1, -2, 3.5, true, null, "x\u00e9", [], {}], "b": {"c": {"d": [[1], [2, [3]]]}}, "e": "plain", "n": 18446744073709551615}"#;
        let tape = parse(text).unwrap();
        assert_eq!(
            tape.to_value(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
        let root = tape.root();
        let object = root.as_object().unwrap();
        assert_eq!(Object::len(&object), 4);
        let names: Vec<&str> = object.members().map(|(name, _)| name).collect();
        assert_eq!(names, ["a", "b", "e", "n"], "document order");
        let b = object.get(&BodyJson::prepare_key("b")).unwrap();
        assert_eq!(b.json_type(), JsonType::Object);
        assert!(object.get(&BodyJson::prepare_key("z")).is_none());
        let e = object.get(&BodyJson::prepare_key("e")).unwrap();
        assert_eq!(e.as_string().unwrap(), "plain");
        let a = object.get(&BodyJson::prepare_key("a")).unwrap();
        assert_eq!(Array::len(&a.as_array().unwrap()), 8);
        assert_eq!(a.as_array().unwrap().elements().count(), 8);
    }

    #[test]
    fn strings_without_escapes_borrow_the_body() {
        let text = br#"{"plain": "abc", "escaped": "a\"b"}"#;
        let tape = parse(text).unwrap();
        let borrowed = |cow: &Cow<'_, str>| matches!(cow, Cow::Borrowed(_));
        assert!(tape
            .slots
            .iter()
            .all(|slot| slot.key.as_ref().is_none_or(borrowed)));
        assert!(matches!(&tape.slots[1].value, Entry::String(text) if borrowed(text)));
        assert!(
            matches!(&tape.slots[2].value, Entry::String(text) if !borrowed(text) && text == "a\"b")
        );
    }

    #[test]
    fn scalars_compare_with_enum_values_as_json_schema_says() {
        let tape = parse(br#"[1, 1.0, "EUR", null, true, {"a": [1]}]"#).unwrap();
        let items: Vec<BodyNode<'_>> = tape.root().as_array().unwrap().elements().collect();
        assert!(items[0].equals_value(&serde_json::json!(1.0)));
        assert!(items[1].equals_value(&serde_json::json!(1)));
        assert!(items[2].equals_value(&serde_json::json!("EUR")));
        assert!(!items[2].equals_value(&serde_json::json!("USD")));
        assert!(items[3].equals_value(&Value::Null));
        assert!(!items[3].equals_value(&serde_json::json!(false)));
        assert!(items[4].equals_value(&serde_json::json!(true)));
        assert!(items[5].equals_value(&serde_json::json!({"a": [1.0]})));
        assert!(!items[5].equals_value(&serde_json::json!({"a": [2]})));
    }
}
