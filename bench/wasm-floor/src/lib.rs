//! Two reference HTTP filters, chosen by `root_id`:
//!
//! - `noop`: returns Continue. What any proxy-wasm filter costs in Envoy's
//!   V8 before doing anything: the per-stream context and the callbacks
//!   Envoy makes into the VM for every request.
//! - `hostcalls`: the host calls Tollgate makes for an allowed request with
//!   the default document (`tests/hot_path.rs`: the clock, the header map,
//!   one write per identity header; no `source.address` without a `hosts`
//!   claim, counters batched into the tick, no access-log filter state)
//!   with no token work in between. The gap from `noop` is the price of
//!   those calls; the gap from Tollgate is its own work in V8.
//! - `hmac`: `noop` plus one HMAC-SHA256 over 304 bytes (a pool token's
//!   signing input) from a pre-keyed state, per request: how fast Envoy's V8
//!   runs Tollgate's kind of code, against the same bytes natively and in
//!   Node (scripts/bench/probe.mjs). A diagnostic, not in the default run.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { mode: Mode::Noop }) });
}}

#[derive(Clone, Copy)]
enum Mode {
    Noop,
    HostCalls,
    Hmac,
}

struct Root {
    mode: Mode,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let conf = self.get_plugin_configuration().unwrap_or_default();
        self.mode = match conf.as_slice() {
            b"hostcalls" => Mode::HostCalls,
            b"hmac" => Mode::Hmac,
            _ => Mode::Noop,
        };
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        match self.mode {
            Mode::HostCalls => Some(Box::new(HostCalls)),
            Mode::Hmac => Some(Box::new(HmacOnce)),
            Mode::Noop => Some(Box::new(Noop)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop;
impl Context for Noop {}
impl HttpContext for Noop {}

struct HostCalls;
impl Context for HostCalls {}
impl HttpContext for HostCalls {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let now = self.get_current_time();
        let headers = self.get_http_request_headers();
        let n = headers.len() + now.elapsed().map_or(0, |d| d.subsec_nanos() as usize % 2);
        self.set_http_request_header("x-tollgate-sub", Some("user-00000"));
        self.set_http_request_header("x-tollgate-scope", Some("read write"));
        self.set_http_request_header("x-tollgate-sid", Some("sid-000000"));
        self.set_http_request_header("x-tollgate-ver", Some(if n > 0 { "1" } else { "0" }));
        Action::Continue
    }
}

struct HmacOnce;
impl Context for HmacOnce {}
impl HttpContext for HmacOnce {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let mut m = Hmac::<Sha256>::new_from_slice(b"demo-only-secret-do-not-use-in-production").unwrap();
        m.update(&[b'x'; 304]);
        if m.finalize().into_bytes()[0] == 0x42 {
            self.set_http_request_header("x-floor", Some("1"));
        }
        Action::Continue
    }
}
