//! Envoy stats through proxy-wasm: defined once per VM at configure time,
//! shown by Envoy with the `wasmcustom.` prefix.

use crate::authenticator::DenyReason;
use crate::token::TokenError;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

pub(crate) struct Metrics {
    pub allowed: u32,
    pub anonymous: u32,
    /// `(reason code, id)` for every deny reason.
    denied: Vec<(&'static str, u32)>,
    /// Requests served on a stale revocation set (`on_stale: allow`).
    pub stale_allowed: u32,
    pub sync_ok: u32,
    pub sync_failed: u32,
    /// Feed pages that came from another store than the last one.
    pub store_changed: u32,
    /// Gauges: age of the revocation set (ms) and its size.
    pub staleness_ms: u32,
    pub entries: u32,
    pub live_checks: u32,
    pub live_failed: u32,
    pub refresh_ok: u32,
    pub refresh_rejected: u32,
    pub refresh_failed: u32,
    /// Requests that waited on another request's refresh on this worker.
    pub refresh_coalesced: u32,
    /// Refreshes answered from another worker's result (shared data).
    pub refresh_shared: u32,
    /// Histogram of callout round trips, ms.
    pub callout_ms: u32,
}

impl Metrics {
    pub fn define() -> Option<Metrics> {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        let gauge = |name: &str| hostcalls::define_metric(MetricType::Gauge, name).ok();
        let mut denied = Vec::new();
        for code in TokenError::CODES.iter().chain(DenyReason::METRICS) {
            denied.push((*code, counter(&format!("tollgate.denied.{code}"))?));
        }
        Some(Metrics {
            allowed: counter("tollgate.allowed")?,
            anonymous: counter("tollgate.anonymous")?,
            denied,
            stale_allowed: counter("tollgate.revocation.stale_allowed")?,
            sync_ok: counter("tollgate.revocation.sync_ok")?,
            sync_failed: counter("tollgate.revocation.sync_failed")?,
            store_changed: counter("tollgate.revocation.store_changed")?,
            staleness_ms: gauge("tollgate.revocation.staleness_ms")?,
            entries: gauge("tollgate.revocation.entries")?,
            live_checks: counter("tollgate.live_check.ok")?,
            live_failed: counter("tollgate.live_check.failed")?,
            refresh_ok: counter("tollgate.refresh.ok")?,
            refresh_rejected: counter("tollgate.refresh.rejected")?,
            refresh_failed: counter("tollgate.refresh.failed")?,
            refresh_coalesced: counter("tollgate.refresh.coalesced")?,
            refresh_shared: counter("tollgate.refresh.shared")?,
            callout_ms: hostcalls::define_metric(MetricType::Histogram, "tollgate.callout.latency_ms").ok()?,
        })
    }

    /// A failed metric update never fails a request.
    pub fn add(id: u32, n: i64) {
        let _ = hostcalls::increment_metric(id, n);
    }

    pub fn count(id: u32) {
        Metrics::add(id, 1);
    }

    pub fn set(id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    pub fn denied(&self, code: &str) {
        if let Some((_, id)) = self.denied.iter().find(|(c, _)| *c == code) {
            Metrics::count(*id);
        }
    }
}
