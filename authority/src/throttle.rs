//! Throttling of the credential grants (`password`, `client_credentials`),
//! decided before any password hash is spent.
//!
//! Three kinds of budget, each a GCRA bucket (a burst, then one unit per
//! interval) that only **failed** attempts use up: a unit is taken when an
//! attempt is admitted and given back when the credential was right (or the
//! check never ran), so people who type their password right are never
//! slowed down by their own sign-ins.
//!
//! - **principal** (a username, or a client id): bounds the guesses on one
//!   account, whatever the number of addresses they come from.
//! - **address** (the client address; IPv6 by /64): bounds one address's
//!   failures over all accounts (credential stuffing from one place).
//! - **known** (principal, address) pairs: an address from which the
//!   principal signed in successfully in the last `known_days` skips the
//!   principal and the address budgets and has a small budget of its own. A
//!   flood on a username from elsewhere, or from the same (shared) address
//!   on other usernames, does not slow its owner on a known address.
//!
//! When the principal budget is empty, an address without a booking **books**
//! the next free slot of it and is told to come back then (`Retry-After`);
//! the slot is held for it for `booking_hold_ms`. Each address (IPv6: each
//! /48, see [`booking_bucket`]) holds at most one booking per principal, and
//! making one takes a unit of the address budget. At most `max_bookings`
//! slots of a principal are booked ahead: beyond that an attempt is refused
//! (`Limit::Bookings`) **without** booking, and told to come back when the
//! queue has room. So a flood from A addresses delays the owner, signing in
//! from a new address, by at most min(A, `max_bookings`) + 1 intervals once
//! they hold a booking; the state a flood can create is bounded per
//! principal (at most `max_bookings` + `booking_hold_ms` / interval
//! bookings, each living at most `max_bookings` intervals + the hold); and
//! the guesses on the account stay bounded by the principal budget
//! (`principal_burst` + elapsed / `principal_interval`), since every booked
//! slot was taken from it.
//!
//! A refused attempt spends no hash; the only state it may create is its
//! address's booking (which takes one unit of the address budget).
//!
//! The algorithm is [`admit`] and [`settle`] over one [`State`]; the
//! in-process [`MemoryLimiter`] (one authority, the embedded store) runs it
//! under a mutex, the Redis store runs the same steps in one Lua script, so
//! several authority instances share the budgets. Both run the same
//! conformance tests.

use crate::config::ThrottleConfig;
use crate::store::StoreResult;
use crate::util::sha256_hex;
use async_trait::async_trait;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Whose credential a grant checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Client,
}

/// The budgets, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub principal_burst: u64,
    pub principal_interval_ms: u64,
    pub address_burst: u64,
    pub address_interval_ms: u64,
    pub known_burst: u64,
    pub known_interval_ms: u64,
    pub known_ms: u64,
    pub booking_hold_ms: u64,
    /// Most slots of one principal booked ahead.
    pub max_bookings: u64,
}

impl Limits {
    pub fn from_config(c: &ThrottleConfig) -> Limits {
        Limits {
            principal_burst: c.principal_burst,
            principal_interval_ms: c.principal_interval_ms,
            address_burst: c.address_burst,
            address_interval_ms: c.address_interval_ms,
            known_burst: c.known_burst,
            known_interval_ms: c.known_interval_ms,
            known_ms: c.known_days * 86_400_000,
            booking_hold_ms: c.booking_hold_ms,
            max_bookings: c.max_bookings,
        }
    }
}

/// The state keys of one attempt: hashes, never the username, client id or
/// address themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub principal: String,
    pub address: String,
    pub pair: String,
    /// The principal's booking for the address's [`booking_bucket`].
    pub booking: String,
}

/// The address an address budget is kept for: IPv4 as is (also when
/// IPv4-mapped), IPv6 by its /64 (one host usually holds a whole /64).
pub fn address_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The address a booking is kept for: IPv4 as [`address_bucket`], IPv6 by
/// its /48, the smallest prefix a site is commonly delegated: one site
/// holds 65536 /64s, and a booking per /64 would let it fill a principal's
/// queue alone.
pub fn booking_bucket(ip: IpAddr) -> String {
    match tollgate::protocol::canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        v4 => address_bucket(v4),
    }
}

impl Keys {
    pub fn new(kind: Kind, principal: &str, address: IpAddr) -> Keys {
        let tag = match kind {
            Kind::User => "u",
            Kind::Client => "c",
        };
        let p = &sha256_hex(format!("{tag}\0{principal}").as_bytes())[..32];
        let a = &sha256_hex(format!("a\0{}", address_bucket(address)).as_bytes())[..32];
        let b = &sha256_hex(format!("a\0{}", booking_bucket(address)).as_bytes())[..32];
        Keys {
            principal: format!("{tag}:{p}"),
            address: format!("a:{a}"),
            pair: format!("{tag}p:{p}:{a}"),
            booking: format!("{tag}b:{p}:{b}"),
        }
    }
}

/// How an attempt was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The principal budget had room.
    Open,
    /// At the slot this address had booked.
    Booked,
    /// From an address the principal signed in from before.
    Known,
}

/// Which budget refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Address,
    Principal,
    Known,
    /// The principal budget is spent and `max_bookings` slots of it are
    /// booked already: refused without a booking.
    Bookings,
    /// The in-process limiter has no room for more state.
    Full,
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Limit::Address => "address",
            Limit::Principal => "principal",
            Limit::Known => "known",
            Limit::Bookings => "bookings",
            Limit::Full => "full",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admit(Via),
    Deny { limit: Limit, retry_after_ms: u64 },
}

/// What the admitted attempt's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The credential was right: the unit is given back, the address is
    /// remembered as known for the principal.
    Success,
    /// Wrong: the unit stays used.
    Failure,
    /// The check did not run (no hash slot in time, an internal error): the
    /// unit is given back.
    NotAttempted,
}

/// The state one attempt reads and writes (times in ms since the epoch; 0
/// for none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    /// GCRA theoretical arrival times.
    pub principal_tat: u64,
    pub address_tat: u64,
    pub known_tat: u64,
    /// Until when the pair is known.
    pub known_until: u64,
    /// The slot this principal has booked for the address's booking bucket.
    pub booked_at: u64,
}

/// One GCRA step: the new arrival time if a unit is free at `now`, else how
/// long until one is.
fn gcra(tat: u64, now: u64, interval: u64, burst: u64) -> Result<u64, u64> {
    let next = tat.max(now).saturating_add(interval);
    let limit = now.saturating_add(interval.saturating_mul(burst));
    if next <= limit {
        Ok(next)
    } else {
        Err(next - limit)
    }
}

/// Decides an attempt at `now` and updates `state` (see the module docs).
pub fn admit(s: &mut State, l: &Limits, now: u64) -> Admission {
    if s.known_until > now {
        return match gcra(s.known_tat, now, l.known_interval_ms, l.known_burst) {
            Ok(t) => {
                s.known_tat = t;
                Admission::Admit(Via::Known)
            }
            Err(w) => Admission::Deny { limit: Limit::Known, retry_after_ms: w },
        };
    }
    let address_tat = match gcra(s.address_tat, now, l.address_interval_ms, l.address_burst) {
        Ok(t) => t,
        Err(w) => return Admission::Deny { limit: Limit::Address, retry_after_ms: w },
    };
    if s.booked_at != 0 {
        if now < s.booked_at {
            return Admission::Deny { limit: Limit::Principal, retry_after_ms: s.booked_at - now };
        }
        let held = now <= s.booked_at.saturating_add(l.booking_hold_ms);
        s.booked_at = 0;
        if held {
            s.address_tat = address_tat;
            return Admission::Admit(Via::Booked);
        }
    }
    match gcra(s.principal_tat, now, l.principal_interval_ms, l.principal_burst) {
        Ok(t) => {
            s.principal_tat = t;
            s.address_tat = address_tat;
            Admission::Admit(Via::Open)
        }
        Err(w) => {
            // Every booking ahead moved the principal's arrival time one
            // interval on: a wait beyond `max_bookings` intervals means the
            // queue is full. Refused without a booking; it has room again
            // once the wait is back to `max_bookings` intervals.
            let queue = l.max_bookings.saturating_mul(l.principal_interval_ms);
            if w > queue {
                return Admission::Deny { limit: Limit::Bookings, retry_after_ms: w - queue };
            }
            // Book the slot the wait leads to, and take it from the
            // principal budget and a unit from the address budget.
            s.booked_at = now + w;
            s.principal_tat = s.principal_tat.max(now).saturating_add(l.principal_interval_ms);
            s.address_tat = address_tat;
            Admission::Deny { limit: Limit::Principal, retry_after_ms: w }
        }
    }
}

/// Settles an admitted attempt (see [`Outcome`]).
pub fn settle(s: &mut State, l: &Limits, via: Via, outcome: Outcome, now: u64) {
    if outcome == Outcome::Failure {
        return;
    }
    match via {
        Via::Known => s.known_tat = s.known_tat.saturating_sub(l.known_interval_ms),
        Via::Open | Via::Booked => {
            s.address_tat = s.address_tat.saturating_sub(l.address_interval_ms);
            s.principal_tat = s.principal_tat.saturating_sub(l.principal_interval_ms);
        }
    }
    if outcome == Outcome::Success {
        s.known_until = now.saturating_add(l.known_ms);
    }
}

/// Where the budgets live: in process, or in the shared store.
#[async_trait]
pub trait Limiter: Send + Sync {
    async fn admit(&self, keys: &Keys, limits: &Limits, now_ms: u64) -> StoreResult<Admission>;
    async fn settle(&self, keys: &Keys, limits: &Limits, via: Via, outcome: Outcome, now_ms: u64) -> StoreResult<()>;
    fn kind(&self) -> &'static str;
}

#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    known_tat: u64,
    known_until: u64,
}

#[derive(Default)]
struct Tables {
    principals: HashMap<String, u64>,
    addresses: HashMap<String, u64>,
    pairs: HashMap<String, Pair>,
    bookings: HashMap<String, u64>,
    ops: u64,
    /// When the tables were last pruned because they were full (ms).
    full_prune_at: u64,
}

impl Tables {
    fn len(&self) -> usize {
        self.principals.len() + self.addresses.len() + self.pairs.len() + self.bookings.len()
    }

    /// Drops state that no longer limits anything (a bucket that is full
    /// again, a pair no longer known, a booking past its hold).
    fn prune(&mut self, now: u64, hold: u64) {
        self.principals.retain(|_, tat| *tat > now);
        self.addresses.retain(|_, tat| *tat > now);
        self.pairs.retain(|_, p| p.known_tat > now || p.known_until > now);
        self.bookings.retain(|_, b| *b != 0 && b.saturating_add(hold) >= now);
    }

    fn load(&self, k: &Keys) -> State {
        let p = self.pairs.get(&k.pair).copied().unwrap_or_default();
        State {
            principal_tat: self.principals.get(&k.principal).copied().unwrap_or(0),
            address_tat: self.addresses.get(&k.address).copied().unwrap_or(0),
            known_tat: p.known_tat,
            known_until: p.known_until,
            booked_at: self.bookings.get(&k.booking).copied().unwrap_or(0),
        }
    }

    /// How many entries writing `s` over `before` would add.
    fn new_entries(&self, k: &Keys, s: &State, before: &State) -> usize {
        [
            s.principal_tat != before.principal_tat && !self.principals.contains_key(&k.principal),
            s.address_tat != before.address_tat && !self.addresses.contains_key(&k.address),
            (s.known_tat, s.known_until) != (before.known_tat, before.known_until) && !self.pairs.contains_key(&k.pair),
            s.booked_at != before.booked_at && s.booked_at != 0 && !self.bookings.contains_key(&k.booking),
        ]
        .into_iter()
        .filter(|new| *new)
        .count()
    }

    fn store(&mut self, k: &Keys, s: &State, before: &State) {
        if s.principal_tat != before.principal_tat {
            self.principals.insert(k.principal.clone(), s.principal_tat);
        }
        if s.address_tat != before.address_tat {
            self.addresses.insert(k.address.clone(), s.address_tat);
        }
        if (s.known_tat, s.known_until) != (before.known_tat, before.known_until) {
            self.pairs.insert(k.pair.clone(), Pair { known_tat: s.known_tat, known_until: s.known_until });
        }
        if s.booked_at != before.booked_at {
            if s.booked_at == 0 {
                self.bookings.remove(&k.booking);
            } else {
                self.bookings.insert(k.booking.clone(), s.booked_at);
            }
        }
    }
}

/// The budgets of a single authority instance (the embedded store), in
/// memory: they start empty at every start. At most `max_entries` entries;
/// when that many are live, attempts that would add an entry are refused
/// (429, `Limit::Full`) until some expire; attempts that only update
/// entries (a known address signing in, a booking claimed) still run.
pub struct MemoryLimiter {
    tables: Mutex<Tables>,
    max_entries: usize,
}

/// Prune the tables every this many operations.
const PRUNE_EVERY: u64 = 4096;

impl MemoryLimiter {
    pub fn new(max_entries: usize) -> MemoryLimiter {
        MemoryLimiter { tables: Mutex::new(Tables::default()), max_entries }
    }

    /// Entries held (for tests and metrics).
    pub fn entries(&self) -> usize {
        self.tables.lock().map(|t| t.len()).unwrap_or(0)
    }
}

#[async_trait]
impl Limiter for MemoryLimiter {
    async fn admit(&self, keys: &Keys, limits: &Limits, now: u64) -> StoreResult<Admission> {
        let mut t = self.tables.lock().map_err(|_| crate::store::StoreError::Backend("throttle lock poisoned".into()))?;
        t.ops += 1;
        // When full, prune at most once a second: a full table of live
        // entries must not cost a scan per request. (An admission adds at
        // most 3 entries: principal, address, booking; its settling 1, the
        // pair.)
        let full = t.len() + 4 > self.max_entries;
        if t.ops % PRUNE_EVERY == 0 || (full && now.saturating_sub(t.full_prune_at) >= 1000) {
            t.prune(now, limits.booking_hold_ms);
            if full {
                t.full_prune_at = now;
            }
        }
        let before = t.load(keys);
        let mut s = before;
        let a = admit(&mut s, limits, now);
        let adds = t.new_entries(keys, &s, &before);
        if adds > 0 && t.len() + adds + 1 > self.max_entries {
            tracing::warn!(entries = t.len(), "throttle table full; refusing credential grants that need new entries until some expire");
            return Ok(Admission::Deny { limit: Limit::Full, retry_after_ms: 1000 });
        }
        t.store(keys, &s, &before);
        Ok(a)
    }

    async fn settle(&self, keys: &Keys, limits: &Limits, via: Via, outcome: Outcome, now: u64) -> StoreResult<()> {
        let mut t = self.tables.lock().map_err(|_| crate::store::StoreError::Backend("throttle lock poisoned".into()))?;
        let before = t.load(keys);
        let mut s = before;
        settle(&mut s, limits, via, outcome, now);
        // The admission left room for the one entry settling may add (the
        // known pair); concurrent admissions may have taken it, so this is
        // checked again: a full table skips remembering the address.
        if t.new_entries(keys, &s, &before) > 0 && t.len() >= self.max_entries {
            tracing::warn!(entries = t.len(), "throttle table full; the address is not remembered as known");
            s.known_until = before.known_until;
            s.known_tat = before.known_tat;
        }
        t.store(keys, &s, &before);
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        principal_burst: 3,
        principal_interval_ms: 1000,
        address_burst: 10,
        address_interval_ms: 100,
        known_burst: 2,
        known_interval_ms: 5000,
        known_ms: 60_000,
        booking_hold_ms: 500,
        max_bookings: 4,
    };

    #[test]
    fn gcra_bursts_then_paces() {
        let mut tat = 0;
        for i in 0..3 {
            tat = gcra(tat, 10_000, 1000, 3).unwrap_or_else(|w| panic!("attempt {i} refused, wait {w}"));
        }
        assert_eq!(gcra(tat, 10_000, 1000, 3), Err(1000));
        assert_eq!(gcra(tat, 10_999, 1000, 3), Err(1));
        assert!(gcra(tat, 11_000, 1000, 3).is_ok());
    }

    #[test]
    fn failures_book_slots_and_the_booked_retry_is_admitted() {
        let mut s = State::default();
        let now = 100_000;
        for _ in 0..3 {
            assert_eq!(admit(&mut s, &L, now), Admission::Admit(Via::Open));
            settle(&mut s, &L, Via::Open, Outcome::Failure, now);
        }
        // The budget is spent: the fourth books the next slot.
        assert_eq!(admit(&mut s, &L, now), Admission::Deny { limit: Limit::Principal, retry_after_ms: 1000 });
        assert_eq!(s.booked_at, now + 1000);
        // Asking again before the slot changes nothing.
        let held = s;
        assert_eq!(admit(&mut s, &L, now + 400), Admission::Deny { limit: Limit::Principal, retry_after_ms: 600 });
        assert_eq!(s, held);
        assert_eq!(admit(&mut s, &L, now + 1000), Admission::Admit(Via::Booked));
        assert_eq!(s.booked_at, 0);
    }

    #[test]
    fn an_unclaimed_booking_lapses() {
        let mut s = State { principal_tat: 104_000, booked_at: 100_000, ..State::default() };
        // Past the hold: the booking is gone and a new one is made.
        let r = admit(&mut s, &L, 100_000 + L.booking_hold_ms + 1);
        assert!(matches!(r, Admission::Deny { limit: Limit::Principal, .. }), "{r:?}");
        assert!(s.booked_at > 100_000 + L.booking_hold_ms);
    }

    #[test]
    fn success_refunds_and_makes_the_address_known() {
        let mut s = State::default();
        let now = 100_000;
        assert_eq!(admit(&mut s, &L, now), Admission::Admit(Via::Open));
        settle(&mut s, &L, Via::Open, Outcome::Success, now);
        assert!(s.principal_tat <= now && s.address_tat <= now, "refunded: {s:?}");
        assert_eq!(s.known_until, now + L.known_ms);
        // Known: the principal budget is not consulted.
        s.principal_tat = now + 100_000;
        assert_eq!(admit(&mut s, &L, now), Admission::Admit(Via::Known));
        settle(&mut s, &L, Via::Known, Outcome::Failure, now);
        assert_eq!(admit(&mut s, &L, now), Admission::Admit(Via::Known));
        settle(&mut s, &L, Via::Known, Outcome::Failure, now);
        assert_eq!(admit(&mut s, &L, now), Admission::Deny { limit: Limit::Known, retry_after_ms: 5000 });
    }

    #[test]
    fn not_attempted_refunds_without_making_known() {
        let mut s = State::default();
        assert_eq!(admit(&mut s, &L, 5000), Admission::Admit(Via::Open));
        settle(&mut s, &L, Via::Open, Outcome::NotAttempted, 5000);
        assert_eq!((s.principal_tat <= 5000, s.known_until), (true, 0));
    }

    #[test]
    fn address_budget_refuses_first_and_changes_nothing() {
        let mut s = State { address_tat: 100_000 + 10 * 100 + 50, ..State::default() };
        let before = s;
        assert_eq!(admit(&mut s, &L, 100_000), Admission::Deny { limit: Limit::Address, retry_after_ms: 150 });
        assert_eq!(s, before);
    }

    #[tokio::test]
    async fn a_full_memory_limiter_refuses_new_state_until_entries_expire() {
        let m = MemoryLimiter::new(10);
        let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
        let now = 1_000_000;
        for i in 0..4 {
            let k = Keys::new(Kind::User, &format!("u{i}"), ip(i));
            assert_eq!(m.admit(&k, &L, now).await.expect("admit"), Admission::Admit(Via::Open));
        }
        assert_eq!(m.entries(), 8, "a principal and an address each");
        let late = Keys::new(Kind::User, "late", ip(9));
        let a = m.admit(&late, &L, now).await.expect("admit");
        assert_eq!(a, Admission::Deny { limit: Limit::Full, retry_after_ms: 1000 });
        // Once the buckets are full again their entries go, and there is room.
        let later = now + 10 * L.principal_interval_ms;
        assert_eq!(m.admit(&late, &L, later).await.expect("admit"), Admission::Admit(Via::Open));
        assert_eq!(m.entries(), 2);
    }

    #[test]
    fn a_booking_takes_an_address_unit_and_a_full_queue_books_nothing() {
        let now = 100_000;
        // The principal budget spent, 4 slots (`max_bookings`) booked ahead.
        let tat = now + (L.principal_burst + L.max_bookings) * L.principal_interval_ms;
        let mut s = State { principal_tat: tat - L.principal_interval_ms, ..State::default() };
        assert_eq!(admit(&mut s, &L, now), Admission::Deny { limit: Limit::Principal, retry_after_ms: 4000 });
        assert_eq!((s.booked_at, s.address_tat), (now + 4000, now + L.address_interval_ms), "booked, one address unit");
        let mut s = State { principal_tat: tat, ..State::default() };
        let before = s;
        assert_eq!(admit(&mut s, &L, now), Admission::Deny { limit: Limit::Bookings, retry_after_ms: 1000 });
        assert_eq!(s, before, "a full queue: nothing booked, nothing taken");
        assert_eq!(admit(&mut s, &L, now + 1000), Admission::Deny { limit: Limit::Principal, retry_after_ms: 4000 }, "room again");
    }

    #[tokio::test]
    async fn a_full_memory_limiter_still_admits_known_addresses_and_booked_slots() {
        let m = MemoryLimiter::new(12);
        let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
        let now = 1_000_000;
        // alice signed in a while ago: only her known pair is left once the
        // full table is pruned.
        let alice = Keys::new(Kind::User, "alice", ip(1));
        assert_eq!(m.admit(&alice, &L, now - 10_000).await.expect("admit"), Admission::Admit(Via::Open));
        m.settle(&alice, &L, Via::Open, Outcome::Success, now - 10_000).await.expect("settle");
        // bob's budget spent, and one address holding a booking.
        for _ in 0..L.principal_burst {
            let k = Keys::new(Kind::User, "bob", ip(2));
            assert_eq!(m.admit(&k, &L, now).await.expect("admit"), Admission::Admit(Via::Open));
        }
        let booker = Keys::new(Kind::User, "bob", ip(3));
        assert!(matches!(m.admit(&booker, &L, now).await.expect("admit"), Admission::Deny { limit: Limit::Principal, .. }));
        for i in 4..7 {
            let k = Keys::new(Kind::User, &format!("u{i}"), ip(i));
            assert_eq!(m.admit(&k, &L, now).await.expect("admit"), Admission::Admit(Via::Open));
        }
        assert_eq!(m.entries(), 11);
        let full = |limit| matches!(limit, Admission::Deny { limit: Limit::Full, .. });
        assert!(full(m.admit(&Keys::new(Kind::User, "new", ip(9)), &L, now).await.expect("admit")), "a new principal");
        assert!(full(m.admit(&Keys::new(Kind::User, "bob", ip(8)), &L, now).await.expect("admit")), "a new booking");
        assert!(full(m.admit(&Keys::new(Kind::User, "alice", ip(7)), &L, now).await.expect("admit")), "alice, new address");
        // What only updates entries still runs.
        assert_eq!(m.admit(&alice, &L, now).await.expect("admit"), Admission::Admit(Via::Known), "alice on her known address");
        m.settle(&alice, &L, Via::Known, Outcome::Success, now).await.expect("settle");
        let slot = now + L.principal_interval_ms;
        assert_eq!(m.admit(&booker, &L, slot).await.expect("admit"), Admission::Admit(Via::Booked), "a booked slot is claimed");
        assert!(m.entries() <= 12, "{}", m.entries());
    }

    #[test]
    fn bookings_group_ipv6_by_48_and_ipv4_by_address() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let k = |a: &str| Keys::new(Kind::User, "alice", ip(a));
        // (first, second, same booking?, same address budget?)
        let cases = [
            ("2001:db8:1:2::1", "2001:db8:1:ffff::9", true, false),
            ("2001:db8:1:2::1", "2001:db8:2:2::1", false, false),
            ("2001:db8:1:2::1", "2001:db8:1:2::2", true, true),
            ("10.0.0.1", "10.0.0.2", false, false),
            ("::ffff:10.0.0.1", "10.0.0.1", true, true),
        ];
        for (a, b, booking, address) in cases {
            assert_eq!(k(a).booking == k(b).booking, booking, "{a} {b} booking");
            assert_eq!(k(a).address == k(b).address, address, "{a} {b} address");
        }
        assert_eq!(booking_bucket(ip("2001:db8:1:2::1")), "2001:db8:1::/48");
    }

    #[test]
    fn a_known_pair_is_not_held_back_by_its_shared_address() {
        let mut s = State { address_tat: 200_000, known_until: 200_000, ..State::default() };
        assert_eq!(admit(&mut s, &L, 100_000), Admission::Admit(Via::Known));
        assert_eq!(s.address_tat, 200_000, "the address budget is not used");
        settle(&mut s, &L, Via::Known, Outcome::Success, 100_000);
        assert_eq!(s.address_tat, 200_000, "nor given back");
    }

    #[test]
    fn keys_hide_the_names_and_group_ipv6_by_64() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let a = Keys::new(Kind::User, "alice", ip("2001:db8:1:2:aaaa::1"));
        let b = Keys::new(Kind::User, "alice", ip("2001:db8:1:2:bbbb::9"));
        let c = Keys::new(Kind::User, "alice", ip("2001:db8:1:3::1"));
        assert_eq!(a, b);
        assert_ne!(a.address, c.address);
        assert_ne!(Keys::new(Kind::Client, "alice", ip("10.0.0.1")).principal, Keys::new(Kind::User, "alice", ip("10.0.0.1")).principal);
        assert_eq!(Keys::new(Kind::User, "x", ip("::ffff:10.0.0.1")).address, Keys::new(Kind::User, "x", ip("10.0.0.1")).address);
        assert!(!format!("{a:?}").contains("alice"));
    }
}
