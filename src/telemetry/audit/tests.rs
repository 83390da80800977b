#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::*;

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn wait_lines(path: &Path, count: usize) -> Vec<String> {
    for _ in 0..250 {
        let lines = lines_of(path);
        if lines.len() >= count {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lines_of(path)
}

fn event(n: usize) -> AuditEvent {
    AuditEvent::new(
        "guard_violation",
        &format!("req-{n}"),
        "ns/gw",
        "blocked",
        "rule x",
    )
    .detail("stage", "prompt")
    .detail("n", n)
}

fn file_log(path: &Path) -> AuditLog {
    AuditLog::start(&AuditTarget::File(path.to_path_buf())).unwrap()
}

async fn write_records(path: &Path, count: usize) -> Vec<String> {
    let log = file_log(path);
    for n in 0..count {
        log.record(event(n));
    }
    wait_lines(path, count).await
}

#[tokio::test]
async fn events_are_written_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = file_log(&path);
    log.record(
        AuditEvent::new("guard_violation", "r1", "ns/gw", "blocked", "rule x")
            .detail("stage", "prompt")
            .user("alice")
            .source_ip("10.0.0.7"),
    );
    log.record(AuditEvent::new(
        "guard_violation",
        "r2",
        "ns/gw",
        "blocked",
        "rule y",
    ));
    let lines = wait_lines(&path, 2).await;
    assert_eq!(lines.len(), 2);
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["event"], "guard_violation");
    assert_eq!(first["request_id"], "r1");
    assert_eq!(first["user"], "alice");
    assert_eq!(first["source_ip"], "10.0.0.7");
    assert_eq!(first["details"]["stage"], "prompt");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev_hash"], GENESIS_HASH);
    let second: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["seq"], 2);
    assert_eq!(second["prev_hash"], first["hash"]);
    assert!(second["user"].is_null());
    // `hash` is the hash of the line without its `hash` member.
    let hash = first["hash"].as_str().unwrap();
    let canonical = lines[0].replace(&format!(",\"hash\":\"{hash}\""), "");
    assert_eq!(hash_line(canonical.as_bytes()), hash);
}

#[test]
fn targets_parse() {
    assert_eq!(AuditTarget::parse("-"), AuditTarget::Stdout);
    assert_eq!(AuditTarget::parse("off"), AuditTarget::Disabled);
    assert_eq!(AuditTarget::parse("/x"), AuditTarget::File("/x".into()));
    assert_eq!(
        AuditTarget::parse("syslog+tcp://siem:514"),
        AuditTarget::Syslog {
            addr: "siem:514".into(),
            tls: false
        }
    );
    assert_eq!(
        AuditTarget::parse("syslog+tls://siem.example:6514/"),
        AuditTarget::Syslog {
            addr: "siem.example:6514".into(),
            tls: true
        }
    );
    assert_eq!(AuditFormat::parse("OCSF"), Some(AuditFormat::Ocsf));
}

#[tokio::test]
async fn chain_is_written_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let lines = write_records(&path, 5).await;
    assert_eq!(lines.len(), 5);
    let report = verify_file(&path).unwrap();
    assert_eq!(report.records, 5);
    assert_eq!(report.first_seq, Some(1));
    assert_eq!(report.last_seq, Some(5));
    assert!(report.starts_chain());
}

#[tokio::test]
async fn tampered_field_is_reported_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut lines = write_records(&path, 5).await;
    lines[2] = lines[2].replace("\"blocked\"", "\"allowed\"");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let error = verify_file(&path).unwrap_err();
    assert_eq!(error.line, 3, "{error}");
    assert!(error.reason.contains("modified"), "{error}");
}

#[tokio::test]
async fn tampered_field_with_recomputed_hash_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut lines = write_records(&path, 5).await;
    let record: Value = serde_json::from_str(&lines[2]).unwrap();
    let old = record["hash"].as_str().unwrap().to_string();
    let canonical = lines[2]
        .replace(&format!(",\"hash\":\"{old}\""), "")
        .replace("\"blocked\"", "\"allowed\"");
    let new = hash_line(canonical.as_bytes());
    lines[2] = lines[2]
        .replace("\"blocked\"", "\"allowed\"")
        .replace(&old, &new);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let error = verify_file(&path).unwrap_err();
    assert_eq!(error.line, 4, "{error}");
}

#[tokio::test]
async fn deleted_and_reordered_lines_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let lines = write_records(&path, 5).await;

    let mut deleted = lines.clone();
    deleted.remove(2);
    std::fs::write(&path, deleted.join("\n") + "\n").unwrap();
    let error = verify_file(&path).unwrap_err();
    assert_eq!(error.line, 3, "{error}");

    let mut swapped = lines.clone();
    swapped.swap(1, 3);
    std::fs::write(&path, swapped.join("\n") + "\n").unwrap();
    let error = verify_file(&path).unwrap_err();
    assert_eq!(error.line, 2, "{error}");

    let mut first_gone = lines.clone();
    first_gone.remove(0);
    std::fs::write(&path, first_gone.join("\n") + "\n").unwrap();
    // On its own the file looks like a rotated continuation…
    let report = verify_file(&path).unwrap();
    assert!(!report.starts_chain());
    // …but not as a complete chain.
    let error = verify_files(&[&path]).map(|r| r.starts_chain());
    assert_eq!(error, Ok(false));
}

#[tokio::test]
async fn restart_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_records(&path, 3).await;
    let log = file_log(&path);
    log.record(event(3));
    log.record(event(4));
    let lines = wait_lines(&path, 5).await;
    assert_eq!(lines.len(), 5);
    let fourth: Value = serde_json::from_str(&lines[3]).unwrap();
    assert_eq!(fourth["seq"], 4);
    assert_eq!(verify_file(&path).unwrap().records, 5);
}

#[tokio::test]
async fn restart_after_a_partial_line_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_records(&path, 2).await;
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"seq\":3,\"prev");
    std::fs::write(&path, text).unwrap();
    let log = file_log(&path);
    log.record(event(9));
    let lines = wait_lines(&path, 4).await;
    assert_eq!(lines.len(), 4);
    assert_eq!(verify_file(&path).unwrap_err().line, 3);
}

fn last_seq(path: &Path) -> Option<u64> {
    let lines = lines_of(path);
    let last: Value = serde_json::from_str(lines.last()?).ok()?;
    last["seq"].as_u64()
}

#[tokio::test]
async fn rotation_keeps_n_files_that_each_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let max = 2_000;
    let log = AuditLog::start_with(AuditConfig {
        target: AuditTarget::File(path.clone()),
        rotate_bytes: Some(max),
        keep_files: 2,
        ..AuditConfig::default()
    })
    .unwrap();
    let count = 40;
    for n in 0..count {
        log.record(event(n));
    }
    for _ in 0..250 {
        if last_seq(&path) == Some(count as u64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last_seq(&path), Some(count as u64));
    let set = rotation_set(&path);
    let expected: Vec<PathBuf> = vec![
        dir.path().join("audit.jsonl.2"),
        dir.path().join("audit.jsonl.1"),
        path.clone(),
    ];
    assert_eq!(set, expected);
    assert!(!dir.path().join("audit.jsonl.3").exists());
    for file in &set {
        assert!(std::fs::metadata(file).unwrap().len() <= max);
        let report = verify_file(file).unwrap();
        assert!(report.records > 0);
    }
    let report = verify_files(&set).unwrap();
    assert_eq!(report.last_seq, Some(count as u64));
    assert!(!report.starts_chain(), "the oldest files were deleted");
    // Files out of order do not chain.
    let error = verify_files(&[&set[1], &set[0], &set[2]]).unwrap_err();
    assert_eq!(error.path, set[0]);
    assert_eq!(error.line, 1);
}

#[tokio::test]
async fn restart_after_rotation_continues_from_the_rotated_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_records(&path, 3).await;
    std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
    write_records(&path, 1).await;
    let report = verify_files(&rotation_set(&path)).unwrap();
    assert_eq!(report.records, 4);
    assert!(report.starts_chain());
}

#[tokio::test]
async fn ocsf_records_have_the_api_activity_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.ocsf.jsonl");
    let log = AuditLog::start_with(AuditConfig {
        target: AuditTarget::File(path.clone()),
        format: AuditFormat::Ocsf,
        ..AuditConfig::default()
    })
    .unwrap();
    log.record(
        event(1)
            .detail("audit_level", "high")
            .user("alice")
            .source_ip("10.0.0.7"),
    );
    log.record(AuditEvent::new(
        "guard_finding",
        "r2",
        "ns/gw",
        "allowed",
        "rule y",
    ));
    let lines = wait_lines(&path, 2).await;
    assert_eq!(lines.len(), 2);
    let record: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(record["class_uid"], 6003);
    assert_eq!(record["class_name"], "API Activity");
    assert_eq!(record["category_uid"], 6);
    assert_eq!(record["activity_id"], 99);
    assert_eq!(record["type_uid"], 600_399);
    assert!(record["time"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(record["severity_id"], 4);
    assert_eq!(record["status"], "Failure");
    assert_eq!(record["status_id"], 2);
    assert_eq!(record["status_detail"], "rule x");
    assert_eq!(record["disposition_id"], 2);
    assert_eq!(record["actor"]["user"]["name"], "alice");
    assert_eq!(record["src_endpoint"]["ip"], "10.0.0.7");
    assert_eq!(record["api"]["request"]["uid"], "req-1");
    assert_eq!(record["api"]["operation"], "guard_violation");
    assert_eq!(record["api"]["service"]["name"], "ns/gw");
    assert_eq!(record["metadata"]["version"], "1.3.0");
    assert_eq!(record["metadata"]["product"]["name"], "AirGate");
    assert_eq!(record["metadata"]["product"]["vendor_name"], "AirGate");
    assert_eq!(record["metadata"]["sequence"], 1);
    assert_eq!(record["unmapped"]["details"]["stage"], "prompt");
    assert_eq!(record["unmapped"]["prev_hash"], GENESIS_HASH);
    let second: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["status_id"], 1);
    assert_eq!(second["severity_id"], 1);
    assert_eq!(second["unmapped"]["prev_hash"], record["unmapped"]["hash"]);
    assert_eq!(verify_file(&path).unwrap().records, 2);

    let mut tampered = lines.clone();
    tampered[0] = tampered[0].replace("alice", "mallory");
    std::fs::write(&path, tampered.join("\n") + "\n").unwrap();
    assert_eq!(verify_file(&path).unwrap_err().line, 1);
}

// ---- syslog ----

/// Reads octet-counted frames until `count` arrived or the peer closed.
async fn read_frames(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    count: usize,
) -> Vec<String> {
    read_frames_with(stream, count, |_| {}).await
}

/// Same, also handing each frame to `each` as it arrives.
async fn read_frames_with(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    count: usize,
    mut each: impl FnMut(&str),
) -> Vec<String> {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut chunk = [0u8; 4096];
    while frames.len() < count {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(space) = buf.iter().position(|&b| b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..space]).unwrap().parse().unwrap();
            if buf.len() < space + 1 + len {
                break;
            }
            let frame = String::from_utf8(buf[space + 1..space + 1 + len].to_vec()).unwrap();
            buf.drain(..space + 1 + len);
            each(&frame);
            frames.push(frame);
        }
    }
    frames
}

/// Splits an RFC 5424 message into its header fields, structured data and message.
fn parse_5424(message: &str) -> (u8, Vec<String>, String, String) {
    let rest = message.strip_prefix('<').unwrap();
    let (pri, rest) = rest.split_once('>').unwrap();
    let mut fields = Vec::new();
    let mut rest = rest;
    for _ in 0..6 {
        let (field, tail) = rest.split_once(' ').unwrap();
        fields.push(field.to_string());
        rest = tail;
    }
    let sd_end = rest.find("] ").unwrap() + 1;
    let (sd, msg) = rest.split_at(sd_end);
    (
        pri.parse().unwrap(),
        fields,
        sd.to_string(),
        msg[1..].to_string(),
    )
}

fn syslog_config(addr: String, tls: Option<TlsConfig>) -> AuditConfig {
    let is_tls = tls.is_some();
    AuditConfig {
        target: AuditTarget::Syslog {
            addr: addr.clone(),
            tls: is_tls,
        },
        syslog: Some(SyslogConfig {
            addr,
            tls,
            app_name: "airgate".into(),
            hostname: "gw-0".into(),
        }),
        ..AuditConfig::default()
    }
}

#[tokio::test]
async fn syslog_frames_reach_a_tcp_collector() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let log = AuditLog::start_with(syslog_config(addr, None)).unwrap();
    log.record(event(1).detail("audit_level", "high"));
    log.record(AuditEvent::new(
        "guard_finding",
        "r2",
        "ns/gw",
        "allowed",
        "y",
    ));
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let frames = tokio::time::timeout(Duration::from_secs(5), read_frames(&mut stream, 2))
        .await
        .unwrap();
    assert_eq!(frames.len(), 2);
    let (pri, fields, sd, msg) = parse_5424(&frames[0]);
    assert_eq!(pri, 13 * 8 + 3);
    assert_eq!(fields[0], "1");
    assert!(
        humantime::parse_rfc3339(&fields[1]).is_ok(),
        "{}",
        fields[1]
    );
    assert_eq!(fields[2], "gw-0");
    assert_eq!(fields[3], "airgate");
    assert_eq!(fields[4], std::process::id().to_string());
    assert_eq!(fields[5], "guard_violation");
    assert!(sd.contains("[meta sequenceId=\"1\"]"), "{sd}");
    assert!(sd.starts_with("[origin software=\"AirGate\""), "{sd}");
    let json = msg.strip_prefix('\u{feff}').unwrap();
    let record: Value = serde_json::from_str(json).unwrap();
    assert_eq!(record["request_id"], "req-1");
    assert_eq!(record["seq"], 1);
    let (pri, fields, _, msg) = parse_5424(&frames[1]);
    assert_eq!(pri, 13 * 8 + 6);
    assert_eq!(fields[5], "guard_finding");
    let second: Value = serde_json::from_str(msg.trim_start_matches('\u{feff}')).unwrap();
    assert_eq!(second["prev_hash"], record["hash"]);
    assert_eq!(log.sink_errors(), 0);
}

struct Pki {
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
    server: Arc<tokio_rustls::rustls::ServerConfig>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls;

    let make_ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert, key)
    };
    let (ca, ca_key) = make_ca("test ca");
    let (other_ca, _) = make_ca("other ca");
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["syslog.test".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca.pem()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![server_cert.der().clone()], key)
    .unwrap();
    Pki {
        _dir: dir,
        ca_file,
        other_ca_file,
        server: Arc::new(server),
    }
}

/// A TLS collector: frames received, and handshakes that failed.
async fn tls_collector(
    server: Arc<tokio_rustls::rustls::ServerConfig>,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<Result<String, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut stream) => {
                        read_frames_with(&mut stream, usize::MAX, |frame| {
                            let _ = tx.send(Ok(frame.to_string()));
                        })
                        .await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn syslog_over_tls_is_delivered() {
    let pki = pki();
    let (addr, mut received) = tls_collector(Arc::clone(&pki.server)).await;
    let log = AuditLog::start_with(syslog_config(
        addr,
        Some(TlsConfig {
            ca_file: pki.ca_file.clone(),
            server_name: "syslog.test".into(),
        }),
    ))
    .unwrap();
    log.record(event(1));
    let frame = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (_, fields, _, msg) = parse_5424(&frame);
    assert_eq!(fields[5], "guard_violation");
    assert!(msg.contains("\"request_id\":\"req-1\""));
    assert_eq!(log.sink_errors(), 0);
}

async fn assert_refused(config: TlsConfig, pki: &Pki) {
    let (addr, mut received) = tls_collector(Arc::clone(&pki.server)).await;
    let log = AuditLog::start_with(syslog_config(addr, Some(config))).unwrap();
    log.record(event(1));
    let first = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(first.is_err(), "handshake should fail, got {first:?}");
    for _ in 0..100 {
        if log.sink_errors() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(log.sink_errors() > 0);
    // Retries keep failing; nothing is ever delivered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(item) = received.try_recv() {
        assert!(
            item.is_err(),
            "delivered despite a bad certificate: {item:?}"
        );
    }
}

#[tokio::test]
async fn syslog_tls_with_a_wrong_server_name_is_refused() {
    let pki = pki();
    let config = TlsConfig {
        ca_file: pki.ca_file.clone(),
        server_name: "other.test".into(),
    };
    assert_refused(config, &pki).await;
}

#[tokio::test]
async fn syslog_tls_with_an_untrusted_ca_is_refused() {
    let pki = pki();
    let config = TlsConfig {
        ca_file: pki.other_ca_file.clone(),
        server_name: "syslog.test".into(),
    };
    assert_refused(config, &pki).await;
}

#[tokio::test]
async fn syslog_tls_needs_its_settings() {
    let error = AuditLog::start(&AuditTarget::parse("syslog+tls://127.0.0.1:6514")).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    let missing = AuditLog::start_with(syslog_config(
        "127.0.0.1:6514".into(),
        Some(TlsConfig {
            ca_file: "/nonexistent/ca.pem".into(),
            server_name: "x".into(),
        }),
    ));
    assert!(matches!(missing, Err(AuditError::Tls(_))));
    assert!(AuditLog::start(&AuditTarget::parse("syslog+tcp://nohost")).is_err());
}

#[tokio::test]
async fn a_dead_collector_never_blocks_and_drops_are_reported_when_it_returns() {
    // A collector that takes one connection and dies.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = AuditLog::start_with(AuditConfig {
        queue_capacity: 16,
        ..syslog_config(addr.to_string(), None)
    })
    .unwrap();
    log.record(event(0));
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let frames = read_frames(&mut stream, 1).await;
    assert_eq!(frames.len(), 1);
    drop(stream);
    drop(listener);
    tokio::time::sleep(Duration::from_millis(100)).await;

    for n in 1..=1000 {
        log.record(event(n));
    }
    // `record` returned for all of them; what did not fit in the queue was counted.
    assert!(log.dropped() > 0);
    assert!(log.dropped() <= 1000);
    for _ in 0..100 {
        if log.sink_errors() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(log.sink_errors() > 0, "failed reconnects are counted");

    // The collector comes back on the same port.
    let listener = TcpListener::bind(addr).await.unwrap();
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let dropped = log.dropped();
    let delivered = 1000 - dropped as usize;
    let frames = tokio::time::timeout(
        Duration::from_secs(10),
        read_frames(&mut stream, delivered + 1),
    )
    .await
    .unwrap();
    let records: Vec<Value> = frames
        .iter()
        .map(|frame| {
            let (_, _, _, msg) = parse_5424(frame);
            serde_json::from_str(msg.trim_start_matches('\u{feff}')).unwrap()
        })
        .collect();
    let report = records
        .iter()
        .find(|r| r["event"] == "audit_events_dropped")
        .expect("a drop report");
    assert_eq!(report["details"]["dropped_total"], dropped);
    assert_eq!(report["details"]["dropped"], dropped);
    // The chain over the delivered records has no gap.
    for pair in records.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    assert_eq!(records[0]["seq"], 2);
}

#[tokio::test]
async fn a_full_queue_on_a_file_reports_drops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::start_with(AuditConfig {
        target: AuditTarget::File(path.clone()),
        queue_capacity: 1,
        ..AuditConfig::default()
    })
    .unwrap();
    for n in 0..1000 {
        log.record(event(n));
    }
    let dropped = log.dropped();
    assert!(dropped > 0);
    let reported = || -> u64 {
        lines_of(&path)
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["event"] == "audit_events_dropped")
            .map(|r| r["details"]["dropped"].as_u64().unwrap())
            .sum()
    };
    for _ in 0..250 {
        if reported() == dropped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reported(), dropped);
    let lines = lines_of(&path);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("guard_violation"))
            .count() as u64,
        1000 - dropped
    );
    verify_file(&path).unwrap();
}
