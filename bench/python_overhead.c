/* python_overhead.c — the C side of bench/python_overhead.py: the median wall time of one
 * nf_flow_log_prob call on n rows of a checkpoint's model, straight from C.
 *   nflow_python_overhead MODEL.ckpt N REPS [THREADS]   → prints "N median_seconds" */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "nflow.h"
#include "bench.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s MODEL.ckpt N REPS [THREADS]\n", argv[0]);
        return 2;
    }
    long long n = atoll(argv[2]), reps = atoll(argv[3]);
    if (argc == 5) nf_set_threads(atoi(argv[4]));
    nf_flow *f;
    if (n < 1 || reps < 1 || nf_flow_load(argv[1], &f)) {
        fprintf(stderr, "%s: %s\n", argv[1], n < 1 || reps < 1 ? "N and REPS must be >= 1" : nf_last_error());
        return 1;
    }
    int64_t D = nf_flow_dim(f);
    float *x = malloc(sizeof(float) * (size_t)(n * D)), *lp = malloc(sizeof(float) * (size_t)n);
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!x || !lp || !t) return 1;
    nf_rng r;
    nf_rng_seed(&r, 1);
    for (long long i = 0; i < n * D; i++) x[i] = (float)nf_rng_normal(&r);
    for (int w = 0; w < 3; w++) /* warm-up: workspace sized, caches filled */
        if (nf_flow_log_prob(f, x, lp, n)) return fprintf(stderr, "%s\n", nf_last_error()), 1;
    for (long long k = 0; k < reps; k++) {
        double t0 = now();
        nf_flow_log_prob(f, x, lp, n);
        t[k] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp);
    printf("%lld %.9g\n", n, t[reps / 2]);
    free(x), free(lp), free(t), nf_flow_free(f);
    return 0;
}
