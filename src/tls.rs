//! TLS building blocks shared by the public listener ([`crate::server::tls`]), the backend
//! clients ([`crate::routing::tls`]) and the syslog sink: one crypto provider (ring), one set of
//! protocol versions (TLS 1.2 and 1.3), and PEM reading whose errors name the file but never
//! repeat its contents (a key file's bytes must not reach a log line).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::{self, RootCertStore, SupportedProtocolVersion};

/// TLS 1.3 and 1.2; rustls implements nothing older, so TLS 1.0/1.1 clients are refused.
pub static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The application protocols offered and accepted: HTTP/2 first, then HTTP/1.1.
pub fn alpn_protocols() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// The crypto provider every TLS configuration of the process is built with. Explicit rather
/// than the process default, so no dependency can switch it behind our back.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS file or setting that cannot be used. `origin` is the file (or flag) it came from.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    // The cause is in the message, not a `source`, so that `{:#}` does not print it twice.
    #[error("{origin}: cannot read: {cause}")]
    Read {
        origin: String,
        cause: std::io::Error,
    },
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
}

impl TlsError {
    pub fn invalid(origin: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        TlsError::Invalid {
            origin: origin.to_string(),
            reason: reason.into(),
        }
    }
}

/// Reads a whole file (certificates or a key), the error naming it.
pub fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Read {
        origin: path.display().to_string(),
        cause,
    })
}

/// Every `CERTIFICATE` block of a PEM text; at least one is required.
pub fn parse_certs(
    text: &[u8],
    origin: impl std::fmt::Display,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::invalid(&origin, format!("invalid PEM: {}", pem_problem(&e))))?;
    if certs.is_empty() {
        return Err(TlsError::invalid(
            &origin,
            "no certificate found (expected PEM blocks \"BEGIN CERTIFICATE\")",
        ));
    }
    Ok(certs)
}

/// The first private key of a PEM text (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn parse_key(
    text: &[u8],
    origin: impl std::fmt::Display,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(text).map_err(|e| {
        let reason = match e {
            pem::Error::NoItemsFound => {
                "no private key found (expected PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")"
                    .to_string()
            }
            other => format!("invalid PEM: {}", pem_problem(&other)),
        };
        TlsError::invalid(origin, reason)
    })
}

/// Reads a PEM bundle of certificates from a file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(&read_file(path)?, path.display())
}

/// A trust store of `certs`, each of which must be a usable trust anchor.
pub fn root_store<'a>(
    certs: impl IntoIterator<Item = &'a CertificateDer<'static>>,
    origin: impl std::fmt::Display,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert.clone())
            .map_err(|e| TlsError::invalid(&origin, format!("invalid CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// What went wrong in a PEM text, in words that never quote it: the decoder's own messages can
/// carry a line or a symbol of the input, and the input may be a private key.
fn pem_problem(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::NoItemsFound => "no PEM section of the expected type",
        pem::Error::SectionTooLarge => "a section is too large",
        // `Io` cannot happen on a slice; the enum is non-exhaustive.
        _ => "unreadable PEM",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn certificate_and_key_errors_name_the_origin_and_never_the_content() {
        let error = parse_certs(b"", "ca.pem").unwrap_err().to_string();
        assert!(error.starts_with("ca.pem: no certificate found"), "{error}");
        let secret = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA$$\n-----END PRIVATE KEY-----\n";
        let error = parse_key(secret, "tls.key").unwrap_err().to_string();
        assert!(error.starts_with("tls.key: invalid PEM"), "{error}");
        assert!(!error.contains("c2VjcmV0"), "{error}");
        let error = parse_key(b"nothing", "tls.key").unwrap_err().to_string();
        assert!(error.contains("no private key found"), "{error}");
    }

    #[test]
    fn reading_a_missing_file_names_it() {
        let error = read_certs(Path::new("/nonexistent/ca.pem"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("/nonexistent/ca.pem: cannot read"),
            "{error}"
        );
    }
}
