/* data.c — datasets: FFJORD's 2-D toy generators, CSV tables, splits and column moments. */
#include "internal.h"

#include <ctype.h>
#include <errno.h>

static const char *toy_names[] = {"moons", "circles", "rings", "8gaussians", "checkerboard", "pinwheel", "2spirals", NULL};

const char *const *nf_toy_names(void) { return toy_names; }

int nf_toy_known(const char *name) {
    for (int i = 0; toy_names[i]; i++)
        if (strcmp(name, toy_names[i]) == 0) return i;
    return -1;
}

static nf_status dataset_alloc(int64_t n, int32_t dim, nf_dataset **out) {
    nf_dataset *d = nf_xcalloc(1, sizeof *d);
    if (d) d->x = nf_xcalloc((size_t)(n > 0 ? n : 1) * (size_t)dim, sizeof(nf_real));
    if (!d || !d->x) {
        nf_dataset_free(d);
        return nf_fail(NF_ERR_NOMEM, "out of memory for %lld × %d values", (long long)n, (int)dim);
    }
    d->n = n, d->dim = dim;
    *out = d;
    return NF_OK;
}

void nf_dataset_free(nf_dataset *d) {
    if (!d) return;
    free(d->x), free(d);
}

/* One point of each toy distribution; parameters are FFJORD's (Grathwohl et al. 2019, toy_data.py),
 * with the deterministic grids of sklearn's make_moons/make_circles replaced by uniform angles. */
static void toy_point(int which, nf_rng *r, double *px, double *py) {
    const double PI = 3.141592653589793;
    double x = 0, y = 0;
    switch (which) {
    case 0: { /* moons: make_moons(noise 0.1), then ·2 + (−1, −0.2) */
        double t = PI * nf_rng_uniform(r);
        if (nf_rng_u64(r) & 1) x = cos(t), y = sin(t);
        else x = 1 - cos(t), y = 1 - sin(t) - 0.5;
        x += 0.1 * nf_rng_normal(r), y += 0.1 * nf_rng_normal(r);
        x = 2 * x - 1, y = 2 * y - 0.2;
        break;
    }
    case 1: { /* circles: make_circles(factor 0.5, noise 0.08), ·3 */
        double t = 2 * PI * nf_rng_uniform(r), f = (nf_rng_u64(r) & 1) ? 1.0 : 0.5;
        x = f * cos(t) + 0.08 * nf_rng_normal(r), y = f * sin(t) + 0.08 * nf_rng_normal(r);
        x *= 3, y *= 3;
        break;
    }
    case 2: { /* rings: radii 1, .75, .5, .25, scaled by 3, noise 0.08 */
        double t = 2 * PI * nf_rng_uniform(r), rad = 0.25 * (double)(1 + nf_rng_u64(r) % 4);
        x = 3 * rad * cos(t) + 0.08 * nf_rng_normal(r), y = 3 * rad * sin(t) + 0.08 * nf_rng_normal(r);
        break;
    }
    case 3: { /* 8gaussians: centres 4·(cos, sin)(kπ/4), std 0.5, then /1.414 */
        int k = (int)(nf_rng_u64(r) % 8);
        x = 4 * cos(k * PI / 4) + 0.5 * nf_rng_normal(r), y = 4 * sin(k * PI / 4) + 0.5 * nf_rng_normal(r);
        x /= 1.414, y /= 1.414;
        break;
    }
    case 4: { /* checkerboard: x1 ~ U(−2, 2), x2 in the alternating unit squares, ·2 */
        double x1 = 4 * nf_rng_uniform(r) - 2;
        double x2 = nf_rng_uniform(r) - 2.0 * (double)(nf_rng_u64(r) & 1);
        x2 += fmod(floor(x1), 2.0) == 0 ? 0 : 1;
        x = 2 * x1, y = 2 * x2;
        break;
    }
    case 5: { /* pinwheel: 5 arms, radial std 0.3, tangential std 0.1, rate 0.25, ·2 */
        int k = (int)(nf_rng_u64(r) % 5);
        double f0 = 0.3 * nf_rng_normal(r) + 1, f1 = 0.1 * nf_rng_normal(r);
        double a = 2 * PI * k / 5 + 0.25 * exp(f0);
        x = 2 * (f0 * cos(a) + f1 * sin(a)), y = 2 * (-f0 * sin(a) + f1 * cos(a));
        break;
    }
    default: { /* 2spirals: n = √u · 540°, arm (−cos n · n, sin n · n) + U(0, .5) jitter, /3, noise 0.1 */
        double n = sqrt(nf_rng_uniform(r)) * 540 * (2 * PI) / 360;
        x = -cos(n) * n + 0.5 * nf_rng_uniform(r), y = sin(n) * n + 0.5 * nf_rng_uniform(r);
        if (nf_rng_u64(r) & 1) x = -x, y = -y;
        x = x / 3 + 0.1 * nf_rng_normal(r), y = y / 3 + 0.1 * nf_rng_normal(r);
        break;
    }
    }
    *px = x, *py = y;
}

nf_status nf_dataset_toy(const char *name, int64_t n, uint64_t seed, nf_dataset **out) {
    *out = NULL;
    int which = nf_toy_known(name);
    if (which < 0) return nf_fail(NF_ERR_INVALID, "unknown dataset '%s' (built-in: moons, circles, rings, 8gaussians, checkerboard, pinwheel, 2spirals)", name);
    if (n < 1) return nf_fail(NF_ERR_INVALID, "dataset size %lld: must be ≥ 1", (long long)n);
    nf_status st = dataset_alloc(n, 2, out);
    if (st) return st;
    nf_rng r;
    nf_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        double x, y;
        toy_point(which, &r, &x, &y);
        (*out)->x[2 * i] = (nf_real)x, (*out)->x[2 * i + 1] = (nf_real)y;
    }
    return NF_OK;
}

/* ------------------------------------------------------------------ CSV */
/* Parse one field [s, e) as a finite number. 1 = number, 0 = not a number, -1 = not finite. */
static int parse_field(const char *s, const char *e, double *v) {
    while (s < e && isspace((unsigned char)*s)) s++;
    while (e > s && isspace((unsigned char)e[-1])) e--;
    if (s == e) return 0;
    char buf[128];
    size_t len = (size_t)(e - s);
    if (len >= sizeof buf) return 0;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end;
    errno = 0;
    *v = strtod(buf, &end);
    if (*end != 0) return 0;
    if (!isfinite(*v) || errno == ERANGE) return isfinite(*v) && *v == 0 ? 1 : -1;
    return 1;
}

static nf_status read_all(const char *path, char **buf, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return nf_fail(NF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) {
            char *t = realloc(b, cap *= 2);
            if (!t) { free(b); b = NULL; break; }
            b = t;
        }
        size_t k = fread(b + n, 1, cap - n - 1, fp);
        n += k;
        if (k == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (!b) return nf_fail(NF_ERR_NOMEM, "%s: out of memory reading the file", path);
    if (err) {
        free(b);
        return nf_fail(NF_ERR_IO, "%s: read error", path);
    }
    b[n] = 0;
    *buf = b, *len = n;
    return NF_OK;
}

/* Parse one line [s, le): fields into vals (if not NULL, up to cap), returns the field count; *numeric
 * counts numeric fields; *bad is the first non-numeric field (1-based, 0 if none), *bad_kind its kind
 * (0 not a number, -1 not finite), [*bs, *be) its text. */
static int parse_line(const char *s, const char *le, nf_real *vals, int cap, int *numeric, int *bad,
                      int *bad_kind, const char **bs, const char **be) {
    int fidx = 0;
    *numeric = 0, *bad = 0;
    const char *f = s;
    for (const char *q = s;; q++) {
        if (q == le || *q == ',') {
            double v;
            int k = parse_field(f, q, &v);
            fidx++;
            if (k == 1) {
                (*numeric)++;
                if (vals && fidx <= cap) vals[fidx - 1] = (nf_real)v;
            } else if (!*bad || (k == -1 && *bad_kind == 0)) {
                *bad = fidx, *bad_kind = k, *bs = f, *be = q;
            }
            f = q + 1;
            if (q == le) break;
        }
    }
    return fidx;
}

nf_status nf_dataset_csv(const char *path, nf_dataset **out) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    nf_status st = read_all(path, &buf, &len);
    if (st) return st;
    if (memchr(buf, 0, len)) {
        free(buf);
        return nf_fail(NF_ERR_FORMAT, "%s: binary data (NUL byte), not a CSV text file", path);
    }
    /* pass 0 validates and counts rows; pass 1 fills the values */
    int32_t dim = 0;
    int64_t rows = 0;
    nf_dataset *d = NULL;
    for (int pass = 0; pass < 2; pass++) {
        int64_t line = 0, r = 0;
        int seen = 0;
        for (char *s = buf; *s;) {
            char *e = strchr(s, '\n');
            if (!e) e = s + strlen(s);
            char *next = *e ? e + 1 : e, *le = e;
            if (le > s && le[-1] == '\r') le--;
            line++;
            const char *p = s;
            while (p < le && isspace((unsigned char)*p)) p++;
            if (p == le) { /* blank line */
                s = next;
                continue;
            }
            int numeric, bad, bad_kind = 0;
            const char *bs = NULL, *be = NULL;
            nf_real *row = pass == 1 ? d->x + r * dim : NULL;
            int nf = parse_line(s, le, row, dim, &numeric, &bad, &bad_kind, &bs, &be);
            int header = !seen && numeric == 0 && bad_kind == 0;
            seen = 1;
            if (header) {
                dim = nf;
            } else {
                const char *why = NULL;
                if (bad) why = bad_kind == -1 ? "is not finite" : "is not a number";
                if (!why && dim && nf != dim) {
                    free(buf), nf_dataset_free(d);
                    return nf_fail(NF_ERR_FORMAT, "%s:%lld: %d fields, expected %d (ragged rows)", path, (long long)line, nf, (int)dim);
                }
                if (why) {
                    int flen = (int)(be - bs);
                    nf_fail(NF_ERR_FORMAT, "%s:%lld: field %d: '%.*s' %s", path, (long long)line, bad, flen > 40 ? 40 : flen, bs, why);
                    free(buf), nf_dataset_free(d);
                    return NF_ERR_FORMAT;
                }
                dim = nf;
                r++;
            }
            s = next;
        }
        if (pass == 0) {
            if (r == 0) {
                free(buf);
                return nf_fail(NF_ERR_FORMAT, "%s: no data rows (empty file)", path);
            }
            rows = r;
            if ((st = dataset_alloc(rows, dim, &d))) {
                free(buf);
                return st;
            }
        }
    }
    free(buf);
    *out = d;
    return NF_OK;
}

nf_status nf_dataset_write_csv(const nf_dataset *ds, const char *path, const char *colprefix) {
    char tmp[4096];
    FILE *fp = nf_open_temp(path, tmp, sizeof tmp);
    if (!fp) return NF_ERR_IO;
    for (int32_t j = 0; j < ds->dim; j++) fprintf(fp, "%s%s%d", j ? "," : "", colprefix, (int)j + 1);
    fputc('\n', fp);
    for (int64_t i = 0; i < ds->n; i++) {
        for (int32_t j = 0; j < ds->dim; j++) fprintf(fp, "%s%.9g", j ? "," : "", (double)ds->x[i * ds->dim + j]);
        fputc('\n', fp);
    }
    return nf_commit_temp(fp, tmp, path, 1);
}

nf_status nf_dataset_split(const nf_dataset *ds, double frac, uint64_t seed, nf_dataset **train, nf_dataset **test) {
    *train = *test = NULL;
    if (ds->n < 2) return nf_fail(NF_ERR_INVALID, "need at least 2 rows to split, have %lld", (long long)ds->n);
    if (!(frac > 0 && frac < 1)) return nf_fail(NF_ERR_INVALID, "test fraction %g: must be in (0, 1)", frac);
    int64_t nt = (int64_t)llround(frac * (double)ds->n);
    if (nt < 1) nt = 1;
    if (nt > ds->n - 1) nt = ds->n - 1;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)ds->n);
    nf_status st = idx ? NF_OK : nf_fail(NF_ERR_NOMEM, "out of memory");
    if (!st) st = dataset_alloc(ds->n - nt, ds->dim, train);
    if (!st) st = dataset_alloc(nt, ds->dim, test);
    if (st) {
        free(idx);
        nf_dataset_free(*train), nf_dataset_free(*test);
        *train = *test = NULL;
        return st;
    }
    nf_shuffled_indices(idx, ds->n, seed);
    size_t row = sizeof(nf_real) * (size_t)ds->dim;
    for (int64_t i = 0; i < ds->n; i++) {
        nf_real *dst = i < nt ? (*test)->x + i * ds->dim : (*train)->x + (i - nt) * ds->dim;
        memcpy(dst, ds->x + idx[i] * ds->dim, row);
    }
    free(idx);
    return NF_OK;
}

void nf_dataset_moments(const nf_dataset *ds, nf_real *mean, nf_real *std) {
    for (int32_t j = 0; j < ds->dim; j++) {
        double m = 0, v = 0;
        for (int64_t i = 0; i < ds->n; i++) m += ds->x[i * ds->dim + j];
        m /= (double)ds->n;
        for (int64_t i = 0; i < ds->n; i++) {
            double d = ds->x[i * ds->dim + j] - m;
            v += d * d;
        }
        double sd = sqrt(v / (double)ds->n);
        mean[j] = (nf_real)m;
        std[j] = sd > 0 ? (nf_real)sd : 1;
    }
}
