//! SARIF 2.1.0 (OASIS), the format GitHub and GitLab code scanning read: one run of the tool
//! `airgate`, its rules with their descriptions, and one result per finding on its file and
//! line. `tests/fixtures/sarif-schema-2.1.0.json` is the schema the output is tested against.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde_json::{json, Value};

use super::finding::{Finding, Severity, SCHEMA_RULE};
use super::rules;

/// The schema URI written in the log (SchemaStore's copy of OASIS's, as the tools expect).
const SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";

pub fn render(findings: &[Finding]) -> String {
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for finding in findings {
        let next = ids.len();
        ids.entry(finding.rule.as_str()).or_insert(next);
    }
    let mut by_index: Vec<(&str, usize)> = ids.iter().map(|(id, i)| (*id, *i)).collect();
    by_index.sort_by_key(|(_, i)| *i);
    let descriptors: Vec<Value> = by_index.iter().map(|(id, _)| descriptor(id)).collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| result(f, ids.get(f.rule.as_str()).copied().unwrap_or_default()))
        .collect();
    let log = json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "airgate",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": descriptors,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&log).unwrap_or_default() + "\n"
}

/// A rule's `reportingDescriptor`: built-in rules carry their summary, reason and requirement.
fn descriptor(id: &str) -> Value {
    if let Some(rule) = rules::find(id) {
        return json!({
            "id": id,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": format!("{} ({})", rule.reason, rule.requirement)},
            "help": {"text": format!("{}. Why: {}. Maps to: {}. See docs/policy.md.", rule.summary, rule.reason, rule.requirement)},
            "defaultConfiguration": {"level": level(rule.severity)},
            "properties": {"tags": [rule.pack.name(), "configuration"]},
        });
    }
    let text = if id == SCHEMA_RULE {
        "the configuration loads: YAML, schema, field values and cross-resource checks".to_string()
    } else {
        format!("rule {id}")
    };
    json!({"id": id, "shortDescription": {"text": text}})
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn result(finding: &Finding, rule_index: usize) -> Value {
    let mut message = String::new();
    if let Some(resource) = &finding.resource {
        message.push_str(&format!("{resource}: "));
    }
    if let Some(field) = &finding.field {
        message.push_str(&format!("{field}: "));
    }
    message.push_str(&finding.message);
    let mut physical = json!({"artifactLocation": {"uri": uri(&finding.file)}});
    if let Some(line) = finding.line {
        physical["region"] = json!({"startLine": line});
    }
    let mut location = json!({"physicalLocation": physical});
    if let Some(resource) = &finding.resource {
        let name = match &finding.field {
            Some(field) => format!("{resource}/{field}"),
            None => resource.clone(),
        };
        location["logicalLocations"] = json!([{"fullyQualifiedName": name, "kind": "member"}]);
    }
    json!({
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": level(finding.severity),
        "message": {"text": message},
        "locations": [location],
    })
}

/// A relative path stays relative (code scanning resolves it against the repository root);
/// an absolute one becomes a `file://` URI. Characters outside RFC 3986's unreserved set are
/// percent-encoded.
pub fn uri(path: &Path) -> String {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(encode(&part.to_string_lossy())),
            Component::ParentDir => parts.push("..".to_string()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    let joined = parts.join("/");
    if path.is_absolute() {
        format!("file:///{joined}")
    } else {
        joined
    }
}

fn encode(part: &str) -> String {
    let mut out = String::new();
    for byte in part.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(uri(Path::new("config/gw.yaml")), "config/gw.yaml");
        assert_eq!(uri(Path::new("./a b/gw.yaml")), "a%20b/gw.yaml");
        assert_eq!(uri(Path::new("../x/gw.yaml")), "../x/gw.yaml");
        assert_eq!(uri(Path::new("/repo/gw.yaml")), "file:///repo/gw.yaml");
    }
}
