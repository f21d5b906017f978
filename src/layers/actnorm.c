/* layers/actnorm.c — ActNorm (Glow) and NICE's diagonal scaling (interface: layer.h). */
#include "layers/layer.h"

/* Σ v[0..D) accumulated in double, returned as nf_real. */
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
    double stat[];                     /* actnorm: 2C + 1 sums for the initialisation (see sc_forward) */
} scale_layer;

/* zi[p] = xi[p]·e (mode 0: no bias), (xi[p] + bc)·e (mode > 0), xi[p]·e − bc (mode < 0) over P values. */
static inline void scale_span(const nf_real *xi, nf_real *zi, int32_t P, nf_real e, nf_real bc, int mode) {
    if (mode == 0)
        for (int32_t p = 0; p < P; p++) zi[p] = xi[p] * e;
    else if (mode > 0)
        for (int32_t p = 0; p < P; p++) zi[p] = (xi[p] + bc) * e;
    else
        for (int32_t p = 0; p < P; p++) zi[p] = xi[p] * e - bc;
}

/* z = (x + b)·e forward (dir > 0), x·e − b inverse (dir < 0), per channel c of P positions in rows of
 * S floats, e_c = exp(±logs_c) (b may be NULL: no bias). With few positions per channel (NICE's diagonal
 * scale: P = 1, 784 channels) channel by channel, each exp once per batch instead of once per row (it
 * was 3 % of nice-mnist's evaluation); otherwise row by row. Each element gets the same operations
 * either way, so the results do not depend on the order or the thread count. */
static void scale_rows(int32_t C, int32_t P, int64_t S, const nf_real *logs, const nf_real *b, const nf_real *x,
                       nf_real *z, int64_t n, int dir) {
    if (P < 16) {
#pragma omp parallel for schedule(static) NF_PAR_IF(n, (int64_t)C * P)
        for (int32_t c = 0; c < C; c++) {
            nf_real bc = b ? b[c] : 0, e = exp(dir > 0 ? logs[c] : -logs[c]);
            for (int64_t i = 0; i < n; i++) {
                const nf_real *xi = x + i * S + (int64_t)c * P;
                nf_real *zi = z + i * S + (int64_t)c * P;
                scale_span(xi, zi, P, e, bc, b ? dir : 0);
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) NF_PAR_IF(n, (int64_t)C * P)
    for (int64_t i = 0; i < n; i++)
        for (int32_t c = 0; c < C; c++) {
            nf_real bc = b ? b[c] : 0, e = exp(dir > 0 ? logs[c] : -logs[c]);
            const nf_real *xi = x + i * S + (int64_t)c * P;
            nf_real *zi = z + i * S + (int64_t)c * P;
            scale_span(xi, zi, P, e, bc, b ? dir : 0);
        }
}

/* z = (x + b)·exp(logs) (dir > 0) or x·exp(−logs) − b (dir < 0), per channel; logdet ± P·Σ logs */
static void scale_apply(const scale_layer *s, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n, int dir) {
    const nf_layer *L = &s->base;
    int32_t C = s->C, P = s->P;
    const nf_real *logs = NF_P(L, s->off_logs), *b = s->has_bias ? NF_P(L, s->off_b) : NULL;
    nf_real ld = (nf_real)P * sum_vec(logs, C);
    scale_rows(C, P, L->ld, logs, b, x, z, n, dir);
    if (logdet)
        for (int64_t i = 0; i < n; i++) logdet[i] += dir > 0 ? ld : -ld;
}

/* ops->forward: z = (x + b)·exp(logs); in training, ActNorm first sets b, logs from this batch once
 * (data-dependent init, writes the parameters). No cache or scratch. NF_OK. */
static nf_status sc_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(work);
    NF_UNUSED(cache);
    scale_layer *s = (scale_layer *)L;
    int32_t C = s->C, P = s->P, S = L->ld;
    if (s->off_init >= 0 && training && *NF_B(L, s->off_init) == 0 && n > 0) {
        /* ActNorm data-dependent initialisation: zero mean, unit variance per channel over the batch
         * and the pixels. A zero-variance channel keeps scale 1 (logs = 0) instead of exploding.
         * Two passes (mean, then squared deviations); in data-parallel training each pass's sums are
         * summed across the processes (nf_layer_sum), so the statistics are the global batch's.
         * stat = Σx per channel (C) | count | Σ(x − m)² per channel (C). */
        nf_real *logs = NF_P(L, s->off_logs), *b = NF_P(L, s->off_b);
        double *sum = s->stat, *sq = s->stat + C + 1;
        for (int32_t c = 0; c < C; c++) {
            double m = 0;
            for (int64_t i = 0; i < n; i++)
                for (int32_t p = 0; p < P; p++) m += x[i * S + (int64_t)c * P + p];
            sum[c] = m;
        }
        sum[C] = (double)n * P;
        nf_status st = nf_layer_sum(L, sum, C + 1);
        if (st) return st;
        double cnt = sum[C];
        for (int32_t c = 0; c < C; c++) {
            double m = sum[c] / cnt, v = 0;
            for (int64_t i = 0; i < n; i++)
                for (int32_t p = 0; p < P; p++) {
                    double d = x[i * S + (int64_t)c * P + p] - m;
                    v += d * d;
                }
            sum[c] = m, sq[c] = v;
        }
        if ((st = nf_layer_sum(L, sq, C))) return st;
        for (int32_t c = 0; c < C; c++) {
            double sd = sqrt(sq[c] / cnt);
            b[c] = (nf_real)-sum[c];
            /* exactly 1/sd (Glow's 1/(sd + 1e-6) left the variance 1 − 2e-6/sd, off by ~1e-6) */
            logs[c] = sd > 1e-6 ? (nf_real)-log(sd) : 0;
        }
        *NF_B(L, s->off_init) = 1;
    }
    scale_apply(s, x, z, logdet, n, 1);
    return NF_OK;
}

/* ops->inverse: x = z·exp(−logs) − b; logdet −= P·Σ logs. NF_OK. */
static nf_status sc_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    NF_UNUSED(work);
    scale_apply((scale_layer *)L, z, x, logdet, n, -1);
    return NF_OK;
}

/* Channels [c0, c1) of sc_backward: dx = dz·e_c (e_c = exp(logs_c)) and the parameter gradients
 * glogs_c += e_c·Σ dz·(x + b_c) + P·Σ_i dld_i (sld), gb_c += e_c·Σ dz (gb may be NULL, b may be NULL: no
 * bias). The sums run in double; over an image's P ≥ 4 positions in four running lanes (position p into
 * lane p mod 4, the lanes added (l0 + l1) + (l2 + l3) per channel) so that the additions do not wait on
 * one another, else straight down the rows. The order depends on the shape only: every thread count gives
 * the same bits. */
static void sc_backward_channels(int32_t P, int64_t S, const nf_real *logs, const nf_real *b, const nf_real *x, const nf_real *dz,
                                 nf_real *dx, nf_real *glogs, nf_real *gb, double sld, int64_t n, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
        double ed = exp((double)logs[c]), bc = b ? b[c] : 0, a[4] = {0, 0, 0, 0}, g[4] = {0, 0, 0, 0};
        nf_real e = (nf_real)ed; /* dx's factor, as scale_rows rounds it */
        for (int64_t i = 0; i < n; i++) {
            const nf_real *dzi = dz + i * S + c * P, *xi = x + i * S + c * P;
            nf_real *dxi = dx + i * S + c * P;
            int32_t p = 0;
            if (P >= 4)
                for (; p + 4 <= P; p += 4)
                    for (int l = 0; l < 4; l++) {
                        double d = dzi[p + l];
                        a[l] += d * (xi[p + l] + bc), g[l] += d;
                        dxi[p + l] = dzi[p + l] * e;
                    }
            for (; p < P; p++) {
                double d = dzi[p];
                a[0] += d * (xi[p] + bc), g[0] += d;
                dxi[p] = dzi[p] * e;
            }
        }
        glogs[c] += (nf_real)(((a[0] + a[1]) + (a[2] + a[3])) * ed + sld * P);
        if (gb) gb[c] += (nf_real)(((g[0] + g[1]) + (g[2] + g[3])) * ed);
    }
}

/* ops->backward: dx = dz·exp(logs) (overwritten); grads of logs (and b) += their ∂L, channels split
 * between the threads. NF_OK. */
static nf_status sc_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(cache), NF_UNUSED(work), NF_UNUSED(training);
    scale_layer *s = (scale_layer *)L;
    int32_t C = s->C, P = s->P;
    int64_t S = L->ld;
    const nf_real *logs = NF_P(L, s->off_logs), *b = s->has_bias ? NF_P(L, s->off_b) : NULL;
    nf_real *glogs = NF_G(L, s->off_logs), *gb = s->has_bias ? NF_G(L, s->off_b) : NULL;
    double sld = 0;
    for (int64_t i = 0; i < n; i++) sld += dld[i];
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, (int64_t)C * P) && C > 1, C,
                      sc_backward_channels(P, S, logs, b, x, dz, dx, glogs, gb, sld, n, lo, hi));
    return NF_OK;
}

/* ops->init: clear the "initialized" flag, so the first training batch initialises b and logs. */
static void actnorm_init(nf_layer *L, nf_rng *rng) {
    NF_UNUSED(rng);
    scale_layer *s = (scale_layer *)L;
    *NF_B(L, s->off_init) = 0; /* params start at zero: the identity until the first training batch */
}

static const nf_layer_ops diag_scale_ops = {"diag_scale", sc_forward, sc_inverse, sc_backward,
                                            nf_layer_no_size,    nf_layer_no_size,  nf_layer_no_init,    nf_layer_no_destroy, nf_no_flops};
static const nf_layer_ops actnorm_ops = {"actnorm", sc_forward, sc_inverse,   sc_backward,
                                         nf_layer_no_size, nf_layer_no_size,  actnorm_init, nf_layer_no_destroy, nf_no_flops};

/* See layer.h: NICE's z = x·exp(S), dim ≥ 1. */
nf_status nf_diag_scale_create(nf_registry *c, const char *name, int32_t dim, nf_layer **out) {
    *out = NULL;
    if (dim < 1) return nf_fail(NF_ERR_INVALID, "%s: diagonal scaling needs dim ≥ 1 (got %d)", name, (int)dim);
    scale_layer *s = nf_layer_alloc(sizeof *s, &diag_scale_ops, c, name, dim);
    if (!s) return NF_ERR_NOMEM;
    s->C = dim, s->P = 1;
    s->off_b = s->off_init = -1;
    s->off_logs = nf_registry_reserve_vec(c, name, "log_scale", NF_TENSOR_PARAM, dim);
    if (s->off_logs < 0) return free(s), NF_ERR_NOMEM; /* reason set by the registry */
    *out = &s->base;
    return NF_OK;
}

/* See layer.h: ActNorm on dim-vectors (dim channels of one pixel). */
nf_status nf_actnorm_create(nf_registry *c, const char *name, int32_t dim, nf_layer **out) { return nf_actnorm2d_create(c, name, dim, 1, out); }

/* See layer.h: ActNorm per channel, C ≥ 1 channels of P ≥ 1 pixels. */
nf_status nf_actnorm2d_create(nf_registry *c, const char *name, int32_t C, int32_t P, nf_layer **out) {
    *out = NULL;
    if (C < 1 || P < 1) return nf_fail(NF_ERR_INVALID, "%s: ActNorm needs C, P ≥ 1 (got %d, %d)", name, (int)C, (int)P);
    scale_layer *s = nf_layer_alloc(sizeof *s + sizeof(double) * (2 * (size_t)C + 1), &actnorm_ops, c, name, C * P);
    if (!s) return NF_ERR_NOMEM;
    s->has_bias = 1, s->C = C, s->P = P;
    s->off_b = nf_registry_reserve_vec(c, name, "bias", NF_TENSOR_PARAM, C);
    s->off_logs = nf_registry_reserve_vec(c, name, "log_scale", NF_TENSOR_PARAM, C);
    s->off_init = nf_registry_reserve_vec(c, name, "initialized", NF_TENSOR_BUFFER, 1);
    if (s->off_b < 0 || s->off_logs < 0 || s->off_init < 0) return free(s), NF_ERR_NOMEM; /* reason set by the registry */
    *out = &s->base;
    return NF_OK;
}

