//! The proxy-wasm host: reads what Envoy hands over, feeds the edge engine
//! ([`crate::edge::Engine`]) and carries out its commands. Nothing here
//! decides anything; every callback is one engine call and one loop over its
//! commands ([`execute`]).
//!
//! - this file: the root context (configure, tick, callouts it made) and the
//!   HTTP context (a request's script);
//! - [`host`]: the [`crate::edge::Host`] operations over proxy-wasm calls;
//! - [`metrics`]: Envoy stats, defined once from the engine's list.

mod ffi;
mod host;
mod metrics;

use crate::authenticator;
use crate::config::Config;
use crate::edge::{Command, Engine, Record};
use crate::reason::Reason;
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

fn now_ms(ctx: &dyn Context) -> u64 {
    ctx.get_current_time().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Carries out the engine's commands from the callback of context `own`.
/// Returns what the current request (`own`, if a request) does now. Host
/// calls go through [`ffi`]: a status the glue cannot act on is ignored,
/// never a panic.
fn execute(worker: &Worker, own: u32, commands: Vec<Command>) -> Action {
    let mut action = Action::Pause;
    let mut moved = false;
    for command in commands {
        let here = command.request() == Some(own);
        if let Some(id) = command.request().filter(|_| !here) {
            if ffi::set_effective_context(id).is_err() {
                continue; // the request is gone
            }
            moved = true;
        }
        match command {
            Command::Continue { ops, resume, record, .. } => {
                for op in &ops {
                    let _ = match op {
                        authenticator::HeaderOp::Remove(name) => ffi::set_request_header(name, None),
                        authenticator::HeaderOp::Set(name, value) => ffi::set_request_header(name, Some(value)),
                    };
                }
                publish(if record.subject.is_some() { "allowed" } else { "anonymous" }, None, &record);
                if here && !resume {
                    action = Action::Continue;
                } else {
                    let _ = ffi::resume_request();
                }
            }
            Command::Reply { status, headers, body, reason, .. } => {
                publish("denied", Some(reason), &Record::default());
                let details = format!("tollgate_{}", reason.code());
                let _ = ffi::send_local_response(status, &details, &headers, body.as_bytes());
            }
            Command::Count(c) => worker.metrics.add(c, 1),
            Command::Add(c, n) => worker.metrics.add(c, n),
            Command::Record(g, v) => worker.metrics.record(g, v),
            Command::Log(crate::edge::Level::Info, line) => log::info!("{line}"),
            Command::Log(crate::edge::Level::Warn, line) => log::warn!("{line}"),
        }
    }
    if moved {
        let _ = ffi::set_effective_context(own);
    }
    action
}

/// The request's record as filter state, for access logs:
/// `%FILTER_STATE(wasm.tollgate_decision:PLAIN)%` and `tollgate_reason`,
/// `tollgate_subject`, `tollgate_session`. Never a token.
fn publish(decision: &str, reason: Option<Reason>, record: &Record) {
    let _ = ffi::set_property("tollgate_decision", decision.as_bytes());
    if let Some(reason) = reason {
        let _ = ffi::set_property("tollgate_reason", reason.code().as_bytes());
    }
    if let Some(subject) = &record.subject {
        let _ = ffi::set_property("tollgate_subject", subject.as_bytes());
    }
    if let Some(session) = &record.session {
        let _ = ffi::set_property("tollgate_session", session.as_bytes());
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
    let mut out = Vec::new();
    worker.engine.borrow_mut().on_callout(&mut WasmHost(ctx), now_ms(ctx), token, status, body, body_size, &mut out);
    execute(worker, own, out);
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
        let engine = Engine::new(config, &mut WasmHost(self), now_ms(self));
        if let Some(ms) = engine.tick_ms() {
            self.set_tick_period(std::time::Duration::from_millis(ms));
        }
        self.worker = Some(Rc::new(Worker { engine: RefCell::new(engine), metrics }));
        log::info!("configuration accepted");
        true
    }

    fn on_tick(&mut self) {
        let Some(worker) = self.worker.clone() else { return };
        let mut out = Vec::new();
        worker.engine.borrow_mut().on_tick(&mut WasmHost(self), now_ms(self), &mut out);
        execute(&worker, self.id, out);
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
        // Bytes: HTTP allows non-UTF-8 values, and the SDK's String variant
        // would panic on them (and take the VM down).
        let headers = self.get_http_request_headers_bytes();
        // A host call: made only when a `hosts` check needs the address.
        let peer = || {
            self.get_property(vec!["source", "address"])
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| authenticator::parse_ip(&s))
        };
        let worker = self.worker.clone();
        let mut out = Vec::new();
        worker.engine.borrow_mut().on_request(&mut WasmHost(self), now_ms(self), self.id, headers, &peer, &mut out);
        execute(&worker, self.id, out)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in self.worker.engine.borrow_mut().owed(self.id) {
            if name == "cache-control" {
                let _ = ffi::set_response_header(&name, &value);
            } else {
                self.add_http_response_header(&name, &value);
            }
        }
        Action::Continue
    }
}
