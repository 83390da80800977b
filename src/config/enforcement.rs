//! Warnings for sections that are parsed but not enforced by this build.

use crate::config::resources::{AiGatewaySpec, ApiSpec};
use crate::config::{ConfigIssue, LoadedConfig, Located};

/// Message of every warning returned by [`unenforced_warnings`].
pub const UNENFORCED_MESSAGE: &str = "parsed but not enforced yet by this AirGate version";

/// Which features this build enforces. `Default` is "nothing enforced".
/// (`metrics` is always enforced, so it has no flag.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enforcement {
    pub content_guard: bool,
    pub semantic_cache: bool,
    pub ai_rate_limit: bool,
    pub ai_auth: bool,
    pub tracing: bool,
    pub token_metrics: bool,
    pub api_routes: bool,
    pub api_openapi: bool,
    pub api_auth: bool,
    pub api_rate_limit: bool,
    pub api_cors: bool,
    pub api_access_control: bool,
}

/// One row of the tables below: a section of a spec, whether it is
/// configured (present and not disabled) and whether it is enforced.
struct Section<S> {
    field: &'static str,
    configured: fn(&S) -> bool,
    enforced: fn(&Enforcement) -> bool,
}

const GATEWAY_SECTIONS: &[Section<AiGatewaySpec>] = &[
    Section {
        field: "spec.contentGuard",
        configured: |s| s.content_guard.as_ref().is_some_and(|c| c.enabled),
        enforced: |e| e.content_guard,
    },
    Section {
        field: "spec.semanticCache",
        configured: |s| s.semantic_cache.as_ref().is_some_and(|c| c.enabled),
        enforced: |e| e.semantic_cache,
    },
    Section {
        field: "spec.rateLimit",
        configured: |s| s.rate_limit.is_some(),
        enforced: |e| e.ai_rate_limit,
    },
    Section {
        field: "spec.authentication",
        configured: |s| s.authentication.is_some(),
        enforced: |e| e.ai_auth,
    },
    Section {
        field: "spec.metrics.includeTokenCount",
        configured: |s| {
            s.metrics
                .as_ref()
                .is_some_and(|m| m.enabled && m.include_token_count)
        },
        enforced: |e| e.token_metrics,
    },
    Section {
        field: "spec.tracing",
        configured: |s| s.tracing.as_ref().is_some_and(|t| t.enabled),
        enforced: |e| e.tracing,
    },
];

const API_SECTIONS: &[Section<ApiSpec>] = &[
    Section {
        field: "spec.service",
        configured: |_| true,
        enforced: |e| e.api_routes,
    },
    Section {
        field: "spec.openApiSpec",
        configured: |s| s.open_api_spec.is_some(),
        enforced: |e| e.api_openapi,
    },
    Section {
        field: "spec.authentication",
        configured: |s| s.authentication.is_some(),
        enforced: |e| e.api_auth,
    },
    Section {
        field: "spec.rateLimit",
        configured: |s| s.rate_limit.is_some(),
        enforced: |e| e.api_rate_limit,
    },
    Section {
        field: "spec.cors",
        configured: |s| s.cors.is_some(),
        enforced: |e| e.api_cors,
    },
    Section {
        field: "spec.accessControl",
        configured: |s| s.access_control.is_some(),
        enforced: |e| e.api_access_control,
    },
];

/// One warning per configured section that `enforced` says is not enforced,
/// naming the file, document, resource and field.
pub fn unenforced_warnings(cfg: &LoadedConfig, enforced: &Enforcement) -> Vec<ConfigIssue> {
    let gateways = cfg.gateways.iter().flat_map(|g| {
        check(
            g,
            &g.resource.spec,
            g.resource.display_name(),
            GATEWAY_SECTIONS,
            enforced,
        )
    });
    let apis = cfg.apis.iter().flat_map(|a| {
        check(
            a,
            &a.resource.spec,
            a.resource.display_name(),
            API_SECTIONS,
            enforced,
        )
    });
    gateways.chain(apis).collect()
}

fn check<T, S>(
    located: &Located<T>,
    spec: &S,
    label: String,
    sections: &[Section<S>],
    enforced: &Enforcement,
) -> Vec<ConfigIssue> {
    sections
        .iter()
        .filter(|section| (section.configured)(spec) && !(section.enforced)(enforced))
        .map(|section| {
            ConfigIssue::at(&located.source, UNENFORCED_MESSAGE)
                .with_resource(label.clone())
                .with_field(section.field)
        })
        .collect()
}
