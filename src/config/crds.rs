//! CustomResourceDefinitions for `AIGateway` and `API`, generated from the Rust types so that the
//! schema the cluster validates against is the one the gateway parses.

use schemars::gen::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Value};

use super::{AiGatewaySpec, ApiSpec};

/// The API group of AirGate's own resources; the seed's `hub.traefik.io` is accepted on input.
pub const GROUP: &str = "airgate.io";

/// Both CRDs as one multi-document YAML text.
pub fn render() -> Result<String, serde_yaml_ng::Error> {
    let docs = [
        crd::<AiGatewaySpec>("AIGateway", "aigateways", "aigateway"),
        crd::<ApiSpec>("API", "apis", "api"),
    ];
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&doc)?);
    }
    Ok(out)
}

fn crd<T: JsonSchema>(kind: &str, plural: &str, singular: &str) -> Value {
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
        "metadata": { "name": format!("{plural}.{GROUP}") },
        "spec": {
            "group": GROUP,
            "names": { "kind": kind, "plural": plural, "singular": singular, "listKind": format!("{kind}List") },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": { "spec": spec }
                }}
            }]
        }
    })
}
