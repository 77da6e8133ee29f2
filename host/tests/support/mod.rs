//! Shared helpers for the tests that run `magnetar run` against the real broker.

#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pulsar::producer::Message as OutboundMessage;
use pulsar::{Pulsar, TokioExecutor};

pub fn broker_url() -> String {
    std::env::var("MAGNETAR_TEST_BROKER").unwrap_or_else(|_| "pulsar://127.0.0.1:6650".to_string())
}

pub async fn connect() -> Pulsar<TokioExecutor> {
    connect_to(&broker_url()).await
}

pub async fn connect_to(url: &str) -> Pulsar<TokioExecutor> {
    let url = url.to_string();
    match tokio::time::timeout(Duration::from_secs(20), Pulsar::builder(url.clone(), TokioExecutor).build()).await {
        Ok(Ok(pulsar)) => pulsar,
        Ok(Err(error)) => {
            panic!("cannot connect to the Pulsar broker at {url} ({error}); start it with `scripts/pulsar-standalone start`")
        }
        Err(_) => panic!("timed out connecting to the Pulsar broker at {url}; start it with `scripts/pulsar-standalone start`"),
    }
}

/// Path of a guest component built by `scripts/build-plugins`.
pub fn plugin(file: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("wasm32-wasip2/release").join(file);
    assert!(path.exists(), "{} is missing; build the plugins with `scripts/build-plugins`", path.display());
    path
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// A suffix that keeps topic names of different runs apart.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{}", std::process::id(), nanos % 1_000_000_000)
}

pub async fn produce(pulsar: &Pulsar<TokioExecutor>, topic: &str, payloads: &[(String, Vec<(String, String)>)]) {
    let mut producer = pulsar.producer().with_topic(topic).build().await.expect("create producer");
    let mut receipts = Vec::with_capacity(payloads.len());
    for (payload, properties) in payloads {
        let message = OutboundMessage {
            payload: payload.clone().into_bytes(),
            properties: properties.iter().cloned().collect(),
            ..Default::default()
        };
        receipts.push(producer.send_non_blocking(message).await.expect("send"));
        // Bound the messages in flight: past the client's queue, sends fail with SlowDown.
        if receipts.len() == 50 {
            for receipt in receipts.drain(..) {
                receipt.await.expect("broker receipt");
            }
        }
    }
    for receipt in receipts {
        receipt.await.expect("broker receipt");
    }
}

/// A `magnetar run` child process that is killed when dropped.
pub struct Host {
    pub child: Child,
}

impl Host {
    pub fn start(pipeline: &Path, log: &Path) -> Host {
        let log_file = std::fs::File::create(log).expect("create host log");
        let child = Command::new(env!("CARGO_BIN_EXE_magnetar"))
            .args(["run", pipeline.to_str().unwrap(), "--grace", "20"])
            .env("RUST_LOG", "info,magnetar=debug")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start magnetar run");
        Host { child }
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("send SIGTERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for host") {
                return status;
            }
            assert!(Instant::now() < deadline, "host did not exit within {within:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` until it returns true or `within` passes; on timeout, panic with the host log.
pub async fn wait_until<F, Fut>(within: Duration, log: &Path, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = log_text.lines().rev().take(40).collect();
    panic!("timed out after {within:?} waiting for {what}; host log tail:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
}

pub async fn count(pool: &sqlx::SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or(-1)
}

/// Message-ID headers of the emails in a file outbox.
pub fn outbox_message_ids(outbox: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(outbox) else { return Vec::new() };
    let mut ids = Vec::new();
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|ext| ext == "eml") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let id = text
                .lines()
                .find(|line| line.to_ascii_lowercase().starts_with("message-id:"))
                .map(|line| line["message-id:".len()..].trim().to_string())
                .unwrap_or_default();
            ids.push(id);
        }
    }
    ids
}

/// The db-writer's `config` section from the project's pipeline.yaml, so tests store movies
/// exactly as the shipped pipeline does.
pub fn db_writer_config_yaml() -> String {
    let text = std::fs::read_to_string(repo_root().join("pipeline.yaml")).expect("read pipeline.yaml");
    let after = text.split("    config:\n").nth(1).expect("db-writer config section");
    let section = after.split("\n  - name:").next().expect("end of section");
    section.to_string()
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago. Another process may take it before
/// the caller binds it, which is unlikely in a test run.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Returns whether something accepts TCP connections on 127.0.0.1:`port`.
/// Port of the shared broker's admin REST API, from `MAGNETAR_TEST_ADMIN` (default 8080).
pub fn admin_port() -> u16 {
    std::env::var("MAGNETAR_TEST_ADMIN")
        .ok()
        .and_then(|url| url.rsplit(':').next().and_then(|port| port.trim_end_matches('/').parse().ok()))
        .unwrap_or(8080)
}

pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

/// Sends one HTTP/1.1 request to 127.0.0.1:`port` and returns the status code and body.
pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Returns the first `count` records of data/movies.json, each as a payload without properties.
pub fn movie_records(count: usize) -> Vec<(String, Vec<(String, String)>)> {
    let text = std::fs::read_to_string(repo_root().join("data/movies.json")).expect("read data/movies.json");
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).expect("data/movies.json is a JSON array");
    assert!(records.len() >= count, "data/movies.json has {} records, fewer than {count}", records.len());
    records.iter().take(count).map(|record| (record.to_string(), Vec::new())).collect()
}

/// Returns the stored rows and dead letters when `records` go through the db-writer one by
/// one, without a broker. A pipeline run must reach this outcome whatever faults it meets.
pub async fn reference_stored_and_dead(records: &[(String, Vec<(String, String)>)]) -> (i64, i64) {
    let config: serde_json::Value =
        serde_saphyr::from_str(&dedent_yaml(&db_writer_config_yaml())).expect("db-writer config");
    let harness = magnetar::harness::Harness::builder(plugin("db_writer.wasm"))
        .config(config)
        .migrations(repo_root().join("migrations"))
        .build()
        .await
        .expect("harness");
    let mut dead = 0;
    for (payload, _) in records {
        let outcome = harness.handle(magnetar::harness::Harness::message(payload.clone().into_bytes())).await;
        if outcome.result.is_err() {
            dead += 1;
        }
    }
    let rows = harness.database().query("SELECT COUNT(*) FROM movies", Vec::new()).await.expect("count rows");
    let stored = match rows.rows[0][0] {
        magnetar::bindings::database::Value::Integer(n) => n,
        ref other => panic!("unexpected count {other:?}"),
    };
    (stored, dead)
}

/// Removes the indentation that all non-blank lines of `text` share.
pub fn dedent_yaml(text: &str) -> String {
    let width = text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    text.lines().map(|l| if l.len() >= width { &l[width..] } else { l.trim_start() }).collect::<Vec<_>>().join("\n")
}

/// Prints one row of the fault table that `scripts/fault-tests` collects from the test output.
pub fn print_fault_row(scenario: &str, produced: usize, stored: i64, emailed: usize, dead_lettered: i64, duplicates: i64, lost: i64) {
    println!("fault-table|{scenario}|{produced}|{stored}|{emailed}|{dead_lettered}|{duplicates}|{lost}");
}

/// A private instance of scripts/smtp-sink.py on its own ports and inbox, so a test can set
/// fault modes without disturbing the shared sink. The process is killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    pub control_port: u16,
    pub inbox: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl SmtpSink {
    /// Reserves ports and an inbox without starting the server, for tests where the server is
    /// down at first.
    pub fn reserve(dir: &Path) -> SmtpSink {
        SmtpSink {
            port: free_port(),
            control_port: free_port(),
            inbox: dir.join("smtp-inbox"),
            log: dir.join("smtp-sink.log"),
            child: None,
        }
    }

    pub fn start(dir: &Path) -> SmtpSink {
        let mut sink = SmtpSink::reserve(dir);
        sink.launch();
        sink
    }

    /// Starts the server on the reserved ports and waits until both accept connections.
    pub fn launch(&mut self) {
        // scripts/test exports the Python of the sink's venv; without it, use the repository's cache.
        let python = std::env::var_os("MAGNETAR_TEST_SMTP_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".cache/services/venv/bin/python"));
        assert!(
            python.exists(),
            "{} is missing; install the SMTP sink with `scripts/services start smtp` and set MAGNETAR_TEST_SMTP_PYTHON to its venv's python",
            python.display()
        );
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open SMTP sink log");
        let child = Command::new(python)
            .arg(repo_root().join("scripts/smtp-sink.py"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--control-port", &self.control_port.to_string()])
            .arg("--inbox")
            .arg(&self.inbox)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start scripts/smtp-sink.py");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(port_open(self.port) && port_open(self.control_port)) {
            assert!(
                Instant::now() < deadline,
                "the SMTP sink did not listen on ports {} and {} within 20 s; see {}",
                self.port,
                self.control_port,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server; the reserved ports and the inbox stay for a later `launch`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Returns the mail transport URL of this sink for pipeline.yaml.
    pub fn transport(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// Sets the fault mode through the control server, as `{"mode": ..., "times": ...}`.
    pub fn set_mode(&self, json: &str) {
        let (status, body) = http_request(self.control_port, "PUT", "/mode", json).expect("reach the SMTP sink control server");
        assert_eq!(status, 200, "the SMTP sink rejected mode {json}: {body}");
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Returns the system user that runs PostgreSQL, chosen as scripts/services does: `postgres` when
/// that user exists, else `magnetar-pg`.
pub fn postgres_os_user() -> &'static str {
    let exists = |user: &str| Command::new("id").args(["-u", user]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if exists("postgres") {
        "postgres"
    } else {
        assert!(exists("magnetar-pg"), "neither system user postgres nor magnetar-pg exists; `scripts/services start postgres` creates one");
        "magnetar-pg"
    }
}

/// A private PostgreSQL server in a temporary folder, run as `postgres_os_user()` with trust
/// authentication on 127.0.0.1, so a test can stop and start it. Stopped when dropped.
pub struct PrivatePostgres {
    pub port: u16,
    user: &'static str,
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let bin = std::env::var_os("MAGNETAR_PG_BIN").map(PathBuf::from).unwrap_or_else(newest_postgres_bin);
        let initdb = bin.join("initdb");
        assert!(initdb.exists(), "{} is missing; install PostgreSQL with `scripts/services start postgres`", initdb.display());
        let user = postgres_os_user();

        let dir = tempfile::tempdir().expect("temp dir for PostgreSQL");
        let chown = Command::new("chown").arg(format!("{user}:")).arg(dir.path()).status().expect("run chown");
        assert!(chown.success(), "chown of {} to {user} failed", dir.path().display());
        let data = dir.path().join("data");
        let output = Command::new("runuser")
            .args(["-u", user, "--"])
            .arg(&initdb)
            .arg(format!("--pgdata={}", data.display()))
            .args(["--username=magnetar", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"])
            .output()
            .expect("run initdb");
        assert!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));

        let server = PrivatePostgres { port: free_port(), user, bin, data, _dir: dir };
        server.resume();
        server
    }

    /// Returns the database URL for pipeline.yaml and for sqlx.
    pub fn url(&self) -> String {
        format!("postgres://magnetar@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server on its port and data folder, and waits until it accepts connections.
    pub fn resume(&self) {
        let options = format!("-h 127.0.0.1 -p {} -k {}", self.port, self.data.display());
        let output = Command::new("runuser")
            .args(["-u", self.user, "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("start")
            .arg(format!("--pgdata={}", self.data.display()))
            .arg(format!("--log={}", self.data.join("server.log").display()))
            .arg(format!("--options={options}"))
            .args(["--wait", "--timeout=60", "--silent"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}; see {}",
            String::from_utf8_lossy(&output.stderr),
            self.data.join("server.log").display()
        );
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), as a crash would.
    pub fn stop(&self) {
        let _ = Command::new("runuser")
            .args(["-u", self.user, "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("stop")
            .arg(format!("--pgdata={}", self.data.display()))
            .args(["-m", "immediate", "--wait", "--silent"])
            .stdin(Stdio::null())
            .output();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn newest_postgres_bin() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().filter_map(|entry| entry.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    versions.sort();
    let version = versions.last().expect("no PostgreSQL under /usr/lib/postgresql; install it with `scripts/services start postgres`");
    PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"))
}

/// A second Pulsar standalone broker on free ports with a data folder of its own, run by
/// `scripts/pulsar-standalone` from the same downloaded distribution as the shared broker, so
/// a test can stop and restart it without disturbing other tests. Stopped when dropped.
pub struct PrivateBroker {
    pub port: u16,
    pub http_port: u16,
    bookie_port: u16,
    conf_extra: String,
    dir: tempfile::TempDir,
}

impl PrivateBroker {
    /// Starts the broker with `conf_extra` ("key=value" lines) added to its configuration.
    pub fn start(conf_extra: &str) -> PrivateBroker {
        let broker = PrivateBroker {
            port: free_port(),
            http_port: free_port(),
            bookie_port: free_port(),
            conf_extra: conf_extra.to_string(),
            dir: tempfile::tempdir().expect("temp dir for the private broker"),
        };
        broker.script("start", false);
        broker
    }

    pub fn url(&self) -> String {
        format!("pulsar://127.0.0.1:{}", self.port)
    }

    /// Stops the broker with SIGTERM, as an operator's restart would.
    pub fn stop(&self) {
        self.script("stop", true);
    }

    /// Starts the broker again on the same ports, with the topics and ledgers it had.
    pub fn resume(&self) {
        self.script("start", true);
    }

    fn script(&self, command: &str, keep_data: bool) {
        let output = Command::new(repo_root().join("scripts/pulsar-standalone"))
            .arg(command)
            .env("PULSAR_INSTANCE_DIR", self.dir.path())
            .env("PULSAR_PORT", self.port.to_string())
            .env("PULSAR_HTTP_PORT", self.http_port.to_string())
            .env("PULSAR_BOOKIE_PORT", self.bookie_port.to_string())
            .env("PULSAR_CONF_EXTRA", &self.conf_extra)
            .env("PULSAR_KEEP_DATA", if keep_data { "1" } else { "0" })
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/pulsar-standalone");
        assert!(
            output.status.success(),
            "scripts/pulsar-standalone {command} for a private broker failed (it needs the distribution that \
             `scripts/pulsar-standalone start` downloads):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/pulsar-standalone"))
            .arg("stop")
            .env("PULSAR_INSTANCE_DIR", self.dir.path())
            .stdin(Stdio::null())
            .output();
    }
}

/// A private MariaDB server on a free port with a data folder of its own, so a test can
/// crash it and start it again. Killed when dropped.
pub struct PrivateMariadb {
    pub port: u16,
    dir: tempfile::TempDir,
    server: std::sync::Mutex<Option<Child>>,
}

impl PrivateMariadb {
    pub fn start() -> PrivateMariadb {
        let dir = tempfile::tempdir().expect("temp dir for MariaDB");
        let port = free_port();
        let data = dir.path().join("data");
        let config = format!(
            "[mariadbd]\nuser = root\ndatadir = {data}\nsocket = {dir}/mariadbd.sock\npid-file = {dir}/mariadbd.pid\n\
             bind-address = 127.0.0.1\nport = {port}\nlog-error = {dir}/server.log\nskip-name-resolve\n\
             character-set-server = utf8mb4\ncollation-server = utf8mb4_unicode_ci\n\
             [client]\nsocket = {dir}/mariadbd.sock\n",
            data = data.display(),
            dir = dir.path().display(),
        );
        std::fs::write(dir.path().join("my.cnf"), config).expect("write my.cnf");
        let output = Command::new(sbin_tool("mariadb-install-db"))
            .arg(format!("--defaults-file={}", dir.path().join("my.cnf").display()))
            .arg(format!("--datadir={}", data.display()))
            .arg("--skip-test-db")
            .output()
            .expect("run mariadb-install-db; install MariaDB with `scripts/services start mariadb`");
        assert!(output.status.success(), "mariadb-install-db failed: {}", String::from_utf8_lossy(&output.stderr));

        let server = PrivateMariadb { port, dir, server: std::sync::Mutex::new(None) };
        server.resume();
        let output = Command::new("mariadb")
            .arg(format!("--defaults-file={}", server.dir.path().join("my.cnf").display()))
            .args(["--user=root", "--execute"])
            .arg(
                "CREATE DATABASE magnetar CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; \
                 CREATE USER 'magnetar'@'127.0.0.1' IDENTIFIED BY 'magnetar'; \
                 GRANT ALL PRIVILEGES ON magnetar.* TO 'magnetar'@'127.0.0.1';",
            )
            .output()
            .expect("run mariadb");
        assert!(output.status.success(), "creating the test user failed: {}", String::from_utf8_lossy(&output.stderr));
        server
    }

    pub fn url(&self) -> String {
        format!("mysql://magnetar:magnetar@127.0.0.1:{}/magnetar", self.port)
    }

    /// Starts the server on its port and data folder, and waits until it accepts connections.
    pub fn resume(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stdout.log"))
            .expect("open the MariaDB output log");
        let child = Command::new(sbin_tool("mariadbd"))
            .arg(format!("--defaults-file={}", self.dir.path().join("my.cnf").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start mariadbd; install MariaDB with `scripts/services start mariadb`");
        *self.server.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !port_open(self.port) {
            assert!(
                Instant::now() < deadline,
                "the private MariaDB did not open port {} within 60 s; see {}",
                self.port,
                self.dir.path().join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn stop(&self) {
        if let Some(mut child) = self.server.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Path of a server tool that Debian installs in /usr/sbin, which some environments leave
/// out of PATH.
fn sbin_tool(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() { sbin } else { PathBuf::from(name) }
}
