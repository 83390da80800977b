//! The built-in rules of `airgate validate`: the `baseline` pack, always on, and the `pci-dss`
//! and `hipaa` packs, on for a resource labelled `compliance: <pack>` or in a namespace whose
//! `Namespace` document (in the same input) is. Every rule's reason and the requirement it maps
//! to are in docs/policy.md; a test breaks each one.

mod baseline;
mod checks;
mod hipaa;
mod pci_dss;

use std::collections::BTreeSet;

use serde_json::Value;

use crate::config::{AiGateway, Api, JwtSpec, LoadedConfig, Source, KIND_AI_GATEWAY, KIND_API};

use super::documents::{labels, Documents};
use super::finding::{Finding, Severity};

/// The label that selects a pack, on a resource or on its `Namespace`.
pub const COMPLIANCE_LABEL: &str = "compliance";

/// A set of rules switched on together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pack {
    Baseline,
    PciDss,
    Hipaa,
}

impl Pack {
    pub fn name(self) -> &'static str {
        match self {
            Pack::Baseline => "baseline",
            Pack::PciDss => "pci-dss",
            Pack::Hipaa => "hipaa",
        }
    }

    /// The pack a `compliance` label names; `baseline` is always on, so it is not selectable.
    fn from_label(value: &str) -> Option<Self> {
        [Pack::PciDss, Pack::Hipaa]
            .into_iter()
            .find(|p| p.name() == value)
    }
}

/// The resource a rule looks at.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Gateway(&'a AiGateway),
    Api(&'a Api),
}

impl Subject<'_> {
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Gateway(_) => KIND_AI_GATEWAY,
            Subject::Api(_) => KIND_API,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Subject::Gateway(g) => g.display_name(),
            Subject::Api(a) => a.display_name(),
        }
    }

    pub fn namespace(&self) -> &str {
        match self {
            Subject::Gateway(g) => g.metadata.namespace(),
            Subject::Api(a) => a.metadata.namespace(),
        }
    }

    /// Its JWT authentication, if any.
    pub fn jwt(&self) -> Option<&'_ JwtSpec> {
        let authentication = match self {
            Subject::Gateway(g) => g.spec.authentication.as_ref(),
            Subject::Api(a) => a.spec.authentication.as_ref(),
        };
        authentication.and_then(|a| a.jwt.as_ref())
    }

    pub fn resource_labels(&self) -> &std::collections::BTreeMap<String, String> {
        match self {
            Subject::Gateway(g) => &g.metadata.labels,
            Subject::Api(a) => &a.metadata.labels,
        }
    }
}

/// A resource with where it was written and its document as written (before defaults).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub subject: Subject<'a>,
    pub source: &'a Source,
    /// As written; `Null` when unavailable.
    pub raw: &'a Value,
    /// Its namespace's `Namespace` document in the input, if any.
    pub namespace: Option<&'a Value>,
}

/// What a rule found wrong, at a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One built-in rule.
#[derive(Debug)]
pub struct Rule {
    /// `pack.name`.
    pub id: &'static str,
    pub pack: Pack,
    pub severity: Severity,
    /// One line: what must hold.
    pub summary: &'static str,
    /// Why it exists.
    pub reason: &'static str,
    /// The standard's requirement it maps to.
    pub requirement: &'static str,
    pub check: fn(&Target) -> Vec<Violation>,
}

/// Every built-in rule, by pack.
pub fn catalogue() -> impl Iterator<Item = &'static Rule> {
    baseline::RULES
        .iter()
        .chain(pci_dss::RULES)
        .chain(hipaa::RULES)
}

/// The built-in rule with this id.
pub fn find(id: &str) -> Option<&'static Rule> {
    catalogue().find(|r| r.id == id)
}

/// Every resource of `config` as a [`Target`].
pub fn targets<'a>(config: &'a LoadedConfig, documents: &'a Documents) -> Vec<Target<'a>> {
    let target = |subject: Subject<'a>, source: &'a Source| Target {
        subject,
        source,
        raw: documents.get(source).map_or(&Value::Null, |d| &d.value),
        namespace: documents.namespace(subject.namespace()),
    };
    let gateways = config
        .gateways
        .iter()
        .map(|g| target(Subject::Gateway(&g.resource), &g.source));
    let apis = config
        .apis
        .iter()
        .map(|a| target(Subject::Api(&a.resource), &a.source));
    gateways.chain(apis).collect()
}

/// The packs on for a target, and a warning for each `compliance` label naming no pack (a
/// misspelt label would otherwise switch a pack off silently).
fn packs(target: &Target, documents: &Documents) -> (BTreeSet<Pack>, Vec<Finding>) {
    let mut packs = BTreeSet::from([Pack::Baseline]);
    let mut unknown = Vec::new();
    let namespace_labels = target.namespace.map(labels).unwrap_or_default();
    let written = [
        (
            target.subject.resource_labels().get(COMPLIANCE_LABEL),
            false,
        ),
        (namespace_labels.get(COMPLIANCE_LABEL), true),
    ];
    for (value, on_namespace) in written {
        let Some(value) = value else { continue };
        match Pack::from_label(value) {
            Some(pack) => {
                packs.insert(pack);
            }
            None if !on_namespace => unknown.push(finding(
                target,
                documents,
                UNKNOWN_PACK_RULE,
                Severity::Warning,
                Violation::new(
                    format!("metadata.labels.{COMPLIANCE_LABEL}"),
                    format!("no rule pack is named {value:?} (packs: pci-dss, hipaa); no pack is switched on by it"),
                ),
            )),
            None => {}
        }
    }
    (packs, unknown)
}

/// The id of the warning for a `compliance` label naming no pack.
pub const UNKNOWN_PACK_RULE: &str = "baseline.compliance-label-unknown";

/// A violation of `rule` as a finding, placed on its field's line.
pub(crate) fn finding(
    target: &Target,
    documents: &Documents,
    rule: &str,
    severity: Severity,
    violation: Violation,
) -> Finding {
    Finding {
        rule: rule.to_string(),
        severity,
        file: target.source.file.clone(),
        line: documents.line(
            &target.source.file,
            Some(target.source.document),
            Some(&violation.field),
        ),
        document: Some(target.source.document),
        resource: Some(target.subject.label()),
        field: Some(violation.field),
        message: violation.message,
    }
}

/// Runs every built-in rule of the packs on for each target.
pub fn evaluate(targets: &[Target], documents: &Documents) -> Vec<Finding> {
    let mut findings = Vec::new();
    for target in targets {
        let (packs, unknown) = packs(target, documents);
        findings.extend(unknown);
        for rule in catalogue().filter(|r| packs.contains(&r.pack)) {
            for violation in (rule.check)(target) {
                findings.push(finding(
                    target,
                    documents,
                    rule.id,
                    rule.severity,
                    violation,
                ));
            }
        }
    }
    findings
}
