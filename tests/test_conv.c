/* test_conv.c — the fast convolutions (im2col + BLAS, output-side, and the direct 3×3 kernel where the
 * CPU has it — every shape runs through each path) against the naive reference (forward), their backward
 * against finite differences of the reference (every input, weight and bias), with rows further apart
 * than C·H·W (a multi-scale prefix), and bit-identical results for 1 and 2 threads. Compiled against
 * the double and the float library. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/files.h"
#include "data/data.h"
#include "io/io.h"
#include "kernels/kernels.h"
#include "models/models.h"
#include "train/train.h"

#define DBL (sizeof(nf_real) == 8)
#define TOL (DBL ? 1e-10 : 2e-4)


typedef struct {
    int32_t n, Cin, Cout, H, W, k, pad; /* pad: extra floats per row beyond Cin·H·W */
} shape;

static nf_real *randv(nf_rng *r, int64_t n) {
    nf_real *v = malloc(sizeof(nf_real) * (size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = (nf_real)nf_rng_normal(r);
    return v;
}

/* L = Σ r ⊙ conv_ref(x) */
static double loss_ref(const shape *s, const nf_real *x, const nf_real *w, const nf_real *b, const nf_real *r) {
    int64_t P = (int64_t)s->H * s->W, ldx = s->Cin * P + s->pad, ldy = s->Cout * P;
    nf_real *y = malloc(sizeof(nf_real) * (size_t)(s->n * ldy));
    nf_conv2d_ref(x, ldx, w, b, y, ldy, s->n, s->Cin, s->Cout, s->H, s->W, s->k);
    double L = 0;
    for (int64_t i = 0; i < s->n * ldy; i++) L += (double)r[i] * y[i];
    free(y);
    return L;
}

static void check_shape(const shape *s) {
    nf_rng rng;
    nf_rng_seed(&rng, 77);
    int64_t P = (int64_t)s->H * s->W, ldx = s->Cin * P + s->pad, ldy = s->Cout * P;
    int64_t nw = (int64_t)s->Cout * s->Cin * s->k * s->k;
    nf_real *x = randv(&rng, s->n * ldx), *w = randv(&rng, nw), *b = randv(&rng, s->Cout), *r = randv(&rng, s->n * ldy);
    nf_real *y1 = malloc(sizeof(nf_real) * (size_t)(s->n * ldy)), *y2 = malloc(sizeof(nf_real) * (size_t)(s->n * ldy));
    nf_real *work = malloc(sizeof(nf_real) * (size_t)nf_conv2d_work_size(s->Cin, s->Cout, s->H, s->W, s->k, s->n));
    nf_conv2d_forward(x, ldx, w, b, y1, ldy, s->n, s->Cin, s->Cout, s->H, s->W, s->k, work);
    nf_conv2d_ref(x, ldx, w, b, y2, ldy, s->n, s->Cin, s->Cout, s->H, s->W, s->k);
    double fworst = 0;
    for (int64_t i = 0; i < s->n * ldy; i++) {
        double e = fabs(y1[i] - y2[i]) / ((1 + fabs(y2[i])) * sqrt((double)(s->Cin * s->k * s->k)));
        fworst = fmax(fworst, e);
        assert_true(e < TOL);
    }
    /* backward of L = Σ r ⊙ y */
    nf_real *dx = calloc((size_t)(s->n * ldx), sizeof(nf_real)), *dw = calloc((size_t)nw, sizeof(nf_real)), *db = calloc((size_t)s->Cout, sizeof(nf_real));
    nf_conv2d_backward(x, ldx, w, r, ldy, dx, ldx, dw, db, s->n, s->Cin, s->Cout, s->H, s->W, s->k, work);
    /* L is linear in each argument: central differences are exact up to rounding. An input moves only
     * its own row's terms of L, so its differences are taken over that row alone (s1: one row) */
    double h = DBL ? 1e-3 : 1e-1, worst = 0;
    nf_real *args[3] = {x, w, b}, *grads[3] = {dx, dw, db};
    int64_t counts[3] = {s->n * ldx, nw, s->Cout};
    shape s1 = *s;
    s1.n = 1;
    for (int a = 0; a < 3; a++)
        for (int64_t i = 0; i < counts[a]; i++) {
            if (a == 0 && i % ldx >= s->Cin * P) continue; /* the row's tail is not read */
            int64_t row = a == 0 ? i / ldx : 0;
            const shape *sl = a == 0 ? &s1 : s;
            nf_real keep = args[a][i];
            args[a][i] = keep + (nf_real)h;
            double lp = loss_ref(sl, x + row * ldx, w, b, r + row * ldy);
            args[a][i] = keep - (nf_real)h;
            double lm = loss_ref(sl, x + row * ldx, w, b, r + row * ldy);
            args[a][i] = keep;
            double num = (lp - lm) / ((double)(keep + (nf_real)h) - (double)(keep - (nf_real)h));
            worst = fmax(worst, fabs(num - grads[a][i]) / (1 + fabs(num)));
        }
    print_message("  n=%d Cin=%d Cout=%d %dx%d k=%d pad=%d: worst forward error %.2e (of the bound's scale), gradient error %.2e\n",
                  s->n, s->Cin, s->Cout, s->H, s->W, s->k, s->pad, fworst, worst);
    assert_true(worst < (DBL ? 1e-8 : 1e-3));
    /* fused ReLU: forward_ex = max(forward, 0); backward_ex with the ReLU output as mask = backward of
     * the masked gradient, and the gradient is masked in place */
    nf_real *y3 = malloc(sizeof(nf_real) * (size_t)(s->n * ldy)), *rm = malloc(sizeof(nf_real) * (size_t)(s->n * ldy));
    nf_conv2d_forward_ex(x, ldx, w, b, y3, ldy, s->n, s->Cin, s->Cout, s->H, s->W, s->k, work, 1);
    int64_t npos = 0;
    for (int64_t i = 0; i < s->n * ldy; i++) {
        assert_true(y3[i] == (y1[i] > 0 ? y1[i] : 0));
        npos += y3[i] > 0;
        rm[i] = y3[i] > 0 ? r[i] : 0;
    }
    if (s->n * ldy > 4) assert_true(npos > 0 && npos < s->n * ldy); /* the mask does something */
    nf_real *dx2 = calloc((size_t)(s->n * ldx), sizeof(nf_real)), *dw2 = calloc((size_t)nw, sizeof(nf_real)), *db2 = calloc((size_t)s->Cout, sizeof(nf_real));
    memset(dw, 0, sizeof(nf_real) * (size_t)nw), memset(db, 0, sizeof(nf_real) * (size_t)s->Cout);
    nf_conv2d_backward(x, ldx, w, rm, ldy, dx, ldx, dw, db, s->n, s->Cin, s->Cout, s->H, s->W, s->k, work);
    nf_conv2d_backward_ex(x, ldx, w, r, ldy, dx2, ldx, dw2, db2, s->n, s->Cin, s->Cout, s->H, s->W, s->k, work, y3);
    assert_memory_equal(r, rm, sizeof(nf_real) * (size_t)(s->n * ldy));
    for (int64_t i = 0; i < s->n * ldx; i++)
        if (i % ldx < s->Cin * P) assert_true(dx2[i] == dx[i]);
    assert_memory_equal(dw2, dw, sizeof(nf_real) * (size_t)nw);
    assert_memory_equal(db2, db, sizeof(nf_real) * (size_t)s->Cout);
    /* a residual block's second conv: forward_res = max(forward + res, 0), bit for bit, on every path */
    nf_real *res = randv(&rng, s->n * ldy);
    nf_conv2d_forward_res(x, ldx, w, b, y3, ldy, s->n, s->Cin, s->Cout, s->H, s->W, s->k, work, res, ldy);
    for (int64_t i = 0; i < s->n * ldy; i++) {
        nf_real v = y1[i] + res[i];
        assert_true(y3[i] == (v > 0 ? v : 0));
    }
    /* and its backward: backward_acc = backward_ex, then acc += dx, bit for bit */
    nf_real *acc = randv(&rng, s->n * ldx), *acc0 = malloc(sizeof(nf_real) * (size_t)(s->n * ldx));
    memcpy(acc0, acc, sizeof(nf_real) * (size_t)(s->n * ldx));
    nf_real *r2 = malloc(sizeof(nf_real) * (size_t)(s->n * ldy));
    memcpy(r2, r, sizeof(nf_real) * (size_t)(s->n * ldy)); /* r = rm now (masked in place above): dx, dw as from rm */
    memset(dw2, 0, sizeof(nf_real) * (size_t)nw), memset(db2, 0, sizeof(nf_real) * (size_t)s->Cout);
    nf_conv2d_backward_acc(x, ldx, w, r2, ldy, dx2, ldx, dw2, db2, s->n, s->Cin, s->Cout, s->H, s->W, s->k, work, NULL, acc, ldx);
    for (int64_t i = 0; i < s->n * ldx; i++)
        if (i % ldx < s->Cin * P) assert_true(dx2[i] == dx[i] && acc[i] == acc0[i] + dx[i]);
        else assert_true(acc[i] == acc0[i]); /* the row's tail is not touched */
    assert_memory_equal(dw2, dw, sizeof(nf_real) * (size_t)nw);
    free(acc), free(acc0), free(r2);
    free(res);
    free(y3), free(rm), free(dx2), free(dw2), free(db2);
    free(x), free(w), free(b), free(r), free(y1), free(y2), free(work), free(dx), free(dw), free(db);
}

static void test_conv_shapes(void **state) {
    (void)state;
    /* Without the direct kernels (and for fewer than 16 input or 8 output channels, or 1×1, on every path)
     * im2col + BLAS, and for Cout < Cin with k = 3 the output-side form: {2,4,3,…}, {10,16,3,…} (several
     * gradient chunks), {1,5,1,…}. The direct kernels (k = 3, ≥ 16 channels in, ≥ 8 out; conv.c): {10,16,8,5,6}
     * forward on the avx2 path only (30 pixels: below the avx512 path's 100), {1,16,9,10,11} forward on
     * both (a partial channel block and a partial position block), {1,9,16,10,10} the input gradient on
     * both, {1,16,8,12,12} also the weight gradient (avx2 path, ≥ 144 pixels); {1,2,9,10,11} and {2,1,8,10,10}
     * forward on the avx512 path (any number of input channels there) */
    shape shapes[] = {{2, 3, 4, 5, 7, 3, 0}, {3, 2, 5, 4, 4, 1, 0}, {2, 4, 3, 6, 5, 3, 7}, {1, 1, 1, 1, 1, 3, 0}, {2, 2, 6, 3, 3, 1, 5},
                      {10, 16, 3, 5, 6, 3, 2}, {1, 5, 1, 2, 7, 3, 0}, {2, 3, 9, 5, 7, 3, 0}, {2, 9, 12, 4, 6, 3, 3},
                      {10, 16, 8, 5, 6, 3, 2}, {1, 12, 2, 1, 2, 3, 0}, {1, 8, 8, 7, 7, 3, 1},
                      {2, 5, 10, 12, 13, 3, 0} /* ≥ 144 pixels: the direct weight gradient (avx2 path) */,
                      {3, 9, 12, 5, 6, 1, 2} /* 1×1: 30 pixels = a full block and a partial one */,
                      {2, 12, 10, 7, 7, 1, 0} /* 1×1: a partial channel block forward, dx direct */,
                      {1, 16, 9, 10, 11, 3, 1} /* ≥ 100 pixels, direct on the avx512 path too: forward, a
                                                  partial channel block and a partial position block */,
                      {1, 9, 16, 10, 10, 3, 0} /* the same for the input gradient */,
                      {1, 16, 8, 12, 12, 3, 0} /* the direct weight gradient (avx2 path) */,
                      {1, 2, 9, 10, 11, 3, 0} /* few input channels: direct forward on the avx512 path only */,
                      {2, 1, 8, 10, 10, 3, 0} /* one input channel, likewise */};
    /* im2col / output-side once (it does not depend on the ISA path: BLAS and portable C), then the direct
     * kernels on every instruction-set path this CPU supports that has them */
    nf_isa old = nf_isa_active();
    /* the setting before the test, read on the CPU's own path (on a lowered one the kernels read as off,
     * and restoring that turned them off for every later test) */
    int was = nf_convd_set(1);
    for (int isa = NF_ISA_GENERIC; isa <= (int)nf_isa_cpu(); isa++) {
        nf_isa_set((nf_isa)isa);
        int path = isa > NF_ISA_GENERIC; /* the direct kernels need AVX2 (and float) */
        if (path && DBL) break;
        nf_convd_set(path);
        assert_int_equal(nf_convd_available(), path);
        print_message(" isa %s: %s\n", nf_isa_name((nf_isa)isa), path ? "direct kernels" : "im2col / output-side");
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check_shape(&shapes[i]);
    }
    nf_isa_set(old);
    nf_convd_set(was);
}

/* The 3×3 shapes again with Winograd F(4×4, 3×3) for every 3×3 convolution (forward, input and weight
 * gradient), within the same bounds. Winograd rounds more than a direct sum (its transforms scale values
 * by up to 8 and 5 before the products): in float its worst forward error here is about 5e-6 of the
 * bound's scale against 2e-7 for the direct paths (the bound is 2e-4); gradients 5e-5 against 1e-3. */
static void test_conv_winograd(void **state) {
    (void)state;
    int was = nf_convw_set(NF_CONVW_ALWAYS);
    shape shapes[] = {{2, 3, 4, 5, 7, 3, 0}, {2, 4, 3, 6, 5, 3, 7}, {1, 1, 1, 1, 1, 3, 0}, {10, 16, 3, 5, 6, 3, 2},
                      {1, 5, 1, 2, 7, 3, 0}, {2, 3, 9, 5, 7, 3, 0}, {2, 9, 12, 4, 6, 3, 3}, {1, 8, 8, 7, 7, 3, 1},
                      {2, 5, 10, 12, 13, 3, 0}, {1, 6, 7, 9, 8, 3, 0} /* a full tile and a partial one each way */,
                      {2, 4, 5, 8, 8, 3, 0} /* whole tiles only */,
                      {1, 3, 2, 5, 37, 3, 0} /* long rows: 9 whole tiles, a partial one and the spare (11 tile columns) */};
    /* the transforms are compiled for each instruction-set path: every one this CPU supports */
    nf_isa old = nf_isa_active();
    for (int isa = NF_ISA_GENERIC; isa <= (int)nf_isa_cpu(); isa++) {
        nf_isa_set((nf_isa)isa);
        print_message(" isa %s: Winograd transforms\n", nf_isa_name((nf_isa)isa));
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check_shape(&shapes[i]);
    }
    nf_isa_set(old);
    nf_convw_set(was);
}

/* run_both's shape: 16 samples, 16 → 70 channels, 12 × 12, k = 3 — every direct kernel where the CPU
 * and the path have them (forward, input gradient, and on the avx2 path the weight gradient: ≥ 16
 * channels in, ≥ 8 out, 144 pixels), with partial channel and position blocks */
#define RB_N 16
#define RB_C 16
#define RB_O 70

/* y, dx, dw of run_both's convolution (forward and backward) on `threads` threads. */
static void run_both(int threads, nf_real *y, nf_real *dx, nf_real *dw) {
    nf_set_threads(threads);
    nf_rng rng;
    nf_rng_seed(&rng, 5);
    int32_t n = RB_N, C = RB_C, O = RB_O, H = 12, W = 12, k = 3;
    int64_t P = H * W;
    nf_real *x = randv(&rng, n * C * P), *w = randv(&rng, (int64_t)O * C * 9), *r = randv(&rng, n * O * P);
    nf_real *work = malloc(sizeof(nf_real) * (size_t)nf_conv2d_work_size(C, O, H, W, k, n));
    nf_conv2d_forward(x, C * P, w, NULL, y, O * P, n, C, O, H, W, k, work);
    memset(dw, 0, sizeof(nf_real) * (size_t)(O * C * 9));
    nf_conv2d_backward(x, C * P, w, r, O * P, dx, C * P, dw, NULL, n, C, O, H, W, k, work);
    free(x), free(w), free(r), free(work);
}

/* The AVX-512 direct kernels do each output's FMAs in the same order as the AVX2 ones: identical results. */
static void test_conv_isa_paths_identical(void **state) {
    (void)state;
    if (DBL || nf_isa_cpu() < NF_ISA_AVX512) {
        print_message(" (this CPU has no AVX-512 path: nothing to compare)\n");
        return;
    }
    size_t ny = RB_N * RB_O * 144, nx = RB_N * RB_C * 144, nw = RB_O * RB_C * 9;
    nf_real *y[2], *x[2], *w[2];
    nf_isa old = nf_isa_active();
    int was = nf_convd_set(1); /* the direct kernels, whatever an earlier test left */
    for (int k = 0; k < 2; k++) {
        y[k] = malloc(ny * sizeof(nf_real)), x[k] = malloc(nx * sizeof(nf_real)), w[k] = malloc(nw * sizeof(nf_real));
        nf_isa_set(k ? NF_ISA_AVX512 : NF_ISA_AVX2);
        assert_true(nf_convd_available());
        run_both(2, y[k], x[k], w[k]);
    }
    nf_isa_set(old);
    nf_convd_set(was);
    /* the weight gradient is not compared: the avx2 path sums it in its direct kernel, the avx512 path
     * in sgemm over im2col columns (conv.c, direct_dw) */
    assert_memory_equal(y[0], y[1], ny * sizeof(nf_real));
    assert_memory_equal(x[0], x[1], nx * sizeof(nf_real));
    for (int k = 0; k < 2; k++) free(y[k]), free(x[k]), free(w[k]);
}

/* Winograd's transforms are the same element-wise operations on every instruction-set path (no FMA
 * contraction), its products the same BLAS calls: every path this CPU supports gives the generic bits. */
static void test_winograd_isa_paths_identical(void **state) {
    (void)state;
    size_t ny = RB_N * RB_O * 144, nx = RB_N * RB_C * 144, nw = RB_O * RB_C * 9;
    nf_real *y[2], *x[2], *w[2];
    for (int k = 0; k < 2; k++)
        y[k] = malloc(ny * sizeof(nf_real)), x[k] = malloc(nx * sizeof(nf_real)), w[k] = malloc(nw * sizeof(nf_real));
    int was = nf_convw_set(NF_CONVW_ALWAYS);
    nf_isa old = nf_isa_active();
    nf_isa_set(NF_ISA_GENERIC);
    run_both(2, y[0], x[0], w[0]);
    for (int isa = NF_ISA_GENERIC + 1; isa <= (int)nf_isa_cpu(); isa++) {
        nf_isa_set((nf_isa)isa);
        print_message(" isa %s against generic\n", nf_isa_name((nf_isa)isa));
        run_both(2, y[1], x[1], w[1]);
        assert_memory_equal(y[0], y[1], ny * sizeof(nf_real));
        assert_memory_equal(x[0], x[1], nx * sizeof(nf_real));
        assert_memory_equal(w[0], w[1], nw * sizeof(nf_real));
    }
    nf_isa_set(old);
    nf_convw_set(was);
    for (int k = 0; k < 2; k++) free(y[k]), free(x[k]), free(w[k]);
}

static void test_conv_threads_identical(void **state) {
    (void)state;
    size_t ny = RB_N * RB_O * 144, nx = RB_N * RB_C * 144, nw = RB_O * RB_C * 9;
    nf_real *y1 = malloc(ny * sizeof(nf_real)), *y2 = malloc(ny * sizeof(nf_real));
    nf_real *x1 = malloc(nx * sizeof(nf_real)), *x2 = malloc(nx * sizeof(nf_real));
    nf_real *w1 = malloc(nw * sizeof(nf_real)), *w2 = malloc(nw * sizeof(nf_real));
    /* the default paths, then Winograd for every 3×3 convolution (forward, input and weight gradient) */
    for (int mode = NF_CONVW_AUTO; mode <= NF_CONVW_ALWAYS; mode++) {
        int was = nf_convw_set(mode);
        run_both(1, y1, x1, w1);
        run_both(2, y2, x2, w2);
        nf_convw_set(was);
        assert_memory_equal(y1, y2, ny * sizeof(nf_real));
        assert_memory_equal(x1, x2, nx * sizeof(nf_real));
        assert_memory_equal(w1, w2, nw * sizeof(nf_real));
    }
    free(y1), free(y2), free(x1), free(x2), free(w1), free(w2);
}

/* OpenBLAS runs kernels as wide as the CPU's: nflow corrects its fallback at load time. */
static void test_blas_core_matches_cpu(void **state) {
    (void)state;
    print_message(" %s\n", nf_runtime_info());
    if (!strcmp(nf_blas_core(), "unknown") || getenv("OPENBLAS_CORETYPE") || getenv("NFLOW_BLAS_CORE")) {
        print_message(" (a BLAS that names no core, or a core set by the environment: nothing to check)\n");
        return;
    }
    if (DBL) { /* nf_isa_cpu() is generic in the double build; the float build checks the hardware */
        print_message(" (double build: checked by the float build)\n");
        return;
    }
    assert_true(nf_blas_isa() >= nf_isa_cpu());
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_conv_shapes), cmocka_unit_test(test_conv_winograd), cmocka_unit_test(test_conv_threads_identical), cmocka_unit_test(test_conv_isa_paths_identical), cmocka_unit_test(test_winograd_isa_paths_identical), cmocka_unit_test(test_blas_core_matches_cpu)};
    return cmocka_run_group_tests_name(DBL ? "conv (double)" : "conv (float)", tests, NULL, NULL);
}
