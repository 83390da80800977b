//! The loop of the blocking log writers (audit file/stdout, access log): take what is queued,
//! write it as one batch, flush, then pause so the next records gather; and the flush a
//! shutdown waits for, so that no queued record is lost when the process exits.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// Pause after each batch. A lone record is still written at once, but under load a writer
/// wakes (a futex call on the request path) and writes (a system call) once per interval
/// instead of once per record. A writer's queue must hold this long's records at the highest
/// request rate (10 000 records: 2M requests/s).
pub const BATCH_INTERVAL: Duration = Duration::from_millis(5);

/// What a writer's queue carries: records, and flush requests answered once every record
/// queued before them is written and flushed.
#[derive(Debug)]
pub enum Queued<T> {
    Record(T),
    Flush(oneshot::Sender<()>),
}

/// Runs until every sender is gone: `write` for each record, `end_batch` once the queue is
/// drained (flush there), then [`BATCH_INTERVAL`] of sleep. Flush requests are answered after
/// the `end_batch` that follows them. Call on a blocking thread.
pub fn drain_in_batches<T, S>(
    mut receiver: mpsc::Receiver<Queued<T>>,
    state: &mut S,
    mut write: impl FnMut(&mut S, T),
    mut end_batch: impl FnMut(&mut S),
) {
    let mut waiting = Vec::new();
    while let Some(first) = receiver.blocking_recv() {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Queued::Record(record) => write(state, record),
                Queued::Flush(done) => waiting.push(done),
            }
            next = receiver.try_recv().ok();
        }
        end_batch(state);
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        std::thread::sleep(BATCH_INTERVAL);
    }
}

/// Asks the writer behind `sender` to write and flush everything queued so far, and waits for
/// it, at most `timeout`. False when the writer did not confirm in time (a sink that is down).
pub async fn flush<T>(sender: &mpsc::Sender<Queued<T>>, timeout: Duration) -> bool {
    let (done, confirmed) = oneshot::channel();
    let requested =
        async { sender.send(Queued::Flush(done)).await.is_ok() && confirmed.await.is_ok() };
    tokio::time::timeout(timeout, requested)
        .await
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flush_is_answered_after_every_record_queued_before_it() {
        let (sender, receiver) = mpsc::channel(100);
        let writer = tokio::task::spawn_blocking(move || {
            let mut written = Vec::new();
            let mut flushed = 0;
            drain_in_batches(
                receiver,
                &mut (&mut written, &mut flushed),
                |(written, _), n: u32| written.push(n),
                |(written, flushed)| **flushed = written.len(),
            );
            (written, flushed)
        });
        for n in 0..50 {
            sender.send(Queued::Record(n)).await.unwrap();
        }
        assert!(flush(&sender, Duration::from_secs(5)).await);
        drop(sender);
        let (written, flushed) = writer.await.unwrap();
        assert_eq!(written, (0..50).collect::<Vec<_>>());
        assert_eq!(flushed, 50);
    }

    #[tokio::test]
    async fn a_flush_nobody_answers_times_out() {
        let (sender, _receiver) = mpsc::channel::<Queued<u32>>(1);
        assert!(!flush(&sender, Duration::from_millis(50)).await);
    }
}
