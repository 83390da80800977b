//! The loop of the blocking log writers (audit file/stdout, access log): take what is queued,
//! write it as one batch, flush, then pause so the next records gather.

use std::time::Duration;

use tokio::sync::mpsc;

/// Pause after each batch. A lone record is still written at once, but under load a writer
/// wakes (a futex call on the request path) and writes (a system call) once per interval
/// instead of once per record. A writer's queue must hold this long's records at the highest
/// request rate (10 000 records: 2M requests/s).
pub const BATCH_INTERVAL: Duration = Duration::from_millis(5);

/// Runs until every sender is gone: `write` for each record, `end_batch` once the queue is
/// drained (flush there), then [`BATCH_INTERVAL`] of sleep. Call on a blocking thread.
pub fn drain_in_batches<T, S>(
    mut receiver: mpsc::Receiver<T>,
    state: &mut S,
    mut write: impl FnMut(&mut S, T),
    mut end_batch: impl FnMut(&mut S),
) {
    while let Some(record) = receiver.blocking_recv() {
        write(state, record);
        while let Ok(record) = receiver.try_recv() {
            write(state, record);
        }
        end_batch(state);
        std::thread::sleep(BATCH_INTERVAL);
    }
}
