/* util.c — error reasons, allocation, threads, atomic files. */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static _Thread_local char g_err[512];

nf_status nf_fail(nf_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return st;
}

void nf_clear_error(void) { g_err[0] = 0; }
const char *nf_last_error(void) { return g_err; }

void *nf_xcalloc(size_t n, size_t size) {
    if (n == 0 || size == 0) return calloc(1, 1);
    if (n > SIZE_MAX / size) return NULL;
    return calloc(n, size);
}

void nf_set_threads(int n) {
#ifdef _OPENMP
    if (n >= 1) omp_set_num_threads(n);
#else
    NF_UNUSED(n);
#endif
}

int nf_get_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

FILE *nf_open_temp(const char *path, char *tmp, size_t tmpsz) {
    int k = snprintf(tmp, tmpsz, "%s.tmp.%ld", path, (long)getpid());
    if (k < 0 || (size_t)k >= tmpsz) {
        nf_fail(NF_ERR_INVALID, "%s: path too long", path);
        return NULL;
    }
    FILE *fp = fopen(tmp, "wb");
    if (!fp) nf_fail(NF_ERR_IO, "%s: cannot open for writing: %s", tmp, strerror(errno));
    return fp;
}

nf_status nf_commit_temp(FILE *fp, const char *tmp, const char *path, int ok) {
    if (ferror(fp)) ok = 0;
    if (fclose(fp) != 0) ok = 0;
    if (!ok) {
        remove(tmp);
        return nf_fail(NF_ERR_IO, "%s: write failed", path);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return nf_fail(NF_ERR_IO, "%s: cannot rename temporary file: %s", path, strerror(e));
    }
    return NF_OK;
}

nf_status nf_write_file_atomic(const char *path, const void *data, size_t len) {
    char tmp[4096];
    FILE *fp = nf_open_temp(path, tmp, sizeof tmp);
    if (!fp) return NF_ERR_IO;
    int ok = fwrite(data, 1, len, fp) == len;
    return nf_commit_temp(fp, tmp, path, ok);
}

void nf_shuffled_indices(int64_t *idx, int64_t n, uint64_t seed) {
    nf_rng r;
    nf_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher–Yates */
        int64_t k = (int64_t)(nf_rng_u64(&r) % (uint64_t)(i + 1)), t = idx[i];
        idx[i] = idx[k], idx[k] = t;
    }
}
