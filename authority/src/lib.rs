//! The Tollgate authority: issues access tokens with the shared codec,
//! rotates refresh tokens one-time with a replay grace window, and keeps the
//! revocation versions that edges learn from the feed.
//!
//! ```text
//! http ─► service (Authority) ─► refresh::decide (sans-IO) ─► store (sqlite | redis)
//! ```
//!
//! The decision logic lives in [`refresh`] and [`feed`] as plain functions;
//! [`store`] only reads state and applies changes atomically (compare and set),
//! so both stores share one algorithm. [`longpoll`] holds feed requests
//! whose cursor is current until a bump is announced (by this instance, or
//! through the store's notification channel) or their `wait` ends.

pub mod config;
pub mod directory;
pub mod edge;
pub mod feed;
pub mod http;
pub mod input;
pub mod keys;
pub mod longpoll;
pub mod metrics;
pub mod refresh;
pub mod service;
pub mod store;
pub mod throttle;
pub mod util;
