#!/usr/bin/env bash
# Runs the sans-IO core's tests on wasm32-unknown-unknown under
# wasm-bindgen-test, in Node: the lib's unit tests and every integration test
# of the root package `tollgate` (tests/*.rs), nothing selected by name.
#
# Installs what it needs, idempotently (a no-op when already present):
#   - the rustup target wasm32-unknown-unknown;
#   - wasm-bindgen-cli at exactly the version of the `wasm-bindgen` crate in
#     Cargo.lock, under ${TOLLGATE_TOOLS:-~/.cache/tollgate}/wasm-bindgen-<version>/,
#     outside the checkout, so a fresh clone on the same machine reuses it.
#
# Exits non-zero when a test fails, when no test ran, or when a source file
# with `#[test]` functions lacks the wasm-bindgen-test import (plain `#[test]`
# functions are not run on wasm32: they would be skipped silently).
#
# Extra arguments go to `cargo test` (e.g. `-- wycheproof` to filter).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
target=wasm32-unknown-unknown

say() { printf 'test-wasm-core: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ── every file that defines tests must make them wasm-bindgen tests ──
# The convention (see tests/token_spec.rs, src/token/b64.rs):
#   #[cfg(target_arch = "wasm32")]
#   use wasm_bindgen_test::wasm_bindgen_test as test;
# A file that needs the host (a filesystem, processes) says so instead, as
# its first item: #![cfg(not(target_arch = "wasm32"))]
missing=()
while IFS= read -r -d '' f; do
    if grep -qE '#\[(test|tokio::test)\]' "$f" && ! grep -q 'wasm_bindgen_test' "$f" \
        && ! grep -qF '#![cfg(not(target_arch = "wasm32"))]' "$f"; then
        missing+=("$f")
    fi
done < <(
    find src -name '*.rs' -print0
    find tests -maxdepth 1 -name '*.rs' -print0
    find tests -mindepth 2 -maxdepth 2 -name main.rs -print0
)
if ((${#missing[@]})); then
    die "these files have #[test] functions that would not run on wasm32 (add
    #[cfg(target_arch = \"wasm32\")] use wasm_bindgen_test::wasm_bindgen_test as test;
to each test module): ${missing[*]}"
fi

# ── the rustup target ──
command -v rustup >/dev/null || die "rustup not found"
if ! rustup target list --installed | grep -qx "$target"; then
    say "installing rustup target $target"
    rustup target add "$target"
fi

# ── wasm-bindgen-cli, the exact version of the wasm-bindgen crate ──
# The runner and the crate share a schema: any other version refuses the
# test binary.
[ -f Cargo.lock ] || die "Cargo.lock missing (run cargo generate-lockfile)"
mapfile -t versions < <(awk '
    $0 == "[[package]]" { name = "" }
    $0 == "name = \"wasm-bindgen\"" { name = "wasm-bindgen"; next }
    name == "wasm-bindgen" && /^version = / { gsub(/^version = "|"$/, ""); print; name = "" }
' Cargo.lock)
((${#versions[@]} == 1)) ||
    die "expected exactly one wasm-bindgen in Cargo.lock, found: ${versions[*]:-none}"
wbg_version=${versions[0]}
tools="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate}/wasm-bindgen-$wbg_version"
runner="$tools/bin/wasm-bindgen-test-runner"
if [ ! -x "$runner" ]; then
    say "installing wasm-bindgen-cli $wbg_version into $tools"
    if ! cargo install --locked --root "$tools" --version "=$wbg_version" wasm-bindgen-cli; then
        # --locked needs every crate of wasm-bindgen-cli's own Cargo.lock in
        # the registry index; a mirror may lack one. The CLI version stays exact.
        say "warning: 'cargo install --locked' failed; retrying without --locked"
        cargo install --root "$tools" --version "=$wbg_version" wasm-bindgen-cli
    fi
fi
[ -x "$runner" ] || die "$runner was not installed"
got=$("$runner" --version 2>/dev/null | awk '{print $2}') || true
[ "$got" = "$wbg_version" ] || die "$runner reports version '${got:-?}', want $wbg_version"

# ── Node ──
command -v node >/dev/null || die "node not found (wasm-bindgen-test runs the tests in Node)"

export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$runner"
# Node, never a browser, and a bound on a hung test binary.
export WASM_BINDGEN_TEST_ONLY_NODE=1
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-120}"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
say "cargo test -p tollgate --target $target --no-fail-fast --lib --tests $* (runner: wasm-bindgen-test-runner $wbg_version, node $(node --version))"
set +e
cargo test -p tollgate --target "$target" --no-fail-fast --lib --tests "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# ── counts: "test result: ok. N passed; M failed; K ignored; ..." per binary ──
read -r binaries passed failed ignored < <(awk '
    /^test result: / {
        b++
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) p += $(i - 1)
            if ($(i) ~ /^failed;?$/) f += $(i - 1)
            if ($(i) ~ /^ignored;?$/) g += $(i - 1)
        }
    }
    END { printf "%d %d %d %d\n", b, p, f, g }
' "$log")
say "wasm32: $binaries test binaries, $passed passed, $failed failed, $ignored ignored"
if ((status != 0)); then
    die "cargo test failed (exit $status)"
fi
if ((failed != 0)); then
    die "$failed tests failed"
fi
if ((passed == 0)); then
    die "no test ran on wasm32"
fi
