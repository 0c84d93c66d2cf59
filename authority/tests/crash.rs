//! Crash: the real `tollgate-authority serve` is SIGKILLed while refresh
//! rotations and revocation bumps are in flight, then restarted on the same
//! store. On Redis, redis-server is also SIGKILLed (and restarted from its
//! append-only file) while that load flows through the running authority.
//!
//! What must hold, for both stores:
//! - at least one request was cut off by the kill (sent, never answered):
//!   the kill really hit writes in flight;
//! - every acknowledged rotation survived: after the restart the newest
//!   acknowledged refresh token of every chain is presented first and must be
//!   accepted (rotated, or — if the cut-off request had rotated it — replayed
//!   within the grace window); then the one before it is a reuse (its
//!   successor has rotated), which revokes the family, so the successor just
//!   received is refused too;
//! - every acknowledged bump is in force: `/v1/versions` and the feed
//!   snapshot show at least the acknowledged minimum.
//!
//! A SIGKILL leaves the page cache intact, so no kill can show a missing
//! fsync. What would is checked at the end of this file: each store reads its
//! durability settings back when it opens and refuses weaker ones
//! (SQLite: WAL + `synchronous=FULL`; Redis: `appendonly yes` +
//! `appendfsync always`), through the store and through the real binary.

mod common;

use common::{authority, settings, Fixture, RedisServer, Server};
use futures::future::join_all;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_authority::store::redis::RedisStore;
use tollgate_authority::store::sqlite::{check_durability, Durability, SqliteStore};
use tollgate_authority::store::StoreError;

const CHAINS: usize = 8;
const BUMPERS: usize = 4;
/// Long enough that the newest acknowledged token, if the cut-off request
/// had rotated it, is still replayed after the restart (not a reuse).
const GRACE_MS: u64 = 120_000;
/// Rotations every chain must have acknowledged before the kill (so each
/// has a newest token and an older one to present).
const MIN_ROTATIONS: usize = 3;
const LOAD_DEADLINE: Duration = Duration::from_secs(90);

/// What the load saw, shared by every loop.
#[derive(Default)]
struct Load {
    /// Set just before the SIGKILL: a request sent while it was clear was
    /// in flight at the kill if it got no answer.
    killed: AtomicBool,
    /// Rotations acknowledged, per chain.
    rotations: [AtomicUsize; CHAINS],
    bumps: AtomicUsize,
    /// Requests sent before the kill that never got an answer.
    cut_off: AtomicUsize,
    /// 5xx answers (the store unreachable while Redis restarts), retried.
    unavailable: AtomicUsize,
    /// Anything that must not happen while the authority runs.
    failures: std::sync::Mutex<Vec<String>>,
}

impl Load {
    fn fail(&self, what: String) {
        self.failures.lock().expect("failures").push(what);
    }

    fn min_rotations(&self) -> usize {
        self.rotations.iter().map(|r| r.load(SeqCst)).min().unwrap_or(0)
    }
}

enum Sent {
    Answer(StatusCode, Value),
    /// Sent before the kill, never answered.
    CutOff,
    /// Sent after the kill began.
    AfterKill,
}

async fn send(load: &Load, what: &str, req: RequestBuilder) -> Sent {
    let before_kill = !load.killed.load(SeqCst);
    let answer = match req.send().await {
        Ok(r) => {
            let status = r.status();
            r.json::<Value>().await.map(|b| (status, b))
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok((status, body)) => Sent::Answer(status, body),
        Err(_) if !before_kill => Sent::AfterKill,
        Err(_) if load.killed.load(SeqCst) => Sent::CutOff,
        Err(e) => {
            // The authority is alive: a dropped request is a failure.
            load.fail(format!("{what}: no answer while the authority ran: {e}"));
            Sent::AfterKill
        }
    }
}

/// Rotates one chain until the kill; returns every acknowledged refresh
/// token, oldest (the login's) first.
async fn chain(i: usize, http: Client, url: String, first: String, load: Arc<Load>) -> Vec<String> {
    let mut acked = vec![first];
    while !load.killed.load(SeqCst) {
        let current = acked.last().expect("one token").clone();
        let req = http.post(&url).form(&[("grant_type", "refresh_token"), ("refresh_token", &current)]);
        match send(&load, &format!("chain {i}"), req).await {
            Sent::Answer(StatusCode::OK, b) => match b["refresh_token"].as_str() {
                Some(next) => {
                    acked.push(next.to_owned());
                    load.rotations[i].fetch_add(1, SeqCst);
                }
                None => {
                    load.fail(format!("chain {i}: a refresh answer without a refresh token: {b}"));
                    break;
                }
            },
            Sent::Answer(s, _) if s.is_server_error() => {
                // The store is unreachable (Redis restarting): the same token
                // again; if its rotation did happen, the grace window replays it.
                load.unavailable.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Sent::Answer(s, b) => {
                load.fail(format!(
                    "chain {i}: the newest acknowledged refresh token (rotation #{}) was refused with {s} {b}: \
                     an acknowledged rotation was lost",
                    acked.len() - 1
                ));
                break;
            }
            Sent::CutOff => {
                load.cut_off.fetch_add(1, SeqCst);
                break;
            }
            Sent::AfterKill => break,
        }
    }
    acked
}

/// Bumps version keys until the kill; returns every acknowledged
/// `(key, min_ver)`.
async fn bumper(j: usize, http: Client, base: String, admin: String, load: Arc<Load>) -> Vec<(String, u64)> {
    let mut acked = Vec::new();
    let mut i = 0usize;
    while !load.killed.load(SeqCst) {
        let path = if i % 2 == 0 { format!("/v1/subjects/other{j}-{}/revoke", i % 5) } else { format!("/v1/sessions/x{j}-{}/revoke", i % 3) };
        let req = http.post(format!("{base}{path}")).bearer_auth(&admin);
        match send(&load, &format!("bumper {j}"), req).await {
            Sent::Answer(StatusCode::OK, b) => match (b["key"].as_str(), b["min_ver"].as_u64()) {
                (Some(key), Some(min)) => {
                    acked.push((key.to_owned(), min));
                    load.bumps.fetch_add(1, SeqCst);
                    i += 1;
                }
                _ => {
                    load.fail(format!("bumper {j}: a bump answer without key and min_ver: {b}"));
                    break;
                }
            },
            Sent::Answer(s, _) if s.is_server_error() => {
                load.unavailable.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Sent::Answer(s, b) => {
                load.fail(format!("bumper {j}: {path} answered {s} {b}"));
                break;
            }
            Sent::CutOff => {
                load.cut_off.fetch_add(1, SeqCst);
                break;
            }
            Sent::AfterKill => break,
        }
    }
    acked
}

async fn wait_for(what: &str, load: &Load, cond: impl Fn(&Load) -> bool) {
    let deadline = Instant::now() + LOAD_DEADLINE;
    while !cond(load) {
        let failures = load.failures.lock().expect("failures").clone();
        assert!(failures.is_empty(), "while waiting for {what}:\n  {}", failures.join("\n  "));
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn refresh(http: &Client, server: &Server, token: &str) -> (StatusCode, Value) {
    let r = http
        .post(server.url("/v1/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .expect("the restarted authority answers");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn crash_mid_writes(mut f: Fixture) {
    // Sessions and the admin credential come from the CLI side (in-process).
    let (firsts, admin) = {
        let auth = authority(f.open().await, settings(GRACE_MS));
        let mut firsts = Vec::new();
        for i in 0..CHAINS {
            let t = auth.login(&format!("chain{i}"), "read", None).await.expect("login");
            firsts.push(t.refresh_token.expect("rt"));
        }
        (firsts, auth.mint_for("root", "tollgate:admin", 3600, None).await.expect("admin token"))
    };
    let grace = GRACE_MS.to_string();
    let mut server = Server::start(&f.server_args(), &["--refresh-grace-ms", &grace]);
    let http = Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
    let load = Arc::new(Load::default());

    let chains: Vec<_> = firsts
        .into_iter()
        .enumerate()
        .map(|(i, first)| tokio::spawn(chain(i, http.clone(), server.url("/v1/token"), first, load.clone())))
        .collect();
    let bumpers: Vec<_> = (0..BUMPERS)
        .map(|j| tokio::spawn(bumper(j, http.clone(), server.base.clone(), admin.clone(), load.clone())))
        .collect();

    wait_for("every chain to rotate and bumps to be acknowledged", &load, |l| {
        l.min_rotations() >= MIN_ROTATIONS && l.bumps.load(SeqCst) >= 10
    })
    .await;

    if matches!(f, Fixture::Redis { .. }) {
        // SIGKILL redis-server under this load and restart it from its AOF;
        // the authority keeps running and must carry on on the same data.
        let (rotations, bumps) = (load.rotations.iter().map(|r| r.load(SeqCst)).collect::<Vec<_>>(), load.bumps.load(SeqCst));
        tokio::task::block_in_place(|| f.restart_store());
        wait_for("the load to flow again through the restarted redis-server", &load, |l| {
            l.rotations.iter().zip(&rotations).all(|(now, before)| now.load(SeqCst) >= before + 2)
                && l.bumps.load(SeqCst) >= bumps + 4
        })
        .await;
    }

    load.killed.store(true, SeqCst);
    server.kill(); // SIGKILL with requests in flight
    let chains: Vec<Vec<String>> = join_all(chains).await.into_iter().map(|r| r.expect("chain task")).collect();
    let acked_bumps: Vec<(String, u64)> = join_all(bumpers).await.into_iter().flat_map(|r| r.expect("bump task")).collect();

    let failures = load.failures.lock().expect("failures").clone();
    assert!(failures.is_empty(), "before the kill:\n  {}", failures.join("\n  "));
    let cut_off = load.cut_off.load(SeqCst);
    assert!(cut_off >= 1, "no request was in flight at the SIGKILL: the kill hit no write");
    assert!(!acked_bumps.is_empty(), "no bump was acknowledged before the kill");
    eprintln!(
        "crash: {} rotations and {} bumps acknowledged, {cut_off} requests cut off by the SIGKILL, {} 5xx retried",
        chains.iter().map(|c| c.len() - 1).sum::<usize>(),
        acked_bumps.len(),
        load.unavailable.load(SeqCst)
    );

    // Redis: SIGKILL the (now idle) server once more and replay its AOF.
    f.restart_store();
    let server = Server::start(&f.server_args(), &["--refresh-grace-ms", &grace]);

    let mut lost = Vec::new();
    for (i, acked) in chains.iter().enumerate() {
        let n = acked.len() - 1;
        assert!(n >= MIN_ROTATIONS, "chain {i}: only {n} rotations acknowledged");
        // The newest acknowledged token first: its rotation was answered, so
        // the token must exist; it rotates now, or (if the cut-off request
        // rotated it) is replayed within the grace window.
        let (status, b) = refresh(&http, &server, &acked[n]).await;
        if status != StatusCode::OK {
            lost.push(format!("chain {i}: newest acknowledged token (rotation #{n}) refused after the restart: {status} {b}"));
            continue;
        }
        let successor = b["refresh_token"].as_str().expect("a successor").to_owned();
        // The one before: rotated, and its successor has rotated since, so
        // it is a reuse (not a replay), which revokes the whole family...
        let (status, b) = refresh(&http, &server, &acked[n - 1]).await;
        if (status, b["error"].as_str()) != (StatusCode::BAD_REQUEST, Some("invalid_grant")) {
            lost.push(format!("chain {i}: rotated token #{} answered {status} {b}, not a reuse", n - 1));
        }
        // ...so the successor just handed out, and the chain's first token,
        // are refused too.
        for (what, t) in [("the successor handed out after the restart", successor.as_str()), ("the login's token", acked[0].as_str())] {
            let (status, b) = refresh(&http, &server, t).await;
            if (status, b["error"].as_str()) != (StatusCode::BAD_REQUEST, Some("invalid_grant")) {
                lost.push(format!("chain {i}: {what} answered {status} {b} after a reuse revoked the family"));
            }
        }
    }
    assert!(lost.is_empty(), "after the restart:\n  {}", lost.join("\n  "));

    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    for (key, min) in acked_bumps {
        let e = newest.entry(key).or_default();
        *e = (*e).max(min);
    }
    let snapshot: Value = http
        .get(server.url("/v1/revocations"))
        .bearer_auth(common::EDGE_CREDENTIAL)
        .send()
        .await
        .expect("feed")
        .json()
        .await
        .expect("json");
    for (key, min) in &newest {
        let v: Value = http
            .get(server.url(&format!("/v1/versions?key={key}")))
            .bearer_auth(common::EDGE_CREDENTIAL)
            .send()
            .await
            .expect("versions")
            .json()
            .await
            .expect("json");
        let live = v["versions"][key.as_str()].as_u64();
        assert!(live >= Some(*min), "acknowledged bump {key}={min} lost (now {live:?})");
        let in_feed = snapshot["entries"].as_array().into_iter().flatten().any(|e| e["key"] == key.as_str() && e["min_ver"].as_u64() >= Some(*min));
        assert!(in_feed, "acknowledged bump {key}={min} missing from the feed snapshot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_crash_with_writes_in_flight() {
    crash_mid_writes(Fixture::sqlite()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_crash_with_writes_in_flight_and_redis_killed_under_load() {
    crash_mid_writes(Fixture::redis()).await
}

// ───────────────────── the durability a kill cannot show ─────────────────────

/// The store's own connection runs with the settings that make an answered
/// write durable: read back from SQLite, not assumed from what was set.
#[tokio::test]
async fn sqlite_store_runs_wal_with_synchronous_full() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("store");
    assert_eq!(store.durability().expect("read back"), Durability { journal_mode: "wal".into(), synchronous: 2 });
}

/// The check the store runs when it opens, on real SQLite connections set
/// weaker: each is refused with the setting named.
#[test]
fn sqlite_refuses_weaker_durability() {
    let cases: &[(&str, Result<(), &str>)] = &[
        ("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", Ok(())),
        ("PRAGMA journal_mode=WAL; PRAGMA synchronous=EXTRA;", Ok(())),
        ("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", Err("synchronous is NORMAL")),
        ("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;", Err("synchronous is OFF")),
        ("PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;", Err("journal_mode is delete")),
        ("PRAGMA journal_mode=TRUNCATE; PRAGMA synchronous=FULL;", Err("journal_mode is truncate")),
        ("PRAGMA journal_mode=MEMORY; PRAGMA synchronous=FULL;", Err("journal_mode is memory")),
    ];
    for (setup, want) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = rusqlite::Connection::open(dir.path().join("db.sqlite3")).expect("open");
        conn.execute_batch(setup).expect("pragmas");
        match (check_durability(&conn), want) {
            (Ok(()), Ok(())) => {}
            (Err(StoreError::Durability(m)), Err(part)) => assert!(m.contains(part), "{setup}: {m}"),
            (got, want) => panic!("{setup}: got {got:?}, want {want:?}"),
        }
    }
}

/// `redis-server` arguments and the setting the refusal must name.
const REDIS_CASES: &[(&[&str], Option<&str>)] = &[
    (&[], None),
    (&["--appendfsync", "everysec"], Some("appendfsync is everysec")),
    (&["--appendfsync", "no"], Some("appendfsync is no")),
    (&["--appendonly", "no"], Some("appendonly is no")),
    (&["--rename-command", "CONFIG", ""], Some("cannot read redis appendonly")),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_refuses_weaker_persistence() {
    for (args, want) in REDIS_CASES {
        let server = RedisServer::start_with(args);
        match (RedisStore::connect(&server.url(), "{tollgate}:", 0).await, want) {
            (Ok(_), None) => {}
            (Err(StoreError::Durability(m)), Some(part)) => assert!(m.contains(part), "{args:?}: {m}"),
            (got, want) => panic!("{args:?}: got {:?}, want {want:?}", got.map(|_| "connected")),
        }
    }
}

/// The real binary refuses to start on such a Redis, and says why.
#[test]
fn authority_refuses_to_start_on_weaker_redis_persistence() {
    for (args, want) in REDIS_CASES {
        let server = RedisServer::start_with(args);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-authority"))
            .args(["--store", "redis", "--redis-url", &server.url(), "serve", "--listen", "127.0.0.1:0"])
            .env("TOLLGATE_LOG", "warn")
            .env("TOLLGATE_EDGE_CREDENTIAL", common::EDGE_CREDENTIAL)
            .env_remove("TOLLGATE_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn tollgate-authority");
        match want {
            None => {
                // Starts: its first line is the listening address.
                use std::io::BufRead;
                let mut line = String::new();
                std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
                assert!(line.starts_with("tollgate-authority listening on "), "{args:?}: {line}");
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(part) => {
                let deadline = Instant::now() + Duration::from_secs(30);
                let status = loop {
                    if let Some(s) = child.try_wait().expect("wait") {
                        break s;
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        panic!("{args:?}: the authority started on a Redis it must refuse");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                let out = child.wait_with_output().expect("output");
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(!status.success(), "{args:?}: exit {status}");
                assert!(stderr.contains(part), "{args:?}: stderr does not name the setting: {stderr}");
            }
        }
    }
}
