/* made.c — MADE, the masked autoencoder of Germain et al. (2015), as the conditioner of autoregressive
 * flows (interface and degree rules: nets.h). The net IS an nf_mlp (same parameters, names, layout,
 * forward and backward code, same gemm kernels); what makes it autoregressive is that it always runs on
 * the masked weights W ⊙ M, built from the degrees:
 *   linear 0 (inputs → hidden 1):        M[k][i] = m_k ≥ deg[i]
 *   hidden l → hidden l + 1:             M[k'][k] = m_k' ≥ m_k
 *   last (hidden → outputs p·D + d):     M[o][k] = deg[d] > m_k        (no hidden layer: deg[d] > deg[i])
 * with m_k = (k mod (D − 1)) + 1 for hidden unit k (every hidden layer alike; 0 when D = 1). Output d
 * thus sees only inputs of degree < deg[d]: ∂y_d/∂x_i = 0 unless deg[i] < deg[d]. */
#include "nets/nets.h"

/* Inputs of linear l of the MLP. */
static int64_t lin_in(const nf_mlp *m, int32_t l) { return l == 0 ? m->in : m->hidden; }
/* Outputs of linear l of the MLP. */
static int64_t lin_out(const nf_mlp *m, int32_t l) { return l == m->layers ? m->out : m->hidden; }

/* Degree of hidden unit k. */
static int32_t hidden_degree(const nf_made *m, int64_t k) { return m->D > 1 ? (int32_t)(k % (m->D - 1)) + 1 : 0; }

/* Degree of unit k of level l: 0 = inputs (deg), 1..layers = hidden, layers + 1 = outputs (deg of k mod D). */
static int32_t level_degree(const nf_made *m, const nf_real *deg, int32_t l, int64_t k) {
    if (l == 0) return (int32_t)deg[k];
    if (l == m->mlp.layers + 1) return (int32_t)deg[k % m->D];
    return hidden_degree(m, k);
}

/* Linear l's weights (out × in, row-major) through its mask: dst = src where input i may feed output o,
 * else 0 (add = 0), or dst += that (add = 1). Output o passes input i iff din ≤ dout − [l is the last
 * linear] (the last one is strict: dout > din). It runs on every weight before every pass, so the
 * inputs' degrees are taken once per block of columns and each row is one vector select (a call per
 * entry, with its modulo, was 6–8 % of a default table's training). */
static void mask_linear(const nf_made *m, const nf_real *deg, int32_t l, const nf_real *src, nf_real *dst, int add) {
    enum { COLS = 256 };
    int32_t dg[COLS];
    int64_t in = lin_in(&m->mlp, l), out = lin_out(&m->mlp, l);
    for (int64_t i0 = 0; i0 < in; i0 += COLS) {
        int64_t nc = in - i0 < COLS ? in - i0 : COLS;
        for (int64_t i = 0; i < nc; i++) dg[i] = level_degree(m, deg, l, i0 + i);
        for (int64_t o = 0; o < out; o++) {
            int32_t lim = level_degree(m, deg, l + 1, o) - (l == m->mlp.layers);
            const nf_real *s = src + o * in + i0;
            nf_real *d = dst + o * in + i0;
            if (add) {
#pragma omp simd
                for (int64_t i = 0; i < nc; i++) d[i] += dg[i] <= lim ? s[i] : 0;
            } else {
#pragma omp simd
                for (int64_t i = 0; i < nc; i++) d[i] = dg[i] <= lim ? s[i] : 0;
            }
        }
    }
}

/* See nets.h: the MLP's parameter count. */
int64_t nf_made_num_params(const nf_made *m) { return nf_mlp_num_params(&m->mlp); }
/* See nets.h: the MLP's cache. */
int64_t nf_made_cache_size(const nf_made *m, int64_t n) { return nf_mlp_cache_size(&m->mlp, n); }
/* See nets.h: the unmasked weight gradients (one parameter set) and the MLP's backward scratch. */
int64_t nf_made_work_size(const nf_made *m, int64_t n) { return nf_made_num_params(m) + 2 * n * m->mlp.hidden; }
/* See nets.h: the full (unmasked) products are computed: the MLP's FLOPs. */
int64_t nf_made_flops(const nf_made *m) { return nf_mlp_flops(&m->mlp); }

/* See nets.h: the MLP's tensors, then the degree buffer. */
nf_status nf_made_reserve(nf_registry *r, const char *owner, nf_made *m) {
    nf_status st = nf_mlp_reserve(r, owner, &m->mlp);
    if (st) return st;
    m->off_deg = nf_registry_reserve_vec(r, owner, "net.degree", NF_TENSOR_BUFFER, m->D);
    return m->off_deg < 0 ? NF_ERR_NOMEM : NF_OK;
}

/* See nets.h: Pm = P ⊙ M, linear by linear (weights masked, biases copied). */
void nf_made_mask(const nf_made *m, const nf_real *P, const nf_real *deg, nf_real *Pm) {
    for (int32_t l = 0; l <= m->mlp.layers; l++) {
        int64_t in = lin_in(&m->mlp, l), out = lin_out(&m->mlp, l);
        mask_linear(m, deg, l, P, Pm, 0);
        memmove(Pm + out * in, P + out * in, sizeof(nf_real) * (size_t)out);
        P += out * (in + 1), Pm += out * (in + 1);
    }
    /* the context weights W_c (after the linear maps) connect c to every first-layer unit: unmasked */
    if (m->mlp.ctx > 0) memmove(Pm, P, sizeof(nf_real) * (size_t)(lin_out(&m->mlp, 0) * m->mlp.ctx));
}

/* See nets.h: deg[i] is the rank + 1 of input i. */
void nf_made_order(const nf_made *m, const nf_real *deg, int32_t *order) {
    for (int32_t i = 0; i < m->D; i++) order[(int32_t)deg[i] - 1] = i;
}

/* See nets.h: MLP init, degrees by m->order, masked weights zeroed in P (kept masked from the start). */
void nf_made_init(const nf_made *m, nf_real *P, nf_real *deg, nf_rng *rng) {
    nf_mlp_init(&m->mlp, P, rng);
    int32_t D = m->D;
    if (m->order == NF_ORDER_RANDOM) { /* a random permutation of the degrees 1..D (Fisher–Yates in place) */
        for (int32_t i = 0; i < D; i++) deg[i] = (nf_real)(i + 1);
        for (int32_t i = D - 1; i > 0; i--) {
            int32_t k = (int32_t)(nf_rng_u64(rng) % (uint64_t)(i + 1));
            nf_real t = deg[i];
            deg[i] = deg[k], deg[k] = t;
        }
    } else {
        for (int32_t i = 0; i < D; i++) deg[i] = (nf_real)(m->order == NF_ORDER_REVERSE ? D - i : i + 1);
    }
    nf_made_mask(m, P, deg, P); /* in place: each entry is read before it is written */
}

/* See nets.h: the MLP's forward on the masked parameters (the context unmasked). */
void nf_made_forward(const nf_made *m, const nf_real *Pm, const nf_real *x, const nf_real *c, nf_real *y, int64_t n,
                     nf_real *cache) {
    nf_mlp_forward(&m->mlp, Pm, x, c, y, n, cache);
}

/* See nets.h: the MLP's backward on the masked parameters into a zeroed scratch copy of the gradient,
 * then dP += M ⊙ scratch (biases unmasked). The MLP's weight gradient of a masked entry is ∂L/∂(W ⊙ M),
 * which is not a gradient of the loss in W: the mask drops it. */
void nf_made_backward(const nf_made *m, const nf_real *Pm, nf_real *dP, const nf_real *deg, const nf_real *x,
                      const nf_real *c, const nf_real *cache, const nf_real *dy, nf_real *dx, nf_real *dc, int64_t n,
                      nf_real *work) {
    int64_t np = nf_made_num_params(m);
    nf_real *g = work, *mwork = work + np;
    memset(g, 0, sizeof(nf_real) * (size_t)np);
    nf_mlp_backward(&m->mlp, Pm, g, x, c, cache, dy, dx, dc, n, mwork);
    if (!dP) return;
    for (int32_t l = 0; l <= m->mlp.layers; l++) {
        int64_t in = lin_in(&m->mlp, l), out = lin_out(&m->mlp, l);
        mask_linear(m, deg, l, g, dP, 1);
        for (int64_t o = 0; o < out; o++) dP[out * in + o] += g[out * in + o];
        dP += out * (in + 1), g += out * (in + 1);
    }
    for (int64_t k = 0; k < lin_out(&m->mlp, 0) * m->mlp.ctx; k++) dP[k] += g[k]; /* W_c: unmasked */
}

/* ---------------------------------------------------------------- one coordinate's outputs
 * Pass k of an autoregressive layer's D-pass inverse needs only the P outputs of the coordinate j of
 * degree k + 1, and those see only the hidden units of degree ≤ k (in every hidden layer: a unit sees
 * units below it of degree ≤ its own). With each hidden layer's units sorted by degree (stably), those
 * units are a prefix of every layer, nf_made_prefix(m, k) long (computed rounded up to whole vectors:
 * coord_width), and the pass is the MLP on the leading blocks of the sorted weights: a fraction
 * ≈ (k / (D − 1))² of each hidden product and P of the P·D output columns. The sorted net computes the
 * same function; its products sum fewer exact zeros, so its outputs agree with nf_made_forward's to
 * rounding. */

/* See nets.h: hidden units (of each layer) of degree ≤ k. */
int64_t nf_made_prefix(const nf_made *m, int32_t k) {
    int64_t H = m->mlp.hidden, c = 0;
    if (m->D <= 1 || k >= m->D - 1) return H; /* D = 1: every unit has degree 0 */
    for (int32_t d = 1; d <= k; d++) /* the units of degree d: d − 1, d − 1 + (D − 1), … below H */
        if (d - 1 < H) c += (H - (d - 1) + m->D - 2) / (m->D - 1);
    return c;
}

/* How many of the sorted units a coordinate of degree k + 1 computes with: its prefix, rounded up to
 * a multiple of 8 (at most hidden) so that a row's activations are whole vectors — scalar tanhf tails
 * were 7 % of an IAF's training. The extra units are exact: the weights from them to the prefix and to
 * the coordinate's outputs are masked zeros, and their values are finite. No hidden layer: the inputs. */
static int64_t coord_width(const nf_made *m, int32_t k) {
    if (m->mlp.layers == 0) return m->D;
    int64_t nk = nf_made_prefix(m, k), r = (nk + 7) / 8 * 8;
    return nk == 0 ? 0 : r < m->mlp.hidden ? r : m->mlp.hidden;
}

/* See nets.h: nf_made_forward_coord's multiply-adds × 2 for a coordinate of degree k + 1. */
int64_t nf_made_coord_flops(const nf_made *m, int32_t k) {
    int64_t nk = coord_width(m, k);
    return 2 * nk * (m->mlp.layers > 0 ? m->D + m->mlp.ctx + (m->mlp.layers - 1) * nk : 0) + 2 * nk * m->P;
}

/* See nets.h: the sorted parameters and the permutation. */
int64_t nf_made_sorted_size(const nf_made *m) { return nf_made_num_params(m) + m->mlp.hidden; }

/* See nets.h: Ps = Pm with every hidden layer's units in degree order (stable), perm after them. */
void nf_made_sort(const nf_made *m, const nf_real *Pm, nf_real *Ps) {
    int64_t H = m->mlp.hidden, r = 0;
    int32_t L = m->mlp.layers;
    nf_real *perm = Ps + nf_made_num_params(m); /* perm[r] = the unit at sorted position r (exact integers) */
    if (m->D <= 1) /* every unit has degree 0: the order stays */
        for (int64_t u = 0; u < H; u++) perm[r++] = (nf_real)u;
    for (int32_t d = 1; d < m->D; d++) /* the units of degree d: d − 1, d − 1 + (D − 1), … below H */
        for (int64_t u = d - 1; u < H; u += m->D - 1) perm[r++] = (nf_real)u;
    for (int32_t l = 0; l <= L; l++) {
        int64_t in = lin_in(&m->mlp, l), out = lin_out(&m->mlp, l);
        for (int64_t o = 0; o < out; o++) {
            int64_t so = l < L ? (int64_t)perm[o] : o; /* hidden rows and columns permuted */
            for (int64_t i = 0; i < in; i++) Ps[o * in + i] = Pm[so * in + (l > 0 ? (int64_t)perm[i] : i)];
            Ps[out * in + o] = Pm[out * in + so];
        }
        Pm += out * (in + 1), Ps += out * (in + 1);
    }
    for (int64_t o = 0; m->mlp.ctx > 0 && o < H; o++) /* W_c (H, ctx): rows permuted */
        memcpy(Ps + o * m->mlp.ctx, Pm + (int64_t)perm[o] * m->mlp.ctx, sizeof(nf_real) * (size_t)m->mlp.ctx);
}

/* See nets.h: th (n, P) = the outputs of coordinate j, from the sorted parameters' leading blocks. */
void nf_made_forward_coord(const nf_made *m, const nf_real *Ps, const nf_real *deg, int32_t j, const nf_real *x,
                           const nf_real *c, nf_real *th, int64_t n, nf_real *work) {
    int32_t D = m->D, P = m->P, L = m->mlp.layers, K = m->mlp.ctx;
    int64_t H = m->mlp.hidden, nk = coord_width(m, (int32_t)deg[j] - 1), lda = D;
    const nf_real *a = x, *W = Ps, *Wc = Ps + nf_made_num_params(m) - H * K;
    for (int32_t l = 0; l < L; l++) { /* hidden layer l on its first nk units */
        int64_t in = lin_in(&m->mlp, l);
        nf_real *o = work + (l & 1) * n * H;
        if (nk > 0) {
            nf_gemm(0, 1, n, nk, l == 0 ? D : nk, 1, a, lda, W, in, 0, o, nk);
            if (l == 0 && K > 0 && c) nf_gemm(0, 1, n, nk, K, 1, c, K, Wc, K, 1, o, nk);
            nf_mlp_bias_act(m->mlp.act, 0, W + H * in, o, n, nk);
        }
        a = o, lda = nk, W += H * (in + 1);
    }
    /* the output layer's rows q·D + j, q = 0 … P − 1: D rows apart */
    int64_t in = lin_in(&m->mlp, L);
    const nf_real *b = W + (int64_t)P * D * in;
    if (nk > 0) nf_gemm(0, 1, n, P, nk, 1, a, lda, W + j * in, D * in, 0, th, P);
    else memset(th, 0, sizeof(nf_real) * (size_t)(n * P));
    for (int64_t i = 0; i < n; i++)
        for (int32_t q = 0; q < P; q++) th[i * P + q] += b[q * D + j];
}

/* Rows [i0, i1) of da (n, H) = act'(·) at a (n, H), unit r of a row from a's unit perm[r]. */
static void sorted_derivs(nf_activation act, const nf_real *a, const nf_real *perm, nf_real *da, int64_t H, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++)
        for (int64_t r = 0; r < H; r++) da[i * H + r] = nf_act_df(act, a[i * H + (int64_t)perm[r]]);
}

/* See nets.h: dact (layers, n, hidden) = the activations' derivatives at cache, units in sorted order. */
void nf_made_sort_derivs(const nf_made *m, const nf_real *Ps, const nf_real *cache, int64_t n, nf_real *dact) {
    int64_t H = m->mlp.hidden;
    const nf_real *perm = Ps + nf_made_num_params(m);
    for (int32_t l = 0; l < m->mlp.layers; l++) {
        const nf_real *a = cache + (int64_t)l * n * H;
        nf_real *da = dact + (int64_t)l * n * H;
        NF_PARALLEL_RANGE(NF_PAR_WORTH(n, H), n, sorted_derivs(m->mlp.act, a, perm, da, H, lo, hi));
    }
}

/* Rows [i0, i1) of d (n, nk) ⊙= the first nk columns of da (n, H). */
static void scale_leading(nf_real *d, int64_t nk, const nf_real *da, int64_t H, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++)
#pragma omp simd
        for (int64_t r = 0; r < nk; r++) d[i * nk + r] *= da[i * H + r];
}

/* See nets.h: dx += the input gradient of coordinate j's outputs with cotangent dth, through the sorted
 * net's leading blocks — nf_made_forward_coord's transpose, at the derivatives nf_made_sort_derivs took. */
void nf_made_backward_coord(const nf_made *m, const nf_real *Ps, const nf_real *deg, int32_t j, const nf_real *dact,
                            const nf_real *dth, nf_real *dx, int64_t n, nf_real *work) {
    int32_t D = m->D, P = m->P, L = m->mlp.layers;
    int64_t H = m->mlp.hidden, nk = coord_width(m, (int32_t)deg[j] - 1), off[33];
    if (nk == 0) return;
    off[0] = 0;
    for (int32_t l = 0; l < L; l++) off[l + 1] = off[l] + H * (lin_in(&m->mlp, l) + 1);
    int64_t in = lin_in(&m->mlp, L);
    if (L == 0) { /* the outputs from the inputs directly */
        nf_gemm(0, 0, n, D, P, 1, dth, P, Ps + j * in, D * in, 1, dx, D);
        return;
    }
    nf_real *d = work, *d2 = work + n * H;
    nf_gemm(0, 0, n, nk, P, 1, dth, P, Ps + off[L] + j * in, D * in, 0, d, nk); /* ∂L/∂(last hidden layer) */
    for (int32_t l = L - 1; l >= 0; l--) {
        const nf_real *da = dact + (int64_t)l * n * H;
        NF_PARALLEL_RANGE(NF_PAR_WORTH(n, nk), n, scale_leading(d, nk, da, H, lo, hi));
        if (l == 0) break;
        nf_gemm(0, 0, n, nk, nk, 1, d, nk, Ps + off[l], H, 0, d2, nk);
        nf_real *t = d;
        d = d2, d2 = t;
    }
    nf_gemm(0, 0, n, D, nk, 1, d, nk, Ps, D, 1, dx, D);
}
