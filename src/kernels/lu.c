/* kernels/lu.c — LU with partial pivoting in double precision: log|det|, inverses, random orthogonal
 * matrices (the invertible linear layers and the conformance suite's brute-force Jacobians). */
#include "kernels/kernels.h"

/* LU with partial pivoting of the (d, d) double matrix a in place (L below the diagonal, unit
 * diagonal implied; U on and above); perm[i] = original row of row i. Returns ±1 (sign), 0 if singular. */
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

/* *out = log|det A| of the (d, d) A, with the caller's scratch a (d·d) and perm (d); NF_ERR_NUMERIC if singular. */
nf_status nf_logabsdet_ws(const nf_real *A, int32_t d, double *a, int32_t *perm, double *out) {
    for (int64_t i = 0; i < (int64_t)d * d; i++) a[i] = A[i];
    int sign = nf_lu_decompose(a, perm, d);
    if (!sign) return nf_fail(NF_ERR_NUMERIC, "singular matrix");
    double s = 0;
    for (int32_t i = 0; i < d; i++) s += log(fabs(a[i * d + i]));
    *out = s;
    return NF_OK;
}

/* inv (d, d, caller's) = A⁻¹ by LU in double, with the caller's scratch a, perm, col; NF_ERR_NUMERIC if singular. */
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

/* inv = A⁻¹ as nf_invert_ws with scratch it allocates and frees; NF_ERR_NOMEM if it cannot. */
nf_status nf_invert(const nf_real *A, int32_t d, nf_real *inv) {
    double *a = malloc(sizeof(double) * (size_t)d * (size_t)d), *col = malloc(sizeof(double) * (size_t)d);
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)d);
    nf_status st = a && perm && col ? nf_invert_ws(A, d, inv, a, perm, col) : nf_fail(NF_ERR_NOMEM, "out of memory");
    free(a), free(perm), free(col);
    return st;
}

/* Q (d, d doubles, caller's) = a random orthogonal matrix from rng (advanced). */
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
