//! The revocation set: version key → minimum valid version, learned from the
//! authority's feed (`GET /v1/revocations`, docs/authority-api.md).
//!
//! Invariants, each tested below:
//! - a cached minimum never goes backwards, whatever the feed says later
//!   (a re-snapshot after a store failover cannot un-revoke a token);
//! - an entry is dropped only once its `expires_at` has passed here: until
//!   then a token issued before the bump could still be unexpired;
//! - "never synced" is its own state: an unlearned version is never read as 0;
//! - a key never bumped has the store's floor (its creation time) as its
//!   minimum, and the floor never goes backwards either: a store that was
//!   lost and recreated revokes every token issued before it, it never makes
//!   one valid again. A page from another store is counted and logged by
//!   the caller ([`RevocationSet::is_other_store`]).

use crate::config::MAX_CLOCK_SKEW;
use crate::protocol::merge_expiry;
pub use crate::protocol::{version_keys, FeedEntry as Entry, FeedError, FeedPage, VersionsAnswer, MAX_FEED_BYTES};
use crate::token::json::Value;
use std::collections::{BinaryHeap, HashMap};

/// An entry of the set ordered by its key alone (keys are unique).
struct ByName<'a>(&'a String, &'a Min);

impl PartialEq for ByName<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for ByName<'_> {}
impl PartialOrd for ByName<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByName<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(other.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Min {
    min_ver: u64,
    expires_at: Option<u64>,
}

/// How current the set is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Synced within `max_staleness`.
    Fresh,
    /// Last synced this many seconds ago, more than allowed.
    Stale(u64),
    /// Never synced since the filter started.
    NeverSynced,
}

#[derive(Debug, Clone, Default)]
pub struct RevocationSet {
    entries: HashMap<String, Min>,
    cursor: Option<String>,
    /// When the last feed answer was applied (ms since the epoch).
    synced_at_ms: Option<u64>,
    /// Bumped on every change; workers compare it to know when to reload.
    generation: u64,
    /// The largest store floor seen: the minimum of every key.
    floor: u64,
    /// The store the last page came from.
    store: Option<String>,
    /// A long-polling feed request is outstanding and promised an answer
    /// (a bump, or its wait running out) until then: the set is current.
    held_until_ms: Option<u64>,
}

impl RevocationSet {
    pub fn new() -> RevocationSet {
        RevocationSet::default()
    }

    /// The cursor to ask with next, `None` for a snapshot.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn synced_at_ms(&self) -> Option<u64> {
        self.synced_at_ms
    }

    /// Applies a feed page received at `now_ms`. Snapshots and deltas merge
    /// the same way: the larger minimum and the later expiry win. Entries a
    /// snapshot lacks stay until they expire here.
    /// True when the entries or the cursor changed (the sync time always does).
    pub fn apply(&mut self, page: FeedPage, now_ms: u64) -> bool {
        let mut changed = false;
        if page.floor > self.floor {
            self.floor = page.floor;
            changed = true;
        }
        if page.store.is_some() && page.store != self.store {
            self.store = page.store;
            changed = true;
        }
        for e in page.entries {
            let incoming = Min { min_ver: e.min_ver, expires_at: e.expires_at };
            match self.entries.get_mut(&e.key) {
                Some(m) => {
                    let merged = Min {
                        min_ver: m.min_ver.max(incoming.min_ver),
                        expires_at: merge_expiry(m.expires_at, incoming.expires_at),
                    };
                    if merged != *m {
                        *m = merged;
                        changed = true;
                    }
                }
                None => {
                    self.entries.insert(e.key, incoming);
                    changed = true;
                }
            }
        }
        changed |= self.prune(now_ms / 1000);
        if self.cursor.as_deref() != Some(page.cursor.as_str()) {
            self.cursor = Some(page.cursor);
            changed = true;
        }
        self.synced_at_ms = Some(now_ms);
        if changed {
            self.generation = self.generation.wrapping_add(1);
        }
        changed
    }

    /// Whether `page` comes from another store than the last page did (a
    /// store that was lost and recreated, or an authority pointed elsewhere).
    pub fn is_other_store(&self, page: &FeedPage) -> bool {
        matches!((&self.store, &page.store), (Some(ours), Some(theirs)) if ours != theirs)
    }

    /// The minimum version of every key (the largest store floor seen).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// A long-polling feed request was sent: until `until_ms` the authority
    /// answers it as soon as anything changes (`None`: none outstanding).
    pub fn set_held_until_ms(&mut self, until_ms: Option<u64>) {
        self.held_until_ms = until_ms;
    }

    pub fn held_until_ms(&self) -> Option<u64> {
        self.held_until_ms
    }

    /// Records a sync time learned from another worker.
    pub fn set_synced_at_ms(&mut self, t: Option<u64>) {
        self.synced_at_ms = self.synced_at_ms.max(t);
    }

    /// The authority no longer knows our cursor (410): ask for a snapshot
    /// next, keeping every entry we hold.
    pub fn forget_cursor(&mut self) {
        if self.cursor.take().is_some() {
            self.generation = self.generation.wrapping_add(1);
        }
    }

    /// The feed request path for the next poll; `wait_ms` > 0 asks the
    /// authority to hold the request until a change (after a cursor only: a
    /// snapshot is answered at once).
    pub fn feed_path(&self, wait_ms: u64) -> String {
        match (&self.cursor, wait_ms) {
            (Some(c), 0) => format!("/v1/revocations?after={}", crate::refresh::form_encode(c)),
            (Some(c), w) => format!("/v1/revocations?after={}&wait={w}", crate::refresh::form_encode(c)),
            (None, _) => "/v1/revocations".into(),
        }
    }

    /// Drops entries whose `expires_at` (seconds) has passed by more than
    /// any edge's clock skew ([`MAX_CLOCK_SKEW`]): an edge accepts a token
    /// until `exp` plus its skew, so the entry that revokes it must live as
    /// long, whatever skew the authority allowed for. True when any was dropped.
    pub fn prune(&mut self, now: u64) -> bool {
        let before = self.entries.len();
        let horizon = now.saturating_sub(MAX_CLOCK_SKEW);
        self.entries.retain(|_, m| m.expires_at.is_none_or(|e| e > horizon));
        before != self.entries.len()
    }

    /// The minimum valid version of `key` (`sub:alice`), if one is known.
    /// `None` means "no bump is live", valid only while the set is fresh.
    pub fn min_version(&self, key: &str) -> Option<u64> {
        self.entries.get(key).map(|m| m.min_ver)
    }

    /// How current the set is at `now_ms`, allowing `max_staleness_ms`. A
    /// long-polling request still within its promised window is not
    /// staleness: the authority answers it as soon as anything changes.
    pub fn freshness(&self, now_ms: u64, max_staleness_ms: u64) -> Freshness {
        match self.synced_at_ms {
            None => Freshness::NeverSynced,
            Some(_) if self.held_until_ms.is_some_and(|h| now_ms <= h) => Freshness::Fresh,
            Some(t) if now_ms.saturating_sub(t) > max_staleness_ms => Freshness::Stale(now_ms - t),
            Some(_) => Freshness::Fresh,
        }
    }

    /// Whether a token of `sub` / `sid` with version `ver` is revoked: below
    /// the store's floor, or below a key's minimum.
    pub fn is_revoked(&self, sub: &str, sid: Option<&str>, ver: u64) -> bool {
        ver < self.floor || version_keys(sub, sid).iter().any(|k| self.min_version(k).is_some_and(|min| ver < min))
    }

    /// A compact encoding for proxy-wasm shared data, so every worker can
    /// load the set the polling worker learned.
    pub fn encode(&self) -> Vec<u8> {
        // Sorted: the same set always encodes to the same bytes (and so the
        // same fingerprint), whatever the hash seed.
        // A heap sort (`BinaryHeap::into_sorted_vec`): O(n log n) like
        // `sort_unstable_by`, in about a tenth of its Wasm (the pattern-
        // defeating quicksort instantiated for one element type was 9.5 KB of
        // the filter module).
        let sorted = self.entries.iter().map(|(k, m)| ByName(k, m)).collect::<BinaryHeap<_>>().into_sorted_vec();
        // Members in name order (c, e, f, g, s, t), absent ones as null.
        use crate::token::json::{write_str, write_u64, ObjectWriter};
        fn opt_u64(out: &mut String, v: Option<u64>) {
            match v {
                Some(v) => write_u64(out, v),
                None => out.push_str("null"),
            }
        }
        fn opt_str(out: &mut String, v: Option<&str>) {
            match v {
                Some(v) => write_str(out, v),
                None => out.push_str("null"),
            }
        }
        let mut out = String::new();
        let mut o = ObjectWriter::new(&mut out);
        opt_str(o.member("c"), self.cursor.as_deref());
        let e = o.member("e");
        e.push('[');
        for (i, ByName(k, m)) in sorted.into_iter().enumerate() {
            e.push_str(if i == 0 { "[" } else { ",[" });
            write_str(e, k);
            e.push(',');
            write_u64(e, m.min_ver);
            e.push(',');
            opt_u64(e, m.expires_at);
            e.push(']');
        }
        e.push(']');
        o.u64("f", self.floor).u64("g", self.generation);
        opt_str(o.member("s"), self.store.as_deref());
        opt_u64(o.member("t"), self.synced_at_ms);
        o.end();
        out.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<RevocationSet> {
        let v = crate::token::json::parse(bytes).ok()?;
        let m = crate::token::json::Members::of(&v)?;
        let Value::Array(e) = m.get("e")? else { return None };
        let mut entries = HashMap::with_capacity(e.len());
        for entry in e {
            let [Value::Str(k), min_ver, expires_at] = entry_array(entry)? else { return None };
            let expires_at = match expires_at {
                Value::Null => None,
                v => Some(v.as_u64()?),
            };
            entries.insert(k.clone(), Min { min_ver: min_ver.as_u64()?, expires_at });
        }
        Some(RevocationSet {
            entries,
            cursor: m.opt_string("c")?,
            synced_at_ms: m.opt_u64("t")?,
            generation: m.u64("g")?,
            floor: m.u64("f")?,
            store: m.opt_string("s")?,
            // Per worker: what a poller promised travels in the meta key.
            held_until_ms: None,
        })
    }
}

/// `[key, min_ver, expires_at]` of an encoded set.
fn entry_array(v: &Value) -> Option<&[Value; 3]> {
    match v {
        Value::Array(items) => items.as_slice().try_into().ok(),
        _ => None,
    }
}

/// A short fingerprint of an encoded set: workers reload when it changes.
pub fn fingerprint(encoded: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(encoded)[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Answers of live checks (`GET /v1/versions`), per worker, for rules with
/// `fresh: true`. A live answer is used by the requests that waited for it,
/// and by later requests while younger than the rule's `max_staleness_ms`
/// (with `0`, by none: each request asks). The feed's minimum still applies
/// when larger.
#[derive(Debug, Default)]
pub struct LiveVersions {
    /// Key → (minimum version, received at, answer number).
    known: HashMap<String, (u64, u64, u64)>,
    /// Answers recorded so far: numbers them, so that a request knows which
    /// answers came after it asked (milliseconds cannot tell: an answer and
    /// the next request often share one).
    answers: u64,
}

impl LiveVersions {
    /// Records an answer received at `now_ms`; `false` when it does not
    /// parse or misses a key that was asked.
    pub fn record(&mut self, asked: &[String], body: &[u8], now_ms: u64) -> bool {
        let Some(answer) = VersionsAnswer::parse(body) else {
            return false;
        };
        if !asked.iter().all(|k| answer.versions.contains_key(k)) {
            return false;
        }
        self.answers += 1;
        for k in asked {
            let Some(&v) = answer.versions.get(k) else { continue };
            let min = self.known.get(k).map_or(v, |(old, _, _)| v.max(*old));
            self.known.insert(k.clone(), (min, now_ms, self.answers));
        }
        // Bounded: answers older than a minute are of no use to any rule.
        if self.known.len() > 10_000 {
            self.known.retain(|_, (_, at, _)| now_ms.saturating_sub(*at) < 60_000);
        }
        true
    }

    /// Where the answers stand: a request that pauses for a live check keeps
    /// this, and every answer recorded after it is one it waited for.
    pub fn mark(&self) -> u64 {
        self.answers
    }

    /// The live minimum of `key`: an answer recorded after `waited_from` (a
    /// [`mark`](Self::mark)), or else one at most `max_age_ms` old, where `0`
    /// reuses none.
    pub fn get(&self, key: &str, now_ms: u64, max_age_ms: u64, waited_from: Option<u64>) -> Option<u64> {
        let (min, at, answer) = self.known.get(key)?;
        let waited_for = waited_from.is_some_and(|mark| *answer > mark);
        let young = max_age_ms > 0 && now_ms.saturating_sub(*at) <= max_age_ms;
        (waited_for || young).then_some(*min)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn page(snapshot: bool, cursor: &str, entries: &[(&str, u64, Option<u64>)]) -> FeedPage {
        FeedPage {
            snapshot,
            cursor: cursor.into(),
            store: None,
            floor: 0,
            now: None,
            entries: entries
                .iter()
                .map(|(k, v, e)| Entry { key: k.to_string(), min_ver: *v, expires_at: *e })
                .collect(),
        }
    }

    #[test]
    fn a_minimum_never_goes_backwards() {
        let mut set = RevocationSet::new();
        set.apply(page(true, "s.1", &[("sub:alice", 5, Some(1000))]), 100_000);
        // A later snapshot from a store that lost the bump says 3.
        set.apply(page(true, "t.1", &[("sub:alice", 3, Some(900))]), 101_000);
        assert_eq!(set.min_version("sub:alice"), Some(5));
        assert!(set.is_revoked("alice", None, 4));
        assert!(!set.is_revoked("alice", None, 5));
    }

    #[test]
    fn a_new_store_revokes_every_older_token_and_its_floor_never_goes_back() {
        let mut set = RevocationSet::new();
        let mut first = page(true, "old.9", &[("sub:alice", 50, Some(1000))]);
        first.store = Some("old".into());
        first.floor = 10;
        set.apply(first, 1_000);
        assert!(set.is_revoked("bob", None, 9), "below the floor");
        assert!(!set.is_revoked("bob", None, 10));
        // The store was lost and recreated at a later time: every token the
        // old one issued (all below 100) is revoked, bumped or not.
        let mut second = page(true, "new.1", &[]);
        second.store = Some("new".into());
        second.floor = 100;
        assert!(set.is_other_store(&second));
        set.apply(second, 2_000);
        assert!(!set.is_other_store(&page(false, "new.2", &[])), "a page without a store id is not another store");
        // (sub, ver, revoked?)
        for (sub, ver, revoked) in [("bob", 10, true), ("bob", 99, true), ("bob", 100, false), ("alice", 60, true)] {
            assert_eq!(set.is_revoked(sub, None, ver), revoked, "{sub} {ver}");
        }
        // A page naming a lower floor (an older store answering again) does not lower it.
        let mut back = page(true, "old.10", &[]);
        back.store = Some("old".into());
        back.floor = 10;
        set.apply(back, 3_000);
        assert_eq!(set.floor(), 100);
        let shared = RevocationSet::decode(&set.encode()).expect("decodes");
        assert_eq!(shared.floor(), 100, "the floor travels to the other workers");
        assert!(shared.is_other_store(&{ let mut p = page(true, "x.1", &[]); p.store = Some("new".into()); p }));
    }

    #[test]
    fn entries_missing_from_a_snapshot_stay_until_they_expire() {
        let mut set = RevocationSet::new();
        set.apply(page(false, "s.1", &[("sid:s1", 2, Some(200))]), 100_000);
        set.apply(page(true, "s.2", &[]), 150_000);
        assert_eq!(set.min_version("sid:s1"), Some(2));
        // An edge may accept the token until exp + its skew: the entry stays
        // until then, whatever skew the authority assumed.
        set.apply(page(false, "s.3", &[]), (199 + MAX_CLOCK_SKEW) * 1000);
        assert_eq!(set.min_version("sid:s1"), Some(2), "still within any edge's skew");
        set.apply(page(false, "s.4", &[]), (200 + MAX_CLOCK_SKEW) * 1000);
        assert_eq!(set.min_version("sid:s1"), None, "past exp and every skew");
    }

    #[test]
    fn never_expiring_entries_stay() {
        let mut set = RevocationSet::new();
        set.apply(page(true, "s.1", &[("sid:api1", 1, None), ("sid:x", 1, Some(5))]), 1_000);
        assert!(set.prune(u64::MAX - 1));
        assert_eq!(set.min_version("sid:api1"), Some(1));
        // A later finite expiry does not shorten a never-expiring entry.
        set.apply(page(false, "s.2", &[("sid:api1", 1, Some(10))]), 2_000);
        set.prune(11 + MAX_CLOCK_SKEW);
        assert_eq!(set.min_version("sid:api1"), Some(1));
    }

    #[test]
    fn revocation_table() {
        let mut set = RevocationSet::new();
        set.apply(page(true, "s.1", &[("sub:alice", 5, None), ("sid:s1", 7, None)]), 0);
        // (sub, sid, ver, revoked?)
        let cases = [
            ("alice", None, 4, true),
            ("alice", None, 5, false),
            ("alice", Some("s1"), 6, true),
            ("alice", Some("s1"), 7, false),
            ("alice", Some("s2"), 5, false),
            ("bob", Some("s1"), 0, true),
            ("bob", None, 0, false),
            ("bob", Some("s2"), 0, false),
        ];
        for (sub, sid, ver, revoked) in cases {
            assert_eq!(set.is_revoked(sub, sid, ver), revoked, "{sub} {sid:?} {ver}");
        }
    }

    #[test]
    fn freshness_states() {
        let mut set = RevocationSet::new();
        assert_eq!(set.freshness(100_000, 3_000), Freshness::NeverSynced);
        set.apply(page(true, "s.1", &[]), 100_000);
        assert_eq!(set.freshness(103_000, 3_000), Freshness::Fresh);
        assert_eq!(set.freshness(103_001, 3_000), Freshness::Stale(3_001));
        // A held long poll keeps it fresh until its window ends, then the
        // age counts from the last answer again.
        set.set_held_until_ms(Some(125_000));
        assert_eq!(set.freshness(125_000, 3_000), Freshness::Fresh);
        assert_eq!(set.freshness(125_001, 3_000), Freshness::Stale(25_001));
        // Never synced stays never synced, held or not.
        let mut never = RevocationSet::new();
        never.set_held_until_ms(Some(u64::MAX));
        assert_eq!(never.freshness(1, 3_000), Freshness::NeverSynced);
    }

    #[test]
    fn generation_moves_only_on_change() {
        let mut set = RevocationSet::new();
        assert!(set.apply(page(true, "s.1", &[("sub:a", 1, None)]), 1));
        let g = set.generation();
        assert!(!set.apply(page(false, "s.1", &[("sub:a", 1, None)]), 2), "same content, same cursor");
        assert_eq!(set.generation(), g);
        assert_eq!(set.synced_at_ms(), Some(2), "the sync time still moves");
        assert!(set.apply(page(false, "s.2", &[("sub:a", 2, None)]), 3));
        assert!(set.generation() > g);
        assert_eq!(set.feed_path(0), "/v1/revocations?after=s.2");
        assert_eq!(set.feed_path(20_000), "/v1/revocations?after=s.2&wait=20000");
        set.forget_cursor();
        assert_eq!(set.feed_path(20_000), "/v1/revocations", "a snapshot is never held");
    }

    #[test]
    fn live_versions_table() {
        let mut live = LiveVersions::default();
        let asked = vec!["sub:a".to_string(), "sid:s".to_string()];
        let before = live.mark();
        assert!(live.record(&asked, br#"{"versions":{"sub:a":3,"sid:s":0}}"#, 1_000));
        let after = live.mark();
        // (key, now, max age, waited from, answer)
        let cases = [
            ("sub:a", 1_000, 0, None, None),
            ("sub:a", 1_000, 0, Some(before), Some(3)),
            ("sub:a", 9_000, 0, Some(before), Some(3)),
            ("sub:a", 1_000, 0, Some(after), None),
            ("sub:a", 1_000, 1, None, Some(3)),
            ("sub:a", 1_500, 500, None, Some(3)),
            ("sub:a", 1_501, 500, None, None),
            ("sid:s", 1_000, 0, Some(before), Some(0)),
            ("sub:b", 1_000, 500, Some(before), None),
        ];
        for (key, now, age, from, want) in cases {
            assert_eq!(live.get(key, now, age, from), want, "{key} at {now}, max age {age}, waited from {from:?}");
        }
        // A lower later answer does not lower the minimum.
        assert!(live.record(&asked, br#"{"versions":{"sub:a":1,"sid:s":0}}"#, 2_000));
        assert_eq!(live.get("sub:a", 2_000, 0, Some(after)), Some(3));
        // Answers missing a key, or not JSON, are refused whole.
        assert!(!live.record(&asked, br#"{"versions":{"sub:a":9}}"#, 3_000));
        assert!(!live.record(&asked, b"<html>", 3_000));
        // More keys than any question has (MAX_VERSION_KEYS): refused whole
        // before any is read, however many (an 8 MB answer is not read key
        // by key).
        let mut long = String::from(r#"{"versions":{"sub:a":9,"sid:s":9"#);
        for i in (0..crate::protocol::MAX_VERSION_KEYS - 1).rev() {
            long.push_str(&format!(r#","sub:x{i:05}":9"#));
        }
        long.push_str("}}");
        assert!(!live.record(&asked, long.as_bytes(), 3_000));
        assert_eq!(live.get("sub:a", 3_000, 5_000, None), Some(3));
        let at_most = long.replacen(r#","sub:x00000":9"#, "", 1);
        assert!(live.record(&asked, at_most.as_bytes(), 3_000), "MAX_VERSION_KEYS keys are an answer");
        assert_eq!(live.get("sub:a", 3_000, 5_000, None), Some(9));
    }

    #[test]
    fn shared_encoding_round_trips() {
        let mut set = RevocationSet::new();
        set.apply(page(true, "s.9", &[("sub:a", 3, None), ("sid:b", 4, Some(99))]), 7);
        let back = RevocationSet::decode(&set.encode()).expect("decodes");
        assert_eq!(back.cursor(), Some("s.9"));
        assert_eq!(back.synced_at_ms(), Some(7));
        assert_eq!(back.generation(), set.generation());
        assert_eq!(back.min_version("sub:a"), Some(3));
        assert_eq!(back.min_version("sid:b"), Some(4));
        assert!(RevocationSet::decode(b"garbage").is_none());
    }

    #[test]
    fn feed_parsing_refuses_what_it_cannot_use() {
        let ok = br#"{"snapshot":false,"entries":[{"key":"sub:a","min_ver":2,"expires_at":null}],"cursor":"s.3","now":5}"#;
        assert_eq!(FeedPage::parse(ok).map(|p| p.entries.len()), Ok(1));
        // (body, error)
        let cases: [(&[u8], FeedError); 4] = [
            (b"<html>", FeedError::NotJson),
            (br#"{"snapshot":false,"entries":[{"key":"sub:a","min_ver":-1,"expires_at":null}],"cursor":"c"}"#, FeedError::NotJson),
            (br#"{"snapshot":false,"entries":[{"key":"usr:a","min_ver":1,"expires_at":null}],"cursor":"c"}"#, FeedError::BadKey),
            (br#"{"snapshot":true,"entries":[]}"#, FeedError::NotJson),
        ];
        for (body, want) in cases {
            assert_eq!(FeedPage::parse(body), Err(want), "{}", String::from_utf8_lossy(body));
        }
    }

    /// The shared encoding is the bytes serde_json::json! wrote (members in
    /// name order, absent ones null, entries sorted by key): equal sets
    /// encode equally across module builds, so their fingerprints agree.
    #[test]
    fn shared_encoding_is_pinned() {
        let rows: &[&str] = &[
            r#"{"c":"s.1","e":[["sid:x\"y",4,99],["sub:a",3,null]],"f":7,"g":2,"s":"st","t":5}"#,
            r#"{"c":null,"e":[],"f":0,"g":0,"s":null,"t":null}"#,
        ];
        for bytes in rows {
            let set = RevocationSet::decode(bytes.as_bytes()).expect("decodes");
            assert_eq!(String::from_utf8(set.encode()).unwrap(), *bytes);
        }
    }
}
