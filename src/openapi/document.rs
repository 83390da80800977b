//! Reading one OpenAPI document (YAML or JSON) into a JSON value, bounded, with its version.
//!
//! Only OpenAPI 3.0 and 3.1 are accepted: Swagger 2.0 documents describe bodies differently
//! (`in: body` parameters) and would be enforced wrongly rather than refused.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::loader::{flow_nesting_too_deep, MAX_FLOW_NESTING};

/// Largest spec read (file or URL). Real specs are tens to hundreds of KiB; a bound keeps a
/// wrong path (a log file, a device) from being read whole.
pub const MAX_SPEC_BYTES: u64 = 8 * 1024 * 1024;

/// The two OpenAPI versions enforced. Their JSON Schema dialects differ: 3.0 has `nullable` and
/// boolean `exclusiveMinimum`, 3.1 is JSON Schema 2020-12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecVersion {
    V3_0,
    V3_1,
}

/// A parsed OpenAPI document.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub version: SpecVersion,
    pub document: Value,
}

/// Where a `path` of `openApiSpec` points: absolute as written, else relative to the folder of
/// the configuration file that names it (so a GitOps folder can carry its specs beside it).
pub fn resolve_path(path: &str, config_file: &Path) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    config_file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(path)
}

/// Reads and parses the spec at `path`; the error says why, without the file's content.
pub fn read_file(path: &Path) -> Result<Spec, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MAX_SPEC_BYTES {
        return Err(format!(
            "{} is {size} bytes, more than the {MAX_SPEC_BYTES} allowed",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a spec's text (YAML, of which JSON is a subset).
pub fn parse(text: &str) -> Result<Spec, String> {
    if let Some(line) = flow_nesting_too_deep(text) {
        return Err(format!(
            "brackets nested deeper than {MAX_FLOW_NESTING} levels at line {line}"
        ));
    }
    let document: Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("invalid YAML or JSON: {e}"))?;
    let version = version_of(&document)?;
    if !document.get("paths").is_none_or(Value::is_object) {
        return Err("`paths` must be a mapping".to_string());
    }
    Ok(Spec { version, document })
}

fn version_of(document: &Value) -> Result<SpecVersion, String> {
    if !document.is_object() {
        return Err("expected a mapping with `openapi` and `paths`".to_string());
    }
    match document.get("openapi").and_then(Value::as_str) {
        Some(v) if v.starts_with("3.0.") || v == "3.0" => Ok(SpecVersion::V3_0),
        Some(v) if v.starts_with("3.1.") || v == "3.1" => Ok(SpecVersion::V3_1),
        Some(v) => Err(format!("`openapi: {v}` is not supported (3.0 and 3.1 are)")),
        None if document.get("swagger").is_some() => {
            Err("Swagger 2.0 is not supported (OpenAPI 3.0 and 3.1 are)".to_string())
        }
        None => Err("missing `openapi` (the OpenAPI version, 3.0.x or 3.1.x)".to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_versions_and_refuses_the_rest() {
        let v30 = parse("openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\n").unwrap();
        assert_eq!(v30.version, SpecVersion::V3_0);
        let v31 = parse(r#"{"openapi": "3.1.0", "paths": {}}"#).unwrap();
        assert_eq!(v31.version, SpecVersion::V3_1);
        assert!(parse("swagger: '2.0'\npaths: {}\n")
            .unwrap_err()
            .contains("Swagger 2.0"));
        assert!(parse("openapi: 4.0.0\n").unwrap_err().contains("4.0.0"));
        assert!(parse("- a\n").unwrap_err().contains("mapping"));
        assert!(parse("openapi: 3.1.0\npaths: [1]\n")
            .unwrap_err()
            .contains("paths"));
        assert!(parse(&format!("openapi: 3.1.0\nx: {}\n", "[".repeat(200)))
            .unwrap_err()
            .contains("nested deeper"));
    }

    #[test]
    fn relative_paths_are_read_beside_the_config_file() {
        let config = Path::new("/repo/apis/payments.yaml");
        assert_eq!(
            resolve_path("specs/p.yaml", config),
            PathBuf::from("/repo/apis/specs/p.yaml")
        );
        assert_eq!(
            resolve_path("/specs/p.yaml", config),
            PathBuf::from("/specs/p.yaml")
        );
    }

    #[test]
    fn an_oversized_or_missing_file_is_an_error_not_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_file(&dir.path().join("nope.yaml")).unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
        let big = dir.path().join("big.yaml");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_SPEC_BYTES + 1).unwrap();
        assert!(read_file(&big).unwrap_err().contains("more than"));
    }
}
