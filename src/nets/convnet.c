/* convnet.c — the convolutional coupling network of Glow:
 *   conv3×3(cin → hidden) → ReLU → [conv1×1(hidden → hidden) → ReLU] × (layers − 1) → zero-conv3×3(→ cout)
 * where the zero-conv's output is scaled per channel: y = (conv(h) + b)·exp(3·logs_c), and its weight,
 * bias and logs start at 0 (the coupling starts as the identity). layers = 0 leaves only the zero-conv
 * (Glow's split prior). Tensors (n, C, H, W), P = H·W.
 * Parameters in order: for each hidden conv l: w_l (out, in, k, k), b_l (out); then w, b, logs of the
 * zero-conv; then, for a conditional net (ctx = K > 0, layers ≥ 1), W_c (hidden, K): sample i's first conv
 * gets the per-channel bias W_c·c_i on top of b_0 (before its ReLU); W_c starts at 0.
 * Cache: per hidden layer its ReLU output (n, hidden, P) (the ReLU is fused into the
 * convolution; its derivative is read from the output); the zero-conv's unscaled output (n, cout, P).
 * Except the first hidden layer's when it is cheap to make again (cn_recompute0): backward recomputes it
 * from x, bit for bit, into its work. */
#include "nets/nets.h"

/* Kernel size of hidden conv l: 3×3 first, then 1×1. */
static int32_t cn_k(int32_t l) { return l == 0 ? 3 : 1; }
/* Input channels of conv l. */
static int64_t cn_in(const nf_convnet *m, int32_t l) { return l == 0 ? m->cin : m->hidden; }

/* See nets.h: parameters of every conv (weights then bias) and the zero-conv. */
int64_t nf_convnet_num_params(const nf_convnet *m) {
    int64_t s = 0;
    for (int32_t l = 0; l < m->layers; l++) s += m->hidden * (cn_in(m, l) * cn_k(l) * cn_k(l) + 1);
    int64_t last_in = m->layers ? m->hidden : m->cin;
    return s + m->cout * (last_in * 9 + 2) + (m->layers ? (int64_t)m->hidden * m->ctx : 0);
}

/* 1 when the first hidden activation is recomputed in backward instead of cached: when its convolution
 * (3×3, cin → hidden) costs at most as many FLOPs as a 1×1 hidden one (9·cin ≤ hidden). In Glow's
 * couplings on few channels (glow-small: cin 2 and 4, hidden 128) the first activation is a third of the
 * flow's training memory at 2–4 % of its FLOPs (BENCHMARKS.md has the measured cost). */
static int cn_recompute0(const nf_convnet *m) { return m->layers >= 1 && 9 * m->cin <= m->hidden; }

/* Floats of the parameters before W_c. */
static int64_t cn_ctx_off(const nf_convnet *m) { return nf_convnet_num_params(m) - (m->layers ? (int64_t)m->hidden * m->ctx : 0); }

/* The per-sample channel bias of a conditional conv net's first convolution (here and resnet.c), then
 * its ReLU: y[i, k, ·] = max(0, y[i, k, ·] + Σ_j W_c[k][j]·c[i][j]) for y (n, C, P) in place,
 * W_c (C, K), c (n, K). */
void nf_ctx_bias_relu(const nf_real *Wc, const nf_real *c, nf_real *y, int64_t n, int32_t C, int64_t P, int32_t K) {
#pragma omp parallel for schedule(static) if (NF_PAR_WORTH(n, (int64_t)C * P))
    for (int64_t i = 0; i < n; i++)
        for (int32_t k = 0; k < C; k++) {
            double b = 0;
            for (int32_t j = 0; j < K; j++) b += (double)Wc[(int64_t)k * K + j] * c[i * K + j];
            nf_real *yk = y + (i * C + k) * P, bk = (nf_real)b;
#pragma omp simd /* a vector select: as a scalar loop with a branch per element (-O2 does not vectorise
                  * it unasked) this sweep took a quarter of a short conditional Glow run's profile */
            for (int64_t p = 0; p < P; p++) {
                nf_real v = yk[p] + bk;
                yk[p] = v > 0 ? v : 0;
            }
        }
}

/* Σ_p d[p] in double, in four running sums (lane j takes p ≡ j mod 4) added pairwise, then the tail:
 * the additions do not wait on one another as in one chain of n·C·P; the order depends on P only. */
static double sum4(const nf_real *d, int64_t P) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int64_t p = 0;
    for (; p + 4 <= P; p += 4) a0 += d[p], a1 += d[p + 1], a2 += d[p + 2], a3 += d[p + 3];
    double s = (a0 + a1) + (a2 + a3);
    for (; p < P; p++) s += d[p];
    return s;
}

/* Backward of that bias from dpre (n, C, P), the gradient of the convolution's pre-activation:
 * dW_c += Σ_i s_i c_iᵀ and dc_i += W_cᵀ s_i (dc may be NULL) with s_i[k] = Σ_p dpre[i, k, p]. Row k of
 * dW_c takes the samples in order and row i of dc the channels in order, so channels (then samples)
 * run in parallel and the result does not depend on the thread count; dc sums dpre again rather than
 * keep n·C sums in a scratch buffer (it is asked for only when c itself needs a gradient). */
void nf_ctx_bias_backward(const nf_real *Wc, nf_real *dWc, const nf_real *c, const nf_real *dpre, nf_real *dc, int64_t n,
                          int32_t C, int64_t P, int32_t K) {
#pragma omp parallel for schedule(static) if (NF_PAR_WORTH(n, (int64_t)C * P))
    for (int32_t k = 0; k < C; k++)
        for (int64_t i = 0; i < n; i++) {
            double s = sum4(dpre + (i * C + k) * P, P);
            for (int32_t j = 0; j < K; j++) dWc[(int64_t)k * K + j] += (nf_real)(s * c[i * K + j]);
        }
    if (!dc) return;
#pragma omp parallel for schedule(static) if (NF_PAR_WORTH(n, (int64_t)C * P))
    for (int64_t i = 0; i < n; i++)
        for (int32_t k = 0; k < C; k++) {
            double s = sum4(dpre + (i * C + k) * P, P);
            for (int32_t j = 0; j < K; j++) dc[i * K + j] += (nf_real)(s * Wc[(int64_t)k * K + j]);
        }
}

/* See nets.h: FLOPs per sample of the forward pass. */
int64_t nf_convnet_flops(const nf_convnet *m) {
    int64_t f = 0, P = (int64_t)m->H * m->W;
    for (int32_t l = 0; l < m->layers; l++) f += 2 * m->hidden * cn_in(m, l) * cn_k(l) * cn_k(l) * P;
    return f + 2 * (int64_t)m->cout * (m->layers ? m->hidden : m->cin) * 9 * P;
}

/* See nets.h: floats of cache for n samples (the hidden activations not recomputed, and the output). */
int64_t nf_convnet_cache_size(const nf_convnet *m, int64_t n) {
    int64_t P = (int64_t)m->H * m->W;
    return (int64_t)(m->layers - cn_recompute0(m)) * n * m->hidden * P + n * m->cout * P;
}

/* the largest scratch any of the convolutions needs for n samples */
static int64_t conv_work(const nf_convnet *m, int64_t n) {
    int64_t w = 0;
    for (int32_t l = 0; l <= m->layers; l++) {
        int32_t cin = l < m->layers ? (int32_t)cn_in(m, l) : (m->layers ? m->hidden : m->cin);
        int32_t cout = l < m->layers ? m->hidden : m->cout;
        int64_t c = nf_conv2d_work_size(cin, cout, m->H, m->W, l < m->layers ? cn_k(l) : 3, n);
        if (c > w) w = c;
    }
    return w;
}

/* work: conv buffer | two (n, hidden, P) gradient buffers | (n, cout, P) | the first hidden activation
 * (n, hidden, P) when it is recomputed */
int64_t nf_convnet_work_size(const nf_convnet *m, int64_t n) {
    int64_t P = (int64_t)m->H * m->W;
    return conv_work(m, n) + (2 + cn_recompute0(m)) * n * m->hidden * P + n * m->cout * P;
}

/* Where hidden activation l lies: in cache, or (the first, when recomputed) in work's last part. */
static nf_real *cn_post(const nf_convnet *m, int32_t l, nf_real *cache, nf_real *work, int64_t n) {
    int64_t P = (int64_t)m->H * m->W, hs = n * m->hidden * P;
    int r0 = cn_recompute0(m);
    if (l == 0 && r0) return work + conv_work(m, n) + 2 * hs + n * m->cout * P;
    return cache + (int64_t)(l - r0) * hs;
}

/* Hidden conv l of the forward pass: post = ReLU(conv(h) + b [+ W_c·c]), from its parameters w. */
static void cn_hidden(const nf_convnet *m, int32_t l, const nf_real *w, const nf_real *Wc, const nf_real *h, const nf_real *cx,
                      nf_real *post, int64_t n, nf_real *cw) {
    int64_t P = (int64_t)m->H * m->W, hc = cn_in(m, l);
    int32_t k = cn_k(l);
    int cl = m->ctx > 0 && cx && l == 0; /* the conditional first conv: bias and ReLU after the convolution */
    nf_conv2d_forward_ex(h, hc * P, w, w + m->hidden * hc * k * k, post, m->hidden * P, n, (int32_t)hc, m->hidden, m->H, m->W, k, cw, !cl);
    if (cl) nf_ctx_bias_relu(Wc, cx, post, n, m->hidden, P, m->ctx);
}

/* See nets.h: He-initialised hidden convs (from rng), zero biases; the zero-conv 0 or N(0, init_std²). */
void nf_convnet_init(const nf_convnet *m, nf_real *P, nf_rng *rng) {
    for (int32_t l = 0; l < m->layers; l++) {
        int64_t nw = m->hidden * cn_in(m, l) * cn_k(l) * cn_k(l);
        for (int64_t i = 0; i < nw; i++) *P++ = (nf_real)(0.05 * nf_rng_normal(rng));
        for (int64_t i = 0; i < m->hidden; i++) *P++ = 0;
    }
    int64_t last_in = m->layers ? m->hidden : m->cin, nw = m->cout * last_in * 9;
    for (int64_t i = 0; i < nw; i++) *P++ = (nf_real)(m->init_std * nf_rng_normal(rng));
    for (int64_t i = 0; i < 2 * m->cout; i++) *P++ = 0; /* bias, logs */
    if (m->layers) /* W_c = 0, drawing nothing: a conditional model starts as the unconditional one of the same
                    * seed (every other parameter the same), and learns how the context moves it */
        for (int64_t i = 0; i < (int64_t)m->hidden * m->ctx; i++) *P++ = 0;
}

/* See nets.h: y from x through the convs (ReLU fused), hidden activations into cache; work: scratch. */
void nf_convnet_forward(const nf_convnet *m, const nf_real *Pm, const nf_real *x, const nf_real *cx, nf_real *y, int64_t n,
                        nf_real *cache, nf_real *work) {
    int64_t P = (int64_t)m->H * m->W, hs = n * m->hidden * P;
    const nf_real *h = x, *Wc = Pm + cn_ctx_off(m);
    int64_t hc = m->cin;
    for (int32_t l = 0; l < m->layers; l++) {
        nf_real *post = cn_post(m, l, cache, work, n);
        cn_hidden(m, l, Pm, Wc, h, cx, post, n, work);
        Pm += m->hidden * (hc * cn_k(l) * cn_k(l) + 1);
        h = post, hc = m->hidden;
    }
    const nf_real *w = Pm, *b = Pm + m->cout * hc * 9, *logs = b + m->cout;
    nf_real *raw = cache + (int64_t)(m->layers - cn_recompute0(m)) * hs;
    nf_conv2d_forward(h, hc * P, w, b, raw, m->cout * P, n, (int32_t)hc, m->cout, m->H, m->W, 3, work);
    int32_t co = m->cout;
#pragma omp parallel for schedule(static) if (NF_PAR_WORTH(n, (int64_t)co * P))
    for (int64_t i = 0; i < n; i++)
        for (int32_t c = 0; c < co; c++) {
            nf_real e = exp(3 * logs[c]);
            for (int64_t p = 0; p < P; p++) y[(i * co + c) * P + p] = raw[(i * co + c) * P + p] * e;
        }
}

/* Output channels [c0, c1) of the zero-conv's scale y = raw·e_c, e_c = exp(3·logs_c), backward:
 * draw = dy·e_c and dlogs_c += 3·e_c·Σ dy·raw, summed in double over four running lanes (position p into
 * lane p mod 4, the lanes added (l0 + l1) + (l2 + l3)) — an order fixed by the shape, so every thread count
 * gives the same bits, and additions that do not wait on one another. */
static void zero_scale_backward(const nf_real *logs, const nf_real *raw, const nf_real *dy, nf_real *draw, nf_real *dlogs,
                                int64_t n, int32_t co, int64_t P, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
        double e = exp(3.0 * logs[c]), a[4] = {0, 0, 0, 0};
        for (int64_t i = 0; i < n; i++) {
            int64_t r = (i * co + c) * P, p = 0;
            for (; p + 4 <= P; p += 4)
                for (int l = 0; l < 4; l++) {
                    draw[r + p + l] = (nf_real)(dy[r + p + l] * e);
                    a[l] += (double)dy[r + p + l] * raw[r + p + l];
                }
            for (; p < P; p++) {
                draw[r + p] = (nf_real)(dy[r + p] * e);
                a[0] += (double)dy[r + p] * raw[r + p];
            }
        }
        dlogs[c] += (nf_real)(((a[0] + a[1]) + (a[2] + a[3])) * e * 3.0);
    }
}

/* See nets.h: dP += ∂L/∂P, dx = ∂L/∂x (overwritten) from dy; x and cache as the forward left them. */
void nf_convnet_backward(const nf_convnet *m, const nf_real *Pm, nf_real *dPm, const nf_real *x, const nf_real *cx,
                         const nf_real *cache, const nf_real *dy, nf_real *dx, nf_real *dc, int64_t n, nf_real *work) {
    int64_t P = (int64_t)m->H * m->W, hs = n * m->hidden * P;
    int64_t off[40], o = 0, hc = m->cin;
    for (int32_t l = 0; l < m->layers; l++) off[l] = o, o += m->hidden * (hc * cn_k(l) * cn_k(l) + 1), hc = m->hidden;
    off[m->layers] = o;
    nf_real *cw = work, *bufA = work + conv_work(m, n);
    nf_real *bufB = bufA + hs, *draw = bufB + hs;
    if (cn_recompute0(m)) cn_hidden(m, 0, Pm, Pm + cn_ctx_off(m), x, cx, cn_post(m, 0, NULL, work, n), n, cw); /* as the forward made it */
    /* zero-conv with its exp(3·logs) scale */
    int32_t co = m->cout;
    const nf_real *w = Pm + off[m->layers], *logs = w + co * hc * 9 + co;
    nf_real *dw = dPm + off[m->layers], *db = dw + co * hc * 9, *dlogs = db + co;
    const nf_real *raw = cache + (int64_t)(m->layers - cn_recompute0(m)) * hs;
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, (int64_t)co * P) && co > 1, co, zero_scale_backward(logs, raw, dy, draw, dlogs, n, co, P, lo, hi));
    const nf_real *h = m->layers ? cn_post(m, m->layers - 1, (nf_real *)cache, work, n) : x;
    nf_real *dh = m->layers ? bufA : dx;
    nf_conv2d_backward(h, hc * P, w, draw, co * P, dh, hc * P, dw, db, n, (int32_t)hc, co, m->H, m->W, 3, cw);
    for (int32_t l = m->layers - 1; l >= 0; l--) {
        const nf_real *post = cn_post(m, l, (nf_real *)cache, work, n); /* the ReLU's output masks dh inside the conv */
        int32_t k = cn_k(l);
        int64_t cin = cn_in(m, l);
        const nf_real *wl = Pm + off[l];
        nf_real *dwl = dPm + off[l], *dbl = dwl + m->hidden * cin * k * k;
        const nf_real *hin = l ? cn_post(m, l - 1, (nf_real *)cache, work, n) : x;
        nf_real *dnext = l ? (dh == bufA ? bufB : bufA) : dx;
        nf_conv2d_backward_ex(hin, cin * P, wl, dh, m->hidden * P, dnext, cin * P, dwl, dbl, n, (int32_t)cin, m->hidden, m->H, m->W, k, cw, post);
        /* dh now holds the gradient of the pre-activation (masked in place by the ReLU) */
        if (l == 0 && m->ctx > 0 && cx) nf_ctx_bias_backward(Pm + cn_ctx_off(m), dPm + cn_ctx_off(m), cx, dh, dc, n, m->hidden, (int64_t)m->H * m->W, m->ctx);
        dh = dnext;
    }
}

/* Register the conv net's tensors under owner: "net.<l>.weight/bias" for the hidden convs, then
 * "net.out.weight/bias/logs", then "net.ctx.weight" (hidden, ctx) for a conditional net; sets m->off to
 * the first. NF_ERR_NOMEM (reason set) on failure. */
nf_status nf_convnet_reserve(nf_registry *r, const char *owner, nf_convnet *m) {
    int64_t in = m->cin;
    m->off = -1;
    for (int32_t l = 0; l < m->layers; l++) {
        int64_t k = cn_k(l), sw[4] = {m->hidden, in, k, k};
        char tw[32], tb[32];
        snprintf(tw, sizeof tw, "net.%d.weight", (int)l);
        snprintf(tb, sizeof tb, "net.%d.bias", (int)l);
        int64_t ow = nf_registry_reserve(r, owner, tw, NF_TENSOR_PARAM, 4, sw);
        if (ow < 0 || nf_registry_reserve_vec(r, owner, tb, NF_TENSOR_PARAM, m->hidden) < 0) return NF_ERR_NOMEM;
        if (l == 0) m->off = ow;
        in = m->hidden;
    }
    int64_t sw[4] = {m->cout, in, 3, 3};
    int64_t ow = nf_registry_reserve(r, owner, "net.out.weight", NF_TENSOR_PARAM, 4, sw);
    if (ow < 0 || nf_registry_reserve_vec(r, owner, "net.out.bias", NF_TENSOR_PARAM, m->cout) < 0 ||
        nf_registry_reserve_vec(r, owner, "net.out.logs", NF_TENSOR_PARAM, m->cout) < 0)
        return NF_ERR_NOMEM;
    int64_t sc[2] = {m->hidden, m->ctx};
    if (m->layers && m->ctx > 0 && nf_registry_reserve(r, owner, "net.ctx.weight", NF_TENSOR_PARAM, 2, sc) < 0) return NF_ERR_NOMEM;
    if (m->layers == 0) m->off = ow;
    return NF_OK;
}
