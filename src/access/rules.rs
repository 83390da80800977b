//! Access-rule language for `API.spec.accessControl.policies[].rule`.
//!
//! Rules are written in [Traefik's v3 rule syntax], for example
//!
//! ```text
//! Header(`X-MFA-Verified`, `true`)
//! !HeaderRegexp(`X-Request-Time`, `^(0[0-8]|1[8-9]|2[0-3]):.*`)
//! (Host(`api.example.com`) || HostRegexp(`^.+\.example\.org$`)) && PathPrefix(`/v1/`)
//! ```
//!
//! # Policy semantics
//!
//! An API may carry several policies `{name, rule}`. A request is allowed only
//! when **every** policy's rule evaluates to `true`; as soon as one evaluates to
//! `false` the gateway answers `403 Forbidden` naming that policy. This module
//! only parses and evaluates single rules ([`Rule::parse`], [`Rule::evaluate`]);
//! the gateway combines them.
//!
//! # Grammar
//!
//! ```text
//! rule    := or
//! or      := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | "(" or ")" | matcher
//! matcher := NAME "(" [ string ( "," string )* ] ")"
//! string  := `raw text`  |  "text with Go escapes (\" \\ \n \t \xHH \uHHHH ...)"
//! ```
//!
//! `!` binds tightest, then `&&`, then `||` (Traefik's precedence). Whitespace
//! between tokens is ignored. Matcher names are case-sensitive.
//!
//! # Matchers
//!
//! | matcher | true when |
//! | --- | --- |
//! | `Header(name, value)` | some value of header `name` (name case-insensitive) equals `value` exactly |
//! | `HeaderRegexp(name, re)` | some value of header `name` matches `re` |
//! | `Host(host)` | the request host, lower-cased, port and trailing dot removed, equals `host` (case-insensitive) |
//! | `HostRegexp(re)` | that normalised request host matches `re` |
//! | `Path(path)` | the request path equals `path` (must start with `/`) |
//! | `PathPrefix(prefix)` | the request path starts with `prefix` (must start with `/`) |
//! | `PathRegexp(re)` | the request path matches `re` |
//! | `Method(method)` | the request method equals `method` (rule text is upper-cased) |
//! | `Query(key)` | the query string has parameter `key` (with or without a value) |
//! | `Query(key, value)` | some value of query parameter `key` equals `value` |
//! | `QueryRegexp(key, re)` | some value of query parameter `key` matches `re` |
//! | `ClientIP(ip-or-cidr)` | the client address is that IP, or lies in that IPv4/IPv6 CIDR |
//!
//! Regular expressions use the [`regex`] crate syntax, are **not** anchored
//! implicitly (write `^…$` to anchor) and are compiled once at parse time with
//! size limits. The `regex` crate runs in linear time, so a rule cannot cause
//! catastrophic backtracking. Query strings are decoded like
//! `application/x-www-form-urlencoded` (`+` is a space, `%XX` escapes); pairs
//! with invalid escapes or a `;` are ignored, as Go's `url.ParseQuery` does.
//! Header values are compared whole (a comma-separated header line is one
//! value). IPv4-mapped IPv6 addresses are treated as IPv4. A matcher whose
//! request fact is missing (no host, no client IP) evaluates to `false`.
//!
//! # Limits and errors
//!
//! Rule text longer than [`MAX_RULE_LEN`] bytes and nesting (of `(` and `!`)
//! deeper than [`MAX_DEPTH`] are refused. Every parse failure is a
//! [`RuleError`] carrying the byte offset into the rule text and a message,
//! displayed as `at {position}: {message}`.
//!
//! [`Rule`] implements `Display`, producing canonical text that parses back to
//! an equivalent rule.
//!
//! [Traefik's v3 rule syntax]: https://doc.traefik.io/traefik/routing/routers/#rule

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::header::HeaderName;

use super::ipnet::IpNet;
use regex::{Regex, RegexBuilder};

#[cfg(test)]
mod tests;

/// Longest rule text accepted, in bytes.
pub const MAX_RULE_LEN: usize = 4096;
/// Deepest nesting of `(` and `!` accepted.
pub const MAX_DEPTH: usize = 32;
/// Compiled-program size limit for each regular expression, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Lazy-DFA cache limit for each regular expression, in bytes.
const REGEX_DFA_SIZE_LIMIT: usize = 1 << 20;
/// Nesting limit inside one regular expression.
const REGEX_NEST_LIMIT: u32 = 64;

/// A parse failure: the byte offset into the rule text and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at {position}: {message}")]
pub struct RuleError {
    /// Byte offset into the rule text.
    pub position: usize,
    /// Human-readable description.
    pub message: String,
}

impl RuleError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        RuleError {
            position,
            message: message.into(),
        }
    }
}

/// What a rule can look at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Request method.
    pub method: &'a http::Method,
    /// Host (from the URI authority or the `Host` header), possibly with a port.
    pub host: Option<&'a str>,
    /// Request path (as the gateway routes it).
    pub path: &'a str,
    /// Raw query string, without the leading `?`.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// Address of the client, if known.
    pub client_ip: Option<IpAddr>,
}

/// A parsed access rule. Cheap to evaluate; regexes are compiled once.
#[derive(Debug, Clone)]
pub struct Rule {
    expr: Expr,
}

impl Rule {
    /// Parses rule text (Traefik v3 syntax).
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        if text.len() > MAX_RULE_LEN {
            return Err(RuleError::new(
                0,
                format!(
                    "rule is {} bytes long; the limit is {MAX_RULE_LEN} bytes",
                    text.len()
                ),
            ));
        }
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens,
            next: 0,
            end: text.len(),
            depth: 0,
        };
        if parser.peek().is_none() {
            return Err(RuleError::new(
                text.len(),
                "empty rule; expected a matcher such as Header(`X-Name`, `value`)",
            ));
        }
        let expr = parser.parse_or()?;
        if let Some(tok) = parser.peek() {
            return Err(RuleError::new(
                tok.pos,
                format!(
                    "unexpected {} after the end of the rule; expected `&&`, `||` or end of input",
                    tok.kind.describe()
                ),
            ));
        }
        Ok(Rule { expr })
    }

    /// Evaluates the rule against a request.
    pub fn evaluate(&self, req: &RequestFacts<'_>) -> bool {
        self.expr.evaluate(req)
    }
}

impl FromStr for Rule {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::parse(s)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt_prec(f, Prec::Or)
    }
}

// ---------------------------------------------------------------------------
// AST
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Expr {
    Not(Box<Expr>),
    /// At least two operands.
    And(Vec<Expr>),
    /// At least two operands.
    Or(Vec<Expr>),
    Matcher(Matcher),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    Or,
    And,
    Unary,
}

impl Expr {
    fn evaluate(&self, req: &RequestFacts<'_>) -> bool {
        match self {
            Expr::Not(inner) => !inner.evaluate(req),
            Expr::And(items) => items.iter().all(|e| e.evaluate(req)),
            Expr::Or(items) => items.iter().any(|e| e.evaluate(req)),
            Expr::Matcher(m) => m.evaluate(req),
        }
    }

    fn prec(&self) -> Prec {
        match self {
            Expr::Or(_) => Prec::Or,
            Expr::And(_) => Prec::And,
            Expr::Not(_) | Expr::Matcher(_) => Prec::Unary,
        }
    }

    /// Writes the expression; parenthesised when it binds looser than `min`.
    fn fmt_prec(&self, f: &mut fmt::Formatter<'_>, min: Prec) -> fmt::Result {
        if self.prec() < min {
            f.write_str("(")?;
            self.fmt_prec(f, Prec::Or)?;
            return f.write_str(")");
        }
        match self {
            Expr::Not(inner) => {
                f.write_str("!")?;
                inner.fmt_prec(f, Prec::Unary)
            }
            Expr::And(items) => fmt_joined(f, items, " && ", Prec::Unary),
            Expr::Or(items) => fmt_joined(f, items, " || ", Prec::And),
            Expr::Matcher(m) => fmt::Display::fmt(m, f),
        }
    }
}

fn fmt_joined(f: &mut fmt::Formatter<'_>, items: &[Expr], sep: &str, min: Prec) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        item.fmt_prec(f, min)?;
    }
    Ok(())
}

/// A compiled regular expression together with its source text.
#[derive(Debug, Clone)]
struct Pattern {
    regex: Regex,
}

impl Pattern {
    fn compile(arg: &Arg) -> Result<Pattern, RuleError> {
        RegexBuilder::new(&arg.value)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
            .nest_limit(REGEX_NEST_LIMIT)
            .build()
            .map(|regex| Pattern { regex })
            .map_err(|e| {
                let detail = match e {
                    regex::Error::CompiledTooBig(limit) => {
                        format!(
                            "regular expression is too large (compiled size limit {limit} bytes)"
                        )
                    }
                    other => other.to_string(),
                };
                RuleError::new(
                    arg.pos,
                    format!(
                        "invalid regular expression {}: {}",
                        quote(&arg.value),
                        detail.trim()
                    ),
                )
            })
    }

    fn source(&self) -> &str {
        self.regex.as_str()
    }

    fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Header,
    HeaderRegexp,
    Host,
    HostRegexp,
    Path,
    PathPrefix,
    PathRegexp,
    Method,
    Query,
    QueryRegexp,
    ClientIp,
}

/// Matcher names, kinds and argument signatures, in the order they are listed
/// in error messages.
const MATCHERS: [(&str, Kind, &str); 11] = [
    ("Header", Kind::Header, "(name, value)"),
    ("HeaderRegexp", Kind::HeaderRegexp, "(name, regexp)"),
    ("Host", Kind::Host, "(host)"),
    ("HostRegexp", Kind::HostRegexp, "(regexp)"),
    ("Path", Kind::Path, "(path)"),
    ("PathPrefix", Kind::PathPrefix, "(prefix)"),
    ("PathRegexp", Kind::PathRegexp, "(regexp)"),
    ("Method", Kind::Method, "(method)"),
    ("Query", Kind::Query, "(key) or (key, value)"),
    ("QueryRegexp", Kind::QueryRegexp, "(key, regexp)"),
    ("ClientIP", Kind::ClientIp, "(ip-or-cidr)"),
];

impl Kind {
    fn name(self) -> &'static str {
        MATCHERS
            .iter()
            .find(|(_, k, _)| *k == self)
            .map_or("?", |(n, _, _)| n)
    }

    fn signature(self) -> &'static str {
        MATCHERS
            .iter()
            .find(|(_, k, _)| *k == self)
            .map_or("?", |(_, _, s)| s)
    }

    fn arity(self) -> (usize, usize) {
        match self {
            Kind::Header | Kind::HeaderRegexp | Kind::QueryRegexp => (2, 2),
            Kind::Query => (1, 2),
            Kind::Host
            | Kind::HostRegexp
            | Kind::Path
            | Kind::PathPrefix
            | Kind::PathRegexp
            | Kind::Method
            | Kind::ClientIp => (1, 1),
        }
    }
}

/// One string argument of a matcher and where it starts in the rule text.
#[derive(Debug, Clone)]
struct Arg {
    value: String,
    pos: usize,
}

#[derive(Debug, Clone)]
enum Matcher {
    Header {
        name: String,
        header: HeaderName,
        value: String,
    },
    HeaderRegexp {
        name: String,
        header: HeaderName,
        pattern: Pattern,
    },
    Host {
        raw: String,
        host: String,
    },
    HostRegexp(Pattern),
    Path(String),
    PathPrefix(String),
    PathRegexp(Pattern),
    Method {
        raw: String,
        method: String,
    },
    Query {
        key: String,
        value: Option<String>,
    },
    QueryRegexp {
        key: String,
        pattern: Pattern,
    },
    ClientIp {
        raw: String,
        net: IpNet,
    },
}

fn header_name(arg: &Arg) -> Result<HeaderName, RuleError> {
    HeaderName::from_bytes(arg.value.as_bytes()).map_err(|_| {
        RuleError::new(
            arg.pos,
            format!("{} is not a valid header name", quote(&arg.value)),
        )
    })
}

fn url_path(arg: &Arg, what: &str) -> Result<String, RuleError> {
    if arg.value.starts_with('/') {
        Ok(arg.value.clone())
    } else {
        Err(RuleError::new(
            arg.pos,
            format!("{what} {} does not start with `/`", quote(&arg.value)),
        ))
    }
}

fn ascii_only(arg: &Arg, what: &str) -> Result<(), RuleError> {
    if arg.value.is_ascii() {
        Ok(())
    } else {
        Err(RuleError::new(
            arg.pos,
            format!(
                "{what} {} contains non-ASCII characters; use the punycode (xn--) form",
                quote(&arg.value)
            ),
        ))
    }
}

fn non_empty(arg: &Arg, what: &str) -> Result<(), RuleError> {
    if arg.value.is_empty() {
        Err(RuleError::new(arg.pos, format!("{what} must not be empty")))
    } else {
        Ok(())
    }
}

impl Matcher {
    /// Builds a matcher, checking the argument count and each argument.
    fn build(kind: Kind, name_pos: usize, args: &[Arg]) -> Result<Matcher, RuleError> {
        let (min, max) = kind.arity();
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min} argument{}", if min == 1 { "" } else { "s" })
            } else {
                format!("{min} or {max} arguments")
            };
            return Err(RuleError::new(
                name_pos,
                format!(
                    "{} expects {expected} {}, got {}",
                    kind.name(),
                    kind.signature(),
                    args.len()
                ),
            ));
        }
        let [first, rest @ ..] = args else {
            return Err(RuleError::new(name_pos, "missing arguments"));
        };
        let second = rest.first();
        let second_or_err =
            || second.ok_or_else(|| RuleError::new(name_pos, "missing second argument"));
        Ok(match kind {
            Kind::Header => Matcher::Header {
                name: first.value.clone(),
                header: header_name(first)?,
                value: second_or_err()?.value.clone(),
            },
            Kind::HeaderRegexp => Matcher::HeaderRegexp {
                name: first.value.clone(),
                header: header_name(first)?,
                pattern: Pattern::compile(second_or_err()?)?,
            },
            Kind::Host => {
                non_empty(first, "host")?;
                ascii_only(first, "host")?;
                Matcher::Host {
                    raw: first.value.clone(),
                    host: normalize_rule_host(&first.value),
                }
            }
            Kind::HostRegexp => {
                ascii_only(first, "host regexp")?;
                Matcher::HostRegexp(Pattern::compile(first)?)
            }
            Kind::Path => Matcher::Path(url_path(first, "path")?),
            Kind::PathPrefix => Matcher::PathPrefix(url_path(first, "path prefix")?),
            Kind::PathRegexp => Matcher::PathRegexp(Pattern::compile(first)?),
            Kind::Method => {
                let method = first.value.to_ascii_uppercase();
                if http::Method::from_bytes(method.as_bytes()).is_err() {
                    return Err(RuleError::new(
                        first.pos,
                        format!("{} is not a valid HTTP method", quote(&first.value)),
                    ));
                }
                Matcher::Method {
                    raw: first.value.clone(),
                    method,
                }
            }
            Kind::Query => {
                non_empty(first, "query parameter name")?;
                Matcher::Query {
                    key: first.value.clone(),
                    value: second.map(|a| a.value.clone()),
                }
            }
            Kind::QueryRegexp => {
                non_empty(first, "query parameter name")?;
                Matcher::QueryRegexp {
                    key: first.value.clone(),
                    pattern: Pattern::compile(second_or_err()?)?,
                }
            }
            Kind::ClientIp => Matcher::ClientIp {
                raw: first.value.clone(),
                net: first
                    .value
                    .parse::<IpNet>()
                    .map_err(|e| RuleError::new(first.pos, e.reason))?,
            },
        })
    }

    fn kind(&self) -> Kind {
        match self {
            Matcher::Header { .. } => Kind::Header,
            Matcher::HeaderRegexp { .. } => Kind::HeaderRegexp,
            Matcher::Host { .. } => Kind::Host,
            Matcher::HostRegexp(_) => Kind::HostRegexp,
            Matcher::Path(_) => Kind::Path,
            Matcher::PathPrefix(_) => Kind::PathPrefix,
            Matcher::PathRegexp(_) => Kind::PathRegexp,
            Matcher::Method { .. } => Kind::Method,
            Matcher::Query { .. } => Kind::Query,
            Matcher::QueryRegexp { .. } => Kind::QueryRegexp,
            Matcher::ClientIp { .. } => Kind::ClientIp,
        }
    }

    fn args(&self) -> Vec<&str> {
        match self {
            Matcher::Header { name, value, .. } => vec![name, value],
            Matcher::HeaderRegexp { name, pattern, .. } => vec![name, pattern.source()],
            Matcher::Host { raw, .. } | Matcher::Method { raw, .. } => vec![raw],
            Matcher::ClientIp { raw, .. } => vec![raw],
            Matcher::HostRegexp(p) | Matcher::PathRegexp(p) => vec![p.source()],
            Matcher::Path(p) | Matcher::PathPrefix(p) => vec![p],
            Matcher::Query { key, value } => match value {
                Some(v) => vec![key, v],
                None => vec![key],
            },
            Matcher::QueryRegexp { key, pattern } => vec![key, pattern.source()],
        }
    }

    fn evaluate(&self, req: &RequestFacts<'_>) -> bool {
        match self {
            Matcher::Header { header, value, .. } => req
                .headers
                .get_all(header)
                .iter()
                .any(|v| v.as_bytes() == value.as_bytes()),
            Matcher::HeaderRegexp {
                header, pattern, ..
            } => req
                .headers
                .get_all(header)
                .iter()
                .any(|v| pattern.is_match(&String::from_utf8_lossy(v.as_bytes()))),
            Matcher::Host { host, .. } => {
                req.host.is_some_and(|h| normalize_request_host(h) == *host)
            }
            Matcher::HostRegexp(pattern) => req
                .host
                .is_some_and(|h| pattern.is_match(&normalize_request_host(h))),
            Matcher::Path(path) => req.path == path,
            Matcher::PathPrefix(prefix) => req.path.starts_with(prefix.as_str()),
            Matcher::PathRegexp(pattern) => pattern.is_match(req.path),
            Matcher::Method { method, .. } => req.method.as_str() == method,
            Matcher::Query { key, value } => {
                query_values(req.query, key).any(|v| value.as_ref().is_none_or(|want| *want == v))
            }
            Matcher::QueryRegexp { key, pattern } => {
                query_values(req.query, key).any(|v| pattern.is_match(&v))
            }
            Matcher::ClientIp { net, .. } => req.client_ip.is_some_and(|ip| net.contains(ip)),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind().name())?;
        f.write_str("(")?;
        for (i, arg) in self.args().into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&quote(arg))?;
        }
        f.write_str(")")
    }
}

/// Quotes a string canonically: backticks when possible, otherwise a
/// double-quoted string with Go escapes.
fn quote(s: &str) -> String {
    if !s.contains('`') {
        return format!("`{s}`");
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Strips brackets around an IPv6 literal, a trailing dot, and lower-cases.
fn normalize_rule_host(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Like [`normalize_rule_host`], also removing a `:port` suffix.
fn normalize_request_host(host: &str) -> String {
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        rest.split_once(']').map_or(host, |(inner, _)| inner)
    } else {
        match host.split_once(':') {
            // Exactly one colon: `name:port`. More than one: a bare IPv6 address.
            Some((name, port)) if !port.contains(':') => name,
            _ => host,
        }
    };
    normalize_rule_host(without_port)
}

/// Decoded values of query parameter `key`, `application/x-www-form-urlencoded` style.
fn query_values<'q>(query: Option<&'q str>, key: &'q str) -> impl Iterator<Item = String> + 'q {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = form_decode(k)?;
            if k != key {
                return None;
            }
            form_decode(v)
        })
}

fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokKind {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    Not,
    And,
    Or,
}

impl TokKind {
    fn describe(&self) -> String {
        match self {
            TokKind::Ident(name) => format!("identifier \"{name}\""),
            TokKind::Str(s) => format!("string {}", quote(s)),
            TokKind::LParen => "`(`".to_owned(),
            TokKind::RParen => "`)`".to_owned(),
            TokKind::Comma => "`,`".to_owned(),
            TokKind::Not => "`!`".to_owned(),
            TokKind::And => "`&&`".to_owned(),
            TokKind::Or => "`||`".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokKind,
    pos: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, RuleError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let pos = i;
        let (kind, len) = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => (TokKind::LParen, 1),
            b')' => (TokKind::RParen, 1),
            b',' => (TokKind::Comma, 1),
            b'!' => (TokKind::Not, 1),
            b'&' | b'|' => {
                if bytes.get(i + 1) == Some(&b) {
                    let kind = if b == b'&' { TokKind::And } else { TokKind::Or };
                    (kind, 2)
                } else {
                    let op = if b == b'&' { "&&" } else { "||" };
                    return Err(RuleError::new(
                        pos,
                        format!("unexpected `{}`; did you mean `{op}`?", char::from(b)),
                    ));
                }
            }
            b'`' => {
                let body = text.get(i + 1..).unwrap_or("");
                match body.find('`') {
                    Some(end) => (TokKind::Str(body[..end].to_owned()), end + 2),
                    None => {
                        return Err(RuleError::new(
                            pos,
                            "unterminated string: missing closing backtick",
                        ))
                    }
                }
            }
            b'"' => {
                let (value, len) = lex_double_quoted(text, pos)?;
                (TokKind::Str(value), len)
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let len = bytes[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                (TokKind::Ident(text[i..i + len].to_owned()), len)
            }
            _ => {
                let c = text[i..].chars().next().unwrap_or('?');
                let hint = if c == '\'' {
                    "; quote strings with backticks or double quotes"
                } else {
                    ""
                };
                return Err(RuleError::new(
                    pos,
                    format!("unexpected character {c:?}{hint}"),
                ));
            }
        };
        tokens.push(Token { kind, pos });
        i += len;
    }
    Ok(tokens)
}

/// Lexes a Go-style double-quoted string starting at `start` (the opening
/// quote). Returns the value and the byte length including both quotes.
fn lex_double_quoted(text: &str, start: usize) -> Result<(String, usize), RuleError> {
    let body = text.get(start + 1..).unwrap_or("");
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            '"' => return Ok((out, off + 2)),
            '\n' => {
                return Err(RuleError::new(
                    start,
                    "unterminated string: newline before closing double quote",
                ))
            }
            '\\' => {
                let esc_pos = start + 1 + off;
                let bad = |what: &str| RuleError::new(esc_pos, what.to_owned());
                let Some((_, e)) = chars.next() else { break };
                let simple = match e {
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\u{b}'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    _ => None,
                };
                if let Some(c) = simple {
                    out.push(c);
                    continue;
                }
                let (digits, radix) = match e {
                    'x' => (2, 16),
                    'u' => (4, 16),
                    'U' => (8, 16),
                    '0'..='7' => (2, 8),
                    _ => return Err(bad(&format!("unknown escape sequence `\\{e}`"))),
                };
                let mut value = if radix == 8 {
                    e.to_digit(8).unwrap_or(0)
                } else {
                    0
                };
                for _ in 0..digits {
                    let d = chars
                        .next()
                        .and_then(|(_, d)| d.to_digit(radix))
                        .ok_or_else(|| bad("malformed escape sequence"))?;
                    value = value * radix + d;
                }
                let c = char::from_u32(value)
                    .ok_or_else(|| bad("escape sequence is not a valid Unicode code point"))?;
                if matches!(e, 'x' | '0'..='7') && !c.is_ascii() {
                    return Err(bad(
                        "byte escapes above 0x7f are not supported; use \\u escapes",
                    ));
                }
                out.push(c);
            }
            c => out.push(c),
        }
    }
    Err(RuleError::new(
        start,
        "unterminated string: missing closing double quote",
    ))
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn peek_is(&self, kind: &TokKind) -> bool {
        self.peek().is_some_and(|t| t.kind == *kind)
    }

    fn bump(&mut self) -> Option<Token> {
        let tok = self.tokens.get(self.next).cloned();
        if tok.is_some() {
            self.next += 1;
        }
        tok
    }

    /// Position and description of the next token, for error messages.
    fn found(&self) -> (usize, String) {
        match self.peek() {
            Some(t) => (t.pos, t.kind.describe()),
            None => (self.end, "end of input".to_owned()),
        }
    }

    fn enter(&mut self, pos: usize) -> Result<(), RuleError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(RuleError::new(
                pos,
                format!("rule is nested too deeply (more than {MAX_DEPTH} levels of `(` and `!`)"),
            ))
        } else {
            Ok(())
        }
    }

    fn parse_or(&mut self) -> Result<Expr, RuleError> {
        let first = self.parse_and()?;
        if !self.peek_is(&TokKind::Or) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek_is(&TokKind::Or) {
            self.bump();
            items.push(self.parse_and()?);
        }
        Ok(Expr::Or(items))
    }

    fn parse_and(&mut self) -> Result<Expr, RuleError> {
        let first = self.parse_unary()?;
        if !self.peek_is(&TokKind::And) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek_is(&TokKind::And) {
            self.bump();
            items.push(self.parse_unary()?);
        }
        Ok(Expr::And(items))
    }

    fn parse_unary(&mut self) -> Result<Expr, RuleError> {
        let (pos, found) = self.found();
        match self.peek().map(|t| &t.kind) {
            Some(TokKind::Not) => {
                self.enter(pos)?;
                self.bump();
                let inner = self.parse_unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(inner)))
            }
            Some(TokKind::LParen) => {
                self.enter(pos)?;
                self.bump();
                let inner = self.parse_or()?;
                if !self.peek_is(&TokKind::RParen) {
                    let (at, found) = self.found();
                    return Err(RuleError::new(
                        at,
                        format!("expected `)` to close `(` at {pos}, found {found}"),
                    ));
                }
                self.bump();
                self.depth -= 1;
                Ok(inner)
            }
            Some(TokKind::Ident(_)) => self.parse_matcher(),
            _ => Err(RuleError::new(
                pos,
                format!("expected a matcher, `!` or `(`, found {found}"),
            )),
        }
    }

    fn parse_matcher(&mut self) -> Result<Expr, RuleError> {
        let Some(Token {
            kind: TokKind::Ident(name),
            pos: name_pos,
        }) = self.bump()
        else {
            let (pos, found) = self.found();
            return Err(RuleError::new(
                pos,
                format!("expected a matcher, found {found}"),
            ));
        };
        let Some(kind) = MATCHERS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, k, _)| *k)
        else {
            let names: Vec<&str> = MATCHERS.iter().map(|(n, _, _)| *n).collect();
            let hint = MATCHERS
                .iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(&name))
                .map(|(n, _, _)| format!(" (matcher names are case-sensitive: did you mean {n}?)"))
                .unwrap_or_default();
            return Err(RuleError::new(
                name_pos,
                format!(
                    "unknown matcher \"{name}\"; expected one of {}{hint}",
                    names.join(", ")
                ),
            ));
        };
        if !self.peek_is(&TokKind::LParen) {
            let (pos, found) = self.found();
            return Err(RuleError::new(
                pos,
                format!("expected `(` after matcher {name}, found {found}"),
            ));
        }
        let open = self.bump().map_or(name_pos, |t| t.pos);
        let mut args = Vec::new();
        if self.peek_is(&TokKind::RParen) {
            self.bump();
        } else {
            loop {
                let (pos, found) = self.found();
                match self.bump() {
                    Some(Token {
                        kind: TokKind::Str(value),
                        pos,
                    }) => args.push(Arg { value, pos }),
                    _ => {
                        return Err(RuleError::new(
                            pos,
                            format!("expected a quoted string argument to {name}, found {found}"),
                        ))
                    }
                }
                let (pos, found) = self.found();
                match self.bump().map(|t| t.kind) {
                    Some(TokKind::Comma) => {}
                    Some(TokKind::RParen) => break,
                    _ => {
                        let msg = format!("expected `,` or `)` to close `(` at {open}");
                        return Err(RuleError::new(
                            pos,
                            format!("{msg} in {name}, found {found}"),
                        ));
                    }
                }
            }
        }
        Matcher::build(kind, name_pos, &args).map(Expr::Matcher)
    }
}
