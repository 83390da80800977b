//! `airgate diff OLD NEW`: the breaking changes between two configurations, as a CI gate
//! before a change is signed and applied.
//!
//! Built so far: the routing contract that clients of the gateway depend on.
//!
//! | check | breaking when |
//! | --- | --- |
//! | `gateway-removed` | an `AIGateway` of OLD is not in NEW (its models and route go) |
//! | `model-removed` | a model an `AIGateway` served in OLD is served by none of its backends in NEW |
//! | `api-removed` | an `API` of OLD is not in NEW |
//! | `api-path-prefix-changed` | an `API`'s `pathPrefix` changed or was removed (adding one is not breaking) |
//! | `authentication-added` | an `AIGateway` or `API` without `authentication` in OLD has it in NEW: its callers without tokens are refused |
//!
//! Not built yet (issue 14): the OpenAPI-spec checks (`openApiSpec` of `API` resources).
//! Resources are matched by kind and `namespace/name`, whatever their group.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::config::{AiGateway, Api, AuthenticationSpec, LoadedConfig, Located, Source};

/// One breaking change, placed in the file and document of the resource in NEW (or in OLD,
/// for a removed resource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breaking {
    /// The check's id.
    pub check: &'static str,
    pub file: PathBuf,
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
            document: source.document,
            resource,
            field: field.to_string(),
            message,
        }
    }
}

/// `"{file}: document {n} ({resource}): {field}: {check}: {message}"`, as `validate` prints.
impl std::fmt::Display for Breaking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: document {} ({}): {}: {}: {}",
            self.file.display(),
            self.document,
            self.resource,
            self.field,
            self.check,
            self.message
        )
    }
}

fn by_id<T>(resources: &[Located<T>], id: impl Fn(&T) -> String) -> BTreeMap<String, &Located<T>> {
    resources.iter().map(|l| (id(&l.resource), l)).collect()
}

/// Every breaking change from `old` to `new`, in a stable order.
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
