/* layers/dequant.c — the variational dequantiser q(u | x̃) (formulas: dequant.h).
 * Cache: the net's own | its output (n, 2C, H, W): μ then s | the noise ε (n, D).
 * Work: the net's own | ∂L/∂(μ, s) (n, 2C, H, W) | the net's unused input gradient (n, D). */
#include "layers/dequant.h"

/* log σ'(t) = log σ(t) + log σ(−t), stable for every t. */
static double log_dsigmoid(double t) {
    double a = fabs(t);
    return -a - 2 * log1p(exp(-a));
}

/* See dequant.h: the conv net's tensors under "dequant.". */
nf_status nf_dequant_reserve(nf_registry *r, nf_dequant *q, int32_t C, int32_t H, int32_t W, int32_t hidden) {
    memset(q, 0, sizeof *q);
    q->C = C, q->H = H, q->W = W;
    q->net = (nf_convnet){.cin = C, .cout = 2 * C, .hidden = hidden > 0 ? hidden : NF_DEQUANT_HIDDEN, .layers = 2, .H = H, .W = W};
    return nf_convnet_reserve(r, "dequant", &q->net);
}

/* See dequant.h. */
void nf_dequant_init(const nf_dequant *q, nf_real *P, nf_rng *rng) { nf_convnet_init(&q->net, P + q->net.off, rng); }

/* See dequant.h. */
int64_t nf_dequant_cache_size(const nf_dequant *q, int64_t n) {
    int64_t D = (int64_t)q->C * q->H * q->W;
    return nf_convnet_cache_size(&q->net, n) + 3 * n * D;
}

/* See dequant.h. */
int64_t nf_dequant_work_size(const nf_dequant *q, int64_t n) {
    int64_t D = (int64_t)q->C * q->H * q->W;
    return nf_convnet_work_size(&q->net, n) + 3 * n * D;
}

/* See dequant.h: (μ, s) from the net, then every value moved within its bin; logq per image in double. */
void nf_dequant_sample(const nf_dequant *q, const nf_real *P, const nf_real *xc, const nf_real *eps, int32_t bits, nf_real *x,
                       nf_real *logq, int64_t n, nf_real *cache, nf_real *work) {
    int64_t D = (int64_t)q->C * q->H * q->W;
    nf_real *out = cache + nf_convnet_cache_size(&q->net, n), *ec = out + 2 * n * D;
    nf_convnet_forward(&q->net, P + q->net.off, xc, NULL, out, n, cache, work);
    memcpy(ec, eps, sizeof(nf_real) * (size_t)(n * D));
    double h = ldexp(1.0, -bits);
#pragma omp parallel for schedule(static) if (NF_PAR_WORTH(n, D))
    for (int64_t i = 0; i < n; i++) {
        const nf_real *mu = out + i * 2 * D, *s = mu + D;
        double lq = -nf_logistic_nll(eps + i * D, D); /* Σ log σ'(ε): the noise's log-density */
        for (int64_t d = 0; d < D; d++) {
            double e = eps[i * D + d], y = mu[d] + exp(s[d]) * e;
            x[i * D + d] = (nf_real)(xc[i * D + d] + 0.5 * tanh(0.5 * y) * h); /* u − ½ = ½·tanh(y/2) */
            lq -= s[d] + log_dsigmoid(y);
        }
        logq[i] = (nf_real)lq;
    }
}

/* See dequant.h. With y = μ + e^s·ε and u = σ(y), x = x̃ + (u − ½)·h:
 *   ∂/∂y [L + wq·log q] = dx·h·σ'(y) + wq·(2σ(y) − 1)       (−log σ'(y) has the derivative 2σ(y) − 1 = tanh(y/2))
 *   ∂/∂μ = ∂/∂y,   ∂/∂s = ∂/∂y·e^s·ε − wq. */
void nf_dequant_backward(const nf_dequant *q, const nf_real *P, nf_real *dP, const nf_real *xc, int32_t bits, const nf_real *cache,
                         const nf_real *dx, double wq, int64_t n, nf_real *work) {
    int64_t D = (int64_t)q->C * q->H * q->W;
    const nf_real *out = cache + nf_convnet_cache_size(&q->net, n), *eps = out + 2 * n * D;
    nf_real *dout = work + nf_convnet_work_size(&q->net, n), *dxc = dout + 2 * n * D;
    double h = ldexp(1.0, -bits);
#pragma omp parallel for schedule(static) if (NF_PAR_WORTH(n, D))
    for (int64_t i = 0; i < n; i++) {
        const nf_real *mu = out + i * 2 * D, *s = mu + D;
        nf_real *dmu = dout + i * 2 * D, *ds = dmu + D;
        for (int64_t d = 0; d < D; d++) {
            double es = exp(s[d]), e = eps[i * D + d], y = mu[d] + es * e;
            double dy = dx[i * D + d] * h * exp(log_dsigmoid(y)) + wq * tanh(0.5 * y); /* 2σ(y) − 1 = tanh(y/2) */
            dmu[d] = (nf_real)dy;
            ds[d] = (nf_real)(dy * es * e - wq);
        }
    }
    nf_convnet_backward(&q->net, P + q->net.off, dP + q->net.off, xc, NULL, cache, dout, dxc, NULL, n, work);
}
