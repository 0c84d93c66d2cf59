//! The per-worker cache of verified tokens against the codec alone: any
//! sequence of tokens and clocks, any capacity. Property:
//! `properties::cache::check_cache`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tollgate_fuzz::cases::{cache_pool, CacheCase};
use tollgate_fuzz::properties::cache::check_cache;

static POOL: OnceLock<Vec<String>> = OnceLock::new();

fuzz_target!(|case: CacheCase| {
    let steps = case.steps(POOL.get_or_init(cache_pool));
    if let Err(why) = check_cache(case.capacity(), &steps) {
        panic!("token_cache: {why}");
    }
});
