#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of the filter core (fuzz/, issue 13).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#   FUZZ_SECONDS=600 scripts/fuzz.sh          # long runs
#   FUZZ_TARGETS="config extract" scripts/fuzz.sh 60
#
# Builds every target of fuzz/ (cargo-fuzz, libFuzzer) and runs each for the
# given time (argument, else FUZZ_SECONDS, else the CI default below). Exits
# non-zero when a target crashes, panics (a property failed), times out or
# runs out of memory; the input is kept under fuzz/artifacts/<target>/ and
# the line to replay it is printed. Prints per target: runs, coverage, seconds.
#
# Each run reads the committed seeds (fuzz/corpus/<target>/, never written)
# and grows a local working corpus (fuzz/work/<target>/, git-ignored), so
# repeated runs on one machine build on each other; fuzz/work/history.tsv
# keeps one line per target and run (date, target, sanitizer, seconds,
# runs, coverage, features, exit status, commit).
#
# Installs what it needs, idempotently (a no-op when present):
#   cargo-fuzz at a pinned version under
#   ${TOLLGATE_TOOLS:-~/.cache/tollgate}/cargo-fuzz-<version>/, outside the
#   checkout. Toolchain: $RUSTUP_TOOLCHAIN when set, else nightly when
#   installed, else stable; on a non-nightly toolchain RUSTC_BOOTSTRAP=1
#   unlocks the -Z flags cargo-fuzz needs.
#
# Other knobs: FUZZ_JOBS (targets run at once, default 2: the CI budget is
# 2 cores), FUZZ_SANITIZER (none|address, default none: the core is safe
# Rust; address for long runs that also want to check the dependencies'
# unsafe code; it builds into its own target directory).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

CARGO_FUZZ_VERSION=0.13.2
# The CI default, measured on 2 cores shared with other builds (load 4.5):
# a cold build takes 91 s (nightly or stable alike; 110 s with
# AddressSanitizer), 10 targets × 20 s two at a time ~115 s: the whole run
# 3 min 16 s, under 4 minutes. (Installing cargo-fuzz, once per machine,
# adds about 2.5 minutes.)
DEFAULT_SECONDS=20

say() { printf 'fuzz: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

seconds=${FUZZ_SECONDS:-$DEFAULT_SECONDS}
if (($#)) && [[ $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
[[ $seconds =~ ^[0-9]+$ ]] && ((seconds > 0)) || die "seconds per target must be a positive integer, got '$seconds'"
jobs=${FUZZ_JOBS:-2}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die "FUZZ_JOBS must be a positive integer, got '$jobs'"
sanitizer=${FUZZ_SANITIZER:-none}
case $sanitizer in none | address) ;; *) die "FUZZ_SANITIZER must be none or address, got '$sanitizer'" ;; esac

# ── the targets, and the dictionary each one mutates with ──
declare -A dict=(
    [token_verify]=jws
    [token_mint]=
    [token_cache]=
    [extract]=http
    [request_view]=http
    [canonical_path]=http
    [config]=json
    [revocation]=json
    [refresh]=json
    [authority_input]=authority
)
all=(token_verify token_mint token_cache extract request_view canonical_path config revocation refresh authority_input)
if (($#)); then
    targets=("$@")
elif [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    targets=("${all[@]}")
fi
for t in "${targets[@]}"; do
    [[ -v "dict[$t]" ]] || die "unknown target '$t' (targets: ${all[*]})"
done
# Every target the crate defines is listed above (a new one must be added).
mapfile -t defined < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^tollgate-fuzz$')
for t in "${defined[@]}"; do
    [[ -v "dict[$t]" ]] || die "fuzz/Cargo.toml defines target '$t' that scripts/fuzz.sh does not run"
done

# ── cargo-fuzz, pinned, outside the checkout ──
command -v cargo >/dev/null || die "cargo not found"
tools="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate}/cargo-fuzz-$CARGO_FUZZ_VERSION"
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
    if ! cargo install --locked --root "$tools" --version "=$CARGO_FUZZ_VERSION" cargo-fuzz; then
        say "warning: 'cargo install --locked' failed; retrying without --locked"
        cargo install --root "$tools" --version "=$CARGO_FUZZ_VERSION" cargo-fuzz
    fi
fi
export PATH="$tools/bin:$PATH"
got=$(cargo-fuzz --version 2>/dev/null | awk '{print $2}') || true
[ "$got" = "$CARGO_FUZZ_VERSION" ] || die "$tools/bin/cargo-fuzz reports version '${got:-?}', want $CARGO_FUZZ_VERSION"

# ── toolchain: nightly, or stable with RUSTC_BOOTSTRAP=1 ──
if [ -z "${RUSTUP_TOOLCHAIN:-}" ] && command -v rustup >/dev/null; then
    if rustup toolchain list | grep -q '^nightly'; then
        export RUSTUP_TOOLCHAIN=nightly
    else
        export RUSTUP_TOOLCHAIN=stable
    fi
fi
rustc_version=$(rustc --version) || die "rustc not found"
if [[ $rustc_version != *nightly* ]]; then
    export RUSTC_BOOTSTRAP=1
    say "toolchain: $rustc_version, with RUSTC_BOOTSTRAP=1"
else
    say "toolchain: $rustc_version"
fi
host=$(rustc -vV | sed -n 's/^host: //p')

# ── build every target ──
target_dir="$root/fuzz/target"
[ "$sanitizer" = none ] || target_dir="$root/fuzz/target-$sanitizer"
start=$(date +%s)
# --debug-assertions: an integer overflow on input is a finding too.
cargo fuzz build --fuzz-dir fuzz --debug-assertions --sanitizer "$sanitizer" --target-dir "$target_dir" ||
    die "cargo fuzz build failed"
build_seconds=$(($(date +%s) - start))
say "built ${#all[@]} targets in ${build_seconds}s (sanitizer: $sanitizer)"
bin_dir="$target_dir/$host/release"

# ── run ──
logs=$(mktemp -d)
declare -A pid_of=() start_of=()
# Interrupted (Ctrl-C, a CI timeout): stop the fuzzers this script started.
stop() {
    local p
    for p in "${pid_of[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap 'stop; exit 143' TERM
trap 'stop; exit 130' INT
trap 'rm -rf "$logs"' EXIT

launch() {
    local t=$1
    local args=(
        -max_total_time="$seconds"
        -print_final_stats=1
        -timeout=10
        -rss_limit_mb=2048
        -max_len=16384
        -artifact_prefix="$root/fuzz/artifacts/$t/"
    )
    [ -z "${dict[$t]}" ] || args+=(-dict="$root/fuzz/dict/${dict[$t]}.dict")
    mkdir -p "$root/fuzz/work/$t" "$root/fuzz/artifacts/$t" "$root/fuzz/corpus/$t"
    start_of[$t]=$(date +%s.%N)
    "$bin_dir/$t" "${args[@]}" "$root/fuzz/work/$t" "$root/fuzz/corpus/$t" >"$logs/$t.log" 2>&1 &
    pid_of[$t]=$!
}

# Collects the targets that have ended; their exit status and seconds go
# to $logs/<target>.result.
reap() {
    local t status
    for t in "${!pid_of[@]}"; do
        kill -0 "${pid_of[$t]}" 2>/dev/null && continue
        status=0
        wait "${pid_of[$t]}" || status=$?
        echo "$status $(awk "BEGIN { print $(date +%s.%N) - ${start_of[$t]} }")" >"$logs/$t.result"
        unset "pid_of[$t]"
    done
}

say "running ${#targets[@]} targets, ${seconds}s each, $jobs at a time"
for t in "${targets[@]}"; do
    while ((${#pid_of[@]} >= jobs)); do
        sleep 0.2
        reap
    done
    launch "$t"
done
while ((${#pid_of[@]})); do
    sleep 0.2
    reap
done

# ── report ──
failed=()
printf '%-16s %12s %8s %8s %9s  %s\n' target runs cov ft seconds result
for t in "${targets[@]}"; do
    read -r status secs <"$logs/$t.result"
    log="$logs/$t.log"
    # A target that fails at once may print no statistics: never fatal here.
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1) || true
    cov=$( (grep -oE 'cov: [0-9]+' "$log" || true) | tail -1 | awk '{print $2}')
    ft=$( (grep -oE 'ft: [0-9]+' "$log" || true) | tail -1 | awk '{print $2}')
    result=ok
    if [ "$status" != 0 ]; then
        result="FAILED (exit $status)"
        failed+=("$t")
    fi
    printf '%-16s %12s %8s %8s %9.1f  %s\n' "$t" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$secs" "$result"
    # Every run is remembered on this machine (fuzz/work/, git-ignored).
    printf '%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$sanitizer" "$secs" \
        "${runs:-?}" "${cov:-?}" "${ft:-?}" "$status" "$(git rev-parse --short HEAD 2>/dev/null || echo -)" >>"$root/fuzz/work/history.tsv"
    [ "$status" = 0 ] || cp "$log" "$root/fuzz/artifacts/$t/last-failure.log"
done
for t in "${failed[@]}"; do
    log="$logs/$t.log"
    say "── $t failed; its log ends with:"
    # The property that failed, then libFuzzer's summary (no backtrace).
    grep -A1 'panicked at' "$log" | head -2 | cut -c1-600 >&2 || true
    grep -vE '^#[0-9]+\s+(NEW|REDUCE|pulse|RELOAD)|^\s+([0-9]+: |at )|^stack backtrace:|panicked at|^(note|NOTE|      Combine)' "$log" |
        grep -v '^[a-z_]*: ' | tail -12 | cut -c1-600 >&2 || true
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1) || true
    if [ -n "$artifact" ]; then
        say "replay: $bin_dir/$t $artifact"
        say "full log: fuzz/artifacts/$t/last-failure.log; then add the case as a row of tests/fuzz_regressions.rs"
    fi
done
((${#failed[@]} == 0)) || die "${#failed[@]} target(s) failed: ${failed[*]}"
say "every target ran ${seconds}s without a finding (build ${build_seconds}s)"
