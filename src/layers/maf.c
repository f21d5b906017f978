/* maf.c — autoregressive affine layers on (n, D) vectors: MAF and IAF on a MADE (formulas: layer.h).
 * A conditional block (context K > 0) has the MADE see c too: (μ, s) = MADE(u, c), c unmasked, so the
 * passes below are unchanged. Both use ONE map and its inverse:
 *   one pass   v = A(u):    v_d = (u_d − μ_d(u))·exp(s_d(u))         (u_<d only, by the MADE's masks)
 *   D passes   u = A⁻¹(v):  u_d = μ_d(u) + v_d·exp(−s_d(u)), solved in the MADE's order: pass k solves
 *              the coordinate of degree k (its μ, s see only lower degrees, exact by then), so D passes
 *              give u exactly; passes 1 … D − 1 compute only that coordinate's (μ, s), through the
 *              hidden units of lower degree (nf_made_forward_coord), and the last pass runs the whole
 *              MADE, whose (μ, s) are those of A at u.
 * MAF: forward = A (the MADE sees x), inverse = A⁻¹. IAF: forward = A⁻¹ (the MADE sees z), inverse = A.
 * The element-wise map τ (affine: v = (u − μ)·e^s; spline: v = g_θ(u), the rational-quadratic spline of
 * rqspline.h) is tau_apply, tau_vjp and the one-coordinate solve in tau_solve; the passes and the
 * backward below are written for any τ with P parameters per coordinate.
 * Cache (n rows, contiguous): u, the MADE's input (n, D) | h = θ (n, P·D) | the MADE's cache | its masked
 * parameters (built once by the forward, read by the backward that follows it).
 * Work: MADE scratch | four (n, D) buffers | dh (n, P·D) | u, h, MADE cache and masked parameters of a
 * pass that is not cached (MAF's inverse, IAF's inverse) | the net sorted by degree, its activations
 * (n, 2·hidden), the IAF backward's activation derivatives (layers, n, hidden) and one coordinate's
 * parameter cotangent (n, P). */
#include "layers/layer.h"
#include "layers/rqspline.h"
#include "nets/nets.h"

typedef struct {
    nf_layer base;
    int iaf;             /* 0: MAF, 1: IAF */
    nf_transform_type transform; /* AFFINE (P = 2) or SPLINE (P = 3K − 1) */
    nf_scale_type scale; /* affine: s = tanh(h_s) or log sigmoid(h_s + 2) */
    int32_t bins;        /* spline: K bins on [−bound, bound], identity outside */
    double bound;
    nf_made net;         /* D inputs → θ: P·D outputs, column q·D + d = parameter q of coordinate d */
} ar_layer;

/* ------------------------------------------------------------------ sizes */
/* Cache floats for n rows: u | h | MADE cache | masked parameters. */
static int64_t ar_cache_size(const nf_layer *L, int64_t n) {
    const ar_layer *A = (const ar_layer *)L;
    return n * L->dim + A->net.P * n * L->dim + nf_made_cache_size(&A->net, n) + nf_made_num_params(&A->net);
}

/* Scratch floats for n rows (see the file comment). */
static int64_t ar_work_size(const nf_layer *L, int64_t n) {
    const ar_layer *A = (const ar_layer *)L;
    return nf_made_work_size(&A->net, n) + 4 * n * L->dim + A->net.P * n * L->dim + ar_cache_size(L, n) +
           nf_made_sorted_size(&A->net) + (2 + A->net.mlp.layers) * n * A->net.mlp.hidden + A->net.P * n;
}

/* FLOPs of one sample's forward: one MADE pass (MAF) or, for IAF, D − 1 one-coordinate passes and a
 * whole one (d_passes). */
static int64_t ar_flops(const nf_layer *L) {
    const ar_layer *A = (const ar_layer *)L;
    int64_t f = nf_made_flops(&A->net);
    for (int32_t k = 0; A->iaf && k < L->dim - 1; k++) f += nf_made_coord_flops(&A->net, k);
    return f;
}

/* ------------------------------------------------------------------ the element-wise transform
 * One row's map v_d = τ(u_d; θ_d), d = 0 … D − 1, with the parameters θ from the MADE: θ_q of coordinate
 * d at th[q·D + d] (the net's output column q·D + d). The layer code below knows τ only through tau_apply,
 * tau_vjp and the solve step tau_solve. Affine: θ = (μ, h_s), v = (u − μ)·e^s, log ∂v/∂u
 * = s with s = tanh(h_s) or log σ(h_s + 2), the scales of AFF_BLOCK coordinates at a time through vmath's
 * array functions (the h_s of a row are contiguous); spline: v = g_θ(u), through rqspline.c's row
 * functions (NF_RQS_LANES values at a time, in row-major order over the rows of a call). */
#define AFF_BLOCK 256

/* One row of the affine map, v = τ(u) from u; returns Σ_d log ∂v_d/∂u_d. */
static double tau_row(const ar_layer *A, const nf_real *th, const nf_real *u, nf_real *v) {
    int32_t D = A->base.dim;
    double ld = 0;
    for (int32_t d0 = 0; d0 < D; d0 += AFF_BLOCK) {
        int32_t m = D - d0 < AFF_BLOCK ? D - d0 : AFF_BLOCK;
        const nf_real *mu = th + d0;
        nf_real s[AFF_BLOCK], e[AFF_BLOCK];
        nf_affine_scales(A->scale, mu + D, m, s, e, NULL);
        for (int32_t j = 0; j < m; j++) {
            v[d0 + j] = (u[d0 + j] - mu[j]) * e[j];
            ld += s[j];
        }
    }
    return ld;
}

/* Backward of one row of the affine map at u, given gv_d = csign·c[d] = ∂L/∂v_d (c NULL: 0) and gld =
 * ∂L/∂(Σ log ∂v/∂u): dth[q·D + d] = ∂L/∂θ_q of coordinate d (overwritten); gu[d] (may be NULL) = ∂L/∂u_d
 * through u directly (with gv = 1 and gld = 0 it is the diagonal ∂v_d/∂u_d): gu = gv·e^s, ∂/∂μ = −gv·e^s,
 * ∂/∂h_s = (gv·v + gld)·ds/dh_s. */
static void tau_vjp_row(const ar_layer *A, const nf_real *th, const nf_real *u, const nf_real *c, nf_real csign,
                        nf_real gld, nf_real *dth, nf_real *gu) {
    int32_t D = A->base.dim;
    for (int32_t d0 = 0; d0 < D; d0 += AFF_BLOCK) {
        int32_t m = D - d0 < AFF_BLOCK ? D - d0 : AFF_BLOCK;
        const nf_real *mu = th + d0;
        nf_real s[AFF_BLOCK], e[AFF_BLOCK], ds[AFF_BLOCK];
        nf_affine_scales(A->scale, mu + D, m, s, e, ds);
        for (int32_t j = 0; j < m; j++) {
            nf_real gv = c ? csign * c[d0 + j] : 0, g = gv * e[j], v = (u[d0 + j] - mu[j]) * e[j];
            dth[d0 + j] = -g;
            dth[D + d0 + j] = (gv * v + gld) * ds[j];
            if (gu) gu[d0 + j] = g;
        }
    }
}

/* The layout of the spline map's values (u, v) and their θ in the net's output h: θ_q of coordinate d of
 * row i at h[i·P·D + q·D + d]. */
static nf_rqs_layout spline_layout(const ar_layer *A) {
    int64_t D = A->base.dim;
    return (nf_rqs_layout){A->bins, A->bound, D, NULL, A->net.P * D, 1, D};
}

/* One pass of A on contiguous u (n, D) with the net output h (n, P·D): v_d = τ(u_d; θ_d) into rows S
 * apart; logdet[i] += Σ log ∂v_d/∂u_d (logdet may be NULL). tau_apply_rows: rows [i0, i1) of it. */
static void tau_apply_rows(const ar_layer *A, const nf_real *u, const nf_real *h, nf_real *v, int32_t S, nf_real *logdet,
                           int64_t i0, int64_t i1) {
    int32_t D = A->base.dim, P = A->net.P;
    if (A->transform == NF_TRANSFORM_SPLINE) {
        nf_rqs_layout g = spline_layout(A);
        nf_rqs_map_rows(&g, h, 0, u, D, v, S, logdet, i0, i1);
        return;
    }
    for (int64_t i = i0; i < i1; i++) {
        nf_real ld = (nf_real)tau_row(A, h + i * P * D, u + i * D, v + i * S);
        if (logdet) logdet[i] += ld;
    }
}
static void tau_apply(const ar_layer *A, const nf_real *u, const nf_real *h, nf_real *v, int32_t S, nf_real *logdet, int64_t n) {
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, A->base.dim), n, tau_apply_rows(A, u, h, v, S, logdet, lo, hi));
}

/* Pass k's solve step of A⁻¹ (contiguous (n, D)): the coordinate j of degree k + 1 — its θ see only
 * coordinates of lower degree, solved in earlier passes, so it is exact now and no later pass changes it:
 * u_j = τ⁻¹(v_j; θ_j) in every row, lj[i·D + j] = log ∂v_j/∂u_j there. The other coordinates are left as
 * they are (not yet solved: 0 from d_passes; solved: final). θ_j's parameter q of row i is at
 * h[i·hs + q·ps]: the net's whole output (hs = P·D, ps = D, h offset by j) or j's alone (hs = P, ps = 1).
 * tau_solve_blocks: blocks [b0, b1) of AFF_BLOCK rows of it. */
static void tau_solve_blocks(const ar_layer *A, int32_t j, const nf_real *v, const nf_real *h, int64_t hs, int32_t ps,
                             nf_real *u, nf_real *lj, int64_t n, int64_t b0, int64_t b1) {
    int32_t D = A->base.dim;
    for (int64_t b = b0; b < b1; b++) {
        int64_t i0 = b * AFF_BLOCK, m = n - i0 < AFF_BLOCK ? n - i0 : AFF_BLOCK;
        if (A->transform == NF_TRANSFORM_SPLINE) { /* NF_RQS_LANES rows at a time */
            for (int64_t r0 = i0; r0 < i0 + m; r0 += NF_RQS_LANES) {
                int mm = i0 + m - r0 < NF_RQS_LANES ? (int)(i0 + m - r0) : NF_RQS_LANES;
                const nf_real *tp[NF_RQS_LANES];
                double y[NF_RQS_LANES], o[NF_RQS_LANES], l[NF_RQS_LANES];
                for (int e = 0; e < mm; e++) tp[e] = h + (r0 + e) * hs, y[e] = (double)v[(r0 + e) * D + j];
                nf_rqs_inverse_block(tp, ps, A->bins, A->bound, mm, y, o, l);
                for (int e = 0; e < mm; e++) u[(r0 + e) * D + j] = (nf_real)o[e], lj[(r0 + e) * D + j] = (nf_real)l[e];
            }
            continue;
        }
        /* affine: the block's scales through vmath's array functions */
        nf_real hsc[AFF_BLOCK], s[AFF_BLOCK], e[AFF_BLOCK];
        for (int64_t r = 0; r < m; r++) hsc[r] = h[(i0 + r) * hs + ps];
        nf_affine_scales(A->scale, hsc, m, s, e, NULL);
        for (int64_t r = 0; r < m; r++) {
            int64_t i = i0 + r;
            u[i * D + j] = h[i * hs] + v[i * D + j] / e[r], lj[i * D + j] = s[r];
        }
    }
}
static void tau_solve(const ar_layer *A, int32_t j, const nf_real *v, const nf_real *h, int64_t hs, int32_t ps, nf_real *u,
                      nf_real *lj, int64_t n) {
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, A->base.dim), (n + AFF_BLOCK - 1) / AFF_BLOCK,
                      tau_solve_blocks(A, j, v, h, hs, ps, u, lj, n, lo, hi));
}

/* The vector-Jacobian product of A at u (net output h) with cotangents csign·c on v (c NULL: 0) and
 * dsign·dld[i] on the row's log-det (dld NULL: 0): dh (n, P·D) = ∂L/∂θ for the MADE's backward, and
 * du (may be NULL) = the part through u directly. tau_vjp_rows: rows [i0, i1) of it. */
static void tau_vjp_rows(const ar_layer *A, const nf_real *u, const nf_real *h, const nf_real *c, nf_real csign,
                         const nf_real *dld, nf_real dsign, nf_real *dh, nf_real *du, int64_t i0, int64_t i1) {
    int32_t D = A->base.dim, P = A->net.P;
    if (A->transform == NF_TRANSFORM_SPLINE) { /* du = gv·g' + gld·∂log g'/∂u */
        nf_rqs_layout g = spline_layout(A);
        nf_rqs_backward_rows(&g, h, u, D, c, D, csign, dld, dsign, du, D, dh, i0, i1);
        return;
    }
    for (int64_t i = i0; i < i1; i++)
        tau_vjp_row(A, h + i * P * D, u + i * D, c ? c + i * D : NULL, csign, dld ? dsign * dld[i] : 0, dh + i * P * D,
                    du ? du + i * D : NULL);
}
static void tau_vjp(const ar_layer *A, const nf_real *u, const nf_real *h, const nf_real *c, nf_real csign,
                    const nf_real *dld, nf_real dsign, nf_real *dh, nf_real *du, int64_t n) {
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, A->base.dim), n, tau_vjp_rows(A, u, h, c, csign, dld, dsign, dh, du, lo, hi));
}

/* ------------------------------------------------------------------ passes */
/* u (n, D), contiguous = the first D values of each row of x (rows S apart). */
static void gather(const nf_real *x, int32_t S, nf_real *u, int32_t D, int64_t n) {
    for (int64_t i = 0; i < n; i++) memcpy(u + i * D, x + i * S, sizeof(nf_real) * (size_t)D);
}
/* The first D values of each row of x (rows S apart) = u (n, D); the rest of each row untouched. */
static void scatter(const nf_real *u, int32_t D, nf_real *x, int32_t S, int64_t n) {
    for (int64_t i = 0; i < n; i++) memcpy(x + i * S, u + i * D, sizeof(nf_real) * (size_t)D);
}

/* The coordinate of degree k among the D degrees deg (a permutation of 1..D: made.c, checked on load).
 * A scan, O(D), against a pass's O(n·D·hidden). */
static int32_t coord_of_degree(const nf_real *deg, int32_t D, int32_t k) {
    int32_t j = 0;
    while (j < D - 1 && (int32_t)deg[j] != k) j++;
    return j;
}

/* The work buffers of the file comment. */
typedef struct { nf_real *mwork, *a, *b, *c, *d, *dh, *u, *h, *mc, *ps, *act, *dact, *dth; } ar_work;
/* Pointers into w (ar_work_size floats for n rows), in the file comment's order; w stays the caller's. */
static ar_work work_of(const ar_layer *A, nf_real *w, int64_t n) {
    int64_t D = A->base.dim, P = A->net.P;
    ar_work W;
    W.mwork = w, w += nf_made_work_size(&A->net, n);
    W.a = w, w += n * D;
    W.b = w, w += n * D;
    W.c = w, w += n * D;
    W.d = w, w += n * D;
    W.dh = w, w += P * n * D;
    W.u = w, w += n * D;
    W.h = w, w += P * n * D;
    W.mc = w, w += ar_cache_size(&A->base, n) - (1 + P) * n * D;
    W.ps = w, w += nf_made_sorted_size(&A->net);
    W.act = w, w += 2 * n * A->net.mlp.hidden;
    W.dact = w, w += (int64_t)A->net.mlp.layers * n * A->net.mlp.hidden;
    W.dth = w;
    return W;
}

/* One pass: out = A(in) (rows S apart), logdet += Σ log ∂v/∂u; u, h, mc receive the MADE's input,
 * output and cache. */
static void one_pass(const ar_layer *A, const nf_real *Pm, const nf_real *in, nf_real *out, nf_real *logdet,
                     int64_t n, nf_real *u, nf_real *h, nf_real *mc) {
    int32_t D = A->base.dim, S = A->base.ld;
    gather(in, S, u, D, n);
    nf_made_forward(&A->net, Pm, u, A->base.ctx, h, n, mc);
    tau_apply(A, u, h, out, S, logdet, n);
}

/* D passes: out = A⁻¹(in) (rows S apart), logdet −= Σ log ∂v/∂u at the result (summed in coordinate
 * order); u, h, mc end as the MADE's input (= the result), output and cache at the result; W: its
 * a, b ((n, D): v and the log-derivatives), dh (θ of one coordinate), ps and act are scratch. Passes
 * 1 … D − 1 compute only the coordinate they solve, on the net sorted by degree (made.c); the last is
 * the whole net, whose output and cache the caller keeps. */
static void d_passes(const ar_layer *A, const nf_real *Pm, const nf_real *in, nf_real *out, nf_real *logdet,
                     int64_t n, nf_real *u, nf_real *h, nf_real *mc, const ar_work *W) {
    int32_t D = A->base.dim, S = A->base.ld, P = A->net.P;
    const nf_real *deg = NF_B(&A->base, A->net.off_deg);
    nf_real *v = W->a, *lj = W->b, *th = W->dh;
    gather(in, S, v, D, n);
    memset(u, 0, sizeof(nf_real) * (size_t)(n * D));
    if (D > 1) nf_made_sort(&A->net, Pm, W->ps);
    for (int32_t k = 0; k < D; k++) {
        int32_t j = coord_of_degree(deg, D, k + 1);
        if (k < D - 1) {
            nf_made_forward_coord(&A->net, W->ps, deg, j, u, A->base.ctx, th, n, W->act);
            tau_solve(A, j, v, th, P, 1, u, lj, n);
        } else {
            nf_made_forward(&A->net, Pm, u, A->base.ctx, h, n, mc);
            tau_solve(A, j, v, h + j, (int64_t)P * D, D, u, lj, n);
        }
    }
    /* h and mc are those of the last pass's input, which differs from u only in the coordinate of
     * degree D, which no net output sees: they are exactly the net's at u */
    scatter(u, D, out, S, n);
    if (logdet)
        for (int64_t i = 0; i < n; i++) {
            double ld = 0;
            for (int32_t d = 0; d < D; d++) ld += lj[i * D + d];
            logdet[i] -= (nf_real)ld;
        }
}

/* ------------------------------------------------------------------ ops */
/* ops->forward: MAF z = A(x) in one pass; IAF z = A⁻¹(x) in D passes (log-det −Σ log ∂A/∂u at z).
 * The MADE's input, output and cache stay in the cache. NF_OK. */
static nf_status ar_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(training);
    const ar_layer *A = (const ar_layer *)L;
    ar_work W = work_of(A, work, n);
    nf_real *u = cache, *h = u + n * L->dim, *mc = h + A->net.P * n * L->dim, *Pm = mc + nf_made_cache_size(&A->net, n);
    nf_made_mask(&A->net, NF_P(L, A->net.mlp.off), NF_B(L, A->net.off_deg), Pm);
    if (A->iaf) d_passes(A, Pm, x, z, logdet, n, u, h, mc, &W);
    else one_pass(A, Pm, x, z, logdet, n, u, h, mc);
    return NF_OK;
}

/* ops->inverse: MAF x = A⁻¹(z) in D passes; IAF x = A(z) in one pass; logdet −= the forward's. NF_OK. */
static nf_status ar_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n, nf_real *work) {
    const ar_layer *A = (const ar_layer *)L;
    ar_work W = work_of(A, work, n);
    nf_real *Pm = W.mc + nf_made_cache_size(&A->net, n); /* the cache-shaped part of work */
    nf_made_mask(&A->net, NF_P(L, A->net.mlp.off), NF_B(L, A->net.off_deg), Pm);
    if (A->iaf) one_pass(A, Pm, z, x, logdet, n, W.u, W.h, W.mc);
    else d_passes(A, Pm, z, x, logdet, n, W.u, W.h, W.mc, &W);
    return NF_OK;
}

/* dx rows S apart = p + q (q may be NULL), both contiguous (n, D). */
static void put_dx(const nf_real *p, const nf_real *q, nf_real *dx, int32_t D, int32_t S, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        for (int32_t d = 0; d < D; d++) dx[i * S + d] = p[i * D + d] + (q ? q[i * D + d] : 0);
}

/* MAF's backward: z = A(u), log-det Σ log ∂v/∂u. dx = the direct part of A's vjp (c = dz, dld) +
 * MADEᵀ(∂L/∂θ); the MADE's backward adds its masked weight gradients. */
static void maf_backward(const ar_layer *A, const ar_work *W, const nf_real *Pm, const nf_real *u, const nf_real *h, const nf_real *mc,
                         const nf_real *dz, const nf_real *dld, nf_real *dx, int64_t n) {
    const nf_layer *L = &A->base;
    int32_t D = L->dim, S = L->ld;
    nf_real *c = W->b, *du = W->c, *dunet = W->d;
    gather(dz, S, c, D, n);
    tau_vjp(A, u, h, c, 1, dld, 1, W->dh, du, n);
    nf_made_backward(&A->net, Pm, NF_G(L, A->net.mlp.off), NF_B(L, A->net.off_deg), u, L->ctx, mc, W->dh, dunet, L->dctx, n, W->mwork);
    put_dx(du, dunet, dx, D, S, n);
}

/* Rows [i0, i1) of dh (n, P·D) −= λ ⊙ Jth, λ (n, D) broadcast over each row's P parameter blocks. */
static void sub_lam_jth(const nf_real *lam, const nf_real *Jth, nf_real *dh, int32_t P, int32_t D, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++)
        for (int32_t q = 0; q < P; q++)
#pragma omp simd
            for (int32_t d = 0; d < D; d++) dh[(i * P + q) * D + d] -= lam[i * D + d] * Jth[(i * P + q) * D + d];
}

/* IAF's backward: z = u solves A(u) = x, log-det −Σ log ∂v/∂u (u). With Φ(u) = L(u, logdet(u)) and
 * J = ∂A/∂u (triangular in the MADE's order, diagonal δ = ∂v_d/∂u_d): ∂L/∂x = λ with Jᵀλ = ∇Φ, solved
 * by back-substitution from the last coordinate in the order to the first: λ_e = (∇Φ_e − t_e) / δ_e,
 * then t += λ_e·∂v_e/∂u — coordinate e's vector-Jacobian product through its parameters θ_e, which see
 * only the inputs (and hidden units) of lower degree (nf_made_backward_coord). Parameters: ∂L/∂θ =
 * −λᵀ ∂A/∂θ − dld·∂(Σ log δ)/∂θ, A's vjp with c = −λ and −dld, assembled from its two linear parts. */
static void iaf_backward(const ar_layer *A, const ar_work *W, const nf_real *Pm, const nf_real *u, const nf_real *h, const nf_real *mc,
                         const nf_real *dz, const nf_real *dld, nf_real *dx, int64_t n) {
    const nf_layer *L = &A->base;
    int32_t D = L->dim, S = L->ld, P = A->net.P;
    const nf_real *deg = NF_B(L, A->net.off_deg);
    nf_real *g = W->a, *lam = W->b, *t = W->c, *diag = W->d, *ones = W->u, *Jth = W->h, *dh = W->dh, *dth = W->dth;
    /* A's vjp is linear in its cotangents (λ on v, dld on the log-det): Jth = its θ-part at λ = 1 (W->u,
     * W->h: the uncached pass's buffers, free in a backward), whose direct part is the diagonal δ; then
     * the dld part alone into dh. Coordinate e's share of λ's part is λ_e·Jth_e, and the parameters'
     * whole cotangent at the end is dh − λ ⊙ Jth: two vector-Jacobian products in all (a spline's knots
     * built twice an element, not four times) */
    for (int64_t k = 0; k < n * D; k++) ones[k] = 1;
    tau_vjp(A, u, h, ones, 1, NULL, 0, Jth, diag, n);
    tau_vjp(A, u, h, NULL, 0, dld, -1, dh, t, n);
    /* ∇Φ = dz + (−dld)·∂(Σ log δ)/∂u: directly and through θ */
    gather(dz, S, g, D, n);
    for (int64_t k = 0; k < n * D; k++) g[k] += t[k];
    nf_made_backward(&A->net, Pm, NULL, deg, u, L->ctx, mc, dh, t, NULL, n, W->mwork);
    for (int64_t k = 0; k < n * D; k++) g[k] += t[k], t[k] = 0;
    if (D > 1) {
        nf_made_sort(&A->net, Pm, W->ps);
        nf_made_sort_derivs(&A->net, W->ps, mc, n, W->dact);
    }
    for (int32_t k = D; k >= 1; k--) {
        int32_t e = coord_of_degree(deg, D, k);
        for (int64_t i = 0; i < n; i++) lam[i * D + e] = (g[i * D + e] - t[i * D + e]) / diag[i * D + e];
        if (k == 1) break; /* the first coordinate's θ see no input */
        for (int64_t i = 0; i < n; i++)
            for (int32_t q = 0; q < P; q++) dth[i * P + q] = lam[i * D + e] * Jth[(i * P + q) * D + e];
        nf_made_backward_coord(&A->net, W->ps, deg, e, W->dact, dth, t, n, W->act);
    }
    /* ∂L/∂θ = −λᵀ ∂A/∂θ − dld·∂(Σ log δ)/∂θ = dh − λ ⊙ Jth */
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, P * D), n, sub_lam_jth(lam, Jth, dh, P, D, lo, hi));
    /* the context enters A like a parameter: ∂L/∂c from the same cotangent */
    nf_made_backward(&A->net, Pm, NF_G(L, A->net.mlp.off), deg, u, L->ctx, mc, dh, NULL, L->dctx, n, W->mwork);
    put_dx(lam, NULL, dx, D, S, n);
}

/* ops->backward: dx = ∂L/∂x (overwritten, first D columns), masked weight gradients added. NF_OK. */
static nf_status ar_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                             const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(training), NF_UNUSED(x);
    const ar_layer *A = (const ar_layer *)L;
    ar_work W = work_of(A, work, n);
    const nf_real *u = cache, *h = u + n * L->dim, *mc = h + A->net.P * n * L->dim, *Pm = mc + nf_made_cache_size(&A->net, n);
    if (A->iaf) iaf_backward(A, &W, Pm, u, h, mc, dz, dld, dx, n);
    else maf_backward(A, &W, Pm, u, h, mc, dz, dld, dx, n);
    return NF_OK;
}

/* ops->init: the MADE's weights (last layer 0 unless init_std > 0), degrees and masks. */
static void ar_init(nf_layer *L, nf_rng *rng) {
    ar_layer *A = (ar_layer *)L;
    nf_made_init(&A->net, NF_P(L, A->net.mlp.off), NF_B(L, A->net.off_deg), rng);
}

static const nf_layer_ops maf_ops = {"maf", ar_forward, ar_inverse, ar_backward, ar_cache_size, ar_work_size,
                                     ar_init, nf_layer_no_destroy, ar_flops};
static const nf_layer_ops iaf_ops = {"iaf", ar_forward, ar_inverse, ar_backward, ar_cache_size, ar_work_size,
                                     ar_init, nf_layer_no_destroy, ar_flops};

/* Checks the arguments (NF_ERR_INVALID with a reason), allocates the layer with P = 2 (affine) or 3K − 1
 * (spline) parameters per coordinate (a MADE conditional on `context` values per row when > 0) and
 * reserves the MADE's tensors; *out or NULL. */
static nf_status ar_create(nf_registry *r, const char *name, int32_t dim, int iaf, int32_t hidden, int32_t layers,
                           nf_activation act, nf_transform_type transform, nf_scale_type scale, int32_t bins, double bound,
                           nf_order_type order, int32_t context, nf_layer **out) {
    *out = NULL;
    if (context < 0) return nf_fail(NF_ERR_INVALID, "%s: context of %d values", name, (int)context);
    if (dim < 1 || dim > 1 << 20) return nf_fail(NF_ERR_INVALID, "%s: an autoregressive layer needs 1 to 1048576 dimensions (got %d)", name, (int)dim);
    if (layers < 0 || layers > 32 || (layers > 0 && hidden < 1))
        return nf_fail(NF_ERR_INVALID, "%s: hidden %d, layers %d: need 0 ≤ layers ≤ 32 and hidden ≥ 1", name, (int)hidden, (int)layers);
    if (transform == NF_TRANSFORM_AFFINE && scale != NF_SCALE_TANH && scale != NF_SCALE_SIGMOID)
        return nf_fail(NF_ERR_INVALID, "%s: unknown scale type %d", name, (int)scale);
    nf_status st;
    if (transform == NF_TRANSFORM_SPLINE && (st = nf_rqs_check(name, bins, bound))) return st;
    if ((unsigned)order > NF_ORDER_RANDOM) return nf_fail(NF_ERR_INVALID, "%s: unknown ordering %d", name, (int)order);
    if ((unsigned)act > NF_ACT_LEAKY_RELU) return nf_fail(NF_ERR_INVALID, "%s: unknown activation %d", name, (int)act);
    ar_layer *A = nf_layer_alloc(sizeof *A, iaf ? &iaf_ops : &maf_ops, r, name, dim);
    if (!A) return NF_ERR_NOMEM;
    A->iaf = !!iaf, A->transform = transform, A->scale = scale, A->bins = bins, A->bound = bound;
    A->net.D = dim, A->net.P = transform == NF_TRANSFORM_SPLINE ? nf_rqs_num_params(bins) : 2, A->net.order = order;
    A->net.mlp.in = dim, A->net.mlp.out = A->net.P * dim, A->net.mlp.hidden = layers > 0 ? hidden : 0;
    A->net.mlp.layers = layers, A->net.mlp.act = act;
    A->net.mlp.ctx = A->base.ctx_dim = context; /* the context reaches every first-layer unit, unmasked */
    if ((st = nf_made_reserve(r, name, &A->net))) {
        nf_layer_free(&A->base);
        return st;
    }
    *out = &A->base;
    return NF_OK;
}

/* See layer.h: the affine block. */
nf_status nf_maf_create(nf_registry *r, const char *name, int32_t dim, int iaf, int32_t hidden, int32_t layers,
                        nf_activation act, nf_scale_type scale, nf_order_type order, int32_t context, nf_layer **out) {
    return ar_create(r, name, dim, iaf, hidden, layers, act, NF_TRANSFORM_AFFINE, scale, 0, 0, order, context, out);
}

/* See layer.h: the spline block. */
nf_status nf_maf_spline_create(nf_registry *r, const char *name, int32_t dim, int iaf, int32_t hidden, int32_t layers,
                               nf_activation act, int32_t bins, double bound, nf_order_type order, int32_t context, nf_layer **out) {
    return ar_create(r, name, dim, iaf, hidden, layers, act, NF_TRANSFORM_SPLINE, NF_SCALE_TANH, bins, bound, order, context, out);
}

/* See layer.h. */
void nf_maf_set_init_std(nf_layer *L, double std) { ((ar_layer *)L)->net.mlp.init_std = std; }

/* See layer.h: from the degree buffer. */
void nf_maf_order(const nf_layer *L, int32_t *order) {
    const ar_layer *A = (const ar_layer *)L;
    nf_made_order(&A->net, NF_B(L, A->net.off_deg), order);
}
