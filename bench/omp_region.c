/* omp_region.c — what entering a parallel region costs when it does no parallel work, against the loop
 * run straight on the calling thread (NF_PARALLEL_RANGE's way where nf_fork says no). Per call, in ns:
 *   "if (0)"           a `#pragma omp parallel for if (0)` over a tiny loop: libgomp's region of one thread
 *   "nested if (0)"    the same inside a parallel region of one thread (a small flow's layers, flow.c)
 *   "one thread"       `#pragma omp parallel for` with omp_set_num_threads(1)
 *   "NF_PARALLEL_RANGE" the same loop through core.h's macro with worth = 0
 *   nflow_omp_region [--calls N]    (N per case, 200 000)
 * `strace -c -f ./build/nflow_omp_region` counts the futex calls behind the first three. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"

#include "bench.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static float g_v[64];

/* Elements [lo, hi) of g_v += 1: the work of every case (a few nanoseconds). */
static void bump(int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) g_v[i] += 1;
}

/* ns per call of case c over `calls` calls. */
static double run_case(int c, long calls, int worth) {
    double t0 = now();
    for (long r = 0; r < calls; r++) {
        if (c == 0) {
#pragma omp parallel for schedule(static) if (worth)
            for (int64_t i = 0; i < 64; i++) g_v[i] += 1;
        } else if (c == 1) {
            NF_PARALLEL_RANGE(worth, 64, bump(lo, hi));
        }
    }
    return (now() - t0) / (double)calls * 1e9;
}

int main(int argc, char **argv) {
    long calls = 200000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc) calls = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: nflow_omp_region [--calls N]\n");
            return 2;
        }
    }
    if (calls < 1) calls = 1;
    double a = run_case(0, calls, 0), b = 0, c = 0, d = run_case(1, calls, 0);
#ifdef _OPENMP
#pragma omp parallel num_threads(1)
    b = run_case(0, calls, 0);
    int was = omp_get_max_threads();
    omp_set_num_threads(1);
    c = run_case(0, calls, 1);
    omp_set_num_threads(was);
#endif
    printf("ns per call (%ld calls each)\n", calls);
    printf("  %-20s %8.1f\n  %-20s %8.1f\n  %-20s %8.1f\n  %-20s %8.1f\n", "if (0)", a, "nested if (0)", b, "one thread", c,
           "NF_PARALLEL_RANGE", d);
    return g_v[0] < 0; /* keeps the work */
}
