//! `report`: BENCHMARKS.md and the SVG chart, from the results of one run
//! (`results.jsonl`, one line per measured run, and `meta.txt`) and the
//! criterion estimates of the same `make bench`. Nothing here is typed in by
//! hand: every number comes from those files.

use crate::{CONTENDERS, WORKLOADS};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

pub struct Args {
    pub dir: PathBuf,
    pub md: PathBuf,
    pub svg: PathBuf,
    pub criterion: Option<PathBuf>,
}

/// One measured Envoy run (closed or open loop), reduced to what the report shows.
#[derive(Debug, Clone, Default)]
struct Run {
    round: u64,
    mode: String,
    workload: String,
    contender: String,
    rps: f64,
    requests: f64,
    envoy_us: f64,
    authz_us: f64,
    util: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    non2xx: f64,
    errors: f64,
    lag_us: f64,
    /// Envoy's threads: ms ready to run but waiting for a core, over the run.
    envoy_wait_ms: f64,
    /// The open-loop generator's thread: the same.
    gen_wait_ms: f64,
    hits: f64,
    misses: f64,
    /// Core 0 busy time not spent in the contender's processes, per wall second.
    other0: f64,
    /// Core 1 (the load generator's) busy time, generator included, per wall second.
    busy1: f64,
}

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn load_lines(path: &Path) -> Result<Vec<Value>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        out.push(serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?);
    }
    Ok(out)
}

fn mode_of(v: &Value) -> &str {
    v.get("mode").and_then(Value::as_str).unwrap_or_default()
}

fn load_runs(lines: &[Value], clk_tck: f64) -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    for v in lines.iter().filter(|v| matches!(mode_of(v), "closed" | "open")) {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let envoy_s = num(v, "envoy_ticks") / clk_tck;
        let authz_s = num(v, "authz_ticks") / clk_tck;
        let mut r = Run {
            round: num(v, "round") as u64,
            mode: s("mode"),
            workload: s("workload"),
            contender: s("contender"),
            hits: num(v, "cache_hit"),
            envoy_wait_ms: num(v, "envoy_runq_wait_ns") / 1e6,
            misses: num(v, "cache_miss"),
            ..Default::default()
        };
        if let Some(w) = v.get("wrk") {
            let wall = num(w, "duration_us") / 1e6;
            r.requests = num(w, "requests");
            r.rps = r.requests / wall.max(1e-9);
            r.p50 = num(w, "p50_us");
            r.p90 = num(w, "p90_us");
            r.p99 = num(w, "p99_us");
            r.p999 = num(w, "p999_us");
            r.max = num(w, "max_us");
            r.non2xx = num(w, "err_status");
            r.errors = ["err_connect", "err_read", "err_write", "err_timeout"].iter().map(|k| num(w, k)).sum();
        } else if let Some(o) = v.get("open") {
            r.requests = num(o, "ok") + num(o, "non2xx");
            r.rps = num(o, "achieved_rps");
            r.p50 = num(o, "p50_us");
            r.p90 = num(o, "p90_us");
            r.p99 = num(o, "p99_us");
            r.p999 = num(o, "p999_us");
            r.max = num(o, "max_us");
            r.non2xx = num(o, "non2xx");
            r.errors = num(o, "errors");
            r.lag_us = num(o, "max_schedule_lag_us");
            r.gen_wait_ms = num(o, "gen_runq_wait_us") / 1e3;
        }
        // The window the CPU counters were read over (generator start and exit included).
        let wall = num(v, "wall_ns") / 1e9;
        if r.requests > 0.0 {
            r.envoy_us = envoy_s * 1e6 / r.requests;
            r.authz_us = authz_s * 1e6 / r.requests;
        }
        if wall > 0.0 {
            r.util = envoy_s / wall;
            r.other0 = ((num(v, "core0_ticks") / clk_tck - envoy_s - authz_s) / wall).max(0.0);
            r.busy1 = num(v, "core1_ticks") / clk_tck / wall;
        }
        runs.push(r);
    }
    Ok(runs)
}

fn load_meta(path: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The open-loop rate: `fraction` of the slowest contender's saturated
/// throughput on the large pool in phase 1 (alone, `--concurrency 1`),
/// rounded down to 100 req/s. Below every contender's knee.
pub fn open_rate(results: &Path, fraction: f64) -> Result<u64, String> {
    let slowest = load_lines(results)?
        .iter()
        .filter(|v| mode_of(v) == "rss" && num(v, "concurrency") == 1.0)
        .filter_map(|v| v.get("wrk").map(|w| num(w, "requests") / (num(w, "duration_us") / 1e6).max(1e-9)))
        .filter(|r| *r > 0.0)
        .fold(f64::INFINITY, f64::min);
    if !slowest.is_finite() {
        return Err("no phase-1 runs at --concurrency 1 yet".into());
    }
    Ok((((slowest * fraction) / 100.0).floor() as u64).max(1) * 100)
}

#[derive(Clone, Copy, Default)]
struct Spread {
    med: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn spread(mut v: Vec<f64>) -> Spread {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return Spread::default();
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let med = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Spread { med, min: v[0], max: v[n - 1], n }
}

struct Data {
    runs: Vec<Run>,
}

impl Data {
    fn select(&self, mode: &str, wl: &str, c: &str) -> Vec<&Run> {
        self.runs.iter().filter(|r| r.mode == mode && r.workload == wl && r.contender == c).collect()
    }
    fn stat(&self, mode: &str, wl: &str, c: &str, f: impl Fn(&Run) -> f64) -> Spread {
        spread(self.select(mode, wl, c).into_iter().map(f).collect())
    }
    /// `f(a)` against `f(b)` round by round (`op` combines them), then the spread.
    fn paired(&self, mode: &str, wl: &str, a: &str, b: &str, f: impl Fn(&Run) -> f64, op: fn(f64, f64) -> f64) -> Spread {
        let mut out = Vec::new();
        for ra in self.select(mode, wl, a) {
            if let Some(rb) = self.select(mode, wl, b).into_iter().find(|rb| rb.round == ra.round) {
                out.push(op(f(ra), f(rb)));
            }
        }
        spread(out)
    }
    /// Token-cache hit rate over every run of a workload, if the contender counts them.
    fn hit_rate(&self, mode: &str, wl: &str, c: &str) -> Option<f64> {
        let (h, m) = self.select(mode, wl, c).iter().fold((0.0, 0.0), |(h, m), r| (h + r.hits, m + r.misses));
        (h + m > 0.0).then(|| h / (h + m))
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    a / b
}
fn diff(a: f64, b: f64) -> f64 {
    a - b
}

fn fmt_int(x: f64) -> String {
    let s = format!("{:.0}", x);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{sign}{out}")
}

fn ms(us: f64) -> String {
    format!("{:.3}", us / 1000.0)
}

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{:.1}%", 100.0 * x))
}

/// What a headline measure is and how it is judged.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A ratio: the effect it claims is its distance from 1×.
    Ratio,
    /// A difference (µs, MiB): the effect is its distance from 0.
    Diff,
}

/// One row of the targets table. `higher`: the target is a floor (≥), else a ceiling (≤).
struct Target<'a> {
    measure: &'a str,
    s: Spread,
    kind: Kind,
    target: f64,
    higher: bool,
    unit: &'a str,
    decimals: usize,
}

/// Met or missed on the median; and whether the spread over rounds is
/// larger than the effect claimed or straddles the target, in which case
/// the verdict is not resolved by this run.
fn judge(t: &Target) -> (String, String) {
    let s = &t.s;
    if s.n == 0 {
        return ("–".into(), "not measured".into());
    }
    let met = if t.higher { s.med >= t.target } else { s.med <= t.target };
    let mut notes = Vec::new();
    if s.n > 1 {
        let width = s.max - s.min;
        let effect = match t.kind {
            Kind::Ratio => (s.med - 1.0).abs(),
            Kind::Diff => s.med.abs(),
        };
        if width >= effect {
            notes.push(format!("spread {:.*} ≥ effect {:.*}: not resolved", t.decimals, width, t.decimals, effect));
        }
        if s.min < t.target && s.max > t.target {
            notes.push("range straddles the target".into());
        }
    }
    (if met { "**met**".into() } else { "**missed**".into() }, notes.join("; "))
}

fn rng(s: &Spread, d: usize) -> String {
    if s.n == 0 {
        return "–".into();
    }
    if s.n == 1 {
        return format!("{:.*}", d, s.med);
    }
    format!("{:.*} [{:.*}–{:.*}]", d, s.med, d, s.min, d, s.max)
}

/// VmRSS (KiB) from phase 1: (contender, concurrency) → (Envoy, authorizer).
fn load_rss(lines: &[Value]) -> BTreeMap<(String, u64), (f64, f64)> {
    lines
        .iter()
        .filter(|v| mode_of(v) == "rss")
        .map(|v| {
            let c = v.get("contender").and_then(Value::as_str).unwrap_or_default().to_owned();
            ((c, num(v, "concurrency") as u64), (num(v, "rss_kb"), num(v, "authz_rss_kb")))
        })
        .collect()
}

fn mib(kb: f64) -> String {
    format!("{:.1}", kb / 1024.0)
}

pub fn run(a: Args) -> Result<(), String> {
    let meta = load_meta(&a.dir.join("meta.txt"));
    let m = |k: &str| meta.get(k).cloned().unwrap_or_else(|| "?".into());
    let clk_tck: f64 = meta.get("clk_tck").and_then(|v| v.parse().ok()).unwrap_or(100.0);
    let lines = load_lines(&a.dir.join("results.jsonl"))?;
    let data = Data { runs: load_runs(&lines, clk_tck)? };
    let rss = load_rss(&lines);
    let crit = a.criterion.as_deref().map(load_criterion).unwrap_or_default();
    let quick = m("quick") == "1";
    let label = |id: &str| CONTENDERS.iter().find(|c| c.id == id).map_or(id.to_owned(), |c| c.label.to_owned());

    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Written by `make bench` (scripts/bench/run.sh) on {}{}. Every number below comes from that one run; \
         rerun `make bench` to replace them. Ratios are computed **pair by pair within each round** (each round starts \
         every contender fresh and alone, one after another, the starting one rotated) and given as the median over \
         {} rounds with the min–max in brackets.\n",
        m("date"),
        if quick { " in **smoke mode (BENCH_QUICK=1): one short round, numbers are not meaningful**" } else { "" },
        m("rounds")
    );
    let disturbed = spread(data.runs.iter().map(|r| r.other0).collect());
    if disturbed.med > 0.10 {
        let _ = writeln!(
            w,
            "> **This run was disturbed.** Other work on this machine kept core 0 (Envoy's) busy beside the \
             contender: {:.0}% in the median measurement, up to {:.0}% (column `core 0 other`). Throughput and latency \
             carry that noise, so read the spreads and prefer the CPU-per-request columns, which count only Envoy's own \
             time. Rerun `make bench` on an idle machine for clean numbers.\n",
            100.0 * disturbed.med,
            100.0 * disturbed.max
        );
    }
    let _ = writeln!(w, "![throughput and CPU per request](docs/bench/throughput.svg)\n");
    let _ = writeln!(
        w,
        "Where the time goes inside the filter, and why the harness now runs one contender at a time (the tail): \
         [docs/bench/profile.md](docs/bench/profile.md). What each hot-path change bought: \
         [docs/bench/changes.md](docs/bench/changes.md).\n"
    );

    // ---- headline: issue 11's targets --------------------------------------
    let tp_jwt_fit = data.paired("closed", "fit", "tollgate", "jwt_authn_cache", |r| r.rps, ratio);
    let tp_jwt_over = data.paired("closed", "over", "tollgate", "jwt_authn_cache", |r| r.rps, ratio);
    let tp_noop = data.paired("closed", "fit", "tollgate", "wasm_noop", |r| r.rps, ratio);
    let cpu_noop = data.paired("closed", "fit", "tollgate", "wasm_noop", |r| r.envoy_us, diff);
    let p99_noop = data.paired("open", "fit", "tollgate", "wasm_noop", |r| r.p99, ratio);
    let wasm_bytes: f64 = m("wasm_bytes").parse().unwrap_or(f64::NAN);
    let size = Spread { med: wasm_bytes / 1024.0, min: wasm_bytes / 1024.0, max: wasm_bytes / 1024.0, n: usize::from(wasm_bytes.is_finite()) };
    let r = |c: &str, k: u64| rss.get(&(c.to_owned(), k)).map(|x| x.0);
    // Per worker: what one more worker costs Tollgate's Envoy beyond what it
    // costs the empty filter's (the slope from --concurrency 1 to 2).
    let rss_worker = match (r("tollgate", 1), r("tollgate", 2), r("wasm_noop", 1), r("wasm_noop", 2)) {
        (Some(t1), Some(t2), Some(n1), Some(n2)) => {
            let x = ((t2 - t1) - (n2 - n1)) / 1024.0;
            Spread { med: x, min: x, max: x, n: 1 }
        }
        _ => Spread::default(),
    };
    let targets = [
        Target { measure: "throughput, Tollgate / jwt_authn (equal cache sizes), pool that fits", s: tp_jwt_fit, kind: Kind::Ratio, target: 1.5, higher: true, unit: "×", decimals: 2 },
        Target { measure: "throughput, Tollgate / jwt_authn, pool 4× the cache", s: tp_jwt_over, kind: Kind::Ratio, target: 1.1, higher: true, unit: "×", decimals: 2 },
        Target { measure: "throughput, Tollgate / empty proxy-wasm filter (cache hits)", s: tp_noop, kind: Kind::Ratio, target: 0.85, higher: true, unit: "×", decimals: 2 },
        Target { measure: "added Envoy CPU over the empty filter, cache hit", s: cpu_noop, kind: Kind::Diff, target: 3.0, higher: false, unit: " µs", decimals: 2 },
        Target { measure: "p99 at a fixed rate, Tollgate / empty filter", s: p99_noop, kind: Kind::Ratio, target: 1.2, higher: false, unit: "×", decimals: 2 },
        Target { measure: "module size", s: size, kind: Kind::Diff, target: 250.0, higher: false, unit: " KiB", decimals: 0 },
        Target { measure: "Envoy RSS over the empty filter, per worker", s: rss_worker, kind: Kind::Diff, target: 5.0, higher: false, unit: " MiB", decimals: 1 },
    ];
    let _ = writeln!(w, "## Headline: the targets (issue 11)\n");
    let _ = writeln!(
        w,
        "Reported, never asserted. Pools sized from Tollgate's token cache: {} entries per worker (`token_cache.entries`, \
         read from the bench document), and jwt_authn's `jwt_cache_size` set to the same; \"fits\" is a pool of {} \
         tokens, \"4×\" one of {}. The open-loop rate is {} req/s. Verdicts are on the median; a note says when the \
         spread over rounds (max − min) is at least the effect the measure claims (its distance from 1×, or from 0 for a \
         difference), or when the range straddles the target: then this run does not settle it.\n",
        m("cache_entries"),
        m("pool_fit"),
        m("pool_over"),
        m("open_rate")
    );
    let _ = writeln!(w, "| measure | this run: median [min–max over rounds] | target | | spread |");
    let _ = writeln!(w, "|---|---|---|---|---|");
    for t in &targets {
        let (verdict, note) = judge(t);
        let _ = writeln!(
            w,
            "| {} | {}{} | {} {}{} | {} | {} |",
            t.measure,
            rng(&t.s, t.decimals),
            if t.s.n == 0 { "" } else { t.unit },
            if t.higher { "≥" } else { "≤" },
            t.target,
            t.unit,
            verdict,
            note
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Module size: `target/wasm32-wasip1/release/tollgate.wasm` as built by this run, {} bytes. RSS per worker: \
         (Tollgate's Envoy at `--concurrency 2` − at 1) − (the empty filter's at 2 − at 1), one measurement each; the \
         memory table below has every contender.\n",
        fmt_int(wasm_bytes)
    );

    // The same measures for the native module, and the other pairs.
    let pairs: Vec<(String, Spread, usize, &str)> = vec![
        ("throughput, native module / jwt_authn, pool that fits".into(), data.paired("closed", "fit", "native", "jwt_authn_cache", |r| r.rps, ratio), 2, "×"),
        ("throughput, native module / jwt_authn, pool 4× the cache".into(), data.paired("closed", "over", "native", "jwt_authn_cache", |r| r.rps, ratio), 2, "×"),
        ("throughput, native module / bare Envoy, pool that fits".into(), data.paired("closed", "fit", "native", "bare", |r| r.rps, ratio), 2, "×"),
        ("added Envoy CPU, native module − bare, pool that fits".into(), data.paired("closed", "fit", "native", "bare", |r| r.envoy_us, diff), 2, " µs"),
        ("p99 at a fixed rate, native module / bare".into(), data.paired("open", "fit", "native", "bare", |r| r.p99, ratio), 2, "×"),
        ("throughput, Tollgate / bare Envoy, pool that fits".into(), data.paired("closed", "fit", "tollgate", "bare", |r| r.rps, ratio), 2, "×"),
        ("throughput, empty filter / bare Envoy".into(), data.paired("closed", "fit", "wasm_noop", "bare", |r| r.rps, ratio), 2, "×"),
        ("added Envoy CPU, empty filter − bare".into(), data.paired("closed", "fit", "wasm_noop", "bare", |r| r.envoy_us, diff), 2, " µs"),
        ("added Envoy CPU, Tollgate − bare, pool 4× the cache".into(), data.paired("closed", "over", "tollgate", "bare", |r| r.envoy_us, diff), 2, " µs"),
        ("throughput, Tollgate / jwt_authn cache off, pool 4× the cache".into(), data.paired("closed", "over", "tollgate", "jwt_authn_nocache", |r| r.rps, ratio), 2, "×"),
        ("throughput, Tollgate / ext_authz, pool that fits".into(), data.paired("closed", "fit", "tollgate", "ext_authz", |r| r.rps, ratio), 2, "×"),
        ("throughput, Tollgate / jwt_authn, denied mix".into(), data.paired("closed", "denied", "tollgate", "jwt_authn_cache", |r| r.rps, ratio), 2, "×"),
        ("host calls of Tollgate's glue, CPU over the empty filter".into(), data.paired("closed", "fit", "wasm_hostcalls", "wasm_noop", |r| r.envoy_us, diff), 2, " µs"),
    ];
    let _ = writeln!(w, "Other pairs from the same rounds (no target; the same spread rule):\n");
    let _ = writeln!(w, "| pair | median [min–max] | spread |");
    let _ = writeln!(w, "|---|---|---|");
    for (name, s, d, unit) in &pairs {
        let kind = if unit.trim() == "×" { Kind::Ratio } else { Kind::Diff };
        let t = Target { measure: name, s: *s, kind, target: f64::NAN, higher: true, unit, decimals: *d };
        let (_, note) = judge(&t);
        let _ = writeln!(w, "| {} | {}{} | {} |", name, rng(s, *d), if s.n == 0 { "" } else { unit }, note.replace("; range straddles the target", ""));
    }
    let _ = writeln!(w);

    // ---- cache hit rates -----------------------------------------------------
    let _ = writeln!(w, "## Token-cache hit rates\n");
    let _ = writeln!(
        w,
        "Over every measured closed-loop run of each pool (warm-up excluded), from the contenders' own counters read \
         before and after each run through Envoy's admin `/stats`: Tollgate's `tollgate.token_cache.hit`/`.miss` (Wasm \
         and native), jwt_authn's `jwt_cache_hit`/`jwt_cache_miss`. Both caches are per worker, {} entries each.\n",
        m("cache_entries")
    );
    let _ = writeln!(w, "| contender | pool that fits ({} tokens) | pool 4× the cache ({} tokens) | denied mix |", m("pool_fit"), m("pool_over"));
    let _ = writeln!(w, "|---|---|---|---|");
    for c in ["tollgate", "native", "jwt_authn_cache", "jwt_authn_nocache"] {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} |",
            label(c),
            pct(data.hit_rate("closed", "fit", c)),
            pct(data.hit_rate("closed", "over", c)),
            pct(data.hit_rate("closed", "denied", c))
        );
    }
    let _ = writeln!(w, "\n\"–\": the contender counted neither hits nor misses. A denied-mix token is looked up and counted like any other; its hit rate shows whether a refusal is ever answered from the cache. wrk walks each pool in order, so the 4× pool cycles through the cache and, under eviction that keeps recent entries (Tollgate's CLOCK, jwt_authn's LRU), nearly every lookup misses: the two pools bound what real traffic, which repeats some tokens more than others, sees.\n");

    // ---- closed loop ------------------------------------------------------
    let _ = writeln!(w, "## Throughput at saturation (closed loop, `--concurrency 1`)\n");
    let _ = writeln!(
        w,
        "wrk, {} connections, 1 thread, {} s per run after a discarded {} s warm-up, {} rounds. req/s: median [min–max] \
         over rounds and the spread (max−min)/median. CPU: Envoy's utime+stime from /proc/<pid>/stat (all threads, V8's \
         included) over the run, per request; for ext_authz the authorizer's own CPU per request is added after the `+`. \
         Util: Envoy CPU seconds per wall second (1.00 = its core is saturated). Core 0 other: the worst round's share of \
         core 0 busy outside the contender's processes (interrupts, loopback softirq, anything else running on the \
         machine); a large value means that round was disturbed. Latency here is closed-loop (wrk's, hides queueing); \
         see the open-loop table for tails. Hits: the token-cache hit rate over these runs.\n",
        m("connections"),
        m("seconds"),
        m("warm_seconds"),
        m("rounds")
    );
    for (wl, wl_label) in WORKLOADS {
        let _ = writeln!(w, "### {wl_label}\n");
        let _ = writeln!(w, "| contender | req/s | spread | × bare | Tollgate / it | CPU µs/req | util | core 0 other | p50 / p99 / p99.9 ms | non-2xx | hits |");
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|");
        for c in CONTENDERS {
            let rps = data.stat("closed", wl, c.id, |r| r.rps);
            if rps.n == 0 {
                continue;
            }
            let vs_bare = data.paired("closed", wl, c.id, "bare", |r| r.rps, ratio);
            let tg = data.paired("closed", wl, "tollgate", c.id, |r| r.rps, ratio);
            let cpu = data.stat("closed", wl, c.id, |r| r.envoy_us);
            let acpu = data.stat("closed", wl, c.id, |r| r.authz_us);
            let util = data.stat("closed", wl, c.id, |r| r.util);
            let other0 = data.stat("closed", wl, c.id, |r| r.other0);
            let p50 = data.stat("closed", wl, c.id, |r| r.p50);
            let p99 = data.stat("closed", wl, c.id, |r| r.p99);
            let p999 = data.stat("closed", wl, c.id, |r| r.p999);
            let sel = data.select("closed", wl, c.id);
            let non2xx: f64 = sel.iter().map(|r| r.non2xx).sum();
            let reqs: f64 = sel.iter().map(|r| r.requests).sum();
            let errors: f64 = sel.iter().map(|r| r.errors).sum();
            let cpu_s = if c.id == "ext_authz" { format!("{:.2} + {:.2}", cpu.med, acpu.med) } else { format!("{:.2}", cpu.med) };
            let errs = if errors > 0.0 { format!(" ({} socket errors)", fmt_int(errors)) } else { String::new() };
            let _ = writeln!(
                w,
                "| {} | {} [{}–{}] | {:.1}% | {:.2} | {} | {} | {:.2} | {:.0}% | {} / {} / {} | {:.1}%{} | {} |",
                c.label,
                fmt_int(rps.med),
                fmt_int(rps.min),
                fmt_int(rps.max),
                100.0 * (rps.max - rps.min) / rps.med,
                vs_bare.med,
                if c.id == "tollgate" { "–".into() } else { format!("{:.2}", tg.med) },
                cpu_s,
                util.med,
                100.0 * other0.max,
                ms(p50.med),
                ms(p99.med),
                ms(p999.med),
                100.0 * non2xx / reqs.max(1.0),
                errs,
                pct(data.hit_rate("closed", wl, c.id))
            );
        }
        let _ = writeln!(w);
    }

    // ---- open loop --------------------------------------------------------
    let _ = writeln!(w, "## Latency at a fixed rate (open loop)\n");
    let _ = writeln!(
        w,
        "{} req/s on the pool that fits, {} s per run, {} rounds; the rate is {} of the slowest contender's saturated \
         throughput (phase 1), so every contender is below its knee. Generator: `tollgate-bench open` (wrk2-style: each \
         request has a due time and its latency counts from it, so a stall is charged to every request it delays; \
         keep-alive connections opened before the clock; tokens rotate per request). The contender is the only Envoy \
         alive, started fresh, its warm-up and closed-loop runs done before. Latencies: the median over rounds of each \
         round's percentile, p99 also with its min–max; ratios paired by round. Lag: how late the generator itself \
         dispatched (worst round); run-queue wait: how long Envoy's threads, and the generator's, were ready to run but \
         waited for their core because another task held it (/proc/<pid>/task/*/schedstat; worst round); core 0 other \
         / core 1 busy: the worst round's share of Envoy's core used by anything else, and of the generator's core used \
         by anything (the generator included). A tail that comes with run-queue wait or lag of the same order is the \
         machine's, not the filter's (docs/bench/profile.md, the tail).\n",
        m("open_rate"),
        m("open_seconds"),
        m("rounds"),
        m("open_fraction")
    );
    let _ = writeln!(w, "| contender | p50 ms | p90 ms | p99 ms [min–max] | p99.9 ms | max ms | p99 / empty filter | p99 / bare | achieved req/s | CPU µs/req | max lag µs | run-queue wait ms, Envoy / generator | core 0 other | core 1 busy |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for c in CONTENDERS {
        let p50 = data.stat("open", "fit", c.id, |r| r.p50);
        if p50.n == 0 {
            continue;
        }
        let st = |f: fn(&Run) -> f64| data.stat("open", "fit", c.id, f);
        let vs_bare = data.paired("open", "fit", c.id, "bare", |r| r.p99, ratio);
        let vs_noop = data.paired("open", "fit", c.id, "wasm_noop", |r| r.p99, ratio);
        let cpu = st(|r| r.envoy_us);
        let acpu = st(|r| r.authz_us);
        let cpu_s = if c.id == "ext_authz" { format!("{:.2} + {:.2}", cpu.med, acpu.med) } else { format!("{:.2}", cpu.med) };
        let p99 = st(|r| r.p99);
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} [{}–{}] | {} | {} | {:.2} | {:.2} | {} | {} | {:.0} | {:.1} / {:.1} | {:.0}% | {:.0}% |",
            c.label,
            ms(p50.med),
            ms(st(|r| r.p90).med),
            ms(p99.med),
            ms(p99.min),
            ms(p99.max),
            ms(st(|r| r.p999).med),
            ms(st(|r| r.max).med),
            vs_noop.med,
            vs_bare.med,
            fmt_int(st(|r| r.rps).med),
            cpu_s,
            st(|r| r.lag_us).max,
            st(|r| r.envoy_wait_ms).max,
            st(|r| r.gen_wait_ms).max,
            100.0 * st(|r| r.other0).max,
            100.0 * st(|r| r.busy1).max
        );
    }
    let _ = writeln!(w);

    // ---- memory -------------------------------------------------------------
    let _ = writeln!(w, "## Memory: Envoy RSS at `--concurrency 1` and `2`\n");
    let _ = writeln!(
        w,
        "Phase 1: each contender alone, after {} s of the 4× pool (every worker's token cache full), VmRSS from \
         /proc/<pid>/status, one measurement each. Per added worker: RSS at 2 − RSS at 1. Over the empty filter: the \
         same contender minus the empty proxy-wasm filter at the same concurrency; per worker: the difference of the \
         per-worker slopes. ext_authz: Envoy + the authorizer.\n",
        m("rss_seconds")
    );
    let _ = writeln!(w, "| contender | RSS MiB, 1 worker | RSS MiB, 2 workers | per added worker MiB | over empty filter at 2 workers MiB | over empty filter, per worker MiB |");
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    for c in CONTENDERS {
        let (Some(one), Some(two)) = (rss.get(&(c.id.to_owned(), 1)), rss.get(&(c.id.to_owned(), 2))) else { continue };
        let (n1, n2) = (r("wasm_noop", 1).unwrap_or(f64::NAN), r("wasm_noop", 2).unwrap_or(f64::NAN));
        let show = |x: (f64, f64)| if x.1 > 0.0 { format!("{} + {}", mib(x.0), mib(x.1)) } else { mib(x.0) };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |",
            c.label,
            show(*one),
            show(*two),
            mib(two.0 - one.0),
            mib(two.0 + two.1 - n2),
            mib((two.0 - one.0) - (n2 - n1))
        );
    }
    let _ = writeln!(w);

    // ---- the authority ------------------------------------------------------
    authority_section(w, &lines, &m, clk_tck);

    // ---- micro ------------------------------------------------------------
    let _ = writeln!(w, "## Micro level: the core, natively (criterion)\n");
    let _ = writeln!(
        w,
        "`cargo bench --bench verify` (benches/verify.rs) on the same machine, pinned to core 0, before the Envoy runs; \
         median time per call. The token is one of the pool's ({} bytes). The floor is one HMAC-SHA256 over the same \
         signing input from an already-keyed state, which is what Tollgate keeps per key.\n",
        m("token_bytes")
    );
    if crit.is_empty() {
        let _ = writeln!(w, "(no criterion estimates found)\n");
    } else {
        let _ = writeln!(w, "| bench | median | × HMAC floor |");
        let _ = writeln!(w, "|---|---|---|");
        let floor = crit.iter().find(|(id, _)| id.ends_with("hmac_sha256_prekeyed")).map(|(_, ns)| *ns);
        for (id, ns) in &crit {
            let x = floor.map_or("–".into(), |f| format!("{:.1}", ns / f));
            let _ = writeln!(w, "| `{id}` | {} | {x} |", if *ns >= 1000.0 { format!("{:.2} µs", ns / 1000.0) } else { format!("{ns:.0} ns") });
        }
        let _ = writeln!(w);
    }

    // ---- setup ------------------------------------------------------------
    let _ = writeln!(w, "## Setup\n");
    let _ = writeln!(w, "- Machine: {} ({} cores), {} MiB RAM, Linux {}.", m("cpu"), m("cores"), m("mem_mib"), m("kernel"));
    let _ = writeln!(
        w,
        "- Envoy: `{}`. **One contender process alive at a time**: each round starts every contender fresh (for \
         ext_authz with its authorizer), pinned to core 0 with `--concurrency 1`, discards a {} s warm-up, measures, and \
         stops it; the starting contender rotates per round. Load generators on core 1.",
        m("envoy_version"),
        m("warm_seconds")
    );
    let _ = writeln!(w, "- Closed loop: `{}`.", m("wrk_cmd"));
    let _ = writeln!(w, "- Open loop: `{}`.", m("open_cmd"));
    let _ = writeln!(w, "- Authority: `{}`.", m("authority_cmd"));
    let _ = writeln!(w, "- Rust: {}; criterion 0.5.", m("rustc"));
    let _ = writeln!(
        w,
        "- Route: every contender answers from an Envoy `direct_response` (200, 3 bytes) behind its filter. No upstream \
         process: its cost would be identical for everyone but would share the two cores with Envoy or the load \
         generator and blur the difference being measured."
    );
    let _ = writeln!(
        w,
        "- Contenders: bare Envoy (router only); jwt_authn with the HMAC key as a local `oct` JWKS (HS256), the same \
         issuer, audience and 30 s skew, `forward: true`, `sub` and `scope` copied to headers, with `jwt_cache_config` \
         `jwt_cache_size: {}` (cache on) and without it (cache off); ext_authz (HTTP) to `tollgate-bench authz` (axum, \
         one thread, pinned to core 0 with its Envoy), which verifies with `tollgate::token::Verifier` from the same \
         document; Tollgate as envoy/envoy.yaml loads it (V8) and as the native dynamic module, with the bench \
         document: envoy/tollgate.json without `authority`, `revocation`, `refresh` and `fresh` rules; the floors \
         (bench/wasm-floor): an empty proxy-wasm filter and one making only Tollgate's host calls.",
        m("cache_entries")
    );
    let _ = writeln!(
        w,
        "- Workloads: `GET /api/items` with `Authorization: Bearer` from a file, rotated per request: {} valid tokens \
         (fits each worker's cache), {} other valid tokens (4×), distinct `sub`/`sid`/`jti`, no token in both pools; \
         a denied mix of 1,000 tokens (a quarter each: MAC from another key, expired, another audience, not a JWS). \
         The floors run the fitting pool only.",
        m("pool_fit"),
        m("pool_over")
    );
    let _ = writeln!(
        w,
        "- Shared-machine guard: before every measurement the harness samples both cores and waits while anything \
         else keeps them over 10% busy (a budget of {} s for the whole run); this run waited {} s in total. The `core \
         0 other` and `core 1 busy` columns show what still ran beside Envoy and the generator.",
        m("quiet_budget_s"),
        m("quiet_waited_s")
    );
    let _ = writeln!(w, "- Wall time: Envoy phases {} s; authority phases {} s.", m("wall_s"), m("authority_phase_s"));

    fs::write(&a.md, md).map_err(|e| format!("{}: {e}", a.md.display()))?;
    if let Some(dir) = a.svg.parent() {
        let _ = fs::create_dir_all(dir);
    }
    fs::write(&a.svg, svg(&data, &m("date"))).map_err(|e| format!("{}: {e}", a.svg.display()))?;
    println!("report: wrote {} and {}", a.md.display(), a.svg.display());
    Ok(())
}

/// Feed polls and refreshes per second on each store, and one Envoy's feed
/// requests per minute, polling vs long polling.
fn authority_section(w: &mut String, lines: &[Value], m: &dyn Fn(&str) -> String, clk_tck: f64) {
    let _ = writeln!(w, "## The authority: what one core sustains, per store\n");
    let _ = writeln!(
        w,
        "The authority (`tollgate-authority serve`, release build) pinned to core 0 — with redis-server on the same core \
         for Redis (AOF, `appendfsync always`, as docs/operations.md requires) — and `tollgate-bench authority` on core \
         1, closed loop, {} s each. Feed: `GET /v1/revocations?after=<current cursor>` with the edge credential, 32 \
         connections (the empty delta an idle fleet polls for). Refresh: `POST /v1/token` `grant_type=refresh_token`, \
         16 connections, each presenting the refresh token the previous answer rotated to (a store write per request; \
         SQLite fsyncs each). CPU per request: the authority's (+ redis-server's) utime+stime over the run.\n",
        m("auth_seconds")
    );
    let _ = writeln!(w, "| store | endpoint | requests/s | p50 / p99 ms | CPU µs/request | non-2xx | errors |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    let mut feed_rps: BTreeMap<String, f64> = BTreeMap::new();
    for v in lines.iter().filter(|v| mode_of(v) == "authority") {
        let store = v["contender"].as_str().unwrap_or("?");
        let wl = v["workload"].as_str().unwrap_or("?");
        let o = &v["authority"];
        let reqs = num(o, "requests");
        let cpu = |k: &str| if reqs > 0.0 { num(v, k) / clk_tck * 1e6 / reqs } else { 0.0 };
        let cpu_s = if store == "redis" { format!("{:.0} + {:.0}", cpu("authority_ticks"), cpu("redis_ticks")) } else { format!("{:.0}", cpu("authority_ticks")) };
        let non2xx = reqs - num(o, "ok");
        if wl == "feed" {
            feed_rps.insert(store.to_owned(), num(o, "rps"));
        }
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} / {} | {} | {} | {} |",
            if store == "sqlite" { "SQLite" } else { "Redis" },
            if wl == "feed" { "feed poll" } else { "refresh" },
            fmt_int(num(o, "rps")),
            ms(num(o, "p50_us")),
            ms(num(o, "p99_us")),
            cpu_s,
            fmt_int(non2xx),
            fmt_int(num(o, "errors"))
        );
    }
    let _ = writeln!(w);

    let feeds: Vec<&Value> = lines.iter().filter(|v| mode_of(v) == "feed").collect();
    if !feeds.is_empty() {
        let _ = writeln!(w, "### Feed requests per Envoy\n");
        let _ = writeln!(
            w,
            "One Envoy (`--concurrency 2`) running Tollgate with envoy/tollgate.json's `authority` and `revocation` \
             sections, against the authority on SQLite; requests counted by Envoy's `cluster.authority.upstream_rq_total` \
             over a {} s window idle, then over a {} s window while `tollgate-bench authority --mode bump` revokes a \
             subject {} times a second. Polling: `sync_interval_ms` 1000; long polling: `wait_ms` {}.\n",
            m("feed_window_s"),
            m("feed_window_s"),
            m("bump_rate"),
            m("feed_wait_ms")
        );
        let _ = writeln!(w, "| revocation sync | idle: requests / min | under bumps: requests / min | bumps answered |");
        let _ = writeln!(w, "|---|---|---|---|");
        let mut per_min = BTreeMap::new();
        for v in &feeds {
            let win = num(v, "window_s").max(1e-9);
            let idle = num(v, "idle_requests") * 60.0 / win;
            let bumps = num(v, "bump_requests") * 60.0 / win;
            let mode = v["workload"].as_str().unwrap_or("?");
            per_min.insert(mode.to_owned(), (idle, bumps));
            let _ = writeln!(
                w,
                "| {} | {:.0} | {:.0} | {} of {} |",
                if mode == "feed_long" { format!("long polling (`wait_ms` {})", num(v, "wait_ms")) } else { "polling (`sync_interval_ms` 1000)".into() },
                idle,
                bumps,
                fmt_int(num(&v["bumps"], "ok")),
                fmt_int(num(&v["bumps"], "requests"))
            );
        }
        let _ = writeln!(w);
        // Sizing: one authority core against a fleet's polls.
        let _ = writeln!(w, "**Sizing a fleet.** Polls an authority core answers per minute, divided by what one Envoy sends per minute:\n");
        let _ = writeln!(w, "| store | Envoys per authority core: polling, idle | polling, under bumps | long polling, idle | long polling, under bumps |");
        let _ = writeln!(w, "|---|---|---|---|---|");
        for (store, rps) in &feed_rps {
            let cap = rps * 60.0;
            let f = |x: Option<f64>| x.filter(|x| *x > 0.0).map_or("–".into(), |x| fmt_int(cap / x));
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} |",
                if store == "sqlite" { "SQLite" } else { "Redis" },
                f(per_min.get("feed_poll").map(|x| x.0)),
                f(per_min.get("feed_poll").map(|x| x.1)),
                f(per_min.get("feed_long").map(|x| x.0)),
                f(per_min.get("feed_long").map(|x| x.1))
            );
        }
        let _ = writeln!(
            w,
            "\nAn upper bound from the empty delta: a poll that carries entries costs more, and a long poll held open \
             costs a connection and memory (`feed_max_held`, default 1024 per instance) rather than CPU. Refreshes come \
             from clients, not Envoys: size for the refresh rate separately (one per client per access-token lifetime, \
             15 min by default).\n"
        );
    }
}

/// `(id, median ns)` for every criterion bench, in a stable order.
fn load_criterion(dir: &Path) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    let bench: Option<Value> = fs::read(p.join("benchmark.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
                    let est: Option<Value> = fs::read(p.join("estimates.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
                    if let (Some(b), Some(e)) = (bench, est) {
                        let id = b["full_id"].as_str().unwrap_or("?").to_owned();
                        out.push((id, e["median"]["point_estimate"].as_f64().unwrap_or(0.0)));
                    }
                } else if p.file_name().is_some_and(|n| n != "base" && n != "report" && n != "change") {
                    stack.push(p);
                }
            }
        }
    }
    out.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap());
    out
}

fn svg(data: &Data, date: &str) -> String {
    let (wd, ht) = (900.0, 520.0);
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{wd}" height="{ht}" viewBox="0 0 {wd} {ht}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="20" y="24" font-size="16" font-weight="bold">Envoy --concurrency 1: req/s at saturation (median, whiskers min–max over rounds)</text>"#);
    let _ = writeln!(s, r##"<text x="20" y="42" fill="#555">make bench, {}</text>"##, esc(date));

    // Panel 1: grouped bars, req/s by workload.
    let (x0, y0, pw, ph) = (70.0, 70.0, 540.0, 360.0);
    let max_rps = data.runs.iter().filter(|r| r.mode == "closed").map(|r| r.rps).fold(1.0, f64::max) * 1.08;
    let step = nice_step(max_rps / 5.0);
    let mut t = 0.0;
    while t <= max_rps {
        let y = y0 + ph - ph * t / max_rps;
        let _ = writeln!(s, r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##, x0 + pw, x0 - 6.0, y + 4.0, fmt_int(t));
        t += step;
    }
    let _ = writeln!(s, r##"<line x1="{x0}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##, y0 + ph, x0 + pw, y0 + ph);
    let gw = pw / WORKLOADS.len() as f64;
    let bw = (gw - 30.0) / CONTENDERS.len() as f64;
    for (gi, (wl, wl_label)) in WORKLOADS.iter().enumerate() {
        let gx = x0 + gi as f64 * gw + 15.0;
        for (ci, c) in CONTENDERS.iter().enumerate() {
            let st = data.stat("closed", wl, c.id, |r| r.rps);
            if st.n == 0 {
                continue;
            }
            let x = gx + ci as f64 * bw;
            let h = ph * st.med / max_rps;
            let _ = writeln!(s, r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {} req/s</title></rect>"#, y0 + ph - h, bw - 3.0, c.color, esc(c.label), fmt_int(st.med));
            let cx = x + (bw - 3.0) / 2.0;
            let (ya, yb) = (y0 + ph - ph * st.min / max_rps, y0 + ph - ph * st.max / max_rps);
            let _ = writeln!(s, r##"<line x1="{cx:.1}" y1="{ya:.1}" x2="{cx:.1}" y2="{yb:.1}" stroke="#222"/><line x1="{:.1}" y1="{yb:.1}" x2="{:.1}" y2="{yb:.1}" stroke="#222"/><line x1="{:.1}" y1="{ya:.1}" x2="{:.1}" y2="{ya:.1}" stroke="#222"/>"##, cx - 3.0, cx + 3.0, cx - 3.0, cx + 3.0);
        }
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, gx + (gw - 30.0) / 2.0, y0 + ph + 18.0, esc(wl_label));
    }
    let _ = writeln!(s, r##"<text x="18" y="{:.1}" transform="rotate(-90 18 {:.1})" text-anchor="middle" fill="#444">requests / s</text>"##, y0 + ph / 2.0, y0 + ph / 2.0);

    // Panel 2: Envoy CPU µs per request on the pool, authorizer stacked.
    let (qx, qy, qw) = (650.0, 70.0, 230.0);
    let _ = writeln!(s, r#"<text x="{qx}" y="{:.1}" font-weight="bold">CPU µs / request, fit pool</text>"#, qy + 4.0);
    let cpu: Vec<(f64, f64)> = CONTENDERS
        .iter()
        .map(|c| (data.stat("closed", "fit", c.id, |r| r.envoy_us).med, data.stat("closed", "fit", c.id, |r| r.authz_us).med))
        .collect();
    let max_cpu = cpu.iter().map(|(a, b)| a + b).fold(1.0, f64::max) * 1.25;
    for (i, (c, (e, az))) in CONTENDERS.iter().zip(&cpu).enumerate() {
        let y = qy + 18.0 + i as f64 * 40.0;
        let we = qw * e / max_cpu;
        let wa = qw * az / max_cpu;
        let _ = writeln!(s, r##"<text x="{qx}" y="{:.1}" fill="#333">{}</text>"##, y + 10.0, esc(c.label));
        let _ = writeln!(s, r#"<rect x="{qx}" y="{:.1}" width="{we:.1}" height="16" fill="{}"/>"#, y + 15.0, c.color);
        if wa > 0.0 {
            let _ = writeln!(s, r##"<rect x="{:.1}" y="{:.1}" width="{wa:.1}" height="16" fill="{}" fill-opacity="0.45" stroke="{}"/>"##, qx + we, y + 15.0, c.color, c.color);
        }
        let txt = if *az > 0.0 { format!("{e:.1} + {az:.1}") } else { format!("{e:.1}") };
        let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" fill="#222">{txt}</text>"##, qx + we + wa + 5.0, y + 27.0);
    }
    let _ = writeln!(s, r##"<text x="{qx}" y="{:.1}" fill="#555" font-size="11">Envoy (all threads); ext_authz: + authorizer</text>"##, qy + 18.0 + CONTENDERS.len() as f64 * 40.0 + 8.0);

    // Legend.
    let (mut lx, mut ly) = (70.0, ht - 44.0);
    for c in CONTENDERS {
        let wdt = 30.0 + 6.5 * c.label.chars().count() as f64;
        if lx + wdt > wd - 10.0 {
            lx = 70.0;
            ly += 18.0;
        }
        let _ = writeln!(s, r#"<rect x="{lx}" y="{ly:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#, c.color, lx + 16.0, ly + 10.0, esc(c.label));
        lx += wdt;
    }
    s.push_str("</svg>\n");
    s
}

fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let n = if f <= 1.0 { 1.0 } else if f <= 2.0 { 2.0 } else if f <= 5.0 { 5.0 } else { 10.0 };
    n * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(med: f64, min: f64, max: f64) -> Spread {
        Spread { med, min, max, n: 7 }
    }

    /// The verdict is on the median; the note says when the round-to-round
    /// spread is at least the effect claimed, or straddles the target.
    #[test]
    fn judge_flags_spreads_larger_than_the_effect() {
        // (spread, kind, target, higher, verdict, note contains, note lacks)
        let rows: &[(Spread, Kind, f64, bool, &str, &[&str], &[&str])] = &[
            // 1.60× [1.55–1.65]: width 0.10 < effect 0.60, clear of 1.5.
            (s(1.60, 1.55, 1.65), Kind::Ratio, 1.5, true, "**met**", &[], &["not resolved", "straddles"]),
            // 1.10× [0.90–1.40]: width 0.50 ≥ effect 0.10, and the range straddles 1.1.
            (s(1.10, 0.90, 1.40), Kind::Ratio, 1.1, true, "**met**", &["not resolved", "straddles"], &[]),
            // 0.70× [0.60–0.75] against ≥ 0.85: missed, effect 0.30 > width 0.15.
            (s(0.70, 0.60, 0.75), Kind::Ratio, 0.85, true, "**missed**", &[], &["not resolved", "straddles"]),
            // 2.0 µs [−1.0–4.0] against ≤ 3 µs: met on the median, width 5 ≥ effect 2, straddles 3.
            (s(2.0, -1.0, 4.0), Kind::Diff, 3.0, false, "**met**", &["not resolved", "straddles"], &[]),
            // 10 µs [9–11] against ≤ 3 µs: missed, resolved.
            (s(10.0, 9.0, 11.0), Kind::Diff, 3.0, false, "**missed**", &[], &["not resolved", "straddles"]),
        ];
        for (i, (sp, kind, target, higher, verdict, has, lacks)) in rows.iter().enumerate() {
            let t = Target { measure: "m", s: *sp, kind: *kind, target: *target, higher: *higher, unit: "×", decimals: 2 };
            let (v, note) = judge(&t);
            assert_eq!(v, *verdict, "row {i}");
            for h in *has {
                assert!(note.contains(h), "row {i}: {note:?} should say {h:?}");
            }
            for l in *lacks {
                assert!(!note.contains(l), "row {i}: {note:?} should not say {l:?}");
            }
        }
    }

    /// A single measurement claims no spread; nothing measured is said so.
    #[test]
    fn judge_single_and_missing_measurements() {
        let one = Target { measure: "m", s: Spread { med: 4.0, min: 4.0, max: 4.0, n: 1 }, kind: Kind::Diff, target: 5.0, higher: false, unit: " MiB", decimals: 1 };
        assert_eq!(judge(&one), ("**met**".to_owned(), String::new()));
        let none = Target { s: Spread::default(), ..one };
        assert_eq!(judge(&none).1, "not measured");
    }
}
