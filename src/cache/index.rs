//! Approximate nearest-neighbour index of one scope: hnsw_rs with tombstones.
//!
//! hnsw_rs cannot delete a point, so a removed entry's id goes into a tombstone set that the
//! search filter skips. When tombstones pass [`REBUILD_SHARE`] of the points, the cache builds
//! a fresh index from the live entries on a background thread and swaps it in.

use std::collections::HashSet;

use hnsw_rs::prelude::{Distance, Hnsw};
use parking_lot::RwLock;

/// Rebuild a scope's index when this share of its points are tombstones.
pub const REBUILD_SHARE: f64 = 0.2;
/// hnsw_rs parameters: links per node, construction width, layers, search width. Measured
/// at 100k synthetic vectors of low intrinsic dimension (`benches/cache.rs`): ef 16 found every
/// stored vector and the brute-force nearest neighbour of 500 perturbed queries, at 0.6x the
/// cost of ef 32; ef 12 missed exact stored vectors. A search miss is a cache miss, never a
/// wrong answer.
const MAX_CONNECTIONS: usize = 16;
const EF_CONSTRUCTION: usize = 64;
const MAX_LAYERS: usize = 16;
const EF_SEARCH: usize = 16;

/// Cosine distance of unit vectors, clamped at 0 (hnsw_rs' `DistDot` asserts on rounding).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Dot product, vectorised for the CPU it runs on: `pulp` compiles the loop for AVX2 (and
/// baseline SSE) and picks at run time, since a portable build may only assume SSE2. Eight
/// independent lanes let the compiler vectorise without reassociating floats.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    static ARCH: std::sync::LazyLock<pulp::Arch> = std::sync::LazyLock::new(pulp::Arch::new);
    ARCH.dispatch(
        #[inline(always)]
        || dot_lanes(a, b),
    )
}

#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// One scope's HNSW graph plus its tombstones. Ids are cache entry ids.
pub struct ScopeIndex {
    /// Searches take the read lock, inserts the write lock (hnsw_rs does not promise that
    /// inserting and searching at once is safe).
    hnsw: RwLock<Hnsw<'static, f32, UnitCosine>>,
    dead: RwLock<HashSet<usize>>,
}

impl ScopeIndex {
    pub fn build(points: &[(u64, &[f32])]) -> ScopeIndex {
        let hnsw = Hnsw::new(
            MAX_CONNECTIONS,
            points.len().max(1024),
            MAX_LAYERS,
            EF_CONSTRUCTION,
            UnitCosine,
        );
        for (id, v) in points {
            hnsw.insert_slice((v, *id as usize));
        }
        ScopeIndex {
            hnsw: RwLock::new(hnsw),
            dead: RwLock::new(HashSet::new()),
        }
    }

    pub fn insert(&self, id: u64, v: &[f32]) {
        self.hnsw.write().insert_slice((v, id as usize));
    }

    pub fn tombstone(&self, id: u64) {
        self.dead.write().insert(id as usize);
    }

    /// Points in the graph, tombstones included.
    pub fn points(&self) -> usize {
        self.hnsw.read().get_nb_point()
    }

    pub fn tombstones(&self) -> usize {
        self.dead.read().len()
    }

    pub fn needs_rebuild(&self) -> bool {
        let points = self.points();
        points >= 32 && self.tombstones() as f64 > points as f64 * REBUILD_SHARE
    }

    /// The `k` nearest live ids and their cosine similarity.
    ///
    /// Tombstones are filtered after the search, from `k / (1 - REBUILD_SHARE)` neighbours
    /// and more: hnsw_rs' `search_filter` does not stop early when given a filter (it keeps
    /// exploring the graph), which made a search at 10k entries about 4x slower.
    pub fn search(&self, v: &[f32], k: usize) -> Vec<(u64, f32)> {
        let fetch = k + k / 2;
        let found = self.hnsw.read().search(v, fetch, EF_SEARCH.max(fetch));
        let dead = self.dead.read();
        found
            .into_iter()
            .filter(|n| !dead.contains(&n.d_id))
            .take(k)
            .map(|n| (n.d_id as u64, 1.0 - n.distance))
            .collect()
    }
}
