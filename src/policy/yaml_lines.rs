//! The line of every field of a YAML document, so a finding names `file:line` as code scanning
//! needs (the loader parses with serde, which keeps no positions).
//!
//! Field paths are written as the loader and serde_path_to_error write them:
//! `spec.backends[0].timeout`, `metadata.labels.compliance`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Field path to the 1-based line of its key (or of its item, for a sequence item), within one
/// document's text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldLines {
    lines: HashMap<String, usize>,
    /// The line of the document's first key.
    first: Option<usize>,
}

impl FieldLines {
    /// Indexes `text`, whose line 1 is line `first_line + 1` of its file. A document the
    /// parser refuses yields an empty index (findings then fall back to the document's start).
    pub fn index(text: &str, first_line: usize) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return Self {
                lines: HashMap::new(),
                first: None,
            };
        }
        let shift = |line: usize| line + first_line;
        Self {
            first: walker.first.map(shift),
            lines: walker
                .lines
                .into_iter()
                .map(|(path, line)| (path, shift(line)))
                .collect(),
        }
    }

    /// The line of `field`, else of its nearest ancestor that is written (a missing field is
    /// placed where it would go), else of the document's first key.
    pub fn line_of(&self, field: Option<&str>) -> Option<usize> {
        let mut path = field.unwrap_or_default();
        while !path.is_empty() {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            path = parent(path);
        }
        self.first
    }
}

/// `spec.backends[0].timeout` -> `spec.backends[0]` -> `spec.backends` -> `spec` -> ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// A container being walked.
enum Frame {
    /// `key` is the key whose value comes next, `None` while a key is expected.
    Mapping {
        path: String,
        key: Option<String>,
    },
    Sequence {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
    first: Option<usize>,
}

/// Deepest nesting indexed; deeper fields are placed at their ancestor's line.
const MAX_DEPTH: usize = 64;

impl Walker {
    /// The path of the value node starting now, recording its line; `None` for a key or the
    /// document root.
    fn value_path(&mut self, line: usize) -> Option<String> {
        let path = match self.stack.last_mut()? {
            Frame::Mapping { key: None, .. } => return None,
            Frame::Mapping {
                path,
                key: Some(key),
            } => join(path, key),
            Frame::Sequence { path, index } => format!("{path}[{index}]"),
        };
        self.lines.entry(path.clone()).or_insert(line);
        Some(path)
    }

    /// A value (scalar, alias or a whole container) is complete.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Mapping { key, .. }) => *key = None,
            Some(Frame::Sequence { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn scalar(&mut self, value: String, line: usize) {
        if let Some(Frame::Mapping {
            path,
            key: key @ None,
        }) = self.stack.last_mut()
        {
            let field = join(path, &value);
            *key = Some(value);
            self.lines.entry(field).or_insert(line);
            if self.stack.len() == 1 {
                self.first.get_or_insert(line);
            }
            return;
        }
        self.value_path(line);
        self.value_done();
    }

    fn open(&mut self, mapping: bool, line: usize) {
        let is_key = matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }));
        let path = if is_key {
            // a complex key: its contents are not fields
            "?".to_string()
        } else {
            self.value_path(line).unwrap_or_default()
        };
        if self.stack.len() >= MAX_DEPTH {
            self.stack.push(Frame::Sequence {
                path: format!("{path}?"),
                index: 0,
            });
            return;
        }
        self.stack.push(if mapping {
            Frame::Mapping { path, key: None }
        } else {
            Frame::Sequence { path, index: 0 }
        });
    }

    fn close(&mut self) {
        self.stack.pop();
        if let Some(Frame::Mapping {
            key: key @ None, ..
        }) = self.stack.last_mut()
        {
            // the closed container was a complex key: its value comes next
            *key = Some("?".to_string());
            return;
        }
        self.value_done();
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(value, ..) => self.scalar(value, line),
            Event::Alias(_) => {
                self.value_path(line);
                self.value_done();
            }
            Event::MappingStart(..) => self.open(true, line),
            Event::SequenceStart(..) => self.open(false, line),
            Event::MappingEnd | Event::SequenceEnd => self.close(),
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DOC: &str = "\
apiVersion: airgate.io/v1alpha1
kind: AIGateway
metadata:
  name: g
  labels: {compliance: pci-dss}
spec:
  backends:
    - name: a
      url: http://a:8000
      models: [m]
    - name: b
      timeout: 30s
  contentGuard:
    blockPatterns:
      - regex: x
";

    #[test]
    fn every_field_has_its_key_line() {
        let lines = FieldLines::index(DOC, 0);
        let at = |field: &str| lines.line_of(Some(field));
        assert_eq!(at("apiVersion"), Some(1));
        assert_eq!(at("metadata.name"), Some(4));
        assert_eq!(at("metadata.labels.compliance"), Some(5));
        assert_eq!(at("spec.backends"), Some(7));
        assert_eq!(at("spec.backends[0]"), Some(8));
        assert_eq!(at("spec.backends[0].url"), Some(9));
        assert_eq!(at("spec.backends[0].models[0]"), Some(10));
        assert_eq!(at("spec.backends[1].timeout"), Some(12));
        assert_eq!(at("spec.contentGuard.blockPatterns[0].regex"), Some(15));
    }

    #[test]
    fn a_missing_field_is_placed_at_its_nearest_written_ancestor() {
        let lines = FieldLines::index(DOC, 0);
        assert_eq!(lines.line_of(Some("spec.backends[1].url")), Some(11));
        assert_eq!(lines.line_of(Some("spec.rateLimit")), Some(6));
        assert_eq!(lines.line_of(Some("status")), Some(1));
        assert_eq!(lines.line_of(None), Some(1));
    }

    #[test]
    fn lines_are_shifted_to_the_file_and_broken_yaml_yields_nothing() {
        let lines = FieldLines::index(DOC, 10);
        assert_eq!(lines.line_of(Some("kind")), Some(12));
        let broken = FieldLines::index("a: [b\n", 0);
        assert_eq!(broken.line_of(Some("a")), None);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        let lines = FieldLines::index(&deep, 0);
        assert_eq!(lines.line_of(Some("a[0][0][0]")), Some(1));
    }
}
