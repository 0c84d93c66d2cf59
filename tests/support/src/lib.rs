//! What the authority's tests and the end-to-end suite both need to run
//! real parts: child processes tied to the test process, and a private
//! `redis-server`.

pub mod process;
pub mod redis;
