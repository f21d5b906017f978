#!/usr/bin/env bash
# cond_cli_test.sh NFLOW — conditional flows through the CLI.
# Tables: a CSV whose modelled columns x depend strongly on context columns c (x1 = 2·c1 + noise,
# x2 = −c2 + noise, noise std 0.2, the columns interleaved c1,x1,c2,x2): a conditional realnvp
# (--context-cols) must beat an unconditional one on held-out rows by a wide margin (log p(x | c) vs
# log p(x)), and its samples for a given context must follow it (mean of x1 near 2·c1). Images: a
# labelled IDX set of two classes (dark and bright 8 × 8 images) through --condition labels (with
# --labels / --test-labels), eval's class-conditional bits/dim below the unconditional model's, sample
# --class and the grid with one row per class; a folder of class sub-folders. Refusals: one line each.
. "$(dirname "$0")/harness.sh" cond_cli "$@"
# refused CMD...: exit 1, exactly one stderr line, mentioning $WANT
refused() {
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "$WANT" "$T/err"; then ok; else bad "refused? rc $rc: $* :: $(cat "$T/err")"; fi
}

# --- a table: c1,x1,c2,x2
table() { # SEED ROWS
    awk -v seed="$1" -v n="$2" 'function g() { return sqrt(-2 * log(1 - rand())) * cos(6.283185307 * rand()) }
        BEGIN { srand(seed); print "c1,x1,c2,x2"; for (i = 0; i < n; i++) { a = 4 * rand() - 2; b = 4 * rand() - 2
                printf "%.6f,%.6f,%.6f,%.6f\n", a, 2 * a + 0.2 * g(), b, -b + 0.2 * g() } }'
}
table 11 4000 >"$T/train.csv"
table 12 1000 >"$T/test.csv"
cut -d, -f2,4 "$T/train.csv" >"$T/train-x.csv"
cut -d, -f2,4 "$T/test.csv" >"$T/test-x.csv"
A=(--model realnvp --depth 4 --hidden 32 --steps 600 --batch 128 --lr 3e-3 --quiet)
"$NFLOW" train "${A[@]}" --data "$T/train.csv" --context-cols c1,c2 --out "$T/cond.ckpt" >"$T/train.out" 2>"$T/err" || bad "conditional train: $(cat "$T/err")"
grep -q "log p(x | c)" "$T/train.out" && ok || bad "train does not report log p(x | c): $(cat "$T/train.out")"
"$NFLOW" train "${A[@]}" --data "$T/train-x.csv" --out "$T/uncond.ckpt" >/dev/null 2>"$T/err" || bad "unconditional train: $(cat "$T/err")"
"$NFLOW" eval --model "$T/cond.ckpt" --data "$T/test.csv" --out "$T/lp.csv" >"$T/ev1" 2>"$T/err" || bad "conditional eval: $(cat "$T/err")"
"$NFLOW" eval --model "$T/uncond.ckpt" --data "$T/test-x.csv" >"$T/ev2" 2>"$T/err" || bad "unconditional eval: $(cat "$T/err")"
grep -q "^log p(x | c) .*conditional on columns 1,3" "$T/ev1" && ok || bad "eval line: $(cat "$T/ev1")"
lc=$(awk '{print $5}' "$T/ev1"); lu=$(awk '{print $2}' "$T/ev2")
echo "held-out log p(x | c) = $lc nats, log p(x) = $lu nats"
awk -v a="$lc" -v b="$lu" 'BEGIN { exit !(a > b + 2) }' && ok || bad "log p(x | c) $lc does not beat log p(x) $lu by 2 nats"
[ "$(wc -l <"$T/lp.csv")" -eq 1001 ] && ok || bad "eval --out: $(wc -l <"$T/lp.csv") lines"
# column numbers instead of names: the same model layout
"$NFLOW" train "${A[@]}" --steps 2 --data "$T/train.csv" --context-cols 1,3 --out "$T/cond2.ckpt" >/dev/null 2>"$T/err" && ok || bad "--context-cols 1,3: $(cat "$T/err")"

# samples follow the context: 300 per row for (c1, c2) = (1, −1) and (−1, 0.5)
printf 'c1,c2\n1,-1\n-1,0.5\n' >"$T/ctx.csv"
"$NFLOW" sample --model "$T/cond.ckpt" --context "$T/ctx.csv" -n 300 --out "$T/s.csv" >/dev/null 2>"$T/err" || bad "sample --context: $(cat "$T/err")"
[ "$(wc -l <"$T/s.csv")" -eq 601 ] && ok || bad "sample: $(wc -l <"$T/s.csv") lines"
# the samples carry the training file's header (context columns in their places)
[ "$(head -1 "$T/s.csv")" = "c1,x1,c2,x2" ] && ok || bad "sample header '$(head -1 "$T/s.csv")', not the training file's c1,x1,c2,x2"
means=$(awk -F, 'NR > 1 { k = $1 > 0 ? 1 : 2; s1[k] += $2; s2[k] += $4; n[k]++ } END { printf "%.3f %.3f %.3f %.3f", s1[1] / n[1], s2[1] / n[1], s1[2] / n[2], s2[2] / n[2] }' "$T/s.csv")
echo "sample means (x1, x2): context (1, -1): ${means% * *}; context (-1, 0.5): ${means#* * }"
set -- $means
awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN { exit !(a > 1.6 && a < 2.4 && b > 0.6 && b < 1.4 && c < -1.6 && c > -2.4 && d < -0.1 && d > -0.9) }' && ok ||
    bad "sample means $means do not follow the contexts (2, 1) and (−2, −0.5)"
# whole rows of the training layout work as contexts too (their x columns are ignored)
head -3 "$T/test.csv" >"$T/rows.csv"
"$NFLOW" sample --model "$T/cond.ckpt" --context "$T/rows.csv" --out "$T/s2.csv" >/dev/null 2>"$T/err" && [ "$(wc -l <"$T/s2.csv")" -eq 3 ] && ok ||
    bad "sample --context whole rows: $(cat "$T/err")"

# encode / decode: rows of the training layout in and out, the context columns passed through; latents
# near N(0, 1) with the right contexts, far out with c1 shifted by 1 (x1 = 2·c1 + noise 0.2); decode(encode(x)) = x
"$NFLOW" encode --model "$T/cond.ckpt" --in "$T/test.csv" --out "$T/z.csv" 2>"$T/err" && [ "$(head -1 "$T/z.csv")" = "c1,z1,c2,z2" ] &&
    [ "$(wc -l <"$T/z.csv")" -eq 1001 ] && ok || bad "conditional encode: $(cat "$T/err") $(head -1 "$T/z.csv")"
awk -F, 'NR == FNR { if (FNR > 1) { c1[FNR] = $1; c2[FNR] = $3 }; next }
         FNR > 1 { if ($1 - c1[FNR] > 1e-6 || c1[FNR] - $1 > 1e-6 || $3 - c2[FNR] > 1e-6 || c2[FNR] - $3 > 1e-6) bad = 1; s += $2 * $2 + $4 * $4; n += 2 }
         END { exit bad || s / n > 2 }' "$T/test.csv" "$T/z.csv" && ok || bad "encode: context columns changed, or latents not near N(0, 1)"
awk -F, 'BEGIN { OFS = "," } NR > 1 { $1 += 1 } { print }' "$T/test.csv" >"$T/shifted.csv"
"$NFLOW" encode --model "$T/cond.ckpt" --in "$T/shifted.csv" --out "$T/zs.csv" 2>"$T/err" &&
    awk -F, 'FNR > 1 { s += $2 * $2; n++ } END { exit !(s / n > 20) }' "$T/zs.csv" && ok || bad "encode ignores the context: $(cat "$T/err")"
"$NFLOW" decode --model "$T/cond.ckpt" --in "$T/z.csv" --out "$T/xd.csv" 2>"$T/err" && [ "$(head -1 "$T/xd.csv")" = "c1,x1,c2,x2" ] &&
    awk -F, 'NR == FNR { for (j = 1; j <= 4; j++) v[FNR, j] = $j; next }
             FNR > 1 { for (j = 1; j <= 4; j++) { d = $j - v[FNR, j]; if (d > 1e-4 || d < -1e-4) bad = 1 } }
             END { exit bad }' "$T/test.csv" "$T/xd.csv" && ok || bad "conditional decode(encode(x)) != x: $(cat "$T/err")"

# plot: a row of panels per context row (the PNG's height in its IHDR: 2 rows of 64 pixels)
"$NFLOW" plot --model "$T/cond.ckpt" --context "$T/ctx.csv" --size 64 --out "$T/cp.png" >/dev/null 2>"$T/err" &&
    [ "$(od -An -tu1 -j20 -N4 "$T/cp.png" | tr -s ' ')" = " 0 0 0 128" ] && ok || bad "plot --context: $(cat "$T/err")"

# refusals
WANT="give --context FILE.csv" refused "$NFLOW" plot --model "$T/cond.ckpt" --out "$T/np.png"
WANT="option --data: the model .* is conditional" refused "$NFLOW" plot --model "$T/cond.ckpt" --context "$T/ctx.csv" --data "$T/test.csv" --out "$T/np.png"
WANT="option --context: the model .* is not conditional" refused "$NFLOW" plot --model "$T/uncond.ckpt" --context "$T/ctx.csv" --out "$T/np.png"
[ ! -e "$T/np.png" ] && ok || bad "a refused plot wrote its picture"
WANT="--context-cols" refused "$NFLOW" train --model realnvp --data moons --context-cols 1 --steps 2 --out "$T/r.ckpt"
WANT="nosuch" refused "$NFLOW" train --model realnvp --data "$T/train.csv" --context-cols nosuch --steps 2 --out "$T/r.ckpt"
for p in gmm gmm_full; do
    WANT="the gmm priors take no context" refused "$NFLOW" train --model maf --data "$T/train.csv" --context-cols c1 --prior $p --steps 2 --out "$T/r.ckpt"
done
WANT="at least one must be modelled" refused "$NFLOW" train --model realnvp --data "$T/train.csv" --context-cols 1,2,3,4 --steps 2 --out "$T/r.ckpt"
[ ! -e "$T/r.ckpt" ] && ok || bad "a refused run wrote its checkpoint"
WANT="not conditional" refused "$NFLOW" sample --model "$T/uncond.ckpt" --context "$T/ctx.csv"
WANT="--context FILE.csv" refused "$NFLOW" sample --model "$T/cond.ckpt"
WANT="columns" refused "$NFLOW" eval --model "$T/cond.ckpt" --data "$T/test-x.csv"
WANT="2 columns; the conditional model .* training layout: 4 columns" refused "$NFLOW" encode --model "$T/cond.ckpt" --in "$T/test-x.csv"
WANT="4 columns (2 latent, 2 context)" refused "$NFLOW" decode --model "$T/cond.ckpt" --in "$T/test-x.csv"
WANT="--class" refused "$NFLOW" sample --model "$T/cond.ckpt" --class 1 --context "$T/ctx.csv"
for m in nice glow nsf maf iaf; do # every vector model takes a context
    "$NFLOW" train --model $m --depth 2 --hidden 8 --steps 3 --batch 16 --data "$T/train.csv" --context-cols c2 --out "$T/m.ckpt" --quiet >/dev/null 2>"$T/err" &&
        "$NFLOW" eval --model "$T/m.ckpt" --data "$T/test.csv" >/dev/null 2>>"$T/err" && ok || bad "$m with --context-cols: $(cat "$T/err")"
done

# --- labelled images: class 0 dark, class 1 bright (8 × 8, 240 images), IDX + IDX1 labels
idx() { # SEED N: images then labels files
    { printf '\x00\x00\x08\x03'; printf "\\x00\\x00\\x$(printf %02x $(($2 / 256)))\\x$(printf %02x $(($2 % 256)))"; printf '\x00\x00\x00\x08\x00\x00\x00\x08'
      LC_ALL=C awk -v seed="$1" -v n="$2" 'BEGIN { srand(seed); for (i = 0; i < n; i++) { m = i % 2 ? 200 : 50; for (p = 0; p < 64; p++) { v = int(m + 40 * (rand() - 0.5)); printf "%c", v } } }'; } >"$T/i$1-idx3-ubyte"
    { printf '\x00\x00\x08\x01'; printf "\\x00\\x00\\x$(printf %02x $(($2 / 256)))\\x$(printf %02x $(($2 % 256)))"
      LC_ALL=C awk -v n="$2" 'BEGIN { for (i = 0; i < n; i++) printf "%c", i % 2 }'; } >"$T/l$1-idx1-ubyte"
}
idx 1 240
idx 2 80
I=(--data "$T/i1-idx3-ubyte" --test-data "$T/i2-idx3-ubyte" --model glow --levels 1 --depth 2 --hidden 8 --steps 400 --batch 16 --lr 3e-3 --quiet)
"$NFLOW" train "${I[@]}" --condition labels --labels "$T/l1-idx1-ubyte" --test-labels "$T/l2-idx1-ubyte" --out "$T/ci.ckpt" >"$T/ci.out" 2>"$T/err" ||
    bad "class-conditional glow: $(cat "$T/err")"
grep -q "class-conditional bits/dim" "$T/ci.out" && ok || bad "train: $(cat "$T/ci.out")"
"$NFLOW" train "${I[@]}" --prior diag_gaussian --out "$T/ui.ckpt" >/dev/null 2>"$T/err" || bad "unconditional glow: $(cat "$T/err")"
"$NFLOW" eval --model "$T/ci.ckpt" --data "$T/i2-idx3-ubyte" --labels "$T/l2-idx1-ubyte" >"$T/e1" 2>"$T/err" || bad "eval class-conditional: $(cat "$T/err")"
"$NFLOW" eval --model "$T/ui.ckpt" --data "$T/i2-idx3-ubyte" >"$T/e2" 2>"$T/err" || bad "eval unconditional: $(cat "$T/err")"
bc=$(awk '{print $1}' "$T/e1"); bu=$(awk '{print $1}' "$T/e2")
echo "class-conditional $bc bits/dim, unconditional $bu bits/dim (toy images, 400 steps)"
grep -q "class-conditional bits/dim" "$T/e1" && awk -v a="$bc" -v b="$bu" 'BEGIN { exit !(a < b) }' && ok || bad "conditional $bc not below unconditional $bu: $(cat "$T/e1")"
# the class-conditional model as a classifier (Bayes' rule): the two classes are far apart, so nearly all
# right; its conditional figure on all 80 images is eval's; the marginal is at most log2(2)/64 above it
"$NFLOW" eval --model "$T/ci.ckpt" --data "$T/i2-idx3-ubyte" --labels "$T/l2-idx1-ubyte" --classify 1000 >"$T/e3" 2>"$T/err" || bad "eval --classify: $(cat "$T/err")"
cl=$(grep "^Bayes' rule" "$T/e3" | sed -E 's/.*accuracy ([0-9.]+) %; ([0-9.]+) class-conditional against ([0-9.]+) marginal.*/\1 \2 \3/')
echo "Bayes' rule: accuracy %, conditional, marginal bits/dim = $cl (eval: $bc)"
set -- $cl
awk -v a="${1:-0}" -v c="${2:-0}" -v m="${3:-0}" -v e="$bc" 'BEGIN { exit !(a >= 95 && c - e < 1e-4 && e - c < 1e-4 && m - c <= 1 / 64 + 1e-4 && m - c > -1e-4) }' && ok ||
    bad "--classify: $(cat "$T/e3")"
WANT="not class-conditional" refused "$NFLOW" eval --model "$T/ui.ckpt" --data "$T/i2-idx3-ubyte" --classify 10
"$NFLOW" sample --model "$T/ci.ckpt" --out "$T/grid.png" -n 5 >"$T/out" 2>"$T/err" && grep -q "2 rows, one per class" "$T/out" && [ -s "$T/grid.png" ] && ok ||
    bad "sample grid per class: $(cat "$T/err" "$T/out")"
mkdir -p "$T/pics/dark" "$T/pics/bright"
for k in 1 2 3 4 5 6; do
    "$NFLOW" sample --model "$T/ci.ckpt" --class 0 -n 1 --temperature 0.7 --seed $k --out "$T/pics/dark/$k.png" >/dev/null 2>"$T/err" || bad "sample --class 0: $(cat "$T/err")"
    "$NFLOW" sample --model "$T/ci.ckpt" --class 1 -n 1 --temperature 0.7 --seed $k --out "$T/pics/bright/$k.png" >/dev/null 2>"$T/err" || bad "sample --class 1: $(cat "$T/err")"
done
# the class samples look like their class: mean grey level of the bright class's PNGs above the dark's
if /usr/bin/python3 -c 'import zlib' 2>/dev/null; then
    lv=$(/usr/bin/python3 - "$T/pics" <<'PY'
import struct, sys, zlib, glob
def mean(path):  # mean value of an 8-bit grey or RGB PNG (libpng's filters undone)
    d = open(path, "rb").read(); i = 8; raw = b""
    while i < len(d):
        n, t = struct.unpack(">I4s", d[i:i + 8]); c = d[i + 8:i + 8 + n]
        if t == b"IHDR": w, h = struct.unpack(">II", c[:8]); bpp = 3 if c[9] == 2 else 1
        if t == b"IDAT": raw += c
        i += 12 + n
    px, st, prev, tot = zlib.decompress(raw), w * bpp, [0] * (w * bpp), 0
    for r in range(h):
        f, line = px[r * (st + 1)], list(px[r * (st + 1) + 1:(r + 1) * (st + 1)])
        for x in range(st):
            a = line[x - bpp] if x >= bpp else 0; b = prev[x]; c = prev[x - bpp] if x >= bpp else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        tot += sum(line); prev = line
    return tot / (w * h * bpp)
for c in ("dark", "bright"): print("%.1f" % (sum(mean(p) for p in glob.glob(sys.argv[1] + "/" + c + "/*.png")) / 6), end=" ")
PY
)
    echo "mean grey of class samples: dark, bright = $lv"
    set -- $lv
    awk -v a="$1" -v b="$2" 'BEGIN { exit !(b > a + 50) }' && ok || bad "class samples do not follow their class: $lv"
fi
# a folder of class sub-folders
"$NFLOW" train --data "$T/pics" --image-size 8 --channels 1 --test-frac 0.25 --model glow --levels 1 --depth 1 --hidden 4 --steps 3 --batch 4 \
    --condition labels --out "$T/fi.ckpt" --quiet >"$T/out" 2>"$T/err" && grep -q "class-conditional" "$T/out" && ok || bad "folder classes: $(cat "$T/err")"
for m in "realnvp --hidden 4 --blocks 1 --levels 1" "nsf --levels 1 --depth 1 --hidden 4" "nice --depth 1 --hidden 8 --mlp-layers 1"; do
    "$NFLOW" train --data "$T/i1-idx3-ubyte" --test-data "$T/i2-idx3-ubyte" --model $m --steps 2 --batch 8 \
        --condition labels --labels "$T/l1-idx1-ubyte" --test-labels "$T/l2-idx1-ubyte" --out "$T/m.ckpt" --quiet >/dev/null 2>"$T/err" && ok ||
        bad "${m%% *} --condition labels: $(cat "$T/err")"
done
WANT="class labels" refused "$NFLOW" train "${I[@]}" --steps 2 --condition labels --out "$T/r2.ckpt"
WANT="not a class" refused "$NFLOW" sample --model "$T/ci.ckpt" --class 5 --out "$T/x.png"
WANT="--class" refused "$NFLOW" sample --model "$T/ui.ckpt" --class 1 --out "$T/x.png"
WANT="class labels" refused "$NFLOW" eval --model "$T/ci.ckpt" --data "$T/i2-idx3-ubyte"
WANT="class-conditional: plot draws 2-D table models" refused "$NFLOW" plot --model "$T/ci.ckpt" --context "$T/ctx.csv" --out "$T/np.png"
WANT="class-conditional: encode works on table models" refused "$NFLOW" encode --model "$T/ci.ckpt" --in "$T/test.csv"
WANT="--condition" refused "$NFLOW" train --model realnvp --data "$T/train.csv" --condition labels --steps 2 --out "$T/r3.ckpt"

finish
