/* layers/dequant.h — the variational dequantiser of an image model (Flow++, Ho et al. 2019). Not a
 * layer of the flow (it is no bijection of x): the flow's partner that chooses where, inside its bin,
 * each pixel lands.
 *
 * A pixel of b bits is a bin: value k covers x ∈ [k, k + 1)/2^b − ½, its centre x̃ = (k + ½)/2^b − ½. The
 * flow's density p is continuous; the probability of the pixels is P(k) = ∫ over the bins of p, and for
 * any density q(u | x̃) of the offsets u ∈ (0, 1)^D, x = x̃ + (u − ½)/2^b (Jensen):
 *     log P(k) ≥ E_{u ~ q}[log p(x) − log q(u | x̃)] − D·ln 2^b.
 * Uniform dequantisation is q = 1. Here q is learned, value by value (d = channel and pixel):
 *     y_d = μ_d(x̃) + exp(s_d(x̃))·ε_d,   ε_d ~ Logistic(0, 1),   u_d = σ(y_d),
 *     log q(u | x̃) = Σ_d [log σ'(ε_d) − s_d − log σ'(y_d)],      σ'(t) = σ(t)(1 − σ(t)),
 * (the density of ε, the scale, the sigmoid's slope), where (μ, s) = a Glow conv net of the bin centres
 * (nets.h: conv3×3 → ReLU → conv1×1 → ReLU → zero-conv3×3, 2C output channels: μ's C, then s's C). The
 * zero-conv starts at 0, so u = σ(ε) is exactly uniform then: training starts from uniform
 * dequantisation and the bound can only tighten from there. */
#ifndef NF_DEQUANT_H
#define NF_DEQUANT_H

#include "nets/nets.h"

#define NF_DEQUANT_HIDDEN 32 /* width of the dequantiser's conv net unless the config says otherwise */

typedef struct {
    nf_convnet net; /* cin C, cout 2C, 2 hidden convs of the given width */
    int32_t C, H, W;
} nf_dequant;

/* A dequantiser of C × H × W images whose net has `hidden` channels (0: NF_DEQUANT_HIDDEN): register the
 * net's tensors under "dequant." (their gradients are final only after the flow's whole
 * backward pass and the dequantiser's). NF_ERR_NOMEM (reason set) on failure. */
nf_status nf_dequant_reserve(nf_registry *r, nf_dequant *q, int32_t C, int32_t H, int32_t W, int32_t hidden);
/* The net's initialisation (He for the hidden convs from rng, the zero-conv exactly 0: q uniform). */
void nf_dequant_init(const nf_dequant *q, nf_real *P, nf_rng *rng);
/* Floats of cache (what nf_dequant_backward needs of nf_dequant_sample) and of scratch, for n images. */
int64_t nf_dequant_cache_size(const nf_dequant *q, int64_t n);
int64_t nf_dequant_work_size(const nf_dequant *q, int64_t n);
/* x (n, D) = xc + (u − ½)/2^bits with u = σ(μ + e^s·eps) and logq[i] = log q(u_i | xc_i) (nats, the density
 * of u on the unit cube), from the bin centres xc (n, D) and standard logistic noise eps (n, D), P the
 * parameters (at q->net.off). cache filled for backward. */
void nf_dequant_sample(const nf_dequant *q, const nf_real *P, const nf_real *xc, const nf_real *eps, int32_t bits, nf_real *x,
                       nf_real *logq, int64_t n, nf_real *cache, nf_real *work);
/* For a loss L(x) + wq·Σ_i logq_i: dP += ∂/∂P, given dx = ∂L/∂x (n, D) of the x nf_dequant_sample made;
 * xc and cache as it saw and filled them. */
void nf_dequant_backward(const nf_dequant *q, const nf_real *P, nf_real *dP, const nf_real *xc, int32_t bits, const nf_real *cache,
                         const nf_real *dx, double wq, int64_t n, nf_real *work);

#endif
