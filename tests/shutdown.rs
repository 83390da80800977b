//! Graceful shutdown of the real `airgate` binary: SIGTERM drains open streams, cuts what
//! outlives the grace period with an error event (and a 503 for requests still waiting), and
//! every request's access-log line and audit record is on disk when the process has exited,
//! with the audit hash chain intact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airgate::mock::{MockConfig, MockServer};
use serde_json::Value;

const STREAMS: usize = 20;

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Gateway {
    child: Child,
    url: String,
    admin: String,
    dir: tempfile::TempDir,
}

impl Gateway {
    async fn start(backend: &str, grace: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.yaml");
        std::fs::write(
            &config,
            format!(
                "apiVersion: hub.traefik.io/v1alpha1\nkind: AIGateway\nmetadata:\n  name: gw\n  namespace: test\nspec:\n  backends:\n    - name: a\n      url: {backend}\n      models: [mock-model]\n      timeout: 60s\n  routing:\n    streamIdleTimeout: 60s\n"
            ),
        )
        .unwrap();
        let (port, admin_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_airgate"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .arg("--audit-log")
            .arg(dir.path().join("audit.jsonl"))
            .arg("--access-log")
            .arg(dir.path().join("access.jsonl"))
            .args(["--shutdown-grace", grace])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let gateway = Gateway {
            child,
            url: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            dir,
        };
        gateway.wait_ready().await;
        gateway
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(response) = reqwest::get(format!("{}/readyz", self.admin)).await {
                if response.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not become ready");
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code and how long it took.
    fn wait_exit(&mut self, deadline: Duration) -> (i32, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), started.elapsed());
            }
            if started.elapsed() > deadline {
                let _ = self.child.kill();
                panic!("the gateway did not exit within {deadline:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lines(&self, file: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens `STREAMS` streamed chat completions; each task returns the `data:` payloads received.
fn open_streams(url: &str) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    let client = reqwest::Client::new();
    (0..STREAMS)
        .map(|_| {
            let request = client
                .post(format!("{url}/v1/chat/completions"))
                .json(&serde_json::json!({"model": "mock-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
                .send();
            tokio::spawn(async move {
                let body = request.await.unwrap().text().await.unwrap_or_default();
                body.split("\n\n")
                    .filter_map(|e| e.strip_prefix("data: "))
                    .map(str::to_string)
                    .collect()
            })
        })
        .collect()
}

fn assert_chain_intact(path: &Path) {
    let report = airgate::telemetry::audit::verify_file(path).unwrap();
    assert!(report.records > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_streams_and_every_record_is_written() {
    // 20 streams of about 3 s; SIGTERM after 0.7 s; a 20 s grace is plenty.
    let backend = MockServer::start(
        MockConfig::named("a")
            .tokens(30)
            .inter_token_delay(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let mut gateway = Gateway::start(&backend.url(), "20s").await;
    let streams = open_streams(&gateway.url);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        backend.in_flight(),
        STREAMS,
        "not every stream was open at SIGTERM"
    );
    gateway.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = reqwest::get(format!("{}/readyz", gateway.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "/readyz must fail while draining");
    for stream in streams {
        let data = stream.await.unwrap();
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    }
    let (code, _) = tokio::task::block_in_place(|| gateway.wait_exit(Duration::from_secs(15)));
    assert_eq!(code, 0);

    let audit = gateway.lines("audit.jsonl");
    let served: Vec<&Value> = audit
        .iter()
        .filter(|e| e["event"] == "request_served" && e["details"]["stream"] == true)
        .collect();
    assert_eq!(served.len(), STREAMS, "audit records lost at shutdown");
    assert!(served
        .iter()
        .all(|e| e["details"]["cut_by_shutdown"].is_null()));
    assert_eq!(audit.last().unwrap()["event"], "gateway_stopped");
    assert_chain_intact(&gateway.audit_path());
    let access = gateway.lines("access.jsonl");
    assert_eq!(access.len(), STREAMS, "access-log lines lost at shutdown");
    assert!(access
        .iter()
        .all(|l| l["status"] == 200 && l["cut_by_shutdown"].is_null()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_requests_open_past_the_grace_are_cut_and_recorded() {
    // Streams of 60 s and a request waiting 60 s for its answer; the grace is 1 s.
    let backend = MockServer::start(
        MockConfig::named("a")
            .tokens(600)
            .inter_token_delay(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let slow = MockServer::start(MockConfig::named("s").latency(Duration::from_secs(60)))
        .await
        .unwrap();
    let mut gateway = Gateway::start(&backend.url(), "1s").await;
    let streams = open_streams(&gateway.url);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The waiting request goes through a second gateway process pointed at the slow backend.
    let mut waiting_gateway = Gateway::start(&slow.url(), "1s").await;
    let waiting = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", waiting_gateway.url))
        .json(&serde_json::json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send();
    let waiting = tokio::spawn(waiting);
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.terminate();
    waiting_gateway.terminate();

    for stream in streams {
        let data = stream.await.unwrap();
        let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
        assert_eq!(last["error"]["code"], "gateway_shutdown", "{data:?}");
        assert!(!data.iter().any(|d| d == "[DONE]"));
    }
    let response = waiting.await.unwrap().unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "gateway_shutdown");

    for g in [&mut gateway, &mut waiting_gateway] {
        let (code, took) = tokio::task::block_in_place(|| g.wait_exit(Duration::from_secs(15)));
        assert_eq!(code, 0);
        assert!(took < Duration::from_secs(10), "exit took {took:?}");
    }
    let audit = gateway.lines("audit.jsonl");
    let cut: Vec<&Value> = audit
        .iter()
        .filter(|e| e["event"] == "request_served" && e["details"]["cut_by_shutdown"] == true)
        .collect();
    assert_eq!(cut.len(), STREAMS, "cut streams without their audit record");
    assert_eq!(audit.last().unwrap()["details"]["cut_by_shutdown"], true);
    assert_chain_intact(&gateway.audit_path());
    let access = gateway.lines("access.jsonl");
    assert_eq!(access.len(), STREAMS);
    assert!(access.iter().all(|l| l["cut_by_shutdown"] == true));

    let audit = waiting_gateway.lines("audit.jsonl");
    assert!(audit
        .iter()
        .any(|e| e["event"] == "request_interrupted" && e["details"]["status"] == 503));
    let access = waiting_gateway.lines("access.jsonl");
    assert_eq!(access.len(), 1);
    assert_eq!(access[0]["status"], 503);
    assert_eq!(access[0]["cut_by_shutdown"], true);
}
