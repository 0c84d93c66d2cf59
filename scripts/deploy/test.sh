#!/usr/bin/env bash
# Every deployment check, without a Docker engine or a cluster (loopback only).
# Needs the filter built (`make build`: target/wasm32-wasip1/release/tollgate.wasm)
# and .venv/bin/envoy (scripts/deps.sh). Prints one line per check and ends
# with "N passed, M failed"; exits non-zero when any check failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
scripts/deploy/tools.sh || { echo "0 passed, 1 failed"; exit 1; }

# The demo values envoy.yaml's filter reads from its VM (keys[].secret_env,
# authority.credential_env), as the Makefile and docker-compose default them.
export TOLLGATE_DEMO_KEY=${TOLLGATE_DEMO_KEY:-ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24}
export TOLLGATE_EDGE_CREDENTIAL=${TOLLGATE_EDGE_CREDENTIAL:-demo-edge-credential-not-for-production-0001}
PY=.venv/bin/python
CHECK="$PY scripts/deploy/check_manifests.py"
ENVOY=.venv/bin/envoy
WASM=target/wasm32-wasip1/release/tollgate.wasm
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
failures=()

run() { # run NAME CMD...: a check, bounded to 120 s
  local name=$1; shift
  local t0=$SECONDS
  if timeout 120 "$@" >"$TMP/out" 2>&1; then
    passed=$((passed + 1))
    printf 'ok    %-58s %3ss\n' "$name" $((SECONDS - t0))
  else
    failed=$((failed + 1))
    failures+=("$name")
    printf 'FAIL  %-58s %3ss\n' "$name" $((SECONDS - t0))
    sed 's/^/      /' "$TMP/out" | tail -40
  fi
}

envoy_validate() { # envoy_validate CONFIG: a real Envoy loads the filter with it
  "$ENVOY" --mode validate -c "$1" --log-level info >"$TMP/envoy.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ] || ! grep -q "configuration accepted" "$TMP/envoy.log"; then
    grep -E "critical|error|tollgate" "$TMP/envoy.log" | tail -20
    return 1
  fi
}

[ -f "$WASM" ] || { echo "FAIL  $WASM missing: run 'make build' first"; echo "0 passed, 1 failed"; exit 1; }

# docker-compose
run "compose: docker-compose config validates" \
  docker-compose -p tollgate -f envoy/docker-compose.yml config -q
run "compose: services, mounts, addresses, Dockerfile, .dockerignore" $CHECK compose
run "compose: envoy.yaml as compose renders it loads in Envoy" \
  bash -c "scripts/deploy/compose-envoy.sh envoy/envoy.yaml '$TMP/compose-envoy.yaml' && $(declare -f envoy_validate); ENVOY=$ENVOY TMP=$TMP envoy_validate '$TMP/compose-envoy.yaml'"
run "envoy: envoy.yaml's document = tollgate.json, its cluster, XFF" $CHECK envoy-yaml
for door in native compose; do
  run "$door: access log fields and stats tags (reason label)" $CHECK observability $door
  run "$door: request semantics (normalize, merge //, %2F and _ refused)" $CHECK request-semantics $door
  run "$door: edge credential and key reach the VM (and the authority)" $CHECK credentials $door
done

# Kubernetes
for dir in base overlays/istio overlays/envoy-gateway; do
  run "k8s $dir: kubectl kustomize builds" $CHECK kustomize "$dir"
  run "k8s $dir: core kinds (k8s 1.30 schema, references)" $CHECK core "$dir"
  run "k8s $dir: no demo secret or user; user Secrets documented" $CHECK secrets "$dir"
  run "k8s $dir: NetworkPolicies admit only the gateway / authority" $CHECK network-policy "$dir"
done
run "every door's document = tollgate.json (+ per-door override)" \
  $PY scripts/deploy/sync-plugin-config.py --check
for ov in istio envoy-gateway; do
  run "k8s $ov: custom resources vs vendored CRD schemas" $CHECK crd "overlays/$ov"
  run "k8s $ov: filter document, secret env, authority cluster/host" $CHECK plugin-config "overlays/$ov"
  run "k8s $ov: access log fields and stats tags (reason label)" $CHECK observability $ov
  run "k8s $ov: request semantics (normalize, merge //, %2F and _ refused)" $CHECK request-semantics $ov
  run "k8s $ov: edge credential and key: VM, proxy, authority agree" $CHECK credentials $ov
  run "k8s $ov: real Envoy loads its document and request semantics" \
    bash -c "$CHECK render-envoy overlays/$ov '$TMP/$ov-envoy.yaml' && $(declare -f envoy_validate); ENVOY=$ENVOY TMP=$TMP envoy_validate '$TMP/$ov-envoy.yaml'"
done
run "k8s: filter's Config::parse accepts the manifests (cargo test)" \
  cargo test --quiet --test deploy_manifests

# Monitoring: the alert rules (promtool), their unit tests, the PrometheusRule
# generated from them. tests/e2e/tests/metrics.rs checks that every metric
# they and the dashboard name is exported by a live authority and Envoy.
run "monitoring: promtool check rules" promtool check rules deploy/monitoring/tollgate.rules.yml
run "monitoring: promtool test rules (alert unit tests)" \
  bash -c "cd deploy/monitoring && promtool test rules tollgate.rules.test.yml"
run "monitoring: dashboard is JSON with panels" \
  $PY -c "import json,sys; d=json.load(open('deploy/monitoring/tollgate-dashboard.json')); sys.exit(0 if d['panels'] and all(t['expr'] for p in d['panels'] for t in p['targets']) else 1)"
run "monitoring: PrometheusRule = tollgate.rules.yml" $PY scripts/deploy/sync-monitoring.py --check

# OCI image
run "oci: build, push to a loopback registry, pull, same module" scripts/deploy/oci-roundtrip.sh

echo
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
