//! Differential: random claims minted with the codec verify exactly as the
//! model of the claim rules says; no single-byte change or truncation of a
//! minted token verifies. Property: `properties::token::check_mint`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::cases::MintCase;
use tollgate_fuzz::properties::token::check_mint;

fuzz_target!(|case: MintCase| {
    let (claims, rules, time) = case.build();
    if let Err(why) = check_mint(usize::from(case.key), &claims, &rules, time, usize::from(case.corrupt_at), case.corrupt_byte) {
        panic!("token_mint: {why}");
    }
});
