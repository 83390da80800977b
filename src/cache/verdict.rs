//! The one decision on a candidate above the threshold, shared by the cache's lookups and by
//! the evaluation (`tests/cache_eval.rs`), so what is measured is what is served.

use super::direction;
use super::verify::Signature;
use super::verify_words::words_compatible;
use super::wordnet::WordNet;

/// Why the cached prompt `cached` must not answer `query`, or `None` when it may. The
/// signatures are those of the two texts (a cached entry's is computed once, at store time).
/// With `words` (WordNet), the content words that differ must also be synonyms
/// ([`super::verify_words`]); the reason is then its class (`antonym`, `substitution`, ...),
/// never the words themselves, which are prompt text.
pub fn refusal(
    query: &str,
    query_sig: &Signature,
    cached: &str,
    cached_sig: &Signature,
    words: Option<&WordNet>,
) -> Option<&'static str> {
    if let Some(why) = query_sig.mismatch(cached_sig) {
        return Some(why);
    }
    if direction::disagree(query, cached) {
        return Some("direction");
    }
    if let Some(wordnet) = words {
        if let Err(rejection) = words_compatible(query, cached, wordnet) {
            return Some(rejection.class);
        }
    }
    None
}
