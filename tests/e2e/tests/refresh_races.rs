//! Refresh coordination when the request or the authority misbehaves, end
//! to end: a real Envoy (two workers) in front of the real authority, the
//! fault proxy holding `POST /v1/token` (the revocation feed answers at
//! once). Requests are put on chosen workers ([`workers::pinned`]), so both
//! ways a request waits on another's refresh are exercised: in the same
//! worker's group, and on the other worker's claim in shared data
//! (docs/architecture.md, "Refresh" and "Bounded waits").
//!
//! - A leader client that disconnects while its callout is in flight: the
//!   answer to that callout is never delivered, so its group is due at once
//!   and its claim is released; every request that waited still gets the
//!   new pair (from the fall-back callout, which the authority's grace
//!   window answers with the same pair), well before the abandoned claim
//!   would have expired by itself, and nothing stays stuck.
//! - An authority that stalls past `timeout_ms` and `wait_ms`: every waiter
//!   gets the documented answer within the documented bound (two waits:
//!   `wait_ms`, the fall-back callout, `wait_ms` again), and once the
//!   authority answers again the client's retry with the same refresh token
//!   gets the pair the authority minted during the stall (grace window):
//!   nobody is logged out, nothing is stuck.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};
use tollgate_e2e::authority::{claims_of, remint, Authority, Settings, Store};
use tollgate_e2e::callouts::{self, api, assert_no_crash, poll, set_cookie, set_cookies, Timing, CLIENT_SLACK};
use tollgate_e2e::faults::FaultProxy;
use tollgate_e2e::workers::{self, Pinned};
use tollgate_e2e::{tokens, Envoy, Request, Response};

const ROTATED: &str = "tollgate_authority_refresh_total{outcome=\"rotated\"}";
const REPLAYED: &str = "tollgate_authority_refresh_total{outcome=\"replayed_in_grace\"}";
const REUSE: &str = "tollgate_authority_refresh_total{outcome=\"reuse_detected\"}";
const TOKEN: &str = "/v1/token";
const REFRESH_HEADER: &str = "x-tollgate-refresh-token";
const TICK_MS: u64 = 100;

struct Rig {
    authority: Authority,
    proxy: FaultProxy,
    envoy: Envoy,
    timing: Timing,
}

/// An authority behind the fault proxy and one Envoy whose callouts time
/// out after `timeout_ms` and whose refresh waits `wait_ms`.
fn rig(timeout_ms: u64, wait_ms: u64) -> Rig {
    let authority = Authority::start(Store::Sqlite, Settings::default());
    let proxy = FaultProxy::start(authority.addr);
    // The revocation set stays fresh whatever the token endpoint does.
    let mut doc = callouts::document(200, 60_000, timeout_ms);
    doc["refresh"]["wait_ms"] = wait_ms.into();
    let timing = Timing::of(&doc);
    let bob = authority.mint("bob", "read");
    let envoy = callouts::edge(&doc, proxy.port, &api(&bob), Duration::from_secs(15));
    Rig { authority, proxy, envoy, timing }
}

/// The authority's refresh outcomes: (rotated, replayed in grace, reuse).
fn outcomes(a: &Authority) -> (u64, u64, u64) {
    (a.metric(ROTATED), a.metric(REPLAYED), a.metric(REUSE))
}

fn expired_copy(access_token: &str) -> String {
    let now = tokens::now();
    remint(access_token, now - 3600, now - 4500)
}

fn header_mode(access: &str, refresh: &str, n: usize) -> Request {
    Request::get(&format!("/api/items/{n}")).bearer(access).header(REFRESH_HEADER, refresh).secret(refresh)
}

fn cookie_mode(access: &str, refresh: &str, n: usize) -> Request {
    Request::get(&format!("/api/items/{n}"))
        .header("Cookie", &format!("tg_access={access}; tg_refresh={refresh}"))
        .secret(refresh)
}

/// Waits (bounded) until Envoy has `n` requests in progress: every request
/// written so far has been decoded and is paused in the filter.
fn until_active(envoy: &Envoy, n: u64) {
    let got = poll(Duration::from_secs(10), Duration::from_millis(5), || (workers::active_requests(envoy) >= n).then_some(()));
    assert!(got.is_some(), "Envoy never had {n} requests in progress (has {})", workers::active_requests(envoy));
}

/// Sends `req` on `c` and reads the answer on a thread: (answer, elapsed
/// since `since`).
fn answer_later(mut c: Pinned, req: Request, since: Instant) -> thread::JoinHandle<(usize, Result<Response, String>, Duration)> {
    c.write(&req);
    thread::spawn(move || {
        let worker = c.worker;
        let r = c.answer(&req).map_err(|e| e.to_string());
        (worker, r, since.elapsed())
    })
}

/// The pair a header-mode response handed out.
fn pair_of(r: &Response) -> Option<(String, String)> {
    Some((r.header("x-tollgate-access-token")?.to_owned(), r.header("x-tollgate-refresh-token")?.to_owned()))
}

struct LeaderCase {
    name: &'static str,
    /// Requests waiting on the leader's worker (its group's followers).
    followers: usize,
    /// Requests on the other worker (waiting on the leader's claim).
    elsewhere: usize,
}

#[test]
fn a_leader_that_disconnects_mid_refresh_strands_no_one_and_releases_its_claim() {
    // A claim holds its callout's timeout and two ticks: 15.2 s. Waiters
    // answered within half of that were not waiting the claim out.
    const TIMEOUT_MS: u64 = 15_000;
    const HOLD: Duration = Duration::from_millis(1000);
    let rig = rig(TIMEOUT_MS, 3000);
    let claim = Duration::from_millis(TIMEOUT_MS + 2 * TICK_MS);
    let bound = claim / 2;
    let cases = [
        LeaderCase { name: "leader alone on its worker, waiters on the other", followers: 0, elsewhere: 3 },
        LeaderCase { name: "leader with followers on its worker and waiters on the other", followers: 2, elsewhere: 2 },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let login = rig.authority.login_alice();
        let expired = expired_copy(&login.access_token);
        // The leader on worker 0 or 1, whichever: try worker 0.
        let mut conns = workers::pinned(&rig.envoy, &[1 + case.followers, case.elsewhere]);
        let others = conns.pop().unwrap();
        let mut mine = conns.pop().unwrap();
        let mut leader = mine.remove(0);
        let before = outcomes(&rig.authority);
        let sent = rig.proxy.count(TOKEN);

        rig.proxy.delay_path(TOKEN, Some(HOLD));
        let leader_req = header_mode(&expired, &login.refresh_token, 0);
        leader.write(&leader_req);
        // The leader's callout is at the authority (held there).
        let at = poll(Duration::from_secs(10), Duration::from_millis(2), || (rig.proxy.count(TOKEN) > sent).then_some(()));
        assert!(at.is_some(), "{}: the leader's refresh never reached the authority", case.name);
        let waiting: Vec<_> = mine
            .into_iter()
            .chain(others)
            .enumerate()
            .map(|(i, c)| {
                let req = header_mode(&expired, &login.refresh_token, i + 1);
                (c.worker, req, c)
            })
            .collect();
        let start = Instant::now();
        let mut handles = Vec::new();
        for (_, req, c) in waiting {
            handles.push(answer_later(c, req, start));
        }
        until_active(&rig.envoy, 1 + (case.followers + case.elsewhere) as u64);
        // The leader goes away with its callout in flight.
        let killed = Instant::now();
        leader.reset();
        let answers: Vec<_> = handles.into_iter().map(|h| h.join().expect("client thread")).collect();
        rig.proxy.delay_path(TOKEN, None);

        let mut wrong = Vec::new();
        let mut pairs = BTreeSet::new();
        for (worker, r, _) in &answers {
            match r {
                Ok(r) if r.status == 200 => match pair_of(r) {
                    Some(p) => {
                        if r.upstream_header("authorization") != [format!("Bearer {}", p.0)] {
                            wrong.push(format!("worker {worker}: the upstream did not get the new access token"));
                        }
                        pairs.insert(p);
                    }
                    None => wrong.push(format!("worker {worker}: 200 without the new pair: {r}")),
                },
                Ok(r) => wrong.push(format!("worker {worker}: {r}")),
                Err(e) => wrong.push(format!("worker {worker}: no answer: {e}")),
            }
        }
        let late: Vec<String> = answers
            .iter()
            .filter(|(_, _, took)| *took > bound + killed.duration_since(start))
            .map(|(w, _, took)| format!("worker {w} answered {:?} after the leader left", took.saturating_sub(killed.duration_since(start))))
            .collect();
        if !late.is_empty() {
            wrong.push(format!(
                "waiters answered later than {bound:?} after the leader left (an abandoned claim holds {claim:?}): {late:?}"
            ));
        }
        if pairs.len() != 1 {
            wrong.push(format!("every waiter gets the same pair, got {} different", pairs.len()));
        }
        // The leader's callout still reached the authority (it rotated);
        // the fall-back callout was answered by the grace window with the
        // same pair; nobody was logged out.
        let settled = poll(HOLD * 3, Duration::from_millis(20), || {
            let now = outcomes(&rig.authority);
            (now.0 > before.0 && now.1 > before.1).then_some(now)
        });
        let after = outcomes(&rig.authority);
        if settled.is_none() || after.0 - before.0 != 1 || after.2 != before.2 {
            wrong.push(format!(
                "at the authority: rotated +{}, replayed +{}, reuse +{} (want +1, ≥ +1, +0)",
                after.0 - before.0,
                after.1 - before.1,
                after.2 - before.2
            ));
        }
        // Nothing is stuck: no request in progress, and the next refresh on
        // either worker (another session) completes at once.
        let idle = poll(Duration::from_secs(2), Duration::from_millis(10), || (workers::active_requests(&rig.envoy) == 0).then_some(()));
        if idle.is_none() {
            wrong.push(format!("{} requests still in progress", workers::active_requests(&rig.envoy)));
        }
        let next = rig.authority.login_alice();
        let next_expired = expired_copy(&next.access_token);
        for c in workers::pinned(&rig.envoy, &[1, 1]).into_iter().flatten() {
            let w = c.worker;
            let req = header_mode(&next_expired, &next.refresh_token, 100 + w);
            let t = Instant::now();
            let h = answer_later(c, req, t);
            let (_, r, took) = h.join().expect("client thread");
            match r {
                Ok(r) if r.status == 200 && took <= rig.timing.callout_bound() => {}
                Ok(r) => wrong.push(format!("a later refresh on worker {w}: {} after {took:?}", r.status)),
                Err(e) => wrong.push(format!("a later refresh on worker {w}: no answer: {e}")),
            }
        }
        if let Some((access, _)) = pairs.iter().next() {
            let r = rig.envoy.send(&api(access));
            if r.status != 200 {
                wrong.push(format!("the new access token is refused: {r}"));
            }
        }
        let after_kill: Vec<String> =
            answers.iter().map(|(w, r, took)| format!("w{w}:{}@{:?}", r.as_ref().map_or(0, |r| r.status), took.saturating_sub(killed.duration_since(start)))).collect();
        eprintln!(
            "REPORT leader gone [{}]: answers after the leader left {after_kill:?}; authority rotated +{} replayed +{}; edge refresh.ok={} coalesced={} shared={}",
            case.name,
            after.0 - before.0,
            after.1 - before.1,
            rig.envoy.stat("tollgate.refresh.ok"),
            rig.envoy.stat("tollgate.refresh.coalesced"),
            rig.envoy.stat("tollgate.refresh.shared")
        );
        if !wrong.is_empty() {
            failures.push(format!("✗ {}:\n    {}", case.name, wrong.join("\n    ")));
        }
    }
    assert!(failures.is_empty(), "a leader that went away stranded its waiters:\n{}", failures.join("\n"));
    assert_no_crash(&rig.envoy.stop());
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Header,
    Cookie,
}

struct StallCase {
    name: &'static str,
    mode: Mode,
    /// The access token is still valid (inside `refresh_before_seconds`).
    optional: bool,
}

#[test]
fn an_authority_that_stalls_past_wait_ms_gets_the_documented_answer_and_no_one_is_logged_out() {
    const TIMEOUT_MS: u64 = 1000;
    const WAIT_MS: u64 = 1500;
    // Past the callout's timeout and past the wait.
    const STALL: Duration = Duration::from_millis(4000);
    let rig = rig(TIMEOUT_MS, WAIT_MS);
    // The documented longest wait: a wait, the fall-back callout's own
    // wait, and the tick that notices each.
    let bound = Duration::from_millis(2 * WAIT_MS + 2 * TICK_MS) + CLIENT_SLACK;
    let cases = [
        StallCase { name: "header mode, expired access token", mode: Mode::Header, optional: false },
        StallCase { name: "cookie mode, expired access token", mode: Mode::Cookie, optional: false },
        StallCase { name: "header mode, optional refresh", mode: Mode::Header, optional: true },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let login = rig.authority.login_alice();
        let now = tokens::now();
        let access = if case.optional { remint(&login.access_token, now + 10, now - 600) } else { expired_copy(&login.access_token) };
        let request = |n: usize| match case.mode {
            Mode::Header => header_mode(&access, &login.refresh_token, n),
            Mode::Cookie => cookie_mode(&access, &login.refresh_token, n),
        };
        let before = outcomes(&rig.authority);
        let sent = rig.proxy.count(TOKEN);
        rig.proxy.delay_path(TOKEN, Some(STALL));
        // Three requests on each worker, the same refresh token.
        let conns: Vec<Pinned> = workers::pinned(&rig.envoy, &[3, 3]).into_iter().flatten().collect();
        let start = Instant::now();
        let handles: Vec<_> = conns.into_iter().enumerate().map(|(i, c)| answer_later(c, request(i), start)).collect();
        let answers: Vec<_> = handles.into_iter().map(|h| h.join().expect("client thread")).collect();
        let stalled_calls = rig.proxy.count(TOKEN) - sent;

        let mut wrong = Vec::new();
        for (worker, r, took) in &answers {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    wrong.push(format!("worker {worker}: no answer after {took:?}: {e}"));
                    continue;
                }
            };
            if *took > bound {
                wrong.push(format!("worker {worker}: answered after {took:?} > {bound:?}"));
            }
            if !set_cookies(r).is_empty() || r.header("x-tollgate-access-token").is_some() {
                wrong.push(format!("worker {worker}: a new or cleared credential on a failed refresh: {r}"));
            }
            if case.optional {
                // The request goes on with the still-valid token.
                if r.status != 200 || r.upstream_header("authorization") != [format!("Bearer {access}")] {
                    wrong.push(format!("worker {worker}: an optional refresh must not fail the request: {r}"));
                } else if r.upstream_header("x-tollgate-sub") != ["alice"] {
                    wrong.push(format!("worker {worker}: the identity of the valid token goes upstream: {r}"));
                }
            } else {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                if r.status != 503
                    || body["error_description"] != "authority unavailable for refresh"
                    || r.header("retry-after") != Some("1")
                {
                    wrong.push(format!("worker {worker}: want 503 \"authority unavailable for refresh\" with Retry-After: 1, got {r}"));
                }
            }
        }

        // The stall ends: the held requests reach the authority, which
        // rotates once and replays the same pair to the rest.
        let reached = poll(STALL * 3, Duration::from_millis(20), || (outcomes(&rig.authority).0 > before.0).then_some(()));
        rig.proxy.delay_path(TOKEN, None);
        if reached.is_none() {
            wrong.push("the stalled refresh never reached the authority".into());
        }
        // Let every held request land before the retry is counted.
        let _ = poll(STALL * 2, Duration::from_millis(20), || {
            let (r, p, u) = outcomes(&rig.authority);
            (r + p + u - before.0 - before.1 - before.2 >= stalled_calls).then_some(())
        });
        // The client retries with the refresh token it has: the pair minted
        // during the stall (grace window), on either worker, the same one.
        let mut pairs = BTreeSet::new();
        for c in workers::pinned(&rig.envoy, &[1, 1]).into_iter().flatten() {
            let w = c.worker;
            let retry = match case.mode {
                Mode::Header => header_mode(&expired_copy(&login.access_token), &login.refresh_token, 50 + w),
                Mode::Cookie => cookie_mode(&expired_copy(&login.access_token), &login.refresh_token, 50 + w),
            };
            let (_, r, took) = answer_later(c, retry, Instant::now()).join().expect("client thread");
            match r {
                Ok(r) if r.status == 200 && took <= rig.timing.callout_bound() => {
                    let pair = match case.mode {
                        Mode::Header => pair_of(&r),
                        Mode::Cookie => set_cookie(&r, "tg_access").zip(set_cookie(&r, "tg_refresh")).map(|(a, b)| (a.0, b.0)),
                    };
                    match pair {
                        Some(p) => {
                            pairs.insert(p);
                        }
                        None => wrong.push(format!("retry on worker {w}: 200 without the new pair: {r}")),
                    }
                }
                Ok(r) => wrong.push(format!("retry on worker {w} after the stall: {} after {took:?}: {r}", r.status)),
                Err(e) => wrong.push(format!("retry on worker {w} after the stall: no answer: {e}")),
            }
        }
        let after = outcomes(&rig.authority);
        if after.0 - before.0 != 1 || after.1 <= before.1 || after.2 != before.2 {
            wrong.push(format!(
                "at the authority: rotated +{}, replayed +{}, reuse +{} (want +1, ≥ +1, +0: the stall logged nobody out)",
                after.0 - before.0,
                after.1 - before.1,
                after.2 - before.2
            ));
        }
        if pairs.len() != 1 {
            wrong.push(format!("both workers hand out the pair minted during the stall, got {} different", pairs.len()));
        } else if let Some((a, _)) = pairs.iter().next() {
            if claims_of(a)["sid"] != claims_of(&login.access_token)["sid"] {
                wrong.push("the retry's pair is not of the same session".into());
            }
        }
        let idle = poll(Duration::from_secs(2), Duration::from_millis(10), || (workers::active_requests(&rig.envoy) == 0).then_some(()));
        if idle.is_none() {
            wrong.push(format!("{} requests still in progress", workers::active_requests(&rig.envoy)));
        }
        let times: Vec<String> = answers.iter().map(|(w, r, t)| format!("w{w}:{}@{t:?}", r.as_ref().map_or(0, |r| r.status))).collect();
        eprintln!(
            "REPORT stall [{}]: {stalled_calls} callouts held; answers {times:?} (bound {bound:?}); authority rotated +{} replayed +{} reuse +{}",
            case.name,
            after.0 - before.0,
            after.1 - before.1,
            after.2 - before.2
        );
        if !wrong.is_empty() {
            failures.push(format!("✗ {}:\n    {}", case.name, wrong.join("\n    ")));
        }
    }
    assert!(failures.is_empty(), "a stalled authority was not survived as documented:\n{}", failures.join("\n"));
    assert_no_crash(&rig.envoy.stop());
}
