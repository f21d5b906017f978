/* mpi.c — data-parallel training across processes on MPI (interface: mpi.h). The whole protocol is
 * MPI_Allreduce of the flat gradient buffer and of a few sums per step; nothing else is exchanged
 * (every process reads the data and checkpoints itself). With --mpi-bucket-mb the gradient is summed
 * instead in buckets, each an MPI_Iallreduce posted during the backward pass as soon as the flow reports
 * it final (nf_reducer.grad_ready), completed before the update (grad_wait). Without NFLOW_MPI: one
 * process. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int g_rank = 0, g_size = 1, g_local = 1;

/* NFLOW_MPI_FAULT = "KIND:RANK:STEP" (tests only). */
int dist_fault(const char *kind, int64_t step) {
    const char *e = getenv("NFLOW_MPI_FAULT");
    if (!e) return 0;
    char k[32];
    int r;
    long long s;
    if (sscanf(e, "%31[a-z]:%d:%lld", k, &r, &s) != 3) return 0;
    return strcmp(k, kind) == 0 && r == g_rank && s == step;
}

/* How many processes the launcher that started this one says the job has (Open MPI's mpirun, or a
 * PMI launcher such as MPICH's); 0 if none started it. */
static int launched_size(void) {
    const char *e = getenv("OMPI_COMM_WORLD_SIZE");
    if (!e) e = getenv("PMI_SIZE");
    return e ? atoi(e) : 0;
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
int dist_local_size(void) { return g_local; }

#ifdef NFLOW_MPI
#include <limits.h>
#include <mpi.h>
#include <time.h>

static double g_comm;   /* seconds inside the reducer's sums (with buckets: posting, testing, waiting) */
static double g_wait, g_grad; /* NFLOW_MPI_TIMING: seconds at the barrier before the gradient sum; in the gradient sum */
static int g_timing;
static int g_joined;    /* MPI_Init was called */
static nf_reducer g_red;
/* --mpi-bucket-mb (see the buckets below) */
static int64_t g_bucket;      /* elements per bucket, ≤ INT_MAX; 0: one MPI_Allreduce after the backward pass */
static int g_bucket_given;    /* --mpi-bucket-mb was given (else the default of dist_reducer) */
static double g_bucket_mb;    /* the bucket in effect as given, in MiB (0: one call) */
#define DEFAULT_BUCKET_MB 4.0 /* across machines */
static MPI_Request *g_req;    /* this step's buckets in posting order; [g_done, g_nreq) may be outstanding */
static int g_nreq, g_done, g_capreq;
static int64_t g_posted = -1; /* this step: grad[g_posted..n) is posted; −1: no call yet this step */
static nf_real *g_sum;        /* (n) the buckets' sums land here, then go back to the gradient in grad_wait */

/* atexit: leave the job. The processes wait for each other at a barrier polled with short sleeps, so
 * that those done first (rank 0 still evaluates) do not spin on the cores the others need. */
static void leave(void) {
    if (!g_joined) return;
    MPI_Request rq;
    int done = 0;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &rq) == MPI_SUCCESS)
        while (!done && MPI_Test(&rq, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && !done) {
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
    MPI_Finalize();
    g_joined = 0;
    free(g_req), free(g_sum), g_req = NULL, g_sum = NULL;
}

/* buf[0..n) summed over the processes in place, in pieces of at most INT_MAX elements (MPI counts are
 * int). 0 on success. */
static int sum_any(void *buf, int64_t n, MPI_Datatype type, size_t elem) {
    double t0 = MPI_Wtime();
    char *p = buf;
    while (n > 0) {
        int k = n > INT_MAX ? INT_MAX : (int)n;
        if (MPI_Allreduce(MPI_IN_PLACE, p, k, type, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS) return 1;
        p += (size_t)k * elem, n -= k;
    }
    g_comm += MPI_Wtime() - t0;
    return 0;
}

/* The gradient buffer. With NFLOW_MPI_TIMING set, a barrier first, timed apart (g_wait), so that the
 * time of the all-reduce itself is not mixed with waiting for the slowest process (for measurements). */
static int sum_real(void *ctx, nf_real *buf, int64_t n) {
    (void)ctx;
    if (g_timing) {
        double t0 = MPI_Wtime();
        if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) return 1;
        g_wait += MPI_Wtime() - t0;
    }
    double t1 = MPI_Wtime();
    int rc = sum_any(buf, n, sizeof(nf_real) == sizeof(float) ? MPI_FLOAT : MPI_DOUBLE, sizeof(nf_real));
    g_grad += MPI_Wtime() - t1;
    return rc;
}

static int sum_double(void *ctx, double *buf, int64_t n) {
    (void)ctx;
    return sum_any(buf, n, MPI_DOUBLE, sizeof(double));
}

/* --- the gradient in buckets (--mpi-bucket-mb). Buckets are counted from the end of the buffer (the
 * backward pass finishes the last layers' gradients first): [n − b, n), [n − 2b, n − b), …, [0, r).
 * Their boundaries depend only on n and b, so a run with fixed N and b is reproducible; a bucket's
 * sum may differ in rounding from the same elements' sum in one call when N > 2 (the order of the
 * additions follows the algorithm: the ring asked for in dist_init, or what MPI picks from the message
 * size; with 2 processes a + b = b + a).
 * Not in place: Open MPI's non-blocking all-reduce (libnbc) always takes its binomial tree for
 * MPI_IN_PLACE, which funnels the whole gradient through rank 0 — from 4 processes on it otherwise takes
 * reduce-scatter + all-gather. So the sums land in g_sum and are copied back once at the end. */

/* MPI_Test every outstanding bucket (Open MPI progresses a non-blocking collective only inside MPI
 * calls: this is where the backward pass lets it move). 0 on success. */
static int progress(void) {
    for (int i = g_done; i < g_nreq; i++) {
        int flag = 0;
        if (MPI_Test(&g_req[i], &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) return 1;
    }
    while (g_done < g_nreq && g_req[g_done] == MPI_REQUEST_NULL) g_done++; /* completed ones are NULL */
    return 0;
}

/* nf_reducer.grad_ready: grad[off..n) is final; post every bucket it now covers, then test. */
static int grad_ready(void *ctx, nf_real *grad, int64_t off, int64_t n) {
    (void)ctx;
    if (g_posted < 0) { /* the step's first call */
        if (g_timing) {
            double t0 = MPI_Wtime();
            if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) return 1;
            g_wait += MPI_Wtime() - t0;
        }
        g_posted = n, g_nreq = g_done = 0;
        if (!g_sum && !(g_sum = malloc(sizeof(nf_real) * (size_t)(n > 0 ? n : 1)))) return 1; /* n is the same every step */
    }
    double t1 = MPI_Wtime();
    MPI_Datatype type = sizeof(nf_real) == sizeof(float) ? MPI_FLOAT : MPI_DOUBLE;
    while (g_posted > 0) {
        int64_t lo = g_posted > g_bucket ? g_posted - g_bucket : 0;
        if (off > lo) break; /* the next bucket is not final yet */
        if (g_nreq == g_capreq) {
            int cap = g_capreq ? 2 * g_capreq : (int)(n / g_bucket) + 2;
            MPI_Request *q = realloc(g_req, sizeof *q * (size_t)cap);
            if (!q) return 1;
            g_req = q, g_capreq = cap;
        }
        if (MPI_Iallreduce(grad + lo, g_sum + lo, (int)(g_posted - lo), type, MPI_SUM, MPI_COMM_WORLD, &g_req[g_nreq]) != MPI_SUCCESS) return 1;
        g_nreq++, g_posted = lo;
    }
    int rc = progress();
    double dt = MPI_Wtime() - t1;
    g_grad += dt, g_comm += dt;
    return rc;
}

/* nf_reducer.grad_wait: every bucket posted (the flow's last grad_ready has off = 0), complete and
 * copied back into grad. */
static int grad_wait(void *ctx, nf_real *grad, int64_t n) {
    if (g_posted != 0 && grad_ready(ctx, grad, 0, n) != 0) return 1;
    double t0 = MPI_Wtime();
    int rc = MPI_Waitall(g_nreq - g_done, g_req + g_done, MPI_STATUSES_IGNORE) != MPI_SUCCESS;
    if (!rc) memcpy(grad, g_sum, sizeof(nf_real) * (size_t)n);
    double dt = MPI_Wtime() - t0;
    g_grad += dt, g_comm += dt;
    g_posted = -1;
    return rc;
}

/* elements of b MiB, in [1, INT_MAX] (b > 0) */
static int64_t bucket_elems(double mb) {
    double e = mb * 1048576.0 / (double)sizeof(nf_real);
    return e >= (double)INT_MAX ? INT_MAX : (int64_t)e > 0 ? (int64_t)e : 1;
}

void dist_set_bucket_mb(double mb) {
    g_bucket_given = 1;
    if (!g_joined) die("option --mpi-bucket-mb: applies under mpirun only (this process was not started by it)");
    if (mb > 0 && mb < 1e-4) die("option --mpi-bucket-mb: %g MiB is below the smallest bucket, 0.0001 MiB (0: one all-reduce after the backward pass)", mb);
    g_bucket = mb <= 0 ? 0 : bucket_elems(mb);
    g_bucket_mb = mb <= 0 ? 0 : mb;
}

void dist_init(int *argc, char ***argv) {
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK")) { /* not started by Open MPI's mpirun */
        if (launched_size() > 1) die("started as one of %d processes by an MPI launcher that is not Open MPI's, which this nflow was built with", launched_size());
        return;
    }
    /* --mpi-bucket-mb's MPI_Iallreduce (Open MPI's libnbc) takes a binomial tree below 4 processes:
     * rank 1 sends everything to rank 0, which sends the sum back, so a link carries the bucket one way
     * at a time. Its ring (reduce-scatter + all-gather) uses both directions at once: measured over a
     * 1 Gbit/s link, nice-mnist's 77 MB took 0.71 s a step in one ring against 1.27 s in one blocking
     * MPI_Allreduce (BENCHMARKS.md). A value the user set wins. */
    if (launched_size() >= 2 && launched_size() <= 3) setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
    if (MPI_Init(argc, argv) != MPI_SUCCESS) die("MPI_Init failed: cannot join the MPI job");
    g_joined = 1;
    atexit(leave);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN); /* a failed sum is reported, then the job aborted */
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &g_local);
        MPI_Comm_free(&node);
    }
    g_red = (nf_reducer){sum_real, sum_double, NULL, g_rank, g_size, NULL, NULL};
    g_timing = getenv("NFLOW_MPI_TIMING") != NULL;
}

const nf_reducer *dist_reducer(void) {
    /* Without --mpi-bucket-mb: buckets of DEFAULT_BUCKET_MB when the processes span more than one machine
     * (some are not on this one's node), where a network moves the bytes and overlap paid (BENCHMARKS.md:
     * nice-mnist over 1 Gbit/s 1602 -> 963 ms a step, glow-small over 100 Mbit/s 636 -> 443); one
     * MPI_Allreduce when all share one machine, where glow-small gained nothing. */
    if (!g_bucket_given && g_local < g_size) g_bucket = bucket_elems(DEFAULT_BUCKET_MB), g_bucket_mb = DEFAULT_BUCKET_MB;
    g_red.grad_ready = g_bucket > 0 ? grad_ready : NULL;
    g_red.grad_wait = g_bucket > 0 ? grad_wait : NULL;
    return g_size > 1 ? &g_red : NULL;
}

int dist_any(int flag) {
    if (g_size <= 1) return flag != 0;
    int v = flag != 0, r = 0;
    if (MPI_Allreduce(&v, &r, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) die("the decision across processes failed (MPI_Allreduce)");
    return r;
}

int dist_same(uint64_t h) {
    if (g_size <= 1) return 1;
    uint64_t v[2] = {h, ~h}, r[2];
    if (MPI_Allreduce(v, r, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) die("the checksum comparison across processes failed (MPI_Allreduce)");
    return r[0] == ~r[1]; /* max(h) == min(h) */
}

double dist_comm_seconds(void) { return g_comm; }
void dist_timing(double *wait, double *grad) { *wait = g_wait, *grad = g_grad; }
double dist_bucket_mb(void) { return g_bucket > 0 ? g_bucket_mb : 0; }

void dist_abort(int code) {
    if (g_joined && g_size > 1) {
        fflush(stderr), fflush(stdout);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
}

#else /* one process */

void dist_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (launched_size() > 1) /* N copies would each train alone and overwrite each other's files */
        die("started as one of %d processes by mpirun, but this nflow was built without MPI (install libopenmpi-dev, rebuild)", launched_size());
}
void dist_set_bucket_mb(double mb) {
    (void)mb;
    die("option --mpi-bucket-mb: this nflow was built without MPI (install libopenmpi-dev, rebuild)");
}
const nf_reducer *dist_reducer(void) { return NULL; }
int dist_any(int flag) { return flag != 0; }
int dist_same(uint64_t h) { (void)h; return 1; }
double dist_comm_seconds(void) { return 0; }
void dist_timing(double *wait, double *grad) { *wait = *grad = 0; }
double dist_bucket_mb(void) { return 0; }
void dist_abort(int code) { (void)code; }

#endif
