//! Deterministic simulation of the edge engine (`tollgate::edge`): several
//! Envoys, each of several workers (one `Engine` each, configured from one
//! filter document), each Envoy with its own proxy-wasm shared data; the
//! real authority service behind the callouts; virtual time; a seeded
//! scheduler of interleavings, delays, faults, kills and client traffic.
//!
//! - [`world`]: the world and its scheduler, recording what happened;
//! - [`check`]: the invariants of `src/edge/mod.rs`, judged on the record;
//! - [`plan`]: random runs from a seed, and the seed loop of the tests;
//! - [`worker`]: an Envoy worker thread owning its engine;
//! - [`shared`]: shared data with Envoy's exact semantics;
//! - [`authority`]: callouts translated to the authority's service calls;
//! - [`doc`]: the filter document and the bounds computed from it;
//! - [`rng`]: the one source of randomness.

pub mod authority;
pub mod check;
pub mod doc;
pub mod plan;
pub mod rng;
pub mod shared;
pub mod worker;
pub mod world;
