/* kernels/gemm.c — matrix products: the fast path (tiles of fixed size, so results do not depend on the
 * thread count; each tile multiplied by OpenBLAS or, for the shapes where it is faster, oneDNN's sgemm)
 * and the naive reference. */
#include "kernels/kernels.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(NFLOW_DNNL) && !defined(NFLOW_DOUBLE)
#include <oneapi/dnnl/dnnl.h>
#define HAVE_ONEDNN 1
#else
#define HAVE_ONEDNN 0
#endif

void openblas_set_num_threads(int num_threads);

#ifdef NFLOW_DOUBLE
#define NF_CBLAS_GEMM cblas_dgemm
#else
#define NF_CBLAS_GEMM cblas_sgemm
#endif

/* Rows of C per BLAS call. Fixed (not derived from the thread count) so that every thread count makes
 * exactly the same BLAS calls and the result is bit-identical. */
#define GEMM_COLS 256 /* column tile when there are few row tiles */
#define GEMM_TILE 64

/* Tell OpenBLAS to use one thread (once): parallelism comes from our own fixed tiles. */
static void blas_single_threaded(void) {
    static int done = 0; /* benign race: every caller stores the same value */
    if (!done) {
        openblas_set_num_threads(1);
        done = 1;
    }
}

static int gemm_mode = -1; /* -1: not read yet; else NF_GEMM_AUTO / _OPENBLAS / _ONEDNN */

/* See kernels.h: 1 if this build multiplies with oneDNN where the rule says so. */
int nf_gemm_onednn_available(void) { return HAVE_ONEDNN; }

/* See kernels.h: NFLOW_GEMM read once ("openblas", "onednn" where available; anything else: auto —
 * nf_runtime_check refuses an unknown name before the library runs). */
int nf_gemm_mode(void) {
    if (gemm_mode < 0) {
        const char *e = getenv("NFLOW_GEMM");
        int m = NF_GEMM_AUTO;
        if (e && strcmp(e, "openblas") == 0) m = NF_GEMM_OPENBLAS;
        if (e && strcmp(e, "onednn") == 0 && HAVE_ONEDNN) m = NF_GEMM_ONEDNN;
        gemm_mode = m; /* benign race: every caller stores the same value */
    }
    return gemm_mode;
}

/* See kernels.h. */
int nf_gemm_set(int mode) {
    int was = nf_gemm_mode();
    gemm_mode = mode == NF_GEMM_ONEDNN && !HAVE_ONEDNN ? NF_GEMM_OPENBLAS : mode;
    return was;
}

#if HAVE_ONEDNN
/* At load time: under NFLOW_ISA=avx2 or generic, oneDNN's JIT is capped at AVX2 or SSE4.1 as nflow's own
 * kernels are (cpu.c caps OpenBLAS's core), unless the user set oneDNN's own DNNL_MAX_CPU_ISA. Runs before
 * oneDNN generates any code (it can be set only then). */
__attribute__((constructor)) static void onednn_cap(void) {
    if (getenv("DNNL_MAX_CPU_ISA") || getenv("ONEDNN_MAX_CPU_ISA")) return;
    nf_isa isa = nf_isa_active();
    if (isa < nf_isa_cpu()) dnnl_set_max_cpu_isa(isa == NF_ISA_AVX2 ? dnnl_cpu_isa_avx2 : dnnl_cpu_isa_sse41);
}

/* 1 when oneDNN's sgemm multiplies this tile under NF_GEMM_AUTO. Measured single-threaded, one call per
 * shape as nf_gemm makes them (AMD EPYC Zen 5, avx512; OpenBLAS 0.3.21 core Cooperlake against oneDNN 2.6.3
 * avx512_core_bf16; BENCHMARKS.md has the table): OpenBLAS's small-matrix kernel is the faster up to about 10⁶
 * multiply-adds, past that its packing path falls to 190–215 GFLOP/s where oneDNN's runs 230–255 (64-row
 * tiles: nice-mnist's 64 × 256 × 1000 products 180–195 against 210–247, glow-small's 64 × 196 × 128
 * 197 against 230), and OpenBLAS drops to 33–60 on some skinny ones (4 × 256 × 1000: 45 against 171).
 * With Bᵀ (the MLPs' forward, the weight gradients) OpenBLAS is slower at every size once n ≥ 128 (64-row
 * tiles 165–193 against 186–230) and with few rows from n ≥ 196; below n = 64 it stays ahead. */
static int onednn_wins(int tA, int tB, int64_t m, int64_t n, int64_t k) {
    /* OpenBLAS's small-matrix kernels exist only in its AVX-512 cores: below them (an AVX2 CPU's Haswell or
     * Zen core, or NFLOW_ISA=avx2 / generic) oneDNN measured faster on every shape of the workloads, from
     * 64 × 20 × 64 up (BENCHMARKS.md), so it takes every tile of 2¹⁶ multiply-adds or more; below that
     * the toy models stay on OpenBLAS (oneDNN's first call in a process costs ~18 ms of code generation) */
    static int blas_level = -1; /* benign race: every caller stores the same value */
    if (blas_level < 0) blas_level = (int)nf_blas_isa();
    double mnk = (double)m * (double)n * (double)k;
    if (blas_level < NF_ISA_AVX512) return mnk >= 65536;
    if (tB && !tA) {
        if (n < 64) return 0;
        return mnk > 1e6 || (m >= 16 && n >= 128) || (m >= 8 && n >= 196) || n >= 784;
    }
    return mnk > 1e6;
}
#endif

/* 1 when gemm_stream.c's kernel multiplies an A·Bᵀ product whose row tiles have m rows (the last one's)
 * under NF_GEMM_AUTO, where it runs (AVX-512). It pays where B is too large to stay in cache from one
 * pass to the next, so that a library's packing of B is a second trip through memory: nice-mnist's
 * 64-row batches through its 1000-wide layers (19 M weights streamed per batch), measured on an AMD Zen 5
 * (BENCHMARKS.md) — the products 226 against 173 GFLOP/s on one thread, 451 against 338 on two, the
 * evaluation pass 12–14 % faster. With B in cache (the same product repeated, as nflow_gemm_bench does)
 * OpenBLAS and oneDNN are the faster (oneDNN 218 against 178 on 64 × 256 × 1000), hence B of at least
 * 2¹⁸ values (1 MiB); and with fewer than 49 rows a 64-row tile would waste a quarter of its FMAs. */
static int stream_wins(int64_t m, int64_t n, int64_t k) { return m >= 49 && n >= 16 && k >= 16 && n * k >= (1 << 18); }

/* See kernels.h. */
const char *nf_gemm_info(void) {
#if HAVE_ONEDNN
    static _Thread_local char buf[192];
    const dnnl_version_t *v = dnnl_version();
    static const struct { dnnl_cpu_isa_t isa; const char *name; } isas[] = {
        {dnnl_cpu_isa_sse41, "sse41"}, {dnnl_cpu_isa_avx, "avx"}, {dnnl_cpu_isa_avx2, "avx2"},
        {dnnl_cpu_isa_avx2_vnni, "avx2_vnni"}, {dnnl_cpu_isa_avx512_core, "avx512_core"},
        {dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"}, {dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"},
        {dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"}};
    dnnl_cpu_isa_t e = dnnl_get_effective_cpu_isa();
    const char *in = "other";
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++)
        if (isas[i].isa == e) in = isas[i].name;
    int md = nf_gemm_mode();
    if (md == NF_GEMM_OPENBLAS) return "products: OpenBLAS alone (NFLOW_GEMM=openblas)";
    snprintf(buf, sizeof buf, "products: %s oneDNN %d.%d.%d, isa %s%s (NFLOW_GEMM=%s)", md == NF_GEMM_ONEDNN ? "all by" : "OpenBLAS or, where faster,",
             v->major, v->minor, v->patch, in, md == NF_GEMM_AUTO && nf_gemm_stream_available() ? ", or nflow's streaming A·Bᵀ" : "",
             md == NF_GEMM_ONEDNN ? "onednn" : "auto");
    return buf;
#else
    return "";
#endif
}

/* One product C = alpha·op(A)·op(B) + beta·C for an m × n tile (row-major, borrowed arrays): OpenBLAS, or
 * oneDNN's sgemm where nf_gemm_mode() says so — on one thread (at the top level oneDNN would take every
 * OpenMP thread and may split k, and the result would depend on the thread count; the setting is the
 * calling thread's own and is put back). */
static void gemm_tile(int tA, int tB, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A,
                      int64_t lda, const nf_real *B, int64_t ldb, nf_real beta, nf_real *C, int64_t ldc) {
#if HAVE_ONEDNN
    int mode = nf_gemm_mode();
    if (mode == NF_GEMM_ONEDNN || (mode == NF_GEMM_AUTO && onednn_wins(tA, tB, m, n, k))) {
        int was = omp_get_max_threads();
        omp_set_num_threads(1);
        dnnl_status_t st = dnnl_sgemm(tA ? 'T' : 'N', tB ? 'T' : 'N', m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        omp_set_num_threads(was);
        if (st == dnnl_success) return; /* else (out of memory for its packing): OpenBLAS below */
    }
#endif
    NF_CBLAS_GEMM(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, (int)m,
                  (int)n, (int)k, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* Tiles [t0, t1) of nf_gemm's rt × ct tiles of C (row tile t / ct, column tile t % ct; with one column
 * tile the whole rows, else GEMM_COLS columns a tile), each by gemm_tile. */
static void gemm_tiles(int tA, int tB, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A, int64_t lda,
                       const nf_real *B, int64_t ldb, nf_real beta, nf_real *C, int64_t ldc, int64_t ct, int64_t t0, int64_t t1) {
    int64_t cw = ct == 1 ? n : GEMM_COLS;
    for (int64_t t = t0; t < t1; t++) {
        int64_t i0 = (t / ct) * GEMM_TILE, mi = m - i0 < GEMM_TILE ? m - i0 : GEMM_TILE;
        int64_t j0 = (t % ct) * cw, nj = n - j0 < cw ? n - j0 : cw;
        const nf_real *At = tA ? A + i0 : A + i0 * lda;
        const nf_real *Bt = tB ? B + j0 * ldb : B + j0;
        gemm_tile(tA, tB, mi, nj, k, alpha, At, lda, Bt, ldb, beta, C + i0 * ldc + j0, ldc);
    }
}

/* Row tiles [r0, r1) of C = alpha·A·Bᵀ + beta·C (whole rows, GEMM_TILE a tile) by gemm_stream.c's kernel,
 * each packed into the calling thread's buffer (out of memory: that tile by gemm_tile). */
static void streamed_rows(int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A, int64_t lda, const nf_real *B,
                          int64_t ldb, nf_real beta, nf_real *C, int64_t ldc, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        int64_t i0 = r * GEMM_TILE, mi = m - i0 < GEMM_TILE ? m - i0 : GEMM_TILE;
        nf_real *At = nf_gemm_stream_buffer(GEMM_TILE * k);
        if (!At) {
            gemm_tile(0, 1, mi, n, k, alpha, A + i0 * lda, lda, B, ldb, beta, C + i0 * ldc, ldc);
            continue;
        }
        nf_gemm_stream_pack(A + i0 * lda, lda, mi, 0, k, At);
        nf_gemm_stream_multiply(At, mi, n, k, alpha, B, ldb, beta, C + i0 * ldc, ldc);
    }
}

/* C = alpha·A·Bᵀ + beta·C by gemm_stream.c's kernel on nf_gemm's rt × ct tiles (rows of GEMM_TILE,
 * the columns split into ct equal tiles: 392 columns as 196 + 196, not 256 + 136, which left one of two
 * threads idle for a third of the product), when the per-shape choice says so. With several column
 * tiles (at most 3 row tiles then) A's row tiles are packed once into the calling thread's buffer,
 * shared by the threads (16 columns of A a task), then the tiles run; with one (whole rows a tile) each
 * thread packs its tiles into its own buffer — so the packing takes 64·k floats a thread, whatever m.
 * Returns 0 (nothing written) when the kernel does not take the product. */
static int gemm_streamed(int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A, int64_t lda, const nf_real *B,
                         int64_t ldb, nf_real beta, nf_real *C, int64_t ldc, int64_t rt, int64_t ct) {
    int64_t last = m - (rt - 1) * GEMM_TILE;
    if (nf_gemm_mode() != NF_GEMM_AUTO || !nf_gemm_stream_available() || !stream_wins(last < GEMM_TILE ? last : GEMM_TILE, n, k))
        return 0;
    if (ct == 1) {
        NF_PARALLEL_RANGE(1, rt, streamed_rows(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, lo, hi));
        return 1;
    }
    nf_real *At = nf_gemm_stream_buffer(rt * GEMM_TILE * k);
    if (!At) return 0;
    int64_t pb = (k + 15) / 16, cw = (n + ct - 1) / ct;
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < rt * pb; t++) {
            int64_t r = t / pb, i0 = r * GEMM_TILE, p0 = (t % pb) * 16;
            nf_gemm_stream_pack(A + i0 * lda, lda, m - i0 < GEMM_TILE ? m - i0 : GEMM_TILE, p0, p0 + 16 < k ? p0 + 16 : k,
                                At + r * GEMM_TILE * k);
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < rt * ct; t++) {
            int64_t r = t / ct, i0 = r * GEMM_TILE, mi = m - i0 < GEMM_TILE ? m - i0 : GEMM_TILE;
            int64_t j0 = (t % ct) * cw, nj = n - j0 < cw ? n - j0 : cw;
            nf_gemm_stream_multiply(At + r * GEMM_TILE * k, mi, nj, k, alpha, B + j0 * ldb, ldb, beta, C + i0 * ldc + j0, ldc);
        }
    }
    return 1;
}

/* C (m, n) = alpha·op(A)·op(B) + beta·C, row-major, in fixed tiles of rows (or columns) over OpenMP
 * threads, so the result is bit-identical for every thread count. Arrays the caller's. */
void nf_gemm(int tA, int tB, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A,
             int64_t lda, const nf_real *B, int64_t ldb, nf_real beta, nf_real *C, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* BLAS leaves C alone when k = 0; keep the beta semantics explicit */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return;
    }
    blas_single_threaded();
    /* Tiles of C: GEMM_TILE rows; when there are few row tiles (a batch of 64 through a wide MLP layer),
     * also GEMM_COLS columns, so that both cores have work. The tiling depends only on the shape. */
    int64_t rt = (m + GEMM_TILE - 1) / GEMM_TILE, ct = rt >= 4 ? 1 : (n + GEMM_COLS - 1) / GEMM_COLS;
    if (rt * ct == 1) {
        gemm_tile(tA, tB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (!tA && tB && gemm_streamed(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, rt, ct)) return;
    NF_PARALLEL_RANGE(1, rt * ct, gemm_tiles(tA, tB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, ct, lo, hi));
}

/* The same product by the naive triple loop in double accumulation: the tests' oracle. */
void nf_gemm_ref(int tA, int tB, int64_t m, int64_t n, int64_t k, nf_real alpha, const nf_real *A,
                 int64_t lda, const nf_real *B, int64_t ldb, nf_real beta, nf_real *C, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) {
                double a = tA ? A[p * lda + i] : A[i * lda + p];
                double b = tB ? B[j * ldb + p] : B[p * ldb + j];
                s += a * b;
            }
            double c = beta == 0 ? 0.0 : (double)beta * (double)C[i * ldc + j];
            C[i * ldc + j] = (nf_real)((double)alpha * s + c);
        }
}

