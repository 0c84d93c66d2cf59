//! Envoy stats through proxy-wasm: every counter and gauge the engine names
//! ([`Counter`], [`Gauge`]), defined once per VM at configure time and shown
//! by Envoy with the `wasmcustom.` prefix.

use crate::edge::{Counter, Gauge};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

pub(super) struct Metrics {
    counters: HashMap<Counter, u32>,
    gauges: HashMap<Gauge, u32>,
}

impl Metrics {
    pub fn define() -> Option<Metrics> {
        let mut counters = HashMap::new();
        for c in Counter::ALL.into_iter().chain(Counter::denied_all()) {
            counters.insert(c, hostcalls::define_metric(MetricType::Counter, &c.name()).ok()?);
        }
        let mut gauges = HashMap::new();
        for g in Gauge::ALL {
            let kind = if g.is_histogram() { MetricType::Histogram } else { MetricType::Gauge };
            gauges.insert(g, hostcalls::define_metric(kind, g.name()).ok()?);
        }
        Some(Metrics { counters, gauges })
    }

    /// A failed metric update never fails a request.
    pub fn add(&self, c: Counter, n: u64) {
        if let Some(id) = self.counters.get(&c) {
            let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn record(&self, g: Gauge, value: u64) {
        if let Some(id) = self.gauges.get(&g) {
            let _ = hostcalls::record_metric(*id, value);
        }
    }
}
