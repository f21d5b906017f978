#!/usr/bin/env bash
# The checkpoint seeds of tests/fuzz/corpus/ckpt: tiny models of every kind written by nflow itself
# (a few training steps each, so the files are real checkpoints, a few kB); the seeds written by earlier
# builds are kept as they are (a loader must still read them): only seeds not there yet are copied in. Usage:
#   bash tests/fuzz/make_seeds.sh build/nflow
set -euo pipefail
NFLOW="$(realpath "$1")"
cd "$(dirname "$0")/../.."
out=tests/fuzz/corpus/ckpt
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$tmp/img-idx3-ubyte" <<'PY'
import struct, sys
n, h, w = 16, 4, 4
open(sys.argv[1], "wb").write(struct.pack(">IIII", 0x803, n, h, w) + bytes((i * 37) & 255 for i in range(n * h * w)))
PY
# 16 rows: a quarter for the test, a tenth of the rest for validation, batch 4 from what remains
awk 'BEGIN { print "a,b,c"; for (i = 0; i < 16; i++) print (i * 7 % 5) / 2 "," (i * 3 % 7) / 4 "," (i * 5 % 11) / 3 }' >"$tmp/v.csv"
t() { "$NFLOW" train --quiet --steps 2 --batch 4 --threads 1 "$@"; }
t --model nice --data moons --train-size 16 --test-size 8 --depth 2 --hidden 4 --mlp-layers 1 -o "$tmp/nice_vec.ckpt"
t --model realnvp --data moons --train-size 16 --test-size 8 --depth 2 --hidden 4 --mlp-layers 1 --batchnorm 1 --actnorm 1 --prior logistic -o "$tmp/realnvp_vec.ckpt"
t --model glow --data moons --train-size 16 --test-size 8 --depth 2 --hidden 4 --mlp-layers 1 --lu 1 -o "$tmp/glow_vec.ckpt"
t --model realnvp --data "$tmp/v.csv" --test-frac 0.25 --depth 1 --hidden 4 --mlp-layers 1 --standardize on --prior diag_gaussian -o "$tmp/realnvp_csv.ckpt"
t --model glow --data "$tmp/img-idx3-ubyte" --test-data "$tmp/img-idx3-ubyte" --levels 1 --depth 1 --hidden 4 --bits 5 -o "$tmp/glow_img.ckpt"
t --model glow --data "$tmp/img-idx3-ubyte" --test-data "$tmp/img-idx3-ubyte" --levels 2 --depth 1 --hidden 2 --coupling additive --lu 0 -o "$tmp/glow_img2.ckpt"
t --model realnvp --data "$tmp/img-idx3-ubyte" --test-data "$tmp/img-idx3-ubyte" --levels 1 --hidden 2 --blocks 1 -o "$tmp/realnvp_img.ckpt"
t --model nice --data "$tmp/img-idx3-ubyte" --test-data "$tmp/img-idx3-ubyte" --depth 1 --hidden 4 --mlp-layers 1 -o "$tmp/nice_img.ckpt"
# the spline and autoregressive models, the mixture priors and a context (MADE degrees, knots, tril)
awk 'BEGIN { print "a,b,c,d"; for (i = 0; i < 16; i++) print (i * 7 % 5) / 2 "," (i * 3 % 7) / 4 "," (i * 5 % 11) / 3 "," i % 2 }' >"$tmp/c.csv"
t --model maf --data "$tmp/v.csv" --test-frac 0.25 --depth 2 --hidden 4 --bins 3 -o "$tmp/maf_csv.ckpt"
t --model iaf --data "$tmp/v.csv" --test-frac 0.25 --depth 2 --hidden 4 --transform affine --prior gmm_full --prior-components 2 -o "$tmp/iaf_gmm_full.ckpt"
t --model maf --data "$tmp/c.csv" --context-cols d --test-frac 0.25 --depth 2 --hidden 4 --order random -o "$tmp/maf_ctx.ckpt"
t --model nsf --data moons --train-size 16 --test-size 8 --depth 2 --hidden 4 --mlp-layers 1 --bins 3 -o "$tmp/nsf_vec.ckpt"
for f in "$tmp"/*.ckpt; do [ -e "$out/$(basename "$f" .ckpt)" ] || cp "$f" "$out/$(basename "$f" .ckpt)"; done
ls -l "$out"
