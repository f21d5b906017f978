/* gemm_bench.c — the matrix products of the workloads in isolation, one thread, in GFLOP/s (multiply-adds
 * × 2): each shape as nf_gemm makes it (one 64-row tile, row-major, the transposes and beta of the call
 * site), in every library at hand — OpenBLAS's cblas_sgemm, oneDNN's dnnl_sgemm, BLIS's bli_sgemm (each
 * looked up by dlopen, so a missing one is skipped) — and through nf_gemm itself with its per-shape choice
 * (NFLOW_GEMM as set), with nflow's rate as a fraction of the best library's (issue: ≥ 85 %).
 *   nflow_gemm_bench [--seconds S]        (S per shape and library, 0.3)
 * BLIS picks its kernels from the CPU model; BLIS_ARCH_TYPE=skx (say) forces a set. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

#include "bench.h"

#ifdef _OPENMP
#include <omp.h>
#endif

typedef void (*cblas_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef int (*dnnl_fn)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t, float,
                       float *, int64_t);
/* BLIS's typed API: trans_t (0: no transpose, 8: transpose), dim_t and inc_t 64-bit, row and column strides */
typedef void (*blis_fn)(int, int, int64_t, int64_t, int64_t, const float *, const float *, int64_t, int64_t, const float *,
                        int64_t, int64_t, const float *, float *, int64_t, int64_t);

typedef struct {
    const char *name;
    int tA, tB;
    int64_t m, n, k;
    float beta;
} shape;

static cblas_fn f_openblas;
static dnnl_fn f_onednn;
static blis_fn f_blis;

/* One product of shape h by library lib (0 OpenBLAS, 1 oneDNN, 2 BLIS, 3 nf_gemm). */
static void product(int lib, const shape *h, const float *A, const float *B, float *C) {
    int64_t lda = h->tA ? h->m : h->k, ldb = h->tB ? h->k : h->n, ldc = h->n;
    float one = 1;
    if (lib == 0)
        f_openblas(101, h->tA ? 112 : 111, h->tB ? 112 : 111, (int)h->m, (int)h->n, (int)h->k, 1, A, (int)lda, B, (int)ldb, h->beta, C, (int)ldc);
    else if (lib == 1)
        f_onednn(h->tA ? 'T' : 'N', h->tB ? 'T' : 'N', h->m, h->n, h->k, 1, A, lda, B, ldb, h->beta, C, ldc);
    else if (lib == 2)
        f_blis(h->tA ? 8 : 0, h->tB ? 8 : 0, h->m, h->n, h->k, &one, A, lda, 1, B, ldb, 1, &h->beta, C, ldc, 1);
    else
        nf_gemm(h->tA, h->tB, h->m, h->n, h->k, 1, A, lda, B, ldb, h->beta, C, ldc);
}

/* GFLOP/s of library lib on h: the best of three runs of secs/3 each. */
static double rate(int lib, const shape *h, const float *A, const float *B, float *C, double secs) {
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        long it = 0;
        double t0 = now(), t;
        do {
            for (int r = 0; r < 10; r++, it++) product(lib, h, A, B, C);
        } while ((t = now() - t0) < secs / 3);
        double g = 2.0 * (double)h->m * (double)h->n * (double)h->k * (double)it / t / 1e9;
        if (g > best) best = g;
    }
    return best;
}

int main(int argc, char **argv) {
    double secs = 0.3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) secs = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: nflow_gemm_bench [--seconds S]\n");
            return 2;
        }
    }
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    void *ob = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL), *dn = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    void *bl = dlopen("libblis.so.4", RTLD_NOW | RTLD_LOCAL);
    f_openblas = ob ? (cblas_fn)dlsym(ob, "cblas_sgemm") : NULL;
    f_onednn = dn ? (dnnl_fn)dlsym(dn, "dnnl_sgemm") : NULL;
    f_blis = bl ? (blis_fn)dlsym(bl, "bli_sgemm") : NULL;
    void (*ob_threads)(int) = ob ? (void (*)(int))dlsym(ob, "openblas_set_num_threads") : NULL;
    void (*bl_threads)(int64_t) = bl ? (void (*)(int64_t))dlsym(bl, "bli_thread_set_num_threads") : NULL;
    int (*bl_arch)(void) = bl ? (int (*)(void))dlsym(bl, "bli_arch_query_id") : NULL;
    const char *(*bl_archs)(int) = bl ? (const char *(*)(int))dlsym(bl, "bli_arch_string") : NULL;
    if (ob_threads) ob_threads(1);
    if (bl_threads) bl_threads(1);
    printf("%s\n", nf_runtime_info());
    printf("libraries: OpenBLAS %s, oneDNN %s, BLIS %s%s; one thread\n", f_openblas ? "yes" : "absent", f_onednn ? "yes" : "absent",
           f_blis ? "kernels " : "absent", f_blis && bl_arch && bl_archs ? bl_archs(bl_arch()) : "");
    const shape S[] = {
        {"nice-mnist fwd h.W^T", 0, 1, 64, 256, 1000, 0}, {"nice-mnist dx dZ.W", 0, 0, 64, 256, 1000, 0},
        {"nice-mnist dW += dZ^T.h", 1, 0, 64, 1000, 64, 1}, {"nice-mnist in h.W^T", 0, 1, 64, 256, 392, 0},
        {"glow 1x1 fwd 14x14", 0, 0, 64, 196, 128, 0}, {"glow 1x1 dW 14x14", 0, 1, 64, 128, 196, 1},
        {"glow 1x1 dx 14x14", 1, 0, 128, 196, 128, 0}, {"glow 1x1 fwd 7x7", 0, 0, 64, 49, 128, 0},
        {"glow zero-conv fwd 14x14", 0, 0, 4, 196, 1152, 0}, {"glow zero-conv dW 14x14", 0, 1, 4, 1152, 196, 1},
        {"glow 3x3 2->128 fwd", 0, 0, 64, 196, 18, 0}, {"winograd product 14x14", 0, 0, 64, 20, 64, 0},
        {"winograd product 28x28", 0, 0, 64, 56, 64, 0}, {"winograd dU 28x28", 0, 1, 64, 64, 56, 1},
    };
    const char *lib_name[4] = {"OpenBLAS", "oneDNN", "BLIS", "nflow"};
    printf("%-26s %5s %4s %5s %5s", "shape", "m", "n", "k", "op");
    for (int l = 0; l < 4; l++) printf(" %9s", lib_name[l]);
    printf(" %11s\n", "nflow/best");
    for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
        const shape *h = &S[s];
        size_t na = (size_t)(h->m * h->k), nb = (size_t)(h->k * h->n), nc = (size_t)(h->m * h->n);
        float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C = calloc(nc, sizeof *C);
        if (!A || !B || !C) return 1;
        for (size_t i = 0; i < na; i++) A[i] = (float)(i % 97) * 0.01f - 0.5f;
        for (size_t i = 0; i < nb; i++) B[i] = (float)(i % 89) * 0.01f - 0.4f;
        double g[4], best = 0;
        for (int l = 0; l < 4; l++) {
            int have = l == 0 ? f_openblas != NULL : l == 1 ? f_onednn != NULL : l == 2 ? f_blis != NULL : 1;
            g[l] = have ? rate(l, h, A, B, C, secs) : 0;
            if (l < 3 && g[l] > best) best = g[l];
        }
        printf("%-26s %5lld %4lld %5lld %5s", h->name, (long long)h->m, (long long)h->n, (long long)h->k,
               h->tA ? "TN" : h->tB ? "NT" : "NN");
        for (int l = 0; l < 4; l++) {
            if (g[l] > 0) printf(" %9.1f", g[l]);
            else printf(" %9s", "-");
        }
        printf(" %10.0f%%\n", 100 * g[3] / best);
        free(A), free(B), free(C);
    }
    return 0;
}
