#!/usr/bin/env bash
# The tail experiment behind docs/bench/profile.md, "Why the open-loop tail
# did not reproduce": the same open-loop run (tollgate-bench open, one rate,
# the 10k pool) on the same contenders under different arrangements of the
# other processes, so the cause of the millisecond p99s is measured, not
# guessed. Not part of `make bench`; run by hand on a warm build:
#
#   scripts/bench/tail.sh [DIR]      (default .run/tail; ~4 min)
#
#   TAIL_RATE=R      req/s (default 4400, the issue's rate); the pool that fits
#                    the token cache (tokens-fit.txt)
#   TAIL_SECONDS=S   seconds per run (default 4)
#   TAIL_REPEAT=N    runs per contender and arrangement (default 3)
#   TAIL_CONTENDERS  default "tollgate wasm_noop bare"
#
# Arrangements (each prints one line per run: p50/p99/p99.9, the generator's
# worst schedule lag, how long the measured Envoy's threads and the
# generator's thread waited on a run queue for their core (schedstat), the CPU
# the other bench processes used, and core 0's busy share outside them):
#   crowd       every contender of make bench (8 Envoys) and the ext_authz
#               authorizer alive and idle on core 0, as the old harness had them
#   crowd-stop  the same processes, all but the measured one SIGSTOPped
#   crowd-sat   crowd, measured right after a 3 s saturating wrk run
#   alone       only the measured Envoy alive (started fresh), core 0
#   alone-sat   alone, measured right after a 3 s saturating wrk run
#   alone-nopin alone, neither Envoy nor the generator pinned
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-.run/tail}
RATE=${TAIL_RATE:-4400}; SECS=${TAIL_SECONDS:-4}; REPEAT=${TAIL_REPEAT:-3}
read -r -a WANT <<<"${TAIL_CONTENDERS:-tollgate wasm_noop bare}"
ALL=(bare jwt_authn_cache jwt_authn_nocache ext_authz tollgate native wasm_noop wasm_hostcalls)
BASE=${BENCH_PORT_BASE:-19000}
BIN=target/release/tollgate-bench
ENVOY=.venv/bin/envoy
export TOLLGATE_DEMO_KEY=${TOLLGATE_DEMO_KEY:-ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24}
export TOLLGATE_EDGE_CREDENTIAL=${TOLLGATE_EDGE_CREDENTIAL:-demo-edge-credential-not-for-production-0001}
mkdir -p "$DIR"
"$BIN" gen --dir "$DIR" --config envoy/tollgate.json --wasm target/wasm32-wasip1/release/tollgate.wasm \
  --floor-wasm target/wasm-floor/wasm32-wasip1/release/tollgate_wasm_floor.wasm \
  --native target/native/libtollgate_native.so --port-base "$BASE" >/dev/null

PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -CONT -- "-$p" 2>/dev/null; kill -TERM -- "-$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT
idx() { local i; for i in "${!ALL[@]}"; do if [ "${ALL[$i]}" = "$1" ]; then echo "$i"; fi; done; }
declare -A EPID
start() { # contender pin(0/1)
  local i; i=$(idx "$1")
  local pin=(taskset -c 0); [ "$2" = 1 ] || pin=()
  setsid "${pin[@]}" "$ENVOY" -c "$DIR/envoy-$1.json" --concurrency 1 --disable-hot-restart --log-level warn \
    >"$DIR/envoy-$1.log" 2>&1 &
  EPID[$1]=$!; PIDS+=("${EPID[$1]}")
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$((BASE + 100 + i))/ready" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "envoy $1 not ready" >&2; exit 1
}
stop() { kill -TERM -- "-${EPID[$1]}" 2>/dev/null || true; wait "${EPID[$1]}" 2>/dev/null || true; unset "EPID[$1]"; }
core_busy() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# ns on CPU / ns waiting on a run queue, all threads of the given processes.
sched() { local p; for p in "$@"; do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done | awk '{r += $1; w += $2} END {printf "%.0f %.0f\n", r, w}'; }
others() { local o; for o in "${!EPID[@]}"; do [ "$o" = "$1" ] || echo "${EPID[$o]}"; done; [ -z "${AUTHZ:-}" ] || echo "$AUTHZ"; }
run() { # arrangement contender pin
  local i out gen=(taskset -c 1) r0 w0 r1 w1 o0 o1 x c0 c1 t0 t1; i=$(idx "$2"); [ "$3" = 1 ] || gen=()
  read -r r0 w0 < <(sched "${EPID[$2]}"); read -r o0 x < <(sched $(others "$2")); c0=$(core_busy 0); t0=$(date +%s%N)
  out=$("${gen[@]}" "$BIN" open --url "http://127.0.0.1:$((BASE + i))/api/items" --tokens "$DIR/tokens-fit.txt" \
    --rate "$RATE" --seconds "$SECS" --connections 32)
  read -r r1 w1 < <(sched "${EPID[$2]}"); read -r o1 x < <(sched $(others "$2")); c1=$(core_busy 0); t1=$(date +%s%N)
  local j; j() { printf '%s' "$out" | grep -oE "\"$1\":[0-9.]+" | cut -d: -f2; }
  # core 0 busy outside the measured Envoy and the other bench processes, in % of the wall time
  local other=$(( ( (c1 - c0) * 10000000 - (r1 - r0) - (o1 - o0) ) * 100 / (t1 - t0) ))
  printf '%-12s %-10s p50 %6.0f  p99 %7.0f  p99.9 %7.0f us | lag %6.0f us | runq wait: envoy %6.1f ms, gen %6.1f ms | other bench procs %5.1f ms CPU | core0 other %3d%%\n' \
    "$1" "$2" "$(j p50_us)" "$(j p99_us)" "$(j p999_us)" "$(j max_schedule_lag_us)" \
    "$(echo "($w1 - $w0) / 1000000" | bc -l)" "$(echo "$(j gen_runq_wait_us) / 1000" | bc -l)" \
    "$(echo "($o1 - $o0) / 1000000" | bc -l)" "$other" | tee -a "$DIR/tail.tsv"
}
warm() { local i; i=$(idx "$1"); taskset -c 1 wrk -t1 -c32 -d"${2:-1}"s -s scripts/bench/rotate.lua \
  "http://127.0.0.1:$((BASE + i))/api/items" -- "$DIR/tokens-fit.txt" >/dev/null; }
: >"$DIR/tail.tsv"

# crowd and crowd-stop
setsid taskset -c 0 "$BIN" authz --listen "127.0.0.1:$((BASE + 99))" --config "$DIR/tollgate-bench.json" >"$DIR/authz.log" 2>&1 &
AUTHZ=$!; PIDS+=("$AUTHZ")
for c in "${ALL[@]}"; do start "$c" 1; done
for c in "${ALL[@]}"; do warm "$c"; done
# Interleaved, so both arrangements see the same background load.
for r in $(seq 1 "$REPEAT"); do
  for c in "${WANT[@]}"; do
    run crowd "$c" 1
    for o in "${ALL[@]}"; do [ "$o" = "$c" ] || kill -STOP -- "-${EPID[$o]}"; done; kill -STOP -- "-$AUTHZ" || true
    run crowd-stop "$c" 1
    for o in "${ALL[@]}"; do kill -CONT -- "-${EPID[$o]}"; done; kill -CONT -- "-$AUTHZ" || true
    warm "$c" 3; run crowd-sat "$c" 1
  done
done
for c in "${ALL[@]}"; do stop "$c"; done
kill -TERM -- "-$AUTHZ" 2>/dev/null || true; wait "$AUTHZ" 2>/dev/null || true; AUTHZ=""

# alone, alone after saturation, alone unpinned
for r in $(seq 1 "$REPEAT"); do
  for c in "${WANT[@]}"; do
    start "$c" 1; warm "$c"; run alone "$c" 1; warm "$c" 3; run alone-sat "$c" 1; stop "$c"
    start "$c" 0; warm "$c"; run alone-nopin "$c" 0; stop "$c"
  done
done
echo "results: $DIR/tail.tsv"
