/* core/registry.c — the named-tensor table and the flat buffers behind it (see registry.h). */
#include "core/registry.h"

/* Append a tensor entry; its offset is the running total of its kind. −1 on allocation failure. */
int64_t nf_registry_reserve(nf_registry *c, const char *owner, const char *tname, nf_tensor_kind kind,
                            int32_t ndim, const int64_t *shape) {
    if (c->ntensors == c->cap_tensors) {
        int32_t cap = c->cap_tensors ? 2 * c->cap_tensors : 64;
        nf_tensor_info *t = realloc(c->tensors, sizeof *t * (size_t)cap);
        if (!t) {
            nf_fail(NF_ERR_NOMEM, "out of memory registering tensor %s.%s", owner, tname);
            return -1;
        }
        c->tensors = t;
        c->cap_tensors = cap;
    }
    nf_tensor_info *t = &c->tensors[c->ntensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s.%s", owner, tname);
    t->kind = kind;
    t->ndim = ndim;
    t->count = 1;
    for (int32_t i = 0; i < ndim; i++) t->shape[i] = shape[i], t->count *= shape[i];
    int64_t *total = kind == NF_TENSOR_PARAM ? &c->nparams : &c->nbuffers;
    t->offset = *total;
    *total += t->count;
    return t->offset;
}

/* One-dimensional nf_registry_reserve. */
int64_t nf_registry_reserve_vec(nf_registry *c, const char *owner, const char *tname, nf_tensor_kind kind, int64_t D) {
    int64_t s[1] = {D};
    return nf_registry_reserve(c, owner, tname, kind, 1, s);
}

/* Allocate params, grads (same length) and buffers, zeroed. */
nf_status nf_registry_allocate(nf_registry *c) {
    c->params = nf_xcalloc((size_t)c->nparams, sizeof(nf_real));
    c->grads = nf_xcalloc((size_t)c->nparams, sizeof(nf_real));
    c->buffers = nf_xcalloc((size_t)c->nbuffers, sizeof(nf_real));
    if (!c->params || !c->grads || !c->buffers)
        return nf_fail(NF_ERR_NOMEM, "out of memory for %lld parameters", (long long)c->nparams);
    return NF_OK;
}

/* Release the arrays and the table. */
void nf_registry_free(nf_registry *c) {
    free(c->params), free(c->grads), free(c->buffers), free(c->tensors);
    memset(c, 0, sizeof *c);
}
