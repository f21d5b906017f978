#!/usr/bin/env bash
# nsf_cli_test.sh NFLOW — the neural spline flow through every command: on 2-D toy data (train, eval,
# sample, encode/decode round trip, plot, exact resume), on a 1-column CSV (the element-wise spline;
# the coupling models refuse it naming nsf), on IDX images (Glow's layout with spline couplings: train,
# eval, sample grid, encode/decode), and the bench workload. A few seconds.
. "$(dirname "$0")/harness.sh" nsf_cli "$@"
# maxdiff A.csv B.csv: the largest |a − b| over all fields but the header
maxdiff() { paste -d, "$1" "$2" | awk -F, 'NR > 1 { h = NF / 2; for (j = 1; j <= h; j++) { d = $j - $(j + h); if (d < 0) d = -d; if (d > m) m = d } } END { print m + 0 }'; }

# --- 2-D toy data
V=(--model nsf --data 8gaussians --train-size 4000 --test-size 500 --batch 128 --quiet)
"$NFLOW" train "${V[@]}" --steps 300 --out "$T/m.ckpt" >"$T/train.out" 2>&1 && grep -q "test log-likelihood" "$T/train.out" && ok || bad "train: $(cat "$T/train.out")"
# 300 steps of the default NSF already beat a single Gaussian fit (4.25 nats) on 8 gaussians
nll=$(sed -n 's/.*(NLL \([0-9.-]*\)).*/\1/p' "$T/train.out")
awk -v v="$nll" 'BEGIN { exit !(v < 4.0) }' && ok || bad "NLL after 300 steps is $nll"
"$NFLOW" eval --model "$T/m.ckpt" --data 8gaussians --test-size 500 | grep -q "NLL $nll" && ok || bad "eval of the saved model differs from train's figure"
"$NFLOW" sample --model "$T/m.ckpt" -n 200 --out "$T/s.csv" && [ "$(wc -l <"$T/s.csv")" -eq 201 ] && ok || bad "sample"
"$NFLOW" encode --model "$T/m.ckpt" --in "$T/s.csv" --out "$T/z.csv" && "$NFLOW" decode --model "$T/m.ckpt" --in "$T/z.csv" --out "$T/x.csv" && \
    awk -v m="$(maxdiff "$T/s.csv" "$T/x.csv")" 'BEGIN { exit !(m < 1e-4) }' && ok || bad "decode(encode(x)) != x: $(maxdiff "$T/s.csv" "$T/x.csv")"
"$NFLOW" plot --model "$T/m.ckpt" --data 8gaussians --test-size 500 --size 64 --out "$T/p.png" >/dev/null && \
    [ "$(head -c 4 "$T/p.png" | tail -c 3)" = "PNG" ] && ok || bad "plot"
# resume: 20 steps, save, 20 more = 40 steps in one run, byte for byte (at a constant rate: nsf's default
# cosine decays over the --steps of each run, so a 20-step run is not the first half of a 40-step one)
"$NFLOW" train "${V[@]}" --lr-schedule constant --steps 20 --out "$T/r1.ckpt" >/dev/null 2>&1
"$NFLOW" train "${V[@]}" --lr-schedule constant --steps 40 --resume "$T/r1.ckpt" --out "$T/r2.ckpt" >/dev/null 2>&1
"$NFLOW" train "${V[@]}" --lr-schedule constant --steps 40 --out "$T/r3.ckpt" >/dev/null 2>&1
cmp -s "$T/r2.ckpt" "$T/r3.ckpt" && ok || bad "resume is not exact"
"$NFLOW" train "${V[@]}" --lr-schedule constant --steps 40 --bins 5 --resume "$T/r1.ckpt" --out "$T/r4.ckpt" >/dev/null 2>"$T/err"
[ $? -ne 0 ] && grep -q -- "--bins" "$T/err" && [ ! -e "$T/r4.ckpt" ] && ok || bad "--resume with other --bins: $(cat "$T/err")"

# --- a 1-column CSV: the element-wise spline
awk 'BEGIN { srand(2); print "v"; for (i = 0; i < 2000; i++) { u = rand(); printf "%f\n", (u < 0.3 ? -2 : 1.5) + 0.5 * (rand() + rand() + rand() - 1.5) } }' >"$T/one.csv"
"$NFLOW" train --model nsf --data "$T/one.csv" --steps 200 --batch 100 --quiet --out "$T/one.ckpt" >"$T/one.out" 2>&1 && ok || bad "1-D train: $(cat "$T/one.out")"
"$NFLOW" eval --model "$T/one.ckpt" --data "$T/one.csv" >/dev/null && ok || bad "1-D eval"
"$NFLOW" sample --model "$T/one.ckpt" -n 50 --out "$T/o.csv" && "$NFLOW" encode --model "$T/one.ckpt" --in "$T/o.csv" --out "$T/oz.csv" && \
    "$NFLOW" decode --model "$T/one.ckpt" --in "$T/oz.csv" --out "$T/ox.csv" && awk -v m="$(maxdiff "$T/o.csv" "$T/ox.csv")" 'BEGIN { exit !(m < 1e-4) }' && ok || bad "1-D sample/encode/decode"
"$NFLOW" train --model realnvp --data "$T/one.csv" --steps 5 --quiet --out "$T/q.ckpt" >/dev/null 2>"$T/err"
[ $? -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "model nsf" "$T/err" && [ ! -e "$T/q.ckpt" ] && ok || bad "realnvp on 1-D: $(cat "$T/err")"

# --- images: 40 random 8 × 8 IDX images
{ printf '\x00\x00\x08\x03\x00\x00\x00\x28\x00\x00\x00\x08\x00\x00\x00\x08'; LC_ALL=C awk 'BEGIN { srand(13); for (i = 0; i < 2560; i++) printf "%c", int(rand() * 256) }'; } >"$T/i-idx3-ubyte"
"$NFLOW" train --model nsf --data "$T/i-idx3-ubyte" --test-data "$T/i-idx3-ubyte" --levels 2 --depth 1 --hidden 4 --bins 4 \
    --steps 4 --batch 8 --out "$T/img.ckpt" --quiet >"$T/img.out" 2>&1 && grep -q "bits/dim" "$T/img.out" && ok || bad "image train: $(cat "$T/img.out")"
"$NFLOW" sample --model "$T/img.ckpt" -n 4 --out "$T/grid.png" >/dev/null && [ "$(head -c 4 "$T/grid.png" | tail -c 3)" = "PNG" ] && ok || bad "image sample grid"
awk 'BEGIN { srand(5); for (j = 1; j <= 64; j++) printf "%sx%d", (j > 1 ? "," : ""), j; print ""
             for (i = 0; i < 3; i++) { for (j = 1; j <= 64; j++) printf "%s%.6f", (j > 1 ? "," : ""), rand() - 0.5; print "" } }' >"$T/px.csv"
"$NFLOW" encode --model "$T/img.ckpt" --in "$T/px.csv" --out "$T/pz.csv" && "$NFLOW" decode --model "$T/img.ckpt" --in "$T/pz.csv" --out "$T/px2.csv" && \
    awk -v m="$(maxdiff "$T/px.csv" "$T/px2.csv")" 'BEGIN { exit !(m < 1e-4) }' && ok || bad "image encode/decode round trip"

# --- bench
"$NFLOW" bench nsf-moons --threads 1 --seconds 0.2 >"$T/bench.out" 2>&1 && grep -q "^nsf-moons" "$T/bench.out" && ok || bad "bench nsf-moons: $(cat "$T/bench.out")"

finish
