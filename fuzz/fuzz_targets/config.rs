//! `Config::parse` on any bytes. Property: `properties::config::check_config`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::properties::config::check_config;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = check_config(data) {
        panic!("config: {why}");
    }
});
