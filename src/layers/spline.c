/* spline.c — the element-wise rational-quadratic spline layer: every coordinate j has its own learned
 * spline (no conditioner), so it works on 1-D data:
 *   z_j = g_θj(x_j)  (K bins on [−B, B], identity outside)      log|det| = Σ_j log g'_θj(x_j)
 * Parameters: theta (D, 3K − 1), row j the 3K − 1 unnormalised values of coordinate j (rqspline.h);
 * they start at zero, the identity. Formulas: rqspline.c. */
#include "layers/layer.h"
#include "layers/rqspline.h"

typedef struct {
    nf_layer base;
    int32_t K;
    double B;
    int64_t off; /* theta (D, 3K − 1) */
} spline_layer;

/* z_j = g_θj(x_j), logdet[i] += Σ_j log g' (inverse 0); or x_j = g_θj⁻¹(z_j), logdet[i] −= Σ_j log g'(x_j)
 * (inverse 1). logdet may be NULL. sp_rows: rows [i0, i1) of it. */
static void sp_rows(const nf_layer *L, const nf_real *in, nf_real *out, nf_real *logdet, int inverse, int64_t i0, int64_t i1) {
    const spline_layer *s = (const spline_layer *)L;
    int32_t D = L->dim, S = L->ld, P = nf_rqs_num_params(s->K);
    const nf_real *th = NF_P(L, s->off);
    nf_rqs_map *g = inverse ? nf_rqs_inverse : nf_rqs_forward;
    for (int64_t i = i0; i < i1; i++) {
        double ld = 0;
        for (int32_t j = 0; j < D; j++) {
            double o, l;
            g(th + (int64_t)j * P, 1, s->K, s->B, (double)in[i * S + j], &o, &l);
            out[i * S + j] = (nf_real)o;
            ld += l;
        }
        if (logdet) logdet[i] += (nf_real)(inverse ? -ld : ld);
    }
}
static void sp_map(const nf_layer *L, const nf_real *in, nf_real *out, nf_real *logdet, int64_t n, int inverse) {
    NF_PARALLEL_RANGE(n * L->dim > 4096, n, sp_rows(L, in, out, logdet, inverse, lo, hi));
}

/* ops->forward: z_j = g_θj(x_j); logdet[i] += Σ_j log g'. No cache or scratch. NF_OK. */
static nf_status sp_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(cache), NF_UNUSED(work), NF_UNUSED(training);
    sp_map(L, x, z, logdet, n, 0);
    return NF_OK;
}

/* ops->inverse: x_j = g_θj⁻¹(z_j); logdet[i] −= Σ_j log g'(x_j). NF_OK. */
static nf_status sp_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n, nf_real *work) {
    NF_UNUSED(work);
    sp_map(L, z, x, logdet, n, 1);
    return NF_OK;
}

/* Coordinates [j0, j1) of sp_backward: each its column of dx and its row of grads, rows summed in order. */
static void sp_backward_coords(const nf_layer *L, const nf_real *x, const nf_real *dz, const nf_real *dld, nf_real *dx, int64_t n,
                               int64_t j0, int64_t j1) {
    const spline_layer *s = (const spline_layer *)L;
    int32_t S = L->ld, P = nf_rqs_num_params(s->K);
    const nf_real *th = NF_P(L, s->off);
    nf_real *gth = NF_G(L, s->off);
    for (int64_t j = j0; j < j1; j++) {
        double acc[3 * NF_RQS_MAX_BINS];
        nf_real g1[3 * NF_RQS_MAX_BINS];
        for (int32_t p = 0; p < P; p++) acc[p] = 0;
        for (int64_t i = 0; i < n; i++) {
            double g;
            nf_rqs_backward(th + (int64_t)j * P, 1, s->K, s->B, (double)x[i * S + j], (double)dz[i * S + j], (double)dld[i], &g, g1);
            dx[i * S + j] = (nf_real)g;
            for (int32_t p = 0; p < P; p++) acc[p] += (double)g1[p];
        }
        for (int32_t p = 0; p < P; p++) gth[(int64_t)j * P + p] += (nf_real)acc[p];
    }
}

/* ops->backward: dx_j = ∂L/∂x_j (overwritten), grads of theta += Σ_i ∂L/∂θ. Parallel over coordinates
 * (a thread writes one coordinate's column of dx and its row of grads), rows summed in order. NF_OK. */
static nf_status sp_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                             const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(cache), NF_UNUSED(work), NF_UNUSED(training);
    NF_PARALLEL_RANGE(n * L->dim > 4096, L->dim, sp_backward_coords(L, x, dz, dld, dx, n, lo, hi));
    return NF_OK;
}

static const nf_layer_ops spline_ops = {"spline", sp_forward, sp_inverse, sp_backward,
                                        nf_layer_no_size, nf_layer_no_size, nf_layer_no_init, nf_layer_no_destroy, nf_no_flops};

/* See layer.h: the element-wise spline, dim ≥ 1. */
nf_status nf_spline_create(nf_registry *r, const char *name, int32_t dim, int32_t bins, double bound, nf_layer **out) {
    *out = NULL;
    if (dim < 1) return nf_fail(NF_ERR_INVALID, "%s: the element-wise spline needs dim ≥ 1 (got %d)", name, (int)dim);
    nf_status st = nf_rqs_check(name, bins, bound);
    if (st) return st;
    spline_layer *s = nf_layer_alloc(sizeof *s, &spline_ops, r, name, dim);
    if (!s) return NF_ERR_NOMEM;
    s->K = bins, s->B = bound;
    int64_t shape[2] = {dim, nf_rqs_num_params(bins)};
    s->off = nf_registry_reserve(r, name, "theta", NF_TENSOR_PARAM, 2, shape);
    if (s->off < 0) return free(s), NF_ERR_NOMEM; /* reason set by the registry */
    *out = &s->base;
    return NF_OK;
}
