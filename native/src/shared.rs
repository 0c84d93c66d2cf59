//! What the workers of one Envoy share, in process: a map from key to value
//! with the compare-and-set semantics of proxy-wasm shared data as Envoy
//! implements it, so the engine ([`tollgate::edge::Host`]) behaves exactly
//! as under the Wasm host:
//!
//! - every write gives the entry a new CAS token (never 0);
//! - a write with a token succeeds only if the entry still has that token;
//!   a write without one (or to a key that does not exist) always succeeds;
//! - a read returns the value and its token, or nothing; an empty value
//!   reads as no value with a token (as Envoy answers it).
//!
//! `tests/sim/tests/native_shared.rs` compiles this very file and checks it
//! against the simulation's model of Envoy's shared data over random
//! operation sequences: the invariants the simulation proves on that model
//! hold for the native host's cross-worker state.
//!
//! One store per filter name (`filter_name` in the Envoy configuration),
//! as proxy-wasm has one per `vm_id`: two filters with different names keep
//! apart, a reloaded configuration of the same name continues where the old
//! one was.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use tollgate::edge::CasMismatch;

#[derive(Default)]
struct Inner {
    entries: BTreeMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

#[derive(Default)]
pub struct SharedData {
    inner: Mutex<Inner>,
}

impl SharedData {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere never leaves an entry half-written (each write
        // is one insert), so a poisoned lock's data is still whole.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.lock().entries.get(key) {
            Some((value, cas)) if value.is_empty() => (None, Some(*cas)),
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    pub fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        let mut inner = self.lock();
        if let (Some(expected), Some((_, current))) = (cas.filter(|c| *c != 0), inner.entries.get(key)) {
            if expected != *current {
                return Err(CasMismatch);
            }
        }
        inner.last_cas = match inner.last_cas.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        let token = inner.last_cas;
        inner.entries.insert(key.to_owned(), (value.to_vec(), token));
        Ok(())
    }
}

/// The store of filter `name`.
pub fn for_filter(name: &str) -> Arc<SharedData> {
    static STORES: OnceLock<Mutex<BTreeMap<String, Arc<SharedData>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut stores = stores.lock().unwrap_or_else(|p| p.into_inner());
    stores.entry(name.to_owned()).or_default().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_set_follows_envoy_shared_data() {
        let s = SharedData::default();
        assert_eq!(s.get("k"), (None, None), "a missing key reads as nothing");
        s.set("k", b"a", None).expect("an unconditional write succeeds");
        let (value, cas) = s.get("k");
        assert_eq!(value.as_deref(), Some(&b"a"[..]));
        let cas = cas.expect("a written key has a token");
        assert_ne!(cas, 0);
        s.set("k", b"b", Some(cas)).expect("a write with the current token succeeds");
        assert_eq!(s.set("k", b"c", Some(cas)), Err(CasMismatch), "a stale token loses");
        assert_eq!(s.get("k").0.as_deref(), Some(&b"b"[..]), "the losing write changed nothing");
        s.set("k", b"d", None).expect("no token: last writer wins");
        s.set("new", b"x", Some(12345)).expect("a key that does not exist takes any token, as in Envoy");
        s.set("k", b"e", Some(0)).expect("token 0 means unconditional");
    }

    #[test]
    fn every_write_gets_a_new_token() {
        let s = SharedData::default();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..100u32 {
            s.set(if i % 2 == 0 { "a" } else { "b" }, &i.to_be_bytes(), None).unwrap();
            let key = if i % 2 == 0 { "a" } else { "b" };
            assert!(seen.insert(s.get(key).1.unwrap()), "token reused at write {i}");
        }
    }

    #[test]
    fn racing_claims_have_exactly_one_winner() {
        // The refresh claim and the poller lease: N threads read the same
        // token and write with it; exactly one write may succeed.
        let s = Arc::new(SharedData::default());
        s.set("slot", b"free", None).unwrap();
        let cas = s.get("slot").1;
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let wins: usize = (0..8)
            .map(|i| {
                let (s, b) = (s.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    s.set("slot", format!("worker {i}").as_bytes(), cas).is_ok() as usize
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(wins, 1);
    }

    #[test]
    fn stores_are_per_filter_name() {
        let a = for_filter("test-store-a");
        let b = for_filter("test-store-b");
        a.set("k", b"1", None).unwrap();
        assert_eq!(b.get("k"), (None, None));
        assert_eq!(for_filter("test-store-a").get("k").0.as_deref(), Some(&b"1"[..]), "the same name is the same store");
    }
}
