#!/bin/sh
# Renders envoy/envoy.yaml for docker-compose: IN -> OUT, changing exactly one
# thing, the ingress listener's bind address 127.0.0.1:10000 -> 0.0.0.0:10000,
# so that Docker's port publishing (which connects to the container's own
# interface, not its loopback) can reach it. Everything else, the admin
# listener (127.0.0.1:9901), the loopback clusters (authority 127.0.0.1:8080,
# which is also the filter document's authority.cluster for its callouts;
# upstream 127.0.0.1:8081: same network namespace), use_remote_address and the
# relative module path, is the file `make run` and the e2e tests use.
# Usage: compose-envoy.sh IN OUT    (POSIX sh: it runs in the envoy image)
set -eu
in=$1
out=$2
from='socket_address: { address: 127.0.0.1, port_value: 10000 }'
to='socket_address: { address: 0.0.0.0, port_value: 10000 }'
n=$(grep -c -F "$from" "$in" || true)
if [ "$n" != 1 ]; then
  echo "compose-envoy.sh: expected exactly one ingress listener line '$from' in $in, found $n" >&2
  exit 1
fi
sed "s/socket_address: { address: 127\.0\.0\.1, port_value: 10000 }/$to/" "$in" > "$out"
grep -q -F "$to" "$out"
