//! `Verifier::verify` on any bytes, and on any header and payload signed
//! with a configured key. Properties: `properties::token::check_verify`,
//! `check_signed`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::cases::{token_case, TokenCase};
use tollgate_fuzz::properties::token::{check_signed, check_verify};

fuzz_target!(|data: &[u8]| {
    let result = match token_case(data) {
        None => return,
        Some(TokenCase::Raw { setup, time, token }) => check_verify(setup, token, time),
        Some(TokenCase::Signed { setup, time, key, header, payload }) => check_signed(setup, key, header, payload, time),
    };
    if let Err(why) = result {
        panic!("token_verify: {why}");
    }
});
