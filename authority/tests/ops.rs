//! What operators and orchestrators read: liveness and readiness probes,
//! the `healthcheck` subcommand, and the JSON request log, against the real
//! binary (and a real Redis that is stopped under it).

mod common;

use common::{Fixture, RedisServer, Server, EDGE_CREDENTIAL};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client")
}

async fn status(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// `tollgate-authority healthcheck` with `args` (and `env`): its exit
/// status and output.
fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tollgate-authority"));
    c.arg("healthcheck").args(args).env("TOLLGATE_LOG", "error").env_remove("TOLLGATE_CONFIG").env_remove("TOLLGATE_LISTEN");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run healthcheck");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A Redis outage makes the authority not ready (503 on /readyz and its
/// alias /healthz, healthcheck exits 1) while it stays live (/livez 200):
/// Kubernetes takes it out of the Service instead of restarting it.
#[tokio::test]
async fn redis_down_means_not_ready_but_live() {
    let (redis, server) = redis_authority();
    let http = http();
    let readyz = server.url("/readyz");
    for path in ["/livez", "/readyz", "/healthz"] {
        assert_eq!(status(&http, &server.url(path)).await, 200, "{path} with Redis up");
    }
    let body: Value = http.get(&readyz).send().await.expect("readyz").json().await.expect("json");
    assert_eq!((body["status"].as_str(), body["store"].as_str(), body["keys"].as_u64()), (Some("ok"), Some("redis"), Some(1)));
    let (ok, out) = healthcheck(&["--url", &readyz], &[]);
    assert!(ok, "healthcheck while ready: {out}");
    let port = server.base.rsplit(':').next().expect("port").to_owned();
    let (ok, out) = healthcheck(&[], &[("TOLLGATE_LISTEN", &format!("0.0.0.0:{port}"))]);
    assert!(ok, "healthcheck on the configured listen address (0.0.0.0 read as loopback): {out}");

    shutdown(redis.port);
    await_status(&http, &readyz, 503, Duration::from_secs(30)).await;
    assert_eq!(status(&http, &server.url("/healthz")).await, 503, "/healthz is readiness's alias");
    assert_eq!(status(&http, &server.url("/livez")).await, 200, "liveness does not depend on the store");
    let (ok, out) = healthcheck(&["--url", &readyz], &[]);
    assert!(!ok && out.contains("503"), "healthcheck while Redis is down: {out}");
}

/// After an outage of several seconds (longer than the first reconnect
/// attempts: redis 0.27 then waited a minute or two before the next), Redis
/// back on the same address and data: ready again within seconds, without a
/// restart, and a token grant (scripts on the shared connection) works.
#[tokio::test]
async fn ready_again_when_redis_returns() {
    let (mut redis, server) = redis_authority();
    let http = http();
    let readyz = server.url("/readyz");
    shutdown(redis.port);
    await_status(&http, &readyz, 503, Duration::from_secs(30)).await;
    // Keep it down while the readiness probe keeps asking (each probe can
    // start a reconnect round).
    let down_until = Instant::now() + OUTAGE;
    while Instant::now() < down_until {
        assert_eq!(status(&http, &readyz).await, 503, "not ready while Redis is down");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    redis.restart();
    // About 2 s expected; the margin is for a loaded machine.
    await_status(&http, &readyz, 200, Duration::from_secs(30)).await;
    let grant = http
        .post(server.url("/v1/token"))
        .form(&[("grant_type", "password"), ("username", "alice"), ("password", "alice-password")])
        .send()
        .await
        .expect("password grant");
    assert_eq!(grant.status(), 200, "a grant after the outage");
}

/// How long `ready_again_when_redis_returns` keeps Redis down.
const OUTAGE: Duration = Duration::from_secs(6);

fn redis_authority() -> (RedisServer, Server) {
    let redis = RedisServer::start();
    let args = vec!["--store".to_owned(), "redis".to_owned(), "--redis-url".to_owned(), redis.url()];
    let server = Server::start(&args, &[]);
    (redis, server)
}

async fn await_status(http: &reqwest::Client, url: &str, want: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = status(http, url).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{url} still {got}, not {want}, after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the Redis on `port` the way an outage looks to a client: the
/// server goes away (SHUTDOWN NOSAVE; the append-only file keeps the data).
fn shutdown(port: u16) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect redis");
    s.write_all(b"SHUTDOWN NOSAVE\r\n").expect("shutdown");
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.read(&mut [0u8; 64]);
}

/// healthcheck fails (exit 1) with a clear message when nothing listens,
/// and refuses URLs it cannot fetch.
#[test]
fn healthcheck_fails_without_a_server_and_on_bad_urls() {
    let port = tollgate_test_support::redis::free_port();
    let cases: &[(&str, &str)] = &[
        (&format!("http://127.0.0.1:{port}/readyz"), "connect"),
        ("https://127.0.0.1/readyz", "only http://"),
        ("http://127.0.0.1:notaport/readyz", "port"),
    ];
    for (url, says) in cases {
        let (ok, out) = healthcheck(&["--url", url, "--timeout-ms", "3000"], &[]);
        assert!(!ok && out.contains(says), "{url}: {out}");
    }
}

/// `TOLLGATE_LOG_FORMAT=json`: every stderr line is a JSON object, one
/// request line per request (method, path without the query, status,
/// latency; grant type and a hashed principal on the token endpoint), and
/// no password, token or refresh token anywhere in the log. No ANSI colour
/// (stderr is a file).
#[tokio::test]
async fn json_request_log_has_the_fields_and_no_secret() {
    let fixture = Fixture::sqlite();
    let dir = tempfile::tempdir().expect("dir");
    let log_path = dir.path().join("authority.log");
    let mut server = Server::start_full(
        &fixture.server_args(),
        &[],
        &[("TOLLGATE_LOG_FORMAT", "json"), ("TOLLGATE_LOG", "info")],
        Some(&log_path),
    );
    let http = http();
    let password = "alice-password";
    let r: Value = http
        .post(server.url("/v1/token"))
        .form(&[("grant_type", "password"), ("username", "alice"), ("password", password)])
        .send()
        .await
        .expect("password grant")
        .json()
        .await
        .expect("json");
    let (access, refresh) = (r["access_token"].as_str().expect("access"), r["refresh_token"].as_str().expect("refresh"));
    let wrong = "wrong-password-do-not-log";
    let refused = http
        .post(server.url("/v1/token"))
        .form(&[("grant_type", "password"), ("username", "alice"), ("password", wrong)])
        .send()
        .await
        .expect("refused grant");
    assert_eq!(refused.status(), 400);
    let rotated: Value = http
        .post(server.url("/v1/token?client_hint=query-secret-do-not-log"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .expect("refresh")
        .json()
        .await
        .expect("json");
    let successor = rotated["refresh_token"].as_str().expect("successor");
    let client = http
        .post(server.url("/v1/token"))
        .basic_auth("demo-client", Some("demo-client-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("client credentials");
    assert_eq!(client.status(), 200);
    assert_eq!(status(&http, &server.url("/livez")).await, 200);
    let m = http.get(server.url("/metrics")).bearer_auth(EDGE_CREDENTIAL).send().await.expect("metrics");
    assert_eq!(m.status(), 200);
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(20)).is_some(), "graceful exit");

    let log = std::fs::read_to_string(&log_path).expect("log");
    for secret in [password, wrong, access, refresh, successor, "demo-client-secret", EDGE_CREDENTIAL, "query-secret-do-not-log"] {
        assert!(!log.contains(secret), "the log contains {secret:?}:\n{log}");
    }
    assert!(!log.contains('\u{1b}'), "no ANSI escape when stderr is not a terminal");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = lines.iter().filter(|l| l["target"] == "tollgate_authority::request").collect();
    let sha = |s: &str| tollgate_authority::util::sha256_hex(s.as_bytes())[..12].to_owned();
    // (method, path, status, grant_type, principal_sha256)
    let want: &[(&str, &str, u64, Option<&str>, Option<String>)] = &[
        ("POST", "/v1/token", 200, Some("password"), Some(sha("alice"))),
        ("POST", "/v1/token", 400, Some("password"), Some(sha("alice"))),
        ("POST", "/v1/token", 200, Some("refresh_token"), None),
        ("POST", "/v1/token", 200, Some("client_credentials"), Some(sha("demo-client"))),
        ("GET", "/livez", 200, None, None),
        ("GET", "/metrics", 200, None, None),
    ];
    assert_eq!(requests.len(), want.len(), "one line per request:\n{log}");
    for (line, (method, path, code, grant, principal)) in requests.iter().zip(want) {
        let got = (
            line["method"].as_str(),
            line["path"].as_str(),
            line["status"].as_u64(),
            line["grant_type"].as_str(),
            line["principal_sha256"].as_str().map(str::to_owned),
        );
        assert_eq!(got, (Some(*method), Some(*path), Some(*code), *grant, principal.clone()), "{line}");
        assert!(line["latency_ms"].as_f64().is_some_and(|l| l >= 0.0), "latency: {line}");
        assert!(line["level"].is_string() && line["timestamp"].is_string(), "{line}");
        assert!(!line.to_string().contains("alice"), "the request line names the user only hashed: {line}");
    }
}

/// An unknown log format is refused with a message naming the variable.
#[test]
fn an_unknown_log_format_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate-authority"))
        .args(["keygen"])
        .env("TOLLGATE_LOG_FORMAT", "yaml")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("TOLLGATE_LOG_FORMAT=\"yaml\""), "{err}");
}
