#!/usr/bin/env bash
# Where Tollgate's time goes inside Envoy, per request: a profiling build of
# the filter, made from a copy of this checkout (src/ is not touched), times
# the segments of on_http_request_headers with the host clock and adds the
# nanoseconds to Envoy counters (`prof.*`). Also times the core compiled to
# Wasm in Node's V8 (bench/wasm-probe) when node is installed.
#
#   scripts/bench/profile.sh      (after `make bench` or BENCH_QUICK=1, which
#                                   leaves .run/bench/ with configs and tokens)
#
# Each segment includes one clock read (~0.25 µs, printed as `empty`).
# The patch follows the glue as of src/glue/{mod,worker}.rs at the commit
# this script was written for; if the glue moves, the script says so.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=.run/bench
[ -f "$DIR/envoy-tollgate.json" ] || { echo "run make bench (or BENCH_QUICK=1 scripts/bench/run.sh) first" >&2; exit 1; }
export TOLLGATE_DEMO_KEY=${TOLLGATE_DEMO_KEY:-ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24}
export TOLLGATE_EDGE_CREDENTIAL=${TOLLGATE_EDGE_CREDENTIAL:-demo-edge-credential-not-for-production-0001}
WORK=$(mktemp -d /tmp/tollgate-profile.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill -TERM -- "-$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

tar --exclude=./target --exclude=./.venv --exclude=./.run --exclude=./.tools --exclude=./.git -cf - . | (cd "$WORK" && tar xf -)
python3 - "$WORK" <<'EOF'
# Statement-level patch, tolerant of small glue changes: time the header
# fetch, the peer lookup, the whole callback, and the core's decide().
import re, sys
root = sys.argv[1]
def die(what):
    sys.exit(f"profile.sh: cannot find {what} in the glue; update the patch")
p = root + '/src/glue/mod.rs'
s = open(p).read()
m = re.search(r'fn on_http_request_headers\(&mut self[^{]*\{\n', s) or die("on_http_request_headers")
body_start = m.end()
body_end = s.index('\n    }\n', body_start)
body = s[body_start:body_end]
hm = re.search(r'(        let headers = self\.get_http_request_headers[^;]*;)', body) or die("the header fetch")
body = body.replace(hm.group(1), '        let __h0 = prof::now();\n' + hm.group(1) + '\n        prof::add(0, prof::now() - __h0);')
pm = re.search(r'(        let peer = self[^;]*;)', body, re.S) or die("the peer lookup")
body = body.replace(pm.group(1), '        let __p0 = prof::now();\n' + pm.group(1) + '\n        prof::add(1, prof::now() - __p0);')
lines = body.rstrip('\n').split('\n')
last = lines[-1]
if not last.strip().startswith('self.worker'):
    die("the callback's final expression")
lines[-1] = '        let __a = ' + last.strip() + ';\n        prof::add(2, prof::now() - __t0);\n        prof::add(7, 1);\n        __a'
body = '        let __e0 = prof::now();\n        prof::add(5, prof::now() - __e0);\n        let __t0 = prof::now();\n' + '\n'.join(lines)
s = s[:body_start] + body + s[body_end:]
s = s.replace('mod worker;', """mod worker;

pub(crate) mod prof {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::MetricType;
    use std::cell::RefCell;
    pub const NAMES: [&str; 8] = ["prof.headers_ns", "prof.peer_ns", "prof.callback_ns", "prof.decide_ns",
        "prof.unused_ns", "prof.empty_ns", "prof.unused2_ns", "prof.requests"];
    thread_local! { static IDS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) }; }
    pub fn now() -> u64 {
        hostcalls::get_current_time()
            .map(|t| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64))
            .unwrap_or(0)
    }
    pub fn add(i: usize, v: u64) {
        IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            if ids.is_empty() {
                for n in NAMES { ids.push(hostcalls::define_metric(MetricType::Counter, n).unwrap_or(0)); }
            }
            let _ = hostcalls::increment_metric(ids[i], v as i64);
        })
    }
}""", 1)
open(p, 'w').write(s)
p = root + '/src/glue/worker.rs'
s = open(p).read()
m = re.search(r'None => (authenticator::decide\(&self\.config, &req, &k\)),', s) or die("the decide() call")
s = s.replace(m.group(0), 'None => { let __d0 = super::prof::now(); let __r = ' + m.group(1) + '; super::prof::add(3, super::prof::now() - __d0); __r }')
open(p, 'w').write(s)
EOF
echo "profile: building the instrumented filter" >&2
(cd "$WORK" && CARGO_TARGET_DIR="$WORK/target" cargo build -q --release --target wasm32-wasip1 -p tollgate)
PROF_WASM="$WORK/target/wasm32-wasip1/release/tollgate.wasm"
PORT=18050; ADMIN=18150
sed "s#\"filename\": \"[^\"]*tollgate.wasm\"#\"filename\": \"$PROF_WASM\"#; s/\"port_value\": 18004/\"port_value\": $PORT/; s/\"port_value\": 18104/\"port_value\": $ADMIN/" \
  "$DIR/envoy-tollgate.json" >"$WORK/envoy.json"
setsid taskset -c 0 .venv/bin/envoy -c "$WORK/envoy.json" --concurrency 1 --disable-hot-restart --log-level warn >"$WORK/envoy.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$ADMIN/ready" && break; sleep 0.1; done
wrk_for() { taskset -c 1 timeout 60 wrk -t1 -c32 "-d$1" -s scripts/bench/rotate.lua "http://127.0.0.1:$PORT/api/items" -- "$DIR/tokens-pool.txt"; }
wrk_for 2s >/dev/null
stats() { curl -s "http://127.0.0.1:$ADMIN/stats?filter=prof" | tr -d ':'; }
stats >"$WORK/before"; t0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
out=$(wrk_for 5s | sed -n 's/^WRKJSON //p')
t1=$(awk '{print $14 + $15}' "/proc/$PID/stat"); stats >"$WORK/after"
req=$(printf '%s' "$out" | grep -oE '"requests":[0-9]+' | cut -d: -f2)
echo "requests: $req in 5 s; Envoy CPU per request: $(awk -v t=$((t1 - t0)) -v r="$req" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t / hz * 1e6 / r}') µs (instrumented)"
echo "in-filter wall time per request, µs (headers, peer, decide each include one clock read = 'empty'; callback = the whole on_http_request_headers):"
join <(sort "$WORK/before") <(sort "$WORK/after") | awk '$1 ~ /_ns$/ && $1 !~ /unused/ {d = $3 - $2; n = $1; sub(/^wasmcustom\.prof\./, "", n); sub(/_ns$/, "", n); printf "  %-12s %6.2f\n", n, d / 1000 / '"$req"'}'
if command -v node >/dev/null; then
  (cd bench/wasm-probe && cargo build -q --release --target wasm32-unknown-unknown --target-dir ../../target/wasm-probe)
  echo "the core compiled to Wasm, in Node's V8 (ns per call), TurboFan then Liftoff-only:"
  taskset -c 0 node scripts/bench/probe.mjs target/wasm-probe/wasm32-unknown-unknown/release/tollgate_wasm_probe.wasm
  taskset -c 0 node --liftoff-only scripts/bench/probe.mjs target/wasm-probe/wasm32-unknown-unknown/release/tollgate_wasm_probe.wasm 2>/dev/null | tail -1
fi
