//! Prometheus metrics, kept as atomics and rendered in the text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
    /// Feed requests held right now (long polling).
    pub feed_held: AtomicU64,
    /// Whether the store's bump notifications are subscribed: 1 yes, 0 no,
    /// -1 the store has none (not rendered).
    pub feed_listener_up: AtomicI64,
    /// cause -> count (see [`crate::longpoll::Wake`])
    feed_wakeups: Mutex<BTreeMap<&'static str, u64>>,
    /// kind -> count (see [`FEED_ANSWER_KINDS`])
    feed_answers: Mutex<BTreeMap<&'static str, u64>>,
    /// (grant_type, limit) -> count
    throttled: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// result -> count
    edge_auth: Mutex<BTreeMap<&'static str, u64>>,
    /// op -> (count, total micros, errors)
    store: Mutex<BTreeMap<&'static str, (u64, u64, u64)>>,
}

/// The kinds of feed answers: a snapshot, a delta with entries, a delta
/// without (nothing changed), 410 (re-snapshot), 503.
pub const FEED_ANSWER_KINDS: [&str; 5] = ["snapshot", "delta", "empty", "gone", "unavailable"];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            grants: Mutex::default(),
            refresh_rotated: AtomicU64::default(),
            refresh_replayed: AtomicU64::default(),
            refresh_reuse_detected: AtomicU64::default(),
            refresh_rejected: AtomicU64::default(),
            bumps: Mutex::default(),
            feed_requests: AtomicU64::default(),
            feed_cursor_rejected: AtomicU64::default(),
            feed_held: AtomicU64::default(),
            feed_listener_up: AtomicI64::new(-1),
            feed_wakeups: Mutex::default(),
            feed_answers: Mutex::default(),
            throttled: Mutex::default(),
            edge_auth: Mutex::default(),
            store: Mutex::default(),
        }
    }
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

    /// A held feed request was answered (or not held) for `cause`.
    pub fn feed_wakeup(&self, cause: crate::longpoll::Wake) {
        bump_map(&self.feed_wakeups, cause.label());
    }

    /// A feed answer of `kind` (one of [`FEED_ANSWER_KINDS`]).
    pub fn feed_answer(&self, kind: &'static str) {
        bump_map(&self.feed_answers, kind);
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
        let _ = writeln!(out, "# HELP tollgate_authority_feed_answers_total Feed answers by kind: snapshot, delta (with entries), empty (nothing newer than the cursor), gone (410), unavailable (503).");
        let _ = writeln!(out, "# TYPE tollgate_authority_feed_answers_total counter");
        if let Ok(m) = self.feed_answers.lock() {
            for kind in FEED_ANSWER_KINDS {
                let n = m.get(kind).copied().unwrap_or(0);
                let _ = writeln!(out, "tollgate_authority_feed_answers_total{{kind=\"{kind}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP tollgate_authority_feed_held_requests Feed requests held (long polling) right now.");
        let _ = writeln!(out, "# TYPE tollgate_authority_feed_held_requests gauge");
        let _ = writeln!(out, "tollgate_authority_feed_held_requests {}", self.feed_held.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP tollgate_authority_feed_wakeups_total Held feed requests answered, by what ended the wait (limit: answered at once, the instance held feed_max_held already).");
        let _ = writeln!(out, "# TYPE tollgate_authority_feed_wakeups_total counter");
        if let Ok(m) = self.feed_wakeups.lock() {
            for cause in crate::longpoll::Wake::ALL {
                let n = m.get(cause.label()).copied().unwrap_or(0);
                let _ = writeln!(out, "tollgate_authority_feed_wakeups_total{{cause=\"{}\"}} {n}", cause.label());
            }
        }
        let up = self.feed_listener_up.load(Ordering::Relaxed);
        if up >= 0 {
            let _ = writeln!(out, "# HELP tollgate_authority_feed_listener_up Whether this instance is subscribed to the store's bump notifications (Redis pub/sub).");
            let _ = writeln!(out, "# TYPE tollgate_authority_feed_listener_up gauge");
            let _ = writeln!(out, "tollgate_authority_feed_listener_up {up}");
        }
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
