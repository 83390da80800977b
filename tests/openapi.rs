//! Run-time enforcement of an `API`'s `openApiSpec`, through real HTTP: an OpenAPI 3.0 spec
//! (YAML, `$ref`'d body, base path from `servers`) and a 3.1 spec (JSON), the three modes, an
//! unavailable spec, the secrecy of body values, and a spec fetched from a `url` that outlives
//! its server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::process::GatewayProcess;
use common::{echo_service, ScriptedBackend, TestGateway};
use serde_json::Value;

/// OpenAPI 3.0: base path `/v3` from `servers`, a body by `$ref` through `components`.
const SPEC_30: &str = r##"openapi: 3.0.3
info: {title: Charges, version: "3"}
servers:
  - url: https://payments.internal.company.local/v3
paths:
  /charges:
    get:
      responses: {"200": {description: ok}}
    post:
      requestBody:
        $ref: '#/components/requestBodies/NewCharge'
      responses: {"201": {description: created}}
  /charges/{id}:
    get:
      parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      responses: {"200": {description: ok}}
  /charges/search:
    get:
      responses: {"200": {description: ok}}
  /charges/{id}/refunds:
    post:
      requestBody:
        required: false
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Refund'}
      responses: {"201": {description: created}}
components:
  requestBodies:
    NewCharge:
      required: true
      content:
        application/json:
          schema: {$ref: '#/components/schemas/NewCharge'}
  schemas:
    NewCharge:
      type: object
      required: [amount, currency, card]
      additionalProperties: false
      properties:
        id: {type: string, readOnly: true}
        amount: {type: integer, minimum: 1}
        currency: {type: string, enum: [EUR, USD, GBP]}
        description: {type: string, maxLength: 200, nullable: true}
        card: {$ref: '#/components/schemas/Card'}
        metadata:
          type: object
          additionalProperties: {type: string}
    Card:
      type: object
      required: [number]
      properties:
        number: {type: string, pattern: '^[0-9]{12,19}$'}
        holder: {type: string}
    Refund:
      type: object
      properties:
        amount: {type: integer, minimum: 1, exclusiveMinimum: false}
"##;

/// OpenAPI 3.1 (JSON Schema 2020-12), in JSON, no servers: paths from the root.
const SPEC_31: &str = r##"{
  "openapi": "3.1.0",
  "info": {"title": "Transfers", "version": "1"},
  "paths": {
    "/transfers": {
      "post": {
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Transfer"}}}
        },
        "responses": {"201": {"description": "created"}}
      }
    }
  },
  "components": {
    "schemas": {
      "Transfer": {
        "type": "object",
        "required": ["amount", "iban"],
        "properties": {
          "amount": {"type": "integer", "exclusiveMinimum": 0},
          "iban": {"$ref": "#/components/schemas/Iban"},
          "reference": {"type": ["string", "null"]}
        }
      },
      "Iban": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}$"}
    }
  }
}"##;

/// An `API` `payments/charges` at `/pay`, its spec at `spec_path`, with `extra` lines under
/// `openApiSpec` (e.g. `validation: report`).
fn api_yaml(service_url: &str, spec: &str, extra: &str) -> String {
    format!(
        "apiVersion: airgate.io/v1alpha1\nkind: API\nmetadata: {{name: charges, namespace: payments}}\nspec:\n  pathPrefix: /pay\n  openApiSpec:\n    {spec}\n{extra}  service:\n    name: charges\n    port: {{number: 8080}}\n    url: {service_url}\n"
    )
}

fn write_spec(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// A gateway whose `API` enforces `text` (written as `name`), in front of an echo service, with
/// `extra` lines under `openApiSpec`; the spec's folder lives as long as the gateway is used.
async fn enforcing(
    name: &str,
    text: &str,
    extra: &str,
) -> (TestGateway, ScriptedBackend, tempfile::TempDir) {
    let service = echo_service().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), name, text);
    let yaml = api_yaml(&service.url, &format!("path: {spec}"), extra);
    (TestGateway::start(&yaml).await, service, dir)
}

async fn post(url: String, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// What the gateway answers to `bytes` sent as they are (the first 1 KiB of it).
async fn raw_answer(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

async fn error_of(response: reqwest::Response) -> Value {
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"].clone()
}

/// The value of the series of `name` whose labels include all of `labels`, 0 when absent.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const VALID_CHARGE: &str = "{\"amount\": 1250,\n  \"currency\":\"EUR\", \"card\": {\"number\": \"4242424242424242\"}, \"description\": null}";

#[tokio::test]
async fn an_openapi_3_0_spec_is_enforced_on_paths_methods_and_bodies() {
    let (gw, _service, _dir) = enforcing("charges.yaml", SPEC_30, "").await;
    let client = reqwest::Client::new();

    // an undeclared path, below and outside the base path
    // (an encoded slash is never a path parameter: the service could decode it and route
    // elsewhere)
    for path in [
        "/pay/v3/refunds",
        "/pay/charges",
        "/pay/v3/charges/a/b",
        "/pay/v3/charges/..%2F..%2Fadmin",
    ] {
        let response = client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let error = error_of(response).await;
        assert_eq!(error["code"], "unknown_url", "{error}");
    }
    // a declared path, an undeclared method
    let response = client
        .delete(gw.url("/pay/v3/charges"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST, HEAD");
    assert!(error_of(response).await["message"]
        .as_str()
        .unwrap()
        .contains("DELETE"));

    // the template, and the concrete path beside it
    let response = client
        .get(gw.url("/pay/v3/charges/ch_42"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["path"], "/v3/charges/ch_42");
    let response = client
        .get(gw.url("/pay/v3/charges/search"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // a valid body reaches the service byte for byte (spacing, order and null kept)
    let response = post(gw.url("/pay/v3/charges"), VALID_CHARGE).await;
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["body"], VALID_CHARGE);
    assert_eq!(echo["method"], "POST");

    // a wrong type: 400 naming the pointer and the keyword
    let response = post(
        gw.url("/pay/v3/charges"),
        r#"{"amount": "12.50", "currency": "EUR", "card": {"number": "4242424242424242"}}"#,
    )
    .await;
    assert_eq!(response.status(), 400);
    let error = error_of(response).await;
    assert_eq!(
        error["message"],
        "request body /amount: must be an integer (schema keyword: type)"
    );
    assert_eq!(error["param"], "/amount");
    assert_eq!(error["code"], "schema_violation");
    assert_eq!(error["type"], "invalid_request_error");

    // a missing required property (readOnly `id` is not required), nested through two $refs
    let response = post(
        gw.url("/pay/v3/charges"),
        r#"{"amount": 5, "currency": "EUR", "card": {"holder": "A"}}"#,
    )
    .await;
    assert_eq!(response.status(), 400);
    let error = error_of(response).await;
    assert_eq!(
        error["message"],
        "request body /card: missing required property \"number\" (schema keyword: required)"
    );
    let response = post(
        gw.url("/pay/v3/charges"),
        r#"{"amount": 5, "currency": "EUR"}"#,
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(error_of(response).await["message"]
        .as_str()
        .unwrap()
        .contains("\"card\""));

    // not JSON, a duplicate name, no body, the wrong media type
    let response = post(gw.url("/pay/v3/charges"), "{\"amount\": 5,").await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_of(response).await["code"], "invalid_json");
    let response = post(
        gw.url("/pay/v3/charges"),
        r#"{"amount": "x", "amount": 5, "currency": "EUR", "card": {"number": "4242424242424242"}}"#,
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_of(response).await["code"], "invalid_json");
    let response = client.post(gw.url("/pay/v3/charges")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_of(response).await["code"], "missing_body");
    let response = client
        .post(gw.url("/pay/v3/charges"))
        .header("content-type", "text/plain")
        .body("amount=5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(error_of(response).await["code"], "unsupported_media_type");

    // an optional body may be left out; given, it is checked
    let response = client
        .post(gw.url("/pay/v3/charges/ch_42/refunds"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = post(gw.url("/pay/v3/charges/ch_42/refunds"), r#"{"amount": 0}"#).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        error_of(response).await["message"],
        "request body /amount: must be >= 1 (schema keyword: minimum)"
    );

    // over the API body limit: 413 from the declared length, before any of it is read
    let head = format!(
        "POST /pay/v3/charges HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        gw.addr,
        11 * 1024 * 1024
    );
    assert!(
        raw_answer(gw.addr, head.as_bytes())
            .await
            .starts_with("HTTP/1.1 413"),
        "no 413"
    );

    let metrics = gw.metrics().await;
    let refused = |kind: &str| {
        sample(
            &metrics,
            "airgate_openapi_violations_total",
            &[
                "api=\"payments/charges\"",
                &format!("kind=\"{kind}\""),
                "action=\"refused\"",
            ],
        )
    };
    assert_eq!(refused("unknown_path"), 4.0, "{metrics}");
    assert_eq!(refused("method_not_allowed"), 1.0);
    assert_eq!(refused("schema"), 4.0);
    assert_eq!(refused("invalid_json"), 2.0);
    assert_eq!(refused("missing_body"), 1.0);
    assert_eq!(refused("unsupported_media_type"), 1.0);
    let events = gw.audit_events_of("openapi_violation", 12).await;
    let schema_event = events
        .iter()
        .find(|e| e["event"] == "openapi_violation" && e["reason"] == "schema")
        .unwrap();
    assert_eq!(schema_event["outcome"], "denied", "{schema_event}");
    assert_eq!(schema_event["details"]["pointer"], "/amount");
    assert_eq!(schema_event["details"]["operation"], "/charges");
}

#[tokio::test]
async fn an_openapi_3_1_spec_is_enforced_with_json_schema_2020_12() {
    let (gw, _service, _dir) = enforcing("transfers.json", SPEC_31, "").await;

    let ok = r#"{"amount": 1, "iban": "DE89370400440532013000", "reference": null}"#;
    let response = post(gw.url("/pay/transfers"), ok).await;
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["body"], ok);
    assert_eq!(echo["path"], "/transfers");

    for (body, message) in [
        (
            r#"{"amount": 0, "iban": "DE89370400440532013000"}"#,
            "request body /amount: must be > 0 (schema keyword: exclusiveMinimum)",
        ),
        (
            r#"{"amount": 3, "iban": "not an iban"}"#,
            "request body /iban: must match the pattern \"^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}$\" (schema keyword: pattern)",
        ),
        (
            r#"{"amount": 3, "iban": "DE89370400440532013000", "reference": 7}"#,
            "request body /reference: must be null or a string (schema keyword: type)",
        ),
        (
            r#"{"iban": "DE89370400440532013000"}"#,
            "request body: missing required property \"amount\" (schema keyword: required)",
        ),
    ] {
        let response = post(gw.url("/pay/transfers"), body).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(error_of(response).await["message"], message);
    }
    let response = reqwest::Client::new()
        .get(gw.url("/pay/transfers"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[tokio::test]
async fn report_mode_lets_violations_through_and_counts_them() {
    let (gw, _service, _dir) = enforcing("charges.yaml", SPEC_30, "    validation: report\n").await;
    let invalid =
        r#"{"amount": "lots", "currency": "EUR", "card": {"number": "4242424242424242"}}"#;
    let response = post(gw.url("/pay/v3/charges"), invalid).await;
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["body"], invalid, "the same bytes are forwarded");
    let response = reqwest::Client::new()
        .get(gw.url("/pay/v3/undeclared"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let metrics = gw.metrics().await;
    for kind in ["schema", "unknown_path"] {
        assert_eq!(
            sample(
                &metrics,
                "airgate_openapi_violations_total",
                &[&format!("kind=\"{kind}\""), "action=\"reported\""],
            ),
            1.0,
            "{kind}: {metrics}"
        );
    }
    assert_eq!(
        sample(
            &metrics,
            "airgate_openapi_violations_total",
            &["action=\"refused\""]
        ),
        0.0
    );
}

#[tokio::test]
async fn off_mode_does_not_read_the_spec() {
    let service = echo_service().await;
    // neither file exists: `off` reads nothing, so nothing is unavailable
    let yaml = api_yaml(
        &service.url,
        "path: /nonexistent/specs/charges.yaml",
        "    validation: off\n",
    );
    let gw = TestGateway::start(&yaml).await;
    let response = post(gw.url("/pay/anything"), "not even json").await;
    assert_eq!(response.status(), 200);
    assert!(!gw
        .metrics()
        .await
        .contains("airgate_openapi_violations_total{"));
}

#[tokio::test]
async fn an_unavailable_spec_is_a_503_in_enforce_mode_and_passes_in_report_mode() {
    let service = echo_service().await;
    let spec = "path: /nonexistent/specs/charges.yaml";
    let gw = TestGateway::start(&api_yaml(&service.url, spec, "")).await;
    let response = post(gw.url("/pay/v3/charges"), VALID_CHARGE).await;
    assert_eq!(response.status(), 503);
    let error = error_of(response).await;
    assert_eq!(error["code"], "openapi_spec_unavailable");
    assert!(
        !error["message"].as_str().unwrap().contains("nonexistent"),
        "the file's path stays in the logs: {error}"
    );
    let metrics = gw.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "airgate_openapi_violations_total",
            &["kind=\"spec_unavailable\"", "action=\"refused\""]
        ),
        1.0
    );

    let report = api_yaml(&service.url, spec, "    validation: report\n");
    let gw = TestGateway::start(&report).await;
    let response = post(gw.url("/pay/v3/charges"), VALID_CHARGE).await;
    assert_eq!(response.status(), 200);
}

/// A card number in an invalid body (as a value, as an unexpected property's name, and as a
/// key of a map) appears in no answer, log line, audit record or access-log line.
#[tokio::test]
async fn body_values_never_reach_the_answer_or_the_records() {
    const SECRET: &str = "4111111111111111";
    let service = echo_service().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("specs")).unwrap();
    write_spec(&dir.path().join("specs"), "charges.yaml", SPEC_30);
    let config = dir.path().join("gateway.yaml");
    // a relative path: read beside the configuration file
    std::fs::write(
        &config,
        api_yaml(&service.url, "path: specs/charges.yaml", ""),
    )
    .unwrap();
    let gw = GatewayProcess::start_at(dir, &config, &[]).await;
    let bodies = [
        format!(
            r#"{{"amount": "{SECRET}", "currency": "EUR", "card": {{"number": "4242424242424242"}}}}"#
        ),
        format!(r#"{{"amount": 5, "currency": "EUR", "card": {{"number": "{SECRET}x"}}}}"#),
        format!(
            r#"{{"amount": 5, "currency": "{SECRET}", "card": {{"number": "4242424242424242"}}}}"#
        ),
        format!(
            r#"{{"amount": 5, "currency": "EUR", "card": {{"number": "4242424242424242"}}, "{SECRET}": 1}}"#
        ),
        format!(
            r#"{{"amount": 5, "currency": "EUR", "card": {{"number": "4242424242424242"}}, "metadata": {{"{SECRET}": 7}}}}"#
        ),
        format!(r#"{{"amount": {SECRET}1, "currency": "EUR", "#),
        format!(r#"{{"amount": 5, "amount": "{SECRET}"}}"#),
    ];
    for body in &bodies {
        let response = post(format!("{}/pay/v3/charges", gw.url), body).await;
        assert_eq!(response.status(), 400, "{body}");
        let text = response.text().await.unwrap();
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("4111"), "{text}");
    }
    // the records are written asynchronously
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.lines("access.jsonl").len() < bodies.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let audit = std::fs::read_to_string(gw.audit_path()).unwrap_or_default();
    assert_eq!(
        audit.matches("\"openapi_violation\"").count(),
        bodies.len(),
        "{audit}"
    );
    let access: Vec<Value> = gw.lines("access.jsonl");
    assert_eq!(access.len(), bodies.len());
    let output = gw.output();
    assert!(
        output.contains("request does not follow the API's OpenAPI spec"),
        "{output}"
    );
    for (name, text) in [
        ("output", output),
        ("audit", audit),
        ("access", serde_json::to_string(&access).unwrap()),
    ] {
        assert!(!text.contains(SECRET), "{name}: {text}");
    }
    let metrics = gw.metrics().await;
    assert!(!metrics.contains(SECRET));
}

/// A spec server on its own: serves `text` at `/specs/charges.yaml`, counts its requests.
async fn spec_server(
    text: &'static str,
) -> (
    ScriptedBackend,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&served);
    let app = axum::Router::new().route(
        "/specs/charges.yaml",
        axum::routing::get(move || {
            count.fetch_add(1, Ordering::SeqCst);
            async move { text }
        }),
    );
    (ScriptedBackend::serve(app).await, served)
}

/// A spec named by `url` is fetched when the configuration loads, and is kept as the last known
/// good: after its server is gone, a reload (which fails to fetch it) still enforces it. A new
/// process, which never fetched it, finds it unavailable (503).
#[tokio::test]
async fn a_url_spec_is_fetched_at_load_and_outlives_its_server_across_reloads() {
    use std::sync::atomic::Ordering;
    let service = echo_service().await;
    let (server, served) = spec_server(SPEC_30).await;
    let url = format!("{}/specs/charges.yaml", server.url);
    let yaml = api_yaml(&service.url, &format!("url: {url}"), "");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let gw = GatewayProcess::start_at(dir, &config, &[]).await;
    assert_eq!(served.load(Ordering::SeqCst), 1, "fetched once at load");

    let enforced = |gw_url: String| async move {
        let ok = post(format!("{gw_url}/pay/v3/charges"), VALID_CHARGE).await;
        let bad = post(format!("{gw_url}/pay/v3/charges"), r#"{"amount": "5"}"#).await;
        let unknown = post(format!("{gw_url}/pay/v3/nope"), VALID_CHARGE).await;
        (
            ok.status().as_u16(),
            bad.status().as_u16(),
            unknown.status().as_u16(),
        )
    };
    assert_eq!(enforced(gw.url.clone()).await, (200, 400, 404));
    assert_eq!(served.load(Ordering::SeqCst), 1, "not fetched per request");

    // the spec server goes away
    let spec_addr = server.url.trim_start_matches("http://").to_string();
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(&spec_addr).is_ok() {
        assert!(Instant::now() < deadline, "the spec server did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // a reload of changed bytes: the fetch fails, the last known good spec serves on
    std::fs::write(&config, format!("# changed\n{yaml}")).unwrap();
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = gw.metrics().await;
        if sample(
            &metrics,
            "airgate_config_reloads_total",
            &["result=\"success\""],
        ) >= 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reload applied: {}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(enforced(gw.url.clone()).await, (200, 400, 404));
    let output = gw.output();
    assert!(output.contains("last spec fetched"), "{output}");

    // a process that never fetched it has nothing to fall back on
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh_config = fresh_dir.path().join("gateway.yaml");
    std::fs::write(&fresh_config, &yaml).unwrap();
    let fresh = GatewayProcess::start_at(fresh_dir, &fresh_config, &[]).await;
    let response = post(format!("{}/pay/v3/charges", fresh.url), VALID_CHARGE).await;
    assert_eq!(response.status(), 503);
    assert!(fresh.output().contains("OpenAPI spec unavailable"));
}

/// `airgate validate` compiles the specs it can read: a broken one is an error naming the file,
/// document and field; an absolute path missing here is a warning that says what serve does.
#[test]
fn validate_reports_invalid_and_missing_specs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        SPEC_30.replace("type: integer, minimum: 1}", "type: integr, minimum: 1}"),
    )
    .unwrap();
    let config = dir.path().join("apis.yaml");
    std::fs::write(
        &config,
        format!(
            "{}---\n{}",
            api_yaml("http://127.0.0.1:1", "path: broken.yaml", ""),
            api_yaml("http://127.0.0.1:1", "path: missing.yaml", "")
                .replace("name: charges, namespace", "name: other, namespace")
                .replace("/pay", "/other")
        ),
    )
    .unwrap();
    let (code, out) = common::process::run_airgate(&["validate", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("document 1 (API payments/charges): spec.openApiSpec.path:"),
        "{out}"
    );
    assert!(out.contains("components.schemas.NewCharge"), "{out}");
    assert!(
        out.contains("document 2 (API payments/other): spec.openApiSpec.path:")
            && out.contains("beside the configuration file"),
        "{out}"
    );

    let absent = dir.path().join("absent.yaml");
    std::fs::write(
        &absent,
        api_yaml(
            "http://127.0.0.1:1",
            "path: /nonexistent/specs/charges.yaml",
            "",
        ),
    )
    .unwrap();
    let (code, out) = common::process::run_airgate(&["validate", absent.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning:") && out.contains("503") && out.contains("spec.openApiSpec.path"),
        "{out}"
    );
}
