//! Prometheus metrics, kept as atomics and rendered in the text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
pub struct Metrics {
    /// (grant_type, result) -> count
    grants: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    pub refresh_rotated: AtomicU64,
    pub refresh_replayed: AtomicU64,
    pub refresh_reuse_detected: AtomicU64,
    pub refresh_rejected: AtomicU64,
    /// kind ("sub" | "sid") -> count
    bumps: Mutex<BTreeMap<&'static str, u64>>,
    pub feed_requests: AtomicU64,
    pub feed_cursor_rejected: AtomicU64,
    /// (grant_type, limit) -> count
    throttled: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// result -> count
    edge_auth: Mutex<BTreeMap<&'static str, u64>>,
    /// op -> (count, total micros, errors)
    store: Mutex<BTreeMap<&'static str, (u64, u64, u64)>>,
}

fn bump_map<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    if let Ok(mut m) = m.lock() {
        *m.entry(k).or_default() += 1;
    }
}

impl Metrics {
    pub fn grant(&self, grant: &'static str, result: &'static str) {
        bump_map(&self.grants, (grant, result));
    }

    pub fn throttled(&self, grant: &'static str, limit: &'static str) {
        bump_map(&self.throttled, (grant, limit));
    }

    pub fn edge_auth(&self, result: &'static str) {
        bump_map(&self.edge_auth, result);
    }

    pub fn bump(&self, kind: &'static str) {
        bump_map(&self.bumps, kind);
    }

    pub fn store_op(&self, op: &'static str, took: Duration, ok: bool) {
        if let Ok(mut m) = self.store.lock() {
            let e = m.entry(op).or_default();
            e.0 += 1;
            e.1 += took.as_micros() as u64;
            if !ok {
                e.2 += 1;
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP tollgate_authority_grants_total Token endpoint answers by grant type and result.");
        let _ = writeln!(out, "# TYPE tollgate_authority_grants_total counter");
        if let Ok(m) = self.grants.lock() {
            for ((g, r), n) in m.iter() {
                let _ = writeln!(out, "tollgate_authority_grants_total{{grant_type=\"{g}\",result=\"{r}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP tollgate_authority_throttled_total Credential grants refused 429 slow_down, by grant type and the budget that refused.");
        let _ = writeln!(out, "# TYPE tollgate_authority_throttled_total counter");
        if let Ok(m) = self.throttled.lock() {
            for ((g, l), n) in m.iter() {
                let _ = writeln!(out, "tollgate_authority_throttled_total{{grant_type=\"{g}\",limit=\"{l}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP tollgate_authority_edge_auth_total Edge-endpoint requests by edge-credential result.");
        let _ = writeln!(out, "# TYPE tollgate_authority_edge_auth_total counter");
        if let Ok(m) = self.edge_auth.lock() {
            for (r, n) in m.iter() {
                let _ = writeln!(out, "tollgate_authority_edge_auth_total{{result=\"{r}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP tollgate_authority_refresh_total Refresh-token presentations by outcome.");
        let _ = writeln!(out, "# TYPE tollgate_authority_refresh_total counter");
        for (outcome, v) in [
            ("rotated", &self.refresh_rotated),
            ("replayed_in_grace", &self.refresh_replayed),
            ("reuse_detected", &self.refresh_reuse_detected),
            ("rejected", &self.refresh_rejected),
        ] {
            let _ = writeln!(out, "tollgate_authority_refresh_total{{outcome=\"{outcome}\"}} {}", v.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP tollgate_authority_version_bumps_total Version bumps by key kind.");
        let _ = writeln!(out, "# TYPE tollgate_authority_version_bumps_total counter");
        if let Ok(m) = self.bumps.lock() {
            for kind in ["sub", "sid"] {
                let n = m.get(kind).copied().unwrap_or(0);
                let _ = writeln!(out, "tollgate_authority_version_bumps_total{{kind=\"{kind}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP tollgate_authority_feed_requests_total Revocation feed requests.");
        let _ = writeln!(out, "# TYPE tollgate_authority_feed_requests_total counter");
        let _ = writeln!(out, "tollgate_authority_feed_requests_total {}", self.feed_requests.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP tollgate_authority_feed_cursor_rejected_total Feed requests answered 410 (re-snapshot).");
        let _ = writeln!(out, "# TYPE tollgate_authority_feed_cursor_rejected_total counter");
        let _ = writeln!(out, "tollgate_authority_feed_cursor_rejected_total {}", self.feed_cursor_rejected.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP tollgate_authority_store_op_seconds Store operation latency.");
        let _ = writeln!(out, "# TYPE tollgate_authority_store_op_seconds summary");
        let _ = writeln!(out, "# HELP tollgate_authority_store_errors_total Store operations that failed.");
        let _ = writeln!(out, "# TYPE tollgate_authority_store_errors_total counter");
        if let Ok(m) = self.store.lock() {
            for (op, (count, micros, errors)) in m.iter() {
                let _ = writeln!(out, "tollgate_authority_store_op_seconds_count{{op=\"{op}\"}} {count}");
                let _ = writeln!(out, "tollgate_authority_store_op_seconds_sum{{op=\"{op}\"}} {:.6}", *micros as f64 / 1e6);
                let _ = writeln!(out, "tollgate_authority_store_errors_total{{op=\"{op}\"}} {errors}");
            }
        }
        out
    }
}
