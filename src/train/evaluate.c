/* train/evaluate.c — test log-likelihoods and bits/dim, latents of images for interpolation and
 * attribute vectors. */
#include "models/models.h"

/* Mean log-likelihood (nats) of ds's rows under f in eval mode and its standard error; f's
 * training flag is restored. ds borrowed; NF_ERR_INVALID for a dimension mismatch. */
nf_status nf_flow_evaluate(nf_flow *f, const nf_dataset *ds, double *mean_ll, double *se) {
    return nf_flow_evaluate_ctx(f, ds, NULL, mean_ll, se);
}

/* See nflow.h: the same with ctx's rows as the contexts (NULL: none); NF_ERR_INVALID when ctx does not
 * fit f and ds. */
nf_status nf_flow_evaluate_ctx(nf_flow *f, const nf_dataset *ds, const nf_dataset *ctx, double *mean_ll, double *se) {
    if (ds->dim != nf_flow_dim(f))
        return nf_fail(NF_ERR_INVALID, "data has %d columns, the model expects %d", (int)ds->dim, (int)nf_flow_dim(f));
    if (ds->n < 1) return nf_fail(NF_ERR_INVALID, "no rows to evaluate");
    if (ctx && (ctx->n != ds->n || ctx->dim != nf_flow_context_dim(f)))
        return nf_fail(NF_ERR_INVALID, "contexts: %lld rows of %d values for %lld rows of a model with %d context values", (long long)ctx->n,
                       (int)ctx->dim, (long long)ds->n, (int)nf_flow_context_dim(f));
    int training = nf_flow_is_training(f);
    nf_flow_set_training(f, 0);
    nf_real *lp = nf_xcalloc((size_t)ds->n, sizeof(nf_real));
    nf_status st = lp ? nf_flow_log_prob_ctx(f, ds->x, ctx ? ctx->x : NULL, lp, ds->n) : nf_fail(NF_ERR_NOMEM, "out of memory");
    nf_flow_set_training(f, training);
    if (st) {
        free(lp);
        return st;
    }
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < ds->n; i++) s += lp[i];
    double m = s / (double)ds->n;
    for (int64_t i = 0; i < ds->n; i++) s2 += (lp[i] - m) * (lp[i] - m);
    free(lp);
    *mean_ll = m;
    *se = ds->n > 1 ? sqrt(s2 / (double)(ds->n - 1) / (double)ds->n) : 0;
    if (!isfinite(m)) return nf_fail(NF_ERR_NUMERIC, "a log-likelihood is not finite");
    return NF_OK;
}

/* Scratch for dequantising up to `chunk` images as f does: the log q per image, and for variational
 * dequantisation the bin centres and the noise. NULL members when out of memory (dq_ok tells). */
typedef struct {
    nf_real *lq, *xc, *eps;
} dq_buf;
/* The scratch for `chunk` images of f (check it with dq_ok; free it with dq_free). */
static dq_buf dq_alloc(const nf_flow *f, int64_t chunk) {
    int vdq = nf_flow_config(f)->dequant == NF_DEQUANT_VARIATIONAL;
    int64_t D = nf_flow_dim(f);
    dq_buf b = {nf_xcalloc((size_t)chunk, sizeof(nf_real)), NULL, NULL};
    if (vdq) b.xc = nf_xcalloc((size_t)(chunk * D), sizeof(nf_real)), b.eps = nf_xcalloc((size_t)(chunk * D), sizeof(nf_real));
    return b;
}
/* 1 when b holds everything f's dequantisation needs. */
static int dq_ok(const nf_flow *f, const dq_buf *b) {
    return b->lq && (nf_flow_config(f)->dequant != NF_DEQUANT_VARIATIONAL || (b->xc && b->eps));
}
/* Release b's buffers (NULL members are fine). */
static void dq_free(dq_buf *b) { free(b->lq), free(b->xc), free(b->eps); }

/* x (m, D) = the images idx[0..m) spread over their pixel bins as f's training does — uniform noise from
 * r, or f's dequantiser (nf_flow_dequantize) with logistic noise from r — and b->lq[i] = log q(u_i | x̃_i)
 * (0 for uniform dequantisation). */
static nf_status dequantize_as_trained(nf_flow *f, const nf_images *im, const int64_t *idx, int64_t m, int32_t bits, nf_rng *r,
                                       nf_real *x, dq_buf *b) {
    if (nf_flow_config(f)->dequant != NF_DEQUANT_VARIATIONAL) {
        nf_images_dequantize(im, idx, m, bits, r, x);
        memset(b->lq, 0, sizeof(nf_real) * (size_t)m);
        return NF_OK;
    }
    int64_t D = nf_flow_dim(f);
    nf_images_dequantize(im, idx, m, bits, NULL, b->xc);
    for (int64_t k = 0; k < m * D; k++) b->eps[k] = (nf_real)nf_rng_logistic(r);
    return nf_flow_dequantize(f, b->xc, b->eps, bits, x, b->lq, m);
}

/* See nflow.h: nf_flow_evaluate_images_ex without the count of images that do not reconstruct. */
nf_status nf_flow_evaluate_images(nf_flow *f, const nf_images *im, int32_t bits, uint64_t seed, double *bpd,
                                  double *se, double *max_recon) {
    return nf_flow_evaluate_images_ex(f, im, bits, seed, 0, bpd, se, max_recon, NULL);
}

/* Bits/dim of the images under f and its standard error. Every image is dequantised `draws` times (seed;
 * as f was trained: log q = 0 for uniform dequantisation, f's dequantiser else) and scored by the
 * importance-weighted bound −log[(1/draws) Σ_k p(x_k)/q(u_k | x̃)] (Burda et al. 2016; one draw: the
 * bound −log p(x) + log q(u | x̃) training minimises), a log-sum-exp in double. If max_recon is not NULL,
 * the largest reconstruction error of the first draws and (nbad not NULL) how many images have some
 * value off by more than tol; f's training flag restored. A class-conditional f: −log₂ p(x | label) per
 * dimension. */
static nf_status eval_images(nf_flow *f, const nf_images *im, int32_t bits, uint64_t seed, int32_t draws, double tol, double *bpd,
                             double *se, double *max_recon, int64_t *nbad) {
    int64_t bad = 0;
    int64_t D = (int64_t)im->C * im->H * im->W, chunk = 256;
    if (D != nf_flow_dim(f)) return nf_fail(NF_ERR_INVALID, "images have %lld values, the model expects %d", (long long)D, (int)nf_flow_dim(f));
    if (bits < 1 || bits > 8) return nf_fail(NF_ERR_INVALID, "bits %d: must be 1..8", (int)bits);
    if (draws < 1 || draws > 1 << 20) return nf_fail(NF_ERR_INVALID, "draws %d: must be 1..1048576", (int)draws);
    nf_real *x = nf_xcalloc((size_t)(chunk * D), sizeof(nf_real)), *z = nf_xcalloc((size_t)(chunk * D), sizeof(nf_real));
    nf_real *lp = nf_xcalloc((size_t)chunk, sizeof(nf_real));
    double *w = nf_xcalloc((size_t)(chunk * draws), sizeof(double)); /* log p(x_k) − log q(u_k), (image, draw) */
    int64_t *idx = nf_xcalloc((size_t)chunk, sizeof(int64_t));
    int32_t K = nf_flow_context_dim(f);
    nf_real *c = K > 0 ? nf_xcalloc((size_t)(chunk * K), sizeof(nf_real)) : NULL;
    dq_buf q = dq_alloc(f, chunk);
    nf_status st = x && z && lp && w && idx && (K == 0 || c) && dq_ok(f, &q) ? NF_OK : nf_fail(NF_ERR_NOMEM, "out of memory");
    int training = nf_flow_is_training(f);
    nf_flow_set_training(f, 0);
    nf_rng r;
    nf_rng_seed(&r, seed);
    double s = 0, s2 = 0, worst = 0;
    for (int64_t i0 = 0; i0 < im->n && !st; i0 += chunk) {
        int64_t m = im->n - i0 < chunk ? im->n - i0 : chunk;
        for (int64_t i = 0; i < m; i++) idx[i] = i0 + i;
        if (K > 0 && (st = nf_images_onehot(im, idx, m, K, c))) break;
        for (int32_t k = 0; k < draws && !st; k++) {
            if ((st = dequantize_as_trained(f, im, idx, m, bits, &r, x, &q))) break;
            if ((st = nf_flow_forward_ex(f, x, c, z, NULL, lp, m))) break;
            for (int64_t i = 0; i < m; i++) w[i * draws + k] = (double)lp[i] - (double)q.lq[i];
            if (max_recon && k == 0) { /* |x − G(G⁻¹(x))| */
                st = nf_flow_inverse_ctx(f, z, c, z, NULL, m);
                if (st == NF_ERR_NUMERIC) st = NF_OK, nf_clear_error(); /* counted below: a NaN is off */
                if (st) break;
                for (int64_t i = 0; i < m; i++) {
                    double e = 0;
                    for (int64_t j = i * D; j < (i + 1) * D; j++) e = fmax(e, fabs((double)z[j] - (double)x[j]));
                    worst = fmax(worst, e);
                    bad += !(e <= tol); /* a NaN reconstruction counts as off */
                }
            }
        }
        for (int64_t i = 0; i < m && !st; i++) {
            const double *wi = w + i * draws;
            double top = wi[0], acc = 0;
            for (int32_t k = 1; k < draws; k++) top = fmax(top, wi[k]);
            for (int32_t k = 0; k < draws; k++) acc += exp(wi[k] - top);
            double b = nf_bits_per_dim(-(draws == 1 ? wi[0] : top + log(acc / draws)), D, bits);
            s += b, s2 += b * b;
        }
    }
    nf_flow_set_training(f, training);
    free(x), free(z), free(lp), free(w), free(idx), free(c), dq_free(&q);
    if (st) return st;
    double mean = s / (double)im->n;
    *bpd = mean;
    *se = im->n > 1 ? sqrt(fmax(0.0, s2 / (double)im->n - mean * mean) / (double)(im->n - 1)) : 0;
    if (max_recon) *max_recon = worst;
    if (max_recon && nbad) *nbad = bad;
    if (!isfinite(mean)) return nf_fail(NF_ERR_NUMERIC, "a log-likelihood is not finite");
    return NF_OK;
}

/* See nflow.h: one draw per image (eval_images). */
nf_status nf_flow_evaluate_images_ex(nf_flow *f, const nf_images *im, int32_t bits, uint64_t seed, double tol, double *bpd,
                                     double *se, double *max_recon, int64_t *nbad) {
    return eval_images(f, im, bits, seed, 1, tol, bpd, se, max_recon, nbad);
}

/* See nflow.h: `draws` draws per image (eval_images). */
nf_status nf_flow_evaluate_images_iw(nf_flow *f, const nf_images *im, int32_t bits, uint64_t seed, int32_t draws, double *bpd,
                                     double *se) {
    return eval_images(f, im, bits, seed, draws, 0, bpd, se, NULL, NULL);
}

/* See nflow.h: a class-conditional f as a classifier by Bayes' rule, over the first n images (all when
 * n ≤ 0 or beyond im->n), each dequantised once (seed) and passed through f once per class:
 * log p(x | k) for k = 0..K−1; the predicted class argmax_k log p(x | k) (uniform class prior), the
 * conditional bits/dim −log₂ p(x | label)/D and the marginal −log₂ (Σ_k p(x | k) / K)/D, a log-sum-exp
 * in double. Their difference per image is (log₂ K + log₂ p(label | x))/D ≤ log₂ K / D. */
nf_status nf_flow_classify_images(nf_flow *f, const nf_images *im, int32_t bits, uint64_t seed, int64_t n, double *accuracy,
                                  double *cond_bpd, double *marg_bpd) {
    int32_t K = nf_flow_context_dim(f);
    int64_t D = (int64_t)im->C * im->H * im->W, chunk = 256;
    if (K < 2 || !nf_flow_config(f)->context_labels)
        return nf_fail(NF_ERR_INVALID, "the model is not class-conditional: there are no classes to choose between");
    if (D != nf_flow_dim(f)) return nf_fail(NF_ERR_INVALID, "images have %lld values, the model expects %d", (long long)D, (int)nf_flow_dim(f));
    if (!im->labels) return nf_fail(NF_ERR_INVALID, "the images have no class labels");
    if (bits < 1 || bits > 8) return nf_fail(NF_ERR_INVALID, "bits %d: must be 1..8", (int)bits);
    if (n <= 0 || n > im->n) n = im->n;
    if (n < 1) return nf_fail(NF_ERR_INVALID, "no images to classify");
    nf_real *x = nf_xcalloc((size_t)(chunk * D), sizeof(nf_real)), *c = nf_xcalloc((size_t)(chunk * K), sizeof(nf_real));
    nf_real *lp = nf_xcalloc((size_t)(chunk * K), sizeof(nf_real)); /* (class, image) */
    int64_t *idx = nf_xcalloc((size_t)chunk, sizeof(int64_t));
    dq_buf q = dq_alloc(f, chunk);
    nf_status st = x && c && lp && idx && dq_ok(f, &q) ? NF_OK : nf_fail(NF_ERR_NOMEM, "out of memory");
    int training = nf_flow_is_training(f);
    nf_flow_set_training(f, 0);
    nf_rng r;
    nf_rng_seed(&r, seed);
    double sc = 0, sm = 0;
    int64_t right = 0;
    for (int64_t i0 = 0; i0 < n && !st; i0 += chunk) {
        int64_t m = n - i0 < chunk ? n - i0 : chunk;
        for (int64_t i = 0; i < m; i++) idx[i] = i0 + i;
        st = dequantize_as_trained(f, im, idx, m, bits, &r, x, &q); /* one x per image for every class */
        if (!st) st = nf_images_onehot(im, idx, m, K, c); /* only to check the labels: c is refilled per class below */
        for (int32_t k = 0; k < K && !st; k++) { /* every image as class k */
            memset(c, 0, sizeof(nf_real) * (size_t)(m * K));
            for (int64_t i = 0; i < m; i++) c[i * K + k] = 1;
            st = nf_flow_forward_ex(f, x, c, NULL, NULL, lp + k * chunk, m);
        }
        for (int64_t i = 0; i < m && !st; i++) {
            int32_t y = im->labels[i0 + i], best = 0;
            double top = lp[i];
            for (int32_t k = 1; k < K; k++)
                if (lp[k * chunk + i] > top) top = lp[k * chunk + i], best = k;
            double se = 0;
            for (int32_t k = 0; k < K; k++) se += exp((double)lp[k * chunk + i] - top);
            right += best == y;
            sc += nf_bits_per_dim(-(double)lp[y * chunk + i] + (double)q.lq[i], D, bits);
            sm += nf_bits_per_dim(-(top + log(se) - log((double)K)) + (double)q.lq[i], D, bits);
        }
    }
    nf_flow_set_training(f, training);
    free(x), free(c), free(lp), free(idx), dq_free(&q);
    if (st) return st;
    *accuracy = (double)right / (double)n, *cond_bpd = sc / (double)n, *marg_bpd = sm / (double)n;
    if (!isfinite(sc) || !isfinite(sm)) return nf_fail(NF_ERR_NUMERIC, "a log-likelihood is not finite");
    return NF_OK;
}

/* z (n, D, caller's) = f⁻¹ of the images idx[0..n) at the centre of their bins; NF_ERR_INVALID
 * for a bad index or dimension. */
nf_status nf_flow_encode_images(nf_flow *f, const nf_images *im, const int64_t *idx, int64_t n, int32_t bits,
                                nf_real *z) {
    int64_t D = (int64_t)im->C * im->H * im->W;
    if (D != nf_flow_dim(f)) return nf_fail(NF_ERR_INVALID, "images have %lld values, the model expects %d", (long long)D, (int)nf_flow_dim(f));
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= im->n) return nf_fail(NF_ERR_INVALID, "image index %lld: the data has images 0..%lld", (long long)idx[i], (long long)im->n - 1);
    nf_images_dequantize(im, idx, n, bits, NULL, z); /* u = ½: the centre of each pixel's bin */
    int32_t K = nf_flow_context_dim(f);
    nf_real *c = K > 0 ? nf_xcalloc((size_t)n * (size_t)K, sizeof(nf_real)) : NULL;
    if (K > 0 && !c) return nf_fail(NF_ERR_NOMEM, "out of memory");
    nf_status st = K > 0 ? nf_images_onehot(im, idx, n, K, c) : NF_OK; /* class-conditional: each image's own class */
    int training = nf_flow_is_training(f);
    nf_flow_set_training(f, 0);
    if (!st) st = nf_flow_forward_ctx(f, z, c, z, NULL, n);
    nf_flow_set_training(f, training);
    free(c);
    if (st == NF_ERR_NUMERIC) /* name the image, not its row in this call */
        for (int64_t k = 0; k < n * D; k++)
            if (!isfinite(z[k])) return nf_fail(NF_ERR_NUMERIC, "image %lld encodes to a non-finite value: the model overflows on it", (long long)idx[k / D]);
    return st;
}

/* zmean (D, caller's) = mean latent of at most max_n images with label; *count = how many were
 * used. NF_ERR_INVALID if the images have no labels. */
nf_status nf_flow_mean_latent(nf_flow *f, const nf_images *im, int32_t label, int64_t max_n, int32_t bits,
                              nf_real *zmean, int64_t *count) {
    if (!im->labels) return nf_fail(NF_ERR_INVALID, "the images have no labels");
    int64_t D = nf_flow_dim(f), chunk = 64, used = 0, idx[64];
    nf_real *z = nf_xcalloc((size_t)(chunk * D), sizeof(nf_real));
    double *acc = nf_xcalloc((size_t)D, sizeof(double));
    nf_status st = z && acc ? NF_OK : nf_fail(NF_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < im->n && used < max_n && !st;) {
        int64_t m = 0;
        for (; i < im->n && m < chunk && used + m < max_n; i++)
            if (im->labels[i] == label) idx[m++] = i;
        if (m == 0) break;
        if ((st = nf_flow_encode_images(f, im, idx, m, bits, z))) break;
        for (int64_t k = 0; k < m * D; k++) acc[k % D] += z[k];
        used += m;
    }
    if (!st && used == 0) st = nf_fail(NF_ERR_INVALID, "no image has label %d", (int)label);
    if (!st)
        for (int64_t j = 0; j < D; j++) zmean[j] = (nf_real)(acc[j] / (double)used);
    if (count) *count = used;
    free(z), free(acc);
    return st;
}
