#!/usr/bin/env bash
# Numerical faults in training (tests/fault_numeric.c injects them into a copy of the CLI): a NaN in a
# batch and an Inf in a gradient are skipped with a warning, counted in the metrics log and the summary;
# a NaN parameter makes every later step non-finite, and 50 in a row stop the run with one line naming
# the last good checkpoint, which loads and holds that step; a checkpoint with a NaN is never written. Usage: tests/fault_numeric.sh nflow_faults
set -euo pipefail
NF="$1"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fails=0
ok() { :; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
common=(train --model realnvp --data moons --train-size 512 --test-size 64 --depth 2 --hidden 8 --batch 32 --threads 1 --checkpoint-every 1)

# 1. a NaN in the batch of step 5, an Inf in the gradient of step 8: skipped, warned, counted; the run ends normally
NFLOW_FAULTS="batch:5,grad:8" "$NF" "${common[@]}" --steps 20 --out "$T/a.ckpt" >"$T/out" 2>"$T/err" || bad "run with two faults failed: $(cat "$T/err")"
grep -q "warning: step 5: .*not finite; update skipped" "$T/err" && ok || bad "no warning for the NaN batch: $(cat "$T/err")"
grep -q "warning: step 8: .*gradient is not finite; update skipped" "$T/err" && ok || bad "no warning for the Inf gradient: $(cat "$T/err")"
grep -q "(2 non-finite steps skipped)" "$T/out" && ok || bad "summary does not count the skipped steps: $(cat "$T/out")"
m="$T/a.ckpt.metrics.csv"
head -1 "$m" | grep -q ",skipped$" && ok || bad "metrics header without the skipped column: $(head -1 "$m")"
[ "$(wc -l <"$m")" -eq 21 ] && ok || bad "metrics log: $(wc -l <"$m") lines, expected a row per step (21)"
awk -F, '$1 == 5 && $3 == "nan" && $7 == 1 { f5 = 1 } $1 == 8 && $3 == "nan" && $7 == 2 { f8 = 1 } END { exit !(f5 && f8) }' "$m" && ok || bad "metrics rows of steps 5 and 8 do not show the skips: $(sed -n '5,10p' "$m")"
[ "$(tail -1 "$m" | awk -F, '{print $7}')" = 2 ] && ok || bad "the last metrics row does not count 2 skipped steps: $(tail -1 "$m")"
awk -F, 'NR > 1 && $3 != "nan" && ($3 + 0 != $3 + 0 || $3 == "inf") { exit 1 }' "$m" && ok || bad "a non-skipped row with a non-finite loss"
"$NF" eval --model "$T/a.ckpt" --data moons --test-size 50 >/dev/null 2>&1 && ok || bad "the checkpoint after skipped steps does not load"

# 2. a NaN parameter from step 20 on (set inside step 20, after its check: a ReLU masks it, so step 20's
# loss is finite): every later step is refused; checkpoints every 7 steps: 21..70 are 50 non-finite
# steps in a row and the run stops with one line naming the checkpoint of step 14, which loads
if NFLOW_FAULTS="param:20" "$NF" "${common[@]}" --steps 500 --checkpoint-every 7 --quiet --out "$T/b.ckpt" >"$T/out" 2>"$T/err"; then
    bad "a run whose parameters are NaN did not stop"
fi
grep -q "50 consecutive non-finite steps (21..70); stopping, .*b.ckpt keeps step 14 " "$T/err" && ok || bad "stop message: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" -eq 1 ] && ok || bad "more than one line on stderr with --quiet: $(cat "$T/err")"
"$NF" eval --model "$T/b.ckpt" --data moons --test-size 50 >"$T/ev" 2>&1 && ok || bad "the kept checkpoint does not load: $(cat "$T/ev")"
grep -a -q 'steps\\":14,' "$T/b.ckpt" && ok || bad "the kept checkpoint is not step 14"
# and it resumes from there (the fault was in that process, not in the file)
"$NF" "${common[@]}" --steps 25 --quiet --resume "$T/b.ckpt" --out "$T/b.ckpt" >"$T/out" 2>"$T/err" && ok || bad "resume from the kept checkpoint failed: $(cat "$T/err")"

# 3. the same with a checkpoint every step: step 20 would save the NaN; the save refuses (a checkpoint
# that would not load is never written) and the run stops there, the checkpoint of step 19 kept
if NFLOW_FAULTS="param:20" "$NF" "${common[@]}" --steps 500 --quiet --out "$T/c.ckpt" >"$T/out" 2>"$T/err"; then
    bad "a run about to save NaN parameters did not stop"
fi
grep -q "c.ckpt: not saved: tensor '.*' holds a non-finite value (.*c.ckpt keeps step 19)" "$T/err" && ok || bad "refused save message: $(cat "$T/err")"
"$NF" eval --model "$T/c.ckpt" --data moons --test-size 50 >/dev/null 2>&1 && ok || bad "the checkpoint of step 19 does not load"
grep -a -q 'steps\\":19,' "$T/c.ckpt" && ok || bad "the kept checkpoint is not step 19"
[ "$(find "$T" -name '*.tmp.*' | wc -l)" -eq 0 ] && ok || bad "temporaries left: $(ls "$T")"

# 4. nflow eval on images counts the images that do not reconstruct within half a quantisation level
{ printf '\x00\x00\x08\x03\x00\x00\x00\x10\x00\x00\x00\x08\x00\x00\x00\x08'; LC_ALL=C awk 'BEGIN { srand(5); for (i = 0; i < 1024; i++) printf "%c", int(rand() * 256) }'; } >"$T/i-idx3-ubyte"
"$NF" train --model glow --data "$T/i-idx3-ubyte" --test-data "$T/i-idx3-ubyte" --levels 1 --depth 1 --hidden 4 --batch 8 \
    --steps 3 --threads 1 --quiet --out "$T/g.ckpt" >/dev/null 2>&1 || bad "glow on images did not train"
"$NF" eval --model "$T/g.ckpt" --data "$T/i-idx3-ubyte" >"$T/ev" 2>&1 || bad "image eval failed: $(cat "$T/ev")"
grep -q "max reconstruction error .*; 0 of 16 images reconstruct off by more than 0.002 (half a 8-bit level)" "$T/ev" && ok || bad "image eval does not count the images that do not reconstruct: $(cat "$T/ev")"
"$NF" eval --model "$T/g.ckpt" --data "$T/i-idx3-ubyte" --bits 5 | grep -q "of 16 images reconstruct off by more than 0.016 (half a 5-bit level)" && ok || bad "the tolerance does not follow --bits"

[ "$fails" -eq 0 ] && echo "fault_numeric: all checks passed" || { echo "fault_numeric: $fails failures"; exit 1; }
