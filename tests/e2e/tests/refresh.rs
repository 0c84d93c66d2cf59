//! Refresh at the edge, end to end: a real Envoy (`--concurrency 2`, two
//! instances where it matters) in front of the real authority. An expired
//! access cookie plus a refresh cookie is refreshed transparently, once per
//! worker at most, whatever the concurrency; a replay after the grace window
//! revokes the family everywhere. A paused request (a refresh, a live check)
//! goes nowhere until it is decided, body or not.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_e2e::authority::{claims_of, remint, Authority, Pair, Settings, Store};
use tollgate_e2e::callouts::{self, api, assert_no_crash, measure_revocation, set_cookie, set_cookies, Timing};
use tollgate_e2e::{h2, http, tokens, Envoy, Request, Response};

const ROTATED: &str = "tollgate_authority_refresh_total{outcome=\"rotated\"}";
const REPLAYED: &str = "tollgate_authority_refresh_total{outcome=\"replayed_in_grace\"}";
const REUSE: &str = "tollgate_authority_refresh_total{outcome=\"reuse_detected\"}";
const REFRESH_GRANTS: &str = "tollgate_authority_grants_total{grant_type=\"refresh_token\",result=\"ok\"}";

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// Sleeps until the wall clock passes `exp` (seconds): a computed wait for
/// a clock condition, not a guess.
fn until_expired(exp: u64) {
    let at = u128::from(exp) * 1000 + 50;
    let now = now_ms();
    if at > now {
        thread::sleep(Duration::from_millis((at - now) as u64));
    }
}

/// `cookie` pairs as a browser would send them.
fn cookies(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
}

/// What one client saw.
struct Seen {
    status: u16,
    access: Option<String>,
    refresh: Option<String>,
    response: Response,
}

fn seen(r: Response) -> Seen {
    Seen {
        status: r.status,
        access: set_cookie(&r, "tg_access").map(|c| c.0),
        refresh: set_cookie(&r, "tg_refresh").map(|c| c.0),
        response: r,
    }
}

/// Sends every request at the same moment (one thread and connection each).
fn all_at_once(requests: Vec<(std::net::SocketAddr, Request)>) -> Vec<Seen> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let handles: Vec<_> = requests
        .into_iter()
        .map(|(addr, req)| {
            let b = barrier.clone();
            thread::spawn(move || {
                b.wait();
                http::send(addr, &req).unwrap_or_else(|e| panic!("{req}: {e}"))
            })
        })
        .collect();
    handles.into_iter().map(|h| seen(h.join().expect("client thread"))).collect()
}

fn refresh_counters(envoy: &Envoy) -> String {
    ["ok", "rejected", "failed", "coalesced", "shared"]
        .iter()
        .map(|n| format!("{n}={}", envoy.stat(&format!("tollgate.refresh.{n}"))))
        .collect::<Vec<_>>()
        .join(" ")
}

fn refresh_storm(store: Store) {
    const CLIENTS: usize = 200;
    let authority = Authority::start(store, Settings { access_ttl_secs: Some(2), ..Settings::default() });
    let mut doc = callouts::document(200, 5000, 1000);
    // Expired means expired: no skew, and no early refresh of a 2 s token.
    doc["clock_skew_seconds"] = 0.into();
    doc["refresh"]["refresh_before_seconds"] = 1.into();
    let timing = Timing::of(&doc);
    let bob = authority.mint("bob", "read");
    let envoy = callouts::edge(&doc, authority.port(), &api(&bob), timing.revocation_deadline() * 4);

    let login = authority.login_alice();
    let exp = claims_of(&login.access_token)["exp"].as_u64().expect("exp");
    until_expired(exp);
    let r = envoy.send(&api(&login.access_token));
    assert_eq!(r.status, 401, "the access token has expired at the edge: {r}");

    let before = authority.metrics();
    let cookie = cookies(&[("theme", "dark"), ("tg_access", &login.access_token), ("tg_refresh", &login.refresh_token)]);
    let requests = (0..CLIENTS)
        .map(|i| {
            let req = Request::post(&format!("/api/items/{i}"))
                .header("Cookie", &cookie)
                .header("Content-Type", "text/plain")
                .body(format!("payload number {i}").as_bytes())
                .secret(&login.refresh_token);
            (envoy.listener, req)
        })
        .collect();
    let started = Instant::now();
    let answers = all_at_once(requests);
    let took = started.elapsed();
    let after = authority.metrics();
    let delta = |name: &str| after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0);

    let mut wrong = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        if a.status != 200 {
            wrong.push(format!("client {i}: {}", a.response));
            continue;
        }
        let body = a.response.json();
        if body["method"] != "POST" || body["body"] != format!("payload number {i}") || body["path"] != format!("/api/items/{i}") {
            wrong.push(format!("client {i}: the upstream saw {body}"));
        }
        let up_cookie = a.response.upstream_header("cookie").join("; ");
        if up_cookie.contains(&login.refresh_token) || up_cookie.contains(&login.access_token) || up_cookie.contains("tg_refresh") {
            wrong.push(format!("client {i}: the upstream saw an old or refresh credential: {up_cookie}"));
        }
        if a.access.is_none() || a.refresh.is_none() {
            wrong.push(format!("client {i}: no new pair in Set-Cookie: {:?}", set_cookies(&a.response)));
        } else if !up_cookie.contains(&format!("tg_access={}", a.access.as_deref().unwrap_or_default())) {
            wrong.push(format!("client {i}: the upstream did not get the new access token"));
        }
    }
    assert!(wrong.is_empty(), "{} of {CLIENTS} clients were not served transparently:\n{}", wrong.len(), wrong.iter().take(10).cloned().collect::<Vec<_>>().join("\n"));

    let pairs: std::collections::BTreeSet<(Option<String>, Option<String>)> =
        answers.iter().map(|a| (a.access.clone(), a.refresh.clone())).collect();
    assert_eq!(pairs.len(), 1, "every client receives the same new pair; got {} different", pairs.len());
    let (access, refresh) = pairs.into_iter().next().unwrap();
    let (access, refresh) = (access.unwrap(), refresh.unwrap());
    assert_ne!(refresh, login.refresh_token);
    assert_eq!(claims_of(&access)["sid"], claims_of(&login.access_token)["sid"], "same session, rotated");
    let (_, attrs) = set_cookie(&answers[0].response, "tg_refresh").unwrap();
    for a in ["Path=/", "Max-Age=1209600", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(attrs.contains(a), "refresh cookie attributes {attrs:?} lack {a}");
    }

    // At the authority: one rotation from one callout for the whole Envoy —
    // not one per worker answered by the grace-window replay (which `ok`
    // grants would also count), so replays must be zero; and the other
    // worker took the first one's answer from shared data (200 connections
    // land on both workers: Envoy's listeners use SO_REUSEPORT).
    let (grants, rotated, replayed) = (delta(REFRESH_GRANTS), delta(ROTATED), delta(REPLAYED));
    assert_eq!(rotated, 1.0, "one rotation for {CLIENTS} requests");
    assert_eq!(replayed, 0.0, "no grace-window replay: one callout, not one per worker");
    assert_eq!(grants, 1.0, "one refresh callout for the whole Envoy, the authority answered {grants}");
    let shared = envoy.stat("tollgate.refresh.shared");
    assert!(shared >= 1, "the other worker used the first one's answer (tollgate.refresh.shared = {shared})");
    let counters = refresh_counters(&envoy);
    eprintln!(
        "REPORT refresh storm [{}]: {CLIENTS} clients in {took:?}, all 200, one pair; authority: {grants} refresh grants ({rotated} rotated, {replayed} replayed); edge: {counters}",
        store.name()
    );
    assert_no_crash(&envoy.stop());
}

#[test]
fn a_refresh_storm_is_one_callout_per_worker_and_one_pair_for_all_on_sqlite() {
    refresh_storm(Store::Sqlite);
}

#[test]
fn a_refresh_storm_is_one_callout_per_worker_and_one_pair_for_all_on_redis() {
    refresh_storm(Store::Redis);
}

/// The browser's copy of `login`'s access token, expired an hour ago.
fn expired_copy(access_token: &str) -> String {
    let now = tokens::now();
    remint(access_token, now - 3600, now - 4500)
}

#[test]
fn two_edges_refresh_one_token_together_and_a_late_replay_revokes_the_family_everywhere() {
    const GRACE_MS: u64 = 1500;
    let authority = Authority::start(Store::Sqlite, Settings { refresh_grace_ms: Some(GRACE_MS), ..Settings::default() });
    let mut doc = callouts::document(200, 5000, 500);
    // An edge reuses a refresh answer no longer than the authority would.
    doc["refresh"]["share_ms"] = 500.into();
    let timing = Timing::of(&doc);
    let bound = timing.revocation_deadline();
    let bob = authority.mint("bob", "read");
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| callouts::edge(&doc, authority.port(), &api(&bob), bound * 4));
        let b = s.spawn(|| callouts::edge(&doc, authority.port(), &api(&bob), bound * 4));
        (a.join().unwrap(), b.join().unwrap())
    });

    let login: Pair = authority.login_alice();
    let expired = expired_copy(&login.access_token);
    // Edge A gets the expired access cookie and the refresh cookie; edge B
    // only the refresh cookie (the browser dropped the expired one).
    let with_access = cookies(&[("tg_access", &expired), ("tg_refresh", &login.refresh_token)]);
    let refresh_only = cookies(&[("tg_refresh", &login.refresh_token)]);
    let before = authority.metrics();
    let mut requests = Vec::new();
    for _ in 0..10 {
        requests.push((a.listener, api_cookie(&with_access)));
        requests.push((b.listener, api_cookie(&refresh_only)));
    }
    let answers = all_at_once(requests);
    let rotated_at = Instant::now();
    let after = authority.metrics();
    for (i, s) in answers.iter().enumerate() {
        assert_eq!(s.status, 200, "client {i} (edge {}): {}", if i % 2 == 0 { "A" } else { "B" }, s.response);
    }
    let pairs: std::collections::BTreeSet<_> = answers.iter().map(|s| (s.access.clone(), s.refresh.clone())).collect();
    assert_eq!(pairs.len(), 1, "both edges hand out the same pair: {pairs:#?}");
    let (successor_access, successor_refresh) = pairs.into_iter().next().unwrap();
    let (successor_access, successor_refresh) = (successor_access.unwrap(), successor_refresh.unwrap());
    let delta = |name: &str| after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0);
    assert_eq!(delta(ROTATED), 1.0, "one rotation");
    assert!(delta(REPLAYED) >= 1.0, "the second edge was answered by the grace-window replay");
    assert_eq!(delta(REFRESH_GRANTS), 2.0, "one callout per Envoy (two Envoys): {}", delta(REFRESH_GRANTS));
    let together = format!(
        "{} refresh grants ({} rotated, {} replayed); edge A: {}; edge B: {}",
        delta(REFRESH_GRANTS), delta(ROTATED), delta(REPLAYED), refresh_counters(&a), refresh_counters(&b)
    );
    assert_eq!(a.send(&api(&successor_access)).status, 200);
    assert_eq!(b.send(&api(&successor_access)).status, 200);

    // After the grace window (and the edges' share window), the old refresh
    // token is a reuse: 401, cookies cleared, the family revoked.
    let wait = Duration::from_millis(GRACE_MS + 200).saturating_sub(rotated_at.elapsed());
    thread::sleep(wait);
    let r = a.send(&api_cookie(&with_access));
    assert_eq!(r.status, 401, "a replay after the grace window is refused: {r}");
    assert_eq!(r.json()["error_description"], "token expired and refresh token rejected", "{r}");
    let replayed_at = Instant::now();
    for name in ["tg_access", "tg_refresh"] {
        let (value, attrs) = set_cookie(&r, name).unwrap_or_else(|| panic!("{name} not cleared: {r}"));
        assert!(value.is_empty() && attrs.contains("Max-Age=0"), "{name} cleared: {value:?} {attrs:?}");
    }
    assert_eq!(authority.metric(REUSE), 1, "the authority detected the reuse");
    // Both edges deny the successor within the bound.
    let (ma, mb) = thread::scope(|s| {
        let ma = s.spawn(|| measure_revocation(&a, &api(&successor_access), replayed_at, bound));
        let mb = s.spawn(|| measure_revocation(&b, &api(&successor_access), replayed_at, bound));
        (ma.join().unwrap(), mb.join().unwrap())
    });
    let r = authority.refresh(&successor_refresh);
    assert_eq!(r.status, 400, "the successor refresh token died with its family: {r}");
    assert_eq!(r.json()["error"], "invalid_grant");
    eprintln!(
        "REPORT two edges: {together}\n  late replay → 401, cookies cleared; successor denied on A after {:?}, on B after {:?} (bound {bound:?})",
        ma.first_denied, mb.first_denied
    );
    assert_no_crash(&a.stop());
    assert_no_crash(&b.stop());
}

fn api_cookie(cookie: &str) -> Request {
    Request::get("/api/items").header("Cookie", cookie)
}

#[test]
fn an_api_client_in_header_mode_gets_the_new_pair_in_response_headers() {
    let authority = Authority::start(Store::Sqlite, Settings::default());
    let doc = callouts::document(200, 5000, 500);
    let timing = Timing::of(&doc);
    let bob = authority.mint("bob", "read");
    let envoy = callouts::edge(&doc, authority.port(), &api(&bob), timing.revocation_deadline() * 4);
    let login = authority.login_alice();
    let expired = expired_copy(&login.access_token);
    let req = Request::post("/api/items")
        .bearer(&expired)
        .header("X-Tollgate-Refresh-Token", &login.refresh_token)
        .secret(&login.refresh_token)
        .body(b"{\"n\":1}");
    let r = envoy.send(&req);
    assert_eq!(r.status, 200, "{r}");
    let access = r.header("x-tollgate-access-token").unwrap_or_else(|| panic!("no new access token: {r}")).to_owned();
    let refresh = r.header("x-tollgate-refresh-token").unwrap_or_else(|| panic!("no new refresh token: {r}")).to_owned();
    assert!(set_cookies(&r).is_empty(), "header mode sets no cookies: {r}");
    assert_ne!(refresh, login.refresh_token);
    assert_eq!(r.upstream_header("authorization"), [format!("Bearer {access}")], "the new token goes upstream");
    assert!(r.upstream_header("x-tollgate-refresh-token").is_empty(), "the refresh token never reaches the upstream");
    assert_eq!(r.json()["body"], "{\"n\":1}");
    // The new pair works: the access token at the edge, the refresh token at the authority.
    assert_eq!(envoy.send(&api(&access)).status, 200);
    assert_eq!(authority.refresh(&refresh).status, 200);
    assert_no_crash(&envoy.stop());
}

/// A request the edge pauses — for a refresh, for the live check of a
/// `fresh` rule — and that carries a body stays with the edge until the
/// decision: the body arriving is no reason to let it go on. Here every
/// decision is a refusal, so nothing may reach the upstream, and the
/// identity header the client wrote in particular. A small body and one of
/// 60 KiB (more than one read), over HTTP/1.1 and HTTP/2.
#[test]
fn a_paused_request_with_a_body_goes_nowhere_before_its_decision() {
    let authority = Authority::start(Store::Sqlite, Settings::default());
    let doc = callouts::document(200, 5000, 500);
    let timing = Timing::of(&doc);
    let bob = authority.mint("bob", "read write");
    let envoy = callouts::edge(&doc, authority.port(), &api(&bob), timing.revocation_deadline() * 4);
    let login = authority.login_alice();
    let expired = expired_copy(&login.access_token);
    let small = b"{\"delete\":\"everything\"}".to_vec();
    // Larger than one read of Envoy's, within the h2 client's first flow-control window.
    let large = vec![b'x'; 60 << 10];
    struct Row {
        name: &'static str,
        request: Request,
        status: u16,
        description: &'static str,
    }
    let refresh = |body: &[u8]| {
        Request::post("/api/items")
            .bearer(&expired)
            .header("X-Tollgate-Refresh-Token", "tgr_not-a-refresh-token-the-authority-issued")
            .header("X-Tollgate-Sub", "mallory")
            .body(body)
    };
    // The admin rule is `fresh`: bob's token waits for its live check, then
    // lacks the admin scope.
    let fresh = |body: &[u8]| Request::post("/admin/users").bearer(&bob).header("X-Tollgate-Sub", "mallory").body(body);
    const REJECTED: &str = "token expired and refresh token rejected";
    const NO_ADMIN: &str = "admin scope required";
    let rows = [
        Row { name: "refresh, small body", request: refresh(&small), status: 401, description: REJECTED },
        Row { name: "refresh, 60 KiB body", request: refresh(&large), status: 401, description: REJECTED },
        Row { name: "live check, small body", request: fresh(&small), status: 403, description: NO_ADMIN },
        Row { name: "live check, 60 KiB body", request: fresh(&large), status: 403, description: NO_ADMIN },
    ];
    let before = (envoy.stat("tollgate.refresh.rejected"), envoy.stat("tollgate.live_check.ok"));
    let mut h2c = h2::Client::start();
    let mut wrong = Vec::new();
    for row in &rows {
        for protocol in ["HTTP/1.1", "HTTP/2"] {
            let answer = match protocol {
                "HTTP/1.1" => http::send(envoy.listener, &row.request),
                _ => h2c.send(envoy.listener, &row.request),
            };
            match answer {
                Ok(r) if r.status == row.status
                    && r.header("www-authenticate").is_some()
                    && serde_json::from_slice::<serde_json::Value>(&r.body)
                        .is_ok_and(|b| b["error_description"] == row.description) => {}
                Ok(r) => wrong.push(format!(
                    "✗ {} over {protocol}: want {} {:?} from the edge, got {} {}",
                    row.name,
                    row.status,
                    row.description,
                    r.status,
                    r.text().chars().take(300).collect::<String>()
                )),
                Err(e) => wrong.push(format!("✗ {} over {protocol}: no answer: {e}", row.name)),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "paused requests with a body went on before their decision (the upstream answered):\n{}",
        wrong.join("\n")
    );
    // Each was decided by its callout, not before it.
    assert!(envoy.stat("tollgate.refresh.rejected") > before.0, "no refresh was rejected");
    assert!(envoy.stat("tollgate.live_check.ok") > before.1, "no live check was answered");
    assert_no_crash(&envoy.stop());
}
