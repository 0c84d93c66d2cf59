#!/usr/bin/env bash
# Installs the real upstream frameworks of the differential end-to-end suite
# (tests/e2e/tests/differential.rs) and its HTTP/2 client, idempotently; a
# no-op costing well under a second when everything is already there:
#   - Flask, Starlette, uvicorn and h2, pinned in
#     tests/e2e/upstreams/requirements.txt, into the project venv .venv;
#   - Express, pinned by tests/e2e/upstreams/express/package-lock.json, into
#     tests/e2e/upstreams/express/node_modules (`npm ci`).
# Needs python3 and node/npm on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

UPSTREAMS=tests/e2e/upstreams
REQUIREMENTS=$UPSTREAMS/requirements.txt
EXPRESS=$UPSTREAMS/express

[ -x .venv/bin/python ] || python3 -m venv .venv

# Installed exactly as pinned? Compare `pip freeze` with the pins (names
# case-insensitively, `_` and `-` alike, as pip does).
normalize() { tr 'A-Z_' 'a-z-' | grep -v '^#' | grep -v '^$' | sort; }
missing=$(comm -23 <(normalize <"$REQUIREMENTS") \
  <(.venv/bin/python -m pip freeze --disable-pip-version-check 2>/dev/null | normalize))
if [ -n "$missing" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
fi

# npm ci reinstalls from scratch: run it only when node_modules was not
# installed from this very lock file (a copy is kept as the stamp).
STAMP=$EXPRESS/node_modules/.installed-from-package-lock.json
if ! cmp -s "$EXPRESS/package-lock.json" "$STAMP"; then
  (cd "$EXPRESS" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$EXPRESS/package-lock.json" "$STAMP"
fi
