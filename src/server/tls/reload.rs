//! Certificate rotation without a restart. cert-manager renews a certificate by rewriting its
//! Secret, and the kubelet swaps the mounted files through a symlink, so nothing signals the
//! process: a task polls the two files (a content digest, so a symlink swap that keeps the
//! modification time is seen too) and swaps the served pair. New handshakes get the new pair;
//! established connections keep theirs. A new pair that does not load (unreadable, malformed, or
//! a key that does not match the certificate, as when the two files are caught mid-update) is
//! refused with an error log and the previous pair keeps being served.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::tls::{self, TlsError};

/// The certificate and key files served.
#[derive(Debug, Clone)]
pub(super) struct PairFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl PairFiles {
    /// Reads both files (without blocking an async worker).
    async fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |path: PathBuf| async move {
            tokio::fs::read(&path)
                .await
                .map_err(|cause| TlsError::Read {
                    origin: path.display().to_string(),
                    cause,
                })
        };
        Ok((
            read(self.cert.clone()).await?,
            read(self.key.clone()).await?,
        ))
    }

    /// Reads both files at start-up, when blocking is fine.
    pub fn read_now(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        Ok((tls::read_file(&self.cert)?, tls::read_file(&self.key)?))
    }

    /// Parses a chain and its key; refuses a key that does not belong to the certificate.
    pub fn load(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
        let chain = tls::parse_certs(cert_pem, self.cert.display())?;
        let key = tls::parse_key(key_pem, self.key.display())?;
        CertifiedKey::from_der(chain, key, &tls::provider()).map_err(|e| {
            TlsError::invalid(
                format!("{} with {}", self.cert.display(), self.key.display()),
                format!("unusable certificate and key: {e}"),
            )
        })
    }
}

/// The pair handed to every new handshake; swapped whole by the reloader.
pub(super) struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(pair: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(pair),
        }
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Polls the files and swaps the pair in `store` when their content changes.
pub(super) struct Reloader {
    files: PairFiles,
    store: Arc<CertStore>,
    interval: Duration,
    /// Digest of the contents last looked at (loaded or refused): each change is tried once.
    seen: [u8; 32],
    /// The last problem logged, so a lasting one is logged once, not every poll.
    last_problem: Option<String>,
}

impl Reloader {
    pub fn new(
        files: PairFiles,
        store: Arc<CertStore>,
        interval: Duration,
        loaded: (&[u8], &[u8]),
    ) -> Self {
        Self {
            files,
            store,
            interval,
            seen: digest(loaded.0, loaded.1),
            last_problem: None,
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval.max(Duration::from_millis(50)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => self.check().await,
            }
        }
    }

    async fn check(&mut self) {
        let (cert, key) = match self.files.read().await {
            Ok(pair) => pair,
            // Often transient (a file caught between unlink and rename): retried next poll.
            Err(e) => return self.problem(&e, false),
        };
        let digest = digest(&cert, &key);
        if digest == self.seen {
            return;
        }
        self.seen = digest;
        match self.files.load(&cert, &key) {
            Ok(pair) => {
                let subject = pair
                    .end_entity_cert()
                    .ok()
                    .and_then(|leaf| super::subject::identity_of(leaf))
                    .unwrap_or_default();
                self.store.current.store(Arc::new(pair));
                self.last_problem = None;
                tracing::info!(cert = %self.files.cert.display(), subject = %subject, "TLS certificate reloaded");
            }
            Err(e) => self.problem(&e, true),
        }
    }

    /// Logs a problem once; the error names files and causes, never their contents.
    fn problem(&mut self, error: &TlsError, refused: bool) {
        let text = error.to_string();
        if self.last_problem.as_deref() == Some(text.as_str()) {
            return;
        }
        if refused {
            tracing::error!(error = %text, "new TLS certificate refused; still serving the previous one");
        } else {
            tracing::warn!(error = %text, "cannot read the TLS certificate files; still serving the previous pair");
        }
        self.last_problem = Some(text);
    }
}

/// A digest of both files' contents, each length-prefixed so that the boundary is unambiguous.
fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [cert, key] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn pair(name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files() -> PairFiles {
        PairFiles {
            cert: "tls.crt".into(),
            key: "tls.key".into(),
        }
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let (cert, _) = pair("a.test");
        let (_, other_key) = pair("b.test");
        let error = files()
            .load(cert.as_bytes(), other_key.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("tls.crt with tls.key: unusable"),
            "{error}"
        );
        assert!(!error.contains("PRIVATE"), "{error}");
    }

    #[test]
    fn a_matching_pair_loads() {
        let (cert, key) = pair("a.test");
        assert!(files().load(cert.as_bytes(), key.as_bytes()).is_ok());
    }

    #[test]
    fn the_digest_separates_the_two_files() {
        assert_ne!(digest(b"ab", b"c"), digest(b"a", b"bc"));
    }
}
