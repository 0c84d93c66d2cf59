//! Scripted runs of the situations the edge engine was built for. Each runs
//! over a few seeds (the seed picks the interleaving of concurrent workers,
//! tick phases and delays) and, besides its own assertions, judges every
//! invariant on the run (`assert_clean`). `SIM_SEED=<n>` runs one seed.

use tollgate_sim::authority::Endpoint;
use tollgate_sim::check::assert_clean;
use tollgate_sim::doc::DocSpec;
use tollgate_sim::plan::{say, seeds};
use tollgate_sim::world::{Access, Mode, Net, Setup, Who, World};

fn world(seed: u64, envoys: usize, workers: usize, doc: DocSpec, net: Net) -> World {
    World::new(Setup { seed, envoys, workers, doc, net, tick_spread: 3, warm: true, preset: Vec::new() })
}

/// Every request answered once, with `status`, within its bound.
fn answered_with(w: &World, reqs: &[usize], status: u16) {
    for &r in reqs {
        let q = &w.reqs[r];
        assert_eq!(w.statuses(r), vec![status], "request {r} (seed {}):\n{}", w.setup.seed, w.trace_tail(60));
        let at = q.answers[0].at;
        assert!(at <= q.bound, "request {r} answered {} ms late", at - q.bound);
    }
}

#[test]
fn a_refresh_storm_on_four_workers_of_two_envoys_makes_one_callout_per_envoy() {
    for seed in seeds(6) {
        let mut w = world(seed, 2, 4, DocSpec::default(), Net::healthy(20, 60));
        let s = w.add_session(Mode::Cookie, Access::Expired, false);
        w.start(0);
        let mut storm = Vec::new();
        for e in 0..2 {
            for worker in 0..4 {
                for _ in 0..2 {
                    storm.push(w.send(1_500, Who::Session(s), e, worker));
                }
            }
        }
        w.run_until(8_000);
        let rt = w.sessions[s].refresh.clone().expect("refresh token");
        for e in 0..2 {
            assert_eq!(w.refresh_callouts(e, &rt), 1, "seed {seed}: envoy{e} refreshed more than once:\n{}", w.trace_tail(60));
            assert!(w.counter(e, "refresh.shared") >= 1, "the other workers took the shared answer");
            assert!(w.counter(e, "refresh.coalesced") >= 1, "the second request of a worker followed the first");
        }
        answered_with(&w, &storm, 200);
        for &r in &storm {
            let id = w.reqs[r].answers[0].identity.clone().expect("an identity");
            assert_eq!(id.sid.as_deref(), Some(w.sessions[s].family.sid.as_str()));
        }
        let stats = assert_clean(&mut w);
        say(&format!("storm seed {seed}: 16 requests, 2 refresh callouts, {} interleaved steps", stats.interleavings));
    }
}

#[test]
fn authority_down_then_back() {
    for seed in seeds(4) {
        // A refresh answer is shared for half a second: the expired session
        // (every second) asks the authority each time.
        let doc = DocSpec { timeout_ms: 500, sync_interval_ms: 1_000, max_staleness_ms: 3_000, share_ms: 500, ..DocSpec::default() };
        let mut w = world(seed, 2, 2, doc.clone(), Net::healthy(5, 40));
        let alice = w.add_bearer("user1", None);
        let bob = w.add_bearer("user2", None);
        let expired = w.add_session(Mode::Header, Access::Expired, false);
        w.start(2);
        let (down, up) = (3_000, 9_000);
        w.authority_down(down, true);
        w.authority_down(up, false);
        // Revoked while the edges cannot hear of it.
        w.revoke(5_000, "sub:user2");
        let mut sent = Vec::new();
        for i in 0..140u64 {
            let at = 500 + i * 100;
            let (e, worker) = ((i % 2) as usize, ((i / 2) % 2) as usize);
            sent.push((at, "alice", w.send(at, Who::Bearer(alice), e, worker)));
            sent.push((at, "bob", w.send(at, Who::Bearer(bob), e, worker)));
            if i % 10 == 0 {
                sent.push((at, "expired", w.send(at, Who::Session(expired), e, worker)));
            }
        }
        w.run_until(20_000);
        let tick = doc.tick_ms();
        let stale_from = down + doc.max_staleness_ms + tick;
        let synced_again = up + doc.sync_interval_ms + 40 + tick;
        for (at, who, r) in sent {
            let status = w.statuses(r);
            let want = match who {
                _ if at < 300 => continue,
                "alice" | "bob" if at < down => 200,
                "alice" | "bob" if (stale_from..up).contains(&at) => 503,
                "alice" if at >= synced_again => 200,
                "bob" if at >= synced_again => 401,
                "expired" if (down..up).contains(&at) => 503,
                "expired" if at >= synced_again || at < down => 200,
                _ => continue,
            };
            assert_eq!(status, vec![want], "seed {seed}: {who} at {at}:\n{}", w.trace_tail(40));
        }
        assert_clean(&mut w);
    }
}

#[test]
fn a_leader_cancelled_mid_refresh_leaves_no_follower_waiting() {
    for seed in seeds(4) {
        // Every callout takes 300 ms: the leader leaves before its answer.
        let mut w = world(seed, 1, 2, DocSpec::default(), Net::healthy(300, 300));
        let s = w.add_session(Mode::Cookie, Access::Expired, false);
        w.start(0);
        let leader = w.send(2_000, Who::Session(s), 0, 0);
        let followers = [w.send(2_001, Who::Session(s), 0, 0), w.send(2_002, Who::Session(s), 0, 0)];
        let elsewhere = w.send(2_003, Who::Session(s), 0, 1);
        w.cancel(2_100, leader);
        w.run_until(8_000);
        assert!(w.reqs[leader].answers.is_empty(), "the leader left before any answer");
        let rt = w.sessions[s].refresh.clone().expect("refresh token");
        // The leader's callout (its answer goes nowhere) and the worker's own
        // fall-back from its root context: the authority replays the pair.
        let calls: Vec<_> = w.callouts.iter().filter(|c| c.refresh_token.as_deref() == Some(rt.as_str())).collect();
        assert_eq!(calls.len(), 2, "seed {seed}:\n{}", w.trace_tail(40));
        assert!(!calls[0].root && calls[0].lost_at.is_some() && calls[1].root);
        answered_with(&w, &followers, 200);
        answered_with(&w, &[elsewhere], 200);
        // Fall-back made at the first tick after the leader left, answered 300 ms later.
        for r in followers {
            assert!(w.latency(r).unwrap() <= 100 + DocSpec::default().tick_ms() + 300, "seed {seed}: follower waited {:?}", w.latency(r));
        }
        assert_clean(&mut w);
    }
}

/// A fall-back callout that fails too still answers its requests. Faults
/// hit only refresh and live-check callouts; the feed stays healthy.
fn fallback_times_out(seed: u64, endpoint: Endpoint, dispatch_fails: bool) -> World {
    let doc = DocSpec { timeout_ms: 500, wait_ms: 1_000, ..DocSpec::default() };
    let mut w = world(seed, 1, 2, doc, Net::healthy(10, 30));
    w.start(0);
    let mut broken = Net::healthy(10, 30);
    broken.faults_on = Some(endpoint);
    if dispatch_fails {
        broken.dispatch_fail = 1_000;
    } else {
        broken.drop = 1_000;
    }
    // The first callout is merely slow (the leader leaves before it ends);
    // from then on every callout of the endpoint fails.
    w.set_net(1_990, Net::healthy(400, 400));
    w.set_net(2_050, broken);
    w
}

#[test]
fn a_fallback_refresh_that_times_out_still_answers_its_followers() {
    for seed in seeds(4) {
        let mut w = fallback_times_out(seed, Endpoint::Token, false);
        let s = w.add_session(Mode::Cookie, Access::Expired, false);
        let leader = w.send(2_000, Who::Session(s), 0, 0);
        let followers = [w.send(2_001, Who::Session(s), 0, 0), w.send(2_002, Who::Session(s), 0, 0)];
        w.cancel(2_060, leader);
        w.run_until(10_000);
        // Needed refreshes the authority could not make: 503, each once.
        answered_with(&w, &followers, 503);
        let fallbacks = w.callouts.iter().filter(|c| c.endpoint == Endpoint::Token && c.root).count();
        assert_eq!(fallbacks, 1, "one fall-back, and it timed out");
        assert_clean(&mut w);
    }
}

#[test]
fn a_fallback_refresh_whose_dispatch_fails_still_answers_its_followers() {
    for seed in seeds(4) {
        let mut w = fallback_times_out(seed, Endpoint::Token, true);
        let s = w.add_session(Mode::Header, Access::Expired, false);
        let leader = w.send(2_000, Who::Session(s), 0, 0);
        let followers = [w.send(2_001, Who::Session(s), 0, 0), w.send(2_002, Who::Session(s), 0, 0)];
        w.cancel(2_060, leader);
        w.run_until(10_000);
        answered_with(&w, &followers, 503);
        assert_clean(&mut w);
    }
}

#[test]
fn a_waiter_whose_claimant_died_falls_back_and_is_answered_when_that_times_out() {
    for seed in seeds(4) {
        let mut w = fallback_times_out(seed, Endpoint::Token, false);
        let s = w.add_session(Mode::Cookie, Access::Expired, false);
        // Worker 0 claims the refresh and dies; worker 1 waits on its claim.
        let claimant = w.send(2_000, Who::Session(s), 0, 0);
        let waiters = [w.send(2_001, Who::Session(s), 0, 1), w.send(2_002, Who::Session(s), 0, 1)];
        w.kill(2_010, 0, 0, false, None);
        w.run_until(10_000);
        assert!(w.reqs[claimant].killed_at.is_some());
        answered_with(&w, &waiters, 503);
        assert_clean(&mut w);
    }
}

#[test]
fn a_fallback_live_check_that_times_out_still_answers_its_followers() {
    for seed in seeds(4) {
        let mut w = fallback_times_out(seed, Endpoint::Versions, false);
        let b = w.add_bearer("user3", Some("api_9"));
        let leader = w.send_fresh(2_000, Who::Bearer(b), 0, 0);
        let followers = [w.send_fresh(2_001, Who::Bearer(b), 0, 0), w.send_fresh(2_002, Who::Bearer(b), 0, 0)];
        w.cancel(2_060, leader);
        w.run_until(10_000);
        answered_with(&w, &followers, 503);
        let fallbacks = w.callouts.iter().filter(|c| c.endpoint == Endpoint::Versions && c.root).count();
        assert_eq!(fallbacks, 1, "one fall-back live check, and it timed out");
        assert_clean(&mut w);
    }
}

#[test]
fn a_revocation_reaches_every_worker_within_sync_interval_round_trip_and_a_tick() {
    for seed in seeds(4) {
        let doc = DocSpec::default();
        let rtt = 50;
        let mut w = world(seed, 2, 3, doc.clone(), Net::healthy(rtt, rtt));
        let b = w.add_bearer("user4", Some("api_4"));
        w.start(3);
        let revoked_at = 2_345;
        w.revoke(revoked_at, "sid:api_4");
        let mut sent = Vec::new();
        for i in 0..400u64 {
            let at = 1_000 + i * 10;
            sent.push((at, w.send(at, Who::Bearer(b), (i % 2) as usize, ((i / 2) % 3) as usize)));
        }
        w.run_until(8_000);
        let bound = revoked_at + doc.sync_interval_ms + rtt + doc.tick_ms();
        let mut last_allowed = 0;
        for (at, r) in sent {
            match w.statuses(r).as_slice() {
                [200] => last_allowed = at,
                [401] => assert!(at > revoked_at),
                other => panic!("request at {at}: {other:?}"),
            }
            if at > bound {
                assert_eq!(w.statuses(r), vec![401], "seed {seed}: still allowed at {at}, bound {bound}");
            }
        }
        say(&format!("revocation seed {seed}: last allowed {} ms after the revocation (bound {} ms)", last_allowed.saturating_sub(revoked_at), bound - revoked_at));
        assert_clean(&mut w);
    }
}

#[test]
fn a_dead_pollers_lease_is_taken_over_within_three_sync_intervals() {
    for seed in seeds(4) {
        let doc = DocSpec { sync_interval_ms: 500, max_staleness_ms: 5_000, ..DocSpec::default() };
        let mut w = world(seed, 1, 3, doc.clone(), Net::healthy(5, 20));
        let b = w.add_bearer("user0", None);
        w.start(3);
        w.run_until(3_000);
        let feed = |w: &World| w.callouts.iter().filter(|c| c.endpoint == Endpoint::Feed).cloned().collect::<Vec<_>>();
        let before = feed(&w);
        let poller = before.last().expect("a poll").worker;
        assert!(before.iter().skip(1).all(|c| c.worker == poller), "one poller from the start");
        w.kill(3_000, 0, poller, false, None);
        for i in 0..60u64 {
            w.send(3_000 + i * 100, Who::Bearer(b), 0, (poller + 1 + (i as usize % 2)) % 3);
        }
        w.run_until(10_000);
        let after: Vec<_> = feed(&w).into_iter().filter(|c| c.dispatched_at > w.t0 + 3_000).collect();
        let first = after.first().expect("another worker polls");
        let last_before = before.last().unwrap().dispatched_at - w.t0;
        let took = first.dispatched_at - w.t0;
        assert_ne!(first.worker, poller);
        assert!(took <= last_before + 3 * doc.sync_interval_ms + doc.tick_ms(), "seed {seed}: taken over at {took}, last poll {last_before}");
        assert!(after.iter().all(|c| (c.worker, c.inc) == (first.worker, first.inc)), "one poller after the handover");
        say(&format!("lease seed {seed}: worker{poller} died at 3000 (last poll {last_before}), worker{} polled at {took}", first.worker));
        assert_clean(&mut w);
    }
}

#[test]
fn an_envoy_that_never_synced_allows_no_token() {
    for seed in seeds(4) {
        let mut w = world(seed, 2, 2, DocSpec { on_stale_allow: true, ..DocSpec::default() }, Net::healthy(5, 20));
        let b = w.add_bearer("user1", None);
        let s = w.add_session(Mode::Cookie, Access::Valid, false);
        w.authority_down(0, true);
        w.start(0);
        w.authority_down(3_000, false);
        let mut early = Vec::new();
        let mut anonymous = Vec::new();
        for i in 0..25u64 {
            let (e, worker) = ((i % 2) as usize, ((i / 2) % 2) as usize);
            early.push(w.send(i * 100, Who::Bearer(b), e, worker));
            early.push(w.send(i * 100 + 1, Who::Session(s), e, worker));
            anonymous.push(w.send(i * 100 + 2, Who::Anonymous, e, worker));
        }
        let late = w.send(5_000, Who::Bearer(b), 0, 0);
        w.run_until(8_000);
        // Whatever on_stale says: a version never learned is never read as 0.
        for r in early.iter().filter(|&&r| w.reqs[r].arrived.unwrap() < w.t0 + 3_000) {
            assert_eq!(w.statuses(*r), vec![503], "seed {seed}: request {r}");
        }
        answered_with(&w, &anonymous, 200);
        answered_with(&w, &[late], 200);
        assert_clean(&mut w);
    }
}

/// `max_staleness_ms: 0` on the fresh rule: each request arrives in the
/// millisecond the previous one's live answer lands, just after it (rtt fixed
/// at 10 ms, one request every 10 ms, each sent once the answer is due), and
/// still asks: an answer the request did not wait for is never reused, however
/// young (also judged by `fresh-with-staleness-0-always-asks`).
#[test]
fn a_request_in_the_millisecond_of_a_live_answer_asks_again_under_staleness_0() {
    for seed in seeds(4) {
        let mut w = world(seed, 1, 1, DocSpec::default(), Net::healthy(10, 10));
        let b = w.add_bearer("user6", Some("api_6"));
        w.start(3);
        let mut reqs = Vec::new();
        for i in 0..20 {
            let at = 2_000 + i * 10;
            // Run to just before `at`: the previous request's answer, due at
            // `at`, is queued first, so it lands before this arrival.
            w.run_until(at - 1);
            reqs.push(w.send_fresh(at, Who::Bearer(b), 0, 0));
        }
        w.run_until(5_000);
        answered_with(&w, &reqs, 200);
        let checks = w.callouts.iter().filter(|c| c.endpoint == Endpoint::Versions).count();
        assert_eq!(checks, 20, "seed {seed}: 20 requests one after the other, each asks:\n{}", w.trace_tail(60));
        assert_clean(&mut w);
    }
}
