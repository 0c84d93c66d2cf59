#!/usr/bin/env bash
# schemathesis (pinned) in its own venv, .tools/schemathesis: it brings
# hypothesis, starlette-testclient and others whose versions must not move the
# pinned upstream frameworks of the project venv .venv (see
# scripts/deps-upstreams.sh). A no-op when the pinned version is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMATHESIS_VERSION=4.32.5
VENV=.tools/schemathesis
if ! compgen -G "$VENV/lib/python3*/site-packages/schemathesis-$SCHEMATHESIS_VERSION.dist-info" >/dev/null \
   || [ ! -x "$VENV/bin/st" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
