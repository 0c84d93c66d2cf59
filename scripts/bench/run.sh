#!/usr/bin/env bash
# `make bench`: Tollgate side by side with bare Envoy, Envoy's jwt_authn
# (cache on and off) and ext_authz to a callout authorizer, in one run on
# this machine, interleaved over rounds; writes BENCHMARKS.md and
# docs/bench/throughput.svg. See BENCHMARKS.md, "Setup", for the method.
#
#   BENCH_QUICK=1        smoke mode: one short round per contender (~2 min with
#                        a warm build), written under .run/bench/
#   BENCH_ROUNDS=N       rounds (default 3)
#   BENCH_SECONDS=S      closed-loop seconds per run (default 3)
#   BENCH_OPEN_SECONDS=S open-loop seconds per run (default 4)
#   BENCH_CONNECTIONS=N  wrk connections (default 32)
#   BENCH_OPEN_RATE=R    open-loop req/s (default: half the slowest contender's
#                        saturated pool throughput in round 1)
#   BENCH_PORT_BASE=P    listeners on P..P+4, authorizer P+99, admin P+100..
#   BENCH_OUT=FILE       the markdown report (default BENCHMARKS.md; smoke mode:
#                        .run/bench/BENCHMARKS-quick.md)
#   BENCH_SVG=FILE       the chart (default docs/bench/throughput.svg; smoke
#                        mode: .run/bench/throughput-quick.svg)
#   BENCH_QUIET_BUDGET=S seconds the whole run may spend waiting, before a
#                        measurement, for other processes to leave the two
#                        cores alone (default 60; 0 = never wait)
#
# Every contender is its own Envoy process from .venv/bin/envoy with
# --concurrency 1 on core 0 (taskset -c 0); wrk and the open-loop generator
# run on core 1. Every wait is bounded; every process started here is killed
# (by process group) on exit, whatever the exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
  ROUNDS=${BENCH_ROUNDS:-1}; SECONDS_RUN=${BENCH_SECONDS:-1}; OPEN_SECONDS=${BENCH_OPEN_SECONDS:-1}
else
  ROUNDS=${BENCH_ROUNDS:-3}; SECONDS_RUN=${BENCH_SECONDS:-3}; OPEN_SECONDS=${BENCH_OPEN_SECONDS:-4}
fi
CONNS=${BENCH_CONNECTIONS:-32}
PORT_BASE=${BENCH_PORT_BASE:-18000}
OPEN_FRACTION=0.5
# A smoke run writes beside its raw results, never over the committed report.
if [ "$QUICK" = 1 ]; then
  MD_OUT=${BENCH_OUT:-.run/bench/BENCHMARKS-quick.md}; SVG_OUT=${BENCH_SVG:-.run/bench/throughput-quick.svg}
else
  MD_OUT=${BENCH_OUT:-BENCHMARKS.md}; SVG_OUT=${BENCH_SVG:-docs/bench/throughput.svg}
fi
DIR=.run/bench
WASM=target/wasm32-wasip1/release/tollgate.wasm
BIN=target/release/tollgate-bench
ENVOY=.venv/bin/envoy
# The last two are reference floors (bench/wasm-floor), run on the pool only.
CONTENDERS=(bare jwt_authn_cache jwt_authn_nocache ext_authz tollgate native wasm_noop wasm_hostcalls)
NATIVE=target/native/libtollgate_native.so
FLOOR_WASM=target/wasm-floor/wasm32-wasip1/release/tollgate_wasm_floor.wasm
WORKLOADS=(pool hot denied)
export TOLLGATE_DEMO_KEY=${TOLLGATE_DEMO_KEY:-ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24}
export TOLLGATE_EDGE_CREDENTIAL=${TOLLGATE_EDGE_CREDENTIAL:-demo-edge-credential-not-for-production-0001}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- processes: started with setsid (own process group), killed by group --
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools and builds ---------------------------------------------------
T_START=$(date +%s)
scripts/deps.sh
if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian package)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
command -v taskset >/dev/null || die "taskset (util-linux) is required"
[ "$(nproc)" -ge 2 ] || die "needs 2 cores: Envoy on core 0, the load generator on core 1"
log "building the filter and the bench helpers (release)"
cargo build --release --target wasm32-wasip1 -p tollgate
cargo build --release -p tollgate-bench
cargo build --profile native -p tollgate-native
(cd bench/wasm-floor && cargo build --release --target wasm32-wasip1 --target-dir ../../target/wasm-floor)
cargo bench --bench verify --no-run

for i in "${!CONTENDERS[@]}"; do
  for port in $((PORT_BASE + i)) $((PORT_BASE + 100 + i)); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then die "port $port is in use (set BENCH_PORT_BASE)"; fi
  done
done

rm -rf "$DIR"; mkdir -p "$DIR"
RESULTS=$DIR/results.jsonl; : >"$RESULTS"
META=$DIR/meta.txt; : >"$META"
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

# ---- micro: criterion, on core 0 while nothing else runs ------------------
log "criterion: benches/verify.rs"
if [ "$QUICK" = 1 ]; then CRIT_ARGS=(--warm-up-time 0.2 --measurement-time 0.3); else CRIT_ARGS=(--warm-up-time 1 --measurement-time 1.5); fi
rm -rf target/criterion
taskset -c 0 timeout 300 cargo bench --bench verify -- --noplot "${CRIT_ARGS[@]}" >"$DIR/criterion.log" 2>&1 \
  || { tail -n 30 "$DIR/criterion.log" >&2; die "criterion failed"; }
grep -E '^token:' "$DIR/criterion.log" | head -1 >&2 || true

# ---- inputs: tokens and Envoy configs --------------------------------------
"$BIN" gen --dir "$DIR" --config envoy/tollgate.json --wasm "$WASM" --floor-wasm "$FLOOR_WASM" --native "$NATIVE" --port-base "$PORT_BASE"

# ---- start every contender ------------------------------------------------
declare -A EPID PORT ADMIN
AUTHZ_PID=""
AUTHZ_PORT=$((PORT_BASE + 99))
setsid taskset -c 0 "$BIN" authz --listen "127.0.0.1:$AUTHZ_PORT" --config "$DIR/tollgate-bench.json" \
  >"$DIR/authz.log" 2>&1 &
AUTHZ_PID=$!; PIDS+=("$AUTHZ_PID")
for i in "${!CONTENDERS[@]}"; do
  c=${CONTENDERS[$i]}
  PORT[$c]=$((PORT_BASE + i)); ADMIN[$c]=$((PORT_BASE + 100 + i))
  setsid taskset -c 0 "$ENVOY" -c "$DIR/envoy-$c.json" --concurrency 1 --disable-hot-restart \
    --log-level warn >"$DIR/envoy-$c.log" 2>&1 &
  EPID[$c]=$!; PIDS+=("${EPID[$c]}")
done
ready() { curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; }
for c in "${CONTENDERS[@]}"; do
  for _ in $(seq 1 300); do
    ready "http://127.0.0.1:${ADMIN[$c]}/ready" && break
    kill -0 "${EPID[$c]}" 2>/dev/null || { tail -n 30 "$DIR/envoy-$c.log" >&2; die "Envoy ($c) exited"; }
    sleep 0.1
  done
  ready "http://127.0.0.1:${ADMIN[$c]}/ready" || { tail -n 30 "$DIR/envoy-$c.log" >&2; die "Envoy ($c) not ready in 30 s"; }
done
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$AUTHZ_PORT) 2>/dev/null && break; sleep 0.1; done
kill -0 "$AUTHZ_PID" 2>/dev/null || { cat "$DIR/authz.log" >&2; die "authorizer exited"; }
log "up: ${CONTENDERS[*]} on 127.0.0.1:$PORT_BASE..$((PORT_BASE + ${#CONTENDERS[@]} - 1)), authorizer :$AUTHZ_PORT"

# ---- preflight: every contender means what the workloads say --------------
status() { # port [token]
  local auth=()
  [ -n "${2:-}" ] && auth=(-H "Authorization: Bearer $2")
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${auth[@]}" "http://127.0.0.1:$1/api/items"
}
good=$(head -n 1 "$DIR/tokens-pool.txt")
for c in "${CONTENDERS[@]}"; do
  s=$(status "${PORT[$c]}" "$good"); [ "$s" = 200 ] || die "$c: a pool token got $s, not 200"
  [ "$c" = bare ] || [[ "$c" == wasm_* ]] && continue
  while IFS= read -r bad; do
    # jwt_authn answers a wrong audience with 403, the others with 401.
    s=$(status "${PORT[$c]}" "$bad"); [[ "$s" =~ ^40[13]$ ]] || die "$c: a denied-mix token got $s, not 401/403: $bad"
  done < <(head -n 4 "$DIR/tokens-denied.txt")
  s=$(status "${PORT[$c]}"); [ "$s" = 401 ] || die "$c: no token got $s, not 401"
done
log "preflight: pool token → 200, the four denied kinds and no token → 401/403 on every filter"

# ---- measurement ----------------------------------------------------------
# Busy jiffies of one core (user nice system irq softirq steal), for the
# time the core spent on anything but the contender: other processes of
# this machine, interrupts.
core_busy() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
ticks() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { [ -n "$1" ] && awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
alive() {
  local c
  for c in "${CONTENDERS[@]}"; do kill -0 "${EPID[$c]}" 2>/dev/null || die "Envoy ($c) died; see $DIR/envoy-$c.log"; done
  kill -0 "$AUTHZ_PID" 2>/dev/null || die "the authorizer died; see $DIR/authz.log"
}
# Before each measurement our processes are idle, so busy time on either core
# belongs to something else on the machine. Wait (in 0.5 s samples) until
# both cores are under 10% busy, within a budget for the whole run; the
# time waited and the last sample go into the results.
QUIET_LEFT=$(( ${BENCH_QUIET_BUDGET:-60} * 2 ))
WAITED=0; PRE_BUSY=0
wait_quiet() {
  local x0 y0 x1 y1 half=$(( $(getconf CLK_TCK) / 2 ))
  WAITED=0
  while :; do
    x0=$(core_busy 0); y0=$(core_busy 1); sleep 0.5; x1=$(core_busy 0); y1=$(core_busy 1)
    PRE_BUSY=$(( (x1 - x0 + y1 - y0) * 100 / (2 * half) ))
    if [ "$PRE_BUSY" -lt 10 ] || [ "$QUIET_LEFT" -le 0 ]; then break; fi
    QUIET_LEFT=$((QUIET_LEFT - 1)); WAITED=$((WAITED + 1))
  done
  [ "$WAITED" -gt 0 ] && log "waited $((WAITED / 2)) s for other load to pass (last sample ${PRE_BUSY}% busy)"
  return 0
}
WRK_FLAGS=(-t1 "-c$CONNS" --timeout 2s --latency -s scripts/bench/rotate.lua)
wrk_run() { # port seconds tokens-file -> WRKJSON payload
  taskset -c 1 timeout $(($2 + 30)) wrk "${WRK_FLAGS[@]}" "-d${2}s" "http://127.0.0.1:$1/api/items" -- "$3" \
    | sed -n 's/^WRKJSON //p'
}

measure() { # round mode workload contender
  local round=$1 mode=$2 wl=$3 c=$4 apid="" e0 e1 a0 a1 b0 b1 l0 l1 out key
  [ "$c" = ext_authz ] && apid=$AUTHZ_PID
  alive
  wait_quiet
  e0=$(ticks "${EPID[$c]}"); a0=$(ticks "$apid"); b0=$(core_busy 0); l0=$(core_busy 1)
  if [ "$mode" = closed ]; then
    out=$(wrk_run "${PORT[$c]}" "$SECONDS_RUN" "$DIR/tokens-$wl.txt"); key=wrk
  else
    out=$(taskset -c 1 timeout $((OPEN_SECONDS + 30)) "$BIN" open --url "http://127.0.0.1:${PORT[$c]}/api/items" \
      --tokens "$DIR/tokens-$wl.txt" --rate "$OPEN_RATE" --seconds "$OPEN_SECONDS" --connections "$CONNS"); key=open
  fi
  e1=$(ticks "${EPID[$c]}"); a1=$(ticks "$apid"); b1=$(core_busy 0); l1=$(core_busy 1)
  [ -n "$out" ] || die "no result from the $mode run ($wl, $c)"
  printf '{"round":%d,"mode":"%s","workload":"%s","contender":"%s","envoy_ticks":%d,"authz_ticks":%d,"core0_ticks":%d,"core1_ticks":%d,"waited_half_s":%d,"pre_busy_pct":%d,"rss_kb":%d,"authz_rss_kb":%d,"%s":%s}\n' \
    "$round" "$mode" "$wl" "$c" $((e1 - e0)) $((a1 - a0)) $((b1 - b0)) $((l1 - l0)) "$WAITED" "$PRE_BUSY" "$(rss_kb "${EPID[$c]}")" \
    "$( [ -n "$apid" ] && rss_kb "$apid" || echo 0)" "$key" "$out" >>"$RESULTS"
  log "round $round $mode $wl $c: $(printf '%s' "$out" | grep -oE '"(requests|achieved_rps|p99_us)":[0-9.]+' | tr '\n' ' ')"
}

T_MEASURE=$(date +%s)
log "warm-up: 1 s of the pool per contender"
for c in "${CONTENDERS[@]}"; do wrk_run "${PORT[$c]}" 1 "$DIR/tokens-pool.txt" >/dev/null; done

OPEN_RATE=${BENCH_OPEN_RATE:-}
n=${#CONTENDERS[@]}
for round in $(seq 1 "$ROUNDS"); do
  # A B C D E, A B C D E, ...: the starting contender rotates per round.
  order=()
  for k in $(seq 0 $((n - 1))); do order+=("${CONTENDERS[$(((k + round - 1) % n))]}"); done
  for wl in "${WORKLOADS[@]}"; do
    for c in "${order[@]}"; do
      [[ "$c" == wasm_* && "$wl" != pool ]] || measure "$round" closed "$wl" "$c"
    done
  done
  if [ -z "$OPEN_RATE" ]; then
    OPEN_RATE=$("$BIN" rate --results "$RESULTS" --fraction "$OPEN_FRACTION")
    log "open-loop rate: $OPEN_RATE req/s"
  fi
  for c in "${order[@]}"; do measure "$round" open pool "$c"; done
done
T_END=$(date +%s)

jwt_stats=""
for c in jwt_authn_cache jwt_authn_nocache; do
  s=$(curl -s --max-time 2 "http://127.0.0.1:${ADMIN[$c]}/stats?filter=jwt_authn" \
      | grep -E 'jwt_authn\.(allowed|denied|jwt_cache_hit|jwt_cache_miss):' | sed 's/^http\.bench\.//' | tr '\n' ' ')
  jwt_stats+="$c: ${s% } ; "
done
tg_stats=$(curl -s --max-time 2 "http://127.0.0.1:${ADMIN[tollgate]}/stats?filter=tollgate" | grep -E 'tollgate\.(allowed|denied\.(bad_signature|expired|bad_audience|malformed)):' | tr '\n' ' ')

# ---- report ---------------------------------------------------------------
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta quick "$QUICK"
meta rounds "$ROUNDS"
meta seconds "$SECONDS_RUN"
meta open_seconds "$OPEN_SECONDS"
meta connections "$CONNS"
meta open_rate "$OPEN_RATE"
meta open_fraction "$( [ -n "${BENCH_OPEN_RATE:-}" ] && echo 'set by BENCH_OPEN_RATE, not' || echo 'half')"
meta clk_tck "$(getconf CLK_TCK)"
meta cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
meta cores "$(nproc)"
meta mem_mib "$(awk '/MemTotal/{printf "%d", $2/1024}' /proc/meminfo)"
meta kernel "$(uname -r)"
meta envoy_version "$("$ENVOY" --version | grep -oE '[0-9a-f]{40}/[0-9.]+/[A-Za-z]+/[A-Z]+/[A-Za-z]+' | head -1)"
meta wrk_cmd "taskset -c 1 wrk ${WRK_FLAGS[*]} -d${SECONDS_RUN}s http://127.0.0.1:PORT/api/items -- TOKENS ($(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2))"
meta open_cmd "taskset -c 1 tollgate-bench open --rate $OPEN_RATE --seconds $OPEN_SECONDS --connections $CONNS --tokens tokens-pool.txt"
meta rustc "$(rustc --version)"
meta wasm_bytes "$(stat -c %s "$WASM")"
meta token_bytes "$(head -n 1 "$DIR/tokens-pool.txt" | tr -d '\n' | wc -c)"
meta jwt_stats "${jwt_stats% ; }"
meta tollgate_stats "$tg_stats"
meta wall_s "$((T_END - T_MEASURE)) (whole script so far $((T_END - T_START)))"
meta quiet_waited_s "$(( ${BENCH_QUIET_BUDGET:-60} - QUIET_LEFT / 2 ))"

"$BIN" report --dir "$DIR" --md "$MD_OUT" --svg "$SVG_OUT" --criterion target/criterion
log "done in $(($(date +%s) - T_START)) s: $MD_OUT, $SVG_OUT (raw results in $DIR)"
