//! Test fixtures: both stores, a real `redis-server`, the real binary.
#![allow(dead_code)]

pub mod edge;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tollgate::token::{ClaimRules, KeySet, Verifier};
use tollgate_authority::config::Config;
use tollgate_authority::directory::Directory;
use tollgate_authority::keys::{KeyConfig, Keys};
use tollgate_authority::service::{Authority, Settings};
use tollgate_authority::store::redis::RedisStore;
use tollgate_authority::store::sqlite::SqliteStore;
use tollgate_authority::store::Store;

pub use tollgate_test_support::redis::RedisServer;

/// One store under test, reopenable (restart).
pub enum Fixture {
    Sqlite { dir: TempDir },
    Redis { server: RedisServer, prefix: String },
}

impl Fixture {
    pub fn sqlite() -> Fixture {
        Fixture::Sqlite { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn redis() -> Fixture {
        Fixture::Redis { server: RedisServer::start(), prefix: "{tollgate}:".into() }
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        match self {
            Fixture::Sqlite { dir } => Arc::new(SqliteStore::open(dir.path()).expect("sqlite store")),
            Fixture::Redis { server, prefix } => {
                Arc::new(RedisStore::connect(&server.url(), prefix, 0).await.expect("redis store"))
            }
        }
    }

    /// Another, empty store of the same kind.
    pub async fn open_other(&self) -> Arc<dyn Store> {
        match self {
            Fixture::Sqlite { dir } => {
                Arc::new(SqliteStore::open(&dir.path().join("other")).expect("sqlite store"))
            }
            Fixture::Redis { server, .. } => {
                Arc::new(RedisStore::connect(&server.url(), "{other}:", 0).await.expect("redis store"))
            }
        }
    }

    /// Simulates a restart of the store itself (Redis: SIGKILL + AOF replay).
    pub fn restart_store(&mut self) {
        if let Fixture::Redis { server, .. } = self {
            server.restart();
        }
    }

    /// Simulates a store that lost its newest version writes (failover to a
    /// lagging replica, restore from a backup): `key`'s minimum is gone and
    /// the version counter is set back to `counter`.
    pub async fn lose_version_writes(&self, key: &str, counter: u64) {
        match self {
            Fixture::Sqlite { dir } => {
                let c = rusqlite::Connection::open(dir.path().join("authority.sqlite3")).expect("open sqlite");
                c.execute("DELETE FROM versions WHERE key=?1", [key]).expect("delete");
                c.execute("UPDATE counters SET value=?1 WHERE name='ver_high_water'", [counter as i64]).expect("counter");
            }
            Fixture::Redis { server, prefix } => {
                let client = redis::Client::open(server.url()).expect("client");
                let mut c = client.get_multiplexed_async_connection().await.expect("connect");
                let _: () = redis::pipe()
                    .cmd("DEL").arg(format!("{prefix}v:{key}")).ignore()
                    .cmd("ZREM").arg(format!("{prefix}feed")).arg(key).ignore()
                    .cmd("SET").arg(format!("{prefix}vers")).arg(counter).ignore()
                    .query_async(&mut c)
                    .await
                    .expect("lose writes");
            }
        }
    }

    /// Makes the store look like one created before store floors: its
    /// floor is removed, its id kept.
    pub async fn drop_floor(&self) {
        match self {
            Fixture::Sqlite { dir } => {
                let c = rusqlite::Connection::open(dir.path().join("authority.sqlite3")).expect("open sqlite");
                assert_eq!(c.execute("DELETE FROM meta WHERE name='floor'", []).expect("delete"), 1, "the store had a floor");
            }
            Fixture::Redis { server, prefix } => {
                let removed: i64 = redis_cmd(&server.url(), redis::cmd("DEL").arg(format!("{prefix}meta:floor"))).await;
                assert_eq!(removed, 1, "the store had a floor");
            }
        }
    }

    /// Command-line store flags for the real binary.
    pub fn server_args(&self) -> Vec<String> {
        match self {
            Fixture::Sqlite { dir } => {
                vec!["--store".into(), "sqlite".into(), "--data-dir".into(), dir.path().display().to_string()]
            }
            Fixture::Redis { server, .. } => vec!["--store".into(), "redis".into(), "--redis-url".into(), server.url()],
        }
    }
}

/// Runs one command on the Redis at `url`.
pub async fn redis_cmd<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> T {
    let client = redis::Client::open(url).expect("client");
    let mut c = client.get_multiplexed_async_connection().await.expect("connect");
    cmd.query_async(&mut c).await.expect("redis command")
}

pub fn settings(grace_ms: u64) -> Settings {
    let mut s = Settings::from_config(&Config::default());
    s.refresh_grace_ms = grace_ms;
    s
}

pub fn authority(store: Arc<dyn Store>, settings: Settings) -> Arc<Authority> {
    let keys = Keys::load(&[KeyConfig::demo()]).expect("demo key");
    Arc::new(Authority::new(store, settings, keys, Directory::demo()))
}

/// The edge's view: the filter's own verifier over the demo key.
pub fn edge_verifier() -> Verifier {
    let keys = Keys::load(&[KeyConfig::demo()]).expect("demo key");
    Verifier {
        keys: KeySet::new(vec![keys.signing]).expect("key set"),
        rules: ClaimRules {
            issuer: tollgate_authority::config::DEFAULT_ISSUER.into(),
            audiences: vec![tollgate_authority::config::DEFAULT_AUDIENCE.into()],
            clock_skew: 0,
            allow_never_expiring: true,
        },
        allowed_typ: vec!["at+jwt".into()],
        max_token_bytes: 8192,
    }
}

/// Waits, bounded, until `cond` holds.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The edge credential every test server gets (`TOLLGATE_EDGE_CREDENTIAL`),
/// unless a test sets its own.
pub const EDGE_CREDENTIAL: &str = "authority-tests-edge-credential-0123456789";

/// The real `tollgate-authority serve`, on a free loopback port, with
/// [`EDGE_CREDENTIAL`]. Killed (SIGKILL) on drop.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    pub fn start(store_args: &[String], extra: &[&str]) -> Server {
        Server::start_with_env(store_args, extra, &[])
    }

    pub fn start_with_env(store_args: &[String], extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_full(store_args, extra, env, None)
    }

    /// Like [`Server::start_with_env`], with stderr (the log) written to `log`.
    pub fn start_full(store_args: &[String], extra: &[&str], env: &[(&str, &str)], log: Option<&Path>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate-authority"));
        cmd.args(store_args).arg("serve").args(["--listen", "127.0.0.1:0"]).args(extra);
        cmd.env("TOLLGATE_LOG", "warn").env_remove("TOLLGATE_CONFIG").env_remove("TOLLGATE_TRUSTED_PROXY_HOPS");
        cmd.env("TOLLGATE_EDGE_CREDENTIAL", EDGE_CREDENTIAL).env_remove("TOLLGATE_EDGE_CREDENTIAL_PREVIOUS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let stderr = match log {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("log file")),
            None => Stdio::inherit(),
        };
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().expect("spawn tollgate-authority");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("tollgate-authority did not report its address within 30 s");
            }
        };
        let base = line
            .strip_prefix("tollgate-authority listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        Server { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM: the graceful shutdown an orchestrator asks for.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits, bounded, for the process to exit; `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, no graceful shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn data_dir(f: &Fixture) -> Option<PathBuf> {
    match f {
        Fixture::Sqlite { dir } => Some(dir.path().to_path_buf()),
        _ => None,
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
