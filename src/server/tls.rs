//! TLS on the public listener (rustls): TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, a
//! handshake bounded by the header-read timeout (a client that connects and never sends a
//! ClientHello is closed), certificates reloaded when their files change ([`reload`]), and
//! optional client certificates (mTLS) whose verified subject becomes the request's
//! [`PeerIdentity`] ([`subject`]).
//!
//! The accept loop calls [`accept`] to turn a TCP connection into the IO it serves; the framing
//! inspector wraps that IO, so it reads decrypted bytes.

mod reload;
mod subject;

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::access::peer::PeerIdentity;
use crate::tls::{self, TlsError};
use reload::{CertStore, PairFiles, Reloader};

/// How often the certificate files are checked for a new pair.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Where the listener's certificate comes from, and whom it accepts.
#[derive(Debug, Clone)]
pub struct ServerTlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates: when set, every client must present a certificate chaining to one.
    pub client_ca_file: Option<PathBuf>,
    pub reload_interval: Duration,
}

impl ServerTlsSettings {
    pub fn new(cert_file: PathBuf, key_file: PathBuf) -> Self {
        Self {
            cert_file,
            key_file,
            client_ca_file: None,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    }
}

/// A loaded TLS configuration for the public listener; cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the pair and the client CAs, and starts polling the pair's files for a new one until
    /// `shutdown`. Errors name the file at fault. Needs a Tokio runtime.
    pub fn start(
        settings: &ServerTlsSettings,
        shutdown: &CancellationToken,
    ) -> Result<Self, TlsError> {
        let files = PairFiles {
            cert: settings.cert_file.clone(),
            key: settings.key_file.clone(),
        };
        let (cert_pem, key_pem) = files.read_now()?;
        let store = Arc::new(CertStore::new(files.load(&cert_pem, &key_pem)?));
        let verifier = match &settings.client_ca_file {
            None => WebPkiClientVerifier::no_client_auth(),
            Some(path) => {
                let roots = tls::root_store(&tls::read_certs(path)?, path.display())?;
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider())
                    .build()
                    .map_err(|e| TlsError::invalid(path.display(), e.to_string()))?
            }
        };
        let mut config = ServerConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(tls::PROTOCOL_VERSIONS)
            .map_err(|e| TlsError::invalid("TLS", e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::clone(&store) as _);
        config.alpn_protocols = tls::alpn_protocols();
        let reloader = Reloader::new(
            files,
            store,
            settings.reload_interval,
            (&cert_pem, &key_pem),
        );
        tokio::spawn(reloader.run(shutdown.clone()));
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// Turns an accepted TCP connection into the IO to serve: as it is without TLS, else after a
/// handshake that must finish within `handshake_timeout`.
pub async fn accept(
    tls: Option<&ServerTls>,
    tcp: TcpStream,
    handshake_timeout: Duration,
) -> io::Result<(ServerIo, Option<PeerIdentity>)> {
    let Some(tls) = tls else {
        return Ok((ServerIo::Plain(tcp), None));
    };
    let stream = tokio::time::timeout(handshake_timeout, tls.acceptor.accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| subject::identity_of(leaf))
        .map(|subject| PeerIdentity::new(subject.into()));
    Ok((ServerIo::Tls(Box::new(stream)), identity))
}

/// A served connection: plain TCP, or TLS over TCP.
pub enum ServerIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(io) => Pin::new(io).poll_read(cx, buf),
            ServerIo::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(io) => Pin::new(io).poll_write(cx, buf),
            ServerIo::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(io) => Pin::new(io).poll_flush(cx),
            ServerIo::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(io) => Pin::new(io).poll_shutdown(cx),
            ServerIo::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            ServerIo::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerIo::Plain(io) => io.is_write_vectored(),
            ServerIo::Tls(io) => io.is_write_vectored(),
        }
    }
}
