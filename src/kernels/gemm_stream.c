/* gemm_stream.c — C = alpha·A·Bᵀ + beta·C for a tile of up to 64 rows, B (n, k) row-major read in place
 * once: an MLP's forward product h·Wᵀ on a batch tile, where W is the layer's weight matrix as it is
 * stored (out, in). AVX-512 only; nf_gemm (gemm.c) calls it for the shapes where it is the faster.
 *
 * Why: with 64 rows each weight is used 64 times and then not again in the pass, so a BLAS's packing of
 * B (a copy of every weight into its panel layout, per call) is a full extra read and write of the
 * weights. Here B is never copied: A's tile is packed once, transposed, At (k, 64) — 64·k floats, a
 * quarter of a MiB at k = 1000, which the core's L2 holds — and for each block of NJ columns of C
 *   c[i][j] = Σ_p At[p][i] · B[j][p],    i = 0..63 (four 16-lane vectors), j = j0..j0+NJ−1
 * runs over p with the 4 × NJ accumulators in registers: per p, 4 vector loads of At, NJ scalar
 * broadcasts of B (NJ sequential streams through B's rows) and 4·NJ FMAs. Each C value is one fixed
 * sequence of FMAs in p's order, whatever the thread count. Rows of a tile beyond m are zero in At and
 * not stored. The packed tile lives in a buffer of the calling thread, grown on demand and freed when
 * the thread ends. */
#include "kernels/kernels.h"

#include <pthread.h>
#include <stdlib.h>

#if defined(__x86_64__) && !defined(NFLOW_DOUBLE) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_STREAM_KERNEL 1
#include <immintrin.h>
#else
#define HAVE_STREAM_KERNEL 0
#endif

#define NJ 5    /* columns of C per block: 20 accumulators + 4 rows of At + 1 broadcast of 32 registers */
#define ROWS 64 /* rows of a tile: 4 vectors of 16 */

#if HAVE_STREAM_KERNEL
/* ------------------------------------------------------------------ the thread's packing buffer */
static _Thread_local float *t_pack;  /* the calling thread's At, 64-byte aligned */
static _Thread_local int64_t t_cap;  /* its size in floats */
static pthread_key_t g_key;          /* frees a thread's buffer when the thread ends */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_key_ok;

/* Key destructor: a thread's buffer at its exit. */
static void pack_free(void *p) { free(p); }
/* Create the key (once). */
static void key_init(void) { g_key_ok = pthread_key_create(&g_key, pack_free) == 0; }

/* The calling thread's buffer of at least n floats, or NULL (out of memory: the caller multiplies
 * another way). */
static float *pack_buffer(int64_t n) {
    if (n <= t_cap) return t_pack;
    pthread_once(&g_once, key_init);
    size_t bytes = ((size_t)n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) return NULL;
    free(t_pack);
    t_pack = p, t_cap = n;
    if (g_key_ok) pthread_setspecific(g_key, p);
    return p;
}

/* The 16 × 16 block r[0..15] (rows) transposed in registers: r[q] ends as column q. */
__attribute__((target("avx512f"))) static void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) { /* 32-bit interleave of row pairs */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* 64-bit interleave of pairs of pairs */
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    for (int i = 0; i < 4; i++) { /* 128-bit lanes: rows i, i+4 and i+8, i+12 */
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) { /* 256-bit halves */
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* Rows p0..p1−1 (p0 a multiple of 16) of At (k, 64) = the first m rows of A (m, k; rows lda apart)
 * transposed, rows m..63 zero: blocks of 16 rows × 16 columns transposed in registers (the last columns
 * by masked loads). */
__attribute__((target("avx512f"))) static void pack_rows(const float *A, int64_t lda, int64_t m, int64_t p0,
                                                         int64_t p1, float *At) {
    for (int64_t i0 = 0; i0 < ROWS; i0 += 16)
        for (int64_t p = p0; p < p1; p += 16) {
            int64_t kc = p1 - p < 16 ? p1 - p : 16;
            __mmask16 mk = (__mmask16)((1u << kc) - 1);
            __m512 r[16];
            for (int64_t i = 0; i < 16; i++)
                r[i] = i0 + i < m ? _mm512_maskz_loadu_ps(mk, A + (i0 + i) * lda + p) : _mm512_setzero_ps();
            transpose16(r);
            for (int64_t q = 0; q < kc; q++) _mm512_store_ps(At + (p + q) * ROWS + i0, r[q]);
        }
}

/* C[i][j] (i < m) = alpha·acc_i + beta·C[i][j] for the four vectors of column j's accumulators; with
 * beta = 0 C is not read. */
__attribute__((target("avx512f"))) static void store_col(__m512 c0, __m512 c1, __m512 c2, __m512 c3, int64_t m,
                                                         float alpha, float beta, float *C, int64_t ldc) {
    float t[ROWS];
    _mm512_storeu_ps(t, c0), _mm512_storeu_ps(t + 16, c1), _mm512_storeu_ps(t + 32, c2), _mm512_storeu_ps(t + 48, c3);
    if (beta == 0)
        for (int64_t i = 0; i < m; i++) C[i * ldc] = alpha * t[i];
    else
        for (int64_t i = 0; i < m; i++) C[i * ldc] = alpha * t[i] + beta * C[i * ldc];
}

#define ZERO(j) __m512 c0##j = _mm512_setzero_ps(), c1##j = c0##j, c2##j = c0##j, c3##j = c0##j
#define STEP(j)                                                                                                        \
    {                                                                                                                  \
        __m512 w = _mm512_set1_ps(B[(j) * ldb + p]);                                                                   \
        c0##j = _mm512_fmadd_ps(a0, w, c0##j), c1##j = _mm512_fmadd_ps(a1, w, c1##j);                                 \
        c2##j = _mm512_fmadd_ps(a2, w, c2##j), c3##j = _mm512_fmadd_ps(a3, w, c3##j);                                 \
    }
#define LOAD_AT                                                                                                        \
    const float *ap = At + p * ROWS;                                                                                   \
    __m512 a0 = _mm512_load_ps(ap), a1 = _mm512_load_ps(ap + 16), a2 = _mm512_load_ps(ap + 32),                       \
           a3 = _mm512_load_ps(ap + 48)

/* Columns j0..j0+NJ−1 of C (B: their rows). */
__attribute__((target("avx512f"))) static void block_nj(const float *At, const float *B, int64_t ldb, int64_t k,
                                                        int64_t m, float alpha, float beta, float *C, int64_t ldc) {
    ZERO(0);
    ZERO(1);
    ZERO(2);
    ZERO(3);
    ZERO(4);
    for (int64_t p = 0; p < k; p++) {
        LOAD_AT;
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4)
    }
    store_col(c00, c10, c20, c30, m, alpha, beta, C, ldc);
    store_col(c01, c11, c21, c31, m, alpha, beta, C + 1, ldc);
    store_col(c02, c12, c22, c32, m, alpha, beta, C + 2, ldc);
    store_col(c03, c13, c23, c33, m, alpha, beta, C + 3, ldc);
    store_col(c04, c14, c24, c34, m, alpha, beta, C + 4, ldc);
}

/* One column of C (B: its row). */
__attribute__((target("avx512f"))) static void block_1(const float *At, const float *B, int64_t ldb, int64_t k,
                                                       int64_t m, float alpha, float beta, float *C, int64_t ldc) {
    (void)ldb;
    ZERO(0);
    for (int64_t p = 0; p < k; p++) {
        LOAD_AT;
        STEP(0)
    }
    store_col(c00, c10, c20, c30, m, alpha, beta, C, ldc);
}
#endif

/* See kernels.h. */
int nf_gemm_stream_available(void) { return HAVE_STREAM_KERNEL && nf_isa_active() >= NF_ISA_AVX512; }

/* See kernels.h. */
nf_real *nf_gemm_stream_buffer(int64_t floats) {
#if HAVE_STREAM_KERNEL
    return pack_buffer(floats);
#else
    (void)floats;
    return NULL;
#endif
}

/* See kernels.h. */
void nf_gemm_stream_pack(const nf_real *A, int64_t lda, int64_t m, int64_t p0, int64_t p1, nf_real *At) {
#if HAVE_STREAM_KERNEL
    pack_rows(A, lda, m, p0, p1, At);
#else
    (void)A, (void)lda, (void)m, (void)p0, (void)p1, (void)At;
#endif
}

/* See kernels.h. */
void nf_gemm_stream_multiply(const nf_real *At, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *B,
                             int64_t ldb, nf_real beta, nf_real *C, int64_t ldc) {
#if HAVE_STREAM_KERNEL
    int64_t j = 0;
    for (; j + NJ <= n; j += NJ) block_nj(At, B + j * ldb, ldb, k, m, alpha, beta, C + j, ldc);
    for (; j < n; j++) block_1(At, B + j * ldb, ldb, k, m, alpha, beta, C + j, ldc);
#else
    (void)At, (void)m, (void)n, (void)k, (void)alpha, (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
#endif
}
