/* bench.h — `nflow bench` (bench.c); die prints one line and exits. */
#ifndef NFLOW_BENCH_H
#define NFLOW_BENCH_H
int nflow_bench(int argc, char **argv, void (*die)(const char *, ...));
#endif
