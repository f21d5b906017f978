#!/usr/bin/env bash
# Peak memory and training speed of Glow (glow-small with K = 8, 16, 32 steps per level) in both backward
# modes: store keeps every layer's activations, recompute rebuilds them by inversion.
#   bench/depth_memory.sh [NFLOW] [THREADS] [SECONDS]
set -euo pipefail
NFLOW=${1:-build/nflow}
THREADS=${2:-2}
SECS=${3:-5}
printf '| K | backward | train samples/s | peak RSS MiB (train) |\n|---:|---|---:|---:|\n'
for K in 8 16 32; do
    for MODE in store recompute; do
        "$NFLOW" bench glow-small --depth "$K" --backward "$MODE" --threads "$THREADS" --seconds "$SECS" |
            awk -v k="$K" -v m="$MODE" '$1 == "glow-small" { printf "| %d | %s | %.1f | %.0f |\n", k, m, $3, $8 }'
    done
done
