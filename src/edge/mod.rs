//! The edge engine: one worker's orchestration as a sans-IO state machine.
//!
//! A host (the proxy-wasm glue in `src/glue/`, the deterministic simulation
//! in `tests/sim/`, a native Envoy module) feeds it events — a request's
//! headers, a callout's answer, a tick, a request gone — with the time, and
//! carries out the [`Command`]s it returns: continue a request with header
//! operations, answer it locally, count a metric, log a line. The few host
//! operations whose result the engine needs at once — proxy-wasm shared data
//! (read, compare-and-set) and dispatching a callout (which yields the token
//! its answer will carry) — go through the [`Host`] trait. Nothing in here
//! calls Envoy, reads a clock or holds a borrow across a host call.
//!
//! Invariants (each checked by the simulation, `tests/sim/`):
//! - every paused request is answered exactly once, within its bound (the
//!   group's wait plus one fall-back callout plus one tick);
//! - at most one refresh callout per refresh token per Envoy while the
//!   claiming worker lives (a shared-data claim, compare-and-set);
//! - one revocation poller per Envoy (a lease in shared data, taken over when
//!   its holder stops renewing it);
//! - a cached minimum never goes backwards, and never-synced never allows;
//! - on a `fresh` rule with `max_staleness_ms: 0`, no request is allowed on
//!   a live answer it did not wait for (answers are numbered, not timed);
//! - iteration order never depends on a hash seed (`SortedMap`), so a run is
//!   a function of its inputs and a failing seed replays.

mod engine;
mod fingerprint;
pub mod script;
mod shared;

pub use engine::{Engine, MAX_TICK_MS, STATS_TICK_MS};
pub use fingerprint::{fingerprint, first_load, load_line, VERSION};
pub use script::{Flow, Proxy};
pub use shared::{claim_worker_id, Keys, WORKERS_KEY};

use crate::authenticator::HeaderOp;
use crate::reason::Reason;
use std::net::IpAddr;

/// A shared-data write lost its compare-and-set (another worker wrote first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasMismatch;

/// A callout that could not be dispatched (no such cluster, bad headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchFailed;

/// A callout to the authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub cluster: String,
    /// Pseudo-headers first (`:method`, `:path`, `:authority`), then the rest.
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

/// The host operations whose result the engine needs at once.
pub trait Host {
    /// proxy-wasm `get_shared_data`: the value and its compare-and-set token.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// proxy-wasm `set_shared_data`: `cas` `None` writes unconditionally.
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch>;
    /// Dispatches a callout; its answer comes back to
    /// [`Engine::on_callout`] with the returned token, from the context that
    /// is current now (the request's, or the root's on a tick).
    fn dispatch(&mut self, call: &Callout) -> Result<u32, DispatchFailed>;
    /// The current request's downstream peer (Envoy's `source.address`).
    /// Asked only when a `hosts` check needs it, once per request; a host
    /// with no current request answers `None`.
    fn peer(&self) -> Option<IpAddr>;
}

/// What the host does on the engine's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Request `id` goes upstream after these header operations. `resume`:
    /// it was paused, so the host makes it current and resumes it. `record`:
    /// what the host may publish for access logs (never a token).
    Continue { id: u32, ops: Vec<HeaderOp>, resume: bool, record: Record },
    /// Answer request `id` locally; `reason` names the refusal (the host's
    /// response code details and access-log record).
    Reply { id: u32, status: u16, headers: Vec<(String, String)>, body: String, reason: Reason },
    Count(Counter),
    /// Adds `n` to a counter (counts batched until the tick).
    Add(Counter, u64),
    Record(Gauge, u64),
    Log(Level, &'static str),
}

impl Command {
    /// The request a command is about, if any.
    pub fn request(&self) -> Option<u32> {
        match self {
            Command::Continue { id, .. } | Command::Reply { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// Who an allowed request is, for the access log: the subject and session
/// (`sid`) of its token, none for an anonymous request. Never the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub subject: Option<String>,
    pub session: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

/// Every counter the engine keeps; the host defines each under [`Counter::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    Allowed,
    Anonymous,
    /// `denied.<reason>`: one per [`Reason`].
    Denied(Reason),
    StaleAllowed,
    SyncOk,
    SyncFailed,
    StoreChanged,
    LiveOk,
    LiveFailed,
    RefreshOk,
    RefreshRejected,
    RefreshFailed,
    RefreshCoalesced,
    RefreshShared,
    CacheHit,
    CacheMiss,
    CacheEvict,
}

impl Counter {
    /// Every counter but the per-reason denials (see [`Counter::denied_all`]).
    pub const ALL: [Counter; 16] = [
        Counter::Allowed,
        Counter::Anonymous,
        Counter::StaleAllowed,
        Counter::SyncOk,
        Counter::SyncFailed,
        Counter::StoreChanged,
        Counter::LiveOk,
        Counter::LiveFailed,
        Counter::RefreshOk,
        Counter::RefreshRejected,
        Counter::RefreshFailed,
        Counter::RefreshCoalesced,
        Counter::RefreshShared,
        Counter::CacheHit,
        Counter::CacheMiss,
        Counter::CacheEvict,
    ];

    /// A counter for every reason a request is refused.
    pub fn denied_all() -> impl Iterator<Item = Counter> {
        Reason::ALL.into_iter().map(Counter::Denied)
    }

    /// The Envoy stat name (shown with Envoy's `wasmcustom.` prefix).
    pub fn name(self) -> String {
        let fixed = match self {
            Counter::Denied(reason) => return format!("tollgate.denied.{}", reason.code()),
            Counter::Allowed => "tollgate.allowed",
            Counter::Anonymous => "tollgate.anonymous",
            Counter::StaleAllowed => "tollgate.revocation.stale_allowed",
            Counter::SyncOk => "tollgate.revocation.sync_ok",
            Counter::SyncFailed => "tollgate.revocation.sync_failed",
            Counter::StoreChanged => "tollgate.revocation.store_changed",
            Counter::LiveOk => "tollgate.live_check.ok",
            Counter::LiveFailed => "tollgate.live_check.failed",
            Counter::RefreshOk => "tollgate.refresh.ok",
            Counter::RefreshRejected => "tollgate.refresh.rejected",
            Counter::RefreshFailed => "tollgate.refresh.failed",
            Counter::RefreshCoalesced => "tollgate.refresh.coalesced",
            Counter::RefreshShared => "tollgate.refresh.shared",
            Counter::CacheHit => "tollgate.token_cache.hit",
            Counter::CacheMiss => "tollgate.token_cache.miss",
            Counter::CacheEvict => "tollgate.token_cache.evict",
        };
        fixed.to_owned()
    }
}

/// Gauges and histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Gauge {
    /// Age of the revocation set, ms.
    StalenessMs,
    /// Entries in the revocation set.
    Entries,
    /// A histogram: callout round trips, ms.
    CalloutMs,
}

impl Gauge {
    pub const ALL: [Gauge; 3] = [Gauge::StalenessMs, Gauge::Entries, Gauge::CalloutMs];

    pub fn name(self) -> &'static str {
        match self {
            Gauge::StalenessMs => "tollgate.revocation.staleness_ms",
            Gauge::Entries => "tollgate.revocation.entries",
            Gauge::CalloutMs => "tollgate.callout.latency_ms",
        }
    }

    pub fn is_histogram(self) -> bool {
        self == Gauge::CalloutMs
    }
}
