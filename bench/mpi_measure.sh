#!/usr/bin/env bash
# mpi_measure.sh NFLOW [STEPS] — the data-parallel figures of BENCHMARKS.md ("Data-parallel training on
# MPI"): glow-small and nice-mnist (the `nflow bench` workloads: `nflow train --model glow|nice` on
# Fashion-MNIST with the image defaults, batch 64, Adam 1e-3, no warm-up or clipping) trained by
# 1 process × 1 thread, 1 process × 2 threads and 2 processes × 1 thread (mpirun, shared memory), each
# for STEPS steps (default 24). Prints per configuration: steady-state training images/s (steps 6..STEPS
# from the metrics CSV) and ms per step; for 2 processes also the time per step in the sums across
# processes, split (NFLOW_MPI_TIMING) into waiting for the slower process and the gradient all-reduce.
# With THROTTLE="glow:100mbit nice:1gbit" (root; bench/mpi_netem.sh), also 2 processes in two network
# namespaces over a rate-limited veth link, one run per WORKLOAD:RATE.
set -u
NFLOW=${1:?usage: mpi_measure.sh NFLOW [STEPS]}
S=${2:-24}
here=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d /tmp/nflow-mpim-XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
FM=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
# a 16-image test file, so that the final evaluation costs nothing next to the training measured
{ printf '\x00\x00\x08\x03\x00\x00\x00\x10\x00\x00\x00\x1c\x00\x00\x00\x1c'; LC_ALL=C awk 'BEGIN { srand(5); for (i = 0; i < 16*784; i++) printf "%c", int(rand() * 256) }'; } >"$T/t-idx3-ubyte"
args() { echo "train --model $1 --data $FM --test-data $T/t-idx3-ubyte --batch 64 --warmup 0 --clip 0 --steps $S --checkpoint-every 100000 --sample-every 100000 --out $T/$2.ckpt"; }
rate() { awk -F, 'NR == 7 { e0 = $6; s0 = $1 } END { printf "%.1f images/s, %.1f ms/step", ($1 - s0) * 64 / ($6 - e0), 1e3 * ($6 - e0) / ($1 - s0) }' "$T/$1.ckpt.metrics.csv"; }
comm() { grep -o "took .*" "$T/$1.err" | sed 's/took/sums/'; }
lscpu | grep -E "Model name|^CPU\(s\)"
BUCKETS=${BUCKETS:-0}
for w in ${WORKLOADS-glow nice}; do
    if [ "${SINGLE:-1}" != 0 ]; then
        "$NFLOW" $(args $w ${w}1) --threads 1 >/dev/null 2>"$T/${w}1.err" && echo "$w  1 process × 1 thread : $(rate ${w}1)"
        "$NFLOW" $(args $w ${w}p) --threads 2 >/dev/null 2>"$T/${w}p.err" && echo "$w  1 process × 2 threads: $(rate ${w}p)"
    fi
    for b in $BUCKETS; do
        NFLOW_MPI_TIMING=1 mpirun --allow-run-as-root -np 2 --mca btl self,vader "$NFLOW" $(args $w ${w}r$b) --threads 1 --mpi-bucket-mb $b \
            >/dev/null 2>"$T/${w}r$b.err" && echo "$w  2 processes × 1 thread, shared memory, --mpi-bucket-mb $b: $(rate ${w}r$b); $(comm ${w}r$b)"
    done
    grep -q "nflow train: process" "$T"/${w}*.err && cat "$T"/${w}*.err
done
for x in ${THROTTLE:-}; do
    w=${x%%:*} r=${x#*:}
    bash "$here/mpi_netem.sh" down
    bash "$here/mpi_netem.sh" up "$r" || { echo "no throttled link: bench/mpi_netem.sh up failed"; break; }
    for b in $BUCKETS; do
        NFLOW_MPI_TIMING=1 bash "$here/mpi_netem.sh" run 2 "$NFLOW" $(args $w ${w}n$b) --threads 1 --mpi-bucket-mb $b >/dev/null 2>"$T/${w}n$b.err" &&
            echo "$w  2 processes × 1 thread over a $r link, --mpi-bucket-mb $b: $(rate ${w}n$b); $(comm ${w}n$b)" || cat "$T/${w}n$b.err"
    done
    bash "$here/mpi_netem.sh" down
done
