/* vmath.c — transcendental functions over arrays, vectorised with glibc's vector math library (libmvec:
 * exp, log1p, log, tanh over 8 doubles and expf, log1pf, tanhf over 16 floats on the avx512 path, half as many on
 * the avx2 path; each within 4 ulp of the correctly rounded value) where the build found it, and the
 * scalar libm loop — the reference — on the generic path, in double builds (NFLOW_DOUBLE, the exact
 * reference build) or without libmvec.
 *
 * Why: NICE's logistic prior costs one exp and one log1p per value, 784 per image (a log and a log1p per
 * draw when sampling), and Glow's affine coupling two expf and a log1pf per scaled value; as scalar libm
 * calls they were 8 % of nice-mnist's evaluation and 3 % of glow-small's training (perf, AMD Zen 5). Over
 * arrays they run 7× faster on 8 double lanes and 3.7× on 4. Likewise the MADEs' tanh layers and the
 * rational-quadratic spline's softmaxes (2K exp per transformed value): a third and a fifth of a default
 * table's training as scalar calls (AMD Zen 3); then the spline's knot derivatives (K − 1 exp more in
 * the same call) and the affine autoregressive blocks' scales e^tanh(h), a tenth together. The logistic's sum is
 * taken in lanes, then across them: a path's result is the same for every thread count (a call covers one
 * row or a fixed block of it); the other functions give one value per element (their callers sum the
 * log-dets in double, in coordinate order), and the paths differ from the reference only by rounding (test_core's
 * test_logistic_vmath bounds it). */
#include "kernels/kernels.h"
#include "kernels/mvec.h"

/* The logistic's −log density of one value, softplus(v) + softplus(−v) = |v| + 2·log1p(e^−|v|): one exp,
 * one log1p, stable for every v. */
static inline double softplus_pair(double v) {
    double a = fabs(v);
    return a + 2 * log1p(exp(-a));
}

/* See kernels.h: Σ_j softplus(z_j) + softplus(−z_j), the scalar loop. */
double nf_logistic_nll_ref(const nf_real *z, int64_t n) {
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += softplus_pair(z[j]);
    return s;
}

/* See kernels.h: g_j = −d·tanh(z_j / 2), the scalar loop. */
void nf_logistic_grad_ref(const nf_real *z, double d, nf_real *g, int64_t n) {
    for (int64_t j = 0; j < n; j++) g[j] = (nf_real)(-d * tanh(0.5 * (double)z[j]));
}

/* See kernels.h: z_j = T·(log u_j − log1p(−u_j)), the logistic's quantile at u_j scaled by T; the
 * scalar loop. */
void nf_logistic_quantile_ref(const double *u, double T, nf_real *z, int64_t n) {
    for (int64_t j = 0; j < n; j++) z[j] = (nf_real)(T * (log(u[j]) - log1p(-u[j])));
}

/* See kernels.h: sg_j = σ(h_j + shift) and ls_j = log σ(h_j + shift), the scalar loop of the one-value
 * forms. */
void nf_sigmoid_shift_ref(const nf_real *h, nf_real shift, nf_real *sg, nf_real *ls, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        nf_real v = h[j] + shift;
        sg[j] = nf_sigmoid(v);
        ls[j] = nf_log_sigmoid(v);
    }
}

/* See kernels.h: y_j ← tanh(y_j + b_j), the scalar loop. */
void nf_tanh_bias_ref(nf_real *y, const nf_real *b, int64_t n) {
    for (int64_t j = 0; j < n; j++) y[j] = tanh(y[j] + b[j]);
}

/* See kernels.h: v_j ← e^(v_j), the scalar loop. */
void nf_exp_inplace_ref(double *v, int64_t n) {
    for (int64_t j = 0; j < n; j++) v[j] = exp(v[j]);
}

/* See kernels.h: t_j = tanh(h_j), e_j = e^(t_j), the scalar loop. */
void nf_tanh_exp_ref(const nf_real *h, nf_real *t, nf_real *e, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        t[j] = tanh(h[j]);
        e[j] = exp(t[j]);
    }
}

#if NF_MVEC
#define VMATH 1

/* The vector sigmoid has no selects (GCC 12 leaves a loop with a compare-and-select scalar on the avx2
 * path): m = min(v, 0) as (v − |v|)/2 (exact), σ = e^m / (1 + e^−|v|), log σ = m − log1p(e^−|v|) — the
 * same values as the reference's two cases, e^0 = 1 and e^m = e^−|v| for v < 0. */
#define VMATH_PATH(suffix, isa)                                                                               \
    __attribute__((target(isa))) static double logistic_nll_##suffix(const nf_real *z, int64_t n) {           \
        double s = 0;                                                                                         \
        _Pragma("omp simd reduction(+ : s)") for (int64_t j = 0; j < n; j++) {                                \
            double a = fabs((double)z[j]);                                                                    \
            s += a + 2 * (log1p)((exp)(-a));                                                                  \
        }                                                                                                     \
        return s;                                                                                             \
    }                                                                                                         \
    __attribute__((target(isa))) static void sigmoid_shift_##suffix(const nf_real *h, nf_real shift,           \
                                                                    nf_real *sg, nf_real *ls, int64_t n) {    \
        _Pragma("omp simd") for (int64_t j = 0; j < n; j++) {                                                 \
            float v = h[j] + shift, a = fabsf(v), e = expf(-a), m = 0.5f * (v - a);                           \
            sg[j] = expf(m) / (1 + e);                                                                        \
            ls[j] = m - log1pf(e);                                                                            \
        }                                                                                                     \
    }                                                                                                         \
    __attribute__((target(isa))) static void logistic_quantile_##suffix(const double *u, double T, nf_real *z,  \
                                                                        int64_t n) {                          \
        _Pragma("omp simd") for (int64_t j = 0; j < n; j++) z[j] = (nf_real)(T * ((log)(u[j]) - (log1p)(-u[j]))); \
    }                                                                                                         \
    __attribute__((target(isa))) static void logistic_grad_##suffix(const nf_real *z, double d, nf_real *g,  \
                                                                    int64_t n) {                              \
        _Pragma("omp simd") for (int64_t j = 0; j < n; j++) g[j] = (nf_real)(-d * (tanh)(0.5 * (double)z[j])); \
    }                                                                                                         \
    __attribute__((target(isa))) static void tanh_bias_##suffix(nf_real *y, const nf_real *b, int64_t n) {   \
        _Pragma("omp simd") for (int64_t j = 0; j < n; j++) y[j] = tanhf(y[j] + b[j]);                        \
    }                                                                                                         \
    __attribute__((target(isa))) static void exp_inplace_##suffix(double *v, int64_t n) {                     \
        _Pragma("omp simd") for (int64_t j = 0; j < n; j++) v[j] = (exp)(v[j]);                                \
    }                                                                                                         \
    __attribute__((target(isa))) static void tanh_exp_##suffix(const nf_real *h, nf_real *t, nf_real *e,       \
                                                               int64_t n) {                                   \
        _Pragma("omp simd") for (int64_t j = 0; j < n; j++) {                                                 \
            float a = tanhf(h[j]);                                                                            \
            t[j] = a;                                                                                         \
            e[j] = expf(a);                                                                                   \
        }                                                                                                     \
    }
VMATH_PATH(avx512, "avx512f")
VMATH_PATH(avx2, "avx2,fma")
#undef VMATH_PATH
#else
#define VMATH 0
#endif

/* The path's vector form: AVX512 and AVX2 run their statement (a return, or a call then a return); the
 * generic path, and builds without libmvec, fall through to the reference after it. */
#if VMATH
#define VMATH_DISPATCH(on_avx512, on_avx2)                                                                    \
    do {                                                                                                      \
        nf_isa isa_ = nf_isa_active();                                                                       \
        if (isa_ >= NF_ISA_AVX512) { on_avx512; }                                                              \
        if (isa_ == NF_ISA_AVX2) { on_avx2; }                                                                 \
    } while (0)
#else
#define VMATH_DISPATCH(on_avx512, on_avx2) ((void)0)
#endif

/* See kernels.h. */
double nf_logistic_nll(const nf_real *z, int64_t n) {
    VMATH_DISPATCH(return logistic_nll_avx512(z, n), return logistic_nll_avx2(z, n));
    return nf_logistic_nll_ref(z, n);
}

/* See kernels.h. */
void nf_logistic_grad(const nf_real *z, double d, nf_real *g, int64_t n) {
    VMATH_DISPATCH(logistic_grad_avx512(z, d, g, n); return, logistic_grad_avx2(z, d, g, n); return);
    nf_logistic_grad_ref(z, d, g, n);
}

/* See kernels.h. */
void nf_sigmoid_shift(const nf_real *h, nf_real shift, nf_real *sg, nf_real *ls, int64_t n) {
    VMATH_DISPATCH(sigmoid_shift_avx512(h, shift, sg, ls, n); return, sigmoid_shift_avx2(h, shift, sg, ls, n); return);
    nf_sigmoid_shift_ref(h, shift, sg, ls, n);
}

/* See kernels.h. */
void nf_logistic_quantile(const double *u, double T, nf_real *z, int64_t n) {
    VMATH_DISPATCH(logistic_quantile_avx512(u, T, z, n); return, logistic_quantile_avx2(u, T, z, n); return);
    nf_logistic_quantile_ref(u, T, z, n);
}

/* See kernels.h. */
void nf_tanh_bias(nf_real *y, const nf_real *b, int64_t n) {
    VMATH_DISPATCH(tanh_bias_avx512(y, b, n); return, tanh_bias_avx2(y, b, n); return);
    nf_tanh_bias_ref(y, b, n);
}

/* See kernels.h. */
void nf_exp_inplace(double *v, int64_t n) {
    VMATH_DISPATCH(exp_inplace_avx512(v, n); return, exp_inplace_avx2(v, n); return);
    nf_exp_inplace_ref(v, n);
}

/* See kernels.h. */
void nf_tanh_exp(const nf_real *h, nf_real *t, nf_real *e, int64_t n) {
    VMATH_DISPATCH(tanh_exp_avx512(h, t, e, n); return, tanh_exp_avx2(h, t, e, n); return);
    nf_tanh_exp_ref(h, t, e, n);
}
