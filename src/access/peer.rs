//! The caller's identity from its TLS client certificate, set by the listener on every request
//! of an mTLS connection and read by admission.

use std::sync::Arc;

/// The verified subject of the client's certificate (its Common Name, else the RFC 4514
/// subject), in the extensions of every request of an mTLS connection. It is the caller's user
/// for per-user limits, budgets and audit when no JWT names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity(Arc<str>);

impl PeerIdentity {
    pub fn new(subject: Arc<str>) -> Self {
        PeerIdentity(subject)
    }

    pub fn subject(&self) -> &str {
        &self.0
    }
}

/// The peer identity of a request, when it came over mTLS.
pub fn peer_identity(extensions: &http::Extensions) -> Option<&str> {
    extensions.get::<PeerIdentity>().map(PeerIdentity::subject)
}
