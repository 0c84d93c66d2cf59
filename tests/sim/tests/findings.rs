//! Engine bugs the simulation found, one test each, with the seeds that
//! show them. They fail until the engine is fixed, so they are ignored by
//! default (every run lists them, with their finding): a plain
//! `cargo test -p tollgate-sim` then fails only on something new. Run them
//! with `cargo test -p tollgate-sim --test findings -- --include-ignored`,
//! and drop the `ignore` of each one the engine fixes. The property tests
//! keep the triggers of findings 1-4 out of random runs unless `SIM_ALL=1`
//! (see `plan::with_known_bugs`), so that they keep finding new bugs.
//!
//! Each test runs seeds 1..=n (the seed picks how concurrent workers
//! interleave their shared-data calls); the seeds named in each test failed
//! when it was written. `SIM_SEED=<n>` replays one.

use tollgate::edge::{Keys, WORKERS_KEY};
use tollgate_sim::check::{assert_clean, check};
use tollgate_sim::doc::DocSpec;
use tollgate_sim::plan::seeds;
use tollgate_sim::world::{Access, Mode, Net, Prop, Setup, Who, World};

fn setup(seed: u64, workers: usize, doc: DocSpec, warm: bool, preset: &[(&str, &[u8])]) -> Setup {
    let preset = preset.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
    Setup { seed, envoys: 1, workers, doc, net: Net::healthy(5, 30), tick_spread: 0, warm, preset }
}

/// Seeds whose run broke `prop`, with the first violation.
fn broken(worlds: &mut [World], prop: Prop) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for w in worlds {
        check(w);
        if let Some(v) = w.violations.iter().find(|v| v.prop == prop) {
            out.push((w.setup.seed, v.what.clone()));
        }
    }
    out
}

/// Finding 1. On a fresh Envoy, workers that configure at the same moment
/// (Envoy configures its workers concurrently) can claim the same worker id:
/// `claim_worker_id` reads `tollgate.workers` as missing and writes `1`
/// with no cas, and Envoy ignores the cas of a missing key anyway. Two
/// workers with one id both hold the poller lease: two pollers, for good.
/// Failed at seeds 2, 3, 6, 7 (ids [1, 1, 1, 1], [1, 1, 2, 1], [3, 1, 1, 2], [1, 1, 1, 1]).
#[test]
fn finding_1_workers_that_start_together_get_distinct_ids() {
    let mut failed = Vec::new();
    for seed in seeds(8) {
        let mut w = World::new(setup(seed, 4, DocSpec::default(), false, &[]));
        w.start(0);
        w.run_until(50);
        let mut ids: Vec<u32> = (0..4).map(|x| w.worker_id(0, x)).collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        if ids.len() != before {
            failed.push((seed, (0..4).map(|x| w.worker_id(0, x)).collect::<Vec<_>>()));
        }
    }
    assert!(failed.is_empty(), "workers of one Envoy share an id (seed, ids): {failed:?}");
}

/// Finding 2. On a fresh Envoy, two workers whose first ticks coincide
/// both take the poller lease: `take_lease` reads the lease as missing and
/// writes it with no cas. (Worker ids are made distinct here, to show this
/// apart from finding 1.) Both poll once; the later write wins the lease, so
/// the other stops at its next poll. Failed at seeds 3, 5, 6, 7.
#[test]
fn finding_2_one_poller_on_a_fresh_envoy() {
    let mut worlds = Vec::new();
    for seed in seeds(8) {
        let mut w = World::new(setup(seed, 4, DocSpec::default(), false, &[(WORKERS_KEY, b"0")]));
        w.start(0);
        w.run_until(3_000);
        worlds.push(w);
    }
    let failed = broken(&mut worlds, Prop::Lease);
    assert!(failed.is_empty(), "two pollers on a fresh Envoy: {failed:#?}");
}

/// Finding 3. A refresh storm on a fresh Envoy makes several refresh
/// callouts for one token: a slot never written reads as missing, and
/// every worker that read it so claims it with no cas, and all succeed.
/// (Worker ids and the lease are warm here.) Failed at seeds 1, 2, 5, 8
/// (4, 2, 2 and 3 callouts from one Envoy).
#[test]
fn finding_3_a_refresh_storm_on_a_fresh_envoy_makes_one_callout() {
    let mut failed = Vec::new();
    for seed in seeds(8) {
        let lease = Keys::for_config(&DocSpec::default().config()).lease;
        let preset: &[(&str, &[u8])] = &[(WORKERS_KEY, b"0"), (lease.as_str(), b"0:0")];
        let mut w = World::new(setup(seed, 4, DocSpec::default(), false, preset));
        let s = w.add_session(Mode::Cookie, Access::Expired, false);
        w.start(3);
        for worker in 0..4 {
            for _ in 0..2 {
                w.send(1_500, Who::Session(s), 0, worker);
            }
        }
        w.run_until(6_000);
        let rt = w.sessions[s].refresh.clone().expect("refresh token");
        let n = w.refresh_callouts(0, &rt);
        if n != 1 {
            failed.push((seed, n));
        }
    }
    assert!(failed.is_empty(), "refresh callouts of one storm on a fresh Envoy (seed, callouts): {failed:?}");
}

/// Finding 4. With `refresh.share_ms: 0` (the document allows it) no answer
/// is ever shared, yet the other workers still wait on the claimant: they
/// wait their whole `wait_ms`, then each makes its own fall-back callout.
/// A request on another worker is answered `wait_ms` late, and the Envoy
/// refreshes twice. Failed at seeds 1-4 (about 3000 ms late, 2 callouts).
#[test]
fn finding_4_share_ms_zero_leaves_the_other_workers_waiting() {
    let mut failed = Vec::new();
    for seed in seeds(4) {
        let doc = DocSpec { share_ms: 0, ..DocSpec::default() };
        let tick = doc.tick_ms();
        let mut w = World::new(setup(seed, 2, doc, true, &[]));
        let s = w.add_session(Mode::Cookie, Access::Expired, false);
        w.start(0);
        let claimant = w.send(1_500, Who::Session(s), 0, 0);
        let other = w.send(1_500, Who::Session(s), 0, 1);
        w.run_until(8_000);
        let rt = w.sessions[s].refresh.clone().expect("refresh token");
        let (a, b) = (w.latency(claimant), w.latency(other));
        // Whichever of the two claimed first, the other learns its answer
        // at its next tick or two.
        let late = match (a, b) {
            (Some(a), Some(b)) => a.abs_diff(b) > 2 * tick + 30,
            _ => true,
        };
        if late || w.refresh_callouts(0, &rt) != 1 {
            failed.push((seed, a, b, w.refresh_callouts(0, &rt)));
        }
    }
    assert!(
        failed.is_empty(),
        "(seed, latency of the claimant's request, of the other worker's, refresh callouts): {failed:?}"
    );
}

/// Finding 5. A fall-back refresh callout (a group whose leader left, or
/// whose wait ran out) is made without a claim in the shared slot: once the
/// original claim expires, a request on another worker claims the slot and
/// calls too, while the fall-back is still in flight and its worker alive.
/// Here every callout takes 900 ms (timeout 1000); the leader leaves at
/// 2500, its worker falls back at its next tick, the claim expires at 3200,
/// another worker's request comes at 3300 and calls too. Failed at seeds 1-4.
/// The same root shows in long random runs (`SIM_SEEDS=300`, 9 seeds in
/// 1800), often as several workers falling back at once, each with its own
/// callout: seeds 71, 80, 185 (four callouts in one Envoy) of
/// `every_paused_request_is_answered_once_within_its_bound`; 299 of
/// `a_workers_minimums_never_go_back`; 223 of
/// `no_revoked_token_is_accepted_after_the_revocation_synced`; 256, 260,
/// 300 of `one_poller_per_envoy_and_a_dead_holder_loses_the_lease`; 137 of
/// `one_refresh_callout_per_token_per_envoy_while_its_claimant_lives`.
#[test]
fn finding_5_a_fallback_refresh_is_claimed_like_any_other() {
    for seed in seeds(4) {
        let mut w = World::new(Setup { net: Net::healthy(900, 900), ..setup(seed, 2, DocSpec::default(), true, &[]) });
        let s = w.add_session(Mode::Cookie, Access::Expired, false);
        w.start(0);
        let leader = w.send(2_000, Who::Session(s), 0, 0);
        w.send(2_001, Who::Session(s), 0, 0);
        w.cancel(2_500, leader);
        w.send(3_300, Who::Session(s), 0, 1);
        w.run_until(10_000);
        assert_clean(&mut w);
    }
}

/// Finding 6. A refresh failure overwrites a live shared answer of the same
/// token: `share` only keeps its hands off another token's slot, so a
/// failure published after a success (two callouts in flight, as finding 5
/// allows) replaces it, and the next request refreshes again although the
/// Envoy holds a good answer for `share_ms`. Here worker 0's fall-back
/// succeeds at 3400; worker 1's callout (made at 3300, finding 5) fails at
/// 4300; a request at 4400 calls the authority again. Failed at seeds 1-4.
#[test]
fn finding_6_a_failure_does_not_replace_a_shared_answer() {
    let mut failed = Vec::new();
    for seed in seeds(4) {
        let mut w = World::new(Setup { net: Net::healthy(900, 900), ..setup(seed, 2, DocSpec::default(), true, &[]) });
        let s = w.add_session(Mode::Cookie, Access::Expired, false);
        w.start(0);
        let leader = w.send(2_000, Who::Session(s), 0, 0);
        w.send(2_001, Who::Session(s), 0, 0);
        w.cancel(2_500, leader);
        let mut broken = Net::healthy(900, 900);
        broken.drop = 1_000;
        broken.faults_on = Some(tollgate_sim::authority::Endpoint::Token);
        w.set_net(3_250, broken);
        w.send(3_300, Who::Session(s), 0, 1);
        w.set_net(4_350, Net::healthy(5, 30));
        let late = w.send(4_400, Who::Session(s), 0, 0);
        w.run_until(10_000);
        let again = w.callouts.iter().filter(|c| c.refresh_token.is_some() && c.dispatched_at == w.t0 + 4_400).count();
        if again > 0 || w.statuses(late) != vec![200] {
            failed.push((seed, again, w.statuses(late), w.trace_tail(40)));
        }
    }
    if let Some((_, _, _, trace)) = failed.first() {
        let list: Vec<_> = failed.iter().map(|(s, n, a, _)| (s, n, a)).collect();
        panic!("(seed, refresh callouts at 4400, answer) with a good answer shared since 3400: {list:?}\n{trace}");
    }
}

/// Finding 7. A claim whose callout can no longer be answered (its leader
/// request left and the group had no followers) stays in the slot until it
/// expires, and every request that comes meanwhile, on any worker, the
/// claimant's own included, waits on it until its own `wait_ms` runs out,
/// then falls back (each worker its own callout). Here the leader leaves at
/// 2050; its claim expires at 3200; a request at 2100 could be served by
/// about 3200 + a tick + a round trip but waits until 2100 + 3000.
/// Failed at seeds 1-4 (answered about 3000 ms after arriving).
#[test]
fn finding_7_nobody_waits_on_a_claim_whose_callout_is_gone() {
    let mut failed = Vec::new();
    for seed in seeds(4) {
        let doc = DocSpec::default();
        let expiry = 2_000 + doc.timeout_ms + 200;
        let mut w = World::new(Setup { net: Net::healthy(300, 300), ..setup(seed, 2, doc.clone(), true, &[]) });
        let s = w.add_session(Mode::Cookie, Access::Expired, false);
        w.start(0);
        let leader = w.send(2_000, Who::Session(s), 0, 0);
        w.cancel(2_050, leader);
        let same = w.send(2_100, Who::Session(s), 0, 0);
        let other = w.send(2_100, Who::Session(s), 0, 1);
        w.run_until(10_000);
        let limit = expiry - 2_100 + doc.tick_ms() + 300 + 20;
        let late: Vec<_> = [same, other].into_iter().filter(|&r| w.latency(r).is_none_or(|l| l > limit)).map(|r| w.latency(r)).collect();
        if !late.is_empty() {
            failed.push((seed, late));
        }
    }
    assert!(failed.is_empty(), "(seed, latencies over the claim's expiry + a tick + a round trip): {failed:?}");
}
