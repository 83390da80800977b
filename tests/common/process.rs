//! The real `airgate` binary as a child process: its own listeners on free loopback ports, its
//! audit and access logs and its stdout/stderr in a temporary folder, signals sent with `kill`.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `airgate serve`; killed on drop.
pub struct GatewayProcess {
    child: Child,
    pub url: String,
    pub admin: String,
    pub dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Starts `airgate serve` with `yaml` as its configuration and `extra` arguments, and
    /// waits until `/readyz` answers 200.
    pub async fn start(yaml: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, yaml).unwrap();
        Self::start_at(dir, &config, extra).await
    }

    /// Starts `airgate serve --config CONFIG` (a file or folder the caller prepared, for
    /// example inside `dir`), its logs in `dir`.
    pub async fn start_at(
        dir: tempfile::TempDir,
        config: &std::path::Path,
        extra: &[&str],
    ) -> Self {
        let source = ["--config".into(), config.as_os_str().to_owned()];
        let gateway = Self::spawn(dir, &source, extra, &[]);
        gateway.wait_ready().await;
        gateway
    }

    /// Starts `airgate serve --kubernetes` against the API server `kubeconfig` names (written
    /// to the process's folder as `KUBECONFIG`), its watched secrets in `dir/secrets`; does not
    /// wait for readiness ([`GatewayProcess::wait_ready`]).
    pub fn cluster(kubeconfig: &str, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, kubeconfig).unwrap();
        let mut envs: Vec<(&str, &str)> = envs.to_vec();
        let path = path.to_string_lossy().into_owned();
        envs.push(("KUBECONFIG", &path));
        let secrets = dir.path().join("secrets");
        let source = [
            "--kubernetes".into(),
            "--secrets-dir".into(),
            secrets.into_os_string(),
        ];
        Self::spawn(dir, &source, extra, &envs)
    }

    fn spawn(
        dir: tempfile::TempDir,
        source: &[std::ffi::OsString],
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let output = std::fs::File::create(dir.path().join("output.log")).unwrap();
        let (port, admin_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_airgate"))
            .arg("serve")
            .args(source)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAMESPACE")
            .envs(envs.iter().copied())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .arg("--audit-log")
            .arg(dir.path().join("audit.jsonl"))
            .arg("--access-log")
            .arg(dir.path().join("access.jsonl"))
            .args(extra)
            .stdout(Stdio::from(output.try_clone().unwrap()))
            .stderr(Stdio::from(output))
            .spawn()
            .unwrap();
        GatewayProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            dir,
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(response) = reqwest::get(format!("{}/readyz", self.admin)).await {
                if response.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not become ready: {}", self.output());
    }

    /// Sends a signal (`HUP`, `TERM`, ...) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Ends the process at once (SIGKILL): no shutdown sequence, no lease release.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code and how long it took.
    pub fn wait_exit(&mut self, deadline: Duration) -> (i32, Duration) {
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

    /// The JSON lines of one of its log files (`audit.jsonl`, `access.jsonl`).
    pub fn lines(&self, file: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// What it printed (stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("output.log")).unwrap_or_default()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `AIGateway` in namespace `test` named `gw` with one backend serving `mock-model`, and
/// `extra_spec` (indented for `spec:`) appended.
pub fn gateway_yaml(backend: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: hub.traefik.io/v1alpha1\nkind: AIGateway\nmetadata:\n  name: gw\n  namespace: test\nspec:\n  backends:\n    - name: a\n      url: {backend}\n      models: [mock-model]\n      timeout: 60s\n{extra_spec}"
    )
}

/// Runs the `airgate` command to its end: its exit code, and what it printed (stdout then
/// stderr).
pub fn run_airgate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_airgate"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}
