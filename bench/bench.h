/* bench.h — what the C benchmarks of bench/ share. */
#ifndef NF_BENCH_H
#define NF_BENCH_H

#include <time.h>

/* Seconds on the monotonic clock (the benchmarks' timer). */
static inline double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
