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
 * (inverse 1). logdet may be NULL. sp_rows: rows [i0, i1) of it (θ_j: row j of theta, the same every row). */
static void sp_rows(const nf_layer *L, const nf_real *in, nf_real *out, nf_real *logdet, int inverse, int64_t i0, int64_t i1) {
    const spline_layer *s = (const spline_layer *)L;
    nf_rqs_layout g = {s->K, s->B, L->dim, NULL, 0, nf_rqs_num_params(s->K), 1};
    nf_rqs_map_rows(&g, NF_P(L, s->off), inverse, in, L->ld, out, L->ld, logdet, i0, i1);
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

/* Coordinates [j0, j1) of sp_backward: each its column of dx and its row of grads, the rows through the
 * spline NF_RQS_LANES at a time and their gradients summed in row order. */
static void sp_backward_coords(const nf_layer *L, const nf_real *x, const nf_real *dz, const nf_real *dld, nf_real *dx, int64_t n,
                               int64_t j0, int64_t j1) {
    const spline_layer *s = (const spline_layer *)L;
    int32_t S = L->ld, P = nf_rqs_num_params(s->K);
    const nf_real *th = NF_P(L, s->off);
    nf_real *gth = NF_G(L, s->off);
    for (int64_t j = j0; j < j1; j++) {
        double acc[3 * NF_RQS_MAX_BINS];
        nf_real g1[NF_RQS_LANES][3 * NF_RQS_MAX_BINS];
        const nf_real *tp[NF_RQS_LANES];
        nf_real *gp[NF_RQS_LANES];
        for (int e = 0; e < NF_RQS_LANES; e++) tp[e] = th + j * P, gp[e] = g1[e];
        for (int32_t p = 0; p < P; p++) acc[p] = 0;
        for (int64_t i0 = 0; i0 < n; i0 += NF_RQS_LANES) {
            int m = n - i0 < NF_RQS_LANES ? (int)(n - i0) : NF_RQS_LANES;
            double v[NF_RQS_LANES], gy[NF_RQS_LANES], gl[NF_RQS_LANES], gx[NF_RQS_LANES];
            for (int e = 0; e < m; e++) {
                int64_t i = i0 + e;
                v[e] = (double)x[i * S + j], gy[e] = (double)dz[i * S + j], gl[e] = (double)dld[i];
            }
            nf_rqs_backward_block(tp, 1, s->K, s->B, m, v, gy, gl, gx, gp);
            for (int e = 0; e < m; e++) {
                dx[(i0 + e) * S + j] = (nf_real)gx[e];
                for (int32_t p = 0; p < P; p++) acc[p] += (double)g1[e][p];
            }
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
