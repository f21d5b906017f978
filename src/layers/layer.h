/* layers/layer.h — ONE interface for every invertible layer, the layer constructors and the priors.
 *
 * Direction (the whole library's): forward = data → latent, x → z, ADDS log|det ∂z/∂x| to logdet;
 * inverse = latent → data, ADDS −log|det ∂z/∂x|; backward ADDS parameter gradients (+=) into the
 * registry's gradient buffer and OVERWRITES dx. Layers know kernels and nets, never models, data or io. */
#ifndef NF_LAYER_H
#define NF_LAYER_H

#include "core/registry.h"
#include "kernels/kernels.h" /* nf_sigmoid, nf_log_sigmoid and the array forms */

#include <math.h>

/* The element-wise and linear layers, one file each (the couplings are in coupling.c, conv_coupling.c and masked.c):
 *   diag_scale   (NICE)     z = x·exp(S)                           log|det| = Σ S            actnorm.c
 *   actnorm      (Glow)     z = (x + b)·exp(logs)                  log|det| = Σ logs         actnorm.c
 *   standardize  (fixed)    z = (x − μ)/σ                          log|det| = −Σ log σ       standardize.c
 *   logit        (RealNVP)  z = logit(α + (1 − 2α)(x + ½))         log|det| = Σ [log(1 − 2α) − log p(1 − p)]
 *   permute      (fixed)    z_j = x_perm[j]                        log|det| = 0              permute.c
 *   squeeze      (images)   (C, H, W) → (4C, H/2, W/2)             log|det| = 0              permute.c
 *   linear       (Glow 1×1) z = W x                                log|det| = log|det W| (LU)  linear.c
 *   linear_lu    (Glow)     W = P·(L + I)·(U + diag(sign·exp(log_s)))  log|det| = Σ log_s   linear.c
 *   batchnorm    (RealNVP)  z = (x − μ)/√(v + ε)·exp(log_gamma) + beta
 *                                              log|det| = Σ [log_gamma − ½ log(v + ε)]   batchnorm.c */

/* core.h's NF_PAR_WORTH as an OpenMP `if` clause, for the loops that keep one. */
#define NF_PAR_IF(n, D) if (NF_PAR_WORTH(n, D))

typedef struct nf_layer nf_layer;

/* One interface for every invertible layer. Shapes: x, z (n, ld), of which the layer reads and writes
 * only the first D columns. cache holds what backward needs from
 * forward (cache_size floats); forward always fills it (the flow gives each layer its own). */
typedef struct {
    const char *kind;
    /* z = f(x); logdet[i] += log|det ∂z/∂x|. training: batch statistics / data-dependent init allowed.
     * work: work_size floats of scratch. */
    nf_status (*forward)(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                         nf_real *cache, nf_real *work, int training);
    /* x = f⁻¹(z); logdet[i] −= log|det ∂z/∂x|. work: cache_size floats of scratch. */
    nf_status (*inverse)(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                         nf_real *work);
    /* Given dz = ∂L/∂z and dld[i] = ∂L/∂logdet[i]: dx = ∂L/∂x (overwritten), grads += ∂L/∂params.
     * x and cache are what forward saw and filled. work: work_size floats. NF_OK, or an error with a
     * reason (e.g. NF_ERR_NUMERIC: a weight that cannot be inverted), gradients then incomplete. */
    nf_status (*backward)(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                     const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training);
    int64_t (*cache_size)(const nf_layer *L, int64_t n);
    int64_t (*work_size)(const nf_layer *L, int64_t n); /* scratch for forward, inverse and backward */
    void (*init)(nf_layer *L, nf_rng *rng);   /* after parameters are bound */
    void (*destroy)(nf_layer *L);
    /* FLOPs (multiply-adds × 2) of one sample's forward pass through the layer's matrix products and
     * convolutions; element-wise work is not counted. Inverse costs the same; training about 3×. */
    int64_t (*flops)(const nf_layer *L);
} nf_layer_ops;

/* Common header of every layer; each layer type embeds it as its first member. */
struct nf_layer {
    const nf_layer_ops *ops;
    char name[48];
    int32_t dim;        /* D: the layer acts on the first D values of each row … */
    int32_t ld;         /* … of rows ld ≥ D apart (multi-scale flows factor out the rest; the flow
                         * carries columns D..ld−1 through unchanged) */
    nf_registry *reg;   /* the model's tensors: parameters, gradients, buffers by offset */
    /* Data-parallel training (nf_trainer_set_reducer): set by the flow for the duration of one
     * training pass, NULL otherwise. A layer whose training forward or backward needs statistics of
     * the whole batch (ActNorm's initialisation, batch norm) sums them across the processes with
     * nf_layer_sum; the other layers ignore it. */
    const nf_reducer *reducer;
    /* Conditional flows: a layer built with a context (ctx_dim = K > 0: every conditioner network sees a
     * context vector c of K values per row) reads ctx, (n, K) row-major, row i conditioning row i of x,
     * in forward, inverse and backward; backward ADDS ∂L/∂c into dctx (n, K) unless it is NULL. The flow
     * sets both for the duration of each call (NULL otherwise); a layer without a context (ctx_dim 0)
     * ignores them. */
    int32_t ctx_dim;
    const nf_real *ctx;
    nf_real *dctx;
};

#define NF_P(L, off) ((L)->reg->params + (off))
#define NF_G(L, off) ((L)->reg->grads + (off))
#define NF_B(L, off) ((L)->reg->buffers + (off))

/* Layer constructors: each checks its arguments, reserves its tensors in r under `name` and sets *out to
 * the layer (the caller frees it with nf_layer_free). The layers with a conditioner network take
 * `context` = K ≥ 0: K > 0 makes the layer conditional (ctx_dim = K): the MLPs and MADEs see [input, c]
 * (W_c c joins their first linear map; a MADE's context reaches every first-layer unit, unmasked), the
 * conv nets and ResNets add the learned per-channel bias W_c c to their first convolution. NF_ERR_INVALID (reason set) for arguments the
 * layer cannot take, NF_ERR_NOMEM (reason set) on allocation failure; *out is NULL on failure. */
nf_status nf_additive_coupling_create(nf_registry *r, const char *name, int32_t dim, nf_partition part,
                                      int32_t parity, int32_t hidden, int32_t layers, nf_activation act,
                                      int32_t context, nf_layer **out);
nf_status nf_affine_coupling_create(nf_registry *r, const char *name, int32_t dim, nf_partition part,
                                    int32_t parity, int32_t hidden, int32_t layers, nf_activation act,
                                    nf_scale_type scale, int32_t context, nf_layer **out);
/* Glow's channel-split coupling on (C, H, W) images (C even): a = the first C/2 channels, net =
 * conv3×3 → ReLU → (conv1×1 → ReLU)×(layers−1) → zero-conv3×3 (nf_convnet) (conv_coupling.c). */
nf_status nf_conv_coupling_create(nf_registry *r, const char *name, int32_t C, int32_t H, int32_t W,
                                  int32_t hidden, int32_t layers, int additive, nf_scale_type scale,
                                  int32_t context, nf_layer **out);
/* Glow's split (C even): the last C/2 channels leave the flow, scored by N(μ, e^ls) with (μ, ls) =
 * zero-conv3×3 of the first C/2 — implemented as z_b = (x_b − μ)·e^−ls, log|det| = −Σ ls, under a
 * standard normal (conv_coupling.c). */
nf_status nf_split_create(nf_registry *r, const char *name, int32_t C, int32_t H, int32_t W, nf_layer **out);
/* Set the last-layer init std of a coupling's net (before the flow initialises its parameters). */
void nf_coupling_set_init_std(nf_layer *L, double std);
/* RealNVP's masked affine coupling with a ResNet (masked.c): checkerboard ((i + j) mod 2 = parity is
 * conditioning) or channel mask (parity 0: the first C/2 channels condition; 1: the last; C even). */
typedef enum { NF_MASK_CHECKERBOARD = 0, NF_MASK_CHANNEL } nf_mask_type;
nf_status nf_masked_coupling_create(nf_registry *r, const char *name, int32_t C, int32_t H, int32_t W,
                                    nf_mask_type type, int32_t parity, int32_t width, int32_t blocks,
                                    int32_t context, nf_layer **out);
void nf_masked_coupling_set_init_std(nf_layer *L, double std);
/* RealNVP's logit preprocessing on x ∈ [−½, ½): z = logit(α + (1 − 2α)(x + ½)), 0 ≤ α < ½ (logit.c). */
nf_status nf_logit_create(nf_registry *r, const char *name, int32_t dim, double alpha, nf_layer **out);
nf_status nf_diag_scale_create(nf_registry *r, const char *name, int32_t dim, nf_layer **out);
nf_status nf_standardize_create(nf_registry *r, const char *name, int32_t dim, nf_layer **out);
nf_status nf_actnorm_create(nf_registry *r, const char *name, int32_t dim, nf_layer **out);
/* ActNorm per channel of C channels × P pixels (NCHW images: P = H·W). */
nf_status nf_actnorm2d_create(nf_registry *r, const char *name, int32_t C, int32_t P, nf_layer **out);
nf_status nf_permute_create(nf_registry *r, const char *name, int32_t dim, nf_perm_type type, nf_layer **out);
/* Squeeze 2×2: (C, H, W) → (4C, H/2, W/2), output channel c·4 + dy·2 + dx (H, W even). */
nf_status nf_squeeze_create(nf_registry *r, const char *name, int32_t C, int32_t H, int32_t W, nf_layer **out);
nf_status nf_linear_create(nf_registry *r, const char *name, int32_t dim, int lu, nf_layer **out);
/* Glow's invertible 1×1 convolution: a linear map of the C channels at each of P pixels. */
nf_status nf_conv1x1_create(nf_registry *r, const char *name, int32_t C, int32_t P, int lu, nf_layer **out);
nf_status nf_batchnorm_create(nf_registry *r, const char *name, int32_t dim, nf_layer **out);
/* Rational-quadratic spline layers (Durkan et al. 2019; the spline: rqspline.h): K = bins (2..64) bins
 * on [−bound, bound], identity outside; every net's last layer and the element-wise parameters start at
 * zero, the identity.
 *   spline coupling (vectors)  z_b = g_θ(x_b), θ = MLP(x_a); partition as the affine coupling's
 *                              log|det| = Σ log g'               spline_coupling.c
 *   conv spline coupling       the first C/2 channels condition, θ = Glow's conv net (C even)
 *   spline (element-wise)      z_j = g_θj(x_j), θ learned per coordinate, dim ≥ 1      spline.c */
nf_status nf_spline_coupling_create(nf_registry *r, const char *name, int32_t dim, nf_partition part, int32_t parity,
                                    int32_t hidden, int32_t layers, nf_activation act, int32_t bins, double bound,
                                    int32_t context, nf_layer **out);
nf_status nf_conv_spline_coupling_create(nf_registry *r, const char *name, int32_t C, int32_t H, int32_t W,
                                         int32_t hidden, int32_t layers, int32_t bins, double bound, int32_t context, nf_layer **out);
nf_status nf_spline_create(nf_registry *r, const char *name, int32_t dim, int32_t bins, double bound, nf_layer **out);
void nf_layer_free(nf_layer *L);
int64_t nf_no_flops(const nf_layer *L); /* layers without matrix products: 0 */
/* Standardisation statistics (buffers of a standardize layer). */
void nf_standardize_set(nf_layer *L, const nf_real *mean, const nf_real *std);

/* ---------------------------------------------------------------- autoregressive layers (maf.c)
 * MAF (Papamakarios et al. 2017) with a MADE conditioner (h_μ, h_s) = MADE(x), coordinate d from
 * x_<d in the MADE's ordering; s = tanh(h_s) (scale TANH) or log sigmoid(h_s + 2) (SIGMOID):
 *   forward (density, ONE pass):   z_d = (x_d − μ_d(x_<d))·exp(s_d(x_<d))     log|det| = Σ s_d
 *   inverse (sampling, D passes):  x_d = μ_d(x_<d) + z_d·exp(−s_d(x_<d))
 * (the paper's α is −s). IAF (Kingma et al. 2016) is the same map run the other way, the MADE seeing z:
 *   inverse (sampling, ONE pass):  x_d = (z_d − μ_d(z_<d))·exp(s_d(z_<d))
 *   forward (density, D passes):   z_d = μ_d(z_<d) + x_d·exp(−s_d(z_<d))     log|det| = −Σ s_d(z)
 * The MADE's last layer starts at zero (identity start; init_std > 0: noise). iaf 0: MAF, 1: IAF. */
nf_status nf_maf_create(nf_registry *r, const char *name, int32_t dim, int iaf, int32_t hidden, int32_t layers,
                        nf_activation act, nf_scale_type scale, nf_order_type order, int32_t context, nf_layer **out);
/* The same block with a rational-quadratic spline as the element-wise map (Durkan et al. 2019, rqspline.h):
 * v_d = g_θd(u_d), θ_d = 3K − 1 MADE outputs (K = bins on [−bound, bound], identity outside), log|det| =
 * Σ log g'; MAF's forward and IAF's inverse one pass, the other direction D passes of the exact inverse. */
nf_status nf_maf_spline_create(nf_registry *r, const char *name, int32_t dim, int iaf, int32_t hidden, int32_t layers,
                               nf_activation act, int32_t bins, double bound, nf_order_type order, int32_t context, nf_layer **out);
void nf_maf_set_init_std(nf_layer *L, double std);
/* order[r] = the coordinate of rank r in the layer's MADE ordering (r = 0..dim−1): z_order[r] depends
 * on x_order[0..r] only (the Jacobian is lower triangular in this order). */
void nf_maf_order(const nf_layer *L, int32_t *order);

/* ---------------------------------------------------------------- priors (prior.c)
 * A diag-Gaussian prior with a context (ctx = K > 0) is conditional, Glow's class-conditional top prior:
 *   μ(c) = μ + W_μ c,  log σ(c) = log_std + W_σ c     (W = [W_μ; W_σ], (2D, K), "prior.ctx.weight", 0 at start)
 * The fixed priors (normal, logistic) ignore the context. c: (n, K) rows, NULL when K = 0. */
typedef struct {
    nf_prior_type type;
    int32_t dim;
    int64_t off; /* diag Gaussian: mean (D) then log_std (D) */
    nf_registry *reg;
    int32_t ctx;     /* K: context values per row (diag Gaussian only; 0 otherwise) */
    int64_t off_ctx; /* W (2D, K) */
    int32_t comps;   /* gmm, gmm_full: components K (0 otherwise); logits (K), means (K, D), log stds (K, D) at off */
    int64_t off_tril; /* gmm_full with D > 1: the strictly lower parts of A_k, (K, D(D−1)/2) rows packed; −1 otherwise */
} nf_prior;
/* Set p up for dim values (context: K values per row, 0: none; components: the gmm prior's); reserves
 * the learned priors' parameters in c. */
void nf_prior_init(nf_prior *p, nf_registry *c, nf_prior_type type, int32_t dim, int32_t context, int32_t components);
/* The learned priors' starting values once the registry is allocated: the diag Gaussian's stay 0 (the
 * standard normal); the gmm's means are drawn from N(0, 1) (rng), its weights equal, its stds 1
 * (gmm_full: its tril 0, so diagonal at the start). */
void nf_prior_init_params(nf_prior *p, nf_rng *rng);
/* lp[i] = log π(z_i | c_i). */
void nf_prior_log_prob(const nf_prior *p, const nf_real *z, const nf_real *c, nf_real *lp, int64_t n);
/* Given dlp[i] = ∂L/∂lp_i: dz = ∂L/∂z (overwritten); grads += ∂L/∂prior-params; dc += ∂L/∂c (may be NULL). */
void nf_prior_backward(const nf_prior *p, const nf_real *z, const nf_real *c, const nf_real *dlp, nf_real *dz,
                       nf_real *dc, int64_t n);
void nf_prior_sample(const nf_prior *p, nf_rng *rng, double temperature, const nf_real *c, nf_real *z, int64_t n);
/* mu[j], ls[j] (j < dim): the location and log scale of coordinate j of π(· | c) (c: one row of K values,
 * NULL without a context): the diag Gaussian's μ_j(c), log σ_j(c); 0 and 0 for the fixed priors. */
void nf_prior_moments(const nf_prior *p, const nf_real *c, double *mu, double *ls);


/* ---------------------------------------------------------------- for layer implementations (layer.c) */
/* Allocate a zeroed layer struct of `size` bytes (≥ sizeof(nf_layer)) with its header filled in:
 * ops, registry, name, dim = ld = dim. NULL (reason set, NF_ERR_NOMEM) on failure. */
void *nf_layer_alloc(size_t size, const nf_layer_ops *ops, nf_registry *reg, const char *name, int32_t dim);
/* ops helpers for layers without cache, scratch, initialisation, owned memory or matrix products. */
int64_t nf_layer_no_size(const nf_layer *L, int64_t n);
void nf_layer_no_init(nf_layer *L, nf_rng *rng);
void nf_layer_no_destroy(nf_layer *L);
/* buf[0..n) ← its sum over the processes of a data-parallel pass (L->reducer); a no-op with none.
 * NF_ERR_IO (reason set) if the transport failed. */
nf_status nf_layer_sum(const nf_layer *L, double *buf, int64_t n);
/* The bounded log-scales of n affine maps z = (x + a)·e^s + b (the affine couplings, the affine
 * autoregressive blocks) from their net outputs h_s: s_j = tanh(h_j) (NF_SCALE_TANH, RealNVP) or log σ(h_j
 * + 2) (NF_SCALE_SIGMOID, Glow), e_j = e^(s_j), and ds_j = ds/dh at h_j (1 − s², or 1 − σ; ds may be
 * NULL). Over arrays through vmath.c, so one call should cover a block of values. */
void nf_affine_scales(nf_scale_type scale, const nf_real *h, int64_t n, nf_real *s, nf_real *e, nf_real *ds);

#endif
