/* prior.c — base distributions π(z) on R^D:
 *   normal:         log π(z) = −½ Σ z_j² − (D/2) log 2π
 *   logistic (NICE): log π(z) = −Σ [softplus(z_j) + softplus(−z_j)]
 *   diag Gaussian:  log π(z) = Σ [−½ ((z_j − μ_j)/σ_j)² − log σ_j − ½ log 2π],  σ_j = exp(log_std_j), learned
 *   conditional diag Gaussian (context c of K values): μ_j(c) = μ_j + Σ_k W[j][k] c_k,
 *                   log σ_j(c) = log_std_j + Σ_k W[D + j][k] c_k   (Glow's class-conditional prior)
 *   gmm:            log π(z) = log Σ_k w_k N(z; μ_k, diag σ_k²) = logsumexp_k t_k − logsumexp_k a_k,
 *                   t_k = a_k + Σ_j [−½ ((z_j − μ_kj)/σ_kj)² − log σ_kj − ½ log 2π], w = softmax(a), learned
 *   gmm_full:       the same with u_k = A_k (z − μ_k) for ((z_j − μ_kj)/σ_kj)_j: A_k lower triangular, diagonal
 *                   1/σ_kj, below it learned values L_k (0 at the start), so Σ_k = (A_kᵀA_k)⁻¹ and
 *                   t_k = a_k − ½ ‖u_k‖² − Σ_j log σ_kj − (D/2) log 2π (log|det A_k| = −Σ_j log σ_kj) */
#include "kernels/kernels.h"
#include "layers/layer.h"

#define LOG_2PI 1.8378770664093453

/* See layer.h: set the prior up; the diag Gaussian reserves mean and log_std in c, and with a context
 * (K > 0) the weights W (2D, K) after them (zero at the start: the unconditional prior). */
void nf_prior_init(nf_prior *p, nf_registry *c, nf_prior_type type, int32_t dim, int32_t context, int32_t components) {
    p->type = type;
    p->dim = dim;
    p->reg = c;
    p->off = -1;
    p->ctx = 0;
    p->off_ctx = -1;
    p->comps = 0;
    p->off_tril = -1;
    if (type == NF_PRIOR_GMM || type == NF_PRIOR_GMM_FULL) { /* contiguous: logits | means | log stds (| tril) */
        int64_t k[1] = {components}, kd[2] = {components, dim}, kt[2] = {components, (int64_t)dim * (dim - 1) / 2};
        p->comps = components;
        p->off = nf_registry_reserve(c, "prior", "logits", NF_TENSOR_PARAM, 1, k);
        nf_registry_reserve(c, "prior", "means", NF_TENSOR_PARAM, 2, kd);
        nf_registry_reserve(c, "prior", "log_stds", NF_TENSOR_PARAM, 2, kd);
        if (type == NF_PRIOR_GMM_FULL && dim > 1) p->off_tril = nf_registry_reserve(c, "prior", "tril", NF_TENSOR_PARAM, 2, kt);
    }
    if (type == NF_PRIOR_DIAG_GAUSSIAN) {
        int64_t s[1] = {dim};
        p->off = nf_registry_reserve(c, "prior", "mean", NF_TENSOR_PARAM, 1, s);
        nf_registry_reserve(c, "prior", "log_std", NF_TENSOR_PARAM, 1, s); /* contiguous after mean */
        if (context > 0) {
            int64_t w[2] = {2 * (int64_t)dim, context};
            p->ctx = context;
            p->off_ctx = nf_registry_reserve(c, "prior", "ctx.weight", NF_TENSOR_PARAM, 2, w);
        }
    }
}

/* See layer.h. */
void nf_prior_init_params(nf_prior *p, nf_rng *rng) {
    if (p->comps == 0) return; /* the tril (full covariances) stays 0: diagonal at the start */
    int32_t K = p->comps, D = p->dim;
    nf_real *a = p->reg->params + p->off, *mu = a + K, *ls = mu + (int64_t)K * D;
    for (int32_t k = 0; k < K; k++) {
        a[k] = 0;
        for (int32_t j = 0; j < D; j++) mu[(int64_t)k * D + j] = (nf_real)nf_rng_normal(rng), ls[(int64_t)k * D + j] = 0;
    }
}

/* The gmm's arithmetic runs on blocks of GMM_ROWS rows: each component's 1/σ_kj = e^(−log σ_kj) is taken
 * once a block (K·D exponentials) instead of once a row, GMM_CHUNK coordinates at a time (gmm_full: all
 * D ≤ NF_GMM_FULL_MAX_DIM at once). */
#define GMM_ROWS 32
#define GMM_CHUNK 64
_Static_assert(NF_GMM_FULL_MAX_DIM <= GMM_CHUNK, "gmm_full takes its 1/σ in one chunk");

/* gmm_full: where component k's tril starts in the parameter (and gradient) buffer: D(D−1)/2 values a
 * component, after the log stds. */
static int64_t tril_offset(const nf_prior *p, int32_t k) { return p->off_tril + (int64_t)k * p->dim * (p->dim - 1) / 2; }

/* Row L_k[j][0..j−1] of the strictly lower part of A_k (component Lk's tril, rows packed one after another). */
static const nf_real *tril_row(const nf_real *Lk, int32_t j) { return Lk + (int64_t)j * (j - 1) / 2; }

/* gmm_full, one row z and component (mk, is = 1/σ_k, Lk): d = z − μ_k, u = A_k d
 * (u_j = is_j·d_j + Σ_{i<j} L_k[j][i]·d_i); returns ‖u‖². */
static double full_u(const nf_real *z, const nf_real *mk, const double *is, const nf_real *Lk, int32_t D, double *d, double *u) {
    double q = 0;
    for (int32_t j = 0; j < D; j++) d[j] = (double)z[j] - mk[j];
    for (int32_t j = 0; j < D; j++) {
        const nf_real *Lj = tril_row(Lk, j);
        double v = is[j] * d[j];
        for (int32_t i = 0; i < j; i++) v += (double)Lj[i] * d[i];
        u[j] = v, q += v * v;
    }
    return q;
}

/* logsumexp_k a_k of the gmm's logits (w = softmax(a)). */
static double gmm_lse_a(const nf_prior *p) {
    const nf_real *a = p->reg->params + p->off;
    double am = -INFINITY, sa = 0;
    for (int32_t k = 0; k < p->comps; k++) am = fmax(am, a[k]);
    for (int32_t k = 0; k < p->comps; k++) sa += exp(a[k] - am);
    return am + log(sa);
}

/* The gmm's t_k of the file comment for the m ≤ GMM_ROWS rows of z (t: m·K values, row r's at t + r·K)
 * and, returned, the rows' log π(z) = logsumexp_k t_k − logsumexp_k a_k into lp (NULL: not wanted), with
 * lse_t[r] = logsumexp_k t_rk (NULL: not wanted). */
static void gmm_block(const nf_prior *p, const nf_real *z, int64_t m, double *t, double *lse_t, nf_real *lp) {
    int32_t K = p->comps, D = p->dim;
    const nf_real *a = p->reg->params + p->off, *mu = a + K, *ls = mu + (int64_t)K * D;
    double is[GMM_CHUNK], d[GMM_CHUNK], u[GMM_CHUNK];
    for (int32_t k = 0; k < K; k++) {
        const nf_real *mk = mu + (int64_t)k * D, *lk = ls + (int64_t)k * D;
        double c = a[k] - 0.5 * D * LOG_2PI;
        for (int32_t j = 0; j < D; j++) c -= lk[j];
        for (int64_t r = 0; r < m; r++) t[r * K + k] = c;
        if (p->off_tril >= 0) { /* gmm_full: −½ ‖A_k (z − μ_k)‖² */
            const nf_real *Lk = p->reg->params + tril_offset(p, k);
            for (int32_t j = 0; j < D; j++) is[j] = exp(-(double)lk[j]);
            for (int64_t r = 0; r < m; r++) t[r * K + k] -= 0.5 * full_u(z + r * D, mk, is, Lk, D, d, u);
            continue;
        }
        for (int32_t j0 = 0; j0 < D; j0 += GMM_CHUNK) {
            int32_t nj = D - j0 < GMM_CHUNK ? D - j0 : GMM_CHUNK;
            for (int32_t j = 0; j < nj; j++) is[j] = exp(-(double)lk[j0 + j]);
            for (int64_t r = 0; r < m; r++) {
                const nf_real *zr = z + r * D + j0;
                double q = 0;
                for (int32_t j = 0; j < nj; j++) {
                    double w = ((double)zr[j] - mk[j0 + j]) * is[j];
                    q += w * w;
                }
                t[r * K + k] -= 0.5 * q;
            }
        }
    }
    double la = gmm_lse_a(p);
    for (int64_t r = 0; r < m; r++) {
        const double *tr = t + r * K;
        double tm = -INFINITY, st = 0;
        for (int32_t k = 0; k < K; k++) tm = fmax(tm, tr[k]);
        for (int32_t k = 0; k < K; k++) st += exp(tr[k] - tm);
        if (lse_t) lse_t[r] = tm + log(st);
        if (lp) lp[r] = (nf_real)(tm + log(st) - la);
    }
}

/* Coordinate j's mean and log std for the context row ci (NULL: none): the parameters plus W·ci. */
static void coord_params(const nf_prior *p, const nf_real *ci, int32_t j, double *mu, double *ls) {
    int32_t D = p->dim, K = p->ctx;
    const nf_real *m0 = p->reg->params + p->off;
    double a = m0[j], b = m0[D + j];
    if (K > 0 && ci) {
        const nf_real *Wm = p->reg->params + p->off_ctx + (int64_t)j * K, *Ws = Wm + (int64_t)D * K;
        for (int32_t k = 0; k < K; k++) a += (double)Wm[k] * ci[k], b += (double)Ws[k] * ci[k];
    }
    *mu = a, *ls = b;
}

/* gmm_full: var[j] = (Σ_k)_jj = Σ_m ((A_k⁻¹)_jm)² for the component of log stds lk and tril Lk, the columns
 * of A_k⁻¹ by forward substitution (D ≤ NF_GMM_FULL_MAX_DIM). */
static void full_var(const nf_real *lk, const nf_real *Lk, int32_t D, double *var) {
    double x[GMM_CHUNK];
    for (int32_t j = 0; j < D; j++) var[j] = 0;
    for (int32_t m = 0; m < D; m++) /* column m: A x = e_m, x_j = 0 above m */
        for (int32_t j = m; j < D; j++) {
            const nf_real *Lj = tril_row(Lk, j);
            double v = j == m;
            for (int32_t i = m; i < j; i++) v -= (double)Lj[i] * x[i];
            x[j] = v * exp((double)lk[j]), var[j] += x[j] * x[j];
        }
}

/* See layer.h: coord_params for every coordinate (the fixed priors: 0, 0); the gmm's mixture mean and
 * half the log of its variance Σ_k w_k ((Σ_k)_jj + μ_kj²) − μ_j² ((Σ_k)_jj = σ_kj² for the diagonal gmm). */
void nf_prior_moments(const nf_prior *p, const nf_real *c, double *mu, double *ls) {
    int32_t K = p->comps, D = p->dim;
    const nf_real *a = K > 0 ? p->reg->params + p->off : NULL;
    double la = a ? gmm_lse_a(p) : 0;
    if (p->off_tril >= 0) { /* gmm_full (D ≤ NF_GMM_FULL_MAX_DIM) */
        double m[GMM_CHUNK] = {0}, s2[GMM_CHUNK] = {0}, var[GMM_CHUNK];
        for (int32_t k = 0; k < K; k++) {
            const nf_real *mk = a + K + (int64_t)k * D;
            double w = exp(a[k] - la);
            full_var(mk + (int64_t)K * D, p->reg->params + tril_offset(p, k), D, var);
            for (int32_t j = 0; j < D; j++) m[j] += w * mk[j], s2[j] += w * (var[j] + (double)mk[j] * mk[j]);
        }
        for (int32_t j = 0; j < D; j++) mu[j] = m[j], ls[j] = 0.5 * log(fmax(s2[j] - m[j] * m[j], 1e-30));
        return;
    }
    for (int32_t j = 0; j < D; j++) {
        mu[j] = ls[j] = 0;
        if (p->type == NF_PRIOR_DIAG_GAUSSIAN) coord_params(p, p->ctx > 0 ? c : NULL, j, mu + j, ls + j);
        if (K > 0) {
            double m = 0, s2 = 0;
            for (int32_t k = 0; k < K; k++) {
                double w = exp(a[k] - la), mk = a[K + (int64_t)k * D + j], sk = exp((double)a[K + (int64_t)K * D + (int64_t)k * D + j]);
                m += w * mk, s2 += w * (sk * sk + mk * mk);
            }
            mu[j] = m, ls[j] = 0.5 * log(fmax(s2 - m * m, 1e-30));
        }
    }
}

/* The context row i of c, or NULL for an unconditional prior or no context. */
static const nf_real *ctx_row(const nf_prior *p, const nf_real *c, int64_t i) { return p->ctx > 0 && c ? c + i * p->ctx : NULL; }

/* Blocks [b0, b1) of GMM_ROWS rows of nf_prior_log_prob for a mixture prior. */
static void gmm_log_prob_blocks(const nf_prior *p, const nf_real *z, nf_real *lp, int64_t n, int64_t b0, int64_t b1) {
    int32_t D = p->dim;
    for (int64_t b = b0; b < b1; b++) {
        int64_t i0 = b * GMM_ROWS;
        double t[GMM_ROWS * NF_GMM_MAX_COMPONENTS];
        gmm_block(p, z + i0 * D, n - i0 < GMM_ROWS ? n - i0 : GMM_ROWS, t, NULL, lp + i0);
    }
}

/* Rows [i0, i1) of nf_prior_log_prob for the priors without components. */
static void log_prob_rows(const nf_prior *p, const nf_real *z, const nf_real *c, nf_real *lp, int64_t i0, int64_t i1) {
    int32_t D = p->dim;
    for (int64_t i = i0; i < i1; i++) {
        double s = 0;
        const nf_real *zi = z + i * D, *ci = ctx_row(p, c, i);
        if (p->type == NF_PRIOR_LOGISTIC) { /* −Σ softplus(z_j) + softplus(−z_j), over the row at once */
            lp[i] = (nf_real)-nf_logistic_nll(zi, D);
            continue;
        }
        for (int32_t j = 0; j < D; j++) {
            double v = zi[j];
            switch (p->type) {
            case NF_PRIOR_DIAG_GAUSSIAN: {
                double mu, ls;
                coord_params(p, ci, j, &mu, &ls);
                double u = (v - mu) * exp(-ls);
                s += -0.5 * u * u - ls - 0.5 * LOG_2PI;
                break;
            }
            default: s += -0.5 * v * v - 0.5 * LOG_2PI;
            }
        }
        lp[i] = (nf_real)s;
    }
}

/* See layer.h: lp[i] = log π(z_i | c_i) for n rows of dim values. */
void nf_prior_log_prob(const nf_prior *p, const nf_real *z, const nf_real *c, nf_real *lp, int64_t n) {
    int worth = NF_PAR_WORTH(n, p->dim);
    if (p->comps > 0) NF_PARALLEL_RANGE(worth, (n + GMM_ROWS - 1) / GMM_ROWS, gmm_log_prob_blocks(p, z, lp, n, lo, hi));
    else NF_PARALLEL_RANGE(worth, n, log_prob_rows(p, z, c, lp, lo, hi));
}

/* gmm_full's part of the backward for component k over the block's m rows (g: m·K weights dlp·r, row r's
 * r·K + k): with d = z − μ_k, u = A_k d, v = A_kᵀu: dz −= g·v, ∂/∂μ_k += g·v, ∂/∂log σ_kj += g·(u_j d_j/σ_kj − 1),
 * ∂/∂L_k[j][i] += −g·u_j·d_i — summed over the rows in double, then added. */
static void full_backward(const nf_prior *p, int32_t k, const nf_real *z, const double *g, nf_real *dz, int64_t m) {
    int32_t K = p->comps, D = p->dim;
    int64_t T = (int64_t)D * (D - 1) / 2;
    const nf_real *mk = p->reg->params + p->off + K + (int64_t)k * D, *lk = mk + (int64_t)K * D, *Lk = p->reg->params + tril_offset(p, k);
    nf_real *gmu = p->reg->grads + p->off + K + (int64_t)k * D, *gls = gmu + (int64_t)K * D, *gL = p->reg->grads + tril_offset(p, k);
    double is[GMM_CHUNK], d[GMM_CHUNK], u[GMM_CHUNK], v[GMM_CHUNK], gm[GMM_CHUNK] = {0}, gs[GMM_CHUNK] = {0};
    double gt[NF_GMM_FULL_MAX_DIM * (NF_GMM_FULL_MAX_DIM - 1) / 2];
    for (int64_t q = 0; q < T; q++) gt[q] = 0;
    for (int32_t j = 0; j < D; j++) is[j] = exp(-(double)lk[j]);
    for (int64_t r = 0; r < m; r++) {
        double gr = g[r * K + k];
        full_u(z + r * D, mk, is, Lk, D, d, u);
        for (int32_t j = 0; j < D; j++) v[j] = is[j] * u[j];
        for (int32_t j = 1; j < D; j++) {
            const nf_real *Lj = tril_row(Lk, j);
            double *gj = gt + (int64_t)j * (j - 1) / 2, guj = gr * u[j];
            for (int32_t i = 0; i < j; i++) v[i] += (double)Lj[i] * u[j], gj[i] -= guj * d[i];
        }
        for (int32_t j = 0; j < D; j++) {
            dz[r * D + j] += (nf_real)(-gr * v[j]);
            gm[j] += gr * v[j], gs[j] += gr * (u[j] * is[j] * d[j] - 1);
        }
    }
    for (int32_t j = 0; j < D; j++) gmu[j] += (nf_real)gm[j], gls[j] += (nf_real)gs[j];
    for (int64_t q = 0; q < T; q++) gL[q] += (nf_real)gt[q];
}

/* The gmm's backward for the m ≤ GMM_ROWS rows of z: with responsibilities r_k = e^(t_k − logsumexp t),
 * dz_j = dlp·Σ_k r_k·(−u_kj/σ_kj) (overwritten), ∂/∂μ_kj = dlp·r_k·u_kj/σ_kj, ∂/∂log σ_kj = dlp·r_k·(u_kj² − 1),
 * ∂/∂a_k = dlp·(r_k − w_k); u = (z − μ)/σ (gmm_full: full_backward). The block's parameter gradients are
 * summed in double, then added. */
static void gmm_backward_block(const nf_prior *p, const nf_real *z, const nf_real *dlp, nf_real *dz, int64_t m) {
    int32_t K = p->comps, D = p->dim;
    const nf_real *a = p->reg->params + p->off, *mu = a + K, *ls = mu + (int64_t)K * D;
    nf_real *ga = p->reg->grads + p->off, *gmu = ga + K, *gls = gmu + (int64_t)K * D;
    double t[GMM_ROWS * NF_GMM_MAX_COMPONENTS], lse_t[GMM_ROWS], is[GMM_CHUNK], la = gmm_lse_a(p), sd = 0;
    gmm_block(p, z, m, t, lse_t, NULL);
    for (int64_t r = 0; r < m; r++) { /* t ← dlp·r_k, the responsibilities' weights */
        sd += dlp[r];
        for (int32_t k = 0; k < K; k++) t[r * K + k] = dlp[r] * exp(t[r * K + k] - lse_t[r]);
    }
    memset(dz, 0, sizeof(nf_real) * (size_t)(m * D));
    for (int32_t k = 0; k < K; k++) {
        double gk = -sd * exp(a[k] - la);
        for (int64_t r = 0; r < m; r++) gk += t[r * K + k];
        ga[k] += (nf_real)gk;
        if (p->off_tril >= 0) {
            full_backward(p, k, z, t, dz, m);
            continue;
        }
        const nf_real *mk = mu + (int64_t)k * D, *lk = ls + (int64_t)k * D;
        for (int32_t j0 = 0; j0 < D; j0 += GMM_CHUNK) {
            int32_t nj = D - j0 < GMM_CHUNK ? D - j0 : GMM_CHUNK;
            for (int32_t j = 0; j < nj; j++) is[j] = exp(-(double)lk[j0 + j]);
            for (int32_t j = 0; j < nj; j++) {
                double gm = 0, gs = 0;
                for (int64_t r = 0; r < m; r++) {
                    double g = t[r * K + k], u = ((double)z[r * D + j0 + j] - mk[j0 + j]) * is[j];
                    dz[r * D + j0 + j] += (nf_real)(-g * u * is[j]);
                    gm += g * u * is[j], gs += g * (u * u - 1);
                }
                gmu[(int64_t)k * D + j0 + j] += (nf_real)gm;
                gls[(int64_t)k * D + j0 + j] += (nf_real)gs;
            }
        }
    }
}

/* See layer.h: dz = dlp·∂log π/∂z (overwritten); diag Gaussian: grads of mean, log_std (and W) +=;
 * dc += ∂L/∂c (conditional prior, dc not NULL); gmm: grads of its logits, means and log stds +=. */
void nf_prior_backward(const nf_prior *p, const nf_real *z, const nf_real *c, const nf_real *dlp, nf_real *dz,
                       nf_real *dc, int64_t n) {
    int32_t D = p->dim, K = p->ctx;
    if (p->comps > 0) {
        for (int64_t i0 = 0; i0 < n; i0 += GMM_ROWS)
            gmm_backward_block(p, z + i0 * D, dlp + i0, dz + i0 * D, n - i0 < GMM_ROWS ? n - i0 : GMM_ROWS);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const nf_real *ci = ctx_row(p, c, i);
        if (p->type == NF_PRIOR_LOGISTIC) { /* dz_j = −dlp_i·tanh(z_j / 2): d/dz of −softplus(z) − softplus(−z) */
            nf_logistic_grad(z + i * D, dlp[i], dz + i * D, D);
            continue;
        }
        for (int32_t j = 0; j < D; j++) {
            double v = z[i * D + j], g;
            switch (p->type) {
            case NF_PRIOR_DIAG_GAUSSIAN: {
                double mu, ls;
                coord_params(p, ci, j, &mu, &ls);
                double is = exp(-ls), u = (v - mu) * is, gm = dlp[i] * u * is, gs = dlp[i] * (u * u - 1);
                g = -u * is;
                nf_real *gmu = p->reg->grads + p->off, *gls = gmu + D;
                gmu[j] += (nf_real)gm;
                gls[j] += (nf_real)gs;
                if (ci) { /* μ_j and log σ_j are affine in c */
                    const nf_real *Wm = p->reg->params + p->off_ctx + (int64_t)j * K, *Ws = Wm + (int64_t)D * K;
                    nf_real *gWm = p->reg->grads + p->off_ctx + (int64_t)j * K, *gWs = gWm + (int64_t)D * K;
                    for (int32_t k = 0; k < K; k++) {
                        gWm[k] += (nf_real)(gm * ci[k]), gWs[k] += (nf_real)(gs * ci[k]);
                        if (dc) dc[i * K + k] += (nf_real)(gm * Wm[k] + gs * Ws[k]);
                    }
                }
                break;
            }
            default: g = -v;
            }
            dz[i * D + j] = (nf_real)(dlp[i] * g);
        }
    }
}

/* Logistic draws are transformed LOGISTIC_BLOCK at a time (kernels/vmath.c); the blocks start at each
 * row's first value, so a row's values do not depend on which thread draws it. */
#define LOGISTIC_BLOCK 256

/* Row i of z: D draws of π(· | c_i) at temperature T from g (advanced: one draw of nf_rng_u64 a value
 * for the logistic prior, two for the Gaussians; the gmm one more a row, for its component; la: the gmm's
 * gmm_lse_a, taken once by the caller). */
static void sample_row(const nf_prior *p, nf_rng *g, double T, const nf_real *c, nf_real *z, int64_t i, double la) {
    int32_t D = p->dim;
    if (p->type == NF_PRIOR_LOGISTIC) { /* the row's uniforms in blocks of LOGISTIC_BLOCK, then their quantiles at once */
        double u[LOGISTIC_BLOCK];
        for (int32_t j0 = 0; j0 < D; j0 += LOGISTIC_BLOCK) {
            int32_t m = D - j0 < LOGISTIC_BLOCK ? D - j0 : LOGISTIC_BLOCK;
            for (int32_t j = 0; j < m; j++) u[j] = nf_rng_uniform(g);
            nf_logistic_quantile(u, T, z + i * D + j0, m);
        }
        return;
    }
    const nf_real *ci = ctx_row(p, c, i); /* the context row, read by the diagonal Gaussian only */
    const nf_real *gm = NULL, *gs = NULL, *Lk = NULL; /* gmm: the drawn component's means, log stds (and tril) */
    double d[GMM_CHUNK];                               /* gmm_full: z − μ_k so far */
    if (p->comps > 0) { /* component k with probability w_k = softmax(a)_k: the first whose cumulative weight passes u */
        int32_t K = p->comps;
        const nf_real *a = p->reg->params + p->off;
        double u = nf_rng_uniform(g), cum = 0;
        int32_t k = 0;
        for (; k < K - 1; k++)
            if ((cum += exp(a[k] - la)) > u) break;
        gm = a + K + (int64_t)k * D, gs = a + K + (int64_t)K * D + (int64_t)k * D;
        if (p->off_tril >= 0) Lk = p->reg->params + tril_offset(p, k);
    }
    for (int32_t j = 0; j < D; j++) {
        double v;
        switch (p->type) {
        case NF_PRIOR_DIAG_GAUSSIAN: {
            double mu, ls;
            coord_params(p, ci, j, &mu, &ls);
            v = mu + T * exp(ls) * nf_rng_normal(g);
            break;
        }
        case NF_PRIOR_GMM: v = gm[j] + T * exp((double)gs[j]) * nf_rng_normal(g); break;
        case NF_PRIOR_GMM_FULL: { /* A_k d = T·ε by forward substitution: d_j = σ_kj (T ε_j − Σ_{i<j} L_k[j][i] d_i) */
            double e = T * nf_rng_normal(g);
            for (int32_t l = 0; l < j; l++) e -= (double)tril_row(Lk, j)[l] * d[l]; /* j > 0: D > 1, so Lk is set */
            d[j] = exp((double)gs[j]) * e, v = gm[j] + d[j];
            break;
        }
        default: v = T * nf_rng_normal(g);
        }
        z[i * D + j] = (nf_real)v;
    }
}

#define SAMPLE_ROWS 8   /* rows a task of a parallel draw */
#define SAMPLE_TASKS 64 /* tasks whose starting states are found at a time */

/* Tasks [t0, t1) of nf_prior_sample's rows [r0, r1): task t draws rows r0 + t·SAMPLE_ROWS … (at most
 * SAMPLE_ROWS, below r1) from the generator state start[t]. */
static void sample_tasks(const nf_prior *p, const nf_rng *start, double T, const nf_real *c, nf_real *z, int64_t r0,
                         int64_t r1, double la, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
        nf_rng g = start[t];
        int64_t i1 = r0 + (t + 1) * SAMPLE_ROWS < r1 ? r0 + (t + 1) * SAMPLE_ROWS : r1;
        for (int64_t i = r0 + t * SAMPLE_ROWS; i < i1; i++) sample_row(p, &g, T, c, z, i, la);
    }
}

/* See layer.h: n samples of π(· | c_i) at temperature T (std scaled by T) into z, from rng — the values
 * of one sequential pass, row after row. The transforms (log, sqrt, cos per value) cost 20–40 times a
 * draw, so blocks of SAMPLE_ROWS rows run on the threads, each from the state the sequential pass has at
 * its first row (found by stepping the generator): the same values for every thread count. */
void nf_prior_sample(const nf_prior *p, nf_rng *rng, double T, const nf_real *c, nf_real *z, int64_t n) {
    int32_t D = p->dim;
    uint64_t per_row = (uint64_t)D * (p->type == NF_PRIOR_LOGISTIC ? 1 : 2) + (p->comps > 0);
    double la = p->comps > 0 ? gmm_lse_a(p) : 0;
    for (int64_t r0 = 0; r0 < n; r0 += SAMPLE_ROWS * SAMPLE_TASKS) {
        int64_t r1 = n - r0 < SAMPLE_ROWS * SAMPLE_TASKS ? n : r0 + SAMPLE_ROWS * SAMPLE_TASKS;
        int64_t tasks = (r1 - r0 + SAMPLE_ROWS - 1) / SAMPLE_ROWS;
        nf_rng start[SAMPLE_TASKS];
        for (int64_t t = 0; t < tasks; t++) {
            int64_t rows = r1 - (r0 + t * SAMPLE_ROWS) < SAMPLE_ROWS ? r1 - (r0 + t * SAMPLE_ROWS) : SAMPLE_ROWS;
            start[t] = *rng;
            nf_rng_skip(rng, per_row * (uint64_t)rows);
        }
        NF_PARALLEL_RANGE(NF_PAR_WORTH(r1 - r0, D), tasks, sample_tasks(p, start, T, c, z, r0, r1, la, lo, hi));
    }
}
