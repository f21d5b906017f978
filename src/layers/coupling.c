/* coupling.c — coupling layers on (n, D) vectors (NICE additive, RealNVP/Glow affine) and the part every
 * coupling shares (the image couplings and the split are in conv_coupling.c; private header
 * coupling_impl.h).
 *
 * The coordinates are split into a conditioning part a (indices ia) and a transformed part b (ib):
 *   additive (NICE):           z_a = x_a,  z_b = x_b + m(x_a)                          log|det| = 0
 *   affine, tanh (RealNVP):    (h_s, h_t) = m(x_a), s = tanh(h_s), z_b = x_b·exp(s) + h_t   log|det| = Σ s
 *   affine, sigmoid (Glow):    (h_t, h_s) = m(x_a), σ = sigmoid(h_s + 2), z_b = (x_b + h_t)·σ
 *                                                                                 log|det| = Σ log σ
 * m is an MLP (vectors) or Glow's conv net (images); its last layer starts at zero, so every coupling
 * starts as the identity. Each formula is one function below (forward, inverse, backward). */
#include "layers/coupling_impl.h"

/* ------------------------------------------------------------------ shared bookkeeping */
/* Floats of net output per row. */
static int64_t net_out(const coupling *c) { return c->conv ? (int64_t)c->cnet.cout * c->cnet.H * c->cnet.W : c->net.out; }
/* Floats of the net's cache for n rows. */
static int64_t net_cache(const coupling *c, int64_t n) { return c->conv ? nf_convnet_cache_size(&c->cnet, n) : nf_mlp_cache_size(&c->net, n); }
/* Scratch floats the net needs for forward (conv) and backward, n rows. */
static int64_t net_work(const coupling *c, int64_t n) { return c->conv ? nf_convnet_work_size(&c->cnet, n) : 2 * n * c->net.hidden; }

/* Cache floats for n rows: x_a | h | net cache (see coupling_impl.h). */
int64_t nf_coupling_cache_size(const nf_layer *L, int64_t n) {
    const coupling *c = (const coupling *)L;
    return n * c->na + n * net_out(c) + net_cache(c, n);
}

/* Scratch floats for n rows: the larger of backward's (dh | dx_a | net) and inverse's (cache | net). */
int64_t nf_coupling_work_size(const nf_layer *L, int64_t n) {
    const coupling *c = (const coupling *)L;
    int64_t bw = n * net_out(c) + n * c->na + net_work(c, n); /* backward */
    int64_t iw = nf_coupling_cache_size(L, n) + net_work(c, n); /* inverse (the forward needs net_work) */
    return bw > iw ? bw : iw;
}

/* FLOPs of one sample through the net. */
int64_t nf_coupling_flops(const nf_layer *L) {
    const coupling *c = (const coupling *)L;
    return c->conv ? nf_convnet_flops(&c->cnet) : nf_mlp_flops(&c->net);
}

/* Initialise the net's parameters (last layer zero unless init_std > 0). */
void nf_coupling_init(nf_layer *L, nf_rng *rng) {
    coupling *c = (coupling *)L;
    if (c->conv) nf_convnet_init(&c->cnet, NF_P(L, c->cnet.off), rng);
    else nf_mlp_init(&c->net, NF_P(L, c->net.off), rng);
}

/* Free the partition arrays the coupling owns (not the struct). */
void nf_coupling_destroy(nf_layer *L) {
    coupling *c = (coupling *)L;
    free(c->ia);
    free(c->ib);
}

/* Run the net on the conditioning half of x (rows ld apart) and the context (L->ctx; conditional
 * couplings): fills x_a and h (both in buf) and the net's cache after them; work: net_work floats. */
static void cp_net(const coupling *c, const nf_real *x, int64_t n, nf_real *buf, nf_real *work) {
    int32_t S = c->base.ld;
    nf_real *xa = buf, *h = buf + n * c->na, *mc = h + n * net_out(c);
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < c->na; j++) xa[i * c->na + j] = x[i * S + c->ia[j]];
    if (c->conv) nf_convnet_forward(&c->cnet, NF_P(&c->base, c->cnet.off), xa, c->base.ctx, h, n, mc, work);
    else nf_mlp_forward(&c->net, NF_P(&c->base, c->net.off), xa, c->base.ctx, h, n, mc);
}

/* ops->forward of every coupling: the net on x_a, then the variant's forward loop. Always NF_OK. */
nf_status nf_coupling_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                              nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(training);
    const coupling *c = (const coupling *)L;
    cp_net(c, x, n, cache, work);
    c->math->forward(c, x, cache + n * c->na, z, logdet, n);
    return NF_OK;
}

/* ops->inverse of every coupling: z_a = x_a, so the net sees the same input; then the variant's inverse. */
nf_status nf_coupling_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                              nf_real *work) {
    const coupling *c = (const coupling *)L;
    cp_net(c, z, n, work, work + nf_coupling_cache_size(L, n));
    c->math->inverse(c, z, work + n * c->na, x, logdet, n);
    return NF_OK;
}

/* ops->backward of every coupling: the variant's loop gives dx_b and dh; the net's backward adds its
 * parameter gradients (and ∂L/∂c into L->dctx) and gives dx_a, which is added into dx. Always NF_OK. */
nf_status nf_coupling_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                               const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(training);
    const coupling *c = (const coupling *)L;
    int32_t S = L->ld, na = c->na;
    int64_t no = net_out(c);
    const nf_real *xa = cache, *h = cache + n * na, *mc = h + n * no;
    nf_real *dh = work, *dxa = dh + n * no, *mwork = dxa + n * na;
    c->math->backward(c, x, h, dz, dld, dx, dh, n);
    if (c->conv) nf_convnet_backward(&c->cnet, NF_P(L, c->cnet.off), NF_G(L, c->cnet.off), xa, L->ctx, mc, dh, dxa, L->dctx, n, mwork);
    else nf_mlp_backward(&c->net, NF_P(L, c->net.off), NF_G(L, c->net.off), xa, L->ctx, mc, dh, dxa, L->dctx, n, mwork);
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < na; j++) dx[i * S + c->ia[j]] += dxa[i * na + j];
    return NF_OK;
}

/* ------------------------------------------------------------------ additive (NICE): z_b = x_b + h */
/* Rows [i0, i1): z_b = x_b + sign·h, z_a = x_a (log|det| = 0, so logdet is left as it is). */
static void additive_rows(const coupling *c, const nf_real *x, const nf_real *h, nf_real sign, nf_real *z, int64_t i0, int64_t i1) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
    for (int64_t i = i0; i < i1; i++) {
        const nf_real *xi = x + i * S, *hr = h + i * nb;
        nf_real *zi = z + i * S;
        memcpy(zi, xi, sizeof(nf_real) * (size_t)D);
        for (int32_t j = 0; j < nb; j++) zi[c->ib[j]] = xi[c->ib[j]] + sign * hr[j];
    }
}

/* z_b = x_b + h, z_a = x_a; log|det| = 0 (logdet += 0). */
static void additive_forward(const coupling *c, const nf_real *x, const nf_real *h, nf_real *z, nf_real *logdet, int64_t n) {
    NF_UNUSED(logdet);
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, c->base.dim), n, additive_rows(c, x, h, 1, z, lo, hi));
}

/* x_b = z_b − h; logdet −= 0. */
static void additive_inverse(const coupling *c, const nf_real *z, const nf_real *h, nf_real *x, nf_real *logdet, int64_t n) {
    NF_UNUSED(logdet);
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, c->base.dim), n, additive_rows(c, z, h, -1, x, lo, hi));
}

/* Rows [i0, i1) of additive_backward. */
static void additive_backward_rows(const coupling *c, const nf_real *dz, nf_real *dx, nf_real *dh, int64_t i0, int64_t i1) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
    for (int64_t i = i0; i < i1; i++) {
        const nf_real *dzi = dz + i * S;
        nf_real *dxi = dx + i * S, *dhi = dh + i * nb;
        memcpy(dxi, dzi, sizeof(nf_real) * (size_t)D);
        for (int32_t j = 0; j < nb; j++) dhi[j] = dzi[c->ib[j]];
    }
}

/* dx = dz (∂z_b/∂x_b = 1), dh = dz_b. */
static void additive_backward(const coupling *c, const nf_real *x, const nf_real *h, const nf_real *dz,
                              const nf_real *dld, nf_real *dx, nf_real *dh, int64_t n) {
    NF_UNUSED(x), NF_UNUSED(h), NF_UNUSED(dld);
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, c->base.dim), n, additive_backward_rows(c, dz, dx, dh, lo, hi));
}

const nf_coupling_math nf_coupling_additive = {1, additive_forward, additive_inverse, additive_backward};

/* ------------------------------------------------------------------ affine, bounded scale (RealNVP, Glow)
 * Both affine couplings are z_b = (x_b + a)·e^s + b with log|det| = Σ s, s bounded (layer.h's
 * nf_affine_scales):
 *   tanh (RealNVP):    (h_s, h_t) = h, s = tanh(h_s),       a = 0,   b = h_t
 *   sigmoid (Glow):    (h_t, h_s) = h, s = log σ(h_s + 2),  a = h_t, b = 0
 * The scales go through one vector call per block of at most AFF_BLOCK values: whole rows when a row
 * has at most AFF_BLOCK of them (2-D data: one a row, so 256 rows a call), else AFF_BLOCK of one row's.
 * The blocks follow from n and nb alone, and a row's log-det is summed in coordinate order, so results
 * do not depend on the thread count. */
#define AFF_BLOCK 256

/* Rows per block: all of a block's rows' scales fit one call. */
static int64_t aff_rows(int32_t nb) { return nb <= AFF_BLOCK ? AFF_BLOCK / nb : 1; }

/* Where a row of h = (h_s, h_t) or (h_t, h_s) holds h_s and h_t. */
static int32_t hs_at(nf_scale_type sc, int32_t nb) { return sc == NF_SCALE_TANH ? 0 : nb; }
static int32_t ht_at(nf_scale_type sc, int32_t nb) { return sc == NF_SCALE_TANH ? nb : 0; }

/* s, e (and ds, may be NULL) at [q·m + j] for rows i0 … i0 + r − 1, coordinates j0 … j0 + m − 1 (r·m ≤
 * AFF_BLOCK) of the net output h (rows 2·nb apart). */
static void aff_scales(nf_scale_type sc, const nf_real *h, int32_t nb, int64_t i0, int64_t r, int32_t j0, int32_t m,
                       nf_real *s, nf_real *e, nf_real *ds) {
    nf_real hs[AFF_BLOCK];
    for (int64_t q = 0; q < r; q++) memcpy(hs + q * m, h + (i0 + q) * 2 * nb + hs_at(sc, nb) + j0, sizeof(nf_real) * (size_t)m);
    nf_affine_scales(sc, hs, r * m, s, e, ds);
}

/* Blocks [b0, b1) of affine_map (aff_rows rows a block). */
static void affine_map_blocks(const coupling *c, nf_scale_type sc, const nf_real *in, const nf_real *h, nf_real *out,
                              nf_real *logdet, int64_t n, int inverse, int64_t b0, int64_t b1) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb, glow = sc == NF_SCALE_SIGMOID;
    int64_t R = aff_rows(nb);
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t i0 = blk * R, r = n - i0 < R ? n - i0 : R;
        double ld[AFF_BLOCK];
        nf_real s[AFF_BLOCK], e[AFF_BLOCK];
        for (int64_t q = 0; q < r; q++) {
            memcpy(out + (i0 + q) * S, in + (i0 + q) * S, sizeof(nf_real) * (size_t)D);
            ld[q] = 0;
        }
        for (int32_t j0 = 0; j0 < nb; j0 += AFF_BLOCK) {
            int32_t m = nb - j0 < AFF_BLOCK ? nb - j0 : AFF_BLOCK;
            aff_scales(sc, h, nb, i0, r, j0, m, s, e, NULL);
            for (int64_t q = 0; q < r; q++) {
                const nf_real *ini = in + (i0 + q) * S, *ht = h + (i0 + q) * 2 * nb + ht_at(sc, nb) + j0;
                nf_real *outi = out + (i0 + q) * S;
                for (int32_t j = 0; j < m; j++) {
                    int32_t k = c->ib[j0 + j];
                    nf_real a = glow ? ht[j] : 0, b = glow ? 0 : ht[j], ej = e[q * m + j];
                    outi[k] = inverse ? (ini[k] - b) / ej - a : (ini[k] + a) * ej + b;
                    ld[q] += s[q * m + j];
                }
            }
        }
        if (logdet)
            for (int64_t q = 0; q < r; q++) logdet[i0 + q] += (nf_real)(inverse ? -ld[q] : ld[q]);
    }
}

/* inverse 0: z_b = (x_b + a)·e^s + b, logdet += Σ s; inverse 1: x_b = (z_b − b)/e^s − a, logdet −= Σ s.
 * The other coordinates copied; logdet may be NULL. */
static void affine_map(const coupling *c, nf_scale_type sc, const nf_real *in, const nf_real *h, nf_real *out,
                       nf_real *logdet, int64_t n, int inverse) {
    int64_t R = aff_rows(c->nb);
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, c->base.dim), (n + R - 1) / R, affine_map_blocks(c, sc, in, h, out, logdet, n, inverse, lo, hi));
}

/* Blocks [b0, b1) of affine_backward (aff_rows rows a block). */
static void affine_backward_blocks(const coupling *c, nf_scale_type sc, const nf_real *x, const nf_real *h, const nf_real *dz,
                                   const nf_real *dld, nf_real *dx, nf_real *dh, int64_t n, int64_t b0, int64_t b1) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb, glow = sc == NF_SCALE_SIGMOID;
    int64_t R = aff_rows(nb);
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t i0 = blk * R, r = n - i0 < R ? n - i0 : R;
        nf_real s[AFF_BLOCK], e[AFF_BLOCK], ds[AFF_BLOCK];
        for (int64_t q = 0; q < r; q++) memcpy(dx + (i0 + q) * S, dz + (i0 + q) * S, sizeof(nf_real) * (size_t)D);
        for (int32_t j0 = 0; j0 < nb; j0 += AFF_BLOCK) {
            int32_t m = nb - j0 < AFF_BLOCK ? nb - j0 : AFF_BLOCK;
            aff_scales(sc, h, nb, i0, r, j0, m, s, e, ds);
            for (int64_t q = 0; q < r; q++) {
                int64_t i = i0 + q;
                const nf_real *xi = x + i * S, *dzi = dz + i * S, *ht = h + i * 2 * nb + ht_at(sc, nb) + j0;
                nf_real *dxi = dx + i * S, *dhs = dh + i * 2 * nb + hs_at(sc, nb) + j0, *dht = dh + i * 2 * nb + ht_at(sc, nb) + j0;
                for (int32_t j = 0; j < m; j++) {
                    int32_t k = c->ib[j0 + j];
                    nf_real ej = e[q * m + j], g = dzi[k] * ej, a = glow ? ht[j] : 0;
                    dxi[k] = g;
                    dht[j] = glow ? g : dzi[k];
                    dhs[j] = (g * (xi[k] + a) + dld[i]) * ds[q * m + j];
                }
            }
        }
    }
}

/* dx_b = dz_b·e^s; dh_s = (dz_b·(x_b + a)·e^s + dld)·ds/dh_s; dh_t = ∂z_b/∂h_t·dz_b = dz_b·e^s (Glow) or
 * dz_b (RealNVP). */
static void affine_backward(const coupling *c, nf_scale_type sc, const nf_real *x, const nf_real *h, const nf_real *dz,
                            const nf_real *dld, nf_real *dx, nf_real *dh, int64_t n) {
    int64_t R = aff_rows(c->nb);
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, c->base.dim), (n + R - 1) / R, affine_backward_blocks(c, sc, x, h, dz, dld, dx, dh, n, lo, hi));
}

/* nf_coupling_math's three loops: affine_map in each direction and affine_backward, with the coupling's
 * scale (c->scale). */
static void aff_forward(const coupling *c, const nf_real *x, const nf_real *h, nf_real *z, nf_real *logdet, int64_t n) {
    affine_map(c, c->scale, x, h, z, logdet, n, 0);
}
static void aff_inverse(const coupling *c, const nf_real *z, const nf_real *h, nf_real *x, nf_real *logdet, int64_t n) {
    affine_map(c, c->scale, z, h, x, logdet, n, 1);
}
static void aff_backward(const coupling *c, const nf_real *x, const nf_real *h, const nf_real *dz, const nf_real *dld,
                         nf_real *dx, nf_real *dh, int64_t n) {
    affine_backward(c, c->scale, x, h, dz, dld, dx, dh, n);
}

const nf_coupling_math nf_coupling_affine = {2, aff_forward, aff_inverse, aff_backward};

/* ------------------------------------------------------------------ construction */
/* Partition of 0..D−1 into a (conditioning) and b (transformed) into c->ia/ib (owned); parity 1 swaps
 * the roles. NF_ERR_NOMEM (reason set) on allocation failure. */
static nf_status make_partition(coupling *c, int32_t D, nf_partition part, int32_t parity) {
    int32_t nfirst = part == NF_PART_HALVES ? D / 2 : (D + 1) / 2; /* |first set| */
    int32_t *first = malloc(sizeof(int32_t) * (size_t)D), *second = malloc(sizeof(int32_t) * (size_t)D);
    if (!first || !second) {
        free(first), free(second);
        return nf_fail(NF_ERR_NOMEM, "out of memory for the partition of coupling %s", c->base.name);
    }
    int32_t n1 = 0, n2 = 0;
    for (int32_t j = 0; j < D; j++) {
        int in_first = part == NF_PART_HALVES ? j < nfirst : j % 2 == 0;
        if (in_first) first[n1++] = j;
        else second[n2++] = j;
    }
    if (parity % 2 == 0) c->ia = first, c->na = n1, c->ib = second, c->nb = n2;
    else c->ia = second, c->na = n2, c->ib = first, c->nb = n1;
    return NF_OK;
}

/* See coupling_impl.h. */
nf_status nf_coupling_new(nf_registry *r, const char *name, const nf_layer_ops *ops, const nf_coupling_math *math,
                          int32_t dim, nf_partition part, int32_t parity, coupling **out) {
    *out = NULL;
    coupling *c = nf_layer_alloc(sizeof *c, ops, r, name, dim);
    if (!c) return NF_ERR_NOMEM;
    c->math = math;
    nf_status st = make_partition(c, dim, part, parity);
    if (st) return free(c), st;
    *out = c;
    return NF_OK;
}

static const nf_layer_ops additive_ops = {"additive_coupling", nf_coupling_forward, nf_coupling_inverse, nf_coupling_backward,
                                          nf_coupling_cache_size, nf_coupling_work_size, nf_coupling_init, nf_coupling_destroy, nf_coupling_flops};
static const nf_layer_ops affine_ops = {"affine_coupling", nf_coupling_forward, nf_coupling_inverse, nf_coupling_backward,
                                        nf_coupling_cache_size, nf_coupling_work_size, nf_coupling_init, nf_coupling_destroy, nf_coupling_flops};

/* A vector coupling with an MLP m: [x_a (na), c (context)] → h (per_b·nb). Checks the arguments (NF_ERR_INVALID),
 * reserves the MLP's tensors; *out = the layer (caller frees with nf_layer_free) or NULL. */
static nf_status vector_coupling(nf_registry *r, const char *name, int32_t dim, nf_partition part, int32_t parity,
                                 int32_t hidden, int32_t layers, nf_activation act, const nf_layer_ops *ops,
                                 const nf_coupling_math *math, int32_t context, nf_layer **out) {
    *out = NULL;
    if (context < 0) return nf_fail(NF_ERR_INVALID, "%s: context of %d values", name, (int)context);
    if (dim < 2) return nf_fail(NF_ERR_INVALID, "%s: a coupling needs dim ≥ 2 (got %d)", name, (int)dim);
    if (part != NF_PART_HALVES && part != NF_PART_ODDEVEN) return nf_fail(NF_ERR_INVALID, "%s: unknown partition %d", name, (int)part);
    if (layers < 0 || (layers > 0 && hidden < 1))
        return nf_fail(NF_ERR_INVALID, "%s: hidden %d, layers %d: need layers ≥ 0 and hidden ≥ 1", name, (int)hidden, (int)layers);
    coupling *c;
    nf_status st = nf_coupling_new(r, name, ops, math, dim, part, parity, &c);
    if (st) return st;
    c->net.in = c->na;
    c->net.out = math->per_b * c->nb;
    c->net.hidden = hidden;
    c->net.layers = layers;
    c->net.act = act;
    c->net.ctx = c->base.ctx_dim = context;
    if ((st = nf_mlp_reserve(r, name, &c->net))) {
        nf_layer_free(&c->base);
        return st;
    }
    *out = &c->base;
    return NF_OK;
}

/* See layer.h: NICE's additive coupling. */
nf_status nf_additive_coupling_create(nf_registry *r, const char *name, int32_t dim, nf_partition part,
                                      int32_t parity, int32_t hidden, int32_t layers, nf_activation act,
                                      int32_t context, nf_layer **out) {
    return vector_coupling(r, name, dim, part, parity, hidden, layers, act, &additive_ops, &nf_coupling_additive, context, out);
}

/* See layer.h: the affine coupling with a tanh (RealNVP) or sigmoid (Glow) scale. */
nf_status nf_affine_coupling_create(nf_registry *r, const char *name, int32_t dim, nf_partition part,
                                    int32_t parity, int32_t hidden, int32_t layers, nf_activation act,
                                    nf_scale_type scale, int32_t context, nf_layer **out) {
    *out = NULL;
    if (scale != NF_SCALE_TANH && scale != NF_SCALE_SIGMOID) return nf_fail(NF_ERR_INVALID, "%s: unknown scale type %d", name, (int)scale);
    nf_status st = vector_coupling(r, name, dim, part, parity, hidden, layers, act, &affine_ops, &nf_coupling_affine, context, out);
    if (!st) ((coupling *)*out)->scale = scale;
    return st;
}

/* See layer.h: sets the init std of the last layer of the coupling's net (MLP or conv net). */
void nf_coupling_set_init_std(nf_layer *L, double std) {
    coupling *c = (coupling *)L;
    c->net.init_std = std, c->cnet.init_std = std;
}
