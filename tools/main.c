/* main.c — nflow: dispatch to the commands, --version, the command list; one-line errors.
 * The only place that prints and exits; everything else is the library (include/nflow.h). */
#include "cli.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "mpi.h"

const char *g_cmd = "nflow";
int g_quiet;

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_cmd);
    if (dist_size() > 1) fprintf(stderr, "process %d of %d: ", dist_rank(), dist_size());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    dist_abort(1); /* an MPI job: the error line, then the whole job stops */
    exit(1);
}

void check(nf_status st) {
    if (st != NF_OK) die("%s", nf_last_error());
}

double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void fmt_time(double s, char *buf, unsigned long n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

static const char *main_help =
    "usage: nflow COMMAND [options]      (nflow COMMAND --help for each)\n"
    "Normalizing flows (NICE, RealNVP, Glow, neural spline flows, MAF, IAF) with exact log-likelihoods.\n"
    "  demo     train + evaluate + plot on a built-in default (8 gaussians, RealNVP)\n"
    "  train    fit a flow to a built-in 2-D dataset or a CSV table\n"
    "  eval     mean test log-likelihood with its standard error\n"
    "  sample   draw samples x = G(z) (with temperature) as CSV\n"
    "  encode   z = G⁻¹(x) for the rows of a CSV\n"
    "  decode   x = G(z) for the rows of a latent CSV\n"
    "  plot     density, samples and warped-grid picture of a 2-D model (PNG)\n"
    "  interpolate  linear interpolation in latent space between two real images (PNG strip)\n"
    "  manipulate   add a class-difference attribute vector to images at several strengths (PNG grid)\n"
    "  bench    speed and memory of the benchmark workloads (glow-small, realnvp-small, nice-mnist, realnvp-moons, nsf-moons, maf-moons, iaf-moons)\n";

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(main_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (nf_runtime_check() != NF_OK) { /* an NFLOW_ISA this CPU cannot run is refused, not ignored */
        fprintf(stderr, "nflow: %s\n", nf_last_error());
        return 1;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("nflow %s\n%s\n", NFLOW_VERSION, nf_runtime_info());
        return 0;
    }
    static char name[64];
    snprintf(name, sizeof name, "nflow %s", argv[1]);
    g_cmd = name;
    const char *c = argv[1];
    argc--, argv++;
    if (!strcmp(c, "train")) {
        dist_init(&argc, &argv); /* started by mpirun: data-parallel training (tools/mpi.c) */
        return cmd_train(argc, argv);
    }
    if (!strcmp(c, "eval")) return cmd_eval(argc, argv);
    if (!strcmp(c, "sample")) return cmd_sample(argc, argv);
    if (!strcmp(c, "encode")) return cmd_code(argc, argv, 1);
    if (!strcmp(c, "decode")) return cmd_code(argc, argv, 0);
    if (!strcmp(c, "plot")) return cmd_plot(argc, argv);
    if (!strcmp(c, "demo")) return cmd_demo(argc, argv);
    if (!strcmp(c, "interpolate")) return cmd_interpolate(argc, argv);
    if (!strcmp(c, "manipulate")) return cmd_manipulate(argc, argv);
    if (!strcmp(c, "options")) return cmd_options(argc, argv); /* hidden: the option table, for tests */
    if (!strcmp(c, "bench")) return nflow_bench(argc, argv, die);
    g_cmd = "nflow";
    die("unknown command '%s' (one of: demo, train, eval, sample, encode, decode, plot, interpolate, manipulate, bench)", c);
    return 1;
}
