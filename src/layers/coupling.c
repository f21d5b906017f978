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
/* z_b = x_b + h, z_a = x_a; log|det| = 0 (logdet += 0). */
static void additive_forward(const coupling *c, const nf_real *x, const nf_real *h, nf_real *z, nf_real *logdet, int64_t n) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *xi = x + i * S, *hi = h + i * nb;
        nf_real *zi = z + i * S, ld = 0;
        memcpy(zi, xi, sizeof(nf_real) * (size_t)D);
        for (int32_t j = 0; j < nb; j++) zi[c->ib[j]] = xi[c->ib[j]] + hi[j];
        if (logdet) logdet[i] += ld;
    }
}

/* x_b = z_b − h; logdet −= 0. */
static void additive_inverse(const coupling *c, const nf_real *z, const nf_real *h, nf_real *x, nf_real *logdet, int64_t n) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *zi = z + i * S, *hi = h + i * nb;
        nf_real *xi = x + i * S, ld = 0;
        memcpy(xi, zi, sizeof(nf_real) * (size_t)D);
        for (int32_t j = 0; j < nb; j++) xi[c->ib[j]] = zi[c->ib[j]] - hi[j];
        if (logdet) logdet[i] -= ld;
    }
}

/* dx = dz (∂z_b/∂x_b = 1), dh = dz_b. */
static void additive_backward(const coupling *c, const nf_real *x, const nf_real *h, const nf_real *dz,
                              const nf_real *dld, nf_real *dx, nf_real *dh, int64_t n) {
    NF_UNUSED(x), NF_UNUSED(h), NF_UNUSED(dld);
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *dzi = dz + i * S;
        nf_real *dxi = dx + i * S, *dhi = dh + i * nb;
        memcpy(dxi, dzi, sizeof(nf_real) * (size_t)D);
        for (int32_t j = 0; j < nb; j++) dhi[j] = dzi[c->ib[j]];
    }
}

const nf_coupling_math nf_coupling_additive = {1, additive_forward, additive_inverse, additive_backward};

/* ------------------------------------------------------------------ affine, tanh scale (RealNVP)
 * The scales s = tanh(h_s) and e^s go through one vector call (vmath.c's nf_tanh_exp) per block of at
 * most TANH_BLOCK values: whole rows when a row has at most TANH_BLOCK of them (2-D data: one a row, so
 * 256 rows a call), else TANH_BLOCK of one row's. The blocks follow from n and nb alone, and a row's
 * log-det is summed in coordinate order, so results do not depend on the thread count. */
#define TANH_BLOCK 256

/* Rows per block: all of a block's rows' scales fit one call. */
static int64_t tanh_rows(int32_t nb) { return nb <= TANH_BLOCK ? TANH_BLOCK / nb : 1; }

/* t[q·m + j] = tanh(h_s) and e[q·m + j] = e^t of rows i0 … i0 + r − 1, coordinates j0 … j0 + m − 1
 * (r·m ≤ TANH_BLOCK) of the net output h (rows 2·nb apart, the nb h_s first). */
static void tanh_scales(const nf_real *h, int32_t nb, int64_t i0, int64_t r, int32_t j0, int32_t m, nf_real *t, nf_real *e) {
    nf_real hs[TANH_BLOCK];
    for (int64_t q = 0; q < r; q++) memcpy(hs + q * m, h + (i0 + q) * 2 * nb + j0, sizeof(nf_real) * (size_t)m);
    nf_tanh_exp(hs, t, e, r * m);
}

/* (h_s, h_t) = h. inverse 0: z_b = x_b·exp(tanh(h_s)) + h_t, logdet += Σ tanh(h_s); inverse 1: x_b =
 * (z_b − h_t) / exp(tanh(h_s)), logdet −= Σ tanh(h_s). The other coordinates copied; logdet may be NULL. */
static void affine_tanh_map(const coupling *c, const nf_real *in, const nf_real *h, nf_real *out, nf_real *logdet, int64_t n, int inverse) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
    int64_t R = tanh_rows(nb), blocks = (n + R - 1) / R;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t i0 = b * R, r = n - i0 < R ? n - i0 : R;
        nf_real ld[TANH_BLOCK], t[TANH_BLOCK], e[TANH_BLOCK];
        for (int64_t q = 0; q < r; q++) {
            memcpy(out + (i0 + q) * S, in + (i0 + q) * S, sizeof(nf_real) * (size_t)D);
            ld[q] = 0;
        }
        for (int32_t j0 = 0; j0 < nb; j0 += TANH_BLOCK) {
            int32_t m = nb - j0 < TANH_BLOCK ? nb - j0 : TANH_BLOCK;
            tanh_scales(h, nb, i0, r, j0, m, t, e);
            for (int64_t q = 0; q < r; q++) {
                const nf_real *ini = in + (i0 + q) * S, *ht = h + (i0 + q) * 2 * nb + nb + j0;
                nf_real *outi = out + (i0 + q) * S;
                for (int32_t j = 0; j < m; j++) {
                    int32_t k = c->ib[j0 + j];
                    outi[k] = inverse ? (ini[k] - ht[j]) / e[q * m + j] : ini[k] * e[q * m + j] + ht[j];
                    ld[q] += t[q * m + j];
                }
            }
        }
        if (logdet)
            for (int64_t q = 0; q < r; q++) logdet[i0 + q] += inverse ? -ld[q] : ld[q];
    }
}

/* nf_coupling_math's forward and inverse: affine_tanh_map in each direction. */
static void affine_tanh_forward(const coupling *c, const nf_real *x, const nf_real *h, nf_real *z, nf_real *logdet, int64_t n) {
    affine_tanh_map(c, x, h, z, logdet, n, 0);
}
static void affine_tanh_inverse(const coupling *c, const nf_real *z, const nf_real *h, nf_real *x, nf_real *logdet, int64_t n) {
    affine_tanh_map(c, z, h, x, logdet, n, 1);
}

/* dx_b = dz_b·e^s; dh_s = (dz_b·x_b·e^s + dld)·(1 − s²); dh_t = dz_b. */
static void affine_tanh_backward(const coupling *c, const nf_real *x, const nf_real *h, const nf_real *dz,
                                 const nf_real *dld, nf_real *dx, nf_real *dh, int64_t n) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
    int64_t R = tanh_rows(nb), blocks = (n + R - 1) / R;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t i0 = b * R, r = n - i0 < R ? n - i0 : R;
        nf_real t[TANH_BLOCK], e[TANH_BLOCK];
        for (int64_t q = 0; q < r; q++) memcpy(dx + (i0 + q) * S, dz + (i0 + q) * S, sizeof(nf_real) * (size_t)D);
        for (int32_t j0 = 0; j0 < nb; j0 += TANH_BLOCK) {
            int32_t m = nb - j0 < TANH_BLOCK ? nb - j0 : TANH_BLOCK;
            tanh_scales(h, nb, i0, r, j0, m, t, e);
            for (int64_t q = 0; q < r; q++) {
                int64_t i = i0 + q;
                const nf_real *xi = x + i * S, *dzi = dz + i * S;
                nf_real *dxi = dx + i * S, *dhi = dh + i * 2 * nb + j0;
                for (int32_t j = 0; j < m; j++) {
                    int32_t k = c->ib[j0 + j];
                    nf_real s = t[q * m + j], ej = e[q * m + j];
                    dxi[k] = dzi[k] * ej;
                    dhi[j] = (dzi[k] * xi[k] * ej + dld[i]) * (1 - s * s);
                    dhi[nb + j] = dzi[k];
                }
            }
        }
    }
}

const nf_coupling_math nf_coupling_affine_tanh = {2, affine_tanh_forward, affine_tanh_inverse, affine_tanh_backward};

/* ------------------------------------------------------------------ affine, sigmoid scale (Glow) */

/* The sigmoid scales of a row are computed SIG_BLOCK at a time into a stack buffer, as one vector call
 * (kernels/vmath.c: libmvec's expf and log1pf; the scalar calls were 3 % of glow-small's training). */
#define SIG_BLOCK 256

/* (h_t, h_s) = h, σ = sigmoid(h_s + 2): z_b = (x_b + h_t)·σ; log|det| = Σ log σ. */
static void affine_sigmoid_forward(const coupling *c, const nf_real *x, const nf_real *h, nf_real *z, nf_real *logdet, int64_t n) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *xi = x + i * S, *hi = h + i * 2 * nb;
        nf_real *zi = z + i * S, sg[SIG_BLOCK];
        double ld = 0;
        memcpy(zi, xi, sizeof(nf_real) * (size_t)D);
        for (int32_t j0 = 0; j0 < nb; j0 += SIG_BLOCK) {
            int32_t m = nb - j0 < SIG_BLOCK ? nb - j0 : SIG_BLOCK;
            ld += nf_sigmoid_shift(hi + nb + j0, 2, sg, m, logdet != NULL);
            for (int32_t j = j0; j < j0 + m; j++) {
                int32_t k = c->ib[j];
                zi[k] = (xi[k] + hi[j]) * sg[j - j0];
            }
        }
        if (logdet) logdet[i] += (nf_real)ld;
    }
}

/* x_b = z_b/σ − h_t; logdet −= Σ log σ. */
static void affine_sigmoid_inverse(const coupling *c, const nf_real *z, const nf_real *h, nf_real *x, nf_real *logdet, int64_t n) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *zi = z + i * S, *hi = h + i * 2 * nb;
        nf_real *xi = x + i * S, sg[SIG_BLOCK];
        double ld = 0;
        memcpy(xi, zi, sizeof(nf_real) * (size_t)D);
        for (int32_t j0 = 0; j0 < nb; j0 += SIG_BLOCK) {
            int32_t m = nb - j0 < SIG_BLOCK ? nb - j0 : SIG_BLOCK;
            ld += nf_sigmoid_shift(hi + nb + j0, 2, sg, m, logdet != NULL);
            for (int32_t j = j0; j < j0 + m; j++) {
                int32_t k = c->ib[j];
                xi[k] = zi[k] / sg[j - j0] - hi[j];
            }
        }
        if (logdet) logdet[i] -= (nf_real)ld;
    }
}

/* dx_b = dz_b·σ; dh_t = dz_b·σ; dh_s = dz_b·(x_b + h_t)·σ(1 − σ) + dld·(1 − σ). */
static void affine_sigmoid_backward(const coupling *c, const nf_real *x, const nf_real *h, const nf_real *dz,
                                    const nf_real *dld, nf_real *dx, nf_real *dh, int64_t n) {
    int32_t D = c->base.dim, S = c->base.ld, nb = c->nb;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t i = 0; i < n; i++) {
        const nf_real *xi = x + i * S, *hi = h + i * 2 * nb, *dzi = dz + i * S;
        nf_real *dxi = dx + i * S, *dhi = dh + i * 2 * nb;
        nf_real sgb[SIG_BLOCK];
        memcpy(dxi, dzi, sizeof(nf_real) * (size_t)D);
        for (int32_t j0 = 0; j0 < nb; j0 += SIG_BLOCK) {
            int32_t m = nb - j0 < SIG_BLOCK ? nb - j0 : SIG_BLOCK;
            nf_sigmoid_shift(hi + nb + j0, 2, sgb, m, 0);
            for (int32_t j = j0; j < j0 + m; j++) {
                int32_t k = c->ib[j];
                nf_real sg = sgb[j - j0];
                dxi[k] = dzi[k] * sg;
                dhi[j] = dzi[k] * sg;
                nf_real dsg = dzi[k] * (xi[k] + hi[j]);
                dhi[nb + j] = dsg * sg * (1 - sg) + dld[i] * (1 - sg);
            }
        }
    }
}

const nf_coupling_math nf_coupling_affine_sigmoid = {2, affine_sigmoid_forward, affine_sigmoid_inverse, affine_sigmoid_backward};

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
    return vector_coupling(r, name, dim, part, parity, hidden, layers, act, &affine_ops,
                           scale == NF_SCALE_TANH ? &nf_coupling_affine_tanh : &nf_coupling_affine_sigmoid, context, out);
}

/* See layer.h: sets the init std of the last layer of the coupling's net (MLP or conv net). */
void nf_coupling_set_init_std(nf_layer *L, double std) {
    coupling *c = (coupling *)L;
    c->net.init_std = std, c->cnet.init_std = std;
}
