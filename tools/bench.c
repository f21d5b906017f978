/* bench.c — `nflow bench`: the four workloads of ../shared/design/workloads.md, measured.
 * For each workload and thread count a child process builds the model, then measures in steady state
 * (after warm-up): training samples/s (Adam 1e-3, no warm-up or clipping), evaluation samples/s
 * (log-likelihood in training-sized batches, no gradients), sampling samples/s (prior draw + inverse, 64 at a time),
 * the peak resident memory of the child, and GFLOP/s from the model's own FLOP count (training counted
 * as 3 × forward). A child per configuration keeps the peak-memory figures apart. */
#include "nflow.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

/* the four of workloads.md and the default nsf on the same moons ("all"), then, by name only, the default
 * maf and iaf on those moons (5 blocks of MADEs 2 × 64; iaf trains with D-pass density, samples in one pass) */
static const char *const workloads[] = {"glow-small", "realnvp-small", "nice-mnist", "realnvp-moons", "nsf-moons", "maf-moons", "iaf-moons", NULL};
#define NWORKLOADS_ALL 5

typedef struct {
    double train, eval, sample; /* samples/s */
    double flops;               /* per sample, forward */
    double rss_mib;             /* peak resident memory of the run */
    int64_t params;
    int ok;
    char err[200];
} bench_result;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* make_moons (sklearn's construction, uniform angles), noise 0.05 */
static nf_dataset *moons(int64_t n) {
    nf_dataset *d = calloc(1, sizeof *d);
    if (!d || !(d->x = malloc(sizeof(nf_real) * 2 * (size_t)n))) return free(d), NULL;
    d->n = n, d->dim = 2;
    nf_rng r;
    nf_rng_seed(&r, 3);
    for (int64_t i = 0; i < n; i++) {
        double t = 3.141592653589793 * nf_rng_uniform(&r), x, y;
        if (i % 2) x = cos(t), y = sin(t);
        else x = 1 - cos(t), y = 0.5 - sin(t);
        d->x[2 * i] = (nf_real)(x + 0.05 * nf_rng_normal(&r)), d->x[2 * i + 1] = (nf_real)(y + 0.05 * nf_rng_normal(&r));
    }
    return d;
}

#define TRY(expr) do { if ((st = (expr)) != NF_OK) goto fail; } while (0)

/* One sampling pass of n at temperature 1: a sample the briefly trained model overflows on
 * (NF_ERR_NUMERIC, all n written) takes the same work as any other, so it does not stop the timing. */
static nf_status sample_pass(nf_flow *f, nf_rng *rng, nf_real *x, int64_t n) {
    nf_status st = nf_flow_sample(f, rng, 1.0, x, n);
    return st == NF_ERR_NUMERIC ? NF_OK : st;
}

/* Run one workload at the current thread count; fills r (r->ok = 0 and r->err on failure). */
static int g_recompute, g_depth; /* --backward recompute, --depth K */

static void run_one(const char *w, double secs, bench_result *r) {
    memset(r, 0, sizeof *r);
    int image = strstr(w, "-moons") == NULL;
    nf_status st = NF_OK;
    nf_images *im = NULL;
    nf_dataset *ds = NULL;
    nf_flow *f = NULL;
    nf_trainer *tr = NULL;
    nf_real *x = NULL;
    nf_config cfg;
    if (image) {
        nf_model_type m = !strcmp(w, "glow-small") ? NF_MODEL_GLOW : !strcmp(w, "realnvp-small") ? NF_MODEL_REALNVP : NF_MODEL_NICE;
        TRY(nf_images_load_idx(FMNIST, NULL, &im));
        nf_config_default_image(&cfg, m, 1, 28, 28);
    } else {
        if (!(ds = moons(100000))) {
            snprintf(r->err, sizeof r->err, "out of memory");
            return;
        }
        nf_config_default(&cfg, !strcmp(w, "nsf-moons") ? NF_MODEL_NSF : !strcmp(w, "maf-moons") ? NF_MODEL_MAF : !strcmp(w, "iaf-moons") ? NF_MODEL_IAF : NF_MODEL_REALNVP, 2);
    }
    if (g_depth) cfg.depth = g_depth;
    TRY(nf_flow_create(&cfg, &f));
    TRY(nf_flow_set_recompute(f, g_recompute));
    nf_train_opts to;
    nf_train_opts_default(&to);
    to.batch = image ? 64 : 512, to.bits = 8;
    to.adam.lr = 1e-3, to.adam.warmup = 0, to.adam.clip = 0, to.adam.cosine_steps = 0;
    if (image) TRY(nf_trainer_create_images(f, im, &to, &tr));
    else TRY(nf_trainer_create(f, ds, &to, &tr));
    /* training: 2 warm-up steps (ActNorm's data-dependent init, first-touch of buffers), then steps
     * until `secs` have passed (at least 3) */
    double loss, gn;
    for (int k = 0; k < 2; k++) TRY(nf_trainer_step(tr, &loss, &gn));
    int64_t steps = 0;
    double t0 = now(), t;
    do {
        TRY(nf_trainer_step(tr, &loss, &gn));
        steps++;
    } while ((t = now() - t0) < secs || steps < 3);
    r->train = (double)(steps * to.batch) / t;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->rss_mib = (double)ru.ru_maxrss / 1024.0;
    nf_trainer_free(tr), tr = NULL;
    nf_flow_set_training(f, 0);
    /* evaluation in training-sized batches, sampling 64 at a time */
    const int64_t B = to.batch, pool = 8, BS = 64;
    int32_t D = nf_flow_dim(f);
    x = malloc(sizeof(nf_real) * (size_t)(B * pool * D));
    nf_real lp[512];
    if (!x) {
        snprintf(r->err, sizeof r->err, "out of memory");
        goto done;
    }
    nf_rng rng;
    nf_rng_seed(&rng, 9);
    if (image) nf_images_dequantize(im, NULL, B * pool, 8, &rng, x);
    else memcpy(x, ds->x, sizeof(nf_real) * (size_t)(B * pool * D));
    TRY(nf_flow_log_prob(f, x, lp, B));
    int64_t n = 0;
    t0 = now();
    do {
        TRY(nf_flow_log_prob(f, x + (n % pool) * B * D, lp, B));
        n++;
    } while ((t = now() - t0) < secs / 2 || n < 3);
    r->eval = (double)(n * B) / t;
    TRY(sample_pass(f, &rng, x, BS));
    n = 0;
    t0 = now();
    do {
        TRY(sample_pass(f, &rng, x, BS));
        n++;
    } while ((t = now() - t0) < secs / 2 || n < 3);
    r->sample = (double)(n * BS) / t;
    r->flops = nf_flow_flops(f);
    r->params = nf_flow_num_params(f);
    r->ok = 1;
    goto done;
fail:
    snprintf(r->err, sizeof r->err, "%s", nf_last_error());
done:
    free(x);
    nf_trainer_free(tr);
    nf_flow_free(f);
    nf_images_free(im);
    nf_dataset_free(ds);
}

/* the measurement in a child process, its result through a pipe */
static int run_child(const char *w, int threads, double secs, bench_result *r) {
    int fd[2];
    if (pipe(fd) != 0) return 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return close(fd[0]), close(fd[1]), 0;
    if (pid == 0) {
        close(fd[0]);
        nf_set_threads(threads);
        bench_result res;
        run_one(w, secs, &res);
        ssize_t k = write(fd[1], &res, sizeof res);
        _exit(k == (ssize_t)sizeof res ? 0 : 1);
    }
    close(fd[1]);
    ssize_t got = 0, k;
    while (got < (ssize_t)sizeof *r && (k = read(fd[0], (char *)r + got, sizeof *r - (size_t)got)) > 0) got += k;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (got != (ssize_t)sizeof *r) {
        memset(r, 0, sizeof *r);
        snprintf(r->err, sizeof r->err, "the measuring process died (status %d)", status);
    }
    return 1;
}

static const char *bench_help =
    "usage: nflow bench WORKLOAD|all [--threads 1,2] [--seconds S] [--json FILE] [--backward store|recompute]\n"
    "                   [--depth K]\n"
    "Measure a workload of ../shared/design/workloads.md: glow-small, realnvp-small, nice-mnist,\n"
    "realnvp-moons, or nsf-moons (the default NSF on the same moons; or all; by name also maf-moons,\n"
    "iaf-moons: the default maf / iaf there): steady-state train / eval / sample samples per second, peak resident memory\n"
    "and achieved GFLOP/s (training = 3 × forward FLOPs), for each thread count (default 1 and 2).\n"
    "  --seconds S   timed training per configuration (10; evaluation and sampling S/2 each)\n"
    "  --json FILE   also write the results as JSON (temporary file + rename)\n"
    "  --backward M  store (default): keep every layer's activations; recompute: rebuild them by inversion\n"
    "  --depth K     override the workload's depth (Glow steps per level, couplings of NICE / 2-D RealNVP / NSF)\n";

int nflow_bench(int argc, char **argv, void (*die)(const char *, ...)) {
    const char *which = NULL, *json = NULL;
    int threads[8] = {1, 2}, nthreads = 2;
    double secs = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(bench_help, stdout);
            return 0;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "--seconds") || !strcmp(a, "--json") || !strcmp(a, "--backward") ||
                   !strcmp(a, "--depth")) {
            if (i + 1 >= argc) die("option '%s' needs a value", a);
            const char *v = argv[++i];
            char *end;
            if (!strcmp(a, "--json")) json = v;
            else if (!strcmp(a, "--backward")) {
                if (strcmp(v, "store") && strcmp(v, "recompute")) die("option --backward: 'store' or 'recompute', not '%s'", v);
                g_recompute = !strcmp(v, "recompute");
            } else if (!strcmp(a, "--depth")) {
                long d = strtol(v, &end, 10);
                if (*end || d < 1 || d > 1024) die("option --depth: '%s' is not an integer in 1..1024", v);
                g_depth = (int)d;
            }
            else if (!strcmp(a, "--seconds")) {
                secs = strtod(v, &end);
                if (*end || !(secs > 0 && secs <= 3600)) die("option --seconds: '%s' is not a number in (0, 3600]", v);
            } else {
                nthreads = 0;
                for (const char *p = v; *p;) {
                    long t = strtol(p, &end, 10);
                    if (end == p || t < 1 || t > 256 || nthreads == 8 || (*end && *end != ',')) die("option --threads: '%s' is not a list like 1,2", v);
                    threads[nthreads++] = (int)t;
                    p = *end ? end + 1 : end;
                }
            }
        } else if (a[0] == '-') {
            die("unknown option '%s' (see nflow bench --help)", a);
        } else if (which) {
            die("one workload at a time (or all), got '%s' and '%s'", which, a);
        } else {
            which = a;
        }
    }
    if (!which) die("missing WORKLOAD (glow-small, realnvp-small, nice-mnist, realnvp-moons, nsf-moons, maf-moons, iaf-moons or all)");
    int known = !strcmp(which, "all");
    for (int k = 0; workloads[k]; k++) known |= !strcmp(which, workloads[k]);
    if (!known) die("unknown workload '%s' (one of: glow-small, realnvp-small, nice-mnist, realnvp-moons, nsf-moons, all; also maf-moons, iaf-moons)", which);
    FILE *js = NULL;
    char tmp[4096];
    if (json) {
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", json, (long)getpid());
        if (!(js = fopen(tmp, "w"))) die("%s: cannot open for writing: %s", json, strerror(errno));
        fprintf(js, "{\"tool\": \"nflow %s\", \"runtime\": \"%s\", \"seconds\": %g, \"backward\": \"%s\", \"depth\": %d, \"results\": [", NFLOW_VERSION, nf_runtime_info(), secs,
                g_recompute ? "recompute" : "store", g_depth);
    }
    printf("# %s\n", nf_runtime_info());
    printf("%-14s %7s %12s %12s %12s %10s %9s %10s\n", "workload", "threads", "train/s", "eval/s", "sample/s",
           "train GF/s", "eval GF/s", "peak MiB");
    int first = 1, failed = 0;
    for (int k = 0; workloads[k]; k++) {
        if (strcmp(which, "all") ? strcmp(which, workloads[k]) != 0 : k >= NWORKLOADS_ALL) continue;
        for (int t = 0; t < nthreads; t++) {
            bench_result r;
            if (!run_child(workloads[k], threads[t], secs, &r)) die("cannot start a measuring process: %s", strerror(errno));
            if (!r.ok) {
                fprintf(stderr, "nflow bench: %s at %d threads: %s\n", workloads[k], threads[t], r.err);
                failed = 1;
                continue;
            }
            double gtr = 3 * r.flops * r.train / 1e9, gev = r.flops * r.eval / 1e9;
            printf("%-14s %7d %12.1f %12.1f %12.1f %10.1f %9.1f %10.0f\n", workloads[k], threads[t], r.train, r.eval,
                   r.sample, gtr, gev, r.rss_mib);
            fflush(stdout);
            if (js)
                fprintf(js, "%s\n  {\"workload\": \"%s\", \"threads\": %d, \"train_samples_per_s\": %.3f, \"eval_samples_per_s\": %.3f, "
                            "\"sample_samples_per_s\": %.3f, \"forward_flops_per_sample\": %.0f, \"train_gflops\": %.3f, "
                            "\"eval_gflops\": %.3f, \"peak_rss_mib\": %.1f, \"parameters\": %lld}",
                        first ? "" : ",", workloads[k], threads[t], r.train, r.eval, r.sample, r.flops, gtr, gev, r.rss_mib, (long long)r.params);
            first = 0;
        }
    }
    if (js) {
        fprintf(js, "\n]}\n");
        int bad = ferror(js) | (fclose(js) != 0);
        if (bad || failed || rename(tmp, json) != 0) {
            remove(tmp);
            die("%s: %s", json, failed ? "not written: a measurement failed" : "cannot write");
        }
    }
    return failed;
}
