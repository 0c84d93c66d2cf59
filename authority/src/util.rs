//! Randomness, hashing and time helpers.

use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate::token::b64;

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // getrandom only fails when the OS has no entropy source at all; there is
    // no safe fallback, so the process must not continue.
    if let Err(e) = getrandom::fill(&mut out) {
        panic!("operating system random source failed: {e}");
    }
    out
}

/// A random identifier: `prefix` + base64url of `N` random bytes.
pub fn random_id<const N: usize>(prefix: &str) -> String {
    format!("{prefix}{}", b64::encode(&random_bytes::<N>()))
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

pub fn now_secs() -> u64 {
    now_ms() / 1000
}
