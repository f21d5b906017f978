/* core/status.c — error reasons, allocation, threads. */
#include "core/core.h"

#include <stdarg.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static _Thread_local char g_err[512];

/* Format the reason into this thread's buffer; returns st (see core.h). */
nf_status nf_fail(nf_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return st;
}

/* Empty this thread's reason. */
void nf_clear_error(void) { g_err[0] = 0; }

/* NFLOW_VERSION of this build (static string; see nflow.h). */
const char *nf_version(void) { return NFLOW_VERSION; }

/* This thread's reason; "" if none. The string stays owned by the library. */
const char *nf_last_error(void) { return g_err; }

/* Zeroed n·size bytes or NULL (overflow, out of memory); see core.h. */
void *nf_xcalloc(size_t n, size_t size) {
    if (n == 0 || size == 0) return calloc(1, 1);
    if (n > SIZE_MAX / size) return NULL;
    return calloc(n, size);
}

/* See core.h. */
nf_status nf_names_copy(const char *names, int32_t fields, const char *what, char **out) {
    *out = NULL;
    if (!names) return NF_OK;
    int32_t n = 1;
    size_t len = strlen(names);
    for (size_t i = 0; i <= len; i++) {
        int end = i == len || names[i] == ',';
        if (end && (i == 0 || names[i - 1] == ','))
            return nf_fail(NF_ERR_INVALID, "%s: column name %d is empty", what, (int)n);
        if (!end && (names[i] == '"' || (unsigned char)names[i] < 0x20 || names[i] == 0x7f))
            return nf_fail(NF_ERR_INVALID, "%s: column name %d has a %s (names are written unquoted in CSV headers)", what, (int)n,
                           names[i] == '"' ? "double quote" : "control character such as a line break");
        if (end && i < len) n++;
    }
    if (n != fields) return nf_fail(NF_ERR_INVALID, "%s: %d column names for %d columns", what, (int)n, (int)fields);
    if (!(*out = malloc(len + 1))) return nf_fail(NF_ERR_NOMEM, "out of memory");
    memcpy(*out, names, len + 1);
    return NF_OK;
}

/* Set the OpenMP threads of later parallel regions (n ≥ 1; other values are ignored). */
void nf_set_threads(int n) {
#ifdef _OPENMP
    if (n >= 1) omp_set_num_threads(n);
#else
    NF_UNUSED(n);
#endif
}

/* See core.h. */
int nf_fork(int worth) {
#ifdef _OPENMP
    return worth && omp_get_max_threads() > 1 && !omp_in_parallel();
#else
    NF_UNUSED(worth);
    return 0;
#endif
}

/* See core.h: thread t of T takes [n·t/T, n·(t + 1)/T). */
void nf_share(int64_t n, int64_t *lo, int64_t *hi) {
#ifdef _OPENMP
    int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    *lo = n * t / T, *hi = n * (t + 1) / T;
#else
    *lo = 0, *hi = n;
#endif
}

/* The OpenMP threads a parallel region would use now (1 without OpenMP). */
int nf_get_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
