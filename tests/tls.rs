//! TLS everywhere, each case a real request over real sockets: the public listener (HTTP/1.1 and
//! h2 through ALPN, old and plaintext clients refused, the handshake timeout, certificate
//! rotation), mTLS identities as the user of limits and audit, backends behind a private CA (CA
//! from `--backend-ca` or a secret, client certificates, `serverName`), and the configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airgate::config;
use airgate::routing::BackendTrust;
use airgate::server::tls::ServerTlsSettings;
use airgate::server::ServerLimits;
use airgate_test_support::mock::{MockConfig, MockServer};
use common::{
    chat_body, echo_service, GatewayOptions, HttpsBackend, Issued, TestCa, TestGateway, TlsOptions,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A one-backend gateway; `backend_tls` and `routing` are YAML lines already indented.
fn gateway_yaml(url: &str, backend_extra: &str, spec_extra: &str) -> String {
    format!(
        "apiVersion: airgate.io/v1alpha1\nkind: AIGateway\nmetadata:\n  name: test-gw\n  namespace: test\nspec:\n  backends:\n    - name: b\n      url: {url}\n      models: [mock-model]\n      timeout: 2s\n      healthCheck:\n        enabled: false\n{backend_extra}{spec_extra}"
    )
}

/// The server certificate and key written as a Kubernetes secret volume does: the files are
/// symlinks into a `..data` symlink that is swapped atomically on rotation.
struct SecretVolume {
    dir: tempfile::TempDir,
    generation: usize,
}

impl SecretVolume {
    fn new(pair: &Issued) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut volume = Self { dir, generation: 0 };
        volume.publish(&pair.cert_pem, &pair.key_pem);
        std::os::unix::fs::symlink("..data/tls.crt", volume.cert()).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", volume.key()).unwrap();
        volume
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// Writes a new generation and swaps `..data` to it in one rename, as the kubelet does.
    fn publish(&mut self, cert_pem: &str, key_pem: &str) {
        self.generation += 1;
        let name = format!("..gen_{}", self.generation);
        let generation = self.dir.path().join(&name);
        std::fs::create_dir(&generation).unwrap();
        std::fs::write(generation.join("tls.crt"), cert_pem).unwrap();
        std::fs::write(generation.join("tls.key"), key_pem).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }

    fn settings(&self) -> ServerTlsSettings {
        let mut settings = ServerTlsSettings::new(self.cert(), self.key());
        settings.reload_interval = Duration::from_millis(100);
        settings
    }
}

/// A gateway serving TLS with a certificate for 127.0.0.1 from `ca`, in front of a mock backend.
struct TlsGateway {
    gw: TestGateway,
    volume: SecretVolume,
    _backend: MockServer,
    _dir: tempfile::TempDir,
}

async fn tls_gateway(ca: &TestCa, client_ca: Option<&TestCa>, spec_extra: &str) -> TlsGateway {
    tls_gateway_with(ca, client_ca, spec_extra, ServerLimits::default(), None).await
}

async fn tls_gateway_with(
    ca: &TestCa,
    client_ca: Option<&TestCa>,
    spec_extra: &str,
    limits: ServerLimits,
    secrets_dir: Option<PathBuf>,
) -> TlsGateway {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let volume = SecretVolume::new(&ca.server(&["127.0.0.1", "localhost"]));
    let dir = tempfile::tempdir().unwrap();
    let mut settings = volume.settings();
    if let Some(client_ca) = client_ca {
        let file = dir.path().join("client-ca.pem");
        std::fs::write(&file, client_ca.pem()).unwrap();
        settings.client_ca_file = Some(file);
    }
    let gw = TestGateway::start_with(
        &gateway_yaml(&backend.url(), "", spec_extra),
        GatewayOptions {
            limits,
            secrets_dir,
            tls: TlsOptions {
                server: Some(settings),
                ..TlsOptions::default()
            },
            ..GatewayOptions::default()
        },
    )
    .await;
    TlsGateway {
        gw,
        volume,
        _backend: backend,
        _dir: dir,
    }
}

impl TlsGateway {
    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.gw.addr)
    }
}

/// A reqwest client trusting only `ca` (a fresh client is a fresh connection).
fn client_for(ca: &TestCa) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
}

async fn chat(client: &reqwest::Client, url: &str) -> Result<reqwest::Response, reqwest::Error> {
    client
        .post(url)
        .json(&chat_body("mock-model", false))
        .send()
        .await
}

// ---------------------------------------------------------------------------
// Public listener
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_public_listener_serves_http1_and_h2_over_tls() {
    let ca = TestCa::new("listener ca");
    let gw = tls_gateway(&ca, None, "").await;
    let url = gw.url("/v1/chat/completions");

    let http1 = client_for(&ca).http1_only().build().unwrap();
    let response = chat(&http1, &url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);

    // Without http1_only, reqwest offers h2 first in ALPN and the listener picks it.
    let h2 = client_for(&ca).build().unwrap();
    let response = chat(&h2, &url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
}

#[tokio::test]
async fn a_tls12_client_is_served() {
    use tokio_rustls::rustls;
    let ca = TestCa::new("listener ca");
    let gw = tls_gateway(&ca, None, "").await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(gw.gw.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    stream
        .write_all(b"GET /v1/models HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A TLS 1.1 ClientHello (no `supported_versions` extension, so it cannot negotiate 1.2+).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version: TLS 1.1
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    body.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend([0x01, 0x00]); // compression: null
    let len = body.len();
    let mut handshake = vec![0x01, 0, (len >> 8) as u8, len as u8];
    handshake.extend(body);
    let len = handshake.len();
    let mut record = vec![0x16, 0x03, 0x01, (len >> 8) as u8, len as u8];
    record.extend(handshake);
    record
}

#[tokio::test]
async fn tls11_and_plaintext_clients_are_refused() {
    let ca = TestCa::new("listener ca");
    let gw = tls_gateway(&ca, None, "").await;

    let mut tcp = TcpStream::connect(gw.gw.addr).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .ok();
    // An alert record (content type 21), fatal (level 2; rustls says handshake_failure), and
    // never a ServerHello.
    assert_eq!(answer.first(), Some(&0x15), "TLS 1.1 got {answer:?}");
    assert_eq!(answer.get(5), Some(&2), "TLS 1.1 got {answer:?}");

    let plaintext = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", gw.gw.addr))
        .json(&chat_body("mock-model", false))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plaintext.is_err(), "plaintext got {plaintext:?}");
}

#[tokio::test]
async fn a_client_that_never_sends_a_client_hello_is_closed_after_the_handshake_timeout() {
    let ca = TestCa::new("listener ca");
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    };
    let gw = tls_gateway_with(&ca, None, "", limits, None).await;
    let started = Instant::now();
    let mut tcp = TcpStream::connect(gw.gw.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("the listener kept a silent connection open");
    assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
}

// ---------------------------------------------------------------------------
// Rotation
// ---------------------------------------------------------------------------

/// The certificate a new connection is served.
async fn served_certificate(ca: &TestCa, gw: &TlsGateway) -> Vec<u8> {
    let client = client_for(ca).tls_info(true).build().unwrap();
    let response = client.get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .unwrap();
    info.peer_certificate().unwrap().to_vec()
}

async fn wait_for_certificate(ca: &TestCa, gw: &TlsGateway, expected: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while served_certificate(ca, gw).await != expected {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_and_a_bad_pair_is_ignored() {
    let ca = TestCa::new("listener ca");
    let mut gw = tls_gateway(&ca, None, "").await;
    let first = served_certificate(&ca, &gw).await;
    // A connection opened before the rotation keeps working.
    let kept = client_for(&ca).build().unwrap();
    assert_eq!(
        kept.get(gw.url("/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let second = ca.server(&["127.0.0.1"]);
    gw.volume.publish(&second.cert_pem, &second.key_pem);
    wait_for_certificate(&ca, &gw, &second.der).await;
    assert_ne!(first, second.der);
    assert_eq!(
        kept.get(gw.url("/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A certificate with another pair's key: refused, the previous pair stays.
    let third = ca.server(&["127.0.0.1"]);
    let stranger = ca.server(&["127.0.0.1"]);
    gw.volume.publish(&third.cert_pem, &stranger.key_pem);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(served_certificate(&ca, &gw).await, second.der);

    // Then the right key arrives.
    gw.volume.publish(&third.cert_pem, &third.key_pem);
    wait_for_certificate(&ca, &gw, &third.der).await;
}

// ---------------------------------------------------------------------------
// mTLS
// ---------------------------------------------------------------------------

const PER_USER_LIMIT: &str = "  rateLimit:\n    perUser:\n      limit: 1\n      period: 1m\n";

#[tokio::test]
async fn mtls_refuses_missing_and_foreign_certificates() {
    let ca = TestCa::new("listener ca");
    let clients = TestCa::new("client ca");
    let gw = tls_gateway(&ca, Some(&clients), "").await;
    let url = gw.url("/v1/chat/completions");

    let anonymous = client_for(&ca).build().unwrap();
    let refused = chat(&anonymous, &url).await;
    assert!(refused.is_err(), "no client certificate got {refused:?}");

    let foreign = TestCa::new("another ca").client("mallory");
    let stranger = client_for(&ca)
        .identity(foreign.identity())
        .build()
        .unwrap();
    let refused = chat(&stranger, &url).await;
    assert!(refused.is_err(), "a foreign certificate got {refused:?}");

    let alice = client_for(&ca)
        .identity(clients.client("alice").identity())
        .build()
        .unwrap();
    assert_eq!(chat(&alice, &url).await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_client_certificate_subject_is_the_user_of_limits_and_audit() {
    let ca = TestCa::new("listener ca");
    let clients = TestCa::new("client ca");
    let gw = tls_gateway(&ca, Some(&clients), PER_USER_LIMIT).await;
    let url = gw.url("/v1/chat/completions");
    let alice = client_for(&ca)
        .identity(clients.client("alice").identity())
        .build()
        .unwrap();
    let bob = client_for(&ca)
        .identity(clients.client("bob").identity())
        .build()
        .unwrap();

    assert_eq!(chat(&alice, &url).await.unwrap().status(), 200);
    // Same IP, same limit key only if the key is the subject: alice is limited, bob is not.
    assert_eq!(chat(&alice, &url).await.unwrap().status(), 429);
    assert_eq!(chat(&bob, &url).await.unwrap().status(), 200);

    let events = gw.gw.audit_events_of("request_served", 2).await;
    let mut served: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "request_served")
        .filter_map(|e| e["user"].as_str())
        .collect();
    served.sort_unstable();
    assert_eq!(served, ["alice", "bob"]);
    let limited = events
        .iter()
        .find(|e| e["event"] == "rate_limited")
        .unwrap();
    assert_eq!(limited["user"], "alice");
}

#[tokio::test]
async fn a_jwt_user_wins_over_the_client_certificate() {
    const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!!";
    let secrets = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(secrets.path().join("gw-jwt")).unwrap();
    std::fs::write(secrets.path().join("gw-jwt/secret"), SECRET).unwrap();
    let ca = TestCa::new("listener ca");
    let clients = TestCa::new("client ca");
    let auth = "  authentication:\n    jwt:\n      secretName: gw-jwt\n";
    let gw = tls_gateway_with(
        &ca,
        Some(&clients),
        auth,
        ServerLimits::default(),
        Some(secrets.path().to_path_buf()),
    )
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "jwt-user", "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let alice = client_for(&ca)
        .identity(clients.client("alice").identity())
        .build()
        .unwrap();
    let response = alice
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&chat_body("mock-model", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = gw.gw.audit_events_of("request_served", 1).await;
    let served = events
        .iter()
        .find(|e| e["event"] == "request_served")
        .unwrap();
    assert_eq!(served["user"], "jwt-user");
}

#[tokio::test]
async fn an_api_rate_limited_per_user_counts_the_client_certificate_subject() {
    let service = echo_service().await;
    let ca = TestCa::new("listener ca");
    let clients = TestCa::new("client ca");
    let api = format!(
        "---\napiVersion: airgate.io/v1alpha1\nkind: API\nmetadata:\n  name: echo\n  namespace: test\nspec:\n  service:\n    name: echo\n    port: {{number: 80}}\n    url: {}\n  rateLimit:\n    limit: 1\n    period: 1m\n    strategy: user\n",
        service.url
    );
    let gw = tls_gateway(&ca, Some(&clients), &api).await;
    let url = gw.url("/apis/test/echo/x");
    let alice = client_for(&ca)
        .identity(clients.client("alice").identity())
        .build()
        .unwrap();
    let bob = client_for(&ca)
        .identity(clients.client("bob").identity())
        .build()
        .unwrap();
    assert_eq!(alice.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(alice.get(&url).send().await.unwrap().status(), 429);
    assert_eq!(bob.get(&url).send().await.unwrap().status(), 200);
}

// ---------------------------------------------------------------------------
// Backends behind a private CA
// ---------------------------------------------------------------------------

/// A plain-HTTP gateway in front of `url`, with these secrets and `--backend-ca` trust.
async fn gateway_to(
    url: &str,
    backend_extra: &str,
    spec_extra: &str,
    secrets: Option<&Path>,
    backend_trust: BackendTrust,
) -> TestGateway {
    TestGateway::start_with(
        &gateway_yaml(url, backend_extra, spec_extra),
        GatewayOptions {
            secrets_dir: secrets.map(Path::to_path_buf),
            tls: TlsOptions {
                server: None,
                backend_trust,
            },
            ..GatewayOptions::default()
        },
    )
    .await
}

async fn post_chat(gw: &TestGateway) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("mock-model", false))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A secrets folder with `backend-ca/ca.crt`.
fn ca_secret(ca: &TestCa) -> tempfile::TempDir {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(secrets.path().join("backend-ca")).unwrap();
    std::fs::write(secrets.path().join("backend-ca/ca.crt"), ca.pem()).unwrap();
    secrets
}

#[tokio::test]
async fn a_backend_behind_a_private_ca_is_refused_until_the_ca_is_trusted() {
    let ca = TestCa::new("backend ca");
    let backend = HttpsBackend::start(ca.server(&["127.0.0.1"]).server_config(None)).await;

    let untrusting = gateway_to(&backend.url, "", "", None, BackendTrust::default()).await;
    let (status, body) = post_chat(&untrusting).await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("certificate"), "{message}");
    assert_eq!(backend.served.load(Ordering::SeqCst), 0);

    // `--backend-ca`
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let trust = BackendTrust::load(&[ca_file]).unwrap();
    let trusting = gateway_to(&backend.url, "", "", None, trust).await;
    let (status, body) = post_chat(&trusting).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "over tls");

    // `caSecretName`
    let secrets = ca_secret(&ca);
    let tls = "      tls:\n        caSecretName: backend-ca\n";
    let from_secret = gateway_to(
        &backend.url,
        tls,
        "",
        Some(secrets.path()),
        BackendTrust::default(),
    )
    .await;
    let (status, body) = post_chat(&from_secret).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_ca_secret_replaces_the_public_roots_but_backend_ca_still_applies() {
    // The secret holds an unrelated CA; the backend's CA comes from --backend-ca.
    let ca = TestCa::new("backend ca");
    let unrelated = TestCa::new("unrelated ca");
    let backend = HttpsBackend::start(ca.server(&["127.0.0.1"]).server_config(None)).await;
    let secrets = ca_secret(&unrelated);
    let tls = "      tls:\n        caSecretName: backend-ca\n";
    let refused = gateway_to(
        &backend.url,
        tls,
        "",
        Some(secrets.path()),
        BackendTrust::default(),
    )
    .await;
    assert_eq!(post_chat(&refused).await.0, 503);

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let trust = BackendTrust::load(&[ca_file]).unwrap();
    let served = gateway_to(&backend.url, tls, "", Some(secrets.path()), trust).await;
    assert_eq!(post_chat(&served).await.0, 200);
}

#[tokio::test]
async fn a_backend_requiring_a_client_certificate_is_served_only_with_client_cert_secret_name() {
    let ca = TestCa::new("backend ca");
    let clients = TestCa::new("gateway client ca");
    let backend =
        HttpsBackend::start(ca.server(&["127.0.0.1"]).server_config(Some(&clients))).await;
    let secrets = ca_secret(&ca);
    clients
        .client("airgate")
        .write_secret(&secrets.path().join("airgate-client"));

    let without = gateway_to(
        &backend.url,
        "      tls:\n        caSecretName: backend-ca\n",
        "",
        Some(secrets.path()),
        BackendTrust::default(),
    )
    .await;
    let (status, body) = post_chat(&without).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(backend.served.load(Ordering::SeqCst), 0);

    // The CA as the gateway-wide default, the client certificate on the backend.
    let with = gateway_to(
        &backend.url,
        "      tls:\n        clientCertSecretName: airgate-client\n",
        "  routing:\n    tls:\n      caSecretName: backend-ca\n",
        Some(secrets.path()),
        BackendTrust::default(),
    )
    .await;
    let (status, body) = post_chat(&with).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn server_name_verifies_the_certificate_for_another_name_than_the_url_host() {
    let ca = TestCa::new("backend ca");
    // The certificate names llm.internal only; the URL says 127.0.0.1.
    let backend = HttpsBackend::start(ca.server(&["llm.internal"]).server_config(None)).await;
    let secrets = ca_secret(&ca);

    let mismatch = gateway_to(
        &backend.url,
        "      tls:\n        caSecretName: backend-ca\n",
        "",
        Some(secrets.path()),
        BackendTrust::default(),
    )
    .await;
    let (status, body) = post_chat(&mismatch).await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("certificate"), "{message}");

    let named = gateway_to(
        &backend.url,
        "      tls:\n        caSecretName: backend-ca\n        serverName: llm.internal\n",
        "",
        Some(secrets.path()),
        BackendTrust::default(),
    )
    .await;
    assert_eq!(post_chat(&named).await.0, 200);

    // A serverName the certificate does not carry is refused: the name is really checked.
    let wrong = gateway_to(
        &backend.url,
        "      tls:\n        caSecretName: backend-ca\n        serverName: other.internal\n",
        "",
        Some(secrets.path()),
        BackendTrust::default(),
    )
    .await;
    assert_eq!(post_chat(&wrong).await.0, 503);
}

#[tokio::test]
async fn health_probes_use_the_backend_tls_client() {
    let ca = TestCa::new("backend ca");
    let backend = HttpsBackend::start(ca.server(&["127.0.0.1"]).server_config(None)).await;
    let secrets = ca_secret(&ca);
    let yaml = gateway_yaml(
        &backend.url,
        "      tls:\n        caSecretName: backend-ca\n",
        "",
    )
    .replace(
        "      healthCheck:\n        enabled: false\n",
        "      healthCheck:\n        enabled: true\n        interval: 100ms\n        timeout: 1s\n",
    );
    let gw = TestGateway::start_with(
        &yaml,
        GatewayOptions {
            secrets_dir: Some(secrets.path().to_path_buf()),
            ..GatewayOptions::default()
        },
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.probed.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "no probe reached the backend over TLS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("airgate_backend_up{backend=\"b\",gateway=\"test/test-gw\"} 1"),
        "{metrics}"
    );
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

fn load_errors(yaml: &str) -> Vec<String> {
    config::parse_str(Path::new("test.yaml"), yaml)
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn unknown_tls_keys_are_refused_with_their_path() {
    let backend = gateway_yaml(
        "https://llm:8443",
        "      tls:\n        caSecretNam: backend-ca\n",
        "",
    );
    let errors = load_errors(&backend);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .starts_with("test.yaml: document 1 (AIGateway test/test-gw): spec.backends[0].tls"),
        "{errors:?}"
    );
    assert!(errors[0].contains("caSecretNam"), "{errors:?}");

    // No switch turns verification off.
    let routing = gateway_yaml(
        "https://llm:8443",
        "",
        "  routing:\n    tls:\n      insecureSkipVerify: true\n",
    );
    let errors = load_errors(&routing);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("spec.routing.tls"), "{errors:?}");
    assert!(errors[0].contains("insecureSkipVerify"), "{errors:?}");
}

#[test]
fn invalid_tls_settings_are_reported_with_their_fields() {
    let yaml = gateway_yaml(
        "http://llm:8000",
        "      tls:\n        caSecretName: ../etc\n        serverName: \"not a name\"\n",
        "  routing:\n    tls:\n      clientCertSecretName: Client_Cert\n",
    );
    let errors = load_errors(&yaml).join("\n");
    for field in [
        "spec.backends[0].tls: TLS settings need an https:// url",
        "spec.backends[0].tls.caSecretName: \"../etc\" is not a Kubernetes secret name",
        "spec.backends[0].tls.serverName: \"not a name\" is not a DNS name",
        "spec.routing.tls.clientCertSecretName: \"Client_Cert\" is not a Kubernetes secret name",
    ] {
        assert!(errors.contains(field), "missing {field:?} in:\n{errors}");
    }
}

#[tokio::test]
async fn missing_secrets_are_reported_at_load_with_the_field_path() {
    let secrets = tempfile::tempdir().unwrap();
    let build = |yaml: String| {
        let secrets = secrets.path().to_path_buf();
        async move {
            let loaded = config::parse_str(Path::new("test.yaml"), &yaml).unwrap();
            let trust = BackendTrust::default();
            let ctx = airgate::app::CompileContext {
                secrets_dir: &secrets,
                backend_trust: &trust,
                embedder: None,
                wordnet: None,
                previous: None,
                secrets_by_namespace: false,
            };
            let issues = airgate::app::compile(&loaded, &ctx).err().unwrap();
            issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let error = build(gateway_yaml(
        "https://llm:8443",
        "      tls:\n        caSecretName: backend-ca\n",
        "",
    ))
    .await;
    assert!(
        error.starts_with(
            "test.yaml: document 1 (AIGateway test/test-gw): spec.backends[0].tls.caSecretName: secret \"backend-ca\": "
        ),
        "{error}"
    );
    assert!(error.contains("backend-ca/ca.crt: cannot read"), "{error}");

    // Inherited from the gateway: the error names the gateway's field.
    let error = build(gateway_yaml(
        "https://llm:8443",
        "",
        "  routing:\n    tls:\n      clientCertSecretName: client\n",
    ))
    .await;
    assert!(
        error.contains("spec.routing.tls.clientCertSecretName: secret \"client\": "),
        "{error}"
    );
    assert!(error.contains("client/tls.crt: cannot read"), "{error}");
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

fn airgate(args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_airgate"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn serve_flags_name_the_unusable_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.yaml");
    std::fs::write(&config, gateway_yaml("http://127.0.0.1:9", "", "")).unwrap();
    let config = config.display().to_string();
    let serve = [
        "serve",
        "--config",
        &config,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];

    let (code, out) = airgate(&[&serve[..], &["--tls-cert", "/nonexistent/tls.crt"]].concat());
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--tls-key"), "{out}");

    let bad = dir.path().join("tls.crt");
    std::fs::write(&bad, "not a certificate").unwrap();
    let key = dir.path().join("tls.key");
    std::fs::write(&key, "not a key").unwrap();
    let (bad, key) = (bad.display().to_string(), key.display().to_string());
    let (code, out) = airgate(&[&serve[..], &["--tls-cert", &bad, "--tls-key", &key]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{bad}: no certificate found")),
        "{out}"
    );

    let (code, out) = airgate(&[&serve[..], &["--backend-ca", "/nonexistent/ca.pem"]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("--backend-ca: /nonexistent/ca.pem: cannot read"),
        "{out}"
    );
}
