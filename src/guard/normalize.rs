//! Normalising prompt text before matching, with a map back to the original bytes.
//!
//! A [`Fold`] says what a rule's view of a text ignores. Every view applies, per cluster (a
//! starter and the characters that combine with it):
//!
//! 1. removal of ignorable characters ([`is_ignorable`]: general category Cf and
//!    Default_Ignorable_Code_Point, so zero-width spaces and joiners, word joiner, soft hyphen,
//!    BOM, bidi controls, tag characters, variation selectors, Hangul fillers);
//! 2. NFKD (compatibility decomposition: fullwidth `ｓ` → `s`, ligature `ﬁ` → `fi`);
//! 3. with `strip_marks`, removal of combining marks (general category M: Mn, Mc and Me, so
//!    accents, Zalgo stacks, strike-through overlays and enclosing circles);
//! 4. NFC recomposition (so the view is NFKC when marks are kept);
//! 5. with `confusables`, the ASCII skeleton of [`super::confusables`] (non-ASCII look-alikes
//!    to ASCII; ASCII itself is never changed), then, when marks are kept, NFC again (so a kept
//!    mark joins its new ASCII letter: `о` + U+0301 → `ó`).
//!
//! Steps 1-4 are shared by the views with and without step 5 ([`normalize_into`]), and every
//! view is capped in size: NFKC can expand a character up to 18 times, and past the cap (what
//! is left of the request's scan budget) normalising stops with [`TooLarge`].
//!
//! A pure-ASCII text is its own view under every fold (NFKC does not change ASCII, ASCII has
//! no ignorable character and no mark, and the skeleton leaves ASCII alone), so it is never
//! copied. Normalising works cluster by cluster, so a view is not always the NFKC of the whole
//! text (a starter never composes with the previous cluster except where NFC composition would
//! join them, Hangul jamo for one); the point is a deterministic, bounded view in which the
//! known bypasses disappear.
//!
//! The [`OffsetMap`] maps a match in the view back to the original text: a cluster whose view
//! differs from its original bytes is one unit (a match touching part of it covers all of it),
//! unchanged runs map byte for byte, and removed characters are gaps (inside a match they are
//! covered, at its edges they are not).

use unicode_normalization::char::{
    canonical_combining_class, decompose_compatible, is_combining_mark,
};
use unicode_normalization::UnicodeNormalization;

use super::confusables;

/// What a rule's view of a prompt ignores (see module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Fold {
    pub strip_marks: bool,
    pub confusables: bool,
}

/// Characters removed from every view: general category Cf plus Default_Ignorable_Code_Point
/// (Unicode 15). Both are invisible or formatting-only, and a model reads through them.
const IGNORABLE: &[(u32, u32)] = &[
    (0xAD, 0xAD),
    (0x34F, 0x34F),
    (0x600, 0x605),
    (0x61C, 0x61C),
    (0x6DD, 0x6DD),
    (0x70F, 0x70F),
    (0x890, 0x891),
    (0x8E2, 0x8E2),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
];

/// Whether `c` is removed from every view (Cf or default-ignorable).
pub(crate) fn is_ignorable(c: char) -> bool {
    let c = u32::from(c);
    if c < 0xAD {
        return false;
    }
    let i = IGNORABLE.partition_point(|&(_, hi)| hi < c);
    IGNORABLE.get(i).is_some_and(|&(lo, _)| lo <= c)
}

/// Whether `next` belongs to the cluster before it: a mark, another non-starter, or a
/// Hangul vowel or trailing consonant jamo (the only characters outside general category M
/// that NFC composes with a preceding character).
fn continues(next: char) -> bool {
    !next.is_ascii()
        && (canonical_combining_class(next) != 0
            || is_combining_mark(next)
            || ('\u{1161}'..='\u{1175}').contains(&next)
            || ('\u{11a8}'..='\u{11c2}').contains(&next))
}

/// The plain view of a one-character cluster is the character itself when no step changes it.
fn stable(c: char, strip_marks: bool) -> bool {
    if c.is_ascii() {
        return true;
    }
    if is_ignorable(c) || (strip_marks && is_combining_mark(c)) {
        return false;
    }
    let mut same = true;
    decompose_compatible(c, |d| same &= d == c);
    same
}

/// A run of the view and the original bytes it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seg {
    /// Start in the view.
    pub view: usize,
    /// Start in the original.
    pub orig: usize,
    pub view_len: usize,
    pub orig_len: usize,
    /// Byte-for-byte identical (then `view_len == orig_len`); otherwise one indivisible unit.
    pub exact: bool,
}

/// From view offsets back to original offsets. Segments tile the view in order; their
/// original ranges are increasing and disjoint (gaps are removed characters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OffsetMap {
    segs: Vec<Seg>,
    view_len: usize,
    orig_len: usize,
}

impl OffsetMap {
    /// Appends `len` unchanged bytes starting at original offset `orig`.
    pub fn push_exact(&mut self, orig: usize, len: usize) {
        if len == 0 {
            return;
        }
        if let Some(last) = self.segs.last_mut() {
            if last.exact && last.orig + last.orig_len == orig {
                last.view_len += len;
                last.orig_len += len;
                self.view_len += len;
                self.orig_len = orig + len;
                return;
            }
        }
        self.segs.push(Seg {
            view: self.view_len,
            orig,
            view_len: len,
            orig_len: len,
            exact: true,
        });
        self.view_len += len;
        self.orig_len = orig + len;
    }

    /// Appends `view_len` view bytes made from the original `orig..orig + orig_len`.
    pub fn push_unit(&mut self, orig: usize, orig_len: usize, view_len: usize) {
        if view_len == 0 {
            return;
        }
        self.segs.push(Seg {
            view: self.view_len,
            orig,
            view_len,
            orig_len,
            exact: false,
        });
        self.view_len += view_len;
        self.orig_len = orig + orig_len;
    }

    /// Declares the original text's length (trailing removed characters).
    pub fn set_orig_len(&mut self, len: usize) {
        self.orig_len = self.orig_len.max(len);
    }

    #[cfg(test)]
    pub fn view_len(&self) -> usize {
        self.view_len
    }

    #[cfg(test)]
    pub fn orig_len(&self) -> usize {
        self.orig_len
    }

    #[cfg(test)]
    pub fn segs(&self) -> &[Seg] {
        &self.segs
    }

    fn seg_containing(&self, v: usize) -> Option<&Seg> {
        let i = self.segs.partition_point(|s| s.view + s.view_len <= v);
        self.segs.get(i)
    }

    /// Original offset of a match starting at view offset `v`.
    pub fn start(&self, v: usize) -> usize {
        match self.seg_containing(v) {
            None => self.orig_len,
            Some(s) if s.exact => s.orig + (v - s.view),
            Some(s) => s.orig,
        }
    }

    /// Original offset of a match ending at view offset `v` (exclusive).
    pub fn end(&self, v: usize) -> usize {
        if v == 0 {
            return self.segs.first().map_or(0, |s| s.orig);
        }
        match self.seg_containing(v - 1) {
            None => self.orig_len,
            Some(s) if s.exact => s.orig + (v - s.view),
            Some(s) => s.orig + s.orig_len,
        }
    }
}

/// A text's view under one fold and the map back to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Normalized {
    pub text: String,
    pub map: OffsetMap,
}

/// The view grew past the bytes the caller could pay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

/// The view of `text` under `fold`, or `None` when it is `text` itself.
#[cfg(test)]
pub(crate) fn normalize(
    text: &str,
    fold: Fold,
    cap: usize,
) -> Result<Option<Normalized>, TooLarge> {
    let k = usize::from(fold.confusables);
    let mut outs: [Option<Out>; 2] = [None, None];
    outs[k] = Some(Out::default());
    normalize_into(text, 0, fold.strip_marks, &mut outs, cap)?;
    Ok(outs[k].take().and_then(|o| o.finish(text.len())))
}

/// A view being built: its text, the map back to the original, and whether it differs.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub text: String,
    pub map: OffsetMap,
    pub changed: bool,
}

impl Out {
    pub fn with_capacity(bytes: usize) -> Self {
        Out {
            text: String::with_capacity(bytes),
            ..Out::default()
        }
    }

    /// Appends original text that the view keeps as it is.
    pub fn exact(&mut self, start: usize, orig: &str) {
        self.text.push_str(orig);
        self.map.push_exact(start, orig.len());
    }

    fn emit(&mut self, start: usize, orig: &str, produced: &str) {
        if produced == orig {
            self.exact(start, orig);
        } else {
            self.text.push_str(produced);
            self.changed = true;
            self.map.push_unit(start, orig.len(), produced.len());
        }
    }

    /// The view of an original text of `len` bytes; `None` when it is that text itself.
    pub fn finish(mut self, len: usize) -> Option<Normalized> {
        self.map.set_orig_len(len);
        self.changed.then_some(Normalized {
            text: self.text,
            map: self.map,
        })
    }
}

/// Appends the views of `text` (found at offset `base` of the original) with marks stripped
/// (or kept) to `outs`: `outs[0]` the view without the skeleton, `outs[1]` with it (each when
/// present). Together the views may not exceed `cap` bytes (NFKC can expand a character up to
/// 18 times): past it, [`TooLarge`].
///
/// The skeleton view is the plain view with the table applied to each character; with marks
/// kept, each changed cluster is recomposed again, so a kept mark joins its new ASCII letter
/// (`о` + U+0301 → `ó`) and normalising a view again changes nothing.
pub(crate) fn normalize_into(
    text: &str,
    base: usize,
    strip_marks: bool,
    outs: &mut [Option<Out>; 2],
    cap: usize,
) -> Result<(), TooLarge> {
    let size =
        |outs: &[Option<Out>; 2]| -> usize { outs.iter().flatten().map(|o| o.text.len()).sum() };
    if text.is_ascii() {
        for out in outs.iter_mut().flatten() {
            out.exact(base, text);
        }
        return if size(outs) > cap {
            Err(TooLarge)
        } else {
            Ok(())
        };
    }
    let bytes = text.as_bytes();
    let mut plain_buf = String::new();
    let mut mapped = String::new();
    let mut i = 0;
    while i < text.len() {
        // An ASCII run is its own view, except its last character, which may take marks.
        let run_end = bytes[i..]
            .iter()
            .position(|b| !b.is_ascii())
            .map_or(text.len(), |r| i + r);
        let exact_end = if run_end < text.len() {
            run_end.saturating_sub(1).max(i)
        } else {
            run_end
        };
        if exact_end > i {
            for out in outs.iter_mut().flatten() {
                out.exact(base + i, &text[i..exact_end]);
            }
            i = exact_end;
            if size(outs) > cap {
                return Err(TooLarge);
            }
            continue;
        }
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        if is_ignorable(c) {
            for out in outs.iter_mut().flatten() {
                out.changed = true;
            }
            i += c.len_utf8();
            continue;
        }
        // The cluster: `c`, then marks / composing characters, possibly with ignorable
        // characters between them; trailing ignorables are left to the loop (gaps).
        let start = i;
        let mut j = i + c.len_utf8();
        let mut end = j;
        while let Some(d) = text[j..].chars().next() {
            if is_ignorable(d) {
                j += d.len_utf8();
            } else if continues(d) {
                j += d.len_utf8();
                end = j;
            } else {
                break;
            }
        }
        let cluster = &text[start..end];
        i = end;
        // Steps 1-4 of the module docs.
        let plain: &str = if end - start == c.len_utf8() && stable(c, strip_marks) {
            cluster
        } else {
            plain_buf.clear();
            plain_buf.extend(
                cluster
                    .chars()
                    .filter(|&c| !is_ignorable(c))
                    .nfkd()
                    .filter(|&c| !(is_ignorable(c) || (strip_marks && is_combining_mark(c))))
                    .nfc(),
            );
            &plain_buf
        };
        let [first, second] = outs;
        if let Some(out) = first {
            out.emit(base + start, cluster, plain);
        }
        if let Some(out) = second {
            // Step 5.
            if plain.chars().any(|c| confusables::prototype(c).is_some()) {
                mapped.clear();
                for c in plain.chars() {
                    match confusables::prototype(c) {
                        Some(ascii) => mapped.push_str(ascii),
                        None => mapped.push(c),
                    }
                }
                if !strip_marks {
                    let recomposed: String = mapped.nfc().collect();
                    mapped = recomposed;
                }
                out.emit(base + start, cluster, &mapped);
            } else {
                out.emit(base + start, cluster, plain);
            }
        }
        if size(outs) > cap {
            return Err(TooLarge);
        }
    }
    Ok(())
}

/// Whether a user pattern's text names a character that `pred` holds for: literally (after
/// NFD, so a precomposed `é` names U+0301), or through an escape or class of the parsed
/// pattern (`\u{301}`, `[\u{300}-\u{36f}]`, `\p{Mn}`). A class counts when all its members
/// satisfy `pred`, or when it is small (at most 64 characters, like the case variants of a
/// letter) and one does; `.` and `\w`, which contain marks among much else, do not.
pub(crate) fn pattern_names(
    pattern: &str,
    hir: Option<&regex_syntax::hir::Hir>,
    pred: fn(char) -> bool,
) -> bool {
    if pattern.chars().nfd().any(pred) {
        return true;
    }
    hir.is_some_and(|h| hir_names(h, pred))
}

fn hir_names(hir: &regex_syntax::hir::Hir, pred: fn(char) -> bool) -> bool {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(lit) => String::from_utf8_lossy(&lit.0).chars().nfd().any(pred),
        HirKind::Class(Class::Bytes(_)) => false,
        HirKind::Class(Class::Unicode(class)) => {
            let members = || class.iter().flat_map(|r| r.start()..=r.end());
            let small = class
                .iter()
                .try_fold(0usize, |n, r| {
                    let n = n + (u32::from(r.end()) - u32::from(r.start())) as usize + 1;
                    (n <= 64).then_some(n)
                })
                .is_some();
            if small {
                members().any(|c| c.to_string().nfd().any(pred))
            } else {
                members().all(pred)
            }
        }
        HirKind::Repetition(rep) => hir_names(&rep.sub, pred),
        HirKind::Capture(cap) => hir_names(&cap.sub, pred),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => {
            subs.iter().any(|h| hir_names(h, pred))
        }
    }
}

/// `pred` for [`pattern_names`]: a combining mark.
pub(crate) fn is_mark(c: char) -> bool {
    is_combining_mark(c)
}

/// `pred` for [`pattern_names`]: a character the skeleton replaces (checked after NFKC, as the
/// text is).
pub(crate) fn is_confusable(c: char) -> bool {
    !c.is_ascii()
        && c.to_string()
            .nfkc()
            .any(|d| confusables::prototype(d).is_some())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    const STRIP: Fold = Fold {
        strip_marks: true,
        confusables: false,
    };
    const KEEP: Fold = Fold {
        strip_marks: false,
        confusables: false,
    };
    const SKELETON: Fold = Fold {
        strip_marks: true,
        confusables: true,
    };

    fn view(text: &str, fold: Fold) -> String {
        match normalize(text, fold, usize::MAX).unwrap() {
            Some(n) => n.text,
            None => text.to_string(),
        }
    }

    /// The original text a view range comes from.
    fn origin<'a>(text: &'a str, fold: Fold, needle: &str) -> &'a str {
        let n = normalize(text, fold, usize::MAX).unwrap().unwrap();
        let s = n.text.find(needle).unwrap();
        &text[n.map.start(s)..n.map.end(s + needle.len())]
    }

    #[test]
    fn ascii_is_its_own_view() {
        for fold in [STRIP, KEEP, SKELETON] {
            assert_eq!(
                normalize("plain 0 1 l I rn m", fold, usize::MAX).unwrap(),
                None
            );
        }
    }

    #[test]
    fn invisible_characters_are_removed() {
        for text in [
            "con\u{200b}fidential",
            "confi\u{ad}dential",
            "con\u{200c}fi\u{200d}den\u{2060}tial",
            "\u{feff}confidential\u{202e}",
            "con\u{e0063}fidential",
            "conf\u{fe0f}idential",
        ] {
            assert_eq!(view(text, KEEP), "confidential", "{text:?}");
        }
    }

    #[test]
    fn nfkc_folds_compatibility_forms() {
        assert_eq!(view("ｃｏｎｆｉｄｅｎｔｉａｌ", KEEP), "confidential");
        assert_eq!(view("ﬁle", KEEP), "file");
        assert_eq!(view("①②", KEEP), "12");
        assert_eq!(view("\u{2003}x\u{3000}", KEEP), " x ");
    }

    #[test]
    fn marks_are_stripped_only_when_asked() {
        let zalgo = "c\u{336}o\u{301}\u{316}nfide\u{301}ntial";
        assert_eq!(view(zalgo, STRIP), "confidential");
        assert_eq!(view("confide\u{301}ntial", KEEP), "confidéntial");
        assert_eq!(view("confidéntial", STRIP), "confidential");
        assert_eq!(view("s\u{20dd}e\u{20dd}cret", STRIP), "secret");
        // A mark with an invisible character before it still belongs to its letter.
        assert_eq!(view("e\u{200b}\u{301}", KEEP), "é");
    }

    #[test]
    fn skeleton_maps_look_alikes_to_ascii() {
        // Cyrillic а, е, о, р, с, ѕ; Greek Ο.
        assert_eq!(view("ѕесrеt", SKELETON), "secret");
        assert_eq!(view("bоb@ехаmрlе.соm", SKELETON), "bob@example.com");
        assert_eq!(view("ΟK", SKELETON), "OK");
        assert_eq!(view("ѕесrеt", STRIP), "ѕесrеt");
    }

    #[test]
    fn matches_map_back_to_the_original_bytes() {
        assert_eq!(
            origin("a con\u{200b}fidential b", KEEP, "confidential"),
            "con\u{200b}fidential"
        );
        // Stripped marks of the last letter go with it; an invisible character at the edge
        // does not.
        assert_eq!(
            origin("x secre\u{301}t\u{336} y", STRIP, "secret"),
            "secre\u{301}t\u{336}"
        );
        assert_eq!(origin("\u{200b}secret\u{200b}!", KEEP, "secret"), "secret");
        // Part of an expanded character covers all of it.
        assert_eq!(origin("a ﬁle", KEEP, "ile"), "ﬁle");
        assert_eq!(origin("ｓｅｃｒｅｔ!", KEEP, "cre"), "ｃｒｅ");
    }

    #[test]
    fn offset_map_of_a_mixed_text() {
        let n = normalize("ab\u{200b}cé", STRIP, usize::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(n.text, "abce");
        assert_eq!(
            n.map.segs(),
            &[
                Seg {
                    view: 0,
                    orig: 0,
                    view_len: 2,
                    orig_len: 2,
                    exact: true
                },
                Seg {
                    view: 2,
                    orig: 5,
                    view_len: 1,
                    orig_len: 1,
                    exact: true
                },
                Seg {
                    view: 3,
                    orig: 6,
                    view_len: 1,
                    orig_len: 2,
                    exact: false
                },
            ]
        );
        assert_eq!((n.map.start(2), n.map.end(2)), (5, 2));
        assert_eq!((n.map.start(3), n.map.end(4)), (6, 8));
        assert_eq!(n.map.start(4), 8);
    }

    #[test]
    fn expansion_is_bounded_by_the_cap() {
        let text = "\u{fdfa}".repeat(100);
        assert_eq!(normalize(&text, KEEP, 1000), Err(TooLarge));
        assert!(normalize(&text, KEEP, 4000).unwrap().is_some());
    }

    #[test]
    fn pattern_names_marks_and_confusables() {
        let hir = |p: &str| regex_syntax::parse(p).unwrap();
        let marks = |p: &str| pattern_names(p, Some(&hir(p)), is_mark);
        assert!(marks("café"));
        assert!(marks("cafe\u{301}"));
        assert!(marks(r"cafe\u{301}"));
        assert!(marks(r"[\u{300}-\u{36f}]"));
        assert!(marks(r"\p{Mn}"));
        assert!(!marks(r"(?i)secret\w+."));
        assert!(!marks("(?i)confidential"));
        let conf = |p: &str| pattern_names(p, Some(&hir(p)), is_confusable);
        assert!(conf("секрет"));
        assert!(conf(r"\x{43e}"));
        assert!(!conf("(?i)secret"));
        assert!(!conf("ж{2}"));
    }

    fn arb_text() -> impl Strategy<Value = String> {
        let pieces = prop::collection::vec(
            prop_oneof![
                "[a-z ]{0,4}",
                Just("\u{200b}".to_string()),
                Just("\u{301}".to_string()),
                Just("\u{336}\u{316}".to_string()),
                Just("é".to_string()),
                Just("ﬁ".to_string()),
                Just("\u{fdfa}".to_string()),
                Just("ｓ".to_string()),
                Just("о".to_string()),
                Just("가\u{11a8}".to_string()),
                Just("\u{1100}\u{1161}".to_string()),
                Just("\u{e0041}".to_string()),
                any::<char>().prop_map(String::from),
            ],
            0..24,
        );
        pieces.prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn normalising_never_panics_and_the_map_is_monotone_and_in_bounds(
            text in arb_text(),
            strip in any::<bool>(),
            conf in any::<bool>(),
        ) {
            let fold = Fold { strip_marks: strip, confusables: conf };
            let Some(n) = normalize(&text, fold, usize::MAX).unwrap() else {
                return Ok(());
            };
            prop_assert_eq!(n.map.view_len(), n.text.len());
            prop_assert_eq!(n.map.orig_len(), text.len());
            let bounds: Vec<usize> = (0..=n.text.len()).filter(|&v| n.text.is_char_boundary(v)).collect();
            let mut last = (0, 0);
            for &v in &bounds {
                let (s, e) = (n.map.start(v), n.map.end(v));
                prop_assert!(s <= text.len() && e <= text.len());
                prop_assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
                prop_assert!(s >= last.0 && e >= last.1, "not monotone at {}", v);
                last = (s, e);
            }
            // Every non-empty view range maps to a non-empty, well-ordered original range.
            for (k, &a) in bounds.iter().enumerate() {
                for &b in &bounds[k + 1..] {
                    prop_assert!(n.map.start(a) < n.map.end(b));
                }
            }
            // Normalising the view again changes nothing more (idempotent on what it keeps).
            prop_assert_eq!(view(&n.text, fold), n.text.clone());
        }
    }
}
