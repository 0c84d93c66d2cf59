//! A per-worker cache of verified tokens: exact token bytes → the claims
//! they verified to. A hit skips base64, JSON and the MAC; everything that
//! depends on the request or the clock — time claims, revocation, policy,
//! scopes, hosts, the header pair's user — is still checked on every request
//! by the authenticator, exactly as on a miss.
//!
//! - Keyed by a cheap hash of the MAC segment (HMAC output: already uniform,
//!   and a forger cannot choose a valid one), with a full comparison of the
//!   token on every hit — never a hash alone.
//! - Bounded: `capacity` entries, evicted by CLOCK (second chance), O(1)
//!   amortized. A colliding or flooding client can only cause misses.
//! - Only tokens that verified (signature, header, types, issuer, audience)
//!   are stored; an entry whose `exp` has passed is dropped when met, and an
//!   expired token is never inserted. The cache lives in the worker's engine,
//!   which a new configuration replaces: a key removed from the document
//!   empties it.
//!
//! Memory: each entry holds the token (its length, ~300–600 bytes for
//! typical claims) and its claims (~150 bytes plus the strings), so the
//! default 1024 entries cost about 1 MiB per worker.

use crate::token::{Claims, TokenError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Counts since the last [`TokenCache::take_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

struct Entry {
    key: u64,
    token: Box<str>,
    claims: Arc<Claims>,
    referenced: bool,
}

#[derive(Default)]
struct Inner {
    index: HashMap<u64, usize, BuildHasherDefault<Identity>>,
    entries: Vec<Entry>,
    hand: usize,
    stats: Stats,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        // Never the tokens.
        write!(f, "TokenCache {{ capacity: {}, len: {} }}", self.capacity, self.len())
    }
}

/// See the module documentation. Interior mutability: the authenticator
/// reads it through a shared reference; nothing here calls the host.
pub struct TokenCache {
    capacity: usize,
    inner: RefCell<Inner>,
}

/// The key is already a hash: no second one.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// FNV-1a over the MAC segment (the bytes after the last `.`).
fn key(token: &str) -> u64 {
    let mac = token.rsplit('.').next().unwrap_or(token);
    mac.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache { capacity, inner: RefCell::new(Inner::default()) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.inner.borrow().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The claims `token` verified to: from the cache, or from `verify`
    /// (every check of the codec at `now`; only a success is stored). On a
    /// hit the caller runs the clock-dependent checks again
    /// ([`crate::token::ClaimRules::check_time`]): the token passed every
    /// other check, so it is refused exactly as without the cache. An entry
    /// whose `exp` (seconds) has passed is dropped when met.
    pub fn get_or_verify(
        &self,
        token: &str,
        verify: impl FnOnce() -> Result<Claims, TokenError>,
        now: u64,
    ) -> Result<Arc<Claims>, TokenError> {
        if self.capacity == 0 {
            return verify().map(Arc::new);
        }
        let k = key(token);
        {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            if let Some(&i) = inner.index.get(&k) {
                let e = &mut inner.entries[i];
                if &*e.token == token {
                    if e.claims.exp.is_some_and(|exp| exp <= now) {
                        // Past `exp`: never served again; the slot is reused
                        // by the next insertion that reaches it.
                        inner.index.remove(&k);
                    } else {
                        e.referenced = true;
                        inner.stats.hits += 1;
                        return Ok(Arc::clone(&e.claims));
                    }
                }
            }
            inner.stats.misses += 1;
        }
        let claims = Arc::new(verify()?);
        if claims.exp.is_none_or(|exp| exp > now) {
            self.insert(k, token, Arc::clone(&claims));
        }
        Ok(claims)
    }

    fn insert(&self, k: u64, token: &str, claims: Arc<Claims>) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let entry = Entry { key: k, token: token.into(), claims, referenced: false };
        if let Some(&i) = inner.index.get(&k) {
            // Same key, other token (a collision): the newer one takes the slot.
            inner.entries[i] = entry;
            return;
        }
        if inner.entries.len() < self.capacity {
            inner.index.insert(k, inner.entries.len());
            inner.entries.push(entry);
            return;
        }
        // CLOCK: skip (and clear) recently used entries, evict the first
        // that was not; at most one full turn plus one step.
        loop {
            let i = inner.hand;
            inner.hand = (inner.hand + 1) % self.capacity;
            let e = &mut inner.entries[i];
            if e.referenced {
                e.referenced = false;
                continue;
            }
            if inner.index.get(&e.key) == Some(&i) {
                inner.index.remove(&e.key);
            }
            inner.index.insert(k, i);
            inner.entries[i] = entry;
            inner.stats.evictions += 1;
            return;
        }
    }

    /// The counts since the last call (the engine adds them to its stats).
    pub fn take_stats(&self) -> Stats {
        std::mem::take(&mut self.inner.borrow_mut().stats)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use std::cell::Cell;

    fn claims(sub: &str, exp: Option<u64>) -> Claims {
        Claims {
            iss: "i".into(),
            sub: sub.into(),
            aud: vec!["a".into()],
            exp,
            nbf: None,
            iat: None,
            jti: None,
            ver: 1,
            sid: None,
            scope: None,
            hosts: None,
        }
    }

    #[test]
    fn a_hit_skips_verification_and_compares_the_whole_token() {
        let cache = TokenCache::new(4);
        let verified = Cell::new(0);
        let verify = |sub: &'static str| {
            let verified = &verified;
            move || {
                verified.set(verified.get() + 1);
                Ok(claims(sub, Some(100)))
            }
        };
        for _ in 0..10 {
            assert_eq!(cache.get_or_verify("h.p.MAC1", verify("alice"), 50).unwrap().sub, "alice");
        }
        assert_eq!(verified.get(), 1, "base64, JSON and the MAC ran once for ten requests");
        // The same MAC segment with another header or payload is another
        // token: never served from the first one's entry.
        assert_eq!(cache.get_or_verify("h.other.MAC1", verify("mallory"), 50).unwrap().sub, "mallory");
        assert_eq!(verified.get(), 2);
        assert_eq!(cache.take_stats(), Stats { hits: 9, misses: 2, evictions: 0 });
    }

    #[test]
    fn failures_are_not_cached_and_entries_never_outlive_exp() {
        let cache = TokenCache::new(4);
        assert_eq!(cache.get_or_verify("a.b.c", || Err(TokenError::SignatureInvalid), 0).err(), Some(TokenError::SignatureInvalid));
        assert!(cache.is_empty());
        cache.get_or_verify("a.b.d", || Ok(claims("x", Some(100))), 99).unwrap();
        assert_eq!(cache.len(), 1);
        let again = Cell::new(false);
        let r = cache.get_or_verify("a.b.d", || { again.set(true); Ok(claims("x", Some(100))) }, 100);
        assert!(again.get(), "at exp the entry is not served: verified (and time-checked) again");
        assert!(r.is_ok(), "the caller's time check refuses it, as without a cache");
        // An expired token is never inserted.
        let cache = TokenCache::new(4);
        cache.get_or_verify("a.b.e", || Ok(claims("x", Some(10))), 20).unwrap();
        assert!(cache.is_empty());
        // Never-expiring tokens are cached.
        cache.get_or_verify("a.b.f", || Ok(claims("x", None)), 20).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn bounded_with_clock_eviction() {
        let cache = TokenCache::new(3);
        let ok = |s: &'static str| move || Ok(claims(s, None));
        for t in ["t.t.1", "t.t.2", "t.t.3"] {
            cache.get_or_verify(t, ok("x"), 0).unwrap();
        }
        // 1 is used again: it gets a second chance; 2 is evicted for 4.
        cache.get_or_verify("t.t.1", ok("x"), 0).unwrap();
        cache.get_or_verify("t.t.4", ok("x"), 0).unwrap();
        assert_eq!(cache.len(), 3);
        let missed = Cell::new(0);
        for t in ["t.t.1", "t.t.3", "t.t.4", "t.t.2"] {
            cache.get_or_verify(t, || { missed.set(missed.get() + 1); Ok(claims("x", None)) }, 0).unwrap();
        }
        assert_eq!(missed.get(), 1, "only the evicted token was verified again");
        for i in 0..1000 {
            cache.get_or_verify(&format!("f.f.{i}"), ok("x"), 0).unwrap();
        }
        assert_eq!(cache.len(), 3, "a flood of new tokens never grows it");
        assert!(cache.take_stats().evictions >= 1000);
    }

    #[test]
    fn capacity_zero_disables_it() {
        let cache = TokenCache::new(0);
        let n = Cell::new(0);
        for _ in 0..3 {
            cache.get_or_verify("a.b.c", || { n.set(n.get() + 1); Ok(claims("x", None)) }, 0).unwrap();
        }
        assert_eq!((n.get(), cache.len()), (3, 0));
    }
}
