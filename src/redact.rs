//! Credentials out of messages: every configuration error, and every error text that may quote
//! configuration, goes through [`credentials`] before it is printed or logged. A config error
//! once printed a backend URL with its password.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// What stands in for a removed credential.
pub const REDACTED: &str = "REDACTED";

/// `scheme://user:password@` (the whole user-info), `Bearer <token>`, JWT-shaped strings, and
/// `sk-` style API keys.
static CREDENTIALS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@\s]*@",
        r"|(?P<bearer>(?i:bearer|basic)\s+)[A-Za-z0-9._~+/=\-]+",
        r"|eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*",
        r"|\bsk-[A-Za-z0-9_\-]{8,}",
    ))
    .ok()
});

/// `text` with credentials replaced by [`REDACTED`]. When the pattern cannot be built (it is a
/// constant, so never), the whole text is withheld rather than risk a leak.
pub fn credentials(text: &str) -> Cow<'_, str> {
    let Some(pattern) = CREDENTIALS.as_ref() else {
        return Cow::Borrowed("(message withheld)");
    };
    pattern.replace_all(text, |caps: &regex::Captures<'_>| {
        if let Some(scheme) = caps.name("scheme") {
            format!("{}{REDACTED}@", scheme.as_str())
        } else if let Some(bearer) = caps.name("bearer") {
            format!("{}{REDACTED}", bearer.as_str())
        } else {
            REDACTED.to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_replaced_and_the_rest_kept() {
        assert_eq!(
            credentials(r#"invalid URL "http://admin:S3cretPass@vllm:8000": must not"#),
            r#"invalid URL "http://REDACTED@vllm:8000": must not"#
        );
        assert_eq!(
            credentials("ftp://user@host/x and https://a:b@c"),
            "ftp://REDACTED@host/x and https://REDACTED@c"
        );
        assert_eq!(
            credentials("header value Bearer abc.def-123 rejected"),
            "header value Bearer REDACTED rejected"
        );
        assert_eq!(
            credentials("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig here"),
            "token REDACTED here"
        );
        assert_eq!(
            credentials("key sk-abcdef123456 leaked"),
            "key REDACTED leaked"
        );
        let clean = "spec.backends[0].timeout: expected a duration like 30s";
        assert!(matches!(credentials(clean), Cow::Borrowed(_)));
        assert_eq!(
            credentials("http://vllm:8000/v1 is fine"),
            "http://vllm:8000/v1 is fine"
        );
    }
}
