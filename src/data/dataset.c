/* data/dataset.c — tables of rows: allocation, train/test splits, column moments. */
#include "data/data.h"

/* See data.h. */
nf_status nf_dataset_alloc(int64_t n, int32_t dim, nf_dataset **out) {
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

/* Free d, its rows and names; NULL is a no-op. */
void nf_dataset_free(nf_dataset *d) {
    if (!d) return;
    free(d->x), free(d->names), free(d);
}

/* See nflow.h: d->names = a copy of names (NULL: unnamed), which must have d->dim fields. */
nf_status nf_dataset_set_names(nf_dataset *d, const char *names) {
    char *copy;
    nf_status st = nf_names_copy(names, d->dim, "dataset", &copy);
    if (st) return st;
    free(d->names);
    d->names = copy;
    return NF_OK;
}

/* New datasets *train and *test (the caller frees both) with the rows of ds shuffled by seed;
 * test gets round(frac·n) rows, clamped to 1..n−1. Both NULL on failure. */
nf_status nf_dataset_split(const nf_dataset *ds, double frac, uint64_t seed, nf_dataset **train, nf_dataset **test) {
    *train = *test = NULL;
    if (ds->n < 2) return nf_fail(NF_ERR_INVALID, "need at least 2 rows to split, have %lld", (long long)ds->n);
    if (!(frac > 0 && frac < 1)) return nf_fail(NF_ERR_INVALID, "test fraction %g: must be in (0, 1)", frac);
    int64_t nt = (int64_t)llround(frac * (double)ds->n);
    if (nt < 1) nt = 1;
    if (nt > ds->n - 1) nt = ds->n - 1;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)ds->n);
    nf_status st = idx ? NF_OK : nf_fail(NF_ERR_NOMEM, "out of memory");
    if (!st) st = nf_dataset_alloc(ds->n - nt, ds->dim, train);
    if (!st) st = nf_dataset_alloc(nt, ds->dim, test);
    if (!st) st = nf_dataset_set_names(*train, ds->names);
    if (!st) st = nf_dataset_set_names(*test, ds->names);
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

/* mean[j] and std[j] (caller's arrays of ds->dim) of every column of ds (population std, two
 * passes in double); a constant column gets std 1. */
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
