#!/usr/bin/env bash
# early_stop_test.sh NFLOW — validation on a CSV (--val-fraction, --eval-every, --patience) and
# --weight-decay through `nflow train`: on a tiny case that overfits, early stopping ends the run well
# before --steps; the model saved is the best-validation one (its step is the argmin of the logged
# validation column, its reported validation NLL is that minimum, and a --resume of it starts right
# after that step); an interrupted run resumed gives the same model as an uninterrupted one; the
# options that need a validation split are refused in one line without one.
. "$(dirname "$0")/harness.sh" early_stop "$@"

# 80 rows of a correlated 2-D Gaussian: a 64-wide MAF at lr 1e-2 overfits 55 training rows quickly
awk 'BEGIN { srand(4); print "a,b"; for (i = 0; i < 80; i++) { u = rand() + rand() + rand() - 1.5; v = rand() + rand() + rand() - 1.5; printf "%f,%f\n", u, u + 0.3 * v } }' >"$T/d.csv"
A0=(--model maf --data "$T/d.csv" --transform affine --hidden 64 --lr 1e-2 --batch 16 --warmup 0 --val-fraction 0.25 --eval-every 10 --patience 5)
A=("${A0[@]}" --quiet)
"$NFLOW" train "${A[@]}" --steps 3000 --out "$T/a.ckpt" >"$T/a.out" 2>&1 || bad "train: $(cat "$T/a.out")"
m="$T/a.ckpt.metrics.csv"
head -1 "$m" | grep -q ",skipped,val_nats$" && ok || bad "metrics header without the validation column: $(head -1 "$m")"
rows=$(($(wc -l <"$m") - 1))
[ "$rows" -gt 0 ] && [ "$rows" -lt 3000 ] && grep -q "stopped early at step $rows" "$T/a.out" && ok || bad "early stopping did not stop the run: $rows steps; $(cat "$T/a.out")"
# the best scheduled evaluation (a multiple of 10) in the log, and what the run reports and saved
best=$(awk -F, 'NR > 1 && $8 != "" && $1 % 10 == 0 && (b == "" || $8 < b) { b = $8; s = $1 } END { print s, b }' "$m")
bstep=${best% *} bval=${best#* }
grep -q "model of step $bstep of $rows" "$T/a.out" && ok || bad "the saved model is not the best-validation one (step $bstep, $bval): $(cat "$T/a.out")"
rep=$(sed -n 's/.*validation NLL \([0-9.-]*\),.*/\1/p' "$T/a.out")
awk -v a="$rep" -v b="$bval" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-3) }' && ok || bad "reported validation NLL $rep, best logged $bval"
[ "$bstep" -lt "$rows" ] && ok || bad "the best step $bstep is the last one: the case does not overfit"
[ ! -e "$T/a.ckpt.best" ] && ok || bad "a.ckpt.best left behind"
# the checkpoint is that step's resumable state: a resume starts right after it
"$NFLOW" train "${A0[@]}" --steps 3000 --resume "$T/a.ckpt" --out "$T/a2.ckpt" 2>&1 >/dev/null | grep -q "resuming $T/a.ckpt at step $((bstep + 1))" && ok || \
    bad "a resume of the saved model does not start at step $((bstep + 1))"
# interrupted (at step 40, then resumed) = uninterrupted
"$NFLOW" train "${A[@]}" --steps 3000 --out "$T/u.ckpt" >/dev/null 2>&1 && \
"$NFLOW" train "${A[@]}" --steps 40 --out "$T/i.ckpt" >/dev/null 2>&1 && \
"$NFLOW" train "${A[@]}" --steps 3000 --resume "$T/i.ckpt" --out "$T/i.ckpt" >"$T/i.out" 2>&1 && \
"$NFLOW" sample --model "$T/u.ckpt" -n 20 --out "$T/u.csv" && "$NFLOW" sample --model "$T/i.ckpt" -n 20 --out "$T/i.csv" && \
    cmp -s "$T/u.csv" "$T/i.csv" && ok || bad "an interrupted and resumed run differs from an uninterrupted one: $(cat "$T/i.out")"
# killed at a new best (step 20 here; checkpoints every 7 steps, scores every 10) before its checkpoint,
# or between the checkpoint and the .best file: the checkpoint and .best on disk agree (step 14's
# checkpoint and the best of step 10 it names, or a checkpoint that is itself the best state, from which
# the resume writes .best anew), and the resumed run ends as the uninterrupted one
for fault in kill killbest; do
    rm -f "$T/c.ckpt" "$T/c.ckpt.best"
    NFLOW_MPI_FAULT=$fault:0:20 "$NFLOW" train "${A[@]}" --steps 3000 --checkpoint-every 7 --out "$T/c.ckpt" >/dev/null 2>&1
    rc=$?
    hdr=$(head -c 65536 "$T/c.ckpt" 2>/dev/null | tr -d '\\\000')
    want="20 20"; [ $fault = kill ] && want="14 10"
    [ $rc -eq 137 ] && echo "$hdr" | grep -q "\"steps\":${want% *}," && echo "$hdr" | grep -q "\"best_step\":${want#* }," && ok || \
        bad "$fault at step 20: exit $rc, $(echo "$hdr" | grep -ao '"trainer":.\{0,200\}')"
    "$NFLOW" train "${A[@]}" --steps 3000 --resume "$T/c.ckpt" --out "$T/c.ckpt" >"$T/c.out" 2>&1 && \
    "$NFLOW" sample --model "$T/c.ckpt" -n 20 --out "$T/c.csv" && cmp -s "$T/u.csv" "$T/c.csv" && ok || \
        bad "a run killed ($fault) at a new best, resumed, differs from an uninterrupted one: $(cat "$T/c.out")"
done 2>/dev/null
# the metrics log of a run killed between checkpoints, resumed into the same --out: every step once, in
# order, each row whole (the killed run had logged steps past its checkpoint, maybe half a row)
NFLOW_MPI_FAULT=kill:0:190 "$NFLOW" train "${A[@]}" --patience 0 --steps 200 --checkpoint-every 100 --out "$T/m.ckpt" >/dev/null 2>&1
past=$(awk -F, 'NR > 1 && $1 > 100' "$T/m.ckpt.metrics.csv" | wc -l)
"$NFLOW" train "${A[@]}" --patience 0 --steps 200 --resume "$T/m.ckpt" --out "$T/m.ckpt" >/dev/null 2>&1 && \
    [ "$past" -gt 0 ] && awk -F, 'NR > 1 { if ($1 != s + 1 || NF != 8) bad = 1; s = $1 } END { exit bad || s != 200 }' "$T/m.ckpt.metrics.csv" && ok || \
    bad "the metrics log of a killed and resumed run ($past rows past the checkpoint before the resume): $(awk -F, 'NR > 1 { printf "%s ", $1 }' "$T/m.ckpt.metrics.csv" | tail -c 300)"
# a run killed mid-way leaves its best state in .best; the resume carries it
(timeout -s KILL 2 "$NFLOW" train "${A[@]}" --patience 0 --steps 100000000 --checkpoint-every 7 --out "$T/k.ckpt" >/dev/null 2>&1) 2>/dev/null
if [ -s "$T/k.ckpt" ]; then
    "$NFLOW" train "${A[@]}" --patience 0 --steps 100000000 --time-limit 0.003 --resume "$T/k.ckpt" --out "$T/k2.ckpt" >"$T/k.out" 2>&1 && \
        grep -q "validation NLL" "$T/k.out" && ok || bad "resume of a killed run: $(cat "$T/k.out")"
    cp "$T/k.ckpt.best" "$T/k.best.keep" 2>/dev/null
    rm -f "$T/k.ckpt.best"
    "$NFLOW" train "${A[@]}" --patience 0 --steps 100000000 --time-limit 0.003 --resume "$T/k.ckpt" --out "$T/k3.ckpt" >"$T/out" 2>"$T/err"
    rc=$?
    hdr=$(head -c 65536 "$T/k.ckpt" | tr -d '\\\000')
    bs=$(echo "$hdr" | grep -ao '"best_step":[0-9]*' | head -1 | cut -d: -f2)
    st=$(echo "$hdr" | grep -ao '"steps":[0-9]*' | head -1 | cut -d: -f2)
    if [ -z "$bs" ] || [ -z "$st" ]; then bad "the checkpoint holds no validation state: $(echo "$hdr" | grep -ao '"trainer":.\{0,300\}')"
    elif [ "$bs" = 0 ] || [ "$bs" = "$st" ]; then [ $rc -eq 0 ] && ok || bad "resume needing no .best file: exit $rc, $(cat "$T/err")"
    else
        [ $rc -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "k.ckpt.best" "$T/err" && ok || bad "resume without the .best file: exit $rc, $(cat "$T/err")"
        # a truncated .best, or another model's checkpoint in its place: refused before training, naming it; --out not written
        "$NFLOW" train "${A[@]}" --hidden 8 --steps 20 --out "$T/f.ckpt" >/dev/null 2>&1
        for bad_best in truncated foreign; do
            if [ $bad_best = truncated ]; then head -c 2000 "$T/k.best.keep" >"$T/k.ckpt.best"; else cp "$T/f.ckpt" "$T/k.ckpt.best"; fi
            "$NFLOW" train "${A[@]}" --patience 0 --steps 100000000 --time-limit 0.003 --resume "$T/k.ckpt" --out "$T/k4.ckpt" >"$T/out" 2>"$T/err"
            [ $? -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "k.ckpt.best" "$T/err" && [ ! -e "$T/k4.ckpt" ] && ok || \
                bad "resume with a $bad_best .best file: $(cat "$T/err")"
        done
    fi
else bad "the killed run left no checkpoint"; fi
# no validation split: the options that need one are refused, in one line
for o in "--patience 3" "--eval-every 5"; do
    "$NFLOW" train --model maf --data "$T/d.csv" --val-fraction 0 $o --steps 5 --batch 16 --out "$T/r.ckpt" >/dev/null 2>"$T/err"
    [ $? -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "${o%% *}" "$T/err" && [ ! -e "$T/r.ckpt" ] && ok || bad "$o with --val-fraction 0: $(cat "$T/err")"
done
"$NFLOW" train --model maf --data moons --train-size 200 --test-size 50 --patience 3 --steps 5 --batch 16 --out "$T/r.ckpt" >/dev/null 2>"$T/err"
[ $? -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "--patience" "$T/err" && ok || bad "--patience on toy data: $(cat "$T/err")"
# --val-fraction 0: no validation column, the last step's model, train and test NLL reported
"$NFLOW" train --model maf --data "$T/d.csv" --val-fraction 0 --steps 5 --batch 16 --out "$T/n.ckpt" --quiet >"$T/n.out" 2>&1 && \
    head -1 "$T/n.ckpt.metrics.csv" | grep -q ",skipped$" && grep -q "^train NLL .*test NLL" "$T/n.out" && ok || bad "--val-fraction 0: $(cat "$T/n.out")"
# --weight-decay acts: a large decay changes the model
"$NFLOW" train --model maf --data "$T/d.csv" --steps 30 --batch 16 --out "$T/w0.ckpt" --quiet >/dev/null 2>&1
"$NFLOW" train --model maf --data "$T/d.csv" --steps 30 --batch 16 --weight-decay 50 --out "$T/w1.ckpt" --quiet >/dev/null 2>&1
"$NFLOW" sample --model "$T/w0.ckpt" -n 5 >"$T/s0" && "$NFLOW" sample --model "$T/w1.ckpt" -n 5 >"$T/s1" && ! cmp -s "$T/s0" "$T/s1" && ok || bad "--weight-decay has no effect"
# on a CSV the default decay is 0.1: the same model as --weight-decay 0.1, another than --weight-decay 0
"$NFLOW" train --model maf --data "$T/d.csv" --steps 30 --batch 16 --weight-decay 0.1 --out "$T/w2.ckpt" --quiet >/dev/null 2>&1
"$NFLOW" train --model maf --data "$T/d.csv" --steps 30 --batch 16 --weight-decay 0 --out "$T/w3.ckpt" --quiet >/dev/null 2>&1
"$NFLOW" sample --model "$T/w2.ckpt" -n 5 >"$T/s2" && "$NFLOW" sample --model "$T/w3.ckpt" -n 5 >"$T/s3" && cmp -s "$T/s0" "$T/s2" && \
    ! cmp -s "$T/s0" "$T/s3" && ok || bad "the default weight decay on a CSV is not 0.1"
# above 16 200 training rows the default decay is 0.1 · 16 200 / rows: 40 000 rows leave 32 400 to train on → 0.05
awk 'BEGIN { srand(5); print "a,b"; for (i = 0; i < 40000; i++) { u = rand() - 0.5; printf "%f,%f\n", u, u * u + 0.1 * rand() } }' >"$T/big.csv"
for wd in "" "--weight-decay 0.05" "--weight-decay 0.1"; do
    "$NFLOW" train --model maf --data "$T/big.csv" --steps 20 --batch 16 $wd --out "$T/b.ckpt" --quiet >/dev/null 2>&1 && \
        "$NFLOW" sample --model "$T/b.ckpt" -n 5 >"$T/b${wd##* }"
done
cmp -s "$T/b" "$T/b0.05" && ! cmp -s "$T/b" "$T/b0.1" && ok || bad "the default weight decay on 32 400 training rows is not 0.05"
# --ema: on a CSV the default averages (0.999): --ema 0 gives another model; resuming a checkpoint with
# the other averaging is refused in one line, the checkpoint untouched
"$NFLOW" train --model maf --data "$T/d.csv" --steps 30 --batch 16 --ema 0 --out "$T/e0.ckpt" --quiet >/dev/null 2>&1
"$NFLOW" sample --model "$T/e0.ckpt" -n 5 >"$T/se" && ! cmp -s "$T/s0" "$T/se" && ok || bad "--ema 0 gives the default's model on a CSV"
cp "$T/w0.ckpt" "$T/w0.keep"
"$NFLOW" train --model maf --data "$T/d.csv" --steps 40 --batch 16 --ema 0 --resume "$T/w0.ckpt" --out "$T/w0.ckpt" >/dev/null 2>"$T/err"
[ $? -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "saved with an average" "$T/err" && cmp -s "$T/w0.ckpt" "$T/w0.keep" && ok ||
    bad "resume with --ema 0 of an averaged checkpoint: $(cat "$T/err")"
"$NFLOW" train --model maf --data "$T/d.csv" --steps 40 --batch 16 --resume "$T/e0.ckpt" --out "$T/e1.ckpt" >/dev/null 2>"$T/err"
[ $? -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "saved without an average" "$T/err" && [ ! -e "$T/e1.ckpt" ] && ok ||
    bad "resume with averaging of a checkpoint saved without: $(cat "$T/err")"

finish
