/* plot.c — pictures of 2-D flows, written as PNG with libpng:
 *   panel 1: the learned density p(x) = π(f(x))·|det J_f(x)| on a grid (viridis colour map);
 *   panel 2: model samples x = G(z), z ~ π (orange) over the data (blue);
 *   panel 3: the warped grid — a regular grid of latent lines z mapped to data space by G, the
 *            change-of-variables picture of the lecture. */
#include "models/models.h"


typedef struct {
    uint8_t *rgb;
    int32_t W, H;      /* whole image */
    int32_t x0, y0, size; /* current panel: columns x0 .. x0+size, rows y0 .. y0+size */
    double lo[2], hi[2];
} canvas;

/* c[0..3) = the RGB of the viridis colour map at t (clamped to [0, 1]; linear between 9 stops). */
static void viridis(double t, uint8_t *c) {
    static const double k[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},  {44, 113, 142}, {33, 144, 141},
                                   {39, 173, 129}, {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    double p = t * 8;
    int i = (int)p;
    if (i > 7) i = 7;
    double a = p - i;
    for (int j = 0; j < 3; j++) c[j] = (uint8_t)(k[i][j] * (1 - a) + k[i + 1][j] * a + 0.5);
}

/* blend colour into the pixel at data coordinates (x, y) of the current panel */
static void dot(canvas *cv, double x, double y, const uint8_t *col, double alpha, int radius) {
    if (!isfinite(x) || !isfinite(y)) return;
    int px = (int)floor((x - cv->lo[0]) / (cv->hi[0] - cv->lo[0]) * cv->size);
    int py = (int)floor((cv->hi[1] - y) / (cv->hi[1] - cv->lo[1]) * cv->size);
    for (int dy = -radius; dy <= radius; dy++)
        for (int dx = -radius; dx <= radius; dx++) {
            int u = px + dx, v = py + dy;
            if (u < 0 || v < 0 || u >= cv->size || v >= cv->size) continue;
            uint8_t *p = cv->rgb + ((size_t)(cv->y0 + v) * (size_t)cv->W + (size_t)(cv->x0 + u)) * 3;
            for (int j = 0; j < 3; j++) p[j] = (uint8_t)(p[j] * (1 - alpha) + col[j] * alpha + 0.5);
        }
}

/* a line segment in data coordinates, drawn as dots one pixel apart */
static void segment(canvas *cv, double x0, double y0, double x1, double y1, const uint8_t *col) {
    if (!isfinite(x0) || !isfinite(y0) || !isfinite(x1) || !isfinite(y1)) return;
    double sx = cv->size / (cv->hi[0] - cv->lo[0]), sy = cv->size / (cv->hi[1] - cv->lo[1]);
    double len = hypot((x1 - x0) * sx, (y1 - y0) * sy);
    /* Neighbouring latent points 0.03 prior-std apart that land a quarter panel apart sit across a fold of
     * the map where the density is ~0: leave the gap open rather than draw a long false chord. */
    if (len > cv->size / 4.0) return;
    int steps = (int)ceil(len);
    for (int s = 0; s <= steps; s++) {
        double t = steps ? (double)s / steps : 0;
        dot(cv, x0 + t * (x1 - x0), y0 + t * (y1 - y0), col, 0.9, 0);
    }
}

/* qsort comparator of two doubles (ascending; NaN-free input). */
static int cmp_double(const void *p, const void *q) {
    double a = *(const double *)p, b = *(const double *)q;
    return (a > b) - (a < b);
}

/* The current panel (x0, y0) filled with white. */
static void white(canvas *cv) {
    for (int32_t v = 0; v < cv->size; v++) memset(cv->rgb + ((size_t)(cv->y0 + v) * (size_t)cv->W + (size_t)cv->x0) * 3, 255, (size_t)cv->size * 3);
}

/* m rows of K values in cr, each a copy of the context row c (nothing when K = 0); returns cr, or NULL
 * when K = 0. */
static const nf_real *repeat_row(nf_real *cr, const nf_real *c, int32_t K, int64_t m) {
    if (K == 0) return NULL;
    for (int64_t i = 0; i < m; i++) memcpy(cr + i * K, c, sizeof(nf_real) * (size_t)K);
    return cr;
}

/* See nflow.h: the three-panel picture of the 2-D flow f (density, samples over data, warped grid) as a
 * PNG at path, one row of panels per context row of a conditional flow; f, data (may be NULL) and c
 * borrowed; NF_ERR_INVALID for a non-2-D flow or contexts that do not fit it. */
nf_status nf_plot_2d_ctx(nf_flow *f, const nf_dataset *data, const nf_real *c, int32_t nc, const char *path, int32_t S,
                         uint64_t seed) {
    int32_t K = nf_flow_context_dim(f), rows = K > 0 ? nc : 1;
    if (nf_flow_dim(f) != 2) return nf_fail(NF_ERR_INVALID, "plot needs a 2-D model, this one has %d dimension%s", (int)nf_flow_dim(f), nf_flow_dim(f) == 1 ? "" : "s");
    if (S < 32 || S > 4096) return nf_fail(NF_ERR_INVALID, "panel size %d: must be 32..4096 pixels", (int)S);
    if (data && data->dim != 2) return nf_fail(NF_ERR_INVALID, "plot data has %d columns, need 2", (int)data->dim);
    if (K == 0 && c) return nf_fail(NF_ERR_INVALID, "the flow is not conditional: it takes no contexts");
    if (K > 0 && (!c || nc < 1 || nc > 16)) return nf_fail(NF_ERR_INVALID, "a conditional flow is plotted for 1 to 16 context rows (got %d)", c ? (int)nc : 0);
    if (K > 0 && data) return nf_fail(NF_ERR_INVALID, "a conditional flow's plot takes no data (its rows have contexts of their own)");
    const int64_t NS = 4000, GL = 21, GP = 200; /* samples per row; grid lines per direction; points per line */
    int64_t crn = (int64_t)S * S > NS ? (int64_t)S * S : NS; /* rows of a repeated context: the most any call takes */
    if (crn < 2 * GL * GP) crn = 2 * GL * GP;
    canvas cv = {0};
    cv.W = 3 * S, cv.H = rows * S, cv.size = S;
    cv.rgb = nf_xcalloc((size_t)cv.W * (size_t)cv.H, 3);
    nf_real *grid = nf_xcalloc((size_t)S * (size_t)S * 2, sizeof(nf_real));
    nf_real *lp = nf_xcalloc((size_t)S * (size_t)S, sizeof(nf_real));
    nf_real *smp = nf_xcalloc((size_t)(rows * NS) * 2, sizeof(nf_real));
    nf_real *lines = nf_xcalloc((size_t)(2 * GL * GP) * 2, sizeof(nf_real));
    nf_real *cr = K > 0 ? nf_xcalloc((size_t)crn * (size_t)K, sizeof(nf_real)) : NULL; /* a context row repeated */
    nf_status st = (cv.rgb && grid && lp && smp && lines && (K == 0 || cr)) ? NF_OK : nf_fail(NF_ERR_NOMEM, "out of memory for the plot");
    int training = nf_flow_is_training(f);
    nf_flow_set_training(f, 0);
    nf_rng rng;
    nf_rng_seed(&rng, seed);
    for (int32_t r = 0; r < rows && !st; r++) {
        st = nf_flow_sample_ctx(f, &rng, 1.0, repeat_row(cr, c + (int64_t)r * K, K, NS), smp + r * NS * 2, NS);
        if (st == NF_ERR_NUMERIC) st = NF_OK, nf_clear_error(); /* a sample that overflows is not drawn */
    }
    if (st) goto done;
    /* view: data (or every row's samples) range, robust to outliers: 0.5 % .. 99.5 % quantiles per axis, + 10 % */
    {
        const nf_real *pts = data ? data->x : smp;
        int64_t n = data ? data->n : rows * NS;
        double *col = malloc(sizeof(double) * (size_t)n);
        if (!col) { st = nf_fail(NF_ERR_NOMEM, "out of memory"); goto done; }
        double half = 0, mid[2] = {0, 0};
        for (int a = 0; a < 2; a++) {
            int64_t m = 0; /* the finite values only (a sample may overflow) */
            for (int64_t i = 0; i < n; i++)
                if (isfinite(pts[2 * i]) && isfinite(pts[2 * i + 1])) col[m++] = pts[2 * i + a];
            if (m == 0) break;
            qsort(col, (size_t)m, sizeof(double), cmp_double);
            double q0 = col[(int64_t)(0.005 * (double)(m - 1))], q1 = col[(int64_t)(0.995 * (double)(m - 1))];
            mid[a] = 0.5 * (q0 + q1);
            if (0.5 * (q1 - q0) > half) half = 0.5 * (q1 - q0);
        }
        free(col);
        if (!(half > 0) || !isfinite(half)) half = 1;
        half *= 1.15;
        for (int a = 0; a < 2; a++) cv.lo[a] = mid[a] - half, cv.hi[a] = mid[a] + half;
    }
    for (int32_t v = 0; v < S; v++)
        for (int32_t u = 0; u < S; u++) {
            grid[2 * ((int64_t)v * S + u)] = (nf_real)(cv.lo[0] + (u + 0.5) / S * (cv.hi[0] - cv.lo[0]));
            grid[2 * ((int64_t)v * S + u) + 1] = (nf_real)(cv.hi[1] - (v + 0.5) / S * (cv.hi[1] - cv.lo[1]));
        }
    static const uint8_t blue[3] = {31, 119, 180}, orange[3] = {255, 127, 14}, grey[3] = {170, 170, 170};
    static const uint8_t red[3] = {214, 39, 40}, navy[3] = {23, 48, 110};
    for (int32_t r = 0; r < rows; r++) {
        const nf_real *cx = K > 0 ? c + (int64_t)r * K : NULL, *rs = smp + r * NS * 2;
        cv.y0 = r * S;
        /* panel 1: density p(x | c), its colours scaled to the row's maximum */
        cv.x0 = 0;
        st = nf_flow_log_prob_ctx(f, grid, repeat_row(cr, cx, K, (int64_t)S * S), lp, (int64_t)S * S);
        if (st == NF_ERR_NUMERIC) st = NF_OK, nf_clear_error(); /* a far grid point may overflow: drawn as density 0 */
        if (st) goto done;
        double mx = -INFINITY;
        for (int64_t i = 0; i < (int64_t)S * S; i++)
            if (isfinite(lp[i]) && lp[i] > mx) mx = lp[i];
        for (int32_t v = 0; v < S; v++)
            for (int32_t u = 0; u < S; u++) {
                double p = exp((double)lp[(int64_t)v * S + u] - mx);
                viridis(p, cv.rgb + ((size_t)(cv.y0 + v) * (size_t)cv.W + (size_t)u) * 3);
            }
        /* panel 2: samples over data on white */
        cv.x0 = S;
        white(&cv);
        if (data)
            for (int64_t i = 0; i < data->n && i < 20000; i++) dot(&cv, data->x[2 * i], data->x[2 * i + 1], blue, 0.35, 1);
        for (int64_t i = 0; i < NS; i++) dot(&cv, rs[2 * i], rs[2 * i + 1], orange, 0.5, 1);
        /* panel 3: warped grid: latent lines z1 = const and z2 = const over ±3 prior scales around the prior's
         * location (given c) */
        cv.x0 = 2 * S;
        white(&cv);
        if (data)
            for (int64_t i = 0; i < data->n && i < 20000; i++) dot(&cv, data->x[2 * i], data->x[2 * i + 1], grey, 0.25, 0);
        double R = nf_flow_config(f)->prior == NF_PRIOR_LOGISTIC ? 3 * 1.8138 : 3.0, mu[2], ls[2];
        nf_flow_prior_moments(f, cx, mu, ls);
        for (int64_t l = 0; l < GL; l++)
            for (int64_t p = 0; p < GP; p++) {
                double a = -R + 2 * R * (double)l / (double)(GL - 1), b = -R + 2 * R * (double)p / (double)(GP - 1);
                nf_real *h = lines + 2 * (l * GP + p), *vv = lines + 2 * ((GL + l) * GP + p);
                h[0] = (nf_real)(mu[0] + exp(ls[0]) * b), h[1] = (nf_real)(mu[1] + exp(ls[1]) * a);  /* horizontal line z2 = a */
                vv[0] = (nf_real)(mu[0] + exp(ls[0]) * a), vv[1] = (nf_real)(mu[1] + exp(ls[1]) * b); /* vertical line z1 = a */
            }
        st = nf_flow_inverse_ctx(f, lines, repeat_row(cr, cx, K, 2 * GL * GP), lines, NULL, 2 * GL * GP);
        if (st == NF_ERR_NUMERIC) st = NF_OK, nf_clear_error(); /* a far grid point may overflow: its segments are left out */
        if (st) goto done;
        for (int64_t l = 0; l < 2 * GL; l++)
            for (int64_t p = 0; p + 1 < GP; p++) {
                const nf_real *a = lines + 2 * (l * GP + p);
                segment(&cv, a[0], a[1], a[2], a[3], l < GL ? navy : red);
            }
    }
    /* 1-pixel separators between panels and between rows */
    for (int32_t v = 0; v < cv.H; v++)
        for (int k = 1; k < 3; k++) memset(cv.rgb + ((size_t)v * (size_t)cv.W + (size_t)(k * S)) * 3, 0, 3);
    for (int32_t r = 1; r < rows; r++) memset(cv.rgb + (size_t)r * (size_t)S * (size_t)cv.W * 3, 0, (size_t)cv.W * 3);
    st = nf_png_write(path, cv.rgb, cv.W, cv.H);
done:
    nf_flow_set_training(f, training);
    free(cv.rgb), free(grid), free(lp), free(smp), free(lines), free(cr);
    return st;
}

/* See nflow.h: nf_plot_2d_ctx of an unconditional flow. */
nf_status nf_plot_2d(nf_flow *f, const nf_dataset *data, const char *path, int32_t S, uint64_t seed) {
    return nf_plot_2d_ctx(f, data, NULL, 1, path, S, seed);
}
