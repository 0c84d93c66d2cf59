//! The simulated world: several Envoys of several workers, each Envoy with
//! its own shared data, one authority, clients, and virtual time.
//!
//! Time only moves when nothing is left to do at the current millisecond.
//! Engine calls take no virtual time, but calls of different workers at the
//! same millisecond run concurrently: the scheduler interleaves them at every
//! host call (a shared-data read or write, a dispatch), as Envoy's worker
//! threads would. Every choice (which call goes next, delays, faults, client
//! traffic) comes from the run's seed.
//!
//! The world records what happened (requests and their answers, callouts and
//! their fates, syncs, revocations, deaths); [`crate::check`] judges it.

use crate::authority::{Authority, Endpoint, Family};
use crate::doc::{
    DocSpec, ACCESS_COOKIE, ACCESS_RESPONSE_HEADER, CLOCK_SKEW_SECS, EDGE_CREDENTIAL, REFRESH_COOKIE, REFRESH_HEADER,
    REFRESH_RESPONSE_HEADER,
};
use crate::rng::Rng;
use crate::shared::SharedData;
use crate::worker::{client_peer, Call, FromWorker, HostOp, HostReply, View, Worker};
use std::collections::BTreeMap;
use std::sync::Arc;
use tollgate::authenticator::HeaderOp;
use tollgate::config::Config;
use tollgate::edge::{Callout, Command, Counter, DispatchFailed, Keys, Level, WORKERS_KEY};
use tollgate::refresh::{self, Slot as RefreshSlot};
use tollgate::revocation::RevocationSet;

/// The engine's number of shared refresh slots (`REFRESH_SLOTS`, private to
/// the engine): the simulation reads the slot a refresh token maps to.
pub const REFRESH_SLOTS: u32 = 1024;

/// Callout delays and faults. Per-mille chances, drawn per callout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub rtt_min: u64,
    pub rtt_max: u64,
    /// Lost on the way (before or after the authority saw it): the host
    /// delivers a transport failure after the callout's timeout.
    pub drop: u32,
    /// The authority answers 503.
    pub fail: u32,
    /// The answer takes longer than the timeout (the authority did act).
    pub slow: u32,
    /// The host delivers the answer twice (a host bug the engine must shrug off).
    pub dup: u32,
    /// `dispatch_http_call` itself fails (no such cluster, bad headers).
    pub dispatch_fail: u32,
    /// The faults hit only callouts to this endpoint (all when `None`).
    pub faults_on: Option<Endpoint>,
}

impl Net {
    pub fn healthy(rtt_min: u64, rtt_max: u64) -> Net {
        Net { rtt_min, rtt_max, drop: 0, fail: 0, slow: 0, dup: 0, dispatch_fail: 0, faults_on: None }
    }

    /// Whether callouts to `endpoint` may meet faults.
    pub fn faulty_for(&self, endpoint: Endpoint) -> bool {
        let any = self.drop + self.fail + self.slow + self.dispatch_fail > 0;
        any && self.faults_on.is_none_or(|e| e == endpoint)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Browser: both tokens in cookies.
    Cookie,
    /// API client: `Authorization: Bearer` and the refresh token in a header.
    Header,
}

/// What a session's access token is when the session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Valid,
    /// Inside `refresh_before_seconds`: an optional refresh.
    Expiring,
    /// Expired: the refresh is needed.
    Expired,
    /// The browser dropped the expired access cookie; only the refresh one is left.
    Dropped,
}

/// A login at the authority (a refresh family) and the tokens a client holds.
#[derive(Debug, Clone)]
pub struct Session {
    pub family: Family,
    pub mode: Mode,
    pub access: Option<String>,
    pub refresh: Option<String>,
    /// Takes the new pair a response carries (a real client does).
    pub adopt: bool,
}

/// A client with a plain access token (no refresh).
#[derive(Debug, Clone)]
pub struct Bearer {
    pub sub: String,
    pub sid: Option<String>,
    pub token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    NoToken,
    Bearer(usize),
    Session(usize),
}

#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub who: Who,
    /// To the `fresh` rule (a live version check).
    pub fresh: bool,
    pub envoy: usize,
    pub worker: usize,
    /// The client goes away this long after sending, if not answered by then.
    pub cancel_after: Option<u64>,
}

/// The identity a continued request goes upstream with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub sid: Option<String>,
    pub ver: u64,
}

#[derive(Debug, Clone)]
pub struct Answered {
    pub at: u64,
    /// 200 for a request continued upstream.
    pub status: u16,
    pub identity: Option<Identity>,
    pub resume: Option<bool>,
    /// Answered in the request's own `on_request`.
    pub in_own_call: bool,
    /// The answering worker's sync time after the call.
    pub synced_at: Option<u64>,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct Req {
    pub spec: RequestSpec,
    pub planned_at: u64,
    pub arrived: Option<u64>,
    /// Envoy, worker, incarnation, context id.
    pub at: Option<(usize, usize, u64, u32)>,
    /// Latest time it may be answered (from the document).
    pub bound: u64,
    pub may_refresh: bool,
    pub answers: Vec<Answered>,
    pub done_at: Option<u64>,
    pub cancelled_at: Option<u64>,
    pub killed_at: Option<u64>,
    /// No worker of its Envoy was alive.
    pub refused: bool,
    pub presented: Option<Identity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Answered,
    /// The authority is down: refused at once.
    Refused,
    Dropped,
    Failed,
    Slow,
}

#[derive(Debug, Clone)]
pub struct CalloutRec {
    pub envoy: usize,
    pub worker: usize,
    pub inc: u64,
    pub worker_id: u32,
    /// The context the answer goes to; `root` when it is the worker's root.
    pub ctx: u32,
    pub root: bool,
    pub token: u32,
    pub endpoint: Endpoint,
    pub refresh_token: Option<String>,
    pub dispatched_at: u64,
    pub dispatch_ok: bool,
    pub fate: Fate,
    pub authority_saw: bool,
    /// When the host delivers the answer, and what it is.
    pub answer_at: u64,
    pub status: Option<u16>,
    pub body: Vec<u8>,
    pub delivered_at: Option<u64>,
    /// The answer will never be delivered (its context or worker is gone).
    pub lost_at: Option<u64>,
    /// The refresh token's shared slot held another token's live entry.
    pub slot_taken_by_other: bool,
    pub sync_ok: bool,
    /// The authority's operation number when it handled the callout.
    pub authority_seq: u64,
}

/// An admin revocation at the authority.
#[derive(Debug, Clone)]
pub struct Bump {
    pub at: u64,
    pub key: String,
    pub min: u64,
    /// The authority's operation number of the revocation.
    pub seq: u64,
}

/// A feed answer an Envoy applied (`sync_ok`).
#[derive(Debug, Clone, Copy)]
pub struct Sync {
    pub envoy: usize,
    pub at: u64,
    /// The authority's operation number when it read the page.
    pub generated_seq: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Death {
    pub envoy: usize,
    pub worker: usize,
    pub inc: u64,
    pub at: u64,
    pub in_call: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Prop {
    Answered,
    RefreshOnce,
    Revoked,
    Monotone,
    NeverSynced,
    Lease,
    Protocol,
    FreshAsks,
}

impl Prop {
    pub const ALL: [Prop; 8] = [
        Prop::Answered,
        Prop::RefreshOnce,
        Prop::Revoked,
        Prop::Monotone,
        Prop::NeverSynced,
        Prop::Lease,
        Prop::Protocol,
        Prop::FreshAsks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Prop::Answered => "answered-once-in-bound",
            Prop::RefreshOnce => "one-refresh-callout-per-token-per-envoy",
            Prop::Revoked => "no-revoked-token-after-sync",
            Prop::Monotone => "minimums-never-go-back",
            Prop::NeverSynced => "never-synced-never-allows",
            Prop::Lease => "one-poller-per-envoy",
            Prop::Protocol => "host-protocol",
            Prop::FreshAsks => "fresh-with-staleness-0-always-asks",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub prop: Prop,
    pub at: u64,
    pub what: String,
}

#[derive(Debug)]
enum Ev {
    Configure { e: usize, w: usize },
    Tick { e: usize, w: usize, inc: u64 },
    Arrive { r: usize },
    Deliver { c: usize, dup: bool },
    ResponseStart { r: usize },
    Done { r: usize },
    Cancel { r: usize },
    Kill { e: usize, w: usize, in_call: bool, restart_after: Option<u64> },
    Revoke { key: String },
    SetNet(Net),
    AuthorityDown(bool),
}

impl Ev {
    /// The worker whose engine the event calls, if any.
    fn worker(&self, reqs: &[Req], callouts: &[CalloutRec]) -> Option<(usize, usize)> {
        match self {
            Ev::Configure { e, w } | Ev::Tick { e, w, .. } => Some((*e, *w)),
            Ev::Arrive { r } => Some((reqs[*r].spec.envoy, reqs[*r].spec.worker)),
            Ev::ResponseStart { r } | Ev::Done { r } | Ev::Cancel { r } => reqs[*r].at.map(|(e, w, _, _)| (e, w)),
            Ev::Deliver { c, .. } => Some((callouts[*c].envoy, callouts[*c].worker)),
            Ev::Kill { .. } | Ev::Revoke { .. } | Ev::SetNet(_) | Ev::AuthorityDown(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Own {
    Root,
    Request(usize),
}

#[derive(Debug, Default)]
struct Active {
    own: Option<Own>,
    /// The answer to the host call it stopped at.
    reply: Option<HostReply>,
    /// Killed at the host call it is stopped at.
    pending_kill: bool,
    /// Killed once this call is over.
    kill_after: bool,
    configure: bool,
    tick: bool,
    /// The call is this request's `on_request`.
    on_request: Option<usize>,
    /// The call delivers this callout's answer.
    callout: Option<usize>,
}

struct Slot {
    thread: Worker,
    inc: u64,
    alive: bool,
    active: Option<Active>,
    next_ctx: u32,
    next_token: u32,
    root_ctx: u32,
    view: View,
    /// Context id → request, for this worker (all incarnations).
    ctx_req: BTreeMap<u32, usize>,
    tick_phase: u64,
    /// A crash is due at the host call after this many more (a kill
    /// "inside a call": the VM dies in the middle of a callback).
    crash_in: Option<u32>,
    /// Configured again this long after it dies.
    restart_after: Option<u64>,
}

struct Envoy {
    shared: SharedData,
    workers: Vec<Slot>,
    /// The largest minimum of each key the published set ever held, and its floor.
    published: BTreeMap<String, u64>,
    published_floor: u64,
}

/// Per-run settings.
#[derive(Debug, Clone)]
pub struct Setup {
    pub seed: u64,
    pub envoys: usize,
    pub workers: usize,
    pub doc: DocSpec,
    pub net: Net,
    /// Phases of the workers' ticks are drawn from `0..=tick_spread` ms.
    pub tick_spread: u64,
    /// Shared data already holds every key the engine compare-and-sets, as
    /// a previous generation of workers (before a configuration reload)
    /// leaves it. Cold (false): a fresh Envoy, where a key's first write
    /// cannot be a compare-and-set (Envoy ignores the cas of a missing key).
    pub warm: bool,
    /// Written into every Envoy's shared data before its workers start
    /// (after `warm`): to make one kind of key warm and leave the rest cold.
    pub preset: Vec<(String, Vec<u8>)>,
}

pub struct World {
    pub setup: Setup,
    pub config: Config,
    pub t0: u64,
    pub now: u64,
    sched: Rng,
    net_rng: Rng,
    pub client_rng: Rng,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    envoys: Vec<Envoy>,
    pub authority: Authority,
    /// Operations the authority handled so far (callouts and revocations).
    pub authority_seq: u64,
    pub authority_down: bool,
    pub net: Net,
    pub sessions: Vec<Session>,
    pub bearers: Vec<Bearer>,
    pub reqs: Vec<Req>,
    pub callouts: Vec<CalloutRec>,
    pub bumps: Vec<Bump>,
    pub syncs: Vec<Sync>,
    pub deaths: Vec<Death>,
    /// Envoy, worker, incarnation, configured at.
    pub births: Vec<(usize, usize, u64, u64)>,
    /// Successful writes of the poller lease: Envoy, worker, incarnation, at.
    pub lease_writes: Vec<(usize, usize, u64, u64)>,
    /// Intervals of authority downtime, for the checks.
    pub outages: Vec<(u64, Option<u64>)>,
    /// Changes of the network settings (time, settings).
    pub net_changes: Vec<(u64, Net)>,
    pub violations: Vec<Violation>,
    pub trace: Vec<String>,
    watched: Arc<Vec<String>>,
    /// Per Envoy, per counter name.
    pub counters: BTreeMap<(usize, String), u64>,
    /// How many views were compared for monotonicity.
    pub views_checked: u64,
    pub steps: u64,
    /// Steps that ran a call while another worker's call was stopped at a host call.
    pub interleavings: u64,
}

fn count_name(c: Counter) -> String {
    c.name().trim_start_matches("tollgate.").to_owned()
}

/// `x=1; Path=/...` → (`x`, `1`).
fn cookie_pair(set_cookie: &str) -> Option<(&str, &str)> {
    set_cookie.split(';').next()?.trim().split_once('=')
}

fn refresh_token_of(body: Option<&[u8]>) -> Option<String> {
    form_urlencoded::parse(body?).find(|(k, _)| k == "refresh_token").map(|(_, v)| v.into_owned())
}

impl World {
    /// A world at virtual time `t0` (ahead of the real clock, so tokens the
    /// authority issues are never from the future), nothing started yet.
    pub fn new(setup: Setup) -> World {
        let mut root = Rng::new(setup.seed);
        let sched = root.fork(1);
        let net_rng = root.fork(2);
        let client_rng = root.fork(3);
        let config = setup.doc.config();
        let real = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
        // Whole seconds, so a run's second boundaries do not depend on when it ran.
        let t0 = (real / 1000 + 10) * 1000;
        let authority = Authority::start();
        let net = setup.net;
        World {
            config,
            t0,
            now: t0,
            sched,
            net_rng,
            client_rng,
            queue: BTreeMap::new(),
            seq: 0,
            envoys: Vec::new(),
            authority,
            authority_seq: 0,
            authority_down: false,
            net,
            sessions: Vec::new(),
            bearers: Vec::new(),
            reqs: Vec::new(),
            callouts: Vec::new(),
            bumps: Vec::new(),
            syncs: Vec::new(),
            deaths: Vec::new(),
            births: Vec::new(),
            lease_writes: Vec::new(),
            outages: Vec::new(),
            net_changes: vec![(t0, net)],
            violations: Vec::new(),
            trace: Vec::new(),
            watched: Arc::new(Vec::new()),
            counters: BTreeMap::new(),
            views_checked: 0,
            steps: 0,
            interleavings: 0,
            setup,
        }
    }

    pub fn doc(&self) -> &DocSpec {
        &self.setup.doc
    }

    /// Milliseconds since the start of the run.
    pub fn rel(&self, t: u64) -> u64 {
        t.saturating_sub(self.t0)
    }

    fn log(&mut self, line: String) {
        self.trace.push(format!("{:>7} {line}", self.rel(self.now)));
    }

    pub fn violate(&mut self, prop: Prop, at: u64, what: String) {
        self.trace.push(format!("{:>7} VIOLATION {}: {what}", self.rel(at), prop.name()));
        self.violations.push(Violation { prop, at, what });
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    // ---- setting the world up -----------------------------------------

    /// A login: a refresh family with a refresh token the run chose, and an
    /// access token in the state asked for.
    pub fn add_session(&mut self, mode: Mode, access: Access, adopt: bool) -> usize {
        let n = self.sessions.len();
        let (sub, sid) = (format!("user{}", n % 5), format!("s_sim{n}"));
        let refresh_token = format!("tgr_sim-{}-{n}", self.setup.seed);
        let family = self.authority.create_family(&sub, &sid, "read", &refresh_token);
        let now_s = self.now / 1000;
        let exp = match access {
            Access::Valid => now_s + 600,
            Access::Expiring => now_s + self.setup.doc.refresh_before_seconds / 2 + 1,
            Access::Expired | Access::Dropped => now_s.saturating_sub(CLOCK_SKEW_SECS + 60),
        };
        let token = self.authority.mint(&sub, Some(&sid), family.ver, "read", exp);
        let access = (access != Access::Dropped).then_some(token);
        self.sessions.push(Session { family, mode, access, refresh: Some(refresh_token), adopt });
        n
    }

    /// A client with a plain access token for `sub` (optionally a session id).
    pub fn add_bearer(&mut self, sub: &str, sid: Option<&str>) -> usize {
        let mut keys = vec![format!("sub:{sub}")];
        if let Some(sid) = sid {
            keys.push(format!("sid:{sid}"));
        }
        let keys_ref: Vec<&str> = keys.iter().map(String::as_str).collect();
        let ver = self.authority.versions(&keys_ref).into_iter().max().unwrap_or(0);
        let token = self.authority.mint(sub, sid, ver, "read", self.now / 1000 + 600);
        self.bearers.push(Bearer { sub: sub.into(), sid: sid.map(str::to_owned), token });
        self.bearers.len() - 1
    }

    /// Starts the Envoys: every worker configures at `start + 0..=spread` ms.
    pub fn start(&mut self, spread: u64) {
        let line = format!(
            "seed {} envoys {} workers {} {} {:?} {:?}",
            self.setup.seed,
            self.setup.envoys,
            self.setup.workers,
            if self.setup.warm { "warm" } else { "cold" },
            self.setup.doc,
            self.net
        );
        self.log(line);
        let mut keys: Vec<String> = Vec::new();
        for s in &self.sessions {
            keys.push(format!("sub:{}", s.family.sub));
            keys.push(format!("sid:{}", s.family.sid));
        }
        for b in &self.bearers {
            keys.push(format!("sub:{}", b.sub));
            if let Some(sid) = &b.sid {
                keys.push(format!("sid:{sid}"));
            }
        }
        keys.sort();
        keys.dedup();
        self.watched = Arc::new(keys);
        let tick = self.setup.doc.tick_ms();
        for e in 0..self.setup.envoys {
            let mut workers = Vec::new();
            for w in 0..self.setup.workers {
                let phase = self.sched.range(0, self.setup.tick_spread.min(tick - 1));
                workers.push(Slot {
                    thread: Worker::spawn(format!("envoy{e}-worker{w}"), self.watched.clone()),
                    inc: 0,
                    alive: false,
                    active: None,
                    next_ctx: 1,
                    next_token: 1,
                    root_ctx: 0,
                    view: View::default(),
                    ctx_req: BTreeMap::new(),
                    tick_phase: phase,
                    crash_in: None,
                    restart_after: None,
                });
            }
            let mut shared = SharedData::new();
            if self.setup.warm {
                warm_up(&mut shared, &Keys::for_config(&self.config));
            }
            for (key, value) in &self.setup.preset {
                let _ = shared.set(key, value, None);
            }
            self.envoys.push(Envoy { shared, workers, published: BTreeMap::new(), published_floor: 0 });
            for w in 0..self.setup.workers {
                let at = self.now + self.sched.range(0, spread);
                self.push(at, Ev::Configure { e, w });
            }
        }
    }

    // ---- scripting ------------------------------------------------------

    /// A client request `at` ms into the run; its index.
    pub fn request(&mut self, at: u64, spec: RequestSpec) -> usize {
        let at = self.t0 + at;
        self.reqs.push(Req {
            spec,
            planned_at: at,
            arrived: None,
            at: None,
            bound: 0,
            may_refresh: false,
            answers: Vec::new(),
            done_at: None,
            cancelled_at: None,
            killed_at: None,
            refused: false,
            presented: None,
        });
        let r = self.reqs.len() - 1;
        self.push(at, Ev::Arrive { r });
        r
    }

    /// A request of `who` to worker `w` of Envoy `e`, `at` ms into the run.
    pub fn send(&mut self, at: u64, who: Who, e: usize, w: usize) -> usize {
        self.request(at, RequestSpec { who, fresh: false, envoy: e, worker: w, cancel_after: None })
    }

    /// The same, to the `fresh` rule (a live version check).
    pub fn send_fresh(&mut self, at: u64, who: Who, e: usize, w: usize) -> usize {
        self.request(at, RequestSpec { who, fresh: true, envoy: e, worker: w, cancel_after: None })
    }

    /// The statuses request `r` was answered with (200: continued upstream).
    pub fn statuses(&self, r: usize) -> Vec<u16> {
        self.reqs[r].answers.iter().map(|a| a.status).collect()
    }

    /// How long after arriving request `r` was answered.
    pub fn latency(&self, r: usize) -> Option<u64> {
        Some(self.reqs[r].answers.first()?.at - self.reqs[r].arrived?)
    }

    pub fn kill(&mut self, at: u64, e: usize, w: usize, in_call: bool, restart_after: Option<u64>) {
        self.push(self.t0 + at, Ev::Kill { e, w, in_call, restart_after });
    }

    /// The client of request `r` goes away at `at` (if not answered).
    pub fn cancel(&mut self, at: u64, r: usize) {
        self.push(self.t0 + at, Ev::Cancel { r });
    }

    pub fn revoke(&mut self, at: u64, key: &str) {
        self.push(self.t0 + at, Ev::Revoke { key: key.into() });
    }

    pub fn set_net(&mut self, at: u64, net: Net) {
        self.push(self.t0 + at, Ev::SetNet(net));
    }

    pub fn authority_down(&mut self, at: u64, down: bool) {
        self.push(self.t0 + at, Ev::AuthorityDown(down));
    }

    // ---- the scheduler --------------------------------------------------

    /// Runs until `until` ms into the run (everything due before it happens).
    pub fn run_until(&mut self, until: u64) {
        let until = self.t0 + until;
        loop {
            self.steps += 1;
            let active: Vec<(usize, usize)> = self
                .envoys
                .iter()
                .enumerate()
                .flat_map(|(e, env)| env.workers.iter().enumerate().filter(|(_, s)| s.active.is_some()).map(move |(w, _)| (e, w)))
                .collect();
            let startable = self.startable();
            if active.is_empty() && startable.is_empty() {
                match self.queue.keys().next() {
                    Some(&(t, _)) if t < until => {
                        debug_assert!(t > self.now, "events due now are startable");
                        self.now = t;
                        continue;
                    }
                    _ => {
                        self.now = self.now.max(until);
                        return;
                    }
                }
            }
            let start = !startable.is_empty() && (active.is_empty() || self.sched.chance(500));
            if active.len() > usize::from(!start) {
                self.interleavings += 1;
            }
            if start {
                let key = startable[self.sched.index(startable.len())];
                let ev = self.queue.remove(&key).expect("startable event");
                self.begin(ev);
            } else {
                let (e, w) = active[self.sched.index(active.len())];
                self.resume(e, w);
            }
        }
    }

    /// Events due now that can start: world events, and each idle worker's
    /// first event (a worker runs its calls in order).
    fn startable(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut seen: Vec<(usize, usize)> = Vec::new();
        for (&key, ev) in self.queue.range((self.now, 0)..(self.now + 1, 0)) {
            match ev.worker(&self.reqs, &self.callouts) {
                None => out.push(key),
                Some(ew) => {
                    if seen.contains(&ew) {
                        continue;
                    }
                    seen.push(ew);
                    if self.envoys[ew.0].workers[ew.1].active.is_none() {
                        out.push(key);
                    }
                }
            }
        }
        out
    }

    fn begin(&mut self, ev: Ev) {
        match ev {
            Ev::Configure { e, w } => {
                let slot = &mut self.envoys[e].workers[w];
                slot.inc += 1;
                slot.alive = true;
                slot.root_ctx = slot.next_ctx;
                slot.next_ctx += 1;
                let inc = slot.inc;
                slot.view = View::default();
                self.births.push((e, w, inc, self.now));
                self.log(format!("configure envoy{e}/worker{w} incarnation {inc}"));
                let call = Call::Configure { config: Box::new(self.config.clone()), now: self.now };
                self.call(e, w, Active { own: Some(Own::Root), configure: true, ..Active::default() }, call);
            }
            Ev::Tick { e, w, inc } => {
                let slot = &self.envoys[e].workers[w];
                if slot.inc == inc && slot.alive {
                    self.call(e, w, Active { own: Some(Own::Root), tick: true, ..Active::default() }, Call::Tick { now: self.now });
                }
            }
            Ev::Arrive { r } => self.arrive(r),
            Ev::Deliver { c, dup } => self.deliver(c, dup),
            Ev::ResponseStart { r } => {
                let (e, w, inc, ctx) = self.reqs[r].at.expect("placed");
                if self.envoys[e].workers[w].inc == inc && self.envoys[e].workers[w].alive {
                    self.call(e, w, Active { own: Some(Own::Request(r)), ..Active::default() }, Call::Owed { id: ctx });
                }
            }
            Ev::Done { r } => self.done(r, false),
            Ev::Cancel { r } => {
                let q = &self.reqs[r];
                if q.arrived.is_some() && q.answers.is_empty() && q.done_at.is_none() && q.killed_at.is_none() && !q.refused {
                    self.done(r, true);
                }
            }
            Ev::Kill { e, w, in_call, restart_after } => self.kill_now(e, w, in_call, restart_after),
            Ev::Revoke { key } => {
                let min = self.authority.revoke(&key);
                self.authority_seq += 1;
                self.log(format!("authority: revoke {key} → min {min}"));
                self.bumps.push(Bump { at: self.now, key, min, seq: self.authority_seq });
            }
            Ev::SetNet(net) => {
                self.log(format!("network: {net:?}"));
                self.net = net;
                self.net_changes.push((self.now, net));
            }
            Ev::AuthorityDown(down) => {
                self.log(format!("authority {}", if down { "down" } else { "back" }));
                self.authority_down = down;
                if down {
                    self.outages.push((self.now, None));
                } else if let Some(last) = self.outages.last_mut() {
                    last.1.get_or_insert(self.now);
                }
            }
        }
    }

    fn call(&mut self, e: usize, w: usize, active: Active, call: Call) {
        let slot = &mut self.envoys[e].workers[w];
        debug_assert!(slot.active.is_none());
        slot.active = Some(active);
        let msg = slot.thread.start(call);
        self.on_message(e, w, msg);
    }

    fn resume(&mut self, e: usize, w: usize) {
        let slot = &mut self.envoys[e].workers[w];
        let active = slot.active.as_mut().expect("an active call");
        let msg = if active.pending_kill {
            slot.thread.kill_in_call()
        } else {
            let reply = active.reply.take().expect("a pending host call");
            slot.thread.answer(reply)
        };
        self.on_message(e, w, msg);
    }

    fn on_message(&mut self, e: usize, w: usize, msg: FromWorker) {
        match msg {
            FromWorker::Op(op) => {
                let slot = &mut self.envoys[e].workers[w];
                match slot.crash_in {
                    // The VM dies at this host call: it does not happen.
                    Some(0) => {
                        slot.crash_in = None;
                        slot.active.as_mut().expect("active").pending_kill = true;
                        let at = match &op {
                            HostOp::Get(key) => format!("get {key}"),
                            HostOp::Set(key, ..) => format!("set {key}"),
                            HostOp::Dispatch(call) => format!("dispatch {}", call.headers.get(1).map_or("", |h| h.1.as_str())),
                        };
                        self.log(format!("envoy{e}/worker{w}: crashes at {at}"));
                        return;
                    }
                    Some(n) => slot.crash_in = Some(n - 1),
                    None => {}
                }
                let reply = self.host_op(e, w, op);
                let active = self.envoys[e].workers[w].active.as_mut().expect("active");
                active.reply = Some(reply);
            }
            FromWorker::Finished { commands, owed, view } => {
                let active = self.envoys[e].workers[w].active.take().expect("active");
                let kill_after = active.kill_after;
                self.finished(e, w, active, commands, owed, view);
                if kill_after {
                    self.envoys[e].workers[w].thread.kill_idle();
                    self.died(e, w, false);
                }
            }
            FromWorker::Died => {
                self.envoys[e].workers[w].active = None;
                self.died(e, w, true);
            }
            FromWorker::Panicked(msg) => {
                self.envoys[e].workers[w].active = None;
                self.violate(Prop::Protocol, self.now, format!("envoy{e}/worker{w}: the engine panicked: {msg}"));
                self.died(e, w, true);
            }
        }
    }

    // ---- host operations -----------------------------------------------

    fn host_op(&mut self, e: usize, w: usize, op: HostOp) -> HostReply {
        match op {
            HostOp::Get(key) => {
                let (v, cas) = self.envoys[e].shared.get(&key);
                HostReply::Get(v, cas)
            }
            HostOp::Set(key, value, cas) => {
                let r = self.envoys[e].shared.set(&key, &value, cas);
                let keys = Keys::for_config(&self.config);
                if r.is_ok() && key == keys.set {
                    self.published_changed(e, &value);
                }
                // A write of an expired lease (the placeholder that creates
                // the key at configure) takes nothing.
                let live = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|v| v.split_once(':'))
                    .and_then(|(_, until)| until.parse::<u64>().ok())
                    .is_some_and(|until| until > self.now);
                if r.is_ok() && key == keys.lease && live {
                    let inc = self.envoys[e].workers[w].inc;
                    self.lease_writes.push((e, w, inc, self.now));
                }
                HostReply::Set(r)
            }
            HostOp::Dispatch(call) => HostReply::Dispatch(self.dispatch(e, w, call)),
        }
    }

    /// The set the workers of Envoy `e` share: its minimums never go back.
    fn published_changed(&mut self, e: usize, bytes: &[u8]) {
        let Some(set) = RevocationSet::decode(bytes) else {
            self.violate(Prop::Monotone, self.now, format!("envoy{e}: the published revocation set does not decode"));
            return;
        };
        self.views_checked += 1;
        let mut problems = Vec::new();
        for key in self.watched.iter() {
            let old = self.envoys[e].published.get(key).copied();
            match (old, set.min_version(key)) {
                (Some(o), Some(n)) if n < o => problems.push(format!("{key}: {o} → {n}")),
                (Some(o), None) => problems.push(format!("{key}: {o} → none")),
                (_, Some(n)) => {
                    self.envoys[e].published.insert(key.clone(), n);
                }
                (None, None) => {}
            }
        }
        if set.floor() < self.envoys[e].published_floor {
            problems.push(format!("floor {} → {}", self.envoys[e].published_floor, set.floor()));
        }
        self.envoys[e].published_floor = self.envoys[e].published_floor.max(set.floor());
        for p in problems {
            self.violate(Prop::Monotone, self.now, format!("envoy{e}: the published set went back: {p}"));
        }
    }

    fn dispatch(&mut self, e: usize, w: usize, call: Callout) -> Result<u32, DispatchFailed> {
        let doc = self.setup.doc.clone();
        let header = |n: &str| call.headers.iter().find(|(h, _)| *h == n).map(|(_, v)| v.clone());
        let path = header(":path").unwrap_or_default();
        let endpoint = Endpoint::of(&path);
        // What goes over the wire: the document's cluster and timeout, the
        // edge credential to the feed and live checks and nowhere else.
        let credential = header("authorization");
        let wants_credential = matches!(endpoint, Endpoint::Feed | Endpoint::Versions);
        let expected = wants_credential.then(|| format!("Bearer {EDGE_CREDENTIAL}"));
        if credential != expected {
            let what = format!("envoy{e}/worker{w}: {path} carries authorization {:?}", credential.map(|_| "<value>"));
            self.violate(Prop::Protocol, self.now, what);
        }
        if call.cluster != "authority" || call.timeout_ms != doc.timeout_ms || endpoint == Endpoint::Other {
            self.violate(Prop::Protocol, self.now, format!("envoy{e}/worker{w}: unexpected callout {path} to {} ({} ms)", call.cluster, call.timeout_ms));
        }
        let slot = &mut self.envoys[e].workers[w];
        let active = slot.active.as_ref().expect("dispatch inside a call");
        let (ctx, root) = match active.own.expect("a context") {
            Own::Root => (slot.root_ctx, true),
            Own::Request(r) => (self.reqs[r].at.expect("placed").3, false),
        };
        let (inc, worker_id) = (slot.inc, slot.view.worker_id);
        let refresh_token = (endpoint == Endpoint::Token).then(|| refresh_token_of(call.body.as_deref())).flatten();
        let slot_taken_by_other = refresh_token.as_ref().is_some_and(|rt| {
            let group = refresh::hash(rt);
            let key = refresh::slot_key(&group, REFRESH_SLOTS);
            let (bytes, _) = self.envoys[e].shared.get(&key);
            bytes.as_deref().and_then(RefreshSlot::decode).is_some_and(|s| s.is_live_for_other(&group, self.now))
        });
        let mut rec = CalloutRec {
            envoy: e,
            worker: w,
            inc,
            worker_id,
            ctx,
            root,
            token: 0,
            endpoint,
            refresh_token,
            dispatched_at: self.now,
            dispatch_ok: false,
            fate: Fate::Answered,
            authority_saw: false,
            answer_at: self.now,
            status: None,
            body: Vec::new(),
            delivered_at: None,
            lost_at: None,
            slot_taken_by_other,
            sync_ok: false,
            authority_seq: 0,
        };
        let mut net = self.net;
        if net.faults_on.is_some_and(|only| only != endpoint) {
            net = Net { drop: 0, fail: 0, slow: 0, dup: 0, dispatch_fail: 0, ..net };
        }
        if self.net_rng.chance(net.dispatch_fail) {
            self.log(format!("envoy{e}/worker{w}: dispatch {path} fails"));
            self.callouts.push(rec);
            return Err(DispatchFailed);
        }
        let slot = &mut self.envoys[e].workers[w];
        let token = slot.next_token;
        slot.next_token += 1;
        rec.token = token;
        rec.dispatch_ok = true;
        let delay = self.net_rng.range(net.rtt_min.max(1), net.rtt_max.max(net.rtt_min).max(1));
        let roll = self.net_rng.below(1000) as u32;
        let fate = if self.authority_down {
            Fate::Refused
        } else if roll < net.drop {
            Fate::Dropped
        } else if roll < net.drop + net.fail {
            Fate::Failed
        } else if roll < net.drop + net.fail + net.slow {
            Fate::Slow
        } else {
            Fate::Answered
        };
        let reaches = match fate {
            Fate::Refused | Fate::Failed => false,
            Fate::Dropped => self.net_rng.chance(500),
            Fate::Slow | Fate::Answered => true,
        };
        let answer = reaches.then(|| self.authority.handle(&call.headers, call.body.as_deref()));
        if reaches {
            self.authority_seq += 1;
            rec.authority_seq = self.authority_seq;
        }
        rec.authority_saw = reaches;
        let timeout = call.timeout_ms;
        let (at, status, body) = match fate {
            Fate::Refused => (self.now + self.net_rng.range(1, 5), None, Vec::new()),
            Fate::Dropped | Fate::Slow => (self.now + timeout, None, Vec::new()),
            Fate::Failed => {
                let body = br#"{"error":"temporarily_unavailable","error_description":"token store unavailable"}"#.to_vec();
                (self.now + delay.min(timeout), (delay < timeout).then_some(503), body)
            }
            Fate::Answered => {
                let a = answer.expect("answered");
                if delay < timeout {
                    (self.now + delay, Some(a.status), a.body)
                } else {
                    (self.now + timeout, None, Vec::new())
                }
            }
        };
        let body = if status.is_some() { body } else { Vec::new() };
        rec.fate = fate;
        rec.answer_at = at;
        rec.status = status;
        rec.body = body;
        let rt = rec.refresh_token.as_deref().map(|t| format!(" rt#{}", &refresh::hash(t)[..6])).unwrap_or_default();
        self.log(format!(
            "envoy{e}/worker{w} ctx{ctx}{}: callout #{token} {path}{rt} → {fate:?} {status:?} at +{}",
            if root { "(root)" } else { "" },
            at - self.now
        ));
        self.callouts.push(rec);
        let c = self.callouts.len() - 1;
        self.push(at, Ev::Deliver { c, dup: false });
        if self.net_rng.chance(net.dup) {
            let again = at + self.net_rng.range(0, 3);
            self.push(again, Ev::Deliver { c, dup: true });
        }
        Ok(token)
    }

    // ---- events ---------------------------------------------------------

    /// Request `r`'s headers from its client's tokens now; whether it can
    /// refresh; whose tokens it presents.
    fn headers(&self, r: usize) -> Presented {
        let spec = &self.reqs[r].spec;
        let path = match (spec.who, spec.fresh) {
            (Who::Anonymous, _) => format!("/public/page{r}"),
            (_, true) => format!("/fresh/items/{r}"),
            (_, false) => format!("/api/items/{r}"),
        };
        let mut h: Vec<(String, Vec<u8>)> = vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), path.into_bytes()),
            (":authority".into(), b"app.tollgate.local".to_vec()),
            (":scheme".into(), b"https".to_vec()),
            ("user-agent".into(), b"tollgate-sim".to_vec()),
            ("x-request-id".into(), format!("sim-{r}").into_bytes()),
        ];
        let mut may_refresh = false;
        let mut presented = None;
        match spec.who {
            Who::Anonymous | Who::NoToken => {}
            Who::Bearer(b) => {
                let b = &self.bearers[b];
                h.push(("authorization".into(), format!("Bearer {}", b.token).into_bytes()));
                presented = Some(Identity { sub: b.sub.clone(), sid: b.sid.clone(), ver: 0 });
            }
            Who::Session(s) => {
                let s = &self.sessions[s];
                may_refresh = s.refresh.is_some();
                if s.access.is_some() || s.refresh.is_some() {
                    let f = &s.family;
                    presented = Some(Identity { sub: f.sub.clone(), sid: Some(f.sid.clone()), ver: f.ver });
                }
                match s.mode {
                    Mode::Cookie => {
                        let mut parts = Vec::new();
                        if let Some(a) = &s.access {
                            parts.push(format!("{ACCESS_COOKIE}={a}"));
                        }
                        if let Some(t) = &s.refresh {
                            parts.push(format!("{REFRESH_COOKIE}={t}"));
                        }
                        if !parts.is_empty() {
                            h.push(("cookie".into(), parts.join("; ").into_bytes()));
                        }
                    }
                    Mode::Header => {
                        if let Some(a) = &s.access {
                            h.push(("authorization".into(), format!("Bearer {a}").into_bytes()));
                        }
                        if let Some(t) = &s.refresh {
                            h.push((REFRESH_HEADER.into(), t.clone().into_bytes()));
                        }
                    }
                }
            }
        }
        (h, may_refresh, presented)
    }

    fn arrive(&mut self, r: usize) {
        let (e, mut w) = (self.reqs[r].spec.envoy, self.reqs[r].spec.worker);
        // Envoy hands a connection to a live worker.
        if !self.envoys[e].workers[w].alive {
            let live: Vec<usize> = (0..self.envoys[e].workers.len()).filter(|&x| self.envoys[e].workers[x].alive).collect();
            if live.is_empty() {
                self.reqs[r].refused = true;
                self.log(format!("request {r}: envoy{e} has no live worker"));
                return;
            }
            w = live[self.sched.index(live.len())];
            self.reqs[r].spec.worker = w;
            if self.envoys[e].workers[w].active.is_some() {
                // That worker is in a call: the request waits its turn.
                self.push(self.now, Ev::Arrive { r });
                return;
            }
        }
        let (headers, may_refresh, presented) = self.headers(r);
        let doc = &self.setup.doc;
        let fresh = self.reqs[r].spec.fresh;
        let checks = match (fresh, may_refresh) {
            (false, _) => 0,
            (true, false) => 1,
            // A live check, a refresh, a live check with the new token.
            (true, true) => 2,
        };
        let bound = u64::from(may_refresh) * doc.pause_bound_ms(true) + checks * doc.pause_bound_ms(false);
        let slot = &mut self.envoys[e].workers[w];
        let ctx = slot.next_ctx;
        slot.next_ctx += 1;
        slot.ctx_req.insert(ctx, r);
        let inc = slot.inc;
        let q = &mut self.reqs[r];
        q.arrived = Some(self.now);
        q.at = Some((e, w, inc, ctx));
        q.bound = self.now + bound;
        q.may_refresh = may_refresh;
        q.presented = presented;
        if let Some(after) = q.spec.cancel_after {
            let at = self.now + after;
            self.push(at, Ev::Cancel { r });
        }
        let who = format!("{:?}{}", self.reqs[r].spec.who, if fresh { " fresh" } else { "" });
        self.log(format!("request {r} ({who}) → envoy{e}/worker{w} ctx{ctx}"));
        let call = Call::Request { now: self.now, id: ctx, headers, peer: client_peer(r) };
        self.call(e, w, Active { own: Some(Own::Request(r)), on_request: Some(r), ..Active::default() }, call);
    }

    fn deliver(&mut self, c: usize, dup: bool) {
        let rec = &self.callouts[c];
        let (e, w, inc) = (rec.envoy, rec.worker, rec.inc);
        let slot = &self.envoys[e].workers[w];
        if slot.inc != inc || !slot.alive || rec.lost_at.is_some() {
            return;
        }
        let own = if rec.root {
            Own::Root
        } else {
            let Some(&r) = slot.ctx_req.get(&rec.ctx) else { return };
            if self.reqs[r].done_at.is_some() {
                return;
            }
            Own::Request(r)
        };
        if !dup {
            self.callouts[c].delivered_at = Some(self.now);
        }
        let rec = &self.callouts[c];
        let body_size = rec.body.len();
        let call = Call::Callout { now: self.now, token: rec.token, status: rec.status, body: rec.body.clone(), body_size };
        if dup {
            self.log(format!("envoy{e}/worker{w}: callout #{} delivered again", rec.token));
        }
        self.call(e, w, Active { own: Some(own), callout: (!dup).then_some(c), ..Active::default() }, call);
    }

    /// Request `r`'s stream ends (`cancelled`: before it was answered).
    fn done(&mut self, r: usize, cancelled: bool) {
        let (e, w, inc, ctx) = self.reqs[r].at.expect("placed");
        if self.reqs[r].done_at.is_some() {
            return;
        }
        self.reqs[r].done_at = Some(self.now);
        if cancelled {
            self.reqs[r].cancelled_at = Some(self.now);
            self.log(format!("request {r}: client gone"));
        }
        // Callouts made from this context are never answered now.
        let now = self.now;
        for rec in self.callouts.iter_mut().filter(|c| c.envoy == e && c.worker == w && c.inc == inc && !c.root && c.ctx == ctx) {
            if rec.delivered_at.is_none() && rec.lost_at.is_none() {
                rec.lost_at = Some(now);
            }
        }
        let slot = &self.envoys[e].workers[w];
        if slot.inc == inc && slot.alive {
            self.call(e, w, Active { own: Some(Own::Request(r)), ..Active::default() }, Call::Done { id: ctx });
        }
    }

    fn kill_now(&mut self, e: usize, w: usize, in_call: bool, restart_after: Option<u64>) {
        if !self.envoys[e].workers[w].alive {
            return;
        }
        let crash_in = self.sched.below(4) as u32;
        let slot = &mut self.envoys[e].workers[w];
        slot.restart_after = restart_after;
        match slot.active.as_mut() {
            Some(active) if in_call => {
                // Its VM crashes at the host call it is stopped at.
                active.pending_kill = true;
                self.log(format!("envoy{e}/worker{w}: killed inside this call"));
            }
            Some(active) => active.kill_after = true,
            None if in_call => {
                // It crashes inside one of its next calls.
                slot.crash_in = Some(crash_in);
                self.log(format!("envoy{e}/worker{w}: will crash at its {}th host call from now", crash_in + 1));
            }
            None => {
                slot.thread.kill_idle();
                self.died(e, w, false);
            }
        }
    }

    fn died(&mut self, e: usize, w: usize, in_call: bool) {
        let slot = &mut self.envoys[e].workers[w];
        if !slot.alive {
            return;
        }
        slot.alive = false;
        slot.crash_in = None;
        let inc = slot.inc;
        let now = self.now;
        if let Some(restart) = slot.restart_after.take() {
            self.push(now + restart, Ev::Configure { e, w });
        }
        self.deaths.push(Death { envoy: e, worker: w, inc, at: now, in_call });
        self.log(format!("envoy{e}/worker{w} incarnation {inc} dies"));
        for q in self.reqs.iter_mut() {
            if let Some((qe, qw, qi, _)) = q.at {
                if (qe, qw, qi) == (e, w, inc) && q.answers.is_empty() && q.done_at.is_none() && q.killed_at.is_none() {
                    q.killed_at = Some(now);
                    q.done_at = Some(now);
                }
            }
        }
        for c in self.callouts.iter_mut().filter(|c| c.envoy == e && c.worker == w && c.inc == inc) {
            if c.delivered_at.is_none() && c.lost_at.is_none() {
                c.lost_at = Some(now);
            }
        }
    }

    // ---- the results of a call -----------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn finished(&mut self, e: usize, w: usize, active: Active, commands: Vec<Command>, owed: Vec<(String, String)>, view: View) {
        let inc = self.envoys[e].workers[w].inc;
        if active.configure {
            if !view.alive {
                self.violate(Prop::Protocol, self.now, format!("envoy{e}/worker{w}: no engine after configure"));
                return;
            }
            // The host ticks at the engine's period; the bounds are computed
            // from the document with the same formula.
            let expected = self.setup.doc.tick_ms();
            if view.tick_ms != Some(expected) {
                self.violate(Prop::Protocol, self.now, format!("engine tick {:?}, the document's bounds assume {expected}", view.tick_ms));
            }
            let tick = view.tick_ms.unwrap_or(expected);
            let at = self.now + tick + self.envoys[e].workers[w].tick_phase;
            self.push(at, Ev::Tick { e, w, inc });
            self.log(format!("envoy{e}/worker{w} is worker id {}", view.worker_id));
        }
        if active.tick && view.alive {
            let at = self.now + view.tick_ms.unwrap_or_else(|| self.setup.doc.tick_ms());
            self.push(at, Ev::Tick { e, w, inc });
        }
        if let Some(Own::Request(r)) = active.own {
            if !owed.is_empty() {
                self.adopt(r, &owed);
            }
        }
        self.check_view(e, w, inc, &view);
        let own_request = active.on_request;
        for command in commands {
            match command {
                Command::Continue { id, ops, resume, .. } => {
                    let identity = identity_of(&ops);
                    self.answer(e, w, inc, id, own_request, 200, identity, Some(resume), String::new(), Vec::new(), &view);
                }
                Command::Reply { id, status, headers, body, .. } => {
                    self.answer(e, w, inc, id, own_request, status, None, None, body, headers, &view);
                }
                Command::Count(c) => {
                    *self.counters.entry((e, count_name(c))).or_insert(0) += 1;
                    if c == Counter::SyncOk {
                        self.sync_ok(e, w, active.callout);
                    }
                }
                Command::Add(c, n) => {
                    *self.counters.entry((e, count_name(c))).or_insert(0) += n;
                }
                Command::Record(..) => {}
                Command::Log(level, line) => {
                    let level = if level == Level::Warn { "warn" } else { "info" };
                    self.log(format!("envoy{e}/worker{w} log {level}: {line}"));
                }
            }
        }
        let slot = &mut self.envoys[e].workers[w];
        slot.view = view;
    }

    /// A worker's minimums never go back.
    fn check_view(&mut self, e: usize, w: usize, inc: u64, view: &View) {
        let slot = &self.envoys[e].workers[w];
        if !view.alive || slot.inc != inc {
            return;
        }
        self.views_checked += 1;
        let old = &slot.view;
        let mut problems = Vec::new();
        if old.alive {
            for (i, key) in self.watched.iter().enumerate() {
                match (old.mins.get(i).copied().flatten(), view.mins.get(i).copied().flatten()) {
                    (Some(o), Some(n)) if n < o => problems.push(format!("{key}: {o} → {n}")),
                    (Some(o), None) => problems.push(format!("{key}: {o} → none")),
                    _ => {}
                }
            }
            if view.floor < old.floor {
                problems.push(format!("floor {} → {}", old.floor, view.floor));
            }
            if old.synced_at.is_some() && view.synced_at < old.synced_at {
                problems.push(format!("synced_at {:?} → {:?}", old.synced_at, view.synced_at));
            }
        }
        for p in problems {
            self.violate(Prop::Monotone, self.now, format!("envoy{e}/worker{w}: a minimum went back: {p}"));
        }
    }

    /// The feed answer this call applied.
    fn sync_ok(&mut self, e: usize, w: usize, callout: Option<usize>) {
        match callout.filter(|&c| self.callouts[c].endpoint == Endpoint::Feed) {
            Some(c) => {
                self.callouts[c].sync_ok = true;
                let generated_seq = self.callouts[c].authority_seq;
                self.syncs.push(Sync { envoy: e, at: self.now, generated_seq });
            }
            None => self.violate(Prop::Protocol, self.now, format!("envoy{e}/worker{w}: sync_ok without a feed answer")),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        e: usize,
        w: usize,
        inc: u64,
        id: u32,
        own_request: Option<usize>,
        status: u16,
        identity: Option<Identity>,
        resume: Option<bool>,
        body: String,
        headers: Vec<(String, String)>,
        view: &View,
    ) {
        let Some(&r) = self.envoys[e].workers[w].ctx_req.get(&id) else {
            self.violate(Prop::Protocol, self.now, format!("envoy{e}/worker{w}: answer for unknown request id {id}"));
            return;
        };
        let in_own_call = own_request == Some(r);
        let q = &self.reqs[r];
        if q.at.map(|a| a.2) != Some(inc) {
            self.violate(Prop::Protocol, self.now, format!("request {r}: answered by another incarnation"));
            return;
        }
        let mut problems = Vec::new();
        if !q.answers.is_empty() {
            problems.push((Prop::Answered, format!("request {r}: answered twice (first at {})", self.rel(q.answers[0].at))));
        }
        if let Some(done) = q.done_at {
            problems.push((Prop::Answered, format!("request {r}: answered after it was gone (at {})", self.rel(done))));
        }
        if let Some(resume) = resume {
            if resume == in_own_call {
                problems.push((Prop::Protocol, format!("request {r}: continue with resume={resume} {} its own on_request", if in_own_call { "inside" } else { "outside" })));
            }
        }
        for (p, what) in problems {
            self.violate(p, self.now, what);
        }
        let who = identity.as_ref().map(|i| format!(" as {}:{}@{}", i.sub, i.sid.as_deref().unwrap_or("-"), i.ver)).unwrap_or_default();
        self.log(format!("request {r}: {status}{who} {}", if body.len() < 120 { body.as_str() } else { "" }));
        self.reqs[r].answers.push(Answered { at: self.now, status, identity, resume, in_own_call, synced_at: view.synced_at, body });
        if status != 200 && headers.iter().any(|(n, _)| n == "set-cookie") {
            self.adopt(r, &headers);
        }
        if self.reqs[r].answers.len() == 1 && self.reqs[r].done_at.is_none() {
            let latency = if status == 200 { self.client_rng.range(1, 30) } else { 0 };
            let at = self.now + latency;
            self.push(at, Ev::ResponseStart { r });
            let end = at + self.client_rng.range(1, 5);
            self.push(end, Ev::Done { r });
        }
    }

    /// The client takes the tokens a response carries.
    fn adopt(&mut self, r: usize, headers: &[(String, String)]) {
        let Who::Session(s) = self.reqs[r].spec.who else { return };
        let session = &mut self.sessions[s];
        if !session.adopt {
            return;
        }
        let take = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        for (name, value) in headers {
            match name.as_str() {
                "set-cookie" => match cookie_pair(value) {
                    Some((ACCESS_COOKIE, v)) => session.access = take(v),
                    Some((REFRESH_COOKIE, v)) => session.refresh = take(v),
                    _ => {}
                },
                n if n == ACCESS_RESPONSE_HEADER => session.access = take(value),
                n if n == REFRESH_RESPONSE_HEADER => session.refresh = take(value),
                _ => {}
            }
        }
    }

    // ---- reading the results -------------------------------------------

    /// Whether worker `w` of Envoy `e` is alive now.
    pub fn alive(&self, e: usize, w: usize) -> bool {
        self.envoys[e].workers[w].alive
    }

    /// Whether one incarnation of worker `w` of Envoy `e` lived through `[from, to]`.
    pub fn alive_throughout(&self, e: usize, w: usize, from: u64, to: u64) -> bool {
        self.births.iter().any(|&(be, bw, inc, at)| {
            be == e
                && bw == w
                && at <= from
                && !self.deaths.iter().any(|d| (d.envoy, d.worker, d.inc) == (e, w, inc) && d.at <= to)
        })
    }

    /// The worker id the engine of worker `w` of Envoy `e` claimed.
    pub fn worker_id(&self, e: usize, w: usize) -> u32 {
        self.envoys[e].workers[w].view.worker_id
    }

    pub fn paused(&self, e: usize, w: usize) -> usize {
        self.envoys[e].workers[w].view.paused
    }

    pub fn envoy_count(&self) -> usize {
        self.envoys.len()
    }

    pub fn worker_count(&self) -> usize {
        self.setup.workers
    }

    pub fn shared(&self, e: usize) -> &SharedData {
        &self.envoys[e].shared
    }

    pub fn counter(&self, e: usize, name: &str) -> u64 {
        self.counters.get(&(e, name.to_owned())).copied().unwrap_or(0)
    }

    /// The refresh callouts Envoy `e` made with `refresh_token`.
    pub fn refresh_callouts(&self, e: usize, refresh_token: &str) -> usize {
        self.callouts
            .iter()
            .filter(|c| c.envoy == e && c.dispatch_ok && c.refresh_token.as_deref() == Some(refresh_token))
            .count()
    }

    /// What a run did, without the values that come from the real clock or
    /// the authority's randomness (versions, cursors, tokens): two runs of
    /// one seed have the same digest.
    pub fn digest(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (r, q) in self.reqs.iter().enumerate() {
            let answers: Vec<String> = q
                .answers
                .iter()
                .map(|a| format!("{}:{}:{}", self.rel(a.at), a.status, a.identity.as_ref().map_or("-", |i| i.sub.as_str())))
                .collect();
            out.push(format!(
                "request {r} {:?} at {:?} {:?} done {:?} cancelled {:?} killed {:?}",
                q.arrived.map(|t| self.rel(t)),
                q.at,
                answers,
                q.done_at.map(|t| self.rel(t)),
                q.cancelled_at.map(|t| self.rel(t)),
                q.killed_at.map(|t| self.rel(t)),
            ));
        }
        for c in &self.callouts {
            out.push(format!(
                "callout envoy{} worker{} inc{} ctx{} #{} {:?} at {} {:?} {:?} delivered {:?} lost {:?}",
                c.envoy,
                c.worker,
                c.inc,
                c.ctx,
                c.token,
                c.endpoint,
                self.rel(c.dispatched_at),
                c.fate,
                c.status,
                c.delivered_at.map(|t| self.rel(t)),
                c.lost_at.map(|t| self.rel(t)),
            ));
        }
        out.push(format!("steps {} interleavings {}", self.steps, self.interleavings));
        out
    }

    /// The last `n` lines of the trace.
    pub fn trace_tail(&self, n: usize) -> String {
        let start = self.trace.len().saturating_sub(n);
        self.trace[start..].join("\n")
    }
}

/// Shared data as workers of an earlier configuration leave it: the worker
/// counter, an expired lease, every refresh slot cleared.
fn warm_up(shared: &mut SharedData, keys: &Keys) {
    let _ = shared.set(WORKERS_KEY, b"0", None);
    let _ = shared.set(&keys.lease, b"0:0", None);
    for n in 0..REFRESH_SLOTS {
        let _ = shared.set(&format!("tollgate.refresh.{n}"), b"", None);
    }
}

type Presented = (Vec<(String, Vec<u8>)>, bool, Option<Identity>);

/// The identity headers a continued request goes upstream with.
fn identity_of(ops: &[HeaderOp]) -> Option<Identity> {
    let get = |name: &str| {
        ops.iter().rev().find_map(|op| match op {
            HeaderOp::Set(n, v) if n == name => Some(v.clone()),
            _ => None,
        })
    };
    let sub = get("x-tollgate-sub")?;
    let ver = get("x-tollgate-ver")?.parse().ok()?;
    Some(Identity { sub, sid: get("x-tollgate-sid"), ver })
}
