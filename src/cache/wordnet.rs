//! Princeton WordNet 3.0, read from its database files into compact in-memory tables, for the
//! semantic cache's word verifier ([`super::verify_words`]).
//!
//! The files (`data.*`, `index.*`, `*.exc` for noun, verb, adj and adv) are fetched and
//! sha256-checked into `models/wordnet/` by `models/fetch-wordnet.sh` from
//! `models/wordnet-manifest.json` (Debian's `wordnet-base` package); they are not committed.
//!
//! What is kept: every lemma with its senses (synsets), every synset with its words, lexicographer
//! file and the pointers the verifier uses (antonym, similar-to, also-see, derivation, pertainym,
//! participle, attribute, hypernym, verb group, entailment, cause); glosses, examples, hyponym
//! and domain pointers are dropped. About 25 MB of text become about 15 MB of tables, loaded in
//! a fraction of a second (see `tests/cache_words.rs` for the measured figures).
//!
//! - [`WordNet::morphy`] lemmatises a word the way WordNet's own `morphy` does: the exception
//!   lists first ("went" -> "go", "children" -> "child", "better" -> "good"), then the
//!   detachment rules (noun `-s -ses -xes -zes -ches -shes -men -ies`, verb `-s -ies -es -ed
//!   -ing`, adj `-er -est`), keeping only forms the index knows for that part of speech.
//! - [`WordNet::relation`] says how two lemmas relate: [`Relation::Synonym`] (a shared synset),
//!   [`Relation::Antonym`] (a direct antonym of some sense, or an indirect one through an
//!   adjective cluster: "poisonous" is similar to "inedible", the antonym of "edible"),
//!   [`Relation::Related`] with the closest [`Link`], or [`Relation::Unrelated`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What the fetch hint says in every load error.
pub const WORDNET_FETCH_HINT: &str =
    "run models/fetch-wordnet.sh (it downloads and verifies the files listed in models/wordnet-manifest.json)";

/// The files read from the WordNet folder.
pub const WORDNET_FILES: [&str; 12] = [
    "data.noun",
    "data.verb",
    "data.adj",
    "data.adv",
    "index.noun",
    "index.verb",
    "index.adj",
    "index.adv",
    "noun.exc",
    "verb.exc",
    "adj.exc",
    "adv.exc",
];

/// A WordNet folder is missing, unreadable or not in the database format.
#[derive(Debug, thiserror::Error)]
#[error("wordnet at {dir}: {reason}; {WORDNET_FETCH_HINT}")]
pub struct WordNetError {
    pub dir: PathBuf,
    pub reason: String,
}

/// Part of speech. Adjective satellites are [`Pos::Adj`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pos {
    Noun = 0,
    Verb = 1,
    Adj = 2,
    Adv = 3,
}

impl Pos {
    pub const ALL: [Pos; 4] = [Pos::Noun, Pos::Verb, Pos::Adj, Pos::Adv];

    fn file(self) -> &'static str {
        match self {
            Pos::Noun => "noun",
            Pos::Verb => "verb",
            Pos::Adj => "adj",
            Pos::Adv => "adv",
        }
    }

    fn from_tag(tag: &str) -> Option<Pos> {
        match tag {
            "n" => Some(Pos::Noun),
            "v" => Some(Pos::Verb),
            "a" | "s" => Some(Pos::Adj),
            "r" => Some(Pos::Adv),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A non-synonym, non-antonym link between two lemmas, closest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// Adjective satellite and its head ("huge" ~ "large").
    SimilarTo,
    /// Morphologically derived ("delete" ~ "deletion").
    Derivation,
    /// Relational adjective or adverb to its base ("dental" ~ "tooth", "quickly" ~ "quick").
    Pertainym,
    /// Adjective participle of a verb ("broken" ~ "break").
    Participle,
    /// Verb senses grouped as similar.
    VerbGroup,
    /// "See also" between adjectives or verbs.
    AlsoSee,
    /// Attribute noun and its adjective values ("heavy" ~ "weight").
    Attribute,
    /// Verb entailment or cause ("snore" -> "sleep", "kill" -> "die").
    Entailment,
    /// One is a direct hypernym of the other ("car" -> "motor vehicle").
    Hypernym,
    /// Two steps of hypernymy, or both derived from one word.
    Indirect,
    /// Sisters: both are direct hyponyms of one synset ("adult" and "juvenile" under "person").
    CoHyponym,
}

/// How two lemmas relate in WordNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// Identical, or sharing a synset.
    Synonym,
    /// A direct or indirect (adjective cluster) antonym of some sense.
    Antonym,
    /// Linked, but not the same meaning.
    Related(Link),
    /// No link found (or a lemma WordNet does not know).
    Unrelated,
}

/// A lemma in the table.
pub type LemmaId = u32;
type SynsetId = u32;

// pointer kinds kept (the order does not matter; `link_of` maps them)
const P_ANTONYM: u8 = 0;
const P_SIMILAR: u8 = 1;
const P_ALSO: u8 = 2;
const P_DERIV: u8 = 3;
const P_PERTAINYM: u8 = 4;
const P_PARTICIPLE: u8 = 5;
const P_ATTRIBUTE: u8 = 6;
const P_HYPERNYM: u8 = 7;
const P_VERBGROUP: u8 = 8;
const P_ENTAIL: u8 = 9;

fn pointer_kind(sym: &str) -> Option<u8> {
    Some(match sym {
        "!" => P_ANTONYM,
        "&" => P_SIMILAR,
        "^" => P_ALSO,
        "+" => P_DERIV,
        "\\" => P_PERTAINYM,
        "<" => P_PARTICIPLE,
        "=" => P_ATTRIBUTE,
        "@" | "@i" => P_HYPERNYM,
        "$" => P_VERBGROUP,
        "*" | ">" => P_ENTAIL,
        _ => return None,
    })
}

fn link_of(kind: u8) -> Option<Link> {
    Some(match kind {
        P_SIMILAR => Link::SimilarTo,
        P_ALSO => Link::AlsoSee,
        P_DERIV => Link::Derivation,
        P_PERTAINYM => Link::Pertainym,
        P_PARTICIPLE => Link::Participle,
        P_ATTRIBUTE => Link::Attribute,
        P_HYPERNYM => Link::Hypernym,
        P_VERBGROUP => Link::VerbGroup,
        P_ENTAIL => Link::Entailment,
        _ => return None,
    })
}

/// One pointer of a synset: 8 bytes.
#[derive(Debug, Clone, Copy)]
struct Ptr {
    target: SynsetId,
    kind: u8,
    /// 1-based word number in the source synset, 0 for a semantic (whole-synset) pointer.
    src: u8,
    /// 1-based word number in the target synset, 0 for a semantic pointer.
    dst: u8,
}

/// WordNet in memory: lemmas, synsets, pointers and exception lists, in flat arrays.
pub struct WordNet {
    lemma_ids: HashMap<Box<str>, LemmaId>,
    lemma_names: Vec<Box<str>>,
    /// Parts of speech the index lists the lemma under (bit per [`Pos`]).
    lemma_pos: Vec<u8>,
    /// Lexicographer file of the lemma's most frequent sense per [`Pos`] (`u8::MAX`: none).
    lemma_first_lexfile: Vec<[u8; 4]>,
    /// `lemma_senses[lemma_sense_start[l]..lemma_sense_start[l + 1]]`: the lemma's synsets, sorted.
    lemma_sense_start: Vec<u32>,
    lemma_senses: Vec<SynsetId>,
    /// Synset words: `synset_words[synset_word_start[s]..synset_word_start[s + 1]]`.
    synset_word_start: Vec<u32>,
    synset_words: Vec<LemmaId>,
    synset_ptr_start: Vec<u32>,
    synset_ptrs: Vec<Ptr>,
    synset_pos: Vec<Pos>,
    /// Lexicographer file number (`lexnames`: 0 adj.all ... 29 verb.body ... 43 verb.weather).
    synset_lexfile: Vec<u8>,
    /// Whether an adjective synset is a cluster head (not a satellite).
    synset_head: Vec<bool>,
    /// Inflected form -> (part of speech, base lemma).
    exceptions: HashMap<Box<str>, Vec<(Pos, LemmaId)>>,
}

impl std::fmt::Debug for WordNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordNet")
            .field("lemmas", &self.lemma_names.len())
            .field("synsets", &self.synset_pos.len())
            .field("pointers", &self.synset_ptrs.len())
            .finish()
    }
}

const NOUN_RULES: &[(&str, &str)] = &[
    ("s", ""),
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
];
const VERB_RULES: &[(&str, &str)] = &[
    ("s", ""),
    ("ies", "y"),
    ("es", "e"),
    ("es", ""),
    ("ed", "e"),
    ("ed", ""),
    ("ing", "e"),
    ("ing", ""),
];
const ADJ_RULES: &[(&str, &str)] = &[("er", ""), ("est", ""), ("er", "e"), ("est", "e")];

fn rules(pos: Pos) -> &'static [(&'static str, &'static str)] {
    match pos {
        Pos::Noun => NOUN_RULES,
        Pos::Verb => VERB_RULES,
        Pos::Adj => ADJ_RULES,
        Pos::Adv => &[],
    }
}

/// A synset while loading: its pointers still name (file, byte offset).
struct RawSynset {
    pos: Pos,
    lexfile: u8,
    head: bool,
    words: Vec<LemmaId>,
    ptrs: Vec<(u8, Pos, u32, u8, u8)>,
}

struct Loader {
    dir: PathBuf,
    lemma_ids: HashMap<Box<str>, LemmaId>,
    lemma_names: Vec<Box<str>>,
}

impl Loader {
    fn err(&self, reason: impl std::fmt::Display) -> WordNetError {
        WordNetError {
            dir: self.dir.clone(),
            reason: reason.to_string(),
        }
    }

    fn read(&self, name: &str) -> Result<String, WordNetError> {
        let bytes =
            std::fs::read(self.dir.join(name)).map_err(|e| self.err(format!("{name}: {e}")))?;
        // WordNet 3.0 is ASCII apart from a few Latin-1 bytes in glosses.
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => e.into_bytes().iter().map(|&b| b as char).collect(),
        })
    }

    fn intern(&mut self, word: &str) -> LemmaId {
        if let Some(&id) = self.lemma_ids.get(word) {
            return id;
        }
        let id = self.lemma_names.len() as LemmaId;
        let boxed: Box<str> = word.into();
        self.lemma_names.push(boxed.clone());
        self.lemma_ids.insert(boxed, id);
        id
    }
}

/// Strips an adjective position marker: "galore(ip)" -> "galore".
fn strip_marker(word: &str) -> &str {
    match word.find('(') {
        Some(i) => &word[..i],
        None => word,
    }
}

impl WordNet {
    /// Reads the WordNet database files from `dir` (see [`WORDNET_FILES`]).
    pub fn load(dir: &Path) -> Result<WordNet, WordNetError> {
        let mut ld = Loader {
            dir: dir.to_path_buf(),
            lemma_ids: HashMap::with_capacity(160_000),
            lemma_names: Vec::with_capacity(160_000),
        };
        if !dir.is_dir() {
            return Err(ld.err("folder not found"));
        }

        // 1. data files: synsets with their words and pointers
        let mut raw: Vec<RawSynset> = Vec::with_capacity(120_000);
        let mut by_offset: HashMap<(Pos, u32), SynsetId> = HashMap::with_capacity(120_000);
        for pos in Pos::ALL {
            let name = format!("data.{}", pos.file());
            let text = ld.read(&name)?;
            for (n, line) in text.lines().enumerate() {
                if line.starts_with("  ") || line.is_empty() {
                    continue; // licence header
                }
                let body = line.split(" | ").next().unwrap_or(line);
                let mut f = body.split_ascii_whitespace();
                let bad = || ld_err(dir, &name, n);
                let offset: u32 = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let lexfile: u8 = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let ss_type = f.next().ok_or_else(bad)?;
                let w_cnt = f
                    .next()
                    .and_then(|s| usize::from_str_radix(s, 16).ok())
                    .ok_or_else(bad)?;
                let mut words = Vec::with_capacity(w_cnt);
                for _ in 0..w_cnt {
                    let w = strip_marker(f.next().ok_or_else(bad)?).to_lowercase();
                    f.next().ok_or_else(bad)?; // lex_id
                    words.push(ld.intern(&w));
                }
                let p_cnt: usize = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let mut ptrs = Vec::new();
                for _ in 0..p_cnt {
                    let sym = f.next().ok_or_else(bad)?;
                    let off: u32 = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                    let tpos = f.next().and_then(Pos::from_tag).ok_or_else(bad)?;
                    let st = f.next().ok_or_else(bad)?;
                    if let Some(kind) = pointer_kind(sym) {
                        let srcdst = u16::from_str_radix(st, 16).map_err(|_| bad())?;
                        ptrs.push((kind, tpos, off, (srcdst >> 8) as u8, (srcdst & 0xff) as u8));
                    }
                }
                by_offset.insert((pos, offset), raw.len() as SynsetId);
                raw.push(RawSynset {
                    pos,
                    lexfile,
                    head: ss_type != "s",
                    words,
                    ptrs,
                });
            }
        }

        // 2. index files: each lemma's senses
        let mut senses: Vec<Vec<SynsetId>> = Vec::new();
        let mut lemma_pos: Vec<u8> = Vec::new();
        let mut first_lexfile: Vec<[u8; 4]> = Vec::new();
        for pos in Pos::ALL {
            let name = format!("index.{}", pos.file());
            let text = ld.read(&name)?;
            for (n, line) in text.lines().enumerate() {
                if line.starts_with("  ") || line.is_empty() {
                    continue;
                }
                let f: Vec<&str> = line.split_ascii_whitespace().collect();
                let bad = || ld_err(dir, &name, n);
                let synset_cnt: usize = f.get(2).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                if f.len() < synset_cnt + 4 {
                    return Err(bad());
                }
                let id = ld.intern(f[0]) as usize;
                if senses.len() <= id {
                    senses.resize_with(id + 1, Vec::new);
                    lemma_pos.resize(id + 1, 0);
                    first_lexfile.resize(id + 1, [u8::MAX; 4]);
                }
                lemma_pos[id] |= pos.bit();
                for off in &f[f.len() - synset_cnt..] {
                    let off: u32 = off.parse().map_err(|_| bad())?;
                    let s = by_offset.get(&(pos, off)).ok_or_else(bad)?;
                    if first_lexfile[id][pos as usize] == u8::MAX {
                        // the index lists senses most frequent first
                        first_lexfile[id][pos as usize] = raw[*s as usize].lexfile;
                    }
                    senses[id].push(*s);
                }
            }
        }
        let n_lemmas = ld.lemma_names.len();
        senses.resize_with(n_lemmas, Vec::new);
        lemma_pos.resize(n_lemmas, 0);
        first_lexfile.resize(n_lemmas, [u8::MAX; 4]);

        // 3. exception lists
        let mut exceptions: HashMap<Box<str>, Vec<(Pos, LemmaId)>> = HashMap::new();
        for pos in Pos::ALL {
            let name = format!("{}.exc", pos.file());
            let text = ld.read(&name)?;
            for line in text.lines() {
                let mut f = line.split_ascii_whitespace();
                let Some(form) = f.next() else { continue };
                for base in f {
                    if let Some(&id) = ld.lemma_ids.get(base) {
                        if lemma_pos[id as usize] & pos.bit() != 0 {
                            let e = exceptions.entry(form.into()).or_default();
                            if !e.contains(&(pos, id)) {
                                e.push((pos, id));
                            }
                        }
                    }
                }
            }
        }
        exceptions.shrink_to_fit();

        // 4. flatten
        let mut wn = WordNet {
            lemma_ids: ld.lemma_ids,
            lemma_names: ld.lemma_names,
            lemma_pos,
            lemma_first_lexfile: first_lexfile,
            lemma_sense_start: Vec::with_capacity(n_lemmas + 1),
            lemma_senses: Vec::new(),
            synset_word_start: Vec::with_capacity(raw.len() + 1),
            synset_words: Vec::new(),
            synset_ptr_start: Vec::with_capacity(raw.len() + 1),
            synset_ptrs: Vec::new(),
            synset_pos: Vec::with_capacity(raw.len()),
            synset_lexfile: Vec::with_capacity(raw.len()),
            synset_head: Vec::with_capacity(raw.len()),
            exceptions,
        };
        wn.lemma_sense_start.push(0);
        for mut s in senses {
            s.sort_unstable();
            s.dedup();
            wn.lemma_senses.extend_from_slice(&s);
            wn.lemma_sense_start.push(wn.lemma_senses.len() as u32);
        }
        wn.synset_word_start.push(0);
        wn.synset_ptr_start.push(0);
        for r in &raw {
            wn.synset_words.extend_from_slice(&r.words);
            wn.synset_word_start.push(wn.synset_words.len() as u32);
            for &(kind, tpos, off, src, dst) in &r.ptrs {
                let target = *by_offset.get(&(tpos, off)).ok_or_else(|| WordNetError {
                    dir: dir.to_path_buf(),
                    reason: format!("pointer to a missing synset {off} ({tpos:?})"),
                })?;
                wn.synset_ptrs.push(Ptr {
                    target,
                    kind,
                    src,
                    dst,
                });
            }
            wn.synset_ptr_start.push(wn.synset_ptrs.len() as u32);
            wn.synset_pos.push(r.pos);
            wn.synset_lexfile.push(r.lexfile);
            wn.synset_head.push(r.head);
        }
        wn.lemma_senses.shrink_to_fit();
        wn.synset_words.shrink_to_fit();
        wn.synset_ptrs.shrink_to_fit();
        if wn.synset_pos.len() < 1000 || wn.lemma_names.len() < 1000 {
            return Err(WordNetError {
                dir: dir.to_path_buf(),
                reason: format!(
                    "only {} synsets and {} lemmas: not a WordNet database",
                    wn.synset_pos.len(),
                    wn.lemma_names.len()
                ),
            });
        }
        Ok(wn)
    }

    /// Number of lemmas, synsets and kept pointers.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.lemma_names.len(),
            self.synset_pos.len(),
            self.synset_ptrs.len(),
        )
    }

    /// An estimate of the heap bytes held (tables, strings, hash maps).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let strings: usize = self.lemma_names.iter().map(|s| s.len()).sum();
        let map_entry = size_of::<Box<str>>() + size_of::<LemmaId>() + 1;
        let exc: usize = self
            .exceptions
            .iter()
            .map(|(k, v)| k.len() + v.capacity() * size_of::<(Pos, LemmaId)>() + 48)
            .sum();
        // names are stored twice (the id map's key and the name table)
        2 * strings
            + self.lemma_ids.capacity() * map_entry
            + self.lemma_names.capacity() * size_of::<Box<str>>()
            + self.lemma_pos.capacity()
            + self.lemma_first_lexfile.capacity() * 4
            + self.lemma_sense_start.capacity() * 4
            + self.lemma_senses.capacity() * 4
            + self.synset_word_start.capacity() * 4
            + self.synset_words.capacity() * 4
            + self.synset_ptr_start.capacity() * 4
            + self.synset_ptrs.capacity() * size_of::<Ptr>()
            + self.synset_pos.capacity()
            + self.synset_lexfile.capacity()
            + self.synset_head.capacity()
            + exc
    }

    /// The lemma's id, when WordNet lists it (lower case, `_` between words of a collocation).
    pub fn lemma_id(&self, lemma: &str) -> Option<LemmaId> {
        self.lemma_ids.get(lemma).copied()
    }

    /// The lemma's text.
    pub fn name(&self, id: LemmaId) -> &str {
        self.lemma_names.get(id as usize).map_or("", |s| s)
    }

    /// Whether the index lists the lemma under `pos`.
    pub fn has_pos(&self, id: LemmaId, pos: Pos) -> bool {
        self.lemma_pos
            .get(id as usize)
            .is_some_and(|p| p & pos.bit() != 0)
    }

    fn senses(&self, id: LemmaId) -> &[SynsetId] {
        let i = id as usize;
        match (
            self.lemma_sense_start.get(i),
            self.lemma_sense_start.get(i + 1),
        ) {
            (Some(&a), Some(&b)) => &self.lemma_senses[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Number of senses of the lemma under `pos` (0 when it is not that part of speech).
    pub fn sense_count(&self, id: LemmaId, pos: Pos) -> usize {
        self.senses(id)
            .iter()
            .filter(|&&s| self.synset_pos[s as usize] == pos)
            .count()
    }

    /// Lexicographer file (0..=44, WordNet's `lexnames`) of the lemma's most frequent sense
    /// under `pos`.
    pub fn first_lexfile(&self, id: LemmaId, pos: Pos) -> Option<u8> {
        self.lemma_first_lexfile
            .get(id as usize)
            .map(|f| f[pos as usize])
            .filter(|&f| f != u8::MAX)
    }

    /// Lexicographer files (0..=44, see WordNet's `lexnames`) of the lemma's senses under `pos`,
    /// most frequent sense first (the index lists senses by frequency, but they are stored
    /// sorted, so this is a set).
    pub fn lexfiles(&self, id: LemmaId, pos: Pos) -> Vec<u8> {
        let mut v: Vec<u8> = self
            .senses(id)
            .iter()
            .filter(|&&s| self.synset_pos[s as usize] == pos)
            .map(|&s| self.synset_lexfile[s as usize])
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn words(&self, s: SynsetId) -> &[LemmaId] {
        let i = s as usize;
        &self.synset_words
            [self.synset_word_start[i] as usize..self.synset_word_start[i + 1] as usize]
    }

    fn ptrs(&self, s: SynsetId) -> &[Ptr] {
        let i = s as usize;
        &self.synset_ptrs[self.synset_ptr_start[i] as usize..self.synset_ptr_start[i + 1] as usize]
    }

    /// WordNet's `morphy`: the base forms of `word` under `pos` that the index knows.
    pub fn morphy(&self, word: &str, pos: Pos) -> Vec<LemmaId> {
        let mut out: Vec<LemmaId> = Vec::new();
        let push = |id: LemmaId, out: &mut Vec<LemmaId>| {
            if !out.contains(&id) {
                out.push(id);
            }
        };
        if let Some(bases) = self.exceptions.get(word) {
            for &(p, id) in bases {
                if p == pos {
                    push(id, &mut out);
                }
            }
        }
        if let Some(id) = self.lemma_id(word) {
            if self.has_pos(id, pos) {
                push(id, &mut out);
            }
        }
        for &(suffix, ending) in rules(pos) {
            if let Some(stem) = word.strip_suffix(suffix) {
                if stem.is_empty() {
                    continue;
                }
                let form = format!("{stem}{ending}");
                if let Some(id) = self.lemma_id(&form) {
                    if self.has_pos(id, pos) {
                        push(id, &mut out);
                    }
                }
            }
        }
        out
    }

    /// Every (part of speech, lemma) that `word` can be an inflection of.
    pub fn lemmas(&self, word: &str) -> Vec<(Pos, LemmaId)> {
        let w = word.to_lowercase();
        let mut out = Vec::new();
        for pos in Pos::ALL {
            for id in self.morphy(&w, pos) {
                out.push((pos, id));
            }
        }
        out
    }

    /// How lemma `a` relates to lemma `b` (text, any part of speech).
    pub fn relation(&self, a: &str, b: &str) -> Relation {
        if a == b {
            return Relation::Synonym;
        }
        match (self.lemma_id(a), self.lemma_id(b)) {
            (Some(x), Some(y)) => self.relation_ids(x, y),
            _ => Relation::Unrelated,
        }
    }

    /// How two lemmas relate: antonymy wins over everything (a sense that is opposite is enough
    /// to refuse), then synonymy, then the closest [`Link`].
    pub fn relation_ids(&self, a: LemmaId, b: LemmaId) -> Relation {
        if a == b {
            return Relation::Synonym;
        }
        let sa = self.senses(a);
        let sb = self.senses(b);
        if self.antonyms(a, sa, b, sb) || self.antonyms(b, sb, a, sa) {
            return Relation::Antonym;
        }
        if sa.iter().any(|s| sb.binary_search(s).is_ok()) {
            return Relation::Synonym;
        }
        let mut best: Option<Link> = None;
        let mut note = |l: Link| {
            if best.is_none_or(|b| l < b) {
                best = Some(l);
            }
        };
        // one pointer apart, either way
        for (from, to) in [(sa, sb), (sb, sa)] {
            for &s in from {
                for p in self.ptrs(s) {
                    if to.binary_search(&p.target).is_ok() {
                        if let Some(l) = link_of(p.kind) {
                            note(l);
                        }
                    }
                }
            }
        }
        if let Some(l) = best {
            return Relation::Related(l);
        }
        // two steps: a shared hypernym (sisters), a hypernym of a hypernym, or a word that both
        // derive from
        let ups = |ss: &[SynsetId]| -> Vec<SynsetId> {
            let mut v: Vec<SynsetId> = ss
                .iter()
                .flat_map(|&s| self.ptrs(s).iter())
                .filter(|p| p.kind == P_HYPERNYM)
                .map(|p| p.target)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let (ua, ub) = (ups(sa), ups(sb));
        if ua.iter().any(|s| sb.binary_search(s).is_ok())
            || ub.iter().any(|s| sa.binary_search(s).is_ok())
        {
            // already covered one step; kept for clarity
            return Relation::Related(Link::Hypernym);
        }
        let two_up = |u: &[SynsetId], other: &[SynsetId]| {
            u.iter().any(|&s| {
                self.ptrs(s)
                    .iter()
                    .any(|p| p.kind == P_HYPERNYM && other.binary_search(&p.target).is_ok())
            })
        };
        let deriv_targets = |ss: &[SynsetId]| -> Vec<SynsetId> {
            let mut v: Vec<SynsetId> = ss
                .iter()
                .flat_map(|&s| self.ptrs(s).iter())
                .filter(|p| matches!(p.kind, P_DERIV | P_PERTAINYM | P_PARTICIPLE))
                .map(|p| p.target)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let (da, db) = (deriv_targets(sa), deriv_targets(sb));
        if two_up(&ua, sb) || two_up(&ub, sa) || da.iter().any(|s| db.binary_search(s).is_ok()) {
            return Relation::Related(Link::Indirect);
        }
        if ua.iter().any(|s| ub.binary_search(s).is_ok()) {
            return Relation::Related(Link::CoHyponym);
        }
        Relation::Unrelated
    }

    /// Whether some sense of `a` is an antonym of some sense of `b`: directly (a lexical
    /// antonym pointer from `a`'s word), through an adjective cluster (a satellite of `a`'s
    /// head is opposite to the cluster `b` is in), or through derivation ("increase" the noun
    /// and "decrease" the verb).
    fn antonyms(&self, a: LemmaId, sa: &[SynsetId], b: LemmaId, sb: &[SynsetId]) -> bool {
        for &s in sa {
            let pos_in_s = self
                .words(s)
                .iter()
                .position(|&w| w == a)
                .map(|i| i as u8 + 1);
            // the cluster heads this sense belongs to
            let mut heads: Vec<SynsetId> = Vec::new();
            if self.synset_head[s as usize] {
                heads.push(s);
            }
            for p in self.ptrs(s) {
                if p.kind == P_SIMILAR && self.synset_head[p.target as usize] {
                    heads.push(p.target);
                }
            }
            for p in self.ptrs(s) {
                if p.kind == P_ANTONYM && (p.src == 0 || Some(p.src) == pos_in_s) {
                    let t = p.target;
                    let direct = if p.dst == 0 {
                        sb.binary_search(&t).is_ok()
                    } else {
                        self.words(t).get(p.dst as usize - 1) == Some(&b)
                    };
                    if direct {
                        return true;
                    }
                }
            }
            // indirect (adjective clusters): any antonym of a head, and that antonym's satellites
            if self.synset_pos[s as usize] == Pos::Adj {
                for &h in &heads {
                    for p in self.ptrs(h) {
                        if p.kind != P_ANTONYM {
                            continue;
                        }
                        let t = p.target;
                        if sb.binary_search(&t).is_ok() {
                            return true;
                        }
                        if self
                            .ptrs(t)
                            .iter()
                            .any(|q| q.kind == P_SIMILAR && sb.binary_search(&q.target).is_ok())
                        {
                            return true;
                        }
                    }
                }
            }
        }
        false
    }
}

fn ld_err(dir: &Path, name: &str, line: usize) -> WordNetError {
    WordNetError {
        dir: dir.to_path_buf(),
        reason: format!(
            "{name}: line {} is not in the WordNet database format",
            line + 1
        ),
    }
}

/// `AIRGATE_WORDNET_DIR`, or `models/wordnet` under the crate (filled by
/// `models/fetch-wordnet.sh`).
pub fn default_dir() -> PathBuf {
    std::env::var_os("AIRGATE_WORDNET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/wordnet"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// The database, loaded once; `None` (tests skip with a message) when it was not fetched.
    fn wn() -> Option<&'static WordNet> {
        static W: OnceLock<Option<WordNet>> = OnceLock::new();
        W.get_or_init(|| {
            let dir = default_dir();
            // Missing data is a failure, never a skipped test: CI fetches it.
            assert!(
                dir.join("data.noun").is_file(),
                "no WordNet at {} ({WORDNET_FETCH_HINT})",
                dir.display()
            );
            let t = std::time::Instant::now();
            let w = WordNet::load(&dir).unwrap();
            let (l, s, p) = w.counts();
            eprintln!(
                "wordnet: {l} lemmas, {s} synsets, {p} pointers, ~{:.1} MB of tables, loaded in {:?}",
                w.heap_bytes() as f64 / 1e6,
                t.elapsed()
            );
            Some(w)
        })
        .as_ref()
    }

    fn lemmas(w: &WordNet, word: &str, pos: Pos) -> Vec<String> {
        w.morphy(word, pos)
            .into_iter()
            .map(|id| w.name(id).to_string())
            .collect()
    }

    #[test]
    fn wordnet_morphy_uses_exceptions_and_rules() {
        let Some(w) = wn() else { return };
        assert_eq!(lemmas(w, "went", Pos::Verb), ["go"]);
        assert_eq!(lemmas(w, "children", Pos::Noun), ["child"]);
        assert!(lemmas(w, "better", Pos::Adj).contains(&"good".to_string()));
        assert_eq!(lemmas(w, "users", Pos::Noun), ["user"]);
        assert_eq!(lemmas(w, "boxes", Pos::Noun), ["box"]);
        assert_eq!(lemmas(w, "policies", Pos::Noun), ["policy"]);
        assert_eq!(lemmas(w, "deleting", Pos::Verb), ["delete"]);
        assert!(lemmas(w, "resetting", Pos::Verb).contains(&"reset".to_string()));
        assert_eq!(lemmas(w, "selected", Pos::Verb), ["select"]);
        assert!(lemmas(w, "larger", Pos::Adj).contains(&"large".to_string()));
        assert!(lemmas(w, "xyzzyq", Pos::Noun).is_empty());
        let all = w.lemmas("Mice");
        assert!(all
            .iter()
            .any(|&(p, id)| p == Pos::Noun && w.name(id) == "mouse"));
    }

    #[test]
    fn wordnet_relations() {
        let Some(w) = wn() else { return };
        use Relation::*;
        assert_eq!(w.relation("big", "large"), Synonym);
        assert_eq!(w.relation("car", "automobile"), Synonym);
        assert_eq!(w.relation("edible", "inedible"), Antonym);
        assert_eq!(
            w.relation("edible", "poisonous"),
            Antonym,
            "through the cluster of inedible"
        );
        assert_eq!(w.relation("increase", "decrease"), Antonym);
        assert_eq!(w.relation("hot", "cold"), Antonym);
        assert_eq!(w.relation("huge", "small"), Antonym, "satellite of large");
        assert_eq!(w.relation("delete", "deletion"), Related(Link::Derivation));
        assert_eq!(w.relation("huge", "large"), Related(Link::SimilarTo));
        assert_ne!(w.relation("delete", "select"), Synonym);
        assert_ne!(w.relation("adult", "child"), Synonym);
        assert_eq!(w.relation("xyzzyq", "car"), Unrelated);
        // symmetric
        for (a, b) in [
            ("edible", "poisonous"),
            ("huge", "large"),
            ("adult", "child"),
            ("dog", "cat"),
        ] {
            assert_eq!(w.relation(a, b), w.relation(b, a), "{a} {b}");
        }
        eprintln!(
            "delete/select {:?}, adult/child {:?}, dog/cat {:?}, dog/animal {:?}",
            w.relation("delete", "select"),
            w.relation("adult", "child"),
            w.relation("dog", "cat"),
            w.relation("dog", "animal")
        );
    }

    #[test]
    fn wordnet_missing_folder_says_how_to_fetch() {
        let err = WordNet::load(Path::new("/nonexistent/airgate-wordnet")).unwrap_err();
        assert!(err.to_string().contains("fetch-wordnet.sh"), "{err}");
    }
}
