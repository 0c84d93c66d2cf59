#!/usr/bin/env bash
# Installs what scripts/deploy/test.sh needs, idempotently (fast when present):
#   Debian: docker-compose (validator only, no engine), skopeo, docker-registry, curl,
#           prometheus (for promtool: the alert rules and their unit tests)
#   .venv:  jsonschema, pyyaml, kubernetes-validate (Kubernetes OpenAPI schemas, offline),
#           prometheus-client (its parsers read the authority's and Envoy's expositions
#           in tests/e2e/tests/metrics.rs)
# kubectl (for `kubectl kustomize`) is expected on PATH; envoy comes from scripts/deps.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v curl >/dev/null || missing+=(curl)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v kubectl >/dev/null || { echo "tools.sh: kubectl is not on PATH (needed for kubectl kustomize)" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c 'import jsonschema, yaml, kubernetes_validate, prometheus_client' 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check \
    "jsonschema==4.26.0" "PyYAML==6.0.3" "kubernetes-validate==1.37.0" "prometheus-client==0.21.1"
fi
