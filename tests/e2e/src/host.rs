//! Which host runs the filter: the Wasm filter (`envoy/envoy.yaml`, the
//! module `target/wasm32-wasip1/release/tollgate.wasm` in Envoy's V8) or the
//! native dynamic module (`envoy/envoy-native.yaml`, the shared object
//! `target/native/libtollgate_native.so` in Envoy's process). Everything a
//! test may depend on that differs between the two is defined here, once.
//!
//! The suite runs on one host per process, chosen by `TOLLGATE_E2E_HOST`
//! (`wasm`, the default, or `native`), read once ([`Host::selected`]):
//!
//! ```sh
//! cargo test -p tollgate-e2e                              # the Wasm filter
//! TOLLGATE_E2E_HOST=native cargo test -p tollgate-e2e     # the native module
//! ```
//!
//! Every Envoy the harness starts runs the selected host unless a test pins
//! one ([`crate::envoy::Options::on`]): only host-specific tests do
//! (`tests/native.rs`).

use crate::envoy::repo_root;
use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The environment variable that selects the host.
pub const HOST_ENV: &str = "TOLLGATE_E2E_HOST";

/// One way of running the filter in Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    /// The proxy-wasm filter in a V8 VM per worker.
    Wasm,
    /// The native dynamic module (`native/`, docs/native.md).
    Native,
}

impl Host {
    /// Both hosts, for tests of the shipped files that hold for each.
    pub const ALL: [Host; 2] = [Host::Wasm, Host::Native];

    /// The host this test process runs on: `$TOLLGATE_E2E_HOST`, read once.
    /// An unknown value fails every test that asks (it never falls back).
    pub fn selected() -> Host {
        static SELECTED: OnceLock<Result<Host, String>> = OnceLock::new();
        SELECTED
            .get_or_init(|| match std::env::var(HOST_ENV) {
                Err(std::env::VarError::NotPresent) => Ok(Host::Wasm),
                Ok(v) => Host::parse(&v),
                Err(e) => Err(format!("{HOST_ENV}: {e}")),
            })
            .clone()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `wasm` or `native`, exactly (what [`HOST_ENV`] accepts).
    pub fn parse(value: &str) -> Result<Host, String> {
        Host::ALL
            .into_iter()
            .find(|h| h.name() == value)
            .ok_or_else(|| format!("{HOST_ENV}={value:?}: expected `wasm` or `native`"))
    }

    pub fn name(self) -> &'static str {
        match self {
            Host::Wasm => "wasm",
            Host::Native => "native",
        }
    }

    /// The shipped Envoy configuration, relative to the repository.
    pub fn yaml_file(self) -> &'static str {
        match self {
            Host::Wasm => "envoy/envoy.yaml",
            Host::Native => "envoy/envoy-native.yaml",
        }
    }

    /// The module path as the shipped configuration writes it (relative to
    /// the repository, where `make run` starts Envoy).
    pub fn module_as_written(self) -> &'static str {
        match self {
            Host::Wasm => "target/wasm32-wasip1/release/tollgate.wasm",
            Host::Native => "target/native/libtollgate_native.so",
        }
    }

    /// How to build the module, for the message when it is missing.
    fn build_hint(self) -> &'static str {
        match self {
            Host::Wasm => "run `make build` (or `cargo build --release --target wasm32-wasip1 -p tollgate`)",
            Host::Native => {
                "run `make build` (or `cargo build --profile native -p tollgate-native`: unwinding panics)"
            }
        }
    }

    /// The module the tests load: the build at [`Host::module_as_written`],
    /// or for the native host `$TOLLGATE_NATIVE_MODULE` when set. Panics (the
    /// test fails) when it has not been built.
    pub fn module(self) -> PathBuf {
        let path = match (self, std::env::var_os("TOLLGATE_NATIVE_MODULE")) {
            (Host::Native, Some(p)) => PathBuf::from(p),
            _ => repo_root().join(self.module_as_written()),
        };
        assert!(
            path.is_file(),
            "the {self} module {} is missing: {}",
            path.display(),
            self.build_hint()
        );
        path
    }

    /// Where Envoy puts the filter's own stats: the Wasm filter's under
    /// `wasmcustom.`, the dynamic module's under Envoy's default
    /// `metrics_namespace`, `dynamicmodulescustom.`. Tests name stats
    /// without it ([`crate::envoy::Envoy::stat`]).
    pub fn stats_namespace(self) -> &'static str {
        match self {
            Host::Wasm => "wasmcustom.",
            Host::Native => "dynamicmodulescustom.",
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_host_names_parse() {
        assert_eq!(Host::parse("wasm"), Ok(Host::Wasm));
        assert_eq!(Host::parse("native"), Ok(Host::Native));
        for bad in ["", "Wasm", "NATIVE", " native", "wasm32", "both"] {
            let e = Host::parse(bad).unwrap_err();
            assert!(
                e.contains(HOST_ENV) && e.contains("`wasm` or `native`"),
                "{bad:?}: {e}"
            );
        }
    }
}
