/* layers/batchnorm.c — RealNVP's batch norm (interface: layer.h). */
#include "layers/layer.h"

/* ------------------------------------------------------------------ batch norm (RealNVP)
 * Training: batch mean μ and biased variance v; running averages updated with momentum 0.1.
 * Evaluation and inverse: running averages. Cache: μ (D) | 1/√(v+ε) (D). */
#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1
typedef struct {
    nf_layer base;
    int64_t off_lg, off_beta, off_rmean, off_rvar;
    double stat[]; /* 2D + 2 sums over the batch (forward and backward), summed across processes in
                    * data-parallel training (nf_layer_sum) so that the statistics are the global batch's */
} bn_layer;

/* Cache floats: μ (D) | 1/√(v+ε) (D), independent of n. */
static int64_t bn_cache_size(const nf_layer *L, int64_t n) {
    NF_UNUSED(n);
    return 2 * (int64_t)L->dim;
}

/* ops->forward: batch statistics (training; also updates the running averages) or running ones;
 * fills the cache with μ and 1/√(v+ε). NF_OK. */
static nf_status bn_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(work);
    bn_layer *b = (bn_layer *)L;
    int32_t D = L->dim, S = L->ld;
    nf_real *mu = cache, *inv = cache + D, *rm = NF_B(L, b->off_rmean), *rv = NF_B(L, b->off_rvar);
    const nf_real *lg = NF_P(L, b->off_lg), *beta = NF_P(L, b->off_beta);
    int stats = training && n > 0;
    /* batch statistics in two passes: stat = Σx (D) | rows | Σ(x − μ)² (D), each pass summed across
     * the processes of a data-parallel pass */
    double *sum = b->stat, *sq = b->stat + D + 1;
    if (stats) {
        for (int32_t j = 0; j < D; j++) {
            double m = 0;
            for (int64_t i = 0; i < n; i++) m += x[i * S + j];
            sum[j] = m;
        }
        sum[D] = (double)n;
        nf_status st = nf_layer_sum(L, sum, D + 1);
        if (st) return st;
        for (int32_t j = 0; j < D; j++) {
            double m = sum[j] / sum[D], v = 0;
            for (int64_t i = 0; i < n; i++) v += (x[i * S + j] - m) * (x[i * S + j] - m);
            sum[j] = m, sq[j] = v;
        }
        if ((st = nf_layer_sum(L, sq, D))) return st;
    }
    double ld = 0;
    for (int32_t j = 0; j < D; j++) {
        double m = rm[j], v = rv[j];
        if (stats) {
            m = sum[j], v = sq[j] / sum[D];
            rm[j] = (nf_real)((1 - BN_MOMENTUM) * rm[j] + BN_MOMENTUM * m);
            rv[j] = (nf_real)((1 - BN_MOMENTUM) * rv[j] + BN_MOMENTUM * v);
        }
        mu[j] = (nf_real)m;
        inv[j] = (nf_real)(1.0 / sqrt(v + BN_EPS));
        ld += lg[j] - 0.5 * log(v + BN_EPS);
    }
#pragma omp parallel for schedule(static) NF_PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++) {
        for (int32_t j = 0; j < D; j++) z[i * S + j] = (x[i * S + j] - mu[j]) * inv[j] * exp(lg[j]) + beta[j];
        if (logdet) logdet[i] += (nf_real)ld;
    }
    return NF_OK;
}

/* ops->inverse with the running statistics (the training forward is not inverted). NF_OK. */
static nf_status bn_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    NF_UNUSED(work);
    bn_layer *b = (bn_layer *)L;
    int32_t D = L->dim, S = L->ld;
    const nf_real *rm = NF_B(L, b->off_rmean), *rv = NF_B(L, b->off_rvar);
    const nf_real *lg = NF_P(L, b->off_lg), *beta = NF_P(L, b->off_beta);
    double ld = 0;
    for (int32_t j = 0; j < D; j++) ld += lg[j] - 0.5 * log(rv[j] + BN_EPS);
#pragma omp parallel for schedule(static) NF_PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++) {
        for (int32_t j = 0; j < D; j++)
            x[i * S + j] = (z[i * S + j] - beta[j]) * exp(-lg[j]) * sqrt(rv[j] + R(BN_EPS)) + rm[j];
        if (logdet) logdet[i] -= (nf_real)ld;
    }
    return NF_OK;
}

/* ops->backward: dx overwritten (with the batch-statistics terms in training); grads of log_gamma
 * and beta +=. NF_OK. */
static nf_status bn_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(work);
    bn_layer *b = (bn_layer *)L;
    int32_t D = L->dim, S = L->ld;
    const nf_real *mu = cache, *inv = cache + D, *lg = NF_P(L, b->off_lg);
    nf_real *glg = NF_G(L, b->off_lg), *gbeta = NF_G(L, b->off_beta);
    double sld = 0;
    for (int64_t i = 0; i < n; i++) sld += dld[i];
    /* this process's sums: stat = Σ dxh (D) | Σ dxh·xh (D) | Σ dld | rows; the parameter gradients
     * take them as they are (the gradient buffer is summed across processes later), the batch-
     * statistics terms of dx need them over the whole batch */
    double *s_dxh = b->stat, *s_dxh_xh = b->stat + D;
    for (int32_t j = 0; j < D; j++) {
        double g = exp((double)lg[j]), iv = inv[j];
        double sum_dxh = 0, sum_dxh_xh = 0, sum_dz = 0;
        for (int64_t i = 0; i < n; i++) {
            double xh = (x[i * S + j] - mu[j]) * iv, dxh = dz[i * S + j] * g;
            sum_dxh += dxh, sum_dxh_xh += dxh * xh, sum_dz += dz[i * S + j];
        }
        glg[j] += (nf_real)(sum_dxh_xh + sld);
        gbeta[j] += (nf_real)sum_dz;
        s_dxh[j] = sum_dxh, s_dxh_xh[j] = sum_dxh_xh;
    }
    b->stat[2 * D] = sld, b->stat[2 * D + 1] = (double)n;
    if (training) {
        nf_status st = nf_layer_sum(L, b->stat, 2 * (int64_t)D + 2);
        if (st) return st;
    }
    double N = b->stat[2 * D + 1];
    sld = b->stat[2 * D];
    for (int32_t j = 0; j < D; j++) {
        double g = exp((double)lg[j]), iv = inv[j], sum_dxh = s_dxh[j], sum_dxh_xh = s_dxh_xh[j];
        for (int64_t i = 0; i < n; i++) {
            double xh = (x[i * S + j] - mu[j]) * iv, dxh = dz[i * S + j] * g;
            if (!training) {
                dx[i * S + j] = (nf_real)(dxh * iv);
            } else {
                /* batch statistics: the usual batch-norm backward, plus the log-det's dependence on v:
                 * ∂(−½ log(v+ε))/∂x_ij = −(x_ij − μ_j)/(n (v+ε)) = −xh·iv/n */
                double d = iv / N * (N * dxh - sum_dxh - xh * sum_dxh_xh);
                dx[i * S + j] = (nf_real)(d - sld * xh * iv / N);
            }
        }
    }
    return NF_OK;
}

/* ops->init: running mean 0, running variance 1. */
static void bn_init(nf_layer *L, nf_rng *rng) {
    NF_UNUSED(rng);
    bn_layer *b = (bn_layer *)L;
    for (int32_t j = 0; j < L->dim; j++) *NF_B(L, b->off_rmean + j) = 0, *NF_B(L, b->off_rvar + j) = 1;
}

static const nf_layer_ops batchnorm_ops = {"batchnorm",   bn_forward, bn_inverse, bn_backward,
                                           bn_cache_size, nf_layer_no_size,  bn_init,    nf_layer_no_destroy, nf_no_flops};

/* See layer.h: batch norm of dim ≥ 1 columns. */
nf_status nf_batchnorm_create(nf_registry *c, const char *name, int32_t dim, nf_layer **out) {
    *out = NULL;
    if (dim < 1) return nf_fail(NF_ERR_INVALID, "%s: batch norm needs dim ≥ 1 (got %d)", name, (int)dim);
    bn_layer *b = nf_layer_alloc(sizeof *b + sizeof(double) * (2 * (size_t)dim + 2), &batchnorm_ops, c, name, dim);
    if (!b) return NF_ERR_NOMEM;
    b->off_lg = nf_registry_reserve_vec(c, name, "log_gamma", NF_TENSOR_PARAM, dim);
    b->off_beta = nf_registry_reserve_vec(c, name, "beta", NF_TENSOR_PARAM, dim);
    b->off_rmean = nf_registry_reserve_vec(c, name, "running_mean", NF_TENSOR_BUFFER, dim);
    b->off_rvar = nf_registry_reserve_vec(c, name, "running_var", NF_TENSOR_BUFFER, dim);
    if (b->off_lg < 0 || b->off_beta < 0 || b->off_rmean < 0 || b->off_rvar < 0) return free(b), NF_ERR_NOMEM; /* reason set by the registry */
    *out = &b->base;
    return NF_OK;
}

