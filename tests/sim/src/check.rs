//! The invariants of `src/edge/mod.rs`, judged on what a run recorded.
//! Some are checked as the run goes (in [`crate::world`]: answers given
//! twice or after the request was gone, resume flags, the credential, the
//! minimums of every worker and of the published set after every call);
//! the rest here, once the run is over.

use crate::authority::Endpoint;
use crate::world::{CalloutRec, Prop, World};
use std::collections::BTreeMap;
use tollgate::refresh::Outcome;

/// What a run exercised, per property (how many cases each check judged).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub callouts: u64,
    pub exercised: BTreeMap<Prop, u64>,
    /// Pairs of refresh callouts not judged: their slot was another token's.
    pub slot_collisions: u64,
    /// Host calls of one worker that ran while another's call was stopped at one.
    pub interleavings: u64,
    /// Workers killed, and of those, killed inside a call (at a host call).
    pub kills: u64,
    pub kills_in_call: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.callouts += other.callouts;
        self.slot_collisions += other.slot_collisions;
        self.interleavings += other.interleavings;
        self.kills += other.kills;
        self.kills_in_call += other.kills_in_call;
        for (p, n) in &other.exercised {
            *self.exercised.entry(*p).or_insert(0) += n;
        }
    }

    fn bump(&mut self, p: Prop, n: u64) {
        *self.exercised.entry(p).or_insert(0) += n;
    }
}

/// Judges the run; violations go to `world.violations`.
pub fn check(world: &mut World) -> Stats {
    let mut stats = Stats {
        requests: world.reqs.iter().filter(|r| r.arrived.is_some()).count() as u64,
        callouts: world.callouts.iter().filter(|c| c.dispatch_ok).count() as u64,
        interleavings: world.interleavings,
        kills: world.deaths.len() as u64,
        kills_in_call: world.deaths.iter().filter(|d| d.in_call).count() as u64,
        ..Stats::default()
    };
    answered(world, &mut stats);
    refresh_once(world, &mut stats);
    revoked(world, &mut stats);
    never_synced(world, &mut stats);
    fresh_asks(world, &mut stats);
    lease(world, &mut stats);
    quiescent(world, &mut stats);
    stats.bump(Prop::Monotone, world.views_checked);
    stats
}

/// On a `fresh` rule with `max_staleness_ms: 0` no request is allowed on an
/// answer it did not wait for: an allowed one was paused for its live check,
/// never allowed in its own `on_request` (an answer received in the same
/// millisecond is as reused as an older one).
fn fresh_asks(world: &mut World, stats: &mut Stats) {
    if world.doc().fresh_staleness_ms != 0 {
        return;
    }
    let mut found = Vec::new();
    for (r, q) in world.reqs.iter().enumerate() {
        if !q.spec.fresh {
            continue;
        }
        for a in q.answers.iter().filter(|a| a.identity.is_some()) {
            stats.bump(Prop::FreshAsks, 1);
            if a.in_own_call {
                found
                    .push((a.at, format!("request {r}: allowed on the fresh rule at {} without a live check of its own", world.rel(a.at))));
            }
        }
    }
    for (at, what) in found {
        world.violate(Prop::FreshAsks, at, what);
    }
}

/// Every paused request is answered exactly once, within its bound (twice,
/// or after it was gone, is flagged as it happens).
fn answered(world: &mut World, stats: &mut Stats) {
    let mut found = Vec::new();
    for (r, q) in world.reqs.iter().enumerate() {
        let Some(arrived) = q.arrived else { continue };
        if q.refused {
            continue;
        }
        let paused = q.answers.first().is_none_or(|a| !a.in_own_call);
        if paused {
            stats.bump(Prop::Answered, 1);
        }
        match q.answers.first() {
            Some(a) if a.at > q.bound => found.push((
                a.at,
                format!("request {r}: answered {} ms after arriving, its bound is {} ms", a.at - arrived, q.bound - arrived),
            )),
            Some(_) => {}
            None if q.cancelled_at.is_some() || q.killed_at.is_some() => {}
            None if world.now < q.bound => found.push((world.now, format!("request {r}: the run ended before its bound"))),
            None => found.push((q.bound, format!("request {r}: never answered (stranded); arrived at {}", world.rel(arrived)))),
        }
    }
    for (at, what) in found {
        world.violate(Prop::Answered, at, what);
    }
}

/// How long a delivered refresh answer keeps the other workers of its Envoy
/// from calling: the claimant shares it for `share_ms` (a failure is shared
/// only with the requests already waiting; a new one asks again).
fn covers_until(world: &World, a: &CalloutRec) -> u64 {
    let death = world
        .deaths
        .iter()
        .find(|d| (d.envoy, d.worker, d.inc) == (a.envoy, a.worker, a.inc))
        .map_or(u64::MAX, |d| d.at);
    let end = match (a.delivered_at, a.lost_at) {
        (Some(at), _) => match Outcome::from_response(a.status, &a.body) {
            Outcome::Refreshed(_) | Outcome::Rejected => at + world.doc().share_ms,
            Outcome::Unavailable => at,
        },
        (None, Some(lost)) => lost,
        (None, None) => u64::MAX,
    };
    end.min(death)
}

/// At most one refresh callout per refresh token per Envoy while its
/// claimant lives: a callout is covered from its dispatch while its worker
/// lives and its answer can still come, and then while the answer is shared.
fn refresh_once(world: &mut World, stats: &mut Stats) {
    let mut by_token: BTreeMap<(usize, String), Vec<usize>> = BTreeMap::new();
    for (i, c) in world.callouts.iter().enumerate() {
        if c.dispatch_ok && c.endpoint == Endpoint::Token {
            if let Some(rt) = &c.refresh_token {
                by_token.entry((c.envoy, rt.clone())).or_default().push(i);
            }
        }
    }
    let mut found = Vec::new();
    for ((e, _), list) in &by_token {
        stats.bump(Prop::RefreshOnce, list.len() as u64);
        for (j, &b) in list.iter().enumerate() {
            let cb = &world.callouts[b];
            for &a in &list[..j] {
                let ca = &world.callouts[a];
                if cb.dispatched_at >= covers_until(world, ca) {
                    continue;
                }
                if ca.slot_taken_by_other || cb.slot_taken_by_other {
                    stats.slot_collisions += 1;
                    continue;
                }
                found.push((
                    cb.dispatched_at,
                    format!(
                        "envoy{e}: refresh callout #{} of worker{} (inc {}, ctx {}{}) while #{} of worker{} (inc {}, ctx {}{}, dispatched at {}) still covers it",
                        cb.token,
                        cb.worker,
                        cb.inc,
                        cb.ctx,
                        if cb.root { " root" } else { "" },
                        ca.token,
                        ca.worker,
                        ca.inc,
                        ca.ctx,
                        if ca.root { " root" } else { "" },
                        world.rel(ca.dispatched_at)
                    ),
                ));
                break;
            }
        }
    }
    for (at, what) in found {
        world.violate(Prop::RefreshOnce, at, what);
    }
}

/// Whether Envoy `e`'s feed ran without faults over `[from, to]`: the
/// authority up, no network faults, no worker of `e` killed (a lease
/// handover), and `e` synced before `from`.
fn feed_healthy(world: &World, e: usize, from: u64, to: u64) -> bool {
    let doc = world.doc();
    let lease_from = from.saturating_sub(3 * doc.sync_interval_ms + doc.timeout_ms);
    let net_ok = {
        let mut current = world.net_changes.iter().rev().find(|(t, _)| *t <= from).map(|(_, n)| *n);
        let mut ok = true;
        for (t, n) in &world.net_changes {
            if *t > from && *t <= to {
                current = Some(*n);
            }
            if let Some(n) = current {
                ok &= !n.faulty_for(Endpoint::Feed);
            }
        }
        ok && current.is_some_and(|n| n.rtt_max < doc.timeout_ms)
    };
    let up = world.outages.iter().all(|(s, end)| end.is_some_and(|end| end < from) || *s > to);
    let no_deaths = world.deaths.iter().all(|d| d.envoy != e || d.at < lease_from || d.at > to);
    let synced = world.syncs.iter().any(|s| s.envoy == e && s.at < from);
    net_ok && up && no_deaths && synced
}

/// No revoked token is accepted once its Envoy applied a feed page read
/// after the revocation (plus one tick, for the other workers to reload);
/// with a healthy feed, none after sync interval + round trip + one tick.
fn revoked(world: &mut World, stats: &mut Stats) {
    let doc = world.doc().clone();
    let tick = doc.tick_ms();
    // A poll is due every interval, at the first tick after it.
    let poll_slack = if doc.sync_interval_ms % tick == 0 { 0 } else { tick };
    let healthy_bound = doc.sync_interval_ms + poll_slack + world.net.rtt_max.max(world.setup.net.rtt_max) + tick;
    let mut found = Vec::new();
    for (r, q) in world.reqs.iter().enumerate() {
        let Some((e, ..)) = q.at else { continue };
        for a in &q.answers {
            let Some(id) = &a.identity else { continue };
            for b in &world.bumps {
                let hit = b.key == format!("sub:{}", id.sub) || id.sid.as_ref().is_some_and(|s| b.key == format!("sid:{s}"));
                if !hit || id.ver >= b.min || b.at > a.at {
                    continue;
                }
                stats.bump(Prop::Revoked, 1);
                let applied = world.syncs.iter().filter(|s| s.envoy == e && s.generated_seq > b.seq).map(|s| s.at).min();
                if let Some(applied) = applied {
                    if a.at > applied + tick {
                        found.push((a.at, format!(
                            "request {r}: {}@{} accepted at {} by envoy{e}, revoked ({} → {}) at {}, synced at {}",
                            b.key, id.ver, world.rel(a.at), b.key, b.min, world.rel(b.at), world.rel(applied)
                        )));
                        continue;
                    }
                }
                if a.at > b.at + healthy_bound && feed_healthy(world, e, b.at, b.at + healthy_bound) {
                    found.push((a.at, format!(
                        "request {r}: {}@{} accepted at {} by envoy{e}, revoked at {}: later than sync interval + round trip + tick ({healthy_bound} ms) with a healthy feed",
                        b.key, id.ver, world.rel(a.at), world.rel(b.at)
                    )));
                }
            }
        }
    }
    for (at, what) in found {
        world.violate(Prop::Revoked, at, what);
    }
}

/// A token is never allowed before its Envoy ever synced, nor (with
/// `on_stale: deny`) on a set older than `max_staleness_ms`.
fn never_synced(world: &mut World, stats: &mut Stats) {
    let doc = world.doc().clone();
    let mut found = Vec::new();
    for (r, q) in world.reqs.iter().enumerate() {
        let Some((e, ..)) = q.at else { continue };
        let first_sync = world.syncs.iter().filter(|s| s.envoy == e).map(|s| s.at).min();
        for a in &q.answers {
            let token_request = q.presented.is_some();
            if token_request && first_sync.is_none_or(|s| a.at < s) {
                stats.bump(Prop::NeverSynced, 1);
            }
            if a.identity.is_none() {
                continue;
            }
            if first_sync.is_none_or(|s| a.at < s) || a.synced_at.is_none() {
                found.push((a.at, format!("request {r}: a token allowed by envoy{e} at {} before it ever synced", world.rel(a.at))));
                continue;
            }
            let age = a.at.saturating_sub(a.synced_at.unwrap_or(0));
            if !doc.on_stale_allow && age > doc.max_staleness_ms {
                found.push((a.at, format!(
                    "request {r}: a token allowed by envoy{e} at {} on a set {age} ms old (max_staleness_ms {}, on_stale deny)",
                    world.rel(a.at), doc.max_staleness_ms
                )));
            }
        }
    }
    for (at, what) in found {
        world.violate(Prop::NeverSynced, at, what);
    }
}

/// One poller per Envoy: a worker polls at most once per sync interval;
/// another takes the lease (writes it) only once it ran out (3 × sync
/// interval after its holder last wrote it); and when the holder dies with
/// another worker alive, another takes it within 3 × sync interval (+ a
/// tick) of the holder's last write.
fn lease(world: &mut World, stats: &mut Stats) {
    let doc = world.doc().clone();
    let interval = doc.sync_interval_ms;
    let lease_ms = 3 * interval;
    let mut found = Vec::new();
    for e in 0..world.envoy_count() {
        let polls: Vec<&CalloutRec> = world.callouts.iter().filter(|c| c.envoy == e && c.endpoint == Endpoint::Feed).collect();
        stats.bump(Prop::Lease, polls.len() as u64);
        for pair in polls.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let gap = b.dispatched_at - a.dispatched_at;
            if (a.worker, a.inc) == (b.worker, b.inc) && gap < interval {
                found.push((b.dispatched_at, format!("envoy{e}/worker{}: polled again after {gap} ms (sync interval {interval})", b.worker)));
            }
        }
        let writes: Vec<(usize, u64, u64)> =
            world.lease_writes.iter().filter(|l| l.0 == e).map(|&(_, w, inc, at)| (w, inc, at)).collect();
        for pair in writes.windows(2) {
            let ((wa, ia, ta), (wb, ib, tb)) = (pair[0], pair[1]);
            if (wa, ia) != (wb, ib) && tb - ta < lease_ms {
                found.push((tb, format!(
                    "envoy{e}: worker{wb} (inc {ib}) took the lease {} ms after worker{wa} (inc {ia}) took it for {lease_ms} ms: two pollers",
                    tb - ta
                )));
            }
        }
        // Handovers: the holder died; another worker that lives on takes over in time.
        for d in world.deaths.iter().filter(|d| d.envoy == e) {
            let Some(&(w, inc, last)) = writes.iter().rev().find(|l| l.2 <= d.at) else { continue };
            if (w, inc) != (d.worker, d.inc) {
                continue;
            }
            let deadline = last + lease_ms + doc.tick_ms();
            let survivor = (0..world.worker_count()).any(|x| x != d.worker && world.alive_throughout(e, x, d.at, deadline));
            if !survivor || world.now < deadline {
                continue;
            }
            stats.bump(Prop::Lease, 1);
            let taken = writes.iter().any(|&(x, i, at)| at > d.at && at <= deadline && (x, i) != (d.worker, d.inc));
            if !taken {
                found.push((deadline, format!(
                    "envoy{e}: worker{} died at {} holding the lease (last taken at {}); no other worker took it by {}",
                    d.worker, world.rel(d.at), world.rel(last), world.rel(deadline)
                )));
            }
        }
    }
    for (at, what) in found {
        world.violate(Prop::Lease, at, what);
    }
}

/// At the end, with every client answered or gone, no live worker holds a
/// paused request.
fn quiescent(world: &mut World, stats: &mut Stats) {
    let mut found = Vec::new();
    for e in 0..world.envoy_count() {
        for w in 0..world.worker_count() {
            if world.alive(e, w) && world.paused(e, w) > 0 {
                found.push(format!("envoy{e}/worker{w}: {} requests still paused at the end of the run", world.paused(e, w)));
            }
        }
    }
    stats.bump(Prop::Protocol, 1);
    for what in found {
        world.violate(Prop::Protocol, world.now, what);
    }
}

/// Judges the run and fails with its violations and the end of its trace.
pub fn assert_clean(world: &mut World) -> Stats {
    let stats = check(world);
    if !world.violations.is_empty() {
        let list: Vec<String> = world.violations.iter().take(20).map(|v| format!("  [{}] {}", v.prop.name(), v.what)).collect();
        panic!(
            "seed {}: {} violations:\n{}\n\nthe end of its trace:\n{}",
            world.setup.seed,
            world.violations.len(),
            list.join("\n"),
            world.trace_tail(100)
        );
    }
    stats
}
