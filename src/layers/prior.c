/* prior.c — base distributions π(z) on R^D:
 *   normal:         log π(z) = −½ Σ z_j² − (D/2) log 2π
 *   logistic (NICE): log π(z) = −Σ [softplus(z_j) + softplus(−z_j)]
 *   diag Gaussian:  log π(z) = Σ [−½ ((z_j − μ_j)/σ_j)² − log σ_j − ½ log 2π],  σ_j = exp(log_std_j), learned */
#include "layers/layer.h"

#define LOG_2PI 1.8378770664093453

/* Numerically stable log(1 + e^v). */
static double softplus(double v) { return v > 0 ? v + log1p(exp(-v)) : log1p(exp(v)); }

/* See layer.h: set the prior up; the diag Gaussian reserves mean and log_std in c. */
void nf_prior_init(nf_prior *p, nf_registry *c, nf_prior_type type, int32_t dim) {
    p->type = type;
    p->dim = dim;
    p->reg = c;
    p->off = -1;
    if (type == NF_PRIOR_DIAG_GAUSSIAN) {
        int64_t s[1] = {dim};
        p->off = nf_registry_reserve(c, "prior", "mean", NF_TENSOR_PARAM, 1, s);
        nf_registry_reserve(c, "prior", "log_std", NF_TENSOR_PARAM, 1, s); /* contiguous after mean */
    }
}

/* See layer.h: lp[i] = log π(z_i) for n rows of dim values. */
void nf_prior_log_prob(const nf_prior *p, const nf_real *z, nf_real *lp, int64_t n) {
    int32_t D = p->dim;
    const nf_real *mu = p->off >= 0 ? p->reg->params + p->off : NULL, *ls = mu ? mu + D : NULL;
#pragma omp parallel for schedule(static) if (n * D > 16384)
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        const nf_real *zi = z + i * D;
        for (int32_t j = 0; j < D; j++) {
            double v = zi[j];
            switch (p->type) {
            case NF_PRIOR_LOGISTIC: s -= softplus(v) + softplus(-v); break;
            case NF_PRIOR_DIAG_GAUSSIAN: {
                double u = (v - mu[j]) * exp(-(double)ls[j]);
                s += -0.5 * u * u - ls[j] - 0.5 * LOG_2PI;
                break;
            }
            default: s += -0.5 * v * v - 0.5 * LOG_2PI;
            }
        }
        lp[i] = (nf_real)s;
    }
}

/* See layer.h: dz = dlp·∂log π/∂z (overwritten); diag Gaussian: grads of mean, log_std +=. */
void nf_prior_backward(const nf_prior *p, const nf_real *z, const nf_real *dlp, nf_real *dz, int64_t n) {
    int32_t D = p->dim;
    const nf_real *mu = p->off >= 0 ? p->reg->params + p->off : NULL, *ls = mu ? mu + D : NULL;
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < D; j++) {
            double v = z[i * D + j], g;
            switch (p->type) {
            case NF_PRIOR_LOGISTIC: g = -tanh(0.5 * v); break; /* d/dv of −softplus(v) − softplus(−v) */
            case NF_PRIOR_DIAG_GAUSSIAN: {
                double is = exp(-(double)ls[j]), u = (v - mu[j]) * is;
                g = -u * is;
                nf_real *gmu = p->reg->grads + p->off, *gls = gmu + D;
                gmu[j] += (nf_real)(dlp[i] * u * is);
                gls[j] += (nf_real)(dlp[i] * (u * u - 1));
                break;
            }
            default: g = -v;
            }
            dz[i * D + j] = (nf_real)(dlp[i] * g);
        }
}

/* See layer.h: n samples of π at temperature T (std scaled by T) into z, from rng. */
void nf_prior_sample(const nf_prior *p, nf_rng *rng, double T, nf_real *z, int64_t n) {
    int32_t D = p->dim;
    const nf_real *mu = p->off >= 0 ? p->reg->params + p->off : NULL, *ls = mu ? mu + D : NULL;
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < D; j++) {
            double v;
            switch (p->type) {
            case NF_PRIOR_LOGISTIC: v = T * nf_rng_logistic(rng); break;
            case NF_PRIOR_DIAG_GAUSSIAN: v = mu[j] + T * exp((double)ls[j]) * nf_rng_normal(rng); break;
            default: v = T * nf_rng_normal(rng);
            }
            z[i * D + j] = (nf_real)v;
        }
}
