#!/usr/bin/env bash
# The libFuzzer targets of tests/fuzz (clang-14, libFuzzer + ASan + UBSan), built into build-fuzz/.
#
#   scripts/fuzz.sh build                 configure and build every target
#   scripts/fuzz.sh TARGET SECONDS        fuzz TARGET for SECONDS of wall-clock time
#   scripts/fuzz.sh TARGET SECONDS --cpu  ... for SECONDS of CPU time (rounds until the fuzzer has used it)
#   scripts/fuzz.sh --smoke [BUILD]       CI: replay every committed corpus, then fuzz each target briefly
#   scripts/fuzz.sh --list                the targets
#
# TARGET is one of: csv idx cifar folder ckpt options. The run starts from the committed seeds
# (tests/fuzz/corpus/TARGET) and keeps what it finds in build-fuzz/corpus/TARGET; a crash, sanitizer
# report, leak, an input taking over 1 s, or over 2 GiB of memory (resident, or a single allocation)
# stops it and leaves the input in build-fuzz/artifacts/TARGET/. Replay one with
#   build-fuzz/tests/fuzz/fuzz_TARGET build-fuzz/artifacts/TARGET/crash-…
# The log is build-fuzz/logs/TARGET.log; the last line printed is libFuzzer's final one (execs, cov, ft).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGETS=(csv idx cifar folder ckpt options)
FUZZ_BUILD="${FUZZ_BUILD:-$ROOT/build-fuzz}" # another build folder: FUZZ_BUILD=…
CC_FUZZ="${CC_FUZZ:-$(command -v clang-14 || command -v clang || true)}"
export OMP_NUM_THREADS=1
FLAGS=(-timeout="${FUZZ_TIMEOUT:-1}" -rss_limit_mb=2048 -malloc_limit_mb=2048 -close_fd_mask=1 -print_final_stats=1)

build() { # build [DIR]
    [ -n "${FUZZ_NOBUILD:-}" ] && [ -x "${1:-$FUZZ_BUILD}/tests/fuzz/fuzz_csv" ] && return 0 # FUZZ_NOBUILD=1: use the built targets as they are
    local b="${1:-$FUZZ_BUILD}"
    [ -n "$CC_FUZZ" ] || { echo "fuzz.sh: clang not found (apt-get install clang-14 libclang-rt-14-dev libomp-14-dev)" >&2; exit 1; }
    if [ ! -f "$b/CMakeCache.txt" ]; then
        CC="$CC_FUZZ" cmake -S "$ROOT" -B "$b" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNFLOW_FUZZ=ON -DBUILD_TESTING=OFF \
            -DNFLOW_WITH_DNNL=OFF >/dev/null # oneDNN runs on GNU OpenMP, clang on LLVM's: one runtime per process
    fi
    cmake --build "$b" --target nflow_fuzzers -j"$(nproc)" >/dev/null
}

dict_of() { [ -f "$ROOT/tests/fuzz/$1.dict" ] && echo "-dict=$ROOT/tests/fuzz/$1.dict" || true; }

run() { # run TARGET SECONDS [--cpu]
    local t="$1" secs="$2" mode="${3:-}" b="$FUZZ_BUILD"
    [[ " ${TARGETS[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (one of: ${TARGETS[*]})" >&2; exit 1; }
    build "$b"
    mkdir -p "$b/corpus/$t" "$b/artifacts/$t" "$b/logs"
    local log="$b/logs/$t.log" used=0 round=0 execs=0 rc=0 wall0=$SECONDS cpu_total=0 timeouts=0
    : >"$log"; rm -f "$log.load-timeouts"
    while :; do
        local left=$((secs - used))
        [ "$left" -gt 0 ] || break
        round=$((round + 1))
        local tf; tf="$(mktemp)"
        set +e
        { TIMEFORMAT='%U %S'; time "$b/tests/fuzz/fuzz_$t" "${FLAGS[@]}" $(dict_of "$t") -max_total_time="$left" \
            -artifact_prefix="$b/artifacts/$t/" "$b/corpus/$t" "$ROOT/tests/fuzz/corpus/$t" >>"$log" 2>&1; } 2>"$tf"
        rc=$?
        set -e
        local cpu; cpu="$(awk '{printf "%d", $1 + $2 + 0.5}' "$tf")"; rm -f "$tf"
        execs=$((execs + $(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}' || echo 0)))
        cpu_total=$((cpu_total + cpu))
        if [ "$mode" = "--cpu" ]; then used=$((used + cpu)); else used=$((SECONDS - wall0)); fi
        if [ "$rc" -ne 0 ] && grep -q 'ERROR: libFuzzer: timeout' "$log"; then
            # -timeout counts wall-clock time: on a loaded machine a fast input can pass 1 s waiting for a
            # core. Replay it alone; a real hang needs over 1 s of CPU time, anything else is load.
            local art; art="$(ls -t "$b/artifacts/$t"/timeout-* | head -1)"
            local rf; rf="$(mktemp)"
            { TIMEFORMAT='%U %S'; time "$b/tests/fuzz/fuzz_$t" -timeout=60 "$art" >/dev/null 2>&1; } 2>"$rf"
            local rcpu; rcpu="$(awk '{printf "%.3f", $1 + $2}' "$rf")"; rm -f "$rf"
            if awk -v c="$rcpu" 'BEGIN { exit !(c < 1.0) }'; then
                echo "fuzz $t: timeout under load, not a hang: $art replays in $rcpu s of CPU" | tee -a "$log.load-timeouts"
                mkdir -p "$b/artifacts/$t/load"; mv "$art" "$b/artifacts/$t/load/"
                timeouts=$((timeouts + 1)); rc=0
                continue
            fi
        fi
        [ "$rc" -eq 0 ] || break
        [ "$mode" = "--cpu" ] || break
        [ "$cpu" -gt 0 ] || break
    done
    local last; last="$(grep -E '^#[0-9]+' "$log" | tail -1 || true)"
    echo "fuzz $t: rounds $round, wall $((SECONDS - wall0)) s, cpu $cpu_total s, execs $execs, load timeouts $timeouts, exit $rc; last: $last"
    [ "$rc" -eq 0 ] || { echo "fuzz $t: FINDING (see $log and $b/artifacts/$t/)"; return 1; }
}

smoke() { # smoke [BUILD]: replay the committed seeds, then fuzz each target SMOKE_SECONDS (default 12)
    local b="${1:-$FUZZ_BUILD}" s="${SMOKE_SECONDS:-12}" fail=0
    [ -x "$b/tests/fuzz/fuzz_csv" ] || build "$b"
    for t in "${TARGETS[@]}"; do
        local work; work="$(mktemp -d)"
        local ok=1
        "$b/tests/fuzz/fuzz_$t" "${FLAGS[@]}" $(dict_of "$t") -max_total_time="$s" -artifact_prefix="$work/" \
            "$work" "$ROOT/tests/fuzz/corpus/$t" >"$work/log" 2>&1 || ok=0
        if [ "$ok" = 0 ] && grep -q 'ERROR: libFuzzer: timeout' "$work/log"; then # wall clock: load, or a hang?
            local rf; rf="$(mktemp)"
            { TIMEFORMAT='%U %S'; time "$b/tests/fuzz/fuzz_$t" -timeout=60 "$work"/timeout-* >/dev/null 2>&1; } 2>"$rf"
            awk '{ exit !($1 + $2 < 1.0) }' "$rf" && ok=1 && echo "fuzz smoke $t: a timeout under load (replays in $(awk '{print $1 + $2}' "$rf") s of CPU), not a hang"
            rm -f "$rf"
        fi
        if [ "$ok" = 0 ]; then
            echo "fuzz smoke $t: FAILED"; tail -40 "$work/log"; ls "$work"; fail=1
        else
            echo "fuzz smoke $t: ok ($(grep -E '^#[0-9]+' "$work/log" | tail -1))"
        fi
        rm -rf "$work"
    done
    return $fail
}

case "${1:-}" in
    build) build "${2:-}" ;;
    --smoke) smoke "${2:-}" ;;
    --list) printf '%s\n' "${TARGETS[@]}" ;;
    ""|-h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' ;;
    *) [ $# -ge 2 ] || { echo "usage: scripts/fuzz.sh TARGET SECONDS [--cpu]" >&2; exit 1; }; run "$1" "$2" "${3:-}" ;;
esac
