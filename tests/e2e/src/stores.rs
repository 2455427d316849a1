//! Store processes a test owns (its own port and data directory), so it can
//! stop and start them without disturbing other tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A free port on 127.0.0.1 (released for the process to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A store process this test owns: started, stopped and started again on
/// the same port and data directory.
#[derive(Debug)]
pub struct Store {
    pub name: &'static str,
    pub port: u16,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Store {
    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("out.log"))
            .unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not start: {}",
                self.name,
                std::fs::read_to_string(self.dir.join("out.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref()?.id()
    }

    /// SIGTERM (each store shuts down cleanly on it) and wait.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().unwrap().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            child.kill().await.unwrap();
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faults-{name}-{}", test_kit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn redis() -> Store {
    let port = free_port();
    let dir = scratch("redis");
    Store {
        name: "redis",
        port,
        program: "redis-server".into(),
        // Append-only file: what a production Redis keeps across restarts.
        args: [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--dir",
            dir.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec(),
        env: Vec::new(),
        dir,
        child: None,
    }
}

/// Where a MongoDB-protocol server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Memory,
    Disk,
}

pub fn mongo(storage: Storage) -> Store {
    let port = free_port();
    let dir = scratch("mongo");
    std::fs::write(dir.join("secantusd.toml"), "# flags only\n").unwrap();
    let home = std::env::var("CHAT_DEPS_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(&std::env::var("HOME").unwrap()).join(".cache/chat-platform/deps")
        });
    Store {
        name: "mongodb",
        port,
        program: home.join("secantus-venv/bin/secantusd-py"),
        args: vec![
            "--config".into(),
            dir.join("secantusd.toml").display().to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--storage-path".into(),
            match storage {
                Storage::Memory => ":memory:".to_owned(),
                Storage::Disk => dir.join("data").display().to_string(),
            },
        ],
        env: Vec::new(),
        dir,
        child: None,
    }
}

pub fn rabbitmq() -> Store {
    let port = free_port();
    let dir = scratch("rabbitmq");
    std::fs::write(
        dir.join("rabbitmq.conf"),
        format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
    let node = format!("faults-{port}@localhost");
    let path = |name: &str| dir.join(name).display().to_string();
    Store {
        name: "rabbitmq",
        port,
        // The script itself, not Debian's wrapper (which switches users).
        program: "/usr/lib/rabbitmq/bin/rabbitmq-server".into(),
        args: Vec::new(),
        env: vec![
            ("RABBITMQ_NODENAME".into(), node),
            ("RABBITMQ_NODE_PORT".into(), port.to_string()),
            ("RABBITMQ_DIST_PORT".into(), free_port().to_string()),
            ("RABBITMQ_MNESIA_BASE".into(), path("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), path("log")),
            ("RABBITMQ_CONFIG_FILE".into(), path("rabbitmq.conf")),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE".into(),
                path("enabled_plugins"),
            ),
            ("RABBITMQ_PID_FILE".into(), path("pid")),
        ],
        dir,
        child: None,
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
