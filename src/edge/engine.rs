//! [`Engine`]: one worker's state and its callouts to the authority — the
//! revocation feed, refreshes and live version checks — driven by events.
//! The decisions are the core's ([`authenticator`], [`refresh`],
//! [`revocation`]); the engine sequences them and says what to do.
//!
//! Paused requests are answered from whichever event learns their answer (a
//! callout's answer or a tick). A callout's answer goes to the context that
//! made it; if that request is gone the host never delivers it. So a group
//! whose leader leaves is due at once, and the next tick makes the callout
//! again (once: a second wait that runs out answers 503).

use super::shared::{self, read_meta, take_lease, write_meta, Keys, Meta};
use super::{Callout, Command, Counter, Gauge, Host, Level};
use crate::cache::TokenCache;
use crate::authenticator::{self, Decision, DenyReason, Knowledge, Peer, RefreshNeed, Request, Unavailable};
use crate::config::Config;
use crate::refresh::{self, Coordinator, Join, Outcome, Shared, Slot, SlotDecision, TokenHash};
use crate::request::RequestView;
use crate::response;
use crate::revocation::{self, FeedPage, Freshness, LiveVersions, RevocationSet, MAX_FEED_BYTES};
use std::cell::Cell;
use crate::sorted_map::{SortedMap, SortedSet};
use std::net::IpAddr;

/// Shared slots for refresh results: bounded memory, whatever the traffic.
const REFRESH_SLOTS: u32 = 1024;
/// How long a failed refresh is shared: long enough for the other workers'
/// waiting requests to learn of it on their next tick (new requests retry).
const SHARE_FAILURE_MS: u64 = 2 * MAX_TICK_MS;
/// The tick, at most: how late a worker may notice shared changes.
pub const MAX_TICK_MS: u64 = 100;
/// The tick while long polling.
const LONG_POLL_TICK_MS: u64 = 50;
/// The tick when only counters need it: per-request counters lag by at
/// most this much (they are added up between ticks, so a request costs no
/// metric host call).
pub const STATS_TICK_MS: u64 = 250;
/// A request pauses at most this often (a refresh, then a live check).
const MAX_ROUNDS: u8 = 3;

/// A request paused for the authority, with what it takes to decide again.
struct Paused {
    view: RequestView,
    peer: Option<IpAddr>,
    /// The refresh it waits on or went through.
    refresh: Option<RefreshNeed>,
    /// The access token a refresh gave it: decided with from then on.
    replacement: Option<String>,
    /// [`LiveVersions::mark`] when it last paused for a live check.
    live_waited_from: Option<u64>,
    rounds: u8,
}

/// What a fall-back claim came to.
enum Claimed {
    /// This worker claimed the slot and made the callout.
    Dispatched,
    /// Another worker holds a live claim: wait for its answer.
    Waiting,
    /// An answer is already there.
    Answer(Outcome),
    /// The callout could not be dispatched.
    Failed,
}

/// Which coalesced group a paused request waits in: refreshes and live
/// checks are one mechanism (a [`Coordinator`] each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Refresh,
    Check,
}

enum Pending {
    Feed,
    /// The refresh token seals the answer shared with the other workers.
    Refresh { group: TokenHash, refresh_token: String },
    Versions { group: TokenHash, keys: Vec<String> },
}

struct InFlight {
    what: Pending,
    started_ms: u64,
    /// Its own timeout (a held feed request waits longer than others).
    timeout_ms: u64,
}

/// One worker's engine. See the module documentation of [`crate::edge`].
pub struct Engine {
    config: Config,
    /// Unique among the workers of this Envoy (a CAS counter in shared data).
    id: u32,
    /// When this worker was configured (ms since the epoch).
    started_ms: u64,
    revocations: RevocationSet,
    /// Fingerprint of the shared set this copy was loaded from.
    loaded: Option<String>,
    live: LiveVersions,
    refreshes: Coordinator,
    checks: Coordinator,
    /// The keys of each live-check group, for a callout made again on a tick.
    check_keys: SortedMap<TokenHash, Vec<String>>,
    paused: SortedMap<u32, Box<Paused>>,
    callouts: SortedMap<u32, Box<InFlight>>,
    /// Response headers owed to a request (Set-Cookie after a refresh).
    owed: SortedMap<u32, Vec<(String, String)>>,
    /// Groups whose wait ran out once: the worker made its own callout.
    fell_back: SortedSet<TokenHash>,
    /// Refresh slots this worker wrote, and when to clear them.
    written_slots: SortedMap<String, u64>,
    feed_in_flight: bool,
    next_poll_ms: u64,
    /// Verified tokens (exact bytes → claims); emptied with the configuration.
    cache: TokenCache,
    /// The shared-data keys of this configuration's authority and issuer.
    keys: Keys,
    /// The feed request out (or last answered) asked to be held.
    feed_was_held: bool,
    /// Refresh groups whose last request left: their claims are released.
    abandoned: Vec<TokenHash>,
    /// The last feed answer was a success: only then may a feed request be
    /// held (a long poll), and its window count as freshness.
    feed_healthy: bool,
    /// Per-request counts since the last tick (a handful of counters, kept
    /// and zeroed: counting never allocates once each was seen).
    pending: Vec<(Counter, u64)>,
}

fn unavailable(why: Unavailable) -> Decision {
    Decision::Deny(crate::authenticator::Denial { reason: DenyReason::Unavailable(why) })
}

impl Engine {
    /// A worker's engine, configured at `now_ms`; claims a worker id.
    pub fn new(config: Config, host: &mut dyn Host, now_ms: u64) -> Engine {
        let keys = Keys::for_config(&config);
        shared::create_keys(host, &keys, REFRESH_SLOTS);
        Engine {
            id: shared::claim_worker_id(host),
            started_ms: now_ms,
            revocations: RevocationSet::new(),
            loaded: None,
            live: LiveVersions::default(),
            refreshes: Coordinator::new(),
            checks: Coordinator::new(),
            check_keys: SortedMap::new(),
            paused: SortedMap::new(),
            callouts: SortedMap::new(),
            owed: SortedMap::new(),
            fell_back: SortedSet::new(),
            written_slots: SortedMap::new(),
            feed_in_flight: false,
            next_poll_ms: 0,
            cache: TokenCache::new(config.token_cache_entries),
            keys,
            feed_healthy: false,
            abandoned: Vec::new(),
            feed_was_held: false,
            pending: Vec::new(),
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn worker_id(&self) -> u32 {
        self.id
    }

    /// This worker's revocation knowledge (for hosts and tests to observe).
    pub fn revocations(&self) -> &RevocationSet {
        &self.revocations
    }

    /// Requests waiting on the authority.
    pub fn paused(&self) -> usize {
        self.paused.len()
    }

    /// The tick period: callouts, or else the counters (added up between
    /// ticks, so a request costs no metric host call) need one.
    pub fn tick_ms(&self) -> Option<u64> {
        let c = &self.config;
        let callouts = c.revocation.is_some() || c.refresh.is_some() || c.policy.has_fresh_rules();
        if callouts {
            // Long polling: a bump reaches the poller within a round trip,
            // the other workers within one tick of it.
            if c.revocation.as_ref().is_some_and(|r| r.wait_ms > 0) {
                return Some(LONG_POLL_TICK_MS);
            }
            let sync = c.revocation.as_ref().map_or(1000, |r| r.sync_interval_ms);
            return Some((sync / 4).clamp(20, MAX_TICK_MS));
        }
        Some(STATS_TICK_MS)
    }

    /// Counts one for a request's counter, added to Envoy's on the next tick.
    fn count(&mut self, counter: Counter) {
        match self.pending.iter_mut().find(|(c, _)| *c == counter) {
            Some((_, n)) => *n += 1,
            None => self.pending.push((counter, 1)),
        }
    }

    fn timeout_ms(&self) -> u64 {
        self.config.authority.as_ref().map_or(1000, |a| a.timeout_ms)
    }

    /// How long a group waits: never shorter than its own callout can take.
    fn wait_ms(&self, kind: Kind) -> u64 {
        let floor = self.timeout_ms() + 2 * MAX_TICK_MS;
        match kind {
            Kind::Refresh => self.config.refresh.as_ref().map_or(0, |r| r.wait_ms).max(floor),
            Kind::Check => floor,
        }
    }

    fn group(&mut self, kind: Kind) -> &mut Coordinator {
        match kind {
            Kind::Refresh => &mut self.refreshes,
            Kind::Check => &mut self.checks,
        }
    }

    // ---- requests -------------------------------------------------------

    /// A new request `id` with its headers as Envoy hands them over. The
    /// peer ([`Host::peer`], a host call) is asked only when a `hosts` check
    /// needs it. A request no command names stays paused until a later
    /// event answers it.
    pub fn on_request(&mut self, host: &mut dyn Host, now: u64, id: u32, raw: Vec<(String, Vec<u8>)>, out: &mut Vec<Command>) {
        let view = match RequestView::build(&self.config, raw) {
            Ok(v) => v,
            Err(e) => return self.deny(id, &e.into(), None, out),
        };
        if self.config.revocation.is_some() && self.revocations.synced_at_ms().is_none() {
            // Before this worker's first tick: use what another worker learned.
            self.reload_revocations(host, out);
        }
        // The peer is asked at most once per request, and only if needed.
        let asked: Cell<Option<Option<IpAddr>>> = Cell::new(None);
        let peer = |host: &dyn Host| {
            let ip = asked.get().unwrap_or_else(|| host.peer());
            asked.set(Some(ip));
            ip
        };
        let decision = {
            let host: &dyn Host = host;
            self.decide_with(&view, Peer::Lazy(&|| peer(host)), None, None, now)
        };
        // A request that pauses keeps its peer for later decisions.
        let pauses = matches!(decision, Decision::CheckVersions(_) | Decision::Refresh(_));
        let peer = if pauses { peer(host) } else { None };
        let p = Paused { view, peer, refresh: None, replacement: None, live_waited_from: None, rounds: 0 };
        self.carry_out(host, id, p, decision, now, false, out);
    }

    /// Response headers owed to request `id` (its response is starting).
    pub fn owed(&mut self, id: u32) -> Vec<(String, String)> {
        self.owed.remove(&id).unwrap_or_default()
    }

    /// Request `id` is gone.
    pub fn on_done(&mut self, id: u32) {
        self.owed.remove(&id);
        if let Some(p) = self.paused.remove(&id) {
            self.refreshes.leave(id);
            self.checks.leave(id);
            // Its refresh callout, if it made one, will never be answered
            // here: once nobody of this worker waits on it, the next tick
            // releases the claim for the other workers.
            if let Some(need) = &p.refresh {
                let group = refresh::hash(&need.refresh_token);
                if !self.refreshes.has_group(&group) {
                    self.abandoned.push(group);
                }
            }
        }
    }

    fn decide(&self, p: &Paused, now: u64) -> Decision {
        self.decide_with(&p.view, Peer::Known(p.peer), p.replacement.as_deref(), p.live_waited_from, now)
    }

    fn knowledge(&self, now: u64, live_waited_from: Option<u64>) -> Knowledge<'_> {
        Knowledge { now_ms: now, revocations: &self.revocations, live: &self.live, live_waited_from, cache: Some(&self.cache) }
    }

    fn decide_with(&self, view: &RequestView, peer: Peer<'_>, replacement: Option<&str>, live_waited_from: Option<u64>, now: u64) -> Decision {
        let req = Request { view, peer };
        let k = self.knowledge(now, live_waited_from);
        match replacement {
            Some(token) => authenticator::decide_refreshed(&self.config, &req, &k, token),
            None => authenticator::decide(&self.config, &req, &k),
        }
    }

    /// Carries out `decision` for request `id`. `resume`: the request is
    /// paused and this runs on a later event.
    #[allow(clippy::too_many_arguments)]
    fn carry_out(&mut self, host: &mut dyn Host, id: u32, p: Paused, decision: Decision, now: u64, resume: bool, out: &mut Vec<Command>) {
        match decision {
            Decision::Allow(allow) => {
                self.count(if allow.subject.is_some() { Counter::Allowed } else { Counter::Anonymous });
                if self.stale(now) {
                    self.count(Counter::StaleAllowed);
                }
                let record = super::Record { subject: allow.subject, session: allow.session };
                out.push(Command::Continue { id, ops: allow.header_ops, resume, record });
            }
            Decision::Deny(denial) => self.deny(id, &denial.reason, p.refresh.as_ref(), out),
            Decision::CheckVersions(keys) if p.rounds < MAX_ROUNDS => self.start_check(host, id, p, keys, now, resume, out),
            Decision::Refresh(need) if p.rounds < MAX_ROUNDS && p.refresh.is_none() => {
                self.start_refresh(host, id, p, need, now, resume, out)
            }
            // The authority's answers did not settle this request.
            Decision::CheckVersions(_) | Decision::Refresh(_) => {
                self.deny(id, &DenyReason::Unavailable(Unavailable::Authority), None, out)
            }
        }
    }

    fn deny(&mut self, id: u32, reason: &DenyReason, refresh: Option<&RefreshNeed>, out: &mut Vec<Command>) {
        self.count(Counter::Denied(reason.reason()));
        let answer = response::render(&self.config.realm, reason);
        let mut headers: Vec<(String, String)> = answer.headers.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        if let (DenyReason::RefreshRejected, Some(need)) = (reason, refresh) {
            if !need.header_mode {
                headers.extend(response::cleared_cookies(&self.config));
            }
        }
        out.push(Command::Reply { id, status: answer.status, headers, body: answer.body, reason: reason.reason() });
    }

    fn stale(&self, now: u64) -> bool {
        let Some(policy) = &self.config.revocation else { return false };
        self.revocations.freshness(now, policy.max_staleness_ms) != Freshness::Fresh
    }

    /// Dispatches a callout and remembers what its answer is for.
    fn dispatch(&mut self, host: &mut dyn Host, method: &str, path: String, body: Option<Vec<u8>>, what: Pending, now: u64) -> bool {
        let timeout = self.timeout_ms();
        self.dispatch_with(host, method, path, body, what, now, timeout)
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch_with(&mut self, host: &mut dyn Host, method: &str, path: String, body: Option<Vec<u8>>, what: Pending, now: u64, timeout_ms: u64) -> bool {
        let Some(a) = self.config.authority.as_ref() else { return false };
        let mut headers = vec![
            (":method", method.to_owned()),
            (":path", path),
            (":authority", a.host.clone()),
            ("accept", "application/json".to_owned()),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/x-www-form-urlencoded".to_owned()));
        }
        // The feed and live checks are the edge's to read, not the world's.
        if let (Pending::Feed | Pending::Versions { .. }, Some(c)) = (&what, &a.credential) {
            headers.push(("authorization", c.header_value()));
        }
        let call = Callout { cluster: a.cluster.clone(), headers, body, timeout_ms };
        match host.dispatch(&call) {
            Ok(token) => {
                self.callouts.insert(token, Box::new(InFlight { what, started_ms: now, timeout_ms }));
                true
            }
            Err(_) => false,
        }
    }

    fn dispatch_refresh(&mut self, host: &mut dyn Host, group: &TokenHash, refresh_token: &str, now: u64) -> bool {
        let client_id = self.config.refresh.as_ref().map_or("", |r| r.client_id.as_str());
        let body = refresh::token_request_body(refresh_token, client_id).into_bytes();
        let what = Pending::Refresh { group: group.clone(), refresh_token: refresh_token.to_owned() };
        self.dispatch(host, "POST", "/v1/token".into(), Some(body), what, now)
    }

    fn dispatch_check(&mut self, host: &mut dyn Host, group: &TokenHash, keys: &[String], now: u64) -> bool {
        let query: Vec<String> = keys.iter().map(|k| format!("key={}", refresh::form_encode(k))).collect();
        let path = format!("/v1/versions?{}", query.join("&"));
        self.dispatch(host, "GET", path, None, Pending::Versions { group: group.clone(), keys: keys.to_vec() }, now)
    }

    /// Pauses request `id` in `kind`'s group `group`, as a follower of a
    /// callout made elsewhere (another request's, or another worker's).
    fn wait(&mut self, kind: Kind, group: &TokenHash, id: u32, p: Paused, now: u64, elsewhere: bool) {
        let wait = self.wait_ms(kind);
        self.paused.insert(id, Box::new(p));
        let g = self.group(kind);
        if elsewhere {
            g.wait_elsewhere(group, id, now, wait);
        } else {
            g.join(group, id, now, wait);
        }
    }

    // ---- refresh --------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn start_refresh(&mut self, host: &mut dyn Host, id: u32, mut p: Paused, need: RefreshNeed, now: u64, resume: bool, out: &mut Vec<Command>) {
        let group = refresh::hash(&need.refresh_token);
        p.refresh = Some(need.clone());
        p.rounds += 1;
        if self.refreshes.has_group(&group) {
            self.wait(Kind::Refresh, &group, id, p, now, false);
            out.push(Command::Count(Counter::RefreshCoalesced));
            return;
        }
        let key = refresh::slot_key(&group, REFRESH_SLOTS);
        let (bytes, cas) = host.shared_get(&key);
        let current = bytes.as_deref().and_then(Slot::decode);
        match Slot::decide(current.as_ref(), &need.refresh_token, now, self.claim_ms(), self.id) {
            SlotDecision::Use(outcome) => {
                out.push(Command::Count(Counter::RefreshShared));
                self.resolve_refresh(host, id, p, &outcome, now, resume, out);
            }
            SlotDecision::Wait => self.wait(Kind::Refresh, &group, id, p, now, true),
            SlotDecision::Claim(claim) => {
                // A live slot of another token is left alone: this refresh is
                // then simply not shared.
                let taken_by_other = current.as_ref().is_some_and(|s| s.is_live_for_other(&group, now));
                if !taken_by_other {
                    if host.shared_set(&key, &claim.encode(), cas).is_err() {
                        // Another worker claimed it a moment ago.
                        return self.wait(Kind::Refresh, &group, id, p, now, true);
                    }
                    self.written_slots.insert(key, now + self.wait_ms(Kind::Refresh));
                }
                if !self.dispatch_refresh(host, &group, &need.refresh_token, now) {
                    out.push(Command::Count(Counter::RefreshFailed));
                    self.share(host, &group, &need.refresh_token, &Outcome::Unavailable, now);
                    return self.resolve_refresh(host, id, p, &Outcome::Unavailable, now, resume, out);
                }
                let wait = self.wait_ms(Kind::Refresh);
                self.paused.insert(id, Box::new(p));
                self.refreshes.join(&group, id, now, wait);
            }
        }
    }

    /// Whether this worker has a refresh callout for `group` out.
    fn refresh_in_flight(&self, group: &TokenHash) -> bool {
        self.callouts.values().any(|c| matches!(&c.what, Pending::Refresh { group: g, .. } if g == group))
    }

    /// How long a claim holds: its callout's timeout and two ticks.
    fn claim_ms(&self) -> u64 {
        self.timeout_ms() + 2 * MAX_TICK_MS
    }

    /// A fall-back refresh (a wait ran out, a claim was abandoned): claimed
    /// in the slot like any other, so workers falling back together make one
    /// callout, and an answer already there is used.
    fn claim_and_dispatch(&mut self, host: &mut dyn Host, group: &TokenHash, refresh_token: &str, now: u64) -> Claimed {
        let key = refresh::slot_key(group, REFRESH_SLOTS);
        let (bytes, cas) = host.shared_get(&key);
        let current = bytes.as_deref().and_then(Slot::decode);
        match Slot::decide(current.as_ref(), refresh_token, now, self.claim_ms(), self.id) {
            SlotDecision::Use(outcome) => Claimed::Answer(outcome),
            SlotDecision::Wait => Claimed::Waiting,
            SlotDecision::Claim(claim) => {
                if !current.as_ref().is_some_and(|s| s.is_live_for_other(group, now)) {
                    if host.shared_set(&key, &claim.encode(), cas).is_err() {
                        return Claimed::Waiting;
                    }
                    self.written_slots.insert(key, now + self.claim_ms());
                }
                if self.dispatch_refresh(host, group, refresh_token, now) {
                    Claimed::Dispatched
                } else {
                    Claimed::Failed
                }
            }
        }
    }

    /// Publishes a refresh answer for the other workers, sealed under the
    /// refresh token, unless its slot holds another token's live answer.
    fn share(&mut self, host: &mut dyn Host, group: &TokenHash, refresh_token: &str, outcome: &Outcome, now: u64) {
        // Workers already waiting on this refresh learn its answer at their
        // next tick, whatever `share_ms` says (it bounds reuse by new requests).
        let keep_ms = match outcome {
            Outcome::Unavailable => SHARE_FAILURE_MS,
            _ => self.config.refresh.as_ref().map_or(0, |r| r.share_ms).max(SHARE_FAILURE_MS),
        };
        let key = refresh::slot_key(group, REFRESH_SLOTS);
        let (bytes, cas) = host.shared_get(&key);
        let current = bytes.as_deref().and_then(Slot::decode);
        if current.as_ref().is_some_and(|s| s.is_live_for_other(group, now)) {
            return;
        }
        // A failure never replaces a live answer of the same token (another
        // worker's pair or rejection): the next request uses that answer.
        if *outcome == Outcome::Unavailable && current.as_ref().is_some_and(|s| s.holds_answer(group, now)) {
            return;
        }
        let slot = Slot::Done { token: group.clone(), outcome: Shared::seal(outcome, refresh_token), until_ms: now + keep_ms };
        if host.shared_set(&key, &slot.encode(), cas).is_ok() {
            self.written_slots.insert(key, now + keep_ms);
        }
    }

    /// The requests of `kind`'s group `group`, removed from the paused set.
    fn finish_group(&mut self, kind: Kind, group: &TokenHash) -> Vec<(u32, Paused)> {
        self.fell_back.remove(group);
        let ids = self.group(kind).finish(group);
        ids.into_iter().filter_map(|id| self.paused.remove(&id).map(|p| (id, *p))).collect()
    }

    /// Ends the refresh of `group` for every request of this worker waiting
    /// on it. `share`: this worker made the callout with this refresh token;
    /// publish its answer.
    fn finish_refresh(&mut self, host: &mut dyn Host, group: &TokenHash, outcome: Outcome, now: u64, share: Option<&str>, out: &mut Vec<Command>) {
        if let Some(refresh_token) = share {
            self.share(host, group, refresh_token, &outcome, now);
        }
        for (id, p) in self.finish_group(Kind::Refresh, group) {
            self.resolve_refresh(host, id, p, &outcome, now, true, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn resolve_refresh(&mut self, host: &mut dyn Host, id: u32, mut p: Paused, outcome: &Outcome, now: u64, resume: bool, out: &mut Vec<Command>) {
        let Some(need) = p.refresh.clone() else { return };
        let decision = match outcome {
            Outcome::Refreshed(tokens) => {
                let owed = response::refreshed_headers(&self.config, tokens, need.header_mode);
                self.owed.insert(id, owed);
                p.replacement = Some(tokens.access_token.clone());
                self.decide(&p, now)
            }
            Outcome::Rejected | Outcome::Unavailable => {
                let req = Request { view: &p.view, peer: Peer::Known(p.peer) };
                let k = self.knowledge(now, p.live_waited_from);
                authenticator::refresh_failed(&self.config, &req, &k, &need, *outcome == Outcome::Rejected)
            }
        };
        self.carry_out(host, id, p, decision, now, resume, out);
    }

    // ---- live version checks -------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn start_check(&mut self, host: &mut dyn Host, id: u32, mut p: Paused, keys: Vec<String>, now: u64, resume: bool, out: &mut Vec<Command>) {
        p.rounds += 1;
        p.live_waited_from = Some(self.live.mark());
        let group: TokenHash = format!("v:{}", keys.join(","));
        if self.checks.has_group(&group) {
            return self.wait(Kind::Check, &group, id, p, now, false);
        }
        if !self.dispatch_check(host, &group, &keys, now) {
            out.push(Command::Count(Counter::LiveFailed));
            return self.carry_out(host, id, p, unavailable(Unavailable::LiveCheck), now, resume, out);
        }
        self.check_keys.insert(group.clone(), keys);
        let wait = self.wait_ms(Kind::Check);
        self.paused.insert(id, Box::new(p));
        let joined = self.checks.join(&group, id, now, wait);
        debug_assert_eq!(joined, Join::Lead);
    }

    fn finish_check(&mut self, host: &mut dyn Host, group: &TokenHash, keys: &[String], body: Option<&[u8]>, now: u64, out: &mut Vec<Command>) {
        let learned = body.is_some_and(|b| self.live.record(keys, b, now));
        out.push(Command::Count(if learned { Counter::LiveOk } else { Counter::LiveFailed }));
        self.check_keys.remove(group);
        for (id, p) in self.finish_group(Kind::Check, group) {
            let decision = if learned { self.decide(&p, now) } else { unavailable(Unavailable::LiveCheck) };
            self.carry_out(host, id, p, decision, now, true, out);
        }
    }

    // ---- callout answers ------------------------------------------------

    /// The answer to callout `token`: `status` is `None` when the call
    /// failed in transport; `body` is what the host read of `body_size`
    /// bytes (hosts read nothing beyond [`MAX_FEED_BYTES`]).
    #[allow(clippy::too_many_arguments)]
    pub fn on_callout(&mut self, host: &mut dyn Host, now: u64, token: u32, status: Option<u16>, body: &[u8], body_size: usize, out: &mut Vec<Command>) {
        let Some(call) = self.callouts.remove(&token) else { return };
        out.push(Command::Record(Gauge::CalloutMs, now.saturating_sub(call.started_ms)));
        match call.what {
            Pending::Feed => {
                let held_ms = now.saturating_sub(call.started_ms);
                self.on_feed(host, status, body, body_size, now, held_ms, out)
            }
            Pending::Refresh { group, refresh_token } => {
                let outcome = if body_size > refresh::MAX_TOKEN_RESPONSE_BYTES {
                    Outcome::Unavailable
                } else {
                    Outcome::from_response(status, body)
                };
                out.push(Command::Count(match outcome {
                    Outcome::Refreshed(_) => Counter::RefreshOk,
                    Outcome::Rejected => Counter::RefreshRejected,
                    Outcome::Unavailable => Counter::RefreshFailed,
                }));
                self.finish_refresh(host, &group, outcome, now, Some(&refresh_token), out);
            }
            Pending::Versions { group, keys } => {
                let body = (status == Some(200) && body_size == body.len()).then_some(body);
                self.finish_check(host, &group, &keys, body, now, out);
            }
        }
    }

    // ---- the tick -------------------------------------------------------

    pub fn on_tick(&mut self, host: &mut dyn Host, now: u64, out: &mut Vec<Command>) {
        let stats = self.cache.take_stats();
        for (counter, n) in [(Counter::CacheHit, stats.hits), (Counter::CacheMiss, stats.misses), (Counter::CacheEvict, stats.evictions)] {
            if n > 0 {
                out.push(Command::Add(counter, n));
            }
        }
        for (counter, n) in &mut self.pending {
            if *n > 0 {
                out.push(Command::Add(*counter, std::mem::take(n)));
            }
        }
        if self.config.revocation.is_some() {
            self.reload_revocations(host, out);
            self.poll_feed(host, now, out);
        }
        if self.config.refresh.is_some() {
            self.learn_shared_refreshes(host, now, out);
        }
        self.release_abandoned_claims(host, now);
        self.tick_overdue(host, Kind::Refresh, now, out);
        self.tick_overdue(host, Kind::Check, now, out);
        self.clear_slots(host, now);
        // Callouts the host will never answer (their request went away).
        self.callouts.retain(|_, c| now.saturating_sub(c.started_ms) < c.timeout_ms * 4);
        if self.feed_in_flight && !self.callouts.values().any(|c| matches!(c.what, Pending::Feed)) {
            self.feed_in_flight = false;
        }
    }

    /// Answers another worker published for groups waiting on it; a group
    /// whose awaited claim is gone (abandoned, expired, replaced) refreshes
    /// itself now instead of waiting out its deadline.
    fn learn_shared_refreshes(&mut self, host: &mut dyn Host, now: u64, out: &mut Vec<Command>) {
        for (group, id) in self.refreshes.waiting_elsewhere() {
            let Some(need) = self.paused.get(&id).and_then(|p| p.refresh.clone()) else { continue };
            let (bytes, _) = host.shared_get(&refresh::slot_key(&group, REFRESH_SLOTS));
            let slot = bytes.as_deref().and_then(Slot::decode);
            if let Some(outcome) = slot.as_ref().and_then(|s| s.outcome_for(&need.refresh_token, now)) {
                out.push(Command::Count(Counter::RefreshShared));
                self.finish_refresh(host, &group, outcome, now, None, out);
                continue;
            }
            let awaited = slot.as_ref().is_some_and(|s| s.claimed_by_other(&group, now, self.id));
            if !awaited && !self.refresh_in_flight(&group) {
                match self.claim_and_dispatch(host, &group, &need.refresh_token, now) {
                    Claimed::Dispatched => {
                        // This is the group's fall-back: its deadline starts
                        // over, and the next one gives up.
                        self.fell_back.insert(group.clone());
                        let wait = self.wait_ms(Kind::Refresh);
                        self.refreshes.extend(&group, now + wait);
                    }
                    Claimed::Waiting => {}
                    Claimed::Answer(outcome) => self.finish_refresh(host, &group, outcome, now, None, out),
                    Claimed::Failed => {
                        out.push(Command::Count(Counter::RefreshFailed));
                        self.finish_refresh(host, &group, Outcome::Unavailable, now, None, out);
                    }
                }
            }
        }
    }

    /// Claims of this worker whose callout's answer can no longer come (its
    /// request went away and nobody of this worker waits on it): cleared, so
    /// other workers stop waiting on them.
    fn release_abandoned_claims(&mut self, host: &mut dyn Host, now: u64) {
        for group in std::mem::take(&mut self.abandoned) {
            if self.refreshes.has_group(&group) {
                continue;
            }
            let key = refresh::slot_key(&group, REFRESH_SLOTS);
            let (bytes, cas) = host.shared_get(&key);
            if bytes.as_deref().and_then(Slot::decode).is_some_and(|s| s.claimed_by(&group, now, self.id)) {
                let _ = host.shared_set(&key, b"", cas);
            }
        }
    }

    /// Waits that ran out: once, the worker asks itself (for a refresh the
    /// authority's grace window answers with the same pair); twice, give up.
    fn tick_overdue(&mut self, host: &mut dyn Host, kind: Kind, now: u64, out: &mut Vec<Command>) {
        let overdue = self.group(kind).overdue(now);
        for (group, ids) in overdue {
            let first = self.fell_back.insert(group.clone());
            if first {
                let wait = self.wait_ms(kind);
                let dispatched = match kind {
                    Kind::Refresh => {
                        let need = ids.iter().find_map(|id| self.paused.get(id).and_then(|p| p.refresh.clone()));
                        match need.map(|need| self.claim_and_dispatch(host, &group, &need.refresh_token, now)) {
                            Some(Claimed::Dispatched | Claimed::Waiting) => true,
                            Some(Claimed::Answer(outcome)) => {
                                for id in &ids {
                                    self.group(kind).wait_elsewhere(&group, *id, now, wait);
                                }
                                out.push(Command::Count(Counter::RefreshShared));
                                self.finish_refresh(host, &group, outcome, now, None, out);
                                continue;
                            }
                            Some(Claimed::Failed) | None => false,
                        }
                    }
                    Kind::Check => {
                        let keys = self.check_keys.get(&group).cloned();
                        keys.is_some_and(|keys| self.dispatch_check(host, &group, &keys, now))
                    }
                };
                if dispatched {
                    for id in &ids {
                        self.group(kind).wait_elsewhere(&group, *id, now, wait);
                    }
                    continue;
                }
                if kind == Kind::Refresh {
                    out.push(Command::Count(Counter::RefreshFailed));
                }
            }
            // Give up: the group is out of the coordinator already, so its
            // requests are answered from `ids` (a second wait that ran out
            // must not strand them).
            self.fell_back.remove(&group);
            let waiting: Vec<(u32, Paused)> = ids.into_iter().filter_map(|id| self.paused.remove(&id).map(|p| (id, *p))).collect();
            match kind {
                Kind::Refresh => {
                    for (id, p) in waiting {
                        self.resolve_refresh(host, id, p, &Outcome::Unavailable, now, true, out);
                    }
                }
                Kind::Check => {
                    self.check_keys.remove(&group);
                    out.push(Command::Count(Counter::LiveFailed));
                    for (id, p) in waiting {
                        self.carry_out(host, id, p, unavailable(Unavailable::LiveCheck), now, true, out);
                    }
                }
            }
        }
    }

    /// Clears refresh slots this worker wrote once they are of no use: no
    /// token lingers in shared data past its `share_ms`.
    fn clear_slots(&mut self, host: &mut dyn Host, now: u64) {
        let due: Vec<String> = self.written_slots.iter().filter(|(_, until)| **until <= now).map(|(k, _)| k.clone()).collect();
        for key in due {
            let (bytes, cas) = host.shared_get(&key);
            if bytes.as_deref().and_then(Slot::decode).is_some_and(|s| !s.is_live(now)) {
                let _ = host.shared_set(&key, b"", cas);
            }
            self.written_slots.remove(&key);
        }
    }

    // ---- revocation sync ------------------------------------------------

    /// Loads the set another worker published, when its fingerprint changed.
    fn reload_revocations(&mut self, host: &mut dyn Host, out: &mut Vec<Command>) {
        let Some(meta) = read_meta(host, &self.keys) else { return };
        if self.loaded.as_deref() != Some(meta.fingerprint.as_str()) {
            if let Some(bytes) = host.shared_get(&self.keys.set).0 {
                if let Some(set) = RevocationSet::decode(&bytes) {
                    self.revocations = set;
                    // META may lag SET by one write: remember what was read.
                    self.loaded = Some(revocation::fingerprint(&bytes));
                }
            }
        }
        self.revocations.set_synced_at_ms(meta.synced_at_ms);
        self.revocations.set_held_until_ms(meta.held_until_ms);
        out.push(Command::Record(Gauge::Entries, self.revocations.len() as u64));
    }

    /// What this worker publishes beside the set it last wrote or loaded.
    fn publish_meta(&self, host: &mut dyn Host) {
        if let Some(fingerprint) = &self.loaded {
            let meta = Meta {
                fingerprint: fingerprint.clone(),
                synced_at_ms: self.revocations.synced_at_ms(),
                held_until_ms: self.revocations.held_until_ms(),
            };
            write_meta(host, &self.keys, &meta);
        }
    }

    /// The lease holder polls the feed: every `sync_interval_ms`, or, long
    /// polling (`wait_ms`), with one request always outstanding, re-issued
    /// as soon as it is answered; after a failure, at the plain interval.
    fn poll_feed(&mut self, host: &mut dyn Host, now: u64, out: &mut Vec<Command>) {
        let Some(policy) = &self.config.revocation else { return };
        let (interval, wait) = (policy.sync_interval_ms, policy.wait_ms);
        // Before the first sync: the age of this worker, not of the epoch.
        let since = self.revocations.synced_at_ms().unwrap_or(self.started_ms);
        out.push(Command::Record(Gauge::StalenessMs, now.saturating_sub(since)));
        if self.feed_in_flight {
            // A held request outlives the lease: keep it, or another worker
            // would start a second poller.
            if wait > 0 {
                take_lease(host, &self.keys, self.id, now, 3 * interval);
            }
            return;
        }
        if now < self.next_poll_ms || !take_lease(host, &self.keys, self.id, now, 3 * interval) {
            return;
        }
        // Held only after a successful answer: a snapshot is answered at
        // once, and after a failure (an authority that hangs, or one that
        // does not know `wait`) the poller polls plainly until one succeeds,
        // so no held window counts as freshness for a sick authority.
        let wait = if self.revocations.cursor().is_some() && self.feed_healthy { wait } else { 0 };
        let path = self.revocations.feed_path(wait);
        self.next_poll_ms = now + interval;
        self.feed_in_flight = true;
        let timeout = self.timeout_ms() + wait;
        self.feed_was_held = wait > 0;
        if !self.dispatch_with(host, "GET", path, None, Pending::Feed, now, timeout) {
            self.feed_in_flight = false;
            out.push(Command::Count(Counter::SyncFailed));
            return;
        }
        if wait > 0 {
            // Until the held request must have been answered, the set is as
            // current as the authority's store: publish the promise.
            self.revocations.set_held_until_ms(Some(now + timeout));
            self.publish_meta(host);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_feed(&mut self, host: &mut dyn Host, status: Option<u16>, body: &[u8], body_size: usize, now: u64, held_ms: u64, out: &mut Vec<Command>) {
        self.feed_in_flight = false;
        self.feed_healthy = false;
        self.revocations.set_held_until_ms(None);
        let page = match status {
            Some(200) if body_size <= MAX_FEED_BYTES && body_size == body.len() => FeedPage::parse(body).ok(),
            _ => None,
        };
        let wait_ms = self.config.revocation.as_ref().map_or(0, |r| r.wait_ms);
        let long_poll = wait_ms > 0;
        if page.is_none() {
            out.push(Command::Count(Counter::SyncFailed));
            // Failed: plain polling at the interval until the feed answers.
            let interval = self.config.revocation.as_ref().map_or(1000, |r| r.sync_interval_ms);
            self.next_poll_ms = now + interval;
            if status != Some(410) {
                // The promise of the held request is gone: say so.
                self.publish_meta(host);
                return;
            }
        } else if long_poll {
            self.feed_healthy = true;
            // Again at once when the answer carried news or was really held;
            // an authority that answers a held request at once (no long
            // polling, its held-request limit reached, shutting down) is
            // polled at the interval instead of in a loop.
            // (A request that was not held — a snapshot, a plain poll after
            // a failure — is followed by a held one at once.)
            let news = page.as_ref().is_some_and(|p| !p.entries.is_empty());
            if news || !self.feed_was_held || held_ms >= wait_ms / 2 {
                self.next_poll_ms = now;
            }
        }
        // Start from what the workers share: it may be newer than our copy.
        let (shared, cas) = host.shared_get(&self.keys.set);
        let mut set = shared.as_deref().and_then(RevocationSet::decode).unwrap_or_else(|| self.revocations.clone());
        let changed = match page {
            Some(page) => {
                if set.is_other_store(&page) {
                    // The authority's store was replaced (lost and recreated,
                    // or another one): its floor revokes every older token.
                    out.push(Command::Log(Level::Warn, "revocation feed: the authority answers from another store; re-synced from its snapshot"));
                    out.push(Command::Count(Counter::StoreChanged));
                }
                set.apply(page, now)
            }
            None => {
                // 410: the authority does not know our cursor; re-snapshot next.
                set.forget_cursor();
                true
            }
        };
        let encoded = set.encode();
        let fingerprint = if changed {
            if host.shared_set(&self.keys.set, &encoded, cas).is_err() {
                return; // another worker wrote in between; the next poll merges again
            }
            revocation::fingerprint(&encoded)
        } else {
            shared.as_deref().map_or_else(|| revocation::fingerprint(&encoded), revocation::fingerprint)
        };
        if status == Some(200) {
            out.push(Command::Count(Counter::SyncOk));
        }
        self.revocations = set;
        self.loaded = Some(fingerprint);
        self.publish_meta(host);
        if long_poll {
            // The next held request at once: a bump reaches this worker
            // within one round trip, whatever the interval.
            self.poll_feed(host, now, out);
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::edge::{CasMismatch, DispatchFailed};
    use std::collections::HashMap;

    /// The smallest host: shared data with Envoy's compare-and-set, and a
    /// record of the callouts dispatched (answered by the test).
    #[derive(Default)]
    struct TestHost {
        shared: HashMap<String, (Vec<u8>, u32)>,
        sent: Vec<(u32, Callout)>,
        next: u32,
    }

    impl Host for TestHost {
        fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            self.shared.get(key).map_or((None, None), |(v, cas)| (Some(v.clone()), Some(*cas)))
        }
        fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
            let current = self.shared.get(key).map(|(_, c)| *c);
            if matches!((cas, current), (Some(want), Some(have)) if want != have) {
                return Err(CasMismatch);
            }
            self.shared.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
            Ok(())
        }
        fn dispatch(&mut self, call: &Callout) -> Result<u32, DispatchFailed> {
            self.next += 1;
            self.sent.push((self.next, call.clone()));
            Ok(self.next)
        }
        fn peer(&self) -> Option<IpAddr> {
            None
        }
    }

    fn engine(host: &mut TestHost, revocation: &str) -> Engine {
        let doc = format!(
            r#"{{"issuer": "i", "audiences": ["a"], "keys": [{{"alg": "HS256", "secret": "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24"}}],
                "authority": {{"cluster": "authority", "timeout_ms": 1000}}, "revocation": {revocation}}}"#
        );
        Engine::new(Config::parse(doc.as_bytes(), &|_| None).expect("valid"), host, 0)
    }

    fn page(cursor: &str, entries: usize) -> Vec<u8> {
        let entries: Vec<String> = (0..entries).map(|i| format!(r#"{{"key":"sub:u{i}","min_ver":9,"expires_at":null}}"#)).collect();
        format!(r#"{{"snapshot":false,"entries":[{}],"cursor":"{cursor}","store":"s","floor":1}}"#, entries.join(",")).into_bytes()
    }

    fn path(call: &Callout) -> &str {
        call.headers.iter().find(|(n, _)| *n == ":path").map_or("", |(_, v)| v.as_str())
    }

    #[test]
    fn long_polls_are_held_only_after_success_and_a_hung_authority_goes_stale() {
        let mut host = TestHost::default();
        let mut e = engine(&mut host, r#"{"sync_interval_ms": 1000, "max_staleness_ms": 2000, "wait_ms": 10000}"#);
        let mut out = Vec::new();
        let fresh = |e: &Engine, now| e.revocations().freshness(now, 2000) == Freshness::Fresh;
        // The first poll is a snapshot, never held.
        e.on_tick(&mut host, 0, &mut out);
        let (t1, first) = host.sent.last().cloned().expect("polled");
        assert_eq!(path(&first), "/v1/revocations");
        e.on_callout(&mut host, 10, t1, Some(200), &page("s.1", 1), page("s.1", 1).len(), &mut out);
        // News: held again at once, with wait, and the window counts.
        let (t2, second) = host.sent.last().cloned().expect("re-polled at once");
        assert_eq!(path(&second), "/v1/revocations?after=s.1&wait=10000");
        assert_eq!(second.timeout_ms, 11_000, "the held request's own timeout");
        assert!(fresh(&e, 10_000), "held: as current as the authority");
        // The authority hangs: the callout fails at its timeout. From then on
        // only plain polls, whose failures leave the set stale.
        e.on_callout(&mut host, 11_010, t2, None, b"", 0, &mut out);
        assert!(!fresh(&e, 11_010), "no window after a failure: stale since 10");
        let mut polls = 0;
        for now in (11_100..60_000).step_by(100) {
            let sent = host.sent.len();
            e.on_tick(&mut host, now, &mut out);
            if host.sent.len() > sent {
                polls += 1;
                let (t, call) = host.sent.last().cloned().unwrap();
                assert!(!path(&call).contains("wait="), "after a failure: plain polls only ({})", path(&call));
                e.on_callout(&mut host, now + 1000, t, None, b"", 0, &mut out);
            }
            assert!(!fresh(&e, now), "a hung authority never makes the set fresh ({now})");
        }
        assert!(polls >= 20, "plain polls at the interval meanwhile ({polls})");
    }

    #[test]
    fn an_authority_that_answers_held_requests_at_once_is_not_polled_in_a_loop() {
        let mut host = TestHost::default();
        let mut e = engine(&mut host, r#"{"sync_interval_ms": 1000, "wait_ms": 10000}"#);
        let mut out = Vec::new();
        e.on_tick(&mut host, 0, &mut out);
        let (t, _) = host.sent.last().cloned().unwrap();
        e.on_callout(&mut host, 5, t, Some(200), &page("s.1", 1), page("s.1", 1).len(), &mut out);
        let before = host.sent.len();
        // Held requests answered at once with nothing new (a limit reached).
        let mut now = 10;
        for _ in 0..50 {
            let (t, _) = host.sent.last().cloned().unwrap();
            e.on_callout(&mut host, now, t, Some(200), &page("s.1", 0), page("s.1", 0).len(), &mut out);
            now += 100;
            e.on_tick(&mut host, now, &mut out);
        }
        let polls = host.sent.len() - before;
        assert!(polls <= 6, "{polls} polls in 5 s: at most one per interval");
    }

    #[test]
    fn another_authority_or_issuer_never_inherits_the_revocation_state() {
        let mut host = TestHost::default();
        let a = engine(&mut host, "{}");
        let doc = r#"{"issuer": "other", "audiences": ["a"], "keys": [{"alg": "HS256", "secret": "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24"}],
                "authority": {"cluster": "authority"}, "revocation": {}}"#;
        let b = Engine::new(Config::parse(doc.as_bytes(), &|_| None).unwrap(), &mut host, 0);
        assert_ne!(a.keys, b.keys);
        assert_eq!(a.keys, Keys::for_config(a.config()), "the same configuration, the same keys");
    }
}
