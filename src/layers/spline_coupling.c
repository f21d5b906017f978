/* spline_coupling.c — rational-quadratic spline couplings (Durkan et al. 2019): on (n, D) vectors with an
 * MLP conditioner, and on (C, H, W) images with Glow's conv net over a channel split. The shared part
 * (net call, sizes, backward bookkeeping) is coupling.c's; the spline itself is rqspline.c's.
 *   z_a = x_a,  θ = m(x_a),  z_b,j = g_θj(x_b,j)  (K bins on [−B, B], identity outside)
 *   log|det| = Σ_j log g'_θj(x_b,j)
 * Net output layout, per row: parameter-major, θ_q of transformed coordinate j at h[q·nb + j]
 * (q = 0 … 3K − 2: K widths, K heights, K − 1 derivatives), which for the conv net is output channel
 * q·(C/2) + c at each pixel. The net's last layer starts at zero: θ = 0 is the identity spline. */
#include "layers/coupling_impl.h"
#include "layers/rqspline.h"

/* The layout of the transformed values and their θ in the net's output h (parameter-major, see above). */
static nf_rqs_layout spline_layout(const coupling *c) {
    int64_t nb = c->nb;
    return (nf_rqs_layout){c->bins, c->bound, nb, c->ib, (int64_t)nf_rqs_num_params(c->bins) * nb, 1, nb};
}

/* Rows [i0, i1): z_b = g_θ(x_b) element-wise, z_a = x_a, logdet[i] += Σ log g' (inverse 0); or x_b =
 * g_θ⁻¹(z_b) (the stable root), x_a = z_a, logdet[i] −= Σ log g'(x_b) (inverse 1). logdet may be NULL. */
static void spline_rows(const coupling *c, const nf_real *in, const nf_real *h, nf_real *out, nf_real *logdet, int inverse,
                        int64_t i0, int64_t i1) {
    int32_t D = c->base.dim, S = c->base.ld;
    nf_rqs_layout g = spline_layout(c);
    for (int64_t i = i0; i < i1; i++) memcpy(out + i * S, in + i * S, sizeof(nf_real) * (size_t)D);
    nf_rqs_map_rows(&g, h, inverse, in, S, out, S, logdet, i0, i1);
}

/* spline_rows on rows [0, n), shared over the threads where the batch is large enough. */
static void spline_map(const coupling *c, const nf_real *in, const nf_real *h, nf_real *out, nf_real *logdet, int64_t n, int inverse) {
    NF_PARALLEL_RANGE(n * c->base.dim > 4096, n, spline_rows(c, in, h, out, logdet, inverse, lo, hi));
}

/* The coupling's forward and inverse (nf_coupling_math): spline_map in each direction. */
static void spline_forward(const coupling *c, const nf_real *x, const nf_real *h, nf_real *z, nf_real *logdet, int64_t n) {
    spline_map(c, x, h, z, logdet, n, 0);
}
static void spline_inverse(const coupling *c, const nf_real *z, const nf_real *h, nf_real *x, nf_real *logdet, int64_t n) {
    spline_map(c, z, h, x, logdet, n, 1);
}

/* Rows [i0, i1) of spline_backward. */
static void spline_backward_rows(const coupling *c, const nf_real *x, const nf_real *h, const nf_real *dz,
                                 const nf_real *dld, nf_real *dx, nf_real *dh, int64_t i0, int64_t i1) {
    int32_t D = c->base.dim, S = c->base.ld;
    nf_rqs_layout g = spline_layout(c);
    for (int64_t i = i0; i < i1; i++) memcpy(dx + i * S, dz + i * S, sizeof(nf_real) * (size_t)D);
    nf_rqs_backward_rows(&g, h, x, S, dz, S, 1, dld, 1, dx, S, dh, i0, i1);
}

/* dx_a = dz_a (the net's share is added by the caller), dx_b = g'·dz_b (+ dld·∂log g'/∂x), dh = ∂L/∂θ. */
static void spline_backward(const coupling *c, const nf_real *x, const nf_real *h, const nf_real *dz,
                            const nf_real *dld, nf_real *dx, nf_real *dh, int64_t n) {
    NF_PARALLEL_RANGE(n * c->base.dim > 4096, n, spline_backward_rows(c, x, h, dz, dld, dx, dh, lo, hi));
}

static const nf_coupling_math spline_math = {0, spline_forward, spline_inverse, spline_backward};

static const nf_layer_ops spline_ops = {"spline_coupling", nf_coupling_forward, nf_coupling_inverse, nf_coupling_backward,
                                        nf_coupling_cache_size, nf_coupling_work_size, nf_coupling_init, nf_coupling_destroy, nf_coupling_flops};
static const nf_layer_ops conv_spline_ops = {"conv_spline_coupling", nf_coupling_forward, nf_coupling_inverse, nf_coupling_backward,
                                             nf_coupling_cache_size, nf_coupling_work_size, nf_coupling_init, nf_coupling_destroy, nf_coupling_flops};

/* See layer.h: the spline coupling on vectors with an MLP conditioner. */
nf_status nf_spline_coupling_create(nf_registry *r, const char *name, int32_t dim, nf_partition part, int32_t parity,
                                    int32_t hidden, int32_t layers, nf_activation act, int32_t bins, double bound,
                                    int32_t context, nf_layer **out) {
    *out = NULL;
    if (context < 0) return nf_fail(NF_ERR_INVALID, "%s: context of %d values", name, (int)context);
    if (dim < 2) return nf_fail(NF_ERR_INVALID, "%s: a coupling needs dim ≥ 2 (got %d)", name, (int)dim);
    if (part != NF_PART_HALVES && part != NF_PART_ODDEVEN) return nf_fail(NF_ERR_INVALID, "%s: unknown partition %d", name, (int)part);
    if (layers < 0 || (layers > 0 && hidden < 1))
        return nf_fail(NF_ERR_INVALID, "%s: hidden %d, layers %d: need layers ≥ 0 and hidden ≥ 1", name, (int)hidden, (int)layers);
    nf_status st = nf_rqs_check(name, bins, bound);
    if (st) return st;
    coupling *c;
    if ((st = nf_coupling_new(r, name, &spline_ops, &spline_math, dim, part, parity, &c))) return st;
    c->bins = bins, c->bound = bound;
    c->net.in = c->na;
    c->net.out = nf_rqs_num_params(bins) * c->nb;
    c->net.hidden = hidden, c->net.layers = layers, c->net.act = act;
    c->net.ctx = c->base.ctx_dim = context;
    if ((st = nf_mlp_reserve(r, name, &c->net))) {
        nf_layer_free(&c->base);
        return st;
    }
    *out = &c->base;
    return NF_OK;
}

/* See layer.h: the spline coupling on (C, H, W) images; the first C/2 channels condition. */
nf_status nf_conv_spline_coupling_create(nf_registry *r, const char *name, int32_t C, int32_t H, int32_t W,
                                         int32_t hidden, int32_t layers, int32_t bins, double bound, int32_t context,
                                         nf_layer **out) {
    *out = NULL;
    if (context < 0 || (context > 0 && layers < 1))
        return nf_fail(NF_ERR_INVALID, "%s: a context of %d values needs a conv net with a hidden layer", name, (int)context);
    if (C < 2 || C % 2 || H < 1 || W < 1)
        return nf_fail(NF_ERR_INVALID, "%s: a channel-split coupling needs an even number of channels ≥ 2 and H, W ≥ 1 (got %d × %d × %d)", name, (int)C, (int)H, (int)W);
    if (layers < 0 || (layers > 0 && hidden < 1))
        return nf_fail(NF_ERR_INVALID, "%s: hidden %d, layers %d: need layers ≥ 0 and hidden ≥ 1", name, (int)hidden, (int)layers);
    nf_status st = nf_rqs_check(name, bins, bound);
    if (st) return st;
    coupling *c;
    if ((st = nf_coupling_new(r, name, &conv_spline_ops, &spline_math, C * H * W, NF_PART_HALVES, 0, &c))) return st;
    c->bins = bins, c->bound = bound;
    c->conv = 1;
    c->cnet.cin = C / 2, c->cnet.H = H, c->cnet.W = W, c->cnet.hidden = hidden, c->cnet.layers = layers;
    c->cnet.cout = nf_rqs_num_params(bins) * (C / 2);
    c->cnet.ctx = c->base.ctx_dim = context;
    if ((st = nf_convnet_reserve(r, name, &c->cnet))) {
        nf_layer_free(&c->base);
        return st;
    }
    *out = &c->base;
    return NF_OK;
}
