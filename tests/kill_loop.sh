#!/usr/bin/env bash
# kill -9 at random moments of a training run that checkpoints every step; after every kill the
# checkpoint (once there is one) must load and resume, and the temporaries a killed run leaves
# ("<ckpt>.tmp.<pid>") must be removed by the next run. Then the same with a validation split (a CSV
# scored every 3 steps, checkpointed every 2): every resume must accept the checkpoint and its .best,
# and the metrics log must end with every step once, each row whole. Usage:
#   tests/kill_loop.sh path/to/nflow [KILLS (10)] [SEED (1)]
# ctest runs 10 kills; RELIABILITY.md reports a run of 60.
set -euo pipefail
NFLOW="$1"
KILLS="${2:-10}"
RANDOM="${3:-1}" # the kill moments repeat for a seed
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
ck="$T/k.ckpt"
fail() { echo "kill_loop: FAIL: $*" >&2; exit 1; }
temps() { find "$T" -maxdepth 1 -name 'k.ckpt.tmp.*' | wc -l; }
args=(train --model realnvp --data moons --train-size 2000 --test-size 100 --depth 2 --hidden 16 --batch 32
      --steps 100000000 --checkpoint-every 1 --quiet --threads 1 --out "$ck")
loaded=0 with_temp=0 max_temps=0
for ((i = 1; i <= KILLS; i++)); do
    resume=()
    [ -f "$ck" ] && resume=(--resume "$ck")
    "$NFLOW" "${args[@]}" "${resume[@]}" >"$T/out" 2>&1 &
    pid=$!
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.02 + 0.5 * r / 32767 }')"
    if ! kill -9 "$pid" 2>/dev/null; then
        wait "$pid" || true
        fail "run $i ended by itself before the kill: $(cat "$T/out")"
    fi
    wait "$pid" 2>/dev/null || true
    if [ -f "$ck" ]; then
        "$NFLOW" eval --model "$ck" --data moons --test-size 50 >"$T/eval" 2>&1 || fail "after kill $i the checkpoint does not load: $(cat "$T/eval")"
        loaded=$((loaded + 1))
    fi
    n="$(temps)"
    [ "$n" -gt 0 ] && with_temp=$((with_temp + 1))
    [ "$n" -gt "$max_temps" ] && max_temps="$n"
    # a run that saved removed what the runs before it left: never more than the last two runs' temporaries
    [ "$n" -le 2 ] || fail "after kill $i, $n temporaries: $(ls "$T")"
done
# the next run cleans up: a short run to the end leaves the checkpoint and no temporary
"$NFLOW" train --model realnvp --data moons --train-size 2000 --test-size 100 --depth 2 --hidden 16 --batch 32 \
    --steps 3 --checkpoint-every 1 --quiet --threads 1 --out "$ck" >"$T/out" 2>&1 || fail "the final run failed: $(cat "$T/out")"
[ "$(temps)" -eq 0 ] || fail "temporaries left after a completed run: $(ls "$T")"
"$NFLOW" eval --model "$ck" --data moons --test-size 50 >/dev/null 2>&1 || fail "the final checkpoint does not load"
echo "kill_loop: $KILLS kills; checkpoint loaded after $loaded of them; $with_temp kills left a temporary (at most $max_temps at once), all removed by the next run"
# with a validation split (a CSV): scored every 3 steps, checkpointed every 2, so a kill can land between
# a new best and the checkpoint that names it; every resume must accept the checkpoint and its .best,
# and the metrics log must hold every step once, each row whole
awk 'BEGIN { srand(5); print "a,b"; for (i = 0; i < 200; i++) { u = rand() + rand() - 1; printf "%f,%f\n", u, u * u + 0.1 * rand() } }' >"$T/d.csv"
vargs=(train --model maf --data "$T/d.csv" --hidden 16 --batch 16 --lr 3e-3 --eval-every 3 --patience 0 --checkpoint-every 2
       --quiet --threads 1 --out "$T/v.ckpt")
resumed=0
for ((i = 1; i <= KILLS; i++)); do
    resume=()
    [ -f "$T/v.ckpt" ] && resume=(--resume "$T/v.ckpt") && resumed=$((resumed + 1))
    "$NFLOW" "${vargs[@]}" --steps 100000000 "${resume[@]}" >"$T/out" 2>&1 &
    pid=$!
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.05 + 0.5 * r / 32767 }')"
    kill -9 "$pid" 2>/dev/null || fail "validation run $i ended by itself before the kill: $(cat "$T/out")"
    wait "$pid" 2>/dev/null || true
done
last=$(awk -F, 'NR > 1 { s = $1 } END { print s + 0 }' "$T/v.ckpt.metrics.csv" 2>/dev/null)
"$NFLOW" "${vargs[@]}" --steps $((last + 10)) --resume "$T/v.ckpt" >"$T/out" 2>&1 || fail "the final validation run failed: $(cat "$T/out")"
awk -F, 'NR > 1 { if ($1 != s + 1 || NF != 8) bad = 1; s = $1 } END { exit bad }' "$T/v.ckpt.metrics.csv" || \
    fail "the metrics log after the kills holds a step twice, skips one or has half a row"
echo "kill_loop: with validation, $KILLS kills ($resumed runs resumed), every resume accepted, the log whole"
