//! The one decision on a candidate above the threshold, shared by the cache's lookups and by
//! the evaluation (`tests/cache_eval.rs`), so what is measured is what is served.

use super::canonical::canonical;
use super::direction;
use super::verify::Signature;
use super::verify_words::words_compatible;
use super::wordnet::WordNet;

/// Longest prompt, in words, that can be a semantic hit. The embedding sees only the first 256
/// tokens, so two long prompts that differ further on can score 1.0; and the word check
/// compares every word with every other. A longer prompt is served only an exact repeat.
pub const MAX_VERIFIED_WORDS: usize = 256;

fn too_long(text: &str) -> bool {
    text.split_whitespace().nth(MAX_VERIFIED_WORDS).is_some()
}

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
    if too_long(query) || too_long(cached) {
        return Some("unverifiable");
    }
    if let Some(why) = query_sig.mismatch(cached_sig) {
        return Some(why);
    }
    let (query, cached) = (&*canonical(query), &*canonical(cached));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_past_the_word_limit_are_never_semantic_hits() {
        let long = "word ".repeat(MAX_VERIFIED_WORDS + 1);
        let short = "word ".repeat(MAX_VERIFIED_WORDS);
        let check = |a: &str, b: &str| refusal(a, &Signature::of(a), b, &Signature::of(b), None);
        assert_eq!(check(&long, &long), Some("unverifiable"));
        assert_eq!(check(&short, &long), Some("unverifiable"));
        assert_eq!(check(&short, &short), None);
    }
}
