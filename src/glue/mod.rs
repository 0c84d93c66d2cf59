//! The proxy-wasm glue: reads the request from Envoy, asks the core, carries
//! out the answer. Nothing here decides anything.
//!
//! - this file: the root context (configure, tick) and the HTTP context (a
//!   request's script);
//! - [`worker`]: per-VM state and the callouts to the authority;
//! - [`metrics`]: Envoy stats.

mod metrics;
mod worker;

use crate::authenticator;
use crate::config::Config;
use metrics::Metrics;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use worker::Worker;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(Root { id, worker: None }) });
}}

struct Root {
    id: u32,
    worker: Option<Rc<Worker>>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _trailers: usize) {
        if let Some(worker) = self.worker.clone() {
            worker.on_callout_response(self, self.id, token, headers, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = match Config::parse(&bytes, &|name| std::env::var(name).ok()) {
            Ok(config) => config,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let Some(metrics) = Metrics::define() else {
            log::error!("tollgate: could not define metrics");
            return false;
        };
        let started_ms = self.get_current_time().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let worker = Worker::new(config, metrics, started_ms);
        if let Some(period) = worker.tick() {
            self.set_tick_period(period);
        }
        self.worker = Some(Rc::new(worker));
        log::info!("configuration accepted");
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = self.worker.clone() {
            worker.on_tick(self);
        }
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { id, worker: self.worker.clone()? }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    id: u32,
    worker: Rc<Worker>,
}

impl Context for Filter {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _trailers: usize) {
        self.worker.clone().on_callout_response(self, self.id, token, headers, body_size);
    }

    fn on_done(&mut self) -> bool {
        self.worker.forget(self.id);
        true
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        // Bytes: HTTP allows non-UTF-8 values, and the SDK's String variant
        // would panic on them (and take the VM down).
        let headers = self.get_http_request_headers_bytes();
        // A host call: made only when a `hosts` check needs the address.
        let peer = || {
            self.get_property(vec!["source", "address"])
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| authenticator::parse_ip(&s))
        };
        self.worker.clone().on_request(self, self.id, headers, &peer)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in self.worker.owed(self.id) {
            if name == "cache-control" {
                self.set_http_response_header(&name, Some(&value));
            } else {
                self.add_http_response_header(&name, &value);
            }
        }
        Action::Continue
    }
}
