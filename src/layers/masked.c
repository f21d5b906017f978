/* masked.c — RealNVP's masked affine coupling on (C, H, W) images (Dinh et al. 2017, eq. 9):
 *   (h_s, h_t) = resnet(x ⊙ m),  s = scale_c · tanh(h_s) ⊙ (1 − m),  t = h_t ⊙ (1 − m)
 *   z = x ⊙ m + (1 − m) ⊙ (x ⊙ exp(s) + t)                      log|det ∂z/∂x| = Σ s
 * m = 1 marks the conditioning entries: a checkerboard ((i + j) mod 2 = parity) or a channel mask (the
 * first C/2 channels for parity 0, the last for parity 1). The net's first C output channels are h_s, the
 * last C are h_t; scale_c (per channel, starts at 1) lets s grow beyond ±1 smoothly. The net's output conv
 * starts at zero, so the layer starts as the identity.
 * Cache (n rows): x ⊙ m (n, D) | net output h (n, 2D) | net cache. */
#include "layers/layer.h"
#include "nets/nets.h"

typedef struct {
    nf_layer base;
    int32_t C, H, W;
    uint8_t *mask; /* (D): 1 = conditioning */
    nf_resnet net;
    int64_t off_scale;
} masked;

/* Cache floats for n rows: x ⊙ m (n, D) | h (n, 2D) | the ResNet's cache. */
static int64_t mk_cache_size(const nf_layer *L, int64_t n) {
    const masked *c = (const masked *)L;
    return 3 * n * L->dim + nf_resnet_cache_size(&c->net, n);
}

/* Scratch floats for n rows: the larger of backward's (dh, dxm | net) and inverse's (cache | net). */
static int64_t mk_work_size(const nf_layer *L, int64_t n) {
    const masked *c = (const masked *)L;
    int64_t bw = 3 * n * L->dim + nf_resnet_work_size(&c->net, n);                   /* dh, dxm | net */
    int64_t iw = mk_cache_size(L, n) + nf_resnet_work_size(&c->net, n);              /* inverse */
    return bw > iw ? bw : iw;
}

/* ops->init: the ResNet's parameters (output conv zero) and scale_c = 1. */
static void mk_init(nf_layer *L, nf_rng *rng) {
    masked *c = (masked *)L;
    nf_resnet_init(&c->net, NF_P(L, c->net.off), rng);
    nf_real *sc = NF_P(L, c->off_scale);
    for (int32_t k = 0; k < c->C; k++) sc[k] = 1;
}

/* FLOPs per sample: the ResNet's. */
static int64_t mk_flops(const nf_layer *L) { return nf_resnet_flops(&((const masked *)L)->net); }

/* ops->destroy: free the mask the layer owns. */
static void mk_destroy(nf_layer *L) { free(((masked *)L)->mask); }

/* xm = x ⊙ m, h = net(xm, L->ctx): both in buf, the net's cache after them */
static void mk_net(const masked *c, const nf_real *x, int64_t n, nf_real *buf, nf_real *work) {
    int32_t D = c->base.dim, S = c->base.ld;
    nf_real *xm = buf, *h = buf + n * D;
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < D; j++) xm[i * D + j] = c->mask[j] ? x[i * S + j] : 0;
    nf_resnet_forward(&c->net, NF_P(&c->base, c->net.off), xm, c->base.ctx, h, n, h + 2 * n * D, work);
}

/* dir > 0: z = coupling(x), logdet += Σ s; dir < 0: the inverse, logdet −= Σ s. buf holds mk_net's output. */
static void mk_apply(const masked *c, const nf_real *in, nf_real *out, nf_real *logdet, int64_t n,
                     const nf_real *buf, int dir) {
    int32_t D = c->base.dim, S = c->base.ld, P = c->H * c->W;
    const nf_real *h = buf + n * D, *sc = NF_P(&c->base, c->off_scale);
#pragma omp parallel for schedule(static) NF_PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *hi = h + i * 2 * D, *a = in + i * S;
        nf_real *b = out + i * S;
        double ld = 0;
        for (int32_t j = 0; j < D; j++) {
            if (c->mask[j]) {
                b[j] = a[j];
                continue;
            }
            nf_real s = sc[j / P] * tanh(hi[j]), t = hi[D + j];
            b[j] = dir > 0 ? a[j] * exp(s) + t : (a[j] - t) * exp(-s);
            ld += s;
        }
        if (logdet) logdet[i] += (nf_real)(dir > 0 ? ld : -ld);
    }
}

/* ops->forward: h = resnet(x ⊙ m) into the cache, then the coupling. NF_OK. */
static nf_status mk_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(training);
    const masked *c = (const masked *)L;
    mk_net(c, x, n, cache, work);
    mk_apply(c, x, z, logdet, n, cache, 1);
    return NF_OK;
}

/* ops->inverse: the same net on z ⊙ m = x ⊙ m (in work), then the inverse coupling. NF_OK. */
static nf_status mk_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    const masked *c = (const masked *)L;
    mk_net(c, z, n, work, work + mk_cache_size(L, n)); /* z ⊙ m = x ⊙ m: the net sees the same input */
    mk_apply(c, z, x, logdet, n, work, -1);
    return NF_OK;
}

/* ops->backward: dx overwritten, grads of the ResNet and scale_c +=. NF_OK. */
static nf_status mk_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(training);
    const masked *c = (const masked *)L;
    int32_t D = L->dim, S = L->ld, C = c->C, P = c->H * c->W;
    const nf_real *xm = cache, *h = cache + n * D, *sc = NF_P(L, c->off_scale);
    nf_real *dh = work, *dxm = dh + 2 * n * D, *gsc = NF_G(L, c->off_scale);
    /* channel-outer so that ∂L/∂scale_c is summed in a fixed order whatever the thread count */
#pragma omp parallel for schedule(static) NF_PAR_IF(n, D)
    for (int32_t ch = 0; ch < C; ch++) {
        double g = 0;
        for (int64_t i = 0; i < n; i++) {
            const nf_real *hi = h + i * 2 * D, *xi = x + i * S, *dzi = dz + i * S;
            nf_real *dhi = dh + i * 2 * D, *dxi = dx + i * S;
            for (int32_t j = ch * P; j < (ch + 1) * P; j++) {
                if (c->mask[j]) {
                    dxi[j] = dzi[j];
                    dhi[j] = dhi[D + j] = 0;
                    continue;
                }
                nf_real th = tanh(hi[j]), e = exp(sc[ch] * th);
                nf_real ds = dzi[j] * xi[j] * e + dld[i];
                dxi[j] = dzi[j] * e;
                dhi[j] = ds * sc[ch] * (1 - th * th);
                dhi[D + j] = dzi[j];
                g += (double)ds * th;
            }
        }
        gsc[ch] += (nf_real)g;
    }
    nf_resnet_backward(&c->net, NF_P(L, c->net.off), NF_G(L, c->net.off), xm, L->ctx, h + 2 * n * D, dh, dxm, L->dctx, n, dxm + n * D);
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < D; j++)
            if (c->mask[j]) dx[i * S + j] += dxm[i * D + j];
    return NF_OK;
}

static const nf_layer_ops masked_ops = {"masked_coupling", mk_forward, mk_inverse, mk_backward,
                                        mk_cache_size,     mk_work_size, mk_init,  mk_destroy, mk_flops};

/* See layer.h: C, H, W ≥ 1 (C even for a channel mask), width ≥ 1,
 * blocks ≥ 0; NF_ERR_INVALID otherwise, NF_ERR_NOMEM on allocation failure. */
nf_status nf_masked_coupling_create(nf_registry *ctx, const char *name, int32_t C, int32_t H, int32_t W,
                                    nf_mask_type type, int32_t parity, int32_t width, int32_t blocks,
                                    int32_t context, nf_layer **out) {
    *out = NULL;
    if (context < 0) return nf_fail(NF_ERR_INVALID, "%s: context of %d values", name, (int)context);
    if (C < 1 || H < 1 || W < 1) return nf_fail(NF_ERR_INVALID, "%s: masked coupling on %d × %d × %d: need C, H, W ≥ 1", name, (int)C, (int)H, (int)W);
    if (type != NF_MASK_CHECKERBOARD && type != NF_MASK_CHANNEL) return nf_fail(NF_ERR_INVALID, "%s: unknown mask type %d", name, (int)type);
    if (type == NF_MASK_CHANNEL && C % 2) return nf_fail(NF_ERR_INVALID, "%s: a channel mask needs an even number of channels (got %d)", name, (int)C);
    if (width < 1 || blocks < 0) return nf_fail(NF_ERR_INVALID, "%s: ResNet width %d, blocks %d: need width ≥ 1, blocks ≥ 0", name, (int)width, (int)blocks);
    int32_t D = C * H * W, P = H * W;
    masked *c = nf_layer_alloc(sizeof *c, &masked_ops, ctx, name, D);
    if (!c) return NF_ERR_NOMEM;
    if (!(c->mask = malloc((size_t)D))) {
        free(c);
        return nf_fail(NF_ERR_NOMEM, "out of memory for the mask of %s", name);
    }
    c->C = C, c->H = H, c->W = W;
    for (int32_t j = 0; j < D; j++) {
        int32_t ch = j / P, y = (j % P) / W, x = j % W;
        c->mask[j] = (uint8_t)(type == NF_MASK_CHECKERBOARD ? (y + x) % 2 == parity % 2 : (ch < C / 2) == (parity % 2 == 0));
    }
    c->net = (nf_resnet){.cin = C, .cout = 2 * C, .width = width, .blocks = blocks, .H = H, .W = W, .ctx = context};
    c->base.ctx_dim = context;
    c->off_scale = nf_resnet_reserve(ctx, name, &c->net) ? -1 : nf_registry_reserve_vec(ctx, name, "scale", NF_TENSOR_PARAM, C);
    if (c->off_scale < 0) {
        nf_layer_free(&c->base);
        return NF_ERR_NOMEM; /* reason set by the registry */
    }
    *out = &c->base;
    return NF_OK;
}

/* See layer.h: the init std of the ResNet's output conv. */
void nf_masked_coupling_set_init_std(nf_layer *L, double std) { ((masked *)L)->net.init_std = std; }
