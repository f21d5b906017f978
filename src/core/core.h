/* core/core.h — what every source file of the library shares: the reason string, allocation, threads,
 * shuffles. The bottom of the design: it includes nothing of nflow's but the public header.
 *
 * Layers of the library, each a folder of src/, each allowed to include only the folders listed
 * (scripts/check_includes.sh enforces it in CI):
 *   core     ← (nothing)                      status, rng, shuffles, files, the parameter registry
 *   kernels  ← core                           gemm, LU, convolutions (naive reference + fast paths)
 *   nets     ← core, kernels                  MLP, Glow's conv net, RealNVP's ResNet
 *   layers   ← core, kernels, nets            every invertible layer, the priors
 *   models   ← core, layers                   configs, recipes (NICE/RealNVP/Glow/NSF/MAF/IAF), the flow
 *   data     ← core                           toy generators, CSV, IDX/CIFAR, image folders
 *   io       ← core, data, models             checkpoints, PNG, plots
 *   train    ← core, data, io, models         Adam, the trainer, evaluation
 *   tools/   ← the public header only         the command-line tool */
#ifndef NF_CORE_H
#define NF_CORE_H

#include "nflow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h> /* exp/log/tanh pick the float or double version from nf_real */

#define R(x) ((nf_real)(x))
#define NF_UNUSED(x) (void)(x)

/* Set this thread's error reason (printf-style, one line) and return st unchanged, so that a failing
 * function can `return nf_fail(NF_ERR_..., "...")`. nf_last_error() reads the reason back. */
nf_status nf_fail(nf_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Clear this thread's error reason. */
void nf_clear_error(void);
/* calloc(n, size), zeroed; NULL when n·size overflows or memory runs out. n or size 0 gives a valid
 * 1-byte block (so NULL always means failure). The caller frees. */
void *nf_xcalloc(size_t n, size_t size);
/* A copy of a list of column names, comma-separated, that has exactly `fields` fields, each non-empty,
 * into *out (malloc'ed; the caller frees; NULL when names is NULL). NF_ERR_INVALID (reason set, naming
 * what) when the count differs, a name is empty or holds a double quote or a control character (names
 * are written unquoted in CSV headers), NF_ERR_NOMEM when out of memory. */
nf_status nf_names_copy(const char *names, int32_t fields, const char *what, char **out);
/* Whether a parallel loop forks the OpenMP threads: worth (the caller's test that the loop is big enough
 * to share) holds, more than one thread is available and the caller is not inside a parallel region
 * already. Where it is 0 the loop runs on the calling thread without entering OpenMP at all: libgomp
 * enters and leaves even a region of one thread (a false `if` clause, one thread set, a nested region)
 * through a futex system call — 1.2 µs on a virtual machine with page-table isolation
 * (bench/omp_region.c): with its small loops going through it, a third of realnvp-moons' time at one thread
 * was in the kernel and libgomp (perf). */
int nf_fork(int worth);
/* The calling thread's share [*lo, *hi) of [0, n) inside a parallel region (all of it outside one): the
 * threads' shares are contiguous and in thread order. */
void nf_share(int64_t n, int64_t *lo, int64_t *hi);
/* NF_PARALLEL_RANGE(worth, n, CALL): the statement CALL, which reads int64_t lo and hi, over [0, n) —
 * on every thread over its share (nf_share) where nf_fork(worth), else once with lo = 0, hi = n on the
 * calling thread. CALL must compute each index the same whichever range holds it, so results do not
 * depend on the thread count. The vector flows' layers and nets share their loops this way; the image
 * layers' loops, large whenever they run and a few per batch, keep an OpenMP `if` clause. */
#define NF_PARALLEL_RANGE(worth, n, CALL)                                                                      \
    do {                                                                                                       \
        int64_t nf_n_ = (n);                                                                                   \
        if (nf_fork(worth)) {                                                                                  \
            _Pragma("omp parallel") {                                                                          \
                int64_t lo, hi;                                                                                \
                nf_share(nf_n_, &lo, &hi);                                                                     \
                CALL;                                                                                          \
            }                                                                                                  \
        } else {                                                                                               \
            int64_t lo = 0, hi = nf_n_;                                                                        \
            CALL;                                                                                              \
        }                                                                                                      \
    } while (0)
/* Element-wise loops run on several threads only above this much work (rows × columns): the worth of
 * NF_PARALLEL_RANGE (and of layer.h's NF_PAR_IF clause) everywhere. */
#define NF_PAR_WORTH(n, D) ((n) * (D) > 16384)
/* Advance r by k draws of nf_rng_u64, as k calls would (nf_rng_uniform and nf_rng_logistic take one draw,
 * nf_rng_normal two): the state a sequential pass would reach, so that blocks of a pass can be drawn
 * in parallel from their own starting states and give the same values. */
void nf_rng_skip(nf_rng *r, uint64_t k);
/* idx[0..n) = a random permutation of 0..n−1: the identity, then Fisher–Yates driven by rng (advanced).
 * The permutation is a function of the rng state alone. */
void nf_shuffle(int64_t *idx, int64_t n, nf_rng *rng);
/* The same from a fresh generator seeded with seed (train/test splits). */
void nf_shuffled_indices(int64_t *idx, int64_t n, uint64_t seed);

#endif
