//! One Envoy worker: a thread that owns the worker's [`Engine`], as an
//! Envoy worker thread owns its Wasm VM. The thread runs an engine call only
//! when the scheduler says so, and stops at every host call until the
//! scheduler answers it: host calls of different workers interleave in the
//! order the scheduler picks, exactly as far as Envoy's real threads could.
//!
//! A worker is killed at a host call (its VM crashed there: what it had
//! written so far stays written) or between calls; its engine is dropped.

use std::net::{IpAddr, Ipv4Addr};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use tollgate::config::Config;
use tollgate::edge::{Callout, CasMismatch, Command, DispatchFailed, Engine, Host};

/// An event for the engine, with the time it happens at.
#[derive(Debug)]
pub enum Call {
    /// `on_configure`: a new engine (the old one, if any, is dropped).
    Configure { config: Box<Config>, now: u64 },
    Request { now: u64, id: u32, headers: Vec<(String, Vec<u8>)>, peer: Option<IpAddr> },
    Callout { now: u64, token: u32, status: Option<u16>, body: Vec<u8>, body_size: usize },
    Tick { now: u64 },
    /// The response is starting: headers owed to request `id`.
    Owed { id: u32 },
    Done { id: u32 },
}

#[derive(Debug)]
pub enum HostOp {
    Get(String),
    Set(String, Vec<u8>, Option<u32>),
    Dispatch(Callout),
}

#[derive(Debug)]
pub enum HostReply {
    Get(Option<Vec<u8>>, Option<u32>),
    Set(Result<(), CasMismatch>),
    Dispatch(Result<u32, DispatchFailed>),
}

/// What the worker observed of its engine after a call.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub alive: bool,
    pub worker_id: u32,
    pub paused: usize,
    pub tick_ms: Option<u64>,
    pub synced_at: Option<u64>,
    pub floor: u64,
    /// The minimum of each watched version key.
    pub mins: Vec<Option<u64>>,
}

#[derive(Debug)]
pub enum FromWorker {
    Op(HostOp),
    Finished { commands: Vec<Command>, owed: Vec<(String, String)>, view: View },
    /// Killed at a host call; the engine is gone.
    Died,
    /// The engine panicked: a bug (nothing may panic on input).
    Panicked(String),
}

enum ToWorker {
    Call(Call),
    Reply(HostReply),
    Die,
    Exit,
}

/// The unwinding payload of a kill at a host call.
struct Killed;

struct ChannelHost<'a> {
    tx: &'a Sender<FromWorker>,
    rx: &'a Receiver<ToWorker>,
    /// The current request's peer (none outside a request).
    peer: Option<IpAddr>,
}

impl ChannelHost<'_> {
    fn ask(&self, op: HostOp) -> HostReply {
        if self.tx.send(FromWorker::Op(op)).is_err() {
            resume_unwind(Box::new(Killed));
        }
        match self.rx.recv() {
            Ok(ToWorker::Reply(r)) => r,
            // Killed here, or the whole simulation is going away.
            Ok(ToWorker::Die) | Ok(ToWorker::Exit) | Err(_) => resume_unwind(Box::new(Killed)),
            Ok(ToWorker::Call(_)) => panic!("a call while another is running"),
        }
    }
}

impl Host for ChannelHost<'_> {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.ask(HostOp::Get(key.to_owned())) {
            HostReply::Get(v, cas) => (v, cas),
            r => panic!("get answered with {r:?}"),
        }
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        match self.ask(HostOp::Set(key.to_owned(), value.to_vec(), cas)) {
            HostReply::Set(r) => r,
            r => panic!("set answered with {r:?}"),
        }
    }

    fn dispatch(&mut self, call: &Callout) -> Result<u32, DispatchFailed> {
        match self.ask(HostOp::Dispatch(call.clone())) {
            HostReply::Dispatch(r) => r,
            r => panic!("dispatch answered with {r:?}"),
        }
    }

    fn peer(&self) -> Option<IpAddr> {
        self.peer
    }
}

fn view(engine: Option<&Engine>, watched: &[String]) -> View {
    let Some(e) = engine else { return View::default() };
    let set = e.revocations();
    View {
        alive: true,
        worker_id: e.worker_id(),
        paused: e.paused(),
        tick_ms: e.tick_ms(),
        synced_at: set.synced_at_ms(),
        floor: set.floor(),
        mins: watched.iter().map(|k| set.min_version(k)).collect(),
    }
}

fn run(engine: &mut Option<Engine>, call: Call, host: &mut ChannelHost<'_>, out: &mut Vec<Command>) -> Vec<(String, String)> {
    match call {
        Call::Configure { config, now } => {
            *engine = None;
            *engine = Some(Engine::new(*config, host, now));
        }
        Call::Request { now, id, headers, peer: ip } => {
            if let Some(e) = engine {
                host.peer = ip;
                e.on_request(host, now, id, headers, out);
            }
        }
        Call::Callout { now, token, status, body, body_size } => {
            if let Some(e) = engine {
                e.on_callout(host, now, token, status, &body, body_size, out);
            }
        }
        Call::Tick { now } => {
            if let Some(e) = engine {
                e.on_tick(host, now, out);
            }
        }
        Call::Owed { id } => {
            if let Some(e) = engine {
                return e.owed(id);
            }
        }
        Call::Done { id } => {
            if let Some(e) = engine {
                e.on_done(id);
            }
        }
    }
    Vec::new()
}

/// The scheduler's handle on one worker thread.
pub struct Worker {
    tx: Option<Sender<ToWorker>>,
    rx: Receiver<FromWorker>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// A worker thread that reports the minimums of `watched` keys.
    pub fn spawn(name: String, watched: Arc<Vec<String>>) -> Worker {
        let (to_tx, to_rx) = channel::<ToWorker>();
        let (from_tx, from_rx) = channel::<FromWorker>();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let mut engine: Option<Engine> = None;
                while let Ok(msg) = to_rx.recv() {
                    match msg {
                        ToWorker::Call(call) => {
                            let mut out = Vec::new();
                            let result = catch_unwind(AssertUnwindSafe(|| {
                                let mut host = ChannelHost { tx: &from_tx, rx: &to_rx, peer: None };
                                run(&mut engine, call, &mut host, &mut out)
                            }));
                            let reply = match result {
                                Ok(owed) => FromWorker::Finished { commands: out, owed, view: view(engine.as_ref(), &watched) },
                                Err(payload) => {
                                    engine = None;
                                    if payload.is::<Killed>() {
                                        FromWorker::Died
                                    } else {
                                        let msg = payload
                                            .downcast_ref::<String>()
                                            .cloned()
                                            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                                            .unwrap_or_else(|| "a panic".into());
                                        FromWorker::Panicked(msg)
                                    }
                                }
                            };
                            if from_tx.send(reply).is_err() {
                                return;
                            }
                        }
                        // Killed between calls.
                        ToWorker::Die => engine = None,
                        ToWorker::Reply(_) => panic!("a host answer outside a call"),
                        ToWorker::Exit => return,
                    }
                }
            })
            .expect("worker thread");
        Worker { tx: Some(to_tx), rx: from_rx, thread: Some(thread) }
    }

    /// Starts `call`; the worker runs to its first host call or its end.
    fn send(&self, msg: ToWorker) {
        self.tx.as_ref().expect("worker open").send(msg).expect("worker gone");
    }

    /// Starts `call`; the worker runs to its first host call or its end.
    pub fn start(&self, call: Call) -> FromWorker {
        self.send(ToWorker::Call(call));
        self.rx.recv().expect("worker gone")
    }

    /// Answers the pending host call; the worker runs to its next one or its end.
    pub fn answer(&self, reply: HostReply) -> FromWorker {
        self.send(ToWorker::Reply(reply));
        self.rx.recv().expect("worker gone")
    }

    /// Kills the worker at its pending host call.
    pub fn kill_in_call(&self) -> FromWorker {
        self.send(ToWorker::Die);
        self.rx.recv().expect("worker gone")
    }

    /// Kills the worker between calls.
    pub fn kill_idle(&self) {
        self.send(ToWorker::Die);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(ToWorker::Exit);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The peer address of simulated clients.
pub fn client_peer(n: usize) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(10, 0, (n / 250) as u8, (n % 250) as u8 + 1)))
}
