//! `airgate-fake-kube`: the Kubernetes API-server stand-in (`kube_api`) as a standalone
//! server, for the Python end-to-end test of cluster mode and for trying `serve --kubernetes`
//! on a machine with no cluster. Not a Kubernetes API server: no authentication, admission or
//! validation.
//!
//! ```text
//! airgate-fake-kube --kubeconfig /tmp/kubeconfig --manifests config/seed
//! KUBECONFIG=/tmp/kubeconfig airgate serve --kubernetes --secrets-dir /tmp/secrets
//! ```
//!
//! The manifests' `AIGateway`, `API` and `Secret` documents are created as `kubectl apply`
//! would (a Secret's `stringData` goes into `data`); other kinds are skipped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airgate_test_support::kube_api::FakeKube;
use base64::Engine;
use clap::Parser;
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(name = "airgate-fake-kube", version, about)]
struct Args {
    /// Where to write a kubeconfig pointing at the stand-in (plain http on a free loopback
    /// port), written once it listens.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// A YAML file or a folder of them whose AIGateway, API and Secret documents are created.
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// The kubeconfig context's namespace (the Lease's, by default).
    #[arg(long, default_value = "airgate-system")]
    namespace: String,
}

/// The documents of a file, or of every `*.yaml`/`*.yml` file of a folder, sorted.
fn documents(path: &Path) -> Result<Vec<Value>, String> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut documents = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            if !value.is_null() {
                documents.push(value);
            }
        }
    }
    Ok(documents)
}

/// A Secret as the API server stores it: `stringData` merged into `data`, base64.
fn stored_secret(mut secret: Value) -> Value {
    if let Some(Value::Object(strings)) = secret.get("stringData").cloned() {
        for (key, value) in strings {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(value.as_str().unwrap_or_default());
            secret["data"][key.as_str()] = Value::String(encoded);
        }
        if let Some(map) = secret.as_object_mut() {
            map.remove("stringData");
        }
    }
    secret
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let kube = match FakeKube::start(&["hub.traefik.io", "airgate.io"]).await {
        Ok(kube) => kube,
        Err(error) => {
            eprintln!("airgate-fake-kube: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(manifests) = &args.manifests {
        let documents = match documents(manifests) {
            Ok(documents) => documents,
            Err(error) => {
                eprintln!("airgate-fake-kube: {error}");
                return ExitCode::FAILURE;
            }
        };
        for document in documents {
            match document["kind"].as_str() {
                Some("AIGateway") => kube.apply("aigateways", document),
                Some("API") => kube.apply("apis", document),
                Some("Secret") => kube.apply("secrets", stored_secret(document)),
                _ => {}
            }
        }
    }
    let config = kube.kubeconfig(&args.namespace, "fake-token");
    if let Err(error) = std::fs::write(&args.kubeconfig, config) {
        eprintln!("airgate-fake-kube: {}: {error}", args.kubeconfig.display());
        return ExitCode::FAILURE;
    }
    println!("listening on http://{}", kube.addr);
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
