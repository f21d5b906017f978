/* core/registry.h — the parameter registry: every tensor of a model (parameters and state buffers) gets
 * a name and an offset into ONE flat buffer of its kind. Sizes first (each net and layer reserves its
 * tensors), then nf_registry_allocate allocates the parameter, gradient and buffer arrays once. Layers
 * keep offsets, never pointers, so a buffer can be swapped (a test perturbing parameters). */
#ifndef NF_REGISTRY_H
#define NF_REGISTRY_H

#include "core/core.h"

typedef enum { NF_TENSOR_PARAM = 0, NF_TENSOR_BUFFER } nf_tensor_kind;

typedef struct {
    char name[64];      /* "<layer>.<tensor>", e.g. "layers.3.net.0.weight" */
    nf_tensor_kind kind;
    int32_t ndim;
    int64_t shape[4];
    int64_t offset;     /* into params (and grads) or buffers */
    int64_t count;
} nf_tensor_info;

typedef struct {
    nf_real *params, *grads, *buffers; /* owned; NULL until nf_registry_allocate */
    int64_t nparams, nbuffers;
    nf_tensor_info *tensors;
    int32_t ntensors, cap_tensors;
} nf_registry;

/* Reserve a tensor named "<owner>.<tname>" of the given shape (ndim ≤ 4) and kind. Returns its offset
 * into the buffer of its kind, or −1 with the reason set (NF_ERR_NOMEM) when the table cannot grow. */
int64_t nf_registry_reserve(nf_registry *r, const char *owner, const char *tname, nf_tensor_kind kind,
                            int32_t ndim, const int64_t *shape);
/* Reserve a (D,) tensor: nf_registry_reserve with one dimension. */
int64_t nf_registry_reserve_vec(nf_registry *r, const char *owner, const char *tname, nf_tensor_kind kind,
                                int64_t D);
/* Allocate the zeroed params, grads and buffers arrays after every tensor is reserved. NF_ERR_NOMEM on
 * failure (the arrays allocated so far stay owned by r: nf_registry_free releases them). */
nf_status nf_registry_allocate(nf_registry *r);
/* Free everything r owns and zero it. */
void nf_registry_free(nf_registry *r);

#endif
