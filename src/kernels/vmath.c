/* vmath.c — sums of transcendental functions over arrays, vectorised with glibc's vector math library
 * (libmvec: exp, log1p, tanh over 8 doubles on the avx512 path, 4 on the avx2 path; at most 4 ulp from
 * the correctly rounded value) where the build found it, and the scalar libm loop — the reference — on
 * the generic path, in double builds (NFLOW_DOUBLE: the exact reference build) or without it.
 *
 * Why: NICE's logistic prior costs one exp and one log1p per value, 784 per image, and the scalar libm
 * calls were 8 % of nice-mnist's evaluation (perf, AMD Zen 5); over arrays they run 7× faster on 8
 * lanes (AVX-512) and 3.7× on 4 (AVX2). The sums are taken in double, in lanes then across them: a
 * path's result is the same for every thread count (one row is one call), and the paths differ from
 * the reference only by rounding (the tests bound it). */
#include "kernels/kernels.h"

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

/* GCC only: clang (14) does not map these declarations to libmvec and leaves the loops scalar */
#if defined(NFLOW_MVEC) && defined(__x86_64__) && defined(_OPENMP) && !defined(NFLOW_DOUBLE) && defined(__GNUC__) && !defined(__clang__)
/* libmvec's vector variants of these libm functions (what glibc's math.h declares itself only under
 * -ffast-math): in a vectorised loop compiled for AVX-512 the compiler calls _ZGVeN8v_exp and so on. The
 * names in parentheses: core.h's <tgmath.h> makes them macros, and the loops below call the functions. */
#pragma omp declare simd notinbranch
double(exp)(double);
#pragma omp declare simd notinbranch
double(log1p)(double);
#pragma omp declare simd notinbranch
double(tanh)(double);
#define VMATH 1

#define VMATH_PATH(suffix, isa)                                                                               \
    __attribute__((target(isa))) static double logistic_nll_##suffix(const nf_real *z, int64_t n) {           \
        double s = 0;                                                                                         \
        _Pragma("omp simd reduction(+ : s)") for (int64_t j = 0; j < n; j++) {                                \
            double a = fabs((double)z[j]);                                                                    \
            s += a + 2 * (log1p)((exp)(-a));                                                                  \
        }                                                                                                     \
        return s;                                                                                             \
    }                                                                                                         \
    __attribute__((target(isa))) static void logistic_grad_##suffix(const nf_real *z, double d, nf_real *g,  \
                                                                    int64_t n) {                              \
        _Pragma("omp simd") for (int64_t j = 0; j < n; j++) g[j] = (nf_real)(-d * (tanh)(0.5 * (double)z[j])); \
    }
VMATH_PATH(avx512, "avx512f")
VMATH_PATH(avx2, "avx2,fma")
#undef VMATH_PATH
#else
#define VMATH 0
#endif

/* See kernels.h. */
double nf_logistic_nll(const nf_real *z, int64_t n) {
#if VMATH
    nf_isa isa = nf_isa_active();
    if (isa >= NF_ISA_AVX512) return logistic_nll_avx512(z, n);
    if (isa == NF_ISA_AVX2) return logistic_nll_avx2(z, n);
#endif
    return nf_logistic_nll_ref(z, n);
}

/* See kernels.h. */
void nf_logistic_grad(const nf_real *z, double d, nf_real *g, int64_t n) {
#if VMATH
    nf_isa isa = nf_isa_active();
    if (isa >= NF_ISA_AVX512) {
        logistic_grad_avx512(z, d, g, n);
        return;
    }
    if (isa == NF_ISA_AVX2) {
        logistic_grad_avx2(z, d, g, n);
        return;
    }
#endif
    nf_logistic_grad_ref(z, d, g, n);
}
