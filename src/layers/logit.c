/* layers/logit.c — RealNVP's logit preprocessing (interface: layer.h). */
#include "layers/layer.h"

/* ------------------------------------------------------------------ logit (RealNVP's preprocessing)
 * On dequantised pixels x ∈ [−½, ½) (nf_images_dequantize): p = α + (1 − 2α)(x + ½), z = log p − log(1 − p),
 *   log|det ∂z/∂x| = Σ [log(1 − 2α) − log p − log(1 − p)]
 * so the likelihood of z, plus this log-det, is the likelihood of the pixels (bits/dim stay comparable).
 * α keeps p away from 0 and 1. No parameters. */
typedef struct {
    nf_layer base;
    double alpha;
} logit_layer;

/* ops->forward: z = logit(α + (1 − 2α)(x + ½)). NF_ERR_NUMERIC (reason set) for an input outside [−½, ½]. */
static nf_status lg_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(cache), NF_UNUSED(work), NF_UNUSED(training);
    double a = ((logit_layer *)L)->alpha, l12a = log(1 - 2 * a);
    int32_t D = L->dim, S = L->ld;
    int bad = 0;
#pragma omp parallel for schedule(static) NF_PAR_IF(n, D) reduction(| : bad)
    for (int64_t i = 0; i < n; i++) {
        double ld = 0;
        for (int32_t j = 0; j < D; j++) {
            nf_real p = (nf_real)(a + (1 - 2 * a) * ((double)x[i * S + j] + 0.5));
            if (!(p > 0 && p < 1)) bad = 1;
            nf_real lp = log(p), l1p = log1p(-p);
            z[i * S + j] = lp - l1p;
            ld += l12a - lp - l1p;
        }
        if (logdet) logdet[i] += (nf_real)ld;
    }
    if (bad) return nf_fail(NF_ERR_NUMERIC, "logit layer: an input lies outside [-0.5, 0.5] (the layer expects dequantised pixels)");
    return NF_OK;
}

/* ops->inverse: x = (sigmoid(z) − α)/(1 − 2α) − ½; logdet −= the forward log-det. NF_OK. */
static nf_status lg_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    NF_UNUSED(work);
    double a = ((logit_layer *)L)->alpha, l12a = log(1 - 2 * a);
    int32_t D = L->dim, S = L->ld;
#pragma omp parallel for schedule(static) NF_PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++) {
        double ld = 0;
        for (int32_t j = 0; j < D; j++) {
            double v = z[i * S + j], p = v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v));
            /* log p = −softplus(−v), log(1 − p) = −softplus(v) */
            double lp = v >= 0 ? -log1p(exp(-v)) : v - log1p(exp(v)), l1p = lp - v;
            x[i * S + j] = (nf_real)((p - a) / (1 - 2 * a) - 0.5);
            ld += l12a - lp - l1p;
        }
        if (logdet) logdet[i] -= (nf_real)ld;
    }
    return NF_OK;
}

/* ops->backward: dx = ∂z/∂x·(dz + dld·(2p − 1)) (overwritten); no parameters. NF_OK. */
static nf_status lg_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(cache), NF_UNUSED(work), NF_UNUSED(training);
    double a = ((logit_layer *)L)->alpha;
    int32_t D = L->dim, S = L->ld;
#pragma omp parallel for schedule(static) NF_PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < D; j++) {
            /* ∂z/∂x = (1 − 2α)/(p(1 − p)),  ∂logdet/∂x = (1 − 2α)(2p − 1)/(p(1 − p)) */
            nf_real p = (nf_real)(a + (1 - 2 * a) * ((double)x[i * S + j] + 0.5));
            nf_real g = (nf_real)(1 - 2 * a) / (p * (1 - p));
            dx[i * S + j] = g * (dz[i * S + j] + dld[i] * (2 * p - 1));
        }
    return NF_OK;
}

static const nf_layer_ops logit_ops = {"logit",   lg_forward, lg_inverse, lg_backward,
                                       nf_layer_no_size, nf_layer_no_size,  nf_layer_no_init,    nf_layer_no_destroy, nf_no_flops};

/* See layer.h: 0 ≤ alpha < ½ (else NF_ERR_INVALID), dim ≥ 1. */
nf_status nf_logit_create(nf_registry *c, const char *name, int32_t dim, double alpha, nf_layer **out) {
    *out = NULL;
    if (!(alpha >= 0 && alpha < 0.5)) return nf_fail(NF_ERR_INVALID, "%s: logit alpha %g: must lie in [0, 0.5)", name, alpha);
    if (dim < 1) return nf_fail(NF_ERR_INVALID, "%s: logit needs dim ≥ 1 (got %d)", name, (int)dim);
    logit_layer *s = nf_layer_alloc(sizeof *s, &logit_ops, c, name, dim);
    if (!s) return NF_ERR_NOMEM;
    s->alpha = alpha;
    *out = &s->base;
    return NF_OK;
}

