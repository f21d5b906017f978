/* resnet.c — RealNVP's ResNet, the conditioner of the masked couplings (nets.h). */
#include "nets/nets.h"

/* ------------------------------------------------------------------ RealNVP's ResNet
 *   h_0 = ReLU(conv3×3(x));  h_b = ReLU(h_{b−1} + conv3×3(ReLU(conv3×3(h_{b−1}))))  (b = 1..B);
 *   y = conv3×3(h_B)   (the output conv starts at zero unless init_std > 0)
 * Parameters in order: in.w (width, cin, 3, 3), in.b; per block conv1.w, conv1.b, conv2.w, conv2.b
 * (width, width, 3, 3); out.w (cout, width, 3, 3), out.b; then, for a conditional net (ctx = K > 0),
 * W_c (width, K): sample i's input conv gets the per-channel bias W_c·c_i on top of in.b (before its ReLU). Cache: h_0, then t_b = ReLU(conv1) and h_b for
 * every block, each (n, width, P). A ReLU's derivative is read from its output (> 0). */
static int64_t rn_wsize(const nf_resnet *m, int32_t cin, int32_t cout) { NF_UNUSED(m); return (int64_t)cout * cin * 9 + cout; }

/* See nets.h: input conv, 2 convs per residual block, output conv (weights and biases). */
int64_t nf_resnet_num_params(const nf_resnet *m) {
    return rn_wsize(m, m->cin, m->width) + 2 * (int64_t)m->blocks * rn_wsize(m, m->width, m->width) +
           rn_wsize(m, m->width, m->cout) + (int64_t)m->width * m->ctx;
}

/* Floats of the parameters before W_c. */
static int64_t rn_ctx_off(const nf_resnet *m) { return nf_resnet_num_params(m) - (int64_t)m->width * m->ctx; }


/* See nets.h: FLOPs per sample of the forward pass. */
int64_t nf_resnet_flops(const nf_resnet *m) {
    int64_t P = (int64_t)m->H * m->W;
    return 2 * 9 * P * ((int64_t)m->cin * m->width + 2 * (int64_t)m->blocks * m->width * m->width + (int64_t)m->width * m->cout);
}

/* See nets.h: floats of cache for n samples (the activations backward needs). */
int64_t nf_resnet_cache_size(const nf_resnet *m, int64_t n) {
    return (1 + 2 * (int64_t)m->blocks) * n * m->width * m->H * m->W;
}

/* The largest scratch any of the convolutions needs for n samples. */
static int64_t rn_conv_work(const nf_resnet *m, int64_t n) {
    int64_t a = nf_conv2d_work_size(m->cin, m->width, m->H, m->W, 3, n);
    int64_t b = nf_conv2d_work_size(m->width, m->width, m->H, m->W, 3, n);
    int64_t c = nf_conv2d_work_size(m->width, m->cout, m->H, m->W, 3, n);
    return a > b ? (a > c ? a : c) : (b > c ? b : c);
}

/* work: conv buffer | three (n, width, P) gradient buffers */
int64_t nf_resnet_work_size(const nf_resnet *m, int64_t n) {
    return rn_conv_work(m, n) + 3 * n * m->width * m->H * m->W;
}

/* See nets.h: He-initialised convs (from rng), zero biases; the output conv 0 or N(0, init_std²). */
void nf_resnet_init(const nf_resnet *m, nf_real *P, nf_rng *rng) {
    /* hidden convs: He-normal, std √(2 / fan_in); biases 0 */
    int32_t nconv = 1 + 2 * m->blocks;
    for (int32_t l = 0; l < nconv; l++) {
        int32_t cin = l == 0 ? m->cin : m->width;
        double sd = sqrt(2.0 / (9.0 * cin));
        for (int64_t i = 0; i < (int64_t)m->width * cin * 9; i++) *P++ = (nf_real)(sd * nf_rng_normal(rng));
        for (int32_t i = 0; i < m->width; i++) *P++ = 0;
    }
    for (int64_t i = 0; i < (int64_t)m->cout * m->width * 9; i++) *P++ = (nf_real)(m->init_std * nf_rng_normal(rng));
    for (int32_t i = 0; i < m->cout; i++) *P++ = 0;
    for (int64_t i = 0; i < (int64_t)m->width * m->ctx; i++) *P++ = 0; /* W_c = 0 (no draw): starts as the unconditional net */
}

/* See nets.h: y from x, activations into cache; work: nf_resnet_work_size floats. */
void nf_resnet_forward(const nf_resnet *m, const nf_real *Pm, const nf_real *x, const nf_real *c, nf_real *y, int64_t n,
                       nf_real *cache, nf_real *work) {
    int32_t Wd = m->width, H = m->H, W = m->W;
    int64_t P = (int64_t)H * W, hs = n * Wd * P, ww = rn_wsize(m, Wd, Wd);
    const nf_real *w = Pm;
    int cond = m->ctx > 0 && c; /* the conditional input conv: bias and ReLU after the convolution */
    nf_conv2d_forward_ex(x, m->cin * P, w, w + (int64_t)Wd * m->cin * 9, cache, Wd * P, n, m->cin, Wd, H, W, 3, work, !cond);
    if (cond) nf_ctx_bias_relu(Pm + rn_ctx_off(m), c, cache, n, m->width, (int64_t)m->H * m->W, m->ctx);
    w += rn_wsize(m, m->cin, Wd);
    for (int32_t b = 0; b < m->blocks; b++) {
        nf_real *hprev = cache + 2 * (int64_t)b * hs, *t = hprev + hs, *h = t + hs;
        nf_conv2d_forward_ex(hprev, Wd * P, w, w + ww - Wd, t, Wd * P, n, Wd, Wd, H, W, 3, work, 1);
        w += ww;
        nf_conv2d_forward_res(t, Wd * P, w, w + ww - Wd, h, Wd * P, n, Wd, Wd, H, W, 3, work, hprev, Wd * P); /* h = relu(conv + hprev) */
        w += ww;
    }
    const nf_real *hB = cache + 2 * (int64_t)m->blocks * hs;
    nf_conv2d_forward(hB, Wd * P, w, w + (int64_t)m->cout * Wd * 9, y, m->cout * P, n, Wd, m->cout, H, W, 3, work);
}

/* See nets.h: dP += ∂L/∂P, dx = ∂L/∂x (overwritten) from dy. */
void nf_resnet_backward(const nf_resnet *m, const nf_real *Pm, nf_real *dPm, const nf_real *x, const nf_real *c,
                        const nf_real *cache, const nf_real *dy, nf_real *dx, nf_real *dc, int64_t n, nf_real *work) {
    int32_t Wd = m->width, H = m->H, W = m->W;
    int64_t P = (int64_t)H * W, hs = n * Wd * P, ww = rn_wsize(m, Wd, Wd);
    nf_real *cw = work, *dh = work + rn_conv_work(m, n), *dt = dh + hs, *tmp = dt + hs;
    int64_t off_out = rn_wsize(m, m->cin, Wd) + 2 * (int64_t)m->blocks * ww;
    const nf_real *hB = cache + 2 * (int64_t)m->blocks * hs;
    nf_conv2d_backward(hB, Wd * P, Pm + off_out, dy, m->cout * P, dh, Wd * P, dPm + off_out,
                       dPm + off_out + (int64_t)m->cout * Wd * 9, n, Wd, m->cout, H, W, 3, cw);
    for (int32_t b = m->blocks - 1; b >= 0; b--) {
        const nf_real *hprev = cache + 2 * (int64_t)b * hs, *t = hprev + hs, *h = t + hs;
        int64_t o1 = rn_wsize(m, m->cin, Wd) + 2 * (int64_t)b * ww, o2 = o1 + ww;
        /* the conv masks dh in place by h_b > 0: dh becomes ∂L/∂(h_{b−1} + u), used by the skip path too */
        nf_conv2d_backward_ex(t, Wd * P, Pm + o2, dh, Wd * P, dt, Wd * P, dPm + o2, dPm + o2 + ww - Wd, n, Wd, Wd, H, W, 3, cw, h);
        /* dh += the residual branch's input gradient (dh already holds the skip path's), per sample */
        nf_conv2d_backward_acc(hprev, Wd * P, Pm + o1, dt, Wd * P, tmp, Wd * P, dPm + o1, dPm + o1 + ww - Wd, n, Wd, Wd, H, W, 3, cw, t, dh, Wd * P);
    }
    nf_conv2d_backward_ex(x, m->cin * P, Pm, dh, Wd * P, dx, m->cin * P, dPm, dPm + (int64_t)Wd * m->cin * 9, n,
                          m->cin, Wd, H, W, 3, cw, cache);
    /* dh now holds the gradient of the input conv's pre-activation (masked in place by its ReLU) */
    if (m->ctx > 0 && c) nf_ctx_bias_backward(Pm + rn_ctx_off(m), dPm + rn_ctx_off(m), c, dh, dc, n, m->width, (int64_t)m->H * m->W, m->ctx);
}

/* Register the ResNet's tensors under owner: "net.in.weight/bias", "net.<b>.conv<k>.weight/bias" per
 * block, "net.out.weight/bias", "net.ctx.weight" (width, ctx) for a conditional net; sets m->off to the
 * first. NF_ERR_NOMEM (reason set) on failure. */
nf_status nf_resnet_reserve(nf_registry *r, const char *owner, nf_resnet *m) {
    int64_t s4[4] = {m->width, m->cin, 3, 3};
    m->off = nf_registry_reserve(r, owner, "net.in.weight", NF_TENSOR_PARAM, 4, s4);
    int ok = m->off >= 0 && nf_registry_reserve_vec(r, owner, "net.in.bias", NF_TENSOR_PARAM, m->width) >= 0;
    for (int32_t b = 0; b < m->blocks && ok; b++)
        for (int32_t k = 1; k <= 2 && ok; k++) {
            char tw[40], tb[40];
            int64_t sw[4] = {m->width, m->width, 3, 3};
            snprintf(tw, sizeof tw, "net.%d.conv%d.weight", (int)b, (int)k);
            snprintf(tb, sizeof tb, "net.%d.conv%d.bias", (int)b, (int)k);
            ok = nf_registry_reserve(r, owner, tw, NF_TENSOR_PARAM, 4, sw) >= 0 &&
                 nf_registry_reserve_vec(r, owner, tb, NF_TENSOR_PARAM, m->width) >= 0;
        }
    int64_t so[4] = {m->cout, m->width, 3, 3};
    ok = ok && nf_registry_reserve(r, owner, "net.out.weight", NF_TENSOR_PARAM, 4, so) >= 0 &&
         nf_registry_reserve_vec(r, owner, "net.out.bias", NF_TENSOR_PARAM, m->cout) >= 0;
    int64_t sc[2] = {m->width, m->ctx};
    ok = ok && (m->ctx <= 0 || nf_registry_reserve(r, owner, "net.ctx.weight", NF_TENSOR_PARAM, 2, sc) >= 0);
    return ok ? NF_OK : NF_ERR_NOMEM;
}
