//! Random runs from a seed, and the seed loop the property tests share.
//!
//! `SIM_SEED=<n>` replays one seed (and prints its whole trace);
//! `SIM_SEEDS=<n>` runs seeds 1..=n; `SIM_SOAK=1` runs 2000 seeds.

use crate::check::{check, Stats};
use crate::doc::DocSpec;
use crate::rng::Rng;
use crate::world::{Access, Mode, Net, Prop, RequestSpec, Setup, Violation, Who, World};
use std::io::Write;
use std::time::Instant;

/// What a property's runs stress.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    /// Network faults (drops, 5xx, slow answers, failed dispatches, duplicates).
    pub faults: bool,
    /// Up to this many worker kills (with restarts).
    pub kills: u64,
    pub outages: bool,
    /// Up to this many admin revocations.
    pub revocations: u64,
    /// Up to this many refresh storms (one session, many requests at one instant).
    pub storms: u64,
    /// Per-mille of runs whose network stays healthy throughout.
    pub healthy: u32,
    /// Clients start before the first sync.
    pub early: bool,
    /// Per-mille of runs on a fresh Envoy (shared data empty): every key's
    /// first write races (see `Setup::warm`).
    pub cold: u32,
    /// Client requests per run.
    pub requests: (u64, u64),
    /// How long clients send (ms).
    pub traffic_ms: (u64, u64),
}

impl Profile {
    pub fn base(name: &'static str) -> Profile {
        Profile {
            name,
            faults: true,
            kills: 2,
            outages: false,
            revocations: 2,
            storms: 2,
            healthy: 250,
            early: true,
            cold: 0,
            requests: (80, 200),
            traffic_ms: (3_000, 6_000),
        }
    }
}

fn salt(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Whether runs may also meet the engine bugs the simulation found and the
/// regression tests in `tests/findings.rs` pin down (a fresh Envoy's first
/// writes, `share_ms: 0`): `SIM_ALL=1`. Off by default, so that the
/// property tests keep finding new bugs rather than the known ones.
pub fn with_known_bugs() -> bool {
    std::env::var_os("SIM_ALL").is_some()
}

fn random_doc(rng: &mut Rng) -> DocSpec {
    let timeout_ms = *rng.pick(&[200, 300, 500, 1000]);
    let sync_interval_ms = *rng.pick(&[200, 300, 500, 1000]);
    DocSpec {
        timeout_ms,
        sync_interval_ms,
        max_staleness_ms: sync_interval_ms * *rng.pick(&[2, 3, 5]),
        on_stale_allow: rng.chance(250),
        wait_ms: *rng.pick(&[10, 500, 1500, 3000]),
        share_ms: if with_known_bugs() { *rng.pick(&[0, 1_000, 10_000, 10_000]) } else { *rng.pick(&[1_000, 10_000, 10_000]) },
        refresh_before_seconds: 30,
        fresh_staleness_ms: *rng.pick(&[0, 300]),
    }
}

fn random_net(rng: &mut Rng, doc: &DocSpec, faults: bool) -> Net {
    let rtt_min = rng.range(1, 5);
    let rtt_max = rtt_min + rng.range(0, doc.timeout_ms * 3 / 4);
    let mut net = Net::healthy(rtt_min, rtt_max);
    if faults {
        net.drop = rng.range(0, 60) as u32;
        net.fail = rng.range(0, 60) as u32;
        net.slow = rng.range(0, 30) as u32;
        net.dup = rng.range(0, 30) as u32;
        net.dispatch_fail = rng.range(0, 15) as u32;
    }
    net
}

/// The bound on any request of `doc`, and the time a run needs to settle.
pub fn drain_ms(doc: &DocSpec) -> u64 {
    doc.pause_bound_ms(true) + 2 * doc.pause_bound_ms(false) + 4 * doc.sync_interval_ms + 3 * doc.timeout_ms + 1_000
}

/// Builds and runs seed `seed` of `profile`.
pub fn run_seed(profile: &Profile, seed: u64) -> World {
    let mut rng = Rng::new(seed ^ salt(profile.name));
    let doc = random_doc(&mut rng);
    let healthy = rng.chance(profile.healthy);
    let net = random_net(&mut rng, &doc, profile.faults && !healthy);
    let workers = rng.range(2, 4) as usize;
    let tick = doc.tick_ms();
    let tick_spread = if rng.chance(300) { 0 } else { rng.range(0, tick - 1) };
    let warm = !rng.chance(if with_known_bugs() { 300 } else { profile.cold });
    let setup = Setup { seed, envoys: 2, workers, doc: doc.clone(), net, tick_spread, warm, preset: Vec::new() };
    let mut world = World::new(setup);

    let sessions = rng.range(2, 6);
    for _ in 0..sessions {
        let mode = if rng.chance(500) { Mode::Cookie } else { Mode::Header };
        let access = *rng.pick(&[Access::Valid, Access::Expiring, Access::Expired, Access::Expired, Access::Dropped]);
        let access = if mode == Mode::Header && access == Access::Dropped { Access::Expired } else { access };
        world.add_session(mode, access, rng.chance(500));
    }
    let bearers = rng.range(2, 4);
    for b in 0..bearers {
        let sub = format!("user{}", rng.below(5));
        let sid = rng.chance(500).then(|| format!("api_{b}"));
        world.add_bearer(&sub, sid.as_deref());
    }
    world.start(3);

    let traffic = rng.range(profile.traffic_ms.0, profile.traffic_ms.1);
    let first = if profile.early { 0 } else { doc.sync_interval_ms + doc.timeout_ms };
    let who = |rng: &mut Rng, world: &World| -> Who {
        match rng.below(10) {
            0..=4 => Who::Session(rng.index(world.sessions.len())),
            5..=7 => Who::Bearer(rng.index(world.bearers.len())),
            8 => Who::Anonymous,
            _ => Who::NoToken,
        }
    };
    let spec = |rng: &mut Rng, who: Who, workers: usize| RequestSpec {
        who,
        fresh: who != Who::Anonymous && rng.chance(200),
        envoy: rng.index(2),
        worker: rng.index(workers),
        cancel_after: rng.chance(50).then(|| rng.range(0, 2 * doc.timeout_ms)),
    };
    let n = rng.range(profile.requests.0, profile.requests.1);
    for _ in 0..n {
        let at = first + rng.below(traffic);
        let who = who(&mut rng, &world);
        let s = spec(&mut rng, who, workers);
        world.request(at, s);
    }
    for _ in 0..rng.range(0, profile.storms) {
        let at = first + rng.below(traffic);
        let session = Who::Session(rng.index(world.sessions.len()));
        for _ in 0..rng.range(4, 12) {
            let s = spec(&mut rng, session, workers);
            world.request(at, s);
        }
    }
    for _ in 0..rng.range(0, profile.kills) {
        let at = rng.range(200, first + traffic);
        let restart = (!rng.chance(200)).then(|| rng.range(20, 2_000));
        world.kill(at, rng.index(2), rng.index(workers), rng.chance(500), restart);
    }
    for _ in 0..rng.range(0, profile.revocations) {
        let at = first + rng.below(traffic);
        let key = match rng.below(3) {
            0 => format!("sub:user{}", rng.below(5)),
            1 => format!("sid:{}", world.sessions[rng.index(world.sessions.len())].family.sid),
            _ => match world.bearers[rng.index(world.bearers.len())].sid.clone() {
                Some(sid) => format!("sid:{sid}"),
                None => format!("sub:user{}", rng.below(5)),
            },
        };
        world.revoke(at, &key);
    }
    if profile.outages {
        for _ in 0..rng.range(0, 2) {
            let at = rng.below(first + traffic);
            world.authority_down(at, true);
            world.authority_down(at + rng.range(200, 3_000), false);
        }
    }
    world.run_until(first + traffic + drain_ms(&doc));
    world
}

/// Seeds to run: `SIM_SEED`, else `SIM_SEEDS` (1..=n), else 2000 with
/// `SIM_SOAK`, else `default`.
pub fn seeds(default: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.trim().parse().ok()) {
        return vec![seed];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .or_else(|| std::env::var_os("SIM_SOAK").map(|_| 2_000))
        .unwrap_or(default);
    (1..=n).collect()
}

/// A line nobody's test harness captures.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs the seeds of `profile`, judges every invariant on each, prints a
/// summary line, and fails with the seeds that broke something.
pub fn run_property(test: &str, focus: Prop, profile: &Profile, default_seeds: u64) {
    let seeds = seeds(default_seeds);
    let replay = seeds.len() == 1 && std::env::var_os("SIM_SEED").is_some();
    let started = Instant::now();
    let mut total = Stats::default();
    let mut failures: Vec<(u64, Vec<Violation>, String)> = Vec::new();
    for &seed in &seeds {
        let mut world = run_seed(profile, seed);
        let stats = check(&mut world);
        total.add(&stats);
        if replay {
            say(&world.trace.join("\n"));
        }
        if !world.violations.is_empty() {
            failures.push((seed, world.violations.clone(), world.trace_tail(80)));
        }
    }
    let exercised: Vec<String> = Prop::ALL
        .iter()
        .map(|p| format!("{}={}", p.name(), total.exercised.get(p).copied().unwrap_or(0)))
        .collect();
    say(&format!(
        "sim {test} [{}]: {} seeds, {} requests, {} callouts, {} interleaved steps, {} kills ({} inside a call), {} failing seeds, {:.1}s; judged: {}",
        focus.name(),
        seeds.len(),
        total.requests,
        total.callouts,
        total.interleavings,
        total.kills,
        total.kills_in_call,
        failures.len(),
        started.elapsed().as_secs_f64(),
        exercised.join(" ")
    ));
    if failures.is_empty() {
        return;
    }
    let mut report = String::new();
    for (seed, violations, _) in &failures {
        let mut props: Vec<&str> = violations.iter().map(|v| v.prop.name()).collect();
        props.dedup();
        report.push_str(&format!("  seed {seed}: {} ({})\n", violations[0].what, props.join(", ")));
    }
    let (seed, violations, tail) = &failures[0];
    report.push_str(&format!("\nseed {seed}, every violation:\n"));
    for v in violations.iter().take(20) {
        report.push_str(&format!("  [{}] {}\n", v.prop.name(), v.what));
    }
    report.push_str(&format!("\nthe end of its trace:\n{tail}\n"));
    report.push_str(&format!("\nreplay: SIM_SEED={seed} cargo test -p tollgate-sim --test properties {test} -- --nocapture\n"));
    panic!("{} of {} seeds broke an invariant:\n{report}", failures.len(), seeds.len());
}
