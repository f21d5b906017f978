/* internal.h — what the library's source files share; not installed. */
#ifndef NF_INTERNAL_H
#define NF_INTERNAL_H

#include "nflow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h> /* exp/log/tanh pick the float or double version from nf_real */

#define R(x) ((nf_real)(x))
#define NF_UNUSED(x) (void)(x)

/* Set the thread's error reason (printf-style) and return status. */
nf_status nf_fail(nf_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void nf_clear_error(void);
void *nf_xcalloc(size_t n, size_t size); /* calloc; NULL on overflow or failure */
/* idx = a random permutation of 0..n−1 (Fisher–Yates with seed): the train/test splits */
void nf_shuffled_indices(int64_t *idx, int64_t n, uint64_t seed);

/* ---------------------------------------------------------------- dense kernels (linalg.c) */
/* C(m,n) = alpha·op(A)·op(B) + beta·C, row-major, leading dimensions as in BLAS. The fast version uses
 * BLAS single-threaded per fixed-size tile of rows of C, tiles spread over OpenMP threads, so that the
 * result is bit-identical for every thread count. nf_gemm_ref is the naive triple loop (test oracle). */
void nf_gemm(int transA, int transB, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A,
             int64_t lda, const nf_real *B, int64_t ldb, nf_real beta, nf_real *C, int64_t ldc);
void nf_gemm_ref(int transA, int transB, int64_t m, int64_t n, int64_t k, nf_real alpha,
                 const nf_real *A, int64_t lda, const nf_real *B, int64_t ldb, nf_real beta, nf_real *C,
                 int64_t ldc);
/* LU with partial pivoting of a (d,d) double matrix in place; perm[i] = row of the original in row i.
 * Returns the sign of the permutation (±1), or 0 if singular. */
int nf_lu_decompose(double *a, int32_t *perm, int32_t d);
/* log|det A| of a (d,d) nf_real matrix (via LU in double). NF_ERR_NUMERIC if singular. */
nf_status nf_logabsdet(const nf_real *A, int32_t d, double *out);
/* inv = A⁻¹ for (d,d) nf_real A (via LU in double). */
nf_status nf_invert(const nf_real *A, int32_t d, nf_real *inv);
/* The same without allocating: a (d·d doubles), perm (d), col (d doubles) are the caller's scratch. */
nf_status nf_logabsdet_ws(const nf_real *A, int32_t d, double *a, int32_t *perm, double *out);
nf_status nf_invert_ws(const nf_real *A, int32_t d, nf_real *inv, double *a, int32_t *perm, double *col);
/* A random (d,d) orthogonal matrix (Gram–Schmidt on Gaussian columns, in double). */
void nf_random_orthogonal(nf_rng *rng, int32_t d, double *Q);

/* ---------------------------------------------------------------- convolutions (conv.c) */
/* y (n, Cout, H, W) = conv_k(x (n, Cin, H, W)) + b, stride 1, "same" zero padding, k odd; sample rows
 * ldx / ldy floats apart. work: nf_conv2d_work_size floats (forward and backward, up to n samples). */
int64_t nf_conv2d_work_size(int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k, int64_t n);
void nf_conv2d_forward(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *b, nf_real *y,
                       int64_t ldy, int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k,
                       nf_real *work);
/* dw += ∂L/∂w, db += ∂L/∂b (db may be NULL), dx = ∂L/∂x (overwritten; may be NULL) from dy = ∂L/∂y. */
void nf_conv2d_backward(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *dy, int64_t ldy,
                        nf_real *dx, int64_t lddx, nf_real *dw, nf_real *db, int64_t n, int32_t Cin,
                        int32_t Cout, int32_t H, int32_t W, int32_t k, nf_real *work);
/* The same with a fused ReLU: forward_ex with relu writes max(conv, 0); backward_ex with relu_out (the
 * ReLU's output, laid out like dy) first sets dy ← dy ⊙ [relu_out > 0] IN PLACE, then proceeds as
 * nf_conv2d_backward — no separate passes over the activations, and no pre-activation to keep. */
void nf_conv2d_forward_ex(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *b, nf_real *y,
                          int64_t ldy, int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k,
                          nf_real *work, int relu);
void nf_conv2d_backward_ex(const nf_real *x, int64_t ldx, const nf_real *w, nf_real *dy, int64_t ldy,
                           nf_real *dx, int64_t lddx, nf_real *dw, nf_real *db, int64_t n, int32_t Cin,
                           int32_t Cout, int32_t H, int32_t W, int32_t k, nf_real *work, const nf_real *relu_out);
/* The naive reference (test oracle). */
void nf_conv2d_ref(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *b, nf_real *y, int64_t ldy,
                   int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k);

/* ---------------------------------------------------------------- parameter registry */
typedef enum { NF_TENSOR_PARAM = 0, NF_TENSOR_BUFFER } nf_tensor_kind;
typedef struct {
    char name[64];
    nf_tensor_kind kind;
    int32_t ndim;
    int64_t shape[4];
    int64_t offset; /* into params or buffers */
    int64_t count;
} nf_tensor_info;

/* ---------------------------------------------------------------- MLP (mlp.c) */
typedef struct {
    int32_t in, out, hidden, layers; /* layers = number of hidden layers */
    nf_activation act;
    double init_std; /* std of the last layer's initial weights (0: the net starts as exactly 0) */
    int64_t off; /* offset of the first weight in the flat parameter buffer */
} nf_mlp;

/* Parameters: for each linear l (layers + 1 of them): W_l (out_l, in_l) then b_l (out_l). */
int64_t nf_mlp_num_params(const nf_mlp *m);
int64_t nf_mlp_flops(const nf_mlp *m); /* per sample, forward */
/* Floats of cache for n rows: pre- and post-activation of every hidden layer. */
int64_t nf_mlp_cache_size(const nf_mlp *m, int64_t n);
/* Weights He-/LeCun-uniform (by activation), biases 0; the LAST layer is zero (identity coupling) or,
 * if m->init_std > 0, N(0, init_std²) weights with zero bias. */
void nf_mlp_init(const nf_mlp *m, nf_real *P, nf_rng *rng);
/* y (n,out) = mlp(x (n,in)); cache filled for backward. */
void nf_mlp_forward(const nf_mlp *m, const nf_real *P, const nf_real *x, nf_real *y, int64_t n,
                    nf_real *cache);
/* Given dy (n,out): dx (n,in) = ∂L/∂x (overwritten; may be NULL); dP += ∂L/∂P. dy is not modified;
 * work must hold 2·n·hidden floats. */
void nf_mlp_backward(const nf_mlp *m, const nf_real *P, nf_real *dP, const nf_real *x,
                     const nf_real *cache, const nf_real *dy, nf_real *dx, int64_t n, nf_real *work);

/* Direct convolutions of one sample, k = 3 or 1 (conv_direct.c; AVX2 + FMA, float builds, chosen at run
 * time; the environment variable NFLOW_CONV=im2col turns them off). conv.c uses them for forward and
 * input gradient (weights packed with flip = 1), and for the weight gradient of 3×3 convolutions. */
int nf_convd_available(void);
int nf_convd_set(int on); /* tests and benchmarks: force a path; returns the previous setting */
int64_t nf_convd_work_size(int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k);
int64_t nf_convd_packed_size(int32_t Cin, int32_t Cout, int32_t k);
void nf_convd_pack(const nf_real *w, int32_t Cin, int32_t Cout, int32_t k, int flip, nf_real *wp);
void nf_convd_sample(const nf_real *x, const nf_real *wp, const nf_real *b, nf_real *y, int32_t Cin, int32_t Cout,
                     int32_t H, int32_t W, int32_t k, int relu, nf_real *work);
/* dw (Cout, Cin, 3, 3) += the weight gradient of one sample: Σ over pixels of dy ⊗ shifted x */
void nf_convd_dw_sample(const nf_real *x, const nf_real *dy, int32_t Cin, int32_t Cout, int32_t H, int32_t W,
                          nf_real *dw, nf_real *work);

/* ---------------------------------------------------------------- Glow's conv net (convnet.c) */
typedef struct {
    int32_t cin, cout, hidden, layers; /* layers: hidden convs (3×3 then 1×1s); 0: the zero-conv only */
    int32_t H, W;
    double init_std;                   /* std of the zero-conv's initial weights (0: exactly zero) */
    int64_t off;                       /* first parameter in the flat buffer */
} nf_convnet;
int64_t nf_convnet_num_params(const nf_convnet *m);
int64_t nf_convnet_flops(const nf_convnet *m);
int64_t nf_convnet_cache_size(const nf_convnet *m, int64_t n);
int64_t nf_convnet_work_size(const nf_convnet *m, int64_t n);
void nf_convnet_init(const nf_convnet *m, nf_real *P, nf_rng *rng);
/* y (n, cout, H, W) from x (n, cin, H, W); cache filled for backward; work: nf_convnet_work_size. */
void nf_convnet_forward(const nf_convnet *m, const nf_real *P, const nf_real *x, nf_real *y, int64_t n,
                        nf_real *cache, nf_real *work);
/* dP += ∂L/∂P; dx = ∂L/∂x (overwritten) from dy. */
void nf_convnet_backward(const nf_convnet *m, const nf_real *P, nf_real *dP, const nf_real *x,
                         const nf_real *cache, const nf_real *dy, nf_real *dx, int64_t n, nf_real *work);

/* ---------------------------------------------------------------- RealNVP's ResNet (convnet.c) */
typedef struct {
    int32_t cin, cout, width, blocks; /* conv3×3(cin → width) → ReLU → blocks × residual block → conv3×3(→ cout) */
    int32_t H, W;
    double init_std;                  /* std of the output conv's initial weights (0: exactly zero) */
    int64_t off;                      /* first parameter in the flat buffer */
} nf_resnet;
int64_t nf_resnet_num_params(const nf_resnet *m);
int64_t nf_resnet_flops(const nf_resnet *m);
int64_t nf_resnet_cache_size(const nf_resnet *m, int64_t n);
int64_t nf_resnet_work_size(const nf_resnet *m, int64_t n);
void nf_resnet_init(const nf_resnet *m, nf_real *P, nf_rng *rng);
void nf_resnet_forward(const nf_resnet *m, const nf_real *P, const nf_real *x, nf_real *y, int64_t n,
                       nf_real *cache, nf_real *work);
/* dP += ∂L/∂P; dx = ∂L/∂x (overwritten) from dy. */
void nf_resnet_backward(const nf_resnet *m, const nf_real *P, nf_real *dP, const nf_real *x,
                        const nf_real *cache, const nf_real *dy, nf_real *dx, int64_t n, nf_real *work);

/* ---------------------------------------------------------------- layers */
typedef struct nf_layer nf_layer;
typedef struct nf_flow_ctx nf_flow_ctx;

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
     * x and cache are what forward saw and filled. work: work_size floats. */
    void (*backward)(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
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
    nf_flow_ctx *ctx;   /* gives access to the flow's flat buffers */
};

/* Flat buffers owned by the flow; layers keep offsets and resolve them through the context so that a
 * parameter buffer can be swapped (e.g. by a test perturbing parameters). */
struct nf_flow_ctx {
    nf_real *params, *grads, *buffers;
    int64_t nparams, nbuffers;
    nf_tensor_info *tensors;
    int32_t ntensors, cap_tensors;
};
#define NF_P(L, off) ((L)->ctx->params + (off))
#define NF_G(L, off) ((L)->ctx->grads + (off))
#define NF_B(L, off) ((L)->ctx->buffers + (off))

/* Reserve a named tensor; returns its offset (or -1 on allocation failure). */
int64_t nf_ctx_reserve(nf_flow_ctx *c, const char *layer_name, const char *tname, nf_tensor_kind kind,
                       int32_t ndim, const int64_t *shape);

/* Layer constructors (layers.c); each returns NULL on allocation failure. */
nf_layer *nf_additive_coupling_create(nf_flow_ctx *c, const char *name, int32_t dim, nf_partition part,
                                      int32_t parity, int32_t hidden, int32_t layers, nf_activation act);
nf_layer *nf_affine_coupling_create(nf_flow_ctx *c, const char *name, int32_t dim, nf_partition part,
                                    int32_t parity, int32_t hidden, int32_t layers, nf_activation act,
                                    nf_scale_type scale);
/* Glow's channel-split coupling on (C, H, W) images (C even): a = the first C/2 channels, net =
 * conv3×3 → ReLU → (conv1×1 → ReLU)×(layers−1) → zero-conv3×3 (nf_convnet). */
nf_layer *nf_conv_coupling_create(nf_flow_ctx *c, const char *name, int32_t C, int32_t H, int32_t W,
                                  int32_t hidden, int32_t layers, int additive, nf_scale_type scale);
/* Glow's split: the last C/2 channels leave the flow, scored by N(μ, e^ls) with (μ, ls) = zero-conv3×3
 * of the first C/2 — implemented as z_b = (x_b − μ)·e^−ls, log|det| = −Σ ls, under a standard normal. */
nf_layer *nf_split_create(nf_flow_ctx *c, const char *name, int32_t C, int32_t H, int32_t W);
/* Set the last-layer init std of a coupling's net (before the flow initialises its parameters). */
void nf_coupling_set_init_std(nf_layer *L, double std);
/* RealNVP's masked affine coupling with a ResNet (masked.c): checkerboard ((i + j) mod 2 = parity is
 * conditioning) or channel mask (parity 0: the first C/2 channels condition; 1: the last). NULL on
 * allocation failure or a channel mask on odd C. */
typedef enum { NF_MASK_CHECKERBOARD = 0, NF_MASK_CHANNEL } nf_mask_type;
nf_layer *nf_masked_coupling_create(nf_flow_ctx *c, const char *name, int32_t C, int32_t H, int32_t W,
                                    nf_mask_type type, int32_t parity, int32_t width, int32_t blocks);
void nf_masked_coupling_set_init_std(nf_layer *L, double std);
/* RealNVP's logit preprocessing on x ∈ [−½, ½): z = logit(α + (1 − 2α)(x + ½)) (layers.c). */
nf_layer *nf_logit_create(nf_flow_ctx *c, const char *name, int32_t dim, double alpha);
nf_layer *nf_diag_scale_create(nf_flow_ctx *c, const char *name, int32_t dim);
nf_layer *nf_standardize_create(nf_flow_ctx *c, const char *name, int32_t dim);
nf_layer *nf_actnorm_create(nf_flow_ctx *c, const char *name, int32_t dim);
/* ActNorm per channel of C channels × P pixels (NCHW images: P = H·W). */
nf_layer *nf_actnorm2d_create(nf_flow_ctx *c, const char *name, int32_t C, int32_t P);
nf_layer *nf_permute_create(nf_flow_ctx *c, const char *name, int32_t dim, nf_perm_type type);
/* Squeeze 2×2: (C, H, W) → (4C, H/2, W/2), output channel c·4 + dy·2 + dx (H, W even; else NULL). */
nf_layer *nf_squeeze_create(nf_flow_ctx *c, const char *name, int32_t C, int32_t H, int32_t W);
nf_layer *nf_linear_create(nf_flow_ctx *c, const char *name, int32_t dim, int lu);
/* Glow's invertible 1×1 convolution: a linear map of the C channels at each of P pixels. */
nf_layer *nf_conv1x1_create(nf_flow_ctx *c, const char *name, int32_t C, int32_t P, int lu);
nf_layer *nf_batchnorm_create(nf_flow_ctx *c, const char *name, int32_t dim);
void nf_layer_free(nf_layer *L);
int64_t nf_no_flops(const nf_layer *L); /* layers without matrix products */
/* Standardisation statistics (buffers of a standardize layer). */
void nf_standardize_set(nf_layer *L, const nf_real *mean, const nf_real *std);

/* ---------------------------------------------------------------- priors (prior.c) */
typedef struct {
    nf_prior_type type;
    int32_t dim;
    int64_t off; /* diag Gaussian: mean (D) then log_std (D) */
    nf_flow_ctx *ctx;
} nf_prior;
void nf_prior_init(nf_prior *p, nf_flow_ctx *c, nf_prior_type type, int32_t dim);
/* lp[i] = log π(z_i). */
void nf_prior_log_prob(const nf_prior *p, const nf_real *z, nf_real *lp, int64_t n);
/* Given dlp[i] = ∂L/∂lp_i: dz = ∂L/∂z (overwritten); grads += ∂L/∂prior-params. */
void nf_prior_backward(const nf_prior *p, const nf_real *z, const nf_real *dlp, nf_real *dz, int64_t n);
void nf_prior_sample(const nf_prior *p, nf_rng *rng, double temperature, nf_real *z, int64_t n);

/* ---------------------------------------------------------------- flow internals (flow.c) */
struct nf_flow {
    nf_config cfg;
    nf_flow_ctx ctx;
    nf_layer **layers;
    int32_t nlayers;
    nf_prior prior;
    int training;
    int recompute; /* backward rebuilds layer inputs by inversion instead of storing them */
    /* Workspace sized for nmax rows: per layer its input and cache (store mode) or two alternating
     * activations and one cache (recompute mode), plus scratch. */
    int64_t nmax;
    nf_real *ws;
    int64_t *act_off, *cache_off; /* per layer, into ws */
    int64_t scratch_off, ws_size;
};
/* Make sure the workspace holds n rows (allocates only when n grows). */
nf_status nf_flow_reserve(nf_flow *f, int64_t n);
/* Build a flow from an explicit list of layers (tests); takes ownership of the layers. */
nf_status nf_flow_from_layers(nf_flow_ctx *ctx, nf_layer **layers, int32_t n, nf_prior_type prior,
                              int32_t dim, nf_flow **out);
/* Allocate the flat buffers of ctx after all tensors are reserved. */
nf_status nf_ctx_allocate(nf_flow_ctx *c);
void nf_ctx_free(nf_flow_ctx *c);

/* ---------------------------------------------------------------- optimiser and checkpoint internals */
/* Adam's moments (nparams each) and step counter, for checkpoints. */
void nf_adam_state(nf_adam *a, nf_real **m, nf_real **v, int64_t **t);
/* nf_adam_step in two halves, so a caller can look at the norm first (the trainer refuses non-finite
 * gradients): ‖g‖ (parallel, fixed-order sum), then the update with that norm. */
double nf_adam_grad_norm(nf_adam *a, const nf_real *g);
void nf_adam_apply(nf_adam *a, nf_real *p, const nf_real *g, double norm);
/* Save a flow; with m and v (nparams each) the file also holds "optimizer.adam_m"/"optimizer.adam_v",
 * and trainer_json (may be NULL) goes into the metadata under "trainer". */
nf_status nf_ckpt_save(const nf_flow *f, const char *path, const nf_real *m, const nf_real *v, const char *trainer_json);
/* Read the optimiser tensors and the "trainer" metadata of a checkpoint saved with them. *trainer_json
 * is malloc'ed (caller frees). */
nf_status nf_ckpt_read_trainer(const char *path, nf_real *m, nf_real *v, int64_t nparams, char **trainer_json);

/* ---------------------------------------------------------------- misc */
/* Write a whole buffer to path atomically (temporary file + rename). */
nf_status nf_write_file_atomic(const char *path, const void *data, size_t len);
/* Open "<path>.tmp.<pid>" for writing; nf_commit_file closes and renames (or removes on failure). */
FILE *nf_open_temp(const char *path, char *tmp, size_t tmpsz);
nf_status nf_commit_temp(FILE *fp, const char *tmp, const char *path, int ok);

#endif
