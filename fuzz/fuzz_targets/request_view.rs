//! `RequestView::build` on any header list (values as bytes), under a
//! strict and a lax configuration. Property:
//! `properties::request::check_request_view`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tollgate::config::Config;
use tollgate_fuzz::cases::request_case;
use tollgate_fuzz::properties::request::{check_request_view, configs};

static CONFIGS: OnceLock<[Config; 2]> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((which, headers)) = request_case(data) else { return };
    let config = &CONFIGS.get_or_init(configs)[which];
    if let Err(why) = check_request_view(config, &headers) {
        panic!("request_view: {why}");
    }
});
