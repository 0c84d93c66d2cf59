//! One worker's (one VM's) state and its callouts to the authority: the
//! revocation feed, refreshes and live version checks. The decisions are the
//! core's ([`authenticator`], [`refresh`], [`revocation`]); this file moves
//! bytes between them and Envoy.
//!
//! Paused requests are resumed from whichever callback learns their answer
//! (a callout response or the root's tick) through `set_effective_context`.
//! No `RefCell` borrow is held across a host call that can re-enter the VM
//! (Envoy defers resumes and local replies until the VM call returns anyway).
//!
//! The SDK routes a callout's answer to the context that made it; if that
//! request is gone the answer is dropped. So a group whose leader leaves is
//! due at once, and the root makes the callout again on its next tick.

use super::metrics::Metrics;
use crate::authenticator::{self, Decision, Denial, DenyReason, HeaderOp, Knowledge, Peer, RefreshNeed, Request};
use crate::config::{Authority, Config};
use crate::refresh::{self, Coordinator, Join, Outcome, Shared, Slot, SlotDecision, TokenHash};
use crate::request::RequestView;
use crate::response;
use crate::revocation::{self, FeedPage, Freshness, LiveVersions, RevocationSet, MAX_FEED_BYTES};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::Context;
use proxy_wasm::types::{Action, Bytes, MapType, Status};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

const LEASE_KEY: &str = "tollgate.revocation.lease";
const SET_KEY: &str = "tollgate.revocation.set";
const META_KEY: &str = "tollgate.revocation.meta";
const WORKERS_KEY: &str = "tollgate.workers";
/// Shared slots for refresh results: bounded memory, whatever the traffic.
const REFRESH_SLOTS: u32 = 1024;
/// How long a failed refresh is shared: long enough for the other workers'
/// waiting requests to learn of it on their next tick (new requests retry).
const SHARE_FAILURE_MS: u64 = 2 * MAX_TICK_MS;
/// The root's tick, at most: how late a worker may notice shared changes.
const MAX_TICK_MS: u64 = 100;
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
    rounds: u8,
}

enum Callout {
    Feed,
    /// The refresh token seals the answer shared with the other workers.
    Refresh { token: TokenHash, refresh_token: String },
    Versions { group: TokenHash, keys: Vec<String> },
}

struct InFlight {
    what: Callout,
    started_ms: u64,
}

#[derive(Default)]
struct State {
    revocations: RevocationSet,
    /// Fingerprint of the shared set this copy was loaded from.
    loaded: Option<String>,
    live: LiveVersions,
    refreshes: Coordinator,
    checks: Coordinator,
    /// The keys of each live-check group, for a callout made again by the root.
    check_keys: HashMap<TokenHash, Vec<String>>,
    paused: HashMap<u32, Paused>,
    callouts: HashMap<u32, InFlight>,
    /// Response headers owed to a request (Set-Cookie after a refresh).
    owed: HashMap<u32, Vec<(String, String)>>,
    /// Groups whose wait ran out once: the root made its own callout.
    fell_back: HashSet<TokenHash>,
    /// Refresh slots this worker wrote, and when to clear them.
    written_slots: HashMap<String, u64>,
    feed_in_flight: bool,
    next_poll_ms: u64,
}

pub(crate) struct Worker {
    pub config: Config,
    pub metrics: Metrics,
    /// Unique among the VMs of this Envoy (a CAS counter in shared data).
    id: u32,
    /// When this VM was configured (ms since the epoch).
    started_ms: u64,
    state: RefCell<State>,
}

fn now_ms(ctx: &dyn Context) -> u64 {
    ctx.get_current_time().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn unavailable(why: &'static str) -> Decision {
    Decision::Deny(Denial { reason: DenyReason::Unavailable(why) })
}

impl Worker {
    pub fn new(config: Config, metrics: Metrics, started_ms: u64) -> Worker {
        Worker { config, metrics, id: claim_worker_id(), started_ms, state: RefCell::new(State::default()) }
    }

    /// The root's tick period, when anything needs one.
    pub fn tick(&self) -> Option<Duration> {
        let callouts = self.config.revocation.is_some()
            || self.config.refresh.is_some()
            || self.config.policy.has_fresh_rules();
        callouts.then(|| {
            let sync = self.config.revocation.as_ref().map_or(1000, |r| r.sync_interval_ms);
            Duration::from_millis((sync / 4).clamp(20, MAX_TICK_MS))
        })
    }

    fn authority(&self) -> Option<&Authority> {
        self.config.authority.as_ref()
    }

    fn timeout_ms(&self) -> u64 {
        self.authority().map_or(1000, |a| a.timeout_ms)
    }

    /// How long a group waits: never shorter than its own callout can take.
    fn refresh_wait_ms(&self) -> u64 {
        let wait = self.config.refresh.as_ref().map_or(0, |r| r.wait_ms);
        wait.max(self.timeout_ms() + 2 * MAX_TICK_MS)
    }

    fn check_wait_ms(&self) -> u64 {
        self.timeout_ms() + 2 * MAX_TICK_MS
    }

    // ---- requests -------------------------------------------------------

    /// A new request: decide, and carry the decision out in place.
    pub fn on_request(
        &self,
        ctx: &dyn Context,
        id: u32,
        raw: Vec<(String, Bytes)>,
        peer: &dyn Fn() -> Option<IpAddr>,
    ) -> Action {
        let now = now_ms(ctx);
        let view = match RequestView::build(&self.config, raw) {
            Ok(v) => v,
            Err(e) => {
                self.deny(&e.into(), None);
                return Action::Pause;
            }
        };
        if self.config.revocation.is_some() && self.state.borrow().revocations.synced_at_ms().is_none() {
            // Before this worker's first tick: use what another worker learned.
            self.reload_revocations(ctx);
        }
        let decision = self.decide_with(&view, Peer::Lazy(peer), None, now);
        // A request that pauses keeps its peer for later decisions.
        let pauses = matches!(decision, Decision::CheckVersions(_) | Decision::Refresh(_));
        let peer = if pauses { peer() } else { None };
        let p = Paused { view, peer, refresh: None, replacement: None, rounds: 0 };
        self.carry_out(ctx, id, p, decision, now, false)
    }

    /// Response headers owed to request `id`.
    pub fn owed(&self, id: u32) -> Vec<(String, String)> {
        self.state.borrow_mut().owed.remove(&id).unwrap_or_default()
    }

    /// Request `id` is gone.
    pub fn forget(&self, id: u32) {
        let mut st = self.state.borrow_mut();
        st.owed.remove(&id);
        if st.paused.remove(&id).is_some() {
            st.refreshes.leave(id);
            st.checks.leave(id);
        }
    }

    fn decide(&self, p: &Paused, now: u64) -> Decision {
        self.decide_with(&p.view, Peer::Known(p.peer), p.replacement.as_deref(), now)
    }

    fn decide_with(&self, view: &RequestView, peer: Peer<'_>, replacement: Option<&str>, now: u64) -> Decision {
        let req = Request { view, peer };
        let st = self.state.borrow();
        let k = Knowledge { now_ms: now, revocations: &st.revocations, live: &st.live };
        match replacement {
            Some(token) => authenticator::decide_refreshed(&self.config, &req, &k, token),
            None => authenticator::decide(&self.config, &req, &k),
        }
    }

    /// Carries out `decision` for request `id`. `deferred`: the request is
    /// paused and this runs in another context's callback.
    fn carry_out(&self, ctx: &dyn Context, id: u32, p: Paused, decision: Decision, now: u64, deferred: bool) -> Action {
        if deferred && hostcalls::set_effective_context(id).is_err() {
            return Action::Pause; // the request is gone
        }
        match decision {
            Decision::Allow(allow) => {
                for op in &allow.header_ops {
                    let _ = match op {
                        HeaderOp::Remove(name) => hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None),
                        HeaderOp::Set(name, value) => {
                            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
                        }
                    };
                }
                Metrics::count(if allow.subject.is_some() { self.metrics.allowed } else { self.metrics.anonymous });
                if self.stale(now) {
                    Metrics::count(self.metrics.stale_allowed);
                }
                if deferred {
                    let _ = hostcalls::resume_http_request();
                }
                Action::Continue
            }
            Decision::Deny(denial) => {
                self.deny(&denial.reason, p.refresh.as_ref());
                Action::Pause
            }
            Decision::CheckVersions(keys) if p.rounds < MAX_ROUNDS => self.start_check(ctx, id, p, keys, now, deferred),
            Decision::Refresh(need) if p.rounds < MAX_ROUNDS && p.refresh.is_none() => {
                self.start_refresh(ctx, id, p, need, now, deferred)
            }
            // The authority's answers did not settle this request.
            Decision::CheckVersions(_) | Decision::Refresh(_) => {
                self.deny(&DenyReason::Unavailable("authority unavailable"), None);
                Action::Pause
            }
        }
    }

    fn deny(&self, reason: &DenyReason, refresh: Option<&RefreshNeed>) {
        self.metrics.denied(reason.metric());
        let answer = response::render(&self.config.realm, reason);
        let cleared = match (reason, refresh) {
            (DenyReason::RefreshRejected, Some(need)) if !need.header_mode => response::cleared_cookies(&self.config),
            _ => Vec::new(),
        };
        let mut headers: Vec<(&str, &str)> = answer.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        headers.extend(cleared.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let _ = hostcalls::send_http_response(answer.status as u32, headers, Some(answer.body.as_bytes()));
    }

    fn stale(&self, now: u64) -> bool {
        let Some(policy) = &self.config.revocation else { return false };
        let st = self.state.borrow();
        st.revocations.freshness(now, policy.max_staleness_ms) != Freshness::Fresh
    }

    /// Dispatches a callout through the SDK (so its answer is routed back).
    fn dispatch(&self, ctx: &dyn Context, method: &str, path: &str, body: Option<&[u8]>, what: Callout, now: u64) -> Result<(), Status> {
        let a = self.authority().ok_or(Status::NotFound)?;
        let mut headers = vec![(":method", method), (":path", path), (":authority", a.host.as_str()), ("accept", "application/json")];
        if body.is_some() {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        // The feed and live checks are the edge's to read, not the world's.
        let credential = match what {
            Callout::Feed | Callout::Versions { .. } => a.credential.as_ref().map(|c| c.header_value()),
            Callout::Refresh { .. } => None,
        };
        if let Some(value) = &credential {
            headers.push(("authorization", value.as_str()));
        }
        let token = ctx.dispatch_http_call(&a.cluster, headers, body, vec![], Duration::from_millis(a.timeout_ms))?;
        self.state.borrow_mut().callouts.insert(token, InFlight { what, started_ms: now });
        Ok(())
    }

    fn dispatch_refresh(&self, ctx: &dyn Context, token: &TokenHash, refresh_token: &str, now: u64) -> Result<(), Status> {
        let client_id = self.config.refresh.as_ref().map_or("", |r| r.client_id.as_str());
        let body = refresh::token_request_body(refresh_token, client_id);
        let what = Callout::Refresh { token: token.clone(), refresh_token: refresh_token.to_owned() };
        self.dispatch(ctx, "POST", "/v1/token", Some(body.as_bytes()), what, now)
    }

    fn dispatch_check(&self, ctx: &dyn Context, group: &TokenHash, keys: &[String], now: u64) -> Result<(), Status> {
        let query: Vec<String> = keys.iter().map(|k| format!("key={}", refresh::form_encode(k))).collect();
        let path = format!("/v1/versions?{}", query.join("&"));
        self.dispatch(ctx, "GET", &path, None, Callout::Versions { group: group.clone(), keys: keys.to_vec() }, now)
    }

    // ---- refresh --------------------------------------------------------

    fn start_refresh(&self, ctx: &dyn Context, id: u32, mut p: Paused, need: RefreshNeed, now: u64, deferred: bool) -> Action {
        let token = refresh::hash(&need.refresh_token);
        p.refresh = Some(need.clone());
        p.rounds += 1;
        let wait = self.refresh_wait_ms();
        {
            let mut st = self.state.borrow_mut();
            if st.refreshes.has_group(&token) {
                st.paused.insert(id, p);
                st.refreshes.join(&token, id, now, wait);
                drop(st);
                Metrics::count(self.metrics.refresh_coalesced);
                return Action::Pause;
            }
        }
        let key = refresh::slot_key(&token, REFRESH_SLOTS);
        let (bytes, cas) = ctx.get_shared_data(&key);
        let current = bytes.as_deref().and_then(Slot::decode);
        match Slot::decide(current.as_ref(), &need.refresh_token, now, self.timeout_ms() + 2 * MAX_TICK_MS) {
            SlotDecision::Use(outcome) => {
                Metrics::count(self.metrics.refresh_shared);
                self.resolve_refresh(ctx, id, p, &outcome, now, deferred)
            }
            SlotDecision::Wait => {
                let mut st = self.state.borrow_mut();
                st.paused.insert(id, p);
                st.refreshes.wait_elsewhere(&token, id, now, wait);
                Action::Pause
            }
            SlotDecision::Claim(claim) => {
                // A live slot of another token is left alone: this refresh is
                // then simply not shared.
                let taken_by_other = current.as_ref().is_some_and(|s| s.is_live_for_other(&token, now));
                if !taken_by_other {
                    if ctx.set_shared_data(&key, Some(&claim.encode()), cas).is_err() {
                        // Another worker claimed it a moment ago.
                        let mut st = self.state.borrow_mut();
                        st.paused.insert(id, p);
                        st.refreshes.wait_elsewhere(&token, id, now, wait);
                        return Action::Pause;
                    }
                    self.state.borrow_mut().written_slots.insert(key, now + wait);
                }
                if self.dispatch_refresh(ctx, &token, &need.refresh_token, now).is_err() {
                    Metrics::count(self.metrics.refresh_failed);
                    self.share(ctx, &token, &need.refresh_token, &Outcome::Unavailable, now);
                    return self.resolve_refresh(ctx, id, p, &Outcome::Unavailable, now, deferred);
                }
                let mut st = self.state.borrow_mut();
                st.paused.insert(id, p);
                st.refreshes.join(&token, id, now, wait);
                Action::Pause
            }
        }
    }

    /// Publishes a refresh answer for the other workers, sealed under the
    /// refresh token, unless its slot holds another token's live answer.
    fn share(&self, ctx: &dyn Context, token: &TokenHash, refresh_token: &str, outcome: &Outcome, now: u64) {
        let keep_ms = match outcome {
            Outcome::Unavailable => SHARE_FAILURE_MS,
            _ => self.config.refresh.as_ref().map_or(0, |r| r.share_ms),
        };
        let key = refresh::slot_key(token, REFRESH_SLOTS);
        let (bytes, cas) = ctx.get_shared_data(&key);
        if bytes.as_deref().and_then(Slot::decode).is_some_and(|s| s.is_live_for_other(token, now)) {
            return;
        }
        let slot = Slot::Done { token: token.clone(), outcome: Shared::seal(outcome, refresh_token), until_ms: now + keep_ms };
        if ctx.set_shared_data(&key, Some(&slot.encode()), cas).is_ok() {
            self.state.borrow_mut().written_slots.insert(key, now + keep_ms);
        }
    }

    /// Ends the refresh of `token` for every request of this worker waiting
    /// on it. `share`: this worker made the callout with this refresh token;
    /// publish its answer.
    fn finish_refresh(&self, ctx: &dyn Context, token: &TokenHash, outcome: Outcome, now: u64, share: Option<&str>) {
        if let Some(refresh_token) = share {
            self.share(ctx, token, refresh_token, &outcome, now);
        }
        let waiting: Vec<(u32, Paused)> = {
            let mut st = self.state.borrow_mut();
            st.fell_back.remove(token);
            let ids = st.refreshes.finish(token);
            ids.into_iter().filter_map(|id| st.paused.remove(&id).map(|p| (id, p))).collect()
        };
        for (id, p) in waiting {
            self.resolve_refresh(ctx, id, p, &outcome, now, true);
        }
    }

    fn resolve_refresh(&self, ctx: &dyn Context, id: u32, mut p: Paused, outcome: &Outcome, now: u64, deferred: bool) -> Action {
        let Some(need) = p.refresh.clone() else { return Action::Pause };
        let decision = match outcome {
            Outcome::Refreshed(tokens) => {
                let owed = response::refreshed_headers(&self.config, tokens, need.header_mode);
                self.state.borrow_mut().owed.insert(id, owed);
                p.replacement = Some(tokens.access_token.clone());
                self.decide(&p, now)
            }
            Outcome::Rejected | Outcome::Unavailable => {
                let req = Request { view: &p.view, peer: Peer::Known(p.peer) };
                let st = self.state.borrow();
                let k = Knowledge { now_ms: now, revocations: &st.revocations, live: &st.live };
                authenticator::refresh_failed(&self.config, &req, &k, &need, *outcome == Outcome::Rejected)
            }
        };
        self.carry_out(ctx, id, p, decision, now, deferred)
    }

    // ---- live version checks -------------------------------------------

    fn start_check(&self, ctx: &dyn Context, id: u32, mut p: Paused, keys: Vec<String>, now: u64, deferred: bool) -> Action {
        p.rounds += 1;
        let group: TokenHash = format!("v:{}", keys.join(","));
        let wait = self.check_wait_ms();
        {
            let mut st = self.state.borrow_mut();
            if st.checks.has_group(&group) {
                st.paused.insert(id, p);
                st.checks.join(&group, id, now, wait);
                return Action::Pause;
            }
        }
        if self.dispatch_check(ctx, &group, &keys, now).is_err() {
            Metrics::count(self.metrics.live_failed);
            return self.carry_out(ctx, id, p, unavailable("authority unavailable for live check"), now, deferred);
        }
        let mut st = self.state.borrow_mut();
        st.paused.insert(id, p);
        st.check_keys.insert(group.clone(), keys);
        let joined = st.checks.join(&group, id, now, wait);
        debug_assert_eq!(joined, Join::Lead);
        Action::Pause
    }

    fn finish_check(&self, ctx: &dyn Context, group: &TokenHash, keys: &[String], body: Option<&[u8]>, now: u64) {
        let learned = body.is_some_and(|b| self.state.borrow_mut().live.record(keys, b, now));
        Metrics::count(if learned { self.metrics.live_checks } else { self.metrics.live_failed });
        let waiting: Vec<(u32, Paused)> = {
            let mut st = self.state.borrow_mut();
            st.check_keys.remove(group);
            st.fell_back.remove(group);
            let ids = st.checks.finish(group);
            ids.into_iter().filter_map(|id| st.paused.remove(&id).map(|p| (id, p))).collect()
        };
        for (id, p) in waiting {
            let decision = if learned { self.decide(&p, now) } else { unavailable("authority unavailable for live check") };
            self.carry_out(ctx, id, p, decision, now, true);
        }
    }

    // ---- callout answers ------------------------------------------------

    pub fn on_callout_response(&self, ctx: &dyn Context, own_id: u32, token: u32, num_headers: usize, body_size: usize) {
        let Some(call) = self.state.borrow_mut().callouts.remove(&token) else { return };
        let now = now_ms(ctx);
        Metrics::set(self.metrics.callout_ms, now.saturating_sub(call.started_ms));
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
        let readable = body_size > 0 && body_size <= MAX_FEED_BYTES;
        let body = if readable { ctx.get_http_call_response_body(0, body_size) } else { None };
        let body = body.as_deref().unwrap_or_default();
        match call.what {
            Callout::Feed => self.on_feed(ctx, status, body, body_size, now),
            Callout::Refresh { token, refresh_token } => {
                let outcome = if body_size > refresh::MAX_TOKEN_RESPONSE_BYTES {
                    Outcome::Unavailable
                } else {
                    Outcome::from_response(status, body)
                };
                Metrics::count(match outcome {
                    Outcome::Refreshed(_) => self.metrics.refresh_ok,
                    Outcome::Rejected => self.metrics.refresh_rejected,
                    Outcome::Unavailable => self.metrics.refresh_failed,
                });
                self.finish_refresh(ctx, &token, outcome, now, Some(&refresh_token));
            }
            Callout::Versions { group, keys } => {
                let body = (status == Some(200)).then_some(body);
                self.finish_check(ctx, &group, &keys, body, now);
            }
        }
        let _ = hostcalls::set_effective_context(own_id);
    }

    // ---- the root's tick --------------------------------------------------

    pub fn on_tick(&self, ctx: &dyn Context) {
        let now = now_ms(ctx);
        if self.config.revocation.is_some() {
            self.reload_revocations(ctx);
            self.poll_feed(ctx, now);
        }
        if self.config.refresh.is_some() {
            self.tick_refreshes(ctx, now);
        }
        self.tick_checks(ctx, now);
        self.clear_slots(ctx, now);
        // Callouts Envoy will never answer to us (their request went away).
        let horizon = self.timeout_ms() * 4;
        let mut st = self.state.borrow_mut();
        st.callouts.retain(|_, c| now.saturating_sub(c.started_ms) < horizon);
        if st.feed_in_flight && !st.callouts.values().any(|c| matches!(c.what, Callout::Feed)) {
            st.feed_in_flight = false;
        }
    }

    fn tick_refreshes(&self, ctx: &dyn Context, now: u64) {
        // Answers another worker published.
        let elsewhere = self.state.borrow().refreshes.waiting_elsewhere();
        for (token, id) in elsewhere {
            let need = self.state.borrow().paused.get(&id).and_then(|p| p.refresh.clone());
            let Some(need) = need else { continue };
            let (bytes, _) = ctx.get_shared_data(&refresh::slot_key(&token, REFRESH_SLOTS));
            let outcome = bytes.as_deref().and_then(Slot::decode).and_then(|s| s.outcome_for(&need.refresh_token, now));
            if let Some(outcome) = outcome {
                Metrics::count(self.metrics.refresh_shared);
                self.finish_refresh(ctx, &token, outcome, now, None);
            }
        }
        // Waits that ran out: once, the root asks itself (the authority's
        // grace window answers with the same pair); twice, give up.
        let overdue = self.state.borrow_mut().refreshes.overdue(now);
        for (token, ids) in overdue {
            let (first, need) = {
                let mut st = self.state.borrow_mut();
                let need = ids.iter().find_map(|id| st.paused.get(id).and_then(|p| p.refresh.clone()));
                (st.fell_back.insert(token.clone()), need)
            };
            if let (true, Some(need)) = (first, need) {
                {
                    let mut st = self.state.borrow_mut();
                    for id in &ids {
                        st.refreshes.wait_elsewhere(&token, *id, now, self.refresh_wait_ms());
                    }
                }
                if self.dispatch_refresh(ctx, &token, &need.refresh_token, now).is_ok() {
                    continue;
                }
                Metrics::count(self.metrics.refresh_failed);
            }
            self.finish_refresh(ctx, &token, Outcome::Unavailable, now, None);
        }
    }

    fn tick_checks(&self, ctx: &dyn Context, now: u64) {
        let overdue = self.state.borrow_mut().checks.overdue(now);
        for (group, ids) in overdue {
            let (first, keys) = {
                let mut st = self.state.borrow_mut();
                (st.fell_back.insert(group.clone()), st.check_keys.get(&group).cloned())
            };
            if let (true, Some(keys)) = (first, keys) {
                {
                    let mut st = self.state.borrow_mut();
                    for id in &ids {
                        st.checks.wait_elsewhere(&group, *id, now, self.check_wait_ms());
                    }
                }
                if self.dispatch_check(ctx, &group, &keys, now).is_ok() {
                    continue;
                }
            }
            let keys = self.state.borrow().check_keys.get(&group).cloned().unwrap_or_default();
            self.finish_check(ctx, &group, &keys, None, now);
        }
    }

    /// Clears refresh slots this worker wrote once they are of no use: no
    /// token lingers in shared data past its `share_ms`.
    fn clear_slots(&self, ctx: &dyn Context, now: u64) {
        let due: Vec<String> = {
            let st = self.state.borrow();
            st.written_slots.iter().filter(|(_, until)| **until <= now).map(|(k, _)| k.clone()).collect()
        };
        for key in due {
            let (bytes, cas) = ctx.get_shared_data(&key);
            let expired = bytes.as_deref().and_then(Slot::decode).is_some_and(|s| !s.is_live(now));
            if expired {
                let _ = ctx.set_shared_data(&key, Some(b""), cas);
            }
            self.state.borrow_mut().written_slots.remove(&key);
        }
    }

    // ---- revocation sync ------------------------------------------------

    /// Loads the set another worker published, when its fingerprint changed.
    fn reload_revocations(&self, ctx: &dyn Context) {
        let Some((fingerprint, synced_at)) = read_meta(ctx) else { return };
        let known = self.state.borrow().loaded.as_deref() == Some(fingerprint.as_str());
        if !known {
            if let Some(bytes) = ctx.get_shared_data(SET_KEY).0 {
                if let Some(set) = RevocationSet::decode(&bytes) {
                    let mut st = self.state.borrow_mut();
                    st.revocations = set;
                    // META may lag SET by one write: remember what was read.
                    st.loaded = Some(revocation::fingerprint(&bytes));
                }
            }
        }
        let mut st = self.state.borrow_mut();
        st.revocations.set_synced_at_ms(synced_at);
        Metrics::set(self.metrics.entries, st.revocations.len() as u64);
    }

    /// The lease holder polls the feed every `sync_interval_ms`.
    fn poll_feed(&self, ctx: &dyn Context, now: u64) {
        let Some(policy) = &self.config.revocation else { return };
        {
            let st = self.state.borrow();
            // Before the first sync: the age of this VM, not of the epoch.
            let since = st.revocations.synced_at_ms().unwrap_or(self.started_ms);
            Metrics::set(self.metrics.staleness_ms, now.saturating_sub(since));
            if st.feed_in_flight || now < st.next_poll_ms {
                return;
            }
        }
        if !take_lease(ctx, self.id, now, 3 * policy.sync_interval_ms) {
            return;
        }
        let path = self.state.borrow().revocations.feed_path();
        {
            let mut st = self.state.borrow_mut();
            st.next_poll_ms = now + policy.sync_interval_ms;
            st.feed_in_flight = true;
        }
        if self.dispatch(ctx, "GET", &path, None, Callout::Feed, now).is_err() {
            self.state.borrow_mut().feed_in_flight = false;
            Metrics::count(self.metrics.sync_failed);
        }
    }

    fn on_feed(&self, ctx: &dyn Context, status: Option<u16>, body: &[u8], body_size: usize, now: u64) {
        self.state.borrow_mut().feed_in_flight = false;
        let page = match status {
            Some(200) if body_size <= MAX_FEED_BYTES => FeedPage::parse(body).ok(),
            _ => None,
        };
        if page.is_none() {
            Metrics::count(self.metrics.sync_failed);
            if status != Some(410) {
                return;
            }
        }
        // Start from what the workers share: it may be newer than our copy.
        let (shared, cas) = ctx.get_shared_data(SET_KEY);
        let mut set = shared
            .as_deref()
            .and_then(RevocationSet::decode)
            .unwrap_or_else(|| self.state.borrow().revocations.clone());
        let changed = match page {
            Some(page) => {
                if set.is_other_store(&page) {
                    // The authority's store was replaced (lost and recreated,
                    // or another one): its floor revokes every older token.
                    log::warn!("revocation feed: the authority answers from another store; re-synced from its snapshot");
                    Metrics::count(self.metrics.store_changed);
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
            if ctx.set_shared_data(SET_KEY, Some(&encoded), cas).is_err() {
                return; // another worker wrote in between; the next poll merges again
            }
            revocation::fingerprint(&encoded)
        } else {
            shared.as_deref().map_or_else(|| revocation::fingerprint(&encoded), revocation::fingerprint)
        };
        if status == Some(200) {
            Metrics::count(self.metrics.sync_ok);
        }
        let meta = format!("{fingerprint}:{}", set.synced_at_ms().unwrap_or(0));
        let _ = ctx.set_shared_data(META_KEY, Some(meta.as_bytes()), None);
        let mut st = self.state.borrow_mut();
        st.revocations = set;
        st.loaded = Some(fingerprint);
    }
}

/// `<fingerprint>:<synced_at_ms>` (0: never synced).
fn read_meta(ctx: &dyn Context) -> Option<(String, Option<u64>)> {
    let bytes = ctx.get_shared_data(META_KEY).0?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let (f, t) = text.split_once(':')?;
    let t = t.parse::<u64>().ok().filter(|t| *t > 0);
    Some((f.to_owned(), t))
}

/// Takes or renews the poller lease: `<worker>:<until_ms>`.
fn take_lease(ctx: &dyn Context, me: u32, now: u64, lease_ms: u64) -> bool {
    let (bytes, cas) = ctx.get_shared_data(LEASE_KEY);
    let holder = bytes.as_deref().and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| {
        let (w, until) = s.split_once(':')?;
        Some((w.parse::<u32>().ok()?, until.parse::<u64>().ok()?))
    });
    match holder {
        Some((w, until)) if w != me && until > now => false,
        _ => {
            let lease = format!("{me}:{}", now + lease_ms);
            ctx.set_shared_data(LEASE_KEY, Some(lease.as_bytes()), cas).is_ok()
        }
    }
}

/// A number no other VM of this Envoy has.
fn claim_worker_id() -> u32 {
    for _ in 0..16 {
        let Ok((bytes, cas)) = hostcalls::get_shared_data(WORKERS_KEY) else { break };
        let n = bytes
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
            .wrapping_add(1);
        if hostcalls::set_shared_data(WORKERS_KEY, Some(n.to_string().as_bytes()), cas).is_ok() {
            return n;
        }
    }
    0
}
