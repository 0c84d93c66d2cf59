//! The real `tollgate-authority` (built by `make bins`, or
//! `$TOLLGATE_AUTHORITY`) on either store, driven over its HTTP API
//! (docs/authority-api.md) and its CLI.
//!
//! Each [`Authority`] owns its data: a temp dir (the SQLite store, logs) and,
//! on Redis, its own `redis-server`. It can be killed (SIGKILL) and restarted
//! on the same port and the same data mid-test. The child is tied to the test
//! process like Envoy (see [`crate::envoy::spawn_tied`]).

use crate::envoy::{repo_root, spawn_tied};
use crate::http::{self, Request, Response};
use tollgate_test_support::redis::RedisServer;
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

/// How long the authority may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The environment variable the authority (and Envoy, for the filter's
/// `authority.credential_env`) reads the edge credential from.
pub const EDGE_CREDENTIAL_ENV: &str = "TOLLGATE_EDGE_CREDENTIAL";
/// The edge credential of every end-to-end run: the authority requires it
/// on `/v1/revocations`, `/v1/versions` and `/metrics`, and every Envoy the
/// harness starts has it in its environment (see
/// [`crate::envoy::Options::edge_credential`]).
pub const EDGE_CREDENTIAL: &str = "e2e-edge-credential-not-for-production-000001";

/// The authority's two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Redis,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Redis => "redis",
        }
    }
}

/// `serve` flags beyond the store.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub access_ttl_secs: Option<u64>,
    pub refresh_grace_ms: Option<u64>,
}

/// The authority binary. Panics (the test fails) when it is missing.
pub fn binary() -> PathBuf {
    let path = match std::env::var_os("TOLLGATE_AUTHORITY") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("target/debug/tollgate-authority"),
    };
    assert!(
        path.is_file(),
        "tollgate-authority not found at {} (run `make bins` or `make test`, or set TOLLGATE_AUTHORITY)",
        path.display()
    );
    path
}

/// A token-endpoint answer.
#[derive(Debug, Clone)]
pub struct Pair {
    pub access_token: String,
    pub refresh_token: String,
}

/// One bump answer (`{"key","min_ver","expires_at","seq"}`).
#[derive(Debug, Clone)]
pub struct Bump {
    pub key: String,
    pub min_ver: u64,
    pub expires_at: Option<u64>,
}

pub struct Authority {
    pub store: Store,
    pub addr: SocketAddr,
    settings: Settings,
    child: Mutex<Option<Child>>,
    dir: tempfile::TempDir,
    redis: Option<RedisServer>,
    /// A sibling's: the Redis of the instance it shares a store with.
    shared_redis_url: Option<String>,
    admin: Mutex<Option<String>>,
}

impl Authority {
    /// Starts an authority on a fresh store of kind `store`.
    pub fn start(store: Store, settings: Settings) -> Authority {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-e2e-authority-")
            .tempdir()
            .expect("temp dir");
        let redis = (store == Store::Redis).then(RedisServer::start);
        let mut auth = Authority {
            store,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings,
            child: Mutex::new(None),
            dir,
            redis,
            shared_redis_url: None,
            admin: Mutex::new(None),
        };
        let (child, addr) = auth.spawn(0);
        auth.addr = addr;
        *auth.child.lock().unwrap() = Some(child);
        auth
    }

    /// A second authority instance on this one's Redis store (several
    /// instances behind a load balancer share one Redis).
    pub fn sibling(&self) -> Authority {
        let url = self.redis.as_ref().map(RedisServer::url).expect("siblings share a Redis store");
        let dir = tempfile::Builder::new().prefix("tollgate-e2e-authority-").tempdir().expect("temp dir");
        let mut auth = Authority {
            store: self.store,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings: self.settings.clone(),
            child: Mutex::new(None),
            dir,
            redis: None,
            shared_redis_url: Some(url),
            admin: Mutex::new(None),
        };
        let (child, addr) = auth.spawn(0);
        auth.addr = addr;
        *auth.child.lock().unwrap() = Some(child);
        auth
    }

    /// An authority on the Redis at `url`, which the test owns (to restart
    /// it, fail it over, or put a proxy in front of it).
    pub fn start_on_redis_url(url: &str, settings: Settings) -> Authority {
        let dir = tempfile::Builder::new().prefix("tollgate-e2e-authority-").tempdir().expect("temp dir");
        let mut auth = Authority {
            store: Store::Redis,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings,
            child: Mutex::new(None),
            dir,
            redis: None,
            shared_redis_url: Some(url.to_owned()),
            admin: Mutex::new(None),
        };
        let (child, addr) = auth.spawn(0);
        auth.addr = addr;
        *auth.child.lock().unwrap() = Some(child);
        auth
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn store_args(&self) -> Vec<String> {
        let mut args = vec!["--store".to_owned(), self.store.name().to_owned()];
        args.push("--data-dir".into());
        args.push(self.dir.path().join("data").display().to_string());
        if let Some(url) = self.redis.as_ref().map(RedisServer::url).or_else(|| self.shared_redis_url.clone()) {
            args.push("--redis-url".into());
            args.push(url);
        }
        args
    }

    fn command(&self) -> Command {
        let mut c = Command::new(binary());
        c.args(self.store_args()).current_dir(self.dir.path());
        for var in [
            "TOLLGATE_CONFIG",
            "TOLLGATE_LISTEN",
            "TOLLGATE_STORE",
            "TOLLGATE_DATA_DIR",
            "TOLLGATE_REDIS_URL",
            "TOLLGATE_REDIS_PREFIX",
            "TOLLGATE_ACCESS_TTL_SECS",
            "TOLLGATE_REFRESH_TTL_SECS",
            "TOLLGATE_REFRESH_GRACE_MS",
            "TOLLGATE_USERS_FILE",
            "TOLLGATE_SIGNING_KID",
            "TOLLGATE_ISSUER",
            "TOLLGATE_AUDIENCE",
            "TOLLGATE_TRUSTED_PROXY_HOPS",
            "TOLLGATE_EDGE_CREDENTIAL_PREVIOUS",
        ] {
            c.env_remove(var);
        }
        c.env("TOLLGATE_LOG", "warn");
        c.env(EDGE_CREDENTIAL_ENV, EDGE_CREDENTIAL);
        c
    }

    /// Runs `serve` on `port` (0: any) and waits for its address line.
    fn spawn(&self, port: u16) -> (Child, SocketAddr) {
        let mut c = self.command();
        c.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")]);
        if let Some(t) = self.settings.access_ttl_secs {
            c.args(["--access-ttl-secs", &t.to_string()]);
        }
        if let Some(g) = self.settings.refresh_grace_ms {
            c.args(["--refresh-grace-ms", &g.to_string()]);
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("authority.log"))
            .expect("authority.log");
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        let mut child = spawn_tied(c).unwrap_or_else(|e| panic!("cannot run tollgate-authority: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tollgate-authority did not print its address ({other:?}); log:\n{}",
                    self.log()
                );
            }
        };
        let addr = line
            .rsplit("http://")
            .next()
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from tollgate-authority: {line:?}"));
        (child, addr)
    }

    /// SIGKILLs the service (the store keeps its data).
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the service again on the same port and the same store.
    pub fn restart(&self) {
        self.kill();
        let (child, addr) = self.spawn(self.port());
        assert_eq!(addr, self.addr, "restarted on another address");
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    }

    /// Loses the store: kills the service, empties its store (the embedded
    /// store's directory removed; the Redis flushed) and starts it again on
    /// the same port with the same key and settings. The new, empty store
    /// has a new id and a floor above every version handed out before, so
    /// every token issued until now is revoked.
    pub fn restart_on_a_new_store(&self) {
        self.kill();
        match &self.redis {
            None => {
                let data = self.dir.path().join("data");
                if data.exists() {
                    fs::remove_dir_all(&data).unwrap_or_else(|e| panic!("remove {}: {e}", data.display()));
                }
            }
            Some(r) => flush_redis(r.port),
        }
        *self.admin.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let (child, addr) = self.spawn(self.port());
        assert_eq!(addr, self.addr, "restarted on another address");
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    }

    /// What the service logged (stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("authority.log")).unwrap_or_default()
    }

    // ---- HTTP -----------------------------------------------------------

    pub fn send(&self, req: &Request) -> Response {
        http::send(self.addr, req).unwrap_or_else(|e| panic!("authority {req}: {e}"))
    }

    pub fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Response {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", tollgate::refresh::form_encode(v)))
            .collect();
        self.send(
            &Request::post(path)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body.join("&").as_bytes()),
        )
    }

    /// A password grant (the demo users: `alice`, `admin`): a new session.
    pub fn login(&self, user: &str, password: &str) -> Pair {
        let r = self.post_form(
            "/v1/token",
            &[("grant_type", "password"), ("username", user), ("password", password)],
        );
        assert_eq!(r.status, 200, "password grant for {user}: {r}");
        pair(&r)
    }

    /// `alice`'s password grant: a new session of alice.
    pub fn login_alice(&self) -> Pair {
        self.login("alice", "alice-password")
    }

    /// The token endpoint's answer to `grant_type=refresh_token`.
    pub fn refresh(&self, refresh_token: &str) -> Response {
        self.post_form(
            "/v1/token",
            &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)],
        )
    }

    /// An admin access token (the demo `admin` user), obtained once per
    /// store.
    pub fn admin_token(&self) -> String {
        let mut admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        admin
            .get_or_insert_with(|| self.login("admin", "admin-password").access_token)
            .clone()
    }

    fn admin_post(&self, path: &str, json: Option<&serde_json::Value>) -> Response {
        let mut req = Request::post(path).bearer(&self.admin_token());
        if let Some(j) = json {
            req = req
                .header("Content-Type", "application/json")
                .body(j.to_string().as_bytes());
        }
        self.send(&req)
    }

    pub fn revoke_subject(&self, sub: &str) -> Bump {
        let r = self.admin_post(&format!("/v1/subjects/{sub}/revoke"), None);
        assert_eq!(r.status, 200, "revoke subject {sub}: {r}");
        bump(&r)
    }

    pub fn revoke_session(&self, sid: &str) -> Bump {
        let r = self.admin_post(&format!("/v1/sessions/{sid}/revoke"), None);
        assert_eq!(r.status, 200, "revoke session {sid}: {r}");
        bump(&r)
    }

    /// `POST /v1/api-tokens` for `sub`: `(id, token)`. `days: -1` = never expires.
    pub fn create_api_token(&self, sub: &str, scope: &str, days: i64) -> (String, String) {
        let body = serde_json::json!({"sub": sub, "scope": scope, "hosts": ["*"], "days": days, "name": "e2e"});
        let r = self.admin_post("/v1/api-tokens", Some(&body));
        assert_eq!(r.status, 201, "create API token: {r}");
        let j = r.json();
        (
            j["id"].as_str().expect("id").to_owned(),
            j["token"].as_str().expect("token").to_owned(),
        )
    }

    pub fn revoke_api_token(&self, id: &str) -> Bump {
        let r = self.admin_post(&format!("/v1/api-tokens/{id}/revoke"), None);
        assert_eq!(r.status, 200, "revoke API token {id}: {r}");
        bump(&r)
    }

    /// `GET /v1/revocations` (a snapshot), as an edge asks for it.
    pub fn feed(&self) -> serde_json::Value {
        let r = self.send(&Request::get("/v1/revocations").bearer(EDGE_CREDENTIAL));
        assert_eq!(r.status, 200, "/v1/revocations: {r}");
        r.json()
    }

    /// `/metrics` (with the edge credential), as `name{labels}` → value.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let r = self.send(&Request::get("/metrics").bearer(EDGE_CREDENTIAL));
        assert_eq!(r.status, 200, "/metrics: {r}");
        r.text()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(n, v)| Some((n.to_owned(), v.trim().parse().ok()?)))
            .collect()
    }

    /// One metric (0 when absent), e.g.
    /// `tollgate_authority_refresh_total{outcome="rotated"}`.
    pub fn metric(&self, name: &str) -> u64 {
        self.metrics().get(name).copied().unwrap_or(0.0) as u64
    }

    // ---- CLI ------------------------------------------------------------

    /// `tollgate-authority mint`: an access token for any subject, at its
    /// current version, from the same store.
    pub fn mint(&self, sub: &str, scope: &str) -> String {
        let out = self
            .command()
            .args(["mint", "--sub", sub, "--scope", scope, "--ttl-secs", "3600"])
            .stdin(Stdio::null())
            .output()
            .expect("run tollgate-authority mint");
        assert!(
            out.status.success(),
            "mint failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned()
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() || std::env::var_os("TOLLGATE_E2E_KEEP").is_some() {
            eprintln!("authority log:\n{}", crate::envoy::tail(&self.log(), 30));
        }
    }
}

/// `FLUSHALL` on the Redis at `port`, in plain RESP.
fn flush_redis(port: u16) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to redis-server");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(b"FLUSHALL\r\n").expect("FLUSHALL");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).expect("FLUSHALL answer");
    assert!(buf[..n].starts_with(b"+OK"), "FLUSHALL: {:?}", String::from_utf8_lossy(&buf[..n]));
}

fn pair(r: &Response) -> Pair {
    let j = r.json();
    Pair {
        access_token: j["access_token"].as_str().expect("access_token").to_owned(),
        refresh_token: j["refresh_token"].as_str().expect("refresh_token").to_owned(),
    }
}

fn bump(r: &Response) -> Bump {
    let j = r.json();
    Bump {
        key: j["key"].as_str().expect("key").to_owned(),
        min_ver: j["min_ver"].as_u64().expect("min_ver"),
        expires_at: j["expires_at"].as_u64(),
    }
}

/// The claims of `token`, decoded without verification (test inspection).
pub fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWS has a payload");
    let bytes = tollgate::token::b64::decode(payload.as_bytes()).expect("payload is base64url");
    serde_json::from_slice(&bytes).expect("payload is JSON")
}

/// A copy of `access_token` (same subject, session, version and scope),
/// minted with the demo key and the given `exp` and `iat`: the browser's
/// expired or nearly expired copy of a real login's token.
pub fn remint(access_token: &str, exp: u64, iat: u64) -> String {
    let c = claims_of(access_token);
    crate::tokens::mint(&tollgate::token::Claims {
        sub: c["sub"].as_str().expect("sub").into(),
        sid: c["sid"].as_str().map(Into::into),
        ver: c["ver"].as_u64().expect("ver"),
        scope: c["scope"].as_str().map(Into::into),
        exp: Some(exp),
        iat: Some(iat),
        ..crate::tokens::claims("x")
    })
}
