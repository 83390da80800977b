//! Reading a request body: bounded in size (413), in time (408), and against a process-wide
//! memory budget for buffered bodies (503), so that neither a slow nor a huge upload, nor many
//! large ones at once, can hold a worker or the process's memory. Shared by the AI pipeline and
//! the `API` routes that validate bodies, so it sits below both.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::error::ApiError;

/// The budget's unit: a permit is one KiB of buffered body.
const UNIT: u64 = 1024;

/// Bytes of request bodies buffered at once, process-wide. A body is admitted only if its bytes
/// fit (by `Content-Length` before reading anything; chunk by chunk for a chunked upload);
/// otherwise the request gets 503 with `retry-after`, and nothing more of it is read. The budget
/// counts raw body bytes; the parsed JSON of a request takes a few times more while it lives.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
}

impl BodyBudget {
    pub fn new(bytes: u64) -> Self {
        let units = usize::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(units)),
        }
    }

    /// Bytes not reserved by any body now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }
}

impl Default for BodyBudget {
    /// 256 MiB.
    fn default() -> Self {
        Self::new(256 * 1024 * 1024)
    }
}

/// A request's share of the [`BodyBudget`], returned when dropped (with the request).
#[derive(Debug, Default)]
pub struct BodyReservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl BodyReservation {
    /// Grows the reservation to cover `bytes`; false when the budget has no room.
    fn cover(&mut self, budget: &BodyBudget, bytes: u64) -> bool {
        let held = self.permit.as_ref().map_or(0, |p| p.num_permits() as u64);
        let needed = bytes.div_ceil(UNIT).saturating_sub(held);
        if needed == 0 {
            return true;
        }
        let Ok(needed) = u32::try_from(needed) else {
            return false;
        };
        match Arc::clone(&budget.permits).try_acquire_many_owned(needed) {
            Ok(more) => {
                match self.permit.as_mut() {
                    Some(permit) => permit.merge(more),
                    None => self.permit = Some(more),
                }
                true
            }
            Err(_) => false,
        }
    }
}

/// Reads a whole body within `limit` bytes, `timeout`, and the memory `budget`.
///
/// The body is read by a task of its own, not by the connection's task that runs the handler.
/// Read in place, every frame made hyper wake the very task that was running; tokio takes a
/// self-wake for a yield and wakes a parked worker to share it, which then took over the I/O
/// driver, so each request hopped threads: two futex calls and about 20 µs more per request
/// (docs/policy.md, "Added latency"). Woken by another task, the connection's task goes to its
/// worker's LIFO slot and stays on that thread.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    timeout: Duration,
    budget: &BodyBudget,
) -> Result<(Bytes, BodyReservation), ApiError> {
    // Refuse at once when the declared length is already over the limit or the budget.
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut reservation = BodyReservation::default();
    if let Some(len) = declared {
        if !reservation.cover(budget, len) {
            return Err(ApiError::Overloaded);
        }
    }
    let budget = budget.clone();
    let reader = ReaderTask(tokio::spawn(async move {
        let reading = collect(body, limit, &budget, &mut reservation);
        match tokio::time::timeout(timeout, reading).await {
            Err(_) => Err(ApiError::RequestTimeout),
            Ok(Ok(bytes)) => Ok((bytes, reservation)),
            Ok(Err(error)) => Err(error),
        }
    }));
    reader.finish().await
}

/// The task reading a body, stopped when its request is dropped (the client went away, or the
/// gateway is shutting down) so that it never outlives the request it reads for.
struct ReaderTask(JoinHandle<Result<(Bytes, BodyReservation), ApiError>>);

impl ReaderTask {
    async fn finish(mut self) -> Result<(Bytes, BodyReservation), ApiError> {
        match (&mut self.0).await {
            Ok(read) => read,
            Err(error) => Err(ApiError::Internal(format!(
                "the request body's reader stopped: {error}"
            ))),
        }
    }
}

impl Drop for ReaderTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Collects data frames, growing the reservation before each one is kept.
async fn collect(
    mut body: Body,
    limit: u64,
    budget: &BodyBudget,
    reservation: &mut BodyReservation,
) -> Result<Bytes, ApiError> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::invalid(format!("could not read the request body: {e}"), None)
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = (out.len() + data.len()) as u64;
        if total > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        if !reservation.cover(budget, total) {
            return Err(ApiError::Overloaded);
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn headers(len: Option<usize>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(len) = len {
            h.insert(http::header::CONTENT_LENGTH, len.into());
        }
        h
    }

    #[tokio::test]
    async fn bodies_share_the_budget_and_give_it_back() {
        let budget = BodyBudget::new(10 * 1024);
        let six_k = Bytes::from(vec![b'x'; 6 * 1024]);
        let second = Duration::from_secs(1);
        let (first, held) = read(
            &headers(Some(6 * 1024)),
            Body::from(six_k.clone()),
            1 << 20,
            second,
            &budget,
        )
        .await
        .unwrap();
        assert_eq!(first.len(), 6 * 1024);
        assert_eq!(budget.available(), 4 * 1024);
        // Declared: refused before anything is read.
        let refused = read(
            &headers(Some(6 * 1024)),
            Body::from(six_k.clone()),
            1 << 20,
            second,
            &budget,
        )
        .await;
        assert!(matches!(refused, Err(ApiError::Overloaded)));
        // Chunked (no length): refused when the chunks outgrow the room.
        let chunks = futures::stream::iter(
            (0..6).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 1024]))),
        );
        let refused = read(
            &headers(None),
            Body::from_stream(chunks),
            1 << 20,
            second,
            &budget,
        )
        .await;
        assert!(matches!(refused, Err(ApiError::Overloaded)));
        assert_eq!(budget.available(), 4 * 1024, "a refused body keeps nothing");
        drop(held);
        assert_eq!(budget.available(), 10 * 1024);
        let (again, _held) = read(&headers(None), Body::from(six_k), 1 << 20, second, &budget)
            .await
            .unwrap();
        assert_eq!(again.len(), 6 * 1024);
    }

    /// The body is read by a task of its own; a request dropped mid-read (the client went away)
    /// must stop it, or a trickling upload would be read, and its budget held, until the timeout.
    #[tokio::test]
    async fn a_dropped_request_stops_the_reading_of_its_body() {
        let budget = BodyBudget::new(64 * 1024);
        let (alive, stopped) = tokio::sync::oneshot::channel::<()>();
        let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![b'z'; 4096]))]);
        // Then nothing more, ever; `alive` lives as long as the body does.
        let rest = futures::stream::once(async move {
            let _alive = alive;
            futures::future::pending::<Result<Bytes, std::io::Error>>().await
        });
        let body = Body::from_stream(first.chain(rest));
        let chunked = headers(None);
        let reading = read(&chunked, body, 1 << 20, Duration::from_secs(60), &budget);
        tokio::select! {
            _ = reading => panic!("a body that never ends was read to its end"),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let dropped = tokio::time::timeout(Duration::from_secs(5), stopped).await;
        assert!(
            matches!(dropped, Ok(Err(_))),
            "the body outlived the request that was reading it"
        );
        assert_eq!(budget.available(), 64 * 1024, "its budget is given back");
    }
}
