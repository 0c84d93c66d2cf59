//! The script a proxy-wasm host runs in each callback: read what the
//! callback needs (the clock once, the request's headers once), make one
//! engine call, and carry out its [`Command`]s with host calls. Every host
//! call goes through [`Proxy`] (and the engine's own through [`Host`]), so
//! the calls a request costs are countable in a test
//! (`tests/hot_path.rs`), and the glue (`src/glue/`) only maps each trait
//! method to its proxy-wasm call.
//!
//! The native module (`native/`) runs the same engine under another
//! threading model and carries out the commands itself.

use super::{Command, Counter, Engine, Gauge, Host, Level, Record};
use crate::authenticator::HeaderOp;
use crate::reason::Reason;
use std::cell::RefCell;

/// What the current request does when its callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Goes upstream now.
    Continue,
    /// Waits: answered locally already, or paused for the authority.
    Pause,
}

/// The host calls a callback makes besides the engine's [`Host`]
/// operations, one method per proxy-wasm call. A failed call is the host's
/// to ignore: nothing here fails a request.
pub trait Proxy: Host {
    /// `proxy_get_current_time_nanoseconds`, as ms since the epoch.
    fn now_ms(&self) -> u64;
    /// `proxy_get_header_map_pairs`: the current request's whole header map,
    /// values as bytes (HTTP allows obs-text).
    fn request_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// `proxy_replace_header_map_value` on the request: sets the header,
    /// replacing the first value of that name if there is one.
    fn set_request_header(&mut self, name: &str, value: &str);
    /// `proxy_remove_header_map_value` on the request: every value of that name.
    fn remove_request_header(&mut self, name: &str);
    /// `proxy_replace_header_map_value` on the response.
    fn set_response_header(&mut self, name: &str, value: &str);
    /// `proxy_add_header_map_value` on the response.
    fn add_response_header(&mut self, name: &str, value: &str);
    /// `proxy_send_local_response`; `details` becomes the response code details.
    fn send_local_response(&mut self, status: u16, details: &str, headers: &[(String, String)], body: &str);
    /// `proxy_continue_stream` on the current request.
    fn resume_request(&mut self);
    /// `proxy_set_effective_context`; false when that context is gone.
    fn set_effective_context(&mut self, id: u32) -> bool;
    /// `proxy_set_property` on the current stream (filter state for access logs).
    fn set_property(&mut self, name: &str, value: &[u8]);
    /// `proxy_increment_metric`.
    fn add_counter(&mut self, counter: Counter, n: u64);
    /// `proxy_record_metric`.
    fn record(&mut self, gauge: Gauge, value: u64);
    /// `proxy_log`.
    fn log(&mut self, level: Level, line: &str);
}

/// `on_http_request_headers` of request `id`.
pub fn request_headers<P: Proxy>(engine: &RefCell<Engine>, host: &mut P, id: u32) -> Flow {
    let now = host.now_ms();
    let headers = host.request_headers();
    let (out, publish) = drive(engine, |e, out| e.on_request(host, now, id, headers, out));
    execute(host, id, out, publish)
}

/// `on_http_call_response` in context `own` (a request's or the root's):
/// `status` `None` when the call failed in transport; `body` what the host
/// read of `body_size` bytes.
pub fn callout<P: Proxy>(engine: &RefCell<Engine>, host: &mut P, own: u32, token: u32, status: Option<u16>, body: &[u8], body_size: usize) {
    let now = host.now_ms();
    let (out, publish) = drive(engine, |e, out| e.on_callout(host, now, token, status, body, body_size, out));
    execute(host, own, out, publish);
}

/// `on_tick` of the root context `own`.
pub fn tick<P: Proxy>(engine: &RefCell<Engine>, host: &mut P, own: u32) {
    let now = host.now_ms();
    let (out, publish) = drive(engine, |e, out| e.on_tick(host, now, out));
    execute(host, own, out, publish);
}

/// One engine call, the engine borrowed only for it: its commands, and
/// whether decisions are published as filter state (`filter_state`).
fn drive(engine: &RefCell<Engine>, call: impl FnOnce(&mut Engine, &mut Vec<Command>)) -> (Vec<Command>, bool) {
    let mut engine = engine.borrow_mut();
    let mut out = Vec::new();
    call(&mut engine, &mut out);
    (out, engine.config().filter_state)
}

/// `on_http_response_headers` of request `id`: the headers a refresh owes
/// it (none: no host call).
pub fn response_headers<P: Proxy>(engine: &RefCell<Engine>, host: &mut P, id: u32) {
    let owed = engine.borrow_mut().owed(id);
    for (name, value) in owed {
        if name == "cache-control" {
            host.set_response_header(&name, &value);
        } else {
            host.add_response_header(&name, &value);
        }
    }
}

/// Carries out the engine's commands from the callback of context `own`
/// (the engine is not borrowed: a host call may re-enter); `publish`: the
/// document's `filter_state`. Returns what the current request (`own`, if a
/// request) does now.
fn execute<P: Proxy>(host: &mut P, own: u32, commands: Vec<Command>, publish: bool) -> Flow {
    let mut flow = Flow::Pause;
    let mut moved = false;
    for command in commands {
        let here = command.request() == Some(own);
        if let Some(id) = command.request().filter(|_| !here) {
            if !host.set_effective_context(id) {
                continue; // the request is gone
            }
            moved = true;
        }
        match command {
            Command::Continue { ops, resume, record, .. } => {
                for op in &ops {
                    match op {
                        HeaderOp::Remove(name) => host.remove_request_header(name),
                        HeaderOp::Set(name, value) => host.set_request_header(name, value),
                    }
                }
                if publish {
                    publish_record(host, if record.subject.is_some() { "allowed" } else { "anonymous" }, None, &record);
                }
                if here && !resume {
                    flow = Flow::Continue;
                } else {
                    host.resume_request();
                }
            }
            Command::Reply { status, headers, body, reason, .. } => {
                if publish {
                    publish_record(host, "denied", Some(reason), &Record::default());
                }
                let details = format!("tollgate_{}", reason.code());
                host.send_local_response(status, &details, &headers, &body);
            }
            Command::Count(c) => host.add_counter(c, 1),
            Command::Add(c, n) => host.add_counter(c, n),
            Command::Record(g, v) => host.record(g, v),
            Command::Log(level, line) => host.log(level, line),
        }
    }
    if moved {
        host.set_effective_context(own);
    }
    flow
}

/// The request's record as filter state, for access logs (with
/// `filter_state: true`): `%FILTER_STATE(wasm.tollgate_decision:PLAIN)%` and
/// `tollgate_reason`, `tollgate_subject`, `tollgate_session`. Never a token.
/// Off by default, as jwt_authn's `payload_in_metadata`: each property is a
/// host call and a filter-state object in Envoy (about 0.8 µs per property
/// on the bench machine, docs/bench/changes.md).
fn publish_record<P: Proxy>(host: &mut P, decision: &str, reason: Option<Reason>, record: &Record) {
    host.set_property("tollgate_decision", decision.as_bytes());
    if let Some(reason) = reason {
        host.set_property("tollgate_reason", reason.code().as_bytes());
    }
    if let Some(subject) = &record.subject {
        host.set_property("tollgate_subject", subject.as_bytes());
    }
    if let Some(session) = &record.session {
        host.set_property("tollgate_session", session.as_bytes());
    }
}
