//! The breaking changes between two OpenAPI specs of one `API` resource, for `airgate diff`.
//!
//! Each change is named with the check id of [oasdiff](https://github.com/oasdiff/oasdiff), so
//! that a user who knows `oasdiff breaking` recognises it. A change is breaking when a request
//! that was valid under OLD can be refused under NEW, or a response valid under NEW could not have
//! been sent under OLD: requests are compared contravariantly (narrowing breaks), responses
//! covariantly (widening breaks). docs/policy.md lists every check.
//!
//! Compared: paths (template parameter names ignored, as oasdiff does), operations (a removed
//! `deprecated: true` operation is not breaking), parameters matched by `in` and name (path-level
//! and operation-level merged, path parameters by position), request bodies and responses per
//! status and media type, and their schemas: types and formats, `nullable` and 3.1 type arrays,
//! enums, `required`, length and range bounds, `pattern`, nested properties, `items`,
//! `additionalProperties`, `allOf` (flattened), `oneOf`/`anyOf` alternatives matched by `$ref`.
//!
//! Each pair of schemas (OLD's, NEW's) is compared once, however many operations reach it, and
//! each of its changes is then reported once in every request body, response and parameter
//! that reaches it, named by the shortest property path from there (one search back from each
//! changed pair, so the cost follows the number of changes, not of operations).
//!
//! Bounded on hostile input: `$ref` chains are followed at most [`MAX_REF_HOPS`] times and only
//! within the document, paths are named at most [`MAX_SCHEMA_DEPTH`] levels deep, recursive
//! schemas end because each pair is compared once, and comparing and naming each stop after
//! [`MAX_WORK`] units of work ([`SpecDiff::truncated`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};

use crate::openapi::Spec;

/// Most `$ref` hops followed from one place; a longer chain (or a loop) is not compared.
pub const MAX_REF_HOPS: usize = 32;
/// Deepest nesting of properties, `items` and alternatives a change is named through.
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// Deepest nesting of `allOf` flattened.
const MAX_ALL_OF_DEPTH: usize = 16;
/// Work allowed for one comparison (roughly: schemas and properties read), and again for naming
/// the findings (pairs searched back from each changed schema). Real specs need far less, even
/// Stripe's size (7 MiB, a thousand interlinked schemas); a hostile one stops here.
pub const MAX_WORK: usize = 10_000_000;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Which spec a change's [`SpecChange::pointer`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// OLD's: the place of something NEW removed.
    Old,
    /// NEW's.
    New,
}

/// One breaking change between two specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecChange {
    /// oasdiff's check id, e.g. `new-required-request-property`.
    pub check: &'static str,
    /// `METHOD /path`, as NEW writes the path (OLD, for a removed operation).
    pub operation: String,
    pub side: Side,
    /// JSON pointer (RFC 6901) to the changed node in the [`SpecChange::side`] spec, after
    /// `$ref`s: a change in a shared component points into `/components`.
    pub pointer: String,
    pub message: String,
}

/// The result of comparing two specs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecDiff {
    /// In a stable order: OLD's paths in document order, then method, parameters, request body,
    /// responses, and within each by property path.
    pub changes: Vec<SpecChange>,
    /// [`MAX_WORK`] was reached: changes past it are not reported.
    pub truncated: bool,
}

/// Every breaking change from `old` to `new` (OpenAPI 3.0 or 3.1, in any combination).
pub fn breaking_changes(old: &Spec, new: &Spec) -> SpecDiff {
    let mut differ = Differ {
        old: Doc(&old.document),
        new: Doc(&new.document),
        entries: Vec::new(),
        work: 0,
        naming: 0,
        truncated: false,
        pairs: Vec::new(),
        pair_ids: HashMap::new(),
        pending: Vec::new(),
    };
    differ.paths();
    differ.name_findings();
    let changes = differ
        .entries
        .into_iter()
        .flat_map(|entry| match entry {
            Entry::Change(change) => vec![change],
            Entry::Schema(mut root) => {
                // Stable: findings at the same path stay in the order their pairs were built.
                root.named.sort_by(|a, b| a.0.cmp(&b.0));
                root.named.into_iter().map(|(_, change)| change).collect()
            }
        })
        .collect();
    SpecDiff {
        changes,
        truncated: differ.truncated,
    }
}

/// A value in a document with its JSON pointer.
#[derive(Debug, Clone)]
struct Node<'a> {
    value: &'a Value,
    pointer: String,
}

impl<'a> Node<'a> {
    fn child(&self, key: &str) -> Option<Node<'a>> {
        self.value.get(key).map(|value| Node {
            value,
            pointer: format!("{}/{}", self.pointer, escape(key)),
        })
    }

    fn index(&self, i: usize) -> Option<Node<'a>> {
        self.value.get(i).map(|value| Node {
            value,
            pointer: format!("{}/{i}", self.pointer),
        })
    }

    /// The entries of an object child, in document order.
    fn entries(&self, key: &str) -> Vec<(&'a str, Node<'a>)> {
        let Some(map) = self.value.get(key).and_then(Value::as_object) else {
            return Vec::new();
        };
        map.iter()
            .map(|(name, value)| {
                let pointer = format!("{}/{}/{}", self.pointer, escape(key), escape(name));
                (name.as_str(), Node { value, pointer })
            })
            .collect()
    }

    /// The items of an array child.
    fn items(&self, key: &str) -> Vec<Node<'a>> {
        let Some(list) = self.child(key) else {
            return Vec::new();
        };
        let len = list.value.as_array().map_or(0, Vec::len);
        (0..len).filter_map(|i| list.index(i)).collect()
    }

    fn flag(&self, key: &str) -> bool {
        self.value.get(key).and_then(Value::as_bool) == Some(true)
    }
}

/// A reference token of a JSON pointer.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// One document, for following its local `$ref`s.
#[derive(Debug, Clone, Copy)]
struct Doc<'a>(&'a Value);

impl<'a> Doc<'a> {
    fn root(self) -> Node<'a> {
        Node {
            value: self.0,
            pointer: String::new(),
        }
    }

    /// Follows `$ref`s within the document. `None` for a reference to another document, one
    /// that points nowhere, a loop or a chain longer than [`MAX_REF_HOPS`]: not compared.
    fn resolve(self, mut node: Node<'a>) -> Option<Node<'a>> {
        for _ in 0..=MAX_REF_HOPS {
            let Some(target) = node.value.get("$ref").and_then(Value::as_str) else {
                return Some(node);
            };
            let pointer = target.strip_prefix('#')?;
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return None;
            }
            node = Node {
                value: self.0.pointer(pointer)?,
                pointer: pointer.to_string(),
            };
        }
        None
    }
}

/// The identity of a node, to compare each pair of schemas once.
fn address(value: &Value) -> usize {
    std::ptr::from_ref(value) as usize
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Direction {
    Request,
    Response,
}

/// What a schema is the schema of; decides the check id and how the change is named.
#[derive(Debug, Clone)]
enum Place {
    Body,
    /// A property of a body, as oasdiff names it: `amount/currency`, `lines/items/price`.
    Property(String),
    Parameter {
        location: String,
        name: String,
    },
    /// Inside an object or array parameter.
    ParameterProperty {
        location: String,
        name: String,
        path: String,
    },
}

/// [`Place`] without its names, for the id table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Body,
    Property,
    Parameter,
    ParameterProperty,
}

impl Place {
    fn at(&self) -> At {
        match self {
            Place::Body => At::Body,
            Place::Property(_) => At::Property,
            Place::Parameter { .. } => At::Parameter,
            Place::ParameterProperty { .. } => At::ParameterProperty,
        }
    }

    fn child(&self, segment: &str) -> Place {
        match self {
            Place::Body => Place::Property(segment.to_string()),
            Place::Property(path) => Place::Property(format!("{path}/{segment}")),
            Place::Parameter { location, name } => Place::ParameterProperty {
                location: location.clone(),
                name: name.clone(),
                path: segment.to_string(),
            },
            Place::ParameterProperty {
                location,
                name,
                path,
            } => Place::ParameterProperty {
                location: location.clone(),
                name: name.clone(),
                path: format!("{path}/{segment}"),
            },
        }
    }

    /// `the request property amount/currency`, `the response body (status 200)`.
    fn subject(&self, direction: Direction, status: Option<&str>) -> String {
        let status = status.map_or_else(String::new, |s| format!(" (status {s})"));
        match (self, direction) {
            (Place::Body, Direction::Request) => "the request body".to_string(),
            (Place::Body, Direction::Response) => format!("the response body{status}"),
            (Place::Property(path), Direction::Request) => format!("the request property {path}"),
            (Place::Property(path), Direction::Response) => {
                format!("the response property {path}{status}")
            }
            (Place::Parameter { location, name }, _) => {
                format!("the {location} request parameter {name}")
            }
            (
                Place::ParameterProperty {
                    location,
                    name,
                    path,
                },
                _,
            ) => format!("the property {path} of the {location} request parameter {name}"),
        }
    }
}

/// The schema checks, each named by [`check_id`] per direction and place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    TypeChanged,
    TypeGeneralized,
    EnumValueRemoved,
    EnumValueAdded,
    BecameEnum,
    BecameNotNullable,
    BecameNullable,
    ListOfTypesNarrowed,
    ListOfTypesWidened,
    MaxLengthDecreased,
    MaxLengthSet,
    MaxDecreased,
    MaxSet,
    MinLengthIncreased,
    MinIncreased,
    MinSet,
    MinItemsIncreased,
    MinItemsSet,
    PatternAdded,
    OneOfRemoved,
    AnyOfRemoved,
    OneOfAdded,
    NewRequiredProperty,
    NewRequiredPropertyWithDefault,
    BecameRequired,
    BecameRequiredWithDefault,
    RequiredPropertyRemoved,
    OptionalPropertyRemoved,
    BecameOptional,
}

/// oasdiff's id for a check at a place, or `None` where oasdiff has no breaking (ERR or WARN)
/// check of that kind: such a change is not reported.
fn check_id(direction: Direction, at: At, check: Check) -> Option<&'static str> {
    use At::{Body, Parameter, ParameterProperty, Property};
    use Check::*;
    use Direction::{Request, Response};
    Some(match (direction, at, check) {
        (Request, Body, TypeChanged) => "request-body-type-changed",
        (Request, Property, TypeChanged) => "request-property-type-changed",
        (Request, Parameter, TypeChanged) => "request-parameter-type-changed",
        (Response, Body, TypeChanged) => "response-body-type-changed",
        (Response, Property, TypeChanged) => "response-property-type-changed",
        (Response, Body, TypeGeneralized) => "response-body-type-generalized",
        (Response, Property, TypeGeneralized) => "response-property-type-generalized",
        (Request, Body, EnumValueRemoved) => "request-body-enum-value-removed",
        (Request, Property, EnumValueRemoved) => "request-property-enum-value-removed",
        (Request, Parameter, EnumValueRemoved) => "request-parameter-enum-value-removed",
        (Request, ParameterProperty, EnumValueRemoved) => {
            "request-parameter-property-enum-value-removed"
        }
        (Response, Property, EnumValueAdded) => "response-property-enum-value-added",
        (Request, Body, BecameEnum) => "request-body-became-enum",
        (Request, Property, BecameEnum) => "request-property-became-enum",
        (Request, Parameter, BecameEnum) => "request-parameter-became-enum",
        (Request, Body, BecameNotNullable) => "request-body-became-not-nullable",
        (Request, Property, BecameNotNullable) => "request-property-became-not-nullable",
        (Request, Parameter, BecameNotNullable) => "request-parameter-became-not-nullable",
        (Request, ParameterProperty, BecameNotNullable) => {
            "request-parameter-property-became-not-nullable"
        }
        (Response, Body, BecameNullable) => "response-body-became-nullable",
        (Response, Property, BecameNullable) => "response-property-became-nullable",
        (Request, Body, ListOfTypesNarrowed) => "request-body-list-of-types-narrowed",
        (Request, Property, ListOfTypesNarrowed) => "request-property-list-of-types-narrowed",
        (Request, Parameter, ListOfTypesNarrowed) => "request-parameter-list-of-types-narrowed",
        (Request, ParameterProperty, ListOfTypesNarrowed) => {
            "request-parameter-property-list-of-types-narrowed"
        }
        (Response, Body, ListOfTypesWidened) => "response-body-list-of-types-widened",
        (Response, Property, ListOfTypesWidened) => "response-property-list-of-types-widened",
        (Request, Body, MaxLengthDecreased) => "request-body-max-length-decreased",
        (Request, Property, MaxLengthDecreased) => "request-property-max-length-decreased",
        (Request, Parameter, MaxLengthDecreased) => "request-parameter-max-length-decreased",
        (Request, Body, MaxLengthSet) => "request-body-max-length-set",
        (Request, Property, MaxLengthSet) => "request-property-max-length-set",
        (Request, Parameter, MaxLengthSet) => "request-parameter-max-length-set",
        (Request, Body, MaxDecreased) => "request-body-max-decreased",
        (Request, Property, MaxDecreased) => "request-property-max-decreased",
        (Request, Parameter, MaxDecreased) => "request-parameter-max-decreased",
        (Request, Body, MaxSet) => "request-body-max-set",
        (Request, Property, MaxSet) => "request-property-max-set",
        (Request, Parameter, MaxSet) => "request-parameter-max-set",
        (Request, Body, MinLengthIncreased) => "request-body-min-length-increased",
        (Request, Property, MinLengthIncreased) => "request-property-min-length-increased",
        (Request, Parameter, MinLengthIncreased) => "request-parameter-min-length-increased",
        (Request, Body, MinIncreased) => "request-body-min-increased",
        (Request, Property, MinIncreased) => "request-property-min-increased",
        (Request, Parameter, MinIncreased) => "request-parameter-min-increased",
        (Request, Body, MinSet) => "request-body-min-set",
        (Request, Property, MinSet) => "request-property-min-set",
        (Request, Parameter, MinSet) => "request-parameter-min-set",
        (Request, Body, MinItemsIncreased) => "request-body-min-items-increased",
        (Request, Property, MinItemsIncreased) => "request-property-min-items-increased",
        (Request, Parameter, MinItemsIncreased) => "request-parameter-min-items-increased",
        (Request, Body, MinItemsSet) => "request-body-min-items-set",
        (Request, Property, MinItemsSet) => "request-property-min-items-set",
        (Request, Parameter, MinItemsSet) => "request-parameter-min-items-set",
        (Request, Property, PatternAdded) => "request-property-pattern-added",
        (Request, Parameter, PatternAdded) => "request-parameter-pattern-added",
        (Request, Body, OneOfRemoved) => "request-body-one-of-removed",
        (Request, Property, OneOfRemoved) => "request-property-one-of-removed",
        (Request, Body, AnyOfRemoved) => "request-body-any-of-removed",
        (Request, Property, AnyOfRemoved) => "request-property-any-of-removed",
        (Response, Body, OneOfAdded) => "response-body-one-of-added",
        (Response, Property, OneOfAdded) => "response-property-one-of-added",
        (Request, Property, NewRequiredProperty) => "new-required-request-property",
        (Request, Property, NewRequiredPropertyWithDefault) => {
            "new-required-request-property-with-default"
        }
        (Request, Property, BecameRequired) => "request-property-became-required",
        (Request, Property, BecameRequiredWithDefault) => {
            "request-property-became-required-with-default"
        }
        (Response, Property, RequiredPropertyRemoved) => "response-required-property-removed",
        (Response, Property, OptionalPropertyRemoved) => "response-optional-property-removed",
        (Response, Property, BecameOptional) => "response-property-became-optional",
        _ => return None,
    })
}

/// The length and range keywords compared on requests: (keyword, an upper bound?, the check
/// when it narrows, the check when it is set where there was none).
const BOUNDS: [(&str, bool, Check, Option<Check>); 5] = [
    (
        "maxLength",
        true,
        Check::MaxLengthDecreased,
        Some(Check::MaxLengthSet),
    ),
    ("maximum", true, Check::MaxDecreased, Some(Check::MaxSet)),
    ("minLength", false, Check::MinLengthIncreased, None),
    ("minimum", false, Check::MinIncreased, Some(Check::MinSet)),
    (
        "minItems",
        false,
        Check::MinItemsIncreased,
        Some(Check::MinItemsSet),
    ),
];

/// A schema as compared: `$ref`s followed, `allOf` flattened, a 3.1 nullable wrapper
/// (`oneOf: [{type: 'null'}, X]`) unwrapped.
#[derive(Debug, Default)]
struct View<'a> {
    pointer: String,
    /// The types, without `null`; `None` when the schema does not constrain the type.
    types: Option<BTreeSet<&'a str>>,
    /// `nullable: true` (3.0), `null` among the types (3.1), or a nullable wrapper.
    nullable: bool,
    /// The nullable wrapper this schema was unwrapped from: where `null` was allowed.
    wrapper: Option<String>,
    format: Option<&'a str>,
    enumeration: Option<Node<'a>>,
    properties: BTreeMap<&'a str, Node<'a>>,
    required: BTreeSet<&'a str>,
    items: Option<Node<'a>>,
    additional: Option<Node<'a>>,
    one_of: Vec<Node<'a>>,
    any_of: Vec<Node<'a>>,
    read_only: bool,
    write_only: bool,
    has_default: bool,
    bounds: [Option<f64>; BOUNDS.len()],
    pattern: Option<&'a str>,
    /// oasdiff's "list of types": a single type, or `oneOf`/`anyOf` of plain typed schemas.
    type_list: Option<TypeList<'a>>,
}

#[derive(Debug, Clone)]
struct TypeList<'a> {
    types: BTreeSet<&'a str>,
    /// From `oneOf`/`anyOf` rather than `type`.
    list: bool,
}

impl<'a> View<'a> {
    /// The schema's own keywords.
    fn own(node: &Node<'a>, obj: &'a Map<String, Value>) -> Self {
        let mut nullable = node.flag("nullable");
        let mut types = BTreeSet::new();
        let named: Vec<&str> = match obj.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for t in named {
            if t == "null" {
                nullable = true;
            } else {
                types.insert(t);
            }
        }
        let str_of = |key: &str| obj.get(key).and_then(Value::as_str);
        let object_child = |key: &str| node.child(key).filter(|n| n.value.is_object());
        Self {
            pointer: node.pointer.clone(),
            types: (!types.is_empty()).then_some(types),
            nullable,
            wrapper: None,
            format: str_of("format").filter(|f| !f.is_empty()),
            enumeration: node.child("enum").filter(|n| n.value.is_array()),
            properties: node.entries("properties").into_iter().collect(),
            required: obj
                .get("required")
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default(),
            items: object_child("items"),
            additional: object_child("additionalProperties"),
            one_of: node.items("oneOf"),
            any_of: node.items("anyOf"),
            read_only: node.flag("readOnly"),
            write_only: node.flag("writeOnly"),
            has_default: obj.contains_key("default"),
            bounds: BOUNDS.map(|(keyword, ..)| obj.get(keyword).and_then(Value::as_f64)),
            pattern: str_of("pattern").filter(|p| !p.is_empty()),
            type_list: None,
        }
    }

    /// Adds an `allOf` member: its properties and `required`, and the keywords this schema
    /// does not set itself.
    fn absorb(&mut self, member: View<'a>) {
        for (name, node) in member.properties {
            self.properties.entry(name).or_insert(node);
        }
        self.required.extend(member.required);
        if self.types.is_none() {
            self.types = member.types;
            self.nullable |= member.nullable;
        }
        self.format = self.format.or(member.format);
        self.enumeration = self.enumeration.take().or(member.enumeration);
        self.items = self.items.take().or(member.items);
        self.additional = self.additional.take().or(member.additional);
        if self.one_of.is_empty() {
            self.one_of = member.one_of;
        }
        if self.any_of.is_empty() {
            self.any_of = member.any_of;
        }
        self.read_only |= member.read_only;
        self.write_only |= member.write_only;
        self.has_default |= member.has_default;
        for (bound, from_member) in self.bounds.iter_mut().zip(member.bounds) {
            *bound = bound.or(from_member);
        }
        self.pattern = self.pattern.or(member.pattern);
    }
}

/// Where a request body, response or parameter is compared, for naming what breaks there.
struct Scope<'s> {
    operation: &'s str,
    direction: Direction,
    status: Option<&'s str>,
    /// JSON media types are strongly typed (`1` is not `"1"`); parameters and text are not.
    strongly_typed: bool,
    /// A query or cookie parameter serialized as `style: form, explode: true`.
    form_exploded: bool,
}

impl<'s> Scope<'s> {
    fn new(
        operation: &'s str,
        direction: Direction,
        status: Option<&'s str>,
        strongly_typed: bool,
    ) -> Self {
        Self {
            operation,
            direction,
            status,
            strongly_typed,
            form_exploded: false,
        }
    }
}

/// How two schemas are compared: what a change of theirs means depends on nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Mode {
    direction: Direction,
    strongly_typed: bool,
    /// Below a parameter, read-only and write-only do not apply.
    parameter: bool,
}

/// A breaking change found in a [`Pair`], named relative to it.
#[derive(Debug)]
struct Finding {
    check: Check,
    /// The property of the pair it is about (one added, removed, made required), if any.
    property: Option<String>,
    side: Side,
    pointer: String,
    what: String,
    /// A scalar widened to an array whose items accept what it did: not breaking for a
    /// form-exploded parameter (oasdiff #689).
    form_array: bool,
}

/// Two schemas, OLD's and NEW's, compared once per [`Mode`] whatever reaches them: a shared
/// component is compared once, not once per operation.
#[derive(Debug, Default)]
struct Pair {
    findings: Vec<Finding>,
    /// The pairs compared below: (segment of the property path, pair).
    children: Vec<(String, usize)>,
    /// Skipped where it is a property: read-only in a request, write-only in a response.
    hidden: bool,
}

/// The result in order: a change, or a request body, response or parameter whose schema
/// findings are named once every pair is compared.
enum Entry {
    Change(SpecChange),
    Schema(Root),
}

/// A request body, response or parameter schema compared: the findings of the pairs it
/// reaches are named from here.
struct Root {
    operation: String,
    direction: Direction,
    status: Option<String>,
    form_exploded: bool,
    place: Place,
    pair: usize,
    /// Its changes, each with the property path that names it.
    named: Vec<(String, SpecChange)>,
}

struct Differ<'a> {
    old: Doc<'a>,
    new: Doc<'a>,
    entries: Vec<Entry>,
    /// Work spent comparing, and naming (each bounded by [`MAX_WORK`]).
    work: usize,
    naming: usize,
    truncated: bool,
    pairs: Vec<Pair>,
    /// Pairs by the identity of their two schemas and their mode.
    pair_ids: HashMap<(usize, usize, Mode), usize>,
    /// Pairs to compare: (id, mode, OLD's schema, NEW's schema), `$ref`s followed.
    pending: Vec<(usize, Mode, Node<'a>, Node<'a>)>,
}

/// An operation with the path it is under.
struct Operation<'a> {
    template: &'a str,
    item: Node<'a>,
    op: Node<'a>,
}

/// A parameter, merged from its path item and operation.
struct Parameter<'a> {
    node: Node<'a>,
    location: &'a str,
    name: &'a str,
    required: bool,
}

impl<'a> Differ<'a> {
    /// Takes `units` of work; false (and the result marked truncated) once [`MAX_WORK`] is spent.
    fn spend(&mut self, units: usize) -> bool {
        self.work = self.work.saturating_add(units);
        if self.work > MAX_WORK {
            self.truncated = true;
        }
        !self.truncated
    }

    fn push(
        &mut self,
        check: &'static str,
        operation: &str,
        side: Side,
        pointer: &str,
        message: String,
    ) {
        self.entries.push(Entry::Change(SpecChange {
            check,
            operation: operation.to_string(),
            side,
            pointer: pointer.to_string(),
            message,
        }));
    }

    fn paths(&mut self) {
        let mut new_paths = HashMap::new();
        for (key, template, item) in paths_of(self.new) {
            new_paths.entry(key).or_insert((template, item));
        }
        for (key, template, old_item) in paths_of(self.old) {
            let Some(old_item) = self.old.resolve(old_item) else {
                continue;
            };
            let new_item = new_paths
                .get(&key)
                .and_then(|(template, item)| Some((*template, self.new.resolve(item.clone())?)));
            for method in METHODS {
                let Some(old_op) = old_item.child(method) else {
                    continue;
                };
                if !self.spend(1) {
                    return;
                }
                let new_op = new_item
                    .as_ref()
                    .and_then(|(template, item)| Some((*template, item, item.child(method)?)));
                match new_op {
                    Some((new_template, new_item, new_op)) => self.operation(
                        method,
                        Operation {
                            template,
                            item: old_item.clone(),
                            op: old_op,
                        },
                        Operation {
                            template: new_template,
                            item: new_item.clone(),
                            op: new_op,
                        },
                    ),
                    // Removing a deprecated operation is the end of its deprecation.
                    None if old_op.flag("deprecated") => {}
                    None => {
                        let (check, what) = if new_item.is_none() {
                            ("api-path-removed-without-deprecation", "api path removed")
                        } else {
                            ("api-removed-without-deprecation", "api removed")
                        };
                        let operation = operation_name(method, template);
                        let message = format!("{what} without deprecation");
                        self.push(check, &operation, Side::Old, &old_op.pointer, message);
                    }
                }
            }
        }
    }

    fn operation(&mut self, method: &str, old: Operation<'a>, new: Operation<'a>) {
        let name = operation_name(method, new.template);
        self.parameters(&name, &old, &new);
        self.request_body(&name, &old.op, &new.op);
        self.responses(&name, &old.op, &new.op);
    }

    fn parameters(&mut self, operation: &str, old: &Operation<'a>, new: &Operation<'a>) {
        let before = parameters_of(self.old, old);
        let after = parameters_of(self.new, new);
        for (key, param) in &after {
            let Some(was) = before.get(key) else {
                let check = if param.location == "path" {
                    "new-request-path-parameter"
                } else if param.required {
                    "new-required-request-parameter"
                } else {
                    continue;
                };
                let message = format!(
                    "added the new required {} request parameter {}",
                    param.location, param.name
                );
                self.push(check, operation, Side::New, &param.node.pointer, message);
                continue;
            };
            if param.required && !was.required && param.location != "path" {
                let message = format!(
                    "the {} request parameter {} became required",
                    param.location, param.name
                );
                self.push(
                    "request-parameter-became-required",
                    operation,
                    Side::New,
                    &param.node.pointer,
                    message,
                );
            }
            if let (Some(old_schema), Some(new_schema)) =
                (parameter_schema(&was.node), parameter_schema(&param.node))
            {
                let mut scope = Scope::new(operation, Direction::Request, None, false);
                scope.form_exploded = form_exploded(&param.node);
                let place = Place::Parameter {
                    location: param.location.to_string(),
                    name: param.name.to_string(),
                };
                self.compare(&scope, &place, old_schema, new_schema);
            }
        }
    }

    fn request_body(&mut self, operation: &str, old_op: &Node<'a>, new_op: &Node<'a>) {
        let before = old_op
            .child("requestBody")
            .and_then(|b| self.old.resolve(b));
        let Some(after) = new_op
            .child("requestBody")
            .and_then(|b| self.new.resolve(b))
        else {
            return;
        };
        let Some(before) = before else {
            if after.flag("required") {
                let message = "added a required request body".to_string();
                let check = "request-body-added-required";
                self.push(check, operation, Side::New, &after.pointer, message);
            }
            return;
        };
        if after.flag("required") && !before.flag("required") {
            let message = "the request body became required".to_string();
            let check = "request-body-became-required";
            self.push(check, operation, Side::New, &after.pointer, message);
        }
        for (media_type, old_media, new_media) in self.media_types(&before, &after) {
            let Some(new_media) = new_media else {
                let message = format!("removed the media type {media_type} from the request body");
                let check = "request-body-media-type-removed";
                self.push(check, operation, Side::Old, &old_media.pointer, message);
                continue;
            };
            if let (Some(old_schema), Some(new_schema)) =
                (old_media.child("schema"), new_media.child("schema"))
            {
                let strong = is_json(media_type);
                let scope = Scope::new(operation, Direction::Request, None, strong);
                self.compare(&scope, &Place::Body, old_schema, new_schema);
            }
        }
    }

    fn responses(&mut self, operation: &str, old_op: &Node<'a>, new_op: &Node<'a>) {
        let new_responses = new_op.child("responses");
        for (status, old_response) in old_op.entries("responses") {
            let new_response = new_responses.as_ref().and_then(|r| r.child(status));
            let Some(new_response) = new_response else {
                // Only a removed success status breaks: clients do not depend on an error
                // status being sent (oasdiff's response-non-success-status-removed is INFO).
                if status.parse::<u16>().is_ok_and(|s| (200..300).contains(&s)) {
                    let message = format!("removed the success response with the status {status}");
                    let check = "response-success-status-removed";
                    self.push(check, operation, Side::Old, &old_response.pointer, message);
                }
                continue;
            };
            let (Some(before), Some(after)) = (
                self.old.resolve(old_response),
                self.new.resolve(new_response),
            ) else {
                continue;
            };
            for (media_type, old_media, new_media) in self.media_types(&before, &after) {
                let Some(new_media) = new_media else {
                    let message = format!(
                        "removed the media type {media_type} for the response with the status {status}"
                    );
                    let check = "response-media-type-removed";
                    self.push(check, operation, Side::Old, &old_media.pointer, message);
                    continue;
                };
                if let (Some(old_schema), Some(new_schema)) =
                    (old_media.child("schema"), new_media.child("schema"))
                {
                    let strong = is_json(media_type);
                    let scope = Scope::new(operation, Direction::Response, Some(status), strong);
                    self.compare(&scope, &Place::Body, old_schema, new_schema);
                }
            }
        }
    }

    /// OLD's media types of a body or response, each with NEW's of the same name (media type
    /// names are case-insensitive).
    fn media_types(
        &self,
        before: &Node<'a>,
        after: &Node<'a>,
    ) -> Vec<(&'a str, Node<'a>, Option<Node<'a>>)> {
        let mut new_content = HashMap::new();
        for (media_type, node) in after.entries("content") {
            new_content
                .entry(media_type.to_ascii_lowercase())
                .or_insert(node);
        }
        before
            .entries("content")
            .into_iter()
            .map(|(media_type, old_media)| {
                let new_media = new_content.get(&media_type.to_ascii_lowercase()).cloned();
                (media_type, old_media, new_media)
            })
            .collect()
    }

    /// A schema as compared ([`View`]), or `None` if it cannot be (not an object, an external
    /// or dangling `$ref`, nested too deep, out of work).
    fn view(&mut self, doc: Doc<'a>, node: Node<'a>, depth: usize) -> Option<View<'a>> {
        if depth > MAX_ALL_OF_DEPTH {
            return None;
        }
        let node = doc.resolve(node)?;
        if let Some(branch) = nullable_branch(doc, &node) {
            let mut view = self.view(doc, branch, depth + 1)?;
            view.nullable = true;
            view.wrapper = Some(node.pointer);
            return Some(view);
        }
        let obj = node.value.as_object()?;
        let size: usize = ["properties", "required", "allOf", "oneOf", "anyOf"]
            .iter()
            .map(|key| match obj.get(*key) {
                Some(Value::Object(map)) => map.len(),
                Some(Value::Array(list)) => list.len(),
                _ => 0,
            })
            .sum();
        if !self.spend(1 + size) {
            return None;
        }
        let mut view = View::own(&node, obj);
        for member in node.items("allOf") {
            if let Some(member) = self.view(doc, member, depth + 1) {
                view.absorb(member);
            }
        }
        view.type_list = self.type_list(doc, &node, &view);
        Some(view)
    }

    /// oasdiff's list-of-types pattern: a schema without properties that is either typed or a
    /// `oneOf`/`anyOf` of schemas with one type each.
    fn type_list(
        &mut self,
        doc: Doc<'a>,
        node: &Node<'a>,
        view: &View<'a>,
    ) -> Option<TypeList<'a>> {
        let plain = |key: &str| node.value.get(key).is_none();
        if !view.properties.is_empty() || !plain("allOf") || !plain("not") {
            return None;
        }
        if let Some(types) = &view.types {
            let types = types.clone();
            return Some(TypeList { types, list: false });
        }
        for members in [&view.one_of, &view.any_of] {
            if members.is_empty() || !self.spend(members.len()) {
                continue;
            }
            let types: Option<BTreeSet<&str>> = members
                .iter()
                .map(|member| simple_type(doc.resolve(member.clone())?.value))
                .collect();
            if let Some(types) = types {
                return Some(TypeList { types, list: true });
            }
        }
        None
    }

    /// Compares two schemas, the root of `place` (a body or a parameter): the pairs below are
    /// compared now, and their findings named from here once every pair is
    /// ([`Differ::name_findings`]).
    fn compare(&mut self, scope: &Scope, place: &Place, old: Node<'a>, new: Node<'a>) {
        let mode = Mode {
            direction: scope.direction,
            strongly_typed: scope.strongly_typed,
            parameter: matches!(place, Place::Parameter { .. }),
        };
        let Some(pair) = self.pair(mode, old, new) else {
            return;
        };
        while let Some((id, mode, old, new)) = self.pending.pop() {
            self.build(id, mode, &old, &new);
        }
        self.entries.push(Entry::Schema(Root {
            operation: scope.operation.to_string(),
            direction: scope.direction,
            status: scope.status.map(str::to_string),
            form_exploded: scope.form_exploded,
            place: place.clone(),
            pair,
            named: Vec::new(),
        }));
    }

    /// The pair of two schemas, queued to be compared if it is new; `None` if either cannot be
    /// resolved or the work is spent.
    fn pair(&mut self, mode: Mode, old: Node<'a>, new: Node<'a>) -> Option<usize> {
        let (old, new) = (self.old.resolve(old)?, self.new.resolve(new)?);
        let key = (address(old.value), address(new.value), mode);
        if let Some(&id) = self.pair_ids.get(&key) {
            return Some(id);
        }
        if !self.spend(1) {
            return None;
        }
        let id = self.pairs.len();
        self.pairs.push(Pair::default());
        self.pair_ids.insert(key, id);
        self.pending.push((id, mode, old, new));
        Some(id)
    }

    /// Compares a pair: its own findings, and the pairs below it (queued).
    fn build(&mut self, id: usize, mode: Mode, old: &Node<'a>, new: &Node<'a>) {
        let (Some(o), Some(n)) = (
            self.view(self.old, old.clone(), 0),
            self.view(self.new, new.clone(), 0),
        ) else {
            return;
        };
        let mut findings = Vec::new();
        let mut children = Vec::new();
        // Clients do not send read-only properties, nor get write-only ones.
        let hidden = !mode.parameter
            && match mode.direction {
                Direction::Request => n.read_only,
                Direction::Response => o.write_only,
            };
        nullability(mode, &o, &n, &mut findings);
        let listed = list_of_types(mode, &o, &n, &mut findings);
        if !listed {
            self.type_and_format(mode, &o, &n, &mut findings);
        }
        self.enumeration(mode, &o, &n, &mut findings);
        if mode.direction == Direction::Request {
            bounds(&o, &n, &mut findings);
            if let (None, Some(pattern)) = (o.pattern, n.pattern) {
                let what = format!("must now match the pattern {pattern}");
                findings.push(finding(Check::PatternAdded, &n.pointer, what));
            }
        }
        self.properties(mode, &o, &n, &mut findings, &mut children);
        let below = [
            ("items", o.items.clone(), n.items.clone()),
            (
                "additionalProperties",
                o.additional.clone(),
                n.additional.clone(),
            ),
        ];
        for (segment, before, after) in below {
            if let Some(child) = before.zip(after).and_then(|(b, a)| self.pair(mode, b, a)) {
                children.push((segment.to_string(), child));
            }
        }
        if !listed {
            let one_of = (o.one_of.as_slice(), n.one_of.as_slice());
            let any_of = (o.any_of.as_slice(), n.any_of.as_slice());
            self.alternatives(
                mode,
                "oneOf",
                one_of,
                &n.pointer,
                &mut findings,
                &mut children,
            );
            self.alternatives(
                mode,
                "anyOf",
                any_of,
                &n.pointer,
                &mut findings,
                &mut children,
            );
        }
        if let Some(pair) = self.pairs.get_mut(id) {
            pair.findings = findings;
            pair.children = children;
            pair.hidden = hidden;
        }
    }

    /// Names the findings of each pair in every request body, response and parameter that
    /// reaches it, by the shortest property path from there: one search back from each pair
    /// with findings, so that the cost follows the number of changes, not of operations.
    fn name_findings(&mut self) {
        let mut parents: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.pairs.len()];
        for (id, pair) in self.pairs.iter().enumerate() {
            for (edge, (_, child)) in pair.children.iter().enumerate() {
                if let Some(list) = parents.get_mut(*child) {
                    list.push((id, edge));
                }
            }
        }
        let mut roots: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if let Entry::Schema(root) = entry {
                roots.entry(root.pair).or_default().push(i);
            }
        }
        for target in 0..self.pairs.len() {
            if self.pairs.get(target).is_none_or(|p| p.findings.is_empty()) {
                continue;
            }
            // Towards the target: for each pair reaching it, the edge to take.
            let mut next: HashMap<usize, Option<usize>> = HashMap::from([(target, None)]);
            let mut queue = VecDeque::from([(target, 0)]);
            while let Some((id, depth)) = queue.pop_front() {
                let hidden = self.pairs.get(id).is_some_and(|p| p.hidden);
                let up = parents.get(id).map_or(&[][..], Vec::as_slice);
                if !self.spend_naming(1 + up.len()) {
                    return;
                }
                // A hidden pair is named only as a root, never as a property on the way.
                if hidden || depth >= MAX_SCHEMA_DEPTH {
                    continue;
                }
                for &(parent, edge) in up {
                    if let std::collections::hash_map::Entry::Vacant(slot) = next.entry(parent) {
                        slot.insert(Some(edge));
                        queue.push_back((parent, depth + 1));
                    }
                }
            }
            let reached: Vec<usize> = roots
                .keys()
                .copied()
                .filter(|pair| next.contains_key(pair))
                .collect();
            for pair in reached {
                for &i in roots.get(&pair).map_or(&[][..], Vec::as_slice) {
                    let Self { pairs, entries, .. } = &mut *self;
                    let steps = match entries.get_mut(i) {
                        Some(Entry::Schema(root)) => name(pairs, &next, root, target),
                        _ => 0,
                    };
                    if !self.spend_naming(1 + steps) {
                        return;
                    }
                }
            }
        }
    }

    /// Takes `units` of naming work; false (and the result marked truncated) once
    /// [`MAX_WORK`] is spent.
    fn spend_naming(&mut self, units: usize) -> bool {
        self.naming = self.naming.saturating_add(units);
        if self.naming > MAX_WORK {
            self.truncated = true;
        }
        self.naming <= MAX_WORK
    }

    fn type_and_format(&self, mode: Mode, o: &View<'a>, n: &View<'a>, found: &mut Vec<Finding>) {
        let (before, after) = (
            o.types.clone().unwrap_or_default(),
            n.types.clone().unwrap_or_default(),
        );
        let type_changed = before != after;
        let format_changed = o.format != n.format;
        if !type_changed && !format_changed {
            return;
        }
        let strong = mode.strongly_typed;
        let check = match mode.direction {
            Direction::Request => {
                let broken = (type_changed && request_type_breaks(&before, &after, strong))
                    || (format_changed && !format_contained(&after, n.format, o.format));
                broken.then_some(Check::TypeChanged)
            }
            Direction::Response => {
                let broken = (type_changed && response_type_breaks(&before, &after, strong))
                    || (format_changed && !format_contained(&before, o.format, n.format));
                let widened = type_changed && covered(&before, &after);
                broken.then_some(if widened {
                    Check::TypeGeneralized
                } else {
                    Check::TypeChanged
                })
            }
        };
        if let Some(check) = check {
            let what = format!(
                "changed its type from {} to {}",
                type_name(&before, o.format),
                type_name(&after, n.format)
            );
            let form_array =
                mode.direction == Direction::Request && self.scalar_to_array(&before, &after, o, n);
            found.push(Finding {
                form_array,
                ..finding(check, &n.pointer, what)
            });
        }
    }

    /// oasdiff's form/explode exemption: a scalar parameter widened to an array whose items
    /// accept every value it did (same constraints) still accepts `?status=open`, a one-element
    /// array on the wire.
    fn scalar_to_array(
        &self,
        before: &BTreeSet<&str>,
        after: &BTreeSet<&str>,
        o: &View<'a>,
        n: &View<'a>,
    ) -> bool {
        if single(after) != Some("array") || before.is_empty() || before.contains("array") {
            return false;
        }
        let (Some(base), Some(item)) = (
            self.old.0.pointer(&o.pointer),
            n.items.clone().and_then(|i| self.new.resolve(i)),
        ) else {
            return false;
        };
        let item_types = match item.value.get("type") {
            Some(Value::String(t)) => BTreeSet::from([t.as_str()]),
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => BTreeSet::new(),
        };
        let item_types: BTreeSet<&str> = item_types.into_iter().filter(|t| *t != "null").collect();
        let constraints = [
            "enum",
            "const",
            "pattern",
            "format",
            "maxLength",
            "minLength",
            "maximum",
            "minimum",
            "exclusiveMaximum",
            "exclusiveMinimum",
            "multipleOf",
        ];
        type_contained(&item_types, before, false)
            && constraints
                .iter()
                .all(|key| item.value.get(key) == base.get(key))
    }

    fn enumeration(&mut self, mode: Mode, o: &View<'a>, n: &View<'a>, found: &mut Vec<Finding>) {
        let Some(after) = &n.enumeration else {
            return;
        };
        let Some(before) = &o.enumeration else {
            if mode.direction == Direction::Request {
                let what = "was restricted to a list of enum values".to_string();
                found.push(finding(Check::BecameEnum, &after.pointer, what));
            }
            return;
        };
        let values = |node: &Node<'a>| node.value.as_array().map(Vec::as_slice).unwrap_or_default();
        let (old_values, new_values) = (values(before), values(after));
        if !self.spend(old_values.len() + new_values.len()) {
            return;
        }
        let (from, to, check) = match mode.direction {
            Direction::Request => (old_values, new_values, Check::EnumValueRemoved),
            Direction::Response => (new_values, old_values, Check::EnumValueAdded),
        };
        let kept: HashSet<String> = to.iter().map(Value::to_string).collect();
        for value in from {
            let value = value.to_string();
            if kept.contains(&value) {
                continue;
            }
            let what = match check {
                Check::EnumValueRemoved => format!("no longer accepts the enum value {value}"),
                _ => format!("may return the new enum value {value}"),
            };
            found.push(finding(check, &after.pointer, what));
        }
    }

    /// Properties added, removed, made required or optional, and the pairs of those on both
    /// sides.
    fn properties(
        &mut self,
        mode: Mode,
        o: &View<'a>,
        n: &View<'a>,
        found: &mut Vec<Finding>,
        children: &mut Vec<(String, usize)>,
    ) {
        let names: BTreeSet<&str> = o
            .properties
            .keys()
            .chain(n.properties.keys())
            .copied()
            .collect();
        for name in names {
            let about = |check, side, pointer: &Node<'a>, what: &str| Finding {
                property: Some(name.to_string()),
                side,
                ..finding(check, &pointer.pointer, what.to_string())
            };
            match (o.properties.get(name), n.properties.get(name)) {
                (Some(before), Some(after)) => {
                    let (was, is) = (o.required.contains(name), n.required.contains(name));
                    match mode.direction {
                        Direction::Request if is && !was => {
                            let view = self.view(self.new, after.clone(), 0);
                            if let Some(view) = view.filter(|v| !v.read_only) {
                                let check = if view.has_default {
                                    Check::BecameRequiredWithDefault
                                } else {
                                    Check::BecameRequired
                                };
                                found.push(about(check, Side::New, after, "became required"));
                            }
                        }
                        Direction::Response if was && !is => {
                            let view = self.view(self.old, before.clone(), 0);
                            if view.is_some_and(|v| !v.write_only) {
                                let check = Check::BecameOptional;
                                found.push(about(check, Side::New, after, "became optional"));
                            }
                        }
                        _ => {}
                    }
                    if let Some(child) = self.pair(mode, before.clone(), after.clone()) {
                        children.push((name.to_string(), child));
                    }
                }
                (None, Some(after)) if mode.direction == Direction::Request => {
                    if !n.required.contains(name) {
                        continue;
                    }
                    let view = self.view(self.new, after.clone(), 0);
                    let Some(view) = view.filter(|v| !v.read_only) else {
                        continue;
                    };
                    let (check, what) = if view.has_default {
                        (
                            Check::NewRequiredPropertyWithDefault,
                            "was added as required, with a default value",
                        )
                    } else {
                        (Check::NewRequiredProperty, "was added as required")
                    };
                    found.push(about(check, Side::New, after, what));
                }
                (Some(before), None) if mode.direction == Direction::Response => {
                    let view = self.view(self.old, before.clone(), 0);
                    if view.is_none_or(|v| v.write_only) {
                        continue;
                    }
                    let (check, what) = if o.required.contains(name) {
                        (
                            Check::RequiredPropertyRemoved,
                            "was removed (it was required)",
                        )
                    } else {
                        (
                            Check::OptionalPropertyRemoved,
                            "was removed (it was optional)",
                        )
                    };
                    found.push(about(check, Side::Old, before, what));
                }
                _ => {}
            }
        }
    }

    /// `oneOf`/`anyOf` alternatives: those given by `$ref` are matched by their target, inline
    /// ones by position when both sides have as many. A request alternative removed breaks
    /// senders of it; a `oneOf` response alternative added breaks readers.
    fn alternatives(
        &mut self,
        mode: Mode,
        keyword: &str,
        (before, after): (&[Node<'a>], &[Node<'a>]),
        pointer: &str,
        found: &mut Vec<Finding>,
        children: &mut Vec<(String, usize)>,
    ) {
        let (old_members, new_members) = (alternatives_of(before), alternatives_of(after));
        let inline = |members: &[(String, bool, Node<'a>)]| members.iter().filter(|m| !m.1).count();
        let inline_comparable = inline(&old_members) == inline(&new_members);
        let index = |members: &[(String, bool, Node<'a>)]| -> HashMap<(String, bool), Node<'a>> {
            members
                .iter()
                .map(|(label, by_ref, node)| ((label.clone(), *by_ref), node.clone()))
                .collect()
        };
        let (old_index, new_index) = (index(&old_members), index(&new_members));
        for (label, by_ref, old_member) in &old_members {
            match new_index.get(&(label.clone(), *by_ref)) {
                Some(new_member) if *by_ref || inline_comparable => {
                    if let Some(child) = self.pair(mode, old_member.clone(), new_member.clone()) {
                        children.push((format!("{keyword}[{label}]"), child));
                    }
                }
                None if *by_ref && mode.direction == Direction::Request => {
                    let check = if keyword == "oneOf" {
                        Check::OneOfRemoved
                    } else {
                        Check::AnyOfRemoved
                    };
                    let what = format!("no longer accepts the {keyword} alternative {label}");
                    found.push(finding(check, pointer, what));
                }
                _ => {}
            }
        }
        if mode.direction == Direction::Response && keyword == "oneOf" {
            for (label, by_ref, new_member) in &new_members {
                if *by_ref && !old_index.contains_key(&(label.clone(), true)) {
                    let what = format!("may now be the {keyword} alternative {label}");
                    found.push(finding(Check::OneOfAdded, &new_member.pointer, what));
                }
            }
        }
    }
}

/// A finding about a schema itself, in NEW.
fn finding(check: Check, pointer: &str, what: String) -> Finding {
    Finding {
        check,
        property: None,
        side: Side::New,
        pointer: pointer.to_string(),
        what,
        form_array: false,
    }
}

/// Names the findings of pair `target` in `root`, which reaches it along `next` (the edge to
/// take from each pair on the way); returns the work done.
fn name(
    pairs: &[Pair],
    next: &HashMap<usize, Option<usize>>,
    root: &mut Root,
    target: usize,
) -> usize {
    let mut place = root.place.clone();
    let mut path = Vec::new();
    let mut at = root.pair;
    for _ in 0..=MAX_SCHEMA_DEPTH {
        let Some(Some(edge)) = next.get(&at) else {
            break;
        };
        let Some((segment, child)) = pairs.get(at).and_then(|p| p.children.get(*edge)) else {
            return path.len();
        };
        place = place.child(segment);
        path.push(segment.as_str());
        at = *child;
    }
    let Some(pair) = pairs.get(target).filter(|_| at == target) else {
        return path.len();
    };
    let at_parameter = matches!(root.place, Place::Parameter { .. }) && target == root.pair;
    for found in &pair.findings {
        if found.form_array && root.form_exploded && at_parameter {
            continue;
        }
        let place = found
            .property
            .as_deref()
            .map_or_else(|| place.clone(), |p| place.child(p));
        let Some(check) = check_id(root.direction, place.at(), found.check) else {
            continue;
        };
        let subject = place.subject(root.direction, root.status.as_deref());
        let change = SpecChange {
            check,
            operation: root.operation.clone(),
            side: found.side,
            pointer: found.pointer.clone(),
            message: format!("{subject} {}", found.what),
        };
        root.named.push((path.join("/"), change));
    }
    path.len() + pair.findings.len()
}

fn nullability(mode: Mode, o: &View, n: &View, found: &mut Vec<Finding>) {
    match mode.direction {
        // An untyped schema accepts null anyway (oasdiff #1004).
        Direction::Request if o.nullable && !n.nullable && n.types.is_some() => {
            let what = "became not nullable".to_string();
            found.push(finding(Check::BecameNotNullable, &n.pointer, what));
        }
        Direction::Response if !o.nullable && n.nullable && o.types.is_some() => {
            let pointer = n.wrapper.as_ref().unwrap_or(&n.pointer);
            let what = "became nullable".to_string();
            found.push(finding(Check::BecameNullable, pointer, what));
        }
        _ => {}
    }
}

/// A change between a type and a `oneOf`/`anyOf` of types; true if there is one (then the
/// type itself and the alternatives are not compared again).
fn list_of_types(mode: Mode, o: &View, n: &View, found: &mut Vec<Finding>) -> bool {
    let (Some(before), Some(after)) = (&o.type_list, &n.type_list) else {
        return false;
    };
    if !before.list && !after.list {
        return false;
    }
    let (check, types) = match mode.direction {
        Direction::Request => (Check::ListOfTypesNarrowed, &before.types - &after.types),
        Direction::Response => (Check::ListOfTypesWidened, &after.types - &before.types),
    };
    if !types.is_empty() {
        let types = types.into_iter().collect::<Vec<_>>().join(", ");
        let what = match check {
            Check::ListOfTypesNarrowed => format!("no longer accepts the types {types}"),
            _ => format!("may now be of the types {types}"),
        };
        found.push(finding(check, &n.pointer, what));
    }
    true
}

/// Request bounds: an upper bound lowered or a lower bound raised, or either set.
fn bounds(o: &View, n: &View, found: &mut Vec<Finding>) {
    for (i, (keyword, upper, narrowed, set)) in BOUNDS.into_iter().enumerate() {
        let before = o.bounds.get(i).copied().flatten();
        let Some(after) = n.bounds.get(i).copied().flatten() else {
            continue;
        };
        match before {
            Some(before) if (upper && after < before) || (!upper && after > before) => {
                let change = if upper { "decreased" } else { "increased" };
                let what = format!("had its {keyword} {change} from {before} to {after}");
                found.push(finding(narrowed, &n.pointer, what));
            }
            None => {
                if let Some(set) = set {
                    let what = format!("had its {keyword} set to {after}");
                    found.push(finding(set, &n.pointer, what));
                }
            }
            Some(_) => {}
        }
    }
}

/// Alternatives with their labels: the `$ref` target, or `subschema #n` for inline ones (as
/// oasdiff names them), and whether the label is a `$ref`.
fn alternatives_of<'a>(members: &[Node<'a>]) -> Vec<(String, bool, Node<'a>)> {
    let mut inline = 0;
    members
        .iter()
        .map(
            |member| match member.value.get("$ref").and_then(Value::as_str) {
                Some(target) => (target.to_string(), true, member.clone()),
                None => {
                    inline += 1;
                    (format!("subschema #{inline}"), false, member.clone())
                }
            },
        )
        .collect()
}

/// The paths of a document: (template with parameter names blanked, template, path item).
fn paths_of(doc: Doc<'_>) -> Vec<(String, &str, Node<'_>)> {
    doc.root()
        .entries("paths")
        .into_iter()
        .map(|(template, item)| (path_key(template), template, item))
        .collect()
}

/// `/pets/{petId}` → `/pets/{}`: oasdiff matches paths whatever their parameters' names.
fn path_key(template: &str) -> String {
    let mut key = String::with_capacity(template.len());
    let mut in_param = false;
    for c in template.chars() {
        match c {
            '{' => {
                in_param = true;
                key.push('{');
            }
            '}' => {
                in_param = false;
                key.push('}');
            }
            _ if in_param => {}
            _ => key.push(c),
        }
    }
    key
}

fn operation_name(method: &str, template: &str) -> String {
    format!("{} {template}", method.to_ascii_uppercase())
}

/// An operation's parameters, path-level ones overridden by the operation's, keyed by `in` and
/// name: header names case-insensitively, path parameters by their position in the template
/// (so that renaming `{id}` to `{petId}` is no change).
fn parameters_of<'a>(
    doc: Doc<'a>,
    operation: &Operation<'a>,
) -> BTreeMap<(String, String), Parameter<'a>> {
    let positions: Vec<&str> = operation
        .template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect();
    let mut merged = BTreeMap::new();
    for list in [
        operation.item.items("parameters"),
        operation.op.items("parameters"),
    ] {
        for param in list {
            let Some(node) = doc.resolve(param) else {
                continue;
            };
            let (Some(location), Some(name)) = (
                node.value.get("in").and_then(Value::as_str),
                node.value.get("name").and_then(Value::as_str),
            ) else {
                continue;
            };
            let key = match location {
                "header" => name.to_ascii_lowercase(),
                "path" => positions
                    .iter()
                    .position(|p| *p == name)
                    .map_or_else(|| name.to_string(), |i| format!("#{i}")),
                _ => name.to_string(),
            };
            let required = location == "path" || node.flag("required");
            let parameter = Parameter {
                node,
                location,
                name,
                required,
            };
            merged.insert((location.to_string(), key), parameter);
        }
    }
    merged
}

/// A query or cookie parameter serialized `style: form, explode: true`, their default.
fn form_exploded(param: &Node<'_>) -> bool {
    let location = param.value.get("in").and_then(Value::as_str);
    let style = param
        .value
        .get("style")
        .and_then(Value::as_str)
        .unwrap_or("form");
    let explode = param.value.get("explode").and_then(Value::as_bool);
    matches!(location, Some("query" | "cookie")) && style == "form" && explode.unwrap_or(true)
}

/// A parameter's `schema`, or the schema of its first `content` media type.
fn parameter_schema<'a>(param: &Node<'a>) -> Option<Node<'a>> {
    param.child("schema").or_else(|| {
        let (_, media) = param.entries("content").into_iter().next()?;
        media.child("schema")
    })
}

/// `application/json`, `application/problem+json`, with or without parameters.
fn is_json(media_type: &str) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// A 3.1 nullable wrapper's other branch: `oneOf`/`anyOf` of `{type: 'null'}` and one schema,
/// with no type or properties of its own.
fn nullable_branch<'a>(doc: Doc<'a>, node: &Node<'a>) -> Option<Node<'a>> {
    if node.value.get("type").is_some() || node.value.get("properties").is_some() {
        return None;
    }
    for keyword in ["oneOf", "anyOf"] {
        let pair = node.value.get(keyword).and_then(Value::as_array);
        if pair.is_none_or(|list| list.len() != 2) {
            continue;
        }
        let members = node.items(keyword);
        let [first, second] = members.as_slice() else {
            continue;
        };
        let is_null = |member: &Node<'a>| {
            doc.resolve(member.clone())
                .is_some_and(|m| simple_type(m.value) == Some("null"))
        };
        match (is_null(first), is_null(second)) {
            (true, false) => return Some(second.clone()),
            (false, true) => return Some(first.clone()),
            _ => {}
        }
    }
    None
}

/// The one type of a plain schema (a single type, no properties or alternatives).
fn simple_type(value: &Value) -> Option<&str> {
    let complex = ["properties", "oneOf", "anyOf", "allOf"];
    if complex.iter().any(|key| value.get(key).is_some()) {
        return None;
    }
    match value.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(list) => match list.as_slice() {
            [Value::String(t)] => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// Every value of type `sub` is one of `sup`: the same type, or an integer within number.
fn is_subtype(sub: &str, sup: &str) -> bool {
    sub == sup || (sub == "integer" && sup == "number")
}

/// Every type of `sub` (non-empty) is covered by one of `sup`.
fn covered(sub: &BTreeSet<&str>, sup: &BTreeSet<&str>) -> bool {
    !sub.is_empty() && sub.iter().all(|t| sup.iter().any(|s| is_subtype(t, s)))
}

/// oasdiff's `isTypeContained`: `from` (the types no longer there) is within `to` (the types
/// newly there). Outside JSON everything reads as a string, so any type may become a string.
fn type_contained(to: &BTreeSet<&str>, from: &BTreeSet<&str>, strongly_typed: bool) -> bool {
    if let (Some(to), Some(from)) = (single(to), single(from)) {
        if is_subtype(from, to) {
            return true;
        }
    }
    !strongly_typed && (to.is_empty() || single(to) == Some("string"))
}

fn single<'s>(types: &BTreeSet<&'s str>) -> Option<&'s str> {
    match types.len() {
        1 => types.first().copied(),
        _ => None,
    }
}

/// A request type change breaks unless NEW accepts every type OLD did, or no longer constrains
/// the type.
fn request_type_breaks(
    before: &BTreeSet<&str>,
    after: &BTreeSet<&str>,
    strongly_typed: bool,
) -> bool {
    if covered(before, after) || after.is_empty() {
        return false;
    }
    !type_contained(&(after - before), &(before - after), strongly_typed)
}

/// A response type change breaks unless NEW returns only types OLD could, or OLD did not
/// constrain the type.
fn response_type_breaks(
    before: &BTreeSet<&str>,
    after: &BTreeSet<&str>,
    strongly_typed: bool,
) -> bool {
    if covered(after, before) || before.is_empty() {
        return false;
    }
    !type_contained(&(before - after), &(after - before), strongly_typed)
}

/// oasdiff's `isFormatContained`: a format removed, or widened (`int32` to `int64`, `float` to
/// `double`, `date` to `date-time`), still accepts what the old one did.
fn format_contained(types: &BTreeSet<&str>, to: Option<&str>, from: Option<&str>) -> bool {
    let Some(to) = to else {
        return true;
    };
    let from = from.unwrap_or_default();
    match single(types) {
        Some("number") => to == "double" && from == "float",
        Some("integer") => matches!(
            (to, from),
            ("int64", "int32") | ("bigint", "int32" | "int64")
        ),
        Some("string") => to == "date-time" && matches!(from, "date" | "time"),
        _ => false,
    }
}

/// `number`, `string/date-time`, `integer, string`, `any`.
fn type_name(types: &BTreeSet<&str>, format: Option<&str>) -> String {
    let mut name = if types.is_empty() {
        "any".to_string()
    } else {
        types.iter().copied().collect::<Vec<_>>().join(", ")
    };
    if let Some(format) = format {
        name = format!("{name}/{format}");
    }
    name
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(yaml: &str) -> Spec {
        crate::openapi::document::parse(yaml).unwrap()
    }

    fn ids(old: &str, new: &str) -> Vec<&'static str> {
        breaking_changes(&spec(old), &spec(new))
            .changes
            .into_iter()
            .map(|c| c.check)
            .collect()
    }

    /// A recursive schema (a tree node whose children are tree nodes) on both sides ends, and a
    /// change deep inside it is still found once.
    #[test]
    fn recursive_schemas_end() {
        let tree = |extra: &str| {
            format!(
                "openapi: 3.0.3\npaths:\n  /tree:\n    get:\n      responses:\n        '200':\n          description: ok\n          content:\n            application/json:\n              schema: {{$ref: '#/components/schemas/Node'}}\ncomponents:\n  schemas:\n    Node:\n      type: object\n      required: [children]\n      properties:\n        children:\n          type: array\n          items: {{$ref: '#/components/schemas/Node'}}\n        parent: {{$ref: '#/components/schemas/Node'}}\n{extra}"
            )
        };
        assert_eq!(ids(&tree(""), &tree("")), Vec::<&str>::new());
        let with_name = tree("        name: {type: string}\n");
        let changes = breaking_changes(&spec(&with_name), &spec(&tree(""))).changes;
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].check, "response-optional-property-removed");
        assert_eq!(changes[0].side, Side::Old);
        assert_eq!(
            changes[0].pointer,
            "/components/schemas/Node/properties/name"
        );
    }

    /// A change in one schema of a cyclic graph of a hundred is reported once in each of the
    /// 300 operations that reach it, named by the shortest property path from there.
    #[test]
    fn a_shared_change_is_named_in_every_operation_by_its_shortest_path() {
        let doc = |removed: usize| {
            let mut out = String::from("openapi: 3.0.3\npaths:\n");
            for k in 0..300 {
                out += &format!("  /r{k}:\n    get:\n      responses:\n        '200':\n          description: ok\n          content:\n            application/json:\n              schema: {{$ref: '#/components/schemas/S{}'}}\n", k % 100);
            }
            out += "components:\n  schemas:\n";
            for i in 0..100 {
                let id = if i == removed {
                    ""
                } else {
                    "id: {type: string}, "
                };
                out += &format!(
                    "    S{i}: {{type: object, required: [id], properties: {{{id}next: {{$ref: '#/components/schemas/S{}'}}, other: {{$ref: '#/components/schemas/S{}'}}}}}}\n",
                    (i + 1) % 100,
                    (i * 7) % 100
                );
            }
            out
        };
        let diff = breaking_changes(&spec(&doc(usize::MAX)), &spec(&doc(50)));
        assert!(!diff.truncated);
        assert_eq!(diff.changes.len(), 300);
        assert!(diff
            .changes
            .iter()
            .all(|c| c.check == "response-required-property-removed"
                && c.pointer == "/components/schemas/S50/properties/id"));
        let named = |operation: &str| {
            let change = diff
                .changes
                .iter()
                .find(|c| c.operation == operation)
                .unwrap();
            change.message.clone()
        };
        assert_eq!(
            named("GET /r50"),
            "the response property id (status 200) was removed (it was required)"
        );
        assert_eq!(
            named("GET /r149"),
            "the response property next/id (status 200) was removed (it was required)"
        );
        // S7 reaches S50 by `other` (S7 -> S49) then `next`, shorter than 43 times `next`.
        assert_eq!(
            named("GET /r7"),
            "the response property other/next/id (status 200) was removed (it was required)"
        );
    }

    /// `$ref` loops (`A` → `B` → `A`), self references and dangling references are not followed
    /// forever and do not panic.
    #[test]
    fn reference_loops_and_dangling_references_are_not_compared() {
        let looped = "openapi: 3.1.0\npaths:\n  /a:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: {$ref: '#/components/schemas/A'}\n      responses:\n        '200': {$ref: '#/components/responses/Loop'}\n    get:\n      parameters: [{$ref: '#/components/parameters/Self'}]\n      responses: {}\ncomponents:\n  schemas:\n    A: {$ref: '#/components/schemas/B'}\n    B: {$ref: '#/components/schemas/A'}\n  responses:\n    Loop: {$ref: '#/components/responses/Loop'}\n  parameters:\n    Self: {$ref: '#/components/parameters/Self'}\n";
        let dangling = looped.replace("'#/components/schemas/B'", "'#/nowhere'");
        assert_eq!(ids(looped, looped), Vec::<&str>::new());
        assert_eq!(ids(looped, &dangling), Vec::<&str>::new());
        assert_eq!(ids(&dangling, looped), Vec::<&str>::new());
    }

    /// A schema that references itself through `allOf` a thousand times over is bounded by the
    /// work limit, not by the time it would take.
    #[test]
    fn hostile_fan_out_is_bounded() {
        let fan: String = (0..1000)
            .map(|_| "{$ref: '#/components/schemas/A'}")
            .collect::<Vec<_>>()
            .join(", ");
        let doc = format!(
            "openapi: 3.0.3\npaths:\n  /a:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: {{$ref: '#/components/schemas/A'}}\n      responses: {{}}\ncomponents:\n  schemas:\n    A:\n      allOf: [{fan}]\n"
        );
        let started = std::time::Instant::now();
        let diff = breaking_changes(&spec(&doc), &spec(&doc));
        assert!(diff.truncated);
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    /// Path-level parameters are merged with the operation's, the operation's winning; header
    /// names match whatever their case; a renamed path parameter is the same parameter.
    #[test]
    fn parameters_merge_path_and_operation_levels() {
        let api = |path_level: &str, op_level: &str, template: &str| {
            format!(
                "openapi: 3.0.3\npaths:\n  {template}:\n    parameters:\n{path_level}    get:\n      parameters:\n{op_level}      responses: {{}}\n"
            )
        };
        let id_param = "      - {name: id, in: path, required: true, schema: {type: string}}\n";
        let renamed = "      - {name: petId, in: path, required: true, schema: {type: string}}\n";
        let optional_limit = "      - {name: limit, in: query, schema: {type: integer}}\n";
        let required_limit =
            "        - {name: limit, in: query, required: true, schema: {type: integer}}\n";
        let optional_limit_op = "        - {name: limit, in: query, schema: {type: integer}}\n";
        let header = |name: &str| {
            format!("        - {{name: {name}, in: header, required: true, schema: {{type: string}}}}\n")
        };

        // The operation's `required: true` overrides the path item's optional `limit`.
        let old = api(
            &format!("{id_param}{optional_limit}"),
            "        []\n",
            "/pets/{id}",
        );
        let new = api(
            &format!("{id_param}{optional_limit}"),
            required_limit,
            "/pets/{id}",
        );
        assert_eq!(ids(&old, &new), ["request-parameter-became-required"]);
        // Moving a parameter from the path item to the operation is no change.
        let moved = api(id_param, optional_limit_op, "/pets/{id}");
        assert_eq!(ids(&old, &moved), Vec::<&str>::new());
        // Renaming the path parameter is no change; a new one in the template is.
        let renamed_spec = api(
            &format!("{renamed}{optional_limit}"),
            "        []\n",
            "/pets/{petId}",
        );
        assert_eq!(ids(&old, &renamed_spec), Vec::<&str>::new());
        // Header names are case-insensitive.
        let lower = api(id_param, &header("x-request-id"), "/pets/{id}");
        let upper = api(id_param, &header("X-Request-ID"), "/pets/{id}");
        assert_eq!(ids(&lower, &upper), Vec::<&str>::new());
        let without = api(id_param, "        []\n", "/pets/{id}");
        assert_eq!(ids(&without, &upper), ["new-required-request-parameter"]);
    }

    /// `allOf` members are flattened (a property is named without them), `oneOf` alternatives
    /// given by `$ref` are matched by target, and a 3.1 nullable wrapper is where `null` was
    /// allowed.
    #[test]
    fn all_of_is_flattened_and_alternatives_match_by_reference() {
        let doc = |request: &str, response: &str, card: &str| {
            format!(
                "openapi: 3.1.0\npaths:\n  /pay:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: {request}\n      responses:\n        '200':\n          description: ok\n          content:\n            application/json:\n              schema: {response}\ncomponents:\n  schemas:\n    Base: {{type: object, properties: {{id: {{type: string}}}}}}\n    Card: {{type: object, required: [number], properties: {{number: {{type: string}}{card}}}}}\n    Bank: {{type: object, properties: {{iban: {{type: string}}}}}}\n"
            )
        };
        let base = "{allOf: [{$ref: '#/components/schemas/Base'}]}";
        let extra = "{allOf: [{$ref: '#/components/schemas/Base'}, {required: [extra], properties: {extra: {type: string}}}]}";
        let both =
            "{oneOf: [{$ref: '#/components/schemas/Card'}, {$ref: '#/components/schemas/Bank'}]}";
        let card = "{oneOf: [{$ref: '#/components/schemas/Card'}]}";

        let changes = |old: String, new: String| -> Vec<(&'static str, String, String)> {
            breaking_changes(&spec(&old), &spec(&new))
                .changes
                .into_iter()
                .map(|c| (c.check, c.message, c.pointer))
                .collect()
        };
        let found = changes(doc(base, base, ""), doc(extra, base, ""));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "new-required-request-property");
        assert_eq!(
            found[0].1,
            "the request property extra was added as required"
        );

        let found = changes(doc(both, card, ""), doc(card, both, ""));
        let ids: Vec<_> = found.iter().map(|c| c.0).collect();
        assert_eq!(
            ids,
            ["request-body-one-of-removed", "response-body-one-of-added"]
        );
        assert!(
            found[0].1.contains("#/components/schemas/Bank"),
            "{found:?}"
        );

        // A change inside a matched alternative is named through it.
        let found = changes(
            doc(card, card, ""),
            doc(card, card, ", cvc: {type: integer}"),
        );
        assert_eq!(found, []);
        let found = changes(
            doc(card, card, ", cvc: {type: integer}"),
            doc(card, card, ", cvc: {type: string}"),
        );
        let named: Vec<_> = found.iter().map(|c| (c.0, c.1.as_str())).collect();
        assert_eq!(
            named,
            [
                ("request-property-type-changed", "the request property oneOf[#/components/schemas/Card]/cvc changed its type from integer to string"),
                ("response-property-type-changed", "the response property oneOf[#/components/schemas/Card]/cvc (status 200) changed its type from integer to string"),
            ]
        );

        // `null` allowed by wrapping a reference: the wrapper is the place.
        let wrapped = "{type: object, properties: {card: {oneOf: [{type: 'null'}, {$ref: '#/components/schemas/Card'}]}}}";
        let plain = "{type: object, properties: {card: {$ref: '#/components/schemas/Card'}}}";
        let found = changes(doc(plain, plain, ""), doc(plain, wrapped, ""));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "response-property-became-nullable");
        assert_eq!(
            found[0].2,
            "/paths/~1pay/post/responses/200/content/application~1json/schema/properties/card"
        );
    }

    /// `?status=open` is a one-element array when the parameter is `style: form, explode: true`
    /// (a query parameter's default), so widening it to an array whose items accept the same
    /// values is not breaking (oasdiff #689); items narrower, a path parameter, or
    /// `explode: false` are.
    #[test]
    fn a_query_scalar_may_become_a_form_exploded_array() {
        let api = |param: &str| {
            format!("openapi: 3.1.0\npaths:\n  /issues/{{id}}:\n    get:\n      parameters:\n        - {{name: id, in: path, required: true, schema: {{type: string}}}}\n        - {param}\n      responses: {{}}\n")
        };
        let scalar = |location: &str| {
            api(&format!(
                "{{name: state, in: {location}, schema: {{type: string, maxLength: 10}}}}"
            ))
        };
        let cases = [
            ("query", "{name: state, in: query, schema: {type: array, items: {type: string, maxLength: 10}}}", vec![]),
            ("query", "{name: state, in: query, schema: {type: [array, 'null'], items: {type: string, maxLength: 10}}}", vec![]),
            ("cookie", "{name: state, in: cookie, schema: {type: array, items: {type: string, maxLength: 10}}}", vec![]),
            ("query", "{name: state, in: query, schema: {type: array, items: {type: string, maxLength: 5}}}", vec!["request-parameter-type-changed"]),
            ("query", "{name: state, in: query, schema: {type: array, items: {type: integer, maxLength: 10}}}", vec!["request-parameter-type-changed"]),
            ("query", "{name: state, in: query, explode: false, schema: {type: array, items: {type: string, maxLength: 10}}}", vec!["request-parameter-type-changed"]),
            ("header", "{name: state, in: header, schema: {type: array, items: {type: string, maxLength: 10}}}", vec!["request-parameter-type-changed"]),
        ];
        for (location, param, expected) in cases {
            assert_eq!(ids(&scalar(location), &api(param)), expected, "{param}");
        }
    }

    #[test]
    fn type_changes_follow_oasdiff_variance() {
        let body = |request: &str, response: &str| {
            format!(
                "openapi: 3.1.0\npaths:\n  /x:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: {{type: object, properties: {{v: {request}}}}}\n      responses:\n        '200':\n          description: ok\n          content:\n            application/json:\n              schema: {{type: object, properties: {{v: {response}}}}}\n"
            )
        };
        let same = "{type: string}";
        let cases: [(&str, &str, &str, &str, &[&str]); 9] = [
            (
                "{type: number}",
                "{type: integer}",
                same,
                same,
                &["request-property-type-changed"],
            ),
            ("{type: integer}", "{type: number}", same, same, &[]),
            (
                same,
                same,
                "{type: integer}",
                "{type: number}",
                &["response-property-type-generalized"],
            ),
            (same, same, "{type: number}", "{type: integer}", &[]),
            (
                "{type: [string, integer]}",
                "{type: string}",
                same,
                same,
                &["request-property-type-changed"],
            ),
            (
                "{type: [string, 'null']}",
                "{type: string}",
                same,
                same,
                &["request-property-became-not-nullable"],
            ),
            (
                same,
                same,
                "{type: string}",
                "{type: [string, 'null']}",
                &["response-property-became-nullable"],
            ),
            (
                "{type: string, format: date}",
                "{type: string, format: date-time}",
                same,
                same,
                &[],
            ),
            (
                "{type: string}",
                "{type: string, format: uuid}",
                same,
                same,
                &["request-property-type-changed"],
            ),
        ];
        for (old_req, new_req, old_resp, new_resp, expected) in cases {
            let got = ids(&body(old_req, old_resp), &body(new_req, new_resp));
            assert_eq!(
                got, expected,
                "{old_req} -> {new_req}, {old_resp} -> {new_resp}"
            );
        }
    }

    /// Each fixture pair under `tests/data/openapi-diff/` (real APIs' changes) gives exactly the
    /// changes its `expected.txt` lists: one `check-id METHOD /path` a line, `#` comments.
    #[test]
    fn real_world_changes_give_their_expected_checks() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/openapi-diff");
        let mut cases: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        cases.sort();
        assert!(cases.len() >= 10, "{} cases", cases.len());
        let (mut breaking, mut not_breaking) = (0, 0);
        for case in cases {
            let old = crate::openapi::read_file(&case.join("old.yaml")).unwrap();
            let new = crate::openapi::read_file(&case.join("new.yaml")).unwrap();
            let expected_text = std::fs::read_to_string(case.join("expected.txt")).unwrap();
            let mut expected: Vec<&str> = expected_text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            let diff = breaking_changes(&old, &new);
            assert!(!diff.truncated, "{}", case.display());
            let mut got: Vec<String> = diff
                .changes
                .iter()
                .map(|c| format!("{} {}", c.check, c.operation))
                .collect();
            expected.sort_unstable();
            got.sort();
            assert_eq!(got, expected, "{}: {:#?}", case.display(), diff.changes);
            if expected.is_empty() {
                not_breaking += 1;
            } else {
                breaking += 1;
            }
            // Every pointer names a node of the spec it is in.
            for change in &diff.changes {
                let doc = match change.side {
                    Side::Old => &old.document,
                    Side::New => &new.document,
                };
                assert!(doc.pointer(&change.pointer).is_some(), "{change:?}");
            }
        }
        assert!(
            breaking >= 5 && not_breaking >= 3,
            "{breaking} breaking, {not_breaking} not"
        );
    }
}
