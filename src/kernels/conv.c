/* conv.c — 2-D convolutions for image coupling networks: stride 1, zero padding k/2 ("same"),
 * NCHW tensors, weights (Cout, Cin, k, k), bias (Cout). Rows (samples) of x and y may be further apart
 * than C·H·W (ldx, ldy), so a convolution can read the kept prefix of a multi-scale row.
 *
 * Fastest path, where the CPU has AVX2 + FMA: the direct kernels of conv_direct.c (k = 3 and 1) for the
 * forward pass and the input gradient of convolutions with ≥ 8 outputs, and for 3×3 weight gradients on
 * images of ≥ 144 pixels. Otherwise: im2col + matrix product (BLAS), or — when Cout < Cin — the
 * output-side form below, which multiplies first and shifts the few output channels instead of copying
 * the many input channels.
 * im2col form, per sample s, with K = Cin·k·k and P = H·W:
 *   col_s (K, P) = im2col(x_s);   y_s (Cout, P) = w (Cout, K) · col_s + b
 *   dcol (K, P) = wᵀ · dy_s → col2im → dx_s;   dw += dy_s · col_sᵀ;   db += Σ_p dy_s
 * Forward and dx run samples in parallel (each thread its own col buffer); dw and db accumulate over
 * samples in order, so every result is independent of the thread count. nf_conv2d_ref is the naive
 * seven-loop reference the tests compare against. */
#include "kernels/kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenMP's maximum thread count (1 without OpenMP): how many per-thread buffers work holds. */
static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
/* This thread's index in the current OpenMP team (0 without OpenMP). */
static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

#define DW_CHUNK 8 /* samples per partial weight gradient: fixed, so sums never depend on the threads */

static int64_t max3(int64_t a, int64_t b, int64_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

/* Floats of work per thread: an im2col column buffer (K, P), or the direct kernels' padded input and
 * output for forward (Cin → Cout) and for the input gradient (Cout → Cin). */
static int64_t thread_stride(int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k) {
    int64_t s = (int64_t)Cin * k * k * H * W;
    if (k != 3 && k != 1) return s;
    s = max3(s, nf_convd_work_size(Cin, Cout, H, W, k), nf_convd_work_size(Cout, Cin, H, W, k));
    if (k == 3) /* Winograd: forward, input gradient, weight gradient (with its transformed-filter sums) */
        s = max3(s, nf_convw_work_size(Cin, Cout, H, W), nf_convw_work_size(Cin, Cout, H, W) + nf_convw_packed_size(Cin, Cout));
    return s;
}

/* Floats for the re-laid weights: output-side (k²·Cout, Cin) or the direct kernels' packed blocks */
static int64_t weights_size(int32_t Cin, int32_t Cout, int32_t k) {
    int64_t s = (int64_t)Cout * Cin * k * k;
    if (k != 3 && k != 1) return s;
    s = max3(s, nf_convd_packed_size(Cin, Cout, k), nf_convd_packed_size(Cout, Cin, k));
    return k == 3 && s < nf_convw_packed_size(Cin, Cout) ? nf_convw_packed_size(Cin, Cout) : s;
}

/* Where the direct kernels are used (measured with bench/conv_bench.c, batch 64, 2 threads). They
 * compute output channels in blocks of 4: with fewer than 8 outputs the block's padding wastes too much,
 * and the output-side / im2col forms were faster. With few input channels (glow's 2 → 128 and 4 → 128,
 * realnvp's 1 → 64 and 4 → 64) each output sums only k²·Cin products and im2col + BLAS was 13–45 %
 * faster forward (AMD Zen 4: 2 → 128 at 14×14 132 against 92 GFLOP/s), hence DIRECT_MIN_IN. 1×1
 * convolutions are plain matrix products and OpenBLAS was faster on both CPUs measured (Zen 4: glow's
 * 128 → 128 at 14×14 166–175 against 128–154, at 7×7 171–191 against 89–124; the Intel Xeon of
 * BENCHMARKS.md likewise), so they always take BLAS. The 3×3 weight gradient reduces each block over the
 * whole image: on small images (glow's 7×7) those reductions cost more than the sums, and BLAS was faster. */
#define DIRECT_MIN_IN 16
/* On the AVX-512 path the 48-position block turned that around: the direct forward beat im2col + BLAS
 * with any number of input channels (AMD Zen 5, batch 64, 2 threads, `nflow_conv_bench --shape S --path
 * P`, two or three runs each, forward GFLOP/s direct against im2col: glow's 2 → 128 at 14×14 238–260
 * against 194–212, realnvp's 1 → 64 at 28×28 206–208 against 166–170, 4 → 64 at 14×14 310–312 against
 * 259–268; the AVX2 kernel stays below im2col there, 160–168 against 194–212). */
#define DIRECT_MIN_IN_512 1
/* On the AVX-512 path a 48-position block leaves much of a small image's last block idle (7×7: 63
 * positions on the padded grid, 96 computed), and sgemm over im2col columns was faster there (AMD Zen 5,
 * batch 64, 2 threads, bench/conv_bench.c: glow's 128 → 8 zero-convolution at 7×7, forward 258–276
 * GFLOP/s im2col against 204–209 direct; on the avx2 path both 160–164) */
#define DIRECT_MIN_PIXELS_512 100
#define WINO_MIN_CH 32
#define WINO_MIN_PIXELS 196 /* from 14 × 14 up */
/* 1 when a k × k convolution from `inputs` to `outputs` channels on P pixels takes the direct kernel
 * (conv_direct.c) on the active instruction-set path, by the measurements above. */
static int direct(int32_t k, int32_t inputs, int32_t outputs, int64_t P) {
    int avx512 = nf_isa_active() >= NF_ISA_AVX512;
    if (avx512 && P < DIRECT_MIN_PIXELS_512) return 0;
    return k == 3 && inputs >= (avx512 ? DIRECT_MIN_IN_512 : DIRECT_MIN_IN) && outputs >= 8 && nf_convd_available();
}
/* 1 when a 3×3 convolution from `inputs` to `outputs` channels on P pixels takes Winograd F(4×4, 3×3)
 * (conv_winograd.c): wide enough on both sides that the channel products dominate the transforms, and
 * an image large enough that the per-sample products are not tiny. Measured (bench/conv_bench.c, batch
 * 64, AMD EPYC Zen 4, since the transforms and the filter transform are vector code on every path):
 * 64 → 64 at 28×28 forward 369–377 against 192–197 GFLOP/s direct (2 threads); at 14×14, 2 threads,
 * forward 236–238 against 165–171 direct, input gradient 223–228 against 159–175, weight gradient
 * 171–175 against 134–141 im2col; 1 thread 123 / 122 / 88 against 90 / 87 / 71; on the avx2 path
 * 231 / 228 / 168 against 170 / 169 / 137, on the generic path 234 / 221 / 171 against im2col's
 * 150 / 182 / 143. Every shape with 1–8 channels on a side runs 2–10× slower than direct or im2col. */
static int winograd(int32_t k, int32_t inputs, int32_t outputs, int64_t P) {
    int m = nf_convw_mode();
    return k == 3 && (m == NF_CONVW_ALWAYS || (m == NF_CONVW_AUTO && inputs >= WINO_MIN_CH && outputs >= WINO_MIN_CH && P >= WINO_MIN_PIXELS));
}
/* 1 when the 3×3 weight gradient takes the direct kernel (see the measurements above) — on the avx2
 * path only: that kernel (dw_block) is 8 floats wide, and on the avx512 path a 512-bit sgemm over im2col
 * columns was faster (AMD Zen 5, batch 64, 2 threads, bench/conv_bench.c's dw column, three runs:
 * realnvp's 64 → 64 at 14×14 180–240 GFLOP/s against 144–158 direct; the Intel Xeon of BENCHMARKS.md:
 * backward 121–124 against 109–115). */
static int direct_dw(int32_t k, int32_t Cin, int32_t Cout, int64_t P) {
    return k == 3 && Cin >= DIRECT_MIN_IN && Cout >= 8 && P >= 144 && nf_convd_available() && nf_isa_active() == NF_ISA_AVX2;
}

/* Floats of scratch nf_conv2d_forward/backward(_ex) need for n samples of this shape: per-thread
 * column buffers, per-chunk partial weight gradients, the re-laid weights. */
int64_t nf_conv2d_work_size(int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k, int64_t n) {
    int64_t K = (int64_t)Cin * k * k, chunks = (n + DW_CHUNK - 1) / DW_CHUNK;
    /* per thread a column buffer; per chunk a partial weight gradient; the re-laid weights */
    return (int64_t)max_threads() * thread_stride(Cin, Cout, H, W, k) + chunks * Cout * (K + 1) + weights_size(Cin, Cout, k);
}

/* ---------------------------------------------------------------- output-side form (Cout < Cin)
 * For a k×k convolution with few output channels, im2col would copy k²·Cin·P values per sample to feed a
 * skinny product. Instead, per tap t = (dy, dx): Z_t (Cout, P) = W_t (Cout, Cin) · x (Cin, P), all taps in
 * ONE product with Wr (k²·Cout, Cin), Wr[t·Cout + o][c] = w[o][c][dy][dx]; then y[o](i, j) = Σ_t
 * Z_t[o](i + dy − r, j + dx − r) — a shift-add over k²·Cout·P values. Backward: dZ_t[o](i', j') =
 * dy[o](i' − dy + r, j' − dx + r); dx = Wrᵀ · dZ; dWr += dZ · xᵀ. */
static int output_side(int32_t Cin, int32_t Cout, int32_t k) { return k > 1 && Cout < Cin; }

/* Wr (k²·Cout, Cin, caller's) = w (Cout, Cin, k, k) with the taps outermost, for the
 * output-side form: Wr[t·Cout + o][c] = w[o][c][t]. */
static void relayout_weights(const nf_real *w, int32_t Cin, int32_t Cout, int32_t k, nf_real *Wr) {
    for (int32_t o = 0; o < Cout; o++)
        for (int32_t c = 0; c < Cin; c++)
            for (int32_t t = 0; t < k * k; t++) Wr[((int64_t)t * Cout + o) * Cin + c] = w[((int64_t)o * Cin + c) * k * k + t];
}

/* y (Cout, P) += shift-add of Z (k²·Cout, P) */
static void shift_add(const nf_real *Z, int32_t Cout, int32_t H, int32_t W, int32_t k, nf_real *y) {
    int32_t r = k / 2;
    for (int32_t t = 0; t < k * k; t++) {
        int32_t dy = t / k, dx = t % k, j0 = r - dx > 0 ? r - dx : 0, j1 = W + r - dx < W ? W + r - dx : W;
        for (int32_t o = 0; o < Cout; o++) {
            const nf_real *zt = Z + ((int64_t)t * Cout + o) * H * W;
            nf_real *yo = y + (int64_t)o * H * W;
            for (int32_t i = 0; i < H; i++) {
                int32_t ii = i + dy - r;
                if (ii < 0 || ii >= H) continue;
                const nf_real *zr = zt + (int64_t)ii * W + dx - r;
                nf_real *yr = yo + (int64_t)i * W;
#pragma omp simd
                for (int32_t j = j0; j < j1; j++) yr[j] += zr[j];
            }
        }
    }
}

/* dZ (k²·Cout, P) = the shifted copies of dy (Cout, P), zero where a shift leaves the image */
static void shift_gather(const nf_real *dy, int32_t Cout, int32_t H, int32_t W, int32_t k, nf_real *dZ) {
    int32_t r = k / 2;
    for (int32_t t = 0; t < k * k; t++) {
        int32_t dy_ = t / k, dx = t % k;
        for (int32_t o = 0; o < Cout; o++) {
            nf_real *zt = dZ + ((int64_t)t * Cout + o) * H * W;
            const nf_real *g = dy + (int64_t)o * H * W;
            for (int32_t i = 0; i < H; i++) {
                int32_t ii = i - dy_ + r; /* dZ_t(i, j) = dy(i − dy + r, j − dx + r) */
                nf_real *zr = zt + (int64_t)i * W;
                if (ii < 0 || ii >= H) {
#pragma omp simd
                    for (int32_t j = 0; j < W; j++) zr[j] = 0;
                    continue;
                }
                for (int32_t j = 0; j < W; j++) {
                    int32_t jj = j - dx + r;
                    zr[j] = jj >= 0 && jj < W ? g[(int64_t)ii * W + jj] : 0;
                }
            }
        }
    }
}

/* col (Cin·k·k, H·W): col[(c·k + dy)·k + dx][i·W + j] = x[c][i + dy − k/2][j + dx − k/2] (0 outside).
 * Each output row is a zero margin, a contiguous copy, and a zero margin: no per-pixel branches. */
static void im2col(const nf_real *x, int32_t C, int32_t H, int32_t W, int32_t k, nf_real *col) {
    int32_t r = k / 2;
    for (int32_t c = 0; c < C; c++)
        for (int32_t dy = 0; dy < k; dy++)
            for (int32_t dx = 0; dx < k; dx++) {
                nf_real *o = col + ((int64_t)(c * k + dy) * k + dx) * H * W;
                const nf_real *xc = x + (int64_t)c * H * W;
                int32_t j0 = r - dx > 0 ? r - dx : 0, j1 = W + r - dx < W ? W + r - dx : W; /* valid j */
                for (int32_t i = 0; i < H; i++) {
                    int32_t ii = i + dy - r;
                    nf_real *orow = o + (int64_t)i * W;
                    /* rows are short (7, 14, 28 values): plain loops, not memcpy/memset calls */
                    if (ii < 0 || ii >= H || j1 <= j0) {
#pragma omp simd
                        for (int32_t j = 0; j < W; j++) orow[j] = 0;
                        continue;
                    }
                    const nf_real *xrow = xc + (int64_t)ii * W + dx - r;
                    for (int32_t j = 0; j < j0; j++) orow[j] = 0;
#pragma omp simd
                    for (int32_t j = j0; j < j1; j++) orow[j] = xrow[j];
                    for (int32_t j = j1; j < W; j++) orow[j] = 0;
                }
            }
}

/* x += col2im(col): the adjoint of im2col */
static void col2im_add(const nf_real *col, int32_t C, int32_t H, int32_t W, int32_t k, nf_real *x) {
    int32_t r = k / 2;
    for (int32_t c = 0; c < C; c++)
        for (int32_t dy = 0; dy < k; dy++)
            for (int32_t dx = 0; dx < k; dx++) {
                const nf_real *o = col + ((int64_t)(c * k + dy) * k + dx) * H * W;
                nf_real *xc = x + (int64_t)c * H * W;
                int32_t j0 = r - dx > 0 ? r - dx : 0, j1 = W + r - dx < W ? W + r - dx : W;
                for (int32_t i = 0; i < H; i++) {
                    int32_t ii = i + dy - r;
                    if (ii < 0 || ii >= H) continue;
                    const nf_real *orow = o + (int64_t)i * W + j0;
                    nf_real *xrow = xc + (int64_t)ii * W + j0 + dx - r;
#pragma omp simd
                    for (int32_t j = 0; j < j1 - j0; j++) xrow[j] += orow[j];
                }
            }
}

/* y = conv_k(x) + b for n samples (see kernels.h); nf_conv2d_forward_ex without the ReLU. */
void nf_conv2d_forward(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *b, nf_real *y,
                       int64_t ldy, int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k,
                       nf_real *work) {
    nf_conv2d_forward_ex(x, ldx, w, b, y, ldy, n, Cin, Cout, H, W, k, work, 0);
}

/* Σ v[0..n) in a fixed order that does not wait on one addition at a time: 8 running sums (lane j takes
 * v[j], v[j + 8], …), then the lanes added pairwise and the tail. One chain of n dependent additions
 * cost as much as a 1×1 convolution's weight gradient in glow-small's bias gradients; the order is a
 * function of n only, so results stay independent of the thread count. */
static nf_real sum_lanes(const nf_real *v, int64_t n) {
    nf_real a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) a[j] += v[i + j];
    nf_real t = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; i < n; i++) t += v[i];
    return t;
}

static void forward_impl(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *b, nf_real *y, int64_t ldy,
                         int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k, nf_real *work, int relu,
                         const nf_real *res, int64_t ldres);

/* y (n, Cout, H, W) = conv_k(x) + b, then max(·, 0) if relu; all arrays the caller's, work of
 * nf_conv2d_work_size floats. Bit-identical for every thread count. */
void nf_conv2d_forward_ex(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *b, nf_real *y,
                          int64_t ldy, int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k,
                          nf_real *work, int relu) {
    forward_impl(x, ldx, w, b, y, ldy, n, Cin, Cout, H, W, k, work, relu, NULL, 0);
}

/* See kernels.h: y = max(conv(x) + b + res, 0), the sum and ReLU fused per sample. */
void nf_conv2d_forward_res(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *b, nf_real *y,
                           int64_t ldy, int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k,
                           nf_real *work, const nf_real *res, int64_t ldres) {
    forward_impl(x, ldx, w, b, y, ldy, n, Cin, Cout, H, W, k, work, 0, res, ldres);
}

/* Sample s's epilogue of forward_impl: ys ← max(ys + rs, 0) over its m values (simd: a select). */
static void residual_relu(nf_real *ys, const nf_real *rs, int64_t m) {
#pragma omp simd
    for (int64_t e = 0; e < m; e++) {
        nf_real v = ys[e] + rs[e];
        ys[e] = v > 0 ? v : 0;
    }
}

/* Sample s's epilogue of the im2col path: ys (Cout, P) ← ys + b, then max(·, 0) if relu — one sweep
 * while the sample's product is still in cache (the product is written with beta = 0, so the bias is
 * not stored first and read back). The same single rounding as a product accumulated onto the bias. */
static void bias_relu(nf_real *ys, const nf_real *b, int32_t Cout, int64_t P, int relu) {
    if (!b && !relu) return;
    for (int32_t o = 0; o < Cout; o++) {
        nf_real bo = b ? b[o] : 0, *yo = ys + o * P;
        if (relu)
#pragma omp simd
            for (int64_t p = 0; p < P; p++) {
                nf_real v = yo[p] + bo;
                yo[p] = v > 0 ? v : 0;
            }
        else
#pragma omp simd
            for (int64_t p = 0; p < P; p++) yo[p] += bo;
    }
}

/* The forward pass of every path: y = conv(x) + b, then max(·, 0) if relu, or with res: max(· + res, 0). */
static void forward_impl(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *b, nf_real *y, int64_t ldy,
                         int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k, nf_real *work, int relu,
                         const nf_real *res, int64_t ldres) {
    int64_t P = (int64_t)H * W, K = (int64_t)Cin * k * k, T = thread_stride(Cin, Cout, H, W, k);
    int wg = winograd(k, Cin, Cout, P), dir = !wg && direct(k, Cin, Cout, P), osd = !wg && !dir && output_side(Cin, Cout, k);
    nf_real *Wr = work + (int64_t)max_threads() * T; /* re-laid (output-side), packed (direct) or transformed weights */
    if (wg) nf_convw_pack(w, Cin, Cout, 0, Wr);
    if (dir) nf_convd_pack(w, Cin, Cout, k, 0, Wr);
    if (osd) relayout_weights(w, Cin, Cout, k, Wr);
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < n; s++) {
        nf_real *ys = y + s * ldy;
        const nf_real *col = x + s * ldx;
        if (wg) nf_convw_sample(x + s * ldx, Wr, b, ys, Cin, Cout, H, W, relu, work + (int64_t)thread_id() * T);
        else if (dir) nf_convd_sample(x + s * ldx, Wr, b, ys, Cin, Cout, H, W, k, relu, work + (int64_t)thread_id() * T);
        else if (osd) {
            nf_real *Z = work + (int64_t)thread_id() * T; /* k²·Cout·P ≤ K·P values */
            nf_gemm(0, 0, (int64_t)k * k * Cout, P, Cin, 1, Wr, Cin, x + s * ldx, P, 0, Z, P);
            for (int32_t o = 0; o < Cout; o++) {
                nf_real bo = b ? b[o] : 0;
#pragma omp simd
                for (int64_t p = 0; p < P; p++) ys[o * P + p] = bo;
            }
            shift_add(Z, Cout, H, W, k, ys);
            if (relu)
#pragma omp simd
                for (int64_t e = 0; e < Cout * P; e++) ys[e] = ys[e] > 0 ? ys[e] : 0;
        } else {
            if (k > 1) {
                nf_real *c = work + (int64_t)thread_id() * T;
                im2col(x + s * ldx, Cin, H, W, k, c);
                col = c;
            }
            nf_gemm(0, 0, Cout, P, K, 1, w, K, col, P, 0, ys, P);
            bias_relu(ys, b, Cout, P, relu);
        }
        if (res) residual_relu(ys, res + s * ldres, Cout * P); /* the same sample, still in cache */
    }
}

/* dw += ∂L/∂w, db += ∂L/∂b, dx = ∂L/∂x from dy (see kernels.h); nf_conv2d_backward_ex without the ReLU. */
void nf_conv2d_backward(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *dy, int64_t ldy,
                        nf_real *dx, int64_t lddx, nf_real *dw, nf_real *db, int64_t n, int32_t Cin,
                        int32_t Cout, int32_t H, int32_t W, int32_t k, nf_real *work) {
    nf_conv2d_backward_ex(x, ldx, w, (nf_real *)dy /* not written: no relu_out */, ldy, dx, lddx, dw, db, n, Cin, Cout, H, W, k, work, NULL);
}

/* Gradients of the convolution from dy (masked in place by relu_out > 0 when relu_out is not NULL):
 * dw, db (may be NULL) accumulated, dx (may be NULL) overwritten; all arrays the caller's. */
static void backward_impl(const nf_real *x, int64_t ldx, const nf_real *w, nf_real *dy, int64_t ldy, nf_real *dx, int64_t lddx,
                          nf_real *dw, nf_real *db, int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k,
                          nf_real *work, const nf_real *relu_out, nf_real *acc, int64_t ldacc);
void nf_conv2d_backward_ex(const nf_real *x, int64_t ldx, const nf_real *w, nf_real *dy, int64_t ldy,
                           nf_real *dx, int64_t lddx, nf_real *dw, nf_real *db, int64_t n, int32_t Cin,
                           int32_t Cout, int32_t H, int32_t W, int32_t k, nf_real *work, const nf_real *relu_out) {
    backward_impl(x, ldx, w, dy, ldy, dx, lddx, dw, db, n, Cin, Cout, H, W, k, work, relu_out, NULL, 0);
}

/* See kernels.h: nf_conv2d_backward_ex, then acc += dx per sample while the sample's dx is in cache. */
void nf_conv2d_backward_acc(const nf_real *x, int64_t ldx, const nf_real *w, nf_real *dy, int64_t ldy, nf_real *dx,
                            int64_t lddx, nf_real *dw, nf_real *db, int64_t n, int32_t Cin, int32_t Cout, int32_t H,
                            int32_t W, int32_t k, nf_real *work, const nf_real *relu_out, nf_real *acc, int64_t ldacc) {
    backward_impl(x, ldx, w, dy, ldy, dx, lddx, dw, db, n, Cin, Cout, H, W, k, work, relu_out, acc, ldacc);
}

/* The backward pass of every path (see nf_conv2d_backward_ex); with acc (and dx): acc_s += dx_s per sample. */
static void backward_impl(const nf_real *x, int64_t ldx, const nf_real *w, nf_real *dy, int64_t ldy, nf_real *dx, int64_t lddx,
                          nf_real *dw, nf_real *db, int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k,
                          nf_real *work, const nf_real *relu_out, nf_real *acc, int64_t ldacc) {
    int64_t P = (int64_t)H * W, K = (int64_t)Cin * k * k, T = thread_stride(Cin, Cout, H, W, k);
    /* parameter gradients: fixed chunks of DW_CHUNK samples in parallel, each into its own partial sum
     * (samples in order within a chunk), then the partials added in chunk order */
    int64_t chunks = (n + DW_CHUNK - 1) / DW_CHUNK;
    nf_real *part = work + (int64_t)max_threads() * T; /* (chunks, Cout, K + 1) */
    nf_real *Wr = part + chunks * Cout * (K + 1);      /* re-laid (output-side) or packed (direct) weights */
    /* weight gradient: direct, output-side (partials in the re-laid layout) or im2col; input gradient (a
     * convolution with Cin outputs): direct, output-side or im2col — chosen separately */
    int dw_wino = winograd(k, Cin, Cout, P), dw_direct = !dw_wino && direct_dw(k, Cin, Cout, P);
    int dw_osd = !dw_wino && !dw_direct && output_side(Cin, Cout, k);
    int dx_wino = winograd(k, Cout, Cin, P), dx_direct = !dx_wino && direct(k, Cout, Cin, P);
    int dx_osd = !dx_wino && !dx_direct && output_side(Cin, Cout, k);
    if (dx && dx_wino) nf_convw_pack(w, Cin, Cout, 1, Wr);
    if (dx && dx_direct) nf_convd_pack(w, Cin, Cout, k, 1, Wr); /* dx = conv(dy, flipped and transposed w) */
    if (dx && dx_osd) relayout_weights(w, Cin, Cout, k, Wr);
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < chunks; ch++) {
        nf_real *pw = part + ch * Cout * (K + 1), *pb = pw + Cout * K;
        memset(pw, 0, sizeof(nf_real) * (size_t)(Cout * (K + 1)));
        for (int64_t s = ch * DW_CHUNK; s < n && s < (ch + 1) * DW_CHUNK; s++) {
            nf_real *dys = dy + s * ldy;
            const nf_real *col = x + s * ldx;
            if (relu_out) { /* dy ← dy ⊙ [out > 0], once per sample (chunks partition the samples) */
                const nf_real *ro = relu_out + s * ldy;
#pragma omp simd
                for (int64_t e = 0; e < Cout * P; e++) dys[e] = ro[e] > 0 ? dys[e] : 0;
            }
            if (dw_wino) { /* into the transformed-domain sum dU, after the thread's Winograd scratch */
                nf_real *tw = work + (int64_t)thread_id() * T, *dU = tw + nf_convw_work_size(Cin, Cout, H, W);
                if (s == ch * DW_CHUNK) memset(dU, 0, sizeof(nf_real) * (size_t)nf_convw_packed_size(Cin, Cout));
                nf_convw_dw_sample(x + s * ldx, dys, Cin, Cout, H, W, dU, tw);
                if (s + 1 == n || s + 1 == (ch + 1) * DW_CHUNK) nf_convw_dw_finish(dU, Cin, Cout, pw);
            } else if (dw_direct) {
                nf_convd_dw_sample(x + s * ldx, dys, Cin, Cout, H, W, pw, work + (int64_t)thread_id() * T);
            } else if (dw_osd) { /* partial in the re-laid layout (k²·Cout, Cin), mapped back when summed */
                nf_real *dZ = work + (int64_t)thread_id() * T;
                shift_gather(dys, Cout, H, W, k, dZ);
                nf_gemm(0, 1, (int64_t)k * k * Cout, Cin, P, 1, dZ, P, col, P, 1, pw, Cin);
            } else {
                if (k > 1) {
                    nf_real *c = work + (int64_t)thread_id() * T;
                    im2col(x + s * ldx, Cin, H, W, k, c);
                    col = c;
                }
                nf_gemm(0, 1, Cout, K, P, 1, dys, P, col, P, 1, pw, K);
            }
            for (int32_t o = 0; o < Cout; o++) pb[o] += sum_lanes(dys + o * P, P);
        }
    }
    int64_t nw = Cout * (K + 1);
#pragma omp parallel for schedule(static) if (nw > 4096)
    for (int64_t e = 0; e < nw; e++) {
        nf_real t = 0;
        for (int64_t ch = 0; ch < chunks; ch++) t += part[ch * nw + e];
        if (e >= Cout * K) {
            if (db) db[e - Cout * K] += t;
        } else if (dw_osd) { /* e = (tap·Cout + o)·Cin + c  →  w[o][c][tap] */
            int64_t c = e % Cin, to = e / Cin, o = to % Cout, tap = to / Cout;
            dw[(o * Cin + c) * k * k + tap] += t;
        } else {
            dw[e] += t;
        }
    }
    if (!dx) return;
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < n; s++) {
        nf_real *dxs = dx + s * lddx;
        if (dx_wino) nf_convw_sample(dy + s * ldy, Wr, NULL, dxs, Cout, Cin, H, W, 0, work + (int64_t)thread_id() * T);
        else if (dx_direct) nf_convd_sample(dy + s * ldy, Wr, NULL, dxs, Cout, Cin, H, W, k, 0, work + (int64_t)thread_id() * T);
        else if (dx_osd) { /* dx_s = Wrᵀ · dZ_s */
            nf_real *dZ = work + (int64_t)thread_id() * T;
            shift_gather(dy + s * ldy, Cout, H, W, k, dZ);
            nf_gemm(1, 0, Cin, P, (int64_t)k * k * Cout, 1, Wr, Cin, dZ, P, 0, dxs, P);
        } else if (k == 1) { /* dx_s = wᵀ · dy_s directly */
            nf_gemm(1, 0, K, P, Cout, 1, w, K, dy + s * ldy, P, 0, dxs, P);
        } else {
            nf_real *dcol = work + (int64_t)thread_id() * T;
            nf_gemm(1, 0, K, P, Cout, 1, w, K, dy + s * ldy, P, 0, dcol, P);
            memset(dxs, 0, sizeof(nf_real) * (size_t)(Cin * P));
            col2im_add(dcol, Cin, H, W, k, dxs);
        }
        if (acc) { /* the same sample's dx, still in cache */
            nf_real *as = acc + s * ldacc;
#pragma omp simd
            for (int64_t e = 0; e < Cin * P; e++) as[e] += dxs[e];
        }
    }
}

/* The naive seven-loop convolution y = conv_k(x) + b (b may be NULL): the tests' oracle. */
void nf_conv2d_ref(const nf_real *x, int64_t ldx, const nf_real *w, const nf_real *b, nf_real *y, int64_t ldy,
                   int64_t n, int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k) {
    int32_t r = k / 2;
    for (int64_t s = 0; s < n; s++)
        for (int32_t o = 0; o < Cout; o++)
            for (int32_t i = 0; i < H; i++)
                for (int32_t j = 0; j < W; j++) {
                    double acc = b ? b[o] : 0;
                    for (int32_t c = 0; c < Cin; c++)
                        for (int32_t dy = 0; dy < k; dy++)
                            for (int32_t dx = 0; dx < k; dx++) {
                                int32_t ii = i + dy - r, jj = j + dx - r;
                                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                                acc += (double)w[((o * Cin + c) * k + dy) * k + dx] * x[s * ldx + ((int64_t)c * H + ii) * W + jj];
                            }
                    y[s * ldy + ((int64_t)o * H + i) * W + j] = (nf_real)acc;
                }
}
