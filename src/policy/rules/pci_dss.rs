//! The `pci-dss` pack: PCI DSS v4.0 requirements an AI gateway or API in front of cardholder
//! data must configure. On for resources labelled `compliance: pci-dss` or in such a namespace.

use crate::policy::finding::Severity;

use super::checks;
use super::{Pack, Rule, Subject, Target, Violation};

pub static RULES: &[Rule] = &[
    Rule {
        id: "pci-dss.authentication-required",
        pack: Pack::PciDss,
        severity: Severity::Error,
        summary: "every route authenticates its callers (authentication.jwt)",
        reason: "access to systems handling cardholder data must be tied to an authenticated identity",
        requirement: "PCI DSS v4.0 8.2.1, 8.3.1",
        check: checks::authentication_required,
    },
    Rule {
        id: "pci-dss.rate-limit-required",
        pack: Pack::PciDss,
        severity: Severity::Error,
        summary: "a rate limit is set (rateLimit)",
        reason: "unbounded call rates let a stolen token or a script enumerate or exfiltrate data, and brute-force guesses go unthrottled",
        requirement: "PCI DSS v4.0 6.4.2, 8.3.4",
        check: checks::rate_limit_set,
    },
    Rule {
        id: "pci-dss.card-number-detector",
        pack: Pack::PciDss,
        severity: Severity::Error,
        summary: "AI gateways scan prompts and answers with the credit_card detector blocking or redacting",
        reason: "a model can be sent card numbers and can repeat them; the primary account number must not be displayed in full",
        requirement: "PCI DSS v4.0 3.4.1, 3.5.1",
        check: card_number_detector,
    },
    Rule {
        id: "pci-dss.jwt-issuer-audience",
        pack: Pack::PciDss,
        severity: Severity::Error,
        summary: "JWT authentication pins the issuer and the audience",
        reason: "without them a token minted by another issuer sharing the key, or for another service, is accepted",
        requirement: "PCI DSS v4.0 8.3.1, 8.6.3",
        check: jwt_issuer_audience,
    },
    Rule {
        id: "pci-dss.cors-no-wildcard",
        pack: Pack::PciDss,
        severity: Severity::Error,
        summary: "CORS names the allowed origins (no `*`)",
        reason: "a wildcard origin lets any web page in a user's browser call the API",
        requirement: "PCI DSS v4.0 6.2.4, 6.4.1",
        check: cors_no_wildcard,
    },
    Rule {
        id: "pci-dss.no-plain-http-outside-cluster",
        pack: Pack::PciDss,
        severity: Severity::Error,
        summary: "no plain http:// backend or service outside the cluster's own service names",
        reason: "cardholder data sent across networks must be encrypted in transit",
        requirement: "PCI DSS v4.0 4.2.1",
        check: checks::no_plain_http_outside_cluster,
    },
    Rule {
        id: "pci-dss.cache-per-user",
        pack: Pack::PciDss,
        severity: Severity::Error,
        summary: "a semantic cache is scoped per user (semanticCache.scope: user)",
        reason: "a shared cache can serve one user's answer, with its cardholder data, to another",
        requirement: "PCI DSS v4.0 7.2.1, 7.2.2",
        check: checks::cache_per_user,
    },
];

fn card_number_detector(target: &Target) -> Vec<Violation> {
    checks::guard_with_detector(target, "credit_card", "card numbers")
}

fn jwt_issuer_audience(target: &Target) -> Vec<Violation> {
    let Some(jwt) = target.subject.jwt() else {
        return Vec::new(); // pci-dss.authentication-required reports it
    };
    let mut violations = Vec::new();
    if jwt.issuer.is_none() {
        violations.push(Violation::new(
            "spec.authentication.jwt.issuer",
            "no issuer: tokens from any issuer holding the key are accepted",
        ));
    }
    if jwt.audience.is_none() {
        violations.push(Violation::new(
            "spec.authentication.jwt.audience",
            "no audience: tokens minted for other services are accepted",
        ));
    }
    violations
}

fn cors_no_wildcard(target: &Target) -> Vec<Violation> {
    let Subject::Api(api) = target.subject else {
        return Vec::new();
    };
    let Some(cors) = &api.spec.cors else {
        return Vec::new();
    };
    cors.allow_origins
        .iter()
        .enumerate()
        .filter(|(_, origin)| origin.as_str() == "*")
        .map(|(i, _)| {
            Violation::new(
                format!("spec.cors.allowOrigins[{i}]"),
                "wildcard origin: name the web applications allowed to call",
            )
        })
        .collect()
}
