/* layers/layer.c — what every layer shares: allocation of the header, the no-op ops, freeing. */
#include "layers/layer.h"

/* See layer.h. */
void *nf_layer_alloc(size_t size, const nf_layer_ops *ops, nf_registry *reg, const char *name, int32_t dim) {
    nf_layer *L = nf_xcalloc(1, size);
    if (!L) {
        nf_fail(NF_ERR_NOMEM, "out of memory for layer %s", name);
        return NULL;
    }
    L->ops = ops;
    L->reg = reg;
    L->dim = dim;
    L->ld = dim;
    snprintf(L->name, sizeof L->name, "%s", name);
    return L;
}

/* No cache or scratch: 0 floats. */
int64_t nf_layer_no_size(const nf_layer *L, int64_t n) {
    NF_UNUSED(L), NF_UNUSED(n);
    return 0;
}

/* Nothing to initialise beyond the zeroed buffers. */
void nf_layer_no_init(nf_layer *L, nf_rng *rng) { NF_UNUSED(L), NF_UNUSED(rng); }

/* Nothing owned beyond the struct itself. */
void nf_layer_no_destroy(nf_layer *L) { NF_UNUSED(L); }

/* See layer.h: sum buf across the processes through L->reducer (nothing to do without one). */
nf_status nf_layer_sum(const nf_layer *L, double *buf, int64_t n) {
    if (!L->reducer || L->reducer->size <= 1) return NF_OK;
    if (L->reducer->sum_double(L->reducer->ctx, buf, n) != 0)
        return nf_fail(NF_ERR_IO, "%s: the sum of the batch statistics across processes failed", L->name);
    return NF_OK;
}

/* See layer.h: vmath.c's e^tanh or shifted sigmoid, then the derivative of s. */
void nf_affine_scales(nf_scale_type scale, const nf_real *h, int64_t n, nf_real *s, nf_real *e, nf_real *ds) {
    if (scale == NF_SCALE_TANH) nf_tanh_exp(h, s, e, n);
    else nf_sigmoid_shift(h, 2, e, s, n); /* e = σ(h + 2), s = log σ */
    if (ds)
        for (int64_t j = 0; j < n; j++) ds[j] = scale == NF_SCALE_TANH ? 1 - s[j] * s[j] : 1 - e[j];
}

/* No matrix products: 0 FLOPs. */
int64_t nf_no_flops(const nf_layer *L) {
    NF_UNUSED(L);
    return 0;
}

/* Release what the layer owns (ops->destroy) and the layer; NULL is a no-op. */
void nf_layer_free(nf_layer *L) {
    if (!L) return;
    L->ops->destroy(L);
    free(L);
}
