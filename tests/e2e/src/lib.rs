//! The platform as separate processes: the real `auth`, `users`, `chat`,
//! `bots` and `gateway` binaries (from the workspace's target directory),
//! each on its own ports, all on this test's own databases, key prefix,
//! exchange and queues (test-kit), so tests run side by side. Scenarios
//! drive it only through public interfaces: Node.js scripts with the
//! official socket.io-client and fetch (`tests/socketio/e2e/`), HTTP, gRPC.

// A test harness: failing loudly (panicking with the reason) is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use test_kit::{TestAmqp, TestPostgres, TestRedis};
use tokio::process::{Child, Command};

pub mod stores;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A service binary next to this test binary (`target/<profile>/<name>`).
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no target directory")?;
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build the services first (`cargo build --workspace --bins`; scripts/test.sh does)",
        path.display()
    );
    Ok(path)
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Gateway replicas (they share the Redis adapter and the fan-out queue).
    pub gateways: usize,
    /// Bot definitions file.
    pub bots_file: PathBuf,
    /// Stores other than the shared local ones (fault tests run their own,
    /// so stopping them disturbs no other test).
    pub redis_url: Option<String>,
    pub amqp_url: Option<String>,
    pub mongodb_url: Option<String>,
    /// auth's signing key as `(kid, PKCS#8 PEM)`, so a benchmark can mint
    /// tokens itself; unset, auth makes its own.
    pub auth_signing_key: Option<(String, String)>,
    /// Whether gateways mark messages delivered when sockets ack them (they
    /// get chat's service credential); on by default, as in production.
    pub delivered_on_ack: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            gateways: 1,
            bots_file: root().join("crates/bots/bots.example.yaml"),
            redis_url: None,
            amqp_url: None,
            mongodb_url: None,
            auth_signing_key: None,
            delivered_on_ack: true,
        }
    }
}

/// One running service process.
#[derive(Debug)]
struct Process {
    name: String,
    env: BTreeMap<String, String>,
    admin: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let binary_name = self.name.split('-').next().unwrap_or(&self.name);
        let child = Command::new(binary(binary_name)?)
            .envs(&self.env)
            .env("ADMIN_ADDR", self.admin.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls `/readyz` (at most 30 s); fails early, with the log, if the
    /// process exits.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("http://{}/readyz", self.admin);
        let http = test_kit::http();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if exited.is_some() || tokio::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                anyhow::bail!(
                    "{} did not become ready ({exited:?}); its log:\n{log}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait for the drain (at most 30 s, then SIGKILL).
    async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
        }
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            child.kill().await?;
        }
        Ok(())
    }
}

/// The platform, stopped (processes killed, data dropped) when dropped.
#[derive(Debug)]
pub struct Platform {
    processes: Vec<Process>,
    /// `http://127.0.0.1:<port>` of each gateway replica.
    pub gateway_urls: Vec<String>,
    pub bots_grpc: String,
    logs: PathBuf,
    _postgres: (TestPostgres, TestPostgres),
    _redis: TestRedis,
    _amqp: TestAmqp,
    mongo: Option<stores::Store>,
}

impl Platform {
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        test_kit::init_tracing();
        let postgres = (TestPostgres::new().await?, TestPostgres::new().await?);
        let redis = TestRedis::new().await?;
        let amqp = TestAmqp::new().await?;
        // Its own MongoDB-protocol server: services are killed at the end of
        // a test, and SecantusDB can keep a killed client's transaction open,
        // which would wedge a shared server for every later test.
        let mongo = match &options.mongodb_url {
            Some(_) => None,
            None => {
                let mut store = stores::mongo(stores::Storage::Memory);
                store.start().await;
                Some(store)
            }
        };
        let mongodb_url = options
            .mongodb_url
            .clone()
            .or_else(|| {
                mongo
                    .as_ref()
                    .map(|m| format!("mongodb://127.0.0.1:{}", m.port))
            })
            .unwrap_or_else(test_kit::mongodb_url);
        let logs = std::env::temp_dir().join(format!("e2e-{}", test_kit::unique_suffix()));
        std::fs::create_dir_all(&logs)?;

        // Queues unique to this test, deleted with it.
        let queue = |name: &str| amqp.consumer_spec(name, &[]).queue;
        let users_queue = queue("users");
        let bots_queue = queue("bots");
        let fanout_queue = queue("fanout");

        let grpc: BTreeMap<&str, u16> = [
            ("auth", stores::free_port()),
            ("users", stores::free_port()),
            ("chat", stores::free_port()),
            ("bots", stores::free_port()),
        ]
        .into_iter()
        .collect();
        let url = |name: &str| format!("http://127.0.0.1:{}", grpc[name]);
        let token = || test_kit::unique_suffix();
        let (auth_token, users_token, chat_token) = (token(), token(), token());

        let common: BTreeMap<String, String> = [
            ("LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
            ("SHUTDOWN_GRACE", "5s".to_owned()),
            (
                "AMQP_URL",
                options.amqp_url.clone().unwrap_or_else(test_kit::amqp_url),
            ),
            ("AMQP_EXCHANGE", amqp.exchange.name.clone()),
            (
                "REDIS_URL",
                options
                    .redis_url
                    .clone()
                    .unwrap_or_else(test_kit::redis_url),
            ),
            ("REDIS_KEY_PREFIX", redis.prefix.clone()),
            ("AUTH_GRPC_URL", url("auth")),
            ("USERS_GRPC_URL", url("users")),
            ("CHAT_GRPC_URL", url("chat")),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        let with = |extra: &[(&str, String)]| {
            let mut env = common.clone();
            env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            env
        };
        let grpc_addr = |name: &str| format!("127.0.0.1:{}", grpc[name]);

        let mut auth_env = vec![
            ("GRPC_ADDR", grpc_addr("auth")),
            ("DATABASE_URL", postgres.0.url().expose_secret().to_owned()),
            ("AUTH_SERVICE_TOKEN", auth_token.clone()),
            ("BCRYPT_COST", "4".to_owned()),
        ];
        if let Some((kid, pem)) = &options.auth_signing_key {
            auth_env.push(("AUTH_SIGNING_KEY_ID", kid.clone()));
            auth_env.push(("AUTH_SIGNING_KEY", pem.clone()));
        }
        let mut specs = vec![
            (
                "users".to_owned(),
                with(&[
                    ("GRPC_ADDR", grpc_addr("users")),
                    ("DATABASE_URL", postgres.1.url().expose_secret().to_owned()),
                    ("USERS_SERVICE_TOKEN", users_token.clone()),
                    ("USERS_QUEUE", users_queue),
                ]),
            ),
            ("auth".to_owned(), with(&auth_env)),
            (
                "chat".to_owned(),
                with(&[
                    ("GRPC_ADDR", grpc_addr("chat")),
                    ("MONGODB_URL", mongodb_url),
                    ("MONGODB_DATABASE", "chat".to_owned()),
                    ("CHAT_SERVICE_TOKEN", chat_token.clone()),
                ]),
            ),
            (
                "bots".to_owned(),
                with(&[
                    ("GRPC_ADDR", grpc_addr("bots")),
                    ("AUTH_SERVICE_TOKEN", auth_token),
                    ("BOTS_QUEUE", bots_queue),
                    ("BOTS_DEFINITIONS", options.bots_file.display().to_string()),
                ]),
            ),
        ];
        let mut gateway_urls = Vec::new();
        for replica in 0..options.gateways.max(1) {
            let port = stores::free_port();
            gateway_urls.push(format!("http://127.0.0.1:{port}"));
            let mut gateway_env = vec![
                ("HTTP_ADDR", format!("127.0.0.1:{port}")),
                ("USERS_SERVICE_TOKEN", users_token.clone()),
                ("FANOUT_QUEUE", fanout_queue.clone()),
                // Each test's clients come from 127.0.0.1: no IP limit.
                ("AUTH_RATE_LIMIT", "1000/1s".to_owned()),
            ];
            if options.delivered_on_ack {
                gateway_env.push(("CHAT_SERVICE_TOKEN", chat_token.clone()));
            }
            specs.push((format!("gateway-{replica}"), with(&gateway_env)));
        }

        let mut platform = Self {
            processes: Vec::new(),
            gateway_urls,
            bots_grpc: url("bots"),
            logs,
            _postgres: postgres,
            _redis: redis,
            _amqp: amqp,
            mongo,
        };
        for (name, env) in specs {
            let mut process = Process {
                log: platform.logs.join(format!("{name}.log")),
                admin: SocketAddr::from(([127, 0, 0, 1], stores::free_port())),
                name,
                env,
                child: None,
            };
            process.spawn().await?;
            platform.processes.push(process);
        }
        // Started together: users waits for auth's keys, auth's events need
        // users' queue; each retries until the other is up.
        for process in &mut platform.processes {
            process.wait_ready().await?;
        }
        Ok(platform)
    }

    pub fn gateway(&self) -> &str {
        &self.gateway_urls[0]
    }

    fn process(&mut self, name: &str) -> anyhow::Result<&mut Process> {
        self.processes
            .iter_mut()
            .find(|p| p.name == name)
            .with_context(|| format!("no process {name}"))
    }

    /// Stops a service (SIGTERM, drain) and starts it again on the same
    /// ports, waiting until it is ready.
    pub async fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        let process = self.process(name)?;
        process.stop().await?;
        process.spawn().await?;
        process.wait_ready().await
    }

    /// `(name, pid)` of every running service process.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.processes
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.child.as_ref()?.id()?)))
            .collect()
    }

    /// The pid of the platform's own MongoDB-protocol server, if it runs one.
    pub fn mongo_pid(&self) -> Option<u32> {
        self.mongo.as_ref()?.pid()
    }

    /// The last lines of every service's log (for failure messages).
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for process in &self.processes {
            let text = std::fs::read_to_string(&process.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!("--- {} ---\n{}\n", process.name, tail.join("\n")));
        }
        out
    }

    /// Starts `tests/socketio/e2e/<script>.mjs` without waiting for it (its
    /// stdout is piped: read it with `wait_with_output`).
    pub fn spawn_scenario(&self, script: &str, extra: &[(&str, &str)]) -> anyhow::Result<Child> {
        let path = root()
            .join("tests/socketio/e2e")
            .join(format!("{script}.mjs"));
        Ok(Command::new("node")
            .arg(&path)
            .env("GATEWAY_URL", self.gateway())
            .env("GATEWAY_URLS", self.gateway_urls.join(","))
            .envs(extra.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?)
    }

    /// Whether every service answers its `/readyz` now.
    pub async fn all_ready(&self) -> Vec<(String, bool)> {
        let http = test_kit::http();
        let mut out = Vec::new();
        for process in &self.processes {
            let ready = http
                .get(format!("http://{}/readyz", process.admin))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            out.push((process.name.clone(), ready));
        }
        out
    }

    /// A finished helper process's stdout; panics with the services' logs
    /// and its output if it failed.
    pub fn expect_success(&self, output: &std::process::Output) -> String {
        assert!(
            output.status.success(),
            "{}",
            self.failure_report("helper", output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The services' log tails, then a failed helper's exit status and
    /// output: last, because CI keeps only the tail of what a test printed.
    fn failure_report(&self, helper: &str, output: &std::process::Output) -> String {
        format!(
            "{}\n--- {helper} ({}) stdout ---\n{}\n--- {helper} stderr ---\n{}",
            self.log_tails(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        )
    }

    /// Runs `tests/socketio/e2e/<script>.mjs` with the gateway URLs in
    /// `GATEWAY_URL` / `GATEWAY_URLS` (and `extra` env), and returns the JSON
    /// object it prints last. Fails with its output and the services' logs.
    pub async fn scenario(
        &self,
        script: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<serde_json::Value> {
        let path = root()
            .join("tests/socketio/e2e")
            .join(format!("{script}.mjs"));
        let run = Command::new("node")
            .arg(&path)
            .env("GATEWAY_URL", self.gateway())
            .env("GATEWAY_URLS", self.gateway_urls.join(","))
            .envs(extra.iter().copied())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .with_context(|| format!("{script}.mjs ran over 120 s"))??;
        anyhow::ensure!(
            output.status.success(),
            "{script}.mjs failed:\n{}",
            self.failure_report(&format!("{script}.mjs"), &output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().rev().find(|line| line.starts_with('{'));
        let last = last.with_context(|| format!("{script}.mjs printed no JSON: {stdout}"))?;
        Ok(serde_json::from_str(last)?)
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        // SIGTERM first, so services end their transactions and connections
        // cleanly before the test-kit guards drop the data (a killed chat can
        // leave a transaction open that blocks dropping its database); then
        // SIGKILL whatever is still running after 10 s.
        for process in &self.processes {
            if let Some(pid) = process.child.as_ref().and_then(Child::id) {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for process in &mut self.processes {
            if let Some(child) = process.child.as_mut() {
                while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.start_kill();
            }
        }
        // E2E_KEEP_LOGS=1 keeps the services' logs for a look afterwards.
        if std::env::var_os("E2E_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.logs);
        } else {
            eprintln!("service logs kept in {}", self.logs.display());
        }
    }
}
