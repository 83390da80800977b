//! CustomResourceDefinitions for `AIGateway` and `API`, generated from the Rust types so that the
//! schema the cluster validates against is the one the gateway parses.

use schemars::gen::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Value};

use super::{AiGatewaySpec, ApiSpec};

/// The API group of AirGate's own resources; the seed's `hub.traefik.io` is accepted on input.
pub const GROUP: &str = "airgate.io";

/// The seed's group: its CRDs come with Traefik Hub; `airgate crds --group hub.traefik.io`
/// renders them for a cluster without it.
pub const SEED_GROUP: &str = "hub.traefik.io";

/// Both CRDs of AirGate's own group as one multi-document YAML text.
pub fn render() -> Result<String, serde_yaml_ng::Error> {
    render_group(GROUP)
}

/// Both CRDs of `group` as one multi-document YAML text.
pub fn render_group(group: &str) -> Result<String, serde_yaml_ng::Error> {
    let docs = [
        crd::<AiGatewaySpec>(group, "AIGateway", "aigateways", "aigateway"),
        crd::<ApiSpec>(group, "API", "apis", "api"),
    ];
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&quote_yaml11_booleans(&serde_yaml_ng::to_string(&doc)?));
    }
    Ok(out)
}

/// The YAML 1.1 booleans (`off`, `on`, `yes`, `no`, `y`, `n`) quoted where they stand alone as
/// a list item or a mapping's value. The YAML written is 1.2, where they are strings, but
/// Kubernetes reads manifests as YAML 1.1, where a bare `off` is `false`: the enum of
/// `openApiSpec.validation` would not be the strings it lists.
fn quote_yaml11_booleans(text: &str) -> String {
    const BOOLEANS: &[&str] = &["y", "n", "yes", "no", "on", "off"];
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let split = line.rfind(": ").map(|at| at + 2).or_else(|| {
            line.trim_start()
                .starts_with("- ")
                .then(|| line.find("- ").map(|at| at + 2))
                .flatten()
        });
        match split {
            Some(at) if BOOLEANS.contains(&line[at..].to_ascii_lowercase().as_str()) => {
                out.push_str(&line[..at]);
                out.push('\'');
                out.push_str(&line[at..]);
                out.push('\'');
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `status` as cluster mode writes it (docs/kubernetes.md): the resource's observed generation
/// and the conditions `Accepted` and `Programmed`, in the shape of `metav1.Condition`.
fn status_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "observedGeneration": { "type": "integer", "format": "int64" },
            "conditions": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": {
                    "type": "object",
                    "required": ["type", "status", "reason", "message", "lastTransitionTime"],
                    "properties": {
                        "type": { "type": "string" },
                        "status": { "type": "string", "enum": ["True", "False", "Unknown"] },
                        "reason": { "type": "string" },
                        "message": { "type": "string", "maxLength": 32768 },
                        "observedGeneration": { "type": "integer", "format": "int64" },
                        "lastTransitionTime": { "type": "string", "format": "date-time" }
                    }
                }
            }
        }
    })
}

/// `kubectl get` shows both conditions.
fn printer_columns() -> Value {
    json!([
        { "name": "Accepted", "type": "string",
          "jsonPath": ".status.conditions[?(@.type==\"Accepted\")].status" },
        { "name": "Programmed", "type": "string",
          "jsonPath": ".status.conditions[?(@.type==\"Programmed\")].status" },
        { "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp" }
    ])
}

fn crd<T: JsonSchema>(group: &str, kind: &str, plural: &str, singular: &str) -> Value {
    let settings = SchemaSettings::openapi3().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let spec_schema = settings.into_generator().into_root_schema_for::<T>();
    let mut spec = serde_json::to_value(&spec_schema.schema).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut spec {
        map.remove("title");
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{plural}.{group}") },
        "spec": {
            "group": group,
            "names": { "kind": kind, "plural": plural, "singular": singular, "listKind": format!("{kind}List") },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "additionalPrinterColumns": printer_columns(),
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": { "spec": spec, "status": status_schema() }
                }}
            }]
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_1_booleans_are_quoted_so_kubernetes_reads_strings() {
        let text = "enum:\n- enforce\n- off\nkey: on\nother: 'no'\nwords: off the record\n";
        assert_eq!(
            quote_yaml11_booleans(text),
            "enum:\n- enforce\n- 'off'\nkey: 'on'\nother: 'no'\nwords: off the record\n"
        );
        let crds = render().unwrap();
        assert!(crds.contains("- 'off'"), "{crds}");
        // still the same document for a YAML 1.2 reader
        for doc in crds.split("---\n").filter(|d| !d.trim().is_empty()) {
            serde_yaml_ng::from_str::<Value>(doc).unwrap();
        }
    }
}
