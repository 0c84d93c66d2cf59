//! `tollgate::extract::extract` on any sources, header list and path.
//! Property: `properties::extract::check_extract`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::cases::extract_case;
use tollgate_fuzz::properties::extract::check_extract;

fuzz_target!(|data: &[u8]| {
    let case = extract_case(data);
    if let Err(why) = check_extract(&case.sources, &case.headers, &case.path) {
        panic!("extract: {why}");
    }
});
