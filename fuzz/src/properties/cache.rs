//! The per-worker cache of verified tokens (`cache::TokenCache`), the way
//! the authenticator reads it: any sequence of tokens and clocks gives
//! exactly the answers of the codec without a cache.

use super::token::{verifier, KeySetup};
use super::{ensure, Check};
use std::cell::Cell;
use tollgate::cache::TokenCache;
use tollgate::token::TimeCheck;

/// A cache of `capacity` entries against the codec alone, step by step
/// (`(token, now)`, clocks in any order, going back included):
///
/// - the answer is the codec's (the same claims, or the same refusal) when
///   read as the authenticator reads it: through the cache, then the time
///   checks again;
/// - a hit never runs the codec, and every miss does; the counters say so;
/// - the cache never holds more than `capacity` entries.
pub fn check_cache(capacity: usize, steps: &[(String, u64)]) -> Check {
    let v = verifier(KeySetup::Rotation);
    let cache = TokenCache::new(capacity);
    for (i, (token, now)) in steps.iter().enumerate() {
        let plain = v.verify(token, TimeCheck::At(*now));
        let ran = Cell::new(false);
        let through = cache
            .get_or_verify(
                token,
                || {
                    ran.set(true);
                    v.verify(token, TimeCheck::At(*now))
                },
                *now,
            )
            .and_then(|c| v.rules.check_time(&c, *now).map(|()| (*c).clone()));
        ensure!(through == plain, "step {i} at {now}: through the cache {through:?}, the codec {plain:?} for {token:?}");
        let stats = cache.take_stats();
        if capacity > 0 {
            ensure!(stats.hits + stats.misses == 1, "step {i}: one lookup counted as {stats:?}");
            ensure!((stats.misses == 1) == ran.get(), "step {i}: the codec ran: {}, counted {stats:?}", ran.get());
        } else {
            ensure!(ran.get(), "step {i}: no cache, yet the codec did not run");
        }
        ensure!(cache.len() <= capacity, "step {i}: {} entries in a cache of {capacity}", cache.len());
    }
    Ok(())
}
