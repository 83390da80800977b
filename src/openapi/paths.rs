//! Matching a request path against the path templates of an OpenAPI document (`/charges/{id}`).
//!
//! The templates are compiled into a tree of segments, matched without regular expressions:
//! a segment is literal text, or literal text around `{parameters}` (`{name}.{ext}`,
//! `{id}:refund`). As OpenAPI says, concrete segments win over templated ones: at each segment
//! the literal child is tried first, then the templated ones in the order the document lists
//! them; a branch that dead-ends further down gives way to the next one. Each node is visited
//! at most once per request, so the cost is bounded by the size of the tree.
//!
//! Request segments are compared percent-decoded (`/char%67es` is `/charges`, as the service
//! will read it). A segment that could mean something else to the service never matches: `.`
//! and `..` (a path the service may normalise to another one) and decoded `/`, `\` or NUL (an
//! encoded separator a service may decode before routing). An empty segment (`//`, a trailing
//! `/`) only matches a template that has one: `/charges/` is not `/charges`.

use std::borrow::Cow;
use std::collections::HashMap;

use percent_encoding::percent_decode;

/// One part of a templated segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    /// A `{parameter}`: one or more bytes.
    Parameter,
}

/// A segment with at least one parameter, e.g. `{id}` or `{name}.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(Vec<Part>);

impl Pattern {
    /// Whether `segment` (decoded) fits: literals in place, each parameter non-empty and
    /// ending where the next literal first occurs.
    fn matches(&self, segment: &[u8]) -> bool {
        let mut at = 0;
        let mut parts = self.0.iter().peekable();
        while let Some(part) = parts.next() {
            match part {
                Part::Literal(text) => {
                    if !segment[at..].starts_with(text) {
                        return false;
                    }
                    at += text.len();
                }
                Part::Parameter => match parts.peek() {
                    None => return segment.len() > at,
                    Some(Part::Literal(next)) => {
                        let rest = &segment[at..];
                        // the parameter takes at least one byte
                        let Some(found) = find(rest.get(1..).unwrap_or_default(), next) else {
                            return false;
                        };
                        at += found + 1;
                    }
                    // two parameters in a row are refused when compiling
                    Some(Part::Parameter) => return false,
                },
            }
        }
        at == segment.len()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// One level of the tree.
#[derive(Debug, Default)]
struct Node {
    literals: HashMap<Vec<u8>, Node>,
    patterns: Vec<(Pattern, Node)>,
    /// The index of the path item whose template ends here.
    item: Option<usize>,
}

/// The path templates of a document, ready to match request paths.
#[derive(Debug, Default)]
pub struct PathMatcher {
    root: Node,
    len: usize,
}

/// A template that cannot be matched as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {template:?}: {reason}")]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

/// Most segments in a template or a matched request path: deeper paths are not real APIs.
const MAX_SEGMENTS: usize = 64;

impl PathMatcher {
    /// Adds `template` (e.g. `/charges/{id}`) as path item `item`. Two templates that differ
    /// only in their parameters' names are the same path (OpenAPI forbids them): an error.
    pub fn insert(&mut self, template: &str, item: usize) -> Result<(), TemplateError> {
        let error = |reason: &str| TemplateError {
            template: template.to_string(),
            reason: reason.to_string(),
        };
        let Some(rest) = template.strip_prefix('/') else {
            return Err(error("must start with '/'"));
        };
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.len() > MAX_SEGMENTS {
            return Err(error("has too many segments"));
        }
        let mut node = &mut self.root;
        for segment in segments {
            node = match parse_segment(segment).map_err(|reason| error(&reason))? {
                Segment::Literal(text) => node.literals.entry(text).or_default(),
                Segment::Pattern(pattern) => {
                    let at = node.patterns.iter().position(|(p, _)| *p == pattern);
                    let at = at.unwrap_or_else(|| {
                        node.patterns.push((pattern, Node::default()));
                        node.patterns.len() - 1
                    });
                    &mut node.patterns[at].1
                }
            };
        }
        if node.item.is_some() {
            return Err(error(
                "is the same path as another one (only parameter names differ)",
            ));
        }
        node.item = Some(item);
        self.len += 1;
        Ok(())
    }

    /// The path item `path` (as the request has it, percent-encoded) belongs to.
    pub fn find(&self, path: &str) -> Option<usize> {
        let rest = path.strip_prefix('/')?;
        let mut segments: Vec<Cow<'_, [u8]>> = Vec::new();
        for raw in rest.split('/') {
            if segments.len() == MAX_SEGMENTS {
                return None;
            }
            let decoded: Cow<'_, [u8]> = percent_decode(raw.as_bytes()).into();
            if matches!(&*decoded, b"." | b"..")
                || decoded.iter().any(|b| matches!(b, b'/' | b'\\' | 0))
            {
                return None;
            }
            segments.push(decoded);
        }
        walk(&self.root, &segments)
    }

    /// How many templates were added.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Depth first, literal child first, then the patterns in order.
fn walk(node: &Node, segments: &[Cow<'_, [u8]>]) -> Option<usize> {
    let Some((first, rest)) = segments.split_first() else {
        return node.item;
    };
    if let Some(found) = node
        .literals
        .get(first.as_ref())
        .and_then(|child| walk(child, rest))
    {
        return Some(found);
    }
    if first.is_empty() {
        return None;
    }
    node.patterns
        .iter()
        .filter(|(pattern, _)| pattern.matches(first))
        .find_map(|(_, child)| walk(child, rest))
}

enum Segment {
    Literal(Vec<u8>),
    Pattern(Pattern),
}

/// A template segment: literal text (percent-decoded, as requests are) or text and
/// `{parameters}`.
fn parse_segment(segment: &str) -> Result<Segment, String> {
    if !segment.contains(['{', '}']) {
        return Ok(Segment::Literal(
            percent_decode(segment.as_bytes()).collect(),
        ));
    }
    let mut parts = Vec::new();
    let mut rest = segment;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                parts.push(Part::Literal(percent_decode(rest.as_bytes()).collect()));
                rest = "";
            }
            Some(at) if rest.as_bytes()[at] == b'}' => {
                return Err(format!("unbalanced '}}' in segment {segment:?}"));
            }
            Some(at) => {
                if at > 0 {
                    parts.push(Part::Literal(
                        percent_decode(&rest.as_bytes()[..at]).collect(),
                    ));
                }
                let after = &rest[at + 1..];
                let Some(end) = after.find('}') else {
                    return Err(format!("unclosed '{{' in segment {segment:?}"));
                };
                let name = &after[..end];
                if name.is_empty() || name.contains('{') {
                    return Err(format!("bad parameter in segment {segment:?}"));
                }
                if parts.last() == Some(&Part::Parameter) {
                    return Err(format!(
                        "two parameters without text between them in segment {segment:?}"
                    ));
                }
                parts.push(Part::Parameter);
                rest = &after[end + 1..];
            }
        }
    }
    Ok(Segment::Pattern(Pattern(parts)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn matcher(templates: &[&str]) -> PathMatcher {
        let mut m = PathMatcher::default();
        for (i, t) in templates.iter().enumerate() {
            m.insert(t, i).unwrap();
        }
        m
    }

    #[test]
    fn concrete_segments_win_over_templated_ones_in_any_order() {
        let m = matcher(&["/charges/{id}", "/charges/search", "/charges"]);
        assert_eq!(m.find("/charges/search"), Some(1));
        assert_eq!(m.find("/charges/ch_1"), Some(0));
        assert_eq!(m.find("/charges"), Some(2));
        let m = matcher(&["/charges/search", "/charges/{id}"]);
        assert_eq!(m.find("/charges/search"), Some(0));
        assert_eq!(m.find("/charges/x"), Some(1));
    }

    #[test]
    fn a_dead_end_literal_branch_gives_way_to_a_template() {
        let m = matcher(&["/charges/{id}", "/{kind}/x/refund"]);
        assert_eq!(m.find("/charges/x/refund"), Some(1));
        assert_eq!(m.find("/charges/x"), Some(0));
        assert_eq!(m.find("/charges/x/other"), None);
    }

    #[test]
    fn parameters_with_text_around_them() {
        let m = matcher(&[
            "/files/{name}.{ext}",
            "/charges/{id}:refund",
            "/v{major}/ping",
        ]);
        assert_eq!(m.find("/files/report.pdf"), Some(0));
        assert_eq!(m.find("/files/archive.tar.gz"), Some(0));
        assert_eq!(m.find("/files/.pdf"), None, "a parameter is never empty");
        assert_eq!(m.find("/files/noext"), None);
        assert_eq!(m.find("/charges/ch_1:refund"), Some(1));
        assert_eq!(m.find("/charges/:refund"), None);
        assert_eq!(m.find("/v3/ping"), Some(2));
        assert_eq!(m.find("/v/ping"), None);
    }

    #[test]
    fn segments_are_compared_percent_decoded() {
        let m = matcher(&["/charges/{id}", "/a b"]);
        assert_eq!(m.find("/char%67es/ch_1"), Some(0));
        assert_eq!(m.find("/charges/ch%201"), Some(0));
        assert_eq!(m.find("/a%20b"), Some(1));
    }

    #[test]
    fn segments_a_service_could_read_as_another_path_never_match() {
        let m = matcher(&["/charges/{id}", "/charges/{id}/refunds"]);
        for path in [
            "/charges/..",
            "/charges/.",
            "/charges/%2e%2e",
            "/charges/..%2Fadmin",
            "/charges/a%2fb",
            "/charges/a%5Cb",
            "/charges/a%00",
            "/charges/x/../refunds",
        ] {
            assert_eq!(m.find(path), None, "{path}");
        }
    }

    #[test]
    fn empty_segments_and_trailing_slashes_are_distinct_paths() {
        let m = matcher(&["/charges", "/charges/{id}", "/"]);
        assert_eq!(m.find("/charges/"), None);
        assert_eq!(m.find("//charges"), None);
        assert_eq!(m.find("/"), Some(2));
        assert_eq!(m.find(""), None);
        let m = matcher(&["/charges/"]);
        assert_eq!(m.find("/charges/"), Some(0));
        assert_eq!(m.find("/charges"), None);
    }

    #[test]
    fn malformed_or_duplicate_templates_are_refused() {
        let mut m = PathMatcher::default();
        m.insert("/charges/{id}", 0).unwrap();
        let duplicate = m.insert("/charges/{charge}", 1).unwrap_err();
        assert!(duplicate.reason.contains("same path"), "{duplicate}");
        for bad in [
            "charges",
            "/charges/{id",
            "/charges/id}",
            "/charges/{}",
            "/charges/{a}{b}",
        ] {
            assert!(PathMatcher::default().insert(bad, 0).is_err(), "{bad}");
        }
        let deep = format!("/{}", vec!["a"; MAX_SEGMENTS + 1].join("/"));
        assert!(PathMatcher::default().insert(&deep, 0).is_err());
        let m = matcher(&["/a"]);
        assert_eq!(m.find(&deep), None);
    }
}
