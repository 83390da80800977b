#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;

/// Owned request data; `facts()` borrows it as [`RequestFacts`].
#[derive(Debug, Clone)]
struct Req {
    method: Method,
    host: Option<String>,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    client_ip: Option<IpAddr>,
}

impl Req {
    fn new() -> Self {
        Req {
            method: Method::GET,
            host: Some("api.example.com".into()),
            path: "/v1/payments".into(),
            query: None,
            headers: HeaderMap::new(),
            client_ip: Some("10.1.2.3".parse().unwrap()),
        }
    }
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers
            .append(name, HeaderValue::from_str(value).unwrap());
        self
    }
    fn host(mut self, host: Option<&str>) -> Self {
        self.host = host.map(str::to_owned);
        self
    }
    fn path(mut self, path: &str) -> Self {
        self.path = path.into();
        self
    }
    fn query(mut self, q: &str) -> Self {
        self.query = Some(q.into());
        self
    }
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    fn ip(mut self, ip: Option<&str>) -> Self {
        self.client_ip = ip.map(|s| s.parse().unwrap());
        self
    }
    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            method: &self.method,
            host: self.host.as_deref(),
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            client_ip: self.client_ip,
        }
    }
}

fn eval(rule: &str, req: &Req) -> bool {
    Rule::parse(rule)
        .unwrap_or_else(|e| panic!("{rule}: {e}"))
        .evaluate(&req.facts())
}

fn err(rule: &str) -> RuleError {
    match Rule::parse(rule) {
        Ok(r) => panic!("{rule:?} parsed as {r}"),
        Err(e) => e,
    }
}

const MFA: &str = "Header(`X-MFA-Verified`, `true`)";
const HOURS: &str = "!HeaderRegexp(`X-Request-Time`, `^(0[0-8]|1[8-9]|2[0-3]):.*`)";

// --- seed rules ------------------------------------------------------------

#[test]
fn seed_mfa_rule() {
    assert!(eval(MFA, &Req::new().header("x-mfa-verified", "true")));
    assert!(eval(MFA, &Req::new().header("X-Mfa-Verified", "true")));
    assert!(!eval(MFA, &Req::new()));
    assert!(!eval(MFA, &Req::new().header("x-mfa-verified", "false")));
    assert!(!eval(MFA, &Req::new().header("x-mfa-verified", "TRUE")));
    assert!(!eval(
        MFA,
        &Req::new().header("x-mfa-verified", "true, false")
    ));
    // any of several values
    assert!(eval(
        MFA,
        &Req::new()
            .header("x-mfa-verified", "no")
            .header("x-mfa-verified", "true")
    ));
}

#[test]
fn seed_business_hours_rule() {
    let at = |t: &str| eval(HOURS, &Req::new().header("x-request-time", t));
    assert!(!at("07:30"), "07:30 is outside business hours");
    assert!(at("09:15"), "09:15 is inside business hours");
    assert!(!at("19:00"), "19:00 is outside business hours");
    assert!(at("12:00"));
    assert!(at("17:59"));
    assert!(!at("18:00"));
    assert!(!at("23:59"));
    assert!(!at("00:00"));
    // Without the header the regexp matcher is false, so the negation allows.
    assert!(eval(HOURS, &Req::new()));
}

#[test]
fn seed_policies_combined_all_must_allow() {
    let policies = [Rule::parse(MFA).unwrap(), Rule::parse(HOURS).unwrap()];
    let allowed = |req: &Req| policies.iter().all(|r| r.evaluate(&req.facts()));
    let base = || Req::new().header("x-mfa-verified", "true");
    assert!(allowed(&base().header("x-request-time", "09:15")));
    assert!(!allowed(&base().header("x-request-time", "07:30")));
    assert!(!allowed(&base().header("x-request-time", "19:00")));
    assert!(!allowed(&Req::new().header("x-request-time", "09:15")));
}

// --- matchers ----------------------------------------------------------------

#[test]
fn header_regexp_matcher() {
    let r = "HeaderRegexp(`Authorization`, `^Bearer [A-Za-z0-9._-]+$`)";
    assert!(eval(
        r,
        &Req::new().header("authorization", "Bearer abc.def")
    ));
    assert!(!eval(r, &Req::new().header("authorization", "Basic abc")));
    assert!(!eval(r, &Req::new()));
    // not anchored implicitly
    assert!(eval(
        "HeaderRegexp(`X-A`, `b`)",
        &Req::new().header("x-a", "abc")
    ));
}

#[test]
fn host_matcher() {
    let r = "Host(`API.example.com`)";
    assert!(eval(r, &Req::new()));
    assert!(eval(r, &Req::new().host(Some("api.EXAMPLE.com:8443"))));
    assert!(eval(r, &Req::new().host(Some("api.example.com."))));
    assert!(!eval(r, &Req::new().host(Some("example.com"))));
    assert!(!eval(r, &Req::new().host(None)));
    assert!(eval("Host(`::1`)", &Req::new().host(Some("[::1]:8080"))));
    assert!(eval("Host(`[::1]`)", &Req::new().host(Some("[::1]"))));
    assert!(eval("Host(`::1`)", &Req::new().host(Some("::1"))));
}

#[test]
fn host_regexp_matcher() {
    let r = r"HostRegexp(`^[a-z]+\.example\.com$`)";
    assert!(eval(r, &Req::new().host(Some("API.example.com:443"))));
    assert!(!eval(r, &Req::new().host(Some("a.b.example.com"))));
    assert!(!eval(r, &Req::new().host(None)));
}

#[test]
fn path_matchers() {
    let req = Req::new().path("/v1/payments");
    assert!(eval("Path(`/v1/payments`)", &req));
    assert!(!eval("Path(`/v1/payments/`)", &req));
    assert!(!eval("Path(`/v1`)", &req));
    assert!(eval("PathPrefix(`/v1/`)", &req));
    assert!(eval("PathPrefix(`/`)", &req));
    assert!(!eval("PathPrefix(`/v2`)", &req));
    assert!(eval(r"PathRegexp(`^/v[0-9]+/pay`)", &req));
    assert!(!eval(r"PathRegexp(`^/v[0-9]+/refunds`)", &req));
}

#[test]
fn method_matcher() {
    assert!(eval("Method(`GET`)", &Req::new()));
    assert!(eval("Method(`get`)", &Req::new()));
    assert!(!eval("Method(`POST`)", &Req::new()));
    assert!(eval("Method(`POST`)", &Req::new().method(Method::POST)));
}

#[test]
fn query_matchers() {
    let req = Req::new().query("a=1&b=hello+world&c&d=%2Fx&a=2&bad=%zz");
    assert!(eval("Query(`a`, `1`)", &req));
    assert!(eval("Query(`a`, `2`)", &req));
    assert!(!eval("Query(`a`, `3`)", &req));
    assert!(eval("Query(`b`, `hello world`)", &req));
    assert!(eval("Query(`c`)", &req));
    assert!(eval("Query(`c`, ``)", &req));
    assert!(eval("Query(`d`, `/x`)", &req));
    assert!(!eval("Query(`bad`)", &req), "invalid escapes are skipped");
    assert!(!eval("Query(`e`)", &req));
    assert!(!eval("Query(`a`)", &Req::new()));
    assert!(eval("QueryRegexp(`a`, `^[0-9]$`)", &req));
    assert!(!eval("QueryRegexp(`b`, `^[0-9]$`)", &req));
    assert!(!eval("QueryRegexp(`z`, ``)", &req));
    assert!(!eval("Query(`x`)", &Req::new().query("x=1;y=2")));
}

#[test]
fn client_ip_matcher() {
    let ip = |rule: &str, addr: Option<&str>| eval(rule, &Req::new().ip(addr));
    assert!(ip("ClientIP(`10.0.0.0/8`)", Some("10.1.2.3")));
    assert!(!ip("ClientIP(`10.0.0.0/8`)", Some("11.1.2.3")));
    assert!(ip("ClientIP(`10.1.2.3`)", Some("10.1.2.3")));
    assert!(!ip("ClientIP(`10.1.2.3`)", Some("10.1.2.4")));
    assert!(
        ip("ClientIP(`10.1.2.3/8`)", Some("10.200.0.1")),
        "host bits are masked"
    );
    assert!(ip("ClientIP(`0.0.0.0/0`)", Some("8.8.8.8")));
    assert!(!ip("ClientIP(`0.0.0.0/0`)", Some("::2")));
    assert!(ip("ClientIP(`192.168.1.0/25`)", Some("192.168.1.127")));
    assert!(!ip("ClientIP(`192.168.1.0/25`)", Some("192.168.1.128")));
    assert!(ip("ClientIP(`2001:db8::/32`)", Some("2001:db8:1::5")));
    assert!(!ip("ClientIP(`2001:db8::/32`)", Some("2001:db9::5")));
    assert!(ip("ClientIP(`::1`)", Some("::1")));
    assert!(ip("ClientIP(`::/0`)", Some("fe80::1")));
    // IPv4-mapped addresses are IPv4
    assert!(ip("ClientIP(`10.0.0.0/8`)", Some("::ffff:10.9.9.9")));
    assert!(ip("ClientIP(`::ffff:10.0.0.0/104`)", Some("10.9.9.9")));
    assert!(!ip("ClientIP(`10.0.0.0/8`)", None));
}

#[test]
fn cidr_parse_errors() {
    for bad in [
        "10.0.0.0/33",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0.0/-1",
        "10.0.0.0/08x",
        "::/129",
        "10.0.0",
        "10.0.0.256",
        "host.example",
        "",
        "10.0.0.0/8/8",
        "10.0.0.0/0008",
    ] {
        let e = err(&format!("ClientIP(`{bad}`)"));
        assert_eq!(e.position, 9, "{bad}: {e}");
    }
    assert!(Rule::parse("ClientIP(`::/128`)").is_ok());
    assert!(Rule::parse("ClientIP(`1.2.3.4/032`)").is_ok());
}

// --- operators ---------------------------------------------------------------

fn abc(a: bool, b: bool, c: bool) -> Req {
    let mut r = Req::new();
    for (on, name) in [(a, "a"), (b, "b"), (c, "c")] {
        if on {
            r = r.header(name, "1");
        }
    }
    r
}

const A: &str = "Header(`a`, `1`)";
const B: &str = "Header(`b`, `1`)";
const C: &str = "Header(`c`, `1`)";

fn each_abc(mut check: impl FnMut(bool, bool, bool, &Req)) {
    for bits in 0..8u8 {
        let (a, b, c) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
        check(a, b, c, &abc(a, b, c));
    }
}

#[test]
fn precedence_not_and_or() {
    let rule = format!("{A} || {B} && !{C}");
    each_abc(|a, b, c, req| assert_eq!(eval(&rule, req), a || (b && !c), "{a} {b} {c}"));
    let rule = format!("!{A} && {B} || {C}");
    each_abc(|a, b, c, req| assert_eq!(eval(&rule, req), (!a && b) || c, "{a} {b} {c}"));
    let rule = format!("{A}&&{B}||{C}&&!{A}");
    each_abc(|a, b, c, req| assert_eq!(eval(&rule, req), (a && b) || (c && !a)));
}

#[test]
fn parentheses_override_precedence() {
    let rule = format!("({A} || {B}) && !{C}");
    each_abc(|a, b, c, req| assert_eq!(eval(&rule, req), (a || b) && !c));
    let rule = format!("!({A} && {B}) || {C}");
    each_abc(|a, b, c, req| assert_eq!(eval(&rule, req), !(a && b) || c));
    let rule = format!("!!(({A}))");
    each_abc(|a, _, _, req| assert_eq!(eval(&rule, req), a));
}

#[test]
fn display_is_canonical() {
    let cases = [
        (
            " Header( \"X-A\" ,`v` )||Host(`h`)&&!Path(`/p`) ",
            "Header(`X-A`, `v`) || Host(`h`) && !Path(`/p`)",
        ),
        (
            "(Method(`GET`)||Method(`HEAD`))&&Query(`k`)",
            "(Method(`GET`) || Method(`HEAD`)) && Query(`k`)",
        ),
        ("!(Path(`/a`) && Path(`/b`))", "!(Path(`/a`) && Path(`/b`))"),
        ("((Path(`/a`)))", "Path(`/a`)"),
        (
            "Header(`x`, \"a`b\\\"c\\\\\")",
            "Header(`x`, \"a`b\\\"c\\\\\")",
        ),
        (MFA, MFA),
        (HOURS, HOURS),
    ];
    for (input, canonical) in cases {
        let rule = Rule::parse(input).unwrap();
        assert_eq!(rule.to_string(), canonical);
        assert_eq!(Rule::parse(canonical).unwrap().to_string(), canonical);
    }
}

#[test]
fn double_quoted_strings_and_escapes() {
    let req = Req::new().header("x-a", "tab\there \"q\" \\ é");
    assert!(eval(r#"Header("X-A", "tab\there \"q\" \\ \u00e9")"#, &req));
    assert!(eval(r#"Header("X-A", "\x74ab\011here \"q\" \\ é")"#, &req));
    assert!(eval("Header(`x-a`, \"tab\\there \\\"q\\\" \\\\ é\")", &req));
    let e = err(r#"Header("x", "\q")"#);
    assert_eq!(e.position, 13, "{e}");
    assert!(e.message.contains("unknown escape"), "{e}");
    let e = err(r#"Header("x", "\xff")"#);
    assert_eq!(e.position, 13, "{e}");
    let e = err(r#"Header("x", "\u12")"#);
    assert_eq!(e.position, 13, "{e}");
    let e = err("Header(\"x\", \"a\nb\")");
    assert_eq!(e.position, 12, "{e}");
}

// --- errors ------------------------------------------------------------------

#[test]
fn error_display_format() {
    let e = err("Heder(`a`, `b`)");
    assert_eq!(e.position, 0);
    assert_eq!(
        e.to_string(),
        "at 0: unknown matcher \"Heder\"; expected one of Header, HeaderRegexp, Host, \
         HostRegexp, Path, PathPrefix, PathRegexp, Method, Query, QueryRegexp, ClientIP"
    );
    let e = err("header(`a`, `b`)");
    assert!(e.message.contains("did you mean Header?"), "{e}");
    let e = err(&format!("{MFA} && Pth(`/x`)"));
    assert_eq!(e.position, MFA.len() + 4);
}

#[test]
fn error_unbalanced_parens() {
    let e = err("(Path(`/a`) || Path(`/b`)");
    assert_eq!(e.position, 25, "{e}");
    assert!(e.message.contains("expected `)` to close `(` at 0"), "{e}");
    let e = err("Path(`/a`))");
    assert_eq!(e.position, 10, "{e}");
    assert!(e.message.contains("unexpected `)`"), "{e}");
    let e = err("Path(`/a`");
    assert_eq!(e.position, 9, "{e}");
    assert!(e.message.contains("expected `,` or `)`"), "{e}");
    let e = err("()");
    assert_eq!(e.position, 1, "{e}");
    let e = err("Path");
    assert_eq!(e.position, 4, "{e}");
    assert!(e.message.contains("expected `(` after matcher Path"), "{e}");
}

#[test]
fn error_unterminated_string() {
    let e = err("Path(`/a)");
    assert_eq!(e.position, 5, "{e}");
    assert!(e.message.contains("unterminated string"), "{e}");
    let e = err("Header(`a`, \"b)");
    assert_eq!(e.position, 12, "{e}");
    assert!(e.message.contains("unterminated string"), "{e}");
    let e = err("Header(`a`, \"b\\");
    assert_eq!(e.position, 12, "{e}");
}

#[test]
fn error_bad_regex() {
    let e = err("HeaderRegexp(`X-A`, `(unclosed`)");
    assert_eq!(e.position, 20, "{e}");
    assert!(
        e.message
            .starts_with("invalid regular expression `(unclosed`"),
        "{e}"
    );
    let e = err("PathRegexp(`[z-a]`)");
    assert_eq!(e.position, 11, "{e}");
    let e = err(r"HostRegexp(`\w{1000}\w{1000}`)");
    assert_eq!(e.position, 11, "{e}");
    assert!(e.message.contains("too large"), "{e}");
    let e = err("HostRegexp(`é`)");
    assert!(e.message.contains("non-ASCII"), "{e}");
}

#[test]
fn error_wrong_arity() {
    let e = err("Header(`X-A`)");
    assert_eq!(e.position, 0);
    assert_eq!(e.message, "Header expects 2 arguments (name, value), got 1");
    let e = err("Path(`/a`) && Host(`a`, `b`)");
    assert_eq!(e.position, 14);
    assert_eq!(e.message, "Host expects 1 argument (host), got 2");
    let e = err("Query()");
    assert_eq!(
        e.message,
        "Query expects 1 or 2 arguments (key) or (key, value), got 0"
    );
    let e = err("Query(`a`, `b`, `c`)");
    assert!(e.message.contains("got 3"), "{e}");
    let e = err("Method(`GET`,)");
    assert_eq!(e.position, 13, "{e}");
}

#[test]
fn error_trailing_garbage() {
    let e = err("Path(`/a`) Path(`/b`)");
    assert_eq!(e.position, 11, "{e}");
    assert!(e.message.contains("after the end of the rule"), "{e}");
    let e = err("Path(`/a`) &&");
    assert_eq!(e.position, 13, "{e}");
    assert!(e.message.contains("end of input"), "{e}");
    let e = err("Path(`/a`) & Path(`/b`)");
    assert_eq!(e.position, 11, "{e}");
    assert!(e.message.contains("did you mean `&&`"), "{e}");
    let e = err("Path(`/a`) || #");
    assert_eq!(e.position, 14, "{e}");
    let e = err("Path('/a')");
    assert_eq!(e.position, 5, "{e}");
}

#[test]
fn error_invalid_arguments() {
    assert_eq!(err("Path(`a`)").position, 5);
    assert_eq!(err("PathPrefix(`a`)").position, 11);
    assert_eq!(err("Header(`bad name`, `v`)").position, 7);
    assert_eq!(err("Method(`GE T`)").position, 7);
    assert_eq!(err("Host(``)").position, 5);
    assert_eq!(err("Query(``)").position, 6);
    assert_eq!(err("Host(`bücher.de`)").position, 5);
    assert_eq!(err("Path(/a)").position, 5);
}

#[test]
fn empty_rule_is_refused() {
    assert_eq!(err("").position, 0);
    assert_eq!(err("   ").position, 3);
}

#[test]
fn length_limit() {
    let pad = MAX_RULE_LEN - "Path(``)".len();
    let ok = format!("Path(`/{}`)", "a".repeat(pad - 1));
    assert_eq!(ok.len(), MAX_RULE_LEN);
    assert!(Rule::parse(&ok).is_ok());
    let long = format!("Path(`/{}`)", "a".repeat(pad));
    let e = err(&long);
    assert_eq!(e.position, 0);
    assert!(e.message.contains("limit is 4096"), "{e}");
}

#[test]
fn depth_limit() {
    let nest = |n: usize| format!("{}Path(`/`){}", "(".repeat(n), ")".repeat(n));
    assert!(Rule::parse(&nest(MAX_DEPTH)).is_ok());
    let e = err(&nest(MAX_DEPTH + 1));
    assert_eq!(e.position, MAX_DEPTH, "{e}");
    assert!(e.message.contains("nested too deeply"), "{e}");

    let nots = |n: usize| format!("{}Path(`/`)", "!".repeat(n));
    assert!(Rule::parse(&nots(MAX_DEPTH)).is_ok());
    assert_eq!(err(&nots(MAX_DEPTH + 1)).position, MAX_DEPTH);

    let mixed = |n: usize| format!("{}Path(`/`){}", "!(".repeat(n), ")".repeat(n));
    assert!(Rule::parse(&mixed(MAX_DEPTH / 2)).is_ok());
    assert!(Rule::parse(&mixed(MAX_DEPTH / 2 + 1)).is_err());

    // Long flat chains are not nesting.
    let chain = vec!["Path(`/`)"; 300].join(" && ");
    assert!(Rule::parse(&chain).is_ok());
}

// --- round trip property -----------------------------------------------------

const NAMES: [&str; 3] = ["X-A", "x-b", "X-C"];
const VALUES: [&str; 6] = ["1", "two", "a`b", "q\"\\", "", "é\t"];
const REGEXES: [&str; 5] = ["^1$", "t", "^$", "`", r"\\|é"];
const PATHS: [&str; 4] = ["/", "/a", "/a/b", "/b"];
const HOSTS: [&str; 3] = ["a.example", "B.example", "c.example"];
const METHODS: [&str; 3] = ["GET", "post", "DELETE"];
const KEYS: [&str; 3] = ["k", "l", "a`"];
const NETS: [&str; 5] = [
    "10.0.0.0/8",
    "10.1.2.3",
    "::1",
    "2001:db8::/32",
    "0.0.0.0/0",
];
const IPS: [&str; 5] = ["10.1.2.3", "10.9.9.9", "::1", "2001:db8::5", "192.0.2.1"];

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(items)
}

fn arb_matcher() -> impl Strategy<Value = Expr> {
    (0usize..11, 0usize..64, 0usize..64, any::<bool>()).prop_filter_map(
        "invalid matcher arguments",
        |(k, i, j, flag)| {
            let (_, kind, _) = MATCHERS[k];
            let s = |v: &str| Arg {
                value: v.to_owned(),
                pos: 0,
            };
            let at = |xs: &[&str], n: usize| s(xs[n % xs.len()]);
            let args = match kind {
                Kind::Header => vec![at(&NAMES, i), at(&VALUES, j)],
                Kind::HeaderRegexp => vec![at(&NAMES, i), at(&REGEXES, j)],
                Kind::Host => vec![at(&HOSTS, i)],
                Kind::HostRegexp => vec![s(["^a", "example$", "B"][i % 3])],
                Kind::Path => vec![at(&PATHS, i)],
                Kind::PathPrefix => vec![at(&PATHS, i)],
                Kind::PathRegexp => vec![s(["^/a", "b$", "/"][i % 3])],
                Kind::Method => vec![at(&METHODS, i)],
                Kind::Query if flag => vec![at(&KEYS, i)],
                Kind::Query => vec![at(&KEYS, i), at(&VALUES, j)],
                Kind::QueryRegexp => vec![at(&KEYS, i), at(&REGEXES, j)],
                Kind::ClientIp => vec![at(&NETS, i)],
            };
            Matcher::build(kind, 0, &args).ok().map(Expr::Matcher)
        },
    )
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    arb_matcher().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
        ]
    })
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn arb_req() -> impl Strategy<Value = Req> {
    let header = (pick(&NAMES), pick(&VALUES));
    let query = (pick(&KEYS), pick(&VALUES));
    (
        prop::collection::vec(header, 0..5),
        prop::collection::vec(query, 0..4),
        pick(&PATHS),
        prop::option::of(pick(&HOSTS)),
        pick(&METHODS),
        prop::option::of(pick(&IPS)),
    )
        .prop_map(|(headers, query, path, host, method, ip)| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                );
            }
            let query: Vec<String> = query
                .into_iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            Req {
                method: Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap(),
                host: host.map(|h| format!("{h}:8080")),
                path: path.to_owned(),
                query: Some(query.join("&")),
                headers: map,
                client_ip: ip.map(|s| s.parse().unwrap()),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Printing a random AST and parsing it back gives an equivalent rule, and
    /// the canonical text is a fixed point.
    #[test]
    fn display_parse_round_trip(expr in arb_expr(), reqs in prop::collection::vec(arb_req(), 1..8)) {
        let original = Rule { expr };
        let text = original.to_string();
        let reparsed = Rule::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(reparsed.to_string(), text.clone());
        for req in &reqs {
            prop_assert_eq!(
                original.evaluate(&req.facts()),
                reparsed.evaluate(&req.facts()),
                "{} on {:?}", text, req
            );
        }
    }

    /// The parser never panics and errors point inside (or at the end of) the text.
    #[test]
    fn parse_never_panics(text in "[ !&|()`\",a-zA-Z/\\\\.:0-9]{0,64}") {
        if let Err(e) = Rule::parse(&text) {
            prop_assert!(e.position <= text.len(), "{}: {}", text, e);
        }
    }

    #[test]
    fn quote_round_trips(s in any::<String>()) {
        let text = format!("Header(`x`, {})", quote(&s));
        let rule = Rule::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(rule.to_string(), text);
    }
}
