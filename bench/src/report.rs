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

/// One measured run, reduced to what the report shows.
#[derive(Debug, Clone)]
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
    rss_kb: f64,
    authz_rss_kb: f64,
    lag_us: f64,
    /// Core 0 busy time not spent in the contender's processes, per wall second.
    other0: f64,
}

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn load_runs(path: &Path, clk_tck: f64) -> Result<Vec<Run>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut runs = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let envoy_s = num(&v, "envoy_ticks") / clk_tck;
        let authz_s = num(&v, "authz_ticks") / clk_tck;
        let mut r = Run {
            round: num(&v, "round") as u64,
            mode: s("mode"),
            workload: s("workload"),
            contender: s("contender"),
            rps: 0.0,
            requests: 0.0,
            envoy_us: 0.0,
            authz_us: 0.0,
            util: 0.0,
            p50: 0.0,
            p90: 0.0,
            p99: 0.0,
            p999: 0.0,
            max: 0.0,
            non2xx: 0.0,
            errors: 0.0,
            rss_kb: num(&v, "rss_kb"),
            authz_rss_kb: num(&v, "authz_rss_kb"),
            lag_us: 0.0,
            other0: 0.0,
        };
        let wall;
        if let Some(w) = v.get("wrk") {
            wall = num(w, "duration_us") / 1e6;
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
            wall = num(o, "sent_s");
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
        } else {
            return Err(format!("{}:{}: neither wrk nor open", path.display(), i + 1));
        }
        if r.requests > 0.0 {
            r.envoy_us = envoy_s * 1e6 / r.requests;
            r.authz_us = authz_s * 1e6 / r.requests;
        }
        r.util = envoy_s / wall.max(1e-9);
        r.other0 = ((num(&v, "core0_ticks") / clk_tck - envoy_s - authz_s) / wall.max(1e-9)).max(0.0);
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
/// throughput on the pool workload in the closed-loop runs so far (round 1),
/// rounded down to 100 req/s. Below every contender's knee.
pub fn open_rate(results: &Path, fraction: f64) -> Result<u64, String> {
    let runs = load_runs(results, 100.0)?;
    let slowest = runs
        .iter()
        .filter(|r| r.mode == "closed" && r.workload == "pool")
        .map(|r| r.rps)
        .fold(f64::INFINITY, f64::min);
    if !slowest.is_finite() {
        return Err("no closed-loop pool runs yet".into());
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

pub fn run(a: Args) -> Result<(), String> {
    let meta = load_meta(&a.dir.join("meta.txt"));
    let m = |k: &str| meta.get(k).cloned().unwrap_or_else(|| "?".into());
    let clk_tck: f64 = meta.get("clk_tck").and_then(|v| v.parse().ok()).unwrap_or(100.0);
    let data = Data { runs: load_runs(&a.dir.join("results.jsonl"), clk_tck)? };
    let crit = a.criterion.as_deref().map(load_criterion).unwrap_or_default();
    let quick = m("quick") == "1";

    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Written by `make bench` (scripts/bench/run.sh) on {}{}. Every number below comes from that one run; \
         rerun `make bench` to replace them. Ratios are computed **pair by pair within each round** (the contenders \
         run interleaved, one after another, in every round) and given as the median over rounds with the min–max \
         in brackets.\n",
        m("date"),
        if quick { " in **smoke mode (BENCH_QUICK=1): one short round, numbers are not meaningful**" } else { "" }
    );
    let disturbed = spread(data.runs.iter().filter(|r| r.mode == "closed").map(|r| r.other0).collect());
    if disturbed.med > 0.10 {
        let _ = writeln!(
            w,
            "> **This run was disturbed.** Other work on this machine kept core 0 (Envoy's) busy beside the \
             contender: {:.0}% in the median measurement, up to {:.0}% (column `core 0 other`), and Envoy did not \
             always saturate its core (column `util`). Throughput and latency carry that noise, so read the spreads \
             and prefer the CPU-per-request columns, which count only Envoy's own time. Rerun `make bench` on an idle \
             machine for clean numbers.\n",
            100.0 * disturbed.med,
            100.0 * disturbed.max
        );
    }
    let _ = writeln!(w, "![throughput and CPU per request](docs/bench/throughput.svg)\n");
    let _ = writeln!(
        w,
        "Where the time goes inside the filter, from separate measurements: [docs/bench/profile.md](docs/bench/profile.md). What each hot-path change bought: [docs/bench/changes.md](docs/bench/changes.md).\n"
    );

    // ---- headline --------------------------------------------------------
    let tp_jwt = data.paired("closed", "pool", "tollgate", "jwt_authn_cache", |r| r.rps, ratio);
    let tp_jwt_off = data.paired("closed", "pool", "tollgate", "jwt_authn_nocache", |r| r.rps, ratio);
    let tp_ext = data.paired("closed", "pool", "tollgate", "ext_authz", |r| r.rps, ratio);
    let tp_bare = data.paired("closed", "pool", "tollgate", "bare", |r| r.rps, ratio);
    let cpu_add = data.paired("closed", "pool", "tollgate", "bare", |r| r.envoy_us, diff);
    let cpu_add_jwt = data.paired("closed", "pool", "jwt_authn_cache", "bare", |r| r.envoy_us, diff);
    let p99_bare = data.paired("open", "pool", "tollgate", "bare", |r| r.p99, ratio);
    let hot_jwt = data.paired("closed", "hot", "tollgate", "jwt_authn_cache", |r| r.rps, ratio);
    let den_jwt = data.paired("closed", "denied", "tollgate", "jwt_authn_cache", |r| r.rps, ratio);
    let own = data.paired("closed", "pool", "tollgate", "wasm_noop", |r| r.envoy_us, diff);
    let calls = data.paired("closed", "pool", "wasm_hostcalls", "wasm_noop", |r| r.envoy_us, diff);
    let platform = data.paired("closed", "pool", "wasm_noop", "bare", |r| r.envoy_us, diff);
    let core_v8 = data.paired("closed", "pool", "tollgate", "wasm_hostcalls", |r| r.envoy_us, diff);
    let noop_bare = data.paired("closed", "pool", "wasm_noop", "bare", |r| r.rps, ratio);
    let nat_bare = data.paired("closed", "pool", "native", "bare", |r| r.rps, ratio);
    let nat_jwt = data.paired("closed", "pool", "native", "jwt_authn_cache", |r| r.rps, ratio);
    let nat_cpu = data.paired("closed", "pool", "native", "bare", |r| r.envoy_us, diff);
    let nat_wasm = data.paired("closed", "pool", "native", "tollgate", |r| r.rps, ratio);
    let verdict = |ok: bool, s: &Spread| if s.n == 0 { "–" } else if ok { "**met**" } else { "**missed**" };
    let rng = |s: &Spread, d: usize| format!("{:.*} [{:.*}–{:.*}]", d, s.med, d, s.min, d, s.max);

    let _ = writeln!(w, "## Headline: the targets (docs/architecture.md, performance budget)\n");
    let _ = writeln!(w, "Workload: the 10,000-token pool. Targets are reported, never asserted.\n");
    let _ = writeln!(w, "| measure | this run: median [min–max over rounds] | target | |");
    let _ = writeln!(w, "|---|---|---|---|");
    let _ = writeln!(w, "| throughput, Tollgate / jwt_authn (cache on) | {}× | ≥ 1.3× | {} |", rng(&tp_jwt, 2), verdict(tp_jwt.med >= 1.3, &tp_jwt));
    let _ = writeln!(w, "| throughput, Tollgate / bare Envoy | {}× | ≥ 0.9× | {} |", rng(&tp_bare, 2), verdict(tp_bare.med >= 0.9, &tp_bare));
    let _ = writeln!(w, "| added Envoy CPU per request, Tollgate − bare | {} µs | ≤ 3 µs | {} |", rng(&cpu_add, 2), verdict(cpu_add.med <= 3.0, &cpu_add));
    let _ = writeln!(w, "| p99 at {} req/s (open loop), Tollgate / bare | {}× | ≤ 1.10× | {} |", m("open_rate"), rng(&p99_bare, 2), verdict(p99_bare.med <= 1.10, &p99_bare));
    let _ = writeln!(w, "| throughput, native module / bare Envoy | {}× | ≥ 0.9× | {} |", rng(&nat_bare, 2), verdict(nat_bare.med >= 0.9, &nat_bare));
    let _ = writeln!(w, "| throughput, native module / jwt_authn (cache on) | {}× | ≥ 2× | {} |", rng(&nat_jwt, 2), verdict(nat_jwt.med >= 2.0, &nat_jwt));
    let _ = writeln!(w, "| added Envoy CPU per request, native module − bare | {} µs | ≤ 3 µs | {} |", rng(&nat_cpu, 2), verdict(nat_cpu.med <= 3.0, &nat_cpu));
    let _ = writeln!(w, "| throughput, native module / Wasm filter | {}× | (reported) | |", rng(&nat_wasm, 2));
    let _ = writeln!(w);
    let _ = writeln!(w, "Other pairs from the same rounds: Tollgate / jwt_authn (cache off) {}×; Tollgate / ext_authz {}×; \
        on the hot token Tollgate / jwt_authn (cache on) {}×; on the denied mix {}×. jwt_authn (cache on) adds {} µs of Envoy CPU per request over bare.\n",
        rng(&tp_jwt_off, 2), rng(&tp_ext, 2), rng(&hot_jwt, 2), rng(&den_jwt, 2), rng(&cpu_add_jwt, 2));

    if own.n > 0 {
        let _ = writeln!(w, "Where Tollgate's added CPU goes (pool, Envoy µs per request, paired by round): an empty proxy-wasm filter \
            in V8 already costs {} µs over bare Envoy (and reaches {}× bare throughput); the host calls Tollgate's glue makes \
            (header map, `source.address`, clock, four header writes, a counter) add {} µs to that; the token work itself \
            (extract, verify, policy, decision) running in V8 adds {} µs. Tollgate − empty filter: {} µs.\n",
            rng(&platform, 2), rng(&noop_bare, 2), rng(&calls, 2), rng(&core_v8, 2), rng(&own, 2));
    }

    // ---- closed loop ------------------------------------------------------
    let _ = writeln!(w, "## Throughput at saturation (closed loop)\n");
    let _ = writeln!(
        w,
        "wrk, {} connections, 1 thread, {} s per run, {} rounds. req/s: median [min–max] over rounds and the spread \
         (max−min)/median. CPU: Envoy's utime+stime from /proc/<pid>/stat (all threads, V8's included) over the run, \
         per request; for ext_authz the authorizer's own CPU per request is added after the `+`. Util: Envoy CPU seconds \
         per wall second (1.00 = its core is saturated). Core 0 other: the worst round's share of core 0 busy outside the \
         contender's processes (interrupts, loopback softirq, anything else running on the machine); a large value means \
         that round was disturbed. Latency here is closed-loop (wrk's, hides queueing); see the \
         open-loop table for tails. RSS: Envoy's VmRSS after the run (max over rounds; for ext_authz + the authorizer's).\n",
        m("connections"), m("seconds"), m("rounds")
    );
    for (wl, wl_label) in WORKLOADS {
        let _ = writeln!(w, "### {wl_label}\n");
        let _ = writeln!(w, "| contender | req/s | spread | × bare | Tollgate / it | CPU µs/req | util | core 0 other | p50 / p99 / p99.9 ms | non-2xx | RSS MiB |");
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
            let non2xx: f64 = data.select("closed", wl, c.id).iter().map(|r| r.non2xx).sum();
            let reqs: f64 = data.select("closed", wl, c.id).iter().map(|r| r.requests).sum();
            let errors: f64 = data.select("closed", wl, c.id).iter().map(|r| r.errors).sum();
            let rss = data.stat("closed", wl, c.id, |r| r.rss_kb);
            let arss = data.stat("closed", wl, c.id, |r| r.authz_rss_kb);
            let rss_s = if arss.max > 0.0 { format!("{:.0} + {:.0}", rss.max / 1024.0, arss.max / 1024.0) } else { format!("{:.0}", rss.max / 1024.0) };
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
                rss_s
            );
        }
        let _ = writeln!(w);
    }

    // ---- open loop --------------------------------------------------------
    let _ = writeln!(w, "## Latency at a fixed rate (open loop)\n");
    let _ = writeln!(
        w,
        "{} req/s on the 10,000-token pool, {} s per run, {} rounds; the rate is {} of the slowest contender's \
         saturated throughput in round 1, so every contender is below its knee. Generator: `tollgate-bench open` \
         (wrk2-style: each request has a due time, latency counts from it, tokens rotate per request). Latencies are \
         the median over rounds of each round's percentile; `p99 / bare` is paired by round. Max schedule lag: \
         how late the generator itself dispatched (worst round).\n",
        m("open_rate"),
        m("open_seconds"),
        m("rounds"),
        m("open_fraction")
    );
    let _ = writeln!(w, "| contender | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | p99 / bare | achieved req/s | CPU µs/req | max lag µs |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for c in CONTENDERS {
        let p50 = data.stat("open", "pool", c.id, |r| r.p50);
        if p50.n == 0 {
            continue;
        }
        let st = |f: fn(&Run) -> f64| data.stat("open", "pool", c.id, f);
        let vs = data.paired("open", "pool", c.id, "bare", |r| r.p99, ratio);
        let cpu = st(|r| r.envoy_us);
        let acpu = st(|r| r.authz_us);
        let cpu_s = if c.id == "ext_authz" { format!("{:.2} + {:.2}", cpu.med, acpu.med) } else { format!("{:.2}", cpu.med) };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {:.0} |",
            c.label,
            ms(p50.med),
            ms(st(|r| r.p90).med),
            ms(st(|r| r.p99).med),
            ms(st(|r| r.p999).med),
            ms(st(|r| r.max).med),
            vs.med,
            fmt_int(st(|r| r.rps).med),
            cpu_s,
            st(|r| r.lag_us).max
        );
    }
    let _ = writeln!(w);

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
    let _ = writeln!(w, "Filter module: `target/wasm32-wasip1/release/tollgate.wasm`, {} bytes.\n", fmt_int(m("wasm_bytes").parse().unwrap_or(0.0)));

    // ---- reading ----------------------------------------------------------
    let _ = writeln!(w, "## Reading\n");
    let bare_us = data.stat("closed", "pool", "bare", |r| r.envoy_us).med;
    let tg_us = data.stat("closed", "pool", "tollgate", |r| r.envoy_us).med;
    let decide_ns = crit.iter().find(|(id, _)| id.ends_with("decide_allow")).map(|(_, ns)| *ns);
    let _ = writeln!(
        w,
        "- Bare Envoy spends {:.2} µs of CPU per request on this machine (HTTP/1.1 parse, routing, a direct response). \
         Tollgate adds {:.2} µs to that; jwt_authn with its cache adds {:.2} µs on the 10k pool, where a 100-entry \
         cache almost never hits (Tollgate at {:.2} µs per request in total).",
        bare_us, cpu_add.med, cpu_add_jwt.med, tg_us
    );
    if let Some(d) = decide_ns {
        let _ = writeln!(
            w,
            "- The whole decision natively (`authenticator::decide`: extract, verify, policy, header operations) costs \
             {:.2} µs, {:.1}× one HMAC-SHA256 over the token. In Envoy, Tollgate adds {:.2} µs over bare; the floors \
             split that: {:.2} µs for being a proxy-wasm filter at all (empty filter), {:.2} µs for the host calls the \
             glue makes, {:.2} µs for the core running in V8 (vs {:.2} µs natively).",
            d / 1000.0,
            crit.iter().find(|(id, _)| id.ends_with("hmac_sha256_prekeyed")).map_or(f64::NAN, |(_, f)| d / f),
            cpu_add.med,
            platform.med,
            calls.med,
            core_v8.med,
            d / 1000.0,
        );
    }
    let _ = writeln!(
        w,
        "- Open-loop CPU per request is higher than closed-loop for everyone: at a fixed, lower rate Envoy wakes up \
         for fewer requests at a time, so per-request event-loop overhead is not amortized. Compare contenders \
         within a table, not across them."
    );
    let _ = writeln!(
        w,
        "- ext_authz pays a loopback HTTP round trip per request: Envoy's own CPU per request grows (a second HTTP \
         exchange) and the authorizer burns its own on top, on the same core."
    );
    let _ = writeln!(
        w,
        "- A denied request costs less than an allowed one for every filter (no identity headers, a short local reply), \
         and the hot token shows what caching buys jwt_authn when one token repeats.\n"
    );
    if let Some(notes) = meta.get("jwt_stats") {
        let _ = writeln!(w, "jwt_authn counters at the end of the run (Envoy admin `/stats`): `{notes}`.\n");
    }
    if let Some(notes) = meta.get("tollgate_stats") {
        let _ = writeln!(w, "Tollgate counters at the end of the run: `{}`.\n", notes.trim());
    }

    // ---- setup ------------------------------------------------------------
    let _ = writeln!(w, "## Setup\n");
    let _ = writeln!(w, "- Machine: {} ({} cores), {} MiB RAM, Linux {}.", m("cpu"), m("cores"), m("mem_mib"), m("kernel"));
    let _ = writeln!(w, "- Envoy: `{}`, every contender its own process, `--concurrency 1`, `taskset -c 0`. Load generators on `taskset -c 1`.", m("envoy_version"));
    let _ = writeln!(w, "- Closed loop: `{}`.", m("wrk_cmd"));
    let _ = writeln!(w, "- Open loop: `{}`.", m("open_cmd"));
    let _ = writeln!(w, "- Rust: {}; criterion 0.5.", m("rustc"));
    let _ = writeln!(
        w,
        "- Route: every contender answers from an Envoy `direct_response` (200, 3 bytes) behind its filter. No upstream \
         process: its cost would be identical for everyone but would share the two cores with Envoy or the load \
         generator and blur the difference being measured. This is the strictest setting for the ratios against bare \
         Envoy: with a real upstream the per-request base cost is larger and every filter's share of it smaller."
    );
    let _ = writeln!(
        w,
        "- Contenders: bare Envoy (router only); jwt_authn with the HMAC key as a local `oct` JWKS (HS256), the same \
         issuer, audience and 30 s skew, `forward: true`, `sub` and `scope` copied to headers, with `jwt_cache_config` \
         at its default size (cache on) and without it (cache off); ext_authz (HTTP) to `tollgate-bench authz` \
         (axum, one thread, pinned to core 0 with its Envoy), which verifies the bearer token with \
         `tollgate::token::Verifier` from the same document and answers with the same identity headers or Tollgate's 401; Tollgate as envoy/envoy.yaml loads it (V8), with the bench document: envoy/tollgate.json without `authority`, `revocation`, `refresh` and `fresh` rules — the cached-path decision, no callouts."
    );
    let _ = writeln!(
        w,
        "- Workloads: `GET /api/items` with `Authorization: Bearer` from a file, rotated per request: 10,000 valid \
         tokens with distinct `sub`/`sid`/`jti`; one hot token; a denied mix of 1,000 tokens (a quarter each: MAC from \
         another key, expired, another audience, not a JWS). Order in each round: every workload, every contender \
         (starting contender rotated per round), then the open-loop runs; a 1 s warm-up per contender first."
    );
    let _ = writeln!(
        w,
        "- Shared-machine guard: before every measurement the harness samples both cores and waits while anything \
         else keeps them over 10% busy (a budget of 60 s per run); this run waited {} s in total. The `core 0 other` \
         column shows what still ran beside Envoy during each measurement.",
        m("quiet_waited_s")
    );
    let _ = writeln!(w, "- Wall time of this `make bench` measurement phase: {} s.", m("wall_s"));

    fs::write(&a.md, md).map_err(|e| format!("{}: {e}", a.md.display()))?;
    if let Some(dir) = a.svg.parent() {
        let _ = fs::create_dir_all(dir);
    }
    fs::write(&a.svg, svg(&data, &m("date"))).map_err(|e| format!("{}: {e}", a.svg.display()))?;
    println!("report: wrote {} and {}", a.md.display(), a.svg.display());
    Ok(())
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
    let _ = writeln!(s, r#"<text x="{qx}" y="{:.1}" font-weight="bold">CPU µs / request, 10k pool</text>"#, qy + 4.0);
    let cpu: Vec<(f64, f64)> = CONTENDERS
        .iter()
        .map(|c| (data.stat("closed", "pool", c.id, |r| r.envoy_us).med, data.stat("closed", "pool", c.id, |r| r.authz_us).med))
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
