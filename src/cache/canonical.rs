//! One spelling for surface forms that mean the same thing, applied to both prompts before
//! they are verified ([`super::refusal`], [`super::verify::Signature::of`]).
//!
//! Every rule here is about how English writes numbers, comparisons, frequency and exclusion,
//! not about any domain: a closed set of forms, so it generalises to prompts nobody has seen.
//! Each rule is symmetric by construction (both prompts go through it), so it can only make
//! two spellings of one thing agree; a rule never removes information a check needs.
//!
//! | written | canonical | why |
//! |---|---|---|
//! | `50TB`, `120mg/5ml` | `50 TB`, `120 mg / 5 ml` | a unit glued to its number is still a unit |
//! | `6-month-old`, `10-question`, `two-factor` | `6 month old`, `10 question`, `two factor` | a compound that starts with a number carries that number |
//! | `World War II` | `World War 2` | upper-case Roman numerals II, III, VII, VIII after a word |
//! | `under 50`, `below 50`, `fewer than 50` | `less than 50` | one comparison, three spellings |
//! | `over 50`, `above 50`, `greater than 50` | `more than 50` | likewise |
//! | `every night`, `each day`, `per week` | `nightly`, `daily`, `weekly` | one frequency |
//! | `other than X`, `apart from X`, `aside from X`, `rather than X`, `instead of X` | `except X` | exclusion is negation of X |
//!
//! The regexes are linear-time (the `regex` crate) and run once per prompt.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::{Captures, Regex};

/// Number words that can start a compound ("two-factor", "half-life", "one-year").
const NUMBER_WORD: &str = "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\
                           fifteen|twenty|thirty|forty|fifty|sixty|hundred|thousand|half";

struct Rules {
    glued_unit: Regex,
    unit_slash: Regex,
    number_compound: Regex,
    roman: Regex,
    less_than: Regex,
    more_than: Regex,
    frequency: Regex,
    exclusion: Regex,
}

/// The compiled rules (constant patterns: `None` never happens; the tests cover every one).
fn rules() -> Option<&'static Rules> {
    static R: OnceLock<Option<Rules>> = OnceLock::new();
    R.get_or_init(|| {
        let number = format!(r"(?:\d+(?:[.,]\d+)?|(?i:{NUMBER_WORD}))");
        Some(Rules {
            // a number at the start of a token with letters glued on: "50TB", "5ml", "9am"
            glued_unit: Regex::new(r"(^|[\s(\[{$€£~/])(\d+(?:[.,]\d+)?)([A-Za-z]+)\b").ok()?,
            // "mg/5" -> "mg / 5", "5/kg" -> "5 / kg"
            unit_slash: Regex::new(r"([A-Za-z])/(\d)|(\d)/([A-Za-z])").ok()?,
            number_compound: Regex::new(&format!(
                r"(?:^|\b){number}(?:-[A-Za-z]+)+\b|\b\d+(?:[.,]\d+)?(?:-[A-Za-z]+)+\b"
            ))
            .ok()?,
            roman: Regex::new(r"\b([A-Za-z]+) (II|III|VII|VIII)\b").ok()?,
            less_than: Regex::new(&format!(
                r"(?i)\b(?:under|below|fewer than|less than)(\s+)({number}\b)"
            ))
            .ok()?,
            more_than: Regex::new(&format!(
                r"(?i)\b(?:over|above|greater than|more than)(\s+)({number}\b)"
            ))
            .ok()?,
            frequency: Regex::new(r"(?i)\b(?:every|each|per)\s+(day|night|week|month|year|hour)\b")
                .ok()?,
            exclusion: Regex::new(
                r"(?i)\b(?:other than|apart from|aside from|rather than|instead of)\b",
            )
            .ok()?,
        })
    })
    .as_ref()
}

/// `text` with the surface forms of the table above written one way. Case is kept (entity
/// detection reads it), except in the rewritten phrases.
pub fn canonical(text: &str) -> Cow<'_, str> {
    let Some(r) = rules() else {
        return Cow::Borrowed(text);
    };
    let t = r.glued_unit.replace_all(text, |c: &Captures<'_>| {
        let suffix = &c[3];
        if matches!(
            suffix.to_ascii_lowercase().as_str(),
            "st" | "nd" | "rd" | "th"
        ) {
            c[0].to_string()
        } else {
            format!("{}{} {}", &c[1], &c[2], suffix)
        }
    });
    let t = r
        .unit_slash
        .replace_all(&t, |c: &Captures<'_>| match (c.get(1), c.get(2)) {
            (Some(l), Some(d)) => format!("{} / {}", l.as_str(), d.as_str()),
            _ => format!("{} / {}", &c[3], &c[4]),
        });
    let t = r
        .number_compound
        .replace_all(&t, |c: &Captures<'_>| c[0].replace('-', " "));
    let t = r.roman.replace_all(&t, |c: &Captures<'_>| {
        let n = match &c[2] {
            "II" => "2",
            "III" => "3",
            "VII" => "7",
            _ => "8",
        };
        format!("{} {n}", &c[1])
    });
    let t = r.less_than.replace_all(&t, "less than$1$2");
    let t = r.more_than.replace_all(&t, "more than$1$2");
    let t = r.frequency.replace_all(&t, |c: &Captures<'_>| {
        let period = c[1].to_ascii_lowercase();
        match period.as_str() {
            "day" => "daily".to_string(),
            _ => format!("{period}ly"),
        }
    });
    let t = r.exclusion.replace_all(&t, "except");
    if t == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(t.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patterns_compile() {
        assert!(rules().is_some());
    }

    #[test]
    fn each_rule_writes_one_spelling() {
        for (written, expected) in [
            ("storing 50TB in S3", "storing 50 TB in S3"),
            ("suspension 120mg/5ml", "suspension 120 mg / 5 ml"),
            ("suspension 120 mg/5 ml", "suspension 120 mg / 5 ml"),
            ("the 3rd and 21st items", "the 3rd and 21st items"),
            ("my 6-month-old baby", "my 6 month old baby"),
            ("a 10-question quiz", "a 10 question quiz"),
            ("the half-life of carbon-14", "the half life of carbon-14"),
            ("enable two-factor login", "enable two factor login"),
            ("World War II history", "World War 2 history"),
            ("in under 50 words", "in less than 50 words"),
            ("in fewer than 50 words", "in less than 50 words"),
            ("Below 5 degrees", "less than 5 degrees"),
            ("held for over one year", "held for more than one year"),
            ("a job that runs every night", "a job that runs nightly"),
            ("twice per day", "twice daily"),
            ("services other than payments", "services except payments"),
            ("Instead of Python", "except Python"),
            // left alone
            ("us-east-1 and gpt-4o", "us-east-1 and gpt-4o"),
            ("Terraform - add a tag", "Terraform - add a tag"),
            ("over the weekend", "over the weekend"),
            ("under the hood", "under the hood"),
            ("someone", "someone"),
        ] {
            assert_eq!(canonical(written), expected, "{written}");
        }
    }
}
