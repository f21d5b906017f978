/* layers.c — the element-wise and linear invertible layers on (n, D) vectors:
 *   diag_scale   (NICE)     z = x·exp(S)                           log|det| = Σ S
 *   standardize  (fixed)    z = (x − μ)/σ                          log|det| = −Σ log σ
 *   logit        (RealNVP)  z = logit(α + (1 − 2α)(x + ½))         log|det| = Σ [log(1 − 2α) − log p(1 − p)]
 *   actnorm      (Glow)     z = (x + b)·exp(logs)                  log|det| = Σ logs
 *   permute      (fixed)    z_j = x_perm[j]                        log|det| = 0
 *   linear       (Glow 1×1) z = W x                                log|det| = log|det W| (LU)
 *   linear_lu    (Glow)     W = P·(L + I)·(U + diag(sign·exp(log_s)))  log|det| = Σ log_s
 *   batchnorm    (RealNVP)  z = (x − μ)/√(v + ε)·exp(log_gamma) + beta
 *                                              log|det| = Σ [log_gamma − ½ log(v + ε)]
 * Each follows the interface of nf_layer_ops (internal.h). */
#include "internal.h"

#define PAR_IF(n, D) if ((n) * (D) > 16384)

static int64_t zero_size(const nf_layer *L, int64_t n) {
    NF_UNUSED(L), NF_UNUSED(n);
    return 0;
}
static void no_init(nf_layer *L, nf_rng *rng) { NF_UNUSED(L), NF_UNUSED(rng); }
static void no_destroy(nf_layer *L) { NF_UNUSED(L); }
int64_t nf_no_flops(const nf_layer *L) {
    NF_UNUSED(L);
    return 0;
}

/* Allocate a layer struct of `size` bytes with its common header filled in. */
static void *layer_alloc(size_t size, const nf_layer_ops *ops, nf_flow_ctx *ctx, const char *name,
                         int32_t dim) {
    nf_layer *L = nf_xcalloc(1, size);
    if (!L) return NULL;
    L->ops = ops;
    L->ctx = ctx;
    L->dim = dim;
    L->ld = dim;
    snprintf(L->name, sizeof L->name, "%s", name);
    return L;
}

/* Reserve a (D,) tensor; -1 on failure. */
static int64_t vec(nf_flow_ctx *c, const char *layer, const char *t, nf_tensor_kind k, int64_t D) {
    int64_t s[1] = {D};
    return nf_ctx_reserve(c, layer, t, k, 1, s);
}

static nf_real sum_vec(const nf_real *v, int32_t D) {
    double s = 0;
    for (int32_t j = 0; j < D; j++) s += v[j];
    return (nf_real)s;
}

/* ------------------------------------------------------------------ diag_scale and actnorm
 * Both are z = (x + b)·exp(logs) per channel; diag_scale has no b. A row holds C channels of P values
 * each (P = 1 for vectors, P = H·W for images, NCHW), so log|det| = P·Σ_c logs_c.
 * Parameters: [b (C)] logs (C). */
typedef struct {
    nf_layer base;
    int has_bias;
    int32_t C, P;
    int64_t off_b, off_logs, off_init; /* off_init: actnorm's "initialized" flag buffer, else -1 */
} scale_layer;

/* z = (x + b)·exp(logs) (dir > 0) or x·exp(−logs) − b (dir < 0), per channel; logdet ± P·Σ logs */
static void scale_apply(const scale_layer *s, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n, int dir) {
    const nf_layer *L = &s->base;
    int32_t C = s->C, P = s->P, S = L->ld;
    const nf_real *logs = NF_P(L, s->off_logs), *b = s->has_bias ? NF_P(L, s->off_b) : NULL;
    nf_real ld = (nf_real)P * sum_vec(logs, C);
#pragma omp parallel for schedule(static) PAR_IF(n, L->dim)
    for (int64_t i = 0; i < n; i++) {
        for (int32_t c = 0; c < C; c++) {
            nf_real bc = b ? b[c] : 0, e = exp(dir > 0 ? logs[c] : -logs[c]);
            const nf_real *xi = x + i * S + (int64_t)c * P;
            nf_real *zi = z + i * S + (int64_t)c * P;
            for (int32_t p = 0; p < P; p++) zi[p] = dir > 0 ? (xi[p] + bc) * e : xi[p] * e - bc;
        }
        if (logdet) logdet[i] += dir > 0 ? ld : -ld;
    }
}

static nf_status sc_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(work);
    NF_UNUSED(cache);
    scale_layer *s = (scale_layer *)L;
    int32_t C = s->C, P = s->P, S = L->ld;
    if (s->off_init >= 0 && training && *NF_B(L, s->off_init) == 0 && n > 0) {
        /* ActNorm data-dependent initialisation: zero mean, unit variance per channel over the batch
         * and the pixels. A zero-variance channel keeps scale 1 (logs = 0) instead of exploding. */
        nf_real *logs = NF_P(L, s->off_logs), *b = NF_P(L, s->off_b);
        for (int32_t c = 0; c < C; c++) {
            double m = 0, v = 0, cnt = (double)n * P;
            for (int64_t i = 0; i < n; i++)
                for (int32_t p = 0; p < P; p++) m += x[i * S + (int64_t)c * P + p];
            m /= cnt;
            for (int64_t i = 0; i < n; i++)
                for (int32_t p = 0; p < P; p++) {
                    double d = x[i * S + (int64_t)c * P + p] - m;
                    v += d * d;
                }
            double sd = sqrt(v / cnt);
            b[c] = (nf_real)-m;
            logs[c] = sd > 1e-6 ? (nf_real)-log(sd + 1e-6) : 0;
        }
        *NF_B(L, s->off_init) = 1;
    }
    scale_apply(s, x, z, logdet, n, 1);
    return NF_OK;
}

static nf_status sc_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    NF_UNUSED(work);
    scale_apply((scale_layer *)L, z, x, logdet, n, -1);
    return NF_OK;
}

static void sc_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(cache), NF_UNUSED(work), NF_UNUSED(training);
    scale_layer *s = (scale_layer *)L;
    int32_t C = s->C, P = s->P, S = L->ld;
    const nf_real *logs = NF_P(L, s->off_logs), *b = s->has_bias ? NF_P(L, s->off_b) : NULL;
    nf_real *glogs = NF_G(L, s->off_logs), *gb = s->has_bias ? NF_G(L, s->off_b) : NULL;
#pragma omp parallel for schedule(static) PAR_IF(n, L->dim)
    for (int64_t i = 0; i < n; i++)
        for (int32_t c = 0; c < C; c++) {
            nf_real e = exp(logs[c]);
            for (int32_t p = 0; p < P; p++) dx[i * S + (int64_t)c * P + p] = dz[i * S + (int64_t)c * P + p] * e;
        }
    double sld = 0;
    for (int64_t i = 0; i < n; i++) sld += dld[i];
    for (int32_t c = 0; c < C; c++) {
        double e = exp((double)logs[c]), bc = b ? b[c] : 0, gl = 0, gbc = 0;
        for (int64_t i = 0; i < n; i++)
            for (int32_t p = 0; p < P; p++) {
                int64_t k = i * S + (int64_t)c * P + p;
                gl += (double)dz[k] * (x[k] + bc) * e;
                gbc += (double)dz[k] * e;
            }
        glogs[c] += (nf_real)(gl + sld * P);
        if (gb) gb[c] += (nf_real)gbc;
    }
}

static void actnorm_init(nf_layer *L, nf_rng *rng) {
    NF_UNUSED(rng);
    scale_layer *s = (scale_layer *)L;
    *NF_B(L, s->off_init) = 0; /* params start at zero: the identity until the first training batch */
}

static const nf_layer_ops diag_scale_ops = {"diag_scale", sc_forward, sc_inverse, sc_backward,
                                            zero_size,    zero_size,  no_init,    no_destroy, nf_no_flops};
static const nf_layer_ops actnorm_ops = {"actnorm", sc_forward, sc_inverse,   sc_backward,
                                         zero_size, zero_size,  actnorm_init, no_destroy, nf_no_flops};

nf_layer *nf_diag_scale_create(nf_flow_ctx *c, const char *name, int32_t dim) {
    scale_layer *s = layer_alloc(sizeof *s, &diag_scale_ops, c, name, dim);
    if (!s) return NULL;
    s->C = dim, s->P = 1;
    s->off_b = s->off_init = -1;
    s->off_logs = vec(c, name, "log_scale", NF_TENSOR_PARAM, dim);
    if (s->off_logs < 0) return free(s), NULL;
    return &s->base;
}

nf_layer *nf_actnorm_create(nf_flow_ctx *c, const char *name, int32_t dim) { return nf_actnorm2d_create(c, name, dim, 1); }

nf_layer *nf_actnorm2d_create(nf_flow_ctx *c, const char *name, int32_t C, int32_t P) {
    scale_layer *s = layer_alloc(sizeof *s, &actnorm_ops, c, name, C * P);
    if (!s) return NULL;
    s->has_bias = 1, s->C = C, s->P = P;
    s->off_b = vec(c, name, "bias", NF_TENSOR_PARAM, C);
    s->off_logs = vec(c, name, "log_scale", NF_TENSOR_PARAM, C);
    s->off_init = vec(c, name, "initialized", NF_TENSOR_BUFFER, 1);
    if (s->off_b < 0 || s->off_logs < 0 || s->off_init < 0) return free(s), NULL;
    return &s->base;
}

/* ------------------------------------------------------------------ logit (RealNVP's preprocessing)
 * On dequantised pixels x ∈ [−½, ½) (nf_images_dequantize): p = α + (1 − 2α)(x + ½), z = log p − log(1 − p),
 *   log|det ∂z/∂x| = Σ [log(1 − 2α) − log p − log(1 − p)]
 * so the likelihood of z, plus this log-det, is the likelihood of the pixels (bits/dim stay comparable).
 * α keeps p away from 0 and 1. No parameters. */
typedef struct {
    nf_layer base;
    double alpha;
} logit_layer;

static nf_status lg_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(cache), NF_UNUSED(work), NF_UNUSED(training);
    double a = ((logit_layer *)L)->alpha, l12a = log(1 - 2 * a);
    int32_t D = L->dim, S = L->ld;
    int bad = 0;
#pragma omp parallel for schedule(static) PAR_IF(n, D) reduction(| : bad)
    for (int64_t i = 0; i < n; i++) {
        double ld = 0;
        for (int32_t j = 0; j < D; j++) {
            nf_real p = (nf_real)(a + (1 - 2 * a) * ((double)x[i * S + j] + 0.5));
            if (!(p > 0 && p < 1)) bad = 1;
            nf_real lp = log(p), l1p = log1p(-p);
            z[i * S + j] = lp - l1p;
            ld += l12a - lp - l1p;
        }
        if (logdet) logdet[i] += (nf_real)ld;
    }
    if (bad) return nf_fail(NF_ERR_NUMERIC, "logit layer: an input lies outside [-0.5, 0.5] (the layer expects dequantised pixels)");
    return NF_OK;
}

static nf_status lg_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    NF_UNUSED(work);
    double a = ((logit_layer *)L)->alpha, l12a = log(1 - 2 * a);
    int32_t D = L->dim, S = L->ld;
#pragma omp parallel for schedule(static) PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++) {
        double ld = 0;
        for (int32_t j = 0; j < D; j++) {
            double v = z[i * S + j], p = v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v));
            /* log p = −softplus(−v), log(1 − p) = −softplus(v) */
            double lp = v >= 0 ? -log1p(exp(-v)) : v - log1p(exp(v)), l1p = lp - v;
            x[i * S + j] = (nf_real)((p - a) / (1 - 2 * a) - 0.5);
            ld += l12a - lp - l1p;
        }
        if (logdet) logdet[i] -= (nf_real)ld;
    }
    return NF_OK;
}

static void lg_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(cache), NF_UNUSED(work), NF_UNUSED(training);
    double a = ((logit_layer *)L)->alpha;
    int32_t D = L->dim, S = L->ld;
#pragma omp parallel for schedule(static) PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < D; j++) {
            /* ∂z/∂x = (1 − 2α)/(p(1 − p)),  ∂logdet/∂x = (1 − 2α)(2p − 1)/(p(1 − p)) */
            nf_real p = (nf_real)(a + (1 - 2 * a) * ((double)x[i * S + j] + 0.5));
            nf_real g = (nf_real)(1 - 2 * a) / (p * (1 - p));
            dx[i * S + j] = g * (dz[i * S + j] + dld[i] * (2 * p - 1));
        }
}

static const nf_layer_ops logit_ops = {"logit",   lg_forward, lg_inverse, lg_backward,
                                       zero_size, zero_size,  no_init,    no_destroy, nf_no_flops};

nf_layer *nf_logit_create(nf_flow_ctx *c, const char *name, int32_t dim, double alpha) {
    if (!(alpha >= 0 && alpha < 0.5)) return NULL;
    logit_layer *s = layer_alloc(sizeof *s, &logit_ops, c, name, dim);
    if (s) s->alpha = alpha;
    return s ? &s->base : NULL;
}

/* ------------------------------------------------------------------ standardize (fixed buffers) */
typedef struct {
    nf_layer base;
    int64_t off_mean, off_std;
} std_layer;

static nf_status st_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(work);
    NF_UNUSED(cache), NF_UNUSED(training);
    std_layer *s = (std_layer *)L;
    const nf_real *mu = NF_B(L, s->off_mean), *sd = NF_B(L, s->off_std);
    int32_t D = L->dim, S = L->ld;
    double ld = 0;
    for (int32_t j = 0; j < D; j++) ld -= log((double)sd[j]);
#pragma omp parallel for schedule(static) PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++) {
        for (int32_t j = 0; j < D; j++) z[i * S + j] = (x[i * S + j] - mu[j]) / sd[j];
        if (logdet) logdet[i] += (nf_real)ld;
    }
    return NF_OK;
}

static nf_status st_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    NF_UNUSED(work);
    std_layer *s = (std_layer *)L;
    const nf_real *mu = NF_B(L, s->off_mean), *sd = NF_B(L, s->off_std);
    int32_t D = L->dim, S = L->ld;
    double ld = 0;
    for (int32_t j = 0; j < D; j++) ld -= log((double)sd[j]);
#pragma omp parallel for schedule(static) PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++) {
        for (int32_t j = 0; j < D; j++) x[i * S + j] = z[i * S + j] * sd[j] + mu[j];
        if (logdet) logdet[i] -= (nf_real)ld;
    }
    return NF_OK;
}

static void st_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(x), NF_UNUSED(cache), NF_UNUSED(dld), NF_UNUSED(work), NF_UNUSED(training);
    std_layer *s = (std_layer *)L;
    const nf_real *sd = NF_B(L, s->off_std);
    int32_t D = L->dim, S = L->ld;
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < D; j++) dx[i * S + j] = dz[i * S + j] / sd[j];
}

static void st_init(nf_layer *L, nf_rng *rng) {
    NF_UNUSED(rng);
    std_layer *s = (std_layer *)L;
    for (int32_t j = 0; j < L->dim; j++) *NF_B(L, s->off_mean + j) = 0, *NF_B(L, s->off_std + j) = 1;
}

static const nf_layer_ops standardize_ops = {"standardize", st_forward, st_inverse, st_backward,
                                             zero_size,     zero_size,  st_init,    no_destroy, nf_no_flops};

nf_layer *nf_standardize_create(nf_flow_ctx *c, const char *name, int32_t dim) {
    std_layer *s = layer_alloc(sizeof *s, &standardize_ops, c, name, dim);
    if (!s) return NULL;
    s->off_mean = vec(c, name, "mean", NF_TENSOR_BUFFER, dim);
    s->off_std = vec(c, name, "std", NF_TENSOR_BUFFER, dim);
    if (s->off_mean < 0 || s->off_std < 0) return free(s), NULL;
    return &s->base;
}

void nf_standardize_set(nf_layer *L, const nf_real *mean, const nf_real *std) {
    std_layer *s = (std_layer *)L;
    memcpy(NF_B(L, s->off_mean), mean, sizeof(nf_real) * (size_t)L->dim);
    memcpy(NF_B(L, s->off_std), std, sizeof(nf_real) * (size_t)L->dim);
}

/* ------------------------------------------------------------------ permute (fixed buffer) */
typedef struct {
    nf_layer base;
    nf_perm_type type;
    int32_t C, H, W; /* squeeze: the input image shape (C = 0: a plain permutation) */
    int64_t off_perm; /* perm[j] as floats (exact for D < 2^24) */
} perm_layer;

static int32_t perm_at(const nf_layer *L, int64_t off, int32_t j) { return (int32_t)L->ctx->buffers[off + j]; }

static void gather_cols(const nf_layer *L, int64_t off, const nf_real *x, nf_real *z, int64_t n, int inv) {
    int32_t D = L->dim, S = L->ld;
#pragma omp parallel for schedule(static) PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < D; j++) {
            int32_t p = perm_at(L, off, j);
            if (inv) z[i * S + p] = x[i * S + j];
            else z[i * S + j] = x[i * S + p];
        }
}

static nf_status pm_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(work);
    NF_UNUSED(logdet), NF_UNUSED(cache), NF_UNUSED(training);
    gather_cols(L, ((perm_layer *)L)->off_perm, x, z, n, 0);
    return NF_OK;
}
static nf_status pm_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    NF_UNUSED(logdet), NF_UNUSED(work);
    gather_cols(L, ((perm_layer *)L)->off_perm, z, x, n, 1);
    return NF_OK;
}
static void pm_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(x), NF_UNUSED(cache), NF_UNUSED(dld), NF_UNUSED(work), NF_UNUSED(training);
    gather_cols(L, ((perm_layer *)L)->off_perm, dz, dx, n, 1);
}
static void pm_init(nf_layer *L, nf_rng *rng) {
    perm_layer *p = (perm_layer *)L;
    int32_t D = L->dim;
    nf_real *perm = NF_B(L, p->off_perm);
    if (p->C) { /* squeeze 2×2: out channel c·4 + dy·2 + dx, pixel (i, j) ← in channel c, pixel (2i+dy, 2j+dx) */
        int32_t C = p->C, H = p->H, W = p->W, h = H / 2, w = W / 2;
        for (int32_t c = 0; c < C; c++)
            for (int32_t dy = 0; dy < 2; dy++)
                for (int32_t dx = 0; dx < 2; dx++)
                    for (int32_t i = 0; i < h; i++)
                        for (int32_t j = 0; j < w; j++)
                            perm[((c * 4 + dy * 2 + dx) * h + i) * w + j] = (nf_real)((c * H + 2 * i + dy) * W + 2 * j + dx);
        return;
    }
    for (int32_t j = 0; j < D; j++) perm[j] = (nf_real)(p->type == NF_PERM_REVERSE ? D - 1 - j : j);
    if (p->type == NF_PERM_RANDOM) /* Fisher–Yates */
        for (int32_t j = D - 1; j > 0; j--) {
            int32_t k = (int32_t)(nf_rng_u64(rng) % (uint64_t)(j + 1));
            nf_real t = perm[j];
            perm[j] = perm[k], perm[k] = t;
        }
}

static const nf_layer_ops permute_ops = {"permute", pm_forward, pm_inverse, pm_backward,
                                         zero_size, zero_size,  pm_init,    no_destroy, nf_no_flops};

static const nf_layer_ops squeeze_ops = {"squeeze", pm_forward, pm_inverse, pm_backward,
                                         zero_size, zero_size,  pm_init,    no_destroy, nf_no_flops};

nf_layer *nf_squeeze_create(nf_flow_ctx *c, const char *name, int32_t C, int32_t H, int32_t W) {
    if (H % 2 || W % 2) return NULL;
    perm_layer *p = layer_alloc(sizeof *p, &squeeze_ops, c, name, C * H * W);
    if (!p) return NULL;
    p->C = C, p->H = H, p->W = W;
    p->off_perm = vec(c, name, "perm", NF_TENSOR_BUFFER, C * H * W);
    if (p->off_perm < 0) return free(p), NULL;
    return &p->base;
}

nf_layer *nf_permute_create(nf_flow_ctx *c, const char *name, int32_t dim, nf_perm_type type) {
    perm_layer *p = layer_alloc(sizeof *p, &permute_ops, c, name, dim);
    if (!p) return NULL;
    p->type = type;
    p->off_perm = vec(c, name, "perm", NF_TENSOR_BUFFER, dim);
    if (p->off_perm < 0) return free(p), NULL;
    return &p->base;
}

/* ------------------------------------------------------------------ invertible linear (plain / LU)
 * Mixes the C channels of every one of the P pixels: z_s (C, P) = W · x_s (C, P) (P = 1: vectors,
 * z = x·Wᵀ for rows; P = H·W: Glow's invertible 1×1 convolution), log|det| = P·log|det W|.
 * Plain: W is the parameter, log|det W| by LU in double every call.
 * LU: W = P·A·B with A = L + I (L strictly lower), B = U + diag(sign·exp(log_s)) (U strictly upper);
 * P is the fixed row permutation W[r] = (A·B)[perm[r]]. Cache (n-independent): W (C, C). */
typedef struct {
    nf_layer base;
    int lu;
    int32_t C, P;                           /* channels, pixels per channel */
    int64_t off_W;                          /* plain */
    int64_t off_L, off_U, off_logs;         /* LU params */
    int64_t off_perm, off_sign;             /* LU buffers */
    double *lu_a, *lu_col;                  /* scratch for log|det| and inverses, (C, C) and (C) … */
    int32_t *lu_perm;                       /* … allocated once with the layer */
} linear_layer;

static void lu_build_W(const linear_layer *l, nf_real *W, nf_real *A, nf_real *B) {
    const nf_layer *L = &l->base;
    int32_t D = l->C;
    const nf_real *Lm = NF_P(L, l->off_L), *Um = NF_P(L, l->off_U), *ls = NF_P(L, l->off_logs);
    const nf_real *perm = NF_B(L, l->off_perm), *sg = NF_B(L, l->off_sign);
    for (int32_t i = 0; i < D; i++)
        for (int32_t j = 0; j < D; j++) {
            A[i * D + j] = i > j ? Lm[i * D + j] : (i == j ? 1 : 0);
            B[i * D + j] = i < j ? Um[i * D + j] : (i == j ? sg[i] * exp(ls[i]) : 0);
        }
    for (int32_t r = 0; r < D; r++) {
        int32_t pr = (int32_t)perm[r];
        for (int32_t j = 0; j < D; j++) {
            double s = 0;
            for (int32_t k = 0; k < D; k++) s += (double)A[pr * D + k] * B[k * D + j];
            W[r * D + j] = (nf_real)s;
        }
    }
}

/* W and log|det W| of the current parameters. work: 2·D·D floats (LU only). */
static nf_status lin_weight(const linear_layer *l, nf_real *W, nf_real *work, double *ld) {
    const nf_layer *L = &l->base;
    int32_t D = l->C;
    if (!l->lu) {
        memcpy(W, NF_P(L, l->off_W), sizeof(nf_real) * (size_t)D * (size_t)D);
        return nf_logabsdet_ws(W, D, l->lu_a, l->lu_perm, ld);
    }
    lu_build_W(l, W, work, work + (int64_t)D * D);
    const nf_real *ls = NF_P(L, l->off_logs);
    double s = 0;
    for (int32_t j = 0; j < D; j++) s += ls[j];
    *ld = s;
    return NF_OK;
}

static int64_t lin_flops(const nf_layer *L) {
    const linear_layer *l = (const linear_layer *)L;
    return 2 * (int64_t)l->C * l->C * l->P;
}

static int64_t lin_cache_size(const nf_layer *L, int64_t n) {
    NF_UNUSED(n);
    const linear_layer *l = (const linear_layer *)L;
    return (int64_t)l->C * l->C;
}
static int64_t lin_work_size(const nf_layer *L, int64_t n) {
    NF_UNUSED(n);
    const linear_layer *l = (const linear_layer *)L;
    return 5 * (int64_t)l->C * l->C;
}

/* z_s = M · x_s for every sample (M: (C, C)); trans: Mᵀ instead */
static void mix_channels(const linear_layer *l, const nf_real *M, int trans, const nf_real *x, nf_real *z, int64_t n) {
    int32_t C = l->C, P = l->P, S = l->base.ld;
    if (P == 1) { /* rows: z = x·Mᵀ (or x·M) as one product */
        nf_gemm(0, !trans, n, C, C, 1, x, S, M, C, 0, z, S);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) nf_gemm(trans, 0, C, P, C, 1, M, C, x + i * S, P, 0, z + i * S, P);
}

static nf_status lin_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                             nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(training);
    linear_layer *l = (linear_layer *)L;
    double ld;
    nf_status st = lin_weight(l, cache, work, &ld); /* work: 2·C·C of the 5·C·C reserved */
    if (st) return nf_fail(st, "%s: the weight matrix is singular", L->name);
    mix_channels(l, cache, 0, x, z, n);
    if (logdet)
        for (int64_t i = 0; i < n; i++) logdet[i] += (nf_real)(ld * l->P);
    return NF_OK;
}

static nf_status lin_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                             nf_real *work) {
    linear_layer *l = (linear_layer *)L;
    int32_t D = l->C;
    int64_t DD = (int64_t)D * D;
    double ld;
    nf_real *W = work, *Winv = work + DD;
    nf_status st = lin_weight(l, W, work + 2 * DD, &ld);
    if (!st) st = nf_invert_ws(W, D, Winv, l->lu_a, l->lu_perm, l->lu_col);
    if (st) return nf_fail(st, "%s: the weight matrix is singular", L->name);
    mix_channels(l, Winv, 0, z, x, n);
    if (logdet)
        for (int64_t i = 0; i < n; i++) logdet[i] -= (nf_real)(ld * l->P);
    return NF_OK;
}

static void lin_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                         const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(training);
    linear_layer *l = (linear_layer *)L;
    int32_t D = l->C, P = l->P, S = L->ld;
    int64_t DD = (int64_t)D * D;
    const nf_real *W = cache;
    double sld = 0;
    for (int64_t i = 0; i < n; i++) sld += dld[i];
    sld *= P; /* log|det| = P·log|det W| */
    mix_channels(l, W, 1, dz, dx, n); /* dx_s = Wᵀ·dz_s */
    nf_real *dW = work;               /* dW = Σ_s dz_s·x_sᵀ, samples in order */
    if (P == 1) nf_gemm(1, 0, D, D, n, 1, dz, S, x, S, 0, dW, D);
    else
        for (int64_t i = 0; i < n; i++) nf_gemm(0, 1, D, D, P, 1, dz + i * S, P, x + i * S, P, i ? 1 : 0, dW, D);
    if (!l->lu) {
        /* ∂ log|det W| / ∂W = W⁻ᵀ */
        nf_real *Winv = work + DD, *g = NF_G(L, l->off_W);
        if (nf_invert_ws(W, D, Winv, l->lu_a, l->lu_perm, l->lu_col) != NF_OK) return; /* forward succeeded with this W */
        for (int32_t i = 0; i < D; i++)
            for (int32_t j = 0; j < D; j++) g[i * D + j] += dW[i * D + j] + (nf_real)sld * Winv[j * D + i];
        return;
    }
    nf_real *A = work + DD, *B = work + 2 * DD, *Wt = work + 3 * DD, *dM = work + 4 * DD;
    lu_build_W(l, Wt, A, B);
    const nf_real *perm = NF_B(L, l->off_perm), *sg = NF_B(L, l->off_sign), *ls = NF_P(L, l->off_logs);
    for (int32_t r = 0; r < D; r++) memcpy(dM + (int64_t)perm[r] * D, dW + (int64_t)r * D, sizeof(nf_real) * (size_t)D);
    nf_real *gL = NF_G(L, l->off_L), *gU = NF_G(L, l->off_U), *gls = NF_G(L, l->off_logs);
    for (int32_t i = 0; i < D; i++)
        for (int32_t j = 0; j < D; j++) {
            if (i > j) { /* dA = dM·Bᵀ, strictly lower part */
                double s = 0;
                for (int32_t k = 0; k < D; k++) s += (double)dM[i * D + k] * B[j * D + k];
                gL[i * D + j] += (nf_real)s;
            } else { /* dB = Aᵀ·dM, upper part and diagonal */
                double s = 0;
                for (int32_t k = 0; k < D; k++) s += (double)A[k * D + i] * dM[k * D + j];
                if (i < j) gU[i * D + j] += (nf_real)s;
                else gls[i] += (nf_real)(s * sg[i] * exp((double)ls[i]) + sld);
            }
        }
}

static void lin_init(nf_layer *L, nf_rng *rng) {
    linear_layer *l = (linear_layer *)L;
    int32_t D = l->C;
    double *Q = malloc(sizeof(double) * (size_t)D * (size_t)D);
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)D);
    if (!Q || !perm) { /* leave zero parameters; nf_flow_create checks allocation before init */
        free(Q), free(perm);
        return;
    }
    nf_random_orthogonal(rng, D, Q);
    if (!l->lu) {
        for (int64_t i = 0; i < (int64_t)D * D; i++) NF_P(L, l->off_W)[i] = (nf_real)Q[i];
    } else {
        nf_lu_decompose(Q, perm, D); /* rows: (LU)[i] = Q[perm[i]], so W[perm[i]] = (A·B)[i] */
        nf_real *Lm = NF_P(L, l->off_L), *Um = NF_P(L, l->off_U), *ls = NF_P(L, l->off_logs);
        nf_real *pb = NF_B(L, l->off_perm), *sg = NF_B(L, l->off_sign);
        for (int32_t i = 0; i < D; i++) {
            pb[perm[i]] = (nf_real)i;
            for (int32_t j = 0; j < D; j++) {
                Lm[i * D + j] = i > j ? (nf_real)Q[i * D + j] : 0;
                Um[i * D + j] = i < j ? (nf_real)Q[i * D + j] : 0;
            }
            sg[i] = Q[i * D + i] < 0 ? -1 : 1;
            ls[i] = (nf_real)log(fabs(Q[i * D + i]));
        }
    }
    free(Q), free(perm);
}

static void lin_destroy(nf_layer *L) {
    linear_layer *l = (linear_layer *)L;
    free(l->lu_a), free(l->lu_col), free(l->lu_perm);
}

static const nf_layer_ops linear_ops = {"linear",       lin_forward,   lin_inverse, lin_backward,
                                        lin_cache_size, lin_work_size, lin_init,    lin_destroy, lin_flops};
static const nf_layer_ops linear_lu_ops = {"linear_lu",    lin_forward,   lin_inverse, lin_backward,
                                           lin_cache_size, lin_work_size, lin_init,    lin_destroy, lin_flops};

nf_layer *nf_linear_create(nf_flow_ctx *c, const char *name, int32_t dim, int lu) { return nf_conv1x1_create(c, name, dim, 1, lu); }

nf_layer *nf_conv1x1_create(nf_flow_ctx *c, const char *name, int32_t C, int32_t P, int lu) {
    int32_t dim = C;
    linear_layer *l = layer_alloc(sizeof *l, lu ? &linear_lu_ops : &linear_ops, c, name, C * P);
    if (!l) return NULL;
    l->lu = lu, l->C = C, l->P = P;
    l->lu_a = malloc(sizeof(double) * (size_t)C * (size_t)C);
    l->lu_col = malloc(sizeof(double) * (size_t)C);
    l->lu_perm = malloc(sizeof(int32_t) * (size_t)C);
    if (!l->lu_a || !l->lu_col || !l->lu_perm) {
        lin_destroy(&l->base);
        return free(l), NULL;
    }
    int64_t sq[2] = {dim, dim};
    int ok;
    if (!lu) {
        l->off_W = nf_ctx_reserve(c, name, "weight", NF_TENSOR_PARAM, 2, sq);
        ok = l->off_W >= 0;
    } else {
        l->off_L = nf_ctx_reserve(c, name, "lower", NF_TENSOR_PARAM, 2, sq);
        l->off_U = nf_ctx_reserve(c, name, "upper", NF_TENSOR_PARAM, 2, sq);
        l->off_logs = vec(c, name, "log_s", NF_TENSOR_PARAM, dim);
        l->off_perm = vec(c, name, "perm", NF_TENSOR_BUFFER, dim);
        l->off_sign = vec(c, name, "sign", NF_TENSOR_BUFFER, dim);
        ok = l->off_L >= 0 && l->off_U >= 0 && l->off_logs >= 0 && l->off_perm >= 0 && l->off_sign >= 0;
    }
    if (!ok) {
        lin_destroy(&l->base);
        return free(l), NULL;
    }
    return &l->base;
}

/* ------------------------------------------------------------------ batch norm (RealNVP)
 * Training: batch mean μ and biased variance v; running averages updated with momentum 0.1.
 * Evaluation and inverse: running averages. Cache: μ (D) | 1/√(v+ε) (D). */
#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1
typedef struct {
    nf_layer base;
    int64_t off_lg, off_beta, off_rmean, off_rvar;
} bn_layer;

static int64_t bn_cache_size(const nf_layer *L, int64_t n) {
    NF_UNUSED(n);
    return 2 * (int64_t)L->dim;
}

static nf_status bn_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(work);
    bn_layer *b = (bn_layer *)L;
    int32_t D = L->dim, S = L->ld;
    nf_real *mu = cache, *inv = cache + D, *rm = NF_B(L, b->off_rmean), *rv = NF_B(L, b->off_rvar);
    const nf_real *lg = NF_P(L, b->off_lg), *beta = NF_P(L, b->off_beta);
    double ld = 0;
    for (int32_t j = 0; j < D; j++) {
        double m = rm[j], v = rv[j];
        if (training && n > 0) {
            m = 0, v = 0;
            for (int64_t i = 0; i < n; i++) m += x[i * S + j];
            m /= (double)n;
            for (int64_t i = 0; i < n; i++) v += (x[i * S + j] - m) * (x[i * S + j] - m);
            v /= (double)n;
            rm[j] = (nf_real)((1 - BN_MOMENTUM) * rm[j] + BN_MOMENTUM * m);
            rv[j] = (nf_real)((1 - BN_MOMENTUM) * rv[j] + BN_MOMENTUM * v);
        }
        mu[j] = (nf_real)m;
        inv[j] = (nf_real)(1.0 / sqrt(v + BN_EPS));
        ld += lg[j] - 0.5 * log(v + BN_EPS);
    }
#pragma omp parallel for schedule(static) PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++) {
        for (int32_t j = 0; j < D; j++) z[i * S + j] = (x[i * S + j] - mu[j]) * inv[j] * exp(lg[j]) + beta[j];
        if (logdet) logdet[i] += (nf_real)ld;
    }
    return NF_OK;
}

static nf_status bn_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    NF_UNUSED(work);
    bn_layer *b = (bn_layer *)L;
    int32_t D = L->dim, S = L->ld;
    const nf_real *rm = NF_B(L, b->off_rmean), *rv = NF_B(L, b->off_rvar);
    const nf_real *lg = NF_P(L, b->off_lg), *beta = NF_P(L, b->off_beta);
    double ld = 0;
    for (int32_t j = 0; j < D; j++) ld += lg[j] - 0.5 * log(rv[j] + BN_EPS);
#pragma omp parallel for schedule(static) PAR_IF(n, D)
    for (int64_t i = 0; i < n; i++) {
        for (int32_t j = 0; j < D; j++)
            x[i * S + j] = (z[i * S + j] - beta[j]) * exp(-lg[j]) * sqrt(rv[j] + R(BN_EPS)) + rm[j];
        if (logdet) logdet[i] -= (nf_real)ld;
    }
    return NF_OK;
}

static void bn_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(work);
    bn_layer *b = (bn_layer *)L;
    int32_t D = L->dim, S = L->ld;
    const nf_real *mu = cache, *inv = cache + D, *lg = NF_P(L, b->off_lg);
    nf_real *glg = NF_G(L, b->off_lg), *gbeta = NF_G(L, b->off_beta);
    double sld = 0;
    for (int64_t i = 0; i < n; i++) sld += dld[i];
    for (int32_t j = 0; j < D; j++) {
        double g = exp((double)lg[j]), iv = inv[j];
        double sum_dxh = 0, sum_dxh_xh = 0, sum_dz = 0;
        for (int64_t i = 0; i < n; i++) {
            double xh = (x[i * S + j] - mu[j]) * iv, dxh = dz[i * S + j] * g;
            sum_dxh += dxh, sum_dxh_xh += dxh * xh, sum_dz += dz[i * S + j];
        }
        glg[j] += (nf_real)(sum_dxh_xh + sld);
        gbeta[j] += (nf_real)sum_dz;
        for (int64_t i = 0; i < n; i++) {
            double xh = (x[i * S + j] - mu[j]) * iv, dxh = dz[i * S + j] * g;
            if (!training) {
                dx[i * S + j] = (nf_real)(dxh * iv);
            } else {
                /* batch statistics: the usual batch-norm backward, plus the log-det's dependence on v:
                 * ∂(−½ log(v+ε))/∂x_ij = −(x_ij − μ_j)/(n (v+ε)) = −xh·iv/n */
                double d = iv / (double)n * ((double)n * dxh - sum_dxh - xh * sum_dxh_xh);
                dx[i * S + j] = (nf_real)(d - sld * xh * iv / (double)n);
            }
        }
    }
}

static void bn_init(nf_layer *L, nf_rng *rng) {
    NF_UNUSED(rng);
    bn_layer *b = (bn_layer *)L;
    for (int32_t j = 0; j < L->dim; j++) *NF_B(L, b->off_rmean + j) = 0, *NF_B(L, b->off_rvar + j) = 1;
}

static const nf_layer_ops batchnorm_ops = {"batchnorm",   bn_forward, bn_inverse, bn_backward,
                                           bn_cache_size, zero_size,  bn_init,    no_destroy, nf_no_flops};

nf_layer *nf_batchnorm_create(nf_flow_ctx *c, const char *name, int32_t dim) {
    bn_layer *b = layer_alloc(sizeof *b, &batchnorm_ops, c, name, dim);
    if (!b) return NULL;
    b->off_lg = vec(c, name, "log_gamma", NF_TENSOR_PARAM, dim);
    b->off_beta = vec(c, name, "beta", NF_TENSOR_PARAM, dim);
    b->off_rmean = vec(c, name, "running_mean", NF_TENSOR_BUFFER, dim);
    b->off_rvar = vec(c, name, "running_var", NF_TENSOR_BUFFER, dim);
    if (b->off_lg < 0 || b->off_beta < 0 || b->off_rmean < 0 || b->off_rvar < 0) return free(b), NULL;
    return &b->base;
}

void nf_layer_free(nf_layer *L) {
    if (!L) return;
    L->ops->destroy(L);
    free(L);
}
