/* conv_winograd.c — 3×3 convolutions ("same" padding, stride 1) by Winograd's minimal filtering
 * F(4×4, 3×3) (Lavin & Gray 2016): each 4×4 output tile costs 36 multiplications per (input, output)
 * channel pair instead of 144, so the channel products — which dominate — shrink by 4×.
 *
 * One tile: d is the 6×6 input patch whose top-left corner is one pixel above and left of the tile (zero
 * outside the image), g the 3×3 filter, and
 *     Y (4×4) = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
 * with the interpolation points 0, ±1, ±2 and ∞ (the matrices are written out in the 1-D transforms
 * below). Over channels the ⊙ becomes, for each of the 36 transform positions ξ, one matrix product
 *     M_ξ (Cout, T) = U_ξ (Cout, Cin) · V_ξ (Cin, T)
 * where U_ξ holds the transformed filters, V_ξ the transformed input tiles of one sample (T tiles), and
 * the output transform Aᵀ M A gives the tiles of y. The input gradient is the same computation with the
 * filters transposed and rotated by 180°. The weight gradient is the adjoint: dM = A dY Aᵀ per tile,
 * dU_ξ = dM_ξ · V_ξᵀ, dW = Gᵀ dU G.
 *
 * Rounding: the transforms multiply values by up to 8 (Aᵀ) and 5 (Bᵀ) before the products, so the error
 * is larger than a direct convolution's — tests/test_conv.c bounds it against the naive reference.
 * Products go through nf_gemm (one call per ξ and sample: the result does not depend on the thread count).
 */
#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

/* The transforms are element-wise vector loops: each is compiled for every instruction-set path (wider
 * vectors, the same operations in the same order — no contraction into FMAs under -std=c11 — so every path
 * gives the same bits) and chosen per call from nf_isa_active(). The loops are inlined into the per-path
 * entry points, which carry the target attribute. */
#define NF_INLINE static inline __attribute__((always_inline))
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ISA_PATHS(name, params, args)                                                                          \
    __attribute__((target("avx512f,fma"))) static void name##_avx512 params { name##_body args; }              \
    __attribute__((target("avx2,fma"))) static void name##_avx2 params { name##_body args; }                   \
    static void name##_generic params { name##_body args; }                                                    \
    static void name params {                                                                                  \
        nf_isa isa = nf_isa_active();                                                                          \
        if (isa >= NF_ISA_AVX512) name##_avx512 args;                                                          \
        else if (isa >= NF_ISA_AVX2) name##_avx2 args;                                                         \
        else name##_generic args;                                                                              \
    }
#else
#define ISA_PATHS(name, params, args) \
    static void name params { name##_body args; }
#endif

#define WT 4 /* output tile */
#define WA 6 /* input tile = WT + 3 − 1 */
#define WX 36

static int winograd_mode = -1; /* -1: not decided yet; else NF_CONVW_OFF / _AUTO / _ALWAYS */

/* How 3×3 convolutions may use Winograd: NF_CONVW_AUTO (conv.c's rule for wide channel counts) unless
 * NFLOW_CONV is "im2col" or "direct" (NF_CONVW_OFF) or "winograd" (NF_CONVW_ALWAYS, every 3×3
 * convolution); the environment is read once. */
int nf_convw_mode(void) {
    if (winograd_mode < 0) {
        const char *env = getenv("NFLOW_CONV");
        int m = NF_CONVW_AUTO;
        if (env && (strcmp(env, "im2col") == 0 || strcmp(env, "direct") == 0)) m = NF_CONVW_OFF;
        if (env && strcmp(env, "winograd") == 0) m = NF_CONVW_ALWAYS;
        winograd_mode = m; /* benign race: every caller stores the same value */
    }
    return winograd_mode;
}

/* Set the mode (tests and benchmarks); returns the previous one. */
int nf_convw_set(int mode) {
    int was = nf_convw_mode();
    winograd_mode = mode;
    return was;
}

/* Tiles of an H × W image as the transforms lay them out: th rows of tw + 1 tiles, th = ⌈H/4⌉,
 * tw = ⌈W/4⌉. The last tile of each row lies past the image: it lets every patch row be one contiguous
 * run of split_phases' planes (no gather), the products carry it and the output transform drops it; in
 * the weight gradient its output-side values are zero, so it adds nothing. */
static int32_t tile_rows(int32_t H) { return (H + WT - 1) / WT; }
static int32_t tile_cols(int32_t W) { return (W + WT - 1) / WT + 1; } /* the spare tile included */
static int64_t tiles(int32_t H, int32_t W) { return (int64_t)tile_rows(H) * tile_cols(W); }

/* Floats of one of split_phases' 16 planes: th + 1 rows of tw + 1, and one slack value. */
static int64_t plane_size(int32_t H, int32_t W) { return (int64_t)(tile_rows(H) + 1) * tile_cols(W) + 1; }

/* Floats of nf_convw_pack's output: the 36 transformed filter matrices. */
int64_t nf_convw_packed_size(int32_t Cin, int32_t Cout) { return (int64_t)WX * Cin * Cout; }

/* Floats of one channel's transform scratch: a (36, T) buffer and the 16 phase planes. */
static int64_t scratch_size(int32_t H, int32_t W) {
    return (int64_t)WX * tiles(H, W) + 16 * plane_size(H, W);
}

/* Floats of scratch for one sample: transformed input (36, Cin, T), products (36, Cout, T), and one
 * channel's transform scratch. */
int64_t nf_convw_work_size(int32_t Cin, int32_t Cout, int32_t H, int32_t W) {
    return (int64_t)WX * tiles(H, W) * ((int64_t)Cin + Cout) + scratch_size(H, W);
}

/* u = G g (3 → 6) for PACK_LANES filters at once, G = [1/4 0 0; −1/6 −1/6 −1/6; −1/6 1/6 −1/6;
 * 1/24 1/12 1/6; 1/24 −1/12 1/6; 0 0 1]; g[k] and u[k] hold row k for every lane. */
#define PACK_LANES 16
NF_INLINE void filter_lanes(const double *const g[3], double *const u[6]) {
    const double *g0_ = g[0], *g1_ = g[1], *g2_ = g[2];
#pragma omp simd
    for (int32_t l = 0; l < PACK_LANES; l++) {
        double g0 = g0_[l], g1 = g1_[l], g2 = g2_[l];
        u[0][l] = g0 / 4;
        u[1][l] = -(g0 + g1 + g2) / 6;
        u[2][l] = -(g0 - g1 + g2) / 6;
        u[3][l] = g0 / 24 + g1 / 12 + g2 / 6;
        u[4][l] = g0 / 24 - g1 / 12 + g2 / 6;
        u[5][l] = g2;
    }
}

/* Row r of nf_convw_pack's 36 matrices: Up[ξ][r][q] for every q < cols, PACK_LANES filters at a time
 * (one per q). The same operations in double on every path, so every path gives the same bits. */
NF_INLINE void pack_row_body(const nf_real *w, int32_t Cin, int32_t Cout, int flip, int32_t r, nf_real *Up) {
    int32_t rows = flip ? Cin : Cout, cols = flip ? Cout : Cin;
    double g[9][PACK_LANES], t[6][3][PACK_LANES], u[6][6][PACK_LANES];
    for (int32_t q0 = 0; q0 < cols; q0 += PACK_LANES) {
        int32_t nl = cols - q0 < PACK_LANES ? cols - q0 : PACK_LANES;
        for (int32_t l = 0; l < PACK_LANES; l++) { /* filter w[o][c], rotated by 180° with flip; 0 past the row */
            int32_t o = flip ? q0 + l : r, c = flip ? r : q0 + l;
            const nf_real *gp = l < nl ? w + ((int64_t)o * Cin + c) * 9 : NULL;
            for (int32_t k = 0; k < 9; k++) g[k][l] = gp ? gp[flip ? 8 - k : k] : 0;
        }
        for (int32_t b = 0; b < 3; b++) { /* columns: t = G g */
            const double *col[3] = {g[b], g[3 + b], g[6 + b]};
            double *out[6] = {t[0][b], t[1][b], t[2][b], t[3][b], t[4][b], t[5][b]};
            filter_lanes(col, out);
        }
        for (int32_t a = 0; a < 6; a++) { /* rows: u = t Gᵀ */
            const double *row[3] = {t[a][0], t[a][1], t[a][2]};
            double *out[6] = {u[a][0], u[a][1], u[a][2], u[a][3], u[a][4], u[a][5]};
            filter_lanes(row, out);
        }
        for (int32_t x = 0; x < WX; x++) {
            nf_real *dst = Up + ((int64_t)x * rows + r) * cols + q0;
            for (int32_t l = 0; l < nl; l++) dst[l] = (nf_real)u[x / 6][x % 6][l];
        }
    }
}
ISA_PATHS(pack_row, (const nf_real *w, int32_t Cin, int32_t Cout, int flip, int32_t r, nf_real *Up), (w, Cin, Cout, flip, r, Up))

/* Up (36, Cout, Cin, caller's) = G g Gᵀ for every filter of w (Cout, Cin, 3, 3); with flip, the filters
 * of the input gradient instead: Up (36, Cin, Cout) from w[o][c] rotated by 180°. Computed in double,
 * a row of filters at a time over the threads (each filter on its own: the same values for every
 * thread count). One filter at a time on one thread, it was 5 % of realnvp-small's training. */
void nf_convw_pack(const nf_real *w, int32_t Cin, int32_t Cout, int flip, nf_real *Up) {
    int32_t rows = flip ? Cin : Cout;
#pragma omp parallel for schedule(static) if ((int64_t)Cin * Cout >= 1024)
    for (int32_t r = 0; r < rows; r++) pack_row(w, Cin, Cout, flip, r, Up);
}

/* The 1-D transforms below act on six (or four) rows of T values at once — one value per tile — so each
 * is a handful of vector operations over the tiles. Row k of an operand is p + k·ps. */

/* r = Bᵀ d (6 → 6), Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0;
 * 0 4 0 −5 0 1]; row k of d is d[k] (any six runs of T values). */
NF_INLINE void input_rows(const nf_real *const d[6], nf_real *r, int64_t rs, int64_t T) {
    const nf_real *d0_ = d[0], *d1_ = d[1], *d2_ = d[2], *d3_ = d[3], *d4_ = d[4], *d5_ = d[5];
#pragma omp simd
    for (int64_t t = 0; t < T; t++) {
        nf_real d0 = d0_[t], d1 = d1_[t], d2 = d2_[t], d3 = d3_[t], d4 = d4_[t], d5 = d5_[t];
        nf_real a = d4 - 4 * d2, b = d3 - 4 * d1, c = d4 - d2, e = 2 * (d3 - d1);
        r[t] = 4 * d0 - 5 * d2 + d4;
        r[rs + t] = a + b;
        r[2 * rs + t] = a - b;
        r[3 * rs + t] = c + e;
        r[4 * rs + t] = c - e;
        r[5 * rs + t] = 4 * d1 - 5 * d3 + d5;
    }
}

/* y = Aᵀ m (6 → 4), Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]. */
NF_INLINE void output_rows(const nf_real *m, int64_t ms, nf_real *y, int64_t ys, int64_t T) {
#pragma omp simd
    for (int64_t t = 0; t < T; t++) {
        nf_real m0 = m[t], m1 = m[ms + t], m2 = m[2 * ms + t], m3 = m[3 * ms + t], m4 = m[4 * ms + t], m5 = m[5 * ms + t];
        nf_real p12 = m1 + m2, d12 = m1 - m2, p34 = m3 + m4, d34 = m3 - m4;
        y[t] = m0 + p12 + p34;
        y[ys + t] = d12 + 2 * d34;
        y[2 * ys + t] = p12 + 4 * p34;
        y[3 * ys + t] = d12 + 8 * d34 + m5;
    }
}

/* dm = A dy (4 → 6), the adjoint of output_rows. */
NF_INLINE void output_adj_rows(const nf_real *d, int64_t ds, nf_real *m, int64_t ms, int64_t T) {
#pragma omp simd
    for (int64_t t = 0; t < T; t++) {
        nf_real d0 = d[t], d1 = d[ds + t], d2 = d[2 * ds + t], d3 = d[3 * ds + t];
        nf_real e = d0 + d2, o = d1 + d3, e4 = d0 + 4 * d2, o8 = 2 * d1 + 8 * d3;
        m[t] = d0;
        m[ms + t] = e + o;
        m[2 * ms + t] = e - o;
        m[3 * ms + t] = e4 + o8;
        m[4 * ms + t] = e4 - o8;
        m[5 * ms + t] = d3;
    }
}

/* Split the plane xc (H × W) by row and column phase into Z, 16 planes of (th + 1) × (tw + 1) values and
 * one slack value each (plane_size): Z[(pr·4 + pc)·ps + i·(tw + 1) + m] = xc[4·i + pr + off][4·m + pc + off],
 * zero outside the plane. Then the n × n patch of tile (ti, tj) — top-left corner (4·ti + off, 4·tj + off)
 * — has its value (a, b) at Z + (a mod 4 · 4 + b mod 4)·ps + (a div 4)·(tw + 1) + b div 4 + t, t =
 * ti·(tw + 1) + tj: each patch row over all tiles is one contiguous run of T = tiles(H, W) values (the
 * row's last tile reads one value on: the next row's first, or the slack). Each pixel is read once,
 * straight from the image row; only the tile columns that reach past its edges test each value. */
NF_INLINE void split_phases(const nf_real *xc, int32_t H, int32_t W, int32_t off, nf_real *Z) {
    int32_t th = tile_rows(H), Mz = tile_cols(W), Ir = th + 1;
    int64_t ps = plane_size(H, W);
    /* column j of a phase row is xc[i][j + off] for j0 ≤ j < j1, else zero; tile columns m0 ≤ m < m1 lie inside */
    int32_t j0 = off < 0 ? -off : 0, j1 = W - off < WT * Mz ? W - off : WT * Mz;
    int32_t m0 = (j0 + WT - 1) / WT, m1 = j1 / WT > m0 ? j1 / WT : m0;
    for (int32_t r = 0; r < WT * Ir; r++) {
        int32_t i = r + off;
        nf_real *z0 = Z + (int64_t)(r % WT) * WT * ps + (int64_t)(r / WT) * Mz, *z1 = z0 + ps, *z2 = z1 + ps, *z3 = z2 + ps;
        if (i < 0 || i >= H) {
            for (int32_t m = 0; m < Mz; m++) z0[m] = z1[m] = z2[m] = z3[m] = 0;
            continue;
        }
        const nf_real *xr = xc + (int64_t)i * W + j0 + off; /* xr[j − j0] = xc[i][j + off], j0 ≤ j < j1 */
#define PHASE(q) (WT * m + (q) >= j0 && WT * m + (q) < j1 ? xr[WT * m + (q) - j0] : 0)
        for (int32_t m = 0; m < m0; m++) z0[m] = PHASE(0), z1[m] = PHASE(1), z2[m] = PHASE(2), z3[m] = PHASE(3);
        for (int32_t m = m0; m < m1; m++) {
            const nf_real *s = xr + WT * m - j0;
            z0[m] = s[0], z1[m] = s[1], z2[m] = s[2], z3[m] = s[3];
        }
        for (int32_t m = m1; m < Mz; m++) z0[m] = PHASE(0), z1[m] = PHASE(1), z2[m] = PHASE(2), z3[m] = PHASE(3);
#undef PHASE
    }
    for (int32_t p = 0; p < 16; p++) Z[p * ps + (int64_t)Ir * Mz] = 0;
}

/* V (36, C, T) = Bᵀ d B for every channel and tile of x (C, H, W), d the 6 × 6 patch one pixel up and
 * left of the tile; S: scratch_size floats. */
NF_INLINE void input_transform_body(const nf_real *x, int32_t C, int32_t H, int32_t W, nf_real *V, nf_real *S) {
    int64_t T = tiles(H, W), cs = (int64_t)C * T, ps = plane_size(H, W), Mz = tile_cols(W);
    nf_real *R = S, *Z = S + (int64_t)WX * T;
    for (int32_t c = 0; c < C; c++) {
        split_phases(x + (int64_t)c * H * W, H, W, -1, Z);
        for (int32_t b = 0; b < WA; b++) { /* R = Bᵀ D: column b of the patches, rows a = 0..5 */
            const nf_real *d[6];
            for (int32_t a = 0; a < WA; a++) d[a] = Z + (int64_t)((a % WT) * WT + b % WT) * ps + (a / WT) * Mz + b / WT;
            input_rows(d, R + b * T, WA * T, T);
        }
        for (int32_t a = 0; a < WA; a++) { /* V = R B */
            const nf_real *r = R + (int64_t)a * WA * T, *d[6] = {r, r + T, r + 2 * T, r + 3 * T, r + 4 * T, r + 5 * T};
            input_rows(d, V + (int64_t)a * WA * cs + (int64_t)c * T, cs, T);
        }
    }
}
ISA_PATHS(input_transform, (const nf_real *x, int32_t C, int32_t H, int32_t W, nf_real *V, nf_real *S), (x, C, H, W, V, S))

/* out[4·t + q] = v[q·vs + t] + b for t < n, q < 4, then for t = n, q < rem: one output row from the four
 * column streams (n whole tiles, then rem < 4 columns of a partial one). */
NF_INLINE void put_row(const nf_real *v, int64_t vs, nf_real b, nf_real *out, int32_t n, int32_t rem) {
    const nf_real *v0 = v, *v1 = v + vs, *v2 = v + 2 * vs, *v3 = v + 3 * vs;
    for (int32_t t = 0; t < n; t++) {
        out[WT * t] = v0[t] + b;
        out[WT * t + 1] = v1[t] + b;
        out[WT * t + 2] = v2[t] + b;
        out[WT * t + 3] = v3[t] + b;
    }
    for (int32_t q = 0; q < rem; q++) out[WT * n + q] = v[q * vs + n] + b;
}
/* put_row, then max(·, 0) (a NaN stays NaN). */
NF_INLINE void put_row_relu(const nf_real *v, int64_t vs, nf_real b, nf_real *out, int32_t n, int32_t rem) {
    const nf_real *v0 = v, *v1 = v + vs, *v2 = v + 2 * vs, *v3 = v + 3 * vs;
    for (int32_t t = 0; t < n; t++) {
        nf_real z0 = v0[t] + b, z1 = v1[t] + b, z2 = v2[t] + b, z3 = v3[t] + b;
        out[WT * t] = z0 < 0 ? 0 : z0;
        out[WT * t + 1] = z1 < 0 ? 0 : z1;
        out[WT * t + 2] = z2 < 0 ? 0 : z2;
        out[WT * t + 3] = z3 < 0 ? 0 : z3;
    }
    for (int32_t q = 0; q < rem; q++) {
        nf_real z = v[q * vs + n] + b;
        out[WT * n + q] = z < 0 ? 0 : z;
    }
}

/* y (C, H, W) = Aᵀ M A + b (then max(·, 0) if relu) for every channel and tile; M (36, C, T);
 * S: scratch_size floats. */
NF_INLINE void output_transform_body(const nf_real *M, const nf_real *b, int32_t C, int32_t H, int32_t W, int relu,
                             nf_real *y, nf_real *S) {
    int32_t th = tile_rows(H), Mz = tile_cols(W);
    int64_t T = tiles(H, W), cs = (int64_t)C * T;
    nf_real *R = S, *Y = S + (int64_t)WA * WT * T; /* R (6, 4, T), Y (4, 4, T) */
    for (int32_t o = 0; o < C; o++) {
        nf_real bo = b ? b[o] : 0, *yo = y + (int64_t)o * H * W;
        for (int32_t a = 0; a < WA; a++) /* R = M A */
            output_rows(M + (int64_t)a * WA * cs + (int64_t)o * T, cs, R + (int64_t)a * WT * T, T, T);
        for (int32_t q = 0; q < WT; q++) output_rows(R + q * T, WT * T, Y + q * T, WT * T, T); /* Y = Aᵀ R */
        for (int32_t ti = 0; ti < th; ti++)
            for (int32_t i = 0; i < WT && ti * WT + i < H; i++) {
                nf_real *yr = yo + (int64_t)(ti * WT + i) * W;
                const nf_real *v = Y + (int64_t)i * WT * T + (int64_t)ti * Mz;
                /* the row interleaves the tiles' four columns: yr[4·tj + q] = v_q[tj] + b, written in place
                 * (the whole tiles, then the W mod 4 columns of the last) */
                if (relu) put_row_relu(v, T, bo, yr, W / WT, W % WT);
                else put_row(v, T, bo, yr, W / WT, W % WT);
            }
    }
}
ISA_PATHS(output_transform, (const nf_real *M, const nf_real *b, int32_t C, int32_t H, int32_t W, int relu, nf_real *y, nf_real *S),
          (M, b, C, H, W, relu, y, S))


/* One sample: y (Cout, H, W) = conv3x3(x (Cin, H, W)) + b (b may be NULL), then max(·, 0) if relu, with
 * Up from nf_convw_pack (flip = 0; for the input gradient pass dy as x, Cout as Cin, flip = 1 filters and
 * b = NULL). work: nf_convw_work_size floats. All arrays the caller's. */
void nf_convw_sample(const nf_real *x, const nf_real *Up, const nf_real *b, nf_real *y, int32_t Cin, int32_t Cout,
                     int32_t H, int32_t W, int relu, nf_real *work) {
    int64_t T = tiles(H, W);
    nf_real *V = work, *M = V + (int64_t)WX * Cin * T, *S = M + (int64_t)WX * Cout * T;
    input_transform(x, Cin, H, W, V, S);
    for (int32_t x_ = 0; x_ < WX; x_++)
        nf_gemm(0, 0, Cout, T, Cin, 1, Up + (int64_t)x_ * Cout * Cin, Cin, V + (int64_t)x_ * Cin * T, T, 0,
                M + (int64_t)x_ * Cout * T, T);
    output_transform(M, b, Cout, H, W, relu, y, S);
}

/* dM (36, C, T) = A dY Aᵀ for every channel and tile of dy (C, H, W) (zero beyond the image);
 * S: scratch_size floats. */
NF_INLINE void output_adjoint_body(const nf_real *dy, int32_t C, int32_t H, int32_t W, nf_real *dM, nf_real *S) {
    int64_t T = tiles(H, W), cs = (int64_t)C * T, ps = plane_size(H, W);
    nf_real *R = S, *Z = S + (int64_t)WX * T; /* R (6, 4, T) */
    for (int32_t o = 0; o < C; o++) {
        split_phases(dy + (int64_t)o * H * W, H, W, 0, Z); /* the 4 × 4 patch's value (a, q): plane a·4 + q */
        for (int32_t q = 0; q < WT; q++) output_adj_rows(Z + q * ps, WT * ps, R + q * T, WT * T, T); /* R = A D */
        for (int32_t a = 0; a < WA; a++) /* dM = R Aᵀ */
            output_adj_rows(R + (int64_t)a * WT * T, T, dM + (int64_t)a * WA * cs + (int64_t)o * T, cs, T);
    }
}
ISA_PATHS(output_adjoint, (const nf_real *dy, int32_t C, int32_t H, int32_t W, nf_real *dM, nf_real *S), (dy, C, H, W, dM, S))


/* g = Gᵀ u (6 → 3) for PACK_LANES values at once, the adjoint of filter_lanes' u = G g; u[k] and g[k]
 * hold row k for every lane. */
NF_INLINE void filter_adj_lanes(const double *const u[6], double *const g[3]) {
    const double *u0_ = u[0], *u1_ = u[1], *u2_ = u[2], *u3_ = u[3], *u4_ = u[4], *u5_ = u[5];
#pragma omp simd
    for (int32_t l = 0; l < PACK_LANES; l++) {
        double u0 = u0_[l], u1 = u1_[l], u2 = u2_[l], u3 = u3_[l], u4 = u4_[l], u5 = u5_[l];
        g[0][l] = u0 / 4 - (u1 + u2) / 6 + (u3 + u4) / 24;
        g[1][l] = (u2 - u1) / 6 + (u3 - u4) / 12;
        g[2][l] = -(u1 + u2) / 6 + (u3 + u4) / 6 + u5;
    }
}

/* One sample's share of the weight gradient in the transformed domain: dU (36, Cout, Cin) += dM_ξ · V_ξᵀ
 * for dy (Cout, H, W) and x (Cin, H, W); nf_convw_dw_finish maps the sum back. work:
 * nf_convw_work_size floats. Arrays the caller's. */
void nf_convw_dw_sample(const nf_real *x, const nf_real *dy, int32_t Cin, int32_t Cout, int32_t H, int32_t W,
                        nf_real *dU, nf_real *work) {
    int64_t T = tiles(H, W);
    nf_real *V = work, *dM = V + (int64_t)WX * Cin * T, *S = dM + (int64_t)WX * Cout * T;
    input_transform(x, Cin, H, W, V, S);
    output_adjoint(dy, Cout, H, W, dM, S);
    for (int32_t x_ = 0; x_ < WX; x_++)
        nf_gemm(0, 1, Cout, Cin, T, 1, dM + (int64_t)x_ * Cout * T, T, V + (int64_t)x_ * Cin * T, T, 1,
                dU + (int64_t)x_ * Cout * Cin, Cin);
}

/* dw (Cout, Cin, 3, 3) += Gᵀ dU G for the filters oc0 .. oc0 + PACK_LANES − 1 (those below cc = Cout·Cin)
 * of the sums dU (36, Cout, Cin), in double: t = dU G, then dg = Gᵀ t. The same operations on every path. */
NF_INLINE void dw_finish_lanes_body(const nf_real *dU, int64_t cc, int64_t oc0, nf_real *dw) {
    int64_t nl = cc - oc0 < PACK_LANES ? cc - oc0 : PACK_LANES;
    double u[WX][PACK_LANES], t[6][3][PACK_LANES], g[3][3][PACK_LANES];
    for (int32_t x_ = 0; x_ < WX; x_++)
        for (int32_t l = 0; l < PACK_LANES; l++) u[x_][l] = l < nl ? dU[x_ * cc + oc0 + l] : 0;
    for (int32_t a = 0; a < 6; a++) { /* t = u G: row a of u is u[6a .. 6a + 5] */
        const double *row[6] = {u[6 * a], u[6 * a + 1], u[6 * a + 2], u[6 * a + 3], u[6 * a + 4], u[6 * a + 5]};
        double *out[3] = {t[a][0], t[a][1], t[a][2]};
        filter_adj_lanes(row, out);
    }
    for (int32_t b = 0; b < 3; b++) { /* dg = Gᵀ t, column b */
        const double *col[6] = {t[0][b], t[1][b], t[2][b], t[3][b], t[4][b], t[5][b]};
        double *out[3] = {g[0][b], g[1][b], g[2][b]};
        filter_adj_lanes(col, out);
    }
    for (int64_t l = 0; l < nl; l++)
        for (int32_t a = 0; a < 3; a++)
            for (int32_t b = 0; b < 3; b++) dw[(oc0 + l) * 9 + a * 3 + b] += (nf_real)g[a][b][l];
}
ISA_PATHS(dw_finish_lanes, (const nf_real *dU, int64_t cc, int64_t oc0, nf_real *dw), (dU, cc, oc0, dw))

/* dw (Cout, Cin, 3, 3) += Gᵀ dU G for the sums dU (36, Cout, Cin) of nf_convw_dw_sample (in double,
 * PACK_LANES filters at a time). */
void nf_convw_dw_finish(const nf_real *dU, int32_t Cin, int32_t Cout, nf_real *dw) {
    int64_t cc = (int64_t)Cout * Cin;
    for (int64_t oc0 = 0; oc0 < cc; oc0 += PACK_LANES) dw_finish_lanes(dU, cc, oc0, dw);
}
