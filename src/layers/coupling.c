/* coupling.c — coupling layers (NICE additive, RealNVP/Glow affine) on (n, D) vectors.
 *
 * The coordinates are split into a conditioning part a (indices ia) and a transformed part b (ib):
 *   additive (NICE):           z_a = x_a,  z_b = x_b + m(x_a)                          log|det| = 0
 *   affine, tanh (RealNVP):    (h_s, h_t) = m(x_a), s = tanh(h_s), z_b = x_b·exp(s) + h_t   log|det| = Σ s
 *   affine, sigmoid (Glow):    (h_t, h_s) = m(x_a), σ = sigmoid(h_s + 2), z_b = (x_b + h_t)·σ
 *                                                                                 log|det| = Σ log σ
 *   gaussian (Glow's split):   (μ, ls) = m(x_a), z_b = (x_b − μ)·exp(−ls)           log|det| = −Σ ls
 *     (so log N(x_b; μ, e^ls) = log N(z_b; 0, 1) + log|det|: the factored-out half is scored by a
 *     learned conditional Gaussian and the flow keeps a standard normal prior over everything)
 * m is an MLP (vectors) or Glow's conv net (images, channel split: a = the first C/2 channels); its last
 * layer starts at zero, so every coupling starts as the identity.
 * Cache layout (n rows): x_a (n, na) | net output h (n, nout) | net cache. */
#include "layers/layer.h"
#include "nets/nets.h"

#define SCALE_GAUSS 2 /* internal scale mode of the split layer */

typedef struct {
    nf_layer base;
    int additive;
    int scale;      /* nf_scale_type or SCALE_GAUSS */
    int32_t na, nb;
    int32_t *ia, *ib;
    int conv;       /* 1: cnet, 0: net */
    nf_mlp net;
    nf_convnet cnet;
} coupling;

static int64_t net_out(const coupling *c) { return c->conv ? (int64_t)c->cnet.cout * c->cnet.H * c->cnet.W : c->net.out; }
static int64_t net_cache(const coupling *c, int64_t n) { return c->conv ? nf_convnet_cache_size(&c->cnet, n) : nf_mlp_cache_size(&c->net, n); }
/* scratch the net needs for forward (conv) and backward */
static int64_t net_work(const coupling *c, int64_t n) { return c->conv ? nf_convnet_work_size(&c->cnet, n) : 2 * n * c->net.hidden; }

static int64_t cp_cache_size(const nf_layer *L, int64_t n) {
    const coupling *c = (const coupling *)L;
    return n * c->na + n * net_out(c) + net_cache(c, n);
}

static int64_t cp_work_size(const nf_layer *L, int64_t n) {
    const coupling *c = (const coupling *)L;
    int64_t bw = n * net_out(c) + n * c->na + net_work(c, n); /* backward */
    int64_t iw = cp_cache_size(L, n) + net_work(c, n);         /* inverse (the forward needs net_work) */
    return bw > iw ? bw : iw;
}

static int64_t cp_flops(const nf_layer *L) {
    const coupling *c = (const coupling *)L;
    return c->conv ? nf_convnet_flops(&c->cnet) : nf_mlp_flops(&c->net);
}

static void cp_init(nf_layer *L, nf_rng *rng) {
    coupling *c = (coupling *)L;
    if (c->conv) nf_convnet_init(&c->cnet, NF_P(L, c->cnet.off), rng);
    else nf_mlp_init(&c->net, NF_P(L, c->net.off), rng);
}

static void cp_destroy(nf_layer *L) {
    coupling *c = (coupling *)L;
    free(c->ia);
    free(c->ib);
}

/* numerically stable log(sigmoid(v)) = −softplus(−v) */
static nf_real log_sigmoid(nf_real v) { return v >= 0 ? -log1p(exp(-v)) : v - log1p(exp(v)); }
static nf_real sigmoid(nf_real v) { return v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v)); }

/* Run the net on the conditioning half of x: fills xa and h (both in buf) and the net's cache. */
static void cp_net(const coupling *c, const nf_real *x, int64_t n, nf_real *buf, nf_real *work) {
    int32_t S = c->base.ld;
    nf_real *xa = buf, *h = buf + n * c->na, *mc = h + n * net_out(c);
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < c->na; j++) xa[i * c->na + j] = x[i * S + c->ia[j]];
    if (c->conv) nf_convnet_forward(&c->cnet, NF_P(&c->base, c->cnet.off), xa, h, n, mc, work);
    else nf_mlp_forward(&c->net, NF_P(&c->base, c->net.off), xa, h, n, mc);
}

static nf_status cp_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(training);
    coupling *c = (coupling *)L;
    int32_t D = L->dim, S = L->ld, nb = c->nb;
    int64_t no = net_out(c);
    cp_net(c, x, n, cache, work);
    const nf_real *h = cache + n * c->na;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *xi = x + i * S, *hi = h + i * no;
        nf_real *zi = z + i * S, ld = 0;
        memcpy(zi, xi, sizeof(nf_real) * (size_t)D);
        for (int32_t j = 0; j < nb; j++) {
            int32_t k = c->ib[j];
            if (c->additive) {
                zi[k] = xi[k] + hi[j];
            } else if (c->scale == NF_SCALE_TANH) {
                nf_real s = tanh(hi[j]);
                zi[k] = xi[k] * exp(s) + hi[nb + j];
                ld += s;
            } else if (c->scale == SCALE_GAUSS) {
                zi[k] = (xi[k] - hi[j]) * exp(-hi[nb + j]);
                ld -= hi[nb + j];
            } else {
                nf_real v = hi[nb + j] + 2;
                zi[k] = (xi[k] + hi[j]) * sigmoid(v);
                ld += log_sigmoid(v);
            }
        }
        if (logdet) logdet[i] += ld;
    }
    return NF_OK;
}

static nf_status cp_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    coupling *c = (coupling *)L;
    int32_t D = L->dim, S = L->ld, nb = c->nb;
    int64_t no = net_out(c);
    cp_net(c, z, n, work, work + cp_cache_size(L, n)); /* z_a = x_a, so the net sees the same input */
    const nf_real *h = work + n * c->na;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *zi = z + i * S, *hi = h + i * no;
        nf_real *xi = x + i * S, ld = 0;
        memcpy(xi, zi, sizeof(nf_real) * (size_t)D);
        for (int32_t j = 0; j < nb; j++) {
            int32_t k = c->ib[j];
            if (c->additive) {
                xi[k] = zi[k] - hi[j];
            } else if (c->scale == NF_SCALE_TANH) {
                nf_real s = tanh(hi[j]);
                xi[k] = (zi[k] - hi[nb + j]) * exp(-s);
                ld += s;
            } else if (c->scale == SCALE_GAUSS) {
                xi[k] = zi[k] * exp(hi[nb + j]) + hi[j];
                ld -= hi[nb + j];
            } else {
                nf_real v = hi[nb + j] + 2;
                xi[k] = zi[k] / sigmoid(v) - hi[j];
                ld += log_sigmoid(v);
            }
        }
        if (logdet) logdet[i] -= ld;
    }
    return NF_OK;
}

static void cp_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(training);
    coupling *c = (coupling *)L;
    int32_t D = L->dim, S = L->ld, nb = c->nb, na = c->na;
    int64_t no = net_out(c);
    const nf_real *xa = cache, *h = cache + n * na, *mc = h + n * no;
    nf_real *dh = work, *dxa = dh + n * no, *mwork = dxa + n * na;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *xi = x + i * S, *hi = h + i * no, *dzi = dz + i * S;
        nf_real *dxi = dx + i * S, *dhi = dh + i * no;
        memcpy(dxi, dzi, sizeof(nf_real) * (size_t)D);
        for (int32_t j = 0; j < nb; j++) {
            int32_t k = c->ib[j];
            if (c->additive) {
                dhi[j] = dzi[k];
            } else if (c->scale == NF_SCALE_TANH) {
                nf_real s = tanh(hi[j]), e = exp(s);
                dxi[k] = dzi[k] * e;
                nf_real ds = dzi[k] * xi[k] * e + dld[i];
                dhi[j] = ds * (1 - s * s);
                dhi[nb + j] = dzi[k];
            } else if (c->scale == SCALE_GAUSS) {
                nf_real e = exp(-hi[nb + j]), zk = (xi[k] - hi[j]) * e;
                dxi[k] = dzi[k] * e;
                dhi[j] = -dzi[k] * e;
                dhi[nb + j] = -dzi[k] * zk - dld[i];
            } else {
                nf_real v = hi[nb + j] + 2, sg = sigmoid(v);
                dxi[k] = dzi[k] * sg;
                dhi[j] = dzi[k] * sg;
                nf_real dsg = dzi[k] * (xi[k] + hi[j]);
                dhi[nb + j] = dsg * sg * (1 - sg) + dld[i] * (1 - sg);
            }
        }
    }
    if (c->conv) nf_convnet_backward(&c->cnet, NF_P(L, c->cnet.off), NF_G(L, c->cnet.off), xa, mc, dh, dxa, n, mwork);
    else nf_mlp_backward(&c->net, NF_P(L, c->net.off), NF_G(L, c->net.off), xa, mc, dh, dxa, n, mwork);
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < na; j++) dx[i * S + c->ia[j]] += dxa[i * na + j];
}

static const nf_layer_ops additive_ops = {"additive_coupling", cp_forward, cp_inverse, cp_backward,
                                          cp_cache_size,       cp_work_size, cp_init,  cp_destroy, cp_flops};
static const nf_layer_ops affine_ops = {"affine_coupling", cp_forward,   cp_inverse, cp_backward,
                                        cp_cache_size,     cp_work_size, cp_init,    cp_destroy, cp_flops};

/* Partition of 0..D-1 into a (conditioning) and b (transformed); parity 1 swaps the roles. */
static int make_partition(coupling *c, int32_t D, nf_partition part, int32_t parity) {
    int32_t nfirst = part == NF_PART_HALVES ? D / 2 : (D + 1) / 2; /* |first set| */
    int32_t *first = malloc(sizeof(int32_t) * (size_t)D), *second = malloc(sizeof(int32_t) * (size_t)D);
    if (!first || !second) {
        free(first), free(second);
        return 0;
    }
    int32_t n1 = 0, n2 = 0;
    for (int32_t j = 0; j < D; j++) {
        int in_first = part == NF_PART_HALVES ? j < nfirst : j % 2 == 0;
        if (in_first) first[n1++] = j;
        else second[n2++] = j;
    }
    if (parity % 2 == 0) c->ia = first, c->na = n1, c->ib = second, c->nb = n2;
    else c->ia = second, c->na = n2, c->ib = first, c->nb = n1;
    return 1;
}

/* The part every coupling shares: header, mode and partition. NULL on allocation failure. */
static coupling *coupling_new(nf_registry *ctx, const char *name, const nf_layer_ops *ops, int32_t dim,
                              nf_partition part, int32_t parity, int additive, int scale) {
    coupling *c = nf_xcalloc(1, sizeof *c);
    if (!c) return NULL;
    c->base.ops = ops;
    snprintf(c->base.name, sizeof c->base.name, "%s", name);
    c->base.dim = dim, c->base.ld = dim, c->base.reg = ctx;
    c->additive = additive, c->scale = scale;
    if (!make_partition(c, dim, part, parity)) return free(c), NULL;
    return c;
}

static nf_layer *coupling_create(nf_registry *ctx, const char *name, int32_t dim, nf_partition part,
                                 int32_t parity, int32_t hidden, int32_t layers, nf_activation act,
                                 int additive, nf_scale_type scale) {
    coupling *c = coupling_new(ctx, name, additive ? &additive_ops : &affine_ops, dim, part, parity, additive, (int)scale);
    if (!c) return NULL;
    c->net.in = c->na;
    c->net.out = additive ? c->nb : 2 * c->nb;
    c->net.hidden = hidden;
    c->net.layers = layers;
    c->net.act = act;
    if (nf_mlp_reserve(ctx, name, &c->net)) {
        cp_destroy(&c->base);
        free(c);
        return NULL;
    }
    return &c->base;
}

nf_layer *nf_additive_coupling_create(nf_registry *c, const char *name, int32_t dim, nf_partition part,
                                      int32_t parity, int32_t hidden, int32_t layers, nf_activation act) {
    return coupling_create(c, name, dim, part, parity, hidden, layers, act, 1, NF_SCALE_TANH);
}

nf_layer *nf_affine_coupling_create(nf_registry *c, const char *name, int32_t dim, nf_partition part,
                                    int32_t parity, int32_t hidden, int32_t layers, nf_activation act,
                                    nf_scale_type scale) {
    return coupling_create(c, name, dim, part, parity, hidden, layers, act, 0, scale);
}

void nf_coupling_set_init_std(nf_layer *L, double std) {
    coupling *c = (coupling *)L;
    c->net.init_std = std, c->cnet.init_std = std;
}

static const nf_layer_ops conv_additive_ops = {"conv_additive_coupling", cp_forward, cp_inverse, cp_backward,
                                               cp_cache_size, cp_work_size, cp_init, cp_destroy, cp_flops};
static const nf_layer_ops conv_affine_ops = {"conv_affine_coupling", cp_forward, cp_inverse, cp_backward,
                                             cp_cache_size, cp_work_size, cp_init, cp_destroy, cp_flops};
static const nf_layer_ops split_ops = {"split", cp_forward, cp_inverse, cp_backward,
                                       cp_cache_size, cp_work_size, cp_init, cp_destroy, cp_flops};

/* Channel-split coupling or split prior on (C, H, W) images: a = the first C/2 channels. */
static nf_layer *conv_coupling(nf_registry *ctx, const char *name, int32_t C, int32_t H, int32_t W, int32_t hidden,
                               int32_t layers, int additive, int scale, const nf_layer_ops *ops) {
    /* halves of the NCHW row: the first C/2 channels condition */
    coupling *c = coupling_new(ctx, name, ops, C * H * W, NF_PART_HALVES, 0, additive, scale);
    if (!c) return NULL;
    c->conv = 1;
    c->cnet.cin = C / 2, c->cnet.H = H, c->cnet.W = W, c->cnet.hidden = hidden, c->cnet.layers = layers;
    c->cnet.cout = (additive ? 1 : 2) * (C - C / 2);
    if (nf_convnet_reserve(ctx, name, &c->cnet)) {
        cp_destroy(&c->base);
        return free(c), NULL;
    }
    return &c->base;
}

nf_layer *nf_conv_coupling_create(nf_registry *c, const char *name, int32_t C, int32_t H, int32_t W,
                                  int32_t hidden, int32_t layers, int additive, nf_scale_type scale) {
    return conv_coupling(c, name, C, H, W, hidden, layers, additive, (int)scale, additive ? &conv_additive_ops : &conv_affine_ops);
}

nf_layer *nf_split_create(nf_registry *c, const char *name, int32_t C, int32_t H, int32_t W) {
    return conv_coupling(c, name, C, H, W, 1, 0, 0, SCALE_GAUSS, &split_ops);
}
