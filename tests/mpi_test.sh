#!/usr/bin/env bash
# mpi_test.sh NFLOW MPIEXEC LIBNFLOW — data-parallel training (mpirun -np N nflow train) on this machine.
#   * the library does not link MPI (only the command-line tool does);
#   * N processes and one process on the same global batches: the same losses step by step and the same
#     parameters after K steps, within TOL (not bit for bit: see below), on vector data with batch norm
#     and ActNorm (statistics of the whole batch, forward and backward) and on images with Glow
#     (ActNorm's data-dependent initialisation from the global first batch), also with uneven slices;
#   * a run with fixed N is bit-for-bit reproducible, and its parameters are identical on every process
#     (--check-sync compares a checksum every step; a nudged process is caught);
#   * a checkpoint written by 2 processes resumes with 2 (bit for bit as the uninterrupted run), with 3
#     and with 1 (within TOL of it);
#   * a failed process stops the job with one line naming it, and the last checkpoint stays intact;
#   * --time-limit ends all processes at the same step;
#   * --mpi-bucket-mb (the gradient all-reduced in buckets during the backward pass): with 2 processes
#     bit for bit one all-reduce after it, with 3 within TOL and reproducible; resume unchanged.
#     (The library's side, that the suffixes it reports are final, is test_reducer's.)
# Why not bit for bit: every sample's contribution is computed as one process computes it (weight
# 1/B, the same dequantisation noise), but the sums over the batch are grouped differently — each
# process sums its rows (the weight gradients of its GEMMs and convolutions, the statistics of ActNorm
# and batch norm), then the all-reduce adds the per-process sums. Float addition is not associative, so
# results differ by rounding (~1e-7 relative per sum), which Adam's normalised step amplifies where a
# gradient component is near zero (up to 2·lr per step in that parameter, the worst case). Parameters
# (and Adam's moments) are held to that bound, TOL = 2·lr·K absolute, losses to 1e-4 relative. Measured
# (AMD EPYC Zen 4): max difference 7.5e-5 (vectors, 2 processes), 5.7e-6 and 2.3e-6 (images, 2 and 3);
# test_reducer's thread "processes", summing in another order, saw up to 4e-3. With the whole-batch sums
# of batch norm and ActNorm switched off these runs differ by 0.39 and 0.53, far outside TOL.
set -u
NFLOW=${1:?usage: mpi_test.sh NFLOW MPIEXEC LIBNFLOW}
MPIEXEC=${2:?}
LIB=${3:?}
T=$(mktemp -d /tmp/nflow-mpi-XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# root in CI containers; shared memory and loopback only; waiting processes yield the (few) cores
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mpi_yield_when_idle=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_orte_tmpdir_base="$T"
# Under AddressSanitizer (the CI's second pass) the MPI processes run sanitized too; Open MPI's own
# start-up allocations live until exit and are not nflow's leaks: they are suppressed by library name,
# which needs full stack unwinding (Open MPI is built without frame pointers) and its plug-ins kept
# loaded at exit (else their frames have no module name).
if ldd "$NFLOW" | grep -q libasan; then
    echo "mpi: AddressSanitizer build: Open MPI's own allocations are suppressed (libopen-rte, libopen-pal, libmpi, libpmix, libevent, libhwloc, mca_*)"
    { grep -v '^#' "$(dirname "$0")/lsan.supp"; printf 'leak:libopen-pal\nleak:libopen-rte\nleak:libmpi\nleak:libpmix\nleak:libhwloc\nleak:libevent\nleak:mca_\n'; } >"$T/lsan.supp"
    export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$T/lsan.supp"
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
    export OMPI_MCA_mca_base_component_disable_dlclose=1
fi
mpi() { local n=$1; shift; timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$n" "$NFLOW" "$@"; }

# the floats of a checkpoint (every tensor: parameters, state, Adam's moments), one per line
floats() { local h; h=$(od -An -tu8 -N8 "$1" | tr -d ' '); od -An -v -w4 -tf4 -j $((8 + h)) "$1"; }
# close A B TOL: every float of checkpoint A within TOL of B's (same layout); prints the largest difference
close() {
    paste <(floats "$1") <(floats "$2") | awk -v tol="$3" '
        { d = $1 - $2; if (d < 0) d = -d; if (d > m || d != d) m = d; n++ }
        END { printf "%d values, max |diff| %.3g (tolerance %g)\n", n, m, tol; exit !(n > 0 && m <= tol) }'
}
# same_losses A.csv B.csv: the loss column (3) of two metrics files agrees step by step to 1e-4 relative
# (the two files side by side: file B's columns start at c + 1, c = half the fields of a row)
same_losses() {
    paste -d, "$1" "$2" | awk -F, 'NR > 1 { c = NF / 2; n++; d = $3 - $(c + 3); if (d < 0) d = -d; r = d / (1 + ($3 < 0 ? -$3 : $3)); if (r > m) m = r; if ($1 != $(c + 1)) bad = 1 }
        END { exit !(n > 0 && !bad && m <= 1e-4) }'
}

# --- the library is MPI-free
if ldd "$LIB" | grep -q 'libmpi'; then bad "$LIB links MPI"; else ok; fi

# --- a table on standard input reaches rank 0 only: refused (every rank says why), not half-read
printf 'a,b\n1,2\n3,4\n5,6\n7,8\n' >"$T/tiny.csv"
mpi 2 train --model maf --data - --steps 2 --batch 2 --out "$T/stdin.ckpt" <"$T/tiny.csv" >/dev/null 2>"$T/err" && bad "--data - under 2 processes ran" ||
    { grep -q "standard input reaches only the first of the 2 processes" "$T/err" && [ ! -e "$T/stdin.ckpt" ] && ok || bad "--data - under 2 processes: $(cat "$T/err")"; }

# --- vectors: realnvp with batch norm and ActNorm, batch 16, 10 steps; lr 1e-3
K=10
V=(train --model realnvp --data moons --train-size 256 --test-size 32 --depth 2 --hidden 8 --batchnorm 1 --actnorm 1 --batch 16
   --steps $K --threads 1)
TOL=$(awk -v k=$K 'BEGIN { print 2 * 1e-3 * k }')
"$NFLOW" "${V[@]}" --quiet --out "$T/v1.ckpt" >/dev/null 2>"$T/err" || bad "one process: $(cat "$T/err")"
mpi 2 "${V[@]}" --check-sync 1 --out "$T/v2.ckpt" >"$T/out" 2>"$T/err" || bad "2 processes: $(cat "$T/err")"
grep -q "identical on all 2 processes at $K checks" "$T/err" && ok || bad "vectors, 2 processes: --check-sync did not report $K checks: $(cat "$T/err")"
grep -q "2 processes × 1 threads" "$T/err" && ok || bad "vectors: the header line does not name the 2 processes: $(head -1 "$T/err")"
[ "$(grep -c "log-likelihood" "$T/out")" -eq 1 ] && ok || bad "vectors: expected one result line (rank 0), got: $(cat "$T/out")"
[ "$(grep -c "step $K/$K " "$T/err")" -eq 1 ] && ok || bad "vectors: expected one progress line per step (rank 0): $(cat "$T/err")"
same_losses "$T/v1.ckpt.metrics.csv" "$T/v2.ckpt.metrics.csv" && ok || bad "vectors: losses of 1 and 2 processes differ: $(paste -d, "$T/v1.ckpt.metrics.csv" "$T/v2.ckpt.metrics.csv" | head -4)"
r=$(close "$T/v1.ckpt" "$T/v2.ckpt" "$TOL") && ok || bad "vectors: parameters of 1 and 2 processes: $r"
echo "vectors, 1 vs 2 processes after $K steps: $r"
mpi 2 "${V[@]}" --quiet --out "$T/v2b.ckpt" >/dev/null 2>&1
cmp -s "$T/v2.ckpt" "$T/v2b.ckpt" && cmp -s <(cut -d, -f1-4 "$T/v2.ckpt.metrics.csv") <(cut -d, -f1-4 "$T/v2b.ckpt.metrics.csv") && ok || \
    bad "vectors: 2 processes are not bit-for-bit reproducible run to run"

# --- images: a tiny Glow on 40 random 8 × 8 IDX images (seeded), batch 8, 8 steps; 3 processes: slices 2, 3, 3
{ printf '\x00\x00\x08\x03\x00\x00\x00\x28\x00\x00\x00\x08\x00\x00\x00\x08'; LC_ALL=C awk 'BEGIN { srand(7); for (i = 0; i < 2560; i++) printf "%c", int(rand() * 256) }'; } >"$T/i-idx3-ubyte"
K=8
I=(train --model glow --data "$T/i-idx3-ubyte" --test-data "$T/i-idx3-ubyte" --levels 1 --depth 2 --hidden 4 --batch 8 --steps $K --threads 1 --quiet)
TOL=$(awk -v k=$K 'BEGIN { print 2 * 1e-3 * k }')
"$NFLOW" "${I[@]}" --out "$T/g1.ckpt" >/dev/null 2>"$T/err" || bad "images, one process: $(cat "$T/err")"
for n in 2 3; do
    mpi $n "${I[@]}" --check-sync 1 --out "$T/g$n.ckpt" >/dev/null 2>"$T/err" || bad "images, $n processes: $(cat "$T/err")"
    grep -q "identical on all $n processes at $K checks" "$T/err" && ok || bad "images, $n processes: --check-sync: $(cat "$T/err")"
    same_losses "$T/g1.ckpt.metrics.csv" "$T/g$n.ckpt.metrics.csv" && ok || bad "images: losses of 1 and $n processes differ"
    r=$(close "$T/g1.ckpt" "$T/g$n.ckpt" "$TOL") && ok || bad "images: parameters of 1 and $n processes: $r"
    echo "images, 1 vs $n processes after $K steps: $r"
done
[ -s "$T/g2.ckpt.samples.png" ] && ok || bad "images: rank 0 wrote no sample grid"

# --- resume across process counts: 2 processes to step 4, then on to 8 with 2, 3 and 1
H=(train --model glow --data "$T/i-idx3-ubyte" --test-data "$T/i-idx3-ubyte" --levels 1 --depth 2 --hidden 4 --batch 8 --threads 1 --quiet)
mpi 2 "${H[@]}" --steps 4 --out "$T/h4.ckpt" >/dev/null 2>&1 || bad "resume: the first half"
mpi 2 "${H[@]}" --steps 8 --resume "$T/h4.ckpt" --out "$T/h8-2.ckpt" >/dev/null 2>"$T/err" || bad "resume with 2: $(cat "$T/err")"
cmp -s "$T/h8-2.ckpt" "$T/g2.ckpt" && ok || bad "2 processes: 4 steps, save, resume, 4 steps is not bit for bit 8 steps"
mpi 3 "${H[@]}" --steps 8 --resume "$T/h4.ckpt" --out "$T/h8-3.ckpt" >/dev/null 2>"$T/err" || bad "resume with 3: $(cat "$T/err")"
r=$(close "$T/h8-3.ckpt" "$T/g2.ckpt" "$TOL") && ok || bad "a 2-process checkpoint resumed by 3: $r"
"$NFLOW" "${H[@]}" --steps 8 --resume "$T/h4.ckpt" --out "$T/h8-1.ckpt" >/dev/null 2>"$T/err" || bad "resume with 1: $(cat "$T/err")"
r=$(close "$T/h8-1.ckpt" "$T/g2.ckpt" "$TOL") && ok || bad "a 2-process checkpoint resumed by 1 process: $r"

# --- --mpi-bucket-mb: the gradient all-reduced in buckets during the backward pass (MPI_Iallreduce as
#     the backward pass finishes each; 0.0001 MiB = 26 values, so these small models get many buckets).
#     2 processes: bit for bit the one-call runs above (a sum of two numbers does not depend on the
#     order); 3 processes: within TOL of them (the non-blocking all-reduce, a ring here, adds in
#     another order than the blocking one; measured 1.3e-6 after 8 steps)
#     and bit for bit reproducible; resume unchanged; -np 1: no effect; outside mpirun: refused.
mpi 2 "${V[@]}" --mpi-bucket-mb 0.0001 --check-sync 1 --out "$T/vb.ckpt" >/dev/null 2>"$T/err" || bad "vectors, buckets: $(cat "$T/err")"
cp "$T/err" "$T/vb.err"
grep -q "identical on all 2 processes at 10 checks" "$T/err" && ok || bad "vectors, buckets: --check-sync: $(cat "$T/err")"
cmp -s "$T/vb.ckpt" "$T/v2.ckpt" && cmp -s <(cut -d, -f1-4 "$T/vb.ckpt.metrics.csv") <(cut -d, -f1-4 "$T/v2.ckpt.metrics.csv") && ok || \
    bad "vectors, 2 processes: buckets of 0.0001 MiB are not bit for bit one all-reduce: $(close "$T/vb.ckpt" "$T/v2.ckpt" 0)"
# the default on one machine is one all-reduce; the option's value is the one in effect
mpi 2 "${V[@]}" --out "$T/vd.ckpt" >/dev/null 2>"$T/err" && grep -q "gradient in one all-reduce" "$T/err" && ok || bad "default on one machine: not one all-reduce: $(cat "$T/err")"
grep -q "gradient in buckets of 0.0001 MiB" "$T/vb.err" && ok || bad "--mpi-bucket-mb 0.0001: not the bucket in effect: $(cat "$T/vb.err")"
for b in 0.0001 0.004 1; do # many buckets, a few, one bucket bigger than the gradient
    mpi 2 "${I[@]}" --mpi-bucket-mb $b --out "$T/gb2-$b.ckpt" >/dev/null 2>"$T/err" || bad "images, 2 processes, buckets of $b MiB: $(cat "$T/err")"
    cmp -s "$T/gb2-$b.ckpt" "$T/g2.ckpt" && ok || bad "images, 2 processes: buckets of $b MiB are not bit for bit one all-reduce: $(close "$T/gb2-$b.ckpt" "$T/g2.ckpt" 0)"
done
mpi 3 "${I[@]}" --mpi-bucket-mb 0.0001 --check-sync 1 --out "$T/gb3.ckpt" >/dev/null 2>"$T/err" || bad "images, 3 processes, buckets: $(cat "$T/err")"
grep -q "identical on all 3 processes at $K checks" "$T/err" && ok || bad "images, 3 processes, buckets: --check-sync: $(cat "$T/err")"
mpi 3 "${I[@]}" --mpi-bucket-mb 0.0001 --out "$T/gb3b.ckpt" >/dev/null 2>&1
cmp -s "$T/gb3.ckpt" "$T/gb3b.ckpt" && ok || bad "images, 3 processes, buckets: not bit for bit reproducible run to run"
same_losses "$T/g3.ckpt.metrics.csv" "$T/gb3.ckpt.metrics.csv" && ok || bad "images, 3 processes: losses with and without buckets differ"
r=$(close "$T/gb3.ckpt" "$T/g3.ckpt" "$TOL") && ok || bad "images, 3 processes: buckets against one all-reduce: $r"
cmp -s "$T/gb3.ckpt" "$T/g3.ckpt" && r="$r; bit for bit"
echo "images, 3 processes, buckets of 0.0001 MiB against one all-reduce after $K steps: $r"
mpi 2 "${H[@]}" --mpi-bucket-mb 0.0001 --steps 4 --out "$T/hb4.ckpt" >/dev/null 2>&1 || bad "buckets, resume: the first half"
mpi 2 "${H[@]}" --mpi-bucket-mb 0.0001 --steps 8 --resume "$T/hb4.ckpt" --out "$T/hb8.ckpt" >/dev/null 2>"$T/err" || bad "buckets, resume: $(cat "$T/err")"
cmp -s "$T/hb4.ckpt" "$T/h4.ckpt" && cmp -s "$T/hb8.ckpt" "$T/g2.ckpt" && ok || bad "buckets: 4 steps, save, resume, 4 steps is not bit for bit 8 steps"
mpi 1 "${V[@]}" --mpi-bucket-mb 4 --quiet --out "$T/vb1.ckpt" >/dev/null 2>"$T/err" && cmp -s "$T/vb1.ckpt" "$T/v1.ckpt" && ok || \
    bad "mpirun -np 1 --mpi-bucket-mb 4 is not one process as without it: $(cat "$T/err")"
"$NFLOW" "${V[@]}" --mpi-bucket-mb 4 --quiet --out "$T/vbn.ckpt" >/dev/null 2>"$T/err"
[ $? -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "--mpi-bucket-mb: applies under mpirun only" "$T/err" && [ ! -e "$T/vbn.ckpt" ] && ok || \
    bad "--mpi-bucket-mb without mpirun: $(cat "$T/err")"
mpi 2 "${V[@]}" --mpi-bucket-mb 0.00001 --quiet --out "$T/vbs.ckpt" >/dev/null 2>"$T/err"
[ $? -ne 0 ] && grep -q -- "--mpi-bucket-mb: 1e-05 MiB is below the smallest bucket" "$T/err" && [ ! -e "$T/vbs.ckpt" ] && ok || \
    bad "--mpi-bucket-mb 0.00001: $(head -2 "$T/err")"

# --- a failed process: process 1 fails at step 7 of 10 (checkpoints every 4): one line naming it,
#     the job stops, the checkpoint of step 4 is intact (bit for bit the one a 4-step run writes)
NFLOW_MPI_FAULT=fail:1:7 mpi 2 "${H[@]}" --steps 10 --checkpoint-every 4 --out "$T/f.ckpt" >/dev/null 2>"$T/err"
rc=$?
[ $rc -ne 0 ] && grep -q "nflow train: process 1 of 2: step 7: a failure injected" "$T/err" && ok || bad "a failed process: exit $rc: $(head -3 "$T/err")"
cmp -s "$T/f.ckpt" "$T/h4.ckpt" && ok || bad "a failed process: the last good checkpoint (step 4) is not intact"
# --- --check-sync catches a process whose parameters drifted (nudged after step 3; checks every 2 steps)
NFLOW_MPI_FAULT=diverge:1:3 mpi 2 "${H[@]}" --steps 8 --check-sync 2 --out "$T/d.ckpt" >/dev/null 2>"$T/err"
rc=$?
[ $rc -ne 0 ] && grep -q "step 4: the parameters differ between the 2 processes" "$T/err" && ok || bad "--check-sync missed a drifted process: exit $rc: $(head -3 "$T/err")"
# --- --time-limit: the processes decide together (their clocks differ), so the run ends instead of hanging
mpi 2 train --model realnvp --data moons --train-size 256 --test-size 32 --depth 2 --hidden 8 --batch 16 --threads 1 --quiet \
    --steps 100000000 --time-limit 0.004 --out "$T/tl.ckpt" >"$T/out" 2>"$T/err" && grep -q "log-likelihood" "$T/out" && ok || \
    bad "--time-limit with 2 processes: $(cat "$T/err")"
# --- a batch smaller than the number of processes is refused in one line
mpi 3 "${H[@]}" --batch 2 --steps 1 --out "$T/b.ckpt" >/dev/null 2>"$T/err"
[ $? -ne 0 ] && grep -q -- "option --batch: 2 rows cannot be shared by 3 processes" "$T/err" && [ ! -e "$T/b.ckpt" ] && ok || bad "--batch 2 on 3 processes: $(head -2 "$T/err")"

echo "mpi: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
