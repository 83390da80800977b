//! Tests of [`PatternSet::scan_prompt`]: normalised views, seams, redaction mapped back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use proptest::prelude::*;

fn blk(p: &str) -> RuleSpec {
    RuleSpec::from_regex(p, Action::Block)
}
fn red(p: &str) -> RuleSpec {
    RuleSpec::from_regex(p, Action::Redact)
}
fn alw(p: &str) -> RuleSpec {
    RuleSpec::from_regex(p, Action::Allow)
}
fn det(name: &str, action: Action) -> RuleSpec {
    RuleSpec::from_detector(name, action)
}

fn compile(block: &[RuleSpec], allow: &[RuleSpec]) -> PatternSet {
    PatternSet::compile(block, allow, GuardLimits::default()).unwrap()
}

fn prompt(texts: &[(&str, TextKind)]) -> Prompt {
    let mut p = Prompt::new();
    for (t, k) in texts {
        p.push(t, *k);
    }
    p
}

fn prose(texts: &[&str]) -> Prompt {
    prompt(
        &texts
            .iter()
            .map(|t| (*t, TextKind::Prose))
            .collect::<Vec<_>>(),
    )
}

fn run(set: &PatternSet, p: &Prompt) -> PromptOutcome {
    set.scan_prompt(p, &mut set.budget())
}

fn blocked(set: &PatternSet, p: &Prompt) -> bool {
    match run(set, p) {
        PromptOutcome::Violation { .. } => true,
        PromptOutcome::Clean { .. } => false,
        f @ PromptOutcome::Failed { .. } => panic!("unexpected {f:?}"),
    }
}

fn redacted(set: &PatternSet, p: &Prompt) -> Vec<(usize, String)> {
    match run(set, p) {
        PromptOutcome::Clean { redacted, .. } => redacted,
        other => panic!("unexpected {other:?}"),
    }
}

fn secrets() -> PatternSet {
    compile(&[blk("(?i)confidential")], &[])
}

#[test]
fn invisible_and_compatibility_characters_do_not_hide_a_word() {
    let set = secrets();
    for text in [
        "a con\u{200b}fidential memo",
        "a confi\u{ad}dential memo",
        "a ｃｏｎｆｉｄｅｎｔｉａｌ memo",
        "a c\u{336}o\u{336}n\u{336}fidential memo",
        "a confide\u{301}ntial memo",
        "a confidéntial memo",
        "a con\u{2060}fi\u{feff}den\u{e0020}tial memo",
    ] {
        assert!(blocked(&set, &prose(&[text])), "{text:?}");
    }
    assert!(!blocked(&set, &prose(&["a confident dial"])));
}

#[test]
fn a_pattern_with_marks_matches_the_text_with_marks_kept() {
    let set = compile(&[blk("(?i)résumé")], &[]);
    assert!(blocked(&set, &prose(&["my résumé"])));
    assert!(blocked(&set, &prose(&["my re\u{301}sume\u{301}"])));
    assert!(!blocked(&set, &prose(&["my resume"])));
    // Without marks in the pattern, the accented form matches too.
    let set = compile(&[blk("(?i)naive")], &[]);
    assert!(blocked(&set, &prose(&["a naïve plan"])));
}

#[test]
fn detectors_see_look_alikes_and_user_patterns_only_when_switched_on() {
    let set = compile(&[det("email", Action::Block)], &[]);
    // Cyrillic о, е, а, с in an address.
    assert!(blocked(&set, &prose(&["mail bоb@ехаmple.cоm today"])));
    let keys = compile(&[det("secret_key", Action::Block)], &[]);
    assert!(blocked(
        &keys,
        &prose(&["key ѕk-рrојАbcdefghijklmnopqrstuvwx"])
    ));
    let off = compile(&[blk("(?i)secret")], &[]);
    let on = compile(&[blk("(?i)secret")], &[]).match_confusables(true);
    let spoofed = prose(&["the ѕеcrеt plan"]);
    assert!(!blocked(&off, &spoofed));
    assert!(blocked(&on, &spoofed));
    // A pattern written with look-alike letters keeps matching them with the switch on.
    let cyrillic = compile(&[blk("секрет")], &[]).match_confusables(true);
    assert!(blocked(&cyrillic, &prose(&["это секрет"])));
}

#[test]
fn digits_and_ascii_are_never_remapped() {
    // UTS #39 maps 0 → O and 1 → l; the skeleton here leaves ASCII alone, so a card number
    // stays digits and ASCII look-alikes do not match each other.
    let set =
        compile(&[det("credit_card", Action::Block), blk("modern")], &[]).match_confusables(true);
    assert!(blocked(&set, &prose(&["card 4111 1111 1111 1111 é"])));
    assert!(!blocked(&set, &prose(&["rnodern art, é"])));
}

#[test]
fn redaction_replaces_the_original_span_only() {
    let set = compile(
        &[red("(?i)confidential"), det("email", Action::Redact)],
        &[],
    );
    let p = prose(&["keep ｃｏｎ\u{200b}ｆｉｄｅｎｔｉａｌ and ｘ, mail bоb@example.com ok"]);
    assert_eq!(
        redacted(&set, &p),
        [(0, "keep [REDACTED] and ｘ, mail [REDACTED] ok".to_string())]
    );
    // Nothing changes where nothing matched.
    let clean = prose(&["Grüße aus Zürich ❤\u{fe0f}"]);
    assert_eq!(redacted(&set, &clean), []);
}

#[test]
fn a_word_split_over_texts_is_found() {
    let set = secrets();
    assert!(blocked(&set, &prose(&["the confi", "dential memo"])));
    assert!(blocked(&set, &prose(&["con", "fiden", "tial"])));
    assert!(blocked(&set, &prose(&["confi", "", "\u{200b}", "dential"])));
    // Other fields between two pieces of running text do not separate them.
    let p = prompt(&[
        ("the confi", TextKind::Prose),
        ("tool_name", TextKind::Field),
        ("dential memo", TextKind::Prose),
    ]);
    assert!(blocked(&set, &p));
    // Fields are not joined with each other.
    let p = prompt(&[("confi", TextKind::Field), ("dential", TextKind::Field)]);
    assert!(!blocked(&set, &p));
    let email = compile(&[det("email", Action::Block)], &[]);
    assert!(blocked(&email, &prose(&["write to bob@", "example.com"])));
}

#[test]
fn a_seam_next_to_whitespace_stays_a_line_break() {
    let set = compile(&[blk(r"(?i)\bproject falcon\b"), blk(r"(?i)\bssn\b")], &[]);
    assert!(!blocked(
        &set,
        &prose(&["we closed the project ", "falcon is a bird"])
    ));
    assert!(!blocked(
        &set,
        &prose(&["we closed the project", " falcon"])
    ));
    // Joined words do not make a `\b` word out of their halves.
    assert!(!blocked(
        &set,
        &prose(&["help with my business", "Nice question"])
    ));
    // A whole word at the start of the next text still matches (the main pass keeps it
    // apart).
    let word = compile(&[blk(r"(?i)\bsecret\b")], &[]);
    assert!(blocked(&word, &prose(&["tell me the", "secret"])));
}

#[test]
fn a_redaction_across_a_seam_redacts_both_sides() {
    let set = compile(&[red("(?i)confidential")], &[]);
    assert_eq!(
        redacted(&set, &prose(&["it is confi", "dential, ok"])),
        [
            (0, "it is [REDACTED]".to_string()),
            (1, "[REDACTED], ok".to_string())
        ]
    );
}

#[test]
fn allow_rules_see_normalised_text_too() {
    let set = compile(&[blk("(?i)secret")], &[alw("(?i)secret santa")]);
    assert!(!blocked(&set, &prose(&["plan the sécret\u{200b} santa"])));
    assert!(blocked(&set, &prose(&["the sécret plan"])));
}

#[test]
fn findings_are_offsets_in_the_joined_text_and_carry_no_text() {
    let set = secrets();
    let p = prose(&["hello", "a con\u{200b}fidential memo"]);
    let PromptOutcome::Violation { finding } = run(&set, &p) else {
        panic!()
    };
    assert_eq!(
        &p.joined()[finding.start..finding.end],
        "con\u{200b}fidential"
    );
}

#[test]
fn expansion_is_charged_and_bounded() {
    let set = secrets();
    let limits = GuardLimits {
        max_scan_bytes_per_request: 4096,
        ..GuardLimits::default()
    };
    let text = "\u{fdfa}".repeat(300); // 900 bytes, 9,900 once NFKC-expanded
    let mut budget = ScanBudget::new(limits);
    assert_eq!(
        set.scan_prompt(&prose(&[&text]), &mut budget),
        PromptOutcome::Failed {
            rule: "*".into(),
            reason: FailReason::ScanBudgetExceeded
        }
    );
    // ASCII costs the raw scan of the joined text, plus the window of the joined seam.
    let mut budget = set.budget();
    let before = budget.remaining();
    let _ = set.scan_prompt(&prose(&["hello", "world"]), &mut budget);
    assert_eq!(
        before - budget.remaining(),
        "hello\nworld".len() + "helloworld".len()
    );
    let mut budget = set.budget();
    let _ = set.scan_prompt(&prose(&["hello.", " world"]), &mut budget);
    assert_eq!(before - budget.remaining(), "hello.\n world".len());
}

fn outcome_of_scan(set: &PatternSet, text: &str) -> PromptOutcome {
    match set.scan(text, &mut set.budget()) {
        ScanOutcome::Clean { findings, redacted } => PromptOutcome::Clean {
            findings,
            redacted: redacted.map(|r| (0, r)).into_iter().collect(),
        },
        ScanOutcome::Violation { finding } => PromptOutcome::Violation { finding },
        ScanOutcome::Failed { rule, reason } => PromptOutcome::Failed { rule, reason },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// On one ASCII text, the prompt scan is the raw scan.
    #[test]
    fn one_ascii_text_scans_as_the_raw_scan(text in "[a-z0-9 @.\\-]{0,80}") {
        let set = compile(
            &[blk("ab+c"), red("[0-9]{3}"), RuleSpec::from_regex("x y", Action::Audit), det("email", Action::Redact)],
            &[alw("zab+cz")],
        );
        prop_assert_eq!(run(&set, &prose(&[&text])), outcome_of_scan(&set, &text));
    }

    /// A forbidden word cut anywhere into running texts, with invisible characters sprinkled
    /// in, is always found; the texts never panic the scan.
    #[test]
    fn a_forbidden_word_cut_anywhere_is_found(
        cuts in prop::collection::btree_set(1usize..12, 0..4),
        zw in prop::collection::vec(0usize..13, 0..3),
        before in "[a-z]{0,6}",
        after in "[a-z]{0,6}",
    ) {
        let word = "confidential";
        let mut text = String::new();
        for (i, c) in word.chars().enumerate() {
            if zw.contains(&i) {
                text.push('\u{200b}');
            }
            text.push(c);
        }
        let text = format!("{before}{text}{after}");
        // Cut positions counted in chars of `text` after `before`.
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut pieces = Vec::new();
        let mut last = 0;
        for &cut in &cuts {
            if let Some(&(at, _)) = chars.get(before.len() + cut) {
                pieces.push(&text[last..at]);
                last = at;
            }
        }
        pieces.push(&text[last..]);
        prop_assert!(blocked(&secrets(), &prose(&pieces)), "{:?}", pieces);
    }
}

#[test]
fn many_texts_and_seams_stay_linear() {
    let set = compile(
        &[
            blk("(?i)confidential"),
            det("email", Action::Block),
            det("secret_key", Action::Block),
        ],
        &[],
    );
    // 50,000 one-letter texts: one window over all of them.
    let tiny: Vec<String> = (0..50_000)
        .map(|i| ((b'a' + (i % 26) as u8) as char).to_string())
        .collect();
    let p = prose(&tiny.iter().map(String::as_str).collect::<Vec<_>>());
    let start = std::time::Instant::now();
    assert!(!blocked(&set, &p));
    // 2,000 texts of 2 KB: one window per seam.
    let long = "word ".repeat(400) + "x";
    let p = prose(&vec![long.as_str(); 2_000]);
    assert!(!blocked(&set, &p));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}
