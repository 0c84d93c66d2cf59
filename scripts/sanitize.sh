#!/usr/bin/env bash
# `make sanitize`: the parts of Tollgate that sanitizers apply to.
#
# 1. AddressSanitizer over the authority's SQLite path: the Rust code and
#    the bundled SQLite C library (rusqlite `bundled`, built with
#    -fsanitize=address through CFLAGS) in one instrumented build, std
#    included (-Zbuild-std). Runs the store's unit tests, the store
#    conformance cases on SQLite (in process) and the HTTP tests (they spawn
#    the instrumented binary on a SQLite store).
# 2. Miri (undefined behaviour, out-of-bounds, uninitialised reads, data
#    races in the interpreter) over the pure core: the token codec (its unit
#    tests and the spec table tests/token_spec.rs), the canonical request
#    view, the revocation state, the edge's refresh machine, and the
#    authority's refresh decision (authority/src/refresh.rs).
#
# Both need the nightly toolchain with rust-src and miri (installed here,
# idempotently). Separate target dirs (target/sanitize, target/miri) keep the
# ordinary build untouched. Not part of `make test`: a cold run takes tens of
# minutes on two cores.
#   SANITIZE=asan|miri|all   (default all)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
WHAT=${SANITIZE:-all}
HOST=x86_64-unknown-linux-gnu

installed=$(rustup +nightly component list --installed 2>/dev/null || true)
for c in rust-src miri; do
  grep -q "^$c" <<<"$installed" || rustup +nightly component add "$c"
done

step() { echo "[sanitize] $*"; }

if [ "$WHAT" = all ] || [ "$WHAT" = asan ]; then
  start=$SECONDS
  step "AddressSanitizer: authority, SQLite path (Rust + bundled SQLite C)"
  asan() {
    RUSTFLAGS="-Zsanitizer=address -Cdebug-assertions=on" \
    CFLAGS_x86_64_unknown_linux_gnu="-fsanitize=address -fno-omit-frame-pointer" \
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1" \
    LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
      cargo +nightly test -Zbuild-std --target "$HOST" --target-dir target/sanitize \
        -p tollgate-authority "$@"
  }
  asan --test conformance -- sqlite::
  asan --test http
  asan --test openapi -- --skip store_down
  step "AddressSanitizer: done in $((SECONDS - start)) s"
fi

if [ "$WHAT" = all ] || [ "$WHAT" = miri ]; then
  start=$SECONDS
  step "Miri: the pure core"
  export MIRIFLAGS="-Zmiri-disable-isolation"
  cargo +nightly miri test --target-dir target/miri -p tollgate --lib -- token:: request:: revocation:: refresh:: protocol::
  cargo +nightly miri test --target-dir target/miri -p tollgate --test token_spec
  cargo +nightly miri test --target-dir target/miri -p tollgate-authority --lib -- refresh:: feed::
  step "Miri: done in $((SECONDS - start)) s"
fi
