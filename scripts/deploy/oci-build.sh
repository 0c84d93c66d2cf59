#!/usr/bin/env bash
# `make oci`: the filter as an OCI image layout (compat variant: one layer
# with plugin.wasm), built without a container engine.
#   scripts/deploy/oci-build.sh [LAYOUT_DIR] [TAG]
# Defaults: target/oci/tollgate-filter, the crate version. Push it with e.g.
#   skopeo copy oci:target/oci/tollgate-filter:0.1.0 docker://REGISTRY/tollgate/filter:0.1.0
set -euo pipefail
cd "$(dirname "$0")/../.."
WASM=target/wasm32-wasip1/release/tollgate.wasm
LAYOUT=${1:-target/oci/tollgate-filter}
TAG=${2:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
if [ ! -f "$WASM" ]; then
  echo "oci-build: $WASM is missing: run 'make build' first" >&2
  exit 1
fi
python3 scripts/deploy/oci_image.py build "$WASM" "$LAYOUT" "$TAG"
