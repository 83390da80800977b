//! The resources cluster mode watches, and how one cluster object becomes the document the
//! folder loader validates: the same parser and the same checks as `airgate validate`, so a
//! problem is reported with the same field path in a status condition as on the command line.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{json, Map, Value};

use crate::app::compile::PartKind;
use crate::config::{ConfigIssue, LoadedConfig};

/// The API groups whose `AIGateway` and `API` are watched: the seed's and AirGate's own.
pub const GROUPS: [&str; 2] = ["hub.traefik.io", "airgate.io"];
/// The version of both groups.
pub const VERSION: &str = "v1alpha1";

/// Annotation `kubectl apply` adds with a copy of the whole object: not configuration.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One watched kind in one group.
#[derive(Debug, Clone)]
pub struct Watched {
    pub resource: ApiResource,
    pub part: PartKind,
}

/// The same group, version and kind.
impl PartialEq for Watched {
    fn eq(&self, other: &Self) -> bool {
        self.resource.api_version == other.resource.api_version
            && self.resource.kind == other.resource.kind
    }
}

impl Watched {
    /// `AIGateway` and `API` of both [`GROUPS`].
    pub fn all() -> Vec<Watched> {
        let mut watched = Vec::new();
        for group in GROUPS {
            for (kind, plural, part) in [
                ("AIGateway", "aigateways", PartKind::Gateway),
                ("API", "apis", PartKind::Api),
            ] {
                let gvk = GroupVersionKind::gvk(group, VERSION, kind);
                watched.push(Watched {
                    resource: ApiResource::from_gvk_with_plural(&gvk, plural),
                    part,
                });
            }
        }
        watched
    }
}

/// A cluster object by group, kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn of(watched: &Watched, object: &DynamicObject) -> Self {
        Self {
            group: watched.resource.group.clone(),
            kind: watched.resource.kind.clone(),
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            name: object.metadata.name.clone().unwrap_or_default(),
        }
    }

    /// `namespace/name`: the compiled part's id.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The object's API path, used as the "file" of its issues: logs and `validate`-style
    /// lines name it as a folder configuration names its file.
    pub fn path(&self, watched: &Watched) -> PathBuf {
        PathBuf::from(format!(
            "/apis/{}/{}/namespaces/{}/{}/{}",
            self.group, VERSION, self.namespace, watched.resource.plural, self.name
        ))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{} ({})",
            self.kind, self.namespace, self.name, self.group
        )
    }
}

/// A name usable as one path segment: the API server allows no other, but a folder of
/// secrets is built from it, so it is checked here too.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The object as a configuration document: `apiVersion`, `kind`, the metadata the gateway
/// reads (name, namespace, labels, annotations) and `spec`. The server's fields (uid,
/// resourceVersion, managedFields, status) are not configuration and would be refused as
/// unknown fields.
pub fn document(watched: &Watched, object: &DynamicObject) -> Value {
    let meta = &object.metadata;
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(meta.name));
    metadata.insert("namespace".into(), json!(meta.namespace));
    if let Some(labels) = meta.labels.as_ref().filter(|l| !l.is_empty()) {
        metadata.insert("labels".into(), json!(labels));
    }
    let annotations: Map<String, Value> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(key, _)| key.as_str() != LAST_APPLIED)
        .map(|(key, value)| (key.clone(), json!(value)))
        .collect();
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    let mut document = Map::new();
    document.insert("apiVersion".into(), json!(watched.resource.api_version));
    document.insert("kind".into(), json!(watched.resource.kind));
    document.insert("metadata".into(), Value::Object(metadata));
    if let Some(spec) = object.data.get("spec") {
        document.insert("spec".into(), spec.clone());
    }
    Value::Object(document)
}

/// Parses and validates one object's document, as the folder loader does a file's.
pub fn load(
    key: &ObjectKey,
    watched: &Watched,
    document: &Value,
) -> Result<LoadedConfig, Vec<ConfigIssue>> {
    let path = key.path(watched);
    if !is_plain_name(&key.namespace) || !is_plain_name(&key.name) {
        return Err(vec![ConfigIssue::new(
            path,
            "namespace and name must be plain names",
        )]);
    }
    // JSON is YAML: the loader's own parser reads it (pretty-printed, so no line starts a
    // document marker)
    let text = serde_json::to_string_pretty(document).unwrap_or_default();
    crate::app::load_text(&path, &text)
}

/// The Secrets a resource names: every string under a key ending in `secretName`
/// (`secretName`, `caSecretName`, `clientCertSecretName`, ...), so that a new field needs no
/// change here.
pub fn secret_names(document: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    collect_secret_names(document.get("spec").unwrap_or(&Value::Null), &mut names);
    names
}

fn collect_secret_names(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::String(name) if key.to_ascii_lowercase().ends_with("secretname") => {
                        if is_plain_name(name) {
                            names.insert(name.clone());
                        }
                    }
                    other => collect_secret_names(other, names),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_secret_names(v, names)),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn object(spec: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "airgate.io/v1alpha1",
            "kind": "AIGateway",
            "metadata": {
                "name": "gw", "namespace": "ml", "resourceVersion": "7", "uid": "u",
                "generation": 3,
                "annotations": {LAST_APPLIED: "{...}", "airgate.io/default": "true"},
                "managedFields": [{"manager": "kubectl"}]
            },
            "spec": spec,
            "status": {"conditions": []}
        }))
        .unwrap()
    }

    #[test]
    fn a_cluster_object_loads_as_its_document_and_names_its_secrets() {
        let watched = &Watched::all()[2];
        assert_eq!(watched.resource.group, "airgate.io");
        let object = object(json!({
            "backends": [{"name": "a", "url": "https://a:8000", "models": ["m"],
                          "tls": {"caSecretName": "ca"}}],
            "authentication": {"jwt": {"secretName": "jwt", "issuer": "i", "audience": "a"}}
        }));
        let key = ObjectKey::of(watched, &object);
        let document = document(watched, &object);
        let loaded = load(&key, watched, &document).unwrap();
        assert_eq!(loaded.gateways.len(), 1);
        assert!(loaded.gateways[0].resource.is_default());
        assert_eq!(
            secret_names(&document).into_iter().collect::<Vec<_>>(),
            ["ca", "jwt"]
        );
    }

    #[test]
    fn an_invalid_object_is_reported_with_its_field() {
        let watched = &Watched::all()[2];
        let object = object(json!({
            "backends": [{"name": "a", "url": "http://a:8000", "models": ["m"], "timeout": "soon"}]
        }));
        let key = ObjectKey::of(watched, &object);
        let issues = load(&key, watched, &document(watched, &object)).unwrap_err();
        assert_eq!(
            issues[0].field.as_deref(),
            Some("spec.backends[0].timeout"),
            "{issues:?}"
        );
        assert!(issues[0]
            .file
            .ends_with("airgate.io/v1alpha1/namespaces/ml/aigateways/gw"));
    }
}
