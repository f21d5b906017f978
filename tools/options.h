/* options.h — the ONE option table of the CLI (options.c): parsing, --help text and validation.
 * Each entry names the option, its value kind and range, its help line, the commands that accept it,
 * and for train where it applies: which kinds of data, and (architecture options) which models use it
 * on vector and on image data. An option given where it cannot apply is refused with one line. */
#ifndef NFLOW_OPTIONS_H
#define NFLOW_OPTIONS_H

#include "nflow.h"

#include <stdint.h>

/* commands */
enum { C_TRAIN = 1, C_EVAL = 2, C_SAMPLE = 4, C_ENCODE = 8, C_DECODE = 16, C_PLOT = 32, C_DEMO = 64, C_INTERP = 128,
       C_MANIP = 256 };
/* models (bit 1 << nf_model_type) */
enum { M_NICE = 1, M_REALNVP = 2, M_GLOW = 4, M_NSF = 8, M_MAF = 16, M_IAF = 32 };
#define M_CPL (M_NICE | M_REALNVP | M_GLOW | M_NSF) /* the coupling flows */
#define M_AR (M_MAF | M_IAF)                         /* the autoregressive flows (vectors only) */
#define M_ALL (M_CPL | M_AR)
#define NF_CLI_NMODELS 6 /* model types 0 .. NF_CLI_NMODELS − 1 (nice, realnvp, glow, nsf, maf, iaf) */

/* --clip defaults, in the unit of the loss the progress line shows. Measured with --clip 0 (grad_norm
 * column of the metrics CSV, 1 thread, Intel Xeon): realnvp on moons, batch 512, 2000 steps: median 13.4,
 * 99th percentile 46, max 127 nats/example after warm-up, so 500 never binds in ordinary training; glow on
 * fashion-mnist, batch 64: 300 steps: median 13.9, 99th percentile 171, max 310 bits/dim after step 100;
 * 1285 steps: median 42.8, 99th percentile 156, max 297 after warm-up (step 500), the median rising from
 * 1.4 (steps 1-100) to ~50 (steps 1000-1285) as the loss falls and heavy-tailed, so no fixed bound is
 * both safe and idle: off, as the recipe that reaches 3.21 bits/dim trains. (The old default, 100
 * nats/image = 0.18 bits/dim, clipped
 * every step of image training.) */
#define CLIP_DEFAULT_VEC 500.0 /* nats per example */
#define CLIP_DEFAULT_IMG 0.0   /* bits per dimension; 0 = off */

typedef enum {
    O_MODEL = 256, O_DATA, O_OUT, O_IN, O_LOG, O_STEPS, O_BATCH, O_LR, O_SEED, O_THREADS, O_N, O_TEMP, O_DEPTH, O_HIDDEN,
    O_LAYERS, O_ACT, O_SCALE, O_PART, O_PERM, O_PRIOR, O_COUPLING, O_LU, O_BN, O_AN, O_STD, O_INITSTD, O_NTRAIN,
    O_NTEST, O_TESTFRAC, O_SIZE, O_WARMUP, O_CLIP, O_SCHED, O_QUIET, O_TESTOUT, O_LEVELS, O_BITS, O_CKEVERY,
    O_SMPEVERY, O_TESTDATA, O_FROM, O_TO, O_FRAMES, O_CLASSA, O_CLASSB, O_IMAGES, O_STRENGTHS, O_PERCLASS, O_LABELS,
    O_RESUME, O_BLOCKS, O_LOGIT, O_IMGSIZE, O_CHANNELS, O_BACKWARD, O_TIMELIMIT, O_BINS, O_BOUND, O_ELEMWISE, O_ORDER, O_TRANSFORM,
    O_CHECKSYNC, O_MPIBUCKET, O_VALFRAC, O_EVALEVERY, O_PATIENCE, O_WDECAY, O_EMA, O_CTXCOLS, O_CONTEXT, O_CONDITION, O_CLASS,
    O_TESTLABELS, O_CLASSIFY, O_DEQUANT, O_DQHIDDEN, O_DRAWS, O_PRIORK, O_HELP, O_COUNT
} opt_code;

typedef enum { K_FLAG, K_INT, K_REAL, K_STR, K_ENUM, K_CHOICE, K_INTS, K_REALS } opt_kind;

typedef struct {
    const char *name;
    char short_name;      /* 0: none */
    opt_code code;
    opt_kind kind;
    double lo, hi;        /* K_INT, K_REAL and the lists */
    const char *choices;  /* K_ENUM: the library's enum kind; K_CHOICE: "a|b|c" */
    const char *meta;     /* the value in --help */
    const char *help;
    unsigned cmds;        /* C_* accepting it */
    unsigned data;        /* SRC_* (cli.h) of the data it applies to (train, eval; 0: any) */
    unsigned mvec, mimg;  /* train architecture options: models that use it on vector / image data */
    int arch;             /* an architecture option (with --resume it must match the checkpoint) */
    const char *example;  /* a valid value (the option-walk test); "@FILE" a path, "@CKPT" a checkpoint */
} opt_def;

extern const opt_def nf_cli_options[];

typedef struct {
    const char *model, *data, *out, *in, *log, *standardize, *test_out, *schedule, *test_data, *labels, *resume;
    const char *context_cols, *context, *condition, *test_labels; /* conditional flows */
    int64_t cls;              /* sample --class (−1: none) */
    int32_t levels, bits, image_size, channels, recompute;
    int64_t ck_every, smp_every, check_sync;
    int64_t from, to, frames, class_a, class_b, per_class, nimages, nstrengths;
    int64_t images[64];
    double strengths[64];
    int64_t steps, batch, n, ntrain, ntest, size, warmup;
    int64_t eval_every, patience;
    int64_t classify;          /* eval --classify N (0: off) */
    int64_t draws;             /* eval --draws K (0: off) */
    double lr, clip, temperature, test_frac, time_limit, mpi_bucket_mb, val_frac, weight_decay;
    double ema; /* --ema: the decay of the parameters' moving average; < 0 until set: the data's default */
    uint64_t seed;
    int threads, quiet;
    nf_config cfg;            /* architecture values given (see given[]) */
    char given[O_COUNT - O_MODEL]; /* GIVEN(o, code): the option was on the command line */
} opts;
#define GIVEN(o, c) ((o)->given[(c) - O_MODEL])

/* Parse argv for command `cmd` (C_*); --help prints usage + the table's lines for cmd and exits 0. */
void parse_options(int argc, char **argv, unsigned cmd, const char *usage, opts *o);
/* The table entry of an option code for a command. */
const opt_def *opt_find(opt_code code, unsigned cmd);
/* Refuse (one line, exit 1) the first option given to command cmd that cannot apply to data from
 * source `src` (SRC_*) and (train) to model `model` (nf_model_type). */
void check_applicable(const opts *o, unsigned cmd, unsigned src, int model);
/* Refuse (one line, exit 1) options that the final configuration cfg (defaults for the data applied)
 * does not use: maf/iaf's --bins/--bound without a spline block, --scale without an affine one; --perm
 * and --batchnorm, which go between blocks, with a single block (--depth 1). */
void check_config_options(const opts *o, const nf_config *cfg);
/* die("missing --NAME") unless v */
void need(const char *v, const char *name);

#endif
