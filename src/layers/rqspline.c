/* layers/rqspline.c — the monotone rational-quadratic spline (formulas and parameterisation: rqspline.h).
 * One function each for forward, inverse and backward; all three share the knot construction below. */
#include "layers/rqspline.h"

#include "kernels/mvec.h"

/* Inlined into the blocks' vector loops at the end of this file as well as into the scalar functions. */
#define NF_INLINE static inline __attribute__((always_inline))

/* Softplus log(1 + e^a) = max(a, 0) + log(1 + e), given e = e^−|a| ∈ [0, 1] (computed over arrays in
 * make_knots). log(1 + e) rather than log1p(e): its absolute error stays below ~2e-16 (the rounding of
 * 1 + e), and the knot derivative it feeds is at least m_d = 1e-3, so the relative error of d is below
 * ~1e-12 — and libm's log is about twice as fast as its log1p. max(a, 0) as (a + |a|)/2, exact, and
 * with no select (GCC leaves a select scalar in an AVX2 vector loop). */
NF_INLINE double softplus_from(double a, double e) { return 0.5 * (a + fabs(a)) + (log)(1 + e); }
/* The logistic sigmoid 1/(1 + e^−a) (softplus's derivative) from the same e = e^−|a|. */
NF_INLINE double sigmoid_from(double a, double e) { return a >= 0 ? 1 / (1 + e) : e / (1 + e); }

/* The spline's knots from θ: xk[0..K], yk[0..K] (xk[0] = yk[0] = −B, xk[K] = yk[K] = B exactly), the
 * softmax probabilities pw[K], ph[K] that backward needs, and ed[j − 1] = e^−|θ_d + c₀| of interior knot
 * derivative j (all three sets of exponentials in one vector call); then (locate) the bin k of the point,
 * its width w, height h and slope s = h/w, and its knot derivatives dk = d_k and dk1 = d_{k+1} — the
 * only two of the K + 1 that forward, inverse and backward use, so only their logs are taken. */
typedef struct {
    double xk[NF_RQS_MAX_BINS + 1], yk[NF_RQS_MAX_BINS + 1];
    double pw[NF_RQS_MAX_BINS], ph[NF_RQS_MAX_BINS], ed[NF_RQS_MAX_BINS];
    int32_t k;
    double w, h, s, dk, dk1;
} rqs_knots;

/* Subtract the largest of theta[q·stride], q = off … off + K − 1, from each, into t[0..K): the
 * softmax's arguments (≤ 0, so e^t cannot overflow). A NaN θ makes every probability NaN (through the
 * exp of θ − max or of the sum). */
static void shifted(const nf_real *theta, int64_t stride, int32_t off, int32_t K, double *t) {
    double mx = (double)theta[off * stride];
    for (int32_t k = 1; k < K; k++) {
        double v = (double)theta[(off + k) * stride];
        mx = v > mx ? v : mx;
    }
    for (int32_t k = 0; k < K; k++) t[k] = (double)theta[(off + k) * stride] - mx;
}

/* p[0..K) = e / Σ e: the exponentials e[0..K) normalised into the softmax's probabilities. */
static void normalise(const double *e, int32_t K, double *p) {
    double s = 0;
    for (int32_t k = 0; k < K; k++) s += e[k];
    double r = 1 / s;
    for (int32_t k = 0; k < K; k++) p[k] = e[k] * r;
}

/* Cumulative knots on [−B, B] from probabilities p with minimum bin size mn: out[0] = −B, out[K] = B. */
static void knots_from(const double *p, int32_t K, double mn, double B, double *out) {
    double acc = 0, scale = 1 - mn * K;
    out[0] = -B;
    for (int32_t k = 0; k < K - 1; k++) {
        acc += mn + scale * p[k];
        out[k + 1] = -B + 2 * B * acc;
    }
    out[K] = B;
}

/* c₀ = log(e^(1 − m_d) − 1): softplus(c₀) = 1 − m_d, so θ_d = 0 gives d = 1 (GCC folds the constant). */
static double deriv_c0(void) { return log(expm1(1 - NF_RQS_MIN_DERIV)); }

/* θ_d + c₀ of interior knot derivative j (1 ≤ j ≤ K − 1): the softplus's argument. */
static double deriv_arg(const nf_real *theta, int64_t stride, int32_t K, int32_t j) {
    return (double)theta[(2 * K + j - 1) * stride] + deriv_c0();
}

/* Fill *q's knots, probabilities and derivative exponentials from θ (see rqs_knots). */
static void make_knots(const nf_real *theta, int64_t stride, int32_t K, double B, rqs_knots *q) {
    double e[3 * NF_RQS_MAX_BINS]; /* the widths', heights' and derivatives' exponentials, one vector call
                                    * (3K − 1 ≤ 191 values, padded to 192 at most) */
    shifted(theta, stride, 0, K, e);
    shifted(theta, stride, K, K, e + K);
    for (int32_t j = 1; j < K; j++) e[2 * K + j - 1] = -fabs(deriv_arg(theta, stride, K, j));
    int32_t n = (3 * K - 1 + 7) & ~7; /* padded to whole vectors: a loop's remainder runs scalar exp calls */
    for (int32_t j = 3 * K - 1; j < n; j++) e[j] = 0;
    nf_exp_inplace(e, n);
    normalise(e, K, q->pw);
    normalise(e + K, K, q->ph);
    memcpy(q->ed, e + 2 * K, sizeof(double) * (size_t)(K - 1));
    knots_from(q->pw, K, NF_RQS_MIN_WIDTH, B, q->xk);
    knots_from(q->ph, K, NF_RQS_MIN_HEIGHT, B, q->yk);
}

/* Knot derivative j of the spline (0 ≤ j ≤ K): 1 at the ends, m_d + softplus(θ_d + c₀) inside. */
static double knot_deriv(const nf_real *theta, int64_t stride, int32_t K, const rqs_knots *q, int32_t j) {
    if (j == 0 || j == K) return 1;
    return NF_RQS_MIN_DERIV + softplus_from(deriv_arg(theta, stride, K, j), q->ed[j - 1]);
}

/* The bin of v among knots kn[0..K] (kn[k] ≤ v < kn[k+1]; v = kn[K] lands in the last bin). */
static int32_t find_bin(const double *kn, int32_t K, double v) {
    int32_t k = 0;
    while (k < K - 1 && v >= kn[k + 1]) k++;
    return k;
}

/* Fill all of *q for a point v in [−B, B]: the knots, then the bin holding v among the x knots
 * (by_y = 0: v is an input) or the y knots (by_y = 1: v is an output), its sizes and derivatives. */
static void locate(const nf_real *theta, int64_t stride, int32_t K, double B, double v, int by_y, rqs_knots *q) {
    make_knots(theta, stride, K, B, q);
    int32_t k = q->k = find_bin(by_y ? q->yk : q->xk, K, v);
    q->w = q->xk[k + 1] - q->xk[k], q->h = q->yk[k + 1] - q->yk[k], q->s = q->h / q->w;
    q->dk = knot_deriv(theta, stride, K, q, k);
    q->dk1 = knot_deriv(theta, stride, K, q, k + 1);
}

/* ------------------------------------------------------------------ one bin's formulas
 * The map inside one bin (sizes w, h, slope s = h/w, knot derivatives dk = d_k, dk1 = d_{k+1}; formulas in
 * rqspline.h), each in one function, shared by the scalar functions below and the blocks of points at the
 * end of this file (inlined into their vector loops). */

/* g(x) − y_k at ξ = (x − x_k)/w: h·[s ξ² + d_k ξ(1 − ξ)] / [s + (d_{k+1} + d_k − 2s) ξ(1 − ξ)]. */
NF_INLINE double rq_rise(double h, double s, double dk, double dk1, double xi) {
    double t = xi * (1 - xi), den = s + (dk1 + dk - 2 * s) * t;
    return h * (s * xi * xi + dk * t) / den;
}

/* log g' at ξ, as one log of (s/den)²·num instead of three logs: the minimum bin sizes keep s within
 * [~1e-3, ~1e3], and num and den stay below ~1e39 (derivatives are softplus of float θ), so (s/den)² ≥
 * ~1e-84 and the product is far inside double's range. */
NF_INLINE double rq_log_deriv(double s, double dk, double dk1, double xi) {
    double t = xi * (1 - xi);
    double den = s + (dk1 + dk - 2 * s) * t;
    double num = dk1 * xi * xi + 2 * s * t + dk * (1 - xi) * (1 - xi);
    double r = s / den;
    return (log)(r * r * num);
}

/* The inverse's quadratic a ξ² + b ξ + c = 0 for δ = y − y_k: *b, *c, and the discriminant b² − 4ac
 * clamped at 0 (returned), whose square root rq_root takes. */
NF_INLINE double rq_quadratic(double h, double s, double dk, double dk1, double del, double *b, double *c) {
    double D = dk1 + dk - 2 * s, a = h * (s - dk) + del * D;
    *b = h * dk - del * D, *c = -s * del;
    double disc = *b * *b - 4 * a * *c;
    return disc > 0 ? disc : 0;
}

/* The root ξ = 2c / (−b − √disc) in [0, 1] (no cancellation), given rt = √disc. */
NF_INLINE double rq_root(double b, double c, double rt) {
    double den = -b - rt;
    double xi = den != 0 ? 2 * c / den : 0;
    return xi < 0 ? 0 : xi > 1 ? 1 : xi;
}

/* The bin's backward at ξ: given gy = ∂L/∂y and gld = ∂L/∂log g', the gradients through y = y_k + h·N/Dn
 * and log g' = 2 log s + log M − 2 log Dn: *gx = ∂L/∂x, and on the bin's quantities *g_xk (x_k), *g_w,
 * *g_h (y_k's is gy itself), *g_dk, *g_dk1. */
NF_INLINE void rq_bin_backward(double w, double h, double s, double dk, double dk1, double xi, double gy, double gld, double *gx,
                               double *g_xk, double *g_w, double *g_h, double *g_dk, double *g_dk1) {
    double t = xi * (1 - xi), Dl = dk1 + dk - 2 * s;
    double N = s * xi * xi + dk * t, Dn = s + Dl * t;
    double M = dk1 * xi * xi + 2 * s * t + dk * (1 - xi) * (1 - xi);
    /* partials of N, Dn, M in ξ, s, d_k, d_{k+1} */
    double Nxi = 2 * s * xi + dk * (1 - 2 * xi), Dxi = Dl * (1 - 2 * xi);
    double Ns = xi * xi, Ds = 1 - 2 * t;
    double Mxi = 2 * dk1 * xi + 2 * s * (1 - 2 * xi) - 2 * dk * (1 - xi), Ms = 2 * t;
    double Dn2 = Dn * Dn;
    double y_xi = h * (Nxi * Dn - N * Dxi) / Dn2, y_s = h * (Ns * Dn - N * Ds) / Dn2;
    double y_dk = h * (t * Dn - N * t) / Dn2, y_dk1 = h * (-N * t) / Dn2, y_h = N / Dn;
    double l_xi = Mxi / M - 2 * Dxi / Dn, l_s = 2 / s + Ms / M - 2 * Ds / Dn;
    double l_dk = (1 - xi) * (1 - xi) / M - 2 * t / Dn, l_dk1 = xi * xi / M - 2 * t / Dn;
    double g_xi = gy * y_xi + gld * l_xi, g_s = gy * y_s + gld * l_s;
    *g_dk = gy * y_dk + gld * l_dk, *g_dk1 = gy * y_dk1 + gld * l_dk1;
    *gx = g_xi / w;
    /* ξ = (x − x_k)/w, s = h/w */
    *g_xk = -g_xi / w, *g_w = -g_xi * xi / w - g_s * s / w, *g_h = gy * y_h + g_s / w;
}

/* See rqspline.h. */
nf_status nf_rqs_check(const char *name, int32_t K, double B) {
    if (K < 2 || K > NF_RQS_MAX_BINS) return nf_fail(NF_ERR_INVALID, "%s: spline bins %d: must be 2..%d", name, (int)K, NF_RQS_MAX_BINS);
    if (!(B > 0 && B < 1e6)) return nf_fail(NF_ERR_INVALID, "%s: spline bound %g: must be in (0, 1e6)", name, B);
    return NF_OK;
}

/* See rqspline.h. */
void nf_rqs_forward(const nf_real *theta, int64_t stride, int32_t K, double B, double x, double *y, double *logdet) {
    if (!(x >= -B && x <= B)) { /* identity tails */
        *y = x, *logdet = 0;
        return;
    }
    rqs_knots q;
    locate(theta, stride, K, B, x, 0, &q);
    double xi = (x - q.xk[q.k]) / q.w;
    *y = q.yk[q.k] + rq_rise(q.h, q.s, q.dk, q.dk1, xi);
    *logdet = rq_log_deriv(q.s, q.dk, q.dk1, xi);
}

/* See rqspline.h. */
void nf_rqs_inverse(const nf_real *theta, int64_t stride, int32_t K, double B, double y, double *x, double *logdet) {
    if (!(y >= -B && y <= B)) {
        *x = y, *logdet = 0;
        return;
    }
    rqs_knots q;
    locate(theta, stride, K, B, y, 1, &q);
    double b, c, disc = rq_quadratic(q.h, q.s, q.dk, q.dk1, y - q.yk[q.k], &b, &c);
    double xi = rq_root(b, c, sqrt(disc));
    *x = q.xk[q.k] + xi * q.w;
    *logdet = rq_log_deriv(q.s, q.dk, q.dk1, xi);
}

/* See rqspline.h. The chain: (ξ, s, h_k, d_k, d_{k+1}, y_k) → (x_k, w_k, y_k, h_k) → normalised widths
 * and heights → softmax; derivatives → softplus. */
void nf_rqs_backward(const nf_real *theta, int64_t stride, int32_t K, double B, double x, double gy, double gld,
                     double *gx, nf_real *gtheta) {
    int32_t P = 3 * K - 1;
    if (gtheta)
        for (int32_t p = 0; p < P; p++) gtheta[p * stride] = 0;
    if (!(x >= -B && x <= B)) {
        *gx = gy;
        return;
    }
    rqs_knots q;
    locate(theta, stride, K, B, x, 0, &q);
    int32_t k = q.k;
    double xi = (x - q.xk[k]) / q.w, g_xk, g_w, g_h, g_dk, g_dk1, g_yk = gy;
    rq_bin_backward(q.w, q.h, q.s, q.dk, q.dk1, xi, gy, gld, gx, &g_xk, &g_w, &g_h, &g_dk, &g_dk1);
    if (!gtheta) return;
    /* x_k = −B + 2B·Σ_{i<k} w_i, bin width 2B·w_k (likewise y): gradients on the normalised sizes */
    double gwn[NF_RQS_MAX_BINS], ghn[NF_RQS_MAX_BINS];
    for (int32_t i = 0; i < K; i++) {
        gwn[i] = i < k ? 2 * B * g_xk : i == k ? 2 * B * g_w : 0;
        ghn[i] = i < k ? 2 * B * g_yk : i == k ? 2 * B * g_h : 0;
    }
    /* through w = m + (1 − K·m)·softmax(θ): ∂/∂θ_j = (1 − K·m)·p_j·(g_j − Σ_i p_i g_i) */
    double sw = 0, sh = 0;
    for (int32_t i = 0; i < K; i++) sw += q.pw[i] * gwn[i], sh += q.ph[i] * ghn[i];
    double cw = 1 - K * NF_RQS_MIN_WIDTH, ch = 1 - K * NF_RQS_MIN_HEIGHT;
    for (int32_t j = 0; j < K; j++) {
        gtheta[j * stride] = (nf_real)(cw * q.pw[j] * (gwn[j] - sw));
        gtheta[(K + j) * stride] = (nf_real)(ch * q.ph[j] * (ghn[j] - sh));
    }
    /* interior derivatives d = m_d + softplus(θ + c₀): ∂d/∂θ = sigmoid(θ + c₀) */
    if (k >= 1)
        gtheta[(int64_t)(2 * K + k - 1) * stride] = (nf_real)(g_dk * sigmoid_from(deriv_arg(theta, stride, K, k), q.ed[k - 1]));
    if (k + 1 <= K - 1)
        gtheta[(int64_t)(2 * K + k) * stride] = (nf_real)(g_dk1 * sigmoid_from(deriv_arg(theta, stride, K, k + 1), q.ed[k]));
}

/* ------------------------------------------------------------------ blocks of points
 * nf_rqs_*_block: the three maps above for up to NF_RQS_LANES points at once, point l's θ at
 * theta[l][q·stride]. Where libmvec is at hand (kernels/mvec.h) and the active path is AVX2 or AVX-512,
 * the block keeps its values lane-major — value q of every point side by side, a[q·LANES + l] — so that
 * each step of the scalar code above becomes a loop over the lanes that the compiler turns into vector
 * instructions, and exp and log into libmvec's vector calls. The bin is found without gathers: one pass
 * over the knots counts those at or below the point (the scalar search's bin, as the knots increase) and
 * carries along the knots, sizes and derivative parameters of the last one passed. Every lane computes
 * the scalar code's arithmetic in the same order; the logs come from libmvec instead of libm (within 4
 * ulp), so the two differ by rounding only (conformance's test_rq_spline_blocks bounds it). Lanes past n take lane 0's θ and are
 * dropped, so every loop runs whole vectors and a point's result does not depend on its block or on the
 * thread count. On the generic path, and in builds without libmvec, each point goes through the scalar
 * function. */
#if NF_MVEC
#define LANES NF_RQS_LANES

/* A block's knots (rqs_knots, lane-major), then each lane's bin k (as a double: compared with doubles in
 * the vector loops), its left knots, sizes and slope, its two knot derivatives and their parameters. */
typedef struct {
    double t[(3 * NF_RQS_MAX_BINS - 1) * LANES]; /* θ as double */
    double e[3 * NF_RQS_MAX_BINS * LANES];       /* the exponentials, the widths' and heights' normalised */
    double xk[(NF_RQS_MAX_BINS + 1) * LANES], yk[(NF_RQS_MAX_BINS + 1) * LANES];
    double k[LANES], xl[LANES], yl[LANES], w[LANES], h[LANES], s[LANES], dk[LANES], dk1[LANES];
    double ta[LANES], ea[LANES], tb[LANES], eb[LANES]; /* θ + c₀ and e^−|θ + c₀| of interior knots k and k + 1 */
} rqs_block;

/* Fill q's knots from point l's θ at theta[l][·stride] (lanes ≥ n: lane 0's), as make_knots does. */
NF_INLINE void block_knots(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, rqs_block *q) {
    int32_t P = 3 * K - 1;
    for (int l = 0; l < LANES; l++) {
        const nf_real *th = theta[l < n ? l : 0];
        for (int32_t p = 0; p < P; p++) q->t[p * LANES + l] = (double)th[p * stride];
    }
    double c0 = deriv_c0();
    for (int half = 0; half < 2; half++) { /* shifted: θ − max over the widths, then the heights */
        const double *t = q->t + half * K * LANES;
        double *e = q->e + half * K * LANES, mx[LANES];
#pragma omp simd
        for (int l = 0; l < LANES; l++) mx[l] = t[l];
        for (int32_t p = 1; p < K; p++)
#pragma omp simd
            for (int l = 0; l < LANES; l++) mx[l] = t[p * LANES + l] > mx[l] ? t[p * LANES + l] : mx[l];
        for (int32_t p = 0; p < K; p++)
#pragma omp simd
            for (int l = 0; l < LANES; l++) e[p * LANES + l] = t[p * LANES + l] - mx[l];
    }
#pragma omp simd
    for (int32_t i = 2 * K * LANES; i < P * LANES; i++) q->e[i] = -fabs(q->t[i] + c0);
#pragma omp simd
    for (int32_t i = 0; i < P * LANES; i++) q->e[i] = (exp)(q->e[i]);
    for (int half = 0; half < 2; half++) { /* normalise, then knots_from */
        double *e = q->e + half * K * LANES, *kn = half ? q->yk : q->xk, mn = half ? NF_RQS_MIN_HEIGHT : NF_RQS_MIN_WIDTH;
        double sum[LANES], acc[LANES], scale = 1 - mn * K;
#pragma omp simd
        for (int l = 0; l < LANES; l++) sum[l] = 0, acc[l] = 0, kn[l] = -B, kn[K * LANES + l] = B;
        for (int32_t p = 0; p < K; p++)
#pragma omp simd
            for (int l = 0; l < LANES; l++) sum[l] += e[p * LANES + l];
#pragma omp simd
        for (int l = 0; l < LANES; l++) sum[l] = 1 / sum[l];
        for (int32_t p = 0; p < K; p++)
#pragma omp simd
            for (int l = 0; l < LANES; l++) e[p * LANES + l] *= sum[l];
        for (int32_t p = 0; p < K - 1; p++)
#pragma omp simd
            for (int l = 0; l < LANES; l++) {
                acc[l] += mn + scale * e[p * LANES + l];
                kn[(p + 1) * LANES + l] = -B + 2 * B * acc[l];
            }
    }
}

/* As locate, for every lane: the knots, then the bin of v[l] among the x knots (by_y = 0) or the y
 * knots, its sizes and knot derivatives (knot_deriv: 1 at the ends, m_d + softplus inside). */
NF_INLINE void block_locate(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *v, int by_y,
                            rqs_block *q) {
    block_knots(theta, stride, K, B, n, q);
    const double *kn = by_y ? q->yk : q->xk, *ti = q->t + 2 * K * LANES, *ei = q->e + 2 * K * LANES;
    double xr[LANES], yr[LANES], da[LANES], db[LANES], c0 = deriv_c0();
#pragma omp simd
    for (int l = 0; l < LANES; l++) { /* bin 0 until a knot at or below v is passed */
        q->k[l] = 0, q->xl[l] = q->xk[l], q->yl[l] = q->yk[l], xr[l] = q->xk[LANES + l], yr[l] = q->yk[LANES + l];
        q->ta[l] = ti[l], q->ea[l] = ei[l], q->tb[l] = ti[l], q->eb[l] = ei[l];
    }
    for (int32_t p = 1; p < K; p++)
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            int ge = v[l] >= kn[p * LANES + l];
            q->k[l] += ge ? 1 : 0;
            q->xl[l] = ge ? q->xk[p * LANES + l] : q->xl[l], xr[l] = ge ? q->xk[(p + 1) * LANES + l] : xr[l];
            q->yl[l] = ge ? q->yk[p * LANES + l] : q->yl[l], yr[l] = ge ? q->yk[(p + 1) * LANES + l] : yr[l];
            /* knot p's parameters (row p − 1 of the interior ones) and knot p + 1's (row p; none for p = K − 1) */
            q->ta[l] = ge ? ti[(p - 1) * LANES + l] : q->ta[l], q->ea[l] = ge ? ei[(p - 1) * LANES + l] : q->ea[l];
            int32_t r = p < K - 1 ? p : p - 1;
            q->tb[l] = ge ? ti[r * LANES + l] : q->tb[l], q->eb[l] = ge ? ei[r * LANES + l] : q->eb[l];
        }
#pragma omp simd
    for (int l = 0; l < LANES; l++) { /* both softpluses in every lane: the logs outside any select */
        q->ta[l] += c0, q->tb[l] += c0;
        da[l] = NF_RQS_MIN_DERIV + softplus_from(q->ta[l], q->ea[l]);
        db[l] = NF_RQS_MIN_DERIV + softplus_from(q->tb[l], q->eb[l]);
    }
#pragma omp simd
    for (int l = 0; l < LANES; l++) {
        double k = q->k[l];
        q->w[l] = xr[l] - q->xl[l], q->h[l] = yr[l] - q->yl[l], q->s[l] = q->h[l] / q->w[l];
        q->dk[l] = k >= 1 ? da[l] : 1, q->dk1[l] = k + 1 <= K - 1 ? db[l] : 1;
    }
}

/* log g' of each lane at ξ[l] into ld[l]. */
NF_INLINE void block_log_deriv(const rqs_block *q, const double *xi, double *ld) {
#pragma omp simd
    for (int l = 0; l < LANES; l++) ld[l] = rq_log_deriv(q->s[l], q->dk[l], q->dk1[l], xi[l]);
}

/* Block forward (as nf_rqs_forward) on lanes [0, n). */
NF_INLINE void forward_block_body(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *x, double *y,
                                  double *logdet) {
    rqs_block q;
    double v[LANES], xi[LANES], yo[LANES], ld[LANES];
    for (int l = 0; l < LANES; l++) v[l] = l < n ? x[l] : 0;
    block_locate(theta, stride, K, B, n, v, 0, &q);
#pragma omp simd
    for (int l = 0; l < LANES; l++) {
        xi[l] = (v[l] - q.xl[l]) / q.w[l];
        yo[l] = q.yl[l] + rq_rise(q.h[l], q.s[l], q.dk[l], q.dk1[l], xi[l]);
    }
    block_log_deriv(&q, xi, ld);
    for (int l = 0; l < n; l++) {
        int in = x[l] >= -B && x[l] <= B; /* identity tails */
        y[l] = in ? yo[l] : x[l], logdet[l] = in ? ld[l] : 0;
    }
}

/* Block inverse (as nf_rqs_inverse) on lanes [0, n). The square roots run one lane at a time: libm's
 * sqrt keeps errno, which stops the compiler from vectorising it (the root's argument is ≥ 0 here). */
NF_INLINE void inverse_block_body(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *y, double *x,
                                  double *logdet) {
    rqs_block q;
    double v[LANES], b[LANES], c[LANES], rt[LANES], xi[LANES], xo[LANES], ld[LANES];
    for (int l = 0; l < LANES; l++) v[l] = l < n ? y[l] : 0;
    block_locate(theta, stride, K, B, n, v, 1, &q);
#pragma omp simd
    for (int l = 0; l < LANES; l++) rt[l] = rq_quadratic(q.h[l], q.s[l], q.dk[l], q.dk1[l], v[l] - q.yl[l], b + l, c + l);
    for (int l = 0; l < LANES; l++) rt[l] = sqrt(rt[l]);
#pragma omp simd
    for (int l = 0; l < LANES; l++) {
        xi[l] = rq_root(b[l], c[l], rt[l]);
        xo[l] = q.xl[l] + xi[l] * q.w[l];
    }
    block_log_deriv(&q, xi, ld);
    for (int l = 0; l < n; l++) {
        int in = y[l] >= -B && y[l] <= B;
        x[l] = in ? xo[l] : y[l], logdet[l] = in ? ld[l] : 0;
    }
}

/* Block backward (as nf_rqs_backward) on lanes [0, n); gtheta may be NULL (only gx wanted). */
NF_INLINE void backward_block_body(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *x,
                                   const double *gy, const double *gld, double *gx, nf_real *const *gtheta) {
    rqs_block q;
    double v[LANES], gyv[LANES], gl[LANES], gxo[LANES];
    double g_xk[LANES], g_w[LANES], g_h[LANES], g_dk[LANES], g_dk1[LANES];
    for (int l = 0; l < LANES; l++) v[l] = l < n ? x[l] : 0, gyv[l] = l < n ? gy[l] : 0, gl[l] = l < n ? gld[l] : 0;
    block_locate(theta, stride, K, B, n, v, 0, &q);
#pragma omp simd
    for (int l = 0; l < LANES; l++)
        rq_bin_backward(q.w[l], q.h[l], q.s[l], q.dk[l], q.dk1[l], (v[l] - q.xl[l]) / q.w[l], gyv[l], gl[l], gxo + l, g_xk + l, g_w + l,
                        g_h + l, g_dk + l, g_dk1 + l);
    int in[LANES];
    for (int l = 0; l < LANES; l++) in[l] = l < n && x[l] >= -B && x[l] <= B;
    for (int l = 0; l < n; l++) gx[l] = in[l] ? gxo[l] : gy[l];
    if (!gtheta) return;
    /* the widths' and heights' gradients through the softmaxes, lane-major, then each lane's out */
    double gt[(3 * NF_RQS_MAX_BINS - 1) * LANES], sw[LANES], sh[LANES];
#pragma omp simd
    for (int l = 0; l < LANES; l++) sw[l] = 0, sh[l] = 0;
    for (int32_t i = 0; i < K; i++)
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            double k = q.k[l];
            double gwn = i < k ? 2 * B * g_xk[l] : i == k ? 2 * B * g_w[l] : 0;
            double ghn = i < k ? 2 * B * gyv[l] : i == k ? 2 * B * g_h[l] : 0;
            gt[i * LANES + l] = gwn, gt[(K + i) * LANES + l] = ghn;
            sw[l] += q.e[i * LANES + l] * gwn, sh[l] += q.e[(K + i) * LANES + l] * ghn;
        }
    double cw = 1 - K * NF_RQS_MIN_WIDTH, ch = 1 - K * NF_RQS_MIN_HEIGHT;
    for (int32_t p = 0; p < K; p++)
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            int32_t i = p * LANES + l, j = (K + p) * LANES + l;
            gt[i] = cw * q.e[i] * (gt[i] - sw[l]);
            gt[j] = ch * q.e[j] * (gt[j] - sh[l]);
        }
    /* interior derivatives: ∂d/∂θ = sigmoid(θ + c₀) at knots k and k + 1 (sigmoid_from), 0 elsewhere */
    double sa[LANES], sb[LANES];
#pragma omp simd
    for (int l = 0; l < LANES; l++) sa[l] = g_dk[l] * sigmoid_from(q.ta[l], q.ea[l]), sb[l] = g_dk1[l] * sigmoid_from(q.tb[l], q.eb[l]);
    for (int32_t j = 1; j < K; j++)
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            double k = q.k[l];
            gt[(2 * K + j - 1) * LANES + l] = j == k ? sa[l] : j == k + 1 ? sb[l] : 0;
        }
    int32_t P = 3 * K - 1;
    for (int l = 0; l < n; l++) {
        nf_real *g = gtheta[l];
        for (int32_t p = 0; p < P; p++) g[p * stride] = in[l] ? (nf_real)gt[p * LANES + l] : 0;
    }
}

#define RQS_PATHS(name, params, args)                                                                           \
    __attribute__((target("avx512f,fma"))) static void name##_avx512 params { name##_body args; }               \
    __attribute__((target("avx2,fma"))) static void name##_avx2 params { name##_body args; }
RQS_PATHS(forward_block, (const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *x, double *y, double *logdet),
          (theta, stride, K, B, n, x, y, logdet))
RQS_PATHS(inverse_block, (const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *y, double *x, double *logdet),
          (theta, stride, K, B, n, y, x, logdet))
RQS_PATHS(backward_block, (const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *x, const double *gy,
                           const double *gld, double *gx, nf_real *const *gtheta),
          (theta, stride, K, B, n, x, gy, gld, gx, gtheta))
#undef RQS_PATHS
/* The block path's statement on AVX-512 (name_avx512 args) or AVX2, then return; else fall through. */
#define RQS_DISPATCH(name, args)                                                                                \
    do {                                                                                                        \
        nf_isa isa_ = nf_isa_active();                                                                          \
        if (isa_ >= NF_ISA_AVX512) { name##_avx512 args; return; }                                              \
        if (isa_ >= NF_ISA_AVX2) { name##_avx2 args; return; }                                                  \
    } while (0)
#else
#define RQS_DISPATCH(name, args) ((void)0)
#endif

/* See rqspline.h. */
void nf_rqs_forward_block(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *x, double *y,
                          double *logdet) {
    RQS_DISPATCH(forward_block, (theta, stride, K, B, n, x, y, logdet));
    for (int l = 0; l < n; l++) nf_rqs_forward(theta[l], stride, K, B, x[l], y + l, logdet + l);
}

/* See rqspline.h. */
void nf_rqs_inverse_block(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *y, double *x,
                          double *logdet) {
    RQS_DISPATCH(inverse_block, (theta, stride, K, B, n, y, x, logdet));
    for (int l = 0; l < n; l++) nf_rqs_inverse(theta[l], stride, K, B, y[l], x + l, logdet + l);
}

/* See rqspline.h. */
void nf_rqs_backward_block(const nf_real *const *theta, int64_t stride, int32_t K, double B, int n, const double *x, const double *gy,
                           const double *gld, double *gx, nf_real *const *gtheta) {
    RQS_DISPATCH(backward_block, (theta, stride, K, B, n, x, gy, gld, gx, gtheta));
    for (int l = 0; l < n; l++) nf_rqs_backward(theta[l], stride, K, B, x[l], gy[l], gld[l], gx + l, gtheta ? gtheta[l] : NULL);
}

/* ------------------------------------------------------------------ rows of a layer */
/* The run of values of rows [i0, i1), one block at a time: value (i, j) is value j of row i, in row-major
 * order; next_block gathers the next m ≤ NF_RQS_LANES of them (their rows and indices into ri, rj),
 * advancing (*i, *j), and returns m (0 at the end). */
static int next_block(const nf_rqs_layout *g, int64_t i1, int64_t *i, int64_t *j, int64_t *ri, int64_t *rj) {
    int m = 0;
    for (; m < NF_RQS_LANES && *i < i1; m++) {
        ri[m] = *i, rj[m] = *j;
        if (++*j == g->cols) *j = 0, ++*i;
    }
    return m;
}

/* See rqspline.h. */
void nf_rqs_map_rows(const nf_rqs_layout *g, const nf_real *theta, int inverse, const nf_real *in, int64_t ldi, nf_real *out,
                     int64_t ldo, nf_real *logdet, int64_t i0, int64_t i1) {
    nf_rqs_map_block *map = inverse ? nf_rqs_inverse_block : nf_rqs_forward_block;
    const int32_t *col = g->col;
    int64_t i = i0, j = 0, row = -1, ri[NF_RQS_LANES], rj[NF_RQS_LANES];
    double ld = 0;
    for (int m; g->cols > 0 && (m = next_block(g, i1, &i, &j, ri, rj)) > 0;) {
        const nf_real *tp[NF_RQS_LANES];
        double v[NF_RQS_LANES], o[NF_RQS_LANES], l[NF_RQS_LANES];
        for (int e = 0; e < m; e++)
            tp[e] = theta + ri[e] * g->th_row + rj[e] * g->th_col, v[e] = (double)in[ri[e] * ldi + (col ? col[rj[e]] : rj[e])];
        map(tp, g->th_stride, g->K, g->B, m, v, o, l);
        for (int e = 0; e < m; e++) {
            out[ri[e] * ldo + (col ? col[rj[e]] : rj[e])] = (nf_real)o[e];
            if (ri[e] != row) { /* row ri[e] begins: the one before is complete */
                if (row >= 0 && logdet) logdet[row] += (nf_real)(inverse ? -ld : ld);
                row = ri[e], ld = 0;
            }
            ld += l[e];
        }
    }
    if (row >= 0 && logdet) logdet[row] += (nf_real)(inverse ? -ld : ld);
}

/* See rqspline.h. */
void nf_rqs_backward_rows(const nf_rqs_layout *g, const nf_real *theta, const nf_real *x, int64_t ldx, const nf_real *dy, int64_t ldy,
                          nf_real ysign, const nf_real *dld, nf_real lsign, nf_real *dx, int64_t lddx, nf_real *dtheta, int64_t i0,
                          int64_t i1) {
    const int32_t *col = g->col;
    int64_t i = i0, j = 0, ri[NF_RQS_LANES], rj[NF_RQS_LANES];
    for (int m; g->cols > 0 && (m = next_block(g, i1, &i, &j, ri, rj)) > 0;) {
        const nf_real *tp[NF_RQS_LANES];
        nf_real *gp[NF_RQS_LANES];
        double v[NF_RQS_LANES], gy[NF_RQS_LANES], gl[NF_RQS_LANES], gx[NF_RQS_LANES];
        for (int e = 0; e < m; e++) {
            int64_t k = col ? col[rj[e]] : rj[e], t = ri[e] * g->th_row + rj[e] * g->th_col;
            tp[e] = theta + t, gp[e] = dtheta + t;
            v[e] = (double)x[ri[e] * ldx + k], gy[e] = dy ? (double)(ysign * dy[ri[e] * ldy + k]) : 0;
            gl[e] = dld ? (double)(lsign * dld[ri[e]]) : 0;
        }
        nf_rqs_backward_block(tp, g->th_stride, g->K, g->B, m, v, gy, gl, gx, gp);
        if (dx)
            for (int e = 0; e < m; e++) dx[ri[e] * lddx + (col ? col[rj[e]] : rj[e])] = (nf_real)gx[e];
    }
}
