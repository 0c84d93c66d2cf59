//! The boundary: every hook runs under [`entry`] (or [`request_entry`] for a
//! request's hooks), which catches a panic before it can unwind into Envoy's
//! C++ frames. A caught panic is counted (`tollgate.native.panic`), logged
//! without its message (a message could carry request data), and the
//! request whose hook panicked is answered 500.
//!
//! Catching needs the unwinding panic strategy: a build with
//! `panic = "abort"` (the workspace's release profile, made for the Wasm
//! filter) would abort Envoy instead. [`PANIC_STRATEGY`] says which one this
//! build has; the module logs a warning at load when it aborts.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

#[cfg(not(test))]
use crate::abi;
#[cfg(not(test))]
use crate::filter::FilterState;

/// `"unwind"` or `"abort"`: what a panic in this build does.
pub const PANIC_STRATEGY: &str = if cfg!(panic = "unwind") { "unwind" } else { "abort" };

/// Panics caught and not yet counted in Envoy's stats (the next tick or
/// request counts them).
static PENDING: AtomicU64 = AtomicU64::new(0);

/// Panics caught since load.
static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// Replaces the default panic hook, which prints the panic's message (it
/// could contain request data), with one that says only where it happened.
pub fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info.location().map_or_else(|| "unknown".to_owned(), |l| format!("{}:{}", l.file(), l.line()));
            report(&format!("tollgate: panic at {at} (caught at the Envoy boundary)"));
        }));
    });
}

#[cfg(not(test))]
fn report(line: &str) {
    abi::log(abi::LogLevel::Error, line);
}

#[cfg(test)]
fn report(_line: &str) {}

/// Runs `f`; a panic is caught, counted, and answered with `fallback`.
pub fn entry<T>(hook: &'static str, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(_) => {
            caught(hook);
            fallback
        }
    }
}

fn caught(hook: &'static str) {
    CAUGHT.fetch_add(1, Ordering::Relaxed);
    PENDING.fetch_add(1, Ordering::Relaxed);
    report(&format!("tollgate: a panic in {hook} was caught; see the line above"));
}

/// Takes the panics not yet counted in Envoy's stats.
pub fn take_pending() -> u64 {
    PENDING.swap(0, Ordering::Relaxed)
}

/// Panics caught since load.
#[cfg(test)]
pub fn caught_total() -> u64 {
    CAUGHT.load(Ordering::Relaxed)
}

/// A request's hook: `f` returns whether the request goes on now. After a
/// caught panic the request, unless already answered, is answered 500 and
/// stops.
#[cfg(not(test))]
pub fn request_entry(filter: &FilterState, handle: abi::Filter, hook: &'static str, f: impl FnOnce(&FilterState) -> bool) -> bool {
    match catch_unwind(AssertUnwindSafe(|| f(filter))) {
        Ok(go_on) => go_on,
        Err(_) => {
            caught(hook);
            let _ = catch_unwind(AssertUnwindSafe(|| filter.fail(handle)));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_an_entry_is_caught_counted_and_answered_with_the_fallback() {
        quiet_panics();
        let before = caught_total();
        let answer = entry("test", 500u16, || -> u16 { panic!("bug") });
        assert_eq!(answer, 500);
        assert_eq!(caught_total(), before + 1);
        assert!(take_pending() >= 1);
    }

    #[test]
    fn an_entry_that_returns_passes_its_value_through_uncounted() {
        let before = caught_total();
        assert_eq!(entry("test", 0, || 7), 7);
        assert_eq!(caught_total(), before);
    }

    #[test]
    fn tests_run_with_the_unwinding_strategy_the_module_needs() {
        assert_eq!(PANIC_STRATEGY, "unwind");
    }
}
