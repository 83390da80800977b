//! Specs named by `url`: fetched when a configuration is compiled, bounded in time and size,
//! and remembered as the last known good per URL, so that a reload whose fetch fails keeps the
//! spec fetched before.
//!
//! Compiling runs on the caller's thread (an async worker at start, a blocking thread on a
//! reload or a cluster change). [`fetch_all`] therefore never runs on the caller's runtime: it
//! fetches every URL at once on a thread of its own, with a small runtime of its own, and the
//! caller waits for at most about [`FETCH_TIMEOUT`], however many URLs there are.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;

use super::compile::CompiledSpec;
use super::document::MAX_SPEC_BYTES;
use crate::redact;

/// The longest a spec's fetch may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// URLs whose last good spec is remembered; the least recently used goes first.
const MAX_REMEMBERED: usize = 64;

/// The outcome of each URL's fetch: its text, or why there is none (credentials redacted).
pub type Fetched = HashMap<String, Result<String, String>>;

/// Fetches every URL (each once) with `client`, at once, each within `timeout` and
/// [`MAX_SPEC_BYTES`]; returns within about `timeout` even if the fetching thread does not.
pub fn fetch_all(client: &reqwest::Client, urls: &[String], timeout: Duration) -> Fetched {
    let mut unique = urls.to_vec();
    unique.sort();
    unique.dedup();
    if unique.is_empty() {
        return Fetched::new();
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    let client = client.clone();
    let asked = unique.clone();
    let spawned = std::thread::Builder::new()
        .name("openapi-fetch".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let fetched = match runtime {
                Ok(runtime) => runtime.block_on(async {
                    futures::stream::iter(asked)
                        .map(|url| {
                            let client = client.clone();
                            async move {
                                let text = fetch(&client, &url, timeout).await;
                                (url, text)
                            }
                        })
                        .buffer_unordered(16)
                        .collect::<Fetched>()
                        .await
                }),
                Err(error) => asked
                    .into_iter()
                    .map(|url| (url, Err(format!("no runtime to fetch with: {error}"))))
                    .collect(),
            };
            // the caller may have stopped waiting
            let _ = sender.send(fetched);
        });
    let waited = match spawned {
        Ok(_) => receiver.recv_timeout(timeout + Duration::from_secs(1)).ok(),
        Err(_) => None,
    };
    waited.unwrap_or_else(|| {
        unique
            .into_iter()
            .map(|url| (url, Err(format!("not fetched within {timeout:?}"))))
            .collect()
    })
}

/// One GET: a 2xx, a body of at most [`MAX_SPEC_BYTES`], UTF-8.
async fn fetch(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<String, String> {
    let shown = redact::credentials(url).into_owned();
    let read = async {
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| redact::credentials(&e.to_string()).into_owned())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("answered HTTP {}", status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_SPEC_BYTES)
        {
            return Err(format!("is larger than {MAX_SPEC_BYTES} bytes"));
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| redact::credentials(&e.to_string()).into_owned())?;
            if (body.len() + chunk.len()) as u64 > MAX_SPEC_BYTES {
                return Err(format!("is larger than {MAX_SPEC_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| "is not UTF-8 text".to_string())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(reason)) => Err(format!("fetching {shown}: {reason}")),
        Err(_) => Err(format!("fetching {shown}: no answer within {timeout:?}")),
    }
}

/// The last spec each URL gave that compiled, with when it was last used.
#[derive(Default)]
struct Remembered {
    specs: HashMap<String, (Arc<CompiledSpec>, u64)>,
    clock: u64,
}

static LAST_KNOWN_GOOD: LazyLock<Mutex<Remembered>> = LazyLock::new(Mutex::default);

/// Keeps `spec` as the last known good of `url`.
pub fn remember(url: &str, spec: &Arc<CompiledSpec>) {
    let mut store = LAST_KNOWN_GOOD.lock();
    store.clock += 1;
    let now = store.clock;
    store.specs.insert(url.to_string(), (Arc::clone(spec), now));
    while store.specs.len() > MAX_REMEMBERED {
        let oldest = store
            .specs
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(url, _)| url.clone());
        match oldest {
            Some(url) => store.specs.remove(&url),
            None => break,
        };
    }
}

/// The last spec `url` gave that compiled, if any.
pub fn last_known_good(url: &str) -> Option<Arc<CompiledSpec>> {
    let mut store = LAST_KNOWN_GOOD.lock();
    store.clock += 1;
    let now = store.clock;
    let (spec, used) = store.specs.get_mut(url)?;
    *used = now;
    Some(Arc::clone(spec))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::openapi::document::parse;

    fn compiled() -> Arc<CompiledSpec> {
        Arc::new(CompiledSpec::compile(&parse("openapi: 3.1.0\npaths: {}\n").unwrap()).unwrap())
    }

    #[test]
    fn the_store_keeps_the_most_recently_used_urls() {
        let spec = compiled();
        let url = |i: usize| format!("http://lkg-test.invalid/{i}");
        for i in 0..MAX_REMEMBERED {
            remember(&url(i), &spec);
        }
        // 0 used again: 1 is now the least recently used
        assert!(last_known_good(&url(0)).is_some());
        remember(&url(MAX_REMEMBERED), &spec);
        assert!(last_known_good(&url(0)).is_some());
        assert!(last_known_good(&url(1)).is_none());
        assert!(last_known_good(&url(MAX_REMEMBERED)).is_some());
    }

    #[test]
    fn a_dead_address_fails_within_the_timeout_with_credentials_redacted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://user:hunter2@127.0.0.1:{port}/spec.yaml");
        let started = std::time::Instant::now();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let fetched = fetch_all(&client, &[url.clone(), url.clone()], Duration::from_secs(2));
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(fetched.len(), 1);
        let error = fetched[&url].as_ref().unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("127.0.0.1"), "{error}");
    }

    #[test]
    fn a_server_that_never_answers_is_given_up_on() {
        // accepts, never answers
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/spec.yaml", listener.local_addr().unwrap());
        let started = std::time::Instant::now();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let fetched = fetch_all(
            &client,
            std::slice::from_ref(&url),
            Duration::from_millis(300),
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(fetched[&url].as_ref().unwrap_err().contains("within"));
        drop(listener);
    }
}
