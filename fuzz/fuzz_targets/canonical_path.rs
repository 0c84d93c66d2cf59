//! `tollgate::request::canonical_path` on any text, against a segment-wise
//! model. Property: `properties::request::check_canonical_path`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::properties::request::check_canonical_path;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Err(why) = check_canonical_path(raw) {
        panic!("canonical_path: {why}");
    }
});
