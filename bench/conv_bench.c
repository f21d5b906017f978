/* conv_bench.c — the convolutions of glow-small and realnvp-small in isolation: forward, and backward
 * (input gradient + weight/bias gradient), batch 64, at the shapes the workloads run, in GFLOP/s
 * (multiply-adds × 2) and as a fraction of a given peak; both paths (im2col + BLAS, and
 * the direct kernel where the CPU has it), measured in the same run. Also the naive reference once, as
 * a sanity check of the fast kernels.
 *   nflow_conv_bench [--threads T] [--peak GFLOPS] [--seconds S] [--workload glow|realnvp|all] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    int threads = 2;
    double peak = 0, secs = 1.0;
    const char *wl = "all";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--peak")) peak = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) secs = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--workload")) wl = argv[i + 1];
        else {
            fprintf(stderr, "usage: nflow_conv_bench [--threads T] [--peak GFLOPS] [--seconds S] [--workload glow|realnvp|all]\n");
            return 1;
        }
    }
    nf_set_threads(threads);
    if (peak <= 0) peak = 117.0 * threads; /* Zen 4 at ≈ 3.66 GHz: 32 FP32 FLOP/cycle per core */
    /* glow-small: level 1 works on 4×14×14 (coupling nets see 2 channels), level 2 on 8×7×7 */
    struct { const char *what; int32_t cin, cout, hw, k; } shapes[] = {
        {"L1 coupling conv3x3 2->128", 2, 128, 14, 3}, {"L1 coupling conv1x1 128->128", 128, 128, 14, 1},
        {"L1 coupling zero-conv3x3 128->4", 128, 4, 14, 3}, {"L1 split zero-conv3x3 2->4", 2, 4, 14, 3},
        {"L2 coupling conv3x3 4->128", 4, 128, 7, 3}, {"L2 coupling conv1x1 128->128", 128, 128, 7, 1},
        {"L2 coupling zero-conv3x3 128->8", 128, 8, 7, 3},
        /* realnvp-small: ResNets of width 64 at 1×28×28, 4×14×14 (after the squeeze) and 2×14×14 */
        {"RN 28x28 conv3x3 1->64", 1, 64, 28, 3}, {"RN 28x28 conv3x3 64->64", 64, 64, 28, 3},
        {"RN 28x28 conv3x3 64->2", 64, 2, 28, 3}, {"RN 14x14 conv3x3 4->64", 4, 64, 14, 3},
        {"RN 14x14 conv3x3 64->64", 64, 64, 14, 3}, {"RN 14x14 conv3x3 64->8", 64, 8, 14, 3},
    };
    int direct_cpu = nf_convd_available();
    const int64_t n = 64;
    printf("convolutions of the workloads, batch %lld, %d threads, peak taken as %.0f GFLOP/s\n", (long long)n, threads, peak);
    printf("%-34s %-7s %10s %9s %10s %9s %12s\n", "shape", "path", "fwd GF/s", "fwd %pk", "bwd GF/s", "bwd %pk", "max |fast−ref|");
    nf_rng rng;
    nf_rng_seed(&rng, 1);
    for (size_t row = 0; row < 2 * (sizeof shapes / sizeof shapes[0]); row++) {
        size_t s = row / 2;
        int path = (int)(row % 2), rn = shapes[s].what[0] == 'R';
        if ((rn && !strcmp(wl, "glow")) || (!rn && !strcmp(wl, "realnvp"))) continue;
        if (path == 1 && !direct_cpu) continue; /* path 0: im2col, 1: direct */
        nf_convd_set(path);
        int32_t ci = shapes[s].cin, co = shapes[s].cout, H = shapes[s].hw, k = shapes[s].k;
        int64_t P = (int64_t)H * H, nw = (int64_t)co * ci * k * k;
        nf_real *x = malloc(sizeof(nf_real) * (size_t)(n * ci * P)), *y = malloc(sizeof(nf_real) * (size_t)(n * co * P));
        nf_real *yr = malloc(sizeof(nf_real) * (size_t)(n * co * P)), *dy = malloc(sizeof(nf_real) * (size_t)(n * co * P));
        nf_real *dx = malloc(sizeof(nf_real) * (size_t)(n * ci * P)), *w = malloc(sizeof(nf_real) * (size_t)nw);
        nf_real *dw = calloc((size_t)nw, sizeof(nf_real)), *b = calloc((size_t)co, sizeof(nf_real)), *db = calloc((size_t)co, sizeof(nf_real));
        nf_real *work = malloc(sizeof(nf_real) * (size_t)nf_conv2d_work_size(ci, co, H, H, k, n));
        for (int64_t i = 0; i < n * ci * P; i++) x[i] = (nf_real)nf_rng_normal(&rng);
        for (int64_t i = 0; i < n * co * P; i++) dy[i] = (nf_real)nf_rng_normal(&rng);
        for (int64_t i = 0; i < nw; i++) w[i] = (nf_real)(0.05 * nf_rng_normal(&rng));
        double flops = 2.0 * (double)n * co * ci * k * k * P; /* forward; backward is 2× (dx and dw) */
        nf_conv2d_forward(x, ci * P, w, b, y, co * P, n, ci, co, H, H, k, work);
        nf_conv2d_ref(x, ci * P, w, b, yr, co * P, n, ci, co, H, H, k);
        double err = 0;
        for (int64_t i = 0; i < n * co * P; i++) err = fmax(err, fabs((double)y[i] - yr[i]));
        int64_t reps = 0;
        double t0 = now(), t;
        do {
            nf_conv2d_forward(x, ci * P, w, b, y, co * P, n, ci, co, H, H, k, work);
            reps++;
        } while ((t = now() - t0) < secs);
        double gf = flops * (double)reps / t / 1e9;
        reps = 0;
        t0 = now();
        do {
            nf_conv2d_backward(x, ci * P, w, dy, co * P, dx, ci * P, dw, db, n, ci, co, H, H, k, work);
            reps++;
        } while ((t = now() - t0) < secs);
        double gb = 2 * flops * (double)reps / t / 1e9;
        printf("%-34s %-7s %10.1f %8.0f%% %10.1f %8.0f%% %12.1e\n", shapes[s].what, path ? "direct" : "im2col", gf, 100 * gf / peak, gb, 100 * gb / peak, err);
        free(x), free(y), free(yr), free(dy), free(dx), free(w), free(dw), free(b), free(db), free(work);
    }
    return 0;
}
