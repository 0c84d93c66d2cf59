//! Tollgate as a native Envoy dynamic module: the same edge engine
//! ([`tollgate::edge::Engine`]) as the Wasm filter, driven by Envoy 1.40's
//! dynamic-module HTTP filter ABI instead of proxy-wasm.
//!
//! - [`abi`]: the ABI (`v0.2.0`, Envoy 1.40): declarations, exported hooks,
//!   safe handles. All of the crate's `unsafe` is there;
//! - [`filter`]: the host adapter: hooks → engine events, commands → Envoy
//!   calls; one engine per Envoy worker, the tick on the main thread;
//! - [`shared`]: proxy-wasm-like shared data in process (compare-and-set);
//! - [`guard`]: no panic crosses into Envoy;
//! - [`wire`]: plain data between the two.
//!
//! See `docs/native.md` for which Envoy a build runs in and why.

// The one module allowed `unsafe` (and `#[no_mangle]`): the lint holds the
// rest of the crate to safe code.
#![deny(unsafe_code)]

#[cfg(not(test))]
#[allow(unsafe_code)]
mod abi;
#[cfg(not(test))]
mod filter;
mod guard;
mod shared;
mod wire;
