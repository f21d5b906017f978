/* nflow.h — normalizing flows in C11 (NICE, RealNVP, Glow, NSF, MAF, IAF).
 *
 * Overview
 * --------
 * A flow is a composition of invertible layers f = f_K ∘ … ∘ f_1 that maps data x to a latent z with a
 * simple prior π(z). The log-likelihood is exact (change of variables):
 *
 *     log p(x) = log π(f(x)) + Σ_k log |det ∂f_k/∂h_{k-1}|        (h_0 = x, h_k = f_k(h_{k-1}))
 *
 * DIRECTION CONVENTION (one for the whole library):
 *   forward  = data → latent  (x → z). It ADDS log|det ∂z/∂x| to a per-sample log-det accumulator.
 *   inverse  = latent → data  (z → x). It ADDS −log|det ∂z/∂x| (= log|det ∂x/∂z|).
 *   The generator of the lecture, G, is the inverse; G⁻¹ is the forward.
 *   backward = gradients of a scalar loss L(z, logdet) with respect to the layer input x and the layer
 *   parameters, given ∂L/∂z and ∂L/∂logdet; parameter gradients are ADDED (+=) into the gradient buffer.
 *
 * Tensors are row-major float32, batch first: a batch of n vectors of dimension D is n·D floats (n, D).
 * All parameters of a model live in ONE flat buffer, gradients in a second buffer of the same layout.
 *
 * Errors: every function that can fail returns an nf_status; nf_last_error() gives a readable one-line
 * reason (per thread). The library never prints and never exits.
 *
 * Worked example (error checks trimmed):
 *
 *     nf_config cfg; nf_config_default(&cfg, NF_MODEL_REALNVP, 2);
 *     nf_flow *flow; nf_flow_create(&cfg, &flow);
 *     nf_dataset *ds;  nf_dataset_toy("moons", 10000, 1, &ds);
 *     nf_trainer *tr;  nf_train_opts o; nf_train_opts_default(&o); nf_trainer_create(flow, ds, &o, &tr);
 *     for (int s = 0; s < 2000; s++) { double loss, gnorm; nf_trainer_step(tr, &loss, &gnorm); }
 *     nf_flow_save(flow, "moons.ckpt");
 *     ... nf_trainer_free(tr); nf_dataset_free(ds); nf_flow_free(flow);
 */
#ifndef NFLOW_H
#define NFLOW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NFLOW_VERSION "0.1.0"
#define NFLOW_CKPT_VERSION 1

/* nf_real is float. The test suite also compiles the library with NFLOW_DOUBLE so that the conformance
 * suite can check log-determinants and gradients against double-precision finite differences. */
#ifdef NFLOW_DOUBLE
typedef double nf_real;
#else
typedef float nf_real;
#endif

typedef enum {
    NF_OK = 0,
    NF_ERR_INVALID,  /* bad argument, option or configuration */
    NF_ERR_NOMEM,    /* allocation failed */
    NF_ERR_IO,       /* file could not be opened, read or written */
    NF_ERR_FORMAT,   /* malformed file contents */
    NF_ERR_NUMERIC,  /* non-finite value or singular matrix */
    NF_ERR_DIVERGED  /* training diverged again after the trainer's last roll-back (nf_train_opts.rollbacks) */
} nf_status;

/* The library's version, NFLOW_VERSION as it was when the library was built (a static string). A
 * binding loading the shared library compares it with the version it was written for. */
const char *nf_version(void);
/* The reason for the last failure on this thread ("" if none). */
const char *nf_last_error(void);
/* Threads used by OpenMP regions. Results are bit-identical for every thread count. */
void nf_set_threads(int n);
int nf_get_threads(void);
/* What runs on this machine, one line: the kernels' instruction-set path (from the CPU's feature bits,
 * capped by the environment variable NFLOW_ISA=generic|avx2|avx512), the BLAS build and the core it
 * uses (nflow corrects OpenBLAS's choice at load time when it fell back below the CPU; the text says
 * so, and names a core below the CPU that the user forced with OPENBLAS_CORETYPE, which is respected),
 * and, in builds with oneDNN, its version and ISA: its sgemm multiplies the larger single-precision
 * products (NFLOW_GEMM=auto|openblas|onednn chooses per shape, or forces one library for every product).
 * The string is owned by the library (per thread). */
const char *nf_runtime_info(void);
/* NF_ERR_INVALID with a reason when NFLOW_ISA names no path or one this CPU lacks, NFLOW_CONV names
 * no convolution path (auto, winograd, direct, im2col), or NFLOW_GEMM no product library of this build
 * (auto, openblas, onednn) (the library then
 * uses the CPU's widest path); NF_OK otherwise. For programs that want to refuse a bad setting. */
nf_status nf_runtime_check(void);

/* ---------------------------------------------------------------- random numbers (xoshiro256**) */
typedef struct { uint64_t s[4]; } nf_rng;
void nf_rng_seed(nf_rng *r, uint64_t seed);
uint64_t nf_rng_u64(nf_rng *r);
double nf_rng_uniform(nf_rng *r);   /* in (0, 1), never 0 or 1 */
double nf_rng_normal(nf_rng *r);    /* N(0, 1), Box–Muller, no cached state */
double nf_rng_logistic(nf_rng *r);  /* standard logistic: log(u / (1 − u)) */

/* ---------------------------------------------------------------- model configuration */
/* NSF: neural spline flows (see bins/bound below). MAF and IAF (vectors only): K autoregressive blocks,
 * each an affine (or spline) transform whose parameters for coordinate d come from a MADE that sees only
 * the coordinates before d in its ordering; MAF's density is one pass and its sampling D passes, IAF
 * the reverse (layers/maf.c). */
typedef enum { NF_MODEL_NICE = 0, NF_MODEL_REALNVP, NF_MODEL_GLOW, NF_MODEL_NSF, NF_MODEL_MAF, NF_MODEL_IAF } nf_model_type;
typedef enum { NF_ACT_RELU = 0, NF_ACT_TANH, NF_ACT_LEAKY_RELU } nf_activation;
typedef enum { NF_COUPLING_AFFINE = 0, NF_COUPLING_ADDITIVE } nf_coupling_type;
/* Bounded scale of the affine coupling:
 *   TANH:    z_b = x_b · exp(tanh(h_s)) + h_t            (net output order: s then t; RealNVP)
 *   SIGMOID: z_b = (x_b + h_t) · sigmoid(h_s + 2)        (net output order: t then s; Glow) */
typedef enum { NF_SCALE_TANH = 0, NF_SCALE_SIGMOID } nf_scale_type;
/* Which coordinates condition (a) and which are transformed (b); coupling k swaps a and b when k is odd.
 *   HALVES:  a = first ⌊D/2⌋ coordinates, b = the rest.   ODDEVEN: a = even indices, b = odd indices. */
typedef enum { NF_PART_HALVES = 0, NF_PART_ODDEVEN } nf_partition;
/* The prior π(z): standard normal; logistic (NICE); a learned diagonal Gaussian (Glow's top prior; with a
 * context, its mean and log std affine in c); GMM: a learned mixture of prior_components diagonal
 * Gaussians, π(z) = Σ_k w_k N(z; μ_k, diag σ_k²), w = softmax(logits) — a multimodal base, so the flow
 * need not tear one mode into several (no context); GMM_FULL: the same with full covariances, each
 * component's precision Σ_k⁻¹ = A_kᵀA_k through a learned lower-triangular A_k (at most
 * NF_GMM_FULL_MAX_DIM dimensions: D(D−1)/2 more values a component; no context). */
typedef enum { NF_PRIOR_NORMAL = 0, NF_PRIOR_LOGISTIC, NF_PRIOR_DIAG_GAUSSIAN, NF_PRIOR_GMM, NF_PRIOR_GMM_FULL } nf_prior_type;
/* What separates consecutive couplings / autoregressive blocks of the vector models: nothing, a fixed
 * reversal or random permutation (log|det| = 0), or LU: a learned invertible linear map
 * W = P·(L + I)·(U + diag(sign·e^log_s)) (Glow's LU parametrisation, starting as a random rotation),
 * which can also rotate correlated columns into the next block's order. */
typedef enum { NF_PERM_NONE = 0, NF_PERM_REVERSE, NF_PERM_RANDOM, NF_PERM_LU } nf_perm_type;
/* The input ordering of a MADE (maf, iaf): coordinate d is conditioned on those before it in the order
 * 0, 1, …, D−1 (NATURAL), D−1, …, 0 (REVERSE) or a random one drawn from the model's seed (RANDOM). */
typedef enum { NF_ORDER_NATURAL = 0, NF_ORDER_REVERSE, NF_ORDER_RANDOM } nf_order_type;
/* The element-wise map of an autoregressive block (maf, iaf): AFFINE v = (u − μ)·e^s (s bounded by
 * `scale`) or SPLINE v = g(u), a rational-quadratic spline of `bins` bins on [−bound, bound]. */
/* The element-wise map of each autoregressive block; MIXED alternates them, affine first (blocks 0, 2, …
 * affine, 1, 3, … spline). */
typedef enum { NF_TRANSFORM_AFFINE = 0, NF_TRANSFORM_SPLINE, NF_TRANSFORM_MIXED } nf_transform_type;
/* How an image model spreads a pixel over its bin (see nf_flow_dequantize): uniform noise, or a learned
 * noise distribution q(u | pixels) trained with the flow (Flow++'s variational dequantisation). */
typedef enum { NF_DEQUANT_UNIFORM = 0, NF_DEQUANT_VARIATIONAL } nf_dequant_type;

typedef struct {
    nf_model_type model;
    int32_t dim;            /* D, data dimension (≥ 2; nsf, maf and iaf ≥ 1) */
    int32_t depth;          /* couplings (nice, realnvp), steps (glow) or autoregressive blocks (maf, iaf) */
    int32_t hidden;         /* width of coupling MLPs */
    int32_t layers;         /* hidden layers of coupling MLPs (≥ 1) */
    nf_activation act;
    nf_coupling_type coupling; /* glow: affine or additive; nice is always additive, realnvp affine */
    nf_scale_type scale;
    nf_partition partition;
    nf_perm_type perm;      /* after each coupling / block (nice, realnvp, nsf, maf, iaf); glow uses 1×1 "conv" */
    int32_t lu;             /* glow: 1 = LU-parameterised invertible linear, 0 = plain W (log|det| by LU) */
    int32_t batchnorm;      /* realnvp: batch-norm flow layer after each coupling but the last */
    int32_t actnorm;        /* realnvp/nice: ActNorm before each coupling (glow always has it) */
    nf_prior_type prior;
    int32_t standardize;    /* per-column standardisation layer in front (statistics set from data) */
    /* Images (NCHW): channels, height, width > 0 make the model an image model with dim = C·H·W.
     * glow: `levels` levels of squeeze → `depth` steps (ActNorm → 1×1 conv → conv coupling) → split
     * (not after the last level); coupling nets conv3×3 → ReLU → conv1×1 → ReLU → zero-conv3×3 of width
     * `hidden`. realnvp: `levels` scales; each but the last: 3 checkerboard couplings, squeeze, 3 channel
     * couplings, factor out half the channels; the last: 4 checkerboard couplings; every coupling net a
     * ResNet of width `hidden` with `blocks` residual blocks. nice flattens images to vectors. */
    int32_t channels, height, width, levels;
    int32_t blocks;         /* realnvp images: residual blocks per coupling ResNet */
    double logit_alpha;     /* images: > 0 puts RealNVP's logit layer z = logit(α + (1 − 2α)·pixel) in front
                             * (its log-det counted, so bits/dim stay those of the pixels); 0: none */
    double init_std;        /* std of the coupling nets' last-layer weights at initialisation. 0 (default):
                             * every coupling starts as the identity. (Additive couplings on data whose
                             * conditionals are symmetric, e.g. 8 gaussians, then sit at a stationary
                             * point; a small value such as 0.01 breaks the symmetry.) */
    /* nsf (neural spline flow, Durkan et al. 2019): rational-quadratic spline couplings, each spline of
     * `bins` bins mapping [−bound, bound] onto itself, identity with unit slope outside. Vectors:
     * `depth` × (spline coupling → permutation `perm`), every coupling starting as the identity; 1-D
     * data: one element-wise spline. Images: Glow's layout with spline couplings. */
    int32_t bins;           /* nsf: bins K of every spline (2..64) */
    int32_t elementwise;    /* nsf vectors: 1 = an element-wise spline (one per coordinate) in front */
    double bound;           /* nsf: B of every spline */
    uint64_t seed;          /* parameter initialisation and random permutations */
    nf_order_type order;    /* maf/iaf: the MADEs' input ordering (natural; blocks are separated by `perm`) */
    nf_transform_type transform; /* maf/iaf: the blocks' element-wise map (affine; spline uses bins, bound) */
    /* Conditional flows p(x | c): context_dim = K > 0 values c per sample that every conditioner sees
     * (coupling MLPs and MADEs take [input, c]; conv nets and ResNets a per-channel bias W_c·c on their
     * first convolution) and, with prior diag_gaussian, the prior too (mean and log std affine in c:
     * Glow's class-conditional prior; the fixed priors ignore c). 0: unconditional. Every call on a
     * conditional flow needs its context (the *_ctx functions). */
    int32_t context_dim;
    int32_t context_labels; /* 1: the context is a one-hot class label of context_dim classes (images:
                             * `--condition labels`; the trainer and evaluation build it from the labels) */
    /* Tables (for the CLI): bit j set = column j + 1 of the training CSV is a context column (popcount
     * = context_dim); 0 for class labels and library use. */
    uint64_t context_cols;
    nf_dequant_type dequant; /* image models: uniform (0) or variational dequantisation (nf_flow_dequantize) */
    int32_t dequant_hidden;  /* variational: width of the dequantiser's conv net (0: 32) */
    uint64_t prior_components; /* prior gmm, gmm_full: the mixture's components K (1..NF_GMM_MAX_COMPONENTS; default 8;
                                * 64 bits, so that nf_config has no padding) */
} nf_config;
#define NF_GMM_MAX_COMPONENTS 64 /* the gmm priors' most components */
#define NF_GMM_FULL_MAX_DIM 64    /* the gmm_full prior's most dimensions */

/* Fill cfg with the defaults of a model type for data of dimension dim. */
void nf_config_default(nf_config *cfg, nf_model_type model, int32_t dim);
/* Defaults for C × H × W images (glow: the glow-small workload, L = 2, K = 8, width 128;
 * realnvp: the realnvp-small workload, 2 scales, ResNets of width 64 with 4 blocks, logit α = 0.05;
 * nice: 4 couplings of 5 × 1000 MLPs on the flattened image, logistic prior). */
void nf_config_default_image(nf_config *cfg, nf_model_type model, int32_t C, int32_t H, int32_t W);
nf_status nf_config_validate(const nf_config *cfg);
/* Names <-> enums ("nice", "realnvp", "glow", "nsf", "maf", "iaf"; "relu", "tanh", "leaky_relu"; …). Return -1 if unknown. */
int nf_model_from_name(const char *name);
const char *nf_model_name(nf_model_type m);
/* Any enum of nf_config by kind: "model", "activation", "coupling", "scale", "partition", "prior",
 * "perm", "order", "transform". nf_enum_from_name returns -1 for an unknown name; nf_enum_name returns "?" for a bad value. */
int nf_enum_from_name(const char *kind, const char *name);
const char *nf_enum_name(const char *kind, int value);

/* nf_config's fields by name, for bindings and programs that set a configuration without mirroring
 * the struct: the names are the checkpoint's config keys ("model", "dim", "depth", "hidden", "layers",
 * "activation", "coupling", "scale", "partition", "perm", "lu", "batchnorm", "actnorm", "prior",
 * "standardize", "init_std", "channels", "height", "width", "levels", "blocks", "logit_alpha", "seed"),
 * the one table io/checkpoint.c walks. Values travel as text: integers, reals, enum names (or their
 * numbers), the seed as a decimal uint64. */
size_t nf_config_sizeof(void);                 /* sizeof(nf_config): a binding's buffer size */
int32_t nf_config_field_count(void);
const char *nf_config_field_name(int32_t i);   /* field i (table order), NULL when out of range */
/* Parse value by field key's kind and store it into *cfg. NF_ERR_INVALID naming the key and the value
 * for an unknown key, a value that is not wholly one of the kind (or out of int32 range, or not
 * finite), an unknown enum name; *cfg is then unchanged. Ranges are nf_config_validate's job. */
nf_status nf_config_set_field(nf_config *cfg, const char *key, const char *value);
/* Field key of *cfg as text into buf (n bytes, NUL-terminated; enums by name, reals round-trip with
 * %.17g). NF_ERR_INVALID for an unknown key or a buffer too small (buf then holds ""). */
nf_status nf_config_get_field(const nf_config *cfg, const char *key, char *buf, size_t n);
/* 1 if the model *cfg describes (its model type, vector or image data, and coupling) uses field key,
 * 0 if the field has no effect on it (e.g. "coupling" for realnvp, "levels" on vectors, "scale" with
 * additive glow couplings; "perm" for a vector nsf, maf or iaf and "batchnorm" for a vector realnvp, maf
 * or iaf of depth 1, as they go between blocks; "bins" for a mixed maf of depth 1, which has only the
 * affine block), -1 for an unknown key. The same rules as `nflow train`'s refusals. */
int nf_config_field_applies(const nf_config *cfg, const char *key);

/* ---------------------------------------------------------------- flows */
typedef struct nf_flow nf_flow;

nf_status nf_flow_create(const nf_config *cfg, nf_flow **out);
void nf_flow_free(nf_flow *f);
const nf_config *nf_flow_config(const nf_flow *f);
int32_t nf_flow_dim(const nf_flow *f);
int32_t nf_flow_num_layers(const nf_flow *f);
/* The names of the columns of the table f models, comma-separated, in the training file's order
 * (context columns included: dim + context_dim fields); NULL when unnamed. Saved in checkpoints, so
 * that samples and decodes are written under the training file's header. */
const char *nf_flow_columns(const nf_flow *f);
/* Set them (a copy; NULL: unnamed); NF_ERR_INVALID unless names has dim + context_dim non-empty fields
 * without double quotes or control characters. */
nf_status nf_flow_set_columns(nf_flow *f, const char *names);
const char *nf_flow_layer_name(const nf_flow *f, int32_t k);
/* The flat parameter and gradient buffers (same layout), and their length. */
nf_real *nf_flow_params(nf_flow *f);
nf_real *nf_flow_grads(nf_flow *f);
int64_t nf_flow_num_params(const nf_flow *f);
/* FLOPs (multiply-adds × 2) of one sample's forward pass through the matrix products and convolutions
 * (element-wise work not counted); the inverse costs the same, a training step about 3× (forward,
 * input gradients, weight gradients). */
double nf_flow_flops(const nf_flow *f);
/* Set the standardisation layer (if the config has one) from data statistics. */
nf_status nf_flow_set_standardization(nf_flow *f, const nf_real *mean, const nf_real *std);
/* Training mode: ActNorm initialises from the first batch it sees, batch norm uses batch statistics. */
void nf_flow_set_training(nf_flow *f, int training);
/* Backward mode. store (0, default): every layer's input and cache are kept from the forward pass,
 * memory grows with depth. recompute (1): only two activations and one layer cache are kept; backward
 * rebuilds each layer's input from its output with the layer's inverse and re-runs its forward, so
 * memory does not grow with depth, at the cost of an inverse and a forward per layer. Gradients agree
 * with store mode up to the rounding of the reconstructed inputs. Not available with batch norm. */
nf_status nf_flow_set_recompute(nf_flow *f, int on);
int nf_flow_recompute(const nf_flow *f);
/* Bytes of the flow's workspace (activations, caches, scratch) as currently sized. */
int64_t nf_flow_workspace_bytes(const nf_flow *f);

/* z = f(x) (n, D); logdet[i] = Σ_k log|det J_k| for sample i (overwritten). Either output may be NULL.
 * NF_ERR_NUMERIC (the values still written; the reason names the first row) when an output is not
 * finite: x lies too far out for the model. The same holds for nf_flow_inverse and nf_flow_sample. */
nf_status nf_flow_forward(nf_flow *f, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n);
/* x = f⁻¹(z); logdet[i] = log|det ∂x/∂z| = −(forward log-det) (overwritten; may be NULL). */
nf_status nf_flow_inverse(nf_flow *f, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n);
/* log p(x) per sample, in nats. NF_ERR_NUMERIC (the values still written) when one is not finite. */
nf_status nf_flow_log_prob(nf_flow *f, const nf_real *x, nf_real *logp, int64_t n);
/* Draw n samples x = G(z), z ~ prior scaled by temperature T (T = 1: the model's distribution).
 * NF_ERR_NUMERIC (all n still written) when a sample is not finite. */
nf_status nf_flow_sample(nf_flow *f, nf_rng *rng, double temperature, nf_real *x, int64_t n);
/* Mean negative log-likelihood (nats) of the batch, and its gradient ADDED into nf_flow_grads()
 * (the caller zeroes the gradient buffer). dx (may be NULL) receives ∂loss/∂x. */
nf_status nf_flow_nll_grad(nf_flow *f, const nf_real *x, int64_t n, double *loss, nf_real *dx);
void nf_flow_zero_grad(nf_flow *f);

/* Checkpoints: safetensors; the config, layer list and format version are in "__metadata__", every
 * parameter and state tensor is stored under its own name ("layers.3.net.0.weight" …). Written to a
 * temporary file and renamed. */
nf_status nf_flow_save(const nf_flow *f, const char *path);
nf_status nf_flow_load(const char *path, nf_flow **out);

/* Conditional flows (cfg.context_dim = K > 0): the same operations with the context c (n, K), row i for
 * sample i. The functions above refuse a conditional flow (NF_ERR_INVALID: it needs a context) and these
 * refuse a context (c not NULL) on an unconditional one; c = NULL on an unconditional flow is the plain
 * call. nf_flow_nll_grad_ctx: dc (n, K; may be NULL) receives ∂loss/∂c (overwritten). */
int32_t nf_flow_context_dim(const nf_flow *f);
nf_status nf_flow_forward_ctx(nf_flow *f, const nf_real *x, const nf_real *c, nf_real *z, nf_real *logdet, int64_t n);
nf_status nf_flow_inverse_ctx(nf_flow *f, const nf_real *z, const nf_real *c, nf_real *x, nf_real *logdet, int64_t n);
nf_status nf_flow_log_prob_ctx(nf_flow *f, const nf_real *x, const nf_real *c, nf_real *logp, int64_t n);
nf_status nf_flow_sample_ctx(nf_flow *f, nf_rng *rng, double temperature, const nf_real *c, nf_real *x, int64_t n);
nf_status nf_flow_nll_grad_ctx(nf_flow *f, const nf_real *x, const nf_real *c, int64_t n, double *loss, nf_real *dx,
                               nf_real *dc);

/* Dequantisation of image models. Pixels of b bits are bins; xc (n, D) holds their centres (nf_images_dequantize
 * with rng NULL) and eps (n, D) standard logistic noise (nf_rng_logistic). x (n, D) = xc + (u − ½)/2^b, the
 * pixels spread over their bins by u ∈ (0, 1)^D, and logq[i] = log q(u_i | xc_i) (nats; the density of u on
 * the unit cube): u = σ(eps), logq = 0 with uniform dequantisation (cfg.dequant uniform); with
 * variational dequantisation u = σ(μ(xc) + e^{s(xc)}·eps), q learned with the flow (layers/dequant.h).
 * Then −log P(pixels) ≤ E[−log p(x) + log q] + D·ln 2^b, the bound bits/dim report (nf_bits_per_dim of
 * −log p + log q). NF_ERR_INVALID for a model that is not an image model or bits outside 1..8. */
nf_status nf_flow_dequantize(nf_flow *f, const nf_real *xc, const nf_real *eps, int32_t bits, nf_real *x, nf_real *logq, int64_t n);
/* The mean over the batch of −log p(x) + log q(u | xc), x and u as nf_flow_dequantize makes them (c: the
 * contexts of a conditional model, else NULL); its gradient with respect to the flow's and the
 * dequantiser's parameters ADDED into nf_flow_grads(). */
nf_status nf_flow_nll_grad_dequant(nf_flow *f, const nf_real *xc, const nf_real *eps, int32_t bits, const nf_real *c, int64_t n,
                                   double *loss);

/* ---------------------------------------------------------------- optimiser */
typedef struct {
    double lr, beta1, beta2, eps;
    int64_t warmup;         /* linear learning-rate warm-up over this many steps (0: none) */
    int64_t cosine_steps;   /* > 0: after warm-up, cosine decay of the rate to 0 at this step; 0: constant */
    double clip;            /* clip the global gradient norm to this (≤ 0: no clipping) */
    double weight_decay;    /* decoupled (AdamW): p ← p·(1 − lr_t·weight_decay) before each step; 0: none */
} nf_adam_opts;
void nf_adam_opts_default(nf_adam_opts *o);
typedef struct nf_adam nf_adam;
nf_status nf_adam_create(int64_t nparams, const nf_adam_opts *o, nf_adam **out);
void nf_adam_free(nf_adam *a);
/* One Adam step on params using grads (clipping and warm-up applied); returns the pre-clip grad norm. */
double nf_adam_step(nf_adam *a, nf_real *params, const nf_real *grads);
int64_t nf_adam_steps(const nf_adam *a);

/* ---------------------------------------------------------------- data */
typedef struct {
    int64_t n;      /* rows */
    int32_t dim;    /* columns */
    nf_real *x;     /* (n, dim), owned */
    char *names;    /* the columns' names, comma-separated (a CSV header's fields, trimmed of blanks and
                     * quotes), owned; NULL: the columns are unnamed */
} nf_dataset;

/* Built-in 2-D generators (FFJORD's toy data): "moons", "circles", "rings", "8gaussians",
 * "checkerboard", "pinwheel", "2spirals". */
nf_status nf_dataset_toy(const char *name, int64_t n, uint64_t seed, nf_dataset **out);
int nf_toy_known(const char *name);
const char *const *nf_toy_names(void);
/* CSV of numbers, one row per sample; an optional header line of non-numeric names becomes ds->names.
 * path "-" reads standard input. Errors name the file, the line and the field. */
nf_status nf_dataset_csv(const char *path, nf_dataset **out);
/* Write ds as CSV to path atomically: the header ds->names, or colprefix1, colprefix2, … when unnamed. */
nf_status nf_dataset_write_csv(const nf_dataset *ds, const char *path, const char *colprefix);
/* ds->names = a copy of names (NULL: unnamed); NF_ERR_INVALID unless names has ds->dim non-empty fields
 * without double quotes or control characters. */
nf_status nf_dataset_set_names(nf_dataset *ds, const char *names);
void nf_dataset_free(nf_dataset *ds);
/* Split rows (shuffled with seed) into train and test; test gets round(frac·n) rows (at least 1). */
nf_status nf_dataset_split(const nf_dataset *ds, double test_frac, uint64_t seed,
                           nf_dataset **train, nf_dataset **test);
/* Per-column mean and standard deviation (std of a constant column is reported as 1). */
void nf_dataset_moments(const nf_dataset *ds, nf_real *mean, nf_real *std);

/* ---------------------------------------------------------------- image data */
typedef struct {
    int64_t n;                /* images */
    int32_t C, H, W;          /* channels, height, width */
    uint8_t *pix;             /* (n, C, H, W) 8-bit pixels, owned */
    int32_t *labels;          /* (n) class labels, or NULL; owned */
} nf_images;

/* IDX images (magic 0x00000803, n × H × W unsigned bytes), gzip-compressed or raw, and optionally their
 * IDX label file (magic 0x00000801; as many labels as images). Fashion-MNIST from Debian's
 * dataset-fashion-mnist lives in /usr/share/datasets/fashion-mnist/. */
nf_status nf_images_load_idx(const char *images, const char *labels, nf_images **out);
/* CIFAR-10 binary batches (data_batch_1.bin …): 1 label byte + 3072 pixel bytes per record. */
nf_status nf_images_load_cifar(const char *const *paths, int32_t npaths, nf_images **out);
/* A folder of PNG/JPEG images, each scaled (shorter side to `size`, area averaging) and centre-cropped
 * to size × size; channels 1 (grey), 3 (RGB) or 0 (1 if every image is greyscale, else 3). A folder of
 * sub-folders is labelled: each sub-folder, in name order, is a class. */
nf_status nf_images_load_folder(const char *dir, int32_t size, int32_t channels, nf_images **out);
/* Shuffle (with seed) and split into train and test; test gets round(frac·n) images (at least 1). */
nf_status nf_images_split(const nf_images *im, double frac, uint64_t seed, nf_images **train, nf_images **test);
void nf_images_free(nf_images *im);
/* x (n, C·H·W) = (⌊pix / 2^(8−bits)⌋ + u) / 2^bits − 0.5 with u ~ U(0, 1) (rng NULL: u = ½), for the
 * images idx[0..n) (idx NULL: the first n). Glow's n-bit reduction and uniform dequantisation. */
void nf_images_dequantize(const nf_images *im, const int64_t *idx, int64_t n, int32_t bits, nf_rng *rng, nf_real *x);
/* Bits per dimension of n-bit data from a continuous NLL (nats per image over D dimensions):
 * (NLL + D·ln 2ⁿ) / (D·ln 2) — the figure papers report. */
double nf_bits_per_dim(double nll_nats, int64_t D, int32_t bits);

/* ---------------------------------------------------------------- training */
typedef struct {
    int64_t batch;
    nf_adam_opts adam;
    uint64_t seed;          /* batch sampling and dequantisation noise */
    int32_t bits;           /* images: bit depth the pixels are reduced to (8: none; Glow uses 5) */
    double ema;             /* Polyak averaging: decay d of an exponential moving average of the parameters,
                             * avg ← d_n·avg + (1 − d_n)·θ after step n with d_n = min(d, (1 + n)/(10 + n));
                             * 0 (the default): none. See nf_trainer_swap_average. */
    int32_t rollbacks;      /* the divergence guard (see nf_trainer_step): at most this many roll-backs,
                             * each halving the learning rate (default 8); 0: no guard */
} nf_train_opts;
void nf_train_opts_default(nf_train_opts *o);
typedef struct nf_trainer nf_trainer;
/* The trainer borrows f and ds (both must outlive it) and puts f in training mode. */
nf_status nf_trainer_create(nf_flow *f, const nf_dataset *ds, const nf_train_opts *o, nf_trainer **out);
/* A conditional flow's trainer over the rows of ds with their contexts: row i of ctx (ctx->dim = the flow's
 * context_dim, ctx->n = ds->n) conditions row i of ds; both borrowed. ctx NULL: nf_trainer_create. */
nf_status nf_trainer_create_ctx(nf_flow *f, const nf_dataset *ds, const nf_dataset *ctx, const nf_train_opts *o,
                                nf_trainer **out);
/* The same for 8-bit images: every batch is dequantised afresh (nf_images_dequantize, o->bits). A
 * class-conditional flow (context_dim K > 0) is trained on p(x | one-hot(label)): the images need labels
 * 0..K−1 (NF_ERR_INVALID otherwise); the evaluation and encoding functions below do the same. */
nf_status nf_trainer_create_images(nf_flow *f, const nf_images *im, const nf_train_opts *o, nf_trainer **out);
void nf_trainer_free(nf_trainer *t);
/* One step: the next batch of a shuffled epoch of ds, loss = mean NLL (nats), Adam update. A non-finite
 * loss or gradient skips the update and returns NF_ERR_NUMERIC (the parameters are unchanged). With a
 * reducer (nf_trainer_set_reducer) loss and grad_norm are those of the global batch, the same on every
 * process, and every process skips together.
 * The divergence guard (o->rollbacks > 0): the trainer keeps a moving average of the loss and of its
 * absolute deviation over healthy steps, and every 100 healthy steps an in-memory snapshot of the
 * parameters and the average (the last two snapshots: 2 or 4 copies of the parameters). A step whose loss is not finite,
 * or is above average + 10 deviations + 0.001·(|average| + 1) (a spike), is troubled; after 20 troubled steps in a row the trainer
 * restores the older snapshot, restarts Adam's moments (zeroed, the bias correction counted afresh), halves
 * the learning rate and goes on with the next batch (the step count, the schedule and the data position
 * keep moving); that step returns NF_OK (see nf_trainer_rollbacks).
 * Once o->rollbacks roll-backs are spent, the next one restores the snapshot and returns
 * NF_ERR_DIVERGED. A single bad batch is skipped as before. The decisions depend on the losses alone,
 * so they are the same for every thread count and on every process. */
nf_status nf_trainer_step(nf_trainer *t, double *loss, double *grad_norm);
/* Roll-backs the divergence guard has made (counting those before a resume; the learning rate runs at
 * 0.5^count of its schedule); *undone (may be NULL) = the steps the last one took back. */
int32_t nf_trainer_rollbacks(const nf_trainer *t, int64_t *undone);
int64_t nf_trainer_steps(const nf_trainer *t);
/* A checkpoint that can be resumed: the model (loadable by nf_flow_load as usual) plus Adam's moments
 * and step, the random-number state and the position in the shuffled epoch. */
nf_status nf_trainer_save(nf_trainer *t, const char *path);
/* Continue exactly where nf_trainer_save left off: t must be a fresh trainer for the flow loaded from
 * the same file (nf_flow_load) and the same data and options. N steps, save, resume, M steps gives
 * bit-for-bit the parameters of N + M uninterrupted steps. The checkpoint holds the row count and a
 * fingerprint of the training rows (and contexts, or pixels and labels): other data is refused with
 * NF_ERR_INVALID (files saved before the fingerprint existed are checked by their row count only). */
nf_status nf_trainer_resume(nf_trainer *t, const char *path);
/* The same two with the caller's own state in the checkpoint: meta (NULL or "": none) is a list of
 * JSON members `"key":value,…` (numbers, or strings without quotes inside) saved beside the trainer's;
 * on resume `meta` (n bytes, caller's) receives the saved trainer object as text, the caller's members
 * included ("" when n is 0). The CLI keeps early stopping's best validation score there. */
nf_status nf_trainer_save_meta(nf_trainer *t, const char *path, const char *meta);
nf_status nf_trainer_resume_meta(nf_trainer *t, const char *path, char *meta, size_t n);
/* With o->ema > 0 the trainer keeps the moving average of the parameters beside the flow's own (the
 * optimiser's iterate, which the steps update). This exchanges the two in the flow: call it before and
 * after an evaluation to score the average, or once when training ends to keep the average as the
 * model. NF_ERR_INVALID without o->ema. nf_trainer_save writes the average as the model (so nf_flow_load,
 * eval and sample use it) and the iterate beside Adam's moments; nf_trainer_resume restores both, so a
 * resumed run is bit-for-bit the uninterrupted one (resuming needs the same o->ema on and off). */
nf_status nf_trainer_swap_average(nf_trainer *t);
/* Data-parallel training: several processes (MPI ranks, say) train ONE model together. The library
 * knows no transport; the caller supplies the sums. Every process builds the same trainer (same model,
 * data, options and seed) and calls nf_trainer_set_reducer with its rank. Each step then draws the whole
 * global batch of o->batch rows exactly as one process would (the same shuffled order, the same
 * dequantisation noise) and works on its own slice of it: rows [rank·B/size, (rank+1)·B/size). The
 * gradient is the gradient of the GLOBAL mean NLL (each sample weighted 1/B, so the sum over the
 * processes is what one process computes), summed with sum_real over the flat gradient buffer; the
 * loss is summed with sum_double; ActNorm's data-dependent initialisation and batch norm's batch
 * statistics (forward and backward) are computed over the global batch through sum_double. Every
 * process then takes the same Adam step (the norm for clipping and the NaN/Inf skip decision come from
 * the summed gradient, so they agree). The sums must give every process the same result; the trainer
 * state (rng, epoch position, Adam moments) is the same on every process and does not depend on size,
 * so a checkpoint saved by one process resumes on any number of processes.
 * Both functions replace buf[0..n) by the element-wise sum over the processes and return 0 (nonzero:
 * the transport failed; the step returns NF_ERR_IO). Every process calls them in the same order with
 * the same n.
 * Optional (both or neither; NULL: the gradient is summed with one sum_real after the backward pass):
 * the gradient summed while the backward pass runs. The backward pass goes from the last layer to the
 * first and the parameters of later layers lie later in the flat buffer, so a growing suffix of the
 * gradient is final: after the prior's and after every layer's backward the library calls
 * grad_ready(ctx, grad, off, n) — grad[off..n) is final (off never grows within a step; the step's last
 * call has off = 0) — and from then until grad_wait returns the library neither reads nor writes that
 * suffix, so the transport may sum it in place, in whatever pieces it likes, as soon as it is told.
 * sum_double calls (batch statistics of the layers still to run, the loss) come between the calls.
 * grad_wait(ctx, grad, n) follows before anything reads the gradient (norm, clipping, the NaN/Inf
 * check, the update) and returns when grad[0..n) holds the element-wise sum. The calls are the same,
 * in the same order, on every process (one per layer, also where a layer adds nothing new: a chance
 * for the transport to make progress). Both return 0, nonzero when the transport failed (NF_ERR_IO). */
typedef struct {
    int (*sum_real)(void *ctx, nf_real *buf, int64_t n);
    int (*sum_double)(void *ctx, double *buf, int64_t n);
    void *ctx;              /* passed through */
    int32_t rank, size;     /* this process 0..size−1 of size ≥ 1 */
    int (*grad_ready)(void *ctx, nf_real *grad, int64_t off, int64_t n); /* optional, see above */
    int (*grad_wait)(void *ctx, nf_real *grad, int64_t n);
} nf_reducer;
/* Train t as process r->rank of r->size (r copied; NULL or size 1: one process, as without a call).
 * NF_ERR_INVALID if the rank is out of range, the batch has fewer rows than there are processes, or
 * only one of grad_ready and grad_wait is set.
 * Call before the first step. */
nf_status nf_trainer_set_reducer(nf_trainer *t, const nf_reducer *r);
/* Test bits/dim of images with its standard error: each image dequantised once with seed as the model
 * was trained (uniform or variational, nf_flow_dequantize), the bound −log p(x) + log q(u | x̃) in bits
 * per dimension; and (if max_recon is not NULL) the largest reconstruction error |x − G(G⁻¹(x))|. */
nf_status nf_flow_evaluate_images(nf_flow *f, const nf_images *im, int32_t bits, uint64_t seed, double *bpd,
                                  double *se, double *max_recon);
/* The same, and (max_recon and nbad not NULL) *nbad = how many images have some value with
 * |x − G(G⁻¹(x))| > tol (a non-finite reconstruction counts): e.g. tol = half a quantisation level,
 * 0.5 / 2^bits, the images whose reconstruction would land in another pixel bin. */
nf_status nf_flow_evaluate_images_ex(nf_flow *f, const nf_images *im, int32_t bits, uint64_t seed, double tol, double *bpd,
                                     double *se, double *max_recon, int64_t *nbad);
/* Bits/dim of images by importance weighting (Burda et al. 2016): each image dequantised `draws` times
 * (seed), scored −log[(1/draws) Σ_k p(x_k)/q(u_k | x̃)]. Still an upper bound on −log P(pixels) in
 * expectation, tighter as draws grows; draws = 1 is nf_flow_evaluate_images's figure. NF_ERR_INVALID
 * for draws outside 1..1048576. */
nf_status nf_flow_evaluate_images_iw(nf_flow *f, const nf_images *im, int32_t bits, uint64_t seed, int32_t draws, double *bpd,
                                     double *se);
/* A class-conditional image model (context_labels) as a classifier by Bayes' rule with a uniform class
 * prior, over the first n images of im (n ≤ 0: all): *accuracy = the fraction whose argmax_k p(x | k)
 * is their label, *cond_bpd = mean −log₂ p(x | label) per dimension, *marg_bpd = mean −log₂ of the
 * model's marginal Σ_k p(x | k)/K per dimension (cond_bpd − marg_bpd ≥ −log₂ K / D for every image).
 * K forward passes per image. NF_ERR_INVALID for an unconditional model or images without labels. */
nf_status nf_flow_classify_images(nf_flow *f, const nf_images *im, int32_t bits, uint64_t seed, int64_t n, double *accuracy,
                                  double *cond_bpd, double *marg_bpd);
/* z = G⁻¹(x) of the images idx[0..n) (pixels at the centre of their bins, reduced to `bits`): the
 * latents used for interpolation and attribute vectors. z: (n, D). */
nf_status nf_flow_encode_images(nf_flow *f, const nf_images *im, const int64_t *idx, int64_t n, int32_t bits,
                                nf_real *z);
/* Mean latent of (at most max_n) images with the given label; count receives how many were used. */
nf_status nf_flow_mean_latent(nf_flow *f, const nf_images *im, int32_t label, int64_t max_n, int32_t bits,
                              nf_real *zmean, int64_t *count);
/* Mean test log-likelihood (nats/sample) and its standard error over all rows of ds. */
nf_status nf_flow_evaluate(nf_flow *f, const nf_dataset *ds, double *mean_ll, double *stderr_ll);
/* The same for a conditional flow: mean log p(x_i | c_i) with ctx's rows as the contexts (ctx NULL:
 * nf_flow_evaluate). */
nf_status nf_flow_evaluate_ctx(nf_flow *f, const nf_dataset *ds, const nf_dataset *ctx, double *mean_ll, double *stderr_ll);
/* c (n, K) = the one-hot rows of the labels of images idx[0..n) (idx NULL: the first n). NF_ERR_INVALID
 * when the images have no labels or one is outside 0..K−1. */
nf_status nf_images_onehot(const nf_images *im, const int64_t *idx, int64_t n, int32_t K, nf_real *c);

/* ---------------------------------------------------------------- pictures */
/* A three-panel PNG for a 2-D flow: learned density heatmap; samples over data; the warped grid
 * (a regular grid in latent space mapped to data space by G). data may be NULL. */
nf_status nf_plot_2d(nf_flow *f, const nf_dataset *data, const char *path, int32_t panel_px,
                     uint64_t seed);
/* nf_plot_2d of a conditional 2-D flow (context_dim K > 0): one row of the three panels per context row
 * (c: nc rows of K values, 1 ≤ nc ≤ 16), each of p(x | c_r) — its density (colours scaled to the row's
 * maximum), its samples, and the prior's lines around its location given c_r mapped by G(· | c_r) — all
 * in one view, so that rows compare. data must be NULL (its rows have contexts of their own); an
 * unconditional flow takes c = NULL (one row, as nf_plot_2d). NF_ERR_INVALID otherwise. */
nf_status nf_plot_2d_ctx(nf_flow *f, const nf_dataset *data, const nf_real *c, int32_t nc, const char *path,
                         int32_t panel_px, uint64_t seed);
/* A grid of n images x (n, C, H, W) (C = 1 or 3, values in [−0.5, 0.5) as nf_images_dequantize makes
 * them; values outside are clamped, NaN drawn black), `cols` per row, each pixel drawn scale × scale,
 * 1-pixel gaps; PNG via temporary file + rename. */
nf_status nf_images_grid_png(const nf_real *x, int64_t n, int32_t C, int32_t H, int32_t W, int32_t cols,
                             int32_t scale, const char *path);
/* Write an 8-bit RGB image (h, w, 3) as PNG via a temporary file + rename. */
nf_status nf_png_write(const char *path, const uint8_t *rgb, int32_t w, int32_t h);


#ifdef __cplusplus
}
#endif
#endif /* NFLOW_H */
