//! Semantic cache: answers a chat completion from an earlier one when the request is the same
//! apart from a last user message that means the same thing.
//!
//! # How a request is matched
//! 1. [`scope_key`] hashes everything that can change the answer except the last user
//!    message (gateway, model, system prompt, earlier turns, sampling parameters, tools, and
//!    the user when `scope: user`). Entries are only ever compared within one scope.
//! 2. The last user message is embedded with all-MiniLM-L6-v2 ([`Embedder`], candle on CPU,
//!    on its own worker threads with dynamic batching).
//! 3. The scope's nearest entries are found: an exact scan for scopes under
//!    [`HNSW_MIN_ENTRIES`] entries (multi-turn conversations make many tiny scopes), an hnsw_rs
//!    index per scope above that (tombstones for removed entries, rebuilt in the background
//!    past [`REBUILD_SHARE`] tombstones).
//! 4. A candidate at or above `similarityThreshold` is served only when it is live (not
//!    expired) and, with `verify`, when [`refusal`] finds no differing number, operator,
//!    negation, quoted string, unit, date, opposite (am/pm, enable/disable, ...), entity,
//!    direction or tense, and the content words that differ are WordNet near-synonyms.
//!
//! Size: `maxCacheSize` bounds the bytes of entries and vectors ([`entry_bytes`]); the least
//! recently used entries are evicted first. Expired entries are swept as the cache is used
//! and are never served.
//!
//! # Wiring it from `AIGateway.spec.semanticCache`
//! ```text
//! CacheSettings { ttl: spec.ttl, similarity_threshold: spec.similarity_threshold,
//!                 max_bytes: spec.max_cache_size.as_u64(), verify: true }
//! user = (spec.scope == Some(CacheScope::User)).then(|| authenticated_user)
//! ```
//! With `scope: user` and no authenticated user, do not use the cache for that request.
//! Choosing the threshold: docs/cache.md. At the recommended 0.90, on pairs it was never tuned
//! on (tests/fixtures/cache_eval, test half), precision is 0.991 and recall 0.762; near misses
//! that differ by one word sit at cosine 0.90-0.99, so verification does most of the work.
//!
//! Every [`CacheError`] should be a miss for the request, logged, never a failure.
//!
//! The model files live in `models/all-MiniLM-L6-v2/`, fetched and verified by
//! `models/fetch.sh` from `models/manifest.json`.

mod canonical;
mod direction;
mod embedder;
mod error;
mod index;
mod minilm;
mod scope;
mod store;
mod verdict;
pub mod verify;
pub mod verify_words;
pub mod wordnet;

pub use embedder::{
    Embedder, EmbedderStats, BATCH_WINDOW, DIMENSION, MAX_TOKENS, MODEL_FILES, QUEUE_CAPACITY,
};
pub use error::{CacheError, FETCH_HINT};
pub use index::REBUILD_SHARE;
pub use scope::{scope_key, ScopeKey};
pub use store::{
    entry_bytes, CacheSettings, CacheStats, Hit, LookupTimings, SemanticCache, CANDIDATES,
    ENTRY_OVERHEAD, HNSW_MIN_ENTRIES, REJECTION_REASONS,
};
pub use verdict::refusal;
pub use verify::Signature;
