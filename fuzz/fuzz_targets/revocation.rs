//! Feed pages, the revocation set and its shared-data form, live answers:
//! any sequence of steps against a model. Property:
//! `properties::revocation::check_steps`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::cases::revocation_steps;
use tollgate_fuzz::properties::revocation::check_steps;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = check_steps(&revocation_steps(data)) {
        panic!("revocation: {why}");
    }
});
