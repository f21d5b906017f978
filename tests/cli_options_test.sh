#!/usr/bin/env bash
# cli_options_test.sh NFLOW — walk the option table of `nflow train` (the hidden `nflow options`
# lists it: name, kind, a valid value, the data it applies to, the models using it on vector and on
# image data). For every option, every kind of data (a toy set, a CSV, an IDX image file, a folder of
# PNGs) and every model, train with the option and its value: where the table says it applies the run
# must succeed and write the checkpoint; elsewhere it must fail with exactly one stderr line naming the
# option. Then the effects of the key options: --time-limit, --checkpoint-every, --resume, --clip.
. "$(dirname "$0")/harness.sh" cli_options "$@"

# --- data: CSV (3 columns), 40 random 8 × 8 IDX images, a folder of 16 PNGs (sampled from a tiny Glow)
awk 'BEGIN { srand(3); print "a,b,c"; for (i = 0; i < 200; i++) { u = rand(); v = rand(); printf "%f,%f,%f\n", u, u + v, 1 - v } }' >"$T/d.csv"
# (pixels from a seeded generator, so that a failure reproduces with the same data)
{ printf '\x00\x00\x08\x03\x00\x00\x00\x28\x00\x00\x00\x08\x00\x00\x00\x08'; LC_ALL=C awk 'BEGIN { srand(7); for (i = 0; i < 2560; i++) printf "%c", int(rand() * 256) }'; } >"$T/i-idx3-ubyte"
"$NFLOW" train --model glow --data "$T/i-idx3-ubyte" --test-data "$T/i-idx3-ubyte" --levels 1 --depth 1 --hidden 4 --steps 2 --batch 8 \
    --out "$T/pic.ckpt" --quiet >/dev/null 2>&1 || bad "setup: tiny image model"
mkdir -p "$T/pics"
for k in $(seq 1 16); do "$NFLOW" sample --model "$T/pic.ckpt" -n 1 --seed "$k" --out "$T/pics/$k.png" >/dev/null || bad "setup: png $k"; done

base_data() { # KIND: the data options
    case $1 in
    toy) echo "--data moons --train-size 64 --test-size 32" ;;
    csv) echo "--data $T/d.csv" ;;
    idx) echo "--data $T/i-idx3-ubyte --test-data $T/i-idx3-ubyte" ;;
    dir) echo "--data $T/pics --image-size 8 --channels 1" ;;
    esac
}
base_arch() { # KIND MODEL: a tiny architecture of options that model uses
    case $1:$2 in
    toy:*|csv:*) echo "--depth 2 --hidden 8" ;;
    *:nice) echo "--depth 1 --hidden 8 --mlp-layers 1" ;;
    *:realnvp) echo "--hidden 4 --blocks 1 --levels 1" ;;
    *:glow|*:nsf) echo "--levels 1 --depth 1 --hidden 4" ;;
    esac
}
has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }

# the option parser's fuzzer starts from a dictionary (tests/fuzz/options.dict) that names every option of
# tools/options.c, so that a new option is fuzzed from the day it is added
for o in $(grep -oE '^ +\{"[a-z0-9-]+", ' "$(dirname "$0")/../tools/options.c" | grep -oE '"[a-z0-9-]+"' | tr -d '"'); do
    grep -qx -- "\"--$o\"" "$(dirname "$0")/fuzz/options.dict" && ok || bad "tests/fuzz/options.dict lacks \"--$o\""
done
# and the checkpoint fuzzer's (tests/fuzz/ckpt.dict) every config field and enum name of src/models/config.c
src="$(dirname "$0")/../src/models/config.c"
for w in $(grep -oE 'FIELD\("[a-z0-9_]+"' "$src" | grep -oE '"[a-z0-9_]+"' | tr -d '"') \
    $(awk '/enum_names\[\] = \{/, /^\};/' "$src" | grep -oE '"[a-z0-9_]+"' | tr -d '"'); do
    grep -qx -- "\"$w\"" "$(dirname "$0")/fuzz/ckpt.dict" && ok || bad "tests/fuzz/ckpt.dict lacks \"$w\""
done
"$NFLOW" options >"$T/table" || bad "nflow options"
# every option of train --help is in the table (and so walked)
for o in $("$NFLOW" train --help | grep -oE '^ +(-[a-z], )?--[a-z-]+' | grep -oE -- '--[a-z-]+' | sed 's/^--//'); do
    [ "$o" = help ] && continue
    grep -q "^$o	" "$T/table" || bad "--$o is in train --help but not in the option table"
done
[ "$(wc -l <"$T/table")" -ge 40 ] && ok || bad "option table has only $(wc -l <"$T/table") train options"

for kind in toy csv idx dir; do
    models_of_kind="nice realnvp glow nsf"
    case $kind in toy|csv) models_of_kind="$models_of_kind maf iaf" ;; esac # autoregressive: vectors only
    for model in $models_of_kind; do
        B=(--model "$model" $(base_data $kind) $(base_arch $kind $model) --steps 3 --batch 8 --quiet)
        "$NFLOW" train "${B[@]}" --steps 2 --out "$T/ck-$kind-$model" >"$T/out" 2>"$T/err" || bad "base run $kind $model: $(cat "$T/err")"
        while IFS=$'\t' read -r name okind example data vm im; do
            case $name in model|data|out) continue ;; esac
            # the class-conditional options need labelled images (this walk's IDX file and folder have
            # none): tests/cond_cli_test.sh runs them
            case $name in condition|labels|test-labels) continue ;; esac
            case $example in
            -) V=() ;;
            @FILE) V=("$T/file-$name") ;;
            @CKPT) V=("$T/ck-$kind-$model") ;;
            @IDX) V=("$T/i-idx3-ubyte") ;;
            *) V=("$example") ;;
            esac
            case $kind in toy|csv) models=$vm ;; *) models=$im ;; esac
            applies=0
            has "$data" "$kind" && has "$models" "$model" && applies=1
            case $name in mpi-bucket-mb) applies=0 ;; esac # under mpirun only: refused in a plain run (tests/mpi_test.sh runs it)
            X=() # the spline's options on an autoregressive model need its spline transform; the dequantiser's width its
            # dequantiser; the mixture's components the gmm prior
            case $model:$name in maf:bins|maf:bound|iaf:bins|iaf:bound) X=(--transform spline) ;; maf:scale|iaf:scale) X=(--transform affine) ;; esac
            case $name:$kind in dequant-hidden:idx|dequant-hidden:dir) X=(--dequant variational) ;; esac
            case $name in prior-components) X=(--prior gmm) ;; esac # the mixture's size needs the mixture
            rm -f "$T/x.ckpt"
            "$NFLOW" train "${B[@]}" "${X[@]}" --"$name" "${V[@]}" --out "$T/x.ckpt" >"$T/out" 2>"$T/err"
            rc=$?
            what="train --$name ${V[*]} ($kind, $model)"
            if [ $applies -eq 1 ]; then
                [ $rc -eq 0 ] && [ -s "$T/x.ckpt" ] && ok || bad "$what: the table says it applies, but exit $rc: $(head -2 "$T/err")"
            else
                lines=$(wc -l <"$T/err")
                if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then bad "$what: should be refused, exit $rc"
                elif [ "$lines" -ne 1 ]; then bad "$what: $lines stderr lines: $(cat "$T/err")"
                elif ! grep -q -- "--$name" "$T/err"; then bad "$what: message does not name the option: $(cat "$T/err")"
                elif [ -e "$T/x.ckpt" ]; then bad "$what: refused but wrote the checkpoint"
                else ok; fi
            fi
        done <"$T/table"
    done
done

# maf and iaf are refused on images, in one line naming the model
for model in maf iaf; do
    "$NFLOW" train --model $model $(base_data idx) --steps 2 --batch 8 --out "$T/ar-img.ckpt" >"$T/out" 2>"$T/err"
    [ $? -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "$model: vector data only" "$T/err" && [ ! -e "$T/ar-img.ckpt" ] && ok || bad "$model on images: $(cat "$T/err")"
done

# the finer rules of maf/iaf: --bins/--bound need spline blocks (spline or mixed), --scale affine ones
# (affine or mixed; the default: spline on 2-D data, mixed on tables); each case: the option the message
# must name, the kind of data, the arguments
for c in "bins csv --transform affine --bins 5" "bound csv --transform affine --bound 2" "scale csv --transform spline --scale sigmoid" "scale toy --scale tanh" \
         "bins toy --transform affine --bins 4"; do
    set -- $c
    opt=$1 kind=$2
    shift 2
    rm -f "$T/fr.ckpt"
    "$NFLOW" train --model maf $(base_data $kind) --depth 1 --hidden 4 --steps 2 --batch 8 --out "$T/fr.ckpt" "$@" >"$T/out" 2>"$T/err"
    rc=$?
    [ $rc -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "--$opt" "$T/err" && [ ! -e "$T/fr.ckpt" ] && ok || bad "maf ($kind) $*: $(cat "$T/err")"
done
# --dequant-hidden without the variational dequantiser it sizes
rm -f "$T/fr.ckpt"
"$NFLOW" train --model glow --data "$T/i-idx3-ubyte" --test-data "$T/i-idx3-ubyte" --depth 1 --hidden 4 --steps 2 --batch 8 --out "$T/fr.ckpt" \
    --dequant-hidden 8 >/dev/null 2>"$T/err"
[ $? -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "--dequant-hidden: needs --dequant variational" "$T/err" && [ ! -e "$T/fr.ckpt" ] && ok || \
    bad "--dequant-hidden without --dequant variational: $(cat "$T/err")"
"$NFLOW" train --model maf $(base_data csv) --depth 1 --hidden 4 --steps 2 --batch 8 --out "$T/fr.ckpt" --transform spline --bins 4 --bound 3 >/dev/null 2>&1 && \
    [ -s "$T/fr.ckpt" ] && ok || bad "maf --transform spline --bins 4 --bound 3"
"$NFLOW" train --model maf $(base_data toy) --depth 1 --hidden 4 --steps 2 --batch 8 --out "$T/fr2.ckpt" --bins 4 >/dev/null 2>&1 && \
    [ -s "$T/fr2.ckpt" ] && ok || bad "maf on 2-D data (spline by default) --bins 4"

# --- effects
V=(--model realnvp --data moons --train-size 256 --test-size 32 --depth 2 --hidden 8 --batch 16 --quiet)
# --time-limit ends a vector run of 10^8 steps early, saving and evaluating
timeout 60 "$NFLOW" train "${V[@]}" --steps 100000000 --time-limit 0.01 --out "$T/tl.ckpt" >"$T/out" 2>&1 && grep -q "log-likelihood" "$T/out" && \
    [ -s "$T/tl.ckpt" ] && [ "$(wc -l <"$T/tl.ckpt.metrics.csv")" -lt 100000000 ] && ok || bad "--time-limit on vectors: $(cat "$T/out")"
# --checkpoint-every: a run killed mid-way leaves a checkpoint that loads and resumes
timeout -s KILL 3 "$NFLOW" train "${V[@]}" --steps 100000000 --checkpoint-every 20 --out "$T/ce.ckpt" >/dev/null 2>&1
[ -s "$T/ce.ckpt" ] && "$NFLOW" eval --model "$T/ce.ckpt" --data moons --test-size 32 >/dev/null && \
    "$NFLOW" train "${V[@]}" --steps 100000000 --time-limit 0.005 --resume "$T/ce.ckpt" --out "$T/ce2.ckpt" >/dev/null 2>&1 && ok || bad "--checkpoint-every: no usable checkpoint from a killed run"
# --resume refuses an architecture that differs from the checkpoint's, and a model of other data
"$NFLOW" train "${V[@]}" --steps 4 --out "$T/r.ckpt" >/dev/null 2>&1
"$NFLOW" train "${V[@]}" --depth 3 --steps 8 --resume "$T/r.ckpt" --out "$T/r2.ckpt" >/dev/null 2>"$T/err"
[ $? -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "--depth" "$T/err" && [ ! -e "$T/r2.ckpt" ] && ok || bad "--resume with another --depth: $(cat "$T/err")"
"$NFLOW" train --data "$T/i-idx3-ubyte" --test-data "$T/i-idx3-ubyte" --steps 8 --resume "$T/r.ckpt" --out "$T/r2.ckpt" >/dev/null 2>"$T/err"
[ $? -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "--resume" "$T/err" && ok || bad "--resume of a vector model on images: $(cat "$T/err")"
# --clip acts: a tiny bound changes the trained model
"$NFLOW" train "${V[@]}" --steps 20 --clip 0 --out "$T/c0.ckpt" >/dev/null 2>&1
"$NFLOW" train "${V[@]}" --steps 20 --clip 0.001 --out "$T/c1.ckpt" >/dev/null 2>&1
"$NFLOW" sample --model "$T/c0.ckpt" -n 5 >"$T/s0" && "$NFLOW" sample --model "$T/c1.ckpt" -n 5 >"$T/s1" && ! cmp -s "$T/s0" "$T/s1" && ok || bad "--clip has no effect"
# the image metrics log its grad_norm in bits/dim, the unit --clip bounds: a bound far below it
# changes the model, one far above does not
I=(--model glow --data "$T/i-idx3-ubyte" --test-data "$T/i-idx3-ubyte" --levels 1 --depth 1 --hidden 4 --batch 8 --warmup 0 --quiet)
"$NFLOW" train "${I[@]}" --steps 4 --clip 0 --out "$T/ic0.ckpt" >/dev/null 2>&1
g=$(awk -F, 'NR > 1 && $4 > m { m = $4 } END { print m }' "$T/ic0.ckpt.metrics.csv")
"$NFLOW" train "${I[@]}" --steps 4 --clip "$(awk -v g="$g" 'BEGIN { print g * 1.01 }')" --out "$T/ic1.ckpt" >/dev/null 2>&1
"$NFLOW" train "${I[@]}" --steps 4 --clip "$(awk -v g="$g" 'BEGIN { print g * 0.2 }')" --out "$T/ic2.ckpt" >/dev/null 2>&1
"$NFLOW" train "${I[@]}" --steps 4 --clip 0 --out "$T/ic0b.ckpt" >/dev/null 2>&1
if ! cmp -s "$T/ic0.ckpt" "$T/ic0b.ckpt"; then bad "image training is not reproducible run to run (the --clip check needs it)"
elif cmp -s "$T/ic0.ckpt" "$T/ic1.ckpt" && ! cmp -s "$T/ic0.ckpt" "$T/ic2.ckpt"; then ok
else bad "image --clip is not in the unit of the logged grad_norm (max $g; ic1 $(ls "$T"/ic1.ckpt 2>&1))"; fi

finish
