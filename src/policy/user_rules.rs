//! User rules in CEL, the expression language of Kubernetes ValidatingAdmissionPolicy:
//! `airgate validate --policy FILE`, a YAML list of
//! `{id, match: {kinds, namespaceLabels, labels}, expression, message, severity, field}`.
//!
//! The expression sees `object` (the resource as written, before defaults) and
//! `namespaceObject` (its `Namespace` document in the input, else null), and must return
//! `true` for the resource to pass. A rule that does not load or compile, an evaluation error
//! and a non-boolean result are findings themselves, never a crash: a broken policy fails the
//! gate (exit 1) rather than passing silently.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use cel::{Context, Program, Value as CelValue};
use serde::Deserialize;
use serde_json::Value;

use super::documents::labels;
use super::finding::{Finding, Severity};
use super::rules::{finding, Target, Violation};
use super::yaml_lines::FieldLines;

/// The id of findings about the policy file itself (unreadable, not a list of rules).
pub const POLICY_FILE_RULE: &str = "policy-file";
/// Largest policy file read.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;
/// Longest expression compiled: CEL has no loops, so with the parser's depth bound (96) and
/// bounded inputs, the length bounds the work.
const MAX_EXPRESSION_CHARS: usize = 4096;
/// Built-in packs' id prefixes, which user rules may not take.
const RESERVED_PREFIXES: &[&str] = &["baseline.", "pci-dss.", "hipaa.", "schema"];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Match {
    /// `AIGateway`, `API`; empty: both.
    #[serde(default)]
    kinds: Vec<String>,
    /// Labels the resource's `Namespace` document must carry.
    #[serde(default)]
    namespace_labels: BTreeMap<String, String>,
    /// Labels the resource must carry.
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleSpec {
    id: String,
    #[serde(default, rename = "match")]
    selector: Match,
    expression: String,
    message: String,
    #[serde(default = "default_severity")]
    severity: Severity,
    /// The field findings are placed on (default: the resource's `metadata.name`).
    #[serde(default)]
    field: Option<String>,
}

fn default_severity() -> Severity {
    Severity::Error
}

/// A compiled user rule.
pub struct UserRule {
    id: String,
    selector: Match,
    program: Program,
    message: String,
    severity: Severity,
    field: String,
}

/// The rules of a policy file, and the findings about rules that did not load.
pub struct Policy {
    pub rules: Vec<UserRule>,
    pub problems: Vec<Finding>,
}

impl Policy {
    /// Loads `file`; every problem is a finding placed on its line.
    pub fn load(file: &Path) -> Self {
        let mut policy = Policy {
            rules: Vec::new(),
            problems: Vec::new(),
        };
        let text = match read(file) {
            Ok(text) => text,
            Err(message) => {
                policy.problem(file, None, POLICY_FILE_RULE, None, message);
                return policy;
            }
        };
        let lines = FieldLines::index(&text, 0);
        let items = match serde_yaml_ng::from_str::<Vec<serde_yaml_ng::Value>>(&text) {
            Ok(items) => items,
            Err(e) => {
                let message = format!("expected a YAML list of rules: {e}");
                policy.problem(file, lines.line_of(None), POLICY_FILE_RULE, None, message);
                return policy;
            }
        };
        let mut seen = std::collections::BTreeSet::new();
        for (i, item) in items.into_iter().enumerate() {
            let at = |field: &str| lines.line_of(Some(&format!("[{i}]{field}")));
            let spec = match serde_path_to_error::deserialize::<_, RuleSpec>(item) {
                Ok(spec) => spec,
                Err(e) => {
                    let field = e.path().to_string();
                    let line = at(&format!(".{field}"));
                    let message = format!("rule {}: {}", i + 1, e.inner());
                    policy.problem(file, line, POLICY_FILE_RULE, Some(field), message);
                    continue;
                }
            };
            if let Some(message) = id_problem(&spec.id, &mut seen) {
                policy.problem(
                    file,
                    at(".id"),
                    POLICY_FILE_RULE,
                    Some("id".into()),
                    message,
                );
                continue;
            }
            match compile(&spec.expression) {
                Ok(program) => policy.rules.push(UserRule {
                    field: spec.field.unwrap_or_else(|| "metadata.name".to_string()),
                    id: spec.id,
                    selector: spec.selector,
                    program,
                    message: spec.message,
                    severity: spec.severity,
                }),
                Err(message) => {
                    let id = spec.id.clone();
                    policy.problem(
                        file,
                        at(".expression"),
                        &id,
                        Some("expression".into()),
                        message,
                    );
                }
            }
        }
        policy
    }

    fn problem(
        &mut self,
        file: &Path,
        line: Option<usize>,
        rule: &str,
        field: Option<String>,
        message: String,
    ) {
        self.problems.push(Finding {
            rule: rule.to_string(),
            severity: Severity::Error,
            file: PathBuf::from(file),
            line,
            document: None,
            resource: None,
            field,
            message,
        });
    }
}

fn read(file: &Path) -> Result<String, String> {
    let size = std::fs::metadata(file)
        .map_err(|e| format!("cannot read the policy file: {e}"))?
        .len();
    if size > MAX_POLICY_BYTES {
        return Err(format!(
            "the policy file is {size} bytes, more than the {MAX_POLICY_BYTES} allowed"
        ));
    }
    std::fs::read_to_string(file).map_err(|e| format!("cannot read the policy file: {e}"))
}

fn id_problem(id: &str, seen: &mut std::collections::BTreeSet<String>) -> Option<String> {
    if id.trim().is_empty() {
        return Some("a rule needs an id".to_string());
    }
    if RESERVED_PREFIXES.iter().any(|p| id.starts_with(p)) {
        return Some(format!(
            "rule id {id:?} takes a built-in prefix ({})",
            RESERVED_PREFIXES.join(", ")
        ));
    }
    (!seen.insert(id.to_string())).then(|| format!("rule id {id:?} is used twice"))
}

/// Compiles an expression; the CEL parser is third-party code fed user text, so a panic in it
/// is caught and reported as the rule's problem.
fn compile(expression: &str) -> Result<Program, String> {
    let length = expression.chars().count();
    if length > MAX_EXPRESSION_CHARS {
        return Err(format!(
            "the expression is {length} characters, more than the {MAX_EXPRESSION_CHARS} allowed"
        ));
    }
    match catch_unwind(|| Program::compile(expression)) {
        Ok(Ok(program)) => Ok(program),
        Ok(Err(e)) => Err(format!(
            "CEL does not compile: {}",
            one_line(&e.to_string())
        )),
        Err(_) => Err("CEL does not compile: the parser failed on it".to_string()),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl UserRule {
    fn matches(&self, target: &Target) -> bool {
        let kind_ok = self.selector.kinds.is_empty()
            || self
                .selector
                .kinds
                .iter()
                .any(|k| k == target.subject.kind());
        let resource_labels = target.subject.resource_labels();
        let labels_ok = self
            .selector
            .labels
            .iter()
            .all(|(k, v)| resource_labels.get(k) == Some(v));
        let namespace_labels = target.namespace.map(labels).unwrap_or_default();
        let namespace_ok = self
            .selector
            .namespace_labels
            .iter()
            .all(|(k, v)| namespace_labels.get(k) == Some(v));
        kind_ok && labels_ok && namespace_ok
    }

    /// `None` when the resource passes; else the finding's severity and message.
    fn verdict(&self, target: &Target) -> Option<(Severity, String)> {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.run(target)));
        match outcome {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => Some((self.severity, self.message.clone())),
            Ok(Err(problem)) => Some((Severity::Error, problem)),
            Err(_) => Some((
                Severity::Error,
                "the CEL expression failed on this resource (the evaluator stopped)".to_string(),
            )),
        }
    }

    fn run(&self, target: &Target) -> Result<bool, String> {
        let mut context = Context::default();
        context.add_variable_from_value("object", to_cel(target.raw)?);
        let namespace = target.namespace.unwrap_or(&Value::Null);
        context.add_variable_from_value("namespaceObject", to_cel(namespace)?);
        match self.program.execute(&context) {
            Ok(CelValue::Bool(passed)) => Ok(passed),
            Ok(other) => Err(format!(
                "the CEL expression must return a bool, it returned {:?}",
                other.type_of()
            )),
            Err(e) => Err(format!(
                "the CEL expression failed on this resource: {}",
                one_line(&e.to_string())
            )),
        }
    }
}

fn to_cel(value: &Value) -> Result<CelValue, String> {
    cel::to_value(value).map_err(|e| format!("cannot give the resource to CEL: {e}"))
}

/// Runs every rule on the targets it matches.
pub fn evaluate(
    rules: &[UserRule],
    targets: &[Target],
    documents: &super::documents::Documents,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for target in targets {
        for rule in rules.iter().filter(|r| r.matches(target)) {
            let Some((severity, message)) = rule.verdict(target) else {
                continue;
            };
            let violation = Violation::new(rule.field.clone(), message);
            findings.push(finding(target, documents, &rule.id, severity, violation));
        }
    }
    findings
}
