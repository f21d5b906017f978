/* kernels/kernels.h — the numerical kernels: dense products, LU, convolutions. Each fast kernel has a
 * naive reference beside it (nf_gemm_ref, nf_conv2d_ref) that the tests compare against. Kernels know
 * nothing of layers, nets or models: raw nf_real arrays in, raw arrays out. */
#ifndef NF_KERNELS_H
#define NF_KERNELS_H

#include "core/core.h"

/* ---------------------------------------------------------------- code paths (cpu.c) */
/* The instruction-set paths of the fast kernels, narrowest first. */
typedef enum { NF_ISA_GENERIC = 0, NF_ISA_AVX2, NF_ISA_AVX512 } nf_isa;
nf_isa nf_isa_cpu(void);           /* the widest path this CPU and OS support (feature bits) */
nf_isa nf_isa_active(void);        /* the path in use: nf_isa_cpu() capped by NFLOW_ISA */
nf_isa nf_isa_set(nf_isa isa);     /* tests, benchmarks: force a path (capped at the CPU's); returns the old */
const char *nf_isa_name(nf_isa isa);
const char *nf_blas_core(void);    /* the BLAS core in use ("SkylakeX", …, "unknown") */
nf_isa nf_blas_isa(void);          /* the ISA level of that core (generic if unknown) */

/* ---------------------------------------------------------------- vector math (vmath.c) */
/* Σ_j softplus(z_j) + softplus(−z_j) over n values, in double: the logistic distribution's −log density.
 * Vectorised (libmvec) on the avx2 / avx512 paths of float builds; nf_logistic_nll_ref is the scalar
 * loop (the reference). Within about 1e-15 of each other relative to the sum. */
double nf_logistic_nll(const nf_real *z, int64_t n);
double nf_logistic_nll_ref(const nf_real *z, int64_t n);
/* g_j = −d·tanh(z_j / 2) over n values: d times the derivative of −(softplus(z) + softplus(−z)). */
void nf_logistic_grad(const nf_real *z, double d, nf_real *g, int64_t n);
void nf_logistic_grad_ref(const nf_real *z, double d, nf_real *g, int64_t n);
/* z_j = T·(log u_j − log1p(−u_j)) over n uniforms u_j in (0, 1): logistic draws at temperature T. */
void nf_logistic_quantile(const double *u, double T, nf_real *z, int64_t n);
void nf_logistic_quantile_ref(const double *u, double T, nf_real *z, int64_t n);
/* Numerically stable sigmoid(v) and log sigmoid(v) = −softplus(−v) of one value: the scale of Glow's
 * affine couplings and of MAF's sigmoid-scaled blocks (nf_sigmoid_shift is the array form). */
static inline nf_real nf_sigmoid(nf_real v) { return v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v)); }
static inline nf_real nf_log_sigmoid(nf_real v) { return v >= 0 ? -log1p(exp(-v)) : v - log1p(exp(v)); }
/* sg_j = σ(h_j + shift) = 1 / (1 + e^−(h_j + shift)) and ls_j = log σ(h_j + shift) over n values: Glow's
 * affine coupling scale and its log (the log-det's terms). Vectorised as above; within a few float ulps
 * of the reference (σ relative, log σ absolute). */
void nf_sigmoid_shift(const nf_real *h, nf_real shift, nf_real *sg, nf_real *ls, int64_t n);
void nf_sigmoid_shift_ref(const nf_real *h, nf_real shift, nf_real *sg, nf_real *ls, int64_t n);
/* y_j ← tanh(y_j + b_j) over n values in place: the tanh layers of the MLPs and MADEs (the default on
 * tables). Vectorised as above; nf_tanh_bias_ref is the scalar loop. Within a few float ulps of it. */
void nf_tanh_bias(nf_real *y, const nf_real *b, int64_t n);
void nf_tanh_bias_ref(nf_real *y, const nf_real *b, int64_t n);
/* v_j ← e^(v_j) over n doubles in place: the rational-quadratic spline's softmaxes of bin widths and
 * heights and its knot derivatives' e^−|a| (3K − 1 values per transformed scalar). Vectorised as above (libmvec's exp, within 4 ulp);
 * nf_exp_inplace_ref is the scalar loop. */
void nf_exp_inplace(double *v, int64_t n);
void nf_exp_inplace_ref(double *v, int64_t n);
/* t_j = tanh(h_j) and e_j = e^(t_j) over n values: the scale e^s and the log-det's terms s of an affine
 * coupling or autoregressive block with s = tanh(h). Vectorised as above; nf_tanh_exp_ref is the scalar
 * loop. t and e within a few float ulps of it. */
void nf_tanh_exp(const nf_real *h, nf_real *t, nf_real *e, int64_t n);
void nf_tanh_exp_ref(const nf_real *h, nf_real *t, nf_real *e, int64_t n);

/* ---------------------------------------------------------------- dense kernels (gemm.c, lu.c) */
/* C(m,n) = alpha·op(A)·op(B) + beta·C, row-major, leading dimensions as in BLAS. The fast version uses
 * BLAS single-threaded per fixed-size tile of rows of C, tiles spread over OpenMP threads, so that the
 * result is bit-identical for every thread count. nf_gemm_ref is the naive triple loop (test oracle). */
void nf_gemm(int transA, int transB, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A,
             int64_t lda, const nf_real *B, int64_t ldb, nf_real beta, nf_real *C, int64_t ldc);
void nf_gemm_ref(int transA, int transB, int64_t m, int64_t n, int64_t k, nf_real alpha,
                 const nf_real *A, int64_t lda, const nf_real *B, int64_t ldb, nf_real beta, nf_real *C,
                 int64_t ldc);
/* Which library multiplies a tile (single precision; double always takes OpenBLAS): NF_GEMM_AUTO picks
 * per shape (gemm.c's rule: oneDNN's sgemm for the shapes where it measured faster), NF_GEMM_OPENBLAS and
 * NF_GEMM_ONEDNN force one. Read once from NFLOW_GEMM=auto|openblas|onednn; oneDNN only where the build
 * found it (nf_gemm_onednn_available). The choice depends on the shape alone, never on the thread count. */
enum { NF_GEMM_AUTO, NF_GEMM_OPENBLAS, NF_GEMM_ONEDNN };
int nf_gemm_mode(void);
int nf_gemm_set(int mode); /* tests and benchmarks: force a mode (ONEDNN only if available); returns the previous */
int nf_gemm_onednn_available(void);
/* "products: OpenBLAS or, where faster, oneDNN 2.6.3, isa avx512_core, or nflow's streaming A·Bᵀ
 * (NFLOW_GEMM=auto)"; "" without oneDNN */
const char *nf_gemm_info(void);
/* The streaming product (gemm_stream.c), C (m, n) = alpha·A·Bᵀ + beta·C for a tile of m ≤ 64 rows of A,
 * B (n, k) row-major read in place, never packed — nf_gemm's per-shape choice for an MLP's forward
 * products where it runs (nf_gemm_stream_available: the active path is avx512). A tile is multiplied in
 * two steps: nf_gemm_stream_pack writes rows p0..p1−1 (p0 a multiple of 16) of At (k, 64), A's tile
 * transposed with rows m..63 zero — so that the threads can share one packing of A — and
 * nf_gemm_stream_multiply runs over B. With beta = 0 C is not read. Each value is one fixed sequence of
 * FMAs. nf_gemm_stream_buffer: the calling thread's buffer of ≥ floats floats (64-byte aligned, kept for
 * the thread's life, valid until its next call), or NULL (out of memory, or no kernel here). */
int nf_gemm_stream_available(void);
nf_real *nf_gemm_stream_buffer(int64_t floats);
void nf_gemm_stream_pack(const nf_real *A, int64_t lda, int64_t m, int64_t p0, int64_t p1, nf_real *At);
void nf_gemm_stream_multiply(const nf_real *At, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *B,
                             int64_t ldb, nf_real beta, nf_real *C, int64_t ldc);
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
/* nf_conv2d_backward_ex, then acc (n, Cin, H, W; sample rows ldacc apart, not overlapping dx) += dx per
 * sample, right after the sample's dx: a residual block's skip path summed without a pass over memory
 * (the same values and order of operations as the backward, then acc[i] += dx[i]). dx must not be NULL. */
void nf_conv2d_backward_acc(const nf_real *x, int64_t ldx, const nf_real *w, nf_real *dy, int64_t ldy, nf_real *dx,
                            int64_t lddx, nf_real *dw, nf_real *db, int64_t n, int32_t Cin, int32_t Cout, int32_t H,
                            int32_t W, int32_t k, nf_real *work, const nf_real *relu_out, nf_real *acc, int64_t ldacc);
/* A residual block's second convolution: y = max(conv(x) + b + res, 0), res (n, Cout, H, W) with its
 * sample rows ldres floats apart (it may not overlap y). The sum and the ReLU run per sample right after
 * the sample's convolution, while its output is still in cache: the same values, in the same order of
 * operations, as nf_conv2d_forward then a pass of max(y + res, 0), without that pass over memory. */
void nf_conv2d_forward_res(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *b, nf_real *y,
                           int64_t ldy, int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k,
                           nf_real *work, const nf_real *res, int64_t ldres);
/* The naive reference (test oracle). */
void nf_conv2d_ref(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *b, nf_real *y, int64_t ldy,
                   int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k);

/* Direct convolutions of one sample, k = 3 or 1 (conv_direct.c; AVX2 + FMA, float builds, chosen at run
 * time; the environment variable NFLOW_CONV=im2col turns them off). conv.c uses them for forward and
 * input gradient (weights packed with flip = 1), and for the weight gradient of 3×3 convolutions. */
/* Winograd F(4×4, 3×3) for 3×3 convolutions (conv_winograd.c, any ISA: element-wise transforms compiled for
 * each ISA path, the same bits on every one; products by nf_gemm); conv.c uses it for wide channel counts unless NFLOW_CONV is "direct" or "im2col" ("winograd": for
 * every 3×3 convolution). The input
 * gradient uses filters packed with flip = 1 (dy as the input, Cout ↔ Cin). */
enum { NF_CONVW_OFF, NF_CONVW_AUTO, NF_CONVW_ALWAYS };
int nf_convw_mode(void);
int nf_convw_set(int mode); /* tests and benchmarks: force a mode; returns the previous one */
int64_t nf_convw_packed_size(int32_t Cin, int32_t Cout);
int64_t nf_convw_work_size(int32_t Cin, int32_t Cout, int32_t H, int32_t W);
void nf_convw_pack(const nf_real *w, int32_t Cin, int32_t Cout, int flip, nf_real *Up);
void nf_convw_sample(const nf_real *x, const nf_real *Up, const nf_real *b, nf_real *y, int32_t Cin, int32_t Cout,
                     int32_t H, int32_t W, int relu, nf_real *work);
void nf_convw_dw_sample(const nf_real *x, const nf_real *dy, int32_t Cin, int32_t Cout, int32_t H, int32_t W,
                        nf_real *dU, nf_real *work);
void nf_convw_dw_finish(const nf_real *dU, int32_t Cin, int32_t Cout, nf_real *dw);
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

#endif
