//! Tollgate: an edge token policy module.
//!
//! The crate is a sans-IO core plus a thin proxy-wasm glue that exists only
//! in the filter build (`wasm32-wasip1`). The core takes bytes, the time and
//! cached state and returns decisions; it never calls the host, so it runs
//! the same natively, under wasm-bindgen-test, and inside Envoy.
//!
//! The request path follows Envoy's jwt_authn split:
//! [`extract`] (extractor) → [`token`] (verifier) → [`policy`] (matcher) →
//! [`authenticator`] (the decision) → [`response`] (local answers).

pub mod authenticator;
pub mod cache;
pub mod config;
pub mod edge;
pub mod extract;
pub mod policy;
pub mod protocol;
pub mod reason;
pub mod refresh;
pub mod request;
pub mod response;
pub mod revocation;
pub mod sorted_map;
pub mod token;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod glue;
