//! `fresh` rules end to end (docs/configuration.md, rules: `fresh`,
//! `max_staleness_ms`): a route that tolerates no staleness checks the
//! token's versions live at the authority (`GET /v1/versions`) instead of
//! trusting the synced set, and concurrent requests for the same keys share
//! one callout.
//!
//! The edge reaches the real authority through the fault proxy, which can
//! break one path (stall the revocation feed while live checks pass, or
//! slow the live checks down) and counts requests per path. Connections are
//! pinned to each of Envoy's workers (`tollgate_e2e::workers`), so "on every
//! worker" is shown, not hoped for.

use std::thread;
use std::time::{Duration, Instant};
use tollgate_e2e::authority::{claims_of, Authority, Settings, Store};
use tollgate_e2e::callouts::{self, api, assert_denied, assert_no_crash, poll, Timing};
use tollgate_e2e::faults::{Fault, FaultProxy};
use tollgate_e2e::workers::{self, measure_on_every_worker, FEED_PATH};
use tollgate_e2e::Request;

const VERSIONS_PATH: &str = "/v1/versions";

/// The demo document's `fresh` rule (named `admin`, prefix `/admin`).
fn admin_rule(doc: &mut serde_json::Value) -> &mut serde_json::Value {
    doc["rules"]
        .as_array_mut()
        .and_then(|rules| rules.iter_mut().find(|r| r["name"] == "admin"))
        .expect("the demo document has the `admin` rule")
}

/// A revoked admin token: the fresh route refuses it at once, from the live
/// answer, while the feed is stalled; a route that is not fresh still
/// accepts it until the feed catches up, and then refuses it too. On every
/// worker.
#[test]
fn a_revoked_admin_token_is_refused_on_a_fresh_route_before_the_feed_catches_up() {
    // A staleness allowance far above the test, so a stalled feed is not a
    // stale set (503): the non-fresh route decides on the old set.
    let mut doc = callouts::document(500, 60_000, 1000);
    let rule = admin_rule(&mut doc);
    assert_eq!(rule["fresh"], true, "the demo's admin rule is fresh: {rule}");
    let reuse = Duration::from_millis(rule["max_staleness_ms"].as_u64().unwrap_or(0));
    let timing = Timing::of(&doc);
    let authority = Authority::start(Store::Sqlite, Settings::default());
    // The harness's own admin session (it makes the revocation): another
    // session than the one revoked below.
    authority.admin_token();
    let proxy = FaultProxy::start(authority.addr);
    let bob = authority.mint("bob", "read");
    let envoy = workers::pinnable_edge(&doc, proxy.port, &api(&bob), workers::revocation_bound(&timing) * 8);
    let mut pinned = workers::pin(&envoy, 1);

    let operator = authority.login("admin", "admin-password");
    let sid = claims_of(&operator.access_token)["sid"].as_str().expect("sid").to_owned();
    let admin_route = Request::get("/admin/users").bearer(&operator.access_token);
    let api_route = api(&operator.access_token);
    for conn in pinned.iter_mut() {
        for req in [&admin_route, &api_route] {
            let r = conn.send(req);
            assert_eq!(r.status, 200, "worker {} before the revocation: {r}", conn.worker);
        }
    }

    // Stall the feed: from the next poll on, every poll is held past its
    // timeout. Wait until one is held, so no poll that could carry the
    // revocation is still on its way.
    proxy.set_for(FEED_PATH, Some(Fault::Delay(Duration::from_secs(30))));
    let polls = proxy.count(FEED_PATH);
    let held = poll(Duration::from_millis(3 * timing.sync_interval_ms) + Duration::from_secs(5), Duration::from_millis(5), || {
        (proxy.count(FEED_PATH) > polls).then_some(())
    });
    assert!(held.is_some(), "no feed poll arrived after the stall");
    let answered = proxy.answered(FEED_PATH);
    // No live answer from before the revocation may be reused (the rule
    // reuses one for `max_staleness_ms`).
    thread::sleep(reuse + Duration::from_millis(50));

    let asked = proxy.count(VERSIONS_PATH);
    authority.revoke_session(&sid);
    let revoked = Instant::now();
    for conn in pinned.iter_mut() {
        let r = conn.send(&admin_route);
        assert_denied(&r, 401, "token revoked");
    }
    let asked = proxy.count(VERSIONS_PATH) - asked;
    assert!(asked >= 1, "the fresh route refused without asking the authority");

    // The route that is not fresh decides on the synced set, which the
    // stalled feed cannot update: still allowed, on every worker, for
    // several sync intervals, while the fresh route keeps refusing.
    let mut samples = 0;
    while revoked.elapsed() < Duration::from_millis(4 * timing.sync_interval_ms) {
        for conn in pinned.iter_mut() {
            let r = conn.send(&api_route);
            assert_eq!(r.status, 200, "worker {}: the feed is stalled, yet the non-fresh route refused at {:?}: {r}", conn.worker, revoked.elapsed());
            assert_denied(&conn.send(&admin_route), 401, "token revoked");
            samples += 1;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(proxy.answered(FEED_PATH), answered, "a feed poll was answered while the feed was stalled");
    let stalled_for = revoked.elapsed();

    // The feed catches up: the non-fresh route refuses too, on every worker
    // (a held poll may still have to time out first).
    proxy.set_for(FEED_PATH, None);
    let healed = Instant::now();
    let bound = timing.recovery_bound() + workers::revocation_bound(&timing);
    let m = measure_on_every_worker(&mut pinned, &api_route, healed, bound);
    eprintln!(
        "REPORT fresh [{}]: the fresh route refused the revoked token at once on {} workers ({asked} live checks); \
         the non-fresh route allowed it for {stalled_for:?} of stalled feed ({samples} samples per worker), then refused it \
         after {:?} of healed feed (bound {bound:?})",
        envoy.host,
        pinned.len(),
        m.iter().map(|w| w.all_denied).max().unwrap_or_default(),
    );
    assert_no_crash(&envoy.stop());
}

/// Concurrent requests with the same token on a fresh route share one live
/// check per worker: the coalescing group is the worker's (docs/
/// architecture.md, "Live checks": the refresh group mechanism keyed by the
/// version keys; live checks have no cross-worker claim), so N requests on
/// each of the W workers make exactly W `/v1/versions` requests. The rule
/// reuses no answer (`max_staleness_ms: 0`), so only sharing can explain one
/// callout for many requests; sequential requests each ask again.
#[test]
fn concurrent_live_checks_on_a_fresh_route_share_one_callout_per_worker() {
    const PER_WORKER: usize = 6;
    let mut doc = callouts::document(500, 60_000, 5000);
    admin_rule(&mut doc)["max_staleness_ms"] = 0.into();
    let timing = Timing::of(&doc);
    let authority = Authority::start(Store::Sqlite, Settings::default());
    let proxy = FaultProxy::start(authority.addr);
    let bob = authority.mint("bob", "read");
    let envoy = workers::pinnable_edge(&doc, proxy.port, &api(&bob), workers::revocation_bound(&timing) * 8);
    let mut pinned = workers::pin(&envoy, PER_WORKER);
    let workers_used = {
        let mut w: Vec<usize> = pinned.iter().map(|p| p.worker).collect();
        w.dedup();
        w.len()
    };
    let admin = authority.admin_token();
    let admin_route = Request::get("/admin/users").bearer(&admin);

    // Live checks held at the proxy (well inside the callout timeout), so
    // every request arrives while its worker's check is in flight.
    let hold = Duration::from_millis(2500);
    proxy.set_for(VERSIONS_PATH, Some(Fault::Delay(hold)));
    let asked = proxy.count(VERSIONS_PATH);
    let ok = envoy.stat("tollgate.live_check.ok");
    let start = Instant::now();
    let barrier = std::sync::Barrier::new(pinned.len());
    let answers: Vec<(usize, u16, Duration)> = thread::scope(|s| {
        let handles: Vec<_> = pinned
            .iter_mut()
            .map(|conn| {
                let (barrier, admin_route) = (&barrier, &admin_route);
                s.spawn(move || {
                    barrier.wait();
                    let r = conn.send(admin_route);
                    (conn.worker, r.status, start.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    let shared = proxy.count(VERSIONS_PATH) - asked;
    for (worker, status, took) in &answers {
        assert_eq!(*status, 200, "worker {worker}: a concurrent request on the fresh route answered {status}");
        assert!(*took >= hold, "worker {worker}: answered after {took:?}, before the held live check could answer");
    }
    assert_eq!(
        shared, workers_used as u64,
        "{} concurrent requests on {workers_used} workers made {shared} live checks: want exactly one per worker",
        answers.len()
    );
    assert_eq!(envoy.stat("tollgate.live_check.ok") - ok, workers_used as u64, "one answered check per worker");

    // Not a cache: one after the other, each request asks again.
    proxy.set_for(VERSIONS_PATH, None);
    let asked = proxy.count(VERSIONS_PATH);
    for _ in 0..3 {
        assert_eq!(pinned[0].send(&admin_route).status, 200);
    }
    let sequential = proxy.count(VERSIONS_PATH) - asked;
    assert_eq!(sequential, 3, "with max_staleness_ms 0 every sequential request asks");
    eprintln!(
        "REPORT fresh [{}]: {} concurrent requests ({PER_WORKER} on each of {workers_used} workers) -> {shared} live checks; \
         3 sequential requests -> {sequential}",
        envoy.host,
        answers.len()
    );
    assert_no_crash(&envoy.stop());
}
