//! `airgate validate` as a CI gate: the loader's findings, then the built-in rule packs and the
//! user's CEL rules over every input that loaded, in one report.

use std::path::{Path, PathBuf};

use crate::config::{ConfigIssue, LoadedConfig};

use super::documents::Documents;
use super::finding::{Finding, Severity};
use super::report::{Loaded, Report};
use super::rules;
use super::user_rules::{self, Policy};

/// One path given to `validate`, as the loader left it.
pub struct Input {
    pub path: PathBuf,
    pub loaded: Result<LoadedConfig, Vec<ConfigIssue>>,
}

/// Every finding over `inputs`. `Namespace` documents of any input select packs for the
/// resources of all of them.
pub fn check(inputs: Vec<Input>, policy: Option<&Path>) -> Report {
    let mut documents = Documents::default();
    for input in &inputs {
        documents.read(&input.path);
    }
    let mut report = Report::default();
    let policy = policy.map(Policy::load);
    if let Some(policy) = &policy {
        report.findings.extend(policy.problems.iter().cloned());
    }
    for input in inputs {
        match input.loaded {
            Ok(config) => {
                let issue =
                    |i: &ConfigIssue| Finding::from_issue(i.clone(), Severity::Warning, &documents);
                report.findings.extend(config.warnings.iter().map(issue));
                let targets = rules::targets(&config, &documents);
                report
                    .findings
                    .extend(rules::evaluate(&targets, &documents));
                if let Some(policy) = &policy {
                    let found = user_rules::evaluate(&policy.rules, &targets, &documents);
                    report.findings.extend(found);
                }
                report.loaded.push(Loaded {
                    path: input.path,
                    gateways: config.gateways.len(),
                    apis: config.apis.len(),
                });
            }
            Err(issues) => report.findings.extend(
                issues
                    .into_iter()
                    .map(|i| Finding::from_issue(i, Severity::Error, &documents)),
            ),
        }
    }
    report.sort();
    report
}
