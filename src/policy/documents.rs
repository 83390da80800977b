//! The documents of the input as written, read a second time beside the loader: their lines
//! (for `file:line` findings), their raw contents (what user rules see as `object`, before
//! defaults), and the `Namespace` documents whose labels select rule packs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::loader::{config_files, flow_nesting_too_deep, split_documents};
use crate::config::Source;

use super::yaml_lines::FieldLines;

/// Largest file indexed; the loader reads any size, but a file this large is not a manifest.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// One document of a file.
#[derive(Debug, Clone)]
pub struct Document {
    /// As written; `Null` when it is not a YAML mapping the JSON model can hold.
    pub value: Value,
    pub lines: FieldLines,
}

/// Every document of the inputs, by file and 1-based index (as the loader numbers them).
#[derive(Debug, Default)]
pub struct Documents {
    documents: HashMap<(PathBuf, usize), Document>,
    /// `Namespace` documents by name.
    namespaces: BTreeMap<String, Value>,
}

impl Documents {
    /// Reads `path` (a file or a folder) as the loader does; unreadable files are skipped (the
    /// loader reports them).
    pub fn read(&mut self, path: &Path) {
        let files = if path.is_dir() {
            config_files(path).unwrap_or_default()
        } else {
            vec![path.to_path_buf()]
        };
        for file in files {
            self.read_file(&file);
        }
    }

    fn read_file(&mut self, file: &Path) {
        let too_large = std::fs::metadata(file).is_ok_and(|m| m.len() > MAX_FILE_BYTES);
        let Some(text) = (!too_large)
            .then(|| std::fs::read_to_string(file).ok())
            .flatten()
        else {
            return;
        };
        for (index, chunk) in split_documents(&text).iter().enumerate() {
            let value = parse(&chunk.text);
            if is_namespace(&value) {
                if let Some(name) = value.pointer("/metadata/name").and_then(Value::as_str) {
                    self.namespaces.insert(name.to_string(), value.clone());
                }
            }
            let document = Document {
                lines: FieldLines::index(&chunk.text, chunk.first_line),
                value,
            };
            self.documents
                .insert((file.to_path_buf(), index + 1), document);
        }
    }

    pub fn get(&self, source: &Source) -> Option<&Document> {
        self.documents.get(&(source.file.clone(), source.document))
    }

    /// The line of `field` in a document, else of its nearest written ancestor; `None` for a
    /// finding about a whole file.
    pub fn line(&self, file: &Path, document: Option<usize>, field: Option<&str>) -> Option<usize> {
        let document = self.documents.get(&(file.to_path_buf(), document?))?;
        document.lines.line_of(field)
    }

    /// The `Namespace` document named `name` in the inputs.
    pub fn namespace(&self, name: &str) -> Option<&Value> {
        self.namespaces.get(name)
    }
}

fn parse(text: &str) -> Value {
    if flow_nesting_too_deep(text).is_some() {
        return Value::Null;
    }
    serde_yaml_ng::from_str(text).unwrap_or(Value::Null)
}

fn is_namespace(value: &Value) -> bool {
    value.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && value.get("kind").and_then(Value::as_str) == Some("Namespace")
}

/// The labels of a document (`metadata.labels`), empty when it has none.
pub fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
