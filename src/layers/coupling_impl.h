/* layers/coupling_impl.h — PRIVATE to coupling.c and conv_coupling.c: the coupling struct, the shared
 * bookkeeping (net call on the conditioning half, sizes, net backward and scatter) and the per-variant
 * formulas. Each variant (additive, affine with a tanh or sigmoid scale, split-Gaussian) is one
 * nf_coupling_math: three row loops with the lecture's formula (the two affine variants are one, the map
 * z_b = (x_b + a)·e^s + b with the coupling's scale type).
 * Cache layout (n rows): x_a (n, na) | net output h (n, nout) | net cache. */
#ifndef NF_COUPLING_IMPL_H
#define NF_COUPLING_IMPL_H

#include "layers/layer.h"
#include "nets/nets.h"

typedef struct coupling coupling;

/* One variant's element-wise part. h is the net output of the rows (n, nout), nout = per_b · nb:
 * columns [0, nb) and, for two-output variants, [nb, 2·nb) as the variant names them. */
typedef struct {
    int32_t per_b; /* net outputs per transformed coordinate: 1 (additive) or 2; 0: 3·bins − 1 (splines) */
    /* z = f(x) on the transformed part (z_a = x_a copied); logdet[i] += log|det| (logdet may be NULL) */
    void (*forward)(const coupling *c, const nf_real *x, const nf_real *h, nf_real *z, nf_real *logdet, int64_t n);
    /* x = f⁻¹(z); logdet[i] −= log|det| (logdet may be NULL) */
    void (*inverse)(const coupling *c, const nf_real *z, const nf_real *h, nf_real *x, nf_real *logdet, int64_t n);
    /* dx (overwritten: dz on a, ∂L/∂x_b on b) and dh = ∂L/∂h (n, nout) from dz and dld */
    void (*backward)(const coupling *c, const nf_real *x, const nf_real *h, const nf_real *dz,
                     const nf_real *dld, nf_real *dx, nf_real *dh, int64_t n);
} nf_coupling_math;

struct coupling {
    nf_layer base;
    const nf_coupling_math *math;
    int32_t na, nb;
    int32_t *ia, *ib; /* owned: conditioning and transformed coordinates */
    int conv;         /* 1: cnet, 0: net */
    nf_mlp net;
    nf_convnet cnet;
    nf_scale_type scale; /* the affine variant: tanh (RealNVP) or sigmoid (Glow) scale */
    int32_t bins;     /* spline variants (spline_coupling.c): K bins on [−bound, bound]; 0 otherwise */
    double bound;
};

/* The variants of coupling.c (conv_coupling.c adds the split's Gaussian). */
extern const nf_coupling_math nf_coupling_additive, nf_coupling_affine; /* affine: c->scale picks tanh or sigmoid */

/* The shared ops (coupling.c): sizes, FLOPs, net init, freeing the partition. */
int64_t nf_coupling_cache_size(const nf_layer *L, int64_t n);
int64_t nf_coupling_work_size(const nf_layer *L, int64_t n);
int64_t nf_coupling_flops(const nf_layer *L);
void nf_coupling_init(nf_layer *L, nf_rng *rng);
void nf_coupling_destroy(nf_layer *L);
/* The shared forward, inverse and backward: net on x_a, then c->math's loop (and for backward the net's
 * backward and the scatter of ∂L/∂x_a). */
nf_status nf_coupling_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                              nf_real *cache, nf_real *work, int training);
nf_status nf_coupling_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                              nf_real *work);
nf_status nf_coupling_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                               const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training);
/* Allocate a coupling with header, math and partition (parity 1 swaps a and b); the net is left for the
 * caller to describe and reserve. NF_ERR_NOMEM (reason set) on failure; free with nf_layer_free. */
nf_status nf_coupling_new(nf_registry *r, const char *name, const nf_layer_ops *ops, const nf_coupling_math *math,
                          int32_t dim, nf_partition part, int32_t parity, coupling **out);

#endif
