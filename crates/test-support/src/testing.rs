//! Test support shared by unit and integration tests: a throwaway `redis-server` on a free
//! loopback port. Not used by the gateway itself.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process in a temporary directory, killed on drop.
pub struct RedisServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// The `redis-server` binary: `$AIRGATE_REDIS_SERVER`, else the first on `PATH`.
pub fn redis_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("AIRGATE_REDIS_SERVER") {
        return Some(PathBuf::from(bin));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    })
}

impl RedisServer {
    /// Starts one, or `Ok(None)` when no `redis-server` exists and `AIRGATE_REQUIRE_REDIS` is
    /// unset (then the caller skips; CI sets it so a missing server fails instead).
    pub fn start() -> std::io::Result<Option<Self>> {
        let Some(bin) = redis_binary() else {
            if std::env::var_os("AIRGATE_REQUIRE_REDIS").is_some() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "redis-server not found and AIRGATE_REQUIRE_REDIS is set",
                ));
            }
            eprintln!("SKIPPED: redis-server not found (set AIRGATE_REDIS_SERVER)");
            return Ok(None);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("airgate-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = RedisServer {
            bin,
            dir,
            port,
            child: None,
        };
        server.restart()?;
        Ok(Some(server))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts (again) on the same port and waits until it answers PING.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.answers_ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "redis-server did not start",
        ))
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut buf = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut buf).is_ok()
            && &buf == b"+PONG\r\n"
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
