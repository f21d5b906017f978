#!/usr/bin/env bash
# The checkpoint seeds of tests/fuzz/corpus/ckpt: tiny models of every kind written by nflow itself
# (a few training steps each, so the files are real checkpoints, a few kB). Usage:
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
printf "a,b,c\n1,2,3\n2,1,0\n0.5,0.25,4\n3,3,1\n1,1,1\n2,0,2\n" >"$tmp/v.csv"
t() { "$NFLOW" train --quiet --steps 2 --batch 4 --threads 1 "$@"; }
t --model nice --data moons --train-size 16 --test-size 8 --depth 2 --hidden 4 --mlp-layers 1 -o "$tmp/nice_vec.ckpt"
t --model realnvp --data moons --train-size 16 --test-size 8 --depth 2 --hidden 4 --mlp-layers 1 --batchnorm 1 --actnorm 1 --prior logistic -o "$tmp/realnvp_vec.ckpt"
t --model glow --data moons --train-size 16 --test-size 8 --depth 2 --hidden 4 --mlp-layers 1 --lu 1 -o "$tmp/glow_vec.ckpt"
t --model realnvp --data "$tmp/v.csv" --test-frac 0.25 --depth 1 --hidden 4 --mlp-layers 1 --standardize on --prior diag_gaussian -o "$tmp/realnvp_csv.ckpt"
t --model glow --data "$tmp/img-idx3-ubyte" --test-data "$tmp/img-idx3-ubyte" --levels 1 --depth 1 --hidden 4 --bits 5 -o "$tmp/glow_img.ckpt"
t --model glow --data "$tmp/img-idx3-ubyte" --test-data "$tmp/img-idx3-ubyte" --levels 2 --depth 1 --hidden 2 --coupling additive --lu 0 -o "$tmp/glow_img2.ckpt"
t --model realnvp --data "$tmp/img-idx3-ubyte" --test-data "$tmp/img-idx3-ubyte" --levels 1 --hidden 2 --blocks 1 -o "$tmp/realnvp_img.ckpt"
t --model nice --data "$tmp/img-idx3-ubyte" --test-data "$tmp/img-idx3-ubyte" --depth 1 --hidden 4 --mlp-layers 1 -o "$tmp/nice_img.ckpt"
for f in "$tmp"/*.ckpt; do cp "$f" "$out/$(basename "$f" .ckpt)"; done
ls -l "$out"
