//! The authority's Redis restarted and failed over while refreshes and
//! revocations flow through Envoy (real Envoy, real authority, real
//! `redis-server`s of the test's own).
//!
//! - Restart (SIGKILL, then the same data directory, append-only file
//!   fsynced on every write): the authority's connection recovers by itself
//!   — each traffic stream succeeds again within [`RECOVERY`] of Redis being
//!   back, and nothing fails after that; the data survived, so it is the
//!   same store (no `store_changed` at the edge, a session from before still
//!   passes).
//! - Failover: the authority reaches Redis through a TCP proxy that the test
//!   switches to another server, with the old one killed. Table:
//!   - a replica promoted (`REPLICAOF NO ONE`) before the last bumps on the
//!     old primary: the same store, but behind the edge's cursor. The edge
//!     is refused its cursor (410) and re-snapshots; the bump the replica
//!     lost stays enforced (a cached minimum never goes backwards);
//!   - an empty server (a different store): the edge counts
//!     `tollgate.revocation.store_changed` and every older token is refused.
//!
//!   In both, a token revoked after the failover is refused within the
//!   revocation bound, and refreshes succeed again within [`RECOVERY`] and
//!   do not fail after.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use tollgate_e2e::authority::{remint, Authority, Pair, Settings};
use tollgate_e2e::callouts::{self, api, assert_no_crash, poll, Timing};
use tollgate_e2e::failover::{redis_command, replication_field, TcpProxy};
use tollgate_e2e::{http, tokens, Envoy, Request, Response};
use tollgate_test_support::redis::RedisServer;

/// How long after Redis is back (or the proxy switched) every stream must
/// succeed again: the authority's reconnect, generous for a loaded machine.
const RECOVERY: Duration = Duration::from_secs(8);
const REFRESH_HEADER: &str = "x-tollgate-refresh-token";
const CURSOR_REJECTED: &str = "tollgate_authority_feed_cursor_rejected_total";
const SNAPSHOTS: &str = "tollgate_authority_feed_answers_total{kind=\"snapshot\"}";

#[derive(Debug, Clone)]
enum Outcome {
    Ok,
    /// A 401 the stream expects now and then (a refresh token the store
    /// lost in a failover): not a failure of the service.
    Rejected,
    Failed(String),
}

#[derive(Debug, Clone)]
struct Event {
    at: Instant,
    stream: &'static str,
    outcome: Outcome,
}

type Log = Arc<Mutex<Vec<Event>>>;

fn record(log: &Log, stream: &'static str, outcome: Outcome) {
    log.lock().unwrap().push(Event { at: Instant::now(), stream, outcome });
}

/// A password grant for alice that may fail (the store is down).
fn try_login(a: &Authority) -> Result<Pair, String> {
    let r = a.post_form("/v1/token", &[("grant_type", "password"), ("username", "alice"), ("password", "alice-password")]);
    if r.status != 200 {
        return Err(format!("login {}: {}", r.status, r.text()));
    }
    let j = r.json();
    Ok(Pair {
        access_token: j["access_token"].as_str().unwrap_or_default().to_owned(),
        refresh_token: j["refresh_token"].as_str().unwrap_or_default().to_owned(),
    })
}

fn expired_copy(access_token: &str) -> String {
    let now = tokens::now();
    remint(access_token, now - 3600, now - 4500)
}

fn send(envoy: &Envoy, req: &Request) -> Result<Response, String> {
    http::send(envoy.listener, req).map_err(|e| e.to_string())
}

/// RFC 7009 through Envoy (`/v1/revoke` is routed to the authority): the
/// refresh token's family is revoked, i.e. `sid:` bumped.
fn revoke_through_edge(envoy: &Envoy, refresh_token: &str) -> Result<(), String> {
    let body = format!("token={}", tollgate::refresh::form_encode(refresh_token));
    let req = Request::post("/v1/revoke")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.as_bytes())
        .secret(refresh_token);
    match send(envoy, &req)? {
        r if r.status == 200 => Ok(()),
        r => Err(format!("revoke {}: {}", r.status, r.text())),
    }
}

fn revoked(r: &Result<Response, String>) -> bool {
    matches!(r, Ok(r) if r.status == 401 && r.json()["error_description"] == "token revoked")
}

/// Background traffic through Envoy until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    log: Log,
    handles: Vec<thread::JoinHandle<()>>,
}

impl Traffic {
    /// `revocations`: a second stream that logs in, revokes the session
    /// through the edge and waits (bounded) for the edge to refuse it.
    fn start(envoy: &Arc<Envoy>, authority: &Arc<Authority>, timing: Timing, revocations: bool) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let log: Log = Arc::default();
        let mut handles = Vec::new();
        {
            let (envoy, authority, stop, log) = (envoy.clone(), authority.clone(), stop.clone(), log.clone());
            // A chain of refreshes in header mode: each with an expired
            // copy of the last access token, so every one is a callout.
            handles.push(thread::spawn(move || {
                let mut pair: Option<Pair> = None;
                while !stop.load(Ordering::SeqCst) {
                    let Some(p) = pair.clone() else {
                        match try_login(&authority) {
                            Ok(p) => pair = Some(p),
                            Err(e) => record(&log, "refresh", Outcome::Failed(e)),
                        }
                        thread::sleep(Duration::from_millis(30));
                        continue;
                    };
                    let req = Request::get("/api/items")
                        .bearer(&expired_copy(&p.access_token))
                        .header(REFRESH_HEADER, &p.refresh_token)
                        .secret(&p.refresh_token);
                    match send(&envoy, &req) {
                        Ok(r) if r.status == 200 => {
                            let next = r.header("x-tollgate-access-token").zip(r.header("x-tollgate-refresh-token"));
                            match next {
                                Some((a, f)) => {
                                    pair = Some(Pair { access_token: a.to_owned(), refresh_token: f.to_owned() });
                                    record(&log, "refresh", Outcome::Ok);
                                }
                                None => record(&log, "refresh", Outcome::Failed(format!("200 without a pair: {r}"))),
                            }
                        }
                        Ok(r) if r.status == 401 => {
                            pair = None;
                            record(&log, "refresh", Outcome::Rejected);
                        }
                        Ok(r) => record(&log, "refresh", Outcome::Failed(format!("{} {}", r.status, r.text()))),
                        Err(e) => record(&log, "refresh", Outcome::Failed(e)),
                    }
                    thread::sleep(Duration::from_millis(30));
                }
            }));
        }
        if revocations {
            let (envoy, authority, stop, log) = (envoy.clone(), authority.clone(), stop.clone(), log.clone());
            handles.push(thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(30));
                    let p = match try_login(&authority) {
                        Ok(p) => p,
                        Err(e) => {
                            record(&log, "revocation", Outcome::Failed(e));
                            continue;
                        }
                    };
                    if let Err(e) = revoke_through_edge(&envoy, &p.refresh_token) {
                        record(&log, "revocation", Outcome::Failed(e));
                        continue;
                    }
                    let bound = timing.revocation_deadline();
                    let enforced = poll(bound, Duration::from_millis(20), || revoked(&send(&envoy, &api(&p.access_token))).then_some(()));
                    record(
                        &log,
                        "revocation",
                        match enforced {
                            Some(_) => Outcome::Ok,
                            None => Outcome::Failed(format!("a revoked session still passes the edge after {bound:?}")),
                        },
                    );
                }
            }));
        }
        Traffic { stop, log, handles }
    }

    /// Waits (bounded) until every stream has succeeded `n` times: the
    /// traffic is really flowing before anything breaks.
    fn flowing(&self, n: usize) {
        let streams = self.handles.len();
        let ok = poll(Duration::from_secs(30), Duration::from_millis(20), || {
            let log = self.log.lock().unwrap();
            let counts: std::collections::BTreeMap<&str, usize> = log.iter().filter(|e| matches!(e.outcome, Outcome::Ok)).fold(
                std::collections::BTreeMap::new(),
                |mut m, e| {
                    *m.entry(e.stream).or_default() += 1;
                    m
                },
            );
            (counts.len() == streams && counts.values().all(|c| *c >= n)).then_some(())
        });
        assert!(ok.is_some(), "the traffic never flowed: {:?}", self.log.lock().unwrap().last());
    }

    fn stop(self) -> Vec<Event> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.join().expect("traffic thread");
        }
        let log = self.log.lock().unwrap().clone();
        log
    }
}

/// Checks, for every stream, that it succeeded again within [`RECOVERY`]
/// of `back` and never failed after that; and that it had succeeded before
/// `broken` without failing. Returns what was wrong, and a summary.
fn recovery(events: &[Event], broken: Instant, back: Instant) -> (Vec<String>, String) {
    let mut wrong = Vec::new();
    let mut summary = Vec::new();
    let streams: std::collections::BTreeSet<&str> = events.iter().map(|e| e.stream).collect();
    for stream in streams {
        let mine: Vec<&Event> = events.iter().filter(|e| e.stream == stream).collect();
        let before: Vec<&&Event> = mine.iter().filter(|e| e.at < broken).collect();
        if !before.iter().any(|e| matches!(e.outcome, Outcome::Ok)) {
            wrong.push(format!("{stream}: no success before the failure (the test proves nothing)"));
        }
        for e in before.iter().filter(|e| matches!(e.outcome, Outcome::Failed(_))) {
            wrong.push(format!("{stream}: failed before anything broke: {:?}", e.outcome));
        }
        let first_ok = mine.iter().find(|e| e.at >= back && matches!(e.outcome, Outcome::Ok));
        let until = first_ok.map_or(Instant::now(), |e| e.at);
        let during = mine.iter().filter(|e| e.at >= broken && e.at < until && matches!(e.outcome, Outcome::Failed(_))).count();
        match first_ok {
            None => wrong.push(format!("{stream}: never succeeded again after the store was back; last: {:?}", mine.last().map(|e| &e.outcome))),
            Some(ok) => {
                let took = ok.at.duration_since(back);
                if took > RECOVERY {
                    wrong.push(format!("{stream}: succeeded again only {took:?} after the store was back (> {RECOVERY:?})"));
                }
                let after: Vec<String> = mine
                    .iter()
                    .filter(|e| e.at > ok.at)
                    .filter_map(|e| match &e.outcome {
                        Outcome::Failed(f) => Some(format!("at +{:?}: {}", e.at.duration_since(back), f.chars().take(200).collect::<String>())),
                        _ => None,
                    })
                    .collect();
                if !after.is_empty() {
                    wrong.push(format!("{stream}: failed after it had recovered: {after:?}"));
                }
                let oks = mine.iter().filter(|e| e.at > ok.at && matches!(e.outcome, Outcome::Ok)).count();
                summary.push(format!(
                    "{stream}: {} before, {during} failed until the first success {took:?} after the store was back, {oks} more after",
                    before.len()
                ));
            }
        }
    }
    (wrong, summary.join("; "))
}

fn edge(authority: &Authority) -> (Arc<Envoy>, Timing) {
    // The revocation set stays usable while the store is away (the feed
    // fails meanwhile): what is tested is recovery, not staleness.
    let doc = callouts::document(200, 60_000, 1000);
    let timing = Timing::of(&doc);
    let bob = authority.mint("bob", "read");
    (Arc::new(callouts::edge(&doc, authority.port(), &api(&bob), Duration::from_secs(15))), timing)
}

#[test]
fn a_restarted_redis_is_the_same_store_and_the_authority_recovers_under_traffic() {
    let mut redis = RedisServer::start();
    let authority = Arc::new(Authority::start_on_redis_url(&redis.url(), Settings::default()));
    let (envoy, timing) = edge(&authority);
    let held = try_login(&authority).expect("a session before the restart");
    assert_eq!(envoy.send(&api(&held.access_token)).status, 200);

    let traffic = Traffic::start(&envoy, &authority, timing, true);
    traffic.flowing(5);
    let broken = Instant::now();
    redis.restart();
    let back = Instant::now();
    thread::sleep(RECOVERY + Duration::from_secs(3));
    let events = traffic.stop();
    let (mut wrong, summary) = recovery(&events, broken, back);

    // The same data: the same store, nothing re-snapshotted as new, the
    // session from before still passes.
    let changed = envoy.stat("tollgate.revocation.store_changed");
    if changed != 0 {
        wrong.push(format!("the edge met a different store after a restart with the same data ({changed})"));
    }
    let r = envoy.send(&api(&held.access_token));
    if r.status != 200 {
        wrong.push(format!("a session from before the restart is refused: {r}"));
    }
    eprintln!("REPORT redis restart (down for {:?}): {summary}", back.duration_since(broken));
    assert!(wrong.is_empty(), "the authority did not recover from a Redis restart:\n{}\nauthority log:\n{}", wrong.join("\n"), tollgate_e2e::envoy::tail(&authority.log(), 20));
    assert_no_crash(&envoy.stop());
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A replica of the old primary, promoted before the last bumps.
    PromotedReplica,
    /// A server with no data: a different store.
    Empty,
}

fn fail_over(target: Target) {
    let primary = RedisServer::start();
    let standby = match target {
        Target::PromotedReplica => RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]),
        Target::Empty => RedisServer::start(),
    };
    let addr = |r: &RedisServer| std::net::SocketAddr::from(([127, 0, 0, 1], r.port));
    let proxy = TcpProxy::start(addr(&primary));
    let authority = Arc::new(Authority::start_on_redis_url(&format!("redis://127.0.0.1:{}/0", proxy.port), Settings::default()));
    let (envoy, timing) = edge(&authority);
    let name = format!("{target:?}");

    let early = try_login(&authority).expect("a session on the old primary");
    assert_eq!(envoy.send(&api(&early.access_token)).status, 200);
    let traffic = Traffic::start(&envoy, &authority, timing, false);
    traffic.flowing(5);

    if target == Target::PromotedReplica {
        // The replica has everything so far, then is promoted: it stops
        // following the primary.
        let synced = poll(Duration::from_secs(10), Duration::from_millis(20), || {
            let up = replication_field(standby.port, "master_link_status").as_deref() == Some("up");
            let theirs = replication_field(primary.port, "master_repl_offset");
            let mine = replication_field(standby.port, "slave_repl_offset");
            (up && theirs.is_some() && theirs == mine).then_some(())
        });
        assert!(synced.is_some(), "{name}: the replica never caught up");
        assert_eq!(redis_command(standby.port, &["REPLICAOF", "NO", "ONE"]), "OK");
    }
    // A bump only the old primary gets: the edge learns it, its cursor
    // moves past everything the replica has.
    let lost = try_login(&authority).expect("a session on the old primary");
    revoke_through_edge(&envoy, &lost.refresh_token).expect("revoke on the old primary");
    let enforced = poll(timing.revocation_deadline(), Duration::from_millis(20), || revoked(&send(&envoy, &api(&lost.access_token))).then_some(()));
    assert!(enforced.is_some(), "{name}: the bump on the old primary never reached the edge");
    let before = authority.metrics();
    let metric = |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0) as u64;
    let changed_before = envoy.stat("tollgate.revocation.store_changed");

    // Fail over: the old primary dies, the proxy points at the standby.
    let broken = Instant::now();
    drop(primary);
    proxy.switch(addr(&standby));
    let back = Instant::now();

    let mut wrong = Vec::new();
    // The edge re-synchronises from the new server.
    let resync_bound = RECOVERY + timing.recovery_bound();
    let resynced = poll(resync_bound, Duration::from_millis(50), || match target {
        Target::PromotedReplica => {
            let now = authority.metrics();
            (metric(&now, CURSOR_REJECTED) > metric(&before, CURSOR_REJECTED) && metric(&now, SNAPSHOTS) > metric(&before, SNAPSHOTS))
                .then_some(())
        }
        Target::Empty => (envoy.stat("tollgate.revocation.store_changed") > changed_before).then_some(()),
    });
    match (target, resynced) {
        (_, Some((_, took))) => eprintln!("REPORT failover [{name}]: the edge re-snapshotted {took:?} after the switch"),
        (Target::PromotedReplica, None) => wrong.push(format!(
            "the edge's cursor, ahead of the promoted replica, was not re-snapshotted (after a 410) within {resync_bound:?} (410s {} → {}, snapshots {} → {})",
            metric(&before, CURSOR_REJECTED),
            metric(&authority.metrics(), CURSOR_REJECTED),
            metric(&before, SNAPSHOTS),
            metric(&authority.metrics(), SNAPSHOTS)
        )),
        (Target::Empty, None) => wrong.push(format!("the edge never counted store_changed within {resync_bound:?}")),
    }
    let store_changed = envoy.stat("tollgate.revocation.store_changed") - changed_before;
    if target == Target::PromotedReplica && store_changed != 0 {
        wrong.push(format!("a promoted replica is the same store, yet store_changed grew by {store_changed}"));
    }
    // Let every worker load the re-synced set.
    thread::sleep(Duration::from_millis(timing.tick_ms) + callouts::CLIENT_SLACK);
    // The bump the replica never got stays in force at the edge.
    let r = send(&envoy, &api(&lost.access_token));
    if !revoked(&r) {
        wrong.push(format!("the session revoked on the old primary passes again after the failover: {r:?}"));
    }
    // The early session: alive on the promoted replica; revoked by the
    // empty store's floor.
    let r = send(&envoy, &api(&early.access_token));
    match target {
        Target::PromotedReplica if !matches!(&r, Ok(r) if r.status == 200) => {
            wrong.push(format!("a session the replica has is refused after the failover: {r:?}"))
        }
        Target::Empty if !revoked(&r) => wrong.push(format!("a token of the lost store passes: {r:?}")),
        _ => {}
    }
    // Revoked after the failover: refused within the bound.
    let late = poll(RECOVERY, Duration::from_millis(100), || try_login(&authority).ok());
    match late {
        None => wrong.push("no login within the recovery bound after the failover".into()),
        Some((late, _)) => {
            let r = send(&envoy, &api(&late.access_token));
            if !matches!(&r, Ok(r) if r.status == 200) {
                wrong.push(format!("a session of the new server is refused: {r:?}"));
            }
            match revoke_through_edge(&envoy, &late.refresh_token) {
                Err(e) => wrong.push(format!("revoke after the failover: {e}")),
                Ok(()) => {
                    let at = Instant::now();
                    let bound = timing.revocation_deadline();
                    let refused = poll(bound, Duration::from_millis(20), || revoked(&send(&envoy, &api(&late.access_token))).then_some(()));
                    match refused {
                        Some((_, took)) => eprintln!("REPORT failover [{name}]: revoked after the failover, refused {took:?} later"),
                        None => wrong.push(format!("a session revoked after the failover still passes {:?} later (bound {bound:?})", at.elapsed())),
                    }
                }
            }
        }
    }
    thread::sleep(Duration::from_secs(2));
    let events = traffic.stop();
    let (more, summary) = recovery(&events, broken, back);
    wrong.extend(more);
    eprintln!("REPORT failover [{name}]: {summary}; store_changed +{store_changed}");
    assert!(
        wrong.is_empty(),
        "failover to {name}:\n{}\nauthority log:\n{}",
        wrong.join("\n"),
        tollgate_e2e::envoy::tail(&authority.log(), 20)
    );
    assert_no_crash(&envoy.stop());
}

#[test]
fn failover_to_a_promoted_replica_behind_the_edges_cursor_re_snapshots_and_keeps_every_bump() {
    fail_over(Target::PromotedReplica);
}

#[test]
fn failover_to_an_empty_redis_is_a_new_store_and_revokes_every_older_token() {
    fail_over(Target::Empty);
}
