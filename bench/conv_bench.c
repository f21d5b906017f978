/* conv_bench.c — the convolutions of glow-small and realnvp-small in isolation: forward, and backward
 * (input gradient + weight/bias gradient; also the weight gradient alone, dx = the rest), batch 64, at the shapes the workloads run, in GFLOP/s
 * (multiply-adds × 2) and as a fraction of the FMA peak of the CPU's widest path, measured here with a
 * register-only FMA loop per instruction set (12 independent accumulators, all threads); every path
 * (im2col + BLAS, the direct kernels on each ISA the CPU has, and Winograd F(4×4, 3×3) for 3×3) measured in the same run. Also the
 * naive reference once, as a sanity check of the fast kernels.
 *   nflow_conv_bench [--threads T] [--peak GFLOPS] [--seconds S] [--workload glow|realnvp|all]
 *                    [--shape SUBSTRING] [--path im2col|d-avx2|d-avx512|winograd]  (only those rows) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

#include <immintrin.h>
#include "bench.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define PEAK_ITERS 20000000
/* 12 independent FMA chains in named registers (an array would be kept in memory at -O2): enough to fill
 * two FMA pipes of latency 4–6 */
#define FMA12(fma, a, m, c)                                                                                   \
    a##0 = fma(a##0, m, c), a##1 = fma(a##1, m, c), a##2 = fma(a##2, m, c), a##3 = fma(a##3, m, c),          \
    a##4 = fma(a##4, m, c), a##5 = fma(a##5, m, c), a##6 = fma(a##6, m, c), a##7 = fma(a##7, m, c),          \
    a##8 = fma(a##8, m, c), a##9 = fma(a##9, m, c), a##10 = fma(a##10, m, c), a##11 = fma(a##11, m, c)
/* 12 different starting values, read at run time: chains that start equal compute equal values, and the
 * compiler merges them (it did: the loop then ran 2 chains and read 2.9x the CPU's peak on a Zen 4) */
static volatile float peak_seed = 1.0f;
#define INIT12(type, set1, a)                                                                                 \
    const float s_ = peak_seed;                                                                               \
    type a##0 = set1(s_), a##1 = set1(s_ + 1e-3f), a##2 = set1(s_ + 2e-3f), a##3 = set1(s_ + 3e-3f),          \
         a##4 = set1(s_ + 4e-3f), a##5 = set1(s_ + 5e-3f), a##6 = set1(s_ + 6e-3f), a##7 = set1(s_ + 7e-3f),  \
         a##8 = set1(s_ + 8e-3f), a##9 = set1(s_ + 9e-3f), a##10 = set1(s_ + 1e-2f), a##11 = set1(s_ + 11e-3f)
#define SUM12(cvt, a) (cvt(a##0) + cvt(a##1) + cvt(a##2) + cvt(a##3) + cvt(a##4) + cvt(a##5) + cvt(a##6) + \
                       cvt(a##7) + cvt(a##8) + cvt(a##9) + cvt(a##10) + cvt(a##11))

/* FLOPs of the register-only FMA loop on 256-bit vectors */
__attribute__((target("avx2,fma"))) static double fma_loop_256(void) {
    __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    INIT12(__m256, _mm256_set1_ps, a);
    for (long it = 0; it < PEAK_ITERS; it++) FMA12(_mm256_fmadd_ps, a, m, c);
    return SUM12(_mm256_cvtss_f32, a) == 12345.f ? 0 : 2.0 * 8 * 12 * (double)PEAK_ITERS;
}

/* the same on 512-bit vectors */
__attribute__((target("avx512f"))) static double fma_loop_512(void) {
    __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    INIT12(__m512, _mm512_set1_ps, a);
    for (long it = 0; it < PEAK_ITERS; it++) FMA12(_mm512_fmadd_ps, a, m, c);
    return SUM12(_mm512_reduce_add_ps, a) == 12345.f ? 0 : 2.0 * 16 * 12 * (double)PEAK_ITERS;
}

/* GFLOP/s of the FMA loop of isa on every thread at once: the best of 7 runs (one run lasts ~0.1 s, and
 * a core shared with anything else reads low) */
static double fma_peak(nf_isa isa) {
    double best = 0;
    for (int r = 0; r < 7; r++) {
        double t0 = now(), flops = 0;
#pragma omp parallel reduction(+ : flops)
        flops += isa == NF_ISA_AVX512 ? fma_loop_512() : fma_loop_256();
        double g = flops / (now() - t0) / 1e9;
        if (g > best) best = g;
    }
    return best;
}

int main(int argc, char **argv) {
    int threads = 2;
    double peak = 0, secs = 1.0;
    const char *wl = "all", *only_shape = NULL, *only_path = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--peak")) peak = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) secs = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--workload")) wl = argv[i + 1];
        else if (!strcmp(argv[i], "--shape")) only_shape = argv[i + 1];
        else if (!strcmp(argv[i], "--path")) only_path = argv[i + 1];
        else {
            fprintf(stderr, "usage: nflow_conv_bench [--threads T] [--peak GFLOPS] [--seconds S] [--workload glow|realnvp|all]\n"
                            "                        [--shape SUBSTRING] [--path im2col|d-avx2|d-avx512|winograd]\n");
            return 1;
        }
    }
    nf_set_threads(threads);
    nf_isa cpu = nf_isa_cpu();
    double peak256 = cpu >= NF_ISA_AVX2 ? fma_peak(NF_ISA_AVX2) : 0, peak512 = cpu >= NF_ISA_AVX512 ? fma_peak(NF_ISA_AVX512) : 0;
    printf("%s\nFMA peak measured on %d threads: AVX2 %.1f GFLOP/s, AVX-512 %.1f GFLOP/s\n", nf_runtime_info(), threads, peak256, peak512);
    if (peak <= 0) peak = peak512 > peak256 ? peak512 : peak256;
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
    int npaths = 1 + (cpu >= NF_ISA_AVX2) + (cpu >= NF_ISA_AVX512); /* im2col, direct avx2, direct avx512 */
    static const char *path_names[4] = {"im2col", "d-avx2", "d-avx512", "winograd"};
    const int64_t n = 64;
    printf("convolutions of the workloads, batch %lld, %d threads, peak taken as %.0f GFLOP/s\n", (long long)n, threads, peak);
    printf("%-34s %-7s %10s %9s %10s %9s %9s %9s %12s\n", "shape", "path", "fwd GF/s", "fwd %pk", "bwd GF/s", "bwd %pk", "dx GF/s", "dw GF/s",
           "max |fast−ref|");
    nf_rng rng;
    nf_rng_seed(&rng, 1);
    for (size_t row = 0; row < 4 * (sizeof shapes / sizeof shapes[0]); row++) {
        size_t s = row / 4;
        int path = (int)(row % 4), rn = shapes[s].what[0] == 'R';
        if ((rn && !strcmp(wl, "glow")) || (!rn && !strcmp(wl, "realnvp"))) continue;
        if ((only_shape && !strstr(shapes[s].what, only_shape)) || (only_path && strcmp(only_path, path_names[path]))) continue;
        if (path == 3 ? shapes[s].k != 3 : path >= npaths || (path > 0 && !direct_cpu)) continue;
        nf_isa_set(path == 2 ? NF_ISA_AVX512 : path == 1 ? NF_ISA_AVX2 : cpu);
        nf_convd_set(path == 1 || path == 2);
        nf_convw_set(path == 3 ? NF_CONVW_ALWAYS : NF_CONVW_OFF); /* Winograd: GF/s in direct FLOPs per second */
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
        double gb = 2 * flops * (double)reps / t / 1e9, tb = t / (double)reps;
        reps = 0; /* the weight gradient alone (dx NULL); the input gradient is the rest of the backward time */
        t0 = now();
        do {
            nf_conv2d_backward(x, ci * P, w, dy, co * P, NULL, ci * P, dw, db, n, ci, co, H, H, k, work);
            reps++;
        } while ((t = now() - t0) < secs);
        double tw = t / (double)reps, gw = flops / tw / 1e9, gx = tb > tw ? flops / (tb - tw) / 1e9 : 0;
        printf("%-34s %-7s %10.1f %8.0f%% %10.1f %8.0f%% %9.1f %9.1f %12.1e\n", shapes[s].what, path_names[path], gf, 100 * gf / peak, gb,
               100 * gb / peak, gx, gw, err);
        free(x), free(y), free(yr), free(dy), free(dx), free(w), free(dw), free(b), free(db), free(work);
    }
    return 0;
}
