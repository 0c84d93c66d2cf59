#!/usr/bin/env bash
# Finishes the filter module in place with Binaryen (about 3 s):
#
# 1. wasm-metadce keeps only the exports Envoy needs to run the filter: the
#    proxy-wasm callbacks the glue implements (src/glue/mod.rs) and the ABI's
#    own (the version marker, the allocator, context creation and deletion).
#    The SDK defines every callback of the ABI, gRPC and network-filter ones
#    included, and each pulls its dispatch code in (16 KB). Envoy skips a
#    callback the module does not export (proxy-wasm-cpp-host checks each
#    one before calling it), so the bodies, trailers and `proxy_on_log` of
#    every request no longer enter the VM to do nothing.
#    `tests/module_exports.rs` checks the built module: every callback the
#    glue implements is exported, and no other.
# 2. wasm-opt -O3.
#
# Cargo links a fresh copy of the module on every build, so `make build`
# finishes each time; a stamp next to the module holds the SHA-256 of the
# finished file, so running this twice on one file (the bench after
# `make build`) does the work once.
#
#   scripts/wasm-opt.sh target/wasm32-wasip1/release/tollgate.wasm
#
# Why -O3 (docs/bench/changes.md, "wasm-opt"): it shrinks the module by a
# tenth and Envoy spends no more CPU per request on it (cache hits and
# misses); rustc's own opt-level "s" and "z" shrink it less and cost 0.9 and
# 2.2 us per request. The feature flags are those rustc's wasm32-wasip1
# output uses; Binaryen validates the module against them.
set -euo pipefail
wasm=${1:?usage: scripts/wasm-opt.sh MODULE.wasm}
stamp="$wasm.wasm-opt"
for tool in wasm-opt wasm-metadce; do
  command -v $tool >/dev/null || { echo "$tool: not installed (Debian binaryen; scripts/deps.sh installs it)" >&2; exit 1; }
done
sum() { sha256sum "$1" | cut -d' ' -f1; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(sum "$wasm")" ]; then
  exit 0
fi
# The ABI's own exports, then one per callback the glue implements.
keep=(
  memory _initialize proxy_abi_version_0_2_1 proxy_on_memory_allocate proxy_on_context_create proxy_on_delete
  proxy_on_configure proxy_on_tick proxy_on_http_call_response proxy_on_request_headers proxy_on_response_headers proxy_on_done
)
graph="$wasm.graph.json"
{
  echo "["
  sep=""
  for e in "${keep[@]}"; do
    printf '%s{"name": "%s", "export": "%s", "root": true}\n' "$sep" "$e" "$e"
    sep=","
  done
  echo "]"
} > "$graph"
features=(--enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals)
before=$(stat -c %s "$wasm")
# metadce lists what it removed on stdout; only failures matter here.
wasm-metadce "${features[@]}" --graph-file "$graph" "$wasm" -o "$wasm.tmp" >/dev/null
wasm-opt -O3 "${features[@]}" "$wasm.tmp" -o "$wasm.tmp"
mv "$wasm.tmp" "$wasm"
rm -f "$graph"
sum "$wasm" > "$stamp"
echo "wasm-metadce + wasm-opt -O3: $(basename "$wasm") $before -> $(stat -c %s "$wasm") bytes"
