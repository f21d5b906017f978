/* kernels/gemm.c — matrix products: the BLAS fast path (tiles of fixed size, so results do not depend on the
 * thread count) and the naive reference. */
#include "kernels/kernels.h"

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void openblas_set_num_threads(int num_threads);

#ifdef NFLOW_DOUBLE
#define NF_CBLAS_GEMM cblas_dgemm
#else
#define NF_CBLAS_GEMM cblas_sgemm
#endif

/* Rows of C per BLAS call. Fixed (not derived from the thread count) so that every thread count makes
 * exactly the same BLAS calls and the result is bit-identical. */
#define GEMM_COLS 256 /* column tile when there are few row tiles */
#define GEMM_TILE 64

/* Tell OpenBLAS to use one thread (once): parallelism comes from our own fixed tiles. */
static void blas_single_threaded(void) {
    static int done = 0; /* benign race: every caller stores the same value */
    if (!done) {
        openblas_set_num_threads(1);
        done = 1;
    }
}

/* One BLAS call: C = alpha·op(A)·op(B) + beta·C for an m × n tile (row-major, borrowed arrays). */
static void gemm_tile(int tA, int tB, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A,
                      int64_t lda, const nf_real *B, int64_t ldb, nf_real beta, nf_real *C, int64_t ldc) {
    NF_CBLAS_GEMM(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, (int)m,
                  (int)n, (int)k, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* C (m, n) = alpha·op(A)·op(B) + beta·C, row-major, in fixed tiles of rows (or columns) over OpenMP
 * threads, so the result is bit-identical for every thread count. Arrays the caller's. */
void nf_gemm(int tA, int tB, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A,
             int64_t lda, const nf_real *B, int64_t ldb, nf_real beta, nf_real *C, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* BLAS leaves C alone when k = 0; keep the beta semantics explicit */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return;
    }
    blas_single_threaded();
    /* Tiles of C: GEMM_TILE rows; when there are few row tiles (a batch of 64 through a wide MLP layer),
     * also GEMM_COLS columns, so that both cores have work. The tiling depends only on the shape. */
    int64_t rt = (m + GEMM_TILE - 1) / GEMM_TILE, ct = rt >= 4 ? 1 : (n + GEMM_COLS - 1) / GEMM_COLS;
    if (rt * ct == 1) {
        gemm_tile(tA, tB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int64_t cw = ct == 1 ? n : GEMM_COLS;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < rt * ct; t++) {
        int64_t i0 = (t / ct) * GEMM_TILE, mi = m - i0 < GEMM_TILE ? m - i0 : GEMM_TILE;
        int64_t j0 = (t % ct) * cw, nj = n - j0 < cw ? n - j0 : cw;
        const nf_real *At = tA ? A + i0 : A + i0 * lda;
        const nf_real *Bt = tB ? B + j0 * ldb : B + j0;
        gemm_tile(tA, tB, mi, nj, k, alpha, At, lda, Bt, ldb, beta, C + i0 * ldc + j0, ldc);
    }
}

/* The same product by the naive triple loop in double accumulation: the tests' oracle. */
void nf_gemm_ref(int tA, int tB, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A,
                 int64_t lda, const nf_real *B, int64_t ldb, nf_real beta, nf_real *C, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) {
                double a = tA ? A[p * lda + i] : A[i * lda + p];
                double b = tB ? B[j * ldb + p] : B[p * ldb + j];
                s += a * b;
            }
            double c = beta == 0 ? 0.0 : (double)beta * (double)C[i * ldc + j];
            C[i * ldc + j] = (nf_real)((double)alpha * s + c);
        }
}

