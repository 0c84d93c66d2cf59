//! The host adapter: Envoy's hooks in, [`Engine`] events; the engine's
//! [`Command`]s out, Envoy calls. Nothing here decides anything.
//!
//! Threads. Envoy runs each stream on one worker thread, numbered
//! `0..concurrency` (`get_worker_index`), and configuration work on the main
//! thread. The module keeps **one engine per Envoy worker** (slot = worker
//! index), behind a `Mutex`: a stream's hooks use the engine of the worker
//! it runs on, so a worker's requests, groups and callouts stay together as
//! under proxy-wasm (one VM per worker). The dynamic-module ABI gives an
//! HTTP filter no per-worker timer, so **the tick runs on the main thread**:
//! a module thread sleeps `tick_ms` and commits the configuration's
//! scheduler, and `on_http_filter_config_scheduled` ticks every engine in
//! turn, its callouts made from the configuration (main thread, answered
//! there). A command for a request that is not the current hook's — from
//! the tick, or another request's callout answer — goes to that request's
//! mailbox, and its scheduler runs it on the request's worker thread.
//!
//! Re-entrancy. Envoy may call a hook from inside a callback (a local reply
//! runs this filter's response hooks inside `send_response`; a callout that
//! fails at once may answer inside `http_callout`). So no Envoy call that
//! can re-enter runs while an engine lock is held: commands for the current
//! request are carried out after the lock is released, and an answer that
//! arrives while its own engine is locked by this thread is dropped (the
//! dispatch reports the failure).

use crate::abi::{self, Config as EnvoyConfig, ConfigScheduler, Filter, LogLevel, Scheduler};
use crate::guard;
use crate::shared::{self, SharedData};
use crate::wire::{self, CalloutAnswer};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tollgate::authenticator::{self, HeaderOp};
use tollgate::config::Config;
use tollgate::edge::{Callout, CasMismatch, Command, Counter, DispatchFailed, Engine, Gauge, Host, Level};

/// Panics caught at the boundary ([`crate::guard`]).
pub const PANIC_COUNTER: &str = "tollgate.native.panic";

// ---- metrics ----------------------------------------------------------------

/// Envoy stat ids of every counter and gauge the engine names, defined once
/// per configuration (Envoy ids start at 1).
struct Metrics {
    counters: BTreeMap<Counter, usize>,
    gauges: BTreeMap<Gauge, usize>,
    panic: usize,
}

impl Metrics {
    fn define(config: EnvoyConfig) -> Result<Metrics, String> {
        let mut counters = BTreeMap::new();
        for c in Counter::ALL.into_iter().chain(Counter::denied_all()) {
            let name = c.name();
            counters.insert(c, config.define_counter(&name).ok_or(name)?);
        }
        let mut gauges = BTreeMap::new();
        for g in Gauge::ALL {
            let id = if g.is_histogram() { config.define_histogram(g.name()) } else { config.define_gauge(g.name()) };
            gauges.insert(g, id.ok_or_else(|| g.name().to_owned())?);
        }
        let panic = config.define_counter(PANIC_COUNTER).ok_or(PANIC_COUNTER)?;
        Ok(Metrics { counters, gauges, panic })
    }
}

/// Where a stat update goes from the current thread: a worker updates
/// through its filter, the main thread through the configuration.
#[derive(Clone, Copy)]
enum Sink {
    Filter(Filter),
    Config(EnvoyConfig),
}

impl Sink {
    /// A failed stat update never fails a request.
    fn count(self, id: usize, n: u64) {
        let _ = match self {
            Sink::Filter(f) => f.increment_counter(id, n),
            Sink::Config(c) => c.increment_counter(id, n),
        };
    }

    fn gauge(self, id: usize, v: u64) {
        let _ = match self {
            Sink::Filter(f) => f.set_gauge(id, v),
            Sink::Config(c) => c.set_gauge(id, v),
        };
    }

    fn histogram(self, id: usize, v: u64) {
        let _ = match self {
            Sink::Filter(f) => f.record_histogram(id, v),
            Sink::Config(c) => c.record_histogram(id, v),
        };
    }
}

// ---- per-worker state -------------------------------------------------------

/// A paused request, reachable from other threads.
struct Parked {
    scheduler: Scheduler,
    /// Commands for it made elsewhere, run by its `on_http_filter_scheduled`.
    mailbox: Vec<Command>,
}

/// One Envoy worker's engine and what the host keeps beside it.
struct Worker {
    engine: Engine,
    next_request: u32,
    /// Engine callout tokens: one counter for both kinds of callout.
    next_token: u32,
    parked: BTreeMap<u32, Parked>,
    /// Stream callouts in flight: (request, Envoy callout id) → token.
    filter_callouts: BTreeMap<(u32, u64), u32>,
}

impl Worker {
    fn token(next: &mut u32) -> u32 {
        *next = next.wrapping_add(1);
        *next
    }
}

thread_local! {
    /// The engine this thread has locked: (configuration, worker slot).
    static HELD: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// A locked engine; marks the thread as holding it (see [`ConfigState::holds`]).
struct Held<'a> {
    worker: MutexGuard<'a, Worker>,
    previous: Option<(usize, usize)>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        HELD.with(|h| h.set(self.previous));
    }
}

// ---- hosts: the engine's three host operations ------------------------------

/// The host during a stream's hook (worker thread): callouts from the stream.
struct FilterHost<'a> {
    shared: &'a SharedData,
    filter: Filter,
    request: u32,
    next_token: &'a mut u32,
    callouts: &'a mut BTreeMap<(u32, u64), u32>,
}

impl Host for FilterHost<'_> {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.shared.get(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        self.shared.set(key, value, cas)
    }

    fn dispatch(&mut self, call: &Callout) -> Result<u32, DispatchFailed> {
        let envoy_id = self.filter.callout(call).ok_or(DispatchFailed)?;
        let token = Worker::token(self.next_token);
        self.callouts.insert((self.request, envoy_id), token);
        Ok(token)
    }

    fn peer(&self) -> Option<std::net::IpAddr> {
        self.filter.source_address().and_then(|s| authenticator::parse_ip(&s))
    }
}

/// The host on the main thread (tick, configuration callouts).
struct ConfigHost<'a> {
    shared: &'a SharedData,
    config: EnvoyConfig,
    worker: usize,
    next_token: &'a mut u32,
    callouts: &'a Mutex<BTreeMap<u64, (usize, u32)>>,
}

impl Host for ConfigHost<'_> {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.shared.get(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        self.shared.set(key, value, cas)
    }

    fn dispatch(&mut self, call: &Callout) -> Result<u32, DispatchFailed> {
        let envoy_id = self.config.callout(call).ok_or(DispatchFailed)?;
        let token = Worker::token(self.next_token);
        lock(self.callouts).insert(envoy_id, (self.worker, token));
        Ok(token)
    }

    /// No current request on the main thread (paused requests keep theirs).
    fn peer(&self) -> Option<std::net::IpAddr> {
        None
    }
}

/// The host while an engine is created: shared data only.
struct SharedOnly<'a>(&'a SharedData);

impl Host for SharedOnly<'_> {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.get(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        self.0.set(key, value, cas)
    }

    fn dispatch(&mut self, _call: &Callout) -> Result<u32, DispatchFailed> {
        Err(DispatchFailed)
    }

    fn peer(&self) -> Option<std::net::IpAddr> {
        None
    }
}

/// Locks `m`, also after a panic caught elsewhere poisoned it: the engine
/// is then in the state the panic left, which is still better than a
/// worker that answers nothing.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---- the configuration --------------------------------------------------

/// The module thread that drives the tick.
struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
    scheduler: Arc<ConfigScheduler>,
}

/// One filter configuration: its engines (one per worker), stats and tick.
pub struct ConfigState {
    name: String,
    shared: Arc<SharedData>,
    workers: Vec<Mutex<Worker>>,
    metrics: Metrics,
    /// Configuration callouts in flight: Envoy id → (worker, token).
    config_callouts: Mutex<BTreeMap<u64, (usize, u32)>>,
    ticker: Mutex<Option<Ticker>>,
}

/// `on_http_filter_config_new`: the document parsed (env from the process
/// environment), stats defined, one engine per worker, the tick started.
/// `None` refuses the configuration; the reason, naming the field, is in
/// Envoy's log.
pub fn config_new(envoy: EnvoyConfig, name: &[u8], document: &[u8]) -> Option<Arc<ConfigState>> {
    let name = String::from_utf8_lossy(name).into_owned();
    let config = match Config::parse(document, &|var| std::env::var(var).ok()) {
        Ok(config) => config,
        Err(e) => {
            abi::log(LogLevel::Error, &format!("tollgate: filter `{name}` refused: {e}"));
            return None;
        }
    };
    let metrics = match Metrics::define(envoy) {
        Ok(m) => m,
        Err(stat) => {
            abi::log(LogLevel::Error, &format!("tollgate: filter `{name}` refused: Envoy did not define the stat `{stat}`"));
            return None;
        }
    };
    let shared = shared::for_filter(&name);
    let now = wire::now_ms();
    let count = abi::concurrency().max(1) as usize;
    let workers = (0..count)
        .map(|_| {
            let engine = Engine::new(config.clone(), &mut SharedOnly(&shared), now);
            Mutex::new(Worker { engine, next_request: 0, next_token: 0, parked: BTreeMap::new(), filter_callouts: BTreeMap::new() })
        })
        .collect::<Vec<_>>();
    let tick = lock(&workers[0]).engine.tick_ms();
    let state = Arc::new(ConfigState {
        name,
        shared,
        workers,
        metrics,
        config_callouts: Mutex::new(BTreeMap::new()),
        ticker: Mutex::new(None),
    });
    let validating = abi::is_validation_mode();
    if let (Some(ms), false) = (tick, validating) {
        state.start_ticker(envoy, ms);
    }
    abi::log(LogLevel::Info, &tollgate::edge::load_line(&config, document, "native"));
    abi::log(
        LogLevel::Info,
        &format!(
            "tollgate: filter `{}` configuration accepted (native module, ABI {}, {} worker engines, tick {}, panic strategy {})",
            state.name,
            abi::ABI_VERSION,
            count,
            tick.map_or_else(|| "off".to_owned(), |ms| format!("{ms} ms")),
            guard::PANIC_STRATEGY
        ),
    );
    Some(state)
}

impl ConfigState {
    fn start_ticker(&self, envoy: EnvoyConfig, ms: u64) {
        let scheduler = Arc::new(envoy.scheduler());
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (s, sched) = (stop.clone(), scheduler.clone());
        let spawned = std::thread::Builder::new().name("tollgate-tick".into()).spawn(move || {
            let (flag, wake) = &*s;
            let mut stopped = lock(flag);
            loop {
                stopped = wake.wait_timeout(stopped, Duration::from_millis(ms)).map_or_else(|p| p.into_inner().0, |r| r.0);
                if *stopped {
                    return;
                }
                sched.commit(0);
            }
        });
        match spawned {
            Ok(thread) => *lock(&self.ticker) = Some(Ticker { stop, thread, scheduler }),
            Err(_) => {
                abi::log(LogLevel::Error, "tollgate: could not start the tick thread; revocation sync and waits will not run");
                if let Ok(s) = Arc::try_unwrap(scheduler) {
                    s.delete();
                }
            }
        }
    }

    /// `on_http_filter_config_destroy` (main thread): the tick stops before
    /// its scheduler is deleted. Filters still draining keep the engines.
    pub fn stop(&self) {
        let Some(ticker) = lock(&self.ticker).take() else { return };
        *lock(&ticker.stop.0) = true;
        ticker.stop.1.notify_all();
        let _ = ticker.thread.join();
        if let Ok(s) = Arc::try_unwrap(ticker.scheduler) {
            s.delete();
        }
    }

    fn key(&self) -> usize {
        self as *const ConfigState as usize
    }

    fn lock_worker(&self, slot: usize) -> Held<'_> {
        let worker = lock(&self.workers[slot]);
        let previous = HELD.with(|h| h.replace(Some((self.key(), slot))));
        Held { worker, previous }
    }

    /// Whether this thread holds worker `slot`'s engine right now.
    fn holds(&self, slot: usize) -> bool {
        HELD.with(|h| h.get()) == Some((self.key(), slot))
    }

    /// A stat update or a log line.
    fn side_effect(&self, sink: Sink, command: Command) {
        match command {
            Command::Count(c) => {
                if let Some(id) = self.metrics.counters.get(&c) {
                    sink.count(*id, 1);
                }
            }
            Command::Add(c, n) => {
                if let Some(id) = self.metrics.counters.get(&c) {
                    sink.count(*id, n);
                }
            }
            Command::Record(g, v) => {
                if let Some(id) = self.metrics.gauges.get(&g) {
                    if g.is_histogram() {
                        sink.histogram(*id, v);
                    } else {
                        sink.gauge(*id, v);
                    }
                }
            }
            Command::Log(Level::Info, line) => abi::log(LogLevel::Info, line),
            Command::Log(Level::Warn, line) => abi::log(LogLevel::Warn, line),
            Command::Continue { .. } | Command::Reply { .. } => {}
        }
    }

    fn flush_panics(&self, sink: Sink) {
        let n = guard::take_pending();
        if n > 0 {
            sink.count(self.metrics.panic, n);
        }
    }

    /// Carries out `out` where it can be now (stats, logs, other requests'
    /// mailboxes) and returns the commands for request `own` (settling it:
    /// its parking ends). Runs with the engine locked; makes no Envoy call
    /// that re-enters.
    fn deliver(&self, worker: &mut Worker, sink: Sink, own: Option<u32>, out: Vec<Command>) -> Vec<Command> {
        let mut mine = Vec::new();
        for command in out {
            match command.request() {
                Some(id) if Some(id) == own => mine.push(command),
                Some(id) => {
                    // Gone requests are never named again; a command for
                    // one that is not parked has nowhere to go.
                    if let Some(p) = worker.parked.get_mut(&id) {
                        p.mailbox.push(command);
                        p.scheduler.commit(u64::from(id));
                    }
                }
                None => self.side_effect(sink, command),
            }
        }
        if let (false, Some(own)) = (mine.is_empty(), own) {
            if let Some(p) = worker.parked.remove(&own) {
                p.scheduler.delete();
            }
        }
        mine
    }

    /// The tick (`on_http_filter_config_scheduled`, main thread): every
    /// engine in turn.
    pub fn on_scheduled(&self, envoy: EnvoyConfig, _event_id: u64) {
        self.flush_panics(Sink::Config(envoy));
        let now = wire::now_ms();
        for slot in 0..self.workers.len() {
            let mut held = self.lock_worker(slot);
            let worker = &mut *held.worker;
            let mut out = Vec::new();
            {
                let Worker { engine, next_token, .. } = worker;
                let mut host = ConfigHost { shared: &self.shared, config: envoy, worker: slot, next_token, callouts: &self.config_callouts };
                engine.on_tick(&mut host, now, &mut out);
            }
            self.deliver(worker, Sink::Config(envoy), None, out);
        }
    }

    /// A configuration callout's answer (main thread).
    pub fn on_callout_done(&self, envoy: EnvoyConfig, callout_id: u64, answer: CalloutAnswer) {
        let Some((slot, token)) = lock(&self.config_callouts).remove(&callout_id) else { return };
        if self.holds(slot) {
            return; // answered inside the dispatch: it reports the failure
        }
        let now = wire::now_ms();
        let mut held = self.lock_worker(slot);
        let worker = &mut *held.worker;
        let mut out = Vec::new();
        {
            let Worker { engine, next_token, .. } = worker;
            let mut host = ConfigHost { shared: &self.shared, config: envoy, worker: slot, next_token, callouts: &self.config_callouts };
            engine.on_callout(&mut host, now, token, answer.status, &answer.body, answer.body_size, &mut out);
        }
        self.deliver(worker, Sink::Config(envoy), None, out);
    }
}

impl Drop for ConfigState {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- one stream ---------------------------------------------------------------

/// One stream's state. Its hooks run on its worker thread and may nest, so
/// everything is a `Cell` behind a shared reference.
pub struct FilterState {
    config: Arc<ConfigState>,
    slot: Cell<Option<usize>>,
    id: Cell<u32>,
    /// Continued or answered: the request needs nothing more.
    settled: Cell<bool>,
    done: Cell<bool>,
}

impl FilterState {
    pub fn new(config: Arc<ConfigState>, _filter: Filter) -> FilterState {
        FilterState { config, slot: Cell::new(None), id: Cell::new(0), settled: Cell::new(false), done: Cell::new(false) }
    }

    /// Its headers were seen and no decision was carried out yet.
    pub fn paused(&self) -> bool {
        self.slot.get().is_some() && !self.settled.get()
    }

    /// The request's headers: one engine call. Returns whether the request
    /// goes on now (else it waits: answered locally, or paused).
    pub fn on_request_headers(&self, f: Filter) -> bool {
        let config = &*self.config;
        config.flush_panics(Sink::Filter(f));
        let slot = wire::worker_slot(f.worker_index(), config.workers.len());
        self.slot.set(Some(slot));
        // Bytes: HTTP allows non-UTF-8 values; the request view decides.
        let raw = f.request_headers();
        let now = wire::now_ms();
        let mine = {
            let mut held = config.lock_worker(slot);
            let worker = &mut *held.worker;
            worker.next_request = worker.next_request.wrapping_add(1);
            let id = worker.next_request;
            self.id.set(id);
            let mut out = Vec::new();
            {
                let Worker { engine, next_token, filter_callouts, .. } = worker;
                let mut host = FilterHost { shared: &config.shared, filter: f, request: id, next_token, callouts: filter_callouts };
                engine.on_request(&mut host, now, id, raw, &mut out);
            }
            let mine = config.deliver(worker, Sink::Filter(f), Some(id), out);
            if mine.is_empty() {
                // No command names it: paused until a later event answers.
                worker.parked.insert(id, Parked { scheduler: f.scheduler(), mailbox: Vec::new() });
            }
            mine
        };
        self.act(f, mine, true)
    }

    /// Carries out the commands for this request (engine unlocked).
    /// `in_headers`: inside the request-headers hook, where going on is the
    /// hook's return value; elsewhere the request is resumed.
    fn act(&self, f: Filter, commands: Vec<Command>, in_headers: bool) -> bool {
        let mut go_on = false;
        for command in commands {
            if self.settled.get() {
                break;
            }
            match command {
                Command::Continue { ops, .. } => {
                    for op in &ops {
                        let _ = match op {
                            HeaderOp::Remove(name) => f.remove_request_header(name),
                            HeaderOp::Set(name, value) => f.set_request_header(name, value),
                        };
                    }
                    self.settled.set(true);
                    if in_headers {
                        go_on = true;
                    } else {
                        f.continue_decoding();
                    }
                }
                Command::Reply { status, headers, body, .. } => {
                    self.settled.set(true);
                    f.send_response(status, &headers, &body, "tollgate_local_reply");
                }
                _ => {}
            }
        }
        go_on
    }

    /// `on_http_filter_scheduled`: run what other threads left for it.
    pub fn on_scheduled(&self, f: Filter) {
        let Some(slot) = self.slot.get() else { return };
        let mine = {
            let mut held = self.config.lock_worker(slot);
            let worker = &mut *held.worker;
            match worker.parked.remove(&self.id.get()) {
                Some(p) => {
                    p.scheduler.delete();
                    p.mailbox
                }
                None => Vec::new(),
            }
        };
        self.act(f, mine, false);
    }

    /// A stream callout's answer (worker thread).
    pub fn on_callout_done(&self, f: Filter, callout_id: u64, answer: CalloutAnswer) {
        let Some(slot) = self.slot.get() else { return };
        let config = &*self.config;
        if config.holds(slot) {
            return; // answered inside the dispatch: it reports the failure
        }
        let now = wire::now_ms();
        let id = self.id.get();
        let mine = {
            let mut held = config.lock_worker(slot);
            let worker = &mut *held.worker;
            let Some(token) = worker.filter_callouts.remove(&(id, callout_id)) else { return };
            let mut out = Vec::new();
            {
                let Worker { engine, next_token, filter_callouts, .. } = worker;
                let mut host = FilterHost { shared: &config.shared, filter: f, request: id, next_token, callouts: filter_callouts };
                engine.on_callout(&mut host, now, token, answer.status, &answer.body, answer.body_size, &mut out);
            }
            config.deliver(worker, Sink::Filter(f), Some(id), out)
        };
        self.act(f, mine, false);
    }

    /// The response starts: the headers a refresh owes it.
    pub fn on_response_headers(&self, f: Filter) {
        let Some(slot) = self.slot.get() else { return };
        if self.config.holds(slot) {
            return;
        }
        let owed = lock(&self.config.workers[slot]).engine.owed(self.id.get());
        for (name, value) in owed {
            if name == "cache-control" {
                f.set_response_header(&name, &value);
            } else {
                f.add_response_header(&name, &value);
            }
        }
    }

    /// The stream is gone (`stream_complete`, then `destroy`): once.
    pub fn on_done(&self) {
        let Some(slot) = self.slot.get() else { return };
        if self.done.replace(true) {
            return;
        }
        let id = self.id.get();
        let mut held = self.config.lock_worker(slot);
        let worker = &mut *held.worker;
        worker.engine.on_done(id);
        if let Some(p) = worker.parked.remove(&id) {
            p.scheduler.delete();
        }
        worker.filter_callouts.retain(|(request, _), _| *request != id);
    }

    /// After a caught panic: answer 500 unless already answered.
    pub fn fail(&self, f: Filter) {
        self.config.flush_panics(Sink::Filter(f));
        if self.settled.replace(true) {
            return;
        }
        let body = r#"{"error":"internal_error","error_description":"the edge failed to process the request"}"#;
        let headers = [("content-type".to_owned(), "application/json".to_owned()), ("cache-control".to_owned(), "no-store".to_owned())];
        f.send_response(500, &headers, body, "tollgate_internal_error");
    }
}

// The configuration is shared by Envoy's worker threads and the main thread
// through raw pointers, where the compiler cannot check thread safety: check
// it here. (Each `FilterState` stays on its worker thread.)
const _: fn() = || {
    fn shared_across_threads<T: Send + Sync>() {}
    shared_across_threads::<ConfigState>();
};
