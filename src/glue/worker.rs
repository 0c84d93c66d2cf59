//! One worker's (one VM's) state and its callouts to the authority: the
//! revocation feed, refreshes and live version checks. The decisions are the
//! core's ([`authenticator`], [`refresh`], [`revocation`]); this file moves
//! bytes between them and Envoy.
//!
//! Paused requests are resumed from whichever callback learns their answer
//! (a callout response or the root's tick) through `set_effective_context`.
//! No `RefCell` borrow is held across a host call.

use super::metrics::Metrics;
use crate::authenticator::{self, Decision, DenyReason, HeaderOp, Knowledge, RefreshNeed, Request};
use crate::config::Config;
use crate::refresh::{self, Coordinator, Join, Outcome, Slot, SlotDecision, TokenHash};
use crate::response;
use crate::revocation::{FeedPage, LiveVersions, RevocationSet, MAX_FEED_BYTES};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::Context;
use proxy_wasm::types::{Action, Status};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

const LEASE_KEY: &str = "tollgate.revocation.lease";
const SET_KEY: &str = "tollgate.revocation.set";
const META_KEY: &str = "tollgate.revocation.meta";
const WORKERS_KEY: &str = "tollgate.workers";
/// Shared slots for refresh results: bounded memory, whatever the traffic.
const REFRESH_SLOTS: u32 = 256;

/// What a paused request needs to be decided again.
struct Paused {
    headers: Vec<(String, String)>,
    peer: Option<IpAddr>,
    /// The refresh it waits on, if any (kept to answer a failed refresh).
    refresh: Option<RefreshNeed>,
}

enum Callout {
    Feed,
    Refresh { token: TokenHash },
    Versions { group: TokenHash, keys: Vec<String> },
}

struct InFlight {
    what: Callout,
    started_ms: u64,
}

#[derive(Default)]
struct State {
    revocations: RevocationSet,
    live: LiveVersions,
    refreshes: Coordinator,
    checks: Coordinator,
    paused: HashMap<u32, Paused>,
    callouts: HashMap<u32, InFlight>,
    /// Response headers owed to a request (Set-Cookie after a refresh).
    owed: HashMap<u32, Vec<(String, String)>>,
    /// Refresh groups whose wait for another worker ran out: this worker
    /// made its own callout.
    fell_back: HashSet<TokenHash>,
    feed_in_flight: bool,
    next_poll_ms: u64,
}

pub(crate) struct Worker {
    pub config: Config,
    pub metrics: Metrics,
    /// Unique among the VMs of this Envoy (a CAS counter in shared data).
    id: u32,
    state: RefCell<State>,
}

fn now_ms(ctx: &dyn Context) -> u64 {
    ctx.get_current_time().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> &'h str {
    headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
}

impl Worker {
    pub fn new(config: Config, metrics: Metrics) -> Worker {
        Worker { config, metrics, id: claim_worker_id(), state: RefCell::new(State::default()) }
    }

    /// The root's tick period, when anything needs one.
    pub fn tick(&self) -> Option<Duration> {
        let callouts = self.config.revocation.is_some()
            || self.config.refresh.is_some()
            || self.config.policy.has_fresh_rules();
        callouts.then(|| {
            let sync = self.config.revocation.as_ref().map_or(1000, |r| r.sync_interval_ms);
            Duration::from_millis((sync / 4).clamp(20, 100))
        })
    }

    // ---- requests -------------------------------------------------------

    /// A new request: decide, and carry the decision out in place.
    pub fn on_request(&self, ctx: &dyn Context, id: u32, headers: Vec<(String, String)>, peer: Option<IpAddr>) -> Action {
        let now = now_ms(ctx);
        let decision = self.decide(&headers, peer, now, None);
        let paused = Paused { headers, peer, refresh: None };
        self.carry_out(ctx, id, paused, decision, now, false)
    }

    /// Response headers owed to request `id`.
    pub fn owed(&self, id: u32) -> Vec<(String, String)> {
        self.state.borrow_mut().owed.remove(&id).unwrap_or_default()
    }

    /// Request `id` is gone.
    pub fn forget(&self, id: u32) {
        let mut st = self.state.borrow_mut();
        st.paused.remove(&id);
        st.owed.remove(&id);
        st.refreshes.leave(id);
        st.checks.leave(id);
    }

    fn decide(&self, headers: &[(String, String)], peer: Option<IpAddr>, now: u64, refreshed: Option<&str>) -> Decision {
        let req = Request { method: header(headers, ":method"), path: header(headers, ":path"), headers, peer };
        let st = self.state.borrow();
        let k = Knowledge { now_ms: now, revocations: &st.revocations, live: &st.live };
        match refreshed {
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
                        HeaderOp::Remove(name) => hostcalls::set_map_value(proxy_wasm::types::MapType::HttpRequestHeaders, name, None),
                        HeaderOp::Set(name, value) => hostcalls::set_map_value(proxy_wasm::types::MapType::HttpRequestHeaders, name, Some(value)),
                    };
                }
                Metrics::count(if allow.subject.is_some() { self.metrics.allowed } else { self.metrics.anonymous });
                if self.stale_allowed(now) {
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
            Decision::CheckVersions(keys) if !deferred || p.refresh.is_some() => {
                self.start_check(ctx, id, p, keys, now)
            }
            Decision::Refresh(need) if !deferred => self.start_refresh(ctx, id, p, need, now),
            // Asked twice for the same request: the authority did not settle it.
            Decision::CheckVersions(_) | Decision::Refresh(_) => {
                self.deny(&DenyReason::Unavailable("authority unavailable"), None);
                Action::Pause
            }
        }
    }

    fn deny(&self, reason: &DenyReason, refresh: Option<&RefreshNeed>) {
        self.metrics.denied(reason.metric());
        let answer = response::render(&self.config.realm, reason);
        let mut headers: Vec<(&str, &str)> = answer.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let cleared = match (reason, refresh) {
            (DenyReason::RefreshRejected, Some(need)) if !need.header_mode => response::cleared_cookies(&self.config),
            _ => Vec::new(),
        };
        headers.extend(cleared.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let _ = hostcalls::send_http_response(answer.status as u32, headers, Some(answer.body.as_bytes()));
    }

    fn stale_allowed(&self, now: u64) -> bool {
        let Some(policy) = &self.config.revocation else { return false };
        let st = self.state.borrow();
        !matches!(st.revocations.freshness(now, policy.max_staleness_ms), crate::revocation::Freshness::Fresh)
    }

    fn authority(&self) -> Option<&crate::config::Authority> {
        self.config.authority.as_ref()
    }

    /// Dispatches a callout through the SDK (so its answer is routed back).
    fn dispatch(&self, ctx: &dyn Context, method: &str, path: &str, body: Option<&[u8]>, what: Callout, now: u64) -> Result<(), Status> {
        let a = self.authority().ok_or(Status::NotFound)?;
        let mut headers = vec![(":method", method), (":path", path), (":authority", a.host.as_str()), ("accept", "application/json")];
        if body.is_some() {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        let token = ctx.dispatch_http_call(&a.cluster, headers, body, vec![], Duration::from_millis(a.timeout_ms))?;
        self.state.borrow_mut().callouts.insert(token, InFlight { what, started_ms: now });
        Ok(())
    }

    // ---- refresh --------------------------------------------------------

    fn start_refresh(&self, ctx: &dyn Context, id: u32, mut p: Paused, need: RefreshNeed, now: u64) -> Action {
        let Some(policy) = self.config.refresh.clone() else { return Action::Continue };
        let token = refresh::hash(&need.refresh_token);
        p.refresh = Some(need.clone());
        let joined = {
            let mut st = self.state.borrow_mut();
            st.paused.insert(id, p);
            st.refreshes.has_group(&token).then(|| st.refreshes.join(&token, id, now, policy.wait_ms))
        };
        if joined.is_some() {
            Metrics::count(self.metrics.refresh_coalesced);
            return Action::Pause;
        }
        let key = refresh::slot_key(&token, REFRESH_SLOTS);
        let (bytes, cas) = ctx.get_shared_data(&key);
        let current = bytes.as_deref().and_then(Slot::decode);
        let claim_ms = self.authority().map_or(1000, |a| a.timeout_ms) + 500;
        match Slot::decide(current.as_ref(), &token, now, claim_ms) {
            SlotDecision::Use(outcome) => {
                Metrics::count(self.metrics.refresh_shared);
                let p = self.state.borrow_mut().paused.remove(&id);
                match p {
                    Some(p) => self.resolve_refresh(ctx, id, p, &outcome, now, false),
                    None => Action::Pause,
                }
            }
            SlotDecision::Wait => {
                self.state.borrow_mut().refreshes.wait_elsewhere(&token, id, now, policy.wait_ms);
                Action::Pause
            }
            SlotDecision::Claim(slot) => {
                if ctx.set_shared_data(&key, Some(&slot.encode()), cas).is_err() {
                    // Another worker claimed it a moment ago.
                    self.state.borrow_mut().refreshes.wait_elsewhere(&token, id, now, policy.wait_ms);
                    return Action::Pause;
                }
                self.state.borrow_mut().refreshes.join(&token, id, now, policy.wait_ms);
                let body = refresh::token_request_body(&need.refresh_token, &policy.client_id);
                if self.dispatch(ctx, "POST", "/v1/token", Some(body.as_bytes()), Callout::Refresh { token: token.clone() }, now).is_err() {
                    self.finish_refresh(ctx, &token, Outcome::Unavailable, now, true);
                }
                Action::Pause
            }
        }
    }

    /// Ends the refresh of `token` for every request waiting on it.
    /// `share`: publish the answer for the other workers.
    fn finish_refresh(&self, ctx: &dyn Context, token: &TokenHash, outcome: Outcome, now: u64, share: bool) {
        let share_ms = self.config.refresh.as_ref().map_or(0, |r| r.share_ms);
        if share {
            let slot = match &outcome {
                // A failure is not shared: release the claim so others retry.
                Outcome::Unavailable => Slot::Claimed { token: token.clone(), until_ms: now },
                o => Slot::Done { token: token.clone(), outcome: o.clone(), until_ms: now + share_ms },
            };
            let _ = ctx.set_shared_data(&refresh::slot_key(token, REFRESH_SLOTS), Some(&slot.encode()), None);
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

    fn resolve_refresh(&self, ctx: &dyn Context, id: u32, p: Paused, outcome: &Outcome, now: u64, deferred: bool) -> Action {
        let Some(need) = p.refresh.clone() else { return Action::Pause };
        let decision = match outcome {
            Outcome::Refreshed(tokens) => {
                let owed = response::refreshed_headers(&self.config, tokens, need.header_mode);
                self.state.borrow_mut().owed.insert(id, owed);
                self.decide(&p.headers, p.peer, now, Some(&tokens.access_token))
            }
            Outcome::Rejected | Outcome::Unavailable => {
                let req = Request { method: header(&p.headers, ":method"), path: header(&p.headers, ":path"), headers: &p.headers, peer: p.peer };
                let st = self.state.borrow();
                let k = Knowledge { now_ms: now, revocations: &st.revocations, live: &st.live };
                authenticator::refresh_failed(&self.config, &req, &k, &need, *outcome == Outcome::Rejected)
            }
        };
        self.carry_out(ctx, id, p, decision, now, deferred)
    }

    // ---- live version checks -------------------------------------------

    fn start_check(&self, ctx: &dyn Context, id: u32, p: Paused, keys: Vec<String>, now: u64) -> Action {
        let group: TokenHash = format!("v:{}", keys.join(","));
        let wait_ms = self.authority().map_or(1000, |a| a.timeout_ms) + 500;
        let join = {
            let mut st = self.state.borrow_mut();
            st.paused.insert(id, p);
            st.checks.join(&group, id, now, wait_ms)
        };
        if join == Join::Lead {
            let query: Vec<String> = keys.iter().map(|k| format!("key={}", refresh::form_encode(k))).collect();
            let path = format!("/v1/versions?{}", query.join("&"));
            if self.dispatch(ctx, "GET", &path, None, Callout::Versions { group: group.clone(), keys: keys.clone() }, now).is_err() {
                self.finish_check(ctx, &group, &keys, None, now);
            }
        }
        Action::Pause
    }

    fn finish_check(&self, ctx: &dyn Context, group: &TokenHash, keys: &[String], body: Option<&[u8]>, now: u64) {
        let learned = body.is_some_and(|b| self.state.borrow_mut().live.record(keys, b, now));
        Metrics::count(if learned { self.metrics.live_checks } else { self.metrics.live_failed });
        let waiting: Vec<(u32, Paused)> = {
            let mut st = self.state.borrow_mut();
            let ids = st.checks.finish(group);
            ids.into_iter().filter_map(|id| st.paused.remove(&id).map(|p| (id, p))).collect()
        };
        for (id, p) in waiting {
            let decision = if learned {
                self.decide(&p.headers, p.peer, now, None)
            } else {
                Decision::Deny(authenticator::Denial { reason: DenyReason::Unavailable("authority unavailable for live check") })
            };
            // A second CheckVersions for the same request is refused in carry_out.
            let p = Paused { refresh: None, ..p };
            self.carry_out(ctx, id, p, decision, now, true);
        }
    }

    // ---- callout answers ------------------------------------------------

    pub fn on_callout_response(&self, ctx: &dyn Context, own_id: u32, token: u32, body_size: usize) {
        let Some(call) = self.state.borrow_mut().callouts.remove(&token) else { return };
        let now = now_ms(ctx);
        Metrics::set(self.metrics.callout_ms, now.saturating_sub(call.started_ms));
        let status = ctx.get_http_call_response_header(":status").and_then(|s| s.parse::<u16>().ok());
        let body = if body_size <= MAX_FEED_BYTES { ctx.get_http_call_response_body(0, body_size) } else { None };
        match call.what {
            Callout::Feed => self.on_feed(ctx, status, body.as_deref().unwrap_or_default(), body_size, now),
            Callout::Refresh { token } => {
                let outcome = if body_size > refresh::MAX_TOKEN_RESPONSE_BYTES {
                    Outcome::Unavailable
                } else {
                    Outcome::from_response(status, body.as_deref().unwrap_or_default())
                };
                Metrics::count(match outcome {
                    Outcome::Refreshed(_) => self.metrics.refresh_ok,
                    Outcome::Rejected => self.metrics.refresh_rejected,
                    Outcome::Unavailable => self.metrics.refresh_failed,
                });
                self.finish_refresh(ctx, &token, outcome, now, true);
            }
            Callout::Versions { group, keys } => {
                let body = body.filter(|_| status == Some(200));
                self.finish_check(ctx, &group, &keys, body.as_deref(), now);
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
        self.tick_refreshes(ctx, now);
        // Live checks whose answer never came (the leader's request went
        // away and Envoy cancelled its callout): 503 for everyone waiting.
        let overdue = self.state.borrow_mut().checks.overdue(now);
        for (_, ids) in overdue {
            let waiting: Vec<(u32, Paused)> = {
                let mut st = self.state.borrow_mut();
                ids.into_iter().filter_map(|id| st.paused.remove(&id).map(|p| (id, p))).collect()
            };
            for (id, p) in waiting {
                let d = Decision::Deny(authenticator::Denial { reason: DenyReason::Unavailable("authority unavailable for live check") });
                self.carry_out(ctx, id, p, d, now, true);
            }
        }
        // Callouts Envoy will never answer (cancelled with their request).
        let horizon = self.authority().map_or(1000, |a| a.timeout_ms) * 4;
        let mut st = self.state.borrow_mut();
        st.callouts.retain(|_, c| now.saturating_sub(c.started_ms) < horizon);
        if st.feed_in_flight && !st.callouts.values().any(|c| matches!(c.what, Callout::Feed)) {
            st.feed_in_flight = false;
        }
    }

    fn tick_refreshes(&self, ctx: &dyn Context, now: u64) {
        if self.config.refresh.is_none() {
            return;
        }
        // Answers another worker published.
        let elsewhere = self.state.borrow().refreshes.waiting_elsewhere();
        for token in elsewhere {
            let (bytes, _) = ctx.get_shared_data(&refresh::slot_key(&token, REFRESH_SLOTS));
            let outcome = bytes.as_deref().and_then(Slot::decode).and_then(|s| s.outcome_for(&token, now).cloned());
            if let Some(outcome) = outcome {
                Metrics::count(self.metrics.refresh_shared);
                self.finish_refresh(ctx, &token, outcome, now, false);
            }
        }
        // Waits that ran out.
        let overdue = self.state.borrow_mut().refreshes.overdue(now);
        let wait_ms = self.config.refresh.as_ref().map_or(0, |r| r.wait_ms);
        for (token, ids) in overdue {
            let first_fallback = self.state.borrow_mut().fell_back.insert(token.clone());
            let need = ids.iter().find_map(|id| self.state.borrow().paused.get(id).and_then(|p| p.refresh.clone()));
            match (first_fallback, need) {
                (true, Some(need)) => {
                    // The other worker's answer never came: ask ourselves; the
                    // authority's grace window answers with the same pair.
                    {
                        let mut st = self.state.borrow_mut();
                        for id in &ids {
                            st.refreshes.wait_elsewhere(&token, *id, now, wait_ms);
                        }
                    }
                    let client_id = self.config.refresh.as_ref().map_or("", |r| r.client_id.as_str());
                    let body = refresh::token_request_body(&need.refresh_token, client_id);
                    if self.dispatch(ctx, "POST", "/v1/token", Some(body.as_bytes()), Callout::Refresh { token: token.clone() }, now).is_err() {
                        self.finish_refresh(ctx, &token, Outcome::Unavailable, now, false);
                    }
                }
                _ => {
                    let waiting: Vec<(u32, Paused)> = {
                        let mut st = self.state.borrow_mut();
                        st.fell_back.remove(&token);
                        ids.into_iter().filter_map(|id| st.paused.remove(&id).map(|p| (id, p))).collect()
                    };
                    for (id, p) in waiting {
                        self.resolve_refresh(ctx, id, p, &Outcome::Unavailable, now, true);
                    }
                }
            }
        }
    }

    // ---- revocation sync ------------------------------------------------

    /// Loads the set another worker published, when it changed.
    fn reload_revocations(&self, ctx: &dyn Context) {
        let Some((generation, synced_at)) = read_meta(ctx) else { return };
        let stale_copy = self.state.borrow().revocations.generation() != generation;
        if stale_copy {
            if let Some(set) = ctx.get_shared_data(SET_KEY).0.as_deref().and_then(RevocationSet::decode) {
                self.state.borrow_mut().revocations = set;
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
            let age = st.revocations.synced_at_ms().map_or(now, |t| now.saturating_sub(t));
            Metrics::set(self.metrics.staleness_ms, age);
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
        // Start from what the workers share: it may be newer than our copy.
        let (shared, cas) = ctx.get_shared_data(SET_KEY);
        let mut set = shared.as_deref().and_then(RevocationSet::decode).unwrap_or_else(|| self.state.borrow().revocations.clone());
        let changed = match (page, status) {
            (Some(page), _) => set.apply(page, now),
            (None, Some(410)) => {
                // The authority does not know our cursor: re-snapshot next.
                Metrics::count(self.metrics.sync_failed);
                set.forget_cursor();
                true
            }
            (None, _) => {
                Metrics::count(self.metrics.sync_failed);
                return;
            }
        };
        if changed && ctx.set_shared_data(SET_KEY, Some(&set.encode()), cas).is_err() {
            // Someone wrote in between; the next poll merges again.
            return;
        }
        if status == Some(200) {
            Metrics::count(self.metrics.sync_ok);
            let meta = format!("{}:{}", set.generation(), set.synced_at_ms().unwrap_or(now));
            let _ = ctx.set_shared_data(META_KEY, Some(meta.as_bytes()), None);
        }
        self.state.borrow_mut().revocations = set;
    }
}

fn read_meta(ctx: &dyn Context) -> Option<(u64, Option<u64>)> {
    let bytes = ctx.get_shared_data(META_KEY).0?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let (g, t) = text.split_once(':')?;
    Some((g.parse().ok()?, t.parse().ok()))
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
        let n = bytes.as_deref().and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0) + 1;
        if hostcalls::set_shared_data(WORKERS_KEY, Some(n.to_string().as_bytes()), cas).is_ok() {
            return n;
        }
    }
    0
}
