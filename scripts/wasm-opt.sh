#!/usr/bin/env bash
# Optimizes the filter module in place with Binaryen's wasm-opt -O3 (about
# 2.5 s). Cargo links a fresh copy of the module on every build, so
# `make build` optimizes each time; a stamp next to the module holds the
# SHA-256 of the optimized file, so running this twice on one file (the bench
# after `make build`) does the work once.
#
#   scripts/wasm-opt.sh target/wasm32-wasip1/release/tollgate.wasm
#
# Why -O3 (docs/bench/changes.md, "wasm-opt"): it takes the module from
# 585 KB to 523 KB and Envoy spends no more CPU per request on it (cache hits
# and misses); rustc's own opt-level "s" and "z" shrink it less and cost
# 0.9 and 2.2 us per request. The feature flags are those rustc's
# wasm32-wasip1 output uses; wasm-opt validates the module against them.
set -euo pipefail
wasm=${1:?usage: scripts/wasm-opt.sh MODULE.wasm}
stamp="$wasm.wasm-opt"
command -v wasm-opt >/dev/null || { echo "wasm-opt: not installed (Debian binaryen; scripts/deps.sh installs it)" >&2; exit 1; }
sum() { sha256sum "$1" | cut -d' ' -f1; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(sum "$wasm")" ]; then
  exit 0
fi
before=$(stat -c %s "$wasm")
wasm-opt -O3 --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals \
  "$wasm" -o "$wasm.tmp"
mv "$wasm.tmp" "$wasm"
sum "$wasm" > "$stamp"
echo "wasm-opt -O3: $(basename "$wasm") $before -> $(stat -c %s "$wasm") bytes"
