//! A `redis-server` of the test's own: a free loopback port, a temp dir, the
//! append-only file fsynced on every write (as in production), killed on
//! drop and when the test process dies. Needs Debian's `redis-server`
//! (`make test` installs it); a missing binary fails the test.

use crate::process::spawn_tied;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const REDIS_SERVER: &str = "redis-server";

/// A `redis-server` of our own on a free loopback port, in a temp dir, with
/// the append-only file fsynced on every write. Killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
    /// Extra `redis-server` arguments (e.g. memory settings).
    extra: Vec<String>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut dir = tempfile::tempdir().expect("temp dir");
        for _attempt in 0..5 {
            let port = free_port();
            let extra = extra.iter().map(|s| s.to_string()).collect();
            let mut server = RedisServer { child: None, port, dir, extra };
            server.spawn();
            if server.wait_ready() {
                return server;
            }
            server.kill();
            dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("temp dir"));
        }
        panic!("redis-server did not come up on a loopback port after 5 attempts");
    }

    fn spawn(&mut self) {
        let mut command = Command::new(REDIS_SERVER);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"])
            .args(["--protected-mode", "yes", "--loglevel", "warning"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_tied(command).unwrap_or_else(|e| {
                panic!(
                    "cannot start {REDIS_SERVER} ({e}). The Redis conformance tests need Debian's \
                     redis-server package: apt-get install -y redis-server (make test installs it)"
                )
            });
        self.child = Some(child);
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return false;
                }
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGKILLs the server and starts it again on the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        assert!(self.wait_ready(), "redis-server did not come back after restart");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

