//! A deadline for a connection's first byte. hyper's header-read timeout starts only once a
//! request has begun, and the HTTP/1-or-2 detection of hyper-util's `auto` builder waits for the
//! first bytes with no deadline at all: a client that connects and never sends anything held
//! its connection (and a file descriptor) forever. Wrapped in [`FirstByteDeadline`], such a
//! connection's first read fails with `TimedOut` once the deadline passes, and hyper closes it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

/// An IO whose first byte must arrive within a deadline.
pub struct FirstByteDeadline<T> {
    inner: T,
    /// Until the first byte arrives.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> FirstByteDeadline<T> {
    pub fn new(inner: T, within: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        match (&result, this.deadline.as_mut()) {
            (_, None) => {}
            (Poll::Ready(_), Some(_)) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
            }
            (Poll::Pending, Some(deadline)) => {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no request within the header read timeout",
                    )));
                }
            }
        }
        result
    }
}

super::write_through!(FirstByteDeadline);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_and_a_talking_one_never_does() {
        let (client, server) = tokio::io::duplex(64);
        let mut silent = FirstByteDeadline::new(server, Duration::from_secs(10));
        let mut buf = [0u8; 8];
        let error = silent.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut talking = FirstByteDeadline::new(server, Duration::from_secs(10));
        client.write_all(b"G").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 1);
        // Past the deadline, after the first byte, reads wait as long as they need.
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            client.write_all(b"ET").await.unwrap();
            client
        });
        assert_eq!(talking.read(&mut buf).await.unwrap(), 2);
        drop(later.await.unwrap());
    }
}
