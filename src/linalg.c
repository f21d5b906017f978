/* linalg.c — matrix products (BLAS fast path + naive reference), LU, log|det|, inverse, orthogonal init. */
#include "internal.h"

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

static void blas_single_threaded(void) {
    static int done = 0; /* benign race: every caller stores the same value */
    if (!done) {
        openblas_set_num_threads(1);
        done = 1;
    }
}

static void gemm_tile(int tA, int tB, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A,
                      int64_t lda, const nf_real *B, int64_t ldb, nf_real beta, nf_real *C, int64_t ldc) {
    NF_CBLAS_GEMM(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, (int)m,
                  (int)n, (int)k, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

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

int nf_lu_decompose(double *a, int32_t *perm, int32_t d) {
    int sign = 1;
    for (int32_t i = 0; i < d; i++) perm[i] = i;
    for (int32_t c = 0; c < d; c++) {
        int32_t p = c;
        double best = fabs(a[c * d + c]);
        for (int32_t r = c + 1; r < d; r++)
            if (fabs(a[r * d + c]) > best) best = fabs(a[r * d + c]), p = r;
        if (best == 0.0) return 0;
        if (p != c) {
            for (int32_t j = 0; j < d; j++) {
                double t = a[c * d + j];
                a[c * d + j] = a[p * d + j];
                a[p * d + j] = t;
            }
            int32_t t = perm[c];
            perm[c] = perm[p];
            perm[p] = t;
            sign = -sign;
        }
        for (int32_t r = c + 1; r < d; r++) {
            double f = a[r * d + c] / a[c * d + c];
            a[r * d + c] = f;
            for (int32_t j = c + 1; j < d; j++) a[r * d + j] -= f * a[c * d + j];
        }
    }
    return sign;
}

nf_status nf_logabsdet_ws(const nf_real *A, int32_t d, double *a, int32_t *perm, double *out) {
    for (int64_t i = 0; i < (int64_t)d * d; i++) a[i] = A[i];
    int sign = nf_lu_decompose(a, perm, d);
    if (!sign) return nf_fail(NF_ERR_NUMERIC, "singular matrix");
    double s = 0;
    for (int32_t i = 0; i < d; i++) s += log(fabs(a[i * d + i]));
    *out = s;
    return NF_OK;
}

nf_status nf_invert_ws(const nf_real *A, int32_t d, nf_real *inv, double *a, int32_t *perm, double *col) {
    for (int64_t i = 0; i < (int64_t)d * d; i++) a[i] = A[i];
    if (!nf_lu_decompose(a, perm, d)) return nf_fail(NF_ERR_NUMERIC, "singular matrix");
    /* Solve A x = e_j for each column j: P A = L U, so L U x = P e_j. */
    for (int32_t j = 0; j < d; j++) {
        for (int32_t i = 0; i < d; i++) col[i] = perm[i] == j ? 1.0 : 0.0;
        for (int32_t i = 0; i < d; i++)
            for (int32_t k = 0; k < i; k++) col[i] -= a[i * d + k] * col[k];
        for (int32_t i = d - 1; i >= 0; i--) {
            for (int32_t k = i + 1; k < d; k++) col[i] -= a[i * d + k] * col[k];
            col[i] /= a[i * d + i];
        }
        for (int32_t i = 0; i < d; i++) inv[i * d + j] = (nf_real)col[i];
    }
    return NF_OK;
}

/* Allocating wrappers (tests, one-off use); the layers pass their own preallocated buffers. */
nf_status nf_logabsdet(const nf_real *A, int32_t d, double *out) {
    double *a = malloc(sizeof(double) * (size_t)d * (size_t)d);
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)d);
    nf_status st = a && perm ? nf_logabsdet_ws(A, d, a, perm, out) : nf_fail(NF_ERR_NOMEM, "out of memory");
    free(a), free(perm);
    return st;
}

nf_status nf_invert(const nf_real *A, int32_t d, nf_real *inv) {
    double *a = malloc(sizeof(double) * (size_t)d * (size_t)d), *col = malloc(sizeof(double) * (size_t)d);
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)d);
    nf_status st = a && perm && col ? nf_invert_ws(A, d, inv, a, perm, col) : nf_fail(NF_ERR_NOMEM, "out of memory");
    free(a), free(perm), free(col);
    return st;
}

void nf_random_orthogonal(nf_rng *rng, int32_t d, double *Q) {
    /* Modified Gram–Schmidt on the rows of a Gaussian matrix; a (measure-zero) degenerate draw is redrawn. */
    for (;;) {
        for (int64_t i = 0; i < (int64_t)d * d; i++) Q[i] = nf_rng_normal(rng);
        int ok = 1;
        for (int32_t i = 0; i < d && ok; i++) {
            double *qi = Q + (int64_t)i * d;
            for (int32_t j = 0; j < i; j++) {
                double *qj = Q + (int64_t)j * d, dot = 0;
                for (int32_t k = 0; k < d; k++) dot += qi[k] * qj[k];
                for (int32_t k = 0; k < d; k++) qi[k] -= dot * qj[k];
            }
            double nrm = 0;
            for (int32_t k = 0; k < d; k++) nrm += qi[k] * qi[k];
            nrm = sqrt(nrm);
            if (nrm < 1e-6) ok = 0;
            else
                for (int32_t k = 0; k < d; k++) qi[k] /= nrm;
        }
        if (ok) return;
    }
}
