//! The authority fails, the edge does not: every failure ends in a defined
//! answer in bounded time, is counted, never crashes the filter (a Wasm VM,
//! or Envoy itself with the native module), and the edge recovers by itself
//! (same Envoy process) when the authority is back.
//!
//! Two Envoys (`--concurrency 2`) sit behind one fault proxy in front of the
//! real authority:
//! - `strict`: `max_staleness_ms` 1000, `on_stale: deny` — shows the
//!   staleness policy (503 `revocation state stale`, then 200 again);
//! - `lenient`: `max_staleness_ms` 60000 — its revocation set stays fresh,
//!   so it shows what refresh and live checks do on their own: a needed
//!   refresh → 503, an optional one → 200 with the old token, a `fresh`
//!   admin route → 503.

use std::thread;
use std::time::{Duration, Instant};
use tollgate_e2e::authority::{remint, Authority, Settings, Store};
use tollgate_e2e::callouts::{self, api, assert_no_crash, poll, set_cookie, set_cookies, Timing};
use tollgate_e2e::faults::{Fault, FaultProxy};
use tollgate_e2e::{http, tokens, Envoy, Options, Request, Response};

const TIMEOUT_MS: u64 = 300;

fn timed(envoy: &Envoy, req: &Request) -> (Response, Duration) {
    let start = Instant::now();
    let r = http::send(envoy.listener, req).unwrap_or_else(|e| {
        panic!("{req}: no answer after {:?} ({e}): a hung request", start.elapsed())
    });
    (r, start.elapsed())
}

/// An access token of `login`'s session, still valid but inside
/// `refresh_before_seconds` (30 s): a refresh is optional.
fn nearly_expired(access_token: &str, expired: bool) -> String {
    let now = tokens::now();
    remint(access_token, if expired { now - 3600 } else { now + 10 }, now - 600)
}

fn with_cookies(access: Option<&str>, refresh: &str) -> Request {
    let mut cookie = format!("tg_refresh={refresh}");
    if let Some(a) = access {
        cookie = format!("tg_access={a}; {cookie}");
    }
    Request::get("/api/items").header("Cookie", &cookie).secret(refresh)
}

/// One phase's measurements, for the report.
#[derive(Default, Debug)]
struct Phase {
    stale_after: Option<Duration>,
    needed_refresh: Option<Duration>,
    optional_refresh: Option<Duration>,
    fresh_route: Option<Duration>,
    recovered_after: Option<Duration>,
}

struct Rig {
    authority: Authority,
    proxy: FaultProxy,
    strict: Envoy,
    lenient: Envoy,
    timing: Timing,
    bob: String,
    admin: String,
}

fn counters(envoy: &Envoy) -> std::collections::BTreeMap<String, u64> {
    envoy.stats()
}

/// Breaks the authority with `breaker`, checks every behaviour, heals it
/// with `healer`, checks recovery.
fn phase(rig: &Rig, name: &str, breaker: &dyn Fn(), healer: &dyn Fn()) -> Phase {
    let t = rig.timing;
    let mut p = Phase::default();
    // Fresh credentials per phase: a slow fault may still rotate a token.
    let login = rig.authority.login_alice();
    let expired = nearly_expired(&login.access_token, true);
    let nearly = nearly_expired(&login.access_token, false);
    let (strict_before, lenient_before) = (counters(&rig.strict), counters(&rig.lenient));

    breaker();
    let broken = Instant::now();
    thread::scope(|s| {
        // strict: the revocation set goes stale → 503 for every token.
        let stale = s.spawn(|| {
            poll(t.staleness_bound() + Duration::from_secs(1), Duration::from_millis(20), || {
                let (r, took) = timed(&rig.strict, &api(&rig.bob));
                assert!(took < Duration::from_millis(500), "{name}: a local decision took {took:?}");
                match r.status {
                    200 => None,
                    503 => {
                        assert_eq!(r.json()["error_description"], "revocation state stale", "{name}: {r}");
                        assert_eq!(r.json()["error"], "temporarily_unavailable", "{name}: {r}");
                        assert_eq!(r.header("retry-after"), Some("1"), "{name}: {r}");
                        Some(broken.elapsed())
                    }
                    _ => panic!("{name}: strict edge answered {r}"),
                }
            })
            .map(|(at, _)| at)
        });

        // lenient: a needed refresh (expired access token) → 503.
        let (r, took) = timed(&rig.lenient, &with_cookies(Some(&expired), &login.refresh_token));
        assert_eq!(r.status, 503, "{name}: a needed refresh without an authority: {r}");
        assert_eq!(r.json()["error_description"], "authority unavailable for refresh", "{name}: {r}");
        assert!(set_cookies(&r).is_empty(), "{name}: no cookies are set or cleared on 503: {r}");
        assert!(took <= t.callout_bound(), "{name}: needed refresh answered after {took:?}");
        p.needed_refresh = Some(took);

        // lenient: the browser dropped the access cookie: the same.
        let (r, took) = timed(&rig.lenient, &with_cookies(None, &login.refresh_token));
        assert_eq!(r.status, 503, "{name}: refresh cookie only: {r}");
        assert!(took <= t.callout_bound(), "{name}: refresh-only answered after {took:?}");

        // lenient: an optional refresh → the request goes on with the old token.
        let (r, took) = timed(&rig.lenient, &with_cookies(Some(&nearly), &login.refresh_token));
        assert_eq!(r.status, 200, "{name}: an optional refresh must not fail the request: {r}");
        assert!(
            r.upstream_header("cookie").join("; ").contains(&format!("tg_access={nearly}")),
            "{name}: the old access token goes upstream: {r}"
        );
        assert!(set_cookie(&r, "tg_access").is_none(), "{name}: no new cookie: {r}");
        assert!(took <= t.callout_bound(), "{name}: optional refresh answered after {took:?}");
        p.optional_refresh = Some(took);

        // lenient: the live-checked admin route → 503 once its cached
        // answer (max_staleness_ms 1000 on the rule) is too old.
        let fresh = poll(Duration::from_millis(1000) + t.callout_bound() * 2, Duration::from_millis(50), || {
            let (r, took) = timed(&rig.lenient, &Request::get("/admin/x").bearer(&rig.admin));
            assert!(took <= t.callout_bound(), "{name}: admin route answered after {took:?}");
            match r.status {
                200 => None,
                503 => {
                    assert_eq!(r.json()["error_description"], "authority unavailable for live check", "{name}: {r}");
                    Some(took)
                }
                _ => panic!("{name}: admin route answered {r}"),
            }
        });
        p.fresh_route = Some(fresh.unwrap_or_else(|| panic!("{name}: the admin route never needed the authority")).0);

        p.stale_after = stale.join().expect("strict poller");
    });
    let stale_after = p.stale_after.unwrap_or_else(|| panic!("{name}: the strict edge never went stale"));
    assert!(stale_after <= t.staleness_bound(), "{name}: stale after {stale_after:?} > {:?}", t.staleness_bound());

    // Counted.
    let (strict_after, lenient_after) = (counters(&rig.strict), counters(&rig.lenient));
    let grew = |before: &std::collections::BTreeMap<String, u64>, after: &std::collections::BTreeMap<String, u64>, n: &str| {
        let k = format!("tollgate.{n}");
        after.get(&k).copied().unwrap_or(0) > before.get(&k).copied().unwrap_or(0)
    };
    for (b, a, counter) in [
        (&strict_before, &strict_after, "revocation.sync_failed"),
        (&strict_before, &strict_after, "denied.unavailable"),
        (&lenient_before, &lenient_after, "revocation.sync_failed"),
        (&lenient_before, &lenient_after, "refresh.failed"),
        (&lenient_before, &lenient_after, "live_check.failed"),
        (&lenient_before, &lenient_after, "denied.unavailable"),
    ] {
        assert!(grew(b, a, counter), "{name}: {counter} did not count the failure");
    }

    // Recovery, without restarting Envoy.
    healer();
    let healed = Instant::now();
    let back = poll(t.recovery_bound() + Duration::from_secs(2), Duration::from_millis(20), || {
        (http::send(rig.strict.listener, &api(&rig.bob)).ok()?.status == 200).then_some(())
    });
    let back = back.unwrap_or_else(|| panic!("{name}: the strict edge did not recover"));
    assert!(back.1 <= t.recovery_bound(), "{name}: recovered after {:?} > {:?}", back.1, t.recovery_bound());
    p.recovered_after = Some(healed.elapsed());
    let (r, _) = timed(&rig.lenient, &with_cookies(Some(&expired), &login.refresh_token));
    assert_eq!(r.status, 200, "{name}: refresh works again: {r}");
    assert!(set_cookie(&r, "tg_access").is_some(), "{name}: {r}");
    let (r, _) = timed(&rig.lenient, &Request::get("/admin/x").bearer(&rig.admin));
    assert_eq!(r.status, 200, "{name}: the admin route works again: {r}");
    p
}

#[test]
fn every_authority_failure_is_a_defined_answer_in_bounded_time_and_the_edge_recovers() {
    let authority = Authority::start(Store::Sqlite, Settings::default());
    let proxy = FaultProxy::start(authority.addr);
    let strict_doc = callouts::document(200, 1000, TIMEOUT_MS);
    let lenient_doc = callouts::document(200, 60_000, TIMEOUT_MS);
    let timing = Timing::of(&strict_doc);
    let bob = authority.mint("bob", "read");
    let admin = authority.admin_token();
    let (strict, lenient) = thread::scope(|s| {
        let a = s.spawn(|| callouts::edge(&strict_doc, proxy.port, &api(&bob), Duration::from_secs(5)));
        let b = s.spawn(|| callouts::edge(&lenient_doc, proxy.port, &api(&bob), Duration::from_secs(5)));
        (a.join().unwrap(), b.join().unwrap())
    });
    let pids = (strict.pid(), lenient.pid());
    let rig = Rig { authority, proxy, strict, lenient, timing, bob, admin };
    let pass = || rig.proxy.set(Fault::PassThrough);

    let mut report = Vec::new();
    let slow = Duration::from_millis(TIMEOUT_MS + 700);
    let faults = [
        ("refusing connections", Fault::Refuse),
        ("slow past timeout_ms", Fault::Delay(slow)),
        ("503 with an HTML body", Fault::Status(503)),
        ("500", Fault::Status(500)),
        ("garbage body", Fault::Garbage),
        ("oversized body (9 MiB)", Fault::Oversized(9 << 20)),
    ];
    for (name, fault) in faults {
        let p = phase(&rig, name, &|| rig.proxy.set(fault), &pass);
        report.push(format!("{name:<24} {p:?}"));
    }
    // The authority itself killed, and restarted on the same data.
    let p = phase(&rig, "authority killed", &|| rig.authority.kill(), &|| rig.authority.restart());
    report.push(format!("{:<24} {p:?}", "authority killed"));

    assert_eq!((rig.strict.pid(), rig.lenient.pid()), pids, "the same Envoy processes throughout");
    // Both edges sync again (the lenient one never went stale, so its
    // requests alone do not show it).
    for (name, envoy) in [("strict", &rig.strict), ("lenient", &rig.lenient)] {
        let ok = envoy.stat("tollgate.revocation.sync_ok");
        let again = poll(timing.recovery_bound(), Duration::from_millis(20), || {
            (envoy.stat("tollgate.revocation.sync_ok") > ok).then_some(())
        });
        assert!(again.is_some(), "the {name} edge does not sync again: {:?}", interesting(envoy));
    }
    eprintln!(
        "REPORT failures (timeout {TIMEOUT_MS} ms; bounds: stale {:?}, callout {:?}, recovery {:?}); proxy saw {:?}\n  {}\n  strict: {:?}\n  lenient: {:?}",
        timing.staleness_bound(),
        timing.callout_bound(),
        timing.recovery_bound(),
        rig.proxy.counts(),
        report.join("\n  "),
        interesting(&rig.strict),
        interesting(&rig.lenient),
    );
    assert_no_crash(&rig.strict.stop());
    assert_no_crash(&rig.lenient.stop());
}

fn interesting(envoy: &Envoy) -> Vec<(String, u64)> {
    envoy
        .stats()
        .into_iter()
        .filter(|(k, v)| *v > 0 && !["tollgate.allowed", "tollgate.anonymous"].contains(&k.as_str()))
        .map(|(k, v)| (k.trim_start_matches("tollgate.").to_owned(), v))
        .collect()
}

#[test]
fn a_missing_authority_cluster_fails_fast_and_is_counted() {
    let authority = Authority::start(Store::Sqlite, Settings::default());
    let bob = authority.mint("bob", "read");
    let admin = authority.admin_token();
    let login = authority.login_alice();
    let timing = Timing::of(&callouts::document(200, 1000, TIMEOUT_MS));
    // The cluster (and the routes to it) renamed: the document's
    // `authority.cluster` names a cluster Envoy does not have.
    let renamed = |doc: &serde_json::Value| {
        Options::with_document(doc)
            .authority(authority.port())
            .edit_yaml("cluster: authority }", "cluster: authority-renamed }", 2)
            .edit_yaml("- name: authority\n", "- name: authority-renamed\n", 1)
            .edit_yaml("cluster_name: authority\n", "cluster_name: authority-renamed\n", 1)
    };
    let deny = callouts::document(200, 1000, TIMEOUT_MS);
    let mut allow = deny.clone();
    allow["revocation"]["on_stale"] = "allow".into();
    let (strict, lenient) = thread::scope(|s| {
        let a = s.spawn(|| Envoy::start(&renamed(&deny)));
        let b = s.spawn(|| Envoy::start(&renamed(&allow)));
        (a.join().unwrap(), b.join().unwrap())
    });
    let expired = nearly_expired(&login.access_token, true);
    let nearly = nearly_expired(&login.access_token, false);
    let quick = Duration::from_millis(500);

    // on_stale deny: nothing was ever learned, so every token → 503, at once.
    for _ in 0..10 {
        let (r, took) = timed(&strict, &api(&bob));
        assert_eq!(r.status, 503, "{r}");
        assert_eq!(r.json()["error_description"], "revocation state not yet known", "{r}");
        assert!(took < quick, "answered after {took:?}");
    }
    let (r, took) = timed(&strict, &with_cookies(Some(&expired), &login.refresh_token));
    assert_eq!((r.status, r.json()["error_description"].as_str()), (503, Some("authority unavailable for refresh")), "{r}");
    assert!(took < quick, "needed refresh answered after {took:?}");

    // on_stale allow: a version never learned is never read as 0, so an
    // edge that never synced refuses too (it used to serve on the empty set);
    // a needed refresh still fails fast.
    let not_yet = (503, Some("revocation state not yet known"));
    let (r, _) = timed(&lenient, &api(&bob));
    assert_eq!((r.status, r.json()["error_description"].as_str()), not_yet, "{r}");
    let (r, took) = timed(&lenient, &with_cookies(Some(&expired), &login.refresh_token));
    assert_eq!(r.status, 503, "{r}");
    assert!(took < quick, "needed refresh answered after {took:?}");
    let (r, took) = timed(&lenient, &with_cookies(Some(&nearly), &login.refresh_token));
    assert_eq!((r.status, r.json()["error_description"].as_str()), not_yet, "{r}");
    assert!(took < quick, "optional refresh answered after {took:?}");
    let (r, took) = timed(&lenient, &Request::get("/admin/x").bearer(&admin));
    assert_eq!((r.status, r.json()["error_description"].as_str()), not_yet, "{r}");
    assert!(took < quick, "admin route answered after {took:?}");

    // Counted: the sync keeps failing (on every poll), and what was served stale.
    let failed = poll(timing.revocation_deadline() * 2, Duration::from_millis(20), || {
        (strict.stat("tollgate.revocation.sync_failed") >= 3).then_some(())
    });
    assert!(failed.is_some(), "sync failures are counted: {:?}", interesting(&strict));
    assert_eq!(lenient.stat("tollgate.revocation.stale_allowed"), 0, "nothing served on an unknown set: {:?}", interesting(&lenient));
    assert!(lenient.stat("tollgate.denied.unavailable") >= 3, "{:?}", interesting(&lenient));
    eprintln!(
        "REPORT missing cluster: strict {:?}; lenient {:?}",
        interesting(&strict),
        interesting(&lenient)
    );
    let refresh_failed = lenient.stat("tollgate.refresh.failed");
    assert_no_crash(&strict.stop());
    assert_no_crash(&lenient.stop());
    // The needed refresh could not even be dispatched: a refresh failure.
    assert!(
        refresh_failed >= 1,
        "a refresh that could not be dispatched is not counted in tollgate.refresh.failed ({refresh_failed})"
    );
}
