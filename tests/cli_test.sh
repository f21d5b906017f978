#!/usr/bin/env bash
# cli_test.sh NFLOW — the command-line tool end to end: a short train/eval/sample/encode/decode/plot
# cycle, and bad input: each must exit non-zero with ONE line on stderr naming the problem, and leave
# no output file behind.
. "$(dirname "$0")/harness.sh" cli "$@"

# expect_error "pattern" cmd...   (non-zero exit, exactly one stderr line matching pattern, no crash)
expect_error() {
    local pat=$1; shift
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    local lines; lines=$(wc -l <"$T/err")
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then bad "exit $rc: $*"; return; fi
    if [ "$lines" -ne 1 ]; then bad "$lines stderr lines: $*: $(cat "$T/err")"; return; fi
    if ! grep -qE -- "$pat" "$T/err"; then bad "message '$(cat "$T/err")' lacks '$pat': $*"; return; fi
    ok
}

# --- a good cycle
"$NFLOW" train --model realnvp --data moons --steps 200 --batch 128 --train-size 4000 --test-size 1000 \
    --out "$T/m.ckpt" --quiet >"$T/train.out" 2>&1 && ok || bad "train: $(cat "$T/train.out")"
grep -q "test log-likelihood" "$T/train.out" && ok || bad "train prints no test log-likelihood"
[ -s "$T/m.ckpt.metrics.csv" ] && [ "$(wc -l <"$T/m.ckpt.metrics.csv")" -eq 201 ] && ok || bad "metrics log"
"$NFLOW" eval --model "$T/m.ckpt" --data moons --test-size 1000 >"$T/eval.out" && grep -q "±" "$T/eval.out" && ok || bad "eval"
"$NFLOW" sample --model "$T/m.ckpt" -n 50 --temperature 0.7 --out "$T/s.csv" && [ "$(wc -l <"$T/s.csv")" -eq 51 ] && ok || bad "sample"
# --out - is standard output: the same rows as the file, and no file named "-"
( cd "$T" && "$NFLOW" sample --model m.ckpt -n 50 --temperature 0.7 --out - >stdout.csv ) && cmp -s "$T/s.csv" "$T/stdout.csv" && \
    [ ! -e "$T/-" ] && ok || bad "sample --out - is not standard output"
"$NFLOW" encode --model "$T/m.ckpt" --in "$T/s.csv" --out "$T/z.csv" && ok || bad "encode"
"$NFLOW" decode --model "$T/m.ckpt" --in "$T/z.csv" --out "$T/x.csv" && ok || bad "decode"
# a CSV's header names the columns of every table the model writes; "-" reads standard input
printf 'age,"income"\n' >"$T/named.csv" && tail -n +2 "$T/s.csv" >>"$T/named.csv"
"$NFLOW" train --model maf --data "$T/named.csv" --steps 20 --batch 16 --out "$T/named.ckpt" --quiet >/dev/null 2>"$T/err" && ok || bad "train on a named CSV: $(cat "$T/err")"
[ "$("$NFLOW" sample --model "$T/named.ckpt" -n 3 --out - | head -1)" = "age,income" ] && ok || bad "sample does not keep the training file's header"
"$NFLOW" encode --model "$T/named.ckpt" --in - --out - <"$T/named.csv" >"$T/nz.csv" && [ "$(head -1 "$T/nz.csv")" = "z1,z2" ] && \
    [ "$(wc -l <"$T/nz.csv")" -eq 51 ] && ok || bad "encode --in - (standard input), latents z1,z2"
"$NFLOW" decode --model "$T/named.ckpt" --in "$T/nz.csv" --out "$T/nx.csv" && [ "$(head -1 "$T/nx.csv")" = "age,income" ] && ok || bad "decode header"
"$NFLOW" eval --model "$T/named.ckpt" --data - <"$T/named.csv" | grep -q "rows of -" && ok || bad "eval --data - (standard input)"
sed '1s/.*/income,age/' "$T/named.csv" >"$T/swapped.csv"
expect_error "swapped.csv: its header names the model's columns in another order" "$NFLOW" eval --model "$T/named.ckpt" --data "$T/swapped.csv"
expect_error "standard input:3: field 2" sh -c "printf 'a,b\n1,2\n3,x\n' | \"$NFLOW\" eval --model \"$T/named.ckpt\" --data -"
# exact round trip up to float printing: compare numerically
awk -F, 'NR==FNR { if (FNR > 1) for (i = 1; i <= NF; i++) a[FNR, i] = $i; next }
         FNR > 1 { for (i = 1; i <= NF; i++) { d = a[FNR, i] - $i; if (d < 0) d = -d; if (d > 1e-4) bad = 1 } }
         END { exit bad }' "$T/s.csv" "$T/x.csv" && ok || bad "decode(encode(x)) != x"
"$NFLOW" plot --model "$T/m.ckpt" --data moons --size 64 --out "$T/p.png" >/dev/null && \
    [ "$(head -c 4 "$T/p.png" | tail -c 3)" = "PNG" ] && ok || bad "plot"
"$NFLOW" train --help | grep -q -- "--steps" && ok || bad "train --help"
# the autoregressive flows through the same cycle: train, eval, sample, encode/decode round trip, plot
for MA in maf iaf "maf --transform spline"; do
    M=${MA%% *} && [ "$MA" != "$M" ] && M=$M-spline
    "$NFLOW" train --model $MA --data moons --steps 40 --batch 64 --train-size 2000 --test-size 500 --out "$T/$M.ckpt" --quiet >"$T/train.out" 2>&1 && \
        grep -q "test log-likelihood" "$T/train.out" && ok || bad "train $M: $(cat "$T/train.out")"
    "$NFLOW" eval --model "$T/$M.ckpt" --data moons --test-size 500 >"$T/eval.out" && grep -q "±" "$T/eval.out" && ok || bad "eval $M"
    "$NFLOW" sample --model "$T/$M.ckpt" -n 50 --out "$T/s-$M.csv" && "$NFLOW" encode --model "$T/$M.ckpt" --in "$T/s-$M.csv" --out "$T/z-$M.csv" && \
        "$NFLOW" decode --model "$T/$M.ckpt" --in "$T/z-$M.csv" --out "$T/x-$M.csv" && \
        awk -F, 'NR==FNR { if (FNR > 1) for (i = 1; i <= NF; i++) a[FNR, i] = $i; next }
                 FNR > 1 { n++; for (i = 1; i <= NF; i++) { d = a[FNR, i] - $i; if (d < 0) d = -d; if (d > 1e-4) bad = 1 } }
                 END { exit bad || n != 50 }' "$T/s-$M.csv" "$T/x-$M.csv" && ok || bad "$M: decode(encode(x)) != x"
    "$NFLOW" plot --model "$T/$M.ckpt" --data moons --size 64 --out "$T/p-$M.png" >/dev/null && \
        [ "$(head -c 4 "$T/p-$M.png" | tail -c 3)" = "PNG" ] && ok || bad "plot $M"
done
# a one-column CSV: an autoregressive flow takes it (a coupling needs two columns)
awk 'BEGIN { srand(5); print "v"; for (i = 0; i < 400; i++) printf "%f\n", 3 + 2 * (rand() + rand() - 1) }' >"$T/one.csv"
"$NFLOW" train --model maf --data "$T/one.csv" --steps 20 --batch 32 --out "$T/one.ckpt" --quiet >/dev/null 2>&1 && \
    "$NFLOW" eval --model "$T/one.ckpt" --data "$T/one.csv" >/dev/null && ok || bad "maf on a one-column CSV"
# a CSV model with standardisation, and eval of a CSV
printf 'a,b,c\n' >"$T/d.csv"
awk 'BEGIN { srand(3); for (i = 0; i < 600; i++) { u = rand(); v = rand(); printf "%f,%f,%f\n", 100*u, u + v, 5 - 3*v } }' >>"$T/d.csv"
"$NFLOW" train --model glow --data "$T/d.csv" --steps 30 --batch 64 --out "$T/g.ckpt" --quiet --test-out "$T/test.csv" >/dev/null && ok || bad "train on CSV"
"$NFLOW" eval --model "$T/g.ckpt" --data "$T/test.csv" >/dev/null && ok || bad "eval on CSV"

# images: a small random IDX file (100 images of 8 × 8), a tiny Glow, eval and a sample grid
{ printf '\x00\x00\x08\x03\x00\x00\x00\x64\x00\x00\x00\x08\x00\x00\x00\x08'; LC_ALL=C awk 'BEGIN { srand(11); for (i = 0; i < 6400; i++) printf "%c", int(rand() * 256) }'; } >"$T/small-idx3-ubyte"
"$NFLOW" train --model glow --data "$T/small-idx3-ubyte" --test-data "$T/small-idx3-ubyte" --levels 2 --depth 1 --hidden 4 \
    --steps 5 --batch 10 --out "$T/img.ckpt" --quiet >"$T/img.out" 2>&1 && grep -q "bits/dim" "$T/img.out" && ok || bad "image train: $(cat "$T/img.out")"
[ "$(head -c 4 "$T/img.ckpt.samples.png" | tail -c 3)" = "PNG" ] && ok || bad "image training wrote no sample grid"
"$NFLOW" eval --model "$T/img.ckpt" --data "$T/small-idx3-ubyte" | grep -q "reconstruction error" && ok || bad "image eval"
"$NFLOW" sample --model "$T/img.ckpt" -n 9 --temperature 0.5 --out "$T/grid.png" >/dev/null && \
    [ "$(head -c 4 "$T/grid.png" | tail -c 3)" = "PNG" ] && ok || bad "image sample grid"
expect_error "image model.*PNG grid" "$NFLOW" sample --model "$T/img.ckpt" --out -

# images ↔ latents: decode(encode(x)) = x for rows of pixels in [-0.5, 0.5), factored-out parts included
awk 'BEGIN { srand(5); for (j = 1; j <= 64; j++) printf "%sx%d", (j > 1 ? "," : ""), j; print ""
             for (i = 0; i < 3; i++) { for (j = 1; j <= 64; j++) printf "%s%.6f", (j > 1 ? "," : ""), rand() - 0.5; print "" } }' >"$T/px.csv"
"$NFLOW" encode --model "$T/img.ckpt" --in "$T/px.csv" --out "$T/pz.csv" && "$NFLOW" decode --model "$T/img.ckpt" --in "$T/pz.csv" --out "$T/px2.csv" && \
    paste -d, "$T/px.csv" "$T/px2.csv" | awk -F, 'NR > 1 { for (j = 1; j <= 64; j++) { d = $j - $(j + 64); if (d < 0) d = -d; if (d > m) m = d } }
        END { exit !(NR == 4 && m < 1e-4) }' && ok || bad "image encode/decode round trip"

# --time-limit ends a long run early, saving and evaluating as at the end
timeout 60 "$NFLOW" train --model glow --data "$T/small-idx3-ubyte" --test-data "$T/small-idx3-ubyte" --levels 1 --depth 1 --hidden 4 \
    --batch 10 --steps 100000000 --time-limit 0.01 --out "$T/tl.ckpt" --quiet | grep -q "bits/dim" && [ -s "$T/tl.ckpt" ] && ok || bad "--time-limit"

# --resume: 6 steps in one run, or 3 + 3 with a resume, give byte-identical checkpoints
IMG=(--model glow --data "$T/small-idx3-ubyte" --test-data "$T/small-idx3-ubyte" --levels 2 --depth 1 --hidden 4 --batch 8 --quiet)
"$NFLOW" train "${IMG[@]}" --steps 6 --out "$T/a.ckpt" >/dev/null 2>&1 && \
"$NFLOW" train "${IMG[@]}" --steps 3 --out "$T/b.ckpt" >/dev/null 2>&1 && \
"$NFLOW" train "${IMG[@]}" --steps 6 --resume "$T/b.ckpt" --out "$T/b.ckpt" >/dev/null 2>&1 && \
    cmp -s "$T/a.ckpt" "$T/b.ckpt" && ok || bad "resumed training differs from an uninterrupted run"
# vector --resume: 20 steps in one run, or 10 + 10 with a resume, give the same model (samples with one
# seed agree to the last digit) — realnvp with standardisation on a CSV, nice on a toy set, maf (random
# orders, batch norm) on the CSV and iaf on the toy set
for V in "--model realnvp --data $T/d.csv --standardize on" "--model nice --data moons --train-size 2000 --test-size 100" \
         "--model maf --data $T/d.csv --order random --batchnorm 1" "--model iaf --data moons --train-size 2000 --test-size 100"; do
    "$NFLOW" train $V --steps 20 --batch 32 --quiet --out "$T/va.ckpt" >/dev/null 2>&1 && \
    "$NFLOW" train $V --steps 10 --batch 32 --quiet --out "$T/vb.ckpt" >/dev/null 2>&1 && \
    "$NFLOW" train $V --steps 20 --batch 32 --quiet --resume "$T/vb.ckpt" --out "$T/vb.ckpt" >/dev/null 2>&1 && \
    "$NFLOW" sample --model "$T/va.ckpt" --seed 1 -n 20 --out "$T/va.csv" && "$NFLOW" sample --model "$T/vb.ckpt" --seed 1 -n 20 --out "$T/vb.csv" && \
        cmp -s "$T/va.csv" "$T/vb.csv" && [ "$(wc -l <"$T/vb.ckpt.metrics.csv")" -eq 21 ] && ok || bad "vector resume differs ($V)"
done
# --time-limit on vectors
timeout 60 "$NFLOW" train --model realnvp --data moons --train-size 1000 --test-size 100 --batch 32 --steps 100000000 --time-limit 0.01 \
    --out "$T/vtl.ckpt" --quiet | grep -q "log-likelihood" && [ -s "$T/vtl.ckpt" ] && ok || bad "--time-limit on vectors"
{ printf '\x00\x00\x08\x01\x00\x00\x00\x64'; head -c 50 /dev/zero; head -c 50 /dev/zero | tr '\0' '\1'; } >"$T/small-labels-idx1-ubyte"
"$NFLOW" interpolate --model "$T/img.ckpt" --data "$T/small-idx3-ubyte" --from 0 --to 5 --frames 4 --out "$T/interp.png" >/dev/null && \
    [ "$(head -c 4 "$T/interp.png" | tail -c 3)" = "PNG" ] && ok || bad "interpolate"
"$NFLOW" manipulate --model "$T/img.ckpt" --data "$T/small-idx3-ubyte" --labels "$T/small-labels-idx1-ubyte" --class-a 0 --class-b 1 \
    --images 0,60 --strengths -1,0,1 --out "$T/manip.png" >/dev/null && \
    [ "$(head -c 4 "$T/manip.png" | tail -c 3)" = "PNG" ] && ok || bad "manipulate"

# variational dequantisation: glow, realnvp (class-conditional) and nsf train with it; eval reports the
# training's bound (the same seed: the same figure); 3 + 3 steps with a resume equal 6 in one run; the
# option is refused where it cannot apply (vector data, a resume that would change it)
VD=(--model glow --data "$T/small-idx3-ubyte" --test-data "$T/small-idx3-ubyte" --levels 2 --depth 1 --hidden 4 --batch 8 --quiet --dequant variational)
"$NFLOW" train "${VD[@]}" --steps 6 --out "$T/vd.ckpt" >"$T/vd.out" 2>&1 && grep -q "bits/dim" "$T/vd.out" && ok || bad "variational train: $(cat "$T/vd.out")"
"$NFLOW" train "${VD[@]}" --steps 3 --out "$T/vd2.ckpt" >/dev/null 2>&1 && \
"$NFLOW" train "${VD[@]}" --steps 6 --resume "$T/vd2.ckpt" --out "$T/vd2.ckpt" >/dev/null 2>&1 && \
    cmp -s "$T/vd.ckpt" "$T/vd2.ckpt" && ok || bad "variational: resumed training differs from an uninterrupted run"
tb=$(grep -oE "^test [0-9.]+" "$T/vd.out" | cut -d' ' -f2)
"$NFLOW" eval --model "$T/vd.ckpt" --data "$T/small-idx3-ubyte" >"$T/vde.out" && grep -q "^$tb ± " "$T/vde.out" && ok || bad "variational eval: '$(cat "$T/vde.out")' against train's $tb"
# eval --draws K: the importance-weighted bound; one draw is the plain figure, to the last digit
"$NFLOW" eval --model "$T/vd.ckpt" --data "$T/small-idx3-ubyte" --draws 1 >"$T/vd1.out" && \
    [ "$(sed -n 2p "$T/vd1.out" | cut -d' ' -f1-3)" = "$(sed -n 1p "$T/vd1.out" | cut -d' ' -f1-3)" ] && ok || bad "eval --draws 1: $(cat "$T/vd1.out")"
"$NFLOW" eval --model "$T/img.ckpt" --data "$T/small-idx3-ubyte" --draws 8 | grep -qE "^[0-9.]+ ± [0-9.]+ bits/dim importance-weighted over 8 " && \
    ok || bad "eval --draws 8"
expect_error "option --draws applies to image data only" "$NFLOW" eval --model "$T/m.ckpt" --data moons --draws 4
"$NFLOW" train --model realnvp --data "$T/small-idx3-ubyte" --test-data "$T/small-idx3-ubyte" --labels "$T/small-labels-idx1-ubyte" \
    --test-labels "$T/small-labels-idx1-ubyte" --condition labels --hidden 4 --blocks 1 --steps 3 --batch 10 --dequant variational \
    --out "$T/vdr.ckpt" --quiet >"$T/vdr.out" 2>&1 && grep -q "bits/dim" "$T/vdr.out" && \
    "$NFLOW" eval --model "$T/vdr.ckpt" --data "$T/small-idx3-ubyte" --labels "$T/small-labels-idx1-ubyte" --classify 20 | grep -q "accuracy" && \
    ok || bad "variational class-conditional realnvp: $(cat "$T/vdr.out")"
"$NFLOW" train --model nsf --data "$T/small-idx3-ubyte" --test-data "$T/small-idx3-ubyte" --levels 1 --depth 1 --hidden 4 --steps 3 --batch 10 \
    --dequant variational --out "$T/vdn.ckpt" --quiet 2>&1 | grep -q "bits/dim" && ok || bad "variational nsf"
expect_error "option --dequant applies to image data only" "$NFLOW" train --model realnvp --data moons --dequant variational --out "$T/x.ckpt"
expect_error "option --dequant: differs from the --resume checkpoint" "$NFLOW" train "${IMG[@]}" --steps 6 --resume "$T/b.ckpt" \
    --dequant variational --out "$T/x.ckpt"

# realnvp on images (tiny ResNets), then a folder of PNGs in two class folders (made by sampling the
# Glow above): train with a held-out fraction, eval, manipulate by class folder
"$NFLOW" train --model realnvp --data "$T/small-idx3-ubyte" --test-data "$T/small-idx3-ubyte" --hidden 4 --blocks 1 \
    --steps 3 --batch 10 --out "$T/rnvp.ckpt" --quiet >"$T/rnvp.out" 2>&1 && grep -q "bits/dim" "$T/rnvp.out" && ok || bad "realnvp image train: $(cat "$T/rnvp.out")"
"$NFLOW" eval --model "$T/rnvp.ckpt" --data "$T/small-idx3-ubyte" | grep -q "reconstruction error" && ok || bad "realnvp image eval"
mkdir -p "$T/pics/coats" "$T/pics/shoes"
for k in 1 2 3 4 5 6; do
    "$NFLOW" sample --model "$T/img.ckpt" -n 1 --seed $k --out "$T/pics/coats/$k.png" >/dev/null
    "$NFLOW" sample --model "$T/img.ckpt" -n 1 --seed $((k + 10)) --temperature 0.3 --out "$T/pics/shoes/$k.png" >/dev/null
done
"$NFLOW" train --model glow --data "$T/pics" --image-size 8 --channels 1 --levels 1 --depth 1 --hidden 4 --steps 3 --batch 4 \
    --out "$T/pics.ckpt" --quiet >"$T/pics.out" 2>&1 && grep -q "over 1 image (" "$T/pics.out" && ok || bad "train on a folder: $(cat "$T/pics.out")"
"$NFLOW" eval --model "$T/pics.ckpt" --data "$T/pics" --channels 1 | grep -q "over 12 images" && ok || bad "eval on a folder"
"$NFLOW" manipulate --model "$T/pics.ckpt" --data "$T/pics" --channels 1 --class-a 0 --class-b 1 --images 0,7 --strengths 0,1 \
    --out "$T/pics-manip.png" >/dev/null && [ "$(head -c 4 "$T/pics-manip.png" | tail -c 3)" = "PNG" ] && ok || bad "manipulate by class folders"

# bench: one short measurement, table and JSON
"$NFLOW" bench realnvp-moons --threads 1 --seconds 0.2 --json "$T/bench.json" >"$T/bench.out" && \
    grep -q "^realnvp-moons  *1 " "$T/bench.out" && grep -q '"train_samples_per_s"' "$T/bench.json" && ok || bad "bench"
for M in maf iaf; do
    "$NFLOW" bench $M-moons --threads 1 --seconds 0.1 >"$T/bench.out" && grep -q "^$M-moons  *1 " "$T/bench.out" && ok || bad "bench $M-moons"
done

# --- bad input
printf '1,2\n3,oops\n' >"$T/nonnum.csv"
printf '1,2\n3,4,5\n' >"$T/ragged.csv"
printf '1,2\nNaN,4\n' >"$T/nan.csv"
: >"$T/empty.csv"
head -c 100 "$T/m.ckpt" >"$T/trunc.ckpt"
printf 'definitely not a checkpoint' >"$T/foreign.ckpt"
expect_error "unknown model 'foo'" "$NFLOW" train --model foo --data moons --out "$T/x.ckpt"
expect_error "not a built-in dataset" "$NFLOW" train --model nice --data nosuchdata --out "$T/x.ckpt"
expect_error "nonnum.csv:2: field 2: 'oops' is not a number" "$NFLOW" train --model nice --data "$T/nonnum.csv" --out "$T/x.ckpt"
expect_error "ragged.csv:2: 3 fields, expected 2" "$NFLOW" train --model nice --data "$T/ragged.csv" --out "$T/x.ckpt"
expect_error "nan.csv:2: field 1: 'NaN' is not finite" "$NFLOW" train --model nice --data "$T/nan.csv" --out "$T/x.ckpt"
expect_error "empty.csv: no data rows" "$NFLOW" train --model nice --data "$T/empty.csv" --out "$T/x.ckpt"
expect_error "option --steps: 'many'" "$NFLOW" train --model nice --data moons --steps many --out "$T/x.ckpt"
expect_error "option --batch: '0'" "$NFLOW" train --model nice --data moons --batch 0 --out "$T/x.ckpt"
expect_error "option --lr" "$NFLOW" train --model nice --data moons --lr -1 --out "$T/x.ckpt"
expect_error "larger than the 100 training rows" "$NFLOW" train --model nice --data moons --train-size 100 --batch 500 --out "$T/x.ckpt"
expect_error "unknown option '--bogus'" "$NFLOW" train --bogus
expect_error "missing --out" "$NFLOW" train --model nice --data moons
expect_error "unknown activation 'swish'" "$NFLOW" train --model nice --data moons --activation swish --out "$T/x.ckpt"
expect_error "data dimension 1" "$NFLOW" train --model nice --data <(printf '1\n2\n3\n') --out "$T/x.ckpt"
expect_error "trunc.ckpt: truncated" "$NFLOW" eval --model "$T/trunc.ckpt" --data moons
expect_error "foreign.ckpt: .*not" "$NFLOW" sample --model "$T/foreign.ckpt"
expect_error "nope.ckpt: cannot open" "$NFLOW" sample --model "$T/nope.ckpt"
expect_error "3 columns, the model .* expects 2" "$NFLOW" encode --model "$T/m.ckpt" --in "$T/d.csv"
expect_error "plot needs a 2-D model" "$NFLOW" plot --model "$T/g.ckpt" --out "$T/no.png"
expect_error "temperature" "$NFLOW" sample --model "$T/m.ckpt" --temperature -1
expect_error "unknown command 'fly'" "$NFLOW" fly
expect_error "the folder /nonexistent-dir does not exist" "$NFLOW" sample --model "$T/m.ckpt" --out /nonexistent-dir/s.csv
printf 'not an idx file at all' >"$T/bad-idx3-ubyte"
expect_error "bad-idx3-ubyte: not an IDX file" "$NFLOW" train --model glow --data "$T/bad-idx3-ubyte" --out "$T/x.ckpt"
expect_error "images have 784 values, the model expects 2" "$NFLOW" eval --model "$T/m.ckpt" --data fashion-mnist
expect_error "needs --test-data" "$NFLOW" train --model glow --data /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --out "$T/x.ckpt"
expect_error "divisible by 2\^3 = 8 for 4 levels" "$NFLOW" train --model realnvp --levels 4 --data /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --test-data /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --out "$T/x.ckpt"
expect_error "image index 1000: the data has images 0..99" "$NFLOW" interpolate --model "$T/img.ckpt" --data "$T/small-idx3-ubyte" --from 0 --to 1000 --out "$T/no.png"
expect_error "no image has label 7" "$NFLOW" manipulate --model "$T/img.ckpt" --data "$T/small-idx3-ubyte" --labels "$T/small-labels-idx1-ubyte" --class-a 7 --class-b 1 --images 0 --out "$T/no.png"
expect_error "no labels" "$NFLOW" manipulate --model "$T/img.ckpt" --data "$T/small-idx3-ubyte" --class-a 0 --class-b 1 --images 0 --out "$T/no.png"
expect_error "not an image model" "$NFLOW" interpolate --model "$T/m.ckpt" --data "$T/small-idx3-ubyte" --from 0 --to 1 --out "$T/no.png"
mkdir -p "$T/badpics" && printf 'garbage' >"$T/badpics/x.png"
expect_error "badpics/x.png: not a readable PNG" "$NFLOW" train --model glow --data "$T/badpics" --out "$T/x.ckpt"
expect_error "images have 3072 values, the model expects 2" "$NFLOW" eval --model "$T/m.ckpt" --data "$T/pics"
expect_error "option --levels applies to image data only" "$NFLOW" train --model glow --data moons --levels 2 --out "$T/x.ckpt"
expect_error "option --lu: the nice model does not use it" "$NFLOW" train --model nice --data moons --lu 1 --out "$T/x.ckpt"
expect_error "option --perm: the glow model does not use it on image data" "$NFLOW" train --model glow --data "$T/small-idx3-ubyte" --test-data "$T/small-idx3-ubyte" --perm reverse --out "$T/x.ckpt"
expect_error "option --standardize applies to vector data only" "$NFLOW" train --model glow --data "$T/small-idx3-ubyte" --test-data "$T/small-idx3-ubyte" --standardize on --out "$T/x.ckpt"
expect_error "option --bits applies to image data only" "$NFLOW" eval --model "$T/m.ckpt" --data moons --bits 5
expect_error "option --test-size applies to built-in toy data only" "$NFLOW" eval --model "$T/g.ckpt" --data "$T/test.csv" --test-size 10
expect_error "option --bins applies to spline blocks only" "$NFLOW" train --model maf --data "$T/d.csv" --transform affine --bins 4 --out "$T/x.ckpt"
expect_error "option --prior-components applies to the mixture priors only .*--prior normal" "$NFLOW" train --model maf --data "$T/d.csv" --prior normal --prior-components 4 --out "$T/x.ckpt"
# --prior-components takes effect: one component more is 1 + 2·D parameters more (a weight, D means, D log-stds)
pk() { "$NFLOW" train --model maf --data "$T/d.csv" --prior gmm --prior-components "$1" --steps 1 --out "$T/pk-$1.ckpt" 2>&1 | sed -n 's/.*(\([0-9]*\) parameters.*/\1/p' | head -1; }
nd=$(head -1 "$T/d.csv" | awk -F, '{ print NF }')
[ "$(( $(pk 4) - $(pk 3) ))" -eq $((1 + 2 * nd)) ] && ok || bad "--prior-components 3 and 4: $(pk 3) and $(pk 4) parameters (D = $nd)"
# gmm_full: each component holds D(D−1)/2 values below its factor's diagonal as well
pf() { "$NFLOW" train --model maf --data "$T/d.csv" --prior gmm_full --prior-components "$1" --steps 1 --out "$T/pf-$1.ckpt" 2>&1 | sed -n 's/.*(\([0-9]*\) parameters.*/\1/p' | head -1; }
[ "$(( $(pf 4) - $(pk 4) ))" -eq $((4 * nd * (nd - 1) / 2)) ] && [ "$(( $(pf 4) - $(pf 3) ))" -eq $((1 + 2 * nd + nd * (nd - 1) / 2)) ] && ok ||
    bad "--prior gmm_full: $(pf 3) and $(pf 4) parameters with 3 and 4 components, gmm $(pk 4) (D = $nd)"
awk 'BEGIN { for (i = 0; i < 40; i++) { s = ""; for (j = 0; j < 65; j++) s = s (j ? "," : "") ((i + 1) * (j + 3) * 37 % 101) / 101; print s } }' >"$T/wide.csv"
expect_error "the gmm_full prior holds a D × D covariance factor a component: at most 64 dimensions \\(this model has 65" "$NFLOW" train --model maf --data "$T/wide.csv" --prior gmm_full --out "$T/x.ckpt"
"$NFLOW" train --model maf --data "$T/d.csv" --prior gmm --prior-components 3 --steps 2 --out "$T/pk.ckpt" --quiet >/dev/null 2>&1
# maf and iaf on a CSV without context columns default to 3 blocks over the mixture: the same parameter
# count as asking for them, and not the count of the general default (5 blocks, normal prior)
np_of() { "$NFLOW" train --data "$T/d.csv" --steps 1 --out "$T/np.ckpt" "$@" 2>&1 | sed -n 's/.*(\([0-9]*\) parameters.*/\1/p' | head -1; }
for m in maf iaf; do
    d=$(np_of --model $m) e=$(np_of --model $m --depth 3 --prior gmm) g=$(np_of --model $m --depth 5 --prior normal)
    [ -n "$d" ] && [ "$d" = "$e" ] && [ "$d" != "$g" ] && ok || bad "$m on a CSV: $d parameters by default, $e with --depth 3 --prior gmm, $g with --depth 5 --prior normal"
done
expect_error "option --prior-components: differs from the --resume checkpoint" "$NFLOW" train --resume "$T/pk.ckpt" --data "$T/d.csv" --prior-components 4 --steps 3 --out "$T/pk2.ckpt"
expect_error "option --scale applies to an affine transform only" "$NFLOW" train --model maf --data "$T/d.csv" --transform spline --scale sigmoid --out "$T/x.ckpt"
# --perm (nsf, maf, iaf) and --batchnorm (realnvp, maf, iaf) go between blocks: with one block they cannot
# apply (the default perm with --depth 1 is fine); a mixed maf of depth 1 has no spline block for --bins
expect_error "option --perm: the maf model puts it between blocks, and --depth 1 makes one block" "$NFLOW" train --model maf --data "$T/d.csv" --depth 1 --perm lu --out "$T/x.ckpt"
expect_error "option --perm: the nsf model puts it between blocks" "$NFLOW" train --model nsf --data moons --depth 1 --perm random --out "$T/x.ckpt"
expect_error "option --batchnorm: the realnvp model puts it between blocks" "$NFLOW" train --model realnvp --data moons --depth 1 --batchnorm 1 --out "$T/x.ckpt"
expect_error "option --bins applies to spline blocks only .*mixed with --depth 1" "$NFLOW" train --model maf --data "$T/d.csv" --depth 1 --bins 4 --out "$T/x.ckpt"
# mixed blocks take both kinds of option; the checkpoint says so and samples come back finite
"$NFLOW" train --model maf --data "$T/d.csv" --transform mixed --bins 4 --bound 3 --scale sigmoid --depth 3 --steps 10 --batch 32 --quiet \
    --out "$T/mixed.ckpt" >/dev/null 2>&1 && grep -aq 'transform\\":\\"mixed' "$T/mixed.ckpt" && \
    "$NFLOW" sample --model "$T/mixed.ckpt" -n 5 --out "$T/mixed.csv" && ! grep -qi 'nan\|inf' "$T/mixed.csv" && ok || bad "maf --transform mixed"
expect_error "50 consecutive non-finite steps .*no checkpoint written" "$NFLOW" train --model realnvp --data moons --lr 10 --warmup 0 --clip 0 \
    --train-size 4000 --test-size 100 --steps 300 --quiet --out "$T/nan.ckpt"
expect_error "50 consecutive non-finite steps .*nan1.ckpt keeps step 1 " "$NFLOW" train --model realnvp --data moons --lr 10 --warmup 0 --clip 0 \
    --train-size 4000 --test-size 100 --steps 300 --checkpoint-every 1 --quiet --out "$T/nan1.ckpt"
[ -s "$T/nan1.ckpt" ] && ok || bad "no checkpoint kept after non-finite steps"
expect_error "unknown workload 'fast'" "$NFLOW" bench fast
[ ! -e "$T/x.ckpt" ] && [ ! -e "$T/no.png" ] && ok || bad "a failed command left an output file"
ls "$T" | grep -q '\.tmp\.' && bad "temporary files left behind" || ok

# --- the ISA path and BLAS core are reported; a path the environment asks for but the CPU lacks is refused
"$NFLOW" --version | grep -q "^isa .*, core " && ok || bad "--version names the ISA path and BLAS core"
NFLOW_ISA=generic "$NFLOW" --version | grep -q "^isa generic" && ok || bad "NFLOW_ISA=generic not honoured"
# a core forced below the CPU through OPENBLAS_CORETYPE is respected and named (Prescott: SSE3; only
# where the library is OpenBLAS and the CPU has more)
if "$NFLOW" --version | grep -q "OpenBLAS" && "$NFLOW" --version | grep -q "cpu supports avx"; then
    OPENBLAS_CORETYPE=Prescott "$NFLOW" --version | grep -q "core Prescott (set by OPENBLAS_CORETYPE, below this CPU's avx" && ok ||
        bad "--version does not say that OPENBLAS_CORETYPE forced a core below the CPU"
fi
expect_error "NFLOW_ISA=sse9" env NFLOW_ISA=sse9 "$NFLOW" --version
# the product libraries: named in --version when oneDNN is built in; NFLOW_GEMM honoured, an unknown name refused
if "$NFLOW" --version | grep -q "oneDNN"; then
    "$NFLOW" --version | grep -q "products: OpenBLAS or, where faster, oneDNN .*(NFLOW_GEMM=auto)" && ok || bad "--version does not name the product libraries"
    NFLOW_GEMM=openblas "$NFLOW" --version | grep -q "products: OpenBLAS alone" && ok || bad "NFLOW_GEMM=openblas not honoured"
    NFLOW_GEMM=onednn "$NFLOW" --version | grep -q "products: all by oneDNN" && ok || bad "NFLOW_GEMM=onednn not honoured"
else
    expect_error "NFLOW_GEMM=onednn: this build has no oneDNN" env NFLOW_GEMM=onednn "$NFLOW" --version
fi
expect_error "NFLOW_GEMM=mkl: not one of" env NFLOW_GEMM=mkl "$NFLOW" --version

# --- outputs that cannot be written whole, or would destroy an input: refused before any work, inputs intact
cp "$T/named.csv" "$T/keep.csv"
expect_error "writing .*keep.csv would overwrite the file --data reads" "$NFLOW" train --model maf --data "$T/keep.csv" --out "$T/keep.csv" --steps 2
expect_error "writing .*keep.csv would overwrite the file --data reads" "$NFLOW" train --model maf --data "$T/keep.csv" --test-out "$T/keep.csv" --out "$T/x.ckpt" --steps 2
expect_error "writing .*keep.csv would overwrite the file --data reads" "$NFLOW" eval --model "$T/named.ckpt" --data "$T/keep.csv" --out "$T/keep.csv"
expect_error "writing .*named.ckpt would overwrite the file --model reads" "$NFLOW" sample --model "$T/named.ckpt" --out "$T/named.ckpt"
expect_error "writing .*keep.csv would overwrite the file --in reads" "$NFLOW" encode --model "$T/named.ckpt" --in "$T/keep.csv" --out "$T/keep.csv"
expect_error "options --out and --log: both write" "$NFLOW" train --model maf --data "$T/keep.csv" --out "$T/y.ckpt" --log "$T/y.ckpt" --steps 2
cmp -s "$T/named.csv" "$T/keep.csv" && cmp -s "$T/named.ckpt" "$T/named.ckpt" && [ ! -e "$T/y.ckpt" ] && ok || bad "a refused command changed its input"
mkdir -p "$T/adir.ckpt"
expect_error "adir.ckpt is a folder; give a file name" "$NFLOW" train --model maf --data "$T/keep.csv" --out "$T/adir.ckpt" --steps 2
expect_error "adir.ckpt: is a folder, not a file" "$NFLOW" eval --model "$T/adir.ckpt" --data moons
expect_error "adir.ckpt: is a folder, not a CSV file" "$NFLOW" encode --model "$T/named.ckpt" --in "$T/adir.ckpt"
[ -z "$(ls "$T/adir.ckpt")" ] && ok || bad "a refused --out folder got files"
# --- tables: malformed cells and lists, a column with one value, non-finite decodes
printf 'a,b
1,2
0x10,3
' >"$T/hex.csv"
expect_error "hex.csv:3: field 1: '0x10' is not a number" "$NFLOW" eval --model "$T/named.ckpt" --data "$T/hex.csv"
printf 'a,b
' >"$T/header-only.csv"
expect_error "header-only.csv: no data rows \\(only a header line\\)" "$NFLOW" eval --model "$T/named.ckpt" --data "$T/header-only.csv"
awk -F, 'NR == 1 { print "a,b,c"; next } { print $1 "," $2 ",7" }' "$T/named.csv" >"$T/const.csv"
expect_error "const.csv: column 3 \\(c\\) has the value 7 in every training row" "$NFLOW" train --model maf --data "$T/const.csv" --out "$T/x.ckpt" --steps 2
expect_error "'a,a' names column 1 twice" "$NFLOW" train --model maf --data "$T/const.csv" --context-cols a,a --out "$T/x.ckpt" --steps 2
expect_error "'a,,b' has an empty entry" "$NFLOW" train --model maf --data "$T/const.csv" --context-cols a,,b --out "$T/x.ckpt" --steps 2
printf 'z1,z2\n1e38,-1e38\n' >"$T/far.csv"
expect_error "far.csv: data row 1 decodes to a non-finite value" "$NFLOW" decode --model "$T/m.ckpt" --in "$T/far.csv" --out "$T/far-x.csv"
[ ! -e "$T/far-x.csv" ] && ok || bad "decode wrote rows of a non-finite decode"
# a model that overflows on some latents (ActNorm's log-scale set to -88 in the file, its CRC-32 updated):
# a table of samples is refused, nothing written; a 2-D plot still draws
set_tensor() { # set_tensor CKPT NAME VALUE: every value of tensor NAME in the checkpoint, its CRC-32 updated
    /usr/bin/python3 - "$@" <<'PY'
import json, struct, sys, zlib
path, name, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
b = open(path, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
head, data = b[8:8 + n], bytearray(b[8 + n:])
lo, hi = json.loads(head)[name]["data_offsets"]
data[lo:hi] = struct.pack("<%df" % ((hi - lo) // 4), *[value] * ((hi - lo) // 4))
old = json.loads(head)["__metadata__"]["data_crc32"].encode()
open(path, "wb").write(b[:8] + head.replace(b'"' + old + b'"', b'"%08x"' % zlib.crc32(bytes(data)), 1) + bytes(data))
PY
}
"$NFLOW" train --model glow --data moons --steps 2 --quiet --out "$T/ov.ckpt" >/dev/null
set_tensor "$T/ov.ckpt" layers.0.log_scale -88
expect_error "ov.ckpt: sample [0-9]+ holds a non-finite value .*nothing written" "$NFLOW" sample --model "$T/ov.ckpt" -n 1000 --out "$T/ov.csv"
[ ! -e "$T/ov.csv" ] && ok || bad "sample wrote rows of non-finite samples"
"$NFLOW" plot --model "$T/ov.ckpt" --out "$T/ov.png" >/dev/null 2>&1 && [ -s "$T/ov.png" ] && ok || bad "plot of a model that overflows on some samples"
# an image model that overflows on some latents: the grid is drawn, with one warning line naming it
cp "$T/img.ckpt" "$T/img-ov.ckpt" && set_tensor "$T/img-ov.ckpt" layers.1.log_scale -88
"$NFLOW" sample --model "$T/img-ov.ckpt" -n 64 --out "$T/ov-grid.png" >/dev/null 2>"$T/ov-grid.err" && [ -s "$T/ov-grid.png" ] && \
    [ "$(wc -l <"$T/ov-grid.err")" -eq 1 ] && grep -q "ov-grid.png: [0-9]* of the 64 images hold non-finite pixels" "$T/ov-grid.err" && ok || \
    bad "image grid of a model that overflows: $(cat "$T/ov-grid.err")"
# a file without a header: its columns are x1, x2, … for --context-cols too
tail -n +2 "$T/const.csv" | awk -F, '{ print $1 "," $2 "," $1 * 0.5 }' >"$T/nohead.csv"
"$NFLOW" train --model maf --data "$T/nohead.csv" --context-cols x3 --steps 5 --batch 16 --out "$T/nh.ckpt" --quiet >/dev/null 2>"$T/err" && ok || \
    bad "--context-cols x3 on a file without a header: $(cat "$T/err")"
# --- resume: only on the data the run started with; a damaged or foreign MODEL.ckpt.best is refused before it can replace --out
"$NFLOW" train --model realnvp --data moons --steps 20 --batch 64 --train-size 1000 --out "$T/rs.ckpt" --quiet >/dev/null 2>&1
expect_error "rs.ckpt: saved while training on other data" "$NFLOW" train --resume "$T/rs.ckpt" --data 8gaussians --steps 30 --batch 64 --train-size 1000 --out "$T/rs.ckpt"

# --- image commands: an IDX file by its magic number whatever its name; options that cannot apply refused
cp "$T/small-idx3-ubyte" "$T/small.idx"
"$NFLOW" eval --model "$T/img.ckpt" --data "$T/small.idx" | grep -q "reconstruction error" && ok || bad "an IDX file not named *idx3-ubyte*"
expect_error "option --labels: the labels condition the model: give --condition labels too" "$NFLOW" train --model glow --data "$T/small.idx" \
    --test-data "$T/small.idx" --labels "$T/small-labels-idx1-ubyte" --steps 1 --out "$T/x.ckpt"
expect_error "option --labels: the model .* is not class-conditional" "$NFLOW" eval --model "$T/img.ckpt" --data "$T/small.idx" --labels "$T/small-labels-idx1-ubyte"
expect_error "option --channels applies to image folders only" "$NFLOW" interpolate --model "$T/img.ckpt" --data "$T/small.idx" --from 0 --to 1 --channels 3 --out "$T/no.png"
expect_error "s.csv: the picture is a PNG file" "$NFLOW" sample --model "$T/img.ckpt" --out "$T/s.csv"
expect_error "option --images: '0,,1' has an empty entry" "$NFLOW" manipulate --model "$T/img.ckpt" --data "$T/small.idx" \
    --labels "$T/small-labels-idx1-ubyte" --class-a 0 --class-b 1 --images 0,,1 --out "$T/no.png"
expect_error "option --temperature: '0x1' is not a decimal number" "$NFLOW" sample --model "$T/m.ckpt" --temperature 0x1
[ ! -e "$T/no.png" ] && ok || bad "a refused image command wrote its picture"
# a default batch larger than the data shrinks to it (a given one is refused, above)
head -21 "$T/named.csv" >"$T/twenty.csv"
"$NFLOW" train --model maf --data "$T/twenty.csv" --steps 2 --out "$T/tw.ckpt" --quiet >/dev/null 2>"$T/err" && ok || bad "default batch on 20 rows: $(cat "$T/err")"

finish
