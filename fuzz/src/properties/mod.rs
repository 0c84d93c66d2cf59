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

/// The members `names` of the JSON object `bytes`, each read as a generic
/// `serde_json::Value`; every other member skipped the way serde skips a
/// member a struct does not read (serde_json then checks neither UTF-8 nor
/// number range: `"x": 1e400` or invalid UTF-8 in an unread member does not
/// refuse a document). The oracle of the documents the core reads with
/// serde's derive, which skips unknown members: `None` when this reading
/// fails.
pub fn known_members(bytes: &[u8], names: &[&str]) -> Option<serde_json::Map<String, serde_json::Value>> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Known<'n>(&'n [&'n str]);
    impl<'de> Visitor<'de> for Known<'_> {
        type Value = serde_json::Map<String, serde_json::Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(name) = map.next_key::<String>()? {
                if self.0.contains(&name.as_str()) {
                    out.insert(name, map.next_value()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let members = de.deserialize_map(Known(names)).ok()?;
    de.end().ok()?;
    Some(members)
}

/// Controls as upstream header and path parsers read them: C0, DEL and C1
/// (Unicode category Cc), written out here rather than taken from the core.
pub fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}
