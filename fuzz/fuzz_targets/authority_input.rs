//! What the authority reads: form bodies, Basic client credentials, the
//! admin API's JSON body, and the filter's refresh request as the
//! authority reads it. Properties: `authority::check_case`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = tollgate_fuzz::authority::check_case(data) {
        panic!("authority_input: {why}");
    }
});
