//! Revocation by version, end to end: a bump at the real authority reaches
//! every worker of a real Envoy (`--concurrency 2`) through the revocation
//! feed within a bound computed from the document, on both of the
//! authority's stores. Measured latencies are printed (`--nocapture`). A
//! `fresh` route waits for a live answer instead.

use std::time::Instant;
use tollgate_e2e::authority::{claims_of, Authority, Settings, Store};
use tollgate_e2e::callouts::{self, api, assert_no_crash, measure_revocation, Timing, Watch};
use tollgate_e2e::Request;

fn revoking_a_subject_a_session_and_an_api_token(store: Store) {
    let doc = callouts::document(200, 2000, 500);
    let timing = Timing::of(&doc);
    let bound = timing.revocation_bound();
    let authority = Authority::start(store, Settings::default());

    // An unrelated subject: its requests flow through the whole test.
    let bob = authority.mint("bob", "read");
    let envoy = callouts::edge(&doc, authority.port(), &api(&bob), bound * 4);
    let watch = Watch::start(envoy.listener, api(&bob));
    let mut report = Vec::new();

    // A session: alice's first login. Her second session stays valid.
    let first = authority.login_alice();
    let second = authority.login_alice();
    let sid = claims_of(&first.access_token)["sid"].as_str().expect("sid").to_owned();
    for pair in [&first, &second] {
        assert_eq!(envoy.send(&api(&pair.access_token)).status, 200);
    }
    authority.revoke_session(&sid);
    let since = Instant::now();
    let m = measure_revocation(&envoy, &api(&first.access_token), since, bound);
    report.push(format!("session: first denied after {:?}, last allowed at {:?} ({} samples)", m.first_denied, m.last_allowed, m.samples));
    let r = envoy.send(&api(&second.access_token));
    assert_eq!(r.status, 200, "alice's other session must stay valid: {r}");

    // A never-expiring API token (no exp, sid = its id).
    let (id, api_token) = authority.create_api_token("ci-bot", "read", -1);
    let claims = claims_of(&api_token);
    assert!(claims.get("exp").is_none(), "days -1 mints no exp: {claims}");
    assert_eq!(claims["sid"], id.as_str());
    assert_eq!(envoy.send(&api(&api_token)).status, 200, "the API token passes before its revocation");
    let bump = authority.revoke_api_token(&id);
    assert_eq!(bump.expires_at, None, "an API token without exp keeps its entry forever");
    let since = Instant::now();
    let m = measure_revocation(&envoy, &api(&api_token), since, bound);
    report.push(format!("API token: first denied after {:?}, last allowed at {:?} ({} samples)", m.first_denied, m.last_allowed, m.samples));

    // A subject: every token of carol issued before the bump.
    let carol = authority.mint("carol", "read write");
    assert_eq!(envoy.send(&api(&carol)).status, 200);
    let bump = authority.revoke_subject("carol");
    assert_eq!(bump.key, "sub:carol");
    let since = Instant::now();
    let m = measure_revocation(&envoy, &api(&carol), since, bound);
    report.push(format!("subject: first denied after {:?}, last allowed at {:?} ({} samples)", m.first_denied, m.last_allowed, m.samples));
    // New tokens of the subject pass at once: their `ver` is the new minimum.
    let fresh_carol = authority.mint("carol", "read write");
    assert!(claims_of(&fresh_carol)["ver"].as_u64() >= Some(bump.min_ver));
    let r = envoy.send(&api(&fresh_carol));
    assert_eq!(r.status, 200, "a token issued after the bump passes: {r}");

    let (sent, blips) = watch.stop();
    assert!(blips.is_empty(), "bob, never revoked, was refused {} of {sent} times: {blips:#?}", blips.len());
    let entries = envoy.stat("tollgate.revocation.entries");
    assert!(entries >= 3, "the three bumps are in the edge's set (entries gauge {entries})");
    assert!(envoy.stat("tollgate.revocation.sync_ok") > 0);
    eprintln!(
        "REPORT revocation [{}] bound {bound:?} (sync {} ms, tick {} ms, timeout {} ms); bob: {sent} requests, 0 refused\n  {}",
        store.name(),
        timing.sync_interval_ms,
        timing.tick_ms,
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
    let envoy = callouts::edge(&doc, authority.port(), &api(&bob), timing.revocation_bound() * 4);
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
