#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use proptest::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn blk(p: &str) -> RuleSpec {
    RuleSpec::from_regex(p, Action::Block)
}
fn red(p: &str) -> RuleSpec {
    RuleSpec::from_regex(p, Action::Redact)
}
fn aud(p: &str) -> RuleSpec {
    RuleSpec::from_regex(p, Action::Audit)
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

fn compile_err(block: &[RuleSpec], allow: &[RuleSpec]) -> Vec<PatternError> {
    PatternSet::compile(block, allow, GuardLimits::default()).unwrap_err()
}

fn scan(set: &PatternSet, text: &str) -> ScanOutcome {
    set.scan(text, &mut set.budget())
}

fn violation(set: &PatternSet, text: &str) -> Option<Finding> {
    match scan(set, text) {
        ScanOutcome::Violation { finding } => Some(finding),
        ScanOutcome::Clean { .. } => None,
        f @ ScanOutcome::Failed { .. } => panic!("unexpected {f:?}"),
    }
}

fn fires(detector: &str, text: &str) -> Option<(usize, usize)> {
    let set = compile(&[det(detector, Action::Block)], &[]);
    violation(&set, text).map(|f| (f.start, f.end))
}

/// Verdict comparable between whole-text and streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Clean(Vec<Finding>),
    Violation(Finding),
    Failed(FailReason),
}

fn sort_findings(mut f: Vec<Finding>) -> Vec<Finding> {
    f.sort_by(|a, b| (a.start, a.end, &a.rule).cmp(&(b.start, b.end, &b.rule)));
    f
}

fn whole(set: &PatternSet, text: &str) -> (Verdict, String) {
    match scan(set, text) {
        ScanOutcome::Clean { findings, redacted } => (
            Verdict::Clean(findings),
            redacted.unwrap_or_else(|| text.to_string()),
        ),
        ScanOutcome::Violation { finding } => (Verdict::Violation(finding), String::new()),
        ScanOutcome::Failed { reason, .. } => (Verdict::Failed(reason), String::new()),
    }
}

fn stream_chunks(set: Arc<PatternSet>, chunks: &[&str]) -> (Verdict, String) {
    let budget = set.budget();
    let mut sc = StreamScanner::new(set, budget);
    let mut out = String::new();
    for c in chunks {
        match sc.push(c) {
            StreamStep::Release(t) => out.push_str(&t),
            StreamStep::Violation(f) => return (Verdict::Violation(f), out),
            StreamStep::Failed { reason, .. } => return (Verdict::Failed(reason), out),
        }
    }
    match sc.finish() {
        StreamStep::Release(t) => out.push_str(&t),
        StreamStep::Violation(f) => return (Verdict::Violation(f), out),
        StreamStep::Failed { reason, .. } => return (Verdict::Failed(reason), out),
    }
    (Verdict::Clean(sort_findings(sc.findings().to_vec())), out)
}

// ---------------------------------------------------------------- compile

#[test]
fn invalid_pattern_reports_list_index_and_position() {
    let errs = compile_err(&[blk("ok"), blk("abc(def")], &[alw("[z")]);
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].list, "blockPatterns");
    assert_eq!(errs[0].index, 1);
    assert_eq!(errs[0].pattern, "abc(def");
    assert!(errs[0].position.is_some());
    assert_eq!(errs[1].list, "allowPatterns");
    assert_eq!(errs[1].index, 0);
    let shown = errs[0].to_string();
    assert!(shown.contains("blockPatterns[1]"), "{shown}");
    assert!(shown.contains("position"), "{shown}");
}

#[test]
fn overlong_pattern_rejected() {
    let p = "a".repeat(MAX_PATTERN_CHARS + 1);
    let errs = compile_err(&[blk(&p)], &[]);
    assert!(errs[0].message.contains("limit"), "{}", errs[0].message);
    assert!(PatternSet::compile(
        &[blk(&"a".repeat(MAX_PATTERN_CHARS))],
        &[],
        GuardLimits::default()
    )
    .is_ok());
}

#[test]
fn compiled_size_limit_enforced() {
    // Within the character limit but huge once compiled.
    let errs = compile_err(&[blk(r"\w{500}\w{490}")], &[]);
    assert_eq!(errs.len(), 1);
}

#[test]
fn spec_shape_errors() {
    let mut both = blk("a");
    both.detector = Some("email".into());
    let neither = RuleSpec {
        name: None,
        regex: None,
        detector: None,
        action: Action::Block,
        audit_level: None,
    };
    let errs = compile_err(
        &[
            both,
            neither,
            det("nope", Action::Block),
            RuleSpec::from_regex("x", Action::Allow),
        ],
        &[],
    );
    assert_eq!(errs.len(), 4);
    assert!(errs[2].message.contains("unknown detector"));
    assert!(errs[3].message.contains("allowPatterns"));
}

#[test]
fn empty_matching_pattern_rejected() {
    let errs = compile_err(&[blk("a*")], &[]);
    assert!(errs[0].message.contains("empty"), "{}", errs[0].message);
}

#[test]
fn static_check_rejects_nested_quantifiers_in_fancy_patterns() {
    for (p, pos) in [
        (r"(a+)+\1", 4),
        (r"(?=x)(\w+\s?)+$", 13),
        (r"(a|a)*(?<=a)", 5),
        (r"(.*)*(?!x)", 4),
        (r"(?:a|ab)+\b(?=c)", 8),
    ] {
        let errs = compile_err(&[blk(p)], &[]);
        assert_eq!(errs[0].position, Some(pos), "{p}: {errs:?}");
        assert!(errs[0].message.contains("catastrophic"), "{p}: {errs:?}");
    }
}

#[test]
fn fancy_patterns_must_be_bounded() {
    let errs = compile_err(&[blk(r"secret(?=\s*:)")], &[]);
    assert!(errs[0].message.contains("bounded"), "{errs:?}");
    // Bounded look-around is fine.
    let set = compile(&[blk(r"secret(?=\s{0,5}:)")], &[]);
    assert!(violation(&set, "the secret :").is_some());
    assert!(violation(&set, "the secret.").is_none());
}

#[test]
fn non_fancy_nested_quantifier_is_linear_and_fast() {
    // No fancy features: runs on the linear-time engine, so it is accepted.
    let set = compile(&[blk(r"(a+)+$"), blk(r"(\w+\s?)+$x")], &[]);
    for n in [30usize, 1_000, 200_000] {
        let text = "a".repeat(n) + "b";
        let start = Instant::now();
        assert!(violation(&set, &text).is_none());
        assert!(start.elapsed() < Duration::from_secs(2), "n={n}");
    }
    assert!(violation(&set, "aaaa").is_some());
}

#[test]
fn backtrack_limit_fails_closed() {
    // Passes the static check (bounded repetition) but backtracks
    // exponentially with a backreference.
    let set = compile(&[blk(r"(a|ab|b|ba){1,60}\1c")], &[]);
    let text = "ab".repeat(40) + "x";
    let start = Instant::now();
    match scan(&set, &text) {
        ScanOutcome::Failed { rule, reason } => {
            assert_eq!(reason, FailReason::BacktrackLimit);
            assert_eq!(rule, "blockPatterns[0]");
        }
        other => panic!("expected failure, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    // Also in streaming.
    let set = Arc::new(set);
    let (v, _) = stream_chunks(set, &[&"ab".repeat(20), &"ab".repeat(20), "x"]);
    assert_eq!(v, Verdict::Failed(FailReason::BacktrackLimit));
}

#[test]
fn holdback_chars_derived_and_capped() {
    assert_eq!(compile(&[blk("confidential")], &[]).holdback_chars(), 13);
    assert_eq!(compile(&[blk("conf.*")], &[]).holdback_chars(), 512);
    let limits = GuardLimits {
        max_holdback_chars: 64,
        ..GuardLimits::default()
    };
    let set = PatternSet::compile(&[det("credit_card", Action::Block)], &[], limits).unwrap();
    assert_eq!(set.holdback_chars(), 38);
    let set = PatternSet::compile(&[det("secret_key", Action::Block)], &[], limits).unwrap();
    assert_eq!(set.holdback_chars(), 64);
}

#[test]
fn rule_spec_deserializes_from_config_json() {
    let spec: RuleSpec = serde_json::from_str(
        r#"{"name":"cc","detector":"credit_card","action":"redact","auditLevel":"critical"}"#,
    )
    .unwrap();
    assert_eq!(spec.action, Action::Redact);
    assert_eq!(spec.audit_level, Some(AuditLevel::Critical));
    let limits: GuardLimits = serde_json::from_str(r#"{"maxHoldbackChars":100}"#).unwrap();
    assert_eq!(limits.max_holdback_chars, 100);
    assert_eq!(limits.backtrack_limit, 100_000);
}

// -------------------------------------------------------------- semantics

#[test]
fn block_redact_audit() {
    let set = compile(
        &[
            blk("(?i)confidential")
                .named("conf")
                .level(AuditLevel::High),
            red(r"secret\d*"),
            aud("internal").level(AuditLevel::Low),
        ],
        &[],
    );
    let f = violation(&set, "this is CONFIDENTIAL data").unwrap();
    assert_eq!(
        f,
        Finding {
            rule: "conf".into(),
            action: Action::Block,
            audit_level: AuditLevel::High,
            start: 8,
            end: 20
        }
    );
    match scan(&set, "the secret42 and secret are internal") {
        ScanOutcome::Clean { findings, redacted } => {
            assert_eq!(
                redacted.as_deref(),
                Some("the [REDACTED] and [REDACTED] are internal")
            );
            assert_eq!(findings.len(), 3);
            assert_eq!(findings[2].rule, "blockPatterns[2]");
            assert_eq!(findings[2].action, Action::Audit);
            assert_eq!(findings[2].audit_level, AuditLevel::Low);
            assert_eq!(findings[0].audit_level, AuditLevel::Medium);
        }
        other => panic!("{other:?}"),
    }
    match scan(&set, "only internal") {
        ScanOutcome::Clean { findings, redacted } => {
            assert_eq!(redacted, None);
            assert_eq!(findings.len(), 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn overlapping_redactions_merge() {
    let set = compile(&[red("abcd"), red("cdef")], &[]);
    match scan(&set, "xabcdefx abcd") {
        ScanOutcome::Clean { redacted, .. } => {
            assert_eq!(redacted.as_deref(), Some("x[REDACTED]x [REDACTED]"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn first_violation_is_reported() {
    let set = compile(&[blk("zeta"), blk("alpha")], &[]);
    let f = violation(&set, "alpha then zeta").unwrap();
    assert_eq!(f.rule, "blockPatterns[1]");
    assert_eq!(f.start, 0);
}

#[test]
fn allow_containment() {
    let set = compile(
        &[blk("secret")],
        &[alw("public secret"), alw("(?i)top secret clearance")],
    );
    assert!(violation(&set, "a public secret").is_none());
    assert!(violation(&set, "TOP SECRET CLEARANCE").is_none());
    assert!(violation(&set, "a secret").is_some());
    // Second occurrence not covered.
    let f = violation(&set, "public secret, secret").unwrap();
    assert_eq!(f.start, 15);
    // Partial overlap is not containment.
    let set = compile(&[blk("secret")], &[alw("public sec")]);
    assert!(violation(&set, "public secret").is_some());
    // Detector in the allow list.
    let set = compile(&[blk("example")], &[det("email", Action::Allow)]);
    assert!(violation(&set, "mail bob@example.com").is_none());
    assert!(violation(&set, "example.com").is_some());
}

#[test]
fn budget_exceeded_fails_closed() {
    let limits = GuardLimits {
        max_scan_bytes_per_request: 100,
        ..GuardLimits::default()
    };
    let set = PatternSet::compile(&[blk("secret")], &[], limits).unwrap();
    let mut budget = set.budget();
    assert!(matches!(
        set.scan(&"x".repeat(60), &mut budget),
        ScanOutcome::Clean { .. }
    ));
    assert_eq!(budget.remaining(), 40);
    match set.scan(&"x".repeat(60), &mut budget) {
        ScanOutcome::Failed { reason, .. } => assert_eq!(reason, FailReason::ScanBudgetExceeded),
        other => panic!("{other:?}"),
    }
    let set = Arc::new(set);
    let chunks = vec!["xxxxxxxxxx"; 20];
    let (v, out) = stream_chunks(set, &chunks);
    assert_eq!(v, Verdict::Failed(FailReason::ScanBudgetExceeded));
    assert!(out.len() <= 100);
}

// -------------------------------------------------------------- detectors

#[test]
fn credit_card_detector() {
    for tp in [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "card 5500 0000 0000 0004 exp",
        "378282246310005",
        "6011 0009 9013 9424",
    ] {
        assert!(fires("credit_card", tp).is_some(), "{tp}");
    }
    assert_eq!(
        fires("credit_card", "pay 4111 1111 1111 1111."),
        Some((4, 23))
    );
    for near in [
        "4111 1111 1111 1112",
        "1234567812345678",
        "4111  1111 1111 1111",
        "4111--1111-1111-1111",
        "411111111111",
        "0000 0000 0000 0000",
        "order 41111111111111111111111 done",
    ] {
        assert!(fires("credit_card", near).is_none(), "{near}");
    }
}

#[test]
fn ssn_detector() {
    assert_eq!(fires("us_ssn", "ssn 123-45-6789."), Some((4, 15)));
    for near in [
        "666-12-3456",
        "000-12-3456",
        "900-12-3456",
        "123-00-4567",
        "123-45-0000",
        "1234-56-7890",
        "123-456-789",
    ] {
        assert!(fires("us_ssn", near).is_none(), "{near}");
    }
}

#[test]
fn iban_detector() {
    assert_eq!(fires("iban", "GB82 WEST 1234 5698 7654 32"), Some((0, 27)));
    assert!(fires("iban", "GB82WEST12345698765432").is_some());
    assert!(fires("iban", "iban: DE89 3704 0044 0532 0130 00").is_some());
    assert!(fires("iban", "FR14 2004 1010 0505 0001 3M02 606").is_some());
    assert_eq!(
        fires("iban", "GB82 WEST 1234 5698 7654 32 THEN"),
        Some((0, 27))
    );
    for near in [
        "GB82 WEST 1234 5698 7654 33",
        "GB83 WEST 1234 5698 7654 32",
        "DE89 3704 0044 0532 0130 0",
        "XX82 WEST 1234",
    ] {
        assert!(fires("iban", near).is_none(), "{near}");
    }
}

#[test]
fn email_detector() {
    assert_eq!(
        fires("email", "mail john.doe+x@mail.example.com."),
        Some((5, 32))
    );
    for near in ["john@localhost", "not an @ email", "a@b.c", "@example.com"] {
        assert!(fires("email", near).is_none(), "{near}");
    }
}

#[test]
fn detector_boundaries_are_ascii() {
    // A non-ASCII letter glued to a candidate is a separator, not part of a longer word.
    assert_eq!(fires("email", "écrire àbob@example.com"), Some((10, 25)));
    assert_eq!(fires("credit_card", "n°4111111111111111é"), Some((3, 19)));
    // ASCII letters still are word characters.
    assert!(fires("credit_card", "x4111111111111111").is_none());
}

#[test]
fn private_key_detector() {
    for tp in [
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE...",
        "-----BEGIN EC PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----",
    ] {
        assert!(fires("private_key", tp).is_some(), "{tp}");
    }
    for near in [
        "-----BEGIN PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----",
        "-----BEGIN RSA PUBLIC KEY-----",
        "BEGIN RSA PRIVATE KEY",
    ] {
        assert!(fires("private_key", near).is_none(), "{near}");
    }
}

#[test]
fn secret_key_detector() {
    let gh = format!("ghp_{}", "a1B2".repeat(9));
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    for tp in [
        "key AKIAIOSFODNN7EXAMPLE",
        "ASIAIOSFODNN7EXAMPLE",
        gh.as_str(),
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
        "xoxb-1234567890-abcdefghij",
        "sk-abcdefghijklmnopqrstuvwxyz123456",
        "sk-proj-abcdefghijklmnopqrstuvwxyz123456",
        jwt,
    ] {
        assert!(fires("secret_key", tp).is_some(), "{tp}");
    }
    let gh_short = format!("ghp_{}", "a".repeat(35));
    for near in [
        "AKIAIOSFODNN7EXAMPL",
        "AKIAIOSFODNN7EXAMPLEX",
        "XAKIAIOSFODNN7EXAMPLE",
        gh_short.as_str(),
        "task-abcdefghijklmnopqrstuvwxyz123456",
        "sk-short",
        "xoxz-1234567890-abcdefghij",
        "eyJhbGciOiJIUzI1NiJ9",
    ] {
        assert!(fires("secret_key", near).is_none(), "{near}");
    }
}

#[test]
fn every_detector_compiles() {
    let specs: Vec<RuleSpec> = DETECTORS.iter().map(|d| det(d, Action::Audit)).collect();
    let set = compile(&specs, &[]);
    assert_eq!(set.holdback_chars(), 512);
}

// ---------------------------------------------------------------- unicode

#[test]
fn unicode_case_folding() {
    let set = compile(&[blk("(?i)straße"), blk("(?i)été"), blk("(?i)geheim")], &[]);
    assert!(violation(&set, "STRAẞE").is_some());
    assert!(violation(&set, "Straße").is_some());
    assert!(violation(&set, "L'ÉTÉ").is_some());
    // Whatever the regex crate's simple case folding says for dotted İ.
    let expected = regex::Regex::new("(?i)geheim").unwrap().is_match("GEHEİM");
    assert_eq!(violation(&set, "GEHEİM").is_some(), expected);
    assert!(violation(&set, "GEHEIM").is_some());
}

#[test]
fn multibyte_chars_split_across_byte_chunks() {
    let set = Arc::new(compile(&[blk("(?i)été secret")], &[]));
    let text = "l'ÉTÉ SECRET";
    let bytes = text.as_bytes();
    let mut sc = StreamScanner::new(Arc::clone(&set), set.budget());
    let mut out = String::new();
    let mut verdict = None;
    for b in bytes.chunks(1) {
        match sc.push_bytes(b) {
            StreamStep::Release(t) => out.push_str(&t),
            StreamStep::Violation(f) => {
                verdict = Some(f);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    // A match ending exactly at the end of the buffer is decided by the
    // next char or by finish().
    if verdict.is_none() {
        if let StreamStep::Violation(f) = sc.finish() {
            verdict = Some(f);
        }
    }
    let f = verdict.unwrap();
    assert_eq!((f.start, f.end), (2, text.len()));
    assert_eq!(out, "l'");
    // Clean text with multibyte chars split anywhere comes out intact.
    let text = "日本語 ẞ é 🎉 done";
    let mut sc = StreamScanner::new(Arc::clone(&set), set.budget());
    let mut out = String::new();
    for b in text.as_bytes().chunks(3) {
        match sc.push_bytes(b) {
            StreamStep::Release(t) => out.push_str(&t),
            other => panic!("{other:?}"),
        }
    }
    match sc.finish() {
        StreamStep::Release(t) => out.push_str(&t),
        other => panic!("{other:?}"),
    }
    assert_eq!(out, text);
}

#[test]
fn invalid_utf8_becomes_replacement_char() {
    let set = Arc::new(compile(&[blk("zzz")], &[]));
    let mut sc = StreamScanner::new(Arc::clone(&set), set.budget());
    let mut out = String::new();
    for chunk in [&b"a\xff"[..], b"b\xe6", b"\x97"] {
        if let StreamStep::Release(t) = sc.push_bytes(chunk) {
            out.push_str(&t);
        }
    }
    if let StreamStep::Release(t) = sc.finish() {
        out.push_str(&t);
    }
    assert_eq!(out, "a\u{FFFD}b\u{FFFD}");
}

// -------------------------------------------------------------- streaming

#[test]
fn split_word_is_caught_before_release() {
    let set = Arc::new(compile(&[blk("confidential")], &[]));
    let mut sc = StreamScanner::new(Arc::clone(&set), set.budget());
    assert_eq!(
        sc.push("this is conf"),
        StreamStep::Release("this is ".into())
    );
    assert_eq!(sc.held_chars(), 4);
    match sc.push("idential!") {
        StreamStep::Violation(f) => assert_eq!((f.start, f.end), (8, 20)),
        other => panic!("{other:?}"),
    }
    // Sticky.
    assert!(matches!(sc.push("more"), StreamStep::Violation(_)));
    assert!(matches!(sc.finish(), StreamStep::Violation(_)));
}

#[test]
fn text_that_cannot_match_is_released_at_once() {
    let set = Arc::new(compile(
        &[blk("confidential"), det("credit_card", Action::Block)],
        &[],
    ));
    let mut sc = StreamScanner::new(Arc::clone(&set), set.budget());
    assert_eq!(
        sc.push("hello world. "),
        StreamStep::Release("hello world. ".into())
    );
    assert_eq!(sc.push("con"), StreamStep::Release(String::new()));
    assert_eq!(sc.push("cert"), StreamStep::Release("concert".into()));
    assert_eq!(sc.finish(), StreamStep::Release(String::new()));
}

#[test]
fn card_split_over_five_chunks() {
    let set = Arc::new(compile(&[det("credit_card", Action::Block)], &[]));
    let chunks = ["my card: 41", "11 11", "11 1111 ", "11", "11 thanks"];
    let mut sc = StreamScanner::new(Arc::clone(&set), set.budget());
    let mut out = String::new();
    let mut got = None;
    for c in chunks {
        match sc.push(c) {
            StreamStep::Release(t) => out.push_str(&t),
            StreamStep::Violation(f) => {
                got = Some(f);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let f = got.unwrap();
    assert_eq!(f.rule, "credit_card");
    assert_eq!(out, "my card: ");
}

#[test]
fn streaming_redaction_and_allow() {
    let set = Arc::new(compile(
        &[det("credit_card", Action::Redact), blk("secret")],
        &[alw("public secret")],
    ));
    let text = "card 4111 1111 1111 1111 and a public secret.";
    let (v, out) = stream_chunks(
        Arc::clone(&set),
        &["card 4111 11", "11 1111 1111 and a pub", "lic sec", "ret."],
    );
    assert_eq!(out, "card [REDACTED] and a public secret.");
    assert_eq!(whole(&set, text), (v, out));
}

#[test]
fn holdback_overflow_fails_closed() {
    let limits = GuardLimits {
        max_holdback_chars: 64,
        ..GuardLimits::default()
    };
    let set = Arc::new(PatternSet::compile(&[blk(r"secret.*end")], &[], limits).unwrap());
    // Unbounded match in progress beyond the cap.
    let (v, out) = stream_chunks(Arc::clone(&set), &["ok secret ", &"x".repeat(100), " end"]);
    assert_eq!(v, Verdict::Failed(FailReason::HoldbackOverflow));
    assert_eq!(out, "ok ");
    // Long text without anything in progress is not held back.
    let long = "y".repeat(10_000);
    let chunks: Vec<&str> = (0..100).map(|i| &long[i * 100..(i + 1) * 100]).collect();
    let (v, out) = stream_chunks(Arc::clone(&set), &chunks);
    assert_eq!(v, Verdict::Clean(vec![]));
    assert_eq!(out, long);
}

#[test]
fn unbounded_tail_is_decided_when_it_ends() {
    let set = Arc::new(compile(&[red(r"token=\w+")], &[]));
    let mut sc = StreamScanner::new(Arc::clone(&set), set.budget());
    assert_eq!(sc.push("a token=ab"), StreamStep::Release("a ".into()));
    assert_eq!(sc.push("cd"), StreamStep::Release(String::new()));
    // "t" could still start "token=": held back.
    assert_eq!(
        sc.push(" next"),
        StreamStep::Release("[REDACTED] nex".into())
    );
    assert_eq!(sc.finish(), StreamStep::Release("t".into()));
}

#[test]
fn fancy_rules_stream_like_whole_text() {
    let set = Arc::new(compile(&[blk(r"(?<=x)secret(?!ive)")], &[]));
    for text in ["xsecret", "xsecretive", "ysecret", "a xsecret b"] {
        let chunks: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let (v, out) = stream_chunks(Arc::clone(&set), &refs);
        let (wv, wout) = whole(&set, text);
        assert_eq!(v, wv, "{text}");
        if matches!(v, Verdict::Clean(_)) {
            assert_eq!(out, wout);
        }
    }
}

// --------------------------------------------------------------- proptest

const TOKENS: &[&str] = &[
    "conf", "idential", "secret", "ive", "public ", " ", "4111", "1111", "1", "7", "-", "é", "ẞ",
    "日本", "x", "\n", "CONF", "sec", "ret", "ab", "@", "mail.com", "000",
];

fn config(i: usize, block_as_audit: bool) -> PatternSet {
    let limits = GuardLimits::default();
    let (mut block, allow) = match i {
        0 => (
            vec![blk("(?i)confidential"), red("secret"), aud(r"\d{4}")],
            vec![alw("public secret")],
        ),
        1 => (
            vec![
                det("credit_card", Action::Redact),
                blk(r"conf\w*ential"),
                aud("(?m)^x"),
                blk("sec"),
            ],
            vec![alw(r"public \w+")],
        ),
        2 => (
            vec![
                blk(r"(?<=x)secret(?!ive)"),
                red(r"(\d)\1{2}"),
                aud("sec(?=ret)"),
            ],
            vec![alw("public (?:secret|conf)")],
        ),
        3 => (
            vec![
                red("secret|sec"),
                red(r"ret\w{0,3}"),
                blk(r"idential\b"),
                aud(r"\bconf"),
            ],
            vec![],
        ),
        _ => (
            vec![
                det("credit_card", Action::Block),
                det("email", Action::Redact),
                red(r"(?i)ẞ+|é日"),
            ],
            vec![alw(r"4111 \d+")],
        ),
    };
    if block_as_audit {
        for b in &mut block {
            if b.action == Action::Block {
                b.action = Action::Audit;
            }
        }
    }
    PatternSet::compile(&block, &allow, limits).unwrap()
}

/// Original-text offset reached by `out_len` bytes of output.
fn orig_offset(text: &str, spans: &[(usize, usize)], out_len: usize) -> usize {
    let mut merged: Vec<(usize, usize)> = Vec::new();
    let mut spans = spans.to_vec();
    spans.sort();
    for (s, e) in spans {
        match merged.last_mut() {
            Some(l) if s < l.1 => l.1 = l.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let (mut o, mut t) = (0usize, 0usize);
    for (s, e) in merged {
        if o + (s - t) >= out_len {
            return t + (out_len - o);
        }
        o += s - t;
        o += REDACTED.len();
        t = e;
        if o >= out_len {
            return t;
        }
    }
    (t + (out_len - o)).min(text.len())
}

proptest! {
    // 400 cases by default; `PROPTEST_CASES=n` overrides (an explicit
    // `with_cases` would otherwise ignore the variable).
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
    ))]
    #[test]
    fn streamed_verdict_equals_whole_text(
        cfg in 0usize..5,
        toks in proptest::collection::vec(0usize..TOKENS.len(), 0..40),
        cuts in proptest::collection::vec(0usize..400, 0..12),
    ) {
        let text: String = toks.iter().map(|&i| TOKENS[i]).collect();
        let set = Arc::new(config(cfg, false));
        let mut points: Vec<usize> = cuts
            .into_iter()
            .map(|c| c % (text.len() + 1))
            .filter(|&c| text.is_char_boundary(c))
            .collect();
        points.push(0);
        points.push(text.len());
        points.sort_unstable();
        points.dedup();
        let chunks: Vec<&str> = points.windows(2).map(|w| &text[w[0]..w[1]]).collect();

        let (wv, wout) = whole(&set, &text);
        let (sv, sout) = stream_chunks(Arc::clone(&set), &chunks);
        prop_assert!(!matches!(wv, Verdict::Failed(_)), "{:?}", wv);
        prop_assert_eq!(&sv, &wv, "text {:?} chunks {:?}", text, chunks);
        match &wv {
            Verdict::Clean(_) => prop_assert_eq!(&sout, &wout),
            Verdict::Violation(f) => {
                // Same config with block -> audit: the redacted output.
                let audit_set = config(cfg, true);
                let ScanOutcome::Clean { findings, redacted } = scan(&audit_set, &text) else {
                    return Err(TestCaseError::fail("audit variant not clean"));
                };
                let full = redacted.unwrap_or_else(|| text.clone());
                prop_assert!(full.starts_with(&sout), "{:?} not prefix of {:?}", sout, full);
                let spans: Vec<(usize, usize)> = findings
                    .iter()
                    .filter(|f| f.action == Action::Redact)
                    .map(|f| (f.start, f.end))
                    .collect();
                let reached = orig_offset(&text, &spans, sout.len());
                prop_assert!(reached <= f.start, "released {:?} past violation {:?}", sout, f);
            }
            Verdict::Failed(_) => {}
        }
    }

    #[test]
    fn released_text_is_prefix_of_redacted_whole(
        toks in proptest::collection::vec(0usize..TOKENS.len(), 0..40),
        step in 1usize..7,
    ) {
        let text: String = toks.iter().map(|&i| TOKENS[i]).collect();
        // Config 3 has no allow list; turning its block rule into audit
        // keeps all redactions.
        let set = Arc::new(PatternSet::compile(
            &[red("secret|sec"), red(r"ret\w{0,3}"), aud(r"idential\b"), aud(r"\bconf"), det("credit_card", Action::Redact)],
            &[],
            GuardLimits::default(),
        ).unwrap());
        let (_, wout) = whole(&set, &text);
        let mut sc = StreamScanner::new(Arc::clone(&set), set.budget());
        let mut out = String::new();
        let chars: Vec<char> = text.chars().collect();
        for c in chars.chunks(step) {
            let s: String = c.iter().collect();
            match sc.push(&s) {
                StreamStep::Release(t) => out.push_str(&t),
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
            prop_assert!(wout.starts_with(&out), "{:?} not prefix of {:?}", out, wout);
        }
        if let StreamStep::Release(t) = sc.finish() { out.push_str(&t); }
        prop_assert_eq!(out, wout);
    }
}

#[test]
fn streaming_reports_the_earliest_violation_like_whole_text() {
    // Rule 1 matches first in time, but rule 0's match starts earlier.
    let set = Arc::new(compile(&[blk(r"conf\w*ential"), blk("sec")], &[]));
    let text = "a confxxsecyyential b";
    let (wv, _) = whole(&set, text);
    let Verdict::Violation(f) = &wv else {
        panic!("{wv:?}")
    };
    assert_eq!((f.rule.as_str(), f.start), ("blockPatterns[0]", 2));
    let (sv, out) = stream_chunks(Arc::clone(&set), &["a confxx", "secyy", "ential", " b"]);
    assert_eq!(sv, wv);
    assert_eq!(out, "a ");
}

#[test]
fn allow_decision_waits_for_allow_match() {
    // The block match is complete long before the allow match is.
    let set = Arc::new(compile(&[blk("sec")], &[alw(r"public \w+ ok")]));
    let (v, out) = stream_chunks(Arc::clone(&set), &["public se", "cretive", "ly ok."]);
    assert_eq!(v, Verdict::Clean(vec![]));
    assert_eq!(out, "public secretively ok.");
    let (v, _) = stream_chunks(set, &["public se", "cretive", "ly no."]);
    assert!(matches!(v, Verdict::Violation(_)));
}

#[test]
fn thread_safety() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<PatternSet>();
    send::<StreamScanner>();
}

#[test]
fn prefilter_keeps_budget_accounting_and_verdicts() {
    let set = compile(
        &[blk("(?i)secret"), red(r"\d{4}"), aud("conf")],
        &[alw("public secret")],
    );
    assert!(set.prefilter.is_some());
    let text = "nothing to see here, 123 abc";
    let mut budget = set.budget();
    let before = budget.remaining();
    assert_eq!(
        set.scan(text, &mut budget),
        ScanOutcome::Clean {
            findings: vec![],
            redacted: None
        }
    );
    assert_eq!(before - budget.remaining(), text.len());
    let limits = GuardLimits {
        max_scan_bytes_per_request: text.len() - 1,
        ..GuardLimits::default()
    };
    let small = PatternSet::compile(
        &[blk("(?i)secret"), red(r"\d{4}"), aud("conf")],
        &[],
        limits,
    )
    .unwrap();
    assert!(matches!(
        small.scan(text, &mut small.budget()),
        ScanOutcome::Failed {
            reason: FailReason::ScanBudgetExceeded,
            ..
        }
    ));
    // Allowed block match, redaction, audit: the engine path still decides.
    let (v, out) = whole(&set, "a public secret 1234 conf");
    assert_eq!(out, "a public secret [REDACTED] conf");
    assert!(matches!(v, Verdict::Clean(ref f) if f.len() == 2));
    assert!(violation(&set, "a SECRET").is_some());
}
