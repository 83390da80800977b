//! Parsing a request body as JSON for validation, strictly: an object with the same member
//! name twice is refused. Parsers disagree on which of the two counts (`serde_json` keeps the
//! last, others the first), so a body validated with one value could reach the service with
//! the other. The errors say where, never what: no value of the body is quoted.
//!
//! The parser writes the [`Tape`] directly and accepts exactly the JSON that `serde_json`
//! accepts (RFC 8259: no comments, no trailing commas, no lone surrogates, no control
//! characters in strings, no leading zeros, numbers within `f64`, at most 127 nested
//! containers), with the same values; the tests compare the two on generated and mutated
//! documents. It is written out rather than driven through `serde_json`'s visitor because on a
//! gateway the body is parsed with cold caches: one UTF-8 check of the whole body and tight
//! loops over bytes took about half the time of `serde_json`'s per-string checks and generic
//! visitor calls (docs/policy.md, "Cost").

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde_json::Number;

use super::tape::{next_sibling, Entry, Slot, Tape};

/// Why a body is not JSON the gateway validates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON (or not UTF-8, or nested deeper than 127 levels), at this line and column.
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

/// Parses `bytes` as one JSON value (whitespace around it allowed) into a [`Tape`] that
/// borrows from `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Tape<'_>, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = place(bytes, e.valid_up_to());
        JsonError::Syntax { line, column }
    })?;
    let mut parser = Parser {
        text,
        at: 0,
        // about one slot per dozen bytes of a typical body; grown as needed
        slots: Vec::with_capacity(bytes.len() / 12 + 1),
    };
    let parsed = parser.document();
    match parsed {
        Ok(()) => Ok(Tape::new(parser.slots)),
        Err(Failure::Syntax(at)) => {
            let (line, column) = place(bytes, at);
            Err(JsonError::Syntax { line, column })
        }
        Err(Failure::Duplicate(at)) => {
            let (line, column) = place(bytes, at);
            Err(JsonError::DuplicateKey { line, column })
        }
    }
}

/// The 1-based line and column of byte `at` (the last byte read when the error was found).
fn place(bytes: &[u8], at: usize) -> (usize, usize) {
    let before = bytes.get(..at.min(bytes.len())).unwrap_or_default();
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |nl| nl + 1);
    (line, at.saturating_sub(line_start) + 1)
}

/// What went wrong, and at which byte.
enum Failure {
    Syntax(usize),
    Duplicate(usize),
}

/// Containers may nest 127 deep, as in `serde_json` (whose limit of 128 counts the one that
/// fails), so a body neither parser rejects for depth is the same body for both.
const MAX_DEPTH: u32 = 128;

/// Objects with more members than this check for a repeated name with a set rather than by
/// comparing with every earlier name, so that a huge object cannot make the check quadratic.
const SCANNED_MEMBERS: u32 = 32;

struct Parser<'b> {
    text: &'b str,
    /// The next byte to read.
    at: usize,
    slots: Vec<Slot<'b>>,
}

impl<'b> Parser<'b> {
    fn document(&mut self) -> Result<(), Failure> {
        self.skip_whitespace();
        self.value(None, 0)?;
        self.skip_whitespace();
        if self.at == self.text.len() {
            Ok(())
        } else {
            Err(Failure::Syntax(self.at))
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    /// Consumes `byte` (after whitespace), or fails where something else stands.
    fn expect(&mut self, byte: u8) -> Result<(), Failure> {
        self.skip_whitespace();
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(Failure::Syntax(self.at))
        }
    }

    fn push(&mut self, key: Option<Cow<'b, str>>, value: Entry<'b>) {
        self.slots.push(Slot { key, value });
    }

    /// One value at the current byte (no whitespace before it), with its member name.
    fn value(&mut self, key: Option<Cow<'b, str>>, depth: u32) -> Result<(), Failure> {
        match self.peek() {
            Some(b'{') => self.object(key, depth + 1),
            Some(b'[') => self.array(key, depth + 1),
            Some(b'"') => {
                let text = self.string()?;
                self.push(key, Entry::String(text));
                Ok(())
            }
            Some(b't') => self.literal(key, "true", Entry::Bool(true)),
            Some(b'f') => self.literal(key, "false", Entry::Bool(false)),
            Some(b'n') => self.literal(key, "null", Entry::Null),
            Some(b'-' | b'0'..=b'9') => {
                let number = self.number()?;
                self.push(key, Entry::Number(number));
                Ok(())
            }
            _ => Err(Failure::Syntax(self.at)),
        }
    }

    fn literal(
        &mut self,
        key: Option<Cow<'b, str>>,
        word: &str,
        value: Entry<'b>,
    ) -> Result<(), Failure> {
        if self.text.as_bytes()[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            self.push(key, value);
            Ok(())
        } else {
            Err(Failure::Syntax(self.at))
        }
    }

    /// Pushes a container's slot; its `len` and `end` are set by [`Parser::close`].
    fn open(
        &mut self,
        key: Option<Cow<'b, str>>,
        value: Entry<'b>,
        depth: u32,
    ) -> Result<usize, Failure> {
        if depth >= MAX_DEPTH {
            return Err(Failure::Syntax(self.at));
        }
        self.at += 1;
        let at = self.slots.len();
        self.push(key, value);
        Ok(at)
    }

    /// Records a container's member count and the end of its subtree.
    fn close(&mut self, at: usize, members: u32) {
        let end = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        if let Some(slot) = self.slots.get_mut(at) {
            if let Entry::Array { len, end: last } | Entry::Object { len, end: last } =
                &mut slot.value
            {
                *len = members;
                *last = end;
            }
        }
    }

    fn array(&mut self, key: Option<Cow<'b, str>>, depth: u32) -> Result<(), Failure> {
        let at = self.open(key, Entry::Array { len: 0, end: 0 }, depth)?;
        let mut members = 0u32;
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
        } else {
            loop {
                self.value(None, depth)?;
                members = members.saturating_add(1);
                if self.closed_after_member(b']')? {
                    break;
                }
            }
        }
        self.close(at, members);
        Ok(())
    }

    fn object(&mut self, key: Option<Cow<'b, str>>, depth: u32) -> Result<(), Failure> {
        let at = self.open(key, Entry::Object { len: 0, end: 0 }, depth)?;
        let mut members = 0u32;
        let mut many: Option<HashSet<Cow<'b, str>>> = None;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.close(at, 0);
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(Failure::Syntax(self.at));
            }
            let name = self.string()?;
            let repeated = match &mut many {
                None => names_so_far(&self.slots, at).any(|earlier| earlier == name),
                Some(names) => !names.insert(name.clone()),
            };
            if repeated {
                return Err(Failure::Duplicate(self.at - 1));
            }
            self.expect(b':')?;
            self.skip_whitespace();
            self.value(Some(name), depth)?;
            members = members.saturating_add(1);
            if members == SCANNED_MEMBERS && many.is_none() {
                many = Some(
                    names_so_far(&self.slots, at)
                        .map(|name| Cow::Owned(name.to_string()))
                        .collect(),
                );
            }
            if self.closed_after_member(b'}')? {
                break;
            }
        }
        self.close(at, members);
        Ok(())
    }

    /// After a container's member: a comma and the next member's start (false), or the
    /// container's `closing` bracket (true).
    fn closed_after_member(&mut self, closing: u8) -> Result<bool, Failure> {
        self.skip_whitespace();
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                self.skip_whitespace();
                Ok(false)
            }
            Some(byte) if byte == closing => {
                self.at += 1;
                Ok(true)
            }
            _ => Err(Failure::Syntax(self.at)),
        }
    }

    /// A string at the opening quote: borrowed from the body unless it has an escape.
    fn string(&mut self) -> Result<Cow<'b, str>, Failure> {
        let bytes = self.text.as_bytes();
        self.at += 1;
        let mut owned: Option<String> = None;
        let mut run = self.at;
        loop {
            // the text is UTF-8 and these bytes are ASCII, so every cut is a char boundary
            let Some(&byte) = bytes.get(self.at) else {
                return Err(Failure::Syntax(self.at));
            };
            match byte {
                b'"' => {
                    let tail = &self.text[run..self.at];
                    self.at += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(tail),
                        Some(mut text) => {
                            text.push_str(tail);
                            Cow::Owned(text)
                        }
                    });
                }
                b'\\' => {
                    let text = owned.get_or_insert_with(String::new);
                    text.push_str(&self.text[run..self.at]);
                    self.at += 1;
                    self.escape(text)?;
                    run = self.at;
                }
                0x00..=0x1f => return Err(Failure::Syntax(self.at)),
                _ => self.at += 1,
            }
        }
    }

    /// One escape after its backslash, appended to `text`.
    fn escape(&mut self, text: &mut String) -> Result<(), Failure> {
        let Some(byte) = self.peek() else {
            return Err(Failure::Syntax(self.at));
        };
        self.at += 1;
        let plain = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(text),
            _ => return Err(Failure::Syntax(self.at - 1)),
        };
        text.push(plain);
        Ok(())
    }

    /// `\uXXXX` after its `u`: a character, or a surrogate pair written as two escapes.
    fn unicode_escape(&mut self, text: &mut String) -> Result<(), Failure> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.text.as_bytes()[self.at..].starts_with(b"\\u") {
                    return Err(Failure::Syntax(self.at));
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(Failure::Syntax(self.at - 1));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(Failure::Syntax(self.at - 1)),
            other => other,
        };
        let c = char::from_u32(code).ok_or(Failure::Syntax(self.at - 1))?;
        text.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Failure> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or(Failure::Syntax(self.at))?;
            code = code * 16 + digit;
            self.at += 1;
        }
        Ok(code)
    }

    /// A number, with `serde_json`'s values: an integer that fits is `u64` (or `i64` when
    /// negative; `-0` is the float `-0.0`), anything else the nearest `f64`, and a number
    /// beyond `f64`'s range is an error.
    fn number(&mut self) -> Result<Number, Failure> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Failure::Syntax(self.at)),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.at += 1;
            self.at_least_one_digit()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.at_least_one_digit()?;
        }
        let text = &self.text[start..self.at];
        if integer {
            let magnitude = if negative { &text[1..] } else { text };
            if let Ok(value) = magnitude.parse::<u64>() {
                if !negative {
                    return Ok(Number::from(value));
                }
                if value == 0 {
                    return Number::from_f64(-0.0).ok_or(Failure::Syntax(start));
                }
                if let Some(value) = 0i64.checked_sub_unsigned(value) {
                    return Ok(Number::from(value));
                }
            }
        }
        let value: f64 = text.parse().map_err(|_| Failure::Syntax(start))?;
        Number::from_f64(value).ok_or(Failure::Syntax(self.at - 1))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> Result<(), Failure> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(Failure::Syntax(self.at));
        }
        self.digits();
        Ok(())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// What `serde_json` makes of `bytes`, held against ours: the same value when both accept,
    /// and a refusal by both otherwise; the one difference allowed is ours refusing a repeated
    /// member name, which `serde_json` accepts (keeping the last).
    fn agrees_with_serde_json(bytes: &[u8]) -> Result<(), String> {
        let theirs = serde_json::from_slice::<Value>(bytes);
        match (parse(bytes), theirs) {
            (Ok(ours), Ok(theirs)) if same(&ours.to_value(), &theirs) => Ok(()),
            (Ok(ours), Ok(theirs)) => Err(format!(
                "values differ: {:?} vs {theirs:?}",
                ours.to_value()
            )),
            (Ok(_), Err(error)) => Err(format!("accepted; serde_json refuses: {error}")),
            (Err(JsonError::DuplicateKey { .. }), Ok(_)) => Ok(()),
            (Err(error), Ok(_)) => Err(format!("refused ({error}); serde_json accepts")),
            (Err(_), Err(_)) => Ok(()),
        }
        .map_err(|why| format!("{why} for {:?}", String::from_utf8_lossy(bytes)))
    }

    /// Equal values, a float within one unit in the last place (`serde_json` without its
    /// `float_roundtrip` feature can round a long decimal one ULP off; ours is exact).
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                x.to_bits() == y.to_bits() || x.to_bits().abs_diff(y.to_bits()) <= 1
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }

    #[test]
    fn agrees_with_serde_json_on_the_edges_of_the_grammar() {
        let nested = |n: usize| "[".repeat(n) + &"]".repeat(n);
        let mut cases: Vec<Vec<u8>> = [
            "0",
            "-0",
            "-0.0",
            "1",
            "-1",
            "01",
            "-01",
            "1.",
            ".5",
            "1e",
            "1e+",
            "1E-2",
            "+1",
            "1.5e308",
            "1e309",
            "-1e309",
            "1e-400",
            "0e99999999999999999999",
            "1e99999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "0.1000000000000000055511151231257827",
            "2.2250738585072011e-308",
            "- 1",
            "--1",
            "1 2",
            "true",
            "tru",
            "truex",
            "nul",
            "null ",
            " \t\n\r null",
            "\u{c}null",
            "\"",
            "\"\\\"",
            "\"\\u00e9\"",
            "\"\\u00E9\"",
            "\"\\ud83d\\ude00\"",
            "\"\\ud83d\"",
            "\"\\ud83dx\"",
            "\"\\ude00\"",
            "\"\\ud83d\\u0041\"",
            "\"\\ud83d\\n\"",
            "\"\\u12\"",
            "\"\\u12g4\"",
            "\"\\x\"",
            "\"\\/\\b\\f\"",
            "\"a\tb\"",
            "\"a\u{7f}b\"",
            "\"\u{1f}\"",
            "\"é\"",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":}",
            "{,}",
            "{}",
            "[]",
            "[ ]",
            "{ }",
            "[[]",
            "[]]",
            "{\"a\":1}}",
            "",
            " ",
            "/* */1",
            "1 // x",
            "[1]\u{0}",
        ]
        .iter()
        .map(|text| text.as_bytes().to_vec())
        .collect();
        cases.extend([nested(127).into_bytes(), nested(128).into_bytes()]);
        cases.extend([
            b"\"\xff\"".to_vec(),
            b"\"\xc3\"".to_vec(),
            b"\xef\xbb\xbf1".to_vec(),
        ]);
        for case in cases {
            agrees_with_serde_json(&case).unwrap();
        }
    }

    /// Any JSON value, with strings that need escapes and numbers of every kind.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            "[a-z\"\\\\/\n\t\u{1}\u{e9}\u{1f600}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec(("[a-e\"\u{e9}]{0,3}", inner), 0..8)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// A small edit of a document: a byte replaced, inserted or removed, from bytes that
    /// matter to JSON's grammar.
    fn mutate(text: &[u8], at: usize, how: u8, byte: u8) -> Vec<u8> {
        const GRAMMAR: &[u8] = b"{}[]:,\"\\ -+.eE0123456789tfnulabu\x00\x1f\x7f\xc3\xa9\xff\n";
        let byte = GRAMMAR[usize::from(byte) % GRAMMAR.len()];
        let mut out = text.to_vec();
        let at = at % (out.len() + 1);
        match how % 3 {
            0 if at < out.len() => out[at] = byte,
            1 if at < out.len() => {
                out.remove(at);
            }
            _ => out.insert(at, byte),
        }
        out
    }

    proptest! {
        #[test]
        fn parses_every_document_as_serde_json_does(value in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            prop_assert!(agrees_with_serde_json(&text).is_ok(), "{:?}", agrees_with_serde_json(&text));
        }

        #[test]
        fn refuses_what_serde_json_refuses(
            value in json_value(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
        ) {
            let mut text = serde_json::to_vec(&value).unwrap();
            for (at, how, byte) in edits {
                text = mutate(&text, at, how, byte);
            }
            prop_assert!(agrees_with_serde_json(&text).is_ok(), "{:?}", agrees_with_serde_json(&text));
        }
    }

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
