//! Version keys, feed entries and cursors, as plain values and functions.
//!
//! A cursor is `<store_id>.<seq>`: the id of the store that issued it and the
//! sequence number of the last entry it covers. Sequence numbers are assigned
//! inside the same atomic step as the bump they label, as
//! `max(high_water + 1, now in µs)`, so they only grow, survive restarts with
//! the store, and keep growing past a cursor even if a store lost its newest
//! writes (the edge then gets 410 and re-snapshots rather than skipping).


use std::fmt;

// Version keys, their checks and the expiry rules are the wire contract
// with the edge: defined once, in the filter crate's protocol module.
pub use tollgate::protocol::{check_id, is_live, merge_expiry, KeyError, VersionKey, MAX_KEY_LEN};

/// One feed entry: the wire type, defined once in the protocol module.
pub use tollgate::protocol::FeedEntry as Entry;

/// The next sequence number: strictly above the high-water mark, and at
/// least the current time in microseconds.
pub fn next_seq(high_water: u64, now_us: u64) -> u64 {
    high_water.saturating_add(1).max(now_us)
}

/// A bumped key's new minimum: above every version handed out so far
/// (`high_water`, the shared version counter), above the key's `current`
/// minimum, and at least the current time in microseconds. The time floor
/// keeps new minimums above versions handed out before a store lost writes
/// (failover to a lagging replica, restore from a backup) and so fell back.
/// Now in µs is ~1.8e15 and stays below the codec's `MAX_VERSION` (2^53 - 1,
/// ~9.0e15) until the year 2255.
pub fn next_min(high_water: u64, current: u64, now_us: u64) -> u64 {
    high_water.max(current).saturating_add(1).max(now_us)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub store_id: String,
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorError {
    Malformed,
    OtherStore,
    /// Beyond the store's high-water mark: the store lost writes or was reset.
    Ahead,
}

impl CursorError {
    pub fn description(self) -> &'static str {
        match self {
            CursorError::Malformed => "cursor is malformed; fetch a new snapshot",
            CursorError::OtherStore => "cursor is from another store; fetch a new snapshot",
            CursorError::Ahead => "cursor is ahead of the store; fetch a new snapshot",
        }
    }
}

impl Cursor {
    pub fn parse(s: &str) -> Result<Cursor, CursorError> {
        let (id, seq) = s.rsplit_once('.').ok_or(CursorError::Malformed)?;
        if id.is_empty() || id.len() > 64 || seq.is_empty() || seq.len() > 20 {
            return Err(CursorError::Malformed);
        }
        if !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CursorError::Malformed);
        }
        let seq = seq.parse().map_err(|_| CursorError::Malformed)?;
        Ok(Cursor { store_id: id.to_owned(), seq })
    }

    /// Checks a parsed cursor against the store that is asked.
    pub fn check(&self, store_id: &str, high_water: u64) -> Result<u64, CursorError> {
        if self.store_id != store_id {
            return Err(CursorError::OtherStore);
        }
        if self.seq > high_water {
            return Err(CursorError::Ahead);
        }
        Ok(self.seq)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}.{}", self.store_id, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys() {
        let cases: &[(&str, Result<&str, KeyError>)] = &[
            ("sub:alice", Ok("sub:alice")),
            ("sid:s_abc", Ok("sid:s_abc")),
            ("sub:a:b", Ok("sub:a:b")),
            ("sub:", Err(KeyError::Empty)),
            ("usr:alice", Err(KeyError::UnknownKind)),
            ("alice", Err(KeyError::UnknownKind)),
            ("sub:al ice", Err(KeyError::BadCharacter)),
            ("sub:al\nice", Err(KeyError::BadCharacter)),
        ];
        for (input, want) in cases {
            let got = VersionKey::parse(input).map(|k| k.to_string());
            assert_eq!(got.as_deref().map_err(|e| *e), want.as_ref().map(|s| *s).map_err(|e| *e), "{input}");
        }
        assert_eq!(VersionKey::parse(&format!("sub:{}", "a".repeat(300))), Err(KeyError::TooLong));
    }

    #[test]
    fn cursors() {
        let c = Cursor { store_id: "st1".into(), seq: 42 };
        assert_eq!(Cursor::parse(&c.to_string()), Ok(c.clone()));
        assert_eq!(c.check("st1", 42), Ok(42));
        assert_eq!(c.check("st1", 41), Err(CursorError::Ahead));
        assert_eq!(c.check("st2", 100), Err(CursorError::OtherStore));
        for bad in ["", "st1", "st1.", ".5", "st1.-1", "st1.1e3", "st1.99999999999999999999999"] {
            assert_eq!(Cursor::parse(bad), Err(CursorError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn expiry_merge_and_seq() {
        assert_eq!(merge_expiry(Some(5), Some(7)), Some(7));
        assert_eq!(merge_expiry(None, Some(7)), None);
        assert_eq!(merge_expiry(Some(7), None), None);
        assert!(is_live(None, u64::MAX));
        assert!(is_live(Some(10), 9));
        assert!(!is_live(Some(10), 10));
        assert_eq!(next_seq(5, 3), 6);
        assert_eq!(next_seq(5, 100), 100);
        assert_eq!(next_seq(u64::MAX, 0), u64::MAX);
        assert_eq!(next_min(5, 3, 0), 6);
        assert_eq!(next_min(5, 9, 0), 10);
        assert_eq!(next_min(5, 3, 1_000), 1_000);
        // Year 2255 in µs still fits the codec's `ver`.
        let y2255_us: u64 = 285 * 31_557_600 * 1_000_000;
        assert!(next_min(0, 0, y2255_us) <= tollgate::token::claims::MAX_VERSION, "{y2255_us}");
    }
}
