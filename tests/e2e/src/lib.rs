//! The end-to-end harness: the Tollgate filter inside a real Envoy 1.40, in
//! front of an echo upstream, driven by raw HTTP/1.1 requests, on either
//! host: the Wasm filter or the native dynamic module.
//!
//! - [`host`]: which host runs the filter (`TOLLGATE_E2E_HOST=wasm|native`,
//!   default `wasm`) and everything that differs between the two: the
//!   shipped configuration, the module, the stats namespace;
//! - [`echo`]: the upstream that answers with what it received (also the
//!   `echo-upstream` binary `make run` uses);
//! - [`render`]: the host's shipped configuration (`envoy/envoy.yaml` or
//!   `envoy/envoy-native.yaml`) with only ports, module path and
//!   (optionally) the filter document replaced;
//! - [`envoy`]: start / validate / stop Envoy, bounded and leak-free;
//! - [`http`]: a raw client that sends exactly what a test asks for;
//! - [`h2`]: the same over HTTP/2 (h2c, prior knowledge);
//! - [`tokens`]: tokens for the demo configuration;
//! - [`authority`]: the real `tollgate-authority` on SQLite or Redis
//!   ([`redis`]: a `redis-server` of the test's own), killable and
//!   restartable mid-test;
//! - [`faults`]: a fault-injecting proxy between Envoy and the authority;
//! - [`failover`]: a switchable TCP proxy in front of Redis, RESP commands;
//! - [`workers`]: connections on a known Envoy worker (cross-worker
//!   refresh tests), cut off by the client on demand;
//! - [`callouts`]: the demo document with test intervals and the bounds it
//!   implies, bounded polling, `Set-Cookie` reading;
//! - [`reload`]: the filter's configuration by ECDS from a watched file,
//!   republished in a running Envoy (a plugin reload);
//! - [`workers`]: connections pinned to each Envoy worker, the documented
//!   revocation bound, enforcement measured on every worker.
//!
//! Prerequisites: `make build` (both modules,
//! `target/wasm32-wasip1/release/tollgate.wasm` and
//! `target/native/libtollgate_native.so`: `tests/native.rs` loads the
//! native one on either host; and Envoy in `.venv`, or `TOLLGATE_ENVOY`)
//! and, for the callout tests, `make bins` (the authority at
//! `target/debug/tollgate-authority`, or `TOLLGATE_AUTHORITY`) and
//! `redis-server`. Missing prerequisites fail the tests, never skip them.
//! Set `TOLLGATE_E2E_KEEP=1` to keep every Envoy's temp dir (config, logs).

pub mod authority;
pub mod callouts;
pub mod echo;
pub mod faults;
pub mod failover;

pub mod envoy;
pub mod h2;
pub mod host;
pub mod http;
pub mod reload;
pub mod render;
pub mod tokens;
pub mod workers;

pub use envoy::{local_document, shared, validate, Envoy, Options};
pub use host::Host;
pub use http::{Request, Response};
