//! Losing the authority's store, end to end: the authority restarts on a new,
//! empty store with the same signing key. Every token issued before (a
//! session, a minted token, a never-expiring API token) was never revoked,
//! yet the edge must refuse it once it has re-synced: the new store's floor
//! (its creation time in µs) is above every `ver` the old store handed out,
//! and the feed names the new store, so the edge drops its old cursor and
//! takes a snapshot. Checked on a running Envoy and again on a freshly
//! started one, on both of the authority's stores. A token of the new store
//! passes.

use std::time::Duration;
use tollgate_e2e::authority::{claims_of, Authority, Settings, Store};
use tollgate_e2e::callouts::{self, api, assert_denied, assert_no_crash, poll, Timing};
use tollgate_e2e::http::Response;

/// Whether `r` is the edge's "token revoked" denial.
fn revoked(r: &Response) -> bool {
    r.status == 401 && r.json()["error_description"] == "token revoked"
}

fn a_new_store_revokes_every_older_token(store: Store) {
    let doc = callouts::document(200, 2000, 500);
    let timing = Timing::of(&doc);
    let authority = Authority::start(store, Settings::default());
    let before = authority.feed();
    let session = authority.login_alice();
    let minted = authority.mint("carol", "read");
    let (_, api_token) = authority.create_api_token("ci-bot", "read", -1);
    let old = [("session", session.access_token.clone()), ("minted", minted), ("API token (never expires)", api_token)];
    let envoy = callouts::edge(&doc, authority.port(), &api(&session.access_token), timing.revocation_deadline() * 4);
    for (what, token) in &old {
        let r = envoy.send(&api(token));
        assert_eq!(r.status, 200, "{what} before the store is lost: {r}");
    }

    authority.restart_on_a_new_store();
    let after = authority.feed();
    assert_ne!(after["store"], before["store"], "a new store id: {after}");
    let floor = after["floor"].as_u64().expect("floor");
    for (what, token) in &old {
        let ver = claims_of(token)["ver"].as_u64().expect("ver");
        assert!(floor > ver, "{what}: ver {ver} not below the new floor {floor}");
    }

    // The running edge: its cursor belongs to the lost store (410), it takes
    // a snapshot of the new one, and from then on every older token is
    // refused as revoked.
    // Bound: the authority answering again to a good sync (recovery), plus
    // the round the old cursor costs (410, then a snapshot) and the reload
    // on every worker (a revocation bound).
    let resync = timing.recovery_bound() + timing.revocation_deadline();
    for (what, token) in &old {
        let found = poll(resync, Duration::from_millis(20), || revoked(&envoy.send(&api(token))).then_some(()));
        let (_, took) = found.unwrap_or_else(|| {
            panic!("{what}: not refused as revoked within {resync:?} of the new store; last answer {}", envoy.send(&api(token)))
        });
        eprintln!("REPORT store reset [{}]: {what} refused {took:?} after the restart on a new store", store.name());
    }
    // And it stays so, on every worker: a refusal above came from one
    // worker's copy; every other worker reloads the published set on its
    // next tick (the native host ticks every engine at once on Envoy's main
    // thread, so there the others lag the poller by up to a whole tick).
    std::thread::sleep(Duration::from_millis(timing.tick_ms) + callouts::CLIENT_SLACK);
    for _ in 0..20 {
        for (_, token) in &old {
            assert_denied(&envoy.send(&api(token)), 401, "token revoked");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let fresh = authority.login_alice();
    let r = envoy.send(&api(&fresh.access_token));
    assert_eq!(r.status, 200, "a token of the new store passes: {r}");
    assert_no_crash(&envoy.stop());
    drop(envoy);

    // A fresh Envoy: its first snapshot comes from the new store.
    let envoy = callouts::edge(&doc, authority.port(), &api(&fresh.access_token), timing.revocation_deadline() * 4);
    for (what, token) in &old {
        let r = envoy.send(&api(token));
        assert!(revoked(&r), "{what} after an Envoy restart: {r}");
    }
    let r = envoy.send(&api(&authority.login_alice().access_token));
    assert_eq!(r.status, 200, "another new token: {r}");
    assert_no_crash(&envoy.stop());
}

#[test]
fn a_lost_sqlite_store_revokes_every_older_token_at_the_edge() {
    a_new_store_revokes_every_older_token(Store::Sqlite);
}

#[test]
fn a_lost_redis_store_revokes_every_older_token_at_the_edge() {
    a_new_store_revokes_every_older_token(Store::Redis);
}
