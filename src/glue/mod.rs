//! The proxy-wasm host: each callback is one call of the core's script
//! ([`crate::edge::script`]), which reads what Envoy hands over, feeds the
//! edge engine and carries out its commands. Nothing here decides anything.
//!
//! - this file: the root context (configure, tick, callouts it made) and the
//!   HTTP context;
//! - [`host`]: [`crate::edge::Host`] and [`crate::edge::Proxy`], one
//!   proxy-wasm call per method;
//! - [`metrics`]: Envoy stats, defined once from the engine's list.

mod ffi;
mod host;
mod metrics;

use crate::config::Config;
use crate::edge::{script, Engine};
use host::WasmHost;
use metrics::Metrics;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(Root { id, worker: None }) });
}}

/// One worker's engine and the metric ids its commands name. The engine is
/// borrowed for one engine call at a time; commands run after the borrow.
struct Worker {
    engine: RefCell<Engine>,
    metrics: Metrics,
}

impl Worker {
    fn host<'c>(&'c self, ctx: &'c dyn Context) -> WasmHost<'c> {
        WasmHost { ctx, metrics: Some(&self.metrics) }
    }
}

fn action(flow: script::Flow) -> Action {
    match flow {
        script::Flow::Continue => Action::Continue,
        script::Flow::Pause => Action::Pause,
    }
}

/// A callout's answer, to whichever context made it.
fn on_callout(ctx: &dyn Context, worker: &Worker, own: u32, token: u32, num_headers: usize, body_size: usize) {
    // A call that failed in transport has no headers at all; asking for
    // one would make the SDK panic on the host's BadArgument.
    let status = if num_headers == 0 {
        None
    } else {
        ctx.get_http_call_response_headers_bytes()
            .into_iter()
            .find(|(n, _)| n == ":status")
            .and_then(|(_, v)| std::str::from_utf8(&v).ok()?.parse::<u16>().ok())
    };
    let readable = body_size > 0 && body_size <= crate::revocation::MAX_FEED_BYTES;
    let body = if readable { ctx.get_http_call_response_body(0, body_size) } else { None };
    let body = body.as_deref().unwrap_or_default();
    script::callout(&worker.engine, &mut worker.host(ctx), own, token, status, body, body_size);
}

struct Root {
    id: u32,
    worker: Option<Rc<Worker>>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _trailers: usize) {
        if let Some(worker) = self.worker.clone() {
            on_callout(self, &worker, self.id, token, headers, body_size);
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
        let mut host = WasmHost { ctx: self, metrics: None };
        let now = crate::edge::Proxy::now_ms(&host);
        let engine = Engine::new(config, &mut host, now);
        if let Some(ms) = engine.tick_ms() {
            self.set_tick_period(std::time::Duration::from_millis(ms));
        }
        if crate::edge::first_load(&mut host, &bytes) {
            log::info!("{}", crate::edge::load_line(engine.config(), &bytes, "wasm"));
        }
        self.worker = Some(Rc::new(Worker { engine: RefCell::new(engine), metrics }));
        true
    }

    fn on_tick(&mut self) {
        let Some(worker) = self.worker.clone() else { return };
        script::tick(&worker.engine, &mut worker.host(self), self.id);
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
        on_callout(self, &self.worker.clone(), self.id, token, headers, body_size);
    }

    fn on_done(&mut self) -> bool {
        self.worker.engine.borrow_mut().on_done(self.id);
        true
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let worker = self.worker.clone();
        action(script::request_headers(&worker.engine, &mut worker.host(self), self.id))
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let worker = self.worker.clone();
        script::response_headers(&worker.engine, &mut worker.host(self), self.id);
        Action::Continue
    }
}
