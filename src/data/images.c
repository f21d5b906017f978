/* data/images.c — image sets whatever their source: freeing, splits, Glow's n-bit reduction and
 * dequantisation, bits per dimension. */
#include "data/data.h"

/* Free im, its pixels and labels; NULL is a no-op. */
void nf_images_free(nf_images *im) {
    if (!im) return;
    free(im->pix), free(im->labels), free(im);
}

/* See nflow.h: new image sets *train and *test (the caller frees both) with the images of im (and
 * their labels) shuffled by seed; test gets round(frac·n), clamped to 1..n−1. Both NULL on failure. */
nf_status nf_images_split(const nf_images *im, double frac, uint64_t seed, nf_images **train, nf_images **test) {
    *train = *test = NULL;
    if (im->n < 2) return nf_fail(NF_ERR_INVALID, "need at least 2 images to split, have %lld", (long long)im->n);
    if (!(frac > 0 && frac < 1)) return nf_fail(NF_ERR_INVALID, "test fraction %g: must be in (0, 1)", frac);
    int64_t nt = (int64_t)llround(frac * (double)im->n), D = (int64_t)im->C * im->H * im->W;
    if (nt < 1) nt = 1;
    if (nt > im->n - 1) nt = im->n - 1;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)im->n);
    nf_images *part[2] = {nf_xcalloc(1, sizeof(nf_images)), nf_xcalloc(1, sizeof(nf_images))};
    int64_t cnt[2] = {im->n - nt, nt};
    int ok = idx && part[0] && part[1];
    for (int k = 0; k < 2 && ok; k++) {
        *part[k] = (nf_images){cnt[k], im->C, im->H, im->W, malloc((size_t)(cnt[k] * D)), NULL};
        if (im->labels) part[k]->labels = malloc(sizeof(int32_t) * (size_t)cnt[k]);
        ok = part[k]->pix && (!im->labels || part[k]->labels);
    }
    if (!ok) {
        free(idx), nf_images_free(part[0]), nf_images_free(part[1]);
        return nf_fail(NF_ERR_NOMEM, "out of memory splitting %lld images", (long long)im->n);
    }
    nf_shuffled_indices(idx, im->n, seed);
    for (int64_t i = 0; i < im->n; i++) {
        int k = i < nt; /* the first nt shuffled images are the test set */
        int64_t j = k ? i : i - nt;
        memcpy(part[k]->pix + j * D, im->pix + idx[i] * D, (size_t)D);
        if (im->labels) part[k]->labels[j] = im->labels[idx[i]];
    }
    free(idx);
    *train = part[0], *test = part[1];
    return NF_OK;
}
/* See nflow.h: x (n, C·H·W, caller's) from the images idx[0..n) (idx NULL: the first n),
 * reduced to bits and dequantised with u from rng (NULL: u = ½); rng advanced, im borrowed. */
void nf_images_dequantize(const nf_images *im, const int64_t *idx, int64_t n, int32_t bits, nf_rng *rng,
                          nf_real *x) {
    int64_t D = (int64_t)im->C * im->H * im->W;
    double levels = (double)(1 << bits);
    int shift = 8 - bits;
    for (int64_t s = 0; s < n; s++) {
        const uint8_t *p = im->pix + (idx ? idx[s] : s) * D;
        for (int64_t j = 0; j < D; j++) {
            double u = rng ? nf_rng_uniform(rng) : 0.5;
            x[s * D + j] = (nf_real)(((double)(p[j] >> shift) + u) / levels - 0.5);
        }
    }
}

/* Bits per dimension of bits-bit data from a continuous NLL of nll_nats per sample over D dims. */
double nf_bits_per_dim(double nll_nats, int64_t D, int32_t bits) {
    return (nll_nats + (double)D * bits * log(2.0)) / ((double)D * log(2.0));
}

/* See nflow.h: c (n, K) = one-hot rows of the labels of the images idx[0..n) (idx NULL: the first n);
 * NF_ERR_INVALID without labels or for a label outside 0..K−1 (c then partly written). */
nf_status nf_images_onehot(const nf_images *im, const int64_t *idx, int64_t n, int32_t K, nf_real *c) {
    if (!im->labels) return nf_fail(NF_ERR_INVALID, "the images have no class labels (a class-conditional model needs them)");
    memset(c, 0, sizeof(nf_real) * (size_t)n * (size_t)(K > 0 ? K : 0));
    for (int64_t i = 0; i < n; i++) {
        int64_t k = idx ? idx[i] : i;
        int32_t y = im->labels[k];
        if (y < 0 || y >= K)
            return nf_fail(NF_ERR_INVALID, "image %lld has class label %d: the model knows classes 0..%d", (long long)k, (int)y, (int)K - 1);
        c[i * K + y] = 1;
    }
    return NF_OK;
}
