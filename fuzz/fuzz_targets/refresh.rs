//! The token endpoint's answer, shared refresh slots and sealed pairs.
//! Properties: `properties::refresh::check_token_response`,
//! `check_slot_bytes`, `check_open`, `check_seal`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::refresh::Outcome;
use tollgate_fuzz::cases::{refresh_case, RefreshCase};
use tollgate_fuzz::properties::refresh::{check_open, check_seal, check_slot_bytes, check_token_response, tokens};

fuzz_target!(|data: &[u8]| {
    let result = match refresh_case(data) {
        None => return,
        // The given status, and every status that matters (a 201 for a
        // 200 takes no other branch: coverage alone would not find it).
        Some(RefreshCase::Response { status, body }) => [status, None, Some(200), Some(201), Some(204), Some(400), Some(401), Some(403), Some(500)]
            .into_iter()
            .try_for_each(|s| check_token_response(s, body)),
        Some(RefreshCase::Slot { now_ms, refresh_token, bytes }) => check_slot_bytes(bytes, &refresh_token, now_ms),
        Some(RefreshCase::Open { refresh_token, text }) => check_open(&text, &refresh_token),
        Some(RefreshCase::Seal(c)) => {
            let outcome = match c.outcome % 3 {
                0 => Outcome::Refreshed(tokens(&c.access_token, &c.refresh_token, c.expires_in)),
                1 => Outcome::Rejected,
                _ => Outcome::Unavailable,
            };
            check_seal(&outcome, &c.presented, &c.other, u64::from(c.now_ms), usize::from(c.flip))
        }
    };
    if let Err(why) = result {
        panic!("refresh: {why}");
    }
});
