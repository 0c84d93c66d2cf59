//! The properties the fuzz targets assert, one function per parser.
//!
//! Each `check_*` takes plain inputs (bytes, strings, the core's own types)
//! and returns `Err(why)` when a property fails. The fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) build those inputs from libFuzzer's bytes and
//! panic on `Err`; `tests/fuzz_regressions.rs` includes this very module
//! (`#[path]`) and runs every finding as a table row, natively and on
//! wasm32. So a property has one definition, and a regression row re-checks
//! exactly what the fuzzer checked.
//!
//! Dependencies: only crates the `tollgate` package itself depends on
//! (`serde_json`, `hmac`, `sha2`, `base64`), so the module compiles inside
//! the root package's tests too.

#![allow(dead_code)]

pub mod cache;
pub mod config;
pub mod extract;
pub mod refresh;
pub mod request;
pub mod revocation;
pub mod token;

/// `Ok(())` or a description of the violated property.
pub type Check = Result<(), String>;

/// `ensure!(cond, "format", args)`: fail the property with the message.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}
pub(crate) use ensure;

/// Controls as upstream header and path parsers read them: C0, DEL and C1
/// (Unicode category Cc), written out here rather than taken from the core.
pub fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}
