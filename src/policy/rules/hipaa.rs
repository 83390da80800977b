//! The `hipaa` pack: the HIPAA Security Rule's technical safeguards (45 CFR 164.312) an AI
//! gateway or API in front of protected health information must configure. On for resources
//! labelled `compliance: hipaa` or in such a namespace.

use crate::policy::finding::Severity;

use super::checks;
use super::{Pack, Rule, Target, Violation};

pub static RULES: &[Rule] = &[
    Rule {
        id: "hipaa.authentication-required",
        pack: Pack::Hipaa,
        severity: Severity::Error,
        summary: "every route authenticates its callers (authentication.jwt)",
        reason: "whoever reaches ePHI must be verified to be who they claim, and named in the audit trail",
        requirement: "45 CFR 164.312(d), 164.312(a)(2)(i)",
        check: checks::authentication_required,
    },
    Rule {
        id: "hipaa.identifier-detectors",
        pack: Pack::Hipaa,
        severity: Severity::Error,
        summary: "AI gateways scan prompts and answers with the us_ssn detector blocking or redacting",
        reason: "social security numbers are among the identifiers that make health information identifiable; a model must neither receive nor repeat them",
        requirement: "45 CFR 164.514(b)(2)(i), 164.312(e)(1)",
        check: identifier_detectors,
    },
    Rule {
        id: "hipaa.no-plain-http-outside-cluster",
        pack: Pack::Hipaa,
        severity: Severity::Error,
        summary: "no plain http:// backend or service outside the cluster's own service names",
        reason: "ePHI sent over an electronic network must be protected against interception",
        requirement: "45 CFR 164.312(e)(1), 164.312(e)(2)(ii)",
        check: checks::no_plain_http_outside_cluster,
    },
    Rule {
        id: "hipaa.cache-per-user",
        pack: Pack::Hipaa,
        severity: Severity::Error,
        summary: "a semantic cache is scoped per user (semanticCache.scope: user)",
        reason: "a shared cache can serve one patient's information to another user",
        requirement: "45 CFR 164.312(a)(1), 164.308(a)(4)",
        check: checks::cache_per_user,
    },
];

fn identifier_detectors(target: &Target) -> Vec<Violation> {
    checks::guard_with_detector(target, "us_ssn", "social security numbers")
}
