//! OpenAPI enforcement benchmarks: the work `apis::openapi` adds to an `API` request.
//!
//! A realistic payment spec (OpenAPI 3.0: eight paths, a request body by `$ref` through
//! `components.requestBodies`, nested `$ref`'d schemas, `nullable`, `pattern`, `format`, an
//! `additionalProperties` map, an array of line items) and the same schemas as OpenAPI 3.1;
//! a typical ~1 KB JSON payment body (valid: the common case).
//!
//! * `baseline/parse`: `serde_json` parsing the body into a `Value`, alone.
//! * `strict/parse`: the gateway's own strict parse of the body into its tape, alone.
//! * `v3_0/match`, `v3_0/enforce`, `v3_1/enforce`: matching the path and method, deciding from
//!   the `Content-Type`, then parsing the body strictly and validating it: everything the stage
//!   does per request besides reading the body. `enforce - baseline` is what validation adds
//!   over parsing the body at all; `enforce` is what the stage adds in all.
//! * `v3_0/invalid`: the same with a body whose `amount` is a string (the error described
//!   without values).
//!
//! Target: <= 20 µs added per request at p50 (criterion's median).
//!
//! `cargo bench --bench openapi -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use airgate::openapi::document::parse;
use airgate::openapi::{BodyCheck, CompiledSpec};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::Method;

/// The payment spec, OpenAPI 3.0 (also enforced by the load tests' `openapi` section).
const SPEC_30: &str = include_str!("../load-tests/scenarios/specs/payments.yaml");

/// A typical payment: about 1 KB (the load tests' request body too).
const BODY: &str = include_str!("../load-tests/scenarios/specs/payment-body.json");

/// The same spec as OpenAPI 3.1: `nullable` as a type union, numeric exclusive bounds.
fn spec_31() -> String {
    SPEC_30
        .replace("openapi: 3.0.3", "openapi: 3.1.0")
        .replace(
            "{type: string, maxLength: 500, nullable: true}",
            "{type: [string, 'null'], maxLength: 500}",
        )
        .replace(
            "{type: string, pattern: '^\\+?[0-9 ]{6,20}$', nullable: true}",
            "{type: [string, 'null'], pattern: '^\\+?[0-9 ]{6,20}$'}",
        )
        .replace(
            "{type: string, maxLength: 200, nullable: true}",
            "{type: [string, 'null'], maxLength: 200}",
        )
        .replace("{type: string, nullable: true}", "{type: [string, 'null']}")
        .replace("maximum: 1, exclusiveMaximum: true", "exclusiveMaximum: 1")
}

const PATH: &str = "/v3/charges";

/// Everything the stage does but reading the body: match, decide, parse, validate.
fn enforce(spec: &CompiledSpec, body: &[u8]) -> bool {
    let matched = spec.operation(&Method::POST, PATH).unwrap();
    let BodyCheck::Read(expectation) =
        matched
            .operation
            .body_check(spec, Some(b"application/json; charset=utf-8"), false)
    else {
        panic!("the body is not read");
    };
    expectation.check(body).is_ok()
}

fn benches(c: &mut Criterion) {
    let v30 = CompiledSpec::compile(&parse(SPEC_30).unwrap()).unwrap();
    let v31 = CompiledSpec::compile(&parse(&spec_31()).unwrap()).unwrap();
    let body = BODY.as_bytes();
    let invalid = BODY.replace("\"amount\": 12999", "\"amount\": \"12999\"");
    assert!(enforce(&v30, body), "the body is valid under 3.0");
    assert!(enforce(&v31, body), "the body is valid under 3.1");
    assert!(!enforce(&v30, invalid.as_bytes()));

    let mut group = c.benchmark_group("openapi");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("baseline/parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body)).unwrap())
    });
    group.bench_function("strict/parse", |b| {
        b.iter(|| airgate::openapi::json::parse(black_box(body)).is_ok())
    });
    group.bench_function("v3_0/match", |b| {
        b.iter(|| {
            v30.operation(
                black_box(&Method::POST),
                black_box("/v3/charges/ch_3PqR8xLkdF/refunds"),
            )
            .is_ok()
        })
    });
    group.bench_function("v3_0/enforce", |b| {
        b.iter(|| enforce(&v30, black_box(body)))
    });
    group.bench_function("v3_1/enforce", |b| {
        b.iter(|| enforce(&v31, black_box(body)))
    });
    group.bench_function("v3_0/invalid", |b| {
        b.iter(|| enforce(&v30, black_box(invalid.as_bytes())))
    });
    group.finish();
}

criterion_group!(openapi_benches, benches);
criterion_main!(openapi_benches);
