//! Strict base64url (RFC 7515 §2, RFC 4648 §5): no padding, no whitespace,
//! no `+` or `/`, and canonical trailing bits. Anything else is an error, so
//! one token has exactly one spelling.

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes one JWS segment. `None` for any byte outside the base64url
/// alphabet, any `=`, an impossible length, or non-zero unused bits.
pub fn decode(segment: &[u8]) -> Option<Vec<u8>> {
    STRICT.decode(segment).ok()
}

/// Decodes into `out`, reusing its allocation.
pub fn decode_into(segment: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    STRICT.decode_vec(segment, out).is_ok()
}

pub fn encode(bytes: &[u8]) -> String {
    STRICT.encode(bytes)
}

#[cfg(test)]
mod tests {
    // `#[test]` runs natively and, under wasm-bindgen-test, on wasm32.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn strictness_table() {
        // (input, decodes?, why)
        let cases: &[(&str, bool, &str)] = &[
            ("Zm9v", true, "plain"),
            ("Zm8", true, "unpadded remainder 2"),
            ("Zg", true, "unpadded remainder 1 byte"),
            ("", true, "empty segment decodes to nothing"),
            ("Zm8=", false, "padding"),
            ("Zg==", false, "double padding"),
            ("Zm 9v", false, "inner space"),
            (" Zm9v", false, "leading space"),
            ("Zm9v\n", false, "newline"),
            ("ab+/", false, "standard alphabet"),
            ("ab-_", true, "url-safe alphabet"),
            ("Zh", false, "non-canonical trailing bits"),
            ("AB", false, "non-canonical trailing bits (Wycheproof 374)"),
            ("Z", false, "impossible length"),
            ("Zm9v?", false, "invalid character"),
        ];
        for (input, ok, why) in cases {
            assert_eq!(decode(input.as_bytes()).is_some(), *ok, "{why}: {input:?}");
        }
    }

    #[test]
    fn round_trip() {
        for n in 0..70u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(decode(encode(&bytes).as_bytes()).as_deref(), Some(&bytes[..]));
        }
    }
}
