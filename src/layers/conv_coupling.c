/* conv_coupling.c — Glow's channel-split coupling on (C, H, W) images and Glow's split prior (shared
 * part and the additive/affine formulas: coupling.c; private header coupling_impl.h).
 *   coupling: a = the first C/2 channels, h = convnet(x_a) (conv3×3 → ReLU → (conv1×1 → ReLU)… →
 *             zero-conv3×3), then the additive or affine formula of coupling.c on the last C/2 channels
 *   split:    (μ, ls) = zero-conv3×3(x_a), z_b = (x_b − μ)·exp(−ls)               log|det| = −Σ ls
 *     (so log N(x_b; μ, e^ls) = log N(z_b; 0, 1) + log|det|: the factored-out half is scored by a
 *     learned conditional Gaussian and the flow keeps a standard normal prior over everything) */
#include "layers/coupling_impl.h"

/* ------------------------------------------------------------------ split: conditional Gaussian */
/* (μ, ls) = h. inverse 0: z_b = (x_b − μ)·exp(−ls), logdet += −Σ ls; inverse 1: x_b = z_b·exp(ls) + μ,
 * logdet −= −Σ ls. The other coordinates copied; logdet may be NULL. */
static void gaussian_map(const coupling *c, const nf_real *in, const nf_real *h, nf_real *out, nf_real *logdet, int64_t n, int inverse) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
#pragma omp parallel for schedule(static) NF_PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *ini = in + i * S, *hi = h + i * 2 * nb;
        nf_real *outi = out + i * S, ld = 0;
        memcpy(outi, ini, sizeof(nf_real) * (size_t)D);
        for (int32_t j = 0; j < nb; j++) {
            int32_t k = c->ib[j];
            outi[k] = inverse ? ini[k] * exp(hi[nb + j]) + hi[j] : (ini[k] - hi[j]) * exp(-hi[nb + j]);
            ld -= hi[nb + j];
        }
        if (logdet) logdet[i] += inverse ? -ld : ld;
    }
}

/* nf_coupling_math's forward and inverse: gaussian_map in each direction. */
static void gaussian_forward(const coupling *c, const nf_real *x, const nf_real *h, nf_real *z, nf_real *logdet, int64_t n) {
    gaussian_map(c, x, h, z, logdet, n, 0);
}
static void gaussian_inverse(const coupling *c, const nf_real *z, const nf_real *h, nf_real *x, nf_real *logdet, int64_t n) {
    gaussian_map(c, z, h, x, logdet, n, 1);
}

/* dx_b = dz_b·e^−ls; dμ = −dz_b·e^−ls; dls = −dz_b·z_b − dld. */
static void gaussian_backward(const coupling *c, const nf_real *x, const nf_real *h, const nf_real *dz,
                              const nf_real *dld, nf_real *dx, nf_real *dh, int64_t n) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
#pragma omp parallel for schedule(static) NF_PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *xi = x + i * S, *hi = h + i * 2 * nb, *dzi = dz + i * S;
        nf_real *dxi = dx + i * S, *dhi = dh + i * 2 * nb;
        memcpy(dxi, dzi, sizeof(nf_real) * (size_t)D);
        for (int32_t j = 0; j < nb; j++) {
            int32_t k = c->ib[j];
            nf_real e = exp(-hi[nb + j]), zk = (xi[k] - hi[j]) * e;
            dxi[k] = dzi[k] * e;
            dhi[j] = -dzi[k] * e;
            dhi[nb + j] = -dzi[k] * zk - dld[i];
        }
    }
}

static const nf_coupling_math gaussian_math = {2, gaussian_forward, gaussian_inverse, gaussian_backward};

/* ------------------------------------------------------------------ construction */
static const nf_layer_ops conv_additive_ops = {"conv_additive_coupling", nf_coupling_forward, nf_coupling_inverse, nf_coupling_backward,
                                               nf_coupling_cache_size, nf_coupling_work_size, nf_coupling_init, nf_coupling_destroy, nf_coupling_flops};
static const nf_layer_ops conv_affine_ops = {"conv_affine_coupling", nf_coupling_forward, nf_coupling_inverse, nf_coupling_backward,
                                             nf_coupling_cache_size, nf_coupling_work_size, nf_coupling_init, nf_coupling_destroy, nf_coupling_flops};
static const nf_layer_ops split_ops = {"split", nf_coupling_forward, nf_coupling_inverse, nf_coupling_backward,
                                       nf_coupling_cache_size, nf_coupling_work_size, nf_coupling_init, nf_coupling_destroy, nf_coupling_flops};

/* Channel-split coupling or split prior on (C, H, W) images (C even, H, W ≥ 1): a = the first C/2
 * channels, a conv net of `layers` hidden convs of `hidden` channels (conditional on `context` values
 * per sample when > 0: the bias W_c·c of its first conv). NF_ERR_INVALID for bad shapes,
 * NF_ERR_NOMEM; *out = the layer (caller frees with nf_layer_free) or NULL. */
static nf_status conv_coupling(nf_registry *r, const char *name, int32_t C, int32_t H, int32_t W, int32_t hidden,
                               int32_t layers, const nf_layer_ops *ops, const nf_coupling_math *math, int32_t context,
                               nf_layer **out) {
    *out = NULL;
    if (context < 0 || (context > 0 && layers < 1))
        return nf_fail(NF_ERR_INVALID, "%s: a context of %d values needs a conv net with a hidden layer", name, (int)context);
    if (C < 2 || C % 2 || H < 1 || W < 1)
        return nf_fail(NF_ERR_INVALID, "%s: a channel-split coupling needs an even number of channels ≥ 2 and H, W ≥ 1 (got %d × %d × %d)", name, (int)C, (int)H, (int)W);
    if (layers < 0 || (layers > 0 && hidden < 1))
        return nf_fail(NF_ERR_INVALID, "%s: hidden %d, layers %d: need layers ≥ 0 and hidden ≥ 1", name, (int)hidden, (int)layers);
    /* halves of the NCHW row: the first C/2 channels condition */
    coupling *c;
    nf_status st = nf_coupling_new(r, name, ops, math, C * H * W, NF_PART_HALVES, 0, &c);
    if (st) return st;
    c->conv = 1;
    c->cnet.cin = C / 2, c->cnet.H = H, c->cnet.W = W, c->cnet.hidden = hidden, c->cnet.layers = layers;
    c->cnet.cout = math->per_b * (C - C / 2);
    c->cnet.ctx = c->base.ctx_dim = context;
    if ((st = nf_convnet_reserve(r, name, &c->cnet))) {
        nf_layer_free(&c->base);
        return st;
    }
    *out = &c->base;
    return NF_OK;
}

/* See layer.h: Glow's image coupling, additive or affine (tanh or sigmoid scale). */
nf_status nf_conv_coupling_create(nf_registry *r, const char *name, int32_t C, int32_t H, int32_t W,
                                  int32_t hidden, int32_t layers, int additive, nf_scale_type scale, int32_t context,
                                  nf_layer **out) {
    *out = NULL;
    if (!additive && scale != NF_SCALE_TANH && scale != NF_SCALE_SIGMOID) return nf_fail(NF_ERR_INVALID, "%s: unknown scale type %d", name, (int)scale);
    nf_status st = conv_coupling(r, name, C, H, W, hidden, layers, additive ? &conv_additive_ops : &conv_affine_ops,
                                 additive ? &nf_coupling_additive : &nf_coupling_affine, context, out);
    if (!st && !additive) ((coupling *)*out)->scale = scale;
    return st;
}

/* See layer.h: Glow's split with a learned conditional Gaussian (a zero-conv3×3, no hidden layers). */
nf_status nf_split_create(nf_registry *r, const char *name, int32_t C, int32_t H, int32_t W, nf_layer **out) {
    return conv_coupling(r, name, C, H, W, 1, 0, &split_ops, &gaussian_math, 0, out);
}
