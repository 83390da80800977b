//! Reading files and folders, splitting documents, dispatching on `kind`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};
use sha2::{Digest, Sha256};

use crate::config::resources::{
    resource_label, AiGateway, Api, ObjectMeta, DEFAULT_GATEWAY_ANNOTATION, DEFAULT_NAMESPACE,
    KIND_AI_GATEWAY, KIND_API, SUPPORTED_API_VERSIONS,
};
use crate::config::validate::{self, FieldError};
use crate::config::{ConfigIssue, LoadedConfig, Located, Source};

/// API groups owned by AirGate: documents in these groups are never silently skipped
/// when their kind looks like one of ours.
const OWN_GROUPS: &[&str] = &["hub.traefik.io", "airgate.io"];

/// Loads a YAML file, or every `*.yaml` / `*.yml` file of a folder (not
/// recursive, hidden files skipped, sorted by name).
///
/// Returns every error found across all files and documents.
pub fn load_path(path: &Path) -> Result<LoadedConfig, Vec<ConfigIssue>> {
    let mut acc = Accumulator::default();
    match fs::metadata(path) {
        Err(e) => acc.errors.push(ConfigIssue::new(
            path,
            format!("cannot read configuration: {e}"),
        )),
        Ok(meta) if meta.is_dir() => acc.load_dir(path),
        Ok(_) => acc.load_file(path),
    }
    acc.finish()
}

/// Parses and validates the text of one (possibly multi-document) YAML file.
/// `file` is only used in diagnostics.
pub fn parse_str(file: &Path, text: &str) -> Result<LoadedConfig, Vec<ConfigIssue>> {
    let mut acc = Accumulator::default();
    acc.parse_file(file, text);
    acc.finish()
}

/// The configuration files of a folder, in the order they are read: `*.yaml` and `*.yml`,
/// sorted; entries whose names start with `.` (a ConfigMap's `..data`) are never configuration.
pub(crate) fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigIssue> {
    let listing_error =
        |e: std::io::Error| ConfigIssue::new(dir, format!("cannot list folder: {e}"));
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing_error)? {
        let entry = entry.map_err(listing_error)?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && is_yaml_file_name(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The digest of a configuration's bytes ([`LoadedConfig::digest`]). For one file it is the
/// SHA-256 of its bytes, what `sha256sum` prints, so that an auditor can check a bundle against
/// its `config_applied` record by hand; for a folder, a SHA-256 over each file's name and
/// bytes, length-framed, in the order read.
#[derive(Default)]
struct ConfigDigest {
    framed: Sha256,
    plain: Sha256,
    files: usize,
}

impl ConfigDigest {
    fn add(&mut self, file: &Path, bytes: &[u8]) {
        let name = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for part in [name.as_bytes(), bytes] {
            self.framed.update((part.len() as u64).to_be_bytes());
            self.framed.update(part);
        }
        self.plain.update(bytes);
        self.files += 1;
    }

    fn finish(self) -> String {
        hex::encode(if self.files == 1 {
            self.plain.finalize()
        } else {
            self.framed.finalize()
        })
    }
}

/// The digest [`load_path`] gives the configuration at `path` ([`LoadedConfig::digest`]),
/// without parsing it: what a reload compares first. `None` when it cannot be read.
pub fn digest_path(path: &Path) -> Option<String> {
    let files = if path.is_dir() {
        config_files(path).ok()?
    } else {
        vec![path.to_path_buf()]
    };
    let mut digest = ConfigDigest::default();
    for file in files {
        digest.add(&file, &fs::read(&file).ok()?);
    }
    Some(digest.finish())
}

#[derive(Default)]
struct Accumulator {
    config: LoadedConfig,
    errors: Vec<ConfigIssue>,
    /// Over the files read, in order.
    digest: ConfigDigest,
}

/// How a document is handled, decided from `apiVersion` and `kind`.
enum Disposition {
    Gateway,
    Api,
    Skip(String),
    Reject {
        field: &'static str,
        message: String,
    },
}

impl Accumulator {
    fn load_dir(&mut self, dir: &Path) {
        let files = match config_files(dir) {
            Ok(files) => files,
            Err(issue) => {
                self.errors.push(issue);
                return;
            }
        };
        if files.is_empty() {
            self.errors.push(ConfigIssue::new(
                dir,
                "no *.yaml or *.yml files found in this folder",
            ));
        }
        for file in files {
            self.load_file(&file);
        }
    }

    fn load_file(&mut self, file: &Path) {
        match fs::read_to_string(file) {
            Ok(text) => self.parse_file(file, &text),
            Err(e) => self
                .errors
                .push(ConfigIssue::new(file, format!("cannot read file: {e}"))),
        }
    }

    fn parse_file(&mut self, file: &Path, text: &str) {
        self.digest.add(file, text.as_bytes());
        let chunks = split_documents(text);
        tracing::debug!(file = %file.display(), documents = chunks.len(), "parsing configuration file");
        for (index, chunk) in chunks.iter().enumerate() {
            let source = Source {
                file: file.to_path_buf(),
                document: index + 1,
            };
            self.parse_document(source, chunk);
        }
    }

    fn parse_document(&mut self, source: Source, chunk: &Chunk) {
        if let Some(line) = flow_nesting_too_deep(&chunk.text) {
            self.errors.push(ConfigIssue::at(
                &source,
                format!(
                    "invalid YAML: brackets nested deeper than {MAX_FLOW_NESTING} levels at line {}",
                    line + chunk.first_line
                ),
            ));
            return;
        }
        let value: Value = match serde_yaml_ng::from_str(&chunk.text) {
            Ok(value) => value,
            Err(e) => {
                let message = shift_line_numbers(&e.to_string(), chunk.first_line);
                self.errors
                    .push(ConfigIssue::at(&source, format!("invalid YAML: {message}")));
                return;
            }
        };
        let map = match &value {
            Value::Null => return, // e.g. a document that is just `~`
            Value::Mapping(map) => map,
            other => {
                self.errors.push(ConfigIssue::at(
                    &source,
                    format!(
                        "expected a mapping with apiVersion, kind, metadata and spec, found {}",
                        describe(other)
                    ),
                ));
                return;
            }
        };

        let api_version = self.required_string(&source, map, "apiVersion");
        let kind = self.required_string(&source, map, "kind");
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            return;
        };
        let label = peek_label(kind, map);

        match classify(api_version, kind) {
            Disposition::Gateway => {
                if let Some(gateway) = self.typed::<AiGateway>(&source, chunk, &label) {
                    self.push_field_errors(&source, &label, validate::gateway(&gateway));
                    self.config.gateways.push(Located {
                        source,
                        resource: gateway,
                    });
                }
            }
            Disposition::Api => {
                if let Some(api) = self.typed::<Api>(&source, chunk, &label) {
                    self.push_field_errors(&source, &label, validate::api(&api));
                    self.config.apis.push(Located {
                        source,
                        resource: api,
                    });
                }
            }
            Disposition::Skip(message) => {
                tracing::debug!(%source, %label, "skipping document");
                self.config
                    .warnings
                    .push(ConfigIssue::at(&source, message).with_resource(label));
            }
            Disposition::Reject { field, message } => self.errors.push(
                ConfigIssue::at(&source, message)
                    .with_resource(label)
                    .with_field(field),
            ),
        }
    }

    /// A top-level string field needed before the kind is known.
    fn required_string<'v>(
        &mut self,
        source: &Source,
        map: &'v Mapping,
        key: &'static str,
    ) -> Option<&'v str> {
        let message = match map.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => return Some(s.as_str()),
            Some(Value::String(_)) => "must not be empty".to_string(),
            Some(other) => format!("expected a string, found {}", describe(other)),
            None => "missing required field".to_string(),
        };
        self.errors
            .push(ConfigIssue::at(source, message).with_field(key));
        None
    }

    /// Deserializes the document into `T`, reporting the failing field path.
    fn typed<T: DeserializeOwned>(
        &mut self,
        source: &Source,
        chunk: &Chunk,
        label: &str,
    ) -> Option<T> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(&chunk.text);
        match serde_path_to_error::deserialize::<_, T>(deserializer) {
            Ok(value) => Some(value),
            Err(e) => {
                let path = e.path().to_string();
                let message = clean_typed_message(&e.inner().to_string(), &path);
                let message = shift_line_numbers(&message, chunk.first_line);
                let mut issue = ConfigIssue::at(source, message).with_resource(label);
                if !path.is_empty() && path != "." {
                    issue = issue.with_field(path);
                }
                self.errors.push(issue);
                None
            }
        }
    }

    fn push_field_errors(&mut self, source: &Source, label: &str, errors: Vec<FieldError>) {
        self.errors.extend(errors.into_iter().map(|e| {
            ConfigIssue::at(source, e.message)
                .with_resource(label)
                .with_field(e.field)
        }));
    }

    /// Cross-resource checks, then the verdict.
    fn finish(mut self) -> Result<LoadedConfig, Vec<ConfigIssue>> {
        self.check_duplicates();
        self.check_default_gateways();
        self.check_path_prefixes();
        if self.errors.is_empty() {
            self.config.digest = std::mem::take(&mut self.digest).finish();
            Ok(self.config)
        } else {
            Err(self.errors)
        }
    }

    fn check_duplicates(&mut self) {
        let resources = self
            .config
            .gateways
            .iter()
            .map(|g| (KIND_AI_GATEWAY, &g.resource.metadata, &g.source))
            .chain(
                self.config
                    .apis
                    .iter()
                    .map(|a| (KIND_API, &a.resource.metadata, &a.source)),
            );
        let mut seen: HashMap<(&str, &str, &str), &Source> = HashMap::new();
        for (kind, meta, source) in resources {
            let key = (kind, meta.namespace(), meta.name.as_str());
            match seen.get(&key) {
                Some(first) => self.errors.push(
                    ConfigIssue::at(
                        source,
                        format!(
                            "duplicate {kind} {}/{}: already defined in {first}",
                            meta.namespace(),
                            meta.name
                        ),
                    )
                    .with_resource(resource_label(kind, meta))
                    .with_field("metadata.name"),
                ),
                None => {
                    seen.insert(key, source);
                }
            }
        }
    }

    /// Two `API`s with the same `pathPrefix`: which one answered would depend on their order.
    fn check_path_prefixes(&mut self) {
        let mut claimed: HashMap<&str, &Located<Api>> = HashMap::new();
        for api in &self.config.apis {
            let Some(prefix) = api.resource.spec.path_prefix.as_deref() else {
                continue;
            };
            match claimed.get(prefix) {
                Some(first) => self.errors.push(
                    ConfigIssue::at(
                        &api.source,
                        format!(
                            "{prefix} is already the pathPrefix of {} ({})",
                            first.resource.display_name(),
                            first.source
                        ),
                    )
                    .with_resource(api.resource.display_name())
                    .with_field("spec.pathPrefix"),
                ),
                None => {
                    claimed.insert(prefix, api);
                }
            }
        }
    }

    fn check_default_gateways(&mut self) {
        let mut defaults = self
            .config
            .gateways
            .iter()
            .filter(|g| g.resource.is_default());
        let Some(first) = defaults.next() else {
            return;
        };
        for other in defaults {
            self.errors.push(
                ConfigIssue::at(
                    &other.source,
                    format!(
                        "only one AIGateway may be annotated {DEFAULT_GATEWAY_ANNOTATION}: \"true\"; \
                         {} ({}) is already the default",
                        first.resource.display_name(),
                        first.source
                    ),
                )
                .with_resource(other.resource.display_name())
                .with_field(format!("metadata.annotations[\"{DEFAULT_GATEWAY_ANNOTATION}\"]")),
            );
        }
    }
}

fn is_yaml_file_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

fn classify(api_version: &str, kind: &str) -> Disposition {
    const KINDS: [&str; 2] = [KIND_AI_GATEWAY, KIND_API];
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    let own_group = OWN_GROUPS.contains(&group);
    let supported = SUPPORTED_API_VERSIONS.contains(&api_version);
    let known_kind = KINDS.contains(&kind);

    if known_kind && supported {
        return if kind == KIND_AI_GATEWAY {
            Disposition::Gateway
        } else {
            Disposition::Api
        };
    }
    if known_kind && own_group {
        return Disposition::Reject {
            field: "apiVersion",
            message: format!(
                "unsupported apiVersion {api_version:?} for kind {kind}; supported: {}",
                SUPPORTED_API_VERSIONS.join(", ")
            ),
        };
    }
    if own_group {
        if let Some(close) = KINDS.iter().find(|k| k.eq_ignore_ascii_case(kind)) {
            return Disposition::Reject {
                field: "kind",
                message: format!(
                    "unknown kind {kind:?} (kinds are case-sensitive): did you mean {close:?}?"
                ),
            };
        }
        if group == "airgate.io" {
            return Disposition::Reject {
                field: "kind",
                message: format!(
                    "unknown kind {kind:?} in group airgate.io; supported kinds: {}",
                    KINDS.join(", ")
                ),
            };
        }
    }
    if kind == "Namespace" && api_version == "v1" {
        return Disposition::Skip(
            "skipped by serve; `airgate validate` reads its `compliance` label to select rule packs"
                .to_string(),
        );
    }
    Disposition::Skip(format!(
        "skipped: {kind} ({api_version}) is not a resource AirGate reads \
         (it reads {} with apiVersion {})",
        KINDS.join(" and "),
        SUPPORTED_API_VERSIONS.join(" or ")
    ))
}

/// `"Kind namespace/name"` from an untyped document, as far as it can be read.
fn peek_label(kind: &str, map: &Mapping) -> String {
    let meta = map.get("metadata");
    let text = |key: &str| {
        meta.and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let name = text("name");
    let namespace = text("namespace");
    let ours = kind == KIND_AI_GATEWAY || kind == KIND_API;
    match (name, namespace) {
        (Some(name), namespace) if ours => resource_label(
            kind,
            &ObjectMeta {
                name,
                namespace: namespace.or_else(|| Some(DEFAULT_NAMESPACE.to_string())),
                labels: Default::default(),
                annotations: Default::default(),
            },
        ),
        (Some(name), Some(namespace)) => format!("{kind} {namespace}/{name}"),
        (Some(name), None) => format!("{kind} {name}"),
        (None, _) => kind.to_string(),
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// serde_yaml_ng prefixes custom errors with its own copy of the path
/// (`spec.backends[1].timeout: invalid duration ...`); the path is reported
/// separately, so drop that prefix.
fn clean_typed_message(message: &str, path: &str) -> String {
    let mut candidate = path;
    loop {
        if let Some(rest) = message
            .strip_prefix(candidate)
            .and_then(|r| r.strip_prefix(": "))
        {
            if !candidate.is_empty() && candidate != "." {
                return rest.to_string();
            }
        }
        // serde_yaml_ng may stop one segment earlier (e.g. at the map holding an unknown key).
        match candidate.rfind(['.', '[']) {
            Some(pos) if pos > 0 => candidate = &candidate[..pos],
            _ => return message.to_string(),
        }
    }
}

/// One document of a file: its text and the 0-based index of its first line in the file.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) first_line: usize,
    pub(crate) text: String,
}

/// Splits a YAML stream at `---` / `...` markers, keeping non-empty documents.
///
/// Document markers at column 0 always end a document in YAML (they may not
/// appear inside scalars), so splitting on lines is exact and lets every
/// document be parsed, and reported, independently of syntax errors in others.
/// Deepest bracket nesting (`[` and `{`) a document may have. The YAML parser's work grows with
/// the square of flow nesting (100,000 levels kept a core busy for minutes) before serde's own
/// recursion limit (128) refuses the document, so deeper nesting is refused before parsing.
pub(crate) const MAX_FLOW_NESTING: usize = 128;

/// The 1-based line where `text`'s bracket nesting first exceeds [`MAX_FLOW_NESTING`]. Brackets
/// inside quotes or comments are counted too: a real configuration stays far below the limit
/// either way, and a count that ignores YAML's quoting rules cannot be fooled by them.
pub(crate) fn flow_nesting_too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    for byte in text.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_NESTING {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => line += 1,
            _ => {}
        }
    }
    None
}

pub(crate) fn split_documents(text: &str) -> Vec<Chunk> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut first_line = 0;
    for (index, line) in text.lines().enumerate() {
        if let Some(rest) = marker_rest(line, "---") {
            push_chunk(&mut chunks, first_line, std::mem::take(&mut current));
            first_line = index;
            // Keep the rest of the marker line (`--- # comment`), columns unchanged.
            current.push_str("   ");
            current.push_str(rest);
            current.push('\n');
        } else if marker_rest(line, "...").is_some() {
            push_chunk(&mut chunks, first_line, std::mem::take(&mut current));
            first_line = index + 1;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    push_chunk(&mut chunks, first_line, current);
    chunks
}

fn marker_rest<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with([' ', '\t'])).then_some(rest)
}

fn push_chunk(chunks: &mut Vec<Chunk>, first_line: usize, text: String) {
    let blank = text.lines().all(|line| {
        let t = line.trim();
        t.is_empty() || t.starts_with('#') || line.starts_with('%')
    });
    if !blank {
        chunks.push(Chunk { first_line, text });
    }
}

/// Adds `offset` to every `line N` in a parser message, turning document-relative
/// line numbers into file line numbers.
fn shift_line_numbers(message: &str, offset: usize) -> String {
    if offset == 0 {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len() + 4);
    let mut rest = message;
    while let Some(pos) = rest.find("line ") {
        let (before, after) = rest.split_at(pos + "line ".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_line_offsets() {
        let text = "# header\n---\na: 1\n---\n\n---\nb: 2\n...\nc: 3\n";
        let chunks = split_documents(text);
        let got: Vec<(usize, &str)> = chunks
            .iter()
            .map(|c| (c.first_line, c.text.trim()))
            .collect();
        assert_eq!(got, vec![(1, "a: 1"), (5, "b: 2"), (8, "c: 3")]);
    }

    #[test]
    fn shifts_line_numbers() {
        assert_eq!(
            shift_line_numbers("bad at line 3 column 4, while x at line 1 column 1", 10),
            "bad at line 13 column 4, while x at line 11 column 1"
        );
        assert_eq!(shift_line_numbers("no numbers here", 5), "no numbers here");
    }

    #[test]
    fn strips_serde_yaml_path_prefix() {
        assert_eq!(
            clean_typed_message(
                "spec.backends[1].timeout: invalid",
                "spec.backends[1].timeout"
            ),
            "invalid"
        );
        assert_eq!(
            clean_typed_message("spec.x: unknown field", "spec.x.y"),
            "unknown field"
        );
        assert_eq!(clean_typed_message("plain", "spec"), "plain");
    }
}
