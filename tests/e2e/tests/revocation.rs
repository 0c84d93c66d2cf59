//! Revocation by version, end to end: a bump at the real authority reaches
//! EVERY worker of a real Envoy (`--concurrency 2`) through the revocation
//! feed within the documented bound (docs/configuration.md: the sync
//! interval + one poll's round trip + one tick; the callout timeout is not
//! part of it), on both of the authority's stores.
//!
//! Which worker answers a request depends on which worker accepted its
//! connection, so the test pins keep-alive connections to each worker
//! (`tollgate_e2e::workers`: exact balance, attribution by Envoy's
//! per-worker listener stats) and presents the revoked token on every one
//! of them until all refuse: the bound is met when the last worker refuses
//! within it. Each bump is made right after a feed poll was answered (the
//! edge reaches the authority through the fault proxy, which sees when):
//! the worst case the bound is stated for, so a poller slower than its
//! interval fails here. Measured latencies are printed (`--nocapture`). A `fresh`
//! route waits for a live answer instead (more in `tests/fresh.rs`).

use std::time::Instant;
use tollgate_e2e::authority::{claims_of, Authority, Settings, Store};
use tollgate_e2e::callouts::{self, api, assert_no_crash, Timing, Watch};
use tollgate_e2e::faults::FaultProxy;
use tollgate_e2e::workers::{self, measure_on_every_worker, WorkerEnforcement};
use tollgate_e2e::Request;

/// Connections pinned to each worker: more than one, so a worker that
/// answered differently per connection would show.
const PER_WORKER: usize = 2;

fn describe(m: &[WorkerEnforcement]) -> String {
    m.iter()
        .map(|w| format!("worker {}: all refused after {:?}, last allowed at {:?} ({} samples)", w.worker, w.all_denied, w.last_allowed, w.samples))
        .collect::<Vec<_>>()
        .join("; ")
}

fn revoking_a_subject_a_session_and_an_api_token(store: Store) {
    // An interval well above what the client and the machine add
    // (CLIENT_SLACK, FEED_ROUND_TRIP), so a poller late by a fraction of
    // it misses the bound.
    let doc = callouts::document(500, 5000, 1000);
    let timing = Timing::of(&doc);
    let bound = workers::revocation_bound(&timing);
    let authority = Authority::start(store, Settings::default());
    let proxy = FaultProxy::start(authority.addr);
    // Logged in now, so that no revocation call below waits for a login.
    authority.admin_token();

    // An unrelated subject: its requests flow through the whole test.
    let bob = authority.mint("bob", "read");
    let envoy = workers::pinnable_edge(&doc, proxy.port, &api(&bob), bound * 8);
    let mut pinned = workers::pin(&envoy, PER_WORKER);
    let watch = Watch::start(envoy.listener, api(&bob));
    let mut report = Vec::new();

    // A session: alice's first login. Her second session stays valid.
    let first = authority.login_alice();
    let second = authority.login_alice();
    let sid = claims_of(&first.access_token)["sid"].as_str().expect("sid").to_owned();
    for conn in pinned.iter_mut() {
        for pair in [&first, &second] {
            let r = conn.send(&api(&pair.access_token));
            assert_eq!(r.status, 200, "worker {} before the revocation: {r}", conn.worker);
        }
    }
    workers::right_after_a_poll(&proxy, &timing);
    authority.revoke_session(&sid);
    let since = Instant::now();
    let m = measure_on_every_worker(&mut pinned, &api(&first.access_token), since, bound);
    report.push(format!("session: {}", describe(&m)));
    for conn in pinned.iter_mut() {
        let r = conn.send(&api(&second.access_token));
        assert_eq!(r.status, 200, "alice's other session must stay valid on worker {}: {r}", conn.worker);
    }

    // A never-expiring API token (no exp, sid = its id).
    let (id, api_token) = authority.create_api_token("ci-bot", "read", -1);
    let claims = claims_of(&api_token);
    assert!(claims.get("exp").is_none(), "days -1 mints no exp: {claims}");
    assert_eq!(claims["sid"], id.as_str());
    for conn in pinned.iter_mut() {
        assert_eq!(conn.send(&api(&api_token)).status, 200, "the API token passes before its revocation");
    }
    workers::right_after_a_poll(&proxy, &timing);
    let bump = authority.revoke_api_token(&id);
    assert_eq!(bump.expires_at, None, "an API token without exp keeps its entry forever");
    let since = Instant::now();
    let m = measure_on_every_worker(&mut pinned, &api(&api_token), since, bound);
    report.push(format!("API token: {}", describe(&m)));

    // A subject: every token of carol issued before the bump.
    let carol = authority.mint("carol", "read write");
    for conn in pinned.iter_mut() {
        assert_eq!(conn.send(&api(&carol)).status, 200);
    }
    workers::right_after_a_poll(&proxy, &timing);
    let bump = authority.revoke_subject("carol");
    assert_eq!(bump.key, "sub:carol");
    let since = Instant::now();
    let m = measure_on_every_worker(&mut pinned, &api(&carol), since, bound);
    report.push(format!("subject: {}", describe(&m)));
    // New tokens of the subject pass at once: their `ver` is the new minimum.
    let fresh_carol = authority.mint("carol", "read write");
    assert!(claims_of(&fresh_carol)["ver"].as_u64() >= Some(bump.min_ver));
    for conn in pinned.iter_mut() {
        let r = conn.send(&api(&fresh_carol));
        assert_eq!(r.status, 200, "a token issued after the bump passes on worker {}: {r}", conn.worker);
    }

    let (sent, blips) = watch.stop();
    assert!(blips.is_empty(), "bob, never revoked, was refused {} of {sent} times: {blips:#?}", blips.len());
    assert!(envoy.stat("tollgate.revocation.sync_ok") > 0);
    eprintln!(
        "REPORT revocation [{} / {}] documented bound {bound:?} (sync {} ms + round trip {:?} + tick {} ms + client {:?}; \
         callout timeout {} ms not included); bob: {sent} requests, 0 refused\n  {}",
        envoy.host,
        store.name(),
        timing.sync_interval_ms,
        workers::FEED_ROUND_TRIP,
        timing.tick_ms,
        callouts::CLIENT_SLACK,
        timing.timeout_ms,
        report.join("\n  ")
    );
    assert_no_crash(&envoy.stop());
}

#[test]
fn revocations_reach_the_edge_within_the_bound_on_sqlite() {
    revoking_a_subject_a_session_and_an_api_token(Store::Sqlite);
}

#[test]
fn revocations_reach_the_edge_within_the_bound_on_redis() {
    revoking_a_subject_a_session_and_an_api_token(Store::Redis);
}

/// The admin rule is `fresh`: its request pauses for a live check
/// (`GET /v1/versions`, a callout from the request's own context, answered
/// on its worker) and is resumed on the answer.
#[test]
fn a_fresh_route_pauses_for_a_live_check_and_resumes_on_its_answer() {
    let doc = callouts::document(500, 5000, 500);
    let timing = Timing::of(&doc);
    let authority = Authority::start(Store::Sqlite, Settings::default());
    let bob = authority.mint("bob", "read");
    let envoy = callouts::edge(&doc, authority.port(), &api(&bob), workers::revocation_bound(&timing) * 8);
    let admin = authority.admin_token();
    for i in 0..4 {
        let r = envoy.send(&Request::get(&format!("/admin/users/{i}")).bearer(&admin));
        assert_eq!(r.status, 200, "request {i}: {r}");
        assert_eq!(r.upstream_header("x-tollgate-sub"), ["admin"], "{r}");
    }
    let r = envoy.send(&Request::get("/admin/users").bearer(&bob));
    assert_eq!(r.status, 403, "a token without the admin scope: {r}");
    assert!(envoy.stat("tollgate.live_check.ok") >= 1, "no live check was answered");
    assert_eq!(envoy.stat("tollgate.live_check.failed"), 0);
    assert_no_crash(&envoy.stop());
}
