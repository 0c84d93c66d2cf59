//! Plain data between the hooks and the engine: a callout's answer, the
//! worker slot of an Envoy worker, the clock. No Envoy calls: unit-tested.

use std::time::{SystemTime, UNIX_EPOCH};

/// A callout's answer as the engine wants it ([`tollgate::edge::Engine::on_callout`]):
/// `status` `None` when the call failed in transport; `body` empty when it
/// was larger than the engine reads ([`tollgate::revocation::MAX_FEED_BYTES`]),
/// `body_size` the size Envoy reported either way.
#[cfg_attr(test, allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutAnswer {
    pub status: Option<u16>,
    pub body: Vec<u8>,
    pub body_size: usize,
}

/// The `:status` of a response's headers.
pub fn status_of(headers: &[(String, Vec<u8>)]) -> Option<u16> {
    headers
        .iter()
        .find(|(n, _)| n == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<u16>().ok())
}

/// The engine of Envoy worker `index` among `workers` engines. Envoy numbers
/// its workers `0..concurrency`; an index beyond (a concurrency the module
/// did not see at configuration) shares an engine rather than failing.
pub fn worker_slot(index: u32, workers: usize) -> usize {
    (index as usize) % workers.max(1)
}

/// Milliseconds since the epoch (the engine's clock, as under proxy-wasm).
#[cfg_attr(test, allow(dead_code))]
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_read_from_the_status_pseudo_header() {
        let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect::<Vec<_>>();
        type Row<'a> = (&'a [(&'a str, &'a str)], Option<u16>);
        let table: [Row; 5] = [
            (&[(":status", "200"), ("content-type", "application/json")], Some(200)),
            (&[("content-type", "x"), (":status", "410")], Some(410)),
            (&[("status", "200")], None),
            (&[(":status", "two hundred")], None),
            (&[], None),
        ];
        for (headers, want) in table {
            assert_eq!(status_of(&h(headers)), want, "{headers:?}");
        }
        assert_eq!(status_of(&[(":status".into(), vec![0xff, 0xfe])]), None, "non-UTF-8 is no status");
    }

    #[test]
    fn every_worker_index_maps_to_an_engine() {
        assert_eq!(worker_slot(0, 2), 0);
        assert_eq!(worker_slot(1, 2), 1);
        assert_eq!(worker_slot(2, 2), 0, "an unexpected worker shares an engine");
        assert_eq!(worker_slot(5, 0), 0, "no engines configured: slot 0, never a division by zero");
    }
}
