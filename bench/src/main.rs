//! `tollgate-bench`: the helpers behind `make bench` (scripts/bench/run.sh).
//!
//! ```text
//! tollgate-bench gen    --dir D --config envoy/tollgate.json --wasm W --floor-wasm F --native N [--port-base P] [--feed-wait-ms W]
//! tollgate-bench authz  --listen 127.0.0.1:P --config D/tollgate-bench.json
//! tollgate-bench open   --url U --tokens FILE --rate R --seconds S [--connections N]
//! tollgate-bench authority --url U --mode feed|refresh|bump [--seconds S] [--connections N] [--rate R]
//! tollgate-bench rate   --results FILE [--fraction F]
//! tollgate-bench report --dir D --md BENCHMARKS.md --svg docs/bench/throughput.svg [--criterion target/criterion]
//! ```
//!
//! The HMAC secret comes from `TOLLGATE_DEMO_KEY`, as it does for the filter.

mod authority;
mod authz;
mod gen;
mod open;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate::config::Config;

/// One contender: a filter in front of the same `direct_response` route.
pub struct Contender {
    pub id: &'static str,
    pub label: &'static str,
    pub color: &'static str,
}

/// In the order of their listen ports (port base + index).
pub const CONTENDERS: &[Contender] = &[
    Contender { id: "bare", label: "bare Envoy", color: "#8c8c8c" },
    Contender { id: "jwt_authn_cache", label: "jwt_authn, cache on", color: "#3b6fc4" },
    Contender { id: "jwt_authn_nocache", label: "jwt_authn, cache off", color: "#93b3e6" },
    Contender { id: "ext_authz", label: "ext_authz + authorizer", color: "#d0843f" },
    Contender { id: "tollgate", label: "Tollgate (Wasm)", color: "#2a9d5c" },
    Contender { id: "native", label: "Tollgate (native module)", color: "#1b6b3e" },
    // Reference floors (bench/wasm-floor), pool workload only: what any
    // proxy-wasm filter pays in V8, and that plus Tollgate's host calls.
    Contender { id: "wasm_noop", label: "Wasm floor: no-op filter", color: "#c9c9c9" },
    Contender { id: "wasm_hostcalls", label: "Wasm floor: Tollgate's host calls", color: "#a7d8b9" },
];

pub fn is_floor(id: &str) -> bool {
    id.starts_with("wasm_")
}

/// The pools are sized from Tollgate's token cache capacity (`gen`).
pub const WORKLOADS: &[(&str, &str)] = &[
    ("fit", "pool that fits in the cache"),
    ("over", "pool 4× the cache"),
    ("denied", "denied mix"),
];

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn b64url(bytes: &[u8]) -> String {
    tollgate::token::b64::encode(bytes)
}

/// The demo document (envoy/tollgate.json) reduced to the cached-path
/// decision this bench measures: no `authority`, `revocation` or `refresh`
/// (they need the authority running and act off the request path), and no
/// live-checked (`fresh`) rules; `filter_state` at its default, off (the
/// demo turns it on for its access log; jwt_authn here publishes nothing
/// either, no `payload_in_metadata`; docs/bench/changes.md measures what it
/// costs). Everything else, rules included, as shipped.
pub fn bench_document(path: &Path) -> Result<serde_json::Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let obj = doc.as_object_mut().ok_or("the document is not an object")?;
    for k in ["authority", "revocation", "refresh", "filter_state"] {
        obj.remove(k);
    }
    if let Some(rules) = obj.get_mut("rules").and_then(|r| r.as_array_mut()) {
        for r in rules.iter_mut().filter_map(|r| r.as_object_mut()) {
            r.remove("fresh");
            r.remove("max_staleness_ms");
        }
    }
    Ok(doc)
}

/// A configuration document, validated by Tollgate itself.
pub fn load_config(path: &Path) -> Result<(Config, serde_json::Value), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config = Config::parse(&bytes, &|name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    let doc = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok((config, doc))
}

struct Flags(Vec<String>);

impl Flags {
    fn get(&self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|a| a == name)?;
        self.0.get(i + 1).cloned()
    }
    fn need(&self, name: &str) -> Result<String, String> {
        self.get(name).ok_or_else(|| format!("{name} is required"))
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            Some(v) => v.parse().map_err(|_| format!("{name}: not a number: {v}")),
            None => Ok(default),
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let f = Flags(args.collect());
    let result = match cmd.as_str() {
        "gen" => (|| {
            gen::run(gen::Args {
                dir: f.need("--dir")?.into(),
                config: f.need("--config")?.into(),
                wasm: f.need("--wasm")?.into(),
                floor_wasm: f.need("--floor-wasm")?.into(),
                native: f.need("--native")?.into(),
                port_base: f.num("--port-base", 18000)?,
                feed_wait_ms: f.num("--feed-wait-ms", 10_000)?,
            })
        })(),
        "authz" => (|| authz::run(f.need("--listen")?, f.need("--config")?.into()))(),
        "open" => (|| {
            let path = f.need("--tokens")?;
            let tokens: Vec<String> = std::fs::read_to_string(&path)
                .map_err(|e| format!("{path}: {e}"))?
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            if tokens.is_empty() {
                return Err(format!("{path}: no tokens"));
            }
            open::run(open::Args {
                url: f.need("--url")?,
                tokens,
                rate: f.num("--rate", 1000)?,
                seconds: f.num("--seconds", 5.0)?,
                connections: f.num("--connections", 32)?,
            })
        })(),
        "authority" => (|| {
            authority::run(authority::Args {
                url: f.need("--url")?,
                mode: f.need("--mode")?,
                seconds: f.num("--seconds", 5.0)?,
                connections: f.num("--connections", 16)?,
                rate: f.num("--rate", 10)?,
            })
        })(),
        "rate" => (|| {
            let rate = report::open_rate(&PathBuf::from(f.need("--results")?), f.num("--fraction", 0.5)?)?;
            println!("{rate}");
            Ok(())
        })(),
        "report" => (|| {
            report::run(report::Args {
                dir: f.need("--dir")?.into(),
                md: f.need("--md")?.into(),
                svg: f.need("--svg")?.into(),
                criterion: f.get("--criterion").map(PathBuf::from),
            })
        })(),
        _ => Err("usage: tollgate-bench gen|authz|open|authority|rate|report (see src/main.rs)".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-bench {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
