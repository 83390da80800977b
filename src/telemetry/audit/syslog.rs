//! The syslog sink: RFC 5424 messages with octet-counting framing (RFC 6587 §3.4.1) over TCP or
//! TLS (RFC 5425), reconnecting with backoff.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use super::format::Severity;
use super::{AuditError, AuditEvent, SyslogConfig};
use crate::tls::{self, TlsError};

/// RFC 5424 facility 13, "log audit".
const FACILITY: u8 = 13;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A connection: plain TCP or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Everything needed to connect and to format messages, checked at start.
pub(crate) struct Syslog {
    addr: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    app_name: String,
    hostname: String,
    procid: String,
}

/// `-` for an empty header field; otherwise the field must be printable US-ASCII without spaces
/// and at most `max` characters (RFC 5424 §6).
fn header_field(name: &str, value: &str, max: usize) -> Result<String, AuditError> {
    if value.is_empty() {
        return Ok("-".to_string());
    }
    if value.len() > max || !value.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(AuditError::Config(format!(
            "syslog {name} {value:?} must be 1 to {max} printable ASCII characters without spaces"
        )));
    }
    Ok(value.to_string())
}

/// Host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn tls_connector(ca_file: &std::path::Path) -> Result<TlsConnector, AuditError> {
    let tls_error = |e: TlsError| AuditError::Tls(e.to_string());
    let certs = tls::read_certs(ca_file).map_err(tls_error)?;
    let roots = tls::root_store(&certs, ca_file.display()).map_err(tls_error)?;
    let config = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(tls::PROTOCOL_VERSIONS)
        .map_err(|e| AuditError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

impl Syslog {
    /// Checks the settings and loads the CA; `tls` says whether the target asked for TLS.
    pub fn new(config: &SyslogConfig, tls: bool) -> Result<Self, AuditError> {
        let addr = config.addr.trim();
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(AuditError::Config(format!(
                "syslog address {addr:?} is not host:port"
            )));
        }
        let tls = match (&config.tls, tls) {
            (Some(settings), true) => {
                let server_name = if settings.server_name.is_empty() {
                    host_of(addr).to_string()
                } else {
                    settings.server_name.clone()
                };
                let server_name = ServerName::try_from(server_name.clone()).map_err(|_| {
                    AuditError::Config(format!("invalid TLS server name {server_name:?}"))
                })?;
                Some((tls_connector(&settings.ca_file)?, server_name))
            }
            (None, true) => {
                return Err(AuditError::Config(
                    "syslog+tls needs a CA file and a server name (syslog.tls)".to_string(),
                ))
            }
            (Some(_), false) => {
                return Err(AuditError::Config(
                    "TLS settings given for a syslog+tcp target; use syslog+tls://".to_string(),
                ))
            }
            (None, false) => None,
        };
        Ok(Self {
            addr: addr.to_string(),
            tls,
            app_name: header_field("app_name", &config.app_name, 48)?,
            hostname: header_field("hostname", &config.hostname, 255)?,
            procid: std::process::id().to_string(),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Connects (and shakes hands), bounded by a timeout.
    pub async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        let attempt = async {
            let tcp = TcpStream::connect(&self.addr).await?;
            tcp.set_nodelay(true)?;
            match &self.tls {
                None => Ok(Box::new(tcp) as Box<dyn Io>),
                Some((connector, name)) => {
                    let stream = connector.connect(name.clone(), tcp).await?;
                    Ok(Box::new(stream) as Box<dyn Io>)
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
    }

    /// One octet-counted frame: `LEN SP SYSLOG-MSG`.
    pub fn frame(&self, event: &AuditEvent, seq: u64, line: &str) -> Vec<u8> {
        let pri = FACILITY * 8 + Severity::of(event).syslog();
        let timestamp =
            if humantime::parse_rfc3339_weak(&event.time).is_ok() && !event.time.contains(' ') {
                event.time.as_str()
            } else {
                "-"
            };
        let msgid: String = event
            .event
            .bytes()
            .filter(|b| (33..=126).contains(b))
            .take(32)
            .map(char::from)
            .collect();
        let msgid = if msgid.is_empty() { "-" } else { &msgid };
        // RFC 5424 §7.3.1: sequenceId is 1..=2147483647 and wraps.
        let sequence_id = (seq.saturating_sub(1) % 2_147_483_647) + 1;
        let message = format!(
            "<{pri}>1 {timestamp} {host} {app} {procid} {msgid} [origin software=\"AirGate\" swVersion=\"{version}\"][meta sequenceId=\"{sequence_id}\"] \u{feff}{line}",
            host = self.hostname,
            app = self.app_name,
            procid = self.procid,
            version = env!("CARGO_PKG_VERSION"),
        );
        let mut frame = format!("{} ", message.len()).into_bytes();
        frame.extend_from_slice(message.as_bytes());
        frame
    }
}

/// False when the collector closed the connection or it broke. A collector never sends
/// application data, so anything readable right now is an EOF, an error or TLS housekeeping.
pub(crate) async fn still_open(conn: &mut Box<dyn Io>) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::ZERO, conn.read(&mut buf)).await {
        Err(_) => true,      // nothing to read: open
        Ok(Ok(0)) => false,  // EOF
        Ok(Ok(_)) => true,   // unexpected data, ignored
        Ok(Err(_)) => false, // reset
    }
}

/// Writes the frames and flushes, bounded by a timeout.
pub(crate) async fn send(conn: &mut Box<dyn Io>, bytes: &[u8]) -> std::io::Result<()> {
    let write = async {
        conn.write_all(bytes).await?;
        conn.flush().await
    };
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
}
