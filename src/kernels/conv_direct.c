/* conv_direct.c — direct convolutions of one sample, stride 1, "same" zero padding, k = 3 and k = 1,
 * hand-vectorised for AVX2 + FMA and chosen at run time; elsewhere conv.c keeps im2col + BLAS.
 *
 * Why: im2col copies each input value nine times into a (9·Cin, H·W) matrix that BLAS then packs again,
 * and BLAS re-packs the weights for every sample; for RealNVP's 64 → 64 convolutions and Glow's
 * 128 → 128 1×1 convolutions that traffic costs a large part of the time. The direct form reads the
 * input in place:
 *
 *   k = 3: pad each channel into rows of Wp = W + 2 values with a zero row above and below (xp), and
 *   compute the output on the same padded grid, q = i·Wp + j (the two columns j ≥ W are discarded).
 *   Then tap (dy, dx) of output q reads xp[q + dy·Wp + dx] — a contiguous, shifted vector — so
 *     out[o][q] = b[o] + Σ_c Σ_t w[o][c][t] · xp[c][q + off_t],   off_t = dy·Wp + dx
 *   is a sum of broadcast-weight × shifted-vector FMAs with no gathers and no branches.
 *   k = 1: the same with one tap on the unpadded grid, written straight into y.
 *
 * The micro-kernel keeps a block of 4 output channels × 24 positions (12 AVX2 registers) and runs over
 * all (input channel, tap) pairs; weights are packed as (⌈Cout/4⌉, Cin, k², 4). The input gradient of
 * such a convolution is itself one, of dy with the kernel flipped and its channels transposed, so conv.c
 * uses the same kernel for forward and dx (pack with flip = 1). The weight gradient of a 3×3
 * convolution is a sum over the padded grid of dy times shifted input rows (nf_convd_dw_sample).
 * Each output value is one fixed sequence of FMAs: results do not depend on the thread count. */
#include "kernels/kernels.h"

#define CB 4         /* output channels per block */
#define QB_AVX2 24   /* padded-grid positions per block: 3 vectors of 8 floats (AVX2) … */
#define QB_AVX512 48 /* … or 3 vectors of 16 floats (AVX-512) */
#define QB_MAX 48    /* work sizes are computed for the widest block, so any path fits */

/* a rounded up to a multiple of m (a ≥ 0, m > 0). */
static int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

typedef struct {
    int32_t Wp;      /* padded row length */
    int64_t Q, Qp;   /* output positions on the padded grid, rounded up to QB */
    int64_t cs;      /* floats per padded input channel (room for the last block's over-read) */
} geometry;

/* The padded grid of an H × W image for position blocks of qb. */
static geometry geom(int32_t H, int32_t W, int64_t qb) {
    geometry g;
    g.Wp = W + 2;
    g.Q = (int64_t)H * g.Wp;
    g.Qp = round_up(g.Q, qb);
    g.cs = round_up(g.Qp + 2 * (int64_t)g.Wp + 2, 8); /* ≥ (H + 2)·Wp: the whole padded image */
    return g;
}

#if defined(__x86_64__) && !defined(NFLOW_DOUBLE) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_KERNEL 1
#include <immintrin.h>
#else
#define HAVE_AVX2_KERNEL 0
#endif

/* The direct kernels need AVX2 + FMA at least (the AVX-512 path widens the position block). */
static int cpu_has_avx2_fma(void) { return HAVE_AVX2_KERNEL && nf_isa_active() >= NF_ISA_AVX2; }

static int direct_enabled = -1; /* -1: not decided yet */

/* 1 if the direct kernels are used: NFLOW_CONV is not "im2col" (read once) and the active ISA path has
 * them (checked on every call, so lowering the path with nf_isa_set turns them off too). */
int nf_convd_available(void) {
    if (direct_enabled < 0) {
        const char *env = getenv("NFLOW_CONV");
        /* benign race: every caller stores the same value */
        direct_enabled = !(env && strcmp(env, "im2col") == 0);
    }
    return direct_enabled && cpu_has_avx2_fma();
}

/* Force the direct kernels on (only if the CPU has them) or off; returns the previous setting. */
int nf_convd_set(int on) {
    int was = nf_convd_available();
    direct_enabled = !!on; /* nf_convd_available still asks the active ISA path: never on without the instructions */
    return was;
}

/* Floats of scratch nf_convd_sample needs for one sample of this shape (k = 1 or 3). */
int64_t nf_convd_work_size(int32_t Cin, int32_t Cout, int32_t H, int32_t W, int32_t k) {
    if (k == 1) return ((int64_t)Cin + CB) * QB_MAX; /* the last, partial block's input and output */
    geometry g = geom(H, W, QB_MAX);
    return (int64_t)Cin * g.cs + round_up(Cout, CB) * g.Qp;
}

/* Floats of the packed weights nf_convd_pack writes (outputs rounded up to blocks of CB). */
int64_t nf_convd_packed_size(int32_t Cin, int32_t Cout, int32_t k) { return round_up(Cout, CB) * Cin * k * k; }

/* Pack w (Cout, Cin, k, k) into wp (nf_convd_packed_size floats, caller's) in output blocks of CB,
 * zero-padded; flip = 1 packs the transposed, flipped kernel for the input gradient. */
void nf_convd_pack(const nf_real *w, int32_t Cin, int32_t Cout, int32_t k, int flip, nf_real *wp) {
    /* flip = 0: wp packs w (Cout, Cin, k, k) for y = conv(x).
     * flip = 1: wp packs w' (Cin, Cout, k, k), w'[c][o][t] = w[o][c][k² − 1 − t], for dx = conv(dy, w'). */
    int32_t no = flip ? Cin : Cout, ni = flip ? Cout : Cin, kk = k * k;
    int64_t nop = round_up(no, CB);
    for (int64_t o = 0; o < nop; o++)
        for (int32_t c = 0; c < ni; c++)
            for (int32_t t = 0; t < kk; t++) {
                nf_real v = 0;
                if (o < no) v = flip ? w[((int64_t)c * Cin + o) * kk + kk - 1 - t] : w[(o * Cin + c) * kk + t];
                wp[(((o / CB) * ni + c) * kk + t) * CB + o % CB] = v;
            }
}

#if HAVE_AVX2_KERNEL
/* out[o][q0 .. q0 + 24) for the 4 channels of one block: bias + Σ over Cin channels (cs floats apart) and
 * taps (at off[t]), then max(·, 0) if relu; rows of out ldo floats apart */
__attribute__((target("avx2,fma"))) static void block_4x24(const float *xp, int64_t cs, int32_t Cin, int taps,
                                                           const int64_t *off, const float *wb, const float *bias,
                                                           int relu, float *out, int64_t ldo) {
    __m256 a00 = _mm256_broadcast_ss(bias), a01 = a00, a02 = a00, a10 = _mm256_broadcast_ss(bias + 1), a11 = a10, a12 = a10;
    __m256 a20 = _mm256_broadcast_ss(bias + 2), a21 = a20, a22 = a20, a30 = _mm256_broadcast_ss(bias + 3), a31 = a30, a32 = a30;
    for (int32_t c = 0; c < Cin; c++, xp += cs) {
        for (int t = 0; t < taps; t++, wb += CB) {
            const float *xt = xp + off[t];
            __m256 x0 = _mm256_loadu_ps(xt), x1 = _mm256_loadu_ps(xt + 8), x2 = _mm256_loadu_ps(xt + 16);
            __m256 w = _mm256_broadcast_ss(wb);
            a00 = _mm256_fmadd_ps(w, x0, a00), a01 = _mm256_fmadd_ps(w, x1, a01), a02 = _mm256_fmadd_ps(w, x2, a02);
            w = _mm256_broadcast_ss(wb + 1);
            a10 = _mm256_fmadd_ps(w, x0, a10), a11 = _mm256_fmadd_ps(w, x1, a11), a12 = _mm256_fmadd_ps(w, x2, a12);
            w = _mm256_broadcast_ss(wb + 2);
            a20 = _mm256_fmadd_ps(w, x0, a20), a21 = _mm256_fmadd_ps(w, x1, a21), a22 = _mm256_fmadd_ps(w, x2, a22);
            w = _mm256_broadcast_ss(wb + 3);
            a30 = _mm256_fmadd_ps(w, x0, a30), a31 = _mm256_fmadd_ps(w, x1, a31), a32 = _mm256_fmadd_ps(w, x2, a32);
        }
    }
    if (relu) {
        __m256 z = _mm256_setzero_ps();
        a00 = _mm256_max_ps(a00, z), a01 = _mm256_max_ps(a01, z), a02 = _mm256_max_ps(a02, z);
        a10 = _mm256_max_ps(a10, z), a11 = _mm256_max_ps(a11, z), a12 = _mm256_max_ps(a12, z);
        a20 = _mm256_max_ps(a20, z), a21 = _mm256_max_ps(a21, z), a22 = _mm256_max_ps(a22, z);
        a30 = _mm256_max_ps(a30, z), a31 = _mm256_max_ps(a31, z), a32 = _mm256_max_ps(a32, z);
    }
    _mm256_storeu_ps(out, a00), _mm256_storeu_ps(out + 8, a01), _mm256_storeu_ps(out + 16, a02);
    out += ldo;
    _mm256_storeu_ps(out, a10), _mm256_storeu_ps(out + 8, a11), _mm256_storeu_ps(out + 16, a12);
    out += ldo;
    _mm256_storeu_ps(out, a20), _mm256_storeu_ps(out + 8, a21), _mm256_storeu_ps(out + 16, a22);
    out += ldo;
    _mm256_storeu_ps(out, a30), _mm256_storeu_ps(out + 8, a31), _mm256_storeu_ps(out + 16, a32);
}

/* block_4x24 with 16-float vectors: out[o][q0 .. q0 + 48) for the 4 channels of one block. Each output
 * lane sees the same FMAs in the same order as in block_4x24, so both paths give identical results. */
__attribute__((target("avx512f,fma"))) static void block_4x48(const float *xp, int64_t cs, int32_t Cin, int taps,
                                                              const int64_t *off, const float *wb, const float *bias,
                                                              int relu, float *out, int64_t ldo) {
    __m512 a00 = _mm512_set1_ps(bias[0]), a01 = a00, a02 = a00, a10 = _mm512_set1_ps(bias[1]), a11 = a10, a12 = a10;
    __m512 a20 = _mm512_set1_ps(bias[2]), a21 = a20, a22 = a20, a30 = _mm512_set1_ps(bias[3]), a31 = a30, a32 = a30;
    for (int32_t c = 0; c < Cin; c++, xp += cs) {
        for (int t = 0; t < taps; t++, wb += CB) {
            const float *xt = xp + off[t];
            __m512 x0 = _mm512_loadu_ps(xt), x1 = _mm512_loadu_ps(xt + 16), x2 = _mm512_loadu_ps(xt + 32);
            __m512 w = _mm512_set1_ps(wb[0]);
            a00 = _mm512_fmadd_ps(w, x0, a00), a01 = _mm512_fmadd_ps(w, x1, a01), a02 = _mm512_fmadd_ps(w, x2, a02);
            w = _mm512_set1_ps(wb[1]);
            a10 = _mm512_fmadd_ps(w, x0, a10), a11 = _mm512_fmadd_ps(w, x1, a11), a12 = _mm512_fmadd_ps(w, x2, a12);
            w = _mm512_set1_ps(wb[2]);
            a20 = _mm512_fmadd_ps(w, x0, a20), a21 = _mm512_fmadd_ps(w, x1, a21), a22 = _mm512_fmadd_ps(w, x2, a22);
            w = _mm512_set1_ps(wb[3]);
            a30 = _mm512_fmadd_ps(w, x0, a30), a31 = _mm512_fmadd_ps(w, x1, a31), a32 = _mm512_fmadd_ps(w, x2, a32);
        }
    }
    if (relu) {
        __m512 z = _mm512_setzero_ps();
        a00 = _mm512_max_ps(a00, z), a01 = _mm512_max_ps(a01, z), a02 = _mm512_max_ps(a02, z);
        a10 = _mm512_max_ps(a10, z), a11 = _mm512_max_ps(a11, z), a12 = _mm512_max_ps(a12, z);
        a20 = _mm512_max_ps(a20, z), a21 = _mm512_max_ps(a21, z), a22 = _mm512_max_ps(a22, z);
        a30 = _mm512_max_ps(a30, z), a31 = _mm512_max_ps(a31, z), a32 = _mm512_max_ps(a32, z);
    }
    _mm512_storeu_ps(out, a00), _mm512_storeu_ps(out + 16, a01), _mm512_storeu_ps(out + 32, a02);
    out += ldo;
    _mm512_storeu_ps(out, a10), _mm512_storeu_ps(out + 16, a11), _mm512_storeu_ps(out + 32, a12);
    out += ldo;
    _mm512_storeu_ps(out, a20), _mm512_storeu_ps(out + 16, a21), _mm512_storeu_ps(out + 32, a22);
    out += ldo;
    _mm512_storeu_ps(out, a30), _mm512_storeu_ps(out + 16, a31), _mm512_storeu_ps(out + 32, a32);
}

typedef void (*block_fn)(const float *, int64_t, int32_t, int, const int64_t *, const float *, const float *, int, float *, int64_t);

/* The block kernel of the active path and its width in positions. */
static block_fn block_kernel(int64_t *qb) {
    int wide = nf_isa_active() >= NF_ISA_AVX512;
    *qb = wide ? QB_AVX512 : QB_AVX2;
    return wide ? block_4x48 : block_4x24;
}

/* rows × W floats from src (row stride ss) to dst (row stride ds), plus add, then max(·, 0) if relu:
 * full vectors and one masked tail per row, never touching a float outside the rows */
__attribute__((target("avx2,fma"))) static void copy_rows(const float *src, int64_t ss, float *dst, int64_t ds,
                                                          int32_t rows, int32_t W, float add, int relu) {
    static const int32_t lanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    __m256i tail = _mm256_loadu_si256((const __m256i *)(lanes + 8 - W % 8));
    __m256 a = _mm256_set1_ps(add), z = _mm256_setzero_ps();
    int32_t full = W - W % 8;
    for (int32_t i = 0; i < rows; i++, src += ss, dst += ds) {
        for (int32_t j = 0; j < full; j += 8) {
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(src + j), a);
            _mm256_storeu_ps(dst + j, relu ? _mm256_max_ps(v, z) : v);
        }
        if (full < W) {
            __m256 v = _mm256_add_ps(_mm256_maskload_ps(src + full, tail), a);
            _mm256_maskstore_ps(dst + full, tail, relu ? _mm256_max_ps(v, z) : v);
        }
    }
}

/* xp (Cin, cs) = x (Cin, H, W) on the padded grid: each row one row down and one column right; only the
 * border is zeroed (the row above, the two columns between rows, everything after the last row) */
static void pad_input(const float *x, int32_t Cin, int32_t H, int32_t W, geometry g, float *xp) {
    for (int32_t c = 0; c < Cin; c++) {
        float *xc = xp + c * g.cs;
        memset(xc, 0, sizeof(float) * (size_t)(g.Wp + 1));
        for (int32_t i = 0; i < H; i++) xc[(int64_t)(i + 1) * g.Wp + W + 1] = xc[(int64_t)(i + 2) * g.Wp] = 0;
        int64_t end = (int64_t)(H + 1) * g.Wp + 1;
        memset(xc + end, 0, sizeof(float) * (size_t)(g.cs - end));
        copy_rows(x + (int64_t)c * H * W, W, xc + g.Wp + 1, g.Wp, H, W, 0, 0);
    }
}

/* Weight gradient of one (4-channel block, input channel, kernel row dy): r[o][dx] = Σ_q dyp[o][q] ·
 * xr[q + dx] over the padded grid (dyp is zero on the padding columns), 4 × 3 accumulators */
__attribute__((target("avx2,fma"))) static void dw_block(const float *dyp, int64_t Qp, const float *xr, float r[CB][3]) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m256 a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
    for (int64_t q = 0; q < Qp; q += 8) {
        __m256 x0 = _mm256_loadu_ps(xr + q), x1 = _mm256_loadu_ps(xr + q + 1), x2 = _mm256_loadu_ps(xr + q + 2);
        __m256 d = _mm256_loadu_ps(dyp + q);
        a00 = _mm256_fmadd_ps(d, x0, a00), a01 = _mm256_fmadd_ps(d, x1, a01), a02 = _mm256_fmadd_ps(d, x2, a02);
        d = _mm256_loadu_ps(dyp + Qp + q);
        a10 = _mm256_fmadd_ps(d, x0, a10), a11 = _mm256_fmadd_ps(d, x1, a11), a12 = _mm256_fmadd_ps(d, x2, a12);
        d = _mm256_loadu_ps(dyp + 2 * Qp + q);
        a20 = _mm256_fmadd_ps(d, x0, a20), a21 = _mm256_fmadd_ps(d, x1, a21), a22 = _mm256_fmadd_ps(d, x2, a22);
        d = _mm256_loadu_ps(dyp + 3 * Qp + q);
        a30 = _mm256_fmadd_ps(d, x0, a30), a31 = _mm256_fmadd_ps(d, x1, a31), a32 = _mm256_fmadd_ps(d, x2, a32);
    }
    __m256 acc[CB][3] = {{a00, a01, a02}, {a10, a11, a12}, {a20, a21, a22}, {a30, a31, a32}};
    for (int o = 0; o < CB; o++)
        for (int t = 0; t < 3; t++) { /* fixed-order horizontal sum */
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[o][t]), _mm256_extractf128_ps(acc[o][t], 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_movehdup_ps(h));
            r[o][t] = _mm_cvtss_f32(h);
        }
}
#endif

#if HAVE_AVX2_KERNEL
/* the bias of output block ob, zero beyond Cout */
static void block_bias(const nf_real *b, int32_t Cout, int64_t ob, float bb[CB]) {
    for (int i = 0; i < CB; i++) bb[i] = b && ob * CB + i < Cout ? b[ob * CB + i] : 0;
}

/* One sample's 3×3 convolution y (Cout, H, W) = conv(x) + b (+ ReLU if relu) from packed weights
 * wp; work holds the padded input and the padded output (nf_convd_work_size). */
static void sample_3x3(const float *x, const float *wp, const float *b, float *y, int32_t Cin, int32_t Cout,
                       int32_t H, int32_t W, int relu, float *work) {
    int64_t QB;
    block_fn block = block_kernel(&QB);
    geometry g = geom(H, W, QB);
    float *xp = work, *out = work + (int64_t)Cin * g.cs, bb[CB];
    pad_input(x, Cin, H, W, g, xp);
    int64_t off[9];
    for (int t = 0; t < 9; t++) off[t] = (int64_t)(t / 3) * g.Wp + t % 3;
    int64_t blocks = round_up(Cout, CB) / CB;
    for (int64_t ob = 0; ob < blocks; ob++) {
        block_bias(b, Cout, ob, bb);
        for (int64_t q = 0; q < g.Qp; q += QB)
            block(xp + q, g.cs, Cin, 9, off, wp + ob * Cin * 9 * CB, bb, relu, out + ob * CB * g.Qp + q, g.Qp);
    }
    /* back to (Cout, H, W): drop the two padding columns */
    for (int32_t o = 0; o < Cout; o++) copy_rows(out + (int64_t)o * g.Qp, g.Wp, y + (int64_t)o * H * W, W, H, W, 0, 0);
}

/* One sample's 1×1 convolution y (Cout, P) = wp·x + b (+ ReLU) over P pixels; work holds the
 * last partial block's input and output. */
static void sample_1x1(const float *x, const float *wp, const float *b, float *y, int32_t Cin, int32_t Cout, int64_t P,
                       int relu, float *work) {
    static const int64_t off0[1] = {0};
    int64_t QB;
    block_fn block = block_kernel(&QB);
    float *tin = work, *tout = work + (int64_t)Cin * QB, bb[CB];
    int64_t blocks = round_up(Cout, CB) / CB, full = P - P % QB;
    if (full < P) /* the last, partial block of positions: its input copied into a zero-padded (Cin, 24) */
        for (int32_t c = 0; c < Cin; c++)
            for (int64_t j = 0; j < QB; j++) tin[c * QB + j] = full + j < P ? x[c * P + full + j] : 0;
    /* positions outer, channel blocks inner: the (Cin, 24) input slice stays in L1 while the packed
     * weights stream past it */
    for (int64_t q = 0; q < P; q += QB) {
        int tail = q == full; /* the last, partial block of positions: from tin, through tout */
        for (int64_t ob = 0; ob < blocks; ob++) {
            block_bias(b, Cout, ob, bb);
            const float *wb = wp + ob * Cin * CB;
            if (!tail && (ob + 1) * CB <= Cout) {
                block(x + q, P, Cin, 1, off0, wb, bb, relu, y + ob * CB * P + q, P);
                continue;
            }
            block(tail ? tin : x + q, tail ? QB : P, Cin, 1, off0, wb, bb, relu, tout, QB);
            for (int64_t o = ob * CB; o < Cout && o < (ob + 1) * CB; o++)
                memcpy(y + o * P + q, tout + (o - ob * CB) * QB, sizeof(float) * (size_t)(tail ? P - full : QB));
        }
    }
}
#endif

/* One sample through the direct kernel for k = 1 or 3 (a no-op where the kernels are not built;
 * callers check nf_convd_available first). All arrays the caller's. */
void nf_convd_sample(const nf_real *x, const nf_real *wp, const nf_real *b, nf_real *y, int32_t Cin, int32_t Cout,
                     int32_t H, int32_t W, int32_t k, int relu, nf_real *work) {
#if HAVE_AVX2_KERNEL
    if (k == 1) sample_1x1(x, wp, b, y, Cin, Cout, (int64_t)H * W, relu, work);
    else sample_3x3(x, wp, b, y, Cin, Cout, H, W, relu, work);
#else
    (void)x, (void)wp, (void)b, (void)y, (void)Cin, (void)Cout, (void)H, (void)W, (void)k, (void)relu, (void)work;
#endif
}

/* dw (Cout, Cin, 3, 3) += one sample's 3×3 weight gradient from x (Cin, H, W) and dy (Cout, H, W);
 * work of nf_convd_work_size floats. A no-op where the kernels are not built. */
void nf_convd_dw_sample(const nf_real *x, const nf_real *dy, int32_t Cin, int32_t Cout, int32_t H, int32_t W,
                          nf_real *dw, nf_real *work) {
#if HAVE_AVX2_KERNEL
    geometry g = geom(H, W, QB_AVX2); /* dw_block steps through the grid 8 floats at a time */
    int64_t COP = round_up(Cout, CB);
    float *xp = work, *dyp = work + (int64_t)Cin * g.cs;
    pad_input(x, Cin, H, W, g, xp);
    /* dy onto the padded output grid, zero on the two padding columns, the tail and the block's extra rows */
    memset(dyp, 0, sizeof(float) * (size_t)(COP * g.Qp));
    for (int32_t o = 0; o < Cout; o++) copy_rows(dy + (int64_t)o * H * W, W, dyp + o * g.Qp, g.Wp, H, W, 0, 0);
    float r[CB][3];
    for (int64_t ob = 0; ob < COP / CB; ob++)
        for (int32_t c = 0; c < Cin; c++)
            for (int32_t ky = 0; ky < 3; ky++) {
                dw_block(dyp + ob * CB * g.Qp, g.Qp, xp + c * g.cs + (int64_t)ky * g.Wp, r);
                for (int32_t o = 0; o < CB && ob * CB + o < Cout; o++)
                    for (int32_t kx = 0; kx < 3; kx++) dw[((ob * CB + o) * Cin + c) * 9 + ky * 3 + kx] += r[o][kx];
            }
#else
    (void)x, (void)dy, (void)Cin, (void)Cout, (void)H, (void)W, (void)dw, (void)work;
#endif
}
