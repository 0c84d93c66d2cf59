//! The long-polling revocation feed end to end: the edge keeps one feed
//! request held at the real authority (`revocation.wait_ms`), and a
//! revocation reaches every worker of a real Envoy (`--concurrency 2`)
//! within one round trip and one tick — with a sync interval far longer
//! than that, so plain polling could not pass. On both stores, and with two
//! authority instances behind one Redis (the edge holds its request on one,
//! the revocation is made on the other). An idle Envoy sends about one feed
//! request per `wait_ms`.

use std::time::{Duration, Instant};
use tollgate_e2e::authority::{claims_of, Authority, Settings, Store};
use tollgate_e2e::callouts::{self, api, assert_no_crash, measure_revocation, CLIENT_SLACK};

/// Long polling on; the interval (only used after failures) far above the bound.
fn document() -> serde_json::Value {
    let mut doc = callouts::document(5_000, 20_000, 1_000);
    doc["revocation"]["wait_ms"] = 10_000.into();
    doc
}

/// Round trip plus one tick (50 ms while long polling) on a loaded machine.
fn bound() -> Duration {
    Duration::from_millis(50 + 100) + CLIENT_SLACK
}

fn revocation_reaches_every_worker(edge_authority: &Authority, revoking: &Authority, what: &str) {
    let doc = document();
    let bob = edge_authority.mint("bob", "read");
    let envoy = callouts::edge(&doc, edge_authority.port(), &api(&bob), Duration::from_secs(10));
    let mut firsts = Vec::new();
    for round in 0..3 {
        let login = edge_authority.login_alice();
        let sid = claims_of(&login.access_token)["sid"].as_str().expect("sid").to_owned();
        assert_eq!(envoy.send(&api(&login.access_token)).status, 200);
        // Let the poller's request settle into its hold.
        std::thread::sleep(Duration::from_millis(300));
        revoking.revoke_session(&sid);
        let since = Instant::now();
        // Every sample is a new connection: both workers answer in turn.
        let m = measure_revocation(&envoy, &api(&login.access_token), since, bound());
        firsts.push(m.first_denied);
        eprintln!("REPORT long poll [{what}] round {round}: first denied after {:?}, last allowed at {:?}", m.first_denied, m.last_allowed);
    }
    // Idle: about one feed request per wait_ms, not one per interval or tick.
    let before = envoy.stat("tollgate.revocation.sync_ok");
    std::thread::sleep(Duration::from_millis(2_500));
    let idle = envoy.stat("tollgate.revocation.sync_ok") - before;
    assert!(idle <= 1, "an idle Envoy holds its feed request: {idle} answers in 2.5 s");
    eprintln!("REPORT long poll [{what}] bound {:?}; idle answers in 2.5 s: {idle}; first denials {firsts:?}", bound());
    assert_no_crash(&envoy.stop());
}

#[test]
fn a_revocation_reaches_every_worker_within_a_round_trip_on_sqlite() {
    let authority = Authority::start(Store::Sqlite, Settings::default());
    revocation_reaches_every_worker(&authority, &authority, "sqlite");
}

#[test]
fn a_revocation_reaches_every_worker_within_a_round_trip_on_redis() {
    let authority = Authority::start(Store::Redis, Settings::default());
    revocation_reaches_every_worker(&authority, &authority, "redis");
}

#[test]
fn a_revocation_on_another_instance_wakes_the_held_request() {
    let a = Authority::start(Store::Redis, Settings::default());
    let b = a.sibling();
    revocation_reaches_every_worker(&a, &b, "redis, two instances");
}
