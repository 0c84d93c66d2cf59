//! proxy-wasm shared data of one Envoy process, as Envoy implements it
//! (proxy-wasm-cpp-host `SharedData`, read through the Rust SDK):
//!
//! - a get of a key never set is `NotFound`; the SDK answers `(None, None)`;
//! - a get of a key returns its value and its compare-and-set number; an
//!   empty value comes back as `(None, Some(cas))` (the host hands an empty
//!   string over as a null pointer, which the SDK reads as no value);
//! - a set with cas `None` (0) writes unconditionally;
//! - a set of an existing key with a cas other than its current one fails
//!   with `CasMismatch`;
//! - a set of a key that does not exist succeeds **whatever the cas**: there
//!   is no "create if absent", so two workers that both read `NotFound` and
//!   both write both succeed;
//! - keys are never removed; every successful set takes the next number of
//!   one process-wide counter (starting at 1, skipping 0 on wrap).
//!
//! Each operation is atomic (one mutex in Envoy); two operations of one
//! worker are not atomic together: other workers run in between (the
//! scheduler interleaves workers at every host call).

use std::collections::BTreeMap;
use tollgate::edge::CasMismatch;

#[derive(Debug, Default)]
pub struct SharedData {
    map: BTreeMap<String, (Vec<u8>, u32)>,
    cas: u32,
}

impl SharedData {
    pub fn new() -> SharedData {
        SharedData { map: BTreeMap::new(), cas: 1 }
    }

    fn next_cas(&mut self) -> u32 {
        let n = self.cas;
        self.cas = self.cas.wrapping_add(1);
        if self.cas == 0 {
            self.cas = 1;
        }
        n
    }

    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.map.get(key) {
            None => (None, None),
            Some((v, cas)) if v.is_empty() => (None, Some(*cas)),
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
        }
    }

    pub fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        let cas = cas.unwrap_or(0);
        if let Some((_, current)) = self.map.get(key) {
            if cas != 0 && cas != *current {
                return Err(CasMismatch);
            }
        }
        let n = self.next_cas();
        self.map.insert(key.to_owned(), (value.to_vec(), n));
        Ok(())
    }

    /// The raw value, for the checks (not a host operation).
    pub fn peek(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key).map(|(v, _)| v.as_slice())
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }

    #[cfg(test)]
    fn with_counter(cas: u32) -> SharedData {
        SharedData { map: BTreeMap::new(), cas }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_semantics() {
        let mut s = SharedData::new();
        assert_eq!(s.get("k"), (None, None), "never set: NotFound");
        // A missing key takes any cas: there is no create-if-absent.
        assert_eq!(s.set("k", b"a", Some(77)), Ok(()));
        let (v, cas) = s.get("k");
        assert_eq!(v.as_deref(), Some(&b"a"[..]));
        let cas = cas.expect("a cas");
        assert_eq!(s.set("k", b"b", Some(cas + 1)), Err(CasMismatch), "stale cas");
        assert_eq!(s.get("k").0.as_deref(), Some(&b"a"[..]), "a failed set changes nothing");
        assert_eq!(s.set("k", b"b", Some(cas)), Ok(()));
        assert_eq!(s.set("k", b"c", Some(cas)), Err(CasMismatch), "the cas moved with the write");
        assert_eq!(s.set("k", b"c", None), Ok(()), "no cas: unconditional");
        // An empty value reads as no value, with a cas that still guards it.
        s.set("k", b"", None).unwrap();
        let (v, cas) = s.get("k");
        assert_eq!(v, None);
        let cas = cas.expect("an empty value keeps its cas");
        assert_eq!(s.set("k", b"d", Some(cas.wrapping_add(5))), Err(CasMismatch));
        assert_eq!(s.set("k", b"d", Some(cas)), Ok(()));
    }

    #[test]
    fn two_workers_that_read_not_found_both_write() {
        let mut s = SharedData::new();
        let (_, cas_a) = s.get("slot");
        let (_, cas_b) = s.get("slot");
        assert_eq!(s.set("slot", b"claimed by a", cas_a), Ok(()));
        assert_eq!(s.set("slot", b"claimed by b", cas_b), Ok(()), "Envoy checks no cas on a missing key");
    }

    #[test]
    fn the_counter_skips_zero() {
        let mut s = SharedData::with_counter(u32::MAX);
        s.set("a", b"1", None).unwrap();
        assert_eq!(s.get("a").1, Some(u32::MAX));
        s.set("b", b"1", None).unwrap();
        assert_eq!(s.get("b").1, Some(1), "0 is never a cas");
    }
}
