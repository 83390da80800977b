//! `airgate diff OLD NEW`: the breaking changes between two configurations, as a CI gate
//! before a change is signed and applied.
//!
//! The routing contract that clients of the gateway depend on:
//!
//! | check | breaking when |
//! | --- | --- |
//! | `gateway-removed` | an `AIGateway` of OLD is not in NEW (its models and route go) |
//! | `model-removed` | a model an `AIGateway` served in OLD is served by none of its backends in NEW |
//! | `api-removed` | an `API` of OLD is not in NEW |
//! | `api-path-prefix-changed` | an `API`'s `pathPrefix` changed or was removed (adding one is not breaking) |
//! | `authentication-added` | an `AIGateway` or `API` without `authentication` in OLD has it in NEW: its callers without tokens are refused |
//!
//! Inside the OpenAPI specs of `API` resources ([`crate::policy::openapi_diff`], with oasdiff's
//! check ids): for each `API` in OLD and NEW whose `openApiSpec.path` is set on both sides, both
//! specs are read (a relative path beside the file that names it) and every breaking change
//! is reported under `spec.openApiSpec`. A spec given only by `url` is not fetched (CI is
//! offline): a warning says it was not compared, as it does for a spec unreadable on both sides
//! or only in OLD. NEW's spec unreadable or invalid where OLD's was read is an error: the change
//! cannot be judged.
//!
//! Resources are matched by kind and `namespace/name`, whatever their group.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::config::{
    AiGateway, Api, AuthenticationSpec, ConfigIssue, LoadedConfig, Located, Source,
};
use crate::openapi::{read_file, resolve_path};
use crate::policy::openapi_diff::{self, Side};

/// What `diff` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every breaking change, in a stable order.
    pub breaking: Vec<Breaking>,
    /// What was not compared, and why (a spec given by URL only, or unreadable on both sides).
    pub warnings: Vec<ConfigIssue>,
    /// What makes the comparison impossible: NEW's spec unreadable or invalid where OLD's was
    /// read.
    pub errors: Vec<ConfigIssue>,
}

/// One breaking change, placed in the file and document of the resource in NEW (or in OLD,
/// for a removed resource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breaking {
    /// The check's id.
    pub check: &'static str,
    pub file: PathBuf,
    /// 1-based line of `field` in `file`, once [`place`] found it.
    pub line: Option<usize>,
    pub document: usize,
    /// `Kind namespace/name`.
    pub resource: String,
    /// The field the change is in.
    pub field: String,
    pub message: String,
}

impl Breaking {
    fn at(
        source: &Source,
        resource: String,
        check: &'static str,
        field: &str,
        message: String,
    ) -> Self {
        Self {
            check,
            file: source.file.clone(),
            line: None,
            document: source.document,
            resource,
            field: field.to_string(),
            message,
        }
    }
}

/// `"{file}:{line}: document {n} ({resource}): {field}: {check}: {message}"`, as `validate`
/// prints (`:{line}` when known).
impl std::fmt::Display for Breaking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(
            f,
            ": document {} ({}): {}: {}: {}",
            self.document, self.resource, self.field, self.check, self.message
        )
    }
}

fn by_id<T>(resources: &[Located<T>], id: impl Fn(&T) -> String) -> BTreeMap<String, &Located<T>> {
    resources.iter().map(|l| (id(&l.resource), l)).collect()
}

/// Compares `old` to `new`: the routing contract, then the OpenAPI specs the `API`s name
/// (which reads them from disk).
pub fn compare(old: &LoadedConfig, new: &LoadedConfig) -> Report {
    let mut report = Report {
        breaking: breaking_changes(old, new),
        ..Report::default()
    };
    let new_apis = by_id(&new.apis, Api::id);
    for (id, before) in by_id(&old.apis, Api::id) {
        if let Some(after) = new_apis.get(&id) {
            spec_changes(before, after, &mut report);
        }
    }
    report
}

/// The breaking changes of the routing contract from `old` to `new`, in a stable order (no
/// file is read).
pub fn breaking_changes(old: &LoadedConfig, new: &LoadedConfig) -> Vec<Breaking> {
    let mut found = Vec::new();
    let (old_gateways, new_gateways) = (
        by_id(&old.gateways, AiGateway::id),
        by_id(&new.gateways, AiGateway::id),
    );
    for (id, before) in &old_gateways {
        let name = before.resource.display_name();
        let Some(after) = new_gateways.get(id) else {
            found.push(Breaking::at(
                &before.source,
                name,
                "gateway-removed",
                "metadata.name",
                format!("AIGateway {id} is removed: its route and models are no longer served"),
            ));
            continue;
        };
        for model in served_models(&before.resource).difference(&served_models(&after.resource)) {
            found.push(Breaking::at(
                &after.source,
                name.clone(),
                "model-removed",
                "spec.backends",
                format!("model {model:?} is no longer served"),
            ));
        }
        let auth = (
            &before.resource.spec.authentication,
            &after.resource.spec.authentication,
        );
        found.extend(authentication_added(auth, &after.source, name));
    }
    let (old_apis, new_apis) = (by_id(&old.apis, Api::id), by_id(&new.apis, Api::id));
    for (id, before) in &old_apis {
        let name = before.resource.display_name();
        let Some(after) = new_apis.get(id) else {
            found.push(Breaking::at(
                &before.source,
                name,
                "api-removed",
                "metadata.name",
                format!("API {id} is removed: its routes are no longer served"),
            ));
            continue;
        };
        let (was, is) = (
            &before.resource.spec.path_prefix,
            &after.resource.spec.path_prefix,
        );
        if let Some(was) = was.as_ref().filter(|was| Some(*was) != is.as_ref()) {
            let now = is
                .as_deref()
                .map_or_else(|| "removed".to_string(), |p| format!("now {p}"));
            found.push(Breaking::at(
                &after.source,
                name.clone(),
                "api-path-prefix-changed",
                "spec.pathPrefix",
                format!("{was} is {now}: callers of {was} get 404"),
            ));
        }
        let auth = (
            &before.resource.spec.authentication,
            &after.resource.spec.authentication,
        );
        found.extend(authentication_added(auth, &after.source, name));
    }
    found
}

const SPEC_FIELD: &str = "spec.openApiSpec";

/// The breaking changes between the specs of one `API` in OLD and NEW, or why they were not
/// compared.
fn spec_changes(before: &Located<Api>, after: &Located<Api>, report: &mut Report) {
    let (Some(was), Some(is)) = (
        &before.resource.spec.open_api_spec,
        &after.resource.spec.open_api_spec,
    ) else {
        // A spec added or removed changes no contract `diff` can compare.
        return;
    };
    let name = after.resource.display_name();
    let issue = |message: String| {
        ConfigIssue::at(&after.source, message)
            .with_resource(name.clone())
            .with_field(SPEC_FIELD)
    };
    let (Some(old_path), Some(new_path)) = (&was.path, &is.path) else {
        let sides = match (&was.path, &is.path) {
            (Some(_), None) => "NEW gives it",
            (None, Some(_)) => "OLD gives it",
            _ => "both give it",
        };
        report.warnings.push(issue(format!(
            "not compared: {sides} by url only, and diff reads files, it does not fetch"
        )));
        return;
    };
    let old_file = resolve_path(old_path, &before.source.file);
    let new_file = resolve_path(new_path, &after.source.file);
    let (old_spec, new_spec) = match (read_file(&old_file), read_file(&new_file)) {
        (Ok(old_spec), Ok(new_spec)) => (old_spec, new_spec),
        (Ok(_), Err(e)) => {
            report.errors.push(issue(format!("NEW's spec: {e}")));
            return;
        }
        (Err(e), Ok(_)) => {
            report
                .warnings
                .push(issue(format!("not compared: OLD's spec: {e}")));
            return;
        }
        (Err(old_error), Err(new_error)) => {
            report.warnings.push(issue(format!(
                "not compared: neither spec can be read (OLD's: {old_error}; NEW's: {new_error})"
            )));
            return;
        }
    };
    let diff = openapi_diff::breaking_changes(&old_spec, &new_spec);
    if diff.truncated {
        report.warnings.push(issue(format!(
            "compared in part: the specs are too large or too intricate to compare within {} \
             steps, changes past them are not reported",
            openapi_diff::MAX_WORK
        )));
    }
    for change in diff.changes {
        let file = match change.side {
            Side::Old => &old_file,
            Side::New => &new_file,
        };
        let message = format!(
            "{}: {} ({}#{})",
            change.operation,
            change.message,
            file.display(),
            change.pointer
        );
        let breaking = Breaking::at(
            &after.source,
            name.clone(),
            change.check,
            SPEC_FIELD,
            message,
        );
        report.breaking.push(breaking);
    }
}

fn served_models(gateway: &AiGateway) -> BTreeSet<&str> {
    gateway
        .spec
        .backends
        .iter()
        .flat_map(|b| b.models.iter().map(String::as_str))
        .collect()
}

/// `authentication` absent before and present after: callers without a token are refused.
fn authentication_added(
    (before, after): (&Option<AuthenticationSpec>, &Option<AuthenticationSpec>),
    source: &Source,
    resource: String,
) -> Option<Breaking> {
    (before.is_none() && after.is_some()).then(|| {
        Breaking::at(
            source,
            resource,
            "authentication-added",
            "spec.authentication",
            "authentication is now required: callers without a token are refused (401)".into(),
        )
    })
}

/// The id of a `diff` warning (a spec not compared) in SARIF output.
pub const NOT_COMPARED_RULE: &str = "openapi-spec-not-compared";

/// Puts each breaking change on the line of its field; `documents` holds both sides' files.
pub fn place(report: &mut Report, documents: &super::documents::Documents) {
    for change in &mut report.breaking {
        change.line = documents.line(&change.file, Some(change.document), Some(&change.field));
    }
}

/// The breaking changes (errors) and what was not compared (warnings) as findings placed on
/// their lines (after [`place`]), for SARIF output. `documents` holds both sides' files.
pub fn findings(
    report: &Report,
    documents: &super::documents::Documents,
) -> Vec<super::finding::Finding> {
    use super::finding::{Finding, Severity};
    let breaking = report.breaking.iter().map(|change| Finding {
        rule: change.check.to_string(),
        severity: Severity::Error,
        file: change.file.clone(),
        line: change.line,
        document: Some(change.document),
        resource: Some(change.resource.clone()),
        field: Some(change.field.clone()),
        message: change.message.clone(),
    });
    let not_compared = report.warnings.iter().map(|issue| Finding {
        rule: NOT_COMPARED_RULE.to_string(),
        ..Finding::from_issue(issue.clone(), Severity::Warning, documents)
    });
    breaking.chain(not_compared).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(file: &str, yaml: &str) -> LoadedConfig {
        crate::config::parse_str(Path::new(file), yaml).unwrap()
    }

    fn gateway(models: &str, auth: bool) -> String {
        let auth = if auth {
            "  authentication:\n    jwt: {secretName: jwt, issuer: i, audience: a}\n"
        } else {
            ""
        };
        format!("apiVersion: airgate.io/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw, namespace: ml}}\nspec:\n  backends:\n    - {{name: a, url: \"http://a:1\", models: [{models}]}}\n{auth}")
    }

    fn api(prefix: Option<&str>) -> String {
        let prefix = prefix.map_or_else(String::new, |p| format!("  pathPrefix: {p}\n"));
        format!("apiVersion: airgate.io/v1alpha1\nkind: API\nmetadata: {{name: pay, namespace: fin}}\nspec:\n  service: {{name: pay, port: {{number: 80}}}}\n{prefix}")
    }

    fn checks(old: &str, new: &str) -> Vec<(&'static str, String)> {
        breaking_changes(&load("old.yaml", old), &load("new.yaml", new))
            .into_iter()
            .map(|b| (b.check, b.message))
            .collect()
    }

    /// Each routing-contract change, breaking or not, on its own.
    #[test]
    fn each_routing_change_is_classified() {
        let cases: Vec<(&str, String, String, Vec<&str>)> = vec![
            (
                "same configuration",
                gateway("m1, m2", false),
                gateway("m1, m2", false),
                vec![],
            ),
            (
                "a model added",
                gateway("m1", false),
                gateway("m1, m2", false),
                vec![],
            ),
            (
                "a model removed",
                gateway("m1, m2", false),
                gateway("m1", false),
                vec!["model-removed"],
            ),
            (
                "models reordered",
                gateway("m1, m2", false),
                gateway("m2, m1", false),
                vec![],
            ),
            (
                "authentication added",
                gateway("m1", false),
                gateway("m1", true),
                vec!["authentication-added"],
            ),
            (
                "authentication removed",
                gateway("m1", true),
                gateway("m1", false),
                vec![],
            ),
            (
                "a gateway removed",
                gateway("m1", false),
                api(None),
                vec!["gateway-removed"],
            ),
            (
                "an API's prefix changed",
                api(Some("/pay")),
                api(Some("/payments")),
                vec!["api-path-prefix-changed"],
            ),
            (
                "an API's prefix removed",
                api(Some("/pay")),
                api(None),
                vec!["api-path-prefix-changed"],
            ),
            (
                "an API's prefix added",
                api(None),
                api(Some("/pay")),
                vec![],
            ),
            (
                "an API removed",
                api(None),
                gateway("m1", false),
                vec!["api-removed"],
            ),
        ];
        for (what, old, new, expected) in cases {
            let got: Vec<&str> = checks(&old, &new).into_iter().map(|(c, _)| c).collect();
            assert_eq!(got, expected, "{what}");
        }
    }

    /// A spec given by URL on either side is not fetched, and said so; a spec on one side only
    /// is no contract to compare.
    #[test]
    fn specs_diff_cannot_read_are_warnings_not_changes() {
        let api = |spec: &str| {
            format!("apiVersion: airgate.io/v1alpha1\nkind: API\nmetadata: {{name: pay, namespace: fin}}\nspec:\n  service: {{name: pay, port: {{number: 80}}}}\n{spec}")
        };
        let url = "  openApiSpec: {url: \"http://registry.local/pay.yaml\"}\n";
        let path = "  openApiSpec: {path: specs/pay.yaml}\n";
        let cases = [
            (url, url, Some("not compared: both give it by url only")),
            (path, url, Some("not compared: NEW gives it by url only")),
            (url, path, Some("not compared: OLD gives it by url only")),
            ("", path, None),
            (path, "", None),
        ];
        for (old, new, warning) in cases {
            let report = compare(&load("old.yaml", &api(old)), &load("new.yaml", &api(new)));
            assert_eq!(report.breaking, [], "{old} -> {new}");
            assert_eq!(report.errors, [], "{old} -> {new}");
            let warnings: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
            match warning {
                Some(warning) => {
                    assert_eq!(warnings.len(), 1, "{warnings:?}");
                    assert!(
                        warnings[0]
                            .starts_with("new.yaml: document 1 (API fin/pay): spec.openApiSpec: "),
                        "{warnings:?}"
                    );
                    assert!(warnings[0].contains(warning), "{warnings:?}");
                }
                None => assert_eq!(warnings, Vec::<String>::new(), "{old} -> {new}"),
            }
        }
    }

    #[test]
    fn a_breaking_change_names_its_place_and_model() {
        let found = breaking_changes(
            &load("old.yaml", &gateway("m1, m2", false)),
            &load("new.yaml", &gateway("m1", false)),
        );
        assert_eq!(
            found[0].to_string(),
            "new.yaml: document 1 (AIGateway ml/gw): spec.backends: model-removed: model \"m2\" is no longer served"
        );
    }
}
