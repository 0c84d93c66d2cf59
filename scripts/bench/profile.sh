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
WORK=$(mktemp -d /tmp/tollgate-profile.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill -TERM -- "-$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

tar --exclude=./target --exclude=./.venv --exclude=./.run --exclude=./.tools --exclude=./.git -cf - . | (cd "$WORK" && tar xf -)
python3 - "$WORK" <<'EOF'
import sys
root = sys.argv[1]
p = root + '/src/glue/mod.rs'
s = open(p).read()
anchor = 'mod metrics;\nmod worker;'
old = '''        let headers = self.get_http_request_headers();
        let peer = self
            .get_property(vec!["source", "address"])
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| authenticator::parse_ip(&s));
        self.worker.clone().on_request(self, self.id, headers, peer)'''
if anchor not in s or old not in s:
    sys.exit("profile.sh: src/glue/mod.rs changed shape; update the patch")
s = s.replace(anchor, anchor + '''
pub(crate) mod prof {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::MetricType;
    use std::cell::RefCell;
    pub const NAMES: [&str; 8] = ["prof.headers_ns", "prof.peer_ns", "prof.on_request_ns", "prof.decide_ns",
        "prof.carry_out_ns", "prof.empty_ns", "prof.clock_ns", "prof.requests"];
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
}''')
s = s.replace(old, '''        let ta = prof::now();
        let t0 = prof::now();
        let headers = self.get_http_request_headers();
        let t1 = prof::now();
        let peer = self
            .get_property(vec!["source", "address"])
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| authenticator::parse_ip(&s));
        let t2 = prof::now();
        let a = self.worker.clone().on_request(self, self.id, headers, peer);
        let t3 = prof::now();
        prof::add(5, t0 - ta);
        prof::add(0, t1 - t0);
        prof::add(1, t2 - t1);
        prof::add(2, t3 - t2);
        prof::add(7, 1);
        a''')
open(p, 'w').write(s)
p = root + '/src/glue/worker.rs'
s = open(p).read()
old = '''        let now = now_ms(ctx);
        let decision = self.decide(&headers, peer, now, None);
        let paused = Paused { headers, peer, refresh: None };
        self.carry_out(ctx, id, paused, decision, now, false)'''
if old not in s:
    sys.exit("profile.sh: src/glue/worker.rs changed shape; update the patch")
s = s.replace(old, '''        let n0 = super::prof::now();
        let now = now_ms(ctx);
        let d0 = super::prof::now();
        let decision = self.decide(&headers, peer, now, None);
        let d1 = super::prof::now();
        let paused = Paused { headers, peer, refresh: None };
        let a = self.carry_out(ctx, id, paused, decision, now, false);
        let d2 = super::prof::now();
        super::prof::add(6, d0 - n0);
        super::prof::add(3, d1 - d0);
        super::prof::add(4, d2 - d1);
        a''')
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
WRK=(taskset -c 1 timeout 60 wrk -t1 -c32 -s scripts/bench/rotate.lua "http://127.0.0.1:$PORT/api/items" -- "$DIR/tokens-pool.txt")
"${WRK[@]}" -d2s >/dev/null
stats() { curl -s "http://127.0.0.1:$ADMIN/stats?filter=prof" | tr -d ':'; }
stats >"$WORK/before"; t0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
out=$("${WRK[@]}" -d5s | sed -n 's/^WRKJSON //p')
t1=$(awk '{print $14 + $15}' "/proc/$PID/stat"); stats >"$WORK/after"
req=$(printf '%s' "$out" | grep -oE '"requests":[0-9]+' | cut -d: -f2)
echo "requests: $req in 5 s; Envoy CPU per request: $(awk -v t=$((t1 - t0)) -v r="$req" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t / hz * 1e6 / r}') µs (instrumented)"
echo "in-filter wall time per request, µs (each includes one clock read = 'empty'):"
join <(sort "$WORK/before") <(sort "$WORK/after") | awk '$1 ~ /_ns$/ {d = $3 - $2; n = $1; sub(/^wasmcustom\.prof\./, "", n); sub(/_ns$/, "", n); printf "  %-12s %6.2f\n", n, d / 1000 / '"$req"'}'
if command -v node >/dev/null; then
  (cd bench/wasm-probe && cargo build -q --release --target wasm32-unknown-unknown --target-dir ../../target/wasm-probe)
  echo "the core compiled to Wasm, in Node's V8 (ns per call), TurboFan then Liftoff-only:"
  taskset -c 0 node scripts/bench/probe.mjs target/wasm-probe/wasm32-unknown-unknown/release/tollgate_wasm_probe.wasm
  taskset -c 0 node --liftoff-only scripts/bench/probe.mjs target/wasm-probe/wasm32-unknown-unknown/release/tollgate_wasm_probe.wasm 2>/dev/null | tail -1
fi
