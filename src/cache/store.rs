//! The semantic cache: entries, scopes, TTL, LRU eviction by bytes, verified lookups.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::embedder::{Embedder, DIMENSION};
use super::error::CacheError;
use super::index::{dot, ScopeIndex};
use super::scope::ScopeKey;
use super::verdict::refusal;
use super::verify::Signature;
use super::wordnet::WordNet;

/// A scope gets an HNSW index once it holds this many entries; smaller scopes (typically a
/// multi-turn conversation's, since earlier turns are part of the scope) are scanned exactly.
pub const HNSW_MIN_ENTRIES: usize = 64;
/// Nearest neighbours checked per lookup (threshold, then verification, in order).
pub const CANDIDATES: usize = 8;
/// Bytes counted per entry besides its text, response and two copies of its vector (the
/// entry's and the index's): maps, LRU and expiry bookkeeping, graph links.
pub const ENTRY_OVERHEAD: u64 = 512;
/// Recent query embeddings kept so a `store` right after a missed `lookup` does not embed
/// the same text again (not counted in `max_bytes`; about 1.6 KB each).
const RECENT_EMBEDDINGS: usize = 256;
/// Answers being stored (their prompt still being embedded), served to exact repeats. Bounded
/// in count; their bytes are bounded by a quarter of `max_bytes`.
const MAX_PENDING: usize = 256;

/// Cache behaviour, from `AIGateway.spec.semanticCache`.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// Entry lifetime (`ttl`). Expired entries are never served.
    pub ttl: Duration,
    /// Minimum cosine similarity for a hit (`similarityThreshold`).
    pub similarity_threshold: f32,
    /// Budget for entries and vectors (`maxCacheSize`); least recently used go first.
    pub max_bytes: u64,
    /// Reject candidates whose numbers, negations, quotes, units, dates, opposites or
    /// entities differ (see [`super::verify`]).
    pub verify: bool,
}

/// Where a lookup spent its time, for the latency histograms.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LookupTimings {
    pub embed: Option<Duration>,
    pub search: Option<Duration>,
}

/// A cached answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The stored response body (JSON), as given to `store`.
    pub response: Bytes,
    /// Cosine similarity of the two prompts (1.0 for an identical prompt).
    pub similarity: f32,
}

/// Counters and sizes, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: u64,
    pub scopes: usize,
    pub hits: u64,
    pub misses: u64,
    /// Candidates above the threshold that verification turned down.
    pub rejected: u64,
    /// The same, by reason ([`REJECTION_REASONS`], in that order).
    pub rejected_by: [u64; REJECTION_REASONS.len()],
    pub evictions: u64,
    pub expirations: u64,
    /// Index builds and rebuilds finished.
    pub rebuilds: u64,
    /// Tombstones currently in the scope indexes.
    pub tombstones: usize,
}

struct Entry {
    scope: ScopeKey,
    text: Arc<str>,
    sig: Signature,
    vector: Arc<[f32]>,
    response: Bytes,
    expires: Instant,
    tick: u64,
    bytes: u64,
}

#[derive(Default)]
struct Scope {
    generation: u64,
    by_text: HashMap<Arc<str>, u64>,
    live: HashSet<u64>,
    index: Option<Arc<ScopeIndex>>,
    rebuilding: bool,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u64, Entry>,
    lru: BTreeMap<u64, u64>,
    expiry: VecDeque<(Instant, u64)>,
    scopes: HashMap<ScopeKey, Scope>,
    bytes: u64,
    next_id: u64,
    next_tick: u64,
    next_generation: u64,
}

/// Why verification turned candidates down: a small fixed set, the label of
/// `airgate_cache_rejections_total`. Reasons not listed count as `other`.
pub const REJECTION_REASONS: [&str; 16] = [
    "number",
    "negation",
    "quoted",
    "date",
    "unit",
    "am_pm",
    "opposite",
    "entity",
    "direction",
    "antonym",
    "substitution",
    "insertion",
    "scope",
    "tense",
    "unverifiable",
    "other",
];

fn rejection_slot(reason: &str) -> usize {
    let label = if reason == "am/pm" { "am_pm" } else { reason };
    REJECTION_REASONS
        .iter()
        .position(|r| *r == label)
        .unwrap_or(REJECTION_REASONS.len() - 1)
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    rejected_by: [AtomicU64; REJECTION_REASONS.len()],
    evictions: AtomicU64,
    expirations: AtomicU64,
    rebuilds: AtomicU64,
}

struct Shared {
    settings: CacheSettings,
    inner: Mutex<Inner>,
    counters: Counters,
    /// WordNet for the word check of verification, when loaded.
    words: Option<Arc<WordNet>>,
}

/// Recent query embeddings by text, and their insertion order.
type RecentEmbeddings = (HashMap<String, Arc<[f32]>>, VecDeque<String>);

/// Answers whose store has begun but whose prompt is not embedded yet, by scope and prompt,
/// and their total bytes. An exact repeat is answered from here: the embedding is only needed
/// for similar prompts, and waiting for it made a repeat sent right after the first answer of
/// a scope miss.
#[derive(Default)]
struct Pending {
    answers: HashMap<(ScopeKey, String), Bytes>,
    bytes: u64,
}

/// The semantic cache of one gateway. Cheap to share behind an `Arc`.
pub struct SemanticCache {
    shared: Arc<Shared>,
    embedder: Arc<Embedder>,
    recent: Mutex<RecentEmbeddings>,
    pending: Mutex<Pending>,
}

impl std::fmt::Debug for SemanticCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticCache")
            .field("settings", &self.shared.settings)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Bytes an entry counts for.
pub fn entry_bytes(text: &str, response: &[u8]) -> u64 {
    (text.len() + response.len() + 2 * DIMENSION * 4) as u64 + ENTRY_OVERHEAD
}

impl SemanticCache {
    /// A cache whose verification has no word check (see [`Self::with_words`]).
    pub fn new(settings: CacheSettings, embedder: Arc<Embedder>) -> Self {
        Self::with_words(settings, embedder, None)
    }

    /// A cache whose verification also requires the content words that differ between two
    /// prompts to be synonyms in `words` ([`super::verify_words`]). The gateway always builds
    /// its caches with it.
    pub fn with_words(
        settings: CacheSettings,
        embedder: Arc<Embedder>,
        words: Option<Arc<WordNet>>,
    ) -> Self {
        SemanticCache {
            shared: Arc::new(Shared {
                settings,
                inner: Mutex::new(Inner::default()),
                counters: Counters::default(),
                words,
            }),
            embedder,
            recent: Mutex::new((HashMap::new(), VecDeque::new())),
            pending: Mutex::new(Pending::default()),
        }
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.shared.settings
    }

    /// The cached answer for `text` in `scope`, if a live entry is similar enough (and passes
    /// verification). An identical prompt is answered without embedding.
    pub async fn lookup(&self, scope: &ScopeKey, text: &str) -> Result<Option<Hit>, CacheError> {
        self.lookup_timed(scope, text).await.0
    }

    /// [`Self::lookup`], with the time spent embedding and searching (`None` when skipped).
    pub async fn lookup_timed(
        &self,
        scope: &ScopeKey,
        text: &str,
    ) -> (Result<Option<Hit>, CacheError>, LookupTimings) {
        let mut timings = LookupTimings::default();
        if let Some(hit) = self
            .shared
            .exact(scope, text)
            .or_else(|| self.pending(scope, text))
        {
            return (Ok(Some(hit)), timings);
        }
        if !self.shared.has_scope(scope) {
            self.shared.counters.misses.fetch_add(1, Ordering::Relaxed);
            return (Ok(None), timings);
        }
        let started = std::time::Instant::now();
        let v = match self.embed(text).await {
            Ok(v) => v,
            Err(e) => return (Err(e), timings),
        };
        timings.embed = Some(started.elapsed());
        // the index search takes up to a millisecond or two at 10k entries: off the async workers
        let (shared, scope, text) = (Arc::clone(&self.shared), *scope, text.to_string());
        let result = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let hit = shared.search(&scope, &text, &v);
            (hit, started.elapsed())
        })
        .await
        .map_err(|e| CacheError::Task(e.to_string()));
        match result {
            Ok((hit, search)) => {
                timings.search = Some(search);
                (Ok(hit), timings)
            }
            Err(e) => (Err(e), timings),
        }
    }

    /// Stores `response` for `text` in `scope`. A prompt already stored in the scope keeps its
    /// one entry (refreshed in the LRU); an entry larger than `max_bytes` is not stored.
    pub async fn store(
        &self,
        scope: ScopeKey,
        text: &str,
        response: Bytes,
    ) -> Result<(), CacheError> {
        if !self.wants(&scope, text, &response) {
            return Ok(());
        }
        let pending = self.begin_pending(scope, text, &response);
        self.finish_store(scope, text, response, pending).await
    }

    /// [`Self::store`] on a background task. The answer serves exact repeats from the moment
    /// this returns, before the task has even started: an exact repeat sent as soon as the
    /// first answer arrives must not depend on how soon a busy runtime polls the task.
    pub fn store_in_background(self: &Arc<Self>, scope: ScopeKey, text: String, response: Bytes) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.wants(&scope, &text, &response) {
            return;
        }
        let pending = self.begin_pending(scope, &text, &response);
        let cache = Arc::clone(self);
        runtime.spawn(async move {
            if let Err(error) = cache.finish_store(scope, &text, response, pending).await {
                tracing::warn!(error = %error, "cache store failed");
            }
        });
    }

    /// Whether an answer is worth storing: it fits, and its prompt is not stored already
    /// (which refreshes that entry in the LRU).
    fn wants(&self, scope: &ScopeKey, text: &str, response: &Bytes) -> bool {
        entry_bytes(text, response) <= self.shared.settings.max_bytes
            && !self.shared.touch_exact(scope, text)
    }

    /// Embeds and inserts, then takes the answer out of the pending set (`pending`: it was put
    /// there).
    async fn finish_store(
        &self,
        scope: ScopeKey,
        text: &str,
        response: Bytes,
        pending: bool,
    ) -> Result<(), CacheError> {
        let stored = async {
            let v = self.embed(text).await?;
            // inserting into a large HNSW index takes about a millisecond: off the async workers
            let (shared, text) = (Arc::clone(&self.shared), text.to_string());
            tokio::task::spawn_blocking(move || Shared::insert(&shared, scope, &text, v, response))
                .await
                .map_err(|e| CacheError::Task(e.to_string()))
        }
        .await;
        if pending {
            self.end_pending(scope, text);
        }
        stored
    }

    /// Serves an exact repeat of a prompt whose answer is being stored.
    fn pending(&self, scope: &ScopeKey, text: &str) -> Option<Hit> {
        let response = self
            .pending
            .lock()
            .answers
            .get(&(*scope, text.to_string()))?
            .clone();
        self.shared.counters.hits.fetch_add(1, Ordering::Relaxed);
        Some(Hit {
            response,
            similarity: 1.0,
        })
    }

    /// Registers an answer being stored; false when the pending set is full.
    fn begin_pending(&self, scope: ScopeKey, text: &str, response: &Bytes) -> bool {
        let mut pending = self.pending.lock();
        let bytes = entry_bytes(text, response);
        if pending.answers.len() >= MAX_PENDING
            || pending.bytes + bytes > self.shared.settings.max_bytes / 4
        {
            return false;
        }
        match pending.answers.entry((scope, text.to_string())) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(response.clone());
                pending.bytes += bytes;
                true
            }
        }
    }

    fn end_pending(&self, scope: ScopeKey, text: &str) {
        let mut pending = self.pending.lock();
        if let Some(response) = pending.answers.remove(&(scope, text.to_string())) {
            pending.bytes = pending.bytes.saturating_sub(entry_bytes(text, &response));
        }
    }

    /// [`Self::lookup`] with the query's embedding already computed (unit length). Blocking:
    /// it may search an HNSW index.
    pub fn lookup_embedded(&self, scope: &ScopeKey, text: &str, vector: &[f32]) -> Option<Hit> {
        if let Some(hit) = self.shared.exact(scope, text) {
            return Some(hit);
        }
        self.shared.search(scope, text, vector)
    }

    /// [`Self::store`] with the embedding already computed (unit length, [`DIMENSION`] long).
    /// Blocking: it may insert into an HNSW index.
    pub fn store_embedded(
        &self,
        scope: ScopeKey,
        text: &str,
        vector: impl Into<Arc<[f32]>>,
        response: Bytes,
    ) {
        Shared::insert(&self.shared, scope, text, vector.into(), response);
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.shared.counters;
        let rejected_by: [u64; REJECTION_REASONS.len()] =
            std::array::from_fn(|i| c.rejected_by[i].load(Ordering::Relaxed));
        let inner = self.shared.inner.lock();
        CacheStats {
            entries: inner.entries.len(),
            bytes: inner.bytes,
            scopes: inner.scopes.len(),
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            rejected: rejected_by.iter().sum(),
            rejected_by,
            evictions: c.evictions.load(Ordering::Relaxed),
            expirations: c.expirations.load(Ordering::Relaxed),
            rebuilds: c.rebuilds.load(Ordering::Relaxed),
            tombstones: inner
                .scopes
                .values()
                .filter_map(|s| s.index.as_ref())
                .map(|i| i.tombstones())
                .sum(),
        }
    }

    /// Drops expired entries now (lookups and stores also do it as they go).
    pub fn purge_expired(&self) {
        let mut inner = self.shared.inner.lock();
        self.shared.sweep(&mut inner, Instant::now());
    }

    async fn embed(&self, text: &str) -> Result<Arc<[f32]>, CacheError> {
        if let Some(v) = self.recent.lock().0.get(text) {
            return Ok(v.clone());
        }
        let v: Arc<[f32]> = self.embedder.embed(text.to_string()).await?.into();
        let mut recent = self.recent.lock();
        let (map, order) = &mut *recent;
        if map.insert(text.to_string(), v.clone()).is_none() {
            order.push_back(text.to_string());
            if order.len() > RECENT_EMBEDDINGS {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        Ok(v)
    }
}

impl Shared {
    fn has_scope(self: &Arc<Self>, scope: &ScopeKey) -> bool {
        let mut inner = self.inner.lock();
        self.sweep(&mut inner, Instant::now());
        inner.scopes.contains_key(scope)
    }

    /// Identical prompt: a hit without embedding or verification.
    fn exact(self: &Arc<Self>, scope: &ScopeKey, text: &str) -> Option<Hit> {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        self.sweep(&mut inner, now);
        let id = *inner.scopes.get(scope)?.by_text.get(text)?;
        let response = inner
            .entries
            .get(&id)
            .filter(|e| e.expires > now)?
            .response
            .clone();
        inner.touch(id);
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        Some(Hit {
            response,
            similarity: 1.0,
        })
    }

    /// Refreshes an identical live entry in the LRU; false when there is none.
    fn touch_exact(&self, scope: &ScopeKey, text: &str) -> bool {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        let id = match inner.scopes.get(scope).and_then(|s| s.by_text.get(text)) {
            Some(id) => *id,
            None => return false,
        };
        if inner.entries.get(&id).is_some_and(|e| e.expires > now) {
            inner.touch(id);
            true
        } else {
            false
        }
    }

    fn search(self: &Arc<Self>, scope: &ScopeKey, text: &str, v: &[f32]) -> Option<Hit> {
        let threshold = self.settings.similarity_threshold;
        // 1. candidates: exact scan of a small scope under the lock, or the scope's HNSW
        //    index outside it.
        let (index, mut candidates) = {
            let mut inner = self.inner.lock();
            self.sweep(&mut inner, Instant::now());
            match inner.scopes.get(scope) {
                None => (None, Vec::new()),
                Some(s) => match &s.index {
                    Some(index) => (Some(index.clone()), Vec::new()),
                    None => {
                        let mut c: Vec<(u64, f32)> = s
                            .live
                            .iter()
                            .filter_map(|id| {
                                inner.entries.get(id).map(|e| (*id, dot(v, &e.vector)))
                            })
                            .filter(|(_, sim)| *sim >= threshold)
                            .collect();
                        c.sort_by(|a, b| b.1.total_cmp(&a.1));
                        c.truncate(CANDIDATES);
                        (None, c)
                    }
                },
            }
        };
        if let Some(index) = index {
            candidates = index.search(v, CANDIDATES);
        }
        if candidates.is_empty() {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // 2. check each candidate against the live entry: scope, expiry, exact similarity,
        //    verification.
        let query_sig = self.settings.verify.then(|| Signature::of(text));
        let mut inner = self.inner.lock();
        let now = Instant::now();
        let mut scored: Vec<(u64, f32)> = candidates
            .into_iter()
            .filter_map(|(id, _)| {
                let e = inner.entries.get(&id)?;
                (e.scope == *scope && e.expires > now).then(|| (id, dot(v, &e.vector)))
            })
            .filter(|(_, sim)| *sim >= threshold)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (id, similarity) in scored {
            let Some(e) = inner.entries.get(&id) else {
                continue;
            };
            if let Some(q) = &query_sig {
                if let Some(why) = refusal(text, q, &e.text, &e.sig, self.words.as_deref()) {
                    self.counters.rejected_by[rejection_slot(why)].fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        similarity,
                        reason = why,
                        "semantic cache candidate rejected"
                    );
                    continue;
                }
            }
            let response = e.response.clone();
            inner.touch(id);
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Some(Hit {
                response,
                similarity: similarity.min(1.0),
            });
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    fn insert(
        this: &Arc<Shared>,
        scope: ScopeKey,
        text: &str,
        vector: Arc<[f32]>,
        response: Bytes,
    ) {
        let bytes = entry_bytes(text, &response);
        if bytes > this.settings.max_bytes || vector.len() != DIMENSION {
            return;
        }
        let now = Instant::now();
        let mut inner = this.inner.lock();
        this.sweep(&mut inner, now);
        // the same prompt stored twice (e.g. concurrent misses): keep one entry
        if let Some(id) = inner
            .scopes
            .get(&scope)
            .and_then(|s| s.by_text.get(text))
            .copied()
        {
            inner.touch(id);
            return;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let tick = inner.next_tick;
        inner.next_tick += 1;
        let text: Arc<str> = Arc::from(text);
        let expires = now + this.settings.ttl;
        inner.entries.insert(
            id,
            Entry {
                scope,
                sig: Signature::of(&text),
                text: text.clone(),
                vector: vector.clone(),
                response,
                expires,
                tick,
                bytes,
            },
        );
        inner.lru.insert(tick, id);
        inner.expiry.push_back((expires, id));
        inner.bytes += bytes;
        if !inner.scopes.contains_key(&scope) {
            let generation = inner.next_generation;
            inner.next_generation += 1;
            inner.scopes.insert(
                scope,
                Scope {
                    generation,
                    ..Scope::default()
                },
            );
        }
        let index = inner.scopes.get_mut(&scope).and_then(|s| {
            s.by_text.insert(text, id);
            s.live.insert(id);
            s.index.clone()
        });
        // evict least recently used entries until the budget holds
        while inner.bytes > this.settings.max_bytes {
            let Some((_, victim)) = inner.lru.pop_first() else {
                break;
            };
            inner.remove(victim);
            this.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
        Shared::maybe_rebuild(this, &mut inner, &scope);
        drop(inner);
        if let Some(index) = index {
            index.insert(id, &vector);
        }
    }

    /// Removes expired entries (oldest first; the TTL is the same for all), then rebuilds the
    /// indexes that now hold too many tombstones.
    fn sweep(self: &Arc<Self>, inner: &mut Inner, now: Instant) {
        let mut touched: Vec<ScopeKey> = Vec::new();
        while let Some(&(expires, id)) = inner.expiry.front() {
            if expires > now {
                break;
            }
            inner.expiry.pop_front();
            if let Some(scope) = inner
                .entries
                .get(&id)
                .filter(|e| e.expires == expires)
                .map(|e| e.scope)
            {
                inner.remove(id);
                self.counters.expirations.fetch_add(1, Ordering::Relaxed);
                if !touched.contains(&scope) {
                    touched.push(scope);
                }
            }
        }
        for scope in touched {
            Shared::maybe_rebuild(self, inner, &scope);
        }
    }

    /// Starts a background (re)build of a scope's index when it is big enough to need one or
    /// has too many tombstones.
    fn maybe_rebuild(this: &Arc<Shared>, inner: &mut Inner, scope: &ScopeKey) {
        let Some(s) = inner.scopes.get_mut(scope) else {
            return;
        };
        let due = match &s.index {
            None => s.live.len() >= HNSW_MIN_ENTRIES,
            Some(index) => index.needs_rebuild(),
        };
        if !due || s.rebuilding {
            return;
        }
        s.rebuilding = true;
        let generation = s.generation;
        let ids: Vec<u64> = s.live.iter().copied().collect();
        let snapshot: Vec<(u64, Arc<[f32]>)> = ids
            .iter()
            .filter_map(|id| inner.entries.get(id).map(|e| (*id, e.vector.clone())))
            .collect();
        let shared = Arc::clone(this);
        let scope = *scope;
        let spawned = std::thread::Builder::new()
            .name("cache-index-build".into())
            .spawn(move || {
                let points: Vec<(u64, &[f32])> =
                    snapshot.iter().map(|(id, v)| (*id, &v[..])).collect();
                let index = ScopeIndex::build(&points);
                let built: HashSet<u64> = snapshot.iter().map(|(id, _)| *id).collect();
                let mut inner = shared.inner.lock();
                let inner = &mut *inner;
                let Some(s) = inner
                    .scopes
                    .get_mut(&scope)
                    .filter(|s| s.generation == generation)
                else {
                    return;
                };
                // entries stored or removed while building
                for id in &s.live {
                    if !built.contains(id) {
                        if let Some(e) = inner.entries.get(id) {
                            index.insert(*id, &e.vector);
                        }
                    }
                }
                for id in built.difference(&s.live) {
                    index.tombstone(*id);
                }
                s.index = Some(Arc::new(index));
                s.rebuilding = false;
                shared.counters.rebuilds.fetch_add(1, Ordering::Relaxed);
                if s.live.is_empty() {
                    inner.scopes.remove(&scope);
                    return;
                }
                // entries removed during the build may already call for the next one
                Shared::maybe_rebuild(&shared, inner, &scope);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the cache index build");
            if let Some(s) = inner.scopes.get_mut(&scope) {
                s.rebuilding = false;
            }
        }
    }
}

impl Inner {
    fn touch(&mut self, id: u64) {
        let tick = self.next_tick;
        if let Some(e) = self.entries.get_mut(&id) {
            self.lru.remove(&e.tick);
            e.tick = tick;
            self.lru.insert(tick, id);
            self.next_tick += 1;
        }
    }

    fn remove(&mut self, id: u64) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        self.lru.remove(&e.tick);
        self.bytes -= e.bytes;
        let mut empty = false;
        if let Some(s) = self.scopes.get_mut(&e.scope) {
            s.by_text.remove(&e.text);
            s.live.remove(&id);
            if let Some(index) = &s.index {
                index.tombstone(id);
            }
            empty = s.live.is_empty() && !s.rebuilding;
        }
        if empty {
            self.scopes.remove(&e.scope);
        }
    }
}

#[cfg(test)]
mod rejection_labels {
    #[test]
    fn every_word_check_class_is_a_metric_label() {
        for class in super::super::verify_words::REJECTION_CLASSES {
            assert!(super::REJECTION_REASONS.contains(&class), "{class}");
        }
    }
}
