//! One finding of `airgate validate` or `airgate diff`, whatever found it (the loader's schema
//! checks, a built-in rule, a user's CEL rule, a breaking-change check), placed on the file,
//! line, document and field, and printed as text, JSON or SARIF ([`super::report`]).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{write_place, ConfigIssue};

use super::documents::Documents;

/// The rule id of the loader's own checks (YAML, schema, field values, cross-resource).
pub const SCHEMA_RULE: &str = "schema";

/// How bad a finding is: an `error` fails the gate (exit 1), a `warning` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's id: [`SCHEMA_RULE`], `pack.rule`, a user rule's id, or a diff check's id.
    pub rule: String,
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based line in `file`, when known.
    pub line: Option<usize>,
    /// 1-based index of the document in `file`.
    pub document: Option<usize>,
    /// `Kind namespace/name`.
    pub resource: Option<String>,
    /// Field path, e.g. `spec.backends[0].timeout`.
    pub field: Option<String>,
    pub message: String,
}

impl Finding {
    /// A loader issue as a finding of [`SCHEMA_RULE`], placed on its line.
    pub fn from_issue(issue: ConfigIssue, severity: Severity, documents: &Documents) -> Self {
        let field = issue
            .field
            .as_deref()
            .or_else(|| leading_field(&issue.message));
        let line = documents.line(&issue.file, issue.document, field);
        Finding {
            rule: SCHEMA_RULE.to_string(),
            severity,
            file: issue.file,
            line,
            document: issue.document,
            resource: issue.resource,
            field: issue.field,
            message: issue.message,
        }
    }
}

/// The field a message names first, as the TLS, backend and secret checks write theirs
/// (`spec.backends[0].tls: cannot read ...`).
fn leading_field(message: &str) -> Option<&str> {
    let (head, _) = message.split_once(": ")?;
    let is_path = (head.starts_with("spec.") || head.starts_with("metadata."))
        && !head.contains(char::is_whitespace);
    is_path.then_some(head)
}

/// `"{severity}: {file}:{line}: document {n} ({resource}): {field}: {rule}: {message}"`, absent
/// parts omitted; the loader's own findings keep today's shape, without the rule.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.severity.as_str(), self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        let (resource, field) = (self.resource.as_deref(), self.field.as_deref());
        write_place(f, self.document, resource, field)?;
        if self.rule != SCHEMA_RULE {
            write!(f, ": {}", self.rule)?;
        }
        write!(f, ": {}", self.message)
    }
}
