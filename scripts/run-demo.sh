#!/usr/bin/env bash
# `make run`: the authority on its embedded store (:8080), the echo upstream
# (:8081) and Envoy with the Tollgate filter (:10000, admin :9901), in the
# foreground until Ctrl-C. Everything stops with it.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/debug
RUN=.run
mkdir -p "$RUN"
: "${TOLLGATE_DEMO_KEY:?set by the Makefile}"
export TOLLGATE_DEMO_KEY
: "${TOLLGATE_EDGE_CREDENTIAL:?set by the Makefile}"
export TOLLGATE_EDGE_CREDENTIAL
# The token endpoint is reached through Envoy, which appends the client to
# X-Forwarded-For: throttle by that address, not by Envoy's.
export TOLLGATE_TRUSTED_PROXY_HOPS=1

for port in 8080 8081 9901 10000; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "port $port is in use: stop what listens there (another make run?)" >&2
    exit 1
  fi
done

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# Access tokens live 60 s in the demo, so the transparent refresh is quick to see.
"$BIN/tollgate-authority" serve --access-ttl-secs 60 >"$RUN/authority.log" 2>&1 &
pids+=($!)
"$BIN/echo-upstream" --listen 127.0.0.1:8081 >"$RUN/upstream.log" 2>&1 &
pids+=($!)
# TOLLGATE_HOST=native: the same document in the native Envoy module.
case "${TOLLGATE_HOST:-wasm}" in
  native) envoy_config=envoy/envoy-native.yaml; component=dynamic_modules:info ;;
  wasm) envoy_config=envoy/envoy.yaml; component=wasm:info ;;
  *) echo "TOLLGATE_HOST must be wasm or native" >&2; exit 2 ;;
esac
.venv/bin/envoy -c "$envoy_config" --concurrency 2 --log-level warn \
  --component-log-level "$component" >"$RUN/envoy.log" 2>&1 &
pids+=($!)

ready() { curl -fsS -o /dev/null "$1" 2>/dev/null; }
for _ in $(seq 1 100); do
  if ready http://127.0.0.1:9901/ready && ready http://127.0.0.1:8080/healthz; then break; fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a demo process exited; see $RUN/*.log" >&2; tail -n 20 "$RUN"/*.log >&2; exit 1; }
  done
  sleep 0.1
done
ready http://127.0.0.1:9901/ready || { echo "Envoy did not become ready; see $RUN/envoy.log" >&2; exit 1; }

cat <<MSG
Tollgate demo is up (logs in $RUN/):
  Envoy + Tollgate  http://127.0.0.1:10000   (admin http://127.0.0.1:9901)
  authority         http://127.0.0.1:8080    (users alice/alice-password, admin/admin-password)
  echo upstream     http://127.0.0.1:8081

Try, in another shell (the README walks through each step):
  curl -i http://127.0.0.1:10000/api/hello                       # 401, no token
  LOGIN=\$(curl -s -d grant_type=password -d username=alice -d password=alice-password http://127.0.0.1:10000/v1/token)
  TOKEN=\$(echo "\$LOGIN" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:10000/api/hello   # 200, identity headers upstream
  curl -i -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:10000/admin/users # 403, admin scope required
  curl -s http://127.0.0.1:9901/stats?filter=tollgate                           # counters
Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
echo "a demo process exited; see $RUN/*.log" >&2
