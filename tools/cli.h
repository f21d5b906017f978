/* cli.h — what the files of the command-line tool share: one-line errors, the parsed options, data
 * loading and the commands. Only the CLI prints and exits; the library (nflow.h) never does. */
#ifndef NFLOW_CLI_H
#define NFLOW_CLI_H

#include "nflow.h"

#include <stdint.h>

extern const char *g_cmd; /* "nflow train" …: the prefix of every message */
extern int g_quiet;        /* --quiet: no warnings */

/* One line "nflow CMD: message" on stderr, exit status 1. */
void die(const char *fmt, ...);
/* A library failure: die with the library's one-line reason. */
void check(nf_status st);
double now(void);
void fmt_time(double s, char *buf, unsigned long n);
/* "s" unless n is 1: "%lld image%s" of a count in a message. */
static inline const char *plural(int64_t n) { return n == 1 ? "" : "s"; }

#include "options.h"

/* ---------------------------------------------------------------- data (cli_data.c) */
/* What --data names: a built-in toy generator, a CSV file, image files (fashion-mnist, IDX, CIFAR-10
 * batches or folder), or a folder of PNG/JPEG images. */
typedef enum { SRC_TOY = 1, SRC_CSV = 2, SRC_IDX = 4, SRC_DIR = 8 } data_source;
#define SRC_VEC (SRC_TOY | SRC_CSV)
#define SRC_IMG (SRC_IDX | SRC_DIR)
data_source data_source_of(const char *name);
/* 1 for image data that carries its own class labels (fashion-mnist, CIFAR-10, a folder: its class
 * sub-folders), where --labels cannot apply; 0 for an IDX image file. */
int brings_labels(const char *data);
/* Dies with one line unless path (NULL: nothing to check) ends in .png: the commands write PNG pictures. */
void check_png_name(const char *path);
/* Vector data: toy train and test sets from different seeds; CSV: a seeded --test-frac split (test NULL:
 * the whole file). */
void load_data(const opts *o, nf_dataset **train, nf_dataset **test);
/* Image training data with its test part: the dataset's own, --test-data, or a --test-frac split. */
void load_images(const opts *o, nf_images **train, nf_images **test);
/* Images for eval, interpolate, manipulate, checked against the model's dimension. */
nf_images *load_eval_images(const opts *o, const nf_flow *f);
nf_flow *load_model(const char *path);
int image_model(const nf_flow *f);
/* PNG grid (cols per row, each pixel scale × scale) of the n images x of f's shape that the pass with
 * status st produced: NF_ERR_NUMERIC draws the non-finite pixels black with a warning naming path and
 * how many images hold them (once a process, none under --quiet); another failure dies with its reason. */
void write_grid(const nf_flow *f, nf_status st, const nf_real *x, int64_t n, int32_t cols, int32_t scale, const char *path);
/* n samples x = G(z), z at temperature T drawn with `seed`, as a PNG grid (a class-conditional model:
 * one row per class, n / classes samples in each). */
void write_sample_grid(nf_flow *f, uint64_t seed, double T, int64_t n, const char *path);
/* A class-conditional image model: cls ≥ 0: a square grid of n samples of class cls; cls < 0: one row
 * per class of n samples each. */
void write_class_grid(nf_flow *f, uint64_t seed, double T, int64_t cls, int64_t n, const char *path);

/* ---------------------------------------------------------------- conditional tables (cli_data.c) */
/* The columns --context-cols LIST names in the CSV at path of ncols columns (names from its header line,
 * given as names — comma-separated, NULL when it had none — or 1-based numbers) as a bit mask (bit j:
 * column j + 1); dies with one line for an unknown name, a number out of range, a column past the 64th,
 * or a list that leaves no column to model. */
uint64_t context_mask(const char *path, const char *names, const char *list, int32_t ncols);
/* Dies with one line when the header of d (read from path) names the columns of the model f (its
 * training file's header) in another order: the values would be read into the wrong columns. */
void check_column_order(const nf_flow *f, const nf_dataset *d, const char *path);
/* Field k (0-based) of the comma-separated list s as [*a, *z); 0 when s has fewer fields. */
int field_at(const char *s, int32_t k, const char **a, const char **z);
/* The columns of d split by mask into new datasets *x (the others) and *c (the masked ones, in column order). */
void split_columns(const nf_dataset *d, uint64_t mask, nf_dataset **x, nf_dataset **c);
/* split_columns' inverse: rows of D + K values into out, the K context values c (rows of K) in the columns
 * of mask, the D values x (rows of D) in the others, each in column order. */
void join_columns(uint64_t mask, const nf_real *x, int32_t D, const nf_real *c, int32_t K, int64_t n, nf_real *out);
/* The header of a conditional table model f's layout with the modelled columns renamed prefix1, prefix2,
 * … and the context columns under the model's names (c1, c2, … if it has none); malloc'd. */
char *layout_names(const nf_flow *f, const char *prefix);
/* The context rows (n, K) of the conditional table model f (loaded from model) in the CSV at path: its
 * K context columns, or whole rows of the training layout (their context columns taken); dies with one
 * line for another column count or a header naming the columns in another order. */
nf_dataset *read_contexts(const nf_flow *f, const char *model, const char *path);
/* "a,b" (the 1-based numbers of the mask's columns) into buf. */
void mask_words(uint64_t mask, char *buf, unsigned long n);

/* ---------------------------------------------------------------- the training loop (train_loop.c) */
/* Validation and early stopping (CSV data, --val-fraction > 0). Evaluations are "scheduled" at the
 * multiples of --eval-every; only those count for the best score, the patience and the checkpoint's
 * saved state (so a resumed run decides as the uninterrupted one). The state at the last step is also
 * evaluated; the model left in --out is the better of it and the best scheduled one (whose resumable
 * state is kept in --out.best while training). */
typedef struct {
    const nf_dataset *val;   /* validation rows */
    int64_t every, patience; /* --eval-every, --patience (0: off) */
    int64_t best_step;       /* step of the best scheduled evaluation (0: none yet); carried by --resume */
    double best;             /* its validation NLL (nats) */
    int64_t bad;             /* scheduled evaluations since it without improvement; carried by --resume */
    int64_t evals;           /* evaluations run (this process) */
    int64_t stopped;         /* > 0: early stopping ended the run at this step */
    int64_t saved_step;      /* the step whose model --out holds at the end */
    const char *best_path;   /* --out.best */
    const nf_dataset *val_ctx; /* the validation rows' contexts (conditional tables); NULL: none */
} val_track;
/* The caller's members of the trainer JSON for v (see nf_trainer_save_meta), into buf (n bytes). */
void val_meta(const val_track *v, char *buf, unsigned long n);
/* Read val_meta's members back from the saved trainer JSON js (absent: no best yet). */
void val_unmeta(val_track *v, const char *js);
/* After --resume of checkpoint `resume` at `step`: v's state from its trainer JSON js, and --out.best
 * made ready: written from tr when the resumed state is the best one, else copied from RESUME.best
 * (one line and exit if that file is missing). Only the writer (rank 0) touches files. */
void val_resume(val_track *v, const char *js, const char *resume, int64_t step, int writer, nf_trainer *tr);
/* One loop for vectors and images; the unit of the loss is a parameter: the loss shown (progress
 * line, metrics CSV) is scale · (mean NLL in nats) + offset, gradient norms are shown × scale. */
typedef struct {
    nf_flow *f;
    nf_trainer *tr;
    const opts *o;
    int64_t nrows;           /* training rows or images (for the epoch) */
    double scale, offset;    /* vectors 1, 0 (nats/example); images 1/(D ln 2), bits (bits/dim) */
    const char *unit;        /* "nats", "bits/dim" */
    const char *csv_unit;    /* "nats", "bpd": the metrics column loss_<csv_unit> */
    const char *items;       /* "samples", "images" */
    const char *samples_png; /* images: the sample grid written every --sample-every steps; NULL: none */
    int64_t first;           /* the first step: 1, or the one after a --resume checkpoint */
    val_track *v;            /* validation and early stopping; NULL: none */
    int averaged;            /* the trainer keeps a moving average of the parameters (--ema): validation and
                              * sample grids score it, and the loop ends with it in the flow */
} train_run;
/* Steps first..--steps (or until --time-limit, or early stopping) with progress line, moving average,
 * ETA, metrics CSV (with validation: a val_ column at the evaluated steps), periodic resumable
 * checkpoints (and a last one at the end: with validation, the best model's), NaN/Inf steps skipped with
 * a warning (50 in a row stop the run with one line, the last checkpoint kept). With r->averaged the
 * flow holds the average when it returns. Returns the number of skipped steps. */
int64_t train_loop(const train_run *r);

/* ---------------------------------------------------------------- commands */
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_code(int argc, char **argv, int encode);
int cmd_interpolate(int argc, char **argv);
int cmd_manipulate(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_options(int argc, char **argv);

#endif
