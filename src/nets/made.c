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
