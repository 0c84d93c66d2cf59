#!/usr/bin/env bash
# schemathesis against a live authority on each store (SQLite, Redis): no
# 5xx, every answer as authority/openapi.json documents it, and no refused
# request changes the store (see scripts/api/st_run.py for the design).
# Installs schemathesis idempotently (scripts/api/deps.sh). Part of `make test`.
#   TOLLGATE_ST_EXAMPLES=n   examples per operation and mode (default 10)
#   TOLLGATE_ST_SEED=n       reproduce a run
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts/api/deps.sh
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
cargo build --quiet -p tollgate-authority --bin tollgate-authority
BIN=target/debug/tollgate-authority

start=$SECONDS
status=0
for store in sqlite redis; do
  .tools/schemathesis/bin/python scripts/api/st_run.py "$BIN" "$store" || status=1
done
echo "[schemathesis] both stores in $((SECONDS - start)) s"
exit $status
