//! [`Host`] and [`Proxy`] over proxy-wasm: one proxy-wasm call per method.
//! Shared data and callouts go through the SDK, so a callout's answer is
//! routed back to the context that made it; the calls whose SDK wrappers
//! could panic go through [`super::ffi`].

use super::ffi;
use super::metrics::Metrics;
use crate::edge::{Callout, CasMismatch, Counter, DispatchFailed, Gauge, Host, Level, Proxy};
use proxy_wasm::traits::Context;
use proxy_wasm::types::Status;
use std::net::IpAddr;
use std::time::Duration;

pub(super) struct WasmHost<'c> {
    pub ctx: &'c dyn Context,
    pub metrics: Option<&'c Metrics>,
}

impl Host for WasmHost<'_> {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.ctx.get_shared_data(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        match self.ctx.set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) | Err(_) => Err(CasMismatch),
        }
    }

    fn dispatch(&mut self, call: &Callout) -> Result<u32, DispatchFailed> {
        let headers: Vec<(&str, &str)> = call.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let timeout = Duration::from_millis(call.timeout_ms);
        self.ctx.dispatch_http_call(&call.cluster, headers, call.body.as_deref(), vec![], timeout).map_err(|_| DispatchFailed)
    }

    fn peer(&self) -> Option<IpAddr> {
        self.ctx
            .get_property(vec!["source", "address"])
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| crate::authenticator::parse_ip(&s))
    }
}

impl Proxy for WasmHost<'_> {
    fn now_ms(&self) -> u64 {
        self.ctx.get_current_time().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        // Bytes: the SDK's String variant would panic on a non-UTF-8 value
        // (and take the VM down).
        proxy_wasm::hostcalls::get_map_bytes(proxy_wasm::types::MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        let _ = ffi::set_request_header(name, Some(value));
    }

    fn remove_request_header(&mut self, name: &str) {
        let _ = ffi::set_request_header(name, None);
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        let _ = ffi::set_response_header(name, value);
    }

    fn add_response_header(&mut self, name: &str, value: &str) {
        let _ = ffi::add_response_header(name, value);
    }

    fn send_local_response(&mut self, status: u16, details: &str, headers: &[(String, String)], body: &str) {
        let _ = ffi::send_local_response(status, details, headers, body.as_bytes());
    }

    fn resume_request(&mut self) {
        let _ = ffi::resume_request();
    }

    fn set_effective_context(&mut self, id: u32) -> bool {
        ffi::set_effective_context(id).is_ok()
    }

    fn set_property(&mut self, name: &str, value: &[u8]) {
        let _ = ffi::set_property(name, value);
    }

    fn add_counter(&mut self, counter: Counter, n: u64) {
        if let Some(m) = self.metrics {
            m.add(counter, n);
        }
    }

    fn record(&mut self, gauge: Gauge, value: u64) {
        if let Some(m) = self.metrics {
            m.record(gauge, value);
        }
    }

    fn log(&mut self, level: Level, line: &str) {
        match level {
            Level::Info => log::info!("{line}"),
            Level::Warn => log::warn!("{line}"),
        }
    }
}
