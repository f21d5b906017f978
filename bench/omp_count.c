/* omp_count.c — how many OpenMP parallel regions a program enters, and from where: a library to preload
 * that wraps libgomp's GOMP_parallel (every `#pragma omp parallel` compiled by GCC calls it, whether its
 * `if` clause holds or not) and counts the calls per outlined region function.
 *   LD_PRELOAD=./build/libnflow_omp_count.so ./build/nflow bench realnvp-moons --threads 1 --seconds 2
 * writes DIR/omp_regions.PID.txt for each process (DIR: $OMP_COUNT_DIR, else /tmp), rewritten every 1 000
 * regions (a process that ends by _exit runs no destructor): the total, then one line per region function,
 * "calls library offset"; `addr2line -f -e library 0xoffset` names the function. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SITES 512

typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);

static void *g_fn[SITES];
static long g_calls[SITES], g_total;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* Write the counts so far to DIR/omp_regions.PID.txt (called with g_lock held). */
static void dump(void) {
    const char *dir = getenv("OMP_COUNT_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/omp_regions.%d.txt", dir ? dir : "/tmp", (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "total %ld\n", g_total);
    for (int i = 0; i < SITES && g_fn[i]; i++) {
        Dl_info d;
        if (dladdr(g_fn[i], &d) && d.dli_fname)
            fprintf(f, "%ld %s 0x%lx\n", g_calls[i], d.dli_fname, (unsigned long)((char *)g_fn[i] - (char *)d.dli_fbase));
        else fprintf(f, "%ld ? %p\n", g_calls[i], g_fn[i]);
    }
    fclose(f);
}

/* libgomp's entry for `#pragma omp parallel`: count fn's call, then run the region as libgomp would. */
void GOMP_parallel(void (*fn)(void *), void *data, unsigned threads, unsigned flags);
void GOMP_parallel(void (*fn)(void *), void *data, unsigned threads, unsigned flags) {
    static gomp_parallel_fn real;
    if (!real) real = (gomp_parallel_fn)dlsym(RTLD_NEXT, "GOMP_parallel");
    pthread_mutex_lock(&g_lock);
    g_total++;
    for (int i = 0; i < SITES; i++)
        if (g_fn[i] == (void *)fn || !g_fn[i]) {
            g_fn[i] = (void *)fn, g_calls[i]++;
            break;
        }
    if (g_total % 1000 == 0) dump();
    pthread_mutex_unlock(&g_lock);
    real(fn, data, threads, flags);
}

/* The counts at a normal exit too. */
__attribute__((destructor)) static void at_exit(void) {
    pthread_mutex_lock(&g_lock);
    if (g_total) dump();
    pthread_mutex_unlock(&g_lock);
}
