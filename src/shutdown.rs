//! The phases of a graceful shutdown, shared by the listeners and the request paths:
//!
//! 1. **drain** (SIGTERM): the public listener stops accepting connections; idle keep-alive
//!    connections close; requests and streams in flight go on, each on the configuration it
//!    started with; `/readyz` answers 503 so the Service stops sending traffic;
//! 2. **cut**, when the grace period ends with requests still open: each open stream ends with
//!    an SSE error event (`gateway_shutdown`) and each waiting request with a 503, and every one
//!    of them writes its access-log line and audit record, marked `cut_by_shutdown`;
//! 3. the audit and access-log writers are flushed, then the process exits.
//!
//! Records are never left in a queue when the process ends: that was lost audit evidence.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Signals of one shutdown. Cheap to clone; every clone sees the same signals.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    cut: CancellationToken,
}

impl Shutdown {
    /// Starts draining: stop accepting, let what is in flight finish.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    pub async fn draining(&self) {
        self.drain.cancelled().await;
    }

    /// The grace period is over: what is still open ends now.
    pub fn cut(&self) {
        self.drain.cancel();
        self.cut.cancel();
    }

    pub fn is_cut(&self) -> bool {
        self.cut.is_cancelled()
    }

    /// Resolves when the grace period is over.
    pub async fn cut_now(&self) {
        self.cut.cancelled().await;
    }
}

/// Time for cut streams and requests to send their last bytes and for their connections to
/// close, after the grace period.
pub const CUT_FLUSH: Duration = Duration::from_secs(3);

/// Time the writers get to flush their queues at exit.
pub const WRITER_FLUSH: Duration = Duration::from_secs(10);
