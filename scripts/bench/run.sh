#!/usr/bin/env bash
# `make bench`: Tollgate (Wasm and native) side by side with bare Envoy,
# Envoy's jwt_authn (cache on, sized like Tollgate's, and off) and ext_authz
# to a callout authorizer, plus the authority's side (feed and refresh
# throughput per store, feed requests per Envoy); writes BENCHMARKS.md and
# docs/bench/throughput.svg. See BENCHMARKS.md, "Setup", for the method.
#
#   BENCH_QUICK=1        smoke mode: every phase, one short round (~3 min with
#                        a warm build), written under .run/bench/
#   BENCH_ROUNDS=N       rounds (default 7; quick 1)
#   BENCH_SECONDS=S      closed-loop seconds per run (default 2)
#   BENCH_OPEN_SECONDS=S open-loop seconds per run (default 3)
#   BENCH_CONNECTIONS=N  wrk connections (default 32)
#   BENCH_OPEN_RATE=R    open-loop req/s (default: half the slowest contender's
#                        saturated throughput on the large pool, phase 1)
#   BENCH_PORT_BASE=P    listeners on P..P+7, admin P+100.., authorizer P+99,
#                        authority P+98, redis P+97, feed Envoys P+50/P+150..
#   BENCH_OUT=FILE       the markdown report (default BENCHMARKS.md; smoke mode:
#                        .run/bench/BENCHMARKS-quick.md)
#   BENCH_SVG=FILE       the chart (default docs/bench/throughput.svg; smoke
#                        mode: .run/bench/throughput-quick.svg)
#   BENCH_PHASES="..."   the phases to run (default all: micro memory rounds
#                        authority feed); for development, e.g. "rounds"
#   BENCH_QUIET_BUDGET=S seconds the whole run may spend waiting, before a
#                        measurement, for other processes to leave the two
#                        cores alone (default 120, quick 10; 0 = never wait)
#
# Phases: (1) memory: each contender alone at --concurrency 1 and 2, VmRSS
# after the large pool (also calibrates the open-loop rate); (2) rounds: each
# contender started alone on core 0 (--concurrency 1), warm-up discarded,
# every workload closed loop (wrk) and the fit pool open loop
# (tollgate-bench open), stopped; the load generators on core 1; (3) the
# authority on each store: feed polls/s and refreshes/s; (4) one Envoy's feed
# requests per minute, idle and under bumps, polling vs long polling. Every
# wait is bounded; every process started here is killed (by process group)
# on exit, whatever the exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
  ROUNDS=${BENCH_ROUNDS:-1}; SECONDS_RUN=${BENCH_SECONDS:-1}; OPEN_SECONDS=${BENCH_OPEN_SECONDS:-1}
  WARM_SECONDS=1; AUTH_SECONDS=1; FEED_WINDOW=4; FEED_WAIT_MS=2000; BUMP_RATE=5
else
  ROUNDS=${BENCH_ROUNDS:-7}; SECONDS_RUN=${BENCH_SECONDS:-2}; OPEN_SECONDS=${BENCH_OPEN_SECONDS:-3}
  WARM_SECONDS=1; AUTH_SECONDS=5; FEED_WINDOW=20; FEED_WAIT_MS=10000; BUMP_RATE=5
fi
CONNS=${BENCH_CONNECTIONS:-32}
PHASES=" ${BENCH_PHASES:-micro memory rounds authority feed} "
phase() { [[ "$PHASES" == *" $1 "* ]]; }
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
# The last two are reference floors (bench/wasm-floor), run on the fit pool only.
CONTENDERS=(bare jwt_authn_cache jwt_authn_nocache ext_authz tollgate native wasm_noop wasm_hostcalls)
NATIVE=target/native/libtollgate_native.so
FLOOR_WASM=target/wasm-floor/wasm32-wasip1/release/tollgate_wasm_floor.wasm
WORKLOADS=(fit over denied)
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
scripts/wasm-opt.sh "$WASM"
# One cargo invocation for both: built separately, their shared dependencies
# resolve different features and each build would undo the other's.
cargo build --release -p tollgate-bench -p tollgate-authority
cargo build --profile native -p tollgate-native
(cd bench/wasm-floor && cargo build --release --target wasm32-wasip1 --target-dir ../../target/wasm-floor)
if phase micro; then cargo bench --bench verify --no-run; fi

for port in $(seq "$PORT_BASE" $((PORT_BASE + ${#CONTENDERS[@]} - 1))) $(seq $((PORT_BASE + 100)) $((PORT_BASE + 107))) \
    $((PORT_BASE + 50)) $((PORT_BASE + 51)) $((PORT_BASE + 150)) $((PORT_BASE + 151)) $((PORT_BASE + 97)) $((PORT_BASE + 98)) $((PORT_BASE + 99)); do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then die "port $port is in use (set BENCH_PORT_BASE)"; fi
done

rm -rf "$DIR"; mkdir -p "$DIR"
RESULTS=$DIR/results.jsonl; : >"$RESULTS"
META=$DIR/meta.txt; : >"$META"
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

# ---- micro: criterion, on core 0 while nothing else runs ------------------
if phase micro; then
log "criterion: benches/verify.rs"
if [ "$QUICK" = 1 ]; then CRIT_ARGS=(--warm-up-time 0.2 --measurement-time 0.3); else CRIT_ARGS=(--warm-up-time 1 --measurement-time 1.5); fi
rm -rf target/criterion
  taskset -c 0 timeout 300 cargo bench --bench verify -- --noplot "${CRIT_ARGS[@]}" >"$DIR/criterion.log" 2>&1 \
  || { tail -n 30 "$DIR/criterion.log" >&2; die "criterion failed"; }
grep -E '^token:' "$DIR/criterion.log" | head -1 >&2 || true
fi

# ---- inputs: tokens and Envoy configs --------------------------------------
"$BIN" gen --dir "$DIR" --config envoy/tollgate.json --wasm "$WASM" --floor-wasm "$FLOOR_WASM" --native "$NATIVE" \
  --port-base "$PORT_BASE" --feed-wait-ms "$FEED_WAIT_MS"
# shellcheck source=/dev/null
. "$DIR/pools.env" # CACHE_ENTRIES, POOL_FIT, POOL_OVER

# ---- processes, one contender at a time ----------------------------------
# Only the measured contender is alive during its measurements (for ext_authz:
# its Envoy and the authorizer): no idle Envoy's timers, no other VM's
# background work shares core 0 with it (docs/bench/profile.md, the tail).
declare -A PORT ADMIN
for i in "${!CONTENDERS[@]}"; do c=${CONTENDERS[$i]}; PORT[$c]=$((PORT_BASE + i)); ADMIN[$c]=$((PORT_BASE + 100 + i)); done
AUTHZ_PORT=$((PORT_BASE + 99))
EPID=""; APID=""
ready() { curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; }
stop_pid() { # pid: TERM its group, wait (bounded), then KILL
  local p=$1
  [ -n "$p" ] || return 0
  kill -TERM -- "-$p" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
# start_envoy config-file admin-port concurrency cpus log: sets EPID
start_envoy() {
  setsid taskset -c "$4" "$ENVOY" -c "$1" --concurrency "$3" --disable-hot-restart --log-level warn >"$5" 2>&1 &
  EPID=$!; PIDS+=("$EPID")
  for _ in $(seq 1 300); do
    ready "http://127.0.0.1:$2/ready" && return 0
    kill -0 "$EPID" 2>/dev/null || { tail -n 30 "$5" >&2; die "Envoy ($1) exited"; }
    sleep 0.1
  done
  tail -n 30 "$5" >&2; die "Envoy ($1) not ready in 30 s"
}
start_contender() { # contender concurrency cpus
  local c=$1
  if [ "$c" = ext_authz ]; then
    setsid taskset -c "$3" "$BIN" authz --listen "127.0.0.1:$AUTHZ_PORT" --config "$DIR/tollgate-bench.json" \
      >>"$DIR/authz.log" 2>&1 &
    APID=$!; PIDS+=("$APID")
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$AUTHZ_PORT) 2>/dev/null && break; sleep 0.1; done
    kill -0 "$APID" 2>/dev/null || { cat "$DIR/authz.log" >&2; die "authorizer exited"; }
  fi
  start_envoy "$DIR/envoy-$c.json" "${ADMIN[$c]}" "$2" "$3" "$DIR/envoy-$c.log"
}
stop_contender() { stop_pid "$EPID"; EPID=""; stop_pid "$APID"; APID=""; }

# ---- preflight: every contender means what the workloads say --------------
status() { # port [token]
  local auth=()
  [ -n "${2:-}" ] && auth=(-H "Authorization: Bearer $2")
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${auth[@]}" "http://127.0.0.1:$1/api/items"
}
preflight() { # contender (running)
  local c=$1 s bad good
  good=$(head -n 1 "$DIR/tokens-fit.txt")
  s=$(status "${PORT[$c]}" "$good"); [ "$s" = 200 ] || die "$c: a pool token got $s, not 200"
  [ "$c" = bare ] || [[ "$c" == wasm_* ]] && return 0
  while IFS= read -r bad; do
    # jwt_authn answers a wrong audience with 403, the others with 401.
    s=$(status "${PORT[$c]}" "$bad"); [[ "$s" =~ ^40[13]$ ]] || die "$c: a denied-mix token got $s, not 401/403: $bad"
  done < <(head -n 4 "$DIR/tokens-denied.txt")
  s=$(status "${PORT[$c]}"); [ "$s" = 401 ] || die "$c: no token got $s, not 401"
}

# ---- measurement ----------------------------------------------------------
# Busy jiffies of one core (user nice system irq softirq steal), for the
# time the core spent on anything but the contender: other processes of
# this machine, interrupts.
core_busy() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
ticks() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Nanoseconds on CPU and waiting on a run queue, all threads of a process
# (/proc/<pid>/task/*/schedstat): the wait is time Envoy was ready to run but
# something else held its core, the direct measure of a disturbed tail.
sched() { [ -n "$1" ] && cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{r += $1; w += $2} END {printf "%.0f %.0f\n", r, w}' || echo "0 0"; }
rss_kb() { [ -n "$1" ] && awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
alive() {
  kill -0 "$EPID" 2>/dev/null || die "Envoy died; see $DIR/envoy-*.log"
  [ -z "$APID" ] || kill -0 "$APID" 2>/dev/null || die "the authorizer died; see $DIR/authz.log"
}
# Before each measurement our processes are idle, so busy time on either core
# belongs to something else on the machine. Wait (in 0.5 s samples) until
# both cores are under 10% busy, within a budget for the whole run; the
# time waited and the last sample go into the results.
QUIET_BUDGET=${BENCH_QUIET_BUDGET:-$([ "$QUICK" = 1 ] && echo 10 || echo 120)}
QUIET_LEFT=$(( QUIET_BUDGET * 2 ))
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
wrk_run() { # port seconds tokens-file [cpus] -> WRKJSON payload
  taskset -c "${4:-1}" timeout $(($2 + 30)) wrk "${WRK_FLAGS[@]}" "-d${2}s" "http://127.0.0.1:$1/api/items" -- "$3" \
    | sed -n 's/^WRKJSON //p'
}
# The token-cache counters of the running contender: "hits misses" (Tollgate
# adds its counters up each second, so wait for the tick after a run).
cache_counts() { # contender
  local c=$1 pat
  case $c in
    tollgate|native) pat='token_cache\.(hit|miss):'; sleep 1.2 ;;
    jwt_authn_cache|jwt_authn_nocache) pat='jwt_authn\.jwt_cache_(hit|miss):' ;;
    *) echo "0 0"; return ;;
  esac
  curl -s --max-time 2 "http://127.0.0.1:${ADMIN[$c]}/stats" | grep -E "$pat" \
    | awk '/hit:/{h+=$2} /miss:/{m+=$2} END{printf "%.0f %.0f\n", h, m}'
}

measure() { # round mode workload contender
  local round=$1 mode=$2 wl=$3 c=$4 e0 e1 a0 a1 b0 b1 l0 l1 out key h0 m0 h1 m1 t0 t1 s0 q0 s1 q1
  alive
  # The counts after this process's previous run are its counts now (nothing
  # ran in between), which saves Tollgate's tick wait.
  if [ "$SNAP_PID" = "$EPID" ]; then h0=$SNAP_H; m0=$SNAP_M; else read -r h0 m0 < <(cache_counts "$c"); fi
  wait_quiet
  read -r s0 q0 < <(sched "$EPID")
  e0=$(ticks "$EPID"); a0=$(ticks "$APID"); b0=$(core_busy 0); l0=$(core_busy 1); t0=$(date +%s%N)
  if [ "$mode" = closed ]; then
    out=$(wrk_run "${PORT[$c]}" "$SECONDS_RUN" "$DIR/tokens-$wl.txt"); key=wrk
  else
    out=$(taskset -c 1 timeout $((OPEN_SECONDS + 30)) "$BIN" open --url "http://127.0.0.1:${PORT[$c]}/api/items" \
      --tokens "$DIR/tokens-$wl.txt" --rate "$OPEN_RATE" --seconds "$OPEN_SECONDS" --connections "$CONNS"); key=open
  fi
  e1=$(ticks "$EPID"); a1=$(ticks "$APID"); b1=$(core_busy 0); l1=$(core_busy 1); t1=$(date +%s%N)
  read -r s1 q1 < <(sched "$EPID")
  [ -n "$out" ] || die "no result from the $mode run ($wl, $c)"
  read -r h1 m1 < <(cache_counts "$c")
  SNAP_PID=$EPID; SNAP_H=$h1; SNAP_M=$m1
  printf '{"round":%d,"mode":"%s","workload":"%s","contender":"%s","envoy_ticks":%d,"authz_ticks":%d,"core0_ticks":%d,"core1_ticks":%d,"wall_ns":%d,"waited_half_s":%d,"pre_busy_pct":%d,"rss_kb":%d,"authz_rss_kb":%d,"cache_hit":%d,"cache_miss":%d,"envoy_runq_wait_ns":%d,"%s":%s}\n' \
    "$round" "$mode" "$wl" "$c" $((e1 - e0)) $((a1 - a0)) $((b1 - b0)) $((l1 - l0)) $((t1 - t0)) "$WAITED" "$PRE_BUSY" "$(rss_kb "$EPID")" \
    "$(rss_kb "$APID")" $((h1 - h0)) $((m1 - m0)) $((q1 - q0)) "$key" "$out" >>"$RESULTS"
  log "round $round $mode $wl $c: $(printf '%s' "$out" | grep -oE '"(requests|achieved_rps|p99_us)":[0-9.]+' | tr '\n' ' ')hits $((h1 - h0)) misses $((m1 - m0))"
}

T_MEASURE=$(date +%s)
SNAP_PID=""; SNAP_H=0; SNAP_M=0

# ---- phase 1: memory at --concurrency 1 and 2, and the open-loop rate -------
# Each contender alone: pinned to core 0 with one worker, then two workers on
# both cores. The load is the large pool, so every worker's token cache
# (Tollgate's and jwt_authn's) is full when VmRSS is read.
RSS_SECONDS=$([ "$QUICK" = 1 ] && echo 1 || echo 2)
phase memory && for c in "${CONTENDERS[@]}"; do
  for conc in 1 2; do
    cpus=0; [ "$conc" = 2 ] && cpus=0,1
    start_contender "$c" "$conc" "$cpus"
    [ "$conc" = 1 ] && preflight "$c"
    out=$(wrk_run "${PORT[$c]}" "$RSS_SECONDS" "$DIR/tokens-over.txt" "$([ "$conc" = 2 ] && echo 0,1 || echo 1)")
    sleep 0.5
    [ -n "$out" ] || die "no result from the memory run ($c, --concurrency $conc)"
    printf '{"round":0,"mode":"rss","workload":"over","contender":"%s","concurrency":%d,"rss_kb":%d,"authz_rss_kb":%d,"wrk":%s}\n' \
      "$c" "$conc" "$(rss_kb "$EPID")" "$(rss_kb "$APID")" "$out" >>"$RESULTS"
    log "memory: $c --concurrency $conc: VmRSS $(( $(rss_kb "$EPID") / 1024 )) MiB"
    stop_contender
  done
done
phase memory && log "preflight: pool token → 200, the four denied kinds and no token → 401/403 on every filter"

if [ -z "${BENCH_OPEN_RATE:-}" ] && ! phase memory; then die "without the memory phase, set BENCH_OPEN_RATE"; fi
OPEN_RATE=${BENCH_OPEN_RATE:-$("$BIN" rate --results "$RESULTS" --fraction "$OPEN_FRACTION")}
log "open-loop rate: $OPEN_RATE req/s (fit pool)"

# ---- phase 2: rounds -----------------------------------------------------
# Every round starts each contender fresh, alone, on core 0 (--concurrency 1),
# discards a warm-up on the fit pool (which also fills the token caches), runs
# the fit pool closed loop and then open loop (both on a warm cache), then the
# other workloads closed loop, and stops it. The starting contender rotates
# per round.
n=${#CONTENDERS[@]}
phase rounds || ROUNDS=0
for round in $(seq 1 "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do
    c=${CONTENDERS[$(((k + round - 1) % n))]}
    start_contender "$c" 1 0
    phase memory || [ "$round" != 1 ] || preflight "$c"
    wrk_run "${PORT[$c]}" "$WARM_SECONDS" "$DIR/tokens-fit.txt" >/dev/null
    measure "$round" closed fit "$c"
    measure "$round" open fit "$c"
    for wl in "${WORKLOADS[@]}"; do
      [[ "$wl" == fit || ( "$c" == wasm_* ) ]] || measure "$round" closed "$wl" "$c"
    done
    stop_contender
  done
done
T_END=$(date +%s)

# ---- phase 3: the authority's side ----------------------------------------
# Each store, the authority pinned to core 0 (with redis-server, for Redis),
# the generator on core 1: feed polls/s and refreshes/s it sustains.
AUTH_BIN=target/release/tollgate-authority
AUTH_PORT=$((PORT_BASE + 98))
REDIS_PORT=$((PORT_BASE + 97))
RPID=""
start_authority() { # store
  local store=$1 dir="$DIR/authority-$1"
  rm -rf "$dir"; mkdir -p "$dir"
  if [ "$store" = redis ]; then
    # Durable as docs/operations.md requires: AOF, fsync on every write.
    setsid taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --save '' \
      --appendonly yes --appendfsync always --daemonize no >"$dir/redis.log" 2>&1 &
    RPID=$!; PIDS+=("$RPID")
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT) 2>/dev/null && break; sleep 0.1; done
  fi
  TOLLGATE_STORE=$store TOLLGATE_DATA_DIR="$dir" TOLLGATE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
    TOLLGATE_LISTEN="127.0.0.1:$AUTH_PORT" setsid taskset -c 0 "$AUTH_BIN" serve >"$dir/authority.log" 2>&1 &
  APID=$!; PIDS+=("$APID")
  for _ in $(seq 1 300); do
    ready "http://127.0.0.1:$AUTH_PORT/healthz" && return 0
    kill -0 "$APID" 2>/dev/null || { tail -n 30 "$dir/authority.log" >&2; die "the authority ($store) exited"; }
    sleep 0.1
  done
  die "the authority ($store) not ready in 30 s"
}
stop_authority() { stop_pid "$APID"; APID=""; stop_pid "$RPID"; RPID=""; }
authority_load() { # store mode seconds connections [rate]
  local a0 a1 r0 r1 out
  wait_quiet
  a0=$(ticks "$APID"); r0=$(ticks "$RPID")
  out=$(taskset -c 1 timeout $(($3 + 60)) "$BIN" authority --url "http://127.0.0.1:$AUTH_PORT" --mode "$2" \
    --seconds "$3" --connections "$4" --rate "${5:-10}")
  a1=$(ticks "$APID"); r1=$(ticks "$RPID")
  [ -n "$out" ] || die "no result from the authority $2 run ($1)"
  printf '{"round":0,"mode":"authority","workload":"%s","contender":"%s","authority_ticks":%d,"redis_ticks":%d,"authority":%s}\n' \
    "$2" "$1" $((a1 - a0)) $((r1 - r0)) "$out" >>"$RESULTS"
  log "authority $1 $2: $(printf '%s' "$out" | grep -oE '"(rps|p99_us|errors)":[0-9.]+' | tr '\n' ' ')"
}
phase authority && for store in sqlite redis; do
  start_authority "$store"
  authority_load "$store" feed "$AUTH_SECONDS" 32
  authority_load "$store" refresh "$AUTH_SECONDS" 16
  stop_authority
done

# ---- phase 4: feed requests per Envoy, polling vs long polling ------------
# One Envoy (--concurrency 2, as deployed) with Tollgate's revocation section,
# against the authority on SQLite: its `authority` cluster's request count over
# an idle window and over a window with a steady stream of bumps.
if phase feed; then
start_authority sqlite
for m in 0 1; do
  mode=$([ "$m" = 0 ] && echo feed_poll || echo feed_long)
  start_envoy "$DIR/envoy-$mode.json" $((PORT_BASE + 150 + m)) 2 0,1 "$DIR/envoy-$mode.log"
  sleep 2 # the first sync
  rq() { curl -s --max-time 2 "http://127.0.0.1:$((PORT_BASE + 150 + m))/stats?filter=cluster.authority.upstream_rq_total" \
    | awk -F': ' '/upstream_rq_total/{print $2; exit}'; }
  q0=$(rq); sleep "$FEED_WINDOW"; q1=$(rq)
  bump=$(taskset -c 1 "$BIN" authority --url "http://127.0.0.1:$AUTH_PORT" --mode bump --seconds "$FEED_WINDOW" --rate "$BUMP_RATE")
  q2=$(rq)
  printf '{"round":0,"mode":"feed","workload":"%s","contender":"tollgate","window_s":%s,"idle_requests":%d,"bump_requests":%d,"bump_rate":%d,"wait_ms":%d,"bumps":%s}\n' \
    "$mode" "$FEED_WINDOW" $((q1 - q0)) $((q2 - q1)) "$BUMP_RATE" "$([ "$m" = 1 ] && echo "$FEED_WAIT_MS" || echo 0)" "$bump" >>"$RESULTS"
  log "feed $mode: idle $((q1 - q0)) requests in $FEED_WINDOW s, with $BUMP_RATE bumps/s $((q2 - q1))"
  stop_pid "$EPID"; EPID=""
done
stop_authority
fi

# ---- report ---------------------------------------------------------------
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta quick "$QUICK"
meta rounds "$ROUNDS"
meta seconds "$SECONDS_RUN"
meta open_seconds "$OPEN_SECONDS"
meta connections "$CONNS"
meta open_rate "$OPEN_RATE"
meta open_fraction "$( [ -n "${BENCH_OPEN_RATE:-}" ] && echo 'set by BENCH_OPEN_RATE, not' || echo 'half')"
meta cache_entries "$CACHE_ENTRIES"
meta pool_fit "$POOL_FIT"
meta pool_over "$POOL_OVER"
meta auth_seconds "$AUTH_SECONDS"
meta feed_window_s "$FEED_WINDOW"
meta feed_wait_ms "$FEED_WAIT_MS"
meta bump_rate "$BUMP_RATE"
meta warm_seconds "$WARM_SECONDS"
meta rss_seconds "$RSS_SECONDS"
meta authority_cmd "taskset -c 1 tollgate-bench authority --mode feed|refresh --seconds $AUTH_SECONDS --connections 32|16"
meta clk_tck "$(getconf CLK_TCK)"
meta cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
meta cores "$(nproc)"
meta mem_mib "$(awk '/MemTotal/{printf "%d", $2/1024}' /proc/meminfo)"
meta kernel "$(uname -r)"
meta envoy_version "$("$ENVOY" --version | grep -oE '[0-9a-f]{40}/[0-9.]+/[A-Za-z]+/[A-Z]+/[A-Za-z]+' | head -1)"
meta wrk_cmd "taskset -c 1 wrk ${WRK_FLAGS[*]} -d${SECONDS_RUN}s http://127.0.0.1:PORT/api/items -- TOKENS ($(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2))"
meta open_cmd "taskset -c 1 tollgate-bench open --rate $OPEN_RATE --seconds $OPEN_SECONDS --connections $CONNS --tokens tokens-fit.txt"
meta rustc "$(rustc --version)"
meta wasm_bytes "$(stat -c %s "$WASM")"
meta token_bytes "$(head -n 1 "$DIR/tokens-fit.txt" | tr -d '\n' | wc -c)"
meta wall_s "$((T_END - T_MEASURE)) (whole script so far $(( $(date +%s) - T_START )))"
meta quiet_waited_s "$(( QUIET_BUDGET - QUIET_LEFT / 2 ))"
meta quiet_budget_s "$QUIET_BUDGET"
meta authority_phase_s "$(( $(date +%s) - T_END ))"

"$BIN" report --dir "$DIR" --md "$MD_OUT" --svg "$SVG_OUT" --criterion target/criterion
log "done in $(($(date +%s) - T_START)) s: $MD_OUT, $SVG_OUT (raw results in $DIR)"
