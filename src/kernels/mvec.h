/* kernels/mvec.h — libmvec's vector variants of libm functions, declared for loops under `omp simd`:
 * in such a loop compiled for AVX-512 (or AVX2) GCC calls _ZGVeN8v_exp (or _ZGVdN4v_exp) and so on, 8 (4)
 * doubles or 16 (8) floats a call, each within 4 ulp of the correctly rounded value. glibc's math.h
 * declares them itself only under -ffast-math. NF_MVEC is 1 where they are declared: GCC on x86-64 with
 * OpenMP, the library built with libmvec (NFLOW_MVEC), single precision (a double build, NFLOW_DOUBLE, is
 * the exact reference and keeps libm's scalar calls); clang (14) does not map the declarations to libmvec.
 * The names in parentheses: core.h's <tgmath.h> makes them macros, and a loop that vectorises calls the
 * functions, as `(exp)(v)`. */
#ifndef NF_KERNELS_MVEC_H
#define NF_KERNELS_MVEC_H

#if defined(NFLOW_MVEC) && defined(__x86_64__) && defined(_OPENMP) && !defined(NFLOW_DOUBLE) && defined(__GNUC__) && !defined(__clang__)
#pragma omp declare simd notinbranch
double(exp)(double);
#pragma omp declare simd notinbranch
double(log1p)(double);
#pragma omp declare simd notinbranch
double(tanh)(double);
#pragma omp declare simd notinbranch
double(log)(double);
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float log1pf(float);
#pragma omp declare simd notinbranch
float tanhf(float);
#define NF_MVEC 1
#else
#define NF_MVEC 0
#endif

#endif
