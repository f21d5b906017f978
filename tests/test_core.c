/* test_core.c — optimiser, random numbers, dense kernels against their naive references, and results
 * that do not depend on the thread count. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "core/files.h"
#include "data/data.h"
#include "io/io.h"
#include "kernels/kernels.h"
#include "layers/layer.h"
#include "models/models.h"
#include "train/train.h"

/* Two Adam steps against values worked out by hand (lr 0.1, β 0.9/0.999, ε 1e-8):
 * step 1, g = (0.5, −0.1): m̂ = g, v̂ = g², so p −= 0.1·g/(|g| + ε) → (0.900000002, −1.90000001);
 * step 2, g = (0.2, 0.3): m = (0.065, 0.021), v = (2.8975e−4, 9.999e−5) → (0.81014248, −1.94941899). */
static void test_adam_hand_computed(void **state) {
    (void)state;
    nf_adam_opts o;
    nf_adam_opts_default(&o);
    o.lr = 0.1;
    nf_adam *a;
    assert_int_equal(nf_adam_create(2, &o, &a), NF_OK);
    nf_real p[2] = {1.0f, -2.0f}, g1[2] = {0.5f, -0.1f}, g2[2] = {0.2f, 0.3f};
    double n1 = nf_adam_step(a, p, g1);
    assert_true(fabs(n1 - sqrt(0.26)) < 1e-6);
    assert_true(fabs(p[0] - 0.900000002) < 1e-6 && fabs(p[1] + 1.90000001) < 1e-6);
    nf_adam_step(a, p, g2);
    assert_true(fabs(p[0] - 0.8101424839) < 2e-6);
    assert_true(fabs(p[1] + 1.9494189911) < 2e-6);
    assert_int_equal(nf_adam_steps(a), 2);
    nf_adam_free(a);
}

/* Decoupled weight decay (AdamW, as torch.optim.AdamW): p ← p·(1 − lr_t·λ) − lr_t·m̂/(√v̂ + ε).
 * (1) By hand, lr 0.1, λ 0.5 on the two steps of test_adam_hand_computed: step 1 (0.95·1 − 0.1,
 * 0.95·(−2) + 0.1) = (0.85, −1.8); step 2 adds that test's second Adam move (−0.08985752, −0.04941898)
 * to 0.95·p: (0.71764248, −1.75941898). (2) Zero gradients: m = v = 0, so p_t = p_0·(1 − lr·λ)^t exactly
 * (Adam with an L2 term λp in the gradient would move p by ≈ lr per step instead). (3) 30 steps with
 * warm-up, cosine decay and clipping against the formula in double. */
static void test_adamw_decoupled_decay(void **state) {
    (void)state;
    nf_adam_opts o;
    nf_adam_opts_default(&o);
    o.lr = 0.1, o.weight_decay = 0.5;
    nf_adam *a;
    assert_int_equal(nf_adam_create(2, &o, &a), NF_OK);
    nf_real p[2] = {1.0f, -2.0f}, g1[2] = {0.5f, -0.1f}, g2[2] = {0.2f, 0.3f};
    nf_adam_step(a, p, g1);
    assert_true(fabs(p[0] - 0.85) < 1e-6 && fabs(p[1] + 1.8) < 1e-6);
    nf_adam_step(a, p, g2);
    assert_true(fabs(p[0] - 0.71764248) < 2e-6 && fabs(p[1] + 1.75941898) < 2e-6);
    nf_adam_free(a);
    /* (2) */
    o.lr = 0.01, o.weight_decay = 0.1;
    assert_int_equal(nf_adam_create(2, &o, &a), NF_OK);
    nf_real q[2] = {3.0f, -0.5f}, zero[2] = {0, 0};
    for (int t = 0; t < 100; t++) nf_adam_step(a, q, zero);
    double f = pow(1 - 0.01 * 0.1, 100);
    assert_true(fabs(q[0] - 3.0 * f) < 1e-5 && fabs(q[1] + 0.5 * f) < 1e-6);
    nf_adam_free(a);
    /* (3) */
    nf_adam_opts_default(&o);
    o.lr = 0.05, o.weight_decay = 0.3, o.warmup = 5, o.cosine_steps = 30, o.clip = 2.0;
    enum { N = 3, T = 30 };
    assert_int_equal(nf_adam_create(N, &o, &a), NF_OK);
    nf_real x[N] = {0.7f, -1.3f, 2.2f};
    double r[N] = {0.7, -1.3, 2.2}, m[N] = {0}, v[N] = {0};
    for (int t = 1; t <= T; t++) {
        nf_real g[N];
        double gn = 0;
        for (int i = 0; i < N; i++) g[i] = (nf_real)(sin(1.7 * t + i) * (1 + i)), gn += (double)g[i] * g[i];
        gn = sqrt(gn);
        nf_adam_step(a, x, g);
        double lr = 0.05 * (t < 5 ? t / 5.0 : 1.0) * 0.5 * (1 + cos(3.141592653589793 * t / 30.0)), gs = gn > 2.0 ? 2.0 / gn : 1.0;
        for (int i = 0; i < N; i++) {
            double gi = g[i] * gs;
            m[i] = 0.9 * m[i] + 0.1 * gi, v[i] = 0.999 * v[i] + 0.001 * gi * gi;
            double mh = m[i] / (1 - pow(0.9, t)), vh = v[i] / (1 - pow(0.999, t));
            r[i] = r[i] * (1 - lr * 0.3) - lr * mh / (sqrt(vh) + 1e-8);
        }
    }
    for (int i = 0; i < N; i++) assert_true(fabs(x[i] - r[i]) < 1e-5);
    nf_adam_free(a);
    /* a negative decay is refused */
    o.weight_decay = -1;
    assert_int_equal(nf_adam_create(N, &o, &a), NF_ERR_INVALID);
}

/* Warm-up scales the first step's learning rate by 1/warmup; clipping rescales g = (3, 4) (norm 5) to
 * norm 1; with bias correction the first step is lr_1·g/|g| per coordinate: 0.1/4 each.
 * Cosine decay: lr·½(1 + cos(π t/T)). */
static void test_adam_warmup_and_clip(void **state) {
    (void)state;
    nf_adam_opts o;
    nf_adam_opts_default(&o);
    o.lr = 0.1, o.warmup = 4, o.clip = 1.0;
    nf_adam *a;
    assert_int_equal(nf_adam_create(2, &o, &a), NF_OK);
    nf_real p[2] = {0, 0}, g[2] = {3, 4};
    double norm = nf_adam_step(a, p, g);
    assert_true(fabs(norm - 5) < 1e-6);
    assert_true(fabs(p[0] + 0.025) < 1e-7 && fabs(p[1] + 0.025) < 1e-7);
    nf_adam_free(a);
    /* cosine over 2 steps: step 1 at half the rate, step 2 at rate 0 (no change) */
    nf_adam_opts_default(&o);
    o.lr = 0.1, o.cosine_steps = 2;
    assert_int_equal(nf_adam_create(2, &o, &a), NF_OK);
    p[0] = p[1] = 0;
    nf_adam_step(a, p, g);
    assert_true(fabs(p[0] + 0.05) < 1e-7 && fabs(p[1] + 0.05) < 1e-7);
    nf_adam_step(a, p, g);
    assert_true(fabs(p[0] + 0.05) < 1e-7);
    nf_adam_free(a);
    o.lr = -1;
    assert_int_equal(nf_adam_create(2, &o, &a), NF_ERR_INVALID);
}

static void test_rng_reproducible(void **state) {
    (void)state;
    nf_rng a, b;
    nf_rng_seed(&a, 123);
    nf_rng_seed(&b, 123);
    for (int i = 0; i < 1000; i++) assert_true(nf_rng_u64(&a) == nf_rng_u64(&b));
    nf_rng saved = a; /* the state is the whole stream: a copy continues identically */
    double x1 = nf_rng_normal(&a), x2 = nf_rng_normal(&saved);
    assert_true(x1 == x2);
    nf_rng_seed(&b, 124);
    assert_true(nf_rng_u64(&a) != nf_rng_u64(&b));
}

/* Moments of 200 000 draws: mean within 5 standard errors, variance within 2 % (normal: 1,
 * logistic: π²/3); uniform draws lie strictly inside (0, 1). */
static void test_rng_distributions(void **state) {
    (void)state;
    nf_rng r;
    nf_rng_seed(&r, 9);
    const int n = 200000;
    double (*draw[2])(nf_rng *) = {nf_rng_normal, nf_rng_logistic};
    double var[2] = {1.0, 3.289868133696453};
    for (int k = 0; k < 2; k++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < n; i++) {
            double v = draw[k](&r);
            s += v, s2 += v * v;
        }
        double m = s / n, v = s2 / n - m * m;
        assert_true(fabs(m) < 5 * sqrt(var[k] / n));
        assert_true(fabs(v / var[k] - 1) < 0.02);
    }
    for (int i = 0; i < n; i++) {
        double u = nf_rng_uniform(&r);
        assert_true(u > 0 && u < 1);
    }
}

/* The fast path (tiled over OpenMP threads) against the naive triple loop, all transpositions, shapes that
 * are not multiples of the tile, beta 0 and 1 — with each product library this build has (OpenBLAS,
 * oneDNN, and the per-shape choice between them), on 1 and 2 threads: the two thread counts must give the
 * same bits (a single-tile product is one call from the top level, where oneDNN left to itself would
 * take both threads and may split k: 64 × 256 × 1000 with Bᵀ is such a case), and with beta 0 a NaN in C
 * must not come through. */
static void test_gemm_matches_reference(void **state) {
    (void)state;
    nf_rng r;
    nf_rng_seed(&r, 5);
    /* {64, 700, 30}, {130, 600, 5}: few row tiles, so column tiles too (a partial last one); {64, 256, 1000},
     * {200, 196, 128}: past 10⁶ multiply-adds, where the per-shape choice takes oneDNN; {128, 300, 900}: with
     * Bᵀ, where it takes the streaming kernel on AVX-512 (two row tiles sharing one packing of A, a partial
     * column tile); {256, 16, 16384}: the same with whole-row tiles, each thread packing its own */
    int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {130, 17, 9}, {65, 64, 200}, {3, 129, 1}, {64, 700, 30}, {130, 600, 5},
                           {64, 256, 1000}, {200, 196, 128}, {128, 300, 900}, {256, 16, 16384}};
    int modes[] = {NF_GEMM_OPENBLAS, NF_GEMM_ONEDNN, NF_GEMM_AUTO}, was = nf_gemm_mode(), threads = nf_get_threads();
    for (size_t md = 0; md < sizeof modes / sizeof modes[0]; md++) {
        if (modes[md] == NF_GEMM_ONEDNN && !nf_gemm_onednn_available()) {
            print_message(" (this build has no oneDNN: its products not tested)\n");
            continue;
        }
        nf_gemm_set(modes[md]);
        print_message(" products: %s\n", modes[md] == NF_GEMM_OPENBLAS ? "OpenBLAS" : modes[md] == NF_GEMM_ONEDNN ? "oneDNN" : "per-shape choice");
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            nf_real *A = malloc(sizeof(nf_real) * m * k), *B = malloc(sizeof(nf_real) * k * n);
            nf_real *C1 = malloc(sizeof(nf_real) * m * n), *C2 = malloc(sizeof(nf_real) * m * n), *C3 = malloc(sizeof(nf_real) * m * n);
            for (int64_t i = 0; i < m * k; i++) A[i] = (nf_real)nf_rng_normal(&r);
            for (int64_t i = 0; i < k * n; i++) B[i] = (nf_real)nf_rng_normal(&r);
            for (int tA = 0; tA < 2; tA++)
                for (int tB = 0; tB < 2; tB++)
                    for (int beta = 0; beta < 2; beta++) {
                        /* with beta 0 C is not read: a NaN left in it must not come through */
                        for (int64_t i = 0; i < m * n; i++) {
                            C2[i] = (nf_real)(0.5 * (double)i / (double)(m * n));
                            C1[i] = C3[i] = beta ? C2[i] : (nf_real)NAN;
                        }
                        nf_set_threads(2);
                        nf_gemm(tA, tB, m, n, k, 0.75f, A, tA ? m : k, B, tB ? k : n, (nf_real)beta, C1, n);
                        nf_set_threads(1);
                        nf_gemm(tA, tB, m, n, k, 0.75f, A, tA ? m : k, B, tB ? k : n, (nf_real)beta, C3, n);
                        nf_gemm_ref(tA, tB, m, n, k, 0.75f, A, tA ? m : k, B, tB ? k : n, (nf_real)beta, C2, n);
                        for (int64_t i = 0; i < m * n; i++) assert_true(fabs(C1[i] - C2[i]) <= 1e-5 * (1 + fabs(C2[i])) * sqrt((double)k));
                        assert_memory_equal(C1, C3, sizeof(nf_real) * (size_t)(m * n));
                    }
            free(A), free(B), free(C1), free(C2), free(C3);
        }
    }
    nf_gemm_set(was);
    nf_set_threads(threads);
}

/* The streaming kernel (gemm_stream.c) alone against the naive product, where the CPU runs it: every
 * row count of a tile (1 … 64: rows of At beyond m are zero and not stored), column counts around its
 * 5-column blocks, k around the 16-column packing blocks and their masked tail, leading dimensions
 * larger than the rows, alpha and beta (with beta 0 a NaN in C must not come through), At packed in two
 * ranges of p as nf_gemm's threads do, and a column past m·ldc of C left alone. */
static void test_gemm_stream_matches_reference(void **state) {
    (void)state;
    if (!nf_gemm_stream_available()) {
        print_message(" (the streaming kernel does not run on the %s path: not tested)\n", nf_isa_name(nf_isa_active()));
        return;
    }
    nf_rng r;
    nf_rng_seed(&r, 9);
    int64_t ms[] = {1, 15, 16, 17, 48, 49, 63, 64}, ns[] = {1, 4, 5, 6, 11, 16}, ks[] = {1, 15, 16, 17, 100};
    for (size_t a = 0; a < sizeof ms / sizeof ms[0]; a++)
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
            for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++)
                for (int beta = 0; beta < 2; beta++) {
                    int64_t m = ms[a], n = ns[b], k = ks[c], lda = k + 3, ldb = k + 1, ldc = n + 2;
                    nf_real *A = malloc(sizeof(nf_real) * (size_t)(m * lda)), *B = malloc(sizeof(nf_real) * (size_t)(n * ldb));
                    nf_real *C1 = malloc(sizeof(nf_real) * (size_t)(m * ldc)), *C2 = malloc(sizeof(nf_real) * (size_t)(m * ldc));
                    for (int64_t i = 0; i < m * lda; i++) A[i] = (nf_real)nf_rng_normal(&r);
                    for (int64_t i = 0; i < n * ldb; i++) B[i] = (nf_real)nf_rng_normal(&r);
                    for (int64_t i = 0; i < m * ldc; i++) {
                        C2[i] = (nf_real)nf_rng_normal(&r);
                        C1[i] = beta || i % ldc >= n ? C2[i] : (nf_real)NAN;
                    }
                    nf_real *At = nf_gemm_stream_buffer(64 * k);
                    assert_non_null(At);
                    int64_t split = k > 16 ? 16 : k; /* two ranges of p, the first a multiple of 16 */
                    nf_gemm_stream_pack(A, lda, m, split, k, At);
                    nf_gemm_stream_pack(A, lda, m, 0, split, At);
                    nf_gemm_stream_multiply(At, m, n, k, 0.75f, B, ldb, (nf_real)(beta ? 0.5 : 0), C1, ldc);
                    nf_gemm_ref(0, 1, m, n, k, 0.75f, A, lda, B, ldb, (nf_real)(beta ? 0.5 : 0), C2, ldc);
                    for (int64_t i = 0; i < m; i++)
                        for (int64_t j = 0; j < ldc; j++) {
                            double x = C1[i * ldc + j], y = C2[i * ldc + j];
                            if (j >= n) assert_true(x == y); /* outside the product: untouched */
                            else assert_true(fabs(x - y) <= 1e-5 * (1 + fabs(y)) * sqrt((double)k));
                        }
                    free(A), free(B), free(C1), free(C2);
                }
}

/* The logistic prior's sums, the sigmoid scales, the tanh layers, the affine blocks' e^tanh and the
 * spline's exponentials (kernels/vmath.c) on every instruction-set path this CPU supports against
 * the scalar libm loop: every length 0–40 (the vector loops' tails) and 1 000, values at 0, ±0, tiny,
 * large and beyond exp's range, within 1e-13 relative (libmvec is within 4 ulp per call); a NaN comes
 * through; the same call twice gives the same bits. */
static void test_logistic_vmath(void **state) {
    (void)state;
    enum { N = 1000 };
    static nf_real z[N], g1[N], g2[N];
    static const double edge[] = {0.0, -0.0, 1e-30, -1e-30, 0.5, -3.25, 40, -40, 88, -104, 750, -1e3};
    for (int i = 0; i < N; i++) z[i] = (nf_real)((i - 500) * 0.037);
    for (size_t e = 0; e < sizeof edge / sizeof edge[0]; e++) z[7 * e + 3] = (nf_real)edge[e];
    nf_isa old = nf_isa_active();
    for (int isa = NF_ISA_GENERIC; isa <= (int)nf_isa_cpu(); isa++) {
        nf_isa_set((nf_isa)isa);
        for (int64_t n = 0; n <= N; n = n < 40 ? n + 1 : n < N ? N : N + 1) { /* 0..40, then N */
            double a = nf_logistic_nll(z, n), r = nf_logistic_nll_ref(z, n);
            assert_true(fabs(a - r) <= 1e-13 * (1 + fabs(r)));
            assert_true(a == nf_logistic_nll(z, n));
            nf_logistic_grad(z, -0.75, g1, n);
            nf_logistic_grad_ref(z, -0.75, g2, n);
            for (int64_t j = 0; j < n; j++) assert_true(fabs(g1[j] - g2[j]) <= 1e-6 * (1 + fabs(g2[j]))); /* float rounding of a 4-ulp tanh */
        }
        /* the sigmoid scale and its log: σ within a few float ulps (4-ulp expf) relative, log σ absolute,
         * σ in [0, 1] and log σ ≤ 0; the same values on a second call */
        static nf_real l1[N], l2[N];
        for (int64_t n = 0; n <= N; n = n < 40 ? n + 1 : n < N ? N : N + 1) {
            nf_sigmoid_shift(z, 2, g1, l1, n);
            nf_sigmoid_shift_ref(z, 2, g2, l2, n);
            for (int64_t j = 0; j < n; j++) {
                assert_true(fabs(g1[j] - g2[j]) <= 2e-6 * fabs(g2[j]) && g1[j] >= 0 && g1[j] <= 1);
                assert_true(fabs(l1[j] - l2[j]) <= 1e-6 * (1 + fabs(l2[j])) && l1[j] <= 0);
            }
            nf_sigmoid_shift(z, 2, g2, l2, n);
            assert_memory_equal(g1, g2, sizeof(nf_real) * (size_t)n);
            assert_memory_equal(l1, l2, sizeof(nf_real) * (size_t)n);
        }
        /* logistic draws from uniforms across (0, 1), the tails included: within float rounding */
        static double u[N];
        for (int i = 0; i < N; i++) u[i] = i < 3 ? (i + 1) * 1e-300 : i > N - 4 ? 1 - (N - i) * 1e-16 : (i + 0.5) / N;
        for (int64_t n = 0; n <= N; n = n < 40 ? n + 1 : n < N ? N : N + 1) {
            nf_logistic_quantile(u, 0.7, g1, n);
            nf_logistic_quantile_ref(u, 0.7, g2, n);
            for (int64_t j = 0; j < n; j++) assert_true(fabs(g1[j] - g2[j]) <= 1e-6 * (1 + fabs(g2[j])));
        }
        /* the MLPs' tanh layers: tanh(z + b) within a few float ulps, saturated edges at ±1 */
        static nf_real b[N];
        for (int i = 0; i < N; i++) b[i] = (nf_real)(0.01 * (i % 7) - 0.03);
        for (int64_t n = 0; n <= N; n = n < 40 ? n + 1 : n < N ? N : N + 1) {
            memcpy(g1, z, sizeof(nf_real) * (size_t)n);
            memcpy(g2, z, sizeof(nf_real) * (size_t)n);
            nf_tanh_bias(g1, b, n);
            nf_tanh_bias_ref(g2, b, n);
            for (int64_t j = 0; j < n; j++) assert_true(fabs(g1[j] - g2[j]) <= 1e-6 * fabs(g2[j]) && fabs(g1[j]) <= 1);
        }
        /* the affine scales e^tanh(h): t within a few float ulps, e likewise (e ∈ [1/e, e]); saturated h
         * gives t = ±1 */
        static nf_real t1[N], t2[N];
        for (int64_t n = 0; n <= N; n = n < 40 ? n + 1 : n < N ? N : N + 1) {
            nf_tanh_exp(z, t1, g1, n);
            nf_tanh_exp_ref(z, t2, g2, n);
            for (int64_t j = 0; j < n; j++) {
                assert_true(fabs(t1[j] - t2[j]) <= 1e-6 * fabs(t2[j]) && fabs(t1[j]) <= 1);
                assert_true(fabs(g1[j] - g2[j]) <= 2e-6 * g2[j] && g1[j] >= 0.36f && g1[j] <= 2.72f);
            }
        }
        assert_true(t1[7 * 8 + 3] == 1 && t1[7 * 11 + 3] == -1); /* h = 88 and −1000 */
        /* the spline's softmax exponentials in double: within 1e-15 relative (4 ulp), 0 and ∞ at the range's
         * ends, e^0 = 1 exactly, a NaN through */
        static double d1[N], d2[N];
        for (int64_t n = 0; n <= N; n = n < 40 ? n + 1 : n < N ? N : N + 1) {
            for (int64_t j = 0; j < n; j++) d1[j] = d2[j] = j == 5 ? -800 : j == 6 ? 800 : j == 7 ? 0 : (double)z[j] - 20;
            nf_exp_inplace(d1, n);
            nf_exp_inplace_ref(d2, n);
            for (int64_t j = 0; j < n; j++) assert_true(d1[j] == d2[j] || fabs(d1[j] - d2[j]) <= 1e-15 * d2[j]);
            if (n > 7) assert_true(d1[5] == 0 && isinf(d1[6]) && d1[7] == 1);
        }
        d1[3] = NAN;
        nf_exp_inplace(d1, 9);
        assert_true(isnan(d1[3]) && !isnan(d1[2]));
        nf_real keep = z[10];
        z[10] = (nf_real)NAN;
        memcpy(g1, z, sizeof(nf_real) * 17);
        nf_tanh_bias(g1, b, 17);
        assert_true(isnan(g1[10]) && !isnan(g1[9]));
        assert_true(isnan(nf_logistic_nll(z, 17)));
        nf_sigmoid_shift(z, 2, g1, l1, 17);
        assert_true(isnan(g1[10]) && isnan(l1[10]) && !isnan(l1[9]));
        nf_tanh_exp(z, t1, g1, 17);
        assert_true(isnan(t1[10]) && isnan(g1[10]) && !isnan(g1[9]));
        z[10] = keep;
        print_message(" isa %s: logistic sums, sigmoids, tanh, e^tanh and exp within bounds\n", nf_isa_name((nf_isa)isa));
    }
    nf_isa_set(old);
}

/* The prior's draws (prior.c: blocks of rows on the threads, each from the state a sequential pass has
 * there) are the values of the sequential pass, bit for bit, on 1 and 2 threads, and leave the generator
 * where that pass does — for each prior (the Gaussian's two draws a value, the logistic's one, the
 * mixture's one more a row for its component), over more rows than one round of blocks and a partial last
 * block. */
static void test_prior_sample_sequential(void **state) {
    (void)state;
    enum { N = 1037, D = 7 };
    nf_prior_type types[] = {NF_PRIOR_NORMAL, NF_PRIOR_LOGISTIC, NF_PRIOR_DIAG_GAUSSIAN, NF_PRIOR_GMM};
    enum { K = 3 };
    int threads = nf_get_threads();
    nf_real *z = malloc(sizeof(nf_real) * N * D), *ref = malloc(sizeof(nf_real) * N * D);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        nf_registry reg;
        memset(&reg, 0, sizeof reg);
        nf_prior p;
        nf_prior_init(&p, &reg, types[t], D, 0, K);
        assert_int_equal(nf_registry_allocate(&reg), NF_OK);
        int gmm = types[t] == NF_PRIOR_GMM;
        for (int j = 0; j < D && p.off >= 0 && !gmm; j++) reg.params[p.off + j] = (nf_real)(0.1 * j), reg.params[p.off + D + j] = (nf_real)(-0.05 * j);
        /* the mixture: logits (0, 0.5, −0.3), component k's means 3k − 3 + 0.1 j, log stds −0.05 (j + k) */
        const nf_real *ga = gmm ? reg.params + p.off : NULL, *gmu = ga + K, *gls = gmu + K * D;
        for (int k = 0; k < K && gmm; k++) {
            reg.params[p.off + k] = (nf_real)(k == 1 ? 0.5 : k == 2 ? -0.3 : 0);
            for (int j = 0; j < D; j++)
                reg.params[p.off + K + k * D + j] = (nf_real)(3 * k - 3 + 0.1 * j), reg.params[p.off + K + K * D + k * D + j] = (nf_real)(-0.05 * (j + k));
        }
        double T = 0.7;
        nf_rng r0, r1;
        nf_rng_seed(&r0, 77);
        for (int64_t i = 0; i < N; i++) {
            if (types[t] == NF_PRIOR_LOGISTIC) { /* a row's uniforms, then their quantiles in one call (prior.c) */
                double u[D];
                for (int j = 0; j < D; j++) u[j] = nf_rng_uniform(&r0);
                nf_logistic_quantile(u, T, ref + i * D, D);
                continue;
            }
            if (gmm) { /* the component from one uniform against the cumulative softmax weights, then D normals */
                double w[K], s = 0, u = nf_rng_uniform(&r0), cum = 0;
                for (int k = 0; k < K; k++) s += (w[k] = exp((double)ga[k]));
                int k = 0;
                while (k < K - 1 && (cum += w[k] / s) <= u) k++;
                for (int j = 0; j < D; j++) ref[i * D + j] = (nf_real)(gmu[k * D + j] + T * exp((double)gls[k * D + j]) * nf_rng_normal(&r0));
                continue;
            }
            for (int j = 0; j < D; j++) {
                double v = types[t] == NF_PRIOR_NORMAL ? T * nf_rng_normal(&r0)
                                                       : (double)reg.params[p.off + j] + T * exp((double)reg.params[p.off + D + j]) * nf_rng_normal(&r0);
                ref[i * D + j] = (nf_real)v;
            }
        }
        for (int th = 1; th <= 2; th++) {
            nf_set_threads(th);
            nf_rng_seed(&r1, 77);
            for (int64_t i = 0; i < N * D; i++) z[i] = (nf_real)NAN;
            nf_prior_sample(&p, &r1, T, NULL, z, N);
            assert_memory_equal(z, ref, sizeof(nf_real) * N * D);
            assert_memory_equal(&r1, &r0, sizeof r0);
        }
        nf_registry_free(&reg);
    }
    free(z), free(ref);
    nf_set_threads(threads);
}

/* The mixture prior's log-density and backward (prior.c: blocks of 32 rows, 1/σ taken once a block, 64
 * coordinates at a time) against the formulas row by row in double — over two blocks and a partial one
 * and D = 70 (a full chunk of coordinates and a partial one), on 1 and 2 threads; the parameter gradients
 * are added to what the buffer held. */
static void test_gmm_prior_blocks(void **state) {
    (void)state;
    enum { N = 75, D = 70, K = 5 };
    nf_registry reg;
    memset(&reg, 0, sizeof reg);
    nf_prior p;
    nf_prior_init(&p, &reg, NF_PRIOR_GMM, D, 0, K);
    assert_int_equal(nf_registry_allocate(&reg), NF_OK);
    nf_rng r;
    nf_rng_seed(&r, 5);
    int64_t np = K + 2 * (int64_t)K * D;
    nf_real *a = reg.params + p.off, *mu = a + K, *ls = mu + K * D;
    for (int64_t e = 0; e < np; e++) a[e] = (nf_real)(0.3 * nf_rng_normal(&r));
    nf_real *z = malloc(sizeof(nf_real) * N * D), *dz = malloc(sizeof(nf_real) * N * D), lp[N], dlp[N];
    for (int64_t e = 0; e < N * D; e++) z[e] = (nf_real)(mu[(e / D % K) * D + e % D] + nf_rng_normal(&r)); /* row i near component i mod K */
    for (int i = 0; i < N; i++) dlp[i] = (nf_real)(0.5 + 0.01 * i);
    /* the reference, row by row: t_k = a_k + Σ_j [−½ u² − log σ − ½ log 2π], log π = lse t − lse a */
    double *rdz = calloc((size_t)N * D, sizeof(double)), *rg = calloc((size_t)np, sizeof(double)), rlp[N], am = -INFINITY, sa = 0;
    for (int k = 0; k < K; k++) am = fmax(am, a[k]);
    for (int k = 0; k < K; k++) sa += exp(a[k] - am);
    double la = am + log(sa);
    for (int i = 0; i < N; i++) {
        double t[K], tm = -INFINITY, st = 0;
        for (int k = 0; k < K; k++) {
            t[k] = a[k];
            for (int j = 0; j < D; j++) {
                double u = (z[i * D + j] - mu[k * D + j]) / exp((double)ls[k * D + j]);
                t[k] += -0.5 * u * u - ls[k * D + j] - 0.5 * log(2 * 3.14159265358979323846);
            }
            tm = fmax(tm, t[k]);
        }
        for (int k = 0; k < K; k++) st += exp(t[k] - tm);
        rlp[i] = tm + log(st) - la;
        for (int k = 0; k < K; k++) {
            double g = dlp[i] * exp(t[k] - rlp[i] - la);
            rg[k] += g - dlp[i] * exp(a[k] - la);
            for (int j = 0; j < D; j++) {
                double is = exp(-(double)ls[k * D + j]), u = (z[i * D + j] - mu[k * D + j]) * is;
                rdz[i * D + j] -= g * u * is;
                rg[K + k * D + j] += g * u * is;
                rg[K + K * D + k * D + j] += g * (u * u - 1);
            }
        }
    }
    int threads = nf_get_threads();
    for (int th = 1; th <= 2; th++) {
        nf_set_threads(th);
        for (int64_t e = 0; e < np; e++) reg.grads[p.off + e] = (nf_real)(0.25 * (e % 3)); /* added to, not overwritten */
        nf_prior_log_prob(&p, z, NULL, lp, N);
        nf_prior_backward(&p, z, NULL, dlp, dz, NULL, N);
        double tol = sizeof(nf_real) == 8 ? 1e-10 : 1e-4;
        for (int i = 0; i < N; i++) assert_true(fabs(lp[i] - rlp[i]) < tol * (1 + fabs(rlp[i])));
        for (int64_t e = 0; e < N * D; e++) assert_true(fabs(dz[e] - rdz[e]) < tol * (1 + fabs(rdz[e])));
        for (int64_t e = 0; e < np; e++) assert_true(fabs(reg.grads[p.off + e] - 0.25 * (e % 3) - rg[e]) < tol * (1 + fabs(rg[e])));
    }
    nf_set_threads(threads);
    free(z), free(dz), free(rdz), free(rg);
    nf_registry_free(&reg);
}

/* The full-covariance mixture (gmm_full) against the covariance form it stands for, built the long way:
 * Σ_k = A_k⁻¹A_k⁻ᵀ from A_k's LU inverse (nf_invert), then log π(z) = logsumexp_k [log w_k − ½ dᵀΣ_k⁻¹d
 * − ½ log det 2πΣ_k] with Σ_k⁻¹ and log det Σ_k by LU again — over two blocks of rows and a partial one;
 * nf_prior_moments against the mixture's mean and variances from the Σ_k; and 40 000 draws at T = 0.8: the
 * same values on 1 and 2 threads, their mean and covariance the mixture's Σ_k w_k (T²Σ_k + μ_kμ_kᵀ) − m mᵀ. */
static void test_gmm_full_prior(void **state) {
    (void)state;
    enum { N = 75, D = 4, K = 3, S = 40000, T3 = D * (D - 1) / 2 };
    nf_registry reg;
    memset(&reg, 0, sizeof reg);
    nf_prior p;
    nf_prior_init(&p, &reg, NF_PRIOR_GMM_FULL, D, 0, K);
    assert_true(p.off_tril >= 0);
    assert_int_equal(nf_registry_allocate(&reg), NF_OK);
    nf_rng r;
    nf_rng_seed(&r, 9);
    nf_real *a = reg.params + p.off, *mu = a + K, *ls = mu + K * D, *L = reg.params + p.off_tril;
    for (int e = 0; e < K + 2 * K * D; e++) a[e] = (nf_real)(0.3 * nf_rng_normal(&r));
    for (int e = 0; e < K * T3; e++) L[e] = (nf_real)(0.6 * nf_rng_normal(&r));
    double Sig[K][D][D], Pre[K][D][D], lds[K], w[K], ws = 0;
    for (int k = 0; k < K; k++) {
        nf_real A[D * D] = {0}, Ai[D * D], Sg[D * D], Si[D * D];
        for (int j = 0; j < D; j++) {
            A[j * D + j] = (nf_real)exp(-(double)ls[k * D + j]);
            for (int i = 0; i < j; i++) A[j * D + i] = L[k * T3 + j * (j - 1) / 2 + i];
        }
        assert_int_equal(nf_invert(A, D, Ai), NF_OK);
        for (int i = 0; i < D; i++)
            for (int j = 0; j < D; j++) {
                double v = 0;
                for (int m = 0; m < D; m++) v += (double)Ai[i * D + m] * Ai[j * D + m];
                Sig[k][i][j] = v, Sg[i * D + j] = (nf_real)v;
            }
        assert_int_equal(nf_invert(Sg, D, Si), NF_OK);
        assert_int_equal(nf_logabsdet(Sg, D, &lds[k]), NF_OK);
        for (int e = 0; e < D * D; e++) Pre[k][e / D][e % D] = Si[e];
        ws += (w[k] = exp((double)a[k]));
    }
    for (int k = 0; k < K; k++) w[k] /= ws;
    nf_real z[N * D], lp[N];
    for (int e = 0; e < N * D; e++) z[e] = (nf_real)(mu[(e / D % K) * D + e % D] + nf_rng_normal(&r));
    nf_prior_log_prob(&p, z, NULL, lp, N);
    double tol = sizeof(nf_real) == 8 ? 1e-9 : 2e-3;
    for (int n = 0; n < N; n++) {
        double t[K], tm = -INFINITY, st = 0;
        for (int k = 0; k < K; k++) {
            double q = 0;
            for (int i = 0; i < D; i++)
                for (int j = 0; j < D; j++) q += (z[n * D + i] - mu[k * D + i]) * Pre[k][i][j] * (z[n * D + j] - mu[k * D + j]);
            t[k] = log(w[k]) - 0.5 * q - 0.5 * lds[k] - 0.5 * D * log(2 * 3.14159265358979323846);
            tm = fmax(tm, t[k]);
        }
        for (int k = 0; k < K; k++) st += exp(t[k] - tm);
        assert_true(fabs(lp[n] - (tm + log(st))) < tol * (1 + fabs(tm)));
    }
    double m[D] = {0}, C[D][D] = {{0}}, T = 0.8, mm[D], ml[D];
    for (int k = 0; k < K; k++)
        for (int i = 0; i < D; i++) m[i] += w[k] * mu[k * D + i];
    for (int k = 0; k < K; k++)
        for (int i = 0; i < D; i++)
            for (int j = 0; j < D; j++) C[i][j] += w[k] * (T * T * Sig[k][i][j] + (double)mu[k * D + i] * mu[k * D + j]);
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) C[i][j] -= m[i] * m[j];
    nf_prior_moments(&p, NULL, mm, ml);
    for (int i = 0; i < D; i++) { /* at T = 1: Σ_k w_k ((Σ_k)_ii + μ_ki²) − m_i² */
        double s = 0;
        for (int k = 0; k < K; k++) s += w[k] * (Sig[k][i][i] + (double)mu[k * D + i] * mu[k * D + i]);
        assert_true(fabs(mm[i] - m[i]) < 1e-5 * (1 + fabs(m[i])));
        assert_true(fabs(exp(2 * ml[i]) - (s - m[i] * m[i])) < 1e-4 * (s - m[i] * m[i]));
    }
    nf_real *x1 = malloc(sizeof(nf_real) * S * D), *x2 = malloc(sizeof(nf_real) * S * D);
    int threads = nf_get_threads();
    nf_set_threads(1), nf_rng_seed(&r, 3), nf_prior_sample(&p, &r, T, NULL, x1, S);
    nf_set_threads(2), nf_rng_seed(&r, 3), nf_prior_sample(&p, &r, T, NULL, x2, S);
    nf_set_threads(threads);
    assert_memory_equal(x1, x2, sizeof(nf_real) * S * D);
    double em[D] = {0}, ec[D][D] = {{0}};
    for (int n = 0; n < S; n++)
        for (int i = 0; i < D; i++) em[i] += x1[n * D + i] / (double)S;
    for (int n = 0; n < S; n++)
        for (int i = 0; i < D; i++)
            for (int j = 0; j < D; j++) ec[i][j] += (x1[n * D + i] - em[i]) * (x1[n * D + j] - em[j]) / (double)S;
    for (int i = 0; i < D; i++) { /* 40 000 draws: standard errors near 0.01 × the scales */
        assert_true(fabs(em[i] - m[i]) < 0.05 * sqrt(C[i][i]));
        for (int j = 0; j < D; j++) assert_true(fabs(ec[i][j] - C[i][j]) < 0.05 * sqrt(C[i][i] * C[j][j]));
    }
    free(x1), free(x2);
    nf_registry_free(&reg);
}

/* log|det| and inverse by LU against a matrix with a known determinant: det [[0,2,0],[1,0,0],[0,0,−3]] = 6
 * (needs pivoting: a zero in the first pivot position). */
static void test_lu(void **state) {
    (void)state;
    nf_real A[9] = {0, 2, 0, 1, 0, 0, 0, 0, -3}, inv[9];
    double ld;
    assert_int_equal(nf_logabsdet(A, 3, &ld), NF_OK);
    assert_true(fabs(ld - log(6.0)) < 1e-12);
    assert_int_equal(nf_invert(A, 3, inv), NF_OK);
    nf_real prod[9];
    nf_gemm_ref(0, 0, 3, 3, 3, 1, A, 3, inv, 3, 0, prod, 3);
    for (int i = 0; i < 9; i++) assert_true(fabs(prod[i] - (i % 4 == 0 ? 1 : 0)) < 1e-6);
    nf_real S[4] = {1, 2, 2, 4};
    assert_int_equal(nf_logabsdet(S, 2, &ld), NF_ERR_NUMERIC);
}

/* Training for a few steps gives bit-identical parameters with 1 and with 2 threads (batch 512 spans
 * several BLAS tiles, so both the tiled products and the element-wise loops run in parallel; 256 wide,
 * so that the model is above the size below which a flow runs on one thread anyway). */
static void train_params(int threads, nf_model_type m, nf_real **out, int64_t *np) {
    nf_set_threads(threads);
    nf_config c;
    nf_config_default(&c, m, 2);
    c.depth = 4;
    c.hidden = 256;
    c.batchnorm = m == NF_MODEL_REALNVP;
    nf_flow *f;
    assert_int_equal(nf_flow_create(&c, &f), NF_OK);
    assert_true(nf_flow_flops(f) * 512 > 1e8); /* big enough to run in parallel (flow.c) */
    nf_dataset *ds;
    assert_int_equal(nf_dataset_toy("moons", 4096, 3, &ds), NF_OK);
    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 512;
    nf_trainer *t;
    assert_int_equal(nf_trainer_create(f, ds, &o, &t), NF_OK);
    for (int s = 0; s < 15; s++) {
        double loss, gn;
        assert_int_equal(nf_trainer_step(t, &loss, &gn), NF_OK);
    }
    *np = nf_flow_num_params(f);
    *out = malloc(sizeof(nf_real) * (size_t)*np);
    memcpy(*out, nf_flow_params(f), sizeof(nf_real) * (size_t)*np);
    nf_trainer_free(t), nf_dataset_free(ds), nf_flow_free(f);
}

/* count[i]++ for i in [lo, hi); *forked = 1 when run inside a parallel region of several threads. */
static void mark_range(int *count, int *forked, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) count[i]++;
    if (omp_in_parallel()) {
#pragma omp atomic write
        *forked = 1;
    }
}

/* NF_PARALLEL_RANGE covers [0, n) exactly once — for n from 0 to past the thread count, on 1 and 2
 * threads, with worth 0 and 1, and inside a parallel region — and forks only where nf_fork says:
 * worth, more than one thread, not already in a parallel region. */
static void test_parallel_range(void **state) {
    (void)state;
    int count[37], forked, was = nf_get_threads();
    for (int threads = 1; threads <= 2; threads++) {
        nf_set_threads(threads);
        for (int worth = 0; worth <= 1; worth++) {
            assert_int_equal(nf_fork(worth), worth && threads > 1);
            for (int64_t n = 0; n <= 37; n++) {
                memset(count, 0, sizeof count);
                forked = 0;
                NF_PARALLEL_RANGE(worth, n, mark_range(count, &forked, lo, hi));
                for (int64_t i = 0; i < n; i++) assert_int_equal(count[i], 1);
                if (n >= 2) assert_int_equal(forked, worth && threads > 1);
            }
        }
    }
    /* inside a region of two threads: no nested fork, each thread covers its own range whole */
    int inner[2][37] = {{0}}, nested = 0;
#pragma omp parallel num_threads(2)
    {
        int t = omp_get_thread_num(), f = 0;
        if (nf_fork(1)) {
#pragma omp atomic write
            nested = 1;
        }
        NF_PARALLEL_RANGE(1, 37, mark_range(inner[t], &f, lo, hi));
    }
    assert_int_equal(nested, 0);
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 37; i++) assert_int_equal(inner[t][i], 1);
    nf_set_threads(was);
}

static void test_threads_identical(void **state) {
    (void)state;
    nf_model_type models[] = {NF_MODEL_NICE, NF_MODEL_REALNVP, NF_MODEL_GLOW, NF_MODEL_MAF, NF_MODEL_IAF};
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        nf_real *p1, *p2;
        int64_t n1, n2;
        train_params(1, models[m], &p1, &n1);
        train_params(2, models[m], &p2, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(p1, p2, sizeof(nf_real) * (size_t)n1);
        free(p1), free(p2);
    }
}

/* A small flow's training batch runs in row ranges, one per thread, each through a copy of the flow
 * (flow.c): the gradient, loss and ∂loss/∂x equal the whole batch's to float rounding, are bit for bit
 * the same on 1 and 2 threads, and a flow whose training forward writes state from the batch (batch
 * norm's statistics) is not split — its state is then exactly the whole batch's. */
static void split_run(nf_flow *f, int threads, const nf_real *x, int64_t n, double *loss, nf_real *g, nf_real *dx) {
    nf_set_threads(threads);
    nf_flow_zero_grad(f);
    assert_int_equal(nf_flow_nll_grad(f, x, n, loss, dx), NF_OK);
    memcpy(g, nf_flow_grads(f), sizeof(nf_real) * (size_t)nf_flow_num_params(f));
}

static void test_small_flow_split(void **state) {
    (void)state;
    nf_model_type models[] = {NF_MODEL_REALNVP, NF_MODEL_NICE, NF_MODEL_NSF, NF_MODEL_MAF, NF_MODEL_REALNVP};
    for (int m = 0; m < 5; m++) {
        nf_config c;
        nf_config_default(&c, models[m], 3);
        c.init_std = 0.05; /* not the identity */
        c.hidden = 32;
        c.batchnorm = m == 4;
        nf_flow *f, *w;
        assert_int_equal(nf_flow_create(&c, &f), NF_OK);
        assert_int_equal(nf_flow_create(&c, &w), NF_OK);
        int64_t n = 512, P = nf_flow_num_params(f);
        assert_true(nf_flow_flops(f) * (double)n < 1e8); /* small: split (or, with batch norm, not) */
        nf_real *x = malloc(sizeof(nf_real) * (size_t)(n * 3)), *dx1 = malloc(sizeof(nf_real) * (size_t)(n * 3)),
                *dx2 = malloc(sizeof(nf_real) * (size_t)(n * 3)), *dxh = malloc(sizeof(nf_real) * (size_t)(n * 3));
        nf_real *g1 = malloc(sizeof(nf_real) * (size_t)P), *g2 = malloc(sizeof(nf_real) * (size_t)P);
        nf_rng r;
        nf_rng_seed(&r, 11);
        for (int64_t i = 0; i < n * 3; i++) x[i] = (nf_real)(1.5 * tanh(nf_rng_normal(&r)));
        nf_flow_set_training(f, 1), nf_flow_set_training(w, 1);
        double l1, l2, lw;
        split_run(f, 1, x, n, &l1, g1, dx1);
        split_run(f, 2, x, n, &l2, g2, dx2);
        assert_true(l1 == l2);
        assert_memory_equal(g1, g2, sizeof(nf_real) * (size_t)P);
        assert_memory_equal(dx1, dx2, sizeof(nf_real) * (size_t)(n * 3));
        /* the whole batch through the unsplit path (a data-parallel part that is the whole batch) */
        nf_flow_zero_grad(w);
        assert_int_equal(nf_flow_nll_grad_part(w, x, NULL, n, n, NULL, &lw), NF_OK);
        lw /= (double)n;
        double gmax = 0, dmax = 0;
        for (int64_t k = 0; k < P; k++)
            gmax = fmax(gmax, fabs((double)g1[k])), dmax = fmax(dmax, fabs((double)g1[k] - nf_flow_grads(w)[k]));
        printf("  model %d: loss %.9f (whole batch %.9f), max |Δgrad| %.2e of %.2e\n", m, l1, lw, dmax, gmax);
        assert_true(fabs(l1 - lw) <= 1e-6 * fabs(lw));
        assert_true(gmax > 0 && dmax <= 1e-5 * gmax);
        if (c.batchnorm) { /* f ran the batch twice (1 and 2 threads): its running statistics are those of
                            * the whole batch run twice unsplit */
            double l2w;
            assert_int_equal(nf_flow_nll_grad_part(w, x, NULL, n, n, NULL, &l2w), NF_OK);
            for (int32_t t = 0; t < nf_flow_num_tensors(f); t++) {
                const nf_tensor_info *ti = nf_flow_tensor(f, t);
                if (ti->kind != NF_TENSOR_BUFFER) continue;
                assert_memory_equal(nf_flow_tensor_cdata(f, t), nf_flow_tensor_cdata(w, t), sizeof(nf_real) * (size_t)ti->count);
            }
        }
        /* ∂loss/∂x of the first 128 rows alone (too few to split), scaled by 128/512 (exact); with batch
         * norm a row's gradient depends on the batch, so not there */
        double dl, xmax = 0, xd = 0;
        nf_flow_zero_grad(w);
        assert_int_equal(nf_flow_nll_grad(w, x, 128, &dl, dxh), NF_OK);
        for (int64_t i = 0; i < 128 * 3; i++)
            xmax = fmax(xmax, fabs((double)dx1[i])), xd = fmax(xd, fabs((double)dx1[i] - dxh[i] * (nf_real)0.25));
        assert_true(xmax > 0 && (c.batchnorm || xd <= 1e-5 * xmax));
        /* evaluation passes split the same way (except with batch norm): log p, z and the inverse on 1 and 2
         * threads bit for bit; log p as in passes of 100 rows (too few to split); the inverse gives x back */
        nf_flow_set_training(f, 0);
        nf_real *lp1 = malloc(sizeof(nf_real) * (size_t)n), *lp2 = malloc(sizeof(nf_real) * (size_t)n), *lph = malloc(sizeof(nf_real) * (size_t)n);
        nf_real *z1 = malloc(sizeof(nf_real) * (size_t)(n * 3)), *z2 = malloc(sizeof(nf_real) * (size_t)(n * 3)), *xb = malloc(sizeof(nf_real) * (size_t)(n * 3));
        nf_set_threads(1);
        assert_int_equal(nf_flow_log_prob(f, x, lp1, n), NF_OK);
        assert_int_equal(nf_flow_forward(f, x, z1, NULL, n), NF_OK);
        assert_int_equal(nf_flow_inverse(f, z1, xb, NULL, n), NF_OK);
        nf_set_threads(2);
        assert_int_equal(nf_flow_log_prob(f, x, lp2, n), NF_OK);
        assert_int_equal(nf_flow_forward(f, x, z2, NULL, n), NF_OK);
        assert_memory_equal(lp1, lp2, sizeof(nf_real) * (size_t)n);
        assert_memory_equal(z1, z2, sizeof(nf_real) * (size_t)(n * 3));
        assert_int_equal(nf_flow_inverse(f, z1, z2, NULL, n), NF_OK);
        assert_memory_equal(xb, z2, sizeof(nf_real) * (size_t)(n * 3));
        for (int64_t i0 = 0; i0 < n; i0 += 100) assert_int_equal(nf_flow_log_prob(f, x + i0 * 3, lph + i0, n - i0 < 100 ? n - i0 : 100), NF_OK);
        double pd = 0, xr = 0;
        for (int64_t i = 0; i < n; i++) pd = fmax(pd, fabs((double)lp1[i] - lph[i]) / (1 + fabs((double)lph[i])));
        for (int64_t i = 0; i < n * 3; i++) xr = fmax(xr, fabs((double)xb[i] - x[i]));
        printf("  model %d: eval split: max |Δlog p| %.2e (relative) against 100-row passes, round trip %.2e\n", m, pd, xr);
        assert_true(pd <= 1e-5 && xr <= 1e-4); /* rounding: the products tile 100 rows otherwise than 256 */
        free(lp1), free(lp2), free(lph), free(z1), free(z2), free(xb);
        free(x), free(dx1), free(dx2), free(dxh), free(g1), free(g2);
        nf_flow_free(f), nf_flow_free(w);
    }
    nf_set_threads(2);
}

/* Gradients in recompute mode (inputs rebuilt by inversion) equal those of store mode, for every model
 * family, to a tolerance set by the rounding of the reconstruction; the workspace in recompute mode does
 * not grow with depth. */
static void grads_of(nf_flow *f, const nf_real *x, int64_t n, nf_real *g, double *loss) {
    nf_flow_zero_grad(f);
    assert_int_equal(nf_flow_nll_grad(f, x, n, loss, NULL), NF_OK);
    memcpy(g, nf_flow_grads(f), sizeof(nf_real) * (size_t)nf_flow_num_params(f));
}

static void test_recompute_matches_store(void **state) {
    (void)state;
    nf_config cfg[6];
    nf_config_default_image(&cfg[0], NF_MODEL_GLOW, 1, 8, 8);
    cfg[0].depth = 3, cfg[0].hidden = 8;
    nf_config_default_image(&cfg[1], NF_MODEL_REALNVP, 1, 8, 8);
    cfg[1].hidden = 6, cfg[1].blocks = 1;
    nf_config_default(&cfg[2], NF_MODEL_NICE, 6);
    nf_config_default(&cfg[3], NF_MODEL_GLOW, 6);
    nf_config_default(&cfg[4], NF_MODEL_MAF, 6);
    nf_config_default(&cfg[5], NF_MODEL_IAF, 6);
    cfg[5].transform = NF_TRANSFORM_SPLINE;
    for (int c = 0; c < 6; c++) {
        cfg[c].init_std = 0.05; /* couplings must not start as the identity, or the test is trivial */
        nf_flow *f;
        assert_int_equal(nf_flow_create(&cfg[c], &f), NF_OK);
        int32_t D = nf_flow_dim(f);
        int64_t n = 16, P = nf_flow_num_params(f);
        nf_real *x = malloc(sizeof(nf_real) * (size_t)(n * D)), *gs = malloc(sizeof(nf_real) * (size_t)P),
                *gr = malloc(sizeof(nf_real) * (size_t)P);
        nf_rng r;
        nf_rng_seed(&r, 5);
        for (int64_t i = 0; i < n * D; i++) x[i] = (nf_real)(0.4 * tanh(nf_rng_normal(&r)));
        nf_flow_set_training(f, 1);
        double ls, lr;
        grads_of(f, x, n, gs, &ls); /* also runs ActNorm's data-dependent initialisation */
        grads_of(f, x, n, gs, &ls);
        int64_t store_bytes = nf_flow_workspace_bytes(f);
        assert_int_equal(nf_flow_set_recompute(f, 1), NF_OK);
        assert_true(nf_flow_recompute(f));
        grads_of(f, x, n, gr, &lr);
        assert_true(nf_flow_workspace_bytes(f) < store_bytes);
        double gmax = 0, dmax = 0;
        for (int64_t k = 0; k < P; k++) gmax = fmax(gmax, fabs((double)gs[k])), dmax = fmax(dmax, fabs((double)gs[k] - gr[k]));
        printf("  model %d: loss %.6f vs %.6f, max |Δgrad| %.2e of max |grad| %.2e; workspace %lld → %lld bytes\n", c, ls, lr,
               dmax, gmax, (long long)store_bytes, (long long)nf_flow_workspace_bytes(f));
        assert_true(ls == lr);                             /* the forward pass is the same */
        assert_true(gmax > 0 && dmax <= 2e-4 * gmax);      /* float rounding of the rebuilt inputs */
        free(x), free(gs), free(gr);
        nf_flow_free(f);
    }
    /* depth: the recompute workspace of K = 2 and K = 8 Glow steps is the same size */
    int64_t bytes[2][2];
    for (int m = 0; m < 2; m++)
        for (int d = 0; d < 2; d++) {
            nf_config c;
            nf_config_default_image(&c, NF_MODEL_GLOW, 1, 8, 8);
            c.depth = d ? 8 : 2, c.hidden = 8;
            nf_flow *f;
            assert_int_equal(nf_flow_create(&c, &f), NF_OK);
            assert_int_equal(nf_flow_set_recompute(f, m), NF_OK);
            assert_int_equal(nf_flow_reserve(f, 32), NF_OK);
            bytes[m][d] = nf_flow_workspace_bytes(f);
            nf_flow_free(f);
        }
    assert_true(bytes[1][1] == bytes[1][0]);
    printf("  glow K = 2 → 8: store %lld → %lld bytes, recompute %lld → %lld bytes\n", (long long)bytes[0][0], (long long)bytes[0][1],
           (long long)bytes[1][0], (long long)bytes[1][1]);
    assert_true(bytes[0][1] > 2 * bytes[0][0]); /* store mode keeps every step's activations and caches */
    /* batch norm's training forward cannot be undone by its inverse */
    nf_config b;
    nf_config_default(&b, NF_MODEL_REALNVP, 4);
    b.batchnorm = 1;
    nf_flow *f;
    assert_int_equal(nf_flow_create(&b, &f), NF_OK);
    assert_int_equal(nf_flow_set_recompute(f, 1), NF_ERR_INVALID);
    nf_flow_free(f);
}

/* Every pass that maps values reports a non-finite output as NF_ERR_NUMERIC naming the first such row
 * (and whether its input was already non-finite), with the finite rows still written as a clean pass
 * writes them: forward and inverse of rows holding a NaN or an infinity, at 1 and 2 threads and through
 * the split passes (n = 512), in place too, and sampling at a temperature whose latents overflow float. */
static void test_non_finite_outputs_reported(void **state) {
    (void)state;
    nf_config c;
    nf_config_default(&c, NF_MODEL_REALNVP, 2);
    c.init_std = 0.05;
    nf_flow *f;
    assert_int_equal(nf_flow_create(&c, &f), NF_OK);
    nf_flow_set_training(f, 0);
    for (int64_t n = 8; n <= 512; n *= 64) {
        for (int threads = 1; threads <= 2; threads++) {
            nf_set_threads(threads);
            nf_real *x = malloc(sizeof(nf_real) * (size_t)(2 * n)), *y = malloc(sizeof(nf_real) * (size_t)(2 * n)),
                    *ref = malloc(sizeof(nf_real) * (size_t)(2 * n));
            for (int64_t i = 0; i < 2 * n; i++) x[i] = (nf_real)(0.01 * (double)(i % 97) - 0.4);
            for (int inv = 0; inv < 2; inv++) {
                nf_status (*pass)(nf_flow *, const nf_real *, nf_real *, nf_real *, int64_t) = inv ? nf_flow_inverse : nf_flow_forward;
                assert_int_equal(pass(f, x, ref, NULL, n), NF_OK);
                x[2 * 6 + 1] = NAN, x[2 * (n - 1)] = INFINITY; /* rows 6 and n − 1: the input's own, named so */
                assert_int_equal(pass(f, x, y, NULL, n), NF_ERR_NUMERIC);
                assert_non_null(strstr(nf_last_error(), "row 6: the input holds a non-finite value"));
                for (int64_t i = 0; i < n; i++)
                    if (i != 6 && i != n - 1) assert_memory_equal(y + 2 * i, ref + 2 * i, sizeof(nf_real) * 2);
                memcpy(y, x, sizeof(nf_real) * (size_t)(2 * n)); /* in place: the output's NaN, not the input's */
                assert_int_equal(pass(f, y, y, NULL, n), NF_ERR_NUMERIC);
                assert_non_null(strstr(nf_last_error(), inv ? "row 6 decodes to a non-finite value" : "row 6 encodes to a non-finite value"));
                for (int64_t i = 0; i < 2 * n; i++) x[i] = (nf_real)(0.01 * (double)(i % 97) - 0.4);
            }
            nf_rng r;
            nf_rng_seed(&r, 3);
            assert_int_equal(nf_flow_sample(f, &r, 1.0, y, n), NF_OK);
            assert_int_equal(nf_flow_sample(f, &r, 1e39, y, n), NF_ERR_NUMERIC); /* 1e39·ε is beyond float */
            assert_non_null(strstr(nf_last_error(), "sample 0 holds a non-finite value"));
            free(x), free(y), free(ref);
        }
    }
    nf_set_threads(2);
    nf_flow_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adam_hand_computed), cmocka_unit_test(test_adam_warmup_and_clip),
        cmocka_unit_test(test_adamw_decoupled_decay),
        cmocka_unit_test(test_rng_reproducible),   cmocka_unit_test(test_rng_distributions),
        cmocka_unit_test(test_gemm_matches_reference), cmocka_unit_test(test_gemm_stream_matches_reference), cmocka_unit_test(test_prior_sample_sequential), cmocka_unit_test(test_gmm_prior_blocks), cmocka_unit_test(test_gmm_full_prior), cmocka_unit_test(test_logistic_vmath), cmocka_unit_test(test_lu),
        cmocka_unit_test(test_parallel_range), cmocka_unit_test(test_threads_identical), cmocka_unit_test(test_small_flow_split),
        cmocka_unit_test(test_recompute_matches_store), cmocka_unit_test(test_non_finite_outputs_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
