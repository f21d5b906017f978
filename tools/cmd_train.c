/* cmd_train.c — nflow train: the model from the options (or a --resume checkpoint), the data, then
 * the one training loop (train_loop.c) and the test figure in the data's unit. */
#include "cli.h"
#include "mpi.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *train_help =
    "usage: nflow train --model nice|realnvp|glow|nsf|maf|iaf --data NAME|FILE --out MODEL.ckpt [options]\n"
    "Fit a flow by maximum likelihood (Adam) and report the test log-likelihood (vectors: nats/example)\n"
    "or bits/dim (images: fashion-mnist, IDX + --test-data, CIFAR-10, a folder of PNG/JPEG). An option\n"
    "that does not apply to the data or model (see [...] below) is refused. Conditional models: --context-cols\n"
    "(tables: p(x | c)) or --condition labels (images: p(x | class)).\n";

/* The given architecture options over the defaults in c (check_applicable has refused the others). */
static void apply_arch(const opts *o, nf_config *c) {
    const nf_config *g = &o->cfg;
#define SET(code, field) if (GIVEN(o, code)) c->field = g->field
    SET(O_DEPTH, depth); SET(O_HIDDEN, hidden); SET(O_LAYERS, layers); SET(O_ACT, act); SET(O_SCALE, scale);
    SET(O_PART, partition); SET(O_PERM, perm); SET(O_PRIOR, prior); SET(O_COUPLING, coupling); SET(O_LU, lu);
    SET(O_BN, batchnorm); SET(O_AN, actnorm); SET(O_INITSTD, init_std); SET(O_LEVELS, levels); SET(O_BLOCKS, blocks);
    SET(O_LOGIT, logit_alpha); SET(O_BINS, bins); SET(O_BOUND, bound); SET(O_ELEMWISE, elementwise);
    SET(O_ORDER, order); SET(O_TRANSFORM, transform); SET(O_DEQUANT, dequant); SET(O_DQHIDDEN, dequant_hidden);
    SET(O_PRIORK, prior_components);
#undef SET
}

/* With --resume the architecture is the checkpoint's: a given architecture option must agree. */
static void check_resume_arch(const opts *o, const nf_config *want, const nf_config *have) {
    static const struct { opt_code code; size_t off; int kind; } f[] = { /* kind: 0 int32, 1 double, 2 uint64 */
#define F(code, field, kind) {code, offsetof(nf_config, field), kind}
        F(O_DEPTH, depth, 0), F(O_HIDDEN, hidden, 0), F(O_LAYERS, layers, 0), F(O_ACT, act, 0), F(O_SCALE, scale, 0),
        F(O_PART, partition, 0), F(O_PERM, perm, 0), F(O_PRIOR, prior, 0), F(O_COUPLING, coupling, 0), F(O_LU, lu, 0),
        F(O_BN, batchnorm, 0), F(O_AN, actnorm, 0), F(O_INITSTD, init_std, 1), F(O_LEVELS, levels, 0), F(O_BLOCKS, blocks, 0),
        F(O_LOGIT, logit_alpha, 1), F(O_STD, standardize, 0), F(O_BINS, bins, 0), F(O_BOUND, bound, 1), F(O_ELEMWISE, elementwise, 0),
        F(O_ORDER, order, 0), F(O_TRANSFORM, transform, 0), F(O_DEQUANT, dequant, 0), F(O_DQHIDDEN, dequant_hidden, 0),
        F(O_PRIORK, prior_components, 2)};
#undef F
    for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) {
        if (!GIVEN(o, f[k].code)) continue;
        const char *a = (const char *)want + f[k].off, *b = (const char *)have + f[k].off;
        int same = f[k].kind == 1   ? *(const double *)a == *(const double *)b
                   : f[k].kind == 2 ? *(const uint64_t *)a == *(const uint64_t *)b
                                    : *(const int32_t *)a == *(const int32_t *)b;
        if (!same) die("option --%s: differs from the --resume checkpoint %s (the architecture comes from it)", opt_find(f[k].code, C_TRAIN)->name, o->resume);
    }
}

/* A modelled column (not in the context mask) with one value in every training row has no density (the
 * likelihood grows without bound as the flow narrows onto it): one line naming the file and column, and exit. */
static void refuse_constant_column(const nf_dataset *d, uint64_t cmask, const char *path) {
    for (int32_t j = 0; j < d->dim; j++) {
        if (j < 64 && ((cmask >> j) & 1u)) continue;
        int64_t i = 1;
        while (i < d->n && d->x[i * d->dim + j] == d->x[j]) i++;
        if (i < d->n || d->n < 2) continue;
        char name[64] = "";
        const char *a, *z;
        if (d->names && field_at(d->names, j, &a, &z)) snprintf(name, sizeof name, " (%.*s)", (int)(z - a), a);
        die("%s: column %d%s has the value %g in every training row: a density over it is unbounded (drop the column, or "
            "give it as --context-cols)", path, (int)j + 1, name, (double)d->x[j]);
    }
}

/* Before a resumed run relies on it: RESUME.best (if present; val_resume refuses its absence) must be the
 * resumable state of step `step` of the same model on the same data (a truncated file, another model's or
 * another step's would otherwise replace --out when the run ends). One line naming the file, and exit. */
static void check_best(const nf_flow *f, const opts *o, const nf_dataset *x, const nf_dataset *c, const nf_train_opts *to, int64_t step) {
    char path[4200];
    snprintf(path, sizeof path, "%s.best", o->resume);
    if (access(path, F_OK) != 0) return;
    nf_flow *g;
    nf_trainer *t;
    if (nf_flow_load(path, &g) != NF_OK) die("option --resume: %s (the best-validation state of %s)", nf_last_error(), o->resume);
    const nf_config *a = nf_flow_config(f), *b = nf_flow_config(g);
    if (a->model != b->model || a->dim != b->dim || a->context_dim != b->context_dim || nf_flow_num_params(f) != nf_flow_num_params(g) ||
        nf_flow_num_layers(f) != nf_flow_num_layers(g))
        die("option --resume: %s is another model's checkpoint, not the best-validation state of %s", path, o->resume);
    char js[2048];
    if (nf_trainer_create_ctx(g, x, c, to, &t) != NF_OK || nf_trainer_resume_meta(t, path, js, sizeof js) != NF_OK)
        die("option --resume: %s (the best-validation state of %s)", nf_last_error(), o->resume);
    if (nf_trainer_steps(t) != step)
        die("option --resume: %s holds step %lld, but %s's best-validation state is step %lld", path, (long long)nf_trainer_steps(t), o->resume, (long long)step);
    nf_trainer_free(t), nf_flow_free(g);
}

int cmd_train(int argc, char **argv) {
    opts o;
    parse_options(argc, argv, C_TRAIN, train_help, &o);
    int procs = dist_size(), writer = dist_rank() == 0; /* under mpirun: rank 0 writes and prints */
    if (procs > 1 && !GIVEN(&o, O_THREADS)) { /* share this machine's cores between its processes */
        int t = nf_get_threads() / dist_local_size();
        nf_set_threads(t > 0 ? t : 1);
    }
    need(o.data, "data"), need(o.out, "out");
    if (procs > 1 && strcmp(o.data, "-") == 0) /* the launcher hands standard input to the first process only */
        die("option --data -: standard input reaches only the first of the %d processes; give the table as a file", procs);
    if (!o.resume) need(o.model, "model");
    int model = -1;
    if (o.model && (model = nf_model_from_name(o.model)) < 0) die("option --model: unknown model '%s' (one of: nice, realnvp, glow, nsf, maf, iaf)", o.model);
    data_source src = data_source_of(o.data);
    int img = (src & SRC_IMG) != 0;
    nf_flow *f = NULL;
    if (o.resume) { /* the architecture comes from the checkpoint */
        check(nf_flow_load(o.resume, &f));
        int m = (int)nf_flow_config(f)->model;
        if (model >= 0 && model != m) die("option --model %s: the --resume checkpoint %s is a %s model", o.model, o.resume, nf_model_name((nf_model_type)m));
        if (image_model(f) != img) die("option --resume: %s is a model of %s data, --data %s is %s data", o.resume, img ? "vector" : "image", o.data, img ? "image" : "vector");
        const nf_config *rc = nf_flow_config(f);
        if ((o.context_cols || o.condition) && rc->context_dim == 0)
            die("option --%s: the --resume checkpoint %s is not conditional", o.context_cols ? "context-cols" : "condition", o.resume);
        model = m;
    }
    check_applicable(&o, C_TRAIN, src, model);
    if ((o.labels || o.test_labels) && !o.condition && !(f && nf_flow_config(f)->context_dim > 0))
        die("option --%s: the labels condition the model: give --condition labels too", o.labels ? "labels" : "test-labels");
    if (GIVEN(&o, O_MPIBUCKET)) dist_set_bucket_mb(o.mpi_bucket_mb); /* refused outside mpirun */
    if (!GIVEN(&o, O_CLIP)) o.clip = img ? CLIP_DEFAULT_IMG : CLIP_DEFAULT_VEC;
    if (img && !GIVEN(&o, O_BATCH)) o.batch = 64;
    if (img && !GIVEN(&o, O_WARMUP)) o.warmup = 500;
    /* nsf: a cosine decay over 15 000 steps on toy data, 10 000 on images (measured, 1 thread: the
     * checkerboard reaches 3.496 nats in 49 s with 15 000 steps, 3.514 with 10 000 and 3.497 with 20 000;
     * 5 000 constant-rate steps stop at 3.54, and more bins, width or depth do not help) */
    if (model == NF_MODEL_NSF && !GIVEN(&o, O_STEPS)) o.steps = img ? 10000 : 15000;
    if (model == NF_MODEL_NSF && !GIVEN(&o, O_SCHED)) o.schedule = "cosine";
    /* CSV tables: up to 20 000 steps, early stopping on the validation rows ends the run when it stops
     * improving (measured, bench/tabular_cases.py, maf: 20 000 rows stop by themselves at 7 000–9 600 steps;
     * with 100 000 rows KL was still falling at 20 000 — pairs8 0.065 → 0.025, mix8 0.140 → 0.079 nats
     * after 5 000 → 20 000 steps) */
    if (src == SRC_CSV && !GIVEN(&o, O_STEPS)) o.steps = 20000;

    nf_dataset *vtrain = NULL, *vtest = NULL, *vval = NULL, *ctrain = NULL, *ctest = NULL, *cval = NULL, *vtest_full = NULL;
    nf_images *itrain = NULL, *itest = NULL;
    nf_config cfg;
    int64_t nrows;
    int32_t classes = 0;
    uint64_t cmask = 0; /* tables: the context columns (bit j: column j + 1) */
    char *colnames = NULL; /* tables: the training file's header, when it has one */
    if (img) {
        load_images(&o, &itrain, &itest);
        nf_config_default_image(&cfg, (nf_model_type)model, itrain->C, itrain->H, itrain->W);
        nrows = itrain->n;
        if (o.condition || (f && nf_flow_config(f)->context_dim > 0)) { /* class-conditional: p(x | one-hot label) */
            if (!itrain->labels || !itest->labels)
                die("option --condition labels: the %s images have no class labels (fashion-mnist, CIFAR-10, a folder of class sub-folders, "
                    "or an IDX file with --labels and --test-labels)", itrain->labels ? "test" : "training");
            for (int64_t i = 0; i < itrain->n; i++)
                if (itrain->labels[i] + 1 > classes) classes = itrain->labels[i] + 1;
            if (classes < 2) die("option --condition labels: the training images have %d class", (int)classes);
            char *seen = calloc((size_t)classes, 1); /* classes 0..K−1, each with an image: a label past the real ones is an error, not a class */
            if (!seen) die("out of memory");
            for (int64_t i = 0; i < itrain->n; i++) seen[itrain->labels[i]] = 1;
            for (int32_t k = 0; k < classes; k++)
                if (!seen[k]) die("%s: no training image has label %d, yet labels go up to %d (classes are numbered 0..K−1 without gaps)",
                                  o.labels ? o.labels : o.data, (int)k, (int)classes - 1);
            free(seen);
            for (int64_t i = 0; i < itest->n; i++) /* refused now, not after the training when the test figure is computed */
                if (itest->labels[i] < 0 || itest->labels[i] >= classes)
                    die("%s: test image %lld has class label %d; the training images have classes 0..%d", o.test_labels ? o.test_labels : o.test_data ? o.test_data : o.data,
                        (long long)i, (int)itest->labels[i], (int)classes - 1);
            cfg.context_dim = classes, cfg.context_labels = 1;
            if (!GIVEN(&o, O_PRIOR)) cfg.prior = NF_PRIOR_DIAG_GAUSSIAN; /* Glow's class-conditional prior */
        }
    } else {
        load_data(&o, &vtrain, &vtest);
        if (src == SRC_CSV && o.val_frac > 0) { /* the validation rows: from the training part, by --seed */
            if (vtrain->n < 2) die("%s: too few rows to hold out a validation split (--val-fraction 0: none)", o.data);
            nf_dataset *rest;
            check(nf_dataset_split(vtrain, o.val_frac, o.seed + 1, &rest, &vval));
            nf_dataset_free(vtrain);
            vtrain = rest;
        }
        if (f) check_column_order(f, vtrain, o.data);
        if (f && nf_flow_config(f)->context_dim > 0) { /* resumed: the checkpoint's context columns */
            cmask = nf_flow_config(f)->context_cols;
            if (o.context_cols && context_mask(o.data, vtrain->names, o.context_cols, vtrain->dim) != cmask)
                die("option --context-cols: differs from the --resume checkpoint %s (the architecture comes from it)", o.resume);
        } else if (o.context_cols) cmask = context_mask(o.data, vtrain->names, o.context_cols, vtrain->dim);
        if (src == SRC_CSV) refuse_constant_column(vtrain, cmask, o.data);
        if (vtrain->names) {
            size_t len = strlen(vtrain->names) + 1;
            if (!(colnames = malloc(len))) die("out of memory");
            memcpy(colnames, vtrain->names, len);
        }
        if (cmask) { /* the context columns condition, the others are modelled (training, validation, test rows alike) */
            if (vtrain->dim < 64 && (cmask >> vtrain->dim)) die("option --resume: %s has %d columns, fewer than the model's context columns", o.data, (int)vtrain->dim);
            nf_dataset *x;
            split_columns(vtrain, cmask, &x, &ctrain);
            nf_dataset_free(vtrain), vtrain = x;
            if (vval) {
                split_columns(vval, cmask, &x, &cval);
                nf_dataset_free(vval), vval = x;
            }
            vtest_full = vtest;
            split_columns(vtest_full, cmask, &vtest, &ctest);
        }
        nf_config_default(&cfg, (nf_model_type)model, vtrain->dim);
        cfg.standardize = strcmp(o.standardize, "on") == 0 || (strcmp(o.standardize, "auto") == 0 && src == SRC_CSV);
        nrows = vtrain->n;
        if (cmask) cfg.context_dim = ctrain->dim, cfg.context_cols = cmask;
    }
    /* maf/iaf on a CSV table: tanh MADEs (measured, bench/tabular_cases.py's pairs8 with validation and early
     * stopping: KL 0.119 nats with tanh, 0.186 with ReLU; see docs/tabular.md) */
    if (src == SRC_CSV && (model == NF_MODEL_MAF || model == NF_MODEL_IAF)) cfg.act = NF_ACT_TANH;
    /* maf and iaf on a CSV table without context columns: 3 blocks over a learned mixture of 8 Gaussians
     * (the same cases, 16 200 training rows; maf, three seeds: mix8 KL 0.079–0.083 against 0.112 with 5
     * blocks over the normal prior, pairs8 0.081 against 0.084; with 81 000 rows 0.028 and 0.032; iaf, two
     * seeds: mix8 0.089 / 0.089 against 0.187, pairs8 0.133 / 0.150 against 0.120; docs/tabular.md). The
     * mixture takes no context: a conditional maf or iaf keeps the normal prior and 5 blocks. */
    if (src == SRC_CSV && (model == NF_MODEL_MAF || model == NF_MODEL_IAF) && cfg.context_dim == 0) cfg.prior = NF_PRIOR_GMM, cfg.depth = 3;
    apply_arch(&o, &cfg);
    check_config_options(&o, f ? nf_flow_config(f) : &cfg); /* a resumed model: its own configuration */
    cfg.seed = o.seed;
    if (nf_config_validate(&cfg) != NF_OK) die("%s (the %s model on --data %s)", nf_last_error(), nf_model_name(cfg.model), o.data);
    if (!GIVEN(&o, O_BATCH) && nrows < o.batch) o.batch = nrows; /* a default, not the user's: fit it to the data */
    if (vtrain && o.batch > vtrain->n) die("option --batch: %lld is larger than the %lld training rows", (long long)o.batch, (long long)vtrain->n);
    if (o.batch < procs) die("option --batch: %lld rows cannot be shared by %d processes (each needs at least one)", (long long)o.batch, procs);
    if (f) {
        check_resume_arch(&o, &cfg, nf_flow_config(f));
        if (nf_flow_config(f)->dim != cfg.dim) die("option --resume: %s is a model of %d values, the data has %d", o.resume, (int)nf_flow_config(f)->dim, (int)cfg.dim);
        cfg = *nf_flow_config(f);
    } else {
        check(nf_flow_create(&cfg, &f));
        check(nf_flow_set_columns(f, colnames)); /* the training file's header: samples and decodes keep it */
    }
    check(nf_flow_set_recompute(f, o.recompute));
    if (cfg.standardize && !o.resume) { /* a resumed model has its statistics */
        nf_real *mean = malloc(sizeof(nf_real) * (size_t)vtrain->dim), *sd = malloc(sizeof(nf_real) * (size_t)vtrain->dim);
        if (!mean || !sd) die("out of memory");
        nf_dataset_moments(vtrain, mean, sd);
        check(nf_flow_set_standardization(f, mean, sd));
        free(mean), free(sd);
    }
    int64_t D = cfg.dim;
    /* the loss the user reads: nats/example, or bits/dim = nats/(D ln 2) + bits; --clip bounds its gradient */
    double scale = img ? 1.0 / ((double)D * log(2.0)) : 1.0, offset = img ? (double)o.bits : 0.0;
    nf_train_opts to;
    nf_train_opts_default(&to);
    to.batch = o.batch, to.seed = o.seed + 17, to.bits = o.bits;
    to.adam.lr = o.lr, to.adam.warmup = o.warmup, to.adam.clip = o.clip / scale;
    to.adam.cosine_steps = strcmp(o.schedule, "cosine") == 0 ? o.steps : 0;
    /* tables: decoupled weight decay by default, 0.1 up to 16 200 training rows and 0.1 · 16 200 / rows above
     * (a prior whose weight against the summed log-likelihood stays fixed). Measured, bench/tabular_cases.py,
     * KL pairs8 / mix8 without → with: 16 200 rows, maf 0.0995 / 0.1213 → 0.0842 / 0.1120 (seed 2 0.095 / 0.115 →
     * 0.086 / 0.106), realnvp 0.313 / 0.312 → 0.253 / 0.290, nsf 0.536 / 0.334 → 0.514 / 0.318, iaf 0.134 / 0.200 →
     * 0.120 / 0.189; 81 000 rows, maf 0.0283 / 0.0430 → 0.0267 / 0.0413 with 0.02, but 0.0343 / 0.0557 with 0.1 */
    double wd_csv = vtrain ? 0.1 * (vtrain->n > 16200 ? 16200.0 / (double)vtrain->n : 1.0) : 0;
    to.adam.weight_decay = GIVEN(&o, O_WDECAY) ? o.weight_decay : src == SRC_CSV && wd_csv * o.lr < 1 ? wd_csv : 0;
    /* tables: Polyak averaging by default (measured, bench/tabular_cases.py with validation and early stopping,
     * maf: KL 0.119 → 0.097 nats on pairs8, 0.230 → 0.201 on mix8 with decay 0.999; see docs/tabular.md) */
    to.ema = o.ema >= 0 ? o.ema : src == SRC_CSV ? 0.999 : 0;
    nf_trainer *tr;
    if (img) check(nf_trainer_create_images(f, itrain, &to, &tr));
    else check(nf_trainer_create_ctx(f, vtrain, ctrain, &to, &tr));
    check(nf_trainer_set_reducer(tr, dist_reducer())); /* NULL: one process */
    char bestpath[4096];
    snprintf(bestpath, sizeof bestpath, "%s.best", o.out);
    val_track vt = {vval, o.eval_every, o.patience, 0, 0, 0, 0, 0, 0, bestpath, cval};
    int64_t first = 1;
    if (o.resume) { /* every process reads the checkpoint: its state does not depend on the process count */
        char js[2048];
        check(nf_trainer_resume_meta(tr, o.resume, js, sizeof js));
        first = nf_trainer_steps(tr) + 1;
        if (vval) {
            val_track saved = vt;
            val_unmeta(&saved, js);
            if (saved.best_step && saved.best_step != first - 1) check_best(f, &o, vtrain, ctrain, &to, saved.best_step);
            val_resume(&vt, js, o.resume, first - 1, writer, tr);
        }
        if (!o.quiet && writer) fprintf(stderr, "nflow train: resuming %s at step %lld\n", o.resume, (long long)first);
    }
    if (o.test_out && writer) check(nf_dataset_write_csv(vtest_full ? vtest_full : vtest, o.test_out, "x"));
    char smppath[4096];
    snprintf(smppath, sizeof smppath, "%s.samples.png", o.out);
    if (!o.quiet && writer) {
        char what[512];
        if (img) snprintf(what, sizeof what, "%lld train / %lld test images of %d×%d×%d", (long long)itrain->n, (long long)itest->n, (int)itrain->C, (int)itrain->H, (int)itrain->W);
        else if (vval) snprintf(what, sizeof what, "%lld train / %lld validation / %lld test rows of %d columns", (long long)vtrain->n, (long long)vval->n,
                                (long long)vtest->n, (int)vtrain->dim);
        else snprintf(what, sizeof what, "%lld train / %lld test rows of %d columns", (long long)vtrain->n, (long long)vtest->n, (int)vtrain->dim);
        if (cfg.context_dim > 0) {
            char cw[256];
            if (img) snprintf(cw, sizeof cw, "%d classes", (int)cfg.context_dim);
            else mask_words(cfg.context_cols, cw, sizeof cw);
            snprintf(what + strlen(what), sizeof what - strlen(what), ", conditional on %s%s", img ? "" : "columns ", cw);
        }
        char par[64] = "";
        if (procs > 1) snprintf(par, sizeof par, "%d processes × ", procs);
        char wd[48] = "";
        if (to.adam.weight_decay > 0) snprintf(wd, sizeof wd, ", weight decay %.3g", to.adam.weight_decay);
        fprintf(stderr, "nflow train: %s on %s (%lld parameters, %d layers): %s, batch %lld%s, %s%d threads\n", nf_model_name(cfg.model), o.data,
                (long long)nf_flow_num_params(f), (int)nf_flow_num_layers(f), what, (long long)o.batch, wd, par, nf_get_threads());
    }
    train_run run = {f, tr, &o, nrows, scale, offset, img ? "bits/dim" : "nats", img ? "bpd" : "nats", img ? "images" : "samples",
                     img ? smppath : NULL, first, vval ? &vt : NULL, to.ema > 0};
    int64_t skipped = train_loop(&run);
    nf_flow_set_training(f, 0);
    if (!writer) { /* the model is the same on every process: rank 0 evaluates and reports */
        nf_trainer_free(tr), nf_flow_free(f);
        nf_dataset_free(vtrain), nf_dataset_free(vtest), nf_dataset_free(vval), nf_images_free(itrain), nf_images_free(itest);
        nf_dataset_free(ctrain), nf_dataset_free(ctest), nf_dataset_free(cval), nf_dataset_free(vtest_full), free(colnames);
        return 0;
    }
    char note[64] = "";
    if (skipped) snprintf(note, sizeof note, " (%lld non-finite steps skipped)", (long long)skipped);
    if (img) {
        double bpd, se, rec;
        check(nf_flow_evaluate_images(f, itest, o.bits, 7, &bpd, &se, &rec));
        printf("test %.4f ± %.4f %sbits/dim over %lld image%s (%d-bit), max reconstruction error %.2g; saved %s, samples %s%s\n", bpd, se,
               cfg.context_dim ? "class-conditional " : "", (long long)itest->n, plural(itest->n), (int)o.bits, rec, o.out, smppath, note);
    } else {
        nf_flow *g = f; /* the model in --out: with validation, the best one */
        if (vval && vt.saved_step != nf_trainer_steps(tr)) check(nf_flow_load(o.out, &g));
        double ll, se, tll, vll = 0; /* (nf_flow_evaluate works through the rows in chunks) */
        check(nf_flow_evaluate_ctx(g, vtrain, ctrain, &tll, &se));
        if (vval) check(nf_flow_evaluate_ctx(g, vval, cval, &vll, &se));
        check(nf_flow_evaluate_ctx(g, vtest, ctest, &ll, &se));
        const char *given = ctest ? " (of x given c)" : "";
        if (vval) {
            char why[160] = "";
            if (vt.stopped) snprintf(why, sizeof why, "; stopped early at step %lld, %lld evaluations without improvement", (long long)vt.stopped, (long long)vt.bad);
            printf("train NLL %.4f, validation NLL %.4f, test NLL %.4f nats%s (model of step %lld of %lld%s)\n", -tll, -vll, -ll, given,
                   (long long)vt.saved_step, (long long)nf_trainer_steps(tr), why);
        } else printf("train NLL %.4f, test NLL %.4f nats%s\n", -tll, -ll, given);
        printf("test log-likelihood %s%.4f ± %.4f nats (NLL %.4f) on %lld rows; saved %s%s\n", ctest ? "log p(x | c) " : "", ll, se, -ll,
               (long long)vtest->n, o.out, note);
        if (g != f) nf_flow_free(g);
    }
    nf_trainer_free(tr), nf_flow_free(f);
    nf_dataset_free(vtrain), nf_dataset_free(vtest), nf_dataset_free(vval), nf_images_free(itrain), nf_images_free(itest);
    nf_dataset_free(ctrain), nf_dataset_free(ctest), nf_dataset_free(cval), nf_dataset_free(vtest_full), free(colnames);
    return 0;
}
