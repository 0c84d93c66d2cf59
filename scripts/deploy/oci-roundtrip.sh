#!/usr/bin/env bash
# The OCI round trip: build the image layout, start Debian's docker-registry on
# a free loopback port, push the image with skopeo, pull it back into a fresh
# layout, and compare: the manifest digest, and the sha256 of plugin.wasm
# against the module the build produced. Every wait is bounded; the registry
# is stopped and its data removed on every exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
WASM=target/wasm32-wasip1/release/tollgate.wasm
for c in skopeo docker-registry curl; do
  command -v "$c" >/dev/null || { echo "oci-roundtrip: $c is missing (scripts/deploy/tools.sh)" >&2; exit 1; }
done
[ -f "$WASM" ] || { echo "oci-roundtrip: $WASM is missing: run 'make build' first" >&2; exit 1; }

TMP=$(mktemp -d)
REG_PID=
cleanup() {
  if [ -n "$REG_PID" ] && kill -0 "$REG_PID" 2>/dev/null; then
    kill "$REG_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$REG_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$REG_PID" 2>/dev/null || true
    wait "$REG_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

TAG=roundtrip
python3 scripts/deploy/oci_image.py build "$WASM" "$TMP/built" "$TAG" >/dev/null

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$TMP/registry"
cat > "$TMP/registry.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $TMP/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$TMP/registry.yml" >"$TMP/registry.log" 2>&1 &
REG_PID=$!
up=
for _ in $(seq 100); do
  if curl -fsS -m 1 "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1; then up=1; break; fi
  kill -0 "$REG_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$up" ]; then
  echo "oci-roundtrip: the registry did not come up on 127.0.0.1:$PORT" >&2
  cat "$TMP/registry.log" >&2
  exit 1
fi

REF="127.0.0.1:$PORT/tollgate/filter:$TAG"
SK=(timeout 60 skopeo --insecure-policy)
"${SK[@]}" copy --quiet --dest-tls-verify=false "oci:$TMP/built:$TAG" "docker://$REF"
"${SK[@]}" copy --quiet --src-tls-verify=false "docker://$REF" "oci:$TMP/pulled:$TAG"
remote=$("${SK[@]}" inspect --tls-verify=false --raw "docker://$REF" | sha256sum | cut -d' ' -f1)
local_digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$TMP/built/index.json")

python3 scripts/deploy/oci_image.py extract "$TMP/pulled" "$TAG" "$TMP/plugin.wasm" >/dev/null
want=$(sha256sum "$WASM" | cut -d' ' -f1)
got=$(sha256sum "$TMP/plugin.wasm" | cut -d' ' -f1)
if [ "sha256:$remote" != "$local_digest" ]; then
  echo "oci-roundtrip: the registry serves manifest sha256:$remote, built $local_digest" >&2
  exit 1
fi
if [ "$want" != "$got" ]; then
  echo "oci-roundtrip: pulled plugin.wasm sha256:$got != built module sha256:$want" >&2
  exit 1
fi
echo "oci-roundtrip: pushed and pulled $REF: manifest $local_digest, plugin.wasm sha256:$got = $WASM"
