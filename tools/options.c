/* options.c — the option table (one entry per option and command family), the parser, the --help
 * text generated from it, and the applicability check of train. */
#define _POSIX_C_SOURCE 200809L /* strtok_r */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CA (C_TRAIN | C_EVAL | C_SAMPLE | C_ENCODE | C_DECODE | C_PLOT | C_DEMO | C_INTERP | C_MANIP)
#define CI (C_INTERP | C_MANIP)
#define DA (SRC_VEC | SRC_IMG)
#define MA M_ALL, M_ALL
/* NAME, SHORT, CODE, KIND, LO, HI, CHOICES, META, HELP, CMDS, DATA, MVEC, MIMG, ARCH, EXAMPLE */
const opt_def nf_cli_options[] = {
    {"model", 0, O_MODEL, K_STR, 0, 0, 0, "nice|realnvp|glow|nsf|maf|iaf", "the model (maf, iaf: vector data only; with --resume: taken from the checkpoint)", C_TRAIN, DA, MA, 0, 0},
    {"model", 0, O_MODEL, K_STR, 0, 0, 0, "MODEL.ckpt", "a checkpoint written by nflow train", CA & ~(C_TRAIN | C_DEMO), 0, MA, 0, 0},
    {"data", 0, O_DATA, K_STR, 0, 0, 0, "NAME|FILE|DIR",
     "moons, circles, rings, 8gaussians, checkerboard, pinwheel, 2spirals, a CSV (-: standard input), fashion-mnist, an IDX file, CIFAR-10, a folder of PNG/JPEG",
     C_TRAIN | C_EVAL | C_PLOT, DA, MA, 0, 0},
    {"data", 0, O_DATA, K_STR, 0, 0, 0, "IMAGES", "fashion-mnist (its test set), an IDX file, CIFAR-10 or a folder of images", CI, 0, MA, 0, 0},
    {"data", 0, O_DATA, K_STR, 0, 0, 0, "fashion-mnist", "the image demo instead of the 2-D one", C_DEMO, 0, MA, 0, 0},
    {"out", 'o', O_OUT, K_STR, 0, 0, 0, "MODEL.ckpt", "the checkpoint (resumable; written every --checkpoint-every steps and at the end)", C_TRAIN, DA, MA, 0, 0},
    {"out", 'o', O_OUT, K_STR, 0, 0, 0, "FILE.csv", "also write log p (nats) of every row", C_EVAL, SRC_VEC, MA, 0, 0},
    {"out", 'o', O_OUT, K_STR, 0, 0, 0, "FILE", "CSV (default, or -: standard output); a PNG grid for an image model", C_SAMPLE, 0, MA, 0, 0},
    {"out", 'o', O_OUT, K_STR, 0, 0, 0, "FILE.csv", "output CSV (default, or -: standard output)", C_ENCODE | C_DECODE, 0, MA, 0, 0},
    {"out", 'o', O_OUT, K_STR, 0, 0, 0, "FIG.png", "the picture", C_PLOT | CI, 0, MA, 0, 0},
    {"out", 'o', O_OUT, K_STR, 0, 0, 0, "DIR", "output folder (demo-out)", C_DEMO, 0, MA, 0, 0},
    {"in", 0, O_IN, K_STR, 0, 0, 0, "FILE.csv", "input rows (-: standard input)", C_ENCODE | C_DECODE, 0, MA, 0, 0},
    {"log", 0, O_LOG, K_STR, 0, 0, 0, "FILE", "metrics CSV (MODEL.ckpt.metrics.csv; appended on --resume); grad_norm in the loss's unit", C_TRAIN, DA, MA, 0, "@FILE"},
    {"steps", 0, O_STEPS, K_INT, 0, 1e8, 0, "N", "optimisation steps in all, counting resumed ones (5000; nsf 15000, on images 10000; a CSV 20000, early stopping ends sooner)", C_TRAIN, DA, MA, 0, "3"},
    {"steps", 0, O_STEPS, K_INT, 0, 1e8, 0, "N", "training steps of each model (3000; the image demo 1500)", C_DEMO, DA, MA, 0, 0},
    {"batch", 0, O_BATCH, K_INT, 1, 1 << 20, 0, "B", "batch size (vectors 512, images 64)", C_TRAIN, DA, MA, 0, "8"},
    {"lr", 0, O_LR, K_REAL, 1e-12, 10, 0, "LR", "Adam learning rate (1e-3)", C_TRAIN, DA, MA, 0, "2e-3"},
    {"warmup", 0, O_WARMUP, K_INT, 0, 1e8, 0, "N", "linear learning-rate warm-up steps (vectors 100, images 500)", C_TRAIN, DA, MA, 0, "5"},
    {"clip", 0, O_CLIP, K_REAL, 0, 1e30, 0, "C",
     "bound on the gradient norm of the loss the progress line shows: nats/example for vectors (default 500), "
     "bits/dim for images (default 0 = off); 0 = off", C_TRAIN, DA, MA, 0, "50"},
    {"weight-decay", 0, O_WDECAY, K_REAL, 0, 100, 0, "W", "decoupled weight decay (AdamW): every step p ← p·(1 − lr_t·W) before Adam's move (CSV data: 0.1, or 0.1 · 16200 / rows above 16200 training rows; otherwise 0)", C_TRAIN, DA, MA, 0, "1e-4"},
    {"ema", 0, O_EMA, K_REAL, 0, 0.999999, 0, "D",
     "Polyak averaging: validation, checkpoints and the model saved use an exponential moving average of the parameters "
     "with decay D (CSV data 0.999; otherwise 0 = none)", C_TRAIN, DA, MA, 0, "0.9"},
    {"lr-schedule", 0, O_SCHED, K_CHOICE, 0, 0, "constant|cosine", "S", "after warm-up: constant (nsf: cosine), or cosine decay to 0 at the last step", C_TRAIN, DA, MA, 0, "cosine"},
    {"seed", 0, O_SEED, K_INT, 0, (double)INT64_MAX, 0, "S", "initialisation, data splits and batches (1)", C_TRAIN, DA, MA, 0, "2"},
    {"seed", 0, O_SEED, K_INT, 0, (double)INT64_MAX, 0, "S", "a built-in dataset's test set (the training run's seed gives its test set); images: the dequantisation noise (1)", C_EVAL, DA, MA, 0, 0},
    {"seed", 0, O_SEED, K_INT, 0, (double)INT64_MAX, 0, "S", "a built-in dataset's points drawn and the model's samples (1)", C_PLOT, DA, MA, 0, 0},
    {"seed", 0, O_SEED, K_INT, 0, (double)INT64_MAX, 0, "S", "the latents drawn (1)", C_SAMPLE, DA, MA, 0, 0},
    {"threads", 0, O_THREADS, K_INT, 1, 256, 0, "T", "OpenMP threads (default: all); results do not depend on T", CA, DA, MA, 0, "1"},
    {"quiet", 0, O_QUIET, K_FLAG, 0, 0, 0, 0, "no progress line or warnings", C_TRAIN, DA, MA, 0, ""},
    {"backward", 0, O_BACKWARD, K_CHOICE, 0, 0, "store|recompute", "M",
     "keep every layer's activations (store) or rebuild them by inversion (recompute: memory flat in depth)", C_TRAIN, DA, MA, 0, "recompute"},
    {"checkpoint-every", 0, O_CKEVERY, K_INT, 1, 1e8, 0, "N", "save the resumable checkpoint every N steps (1000)", C_TRAIN, DA, MA, 0, "2"},
    {"resume", 0, O_RESUME, K_STR, 0, 0, 0, "CKPT", "continue a run exactly (architecture and state from CKPT; same data and options)", C_TRAIN, DA, MA, 0, "@CKPT"},
    {"check-sync", 0, O_CHECKSYNC, K_INT, 1, 1e8, 0, "K",
     "under mpirun: compare a checksum of the parameters across the processes every K steps, stop if they differ", C_TRAIN, DA, MA, 0, "2"},
    {"mpi-bucket-mb", 0, O_MPIBUCKET, K_REAL, 0, 1e6, 0, "M",
     "under mpirun only: all-reduce the gradient in buckets of M MiB (MPI_Iallreduce, from the last layer's down), each posted as soon as "
     "the backward pass has finished it, overlapping the rest of the backward pass; 0: one MPI_Allreduce after the backward pass; "
     "default: 4 when the processes span several machines, 0 when they all run on one; no effect with 1 process", C_TRAIN, DA, MA, 0, "4"},
    {"time-limit", 0, O_TIMELIMIT, K_REAL, 0.001, 1e6, 0, "MIN", "stop after MIN minutes of training, then save and evaluate as at the end", C_TRAIN, DA, MA, 0, "0.01"},
    /* data */
    {"train-size", 0, O_NTRAIN, K_INT, 2, 1e8, 0, "N", "toy data: training points (100000)", C_TRAIN, SRC_TOY, MA, 0, "64"},
    {"test-size", 0, O_NTEST, K_INT, 1, 1e8, 0, "N", "toy data: test points (20000)", C_TRAIN | C_EVAL | C_PLOT, SRC_TOY, MA, 0, "32"},
    {"test-frac", 0, O_TESTFRAC, K_REAL, 1e-6, 0.999, 0, "F", "held-out fraction of a CSV or an image folder (0.1)", C_TRAIN, SRC_CSV | SRC_DIR, MA, 0, "0.25"},
    {"val-fraction", 0, O_VALFRAC, K_REAL, 0, 0.9, 0, "F",
     "fraction of the training rows held out (by --seed) for validation, evaluated every --eval-every steps and at the end; "
     "the model saved is the best-validation one (0.1; 0: none)", C_TRAIN, SRC_CSV, MA, 0, "0.25"},
    {"eval-every", 0, O_EVALEVERY, K_INT, 1, 1e8, 0, "N", "validation NLL every N steps (100)", C_TRAIN, SRC_CSV, MA, 0, "2"},
    {"patience", 0, O_PATIENCE, K_INT, 0, 1e8, 0, "P", "early stopping: stop after P evaluations without a better validation NLL (20; 0: off)", C_TRAIN, SRC_CSV, MA, 0, "1"},
    {"test-out", 0, O_TESTOUT, K_STR, 0, 0, 0, "FILE.csv", "write the test rows", C_TRAIN, SRC_VEC, MA, 0, "@FILE"},
    {"test-data", 0, O_TESTDATA, K_STR, 0, 0, 0, "FILE", "test images (for image files without a test set of their own)", C_TRAIN, SRC_IMG, MA, 0, "@IDX"},
    {"image-size", 0, O_IMGSIZE, K_INT, 1, 4096, 0, "S", "a folder of images: scale and crop to S × S (32)", C_TRAIN, SRC_DIR, MA, 0, "8"},
    {"channels", 0, O_CHANNELS, K_INT, 1, 3, 0, "C", "a folder of images: 1 (grey) or 3 (RGB) (default: grey if all are)", C_TRAIN | C_EVAL | CI, SRC_DIR, MA, 0, "1"},
    {"bits", 0, O_BITS, K_INT, 1, 8, 0, "N", "images: reduce pixels to N bits (8)", C_TRAIN | C_EVAL | CI, SRC_IMG, MA, 0, "5"},
    {"sample-every", 0, O_SMPEVERY, K_INT, 1, 1e8, 0, "N", "write MODEL.ckpt.samples.png (64 fixed latents, T = 0.7) every N steps (1000)", C_TRAIN, SRC_IMG, MA, 0, "2"},
    {"labels", 0, O_LABELS, K_STR, 0, 0, 0, "FILE", "IDX labels of an IDX image file", C_MANIP, SRC_IDX, MA, 0, 0},
    {"labels", 0, O_LABELS, K_STR, 0, 0, 0, "FILE", "IDX labels (idx1) of the --data IDX images: the classes of --condition labels", C_TRAIN | C_EVAL, SRC_IDX, MA, 0, 0},
    {"test-labels", 0, O_TESTLABELS, K_STR, 0, 0, 0, "FILE", "IDX labels (idx1) of the --test-data images", C_TRAIN, SRC_IDX, MA, 0, 0},
    /* conditional flows */
    {"context-cols", 0, O_CTXCOLS, K_STR, 0, 0, 0, "LIST",
     "CSV columns (names or 1-based numbers, comma-separated) that condition the model and are not modelled: "
     "learns p(x | c), eval reports log p(x | c), sample takes --context", C_TRAIN, SRC_CSV, M_ALL, 0, 1, "c"},
    {"condition", 0, O_CONDITION, K_CHOICE, 0, 0, "labels", "labels",
     "learn p(x | class): the class labels (fashion-mnist's, CIFAR-10's, an image folder's class sub-folders, or --labels) "
     "condition every coupling and the prior (diag_gaussian unless --prior is given)", C_TRAIN, SRC_IMG, MA, 0, 0},
    {"context", 0, O_CONTEXT, K_STR, 0, 0, 0, "FILE.csv",
     "a conditional table model's contexts: the rows of FILE (their context columns, or whole rows of the training layout); "
     "sample: -n samples per row (1); plot: a row of panels per row (at most 16)",
     C_SAMPLE | C_PLOT, 0, MA, 0, 0},
    {"classify", 0, O_CLASSIFY, K_INT, 1, 1e9, 0, "N",
     "a class-conditional image model: also classify the first N images by Bayes' rule (argmax_k p(x | k)) and report the "
     "accuracy and the marginal bits/dim of Σ_k p(x | k)/K (K passes per image)", C_EVAL, SRC_IMG, MA, 0, 0},
    {"draws", 0, O_DRAWS, K_INT, 1, 1 << 20, 0, "K",
     "images: also the importance-weighted bound over K dequantisation draws per image, −log₂ of the mean of p(x)/q(u | pixels) "
     "(tighter as K grows; K passes per image)", C_EVAL, SRC_IMG, MA, 0, 0},
    {"class", 0, O_CLASS, K_INT, 0, 65535, 0, "K",
     "a class-conditional image model: a grid of class K only (default: one row per class, -n per row, 10)", C_SAMPLE, 0, MA, 0, 0},
    /* architecture: defaults depend on the model and the data */
    {"depth", 0, O_DEPTH, K_INT, 1, 1024, 0, "K", "couplings (nice 4, realnvp 8, nsf 4), glow/nsf steps per level (glow 8, nsf 4) or autoregressive blocks (maf, iaf 5; on a CSV without context columns 3)", C_TRAIN, DA, M_ALL, M_NICE | M_GLOW | M_NSF, 1, "2"},
    {"hidden", 0, O_HIDDEN, K_INT, 1, 65536, 0, "W", "coupling net / MADE width (nice 128, others 64; images: glow 128, realnvp 64, nice 1000)", C_TRAIN, DA, M_ALL, M_CPL, 1, "8"},
    {"mlp-layers", 0, O_LAYERS, K_INT, 1, 32, 0, "L", "hidden layers of the coupling nets / MADEs (nice 4, others 2; nice images 5)", C_TRAIN, DA, M_ALL, M_NICE | M_GLOW | M_NSF, 1, "1"},
    {"activation", 0, O_ACT, K_ENUM, 0, 0, "activation", "A", "relu, tanh or leaky_relu (relu; maf, iaf on a CSV: tanh)", C_TRAIN, DA, M_ALL, M_NICE, 1, "tanh"},
    {"scale", 0, O_SCALE, K_ENUM, 0, 0, "scale", "S", "affine coupling's / autoregressive block's bounded scale: tanh or sigmoid", C_TRAIN, DA, M_REALNVP | M_GLOW | M_AR, M_GLOW, 1, "sigmoid"},
    {"partition", 0, O_PART, K_ENUM, 0, 0, "partition", "P", "halves or oddeven", C_TRAIN, DA, M_CPL, M_NICE, 1, "halves"},
    {"perm", 0, O_PERM, K_ENUM, 0, 0, "perm", "P", "none, reverse, random or lu (a learned LU-parameterised linear map), after each coupling (nsf: random, 2-D data reverse; maf, iaf: between blocks, reverse)", C_TRAIN, DA, M_NICE | M_REALNVP | M_NSF | M_AR, M_NICE, 1, "reverse"},
    {"prior", 0, O_PRIOR, K_ENUM, 0, 0, "prior", "P", "normal, logistic, diag_gaussian, gmm (a learned mixture of --prior-components diagonal Gaussians) or gmm_full (the same with full covariances, at most 64 dimensions); by default nice: logistic; maf, iaf on a CSV without context columns: gmm; class-conditional images: diag_gaussian; others normal", C_TRAIN, DA, M_ALL, M_CPL, 1, "logistic"},
    {"prior-components", 0, O_PRIORK, K_INT, 1, NF_GMM_MAX_COMPONENTS, 0, "K", "components of the gmm and gmm_full priors (8)", C_TRAIN, DA, M_ALL, M_CPL, 1, "4"},
    {"coupling", 0, O_COUPLING, K_ENUM, 0, 0, "coupling", "C", "affine or additive", C_TRAIN, DA, M_GLOW, M_GLOW, 1, "additive"},
    {"lu", 0, O_LU, K_INT, 0, 1, 0, "0|1", "LU-parameterised invertible linear", C_TRAIN, DA, M_GLOW, M_GLOW | M_NSF, 1, "0"},
    {"batchnorm", 0, O_BN, K_INT, 0, 1, 0, "0|1", "batch-norm flow layer after each coupling / block but the last", C_TRAIN, SRC_VEC, M_REALNVP | M_AR, 0, 1, "1"},
    {"actnorm", 0, O_AN, K_INT, 0, 1, 0, "0|1", "ActNorm before each coupling / block", C_TRAIN, DA, M_NICE | M_REALNVP | M_NSF | M_AR, M_NICE, 1, "1"},
    {"standardize", 0, O_STD, K_CHOICE, 0, 0, "auto|on|off", "M", "per-column standardisation layer (auto: on for CSV, off for toys)", C_TRAIN, SRC_VEC, M_ALL, 0, 1, "on"},
    {"init-std", 0, O_INITSTD, K_REAL, 0, 1, 0, "S", "std of the coupling nets' last-layer init (0: identity couplings; NICE on 8gaussians needs e.g. 0.01)", C_TRAIN, DA, M_ALL, M_CPL, 1, "0.01"},
    {"levels", 0, O_LEVELS, K_INT, 1, 8, 0, "L", "glow/nsf levels, realnvp scales (2)", C_TRAIN, SRC_IMG, 0, M_REALNVP | M_GLOW | M_NSF, 1, "1"},
    {"blocks", 0, O_BLOCKS, K_INT, 0, 64, 0, "B", "residual blocks per coupling ResNet (4)", C_TRAIN, SRC_IMG, 0, M_REALNVP, 1, "1"},
    {"logit-alpha", 0, O_LOGIT, K_REAL, 0, 0.4999, 0, "A", "logit preprocessing in front (realnvp 0.05; glow, nice 0 = none)", C_TRAIN, SRC_IMG, 0, M_CPL, 1, "0.05"},
    {"bins", 0, O_BINS, K_INT, 2, 64, 0, "K", "bins of every rational-quadratic spline (8; maf, iaf: with spline or mixed blocks)", C_TRAIN, DA, M_NSF | M_AR, M_NSF, 1, "5"},
    {"bound", 0, O_BOUND, K_REAL, 1e-3, 1e5, 0, "B", "splines act on [-B, B], identity outside (vectors 4, images 3; maf, iaf: with spline or mixed blocks)", C_TRAIN, DA, M_NSF | M_AR, M_NSF, 1, "2.5"},
    {"elementwise", 0, O_ELEMWISE, K_INT, 0, 1, 0, "0|1", "an element-wise spline per coordinate in front (1-D data: 1, the whole model)", C_TRAIN, SRC_VEC, M_NSF, 0, 1, "1"},
    {"order", 0, O_ORDER, K_ENUM, 0, 0, "order", "O", "MADE input ordering of every block: natural, reverse or random (from --seed)", C_TRAIN, SRC_VEC, M_AR, 0, 1, "random"},
    {"transform", 0, O_TRANSFORM, K_ENUM, 0, 0, "transform", "T", "element-wise map of each autoregressive block: affine, spline (rational-quadratic: --bins, --bound) or mixed (blocks alternate, affine first); default spline on 2-D data, mixed on tables", C_TRAIN, SRC_VEC, M_AR, 0, 1, "spline"},
    {"dequant", 0, O_DEQUANT, K_ENUM, 0, 0, "dequant", "D",
     "how pixels fill their bins: uniform noise, or variational: a learned noise distribution q(u | pixels) trained "
     "with the flow (Flow++), a tighter bits/dim bound", C_TRAIN, SRC_IMG, 0, M_CPL, 1, "variational"},
    {"dequant-hidden", 0, O_DQHIDDEN, K_INT, 1, 4096, 0, "W", "width of the variational dequantiser's conv net (32)", C_TRAIN, SRC_IMG, 0, M_CPL, 1, "8"},
    /* other commands */
    {"num", 'n', O_N, K_INT, 1, 1e8, 0, "N", "samples (1000; image grid 64)", C_SAMPLE, 0, MA, 0, 0},
    {"temperature", 0, O_TEMP, K_REAL, 0, 100, 0, "T", "scale of the prior (1)", C_SAMPLE, 0, MA, 0, 0},
    {"size", 0, O_SIZE, K_INT, 32, 4096, 0, "PX", "panel size in pixels (256)", C_PLOT, 0, MA, 0, 0},
    {"from", 0, O_FROM, K_INT, 0, (double)INT64_MAX, 0, "I", "first image", C_INTERP, 0, MA, 0, 0},
    {"to", 0, O_TO, K_INT, 0, (double)INT64_MAX, 0, "J", "last image", C_INTERP, 0, MA, 0, 0},
    {"frames", 0, O_FRAMES, K_INT, 2, 64, 0, "N", "interpolation steps (8)", C_INTERP, 0, MA, 0, 0},
    {"class-a", 0, O_CLASSA, K_INT, 0, 255, 0, "A", "class the attribute vector points away from", C_MANIP, 0, MA, 0, 0},
    {"class-b", 0, O_CLASSB, K_INT, 0, 255, 0, "B", "class it points to", C_MANIP, 0, MA, 0, 0},
    {"images", 0, O_IMAGES, K_INTS, 0, (double)INT64_MAX, 0, "I,J,…", "images to change", C_MANIP, 0, MA, 0, 0},
    {"strengths", 0, O_STRENGTHS, K_REALS, -100, 100, 0, "s1,s2,…", "strengths (−1,−0.5,0,0.5,1,1.5)", C_MANIP, 0, MA, 0, 0},
    {"per-class", 0, O_PERCLASS, K_INT, 1, 1e8, 0, "N", "images per class mean (1000)", C_MANIP, 0, MA, 0, 0},
    {"help", 'h', O_HELP, K_FLAG, 0, 0, 0, 0, "this text", CA, DA, MA, 0, 0},
    {0}};

const opt_def *opt_find(opt_code code, unsigned cmd) {
    for (const opt_def *d = nf_cli_options; d->name; d++)
        if (d->code == code && (d->cmds & cmd)) return d;
    return NULL;
}

void need(const char *v, const char *name) {
    if (!v) die("missing --%s (see %s --help)", name, g_cmd);
}

static const char *src_words(unsigned m) {
    switch (m) {
    case SRC_VEC: return "vector data";
    case SRC_IMG: return "image data";
    case SRC_TOY: return "built-in toy data";
    case SRC_CSV: return "CSV data";
    case SRC_DIR: return "image folders";
    case SRC_IDX: return "image files";
    case SRC_CSV | SRC_DIR: return "CSV data and image folders";
    default: return "other data";
    }
}

static void models_words(unsigned m, char *buf, size_t n) {
    buf[0] = 0;
    for (int k = 0; k < NF_CLI_NMODELS; k++)
        if (m & (1u << k)) snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", buf[0] ? ", " : "", nf_model_name((nf_model_type)k));
    if (!buf[0]) snprintf(buf, n, "no model");
}

/* The applicability note of a train option's help line. */
static void note(const opt_def *d, char *buf, size_t n) {
    char a[64], b[64];
    buf[0] = 0;
    if (d->arch) {
        models_words(d->mvec, a, sizeof a), models_words(d->mimg, b, sizeof b);
        if (!(d->data & SRC_IMG)) snprintf(buf, n, " [%s; %s]", src_words(d->data), a);
        else if (!(d->data & SRC_VEC)) snprintf(buf, n, " [%s; %s]", src_words(d->data), b);
        else if (d->mvec == d->mimg) snprintf(buf, n, " [%s]", a);
        else snprintf(buf, n, " [vectors: %s; images: %s]", a, b);
    } else if (d->data != (SRC_VEC | SRC_IMG)) snprintf(buf, n, " [%s]", src_words(d->data));
}

static void print_help(unsigned cmd, const char *usage) {
    fputs(usage, stdout);
    printf("options:\n");
    for (const opt_def *d = nf_cli_options; d->name; d++) {
        if (!(d->cmds & cmd)) continue;
        char head[64], nt[160] = "", sh[8] = "    ";
        if (d->short_name) snprintf(sh, sizeof sh, "-%c, ", d->short_name);
        snprintf(head, sizeof head, "%s--%s%s%s", sh, d->name, d->meta ? " " : "", d->meta ? d->meta : "");
        if (cmd == C_TRAIN) note(d, nt, sizeof nt);
        char text[512];
        snprintf(text, sizeof text, "%s%s", d->help, nt);
        int cont = 0; /* UTF-8 continuation bytes ("…"): padded by characters, not bytes */
        for (const char *b = head; *b; b++) cont += ((unsigned char)*b & 0xC0) == 0x80;
        printf("  %-*s ", 30 + cont, head);
        int col = 33;
        for (char *w = strtok(text, " "); w; w = strtok(NULL, " ")) { /* wrap at 100 columns */
            int len = (int)strlen(w);
            if (col > 33 && col + 1 + len > 100) printf("\n%33s", ""), col = 33;
            printf("%s%s", col > 33 ? " " : "", w);
            col += len + (col > 33);
        }
        putchar('\n');
    }
}

static int64_t parse_int(const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || (double)v < lo || (double)v > hi)
        die("option --%s: '%s' is not an integer in %lld..%lld", opt, s, (long long)lo, hi >= (double)INT64_MAX ? (long long)INT64_MAX : (long long)hi);
    return v;
}

static double parse_real(const char *opt, const char *s, double lo, double hi) {
    char *end;
    if (strpbrk(s, "xX")) die("option --%s: '%s' is not a decimal number", opt, s); /* strtod would read hexadecimal */
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) die("option --%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
    return v;
}

static int parse_enum(const char *opt, const char *kind, const char *s) {
    int v = nf_enum_from_name(kind, s);
    if (v < 0) {
        char list[128] = "";
        for (int i = 0; i < 8 && strcmp(nf_enum_name(kind, i), "?") != 0; i++) snprintf(list + strlen(list), sizeof list - strlen(list), " %s", nf_enum_name(kind, i));
        die("option --%s: unknown %s '%s' (one of:%s)", opt, kind, s, list);
    }
    return v;
}

static void parse_choice(const opt_def *d, const char *s) {
    size_t n = strlen(s);
    for (const char *c = d->choices; c;) {
        const char *bar = strchr(c, '|');
        size_t k = bar ? (size_t)(bar - c) : strlen(c);
        if (k == n && strncmp(c, s, n) == 0) return;
        c = bar ? bar + 1 : NULL;
    }
    char list[64];
    snprintf(list, sizeof list, "%s", d->choices);
    for (char *p = list; *p; p++)
        if (*p == '|') *p = ',';
    die("option --%s: '%s' is not one of %s", d->name, s, list);
}

static void set_defaults(opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 5000, o->batch = 512, o->lr = 1e-3, o->seed = 1, o->n = 1000, o->temperature = 1;
    o->ntrain = 100000, o->ntest = 20000, o->test_frac = 0.1, o->size = 256, o->warmup = 100, o->clip = CLIP_DEFAULT_VEC;
    o->standardize = "auto", o->schedule = "constant";
    o->bits = 8, o->ck_every = 1000, o->smp_every = 1000;
    o->val_frac = 0.1, o->eval_every = 100, o->patience = 20, o->ema = -1;
    o->from = o->to = o->class_a = o->class_b = -1, o->frames = 8, o->per_class = 1000;
    o->cls = -1;
}

/* Store the value of option d (already checked against its kind and range). */
static void store(opts *o, const opt_def *d, const char *v) {
    const char *n = d->name;
    int64_t i = d->kind == K_INT ? parse_int(n, v, d->lo, d->hi) : 0;
    double r = d->kind == K_REAL ? parse_real(n, v, d->lo, d->hi) : 0;
    int e = d->kind == K_ENUM ? parse_enum(n, d->choices, v) : 0;
    if (d->kind == K_CHOICE) parse_choice(d, v);
    switch (d->code) {
    case O_MODEL: o->model = v; break;
    case O_DATA: o->data = v; break;
    case O_OUT: o->out = v; break;
    case O_IN: o->in = v; break;
    case O_LOG: o->log = v; break;
    case O_TESTOUT: o->test_out = v; break;
    case O_TESTDATA: o->test_data = v; break;
    case O_LABELS: o->labels = v; break;
    case O_TESTLABELS: o->test_labels = v; break;
    case O_CTXCOLS: o->context_cols = v; break;
    case O_CONTEXT: o->context = v; break;
    case O_CONDITION: o->condition = v; break;
    case O_CLASS: o->cls = i; break;
    case O_CLASSIFY: o->classify = i; break;
    case O_DRAWS: o->draws = i; break;
    case O_RESUME: o->resume = v; break;
    case O_STD: o->standardize = v; break;
    case O_SCHED: o->schedule = v; break;
    case O_BACKWARD: o->recompute = !strcmp(v, "recompute"); break;
    case O_QUIET: o->quiet = 1, g_quiet = 1; break;
    case O_STEPS: o->steps = i; break;
    case O_BATCH: o->batch = i; break;
    case O_WARMUP: o->warmup = i; break;
    case O_SEED: o->seed = (uint64_t)i; break;
    case O_THREADS: o->threads = (int)i; break;
    case O_N: o->n = i; break;
    case O_NTRAIN: o->ntrain = i; break;
    case O_NTEST: o->ntest = i; break;
    case O_SIZE: o->size = i; break;
    case O_CKEVERY: o->ck_every = i; break;
    case O_SMPEVERY: o->smp_every = i; break;
    case O_CHECKSYNC: o->check_sync = i; break;
    case O_EVALEVERY: o->eval_every = i; break;
    case O_PATIENCE: o->patience = i; break;
    case O_VALFRAC: o->val_frac = r; break;
    case O_WDECAY: o->weight_decay = r; break;
    case O_EMA: o->ema = r; break;
    case O_FROM: o->from = i; break;
    case O_TO: o->to = i; break;
    case O_FRAMES: o->frames = i; break;
    case O_CLASSA: o->class_a = i; break;
    case O_CLASSB: o->class_b = i; break;
    case O_PERCLASS: o->per_class = i; break;
    case O_IMGSIZE: o->image_size = (int32_t)i; break;
    case O_CHANNELS:
        if (i == 2) die("option --channels: 1 (grey) or 3 (RGB)");
        o->channels = (int32_t)i;
        break;
    case O_BITS: o->bits = (int32_t)i; break;
    case O_LEVELS: o->levels = o->cfg.levels = (int32_t)i; break;
    case O_DEPTH: o->cfg.depth = (int32_t)i; break;
    case O_HIDDEN: o->cfg.hidden = (int32_t)i; break;
    case O_LAYERS: o->cfg.layers = (int32_t)i; break;
    case O_BLOCKS: o->cfg.blocks = (int32_t)i; break;
    case O_DQHIDDEN: o->cfg.dequant_hidden = (int32_t)i; break;
    case O_LU: o->cfg.lu = (int32_t)i; break;
    case O_BN: o->cfg.batchnorm = (int32_t)i; break;
    case O_AN: o->cfg.actnorm = (int32_t)i; break;
    case O_ACT: o->cfg.act = (nf_activation)e; break;
    case O_SCALE: o->cfg.scale = (nf_scale_type)e; break;
    case O_PART: o->cfg.partition = (nf_partition)e; break;
    case O_PERM: o->cfg.perm = (nf_perm_type)e; break;
    case O_PRIOR: o->cfg.prior = (nf_prior_type)e; break;
    case O_PRIORK: o->cfg.prior_components = (uint64_t)i; break;
    case O_COUPLING: o->cfg.coupling = (nf_coupling_type)e; break;
    case O_ORDER: o->cfg.order = (nf_order_type)e; break;
    case O_TRANSFORM: o->cfg.transform = (nf_transform_type)e; break;
    case O_DEQUANT: o->cfg.dequant = (nf_dequant_type)e; break;
    case O_LR: o->lr = r; break;
    case O_CLIP: o->clip = r; break;
    case O_TEMP: o->temperature = r; break;
    case O_TESTFRAC: o->test_frac = r; break;
    case O_TIMELIMIT: o->time_limit = r; break;
    case O_MPIBUCKET: o->mpi_bucket_mb = r; break;
    case O_INITSTD: o->cfg.init_std = r; break;
    case O_LOGIT: o->cfg.logit_alpha = r; break;
    case O_BINS: o->cfg.bins = (int32_t)i; break;
    case O_BOUND: o->cfg.bound = r; break;
    case O_ELEMWISE: o->cfg.elementwise = (int32_t)i; break;
    case O_IMAGES:
    case O_STRENGTHS: { /* comma-separated lists */
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", v);
        int64_t k = 0;
        for (char *t = buf, *next; t && *v; t = next) {
            if ((next = strchr(t, ','))) *next++ = 0;
            if (!*t) die("option --%s: '%s' has an empty entry", n, v);
            if (k == 64) die("option --%s: at most 64 values", n);
            if (d->code == O_IMAGES) o->images[k++] = parse_int(n, t, d->lo, d->hi);
            else o->strengths[k++] = parse_real(n, t, d->lo, d->hi);
        }
        if (k == 0) die("option --%s: needs a comma-separated list", n);
        if (d->code == O_IMAGES) o->nimages = k;
        else o->nstrengths = k;
        break;
    }
    default: break;
    }
}

typedef struct {
    const char *opt, *path; /* the option, and the file it names */
} named_path;

/* 1 if a and b are the same existing file (device and inode), or the same name. */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (strcmp(a, b) == 0) return 1;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Refuse, before any work, the files a command would write that cannot be written whole or would
 * destroy what it reads: an output that is a folder or lies in a folder that does not exist, an output
 * that is one of the command's input files, two outputs that are the same file. train's outputs include
 * the files it derives from --out (MODEL.ckpt.best, MODEL.ckpt.metrics.csv unless --log, the sample grid);
 * --out may be the --resume checkpoint (a run continued in place). "-" (standard input or output) and the
 * built-in datasets' names are not files. */
static void check_paths(const opts *o, unsigned cmd) {
    if (cmd == C_DEMO) return; /* its --out is a folder it creates */
    named_path in[8], out[6];
    int ni = 0, no = 0;
    char derived[3][4200];
#define ADD(list, n, name, p) do { if ((p) && strcmp((p), "-") != 0) list[n++] = (named_path){name, p}; } while (0)
    if (o->data && nf_toy_known(o->data) < 0 && strcmp(o->data, "fashion-mnist") != 0) ADD(in, ni, "data", o->data);
    ADD(in, ni, "in", o->in); ADD(in, ni, "context", o->context); ADD(in, ni, "test-data", o->test_data);
    ADD(in, ni, "labels", o->labels); ADD(in, ni, "test-labels", o->test_labels); ADD(in, ni, "resume", o->resume);
    if (cmd != C_TRAIN) ADD(in, ni, "model", o->model);
    ADD(out, no, "out", o->out); ADD(out, no, "log", o->log); ADD(out, no, "test-out", o->test_out);
    if (cmd == C_TRAIN && o->out) {
        snprintf(derived[0], sizeof derived[0], "%s.best", o->out);
        snprintf(derived[1], sizeof derived[1], "%s.samples.png", o->out);
        snprintf(derived[2], sizeof derived[2], "%s.metrics.csv", o->out);
        ADD(out, no, "out", derived[0]);
        ADD(out, no, "out", derived[1]);
        if (!o->log) ADD(out, no, "out", derived[2]);
    }
#undef ADD
    for (int i = 0; i < no; i++) {
        const char *p = out[i].path;
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) die("option --%s: %s is a folder; give a file name", out[i].opt, p);
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", p);
        char *slash = strrchr(dir, '/');
        if (slash) {
            slash[slash == dir] = 0; /* "/x" → "/" */
            if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) die("option --%s: %s: the folder %s does not exist", out[i].opt, p, dir);
        }
        for (int k = 0; k < ni; k++) {
            if (cmd == C_TRAIN && strcmp(in[k].opt, "resume") == 0 && strcmp(out[i].opt, "out") == 0) continue; /* in place */
            if (same_file(p, in[k].path))
                die("option --%s: writing %s would overwrite the file --%s reads (%s)", out[i].opt, p, in[k].opt, in[k].path);
        }
        for (int k = 0; k < i; k++)
            if (same_file(p, out[k].path)) die("options --%s and --%s: both write %s", out[k].opt, out[i].opt, p);
    }
}

void parse_options(int argc, char **argv, unsigned cmd, const char *usage, opts *o) {
    struct option lo[128];
    char shorts[32] = ":";
    int n = 0;
    for (const opt_def *d = nf_cli_options; d->name; d++) { /* every name once (rows of one name differ by command) */
        int dup = 0;
        for (int k = 0; k < n; k++) dup |= !strcmp(lo[k].name, d->name);
        if (dup) continue;
        lo[n++] = (struct option){d->name, d->kind == K_FLAG ? no_argument : required_argument, 0, (int)d->code};
    }
    for (const opt_def *d = nf_cli_options; d->name; d++)
        if (d->short_name && (d->cmds & cmd)) {
            size_t k = strlen(shorts);
            shorts[k] = d->short_name, shorts[k + 1] = d->kind == K_FLAG ? 0 : ':', shorts[k + 2] = 0;
        }
    lo[n] = (struct option){0, 0, 0, 0};
    set_defaults(o);
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        if (c == '?') die("unknown option '%s' (see %s --help)", argv[optind - 1], g_cmd);
        if (c == ':') die("option '%s' needs a value", argv[optind - 1]);
        if (c < O_MODEL) /* a short option */
            for (const opt_def *d = nf_cli_options; d->name; d++)
                if (d->short_name == c && (d->cmds & cmd)) c = (int)d->code;
        const opt_def *d = opt_find((opt_code)c, cmd);
        if (!d) {
            for (int k = 0; k < n; k++)
                if (lo[k].val == c) die("option --%s does not apply here (see %s --help)", lo[k].name, g_cmd);
            die("unknown option '%s' (see %s --help)", argv[optind - 1], g_cmd);
        }
        if (d->code == O_HELP) {
            print_help(cmd, usage);
            exit(0);
        }
        store(o, d, optarg);
        GIVEN(o, d->code) = 1;
    }
    if (optind < argc) die("unexpected argument '%s' (see %s --help)", argv[optind], g_cmd);
    if (o->threads) nf_set_threads(o->threads);
    check_paths(o, cmd);
}

/* See options.h: maf/iaf's transform is known once the defaults for the data are (spline on 2-D data,
 * mixed on tables); which of --bins, --bound and --scale it uses is the library's rule
 * (nf_config_field_applies), so the CLI and the library cannot disagree; likewise --perm and --batchnorm,
 * which go between blocks only (recipes.c), so that one block has none. */
void check_config_options(const opts *o, const nf_config *cfg) {
    static const struct { opt_code code; const char *field; } between[] = {{O_PERM, "perm"}, {O_BN, "batchnorm"}};
    for (size_t k = 0; k < sizeof between / sizeof between[0]; k++)
        if (GIVEN(o, between[k].code) && nf_config_field_applies(cfg, between[k].field) == 0)
            die("option --%s: the %s model puts it between blocks, and --depth 1 makes one block", between[k].field, nf_model_name(cfg->model));
    if (GIVEN(o, O_PRIORK) && nf_config_field_applies(cfg, "prior_components") == 0)
        die("option --prior-components applies to the mixture priors only (--prior gmm or gmm_full; this %s uses --prior %s)", nf_model_name(cfg->model),
            nf_enum_name("prior", (int)cfg->prior));
    if (cfg->model != NF_MODEL_MAF && cfg->model != NF_MODEL_IAF) return;
    const char *t = nf_enum_name("transform", (int)cfg->transform);
    if ((GIVEN(o, O_BINS) || GIVEN(o, O_BOUND)) && nf_config_field_applies(cfg, "bins") == 0)
        die("option --%s applies to spline blocks only (--transform spline, or mixed with --depth 2 or more; this %s uses --transform %s%s)",
            GIVEN(o, O_BINS) ? "bins" : "bound", nf_model_name(cfg->model), t, cfg->depth == 1 ? " with --depth 1" : "");
    if (GIVEN(o, O_SCALE) && nf_config_field_applies(cfg, "scale") == 0)
        die("option --scale applies to an affine transform only (affine or mixed; this %s uses --transform %s)", nf_model_name(cfg->model), t);
}

void check_applicable(const opts *o, unsigned cmd, unsigned src, int model) {
    int img = (src & SRC_IMG) != 0;
    for (const opt_def *d = nf_cli_options; d->name; d++) {
        if (!(d->cmds & cmd) || !GIVEN(o, d->code)) continue;
        if (d->data && !(d->data & src)) die("option --%s applies to %s only", d->name, src_words(d->data));
        unsigned m = img ? d->mimg : d->mvec;
        if (d->arch && !(m & (1u << model))) {
            char w[64];
            models_words(m, w, sizeof w);
            die("option --%s: the %s model does not use it on %s data (it applies to: %s)", d->name, nf_model_name((nf_model_type)model),
                img ? "image" : "vector", w);
        }
    }
    /* finer rules than the table's columns */
    if (GIVEN(o, O_SCALE) && model == NF_MODEL_GLOW && GIVEN(o, O_COUPLING) && o->cfg.coupling == NF_COUPLING_ADDITIVE)
        die("option --scale applies to affine couplings only (not with --coupling additive)");
    if (GIVEN(o, O_DQHIDDEN) && !o->resume && o->cfg.dequant != NF_DEQUANT_VARIATIONAL)
        die("option --dequant-hidden: needs --dequant variational (uniform dequantisation has no net)");
    if (GIVEN(o, O_TESTFRAC) && o->test_data) die("option --test-frac: not used with --test-data (the test set is given)");
    if (o->val_frac == 0 && (GIVEN(o, O_EVALEVERY) || GIVEN(o, O_PATIENCE)))
        die("option --%s: needs a validation split (--val-fraction 0 holds out none)", GIVEN(o, O_EVALEVERY) ? "eval-every" : "patience");
    if (GIVEN(o, O_WDECAY) && o->weight_decay * o->lr >= 1) die("option --weight-decay: %g × --lr %g must be below 1", o->weight_decay, o->lr);
}

/* nflow options: the table, one train option a line, for the option-walk test:
 * NAME KIND EXAMPLE DATA VECTOR-MODELS IMAGE-MODELS (data: toy,csv,idx,dir; models: nice,realnvp,glow,nsf) */
int cmd_options(int argc, char **argv) {
    (void)argc, (void)argv;
    for (const opt_def *d = nf_cli_options; d->name; d++) {
        if (!(d->cmds & C_TRAIN) || d->code == O_HELP) continue;
        static const char *const kinds[] = {"flag", "int", "real", "string", "enum", "choice", "ints", "reals"};
        static const char *const srcs[] = {"toy", "csv", "idx", "dir"};
        printf("%s\t%s\t%s\t", d->name, kinds[d->kind], d->example ? (d->example[0] ? d->example : "-") : "-");
        int first = 1;
        for (int k = 0; k < 4; k++)
            if (d->data & (1u << k)) printf("%s%s", first ? "" : ",", srcs[k]), first = 0;
        for (int v = 0; v < 2; v++) {
            unsigned m = d->arch ? (v ? d->mimg : d->mvec) : M_ALL;
            first = 1;
            putchar('\t');
            for (int k = 0; k < NF_CLI_NMODELS; k++)
                if (m & (1u << k)) printf("%s%s", first ? "" : ",", nf_model_name((nf_model_type)k)), first = 0;
            if (first) putchar('-');
        }
        putchar('\n');
    }
    return 0;
}
