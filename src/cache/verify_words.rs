//! Word-level verification of a semantic candidate with WordNet: the content words that differ
//! between the two prompts must be near-synonyms.
//!
//! [`words_compatible`] runs in addition to [`super::verify::Signature`] (numbers, negation,
//! quotes, units, dates, entities). It uses no domain word tables: only the closed grammatical
//! classes of English (determiners, pronouns, auxiliaries, prepositions, conjunctions,
//! quantifiers), which are finite, and WordNet ([`super::wordnet`]) for every open-class word.
//!
//! 1. Both prompts are tokenised (lower case; phrase punctuation kept as a boundary; digit
//!    tokens are not words here, `Signature` compares them), bare contractions ("whats",
//!    "hasnt") and typos of closed-class words ("evry") are normalised, hyphenated words are
//!    joined when WordNet knows the joined form ("e-mail") and split otherwise, function and
//!    number words are dropped, and each remaining word is lemmatised with WordNet's morphy
//!    (every part of speech).
//! 2. Closed-class checks:
//!    - `scope`: the quantifiers ("all", "some", "only", "each", "more", ...) must be the same;
//!    - `tense`: past or future auxiliaries ("did", "will", "is going to") must agree, and a
//!      verb in both prompts must be in the past in both or in neither ("which rules
//!      *changed*" / "which rules *change*"; a participle is not a past: "is *supported*");
//!    - `direction`: the same things stay on the same side of a directional preposition
//!      ("Celsius to Fahrenheit" / "Fahrenheit to Celsius", "from X" / "to X"); a preposition
//!      left without its object moves the object to the subject ("who reports to X" / "who
//!      does X report to"); the same numbers do not trade places ("for 4 people to serve 10");
//!      and two words do not trade places around a word that stays between them ("can a
//!      *manager* fire an *employee*" / "can an *employee* fire a *manager*"), unless one
//!      prompt is the passive of the other ("is Python supported by Lambda");
//!    - `date`: one thing is not placed in time by two prepositions ("during the treatment" /
//!      "after the treatment", "by Friday" / "after Friday").
//! 3. Words sharing a lemma with a word of the other prompt are removed; a word WordNet does not
//!    know that is within a small edit distance of a word of the other prompt (same first
//!    letter) is a typo of it.
//! 4. The words only in A and only in B are aligned greedily, closest WordNet relation first.
//!    Any antonym pair rejects (`antonym`); an aligned pair that is not a synonym or a close
//!    link (similar-to, derivation, pertainym, participle, verb group, also-see, entailment, a
//!    verb's direct hypernym: "enlarge" is a way to "increase") rejects (`substitution`). A
//!    noun's hypernym is not close: a freezer is a kind of fridge.
//! 5. A word left over on one side is an insertion and rejects (`insertion`), unless it frames
//!    the question: it stands before the first content word both prompts share ("Is it
//!    *possible* for ...", "*Hi team*, *quick question*: ..."), WordNet knows it, it is
//!    followed by a function word or punctuation or sits in a phrase of its own before the
//!    question (so it does not modify a shared word: "a *newborn* non-citizen" rejects), and
//!    it is not a noun-only word whose main sense is concrete (a person, artefact, place,
//!    time, substance, ...: "an *infant*").
//!
//! The rules and the choices in [`WordRule`] were made on the tuning half of
//! `tests/fixtures/cache_eval/pairs.jsonl` and on `dev.jsonl` (`tests/cache_eval.rs` prints
//! every error on both).
//! About 0.1 ms per pair of prompts; WordNet itself is [`super::wordnet::WordNet`].

use super::wordnet::{Link, Pos, Relation, WordNet};

/// Why two prompts were found to ask different things. `class` is one of [`REJECTION_CLASSES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub class: &'static str,
    /// The words involved ("edible/poisonous"), for tests and tuning only: they are prompt
    /// text, so the gateway never logs or exports them, only `class`.
    pub detail: String,
}

/// The fixed set of rejection labels (a metric label's values).
pub const REJECTION_CLASSES: [&str; 7] = [
    "antonym",
    "date",
    "substitution",
    "insertion",
    "scope",
    "direction",
    "tense",
];

fn reject(class: &'static str, detail: impl Into<String>) -> Result<(), Rejection> {
    Err(Rejection {
        class,
        detail: detail.into(),
    })
}

/// Closed-class function words: articles and determiners, pronouns, auxiliaries and modals,
/// prepositions, conjunctions, wh-words, and discourse particles.
const FUNCTION_WORDS: &[&str] = &[
    // articles, determiners, demonstratives
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "such",
    "what",
    "which",
    "whose",
    "whatever",
    "whichever",
    "another",
    "other",
    "own",
    // personal, possessive, reflexive, indefinite and relative pronouns
    "i",
    "me",
    "my",
    "mine",
    "myself",
    "we",
    "us",
    "our",
    "ours",
    "ourselves",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "he",
    "him",
    "his",
    "himself",
    "she",
    "her",
    "hers",
    "herself",
    "it",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "themselves",
    "who",
    "whom",
    "someone",
    "somebody",
    "something",
    "anyone",
    "anybody",
    "anything",
    "one",
    "ones",
    "there",
    "here",
    "thing",
    // auxiliaries and modals (present forms; past and future ones are tense markers)
    "be",
    "am",
    "is",
    "are",
    "been",
    "being",
    "'s",
    "'re",
    "'m",
    "'ve",
    "'d",
    "have",
    "has",
    "having",
    "do",
    "does",
    "doing",
    "done",
    "can",
    "could",
    "may",
    "might",
    "must",
    "should",
    "would",
    "ought",
    "shall",
    "get",
    "gets",
    "got",
    // prepositions
    "about",
    "above",
    "across",
    "after",
    "against",
    "along",
    "among",
    "around",
    "as",
    "at",
    "before",
    "behind",
    "below",
    "beneath",
    "beside",
    "between",
    "beyond",
    "by",
    "down",
    "during",
    "for",
    "in",
    "inside",
    "like",
    "near",
    "of",
    "off",
    "on",
    "onto",
    "out",
    "outside",
    "over",
    "past",
    "per",
    "since",
    "through",
    "throughout",
    "till",
    "under",
    "underneath",
    "until",
    "up",
    "upon",
    "with",
    "within",
    "via",
    "into",
    "to",
    "from",
    "toward",
    "towards",
    "than",
    "versus",
    "vs",
    // conjunctions
    "and",
    "but",
    "or",
    "nor",
    "so",
    "yet",
    "because",
    "although",
    "though",
    "while",
    "whereas",
    "if",
    "whether",
    "then",
    "also",
    "too",
    "either",
    "neither",
    "both",
    // wh-adverbs and particles
    "how",
    "why",
    "where",
    "when",
    "not",
    "n't",
    "no",
    "very",
    "just",
    "really",
    "quite",
    "please",
    "kindly",
    "hi",
    "hello",
    "hey",
    "thanks",
    "thank",
    "ok",
    "okay",
    "yes",
    "actually",
    "exactly",
    "instead",
    "rather",
    "again",
];

/// Quantifiers and focus words (closed class): they change how much is asked for, so they must
/// agree. Each maps to a normalised value ("every" and "each" are "all").
const QUANTIFIERS: &[(&str, &str)] = &[
    ("all", "all"),
    ("every", "all"),
    ("each", "all"),
    ("entire", "all"),
    ("whole", "all"),
    ("any", "any"),
    ("some", "some"),
    ("several", "some"),
    ("few", "few"),
    ("many", "many"),
    ("much", "many"),
    ("most", "most"),
    ("more", "more"),
    ("less", "less"),
    ("fewer", "less"),
    ("least", "least"),
    ("only", "only"),
    ("none", "none"),
    ("single", "one"),
    ("total", "total"),
];

/// Cardinal and ordinal number words (closed class), compared by `Signature`, not here.
const NUMBER_WORDS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "million",
    "billion",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "twelfth",
    "twentieth",
    "half",
    "twice",
    "dozen",
];

/// Prepositions whose object says which way something goes: the object must be the same word.
const DIRECTIONAL: &[&str] = &[
    "to", "from", "into", "onto", "than", "toward", "towards", "versus", "vs",
];

/// Prepositions that place something in time: the same thing placed with another one is
/// another time ("during the treatment" / "after the treatment", "by Friday" / "after Friday").
const TEMPORAL: &[&str] = &[
    "before", "after", "during", "until", "till", "since", "by", "within",
];

/// Auxiliaries after which a past participle is not the past tense: a passive ("is *supported*
/// by") or a perfect ("has *changed*").
const PARTICIPLE_AUXILIARIES: &[&str] = &[
    "be", "am", "is", "are", "was", "were", "been", "being", "'s", "'re", "'m", "have", "has",
    "had", "'ve", "'d", "get", "gets", "got",
];

/// Past and future markers among the auxiliaries (closed class).
const PAST: &[&str] = &["was", "were", "did", "had"];
const FUTURE: &[&str] = &["will", "'ll", "wo", "shall"];

/// A phrase boundary (comma, colon, question mark, ...) in the token stream.
const BOUNDARY: &str = "|";

fn is_function(w: &str) -> bool {
    w == BOUNDARY || FUNCTION_WORDS.contains(&w)
}

/// Lower-case word tokens (hyphens kept inside words, digit-bearing tokens kept: they can be
/// the object of a directional preposition), contractions split ("don't" -> "do", "n't";
/// "I'd" -> "i", "'d").
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lower = text.to_lowercase().replace(['’', '‘'], "'");
    // punctuation that ends a phrase becomes a boundary token
    let lower = lower
        .replace(". ", " | ")
        .replace([',', ';', ':', '?', '!', '(', ')'], " | ");
    for raw in lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-' || c == '.' || c == '|'))
    {
        if raw == "|" {
            out.push(BOUNDARY.to_string());
            continue;
        }
        let raw = raw.trim_matches(|c| c == '\'' || c == '-' || c == '.');
        if raw.is_empty() {
            continue;
        }
        if raw.chars().any(|c| c.is_ascii_digit()) {
            out.push(raw.to_string());
            continue;
        }
        for raw in raw.split('.').filter(|w| !w.is_empty()) {
            if let Some(stem) = raw.strip_suffix("n't") {
                let stem = match stem {
                    "ca" => "can",
                    "wo" => "will",
                    s => s,
                };
                if !stem.is_empty() {
                    out.push(stem.to_string());
                }
                out.push("n't".to_string());
                continue;
            }
            if let Some(i) = raw.find('\'') {
                let (stem, clitic) = raw.split_at(i);
                if !stem.is_empty() {
                    out.push(stem.to_string());
                }
                out.push(clitic.to_string());
                continue;
            }
            out.push(raw.to_string());
        }
    }
    out
}

/// A content word of a prompt with its WordNet lemmas.
#[derive(Debug, Clone)]
struct Word {
    text: String,
    lemmas: Vec<(Pos, u32)>,
    /// Position among the prompt's tokens.
    at: usize,
    /// Whether the next token is a closed-class word (not a content word this one could
    /// modify, not the end of the prompt).
    before_function: bool,
    /// Whether it is a verb in the past tense: "changed", or "change" after "did".
    past: bool,
}

impl Word {
    fn known(&self) -> bool {
        !self.lemmas.is_empty()
    }
    fn shares_lemma(&self, other: &Word) -> bool {
        self.text == other.text
            || self
                .lemmas
                .iter()
                .any(|(_, a)| other.lemmas.iter().any(|(_, b)| a == b))
    }
}

struct Analysis {
    words: Vec<Word>,
    quantifiers: Vec<&'static str>,
    /// (preposition, the first word after it that is not a determiner)
    directions: Vec<(&'static str, String)>,
    /// Directional prepositions with no object after them: "who does X report *to*?"
    stranded: Vec<&'static str>,
    /// The objects of "by" (the agent of a passive: "supported *by* Lambda").
    agents: Vec<String>,
    /// (temporal preposition, its object): "during treatment".
    times: Vec<(&'static str, String)>,
    /// Token positions of phrase boundaries (commas, question marks, ...).
    boundaries: Vec<usize>,
    past: bool,
    future: bool,
    /// Numbers in order, each with the token after it ("4 people").
    numbers: Vec<(String, String)>,
}

/// Contractions written without the apostrophe (closed class): the function word they stand
/// for, and a tense marker when they carry one.
const BARE_CONTRACTIONS: &[(&str, &str)] = &[
    ("whats", "what"),
    ("thats", "that"),
    ("hows", "how"),
    ("wheres", "where"),
    ("whos", "who"),
    ("im", "i"),
    ("ive", "i"),
    ("youre", "you"),
    ("theyre", "they"),
    ("lets", "let"),
    ("dont", "do"),
    ("doesnt", "does"),
    ("didnt", "did"),
    ("isnt", "is"),
    ("arent", "are"),
    ("wasnt", "was"),
    ("werent", "were"),
    ("cant", "can"),
    ("wont", "will"),
    ("shouldnt", "should"),
    ("couldnt", "could"),
    ("wouldnt", "would"),
    ("hasnt", "has"),
    ("havent", "have"),
    ("hadnt", "had"),
];

/// Words skipped when looking for a preposition's object.
const DETERMINERS: &[&str] = &[
    "a", "an", "the", "my", "our", "your", "his", "her", "its", "their", "this", "that", "these",
    "those", "some", "any", "all", "each", "every", "another",
];

fn is_closed_class(w: &str) -> bool {
    is_function(w)
        || QUANTIFIERS.iter().any(|(q, _)| *q == w)
        || PAST.contains(&w)
        || FUTURE.contains(&w)
}

/// Normalises the token stream: bare contractions, typos of closed-class words ("evry",
/// "durng"), and hyphenated words (joined when WordNet knows the joined form, split
/// otherwise).
fn normalise(toks: Vec<String>, wn: &WordNet) -> Vec<String> {
    let mut out = Vec::with_capacity(toks.len());
    for t in toks {
        if t.chars().any(|c| c.is_ascii_digit()) {
            // a unit glued to a number ("5km", "10gb") is a word of its own
            let unit: String = t
                .chars()
                .skip_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
                .collect();
            let glued = t.chars().next().is_some_and(|c| c.is_ascii_digit())
                && unit.chars().count() >= 2
                && unit.chars().all(char::is_alphabetic)
                && !matches!(unit.as_str(), "st" | "nd" | "rd" | "th" | "am" | "pm");
            out.push(t);
            if glued {
                out.push(unit);
            }
            continue;
        }
        if let Some((_, f)) = BARE_CONTRACTIONS.iter().find(|(w, _)| *w == t) {
            out.push((*f).to_string());
            continue;
        }
        if t.contains('-') {
            // split unless WordNet knows the joined form ("e-mail"): the other prompt may
            // write the parts apart ("multiple-choice" / "multiple choice")
            let joined = t.replace('-', "");
            if !wn.lemmas(&joined).is_empty() {
                out.push(joined);
                continue;
            }
            out.extend(t.split('-').filter(|w| !w.is_empty()).map(str::to_string));
            continue;
        }
        if t.chars().count() >= 4 && !is_closed_class(&t) && wn.lemmas(&t).is_empty() {
            let fixed = FUNCTION_WORDS
                .iter()
                .copied()
                .chain(QUANTIFIERS.iter().map(|(q, _)| *q))
                .find(|f| f.len() >= 4 && is_typo(&t, f));
            if let Some(f) = fixed {
                out.push(f.to_string());
                continue;
            }
        }
        out.push(t);
    }
    out
}

fn analyse(text: &str, wn: &WordNet) -> Analysis {
    let toks = normalise(tokens(text), wn);
    let mut a = Analysis {
        words: Vec::new(),
        quantifiers: Vec::new(),
        directions: Vec::new(),
        stranded: Vec::new(),
        agents: Vec::new(),
        times: Vec::new(),
        boundaries: Vec::new(),
        past: false,
        future: false,
        numbers: Vec::new(),
    };
    for (i, t) in toks.iter().enumerate() {
        let t = t.as_str();
        if t == BOUNDARY {
            a.boundaries.push(i);
        }
        if t == "by" {
            // the agent's words: "by *AWS Lambda*", "by my *car insurance*"
            a.agents.extend(
                toks[i + 1..]
                    .iter()
                    .skip_while(|w| DETERMINERS.contains(&w.as_str()))
                    .take_while(|w| !is_closed_class(w))
                    .cloned(),
            );
        }
        if let Some(p) = TEMPORAL.iter().find(|p| **p == t) {
            if let Some(obj) = toks[i + 1..]
                .iter()
                .find(|w| !DETERMINERS.contains(&w.as_str()))
                .filter(|w| !is_closed_class(w))
            {
                a.times.push((p, obj.clone()));
            }
        }
        if PAST.contains(&t) {
            a.past = true;
            continue;
        }

        if FUTURE.contains(&t) {
            a.future = true;
            continue;
        }
        // "going to" before a verb is the future ("is going to change"); "going to Paris" is not
        if t == "going"
            && toks.get(i + 1).is_some_and(|n| n == "to")
            && toks.get(i + 2).is_some_and(|n| {
                !wn.morphy(n, Pos::Verb).is_empty() && !DETERMINERS.contains(&n.as_str())
            })
        {
            a.future = true;
            continue;
        }
        if NUMBER_WORDS.contains(&t) {
            continue; // numbers are compared by `Signature`
        }
        if matches!(t, "many" | "much") && i > 0 && toks[i - 1] == "how" {
            continue; // "how many", "how much": a question word
        }
        if let Some((_, q)) = QUANTIFIERS.iter().find(|(w, _)| *w == t) {
            if !a.quantifiers.contains(q) {
                a.quantifiers.push(q);
            }
            continue;
        }
        if let Some(p) = DIRECTIONAL.iter().find(|p| **p == t) {
            match toks[i + 1..]
                .iter()
                .find(|w| !DETERMINERS.contains(&w.as_str()))
            {
                Some(obj) if obj != BOUNDARY => a.directions.push((p, obj.clone())),
                _ => a.stranded.push(p),
            }
            continue;
        }
        if t.starts_with(|c: char| c.is_ascii_digit()) {
            let next = toks.get(i + 1).cloned().unwrap_or_default();
            a.numbers.push((t.to_string(), next));
        }
        if is_function(t) || t.chars().any(|c| c.is_ascii_digit()) || t.len() < 2 {
            continue;
        }
        let lemmas = wn.lemmas(t);
        a.words.push(Word {
            text: t.to_string(),
            past: past_tense_verb(&toks, i, &lemmas, wn),
            lemmas,
            at: i,
            before_function: toks
                .get(i + 1)
                .is_some_and(|n| is_closed_class(n) || NUMBER_WORDS.contains(&n.as_str())),
        });
    }
    a.quantifiers.sort_unstable();
    a
}

/// Whether token `i` is a verb in the past tense: a simple past ("which rules *changed*",
/// "what *caused* it": a form WordNet reduces to another verb lemma, ending in "-ed" or
/// irregular like "rose", not a participle in "-n" like "written") that is not a participle
/// (no auxiliary in the three tokens before it: "is *supported*", "has it *changed*"; not
/// followed by "by": "damage *caused* by hail"), or a base form after "did" in its clause
/// ("why *did* the build *fail*"). Never a word just after a determiner ("a *damaged* item",
/// "the *build*").
fn past_tense_verb(toks: &[String], i: usize, lemmas: &[(Pos, u32)], wn: &WordNet) -> bool {
    let t = toks[i].as_str();
    let verbs: Vec<u32> = lemmas
        .iter()
        .filter(|(pos, _)| *pos == Pos::Verb)
        .map(|&(_, id)| id)
        .collect();
    if verbs.is_empty()
        || is_closed_class(t)
        || (i > 0 && DETERMINERS.contains(&toks[i - 1].as_str()))
    {
        return false;
    }
    let before = toks[..i]
        .iter()
        .rev()
        .take_while(|w| w.as_str() != BOUNDARY);
    if verbs.iter().any(|&id| wn.name(id) == t) {
        return before.clone().any(|w| w == "did");
    }
    !(t.len() < 3
        || t.ends_with('n')
        || t.ends_with('s')
        || t.ends_with("ing")
        || toks.get(i + 1).is_some_and(|n| n == "by")
        || before
            .take(3)
            .any(|w| PARTICIPLE_AUXILIARIES.contains(&w.as_str())))
}

/// Damerau-free Levenshtein distance, bounded (returns `max + 1` past `max`).
fn edit_distance(a: &str, b: &str, max: usize) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > max {
        return max + 1;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            // transposition ("refnud" / "refund")
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Whether `unknown` (a word WordNet does not know) is a typo of `other`.
fn is_typo(unknown: &str, other: &str) -> bool {
    let n = unknown.chars().count().min(other.chars().count());
    let max = if n >= 8 { 2 } else { 1 };
    n >= 4
        && unknown.chars().next() == other.chars().next()
        && edit_distance(unknown, other, max) <= max
}

/// The tunable choices of the rule; [`WordRule::default`] is the measured choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordRule {
    /// A verb and its direct hypernym count as near-synonyms: a troponym is a manner of doing
    /// the same thing ("enlarge" / "increase", "raise" / "increase"). Nouns never do: a
    /// hyponym is a different thing ("freezer" is a kind of "fridge").
    pub verb_hypernym_close: bool,
    /// Verb entailment counts as a near-synonym ("transfer" / "move").
    pub entailment_close: bool,
    /// Which unmatched words may be ignored.
    pub insertion: Insertion,
}

/// Which words inserted on one side only are tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insertion {
    /// None: every inserted content word rejects.
    None,
    /// Verbs of cognition, communication, perception or possession ("tell", "know"), anywhere.
    FramingVerbs,
    /// Words before the first content word both prompts share ("Is it possible for ...",
    /// "What is the correct way to ...", "Hi team, quick question: ...").
    Prefix,
    /// Both of the above.
    Both,
}

impl Default for WordRule {
    fn default() -> Self {
        WordRule {
            verb_hypernym_close: true,
            entailment_close: true,
            insertion: Insertion::Prefix,
        }
    }
}

/// Alignment cost of two words: 0 synonym, 1 close link, 2 other link, 3 unrelated; antonyms
/// are reported apart.
fn cost(x: &Word, y: &Word, wn: &WordNet, rule: &WordRule) -> (u8, bool) {
    let mut best = 3u8;
    let mut antonym = false;
    for &(pa, a) in &x.lemmas {
        for &(pb, b) in &y.lemmas {
            let verbs = pa == Pos::Verb && pb == Pos::Verb;
            let c = match wn.relation_ids(a, b) {
                Relation::Synonym => 0,
                Relation::Antonym => {
                    antonym = true;
                    4
                }
                Relation::Related(Link::Hypernym) if verbs && rule.verb_hypernym_close => 1,
                Relation::Related(l) if close(l, rule) => 1,
                Relation::Related(_) => 2,
                Relation::Unrelated => 3,
            };
            best = best.min(c);
        }
    }
    (best, antonym)
}

/// Links that keep the meaning of a question: the same concept in another part of speech, or
/// an adjective satellite of the same head (and, by choice, a direct hypernym or entailment).
fn close(l: Link, rule: &WordRule) -> bool {
    match l {
        Link::SimilarTo
        | Link::Derivation
        | Link::Pertainym
        | Link::Participle
        | Link::VerbGroup
        | Link::AlsoSee => true,
        Link::Entailment => rule.entailment_close,
        _ => false,
    }
}

/// verb.cognition 31, verb.communication 32, verb.perception 39, verb.possession 40.
const FRAMING_VERB_FILES: &[u8] = &[31, 32, 39, 40];
/// Noun lexicographer files of concrete or specific things, which never frame a question:
/// noun.animal 5, noun.artifact 6, noun.body 8, noun.food 13, noun.location 15, noun.object
/// 17, noun.person 18, noun.plant 20, noun.quantity 23, noun.substance 27, noun.time 28.
const CONCRETE_NOUN_FILES: &[u8] = &[5, 6, 8, 13, 15, 17, 18, 20, 23, 27, 28];

fn framing_verb(w: &Word, wn: &WordNet) -> bool {
    w.lemmas.iter().any(|&(pos, id)| {
        pos == Pos::Verb
            && wn
                .lexfiles(id, pos)
                .iter()
                .any(|f| FRAMING_VERB_FILES.contains(f))
    })
}

/// A word that can only be a noun and whose most frequent sense is a concrete or specific
/// thing (a person, an artefact, a place, a time, a substance, ...: "infant", "freezer").
fn concrete_noun(w: &Word, wn: &WordNet) -> bool {
    w.lemmas.iter().all(|&(pos, _)| pos == Pos::Noun)
        && w.lemmas.iter().any(|&(pos, id)| {
            wn.first_lexfile(id, pos)
                .is_some_and(|f| CONCRETE_NOUN_FILES.contains(&f))
        })
}

/// Whether the prompts `a` and `b` ask for the same thing as far as their words can tell,
/// with the measured default [`WordRule`].
pub fn words_compatible(a: &str, b: &str, wn: &WordNet) -> Result<(), Rejection> {
    words_compatible_with(a, b, wn, &WordRule::default())
}

/// [`words_compatible`] with explicit choices (for measurement).
pub fn words_compatible_with(
    a: &str,
    b: &str,
    wn: &WordNet,
    rule: &WordRule,
) -> Result<(), Rejection> {
    let aa = analyse(a, wn);
    let bb = analyse(b, wn);

    if aa.quantifiers != bb.quantifiers {
        return reject(
            "scope",
            format!("{:?}/{:?}", aa.quantifiers, bb.quantifiers),
        );
    }
    // the past is an auxiliary ("did", "was") or a verb form ("failed")
    let past = |x: &Analysis| x.past || x.words.iter().any(|w| w.past);
    if past(&aa) != past(&bb) || aa.future != bb.future {
        return reject("tense", "past/future auxiliaries differ");
    }
    direction(&aa, &bb, wn)?;
    // one verb in two tenses: "which rules changed" / "which rules change"
    for x in &aa.words {
        if let Some(y) = bb
            .words
            .iter()
            .find(|y| x.shares_lemma(y) && x.past != y.past)
        {
            return reject("tense", format!("{}/{}", x.text, y.text));
        }
    }

    // words only in one prompt
    let only = |x: &Analysis, y: &Analysis| -> Vec<Word> {
        x.words
            .iter()
            .filter(|w| !y.words.iter().any(|v| w.shares_lemma(v)))
            .filter(|w| {
                // a typo of a word of the other prompt
                w.known() || !y.words.iter().any(|v| is_typo(&w.text, &v.text))
            })
            .filter(|w| {
                // the other side's typo of this word
                !y.words
                    .iter()
                    .any(|v| !v.known() && is_typo(&v.text, &w.text))
            })
            .cloned()
            .collect()
    };
    let mut oa = only(&aa, &bb);
    let mut ob = only(&bb, &aa);
    dedup(&mut oa);
    dedup(&mut ob);
    let first_shared = |x: &Analysis, o: &[Word]| {
        x.words
            .iter()
            .filter(|w| !o.iter().any(|v| v.text == w.text))
            .map(|w| w.at)
            .min()
            .unwrap_or(usize::MAX)
    };
    let (fa, fb) = (first_shared(&aa, &oa), first_shared(&bb, &ob));

    // align, closest first
    let mut pairs: Vec<(u8, usize, usize)> = Vec::new();
    for (i, x) in oa.iter().enumerate() {
        for (j, y) in ob.iter().enumerate() {
            let (c, antonym) = cost(x, y, wn, rule);
            if antonym {
                return reject("antonym", format!("{}/{}", x.text, y.text));
            }
            pairs.push((c, i, j));
        }
    }
    pairs.sort_unstable();
    let mut used_a = vec![false; oa.len()];
    let mut used_b = vec![false; ob.len()];
    // a phrase of its own before the question ("Hi team, quick question: ...") may hold
    // content words that modify one another
    let own_phrase =
        |w: &Word, x: &Analysis, first: usize| x.boundaries.iter().any(|&b| w.at < b && b < first);
    let tolerable = |w: &Word, x: &Analysis, first: usize| {
        w.known()
            && (w.before_function || own_phrase(w, x, first))
            && !concrete_noun(w, wn)
            && match rule.insertion {
                Insertion::None => false,
                Insertion::FramingVerbs => framing_verb(w, wn),
                Insertion::Prefix => w.at < first,
                Insertion::Both => framing_verb(w, wn) || w.at < first,
            }
    };
    for (c, i, j) in pairs {
        if used_a[i] || used_b[j] {
            continue;
        }
        used_a[i] = true;
        used_b[j] = true;
        if c >= 2 {
            return reject("substitution", format!("{}/{}", oa[i].text, ob[j].text));
        }
    }
    for (w, used) in oa.iter().zip(&used_a) {
        if !used && !tolerable(w, &aa, fa) {
            return reject("insertion", w.text.clone());
        }
    }
    for (w, used) in ob.iter().zip(&used_b) {
        if !used && !tolerable(w, &bb, fb) {
            return reject("insertion", w.text.clone());
        }
    }
    Ok(())
}

/// The same things on the same side of a directional preposition: "Celsius to Fahrenheit"
/// against "Fahrenheit to Celsius", "from X" against "to X".
fn direction(aa: &Analysis, bb: &Analysis, wn: &WordNet) -> Result<(), Rejection> {
    let mentions = |x: &Analysis, o: &str| {
        x.words.iter().any(|w| same_word(&w.text, o, wn))
            || x.directions.iter().any(|(_, d)| same_word(d, o, wn))
    };
    let has = |x: &Analysis, p: &str, o: &str| holds(&x.directions, p, o, wn);
    // the same numbers in another order, bound to other words: "a recipe for 4 people to
    // serve 10" against "for 10 people to serve 4"
    let seq = |x: &Analysis| x.numbers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let (na, nb) = (seq(aa), seq(bb));
    if na != nb {
        let (mut sa, mut sb) = (na.clone(), nb.clone());
        sa.sort();
        sb.sort();
        let bound = |x: &Analysis, y: &Analysis| x.numbers.iter().all(|n| y.numbers.contains(n));
        if sa == sb && !(bound(aa, bb) && bound(bb, aa)) {
            return reject("direction", format!("{na:?}/{nb:?}"));
        }
    }
    // "who reports to X" against "who does X report to": X moved from the object of the
    // preposition to the subject
    for (x, y) in [(aa, bb), (bb, aa)] {
        if let Some((p, o)) = x
            .directions
            .iter()
            .find(|(p, o)| y.stranded.contains(p) && !x.stranded.contains(p) && mentions(y, o))
        {
            return reject("direction", format!("{p} {o}/{o} ... {p}"));
        }
    }
    swapped_around_pivot(aa, bb)?;
    // one thing placed in time by two different prepositions
    for (x, y) in [(aa, bb), (bb, aa)] {
        for (p, o) in &x.times {
            let moved = y
                .times
                .iter()
                .find(|(q, d)| q != p && same_word(o, d, wn) && !holds(&x.times, q, d, wn));
            if let Some((q, _)) = moved {
                if !holds(&y.times, p, o, wn) {
                    return reject("date", format!("{p} {o}/{q} {o}"));
                }
            }
        }
    }
    for (p, o) in &aa.directions {
        if has(bb, p, o) {
            continue;
        }
        for (q, d) in &bb.directions {
            // the same preposition with the other's object, both objects in both prompts
            if p == q && !has(aa, q, d) && mentions(aa, d) && mentions(bb, o) {
                return reject("direction", format!("{p} {o}/{q} {d}"));
            }
            // one object on opposite sides: "from X" against "to X"
            if p != q && same_word(o, d, wn) && opposite(p, q) && !has(aa, q, d) {
                return reject("direction", format!("{p} {o}/{q} {d}"));
            }
        }
    }
    Ok(())
}

/// Two words that trade places around a word that stays between them: "can a *manager*
/// fire an *employee*" / "can an *employee* fire a *manager*", "does *billing* depend on
/// *auth*" / "does *auth* depend on *billing*". Who does what to whom changed.
///
/// Moving a clause never does this: when B is A with blocks of words moved ("how do I X in
/// Okta" / "in Okta, how do I X"), each block keeps its order, and a word between two words
/// that changed order in A is on the wrong side of them in B. Words are matched by lemma
/// ("manager" / "managers"), a repeated word by its order of occurrence.
fn swapped_around_pivot(aa: &Analysis, bb: &Analysis) -> Result<(), Rejection> {
    let one_clause = |x: &Analysis, from: usize, to: usize| {
        let (from, to) = (from.min(to), from.max(to));
        !x.boundaries.iter().any(|&b| from < b && b < to)
    };
    let agent = |x: &Analysis, w: &str| x.agents.iter().any(|a| a == w);
    // (position in A, position in B) of each word both prompts have as often: the k-th
    // occurrence in A goes with the k-th in B ("write ... writes")
    let occurrences = |x: &Analysis, w: &Word| -> Vec<usize> {
        x.words
            .iter()
            .filter(|v| v.shares_lemma(w))
            .map(|v| v.at)
            .collect()
    };
    let shared: Vec<(usize, usize, &str)> = aa
        .words
        .iter()
        .filter_map(|w| {
            let (in_a, in_b) = (occurrences(aa, w), occurrences(bb, w));
            let k = in_a.iter().position(|&at| at == w.at)?;
            (in_a.len() == in_b.len()).then(|| (w.at, in_b[k], w.text.as_str()))
        })
        .collect();
    for x in &shared {
        for y in &shared {
            if !(x.0 < y.0 && x.1 > y.1) {
                continue; // x before y in A, after it in B
            }
            if !(one_clause(aa, x.0, y.0) && one_clause(bb, x.1, y.1)) {
                continue; // a role swap happens inside one clause
            }
            // the passive says the same thing: "does Lambda support Python" / "is Python
            // supported by Lambda": one of the two words became or stopped being the agent,
            // and the other did not change (two passives with the agents swapped are a swap)
            let changed = |w: &str| agent(aa, w) != agent(bb, w);
            if changed(x.2) != changed(y.2) {
                continue;
            }
            if let Some(v) = shared
                .iter()
                .find(|v| x.0 < v.0 && v.0 < y.0 && y.1 < v.1 && v.1 < x.1)
            {
                return reject("direction", format!("{} {} {}", x.2, v.2, y.2));
            }
        }
    }
    Ok(())
}

/// Whether `list` (directions or times) has preposition `p` with object `o`.
fn holds(list: &[(&'static str, String)], p: &str, o: &str, wn: &WordNet) -> bool {
    list.iter().any(|(q, d)| *q == p && same_word(d, o, wn))
}

fn opposite(p: &str, q: &str) -> bool {
    let from = |x: &str| x == "from";
    let to = |x: &str| matches!(x, "to" | "into" | "onto" | "toward" | "towards");
    (from(p) && to(q)) || (to(p) && from(q))
}

fn same_word(x: &str, y: &str, wn: &WordNet) -> bool {
    if x == y {
        return true;
    }
    let lx = wn.lemmas(x);
    let ly = wn.lemmas(y);
    lx.iter().any(|(_, a)| ly.iter().any(|(_, b)| a == b)) || is_typo(x, y)
}

fn dedup(words: &mut Vec<Word>) {
    let mut seen: Vec<String> = Vec::new();
    words.retain(|w| {
        if seen.contains(&w.text) {
            false
        } else {
            seen.push(w.text.clone());
            true
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_contractions() {
        assert_eq!(tokens("Don't delete it"), ["do", "n't", "delete", "it"]);
        assert_eq!(
            tokens("I'd like 5 km, please."),
            ["i", "'d", "like", "5", "km", "|", "please"]
        );
    }

    #[test]
    fn typos() {
        assert!(is_typo("refnud", "refund"));
        assert!(is_typo("passwrod", "password"));
        assert!(!is_typo("cat", "car"));
        assert!(!is_typo("select", "delete"));
        assert!(!is_typo("unweighted", "weighted"));
    }

    /// WordNet, loaded once; `None` (the test says it skipped) when it was not fetched.
    fn wn() -> Option<&'static WordNet> {
        static W: std::sync::OnceLock<Option<WordNet>> = std::sync::OnceLock::new();
        W.get_or_init(|| {
            let dir = super::super::wordnet::default_dir();
            // Missing data is a failure, never a skipped test: CI fetches it.
            assert!(
                dir.join("data.noun").is_file(),
                "no WordNet at {} (run models/fetch-wordnet.sh)",
                dir.display()
            );
            Some(WordNet::load(&dir).unwrap())
        })
        .as_ref()
    }

    #[test]
    fn wordnet_rule_rejects_the_issue_examples() {
        let Some(wn) = wn() else { return };
        let class = |a: &str, b: &str| words_compatible(a, b, wn).err().map(|r| r.class);
        assert_eq!(
            class(
                "Write an SQL query to delete all users",
                "Write an SQL query to select all users"
            ),
            Some("substitution")
        );
        assert_eq!(
            class("Is this mushroom poisonous?", "Is this mushroom edible?"),
            Some("antonym")
        );
        assert_eq!(
            class(
                "What is the paracetamol dose for an adult?",
                "What is the paracetamol dose for a child?"
            ),
            Some("substitution")
        );
        assert_eq!(
            class(
                "Convert Celsius to Fahrenheit",
                "Convert Fahrenheit to Celsius"
            ),
            Some("direction")
        );
        assert_eq!(
            class("Delete all inactive users", "Delete some inactive users"),
            Some("scope")
        );
        assert_eq!(
            class("What is the refund policy?", "What was the refund policy?"),
            Some("tense")
        );
        assert_eq!(
            class(
                "What is the baggage allowance?",
                "What is the baggage allowance for an infant?"
            ),
            Some("insertion")
        );
    }

    #[test]
    fn wordnet_rule_accepts_paraphrases() {
        let Some(wn) = wn() else { return };
        for (a, b) in [
            (
                "How do I reset my password?",
                "How do I reset my password, please?",
            ),
            (
                "How do I reset my password?",
                "Could you tell me how to reset my password?",
            ),
            (
                "How big is the largest planet?",
                "How large is the biggest planet?",
            ),
            ("How do I request a refnud?", "How do I request a refund?"),
            (
                "What GPA do I need to keep my scholarship?",
                "What GPA do I need to retain my scholarship?",
            ),
            (
                "Whats the capital of France",
                "What is the capital of France?",
            ),
            (
                "Is it possible to delete an email?",
                "Can I delete an e-mail?",
            ),
        ] {
            assert_eq!(words_compatible(a, b, wn), Ok(()), "{a} / {b}");
            assert_eq!(words_compatible(b, a, wn), Ok(()), "{b} / {a}");
        }
    }

    /// Each structural rule against the pair it exists for, both ways round.
    #[test]
    fn roles_tense_and_time_are_compared() {
        let Some(wn) = wn() else { return };
        let class = |a: &str, b: &str| {
            let there = words_compatible(a, b, wn).err().map(|r| r.class);
            assert_eq!(
                there,
                words_compatible(b, a, wn).err().map(|r| r.class),
                "{a} / {b}"
            );
            there
        };
        for (a, b, expected) in [
            // two words trade places around a verb or an adjective that stays between them
            (
                "Can a manager fire an employee without notice?",
                "Can an employee fire a manager without notice?",
                Some("direction"),
            ),
            (
                "Write a script that reads a JSON file and writes a CSV file.",
                "Write a script that reads a CSV file and writes a JSON file.",
                Some("direction"),
            ),
            (
                "Is the manager paid by the employee?",
                "Is the employee paid by the manager?",
                Some("direction"),
            ),
            // ... but the passive, and a moved clause, say the same thing
            (
                "Does AWS Lambda support Python?",
                "Is Python supported by AWS Lambda?",
                None,
            ),
            (
                "How do I reset my password in Okta?",
                "In Okta, how do I reset my password?",
                None,
            ),
            // a stranded preposition: X moved from its object to the subject
            (
                "Who does the head of marketing report to?",
                "Who reports to the head of marketing?",
                Some("direction"),
            ),
            // one verb in two tenses, and the future with "going to"
            (
                "Which tax rules changed in 2024?",
                "Which tax rules change in 2024?",
                Some("tense"),
            ),
            (
                "What caused the outage?",
                "What could cause the outage?",
                Some("tense"),
            ),
            (
                "What has the bank done about inflation?",
                "What is the bank going to do about inflation?",
                Some("tense"),
            ),
            (
                "Why did the build fail?",
                "Tell me why the build failed.",
                None,
            ),
            (
                "Does my insurance cover damage caused by hail?",
                "Is damage caused by hail covered by my insurance?",
                None,
            ),
            // one thing placed in time by another preposition
            (
                "Can I drink alcohol during the treatment?",
                "Can I drink alcohol after the treatment?",
                Some("date"),
            ),
            (
                "Submit the expense report by Friday.",
                "Submit the expense report after Friday.",
                Some("date"),
            ),
            // a troponym verb is a near-synonym; a hyponym noun is not
            (
                "How do I increase the swap size?",
                "How do I enlarge the swap size?",
                None,
            ),
            (
                "How long can rice stay in the fridge?",
                "How long can rice stay in the freezer?",
                Some("substitution"),
            ),
            // a phrase of its own before the question
            (
                "Is Lisbon bigger than Porto?",
                "Quick question: is Lisbon bigger than Porto?",
                None,
            ),
        ] {
            assert_eq!(class(a, b), expected, "{a} / {b}");
        }
    }
}
