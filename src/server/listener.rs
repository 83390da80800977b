//! The accept loop, on hyper directly so that every limit is explicit: a cap on open
//! connections, a deadline for a connection's first byte ([`super::first_byte`]) and the header
//! read timeout (a slow-loris client is cut off without holding anything for others), HTTP/2
//! concurrent streams, keep-alive, and graceful shutdown. TLS, when configured, is [`super::tls`]: a
//! connection's handshake runs in its own task, and the framing inspector wraps the decrypted IO.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::first_byte::FirstByteDeadline;
use super::framing::{InspectedIo, Taint};
use super::tls::ServerTls;
use crate::shutdown::{Shutdown, CUT_FLUSH};
use crate::telemetry::log_rate::LogRate;

#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Time allowed for a request's head to arrive.
    pub header_read_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    /// Largest request head (HTTP/1) and header list (HTTP/2), in bytes.
    pub max_header_bytes: usize,
    /// Time given to open requests and streams to finish at shutdown, before they are cut.
    pub shutdown_grace: Duration,
    /// Open connections at most; past it a new connection is closed at once (a file
    /// descriptor and a task per connection are the cost a flood must not exhaust).
    pub max_connections: usize,
    /// Where the listener counts its connections (read by the metrics).
    pub stats: Arc<ListenerStats>,
}

/// Lines per second about failed accepts (a connection flood exhausting file descriptors).
static ACCEPT_LOG: LogRate = LogRate::new(1);

/// Connection counts of one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    open: AtomicU64,
    refused: AtomicU64,
}

impl ListenerStats {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections closed at once because `max_connections` were open (since start).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Counts a connection as open until dropped (with the connection's task).
struct OpenConnection {
    stats: Arc<ListenerStats>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            http2_max_concurrent_streams: 256,
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(25),
            max_connections: 10_000,
            stats: Arc::default(),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` drains, then lets open connections finish for
/// the grace period, then cuts what is left (see [`crate::shutdown`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    serve_with_tls(listener, app, limits, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (see [`super::tls`]).
pub async fn serve_with_tls(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<ServerTls>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let graceful = GracefulShutdown::new();
    // Connection tasks, so that those still open after the cut can be ended (and their
    // streams' records written) before the process exits.
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = shutdown.draining() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Running out of file descriptors must not end the server; back off briefly.
                    if let Some(suppressed) = ACCEPT_LOG.admit() {
                        tracing::warn!(error = %e, suppressed_since_last = suppressed, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Closed at once, so the client learns now instead of hanging in the backlog.
            limits.stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        limits.stats.open.fetch_add(1, Ordering::Relaxed);
        let open = OpenConnection {
            stats: Arc::clone(&limits.stats),
            _permit: permit,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        // The TLS handshake runs in the connection's task, not in this loop, so a slow client
        // never delays accepting others.
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let handshake_timeout = limits.header_read_timeout;
        connections.spawn(async move {
            let _open = open;
            let (stream, identity) =
                match super::tls::accept(tls.as_ref(), stream, handshake_timeout).await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                };
            let taint = Taint::default();
            let stream = FirstByteDeadline::new(stream, handshake_timeout);
            let io = InspectedIo::new(stream, taint.clone());
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request.extensions_mut().insert(taint.clone());
                    if let Some(identity) = &identity {
                        request.extensions_mut().insert(identity.clone());
                    }
                    let app = app.clone();
                    async move {
                        let response = app.oneshot(request.map(axum::body::Body::new)).await;
                        Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                    }
                });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    tokio::select! {
        _ = &mut drained => return Ok(()),
        _ = tokio::time::sleep(limits.shutdown_grace) => {}
        _ = shutdown.cut_now() => {}
    }
    tracing::warn!("shutdown grace period over; cutting the requests and streams still open");
    shutdown.cut();
    if tokio::time::timeout(CUT_FLUSH, &mut drained).await.is_err() {
        // A client that does not read keeps its connection from ever polling its cut stream:
        // dropping the connection drops the stream, which writes its records.
        tracing::warn!(
            connections = connections.len(),
            "connections still open after the cut; closing them"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

/// The peer address of a request served by [`serve`].
pub fn peer_of<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}
