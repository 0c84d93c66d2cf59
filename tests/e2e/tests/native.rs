//! What only the native dynamic module (`native/`, docs/native.md) has: the
//! ABI handshake with Envoy, the panic strategy it was built with, the
//! boundary that catches panics and counts them, and its own refusal line.
//!
//! Everything else — every decision, callout, failure and configuration
//! check — is the whole suite, run on the native module with
//! `TOLLGATE_E2E_HOST=native` (see `tollgate_e2e::host`). These tests pin
//! the native host ([`Options::on`]), so they run whichever host is
//! selected: `cargo test -p tollgate-e2e --test native` is the module's own
//! specification.
//!
//! Prerequisite: the module, built with unwinding panics:
//! `cargo build --profile native -p tollgate-native` (or
//! `$TOLLGATE_NATIVE_MODULE`).

use tollgate_e2e::callouts::{api, assert_no_crash};
use tollgate_e2e::envoy::{local_document, tail, validate};
use tollgate_e2e::tokens::{self, DEMO_KEY_B64};
use tollgate_e2e::{Envoy, Host, Options, Request};

fn native() -> Options {
    Options::default().on(Host::Native)
}

#[test]
fn envoy_loads_the_module_on_its_abi_version_built_with_unwinding_panics() {
    let v = validate(&native());
    assert!(v.success, "envoy --mode validate refused envoy-native.yaml:\n{}", tail(&v.log, 30));
    assert!(
        v.log.contains("Dynamic module ABI version v0.2.0 matched."),
        "Envoy did not confirm the module's ABI version:\n{}",
        tail(&v.log, 30)
    );
    assert!(
        v.log.contains("tollgate: filter `tollgate` configuration accepted (native module, ABI v0.2.0"),
        "{}",
        tail(&v.log, 30)
    );
    // A module built with panic = "abort" would take Envoy down on a bug
    // (and warns at load): the one under test must catch panics.
    assert!(
        v.log.contains("panic strategy unwind") && !v.log.contains("this build aborts on a panic"),
        "the module under test must be built with panic = \"unwind\" (cargo build --profile native):\n{}",
        tail(&v.log, 30)
    );
}

#[test]
fn a_refused_document_names_the_filter_and_the_field() {
    // The demo key missing from Envoy's process environment (the module
    // reads it directly: no VM boundary, no host_env_keys).
    let v = validate(&Options { demo_key_env: false, ..native() });
    assert!(!v.success, "Envoy accepted a document whose secret is not in its environment");
    let refusal = v
        .log
        .lines()
        .find(|l| l.contains("tollgate: filter `tollgate` refused: "))
        .unwrap_or_else(|| panic!("no refusal from the module in Envoy's log:\n{}", tail(&v.log, 20)));
    assert!(
        refusal.contains("field `keys[0].secret_env`: environment variable TOLLGATE_DEMO_KEY is not set"),
        "the refusal does not name the field: {refusal}"
    );
    assert!(!v.log.contains(DEMO_KEY_B64), "the secret reached Envoy's log");
}

/// The panic boundary's counter exists from the start (a dashboard can
/// alert on it) and stays 0 under ordinary traffic on both workers.
#[test]
fn the_panic_counter_is_declared_and_stays_zero() {
    let envoy = Envoy::start(&Options::with_document(&local_document()).on(Host::Native));
    assert_eq!(envoy.host, Host::Native);
    let stats = envoy.stats();
    assert_eq!(
        stats.get("tollgate.native.panic"),
        Some(&0),
        "tollgate.native.panic is not declared: {stats:#?}"
    );
    let token = tokens::token_with_scope("bob", "read");
    for i in 0..20 {
        let r = envoy.send(&api(&token));
        assert_eq!(r.status, 200, "request {i}: {r}");
        assert_eq!(envoy.send(&Request::get("/api/items")).status, 401);
    }
    assert_eq!(envoy.stat("tollgate.native.panic"), 0);
    assert_eq!(envoy.stat("tollgate.allowed"), 20);
    assert_no_crash(&envoy.stop());
}
