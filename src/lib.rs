//! Tollgate: an edge token policy module.
//!
//! The crate is a sans-IO core (every module but `glue`) plus a thin
//! proxy-wasm glue that exists only in the filter build (`wasm32-wasip1`).
//! The core takes bytes, the time and cached state and returns decisions; it
//! never calls the host, so it runs the same natively, under
//! wasm-bindgen-test, and inside Envoy.

pub mod token;
