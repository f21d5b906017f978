/* layers/rqspline.h — the monotone rational-quadratic spline of Durkan et al. 2019 ("Neural Spline
 * Flows"), one scalar at a time: forward y = g(x) with log g'(x), the exact inverse, and the backward.
 * The spline couplings (spline_coupling.c), the element-wise spline layer (spline.c) and any other
 * conditioner (e.g. an autoregressive one) call these three functions.
 *
 * The map. K bins cover [−B, B] in x and in y; outside it g is the identity (unit slope, log g' = 0).
 * A conditioner gives 3K − 1 unnormalised numbers θ, read with a stride (θ_q = theta[q·stride]):
 *   q ∈ [0, K)        widths:  w = m_w + (1 − K·m_w)·softmax(θ_w),   bin widths 2B·w_k
 *   q ∈ [K, 2K)       heights: h = m_h + (1 − K·m_h)·softmax(θ_h),   bin heights 2B·h_k
 *   q ∈ [2K, 3K − 1)  interior knot derivatives d_k = m_d + softplus(θ_d + c₀), k = 1 … K−1, with
 *                     c₀ = log(e^(1 − m_d) − 1), so θ = 0 gives d = 1; the boundary derivatives
 *                     d_0 = d_K = 1 match the identity tails.
 * All-zero θ is the identity map on [−B, B] (equal bins, unit slopes), so a zero-initialised conditioner
 * starts the layer as the identity. Knots x_k = −B + 2B·Σ_{i<k} w_i (x_K = B exactly), y_k likewise.
 * In bin k, with ξ = (x − x_k)/(x_{k+1} − x_k), s_k = (y_{k+1} − y_k)/(x_{k+1} − x_k):
 *   g(x)  = y_k + (y_{k+1} − y_k)·[s_k ξ² + d_k ξ(1 − ξ)] / [s_k + (d_{k+1} + d_k − 2 s_k) ξ(1 − ξ)]
 *   g'(x) = s_k²·[d_{k+1} ξ² + 2 s_k ξ(1 − ξ) + d_k (1 − ξ)²] / [s_k + (d_{k+1} + d_k − 2 s_k) ξ(1 − ξ)]²
 * Inverse: ξ is the root in [0, 1] of a ξ² + b ξ + c = 0, taken as ξ = 2c / (−b − √(b² − 4ac)) (no
 * cancellation), where with δ = y − y_k, Δ = d_{k+1} + d_k − 2 s_k, h = y_{k+1} − y_k:
 *   a = h (s_k − d_k) + δ Δ,   b = h d_k − δ Δ,   c = −s_k δ.
 * Every computation is in double precision. The functions are pure, allocate nothing and are safe to
 * call from several threads at once. */
#ifndef NF_RQSPLINE_H
#define NF_RQSPLINE_H

#include "kernels/kernels.h" /* nf_exp_inplace: the softmaxes over arrays */

#define NF_RQS_MAX_BINS 64       /* K ≤ this (the functions keep per-bin arrays on the stack) */
#define NF_RQS_MIN_WIDTH 1e-3    /* m_w: no bin narrower than 2B·m_w */
#define NF_RQS_MIN_HEIGHT 1e-3   /* m_h */
#define NF_RQS_MIN_DERIV 1e-3    /* m_d: no knot derivative below this */
#define NF_RQS_LANES 8           /* points per block of the nf_rqs_*_block functions */

/* NF_OK if K bins on [−B, B] make a spline (2 ≤ K ≤ NF_RQS_MAX_BINS, 0 < B < 1e6), else NF_ERR_INVALID
 * with a reason naming the layer `name`. */
nf_status nf_rqs_check(const char *name, int32_t K, double B);

/* Unnormalised parameters per scalar: 3K − 1. */
static inline int32_t nf_rqs_num_params(int32_t K) { return 3 * K - 1; }

/* y = g(x) for the spline θ (3K − 1 values theta[q·stride]; 2 ≤ K ≤ NF_RQS_MAX_BINS, B > 0);
 * *logdet = log g'(x) (0 outside [−B, B]). y and logdet must not be NULL. */
void nf_rqs_forward(const nf_real *theta, int64_t stride, int32_t K, double B, double x, double *y, double *logdet);

/* x = g⁻¹(y), exact up to rounding; *logdet = log g'(x) at that x — the FORWARD's log-derivative (the
 * caller subtracts it to follow the library's inverse convention). */
void nf_rqs_inverse(const nf_real *theta, int64_t stride, int32_t K, double B, double y, double *x, double *logdet);

/* Backward at x, given gy = ∂L/∂y and gld = ∂L/∂log g'(x): *gx = ∂L/∂x, and gtheta[q·stride] (3K − 1
 * values, OVERWRITTEN, not added) = ∂L/∂θ_q = gy·∂y/∂θ_q + gld·∂log g'/∂θ_q. Outside [−B, B]: *gx = gy,
 * gtheta = 0. gtheta may be NULL (only gx wanted). */
void nf_rqs_backward(const nf_real *theta, int64_t stride, int32_t K, double B, double x, double gy, double gld,
                     double *gx, nf_real *gtheta);

/* The three maps above for a block of n points, 1 ≤ n ≤ NF_RQS_LANES: point l's θ at theta[l][q·stride],
 * its input x[l] (y[l] for the inverse) and outputs at index l, gtheta[l][q·stride] OVERWRITTEN (gtheta
 * itself may be NULL). The same values as a call per point up to rounding (on the AVX2 and AVX-512 paths
 * the block runs as vector code with libmvec's log; on the generic path it is a call per point), and a
 * point's result does not depend on the other points of its block. */
void nf_rqs_forward_block(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *x, double *y,
                          double *logdet);
void nf_rqs_inverse_block(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *y, double *x,
                          double *logdet);
/* The type both of the above have (nf_rqs_map_block *g = inverse ? nf_rqs_inverse_block : nf_rqs_forward_block). */
typedef void nf_rqs_map_block(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *in, double *out,
                              double *logdet);
void nf_rqs_backward_block(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *x, const double *gy,
                           const double *gld, double *gx, nf_real *const *gtheta);

/* How a layer lays out the values a spline transforms, for the two row functions below: value j of row i
 * (j < cols) is column col[j] (col NULL: column j) of a row of the input and output, and its 3K − 1
 * parameters are theta[i·th_row + j·th_col + q·th_stride]. */
typedef struct {
    int32_t K;
    double B;
    int64_t cols;
    const int32_t *col;
    int64_t th_row, th_col, th_stride;
} nf_rqs_layout;

/* Rows [i0, i1) through the spline (inverse 0) or its inverse (1): out[i·ldo + col[j]] = g(in[i·ldi +
 * col[j]]) or g⁻¹(·), the other columns of out untouched; logdet[i] += Σ_j log g' (the inverse: −=), summed
 * in double in column order (logdet may be NULL). The values go through the block functions
 * NF_RQS_LANES at a time in row-major order, so a block may span rows. */
void nf_rqs_map_rows(const nf_rqs_layout *g, const nf_real *theta, int inverse, const nf_real *in, int64_t ldi, nf_real *out,
                     int64_t ldo, nf_real *logdet, int64_t i0, int64_t i1);

/* Rows [i0, i1) of the backward, with gy = ysign·dy[i·ldy + col[j]] (dy NULL: 0) and gld = lsign·dld[i]
 * (dld NULL: 0) at x[i·ldx + col[j]]: dx[i·lddx + col[j]] = ∂L/∂x (dx may be NULL; its other columns
 * untouched) and dtheta, laid out as theta, = ∂L/∂θ (OVERWRITTEN). */
void nf_rqs_backward_rows(const nf_rqs_layout *g, const nf_real *theta, const nf_real *x, int64_t ldx, const nf_real *dy, int64_t ldy,
                          nf_real ysign, const nf_real *dld, nf_real lsign, nf_real *dx, int64_t lddx, nf_real *dtheta, int64_t i0,
                          int64_t i1);

#endif
