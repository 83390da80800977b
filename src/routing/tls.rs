//! TLS towards backends: which roots a backend's certificate must chain to, which client
//! certificate the backend is shown, which name its certificate is checked against, and one
//! HTTP client per distinct combination, built once when the snapshot is compiled.
//!
//! Trust: a backend with `caSecretName` trusts only that secret's `ca.crt` plus `--backend-ca`
//! (a private CA should not share its backends with every public CA); any other `https://`
//! backend trusts the built-in public roots plus `--backend-ca`. A backend's `tls` fields override
//! the gateway's `spec.routing.tls` one by one. Certificates are always verified: there is no
//! setting that turns verification off.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore};

use super::UpstreamClient;
use crate::config::{BackendSpec, BackendTlsSpec};
use crate::tls::{self, TlsError};

/// The key of a CA secret holding PEM CA certificates (cert-manager's and Kubernetes' name).
pub const CA_KEY: &str = "ca.crt";
/// The keys of a `kubernetes.io/tls` secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";

/// A backend TLS setting that cannot be used; names the configuration field it came from.
#[derive(Debug, thiserror::Error)]
pub enum BackendTlsError {
    #[error("{field}: secret {secret:?}: {error}")]
    Secret {
        field: String,
        secret: String,
        error: TlsError,
    },
    #[error("{field}: {message}")]
    Setting { field: String, message: String },
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// CAs trusted for every backend and `API` service besides the built-in or per-backend roots
/// (`--backend-ca`).
#[derive(Debug, Clone, Default)]
pub struct BackendTrust {
    extra: Vec<CertificateDer<'static>>,
}

impl BackendTrust {
    /// Reads PEM bundles; every certificate must be a usable trust anchor.
    pub fn load(files: &[PathBuf]) -> Result<Self, TlsError> {
        let mut extra = Vec::new();
        for file in files {
            let certs = tls::read_certs(file)?;
            tls::root_store(&certs, file.display())?;
            extra.extend(certs);
        }
        Ok(Self { extra })
    }

    pub fn len(&self) -> usize {
        self.extra.len()
    }

    pub fn is_empty(&self) -> bool {
        self.extra.is_empty()
    }
}

/// One backend's effective TLS settings: each is a value and the field path it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Choice {
    ca_secret: Option<(String, String)>,
    client_secret: Option<(String, String)>,
    server_name: Option<(String, String)>,
}

impl Choice {
    /// The backend's own field, else the gateway's.
    fn resolve(
        index: usize,
        own: Option<&BackendTlsSpec>,
        defaults: Option<&BackendTlsSpec>,
    ) -> Self {
        let pick = |get: fn(&BackendTlsSpec) -> &Option<String>, key: &str| {
            let own = own
                .and_then(|t| get(t).clone())
                .map(|v| (v, format!("spec.backends[{index}].tls.{key}")));
            own.or_else(|| {
                defaults
                    .and_then(|t| get(t).clone())
                    .map(|v| (v, format!("spec.routing.tls.{key}")))
            })
        };
        Self {
            ca_secret: pick(|t| &t.ca_secret_name, "caSecretName"),
            client_secret: pick(|t| &t.client_cert_secret_name, "clientCertSecretName"),
            server_name: pick(|t| &t.server_name, "serverName"),
        }
    }

    /// What makes two clients differ: the values, not where they were written.
    fn key(&self) -> [Option<String>; 3] {
        let value = |v: &Option<(String, String)>| v.as_ref().map(|(v, _)| v.clone());
        [
            value(&self.ca_secret),
            value(&self.client_secret),
            value(&self.server_name),
        ]
    }
}

/// Builds the backend clients of one snapshot, one per distinct TLS configuration.
pub struct UpstreamClients<'a> {
    trust: &'a BackendTrust,
    secrets_dir: PathBuf,
    built: HashMap<[Option<String>; 3], UpstreamClient>,
}

impl<'a> UpstreamClients<'a> {
    pub fn new(trust: &'a BackendTrust, secrets_dir: &Path) -> Self {
        Self {
            trust,
            secrets_dir: secrets_dir.to_path_buf(),
            built: HashMap::new(),
        }
    }

    /// The client for backends without TLS settings, and for `API` services.
    pub fn default_client(&mut self) -> Result<UpstreamClient, BackendTlsError> {
        self.client(&Choice::default())
    }

    /// The client of `spec.backends[index]`, with the gateway's `spec.routing.tls` as defaults.
    /// A plain `http://` backend gets the default client (TLS settings do not apply to it).
    pub fn for_backend(
        &mut self,
        index: usize,
        backend: &BackendSpec,
        defaults: Option<&BackendTlsSpec>,
    ) -> Result<UpstreamClient, BackendTlsError> {
        if !backend.url.to_ascii_lowercase().starts_with("https://") {
            return self.default_client();
        }
        self.client(&Choice::resolve(index, backend.tls.as_ref(), defaults))
    }

    fn client(&mut self, choice: &Choice) -> Result<UpstreamClient, BackendTlsError> {
        let key = choice.key();
        if let Some(client) = self.built.get(&key) {
            return Ok(client.clone());
        }
        let client = UpstreamClient::with_tls(self.config(choice)?)?;
        self.built.insert(key, client.clone());
        Ok(client)
    }

    fn config(&self, choice: &Choice) -> Result<ClientConfig, BackendTlsError> {
        let mut roots = match &choice.ca_secret {
            Some((secret, field)) => {
                let path = self.secret_file(secret, field, CA_KEY)?;
                let in_secret = |error| BackendTlsError::Secret {
                    field: field.clone(),
                    secret: secret.clone(),
                    error,
                };
                let certs = tls::read_certs(&path).map_err(in_secret)?;
                tls::root_store(&certs, path.display()).map_err(in_secret)?
            }
            None => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                roots
            }
        };
        for cert in &self.trust.extra {
            // Checked when `--backend-ca` was loaded.
            let _ = roots.add(cert.clone());
        }
        let provider = tls::provider();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| BackendTlsError::Setting {
                    field: choice
                        .ca_secret
                        .as_ref()
                        .map_or_else(|| "--backend-ca".to_string(), |(_, f)| f.clone()),
                    message: format!("no usable CA: {e}"),
                })?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(tls::PROTOCOL_VERSIONS)
            .map_err(|e| BackendTlsError::Setting {
                field: "TLS".into(),
                message: e.to_string(),
            })?;
        let builder = match &choice.server_name {
            None => builder.with_webpki_verifier(verifier),
            Some((name, field)) => {
                let name =
                    ServerName::try_from(name.clone()).map_err(|_| BackendTlsError::Setting {
                        field: field.clone(),
                        message: format!("{name:?} is not a DNS name or an IP address"),
                    })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ServerNameVerifier {
                        inner: verifier,
                        name,
                    }))
            }
        };
        let mut config = match &choice.client_secret {
            None => builder.with_no_client_auth(),
            Some((secret, field)) => {
                let in_secret = |error| BackendTlsError::Secret {
                    field: field.clone(),
                    secret: secret.clone(),
                    error,
                };
                let cert_path = self.secret_file(secret, field, TLS_CERT_KEY)?;
                let key_path = self.secret_file(secret, field, TLS_KEY_KEY)?;
                let chain = tls::read_certs(&cert_path).map_err(in_secret)?;
                let key = tls::read_file(&key_path)
                    .and_then(|pem| tls::parse_key(&pem, key_path.display()))
                    .map_err(in_secret)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| BackendTlsError::Secret {
                        field: field.clone(),
                        secret: secret.clone(),
                        error: TlsError::invalid(
                            cert_path.display(),
                            format!("unusable certificate and key: {e}"),
                        ),
                    })?
            }
        };
        config.alpn_protocols = tls::alpn_protocols();
        Ok(config)
    }

    /// `--secrets-dir/<secret>/<key>`; the secret name must be a plain folder name.
    fn secret_file(
        &self,
        secret: &str,
        field: &str,
        key: &str,
    ) -> Result<PathBuf, BackendTlsError> {
        let plain =
            !secret.is_empty() && !secret.starts_with('.') && !secret.contains(['/', '\\', '\0']);
        if !plain {
            return Err(BackendTlsError::Setting {
                field: field.to_string(),
                message: format!("{secret:?} is not a secret name"),
            });
        }
        Ok(self.secrets_dir.join(secret).join(key))
    }
}

/// Verifies a backend's certificate for the configured `serverName` instead of the URL's host;
/// everything else (chain to the trusted roots, validity dates, key usage, signatures) is rustls'
/// own WebPKI verification, unchanged.
///
/// Why a verifier rather than reqwest's `resolve`: `resolve` would need the name in the URL, so
/// the backend would be addressed as `serverName` (its `Host` header and HTTP/2 `:authority`
/// change) and its address pinned at load, which breaks Kubernetes services whose addresses move.
/// The cost: the SNI sent stays the URL's host (none for an IP address), because reqwest derives
/// SNI from the URL and offers no hook for it; see docs/tls.md.
#[derive(Debug)]
struct ServerNameVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ServerNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _url_host: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> BackendTlsSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn a_backend_field_overrides_the_gateway_default_field_by_field() {
        let own = spec("caSecretName: own-ca");
        let defaults = spec("caSecretName: gw-ca\nserverName: llm.internal");
        let choice = Choice::resolve(2, Some(&own), Some(&defaults));
        assert_eq!(
            choice.ca_secret,
            Some(("own-ca".into(), "spec.backends[2].tls.caSecretName".into()))
        );
        assert_eq!(
            choice.server_name,
            Some(("llm.internal".into(), "spec.routing.tls.serverName".into()))
        );
        assert_eq!(choice.client_secret, None);
    }

    #[test]
    fn one_client_per_distinct_configuration() {
        let trust = BackendTrust::default();
        let dir = tempfile::tempdir().unwrap();
        let mut clients = UpstreamClients::new(&trust, dir.path());
        let plain: BackendSpec =
            serde_yaml_ng::from_str("name: a\nurl: http://a\nmodels: [m]").unwrap();
        let named: BackendSpec = serde_yaml_ng::from_str(
            "name: b\nurl: https://b\nmodels: [m]\ntls: {serverName: b.internal}",
        )
        .unwrap();
        clients.for_backend(0, &plain, None).unwrap();
        clients.for_backend(1, &named, None).unwrap();
        clients.for_backend(2, &named, None).unwrap();
        clients.default_client().unwrap();
        assert_eq!(clients.built.len(), 2);
    }

    #[test]
    fn a_missing_secret_names_the_field_and_the_file() {
        let trust = BackendTrust::default();
        let dir = tempfile::tempdir().unwrap();
        let mut clients = UpstreamClients::new(&trust, dir.path());
        let backend: BackendSpec = serde_yaml_ng::from_str(
            "name: b\nurl: https://b\nmodels: [m]\ntls: {clientCertSecretName: client}",
        )
        .unwrap();
        let error = clients
            .for_backend(0, &backend, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("spec.backends[0].tls.clientCertSecretName: secret \"client\": "),
            "{error}"
        );
        assert!(error.contains("client/tls.crt: cannot read"), "{error}");
    }
}
