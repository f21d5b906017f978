/* nflow — command-line tool: train, eval, sample, encode, decode, plot, demo.
 * The only place that prints and exits; everything else is the library (include/nflow.h). */
#include "nflow.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static const char *g_cmd = "nflow";

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* library failure → one line with the library's reason */
static void check(nf_status st) {
    if (st != NF_OK) die("%s", nf_last_error());
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------ options */
typedef struct {
    const char *model, *data, *out, *in, *log, *standardize, *test_out, *schedule, *test_data;
    int32_t levels, bits, image_size, channels, recompute;
    int64_t ck_every, smp_every;
    int64_t from, to, frames, class_a, class_b, per_class, nimages, nstrengths;
    int64_t images[64];
    double strengths[64];
    const char *labels, *resume;
    int64_t steps, batch, n, ntrain, ntest, size, warmup;
    double lr, clip, temperature, test_frac, time_limit;
    uint64_t seed;
    int threads, quiet, set_steps, set_batch, set_levels, set_warmup, set_n;
    nf_config cfg;         /* architecture overrides, applied over the model defaults */
    int set_depth, set_hidden, set_layers, set_act, set_scale, set_part, set_perm, set_prior, set_coupling,
        set_lu, set_bn, set_an, set_init, set_blocks, set_logit;
} opts;

enum {
    O_MODEL = 256, O_DATA, O_OUT, O_IN, O_LOG, O_STEPS, O_BATCH, O_LR, O_SEED, O_THREADS, O_N, O_TEMP,
    O_DEPTH, O_HIDDEN, O_LAYERS, O_ACT, O_SCALE, O_PART, O_PERM, O_PRIOR, O_COUPLING, O_LU, O_BN, O_AN,
    O_STD, O_INITSTD, O_NTRAIN, O_NTEST, O_TESTFRAC, O_SIZE, O_WARMUP, O_CLIP, O_SCHED, O_QUIET, O_TESTOUT, O_LEVELS, O_BITS, O_CKEVERY, O_SMPEVERY, O_TESTDATA, O_FROM, O_TO, O_FRAMES, O_CLASSA, O_CLASSB, O_IMAGES, O_STRENGTHS, O_PERCLASS, O_LABELS, O_RESUME, O_BLOCKS, O_LOGIT, O_IMGSIZE, O_CHANNELS, O_BACKWARD, O_TIMELIMIT, O_HELP
};

static const struct option all_options[] = {
    {"model", required_argument, 0, O_MODEL},       {"data", required_argument, 0, O_DATA},
    {"out", required_argument, 0, O_OUT},           {"in", required_argument, 0, O_IN},
    {"log", required_argument, 0, O_LOG},           {"steps", required_argument, 0, O_STEPS},
    {"batch", required_argument, 0, O_BATCH},       {"lr", required_argument, 0, O_LR},
    {"seed", required_argument, 0, O_SEED},         {"threads", required_argument, 0, O_THREADS},
    {"num", required_argument, 0, O_N},             {"temperature", required_argument, 0, O_TEMP},
    {"depth", required_argument, 0, O_DEPTH},       {"hidden", required_argument, 0, O_HIDDEN},
    {"mlp-layers", required_argument, 0, O_LAYERS}, {"activation", required_argument, 0, O_ACT},
    {"scale", required_argument, 0, O_SCALE},       {"partition", required_argument, 0, O_PART},
    {"perm", required_argument, 0, O_PERM},         {"prior", required_argument, 0, O_PRIOR},
    {"coupling", required_argument, 0, O_COUPLING}, {"lu", required_argument, 0, O_LU},
    {"batchnorm", required_argument, 0, O_BN},      {"actnorm", required_argument, 0, O_AN},
    {"standardize", required_argument, 0, O_STD},   {"init-std", required_argument, 0, O_INITSTD},   {"train-size", required_argument, 0, O_NTRAIN},
    {"test-size", required_argument, 0, O_NTEST},   {"test-frac", required_argument, 0, O_TESTFRAC},
    {"size", required_argument, 0, O_SIZE},         {"warmup", required_argument, 0, O_WARMUP},
    {"clip", required_argument, 0, O_CLIP},         {"lr-schedule", required_argument, 0, O_SCHED},         {"quiet", no_argument, 0, O_QUIET},
    {"test-out", required_argument, 0, O_TESTOUT},  {"help", no_argument, 0, O_HELP},
    {"levels", required_argument, 0, O_LEVELS},     {"bits", required_argument, 0, O_BITS},
    {"checkpoint-every", required_argument, 0, O_CKEVERY}, {"sample-every", required_argument, 0, O_SMPEVERY},
    {"test-data", required_argument, 0, O_TESTDATA},
    {"from", required_argument, 0, O_FROM},         {"to", required_argument, 0, O_TO},
    {"frames", required_argument, 0, O_FRAMES},     {"class-a", required_argument, 0, O_CLASSA},
    {"class-b", required_argument, 0, O_CLASSB},    {"images", required_argument, 0, O_IMAGES},
    {"strengths", required_argument, 0, O_STRENGTHS}, {"per-class", required_argument, 0, O_PERCLASS},
    {"labels", required_argument, 0, O_LABELS},     {"resume", required_argument, 0, O_RESUME},
    {"time-limit", required_argument, 0, O_TIMELIMIT}, {"backward", required_argument, 0, O_BACKWARD}, {"image-size", required_argument, 0, O_IMGSIZE}, {"channels", required_argument, 0, O_CHANNELS},
    {"blocks", required_argument, 0, O_BLOCKS},     {"logit-alpha", required_argument, 0, O_LOGIT},
    {0, 0, 0, 0}};

static int64_t parse_int(const char *opt, const char *s, int64_t lo, int64_t hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("option --%s: '%s' is not an integer in %lld..%lld", opt, s, (long long)lo, (long long)hi);
    return v;
}

static double parse_real(const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        die("option --%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
    return v;
}

static int parse_enum(const char *opt, const char *kind, const char *s) {
    int v = nf_enum_from_name(kind, s);
    if (v < 0) {
        fprintf(stderr, "%s: option --%s: unknown %s '%s' (one of:", g_cmd, opt, kind, s);
        for (int i = 0; i < 4 && strcmp(nf_enum_name(kind, i), "?") != 0; i++) fprintf(stderr, " %s", nf_enum_name(kind, i));
        fprintf(stderr, ")\n");
        exit(1);
    }
    return v;
}

static const char *opt_name(int code) {
    for (const struct option *o = all_options; o->name; o++)
        if (o->val == code) return o->name;
    return "?";
}

/* Parse argv for a subcommand that accepts the option codes in `allowed` (0-terminated). */
static void parse(int argc, char **argv, const int *allowed, const char *help, opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 5000, o->batch = 512, o->lr = 1e-3, o->seed = 1, o->threads = 0, o->n = 1000, o->temperature = 1;
    o->ntrain = 100000, o->ntest = 20000, o->test_frac = 0.1, o->size = 256, o->warmup = 100, o->clip = 100;
    o->standardize = "auto", o->schedule = "constant";
    o->bits = 8, o->ck_every = 1000, o->smp_every = 1000;
    o->from = o->to = o->class_a = o->class_b = -1, o->frames = 8, o->per_class = 1000;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":n:o:h", all_options, NULL)) != -1) {
        if (c == 'n') c = O_N;
        if (c == 'o') c = O_OUT;
        if (c == 'h') c = O_HELP;
        if (c == '?') die("unknown option '%s' (see %s --help)", argv[optind - 1], g_cmd);
        if (c == ':') die("option '%s' needs a value", argv[optind - 1]);
        if (c == O_HELP) {
            fputs(help, stdout);
            exit(0);
        }
        int ok = 0;
        for (const int *a = allowed; *a; a++) ok |= *a == c;
        if (!ok) die("option --%s does not apply here (see %s --help)", opt_name(c), g_cmd);
        const char *n = opt_name(c);
        switch (c) {
        case O_MODEL: o->model = optarg; break;
        case O_DATA: o->data = optarg; break;
        case O_OUT: o->out = optarg; break;
        case O_IN: o->in = optarg; break;
        case O_LOG: o->log = optarg; break;
        case O_TESTOUT: o->test_out = optarg; break;
        case O_STEPS: o->steps = parse_int(n, optarg, 0, 100000000), o->set_steps = 1; break;
        case O_BATCH: o->batch = parse_int(n, optarg, 1, 1 << 20), o->set_batch = 1; break;
        case O_TIMELIMIT: o->time_limit = parse_real(n, optarg, 0.001, 1e6); break;
        case O_BACKWARD:
            if (strcmp(optarg, "store") && strcmp(optarg, "recompute")) die("option --backward: 'store' or 'recompute', not '%s'", optarg);
            o->recompute = !strcmp(optarg, "recompute");
            break;
        case O_IMGSIZE: o->image_size = (int32_t)parse_int(n, optarg, 1, 4096); break;
        case O_CHANNELS:
            o->channels = (int32_t)parse_int(n, optarg, 1, 3);
            if (o->channels == 2) die("option --channels: 1 (grey) or 3 (RGB)");
            break;
        case O_BLOCKS: o->cfg.blocks = (int32_t)parse_int(n, optarg, 0, 64), o->set_blocks = 1; break;
        case O_LOGIT: o->cfg.logit_alpha = parse_real(n, optarg, 0, 0.4999), o->set_logit = 1; break;
        case O_LEVELS: o->levels = (int32_t)parse_int(n, optarg, 1, 8), o->set_levels = 1; break;
        case O_BITS: o->bits = (int32_t)parse_int(n, optarg, 1, 8); break;
        case O_CKEVERY: o->ck_every = parse_int(n, optarg, 1, 100000000); break;
        case O_SMPEVERY: o->smp_every = parse_int(n, optarg, 1, 100000000); break;
        case O_TESTDATA: o->test_data = optarg; break;
        case O_FROM: o->from = parse_int(n, optarg, 0, INT64_MAX); break;
        case O_TO: o->to = parse_int(n, optarg, 0, INT64_MAX); break;
        case O_FRAMES: o->frames = parse_int(n, optarg, 2, 64); break;
        case O_CLASSA: o->class_a = parse_int(n, optarg, 0, 255); break;
        case O_CLASSB: o->class_b = parse_int(n, optarg, 0, 255); break;
        case O_PERCLASS: o->per_class = parse_int(n, optarg, 1, 100000000); break;
        case O_LABELS: o->labels = optarg; break;
        case O_RESUME: o->resume = optarg; break;
        case O_IMAGES:
        case O_STRENGTHS: { /* comma-separated lists */
            char buf[1024], *save = NULL;
            snprintf(buf, sizeof buf, "%s", optarg);
            int64_t k = 0;
            for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (k == 64) die("option --%s: at most 64 values", n);
                if (c == O_IMAGES) o->images[k++] = parse_int(n, t, 0, INT64_MAX);
                else o->strengths[k++] = parse_real(n, t, -100, 100);
            }
            if (k == 0) die("option --%s: needs a comma-separated list", n);
            if (c == O_IMAGES) o->nimages = k;
            else o->nstrengths = k;
            break;
        }
        case O_LR: o->lr = parse_real(n, optarg, 1e-12, 10); break;
        case O_SEED: o->seed = (uint64_t)parse_int(n, optarg, 0, INT64_MAX); break;
        case O_THREADS: o->threads = (int)parse_int(n, optarg, 1, 256); break;
        case O_N: o->n = parse_int("num", optarg, 1, 100000000), o->set_n = 1; break;
        case O_TEMP: o->temperature = parse_real(n, optarg, 0, 100); break;
        case O_DEPTH: o->cfg.depth = (int32_t)parse_int(n, optarg, 1, 1024), o->set_depth = 1; break;
        case O_HIDDEN: o->cfg.hidden = (int32_t)parse_int(n, optarg, 1, 65536), o->set_hidden = 1; break;
        case O_LAYERS: o->cfg.layers = (int32_t)parse_int(n, optarg, 1, 32), o->set_layers = 1; break;
        case O_ACT: o->cfg.act = parse_enum(n, "activation", optarg), o->set_act = 1; break;
        case O_SCALE: o->cfg.scale = parse_enum(n, "scale", optarg), o->set_scale = 1; break;
        case O_PART: o->cfg.partition = parse_enum(n, "partition", optarg), o->set_part = 1; break;
        case O_PERM: o->cfg.perm = parse_enum(n, "perm", optarg), o->set_perm = 1; break;
        case O_PRIOR: o->cfg.prior = parse_enum(n, "prior", optarg), o->set_prior = 1; break;
        case O_COUPLING: o->cfg.coupling = parse_enum(n, "coupling", optarg), o->set_coupling = 1; break;
        case O_LU: o->cfg.lu = (int32_t)parse_int(n, optarg, 0, 1), o->set_lu = 1; break;
        case O_BN: o->cfg.batchnorm = (int32_t)parse_int(n, optarg, 0, 1), o->set_bn = 1; break;
        case O_INITSTD: o->cfg.init_std = parse_real(n, optarg, 0, 1), o->set_init = 1; break;
        case O_AN: o->cfg.actnorm = (int32_t)parse_int(n, optarg, 0, 1), o->set_an = 1; break;
        case O_STD:
            if (strcmp(optarg, "auto") && strcmp(optarg, "on") && strcmp(optarg, "off"))
                die("option --standardize: '%s' is not one of auto, on, off", optarg);
            o->standardize = optarg;
            break;
        case O_NTRAIN: o->ntrain = parse_int(n, optarg, 2, 100000000); break;
        case O_NTEST: o->ntest = parse_int(n, optarg, 1, 100000000); break;
        case O_TESTFRAC: o->test_frac = parse_real(n, optarg, 1e-6, 0.999); break;
        case O_SIZE: o->size = parse_int(n, optarg, 32, 4096); break;
        case O_WARMUP: o->warmup = parse_int(n, optarg, 0, 100000000), o->set_warmup = 1; break;
        case O_CLIP: o->clip = parse_real(n, optarg, 0, 1e30); break;
        case O_QUIET: o->quiet = 1; break;
        case O_SCHED:
            if (strcmp(optarg, "constant") && strcmp(optarg, "cosine"))
                die("option --lr-schedule: '%s' is not one of constant, cosine", optarg);
            o->schedule = optarg;
            break;
        }
    }
    if (optind < argc) die("unexpected argument '%s' (see %s --help)", argv[optind], g_cmd);
    if (o->threads) nf_set_threads(o->threads);
}

static void need(const char *v, const char *opt) {
    if (!v) die("missing --%s (see %s --help)", opt, g_cmd);
}

/* ------------------------------------------------------------------ data */
/* A built-in generator name or a CSV path. Toy data: train and test sets from different seeds.
 * CSV: a seeded split (test_frac). test may be NULL. */
static void load_data(const opts *o, nf_dataset **train, nf_dataset **test) {
    if (nf_toy_known(o->data) >= 0) {
        check(nf_dataset_toy(o->data, o->ntrain, o->seed * 2 + 1, train));
        if (test) check(nf_dataset_toy(o->data, o->ntest, o->seed * 2 + 2, test));
        return;
    }
    struct stat sb;
    if (stat(o->data, &sb) != 0) {
        fprintf(stderr, "%s: --data '%s': not a built-in dataset (", g_cmd, o->data);
        for (const char *const *n = nf_toy_names(); *n; n++) fprintf(stderr, "%s%s", *n, n[1] ? ", " : "");
        fprintf(stderr, ") and no such file\n");
        exit(1);
    }
    nf_dataset *all;
    check(nf_dataset_csv(o->data, &all));
    if (!test) {
        *train = all;
        return;
    }
    if (all->n < 2) die("%s: need at least 2 rows to train and test", o->data);
    check(nf_dataset_split(all, o->test_frac, o->seed, train, test));
    nf_dataset_free(all);
}

static nf_flow *load_model(const char *path) {
    nf_flow *f;
    check(nf_flow_load(path, &f));
    return f;
}

/* ------------------------------------------------------------------ train */
static const char *train_help =
    "usage: nflow train --model nice|realnvp|glow --data NAME|FILE.csv --out MODEL.ckpt [options]\n"
    "Fit a flow by maximum likelihood (Adam) and report the test log-likelihood.\n"
    "  --data NAME|FILE     moons, circles, rings, 8gaussians, checkerboard, pinwheel, 2spirals, or a CSV\n"
    "  --steps N            optimisation steps (5000)        --batch B   batch size (512)\n"
    "  --lr LR              Adam learning rate (1e-3)        --warmup N  linear warm-up steps (100)\n"
    "  --clip C             gradient-norm clipping (100; 0 = off)\n"
    "  --lr-schedule constant|cosine   learning rate after warm-up: constant (default) or cosine to 0\n"
    "  --seed S             initialisation, data and batches (1)\n"
    "  --threads T          OpenMP threads (default: all); results do not depend on T\n"
    "  --train-size N       toy data: training points (100000)   --test-size N  test points (20000)\n"
    "  --test-frac F        CSV: held-out fraction (0.1)         --test-out F   write the held-out rows\n"
    "  --standardize auto|on|off   per-column standardisation layer (auto: on for CSV, off for toys)\n"
    "  --log FILE           metrics CSV (default MODEL.ckpt.metrics.csv)   --quiet  no progress line\n"
    "  --backward store|recompute   keep every layer's activations (store, default) or rebuild them by\n"
    "                       inversion in backward (recompute: memory flat in depth, slower)\n"
    "Architecture (defaults depend on --model):\n"
    "  --depth K            couplings (nice 4, realnvp 8) or steps (glow 8)\n"
    "  --hidden W           MLP width (nice 128, others 64)  --mlp-layers L  hidden layers (nice 4, others 2)\n"
    "  --activation relu|tanh|leaky_relu     --scale tanh|sigmoid (affine coupling's bounded scale)\n"
    "  --partition halves|oddeven            --perm none|reverse|random (after each coupling)\n"
    "  --prior normal|logistic|diag_gaussian --coupling affine|additive (glow)\n"
    "  --lu 0|1 (glow: LU-parameterised linear)  --batchnorm 0|1 (realnvp)  --actnorm 0|1 (nice, realnvp)\n"
    "  --init-std S         std of the coupling nets' last-layer init (0: every coupling starts as the\n"
    "                       identity; NICE on mirror-symmetric data like 8gaussians needs e.g. 0.01)\n"
    "Images (--data fashion-mnist, or --data TRAIN-images-idx3-ubyte[.gz] --test-data TEST-...):\n"
    "  glow: --levels L (2) × --depth K (8) steps of width --hidden (128); nice: flattened, 4 × 5×1000 MLPs\n"
    "  realnvp: --levels L (2) scales of masked couplings, ResNets of width --hidden (64) with --blocks B (4)\n"
    "  --logit-alpha A      logit preprocessing in front (realnvp 0.05; glow, nice 0 = none)\n"
    "  --bits N             reduce pixels to N bits (8)       --batch B (64)   --warmup N (500)\n"
    "  --checkpoint-every N save MODEL.ckpt every N steps (1000); --resume CKPT continues a run exactly\n"
    "  --time-limit MIN     stop after MIN minutes of training (then save, sample and evaluate as at the end)\n"
    "  --sample-every N     write MODEL.ckpt.samples.png (64 fixed latents, T = 0.7) every N steps (1000)\n";

static void build_config(const opts *o, int32_t dim, int is_csv, nf_config *c) {
    int m = nf_model_from_name(o->model);
    if (m < 0) die("option --model: unknown model '%s' (one of: nice, realnvp, glow)", o->model);
    nf_config_default(c, (nf_model_type)m, dim);
    if (o->set_depth) c->depth = o->cfg.depth;
    if (o->set_hidden) c->hidden = o->cfg.hidden;
    if (o->set_layers) c->layers = o->cfg.layers;
    if (o->set_act) c->act = o->cfg.act;
    if (o->set_scale) c->scale = o->cfg.scale;
    if (o->set_part) c->partition = o->cfg.partition;
    if (o->set_perm) c->perm = o->cfg.perm;
    if (o->set_prior) c->prior = o->cfg.prior;
    if (o->set_coupling) c->coupling = o->cfg.coupling;
    if (o->set_lu) c->lu = o->cfg.lu;
    if (o->set_bn) c->batchnorm = o->cfg.batchnorm;
    if (o->set_an) c->actnorm = o->cfg.actnorm;
    if (o->set_init) c->init_std = o->cfg.init_std;
    c->standardize = strcmp(o->standardize, "on") == 0 || (strcmp(o->standardize, "auto") == 0 && is_csv);
    c->seed = o->seed;
    if (nf_config_validate(c) != NF_OK) die("%s", nf_last_error());
}

static void fmt_time(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

/* ------------------------------------------------------------------ images */
#define FMNIST_DIR "/usr/share/datasets/fashion-mnist/"

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* fashion-mnist, an IDX file, a CIFAR-10 folder or batch file (.bin), or a folder of PNG/JPEG images */
static int is_image_data(const char *name) {
    return strcmp(name, "fashion-mnist") == 0 || strstr(name, "idx3-ubyte") != NULL || ends_with(name, ".bin") || is_dir(name);
}

static int is_cifar_dir(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/data_batch_1.bin", dir);
    return access(p, F_OK) == 0;
}

/* One image set. test: the test part of a dataset that has one (fashion-mnist, a CIFAR-10 folder);
 * size: side for a folder of images (0: --image-size, default 32). */
static nf_images *open_images(const opts *o, const char *spec, const char *labels, int test, int32_t size) {
    nf_images *im = NULL;
    if (strcmp(spec, "fashion-mnist") == 0) {
        if (test) check(nf_images_load_idx(FMNIST_DIR "t10k-images-idx3-ubyte.gz", FMNIST_DIR "t10k-labels-idx1-ubyte.gz", &im));
        else check(nf_images_load_idx(FMNIST_DIR "train-images-idx3-ubyte.gz", FMNIST_DIR "train-labels-idx1-ubyte.gz", &im));
    } else if (is_dir(spec) && is_cifar_dir(spec)) { /* CIFAR-10: data_batch_1..5.bin, test_batch.bin */
        char names[5][4096];
        const char *paths[5];
        int32_t np = 0;
        for (int b = 1; b <= 5 && !test; b++) {
            snprintf(names[np], sizeof names[np], "%s/data_batch_%d.bin", spec, b);
            if (access(names[np], F_OK) == 0) paths[np] = names[np], np++;
        }
        if (test) snprintf(names[0], sizeof names[0], "%s/test_batch.bin", spec), paths[0] = names[0], np = 1;
        check(nf_images_load_cifar(paths, np, &im));
    } else if (is_dir(spec)) {
        check(nf_images_load_folder(spec, size ? size : o->image_size ? o->image_size : 32, o->channels, &im));
    } else if (ends_with(spec, ".bin")) {
        check(nf_images_load_cifar(&spec, 1, &im));
    } else {
        check(nf_images_load_idx(spec, labels, &im));
    }
    return im;
}

/* Training data: fashion-mnist and CIFAR-10 folders bring their test sets; otherwise --test-data, or
 * (folders of images) a held-out --test-frac. */
static void load_images(const opts *o, nf_images **train, nf_images **test) {
    int has_test = strcmp(o->data, "fashion-mnist") == 0 || (is_dir(o->data) && is_cifar_dir(o->data));
    nf_images *all = open_images(o, o->data, NULL, 0, 0);
    if (has_test) *train = all, *test = open_images(o, o->data, NULL, 1, 0);
    else if (o->test_data) *train = all, *test = open_images(o, o->test_data, NULL, 0, all->H);
    else if (is_dir(o->data)) {
        check(nf_images_split(all, o->test_frac, o->seed, train, test));
        nf_images_free(all);
    } else die("--data %s: image training needs --test-data TEST-FILE", o->data);
    if ((*test)->C != (*train)->C || (*test)->H != (*train)->H || (*test)->W != (*train)->W)
        die("%s: test images are %d×%d×%d, training images %d×%d×%d", o->test_data ? o->test_data : o->data, (int)(*test)->C,
            (int)(*test)->H, (int)(*test)->W, (int)(*train)->C, (int)(*train)->H, (int)(*train)->W);
}

/* Images for eval, interpolate, manipulate: the test set of a dataset that has one, else the whole
 * file or folder (folders at the model's size). */
static nf_images *load_eval_images(const opts *o, const nf_flow *f) {
    nf_images *im = open_images(o, o->data, o->labels, 1, nf_flow_config(f)->height);
    const nf_config *c = nf_flow_config(f);
    if ((int64_t)im->C * im->H * im->W != c->dim)
        die("%s: images have %lld values, the model expects %d (%s)", o->data, (long long)im->C * im->H * im->W, (int)c->dim, o->model);
    return im;
}

static int image_model(const nf_flow *f) { return nf_flow_config(f)->height > 0; }

/* n samples x = G(z), z from the prior at temperature T drawn with `seed` (the same seed gives the
 * same latents: a grid that shows the model learning), as a PNG grid */
static void write_sample_grid(nf_flow *f, uint64_t seed, double T, int64_t n, const char *path) {
    const nf_config *c = nf_flow_config(f);
    nf_real *x = malloc(sizeof(nf_real) * (size_t)(n * nf_flow_dim(f)));
    if (!x) die("out of memory");
    nf_rng r;
    nf_rng_seed(&r, seed);
    check(nf_flow_sample(f, &r, T, x, n));
    int32_t cols = 1;
    while ((int64_t)cols * cols < n) cols++;
    check(nf_images_grid_png(x, n, c->channels, c->height, c->width, cols, 2, path));
    free(x);
}

static int train_images(opts *o) {
    nf_images *train, *test;
    load_images(o, &train, &test);
    int m = nf_model_from_name(o->model);
    if (m < 0) die("option --model: unknown model '%s' (one of: nice, realnvp, glow)", o->model);
    nf_config cfg;
    nf_config_default_image(&cfg, (nf_model_type)m, train->C, train->H, train->W);
    nf_flow *f;
    if (o->resume) { /* the architecture comes from the checkpoint */
        check(nf_flow_load(o->resume, &f));
        cfg = *nf_flow_config(f);
        if (cfg.dim != (int32_t)train->C * train->H * train->W) die("%s: a model of %d values, the images have %d", o->resume, (int)cfg.dim, (int)(train->C * train->H * train->W));
    } else {
    if (o->set_depth) cfg.depth = o->cfg.depth;
    if (o->set_hidden) cfg.hidden = o->cfg.hidden;
    if (o->set_layers) cfg.layers = o->cfg.layers;
    if (o->set_levels) cfg.levels = o->levels;
    if (o->set_blocks) cfg.blocks = o->cfg.blocks;
    if (o->set_an) cfg.actnorm = o->cfg.actnorm;
    if (o->set_act) cfg.act = o->cfg.act;
    if (o->set_part) cfg.partition = o->cfg.partition;
    if (o->set_logit) cfg.logit_alpha = o->cfg.logit_alpha;
    if (o->set_coupling) cfg.coupling = o->cfg.coupling;
    if (o->set_lu) cfg.lu = o->cfg.lu;
    if (o->set_scale) cfg.scale = o->cfg.scale;
    if (o->set_init) cfg.init_std = o->cfg.init_std;
    if (o->set_prior) cfg.prior = o->cfg.prior;
    cfg.seed = o->seed;
    if (nf_config_validate(&cfg) != NF_OK) die("%s", nf_last_error());
    check(nf_flow_create(&cfg, &f));
    }
    nf_train_opts to;
    nf_train_opts_default(&to);
    to.batch = o->set_batch ? o->batch : 64, to.seed = o->seed + 17, to.bits = o->bits;
    to.adam.lr = o->lr, to.adam.warmup = o->set_warmup ? o->warmup : 500, to.adam.clip = o->clip;
    to.adam.cosine_steps = strcmp(o->schedule, "cosine") == 0 ? o->steps : 0;
    nf_trainer *tr;
    check(nf_flow_set_recompute(f, o->recompute));
    check(nf_trainer_create_images(f, train, &to, &tr));
    int64_t first = 1;
    if (o->resume) {
        check(nf_trainer_resume(tr, o->resume));
        first = nf_trainer_steps(tr) + 1;
        if (!o->quiet) fprintf(stderr, "nflow train: resuming %s at step %lld\n", o->resume, (long long)first);
    }
    int64_t D = nf_flow_dim(f);
    char logpath[4096], smppath[4096];
    snprintf(logpath, sizeof logpath, "%s%s", o->log ? o->log : o->out, o->log ? "" : ".metrics.csv");
    snprintf(smppath, sizeof smppath, "%s.samples.png", o->out);
    FILE *lg = fopen(logpath, o->resume ? "a" : "w");
    if (!lg) die("%s: cannot open for writing: %s", logpath, strerror(errno));
    if (!o->resume) fprintf(lg, "step,epoch,loss_bpd,grad_norm,images_per_s,elapsed_s\n");
    const int64_t NS = 64; /* sample grids: the same 64 latents at temperature 0.7 every time */
    if (!o->quiet)
        fprintf(stderr, "nflow train: %s on %s (%lld parameters, %d layers): %lld train / %lld test images of %d×%d×%d, batch %lld, %d threads\n",
                nf_model_name(cfg.model), o->data, (long long)nf_flow_num_params(f), (int)nf_flow_num_layers(f), (long long)train->n,
                (long long)test->n, (int)train->C, (int)train->H, (int)train->W, (long long)to.batch, nf_get_threads());
    int tty = isatty(2);
    double t0 = now(), last = t0, ema = NAN;
    int64_t consecutive = 0;
    for (int64_t s = first; s <= o->steps; s++) {
        double loss = NAN, gn = NAN;
        nf_status st = nf_trainer_step(tr, &loss, &gn);
        if (st == NF_ERR_NUMERIC) {
            if (!o->quiet) fprintf(stderr, "%swarning: step %lld: %s\n", tty ? "\n" : "", (long long)s, nf_last_error());
            if (++consecutive >= 50) die("50 consecutive non-finite steps; stopping (try a lower --lr)");
            continue;
        }
        check(st);
        consecutive = 0;
        double bpd = nf_bits_per_dim(loss, D, o->bits);
        ema = isnan(ema) ? bpd : 0.98 * ema + 0.02 * bpd;
        double t = now(), el = t - t0, ips = (double)(s - first + 1) * (double)to.batch / el, epoch = (double)s * (double)to.batch / (double)train->n;
        fprintf(lg, "%lld,%.4f,%.5f,%.5g,%.1f,%.2f\n", (long long)s, epoch, bpd, gn, ips, el);
        int final = s == o->steps || (o->time_limit > 0 && el >= 60 * o->time_limit); /* --time-limit ends the run here */
        if (s % o->ck_every == 0 || final) {
            check(nf_trainer_save(tr, o->out)); /* resumable with --resume */
            fflush(lg);
        }
        if (s % o->smp_every == 0 || final) {
            nf_flow_set_training(f, 0);
            write_sample_grid(f, 12345, 0.7, NS, smppath);
            nf_flow_set_training(f, 1);
        }
        if (!o->quiet && (final || (tty ? t - last > 0.5 : s % (o->steps / 20 ? o->steps / 20 : 1) == 0))) {
            char eta[32];
            fmt_time(el / (double)(s - first + 1) * (double)(o->steps - s), eta, sizeof eta);
            fprintf(stderr, "%sepoch %.2f  step %lld/%lld  %.3f bits/dim  %.1f images/s  ETA %s%s", tty ? "\r" : "", epoch, (long long)s,
                    (long long)o->steps, ema, ips, eta, tty ? "   " : "\n");
            last = t;
        }
        if (final) break;
    }
    if (!o->quiet && tty) fputc('\n', stderr);
    fclose(lg);
    nf_flow_set_training(f, 0);
    double bpd, se, rec;
    check(nf_flow_evaluate_images(f, test, o->bits, 7, &bpd, &se, &rec));
    printf("test %.4f ± %.4f bits/dim over %lld images (%d-bit), max reconstruction error %.2g; saved %s, samples %s\n", bpd, se,
           (long long)test->n, (int)o->bits, rec, o->out, smppath);
    nf_trainer_free(tr), nf_flow_free(f), nf_images_free(train), nf_images_free(test);
    return 0;
}

static int cmd_train(int argc, char **argv) {
    static const int allowed[] = {O_MODEL, O_DATA, O_OUT, O_LOG, O_STEPS, O_BATCH, O_LR, O_SEED, O_THREADS,
                                  O_DEPTH, O_HIDDEN, O_LAYERS, O_ACT, O_SCALE, O_PART, O_PERM, O_PRIOR,
                                  O_COUPLING, O_LU, O_BN, O_AN, O_STD, O_INITSTD, O_NTRAIN, O_NTEST, O_TESTFRAC,
                                  O_WARMUP, O_CLIP, O_SCHED, O_QUIET, O_TESTOUT, O_LEVELS, O_BITS, O_BLOCKS, O_LOGIT, O_CKEVERY,
                                  O_SMPEVERY, O_TESTDATA, O_RESUME, O_IMGSIZE, O_CHANNELS, O_BACKWARD, O_TIMELIMIT, 0};
    opts o;
    parse(argc, argv, allowed, train_help, &o);
    need(o.model, "model"), need(o.data, "data"), need(o.out, "out");
    if (is_image_data(o.data)) return train_images(&o);
    int is_csv = nf_toy_known(o.data) < 0;
    nf_config cfg;
    if (nf_model_from_name(o.model) < 0) die("option --model: unknown model '%s' (one of: nice, realnvp, glow)", o.model);
    nf_dataset *train, *test;
    load_data(&o, &train, &test);
    if (o.test_out) check(nf_dataset_write_csv(test, o.test_out, "x"));
    build_config(&o, train->dim, is_csv, &cfg);
    if (o.batch > train->n) die("option --batch: %lld is larger than the %lld training rows", (long long)o.batch, (long long)train->n);
    nf_flow *f;
    check(nf_flow_create(&cfg, &f));
    if (cfg.standardize) {
        nf_real *mean = malloc(sizeof(nf_real) * (size_t)train->dim), *sd = malloc(sizeof(nf_real) * (size_t)train->dim);
        if (!mean || !sd) die("out of memory");
        nf_dataset_moments(train, mean, sd);
        check(nf_flow_set_standardization(f, mean, sd));
        free(mean), free(sd);
    }
    nf_train_opts to;
    nf_train_opts_default(&to);
    to.batch = o.batch, to.seed = o.seed + 17, to.adam.lr = o.lr, to.adam.warmup = o.warmup, to.adam.clip = o.clip;
    to.adam.cosine_steps = strcmp(o.schedule, "cosine") == 0 ? o.steps : 0;
    nf_trainer *tr;
    check(nf_flow_set_recompute(f, o.recompute));
    check(nf_trainer_create(f, train, &to, &tr));
    char logpath[4096];
    snprintf(logpath, sizeof logpath, "%s", o.log ? o.log : o.out);
    if (!o.log) strncat(logpath, ".metrics.csv", sizeof logpath - strlen(logpath) - 1);
    FILE *lg = fopen(logpath, "w");
    if (!lg) die("%s: cannot open for writing: %s", logpath, strerror(errno));
    fprintf(lg, "step,loss_nats,grad_norm,samples_per_s,elapsed_s\n");
    if (!o.quiet)
        fprintf(stderr, "nflow train: %s (%lld parameters, %d layers) on %s: %lld train / %lld test rows, %d threads\n",
                nf_model_name(cfg.model), (long long)nf_flow_num_params(f), (int)nf_flow_num_layers(f), o.data,
                (long long)train->n, (long long)test->n, nf_get_threads());
    int tty = isatty(2);
    double t0 = now(), last = t0, ema = NAN;
    int64_t skipped = 0, consecutive = 0;
    for (int64_t s = 1; s <= o.steps; s++) {
        double loss = NAN, gn = NAN;
        nf_status st = nf_trainer_step(tr, &loss, &gn);
        if (st == NF_ERR_NUMERIC) {
            skipped++;
            if (!o.quiet) fprintf(stderr, "%swarning: step %lld: %s; update skipped\n", tty ? "\n" : "", (long long)s, nf_last_error());
            if (++consecutive >= 50) die("50 consecutive non-finite steps; stopping (try a lower --lr)");
            continue;
        }
        check(st);
        consecutive = 0;
        ema = isnan(ema) ? loss : 0.98 * ema + 0.02 * loss;
        double t = now(), el = t - t0, sps = (double)s * (double)o.batch / el;
        fprintf(lg, "%lld,%.6f,%.6g,%.1f,%.3f\n", (long long)s, loss, gn, sps, el);
        if (!o.quiet && (s == o.steps || (tty ? t - last > 0.25 : s % (o.steps / 10 ? o.steps / 10 : 1) == 0))) {
            char eta[32];
            fmt_time(el / (double)s * (double)(o.steps - s), eta, sizeof eta);
            fprintf(stderr, "%sstep %lld/%lld  loss %.4f nats  %.0f samples/s  ETA %s%s", tty ? "\r" : "", (long long)s,
                    (long long)o.steps, ema, sps, eta, tty ? "   " : "\n");
            last = t;
        }
    }
    if (!o.quiet && tty) fputc('\n', stderr);
    fclose(lg);
    nf_flow_set_training(f, 0);
    check(nf_flow_save(f, o.out));
    double ll, se;
    check(nf_flow_evaluate(f, test, &ll, &se));
    printf("test log-likelihood %.4f ± %.4f nats (NLL %.4f) on %lld rows; saved %s%s\n", ll, se, -ll,
           (long long)test->n, o.out, skipped ? " (some steps skipped)" : "");
    nf_trainer_free(tr);
    nf_flow_free(f);
    nf_dataset_free(train), nf_dataset_free(test);
    return 0;
}

/* ------------------------------------------------------------------ eval */
static const char *eval_help =
    "usage: nflow eval --model MODEL.ckpt --data NAME|FILE.csv [--test-size N] [--seed S] [--threads T]\n"
    "Mean log-likelihood (nats per sample) with its standard error: of fresh test points for a built-in\n"
    "dataset (seed as at training gives the same test set), of every row for a CSV.\n"
    "  --out FILE.csv   also write log p (nats) of every row\n"
    "Image models: --data fashion-mnist (its test set) or an IDX file, [--bits N]: bits/dim ± standard\n"
    "error and the largest reconstruction error |x − G(G⁻¹(x))|. A CSV of dequantised pixels in [-0.5, 0.5)\n"
    "(one image per row, NCHW) is evaluated row by row like any CSV.\n";

static int cmd_eval(int argc, char **argv) {
    static const int allowed[] = {O_MODEL, O_DATA, O_NTEST, O_SEED, O_THREADS, O_BITS, O_TESTDATA, O_CHANNELS, O_OUT, 0};
    opts o;
    parse(argc, argv, allowed, eval_help, &o);
    need(o.model, "model"), need(o.data, "data");
    nf_flow *f = load_model(o.model);
    if (is_image_data(o.data)) { /* the test set of fashion-mnist or CIFAR-10, or the file or folder itself */
        nf_images *im = load_eval_images(&o, f);
        double bpd, se, rec;
        check(nf_flow_evaluate_images(f, im, o.bits, o.seed, &bpd, &se, &rec));
        printf("%.4f ± %.4f bits/dim over %lld images of %s (%d-bit); max reconstruction error |x − G(G⁻¹(x))| = %.2g\n", bpd, se,
               (long long)im->n, o.data, (int)o.bits, rec);
        nf_images_free(im), nf_flow_free(f);
        return 0;
    }
    nf_dataset *d;
    if (nf_toy_known(o.data) >= 0) check(nf_dataset_toy(o.data, o.ntest, o.seed * 2 + 2, &d));
    else load_data(&o, &d, NULL);
    if (d->dim != nf_flow_dim(f)) die("%s: %d columns, the model %s expects %d", o.data, (int)d->dim, o.model, (int)nf_flow_dim(f));
    double ll, se;
    check(nf_flow_evaluate(f, d, &ll, &se));
    printf("log-likelihood %.4f ± %.4f nats/sample (NLL %.4f) over %lld rows of %s\n", ll, se, -ll, (long long)d->n, o.data);
    if (o.out) { /* log p of every row, in nats */
        nf_dataset lp = {d->n, 1, malloc(sizeof(nf_real) * (size_t)d->n)};
        if (!lp.x) die("out of memory");
        check(nf_flow_log_prob(f, d->x, lp.x, d->n));
        check(nf_dataset_write_csv(&lp, o.out, "logp"));
        free(lp.x);
    }
    nf_dataset_free(d), nf_flow_free(f);
    return 0;
}

/* ------------------------------------------------------------------ sample / encode / decode */
static const char *sample_help =
    "usage: nflow sample --model MODEL.ckpt [-n N] [--temperature T] [--seed S] [--out FILE.csv]\n"
    "Draw x = G(z), z ~ prior with its scale multiplied by T (default 1). CSV to FILE or standard output;\n"
    "for an image model a PNG grid (--out required, -n default 64).\n";

static void write_rows(const nf_dataset *d, const char *out, const char *prefix) {
    if (out) {
        check(nf_dataset_write_csv(d, out, prefix));
        return;
    }
    for (int32_t j = 0; j < d->dim; j++) printf("%s%s%d", j ? "," : "", prefix, (int)j + 1);
    putchar('\n');
    for (int64_t i = 0; i < d->n; i++) {
        for (int32_t j = 0; j < d->dim; j++) printf("%s%.9g", j ? "," : "", (double)d->x[i * d->dim + j]);
        putchar('\n');
    }
}

static int cmd_sample(int argc, char **argv) {
    static const int allowed[] = {O_MODEL, O_N, O_TEMP, O_SEED, O_OUT, O_THREADS, 0};
    opts o;
    parse(argc, argv, allowed, sample_help, &o);
    need(o.model, "model");
    nf_flow *f = load_model(o.model);
    if (image_model(f)) { /* an image grid */
        need(o.out, "out");
        int64_t n = o.set_n ? o.n : 64;
        if (n > 4096) die("option -n: at most 4096 images in one grid");
        write_sample_grid(f, o.seed, o.temperature, n, o.out);
        printf("wrote %s (%lld samples at temperature %g)\n", o.out, (long long)n, o.temperature);
        nf_flow_free(f);
        return 0;
    }
    nf_dataset d = {o.n, nf_flow_dim(f), malloc(sizeof(nf_real) * (size_t)o.n * (size_t)nf_flow_dim(f))};
    if (!d.x) die("out of memory for %lld samples", (long long)o.n);
    nf_rng r;
    nf_rng_seed(&r, o.seed);
    check(nf_flow_sample(f, &r, o.temperature, d.x, d.n));
    write_rows(&d, o.out, "x");
    free(d.x), nf_flow_free(f);
    return 0;
}

static const char *encode_help =
    "usage: nflow encode --model MODEL.ckpt --in DATA.csv [--out LATENT.csv]\n"
    "Inference z = G⁻¹(x) for every row (the forward pass of the flow).\n";
static const char *decode_help =
    "usage: nflow decode --model MODEL.ckpt --in LATENT.csv [--out DATA.csv]\n"
    "Generation x = G(z) for every row (the inverse pass). decode(encode(x)) = x up to rounding.\n";

static int cmd_code(int argc, char **argv, int encode) {
    static const int allowed[] = {O_MODEL, O_IN, O_OUT, O_THREADS, 0};
    opts o;
    parse(argc, argv, allowed, encode ? encode_help : decode_help, &o);
    need(o.model, "model"), need(o.in, "in");
    nf_flow *f = load_model(o.model);
    nf_dataset *d;
    check(nf_dataset_csv(o.in, &d));
    if (d->dim != nf_flow_dim(f)) die("%s: %d columns, the model %s expects %d", o.in, (int)d->dim, o.model, (int)nf_flow_dim(f));
    if (encode) check(nf_flow_forward(f, d->x, d->x, NULL, d->n));
    else check(nf_flow_inverse(f, d->x, d->x, NULL, d->n));
    write_rows(d, o.out, encode ? "z" : "x");
    nf_dataset_free(d), nf_flow_free(f);
    return 0;
}

/* ------------------------------------------------------------------ interpolate / manipulate */
/* the images to draw from: fashion-mnist's test set (with labels) or an IDX file (labels: --labels) */
static nf_images *load_image_source(const opts *o, const nf_flow *f) { return load_eval_images(o, f); }

static void decode_grid(nf_flow *f, nf_real *z, int64_t n, int32_t cols, const char *path) {
    const nf_config *c = nf_flow_config(f);
    check(nf_flow_inverse(f, z, z, NULL, n));
    check(nf_images_grid_png(z, n, c->channels, c->height, c->width, cols, 3, path));
}

static const char *interp_help =
    "usage: nflow interpolate --model MODEL.ckpt --data fashion-mnist|IMAGES-idx3-ubyte[.gz] --from I --to J\n"
    "                         [--frames N] --out STRIP.png\n"
    "Linear interpolation in latent space between two real images: z = (1 − t)·G⁻¹(x_I) + t·G⁻¹(x_J) for\n"
    "N (8) values of t from 0 to 1, decoded by G. The strip shows x_I, the N decodings, x_J.\n";

static int cmd_interpolate(int argc, char **argv) {
    static const int allowed[] = {O_MODEL, O_DATA, O_FROM, O_TO, O_FRAMES, O_OUT, O_BITS, O_THREADS, O_LABELS, O_CHANNELS, 0};
    opts o;
    parse(argc, argv, allowed, interp_help, &o);
    need(o.model, "model"), need(o.data, "data"), need(o.out, "out");
    if (o.from < 0 || o.to < 0) die("missing --from or --to (image indices)");
    nf_flow *f = load_model(o.model);
    if (!image_model(f)) die("%s is not an image model", o.model);
    nf_images *im = load_image_source(&o, f);
    int64_t D = nf_flow_dim(f), N = o.frames, idx[2] = {o.from, o.to};
    nf_real *z = malloc(sizeof(nf_real) * (size_t)((N + 2) * D)), ends[2 * 4096];
    nf_real *ze = D <= 4096 ? ends : malloc(sizeof(nf_real) * (size_t)(2 * D));
    if (!z || !ze) die("out of memory");
    check(nf_flow_encode_images(f, im, idx, 2, o.bits, ze));
    for (int64_t k = 0; k < N; k++) {
        double t = (double)k / (double)(N - 1);
        for (int64_t j = 0; j < D; j++) z[(k + 1) * D + j] = (nf_real)((1 - t) * ze[j] + t * ze[D + j]);
    }
    memcpy(z, ze, sizeof(nf_real) * (size_t)D); /* decode(encode(x)) = x: the end images themselves */
    memcpy(z + (N + 1) * D, ze + D, sizeof(nf_real) * (size_t)D);
    decode_grid(f, z, N + 2, (int32_t)(N + 2), o.out);
    printf("wrote %s: image %lld → image %lld in %lld steps\n", o.out, (long long)o.from, (long long)o.to, (long long)N);
    if (ze != ends) free(ze);
    free(z), nf_images_free(im), nf_flow_free(f);
    return 0;
}

static const char *manip_help =
    "usage: nflow manipulate --model MODEL.ckpt --data fashion-mnist|IMAGES-idx3-ubyte[.gz] [--labels FILE]\n"
    "                        --class-a A --class-b B --images I,J,… [--strengths s1,s2,…] [--per-class N]\n"
    "                        --out GRID.png\n"
    "Attribute manipulation: v = mean G⁻¹(x) over class B − mean over class A (up to N (1000) images each);\n"
    "row i of the grid decodes G⁻¹(x_i) + s·v for each strength s (default −1,−0.5,0,0.5,1,1.5).\n";

static int cmd_manipulate(int argc, char **argv) {
    static const int allowed[] = {O_MODEL, O_DATA, O_LABELS, O_CLASSA, O_CLASSB, O_IMAGES, O_STRENGTHS, O_PERCLASS, O_OUT, O_BITS, O_THREADS, O_CHANNELS, 0};
    opts o;
    parse(argc, argv, allowed, manip_help, &o);
    need(o.model, "model"), need(o.data, "data"), need(o.out, "out");
    if (o.class_a < 0 || o.class_b < 0) die("missing --class-a or --class-b");
    if (o.nimages == 0) die("missing --images (indices of the images to change)");
    if (o.nstrengths == 0) {
        double def[6] = {-1, -0.5, 0, 0.5, 1, 1.5};
        memcpy(o.strengths, def, sizeof def);
        o.nstrengths = 6;
    }
    nf_flow *f = load_model(o.model);
    if (!image_model(f)) die("%s is not an image model", o.model);
    nf_images *im = load_image_source(&o, f);
    if (!im->labels) die("%s: no labels (give --labels LABELS-idx1-ubyte[.gz], or a folder of class folders)", o.data);
    int64_t D = nf_flow_dim(f), na, nb, rows = o.nimages, cols = o.nstrengths;
    nf_real *ma = malloc(sizeof(nf_real) * (size_t)D), *mb = malloc(sizeof(nf_real) * (size_t)D);
    nf_real *zi = malloc(sizeof(nf_real) * (size_t)(rows * D)), *z = malloc(sizeof(nf_real) * (size_t)(rows * cols * D));
    if (!ma || !mb || !zi || !z) die("out of memory");
    check(nf_flow_mean_latent(f, im, (int32_t)o.class_a, o.per_class, o.bits, ma, &na));
    check(nf_flow_mean_latent(f, im, (int32_t)o.class_b, o.per_class, o.bits, mb, &nb));
    check(nf_flow_encode_images(f, im, o.images, rows, o.bits, zi));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols; k++)
            for (int64_t j = 0; j < D; j++) z[(r * cols + k) * D + j] = zi[r * D + j] + (nf_real)o.strengths[k] * (mb[j] - ma[j]);
    decode_grid(f, z, rows * cols, (int32_t)cols, o.out);
    printf("wrote %s: attribute = mean latent of class %lld (%lld images) − class %lld (%lld images)\n", o.out,
           (long long)o.class_b, (long long)nb, (long long)o.class_a, (long long)na);
    free(ma), free(mb), free(zi), free(z), nf_images_free(im), nf_flow_free(f);
    return 0;
}

/* ------------------------------------------------------------------ plot */
static const char *plot_help =
    "usage: nflow plot --model MODEL.ckpt --out FIG.png [--data NAME|FILE.csv] [--size PX] [--seed S]\n"
    "Three panels for a 2-D model: the learned density, samples (orange) over data (blue), and the\n"
    "warped grid — a regular grid of the latent space mapped to data space by G.\n";

static int cmd_plot(int argc, char **argv) {
    static const int allowed[] = {O_MODEL, O_OUT, O_DATA, O_SIZE, O_SEED, O_THREADS, O_NTEST, 0};
    opts o;
    parse(argc, argv, allowed, plot_help, &o);
    need(o.model, "model"), need(o.out, "out");
    nf_flow *f = load_model(o.model);
    nf_dataset *d = NULL;
    if (o.data) {
        if (nf_toy_known(o.data) >= 0) check(nf_dataset_toy(o.data, o.ntest, o.seed * 2 + 2, &d));
        else load_data(&o, &d, NULL);
    }
    check(nf_plot_2d(f, d, o.out, (int32_t)o.size, o.seed));
    printf("wrote %s\n", o.out);
    nf_dataset_free(d), nf_flow_free(f);
    return 0;
}

/* ------------------------------------------------------------------ demo */
static const char *demo_help =
    "usage: nflow demo [--data fashion-mnist] [--out DIR] [--steps N] [--threads T]\n"
    "End to end on a built-in default: train a RealNVP on 8 gaussians, evaluate it, sample, and draw\n"
    "DIR/demo.png (default DIR: demo-out).\n"
    "With --data fashion-mnist: train the default image model (Glow, glow-small sizes) for N steps\n"
    "(default 1500, about 12 minutes on 2 cores), report test bits/dim, and write DIR/fmnist-samples.png,\n"
    "DIR/fmnist-interp.png (latent interpolation between two test images) and DIR/fmnist-manip.png\n"
    "(T-shirt → dress attribute vector added to three test images).\n";

/* the Fashion-MNIST demo: train, then the lecture's three pictures */
static int demo_images(const opts *o, const char *dir) {
    char ck[4096], smp[4096], itp[4096], man[4096], steps[32], thr[16];
    snprintf(ck, sizeof ck, "%s/fmnist-glow.ckpt", dir);
    snprintf(smp, sizeof smp, "%s/fmnist-samples.png", dir);
    snprintf(itp, sizeof itp, "%s/fmnist-interp.png", dir);
    snprintf(man, sizeof man, "%s/fmnist-manip.png", dir);
    snprintf(steps, sizeof steps, "%lld", (long long)(o->set_steps ? o->steps : 1500));
    snprintf(thr, sizeof thr, "%d", nf_get_threads());
    char *targv[] = {"train", "--model", "glow", "--data", "fashion-mnist", "--steps", steps, "--batch", "64", "--lr", "1e-3",
                     "--warmup", "500", "--clip", "0", "--out", ck, "--threads", thr, NULL};
    cmd_train(19, targv);
    char *sargv[] = {"sample", "--model", ck, "-n", "64", "--temperature", "0.7", "--out", smp, NULL};
    cmd_sample(9, sargv);
    char *iargv[] = {"interpolate", "--model", ck, "--data", "fashion-mnist", "--from", "0", "--to", "1", "--out", itp, NULL};
    cmd_interpolate(11, iargv);
    char *margv[] = {"manipulate", "--model", ck, "--data", "fashion-mnist", "--class-a", "0", "--class-b", "3",
                     "--images", "1,16,25", "--per-class", "500", "--out", man, NULL};
    cmd_manipulate(15, margv);
    printf("demo done: model %s; pictures %s, %s, %s\n", ck, smp, itp, man);
    return 0;
}

static int cmd_demo(int argc, char **argv) {
    static const int allowed[] = {O_OUT, O_STEPS, O_THREADS, O_DATA, 0};
    opts o;
    parse(argc, argv, allowed, demo_help, &o);
    const char *dir = o.out ? o.out : "demo-out";
    if (o.data && strcmp(o.data, "fashion-mnist") != 0) die("option --data: the demo knows fashion-mnist (use train for other data)");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) die("%s: cannot create directory: %s", dir, strerror(errno));
    if (o.data) return demo_images(&o, dir);
    char ck[4096], png[4096], steps[32], thr[16];
    snprintf(ck, sizeof ck, "%s/8gaussians-realnvp.ckpt", dir);
    snprintf(png, sizeof png, "%s/demo.png", dir);
    snprintf(steps, sizeof steps, "%lld", (long long)(o.set_steps ? o.steps : 3000));
    snprintf(thr, sizeof thr, "%d", nf_get_threads());
    char *targv[] = {"train", "--model", "realnvp", "--data", "8gaussians", "--steps", steps, "--batch", "512",
                     "--out", ck, "--threads", thr, NULL};
    cmd_train(13, targv);
    char *pargv[] = {"plot", "--model", ck, "--data", "8gaussians", "--out", png, NULL};
    cmd_plot(7, pargv);
    printf("demo done: model %s, picture %s (true entropy of 8 gaussians ≈ 2.84 nats)\n", ck, png);
    return 0;
}

/* ------------------------------------------------------------------ main */
static const char *main_help =
    "usage: nflow COMMAND [options]      (nflow COMMAND --help for each)\n"
    "Normalizing flows (NICE, RealNVP, Glow) with exact log-likelihoods.\n"
    "  demo     train + evaluate + plot on a built-in default (8 gaussians, RealNVP)\n"
    "  train    fit a flow to a built-in 2-D dataset or a CSV table\n"
    "  eval     mean test log-likelihood with its standard error\n"
    "  sample   draw samples x = G(z) (with temperature) as CSV\n"
    "  encode   z = G⁻¹(x) for the rows of a CSV\n"
    "  decode   x = G(z) for the rows of a latent CSV\n"
    "  plot     density, samples and warped-grid picture of a 2-D model (PNG)\n"
    "  interpolate  linear interpolation in latent space between two real images (PNG strip)\n"
    "  manipulate   add a class-difference attribute vector to images at several strengths (PNG grid)\n"
    "  bench    speed and memory of the benchmark workloads (glow-small, realnvp-small, nice-mnist, realnvp-moons)\n";

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(main_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("nflow %s\n", NFLOW_VERSION);
        return 0;
    }
    static char name[64];
    snprintf(name, sizeof name, "nflow %s", argv[1]);
    g_cmd = name;
    const char *c = argv[1];
    argc--, argv++;
    if (!strcmp(c, "train")) return cmd_train(argc, argv);
    if (!strcmp(c, "eval")) return cmd_eval(argc, argv);
    if (!strcmp(c, "sample")) return cmd_sample(argc, argv);
    if (!strcmp(c, "encode")) return cmd_code(argc, argv, 1);
    if (!strcmp(c, "decode")) return cmd_code(argc, argv, 0);
    if (!strcmp(c, "plot")) return cmd_plot(argc, argv);
    if (!strcmp(c, "demo")) return cmd_demo(argc, argv);
    if (!strcmp(c, "interpolate")) return cmd_interpolate(argc, argv);
    if (!strcmp(c, "manipulate")) return cmd_manipulate(argc, argv);
    if (!strcmp(c, "bench")) return nflow_bench(argc, argv, die);
    g_cmd = "nflow";
    die("unknown command '%s' (one of: demo, train, eval, sample, encode, decode, plot, interpolate, manipulate, bench)", c);
    return 1;
}
