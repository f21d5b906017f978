/* cli_data.c — loading what --data names: toy generators, CSV tables, image files and folders. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist/"

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int is_cifar_dir(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/data_batch_1.bin", dir);
    return access(p, F_OK) == 0;
}

/* fashion-mnist, an IDX file, CIFAR-10 (a folder or a batch .bin): SRC_IDX; a folder of PNG/JPEG:
 * SRC_DIR; a toy name: SRC_TOY; anything else a CSV */
data_source data_source_of(const char *name) {
    if (nf_toy_known(name) >= 0) return SRC_TOY;
    if (strcmp(name, "fashion-mnist") == 0 || strstr(name, "idx3-ubyte") != NULL || ends_with(name, ".bin")) return SRC_IDX;
    if (is_dir(name)) return is_cifar_dir(name) ? SRC_IDX : SRC_DIR;
    unsigned char m[4] = {0};
    struct stat sb; /* any other regular file (a pipe's bytes must stay for the CSV reader): IDX by its magic number */
    FILE *fp = stat(name, &sb) == 0 && S_ISREG(sb.st_mode) ? fopen(name, "rb") : NULL;
    size_t got = fp ? fread(m, 1, 4, fp) : 0;
    if (fp) fclose(fp);
    if (got == 4 && m[0] == 0 && m[1] == 0 && m[2] == 8 && m[3] == 3) return SRC_IDX;      /* IDX images, raw */
    if (got >= 2 && m[0] == 0x1f && m[1] == 0x8b) return SRC_IDX; /* gzip: nflow reads only IDX files compressed */
    return SRC_CSV;
}

int brings_labels(const char *data) {
    return strcmp(data, "fashion-mnist") == 0 || ends_with(data, ".bin") || is_dir(data); /* a folder: CIFAR-10's, or class folders */
}

void check_png_name(const char *path) {
    size_t n = path ? strlen(path) : 0;
    if (n && !(n >= 4 && (strcmp(path + n - 4, ".png") == 0 || strcmp(path + n - 4, ".PNG") == 0)))
        die("option --out: %s: the picture is a PNG file; give a name ending in .png", path);
}

void load_data(const opts *o, nf_dataset **train, nf_dataset **test) {
    if (nf_toy_known(o->data) >= 0) {
        check(nf_dataset_toy(o->data, o->ntrain, o->seed * 2 + 1, train));
        if (test) check(nf_dataset_toy(o->data, o->ntest, o->seed * 2 + 2, test));
        return;
    }
    struct stat sb;
    if (strcmp(o->data, "-") != 0 && stat(o->data, &sb) != 0) { /* "-": a CSV on standard input */
        char names[256] = "";
        for (const char *const *n = nf_toy_names(); *n; n++) snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", *n, n[1] ? ", " : "");
        die("--data '%s': not a built-in dataset (%s) and no such file", o->data, names);
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

void load_images(const opts *o, nf_images **train, nf_images **test) {
    int has_test = strcmp(o->data, "fashion-mnist") == 0 || (is_dir(o->data) && is_cifar_dir(o->data));
    if (has_test && o->test_data) die("option --test-data: %s brings its own test set", o->data);
    if ((o->labels || o->test_labels) && (has_test || is_dir(o->data)))
        die("option --%s: %s brings its own labels (--labels is for IDX image files)", o->labels ? "labels" : "test-labels", o->data);
    if (o->test_labels && !o->test_data) die("option --test-labels: labels of --test-data (none given)");
    nf_images *all = open_images(o, o->data, o->labels, 0, 0);
    if (has_test) *train = all, *test = open_images(o, o->data, NULL, 1, 0);
    else if (o->test_data) *train = all, *test = open_images(o, o->test_data, o->test_labels, 0, all->H);
    else if (is_dir(o->data)) {
        check(nf_images_split(all, o->test_frac, o->seed, train, test));
        nf_images_free(all);
    } else {
        nf_images_free(all);
        die("--data %s: image training needs --test-data TEST-FILE", o->data);
    }
    if ((*test)->C != (*train)->C || (*test)->H != (*train)->H || (*test)->W != (*train)->W)
        die("%s: test images are %d×%d×%d, training images %d×%d×%d", o->test_data ? o->test_data : o->data, (int)(*test)->C,
            (int)(*test)->H, (int)(*test)->W, (int)(*train)->C, (int)(*train)->H, (int)(*train)->W);
}

nf_images *load_eval_images(const opts *o, const nf_flow *f) {
    nf_images *im = open_images(o, o->data, o->labels, 1, nf_flow_config(f)->height);
    const nf_config *c = nf_flow_config(f);
    if ((int64_t)im->C * im->H * im->W != c->dim)
        die("%s: images have %lld values, the model expects %d (%s)", o->data, (long long)im->C * im->H * im->W, (int)c->dim, o->model);
    return im;
}

nf_flow *load_model(const char *path) {
    nf_flow *f;
    check(nf_flow_load(path, &f));
    return f;
}

int image_model(const nf_flow *f) { return nf_flow_config(f)->height > 0; }

void write_grid(const nf_flow *f, nf_status st, const nf_real *x, int64_t n, int32_t cols, int32_t scale, const char *path) {
    static int warned; /* once a run: a training run draws a grid every --sample-every steps */
    if (st == NF_ERR_NUMERIC) { /* a picture still shows the rest: the overflowing pixels are drawn black */
        int64_t bad = 0, D = nf_flow_dim(f);
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = i * D; k < (i + 1) * D; k++)
                if (!isfinite(x[k])) { bad++; break; }
        if (!g_quiet && !warned++)
            fprintf(stderr, "warning: %s: %lld of the %lld image%s hold%s non-finite pixels (the model overflows on %s; drawn black; "
                    "not repeated for later pictures)\n", path, (long long)bad, (long long)n, plural(n), bad == 1 ? "s" : "", bad == 1 ? "it" : "them");
        st = NF_OK;
    }
    check(st);
    const nf_config *c = nf_flow_config(f);
    check(nf_images_grid_png(x, n, c->channels, c->height, c->width, cols, scale, path));
}

void write_sample_grid(nf_flow *f, uint64_t seed, double T, int64_t n, const char *path) {
    const nf_config *c = nf_flow_config(f);
    if (c->context_dim > 0) { /* class-conditional: a row per class */
        int64_t per = n / c->context_dim;
        write_class_grid(f, seed, T, -1, per > 0 ? per : 1, path);
        return;
    }
    nf_real *x = malloc(sizeof(nf_real) * (size_t)(n * nf_flow_dim(f)));
    if (!x) die("out of memory");
    nf_rng r;
    nf_rng_seed(&r, seed);
    nf_status st = nf_flow_sample(f, &r, T, x, n);
    int32_t cols = 1;
    while ((int64_t)cols * cols < n) cols++;
    write_grid(f, st, x, n, cols, 2, path);
    free(x);
}

void write_class_grid(nf_flow *f, uint64_t seed, double T, int64_t cls, int64_t n, const char *path) {
    const nf_config *c = nf_flow_config(f);
    int32_t K = c->context_dim;
    if (cls >= K) die("option --class: %lld is not a class of the model (its %d classes are 0..%d)", (long long)cls, (int)K, (int)K - 1);
    int64_t rows = cls >= 0 ? 1 : K, total = rows * n;
    nf_real *x = malloc(sizeof(nf_real) * (size_t)(total * nf_flow_dim(f))), *cx = calloc((size_t)(total * K), sizeof(nf_real));
    if (!x || !cx) die("out of memory");
    for (int64_t i = 0; i < total; i++) cx[i * K + (cls >= 0 ? cls : i / n)] = 1; /* row by row: class i / n */
    nf_rng r;
    nf_rng_seed(&r, seed);
    nf_status st = nf_flow_sample_ctx(f, &r, T, cx, x, total);
    int32_t cols = (int32_t)n;
    if (cls >= 0) /* one class: a square grid */
        for (cols = 1; (int64_t)cols * cols < n; cols++) {}
    write_grid(f, st, x, total, cols, 2, path);
    free(x), free(cx);
}

uint64_t context_mask(const char *path, const char *names, const char *list, int32_t ncols) {
    const char *header = names ? names : "";
    uint64_t mask = 0;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = buf, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = 0;
        while (*tok == ' ') tok++;
        size_t len = strlen(tok);
        while (len && tok[len - 1] == ' ') tok[--len] = 0;
        if (!len) die("option --context-cols: '%s' has an empty entry", list);
        int col = -1; /* 0-based */
        char *end;
        long v = strtol(tok, &end, 10);
        if (!names && tok[0] == 'x' && tok[1] >= '1' && tok[1] <= '9') { /* a file without a header: its columns are x1, x2, … */
            v = strtol(tok + 1, &end, 10);
            if (*end) die("option --context-cols: '%s' is not a column of %s (it has no header: its columns are x1..x%d or 1..%d)", tok, path, (int)ncols, (int)ncols);
        }
        if (*tok && !*end) {
            if (v < 1 || v > ncols) die("option --context-cols: column %ld: %s has columns 1..%d", v, path, (int)ncols);
            col = (int)v - 1;
        } else { /* a name of the header line (the reader trimmed its fields) */
            const char *a, *z;
            for (int k = 0; col < 0 && k < ncols && field_at(header, k, &a, &z); k++)
                if ((size_t)(z - a) == len && strncmp(a, tok, len) == 0) col = k;
            if (col < 0 || col >= ncols)
                die(names ? "option --context-cols: '%s' is not a column name of the header of %s"
                          : "option --context-cols: '%s' is not a column of %s (it has no header: its columns are x1, x2, … or 1, 2, …)", tok, path);
        }
        if (col >= 64) die("option --context-cols: column %d: the context columns must be among the first 64", col + 1);
        if (mask & (1ull << col)) die("option --context-cols: '%s' names column %d twice", list, col + 1);
        mask |= 1ull << col;
    }
    if (!mask) die("option --context-cols: '%s' names no column", list);
    int32_t k = 0;
    for (int b = 0; b < 64; b++) k += (int32_t)((mask >> b) & 1u);
    if (k >= ncols) die("option --context-cols: every column of %s is a context column; at least one must be modelled", path);
    return mask;
}

/* See cli.h. */
int field_at(const char *s, int32_t k, const char **a, const char **z) {
    for (; k > 0; k--) {
        s = strchr(s, ',');
        if (!s) return 0;
        s++;
    }
    *a = s, *z = s + strcspn(s, ",");
    return 1;
}

/* 1 if the n comma-separated names of `given` are all among the n of `expected` (another order of the
 * same columns); a list with other names is taken as it is, column by column. */
static int same_names(const char *given, const char *expected, int32_t n) {
    for (int32_t j = 0; j < n; j++) {
        const char *a = NULL, *z = NULL;
        if (!field_at(given, j, &a, &z)) return 0;
        int found = 0;
        for (int32_t k = 0; k < n && !found; k++) {
            const char *b = NULL, *y = NULL;
            found = field_at(expected, k, &b, &y) && y - b == z - a && strncmp(a, b, (size_t)(z - a)) == 0;
        }
        if (!found) return 0;
    }
    return 1;
}

void check_column_order(const nf_flow *f, const nf_dataset *d, const char *path) {
    const char *mine = nf_flow_columns(f);
    if (!mine || !d->names) return;
    const nf_config *c = nf_flow_config(f);
    int32_t n = nf_flow_dim(f) + c->context_dim;
    if (d->dim == n) { /* whole rows of the training layout */
        if (strcmp(mine, d->names) != 0 && same_names(d->names, mine, n))
            die("%s: its header names the model's columns in another order (%s; the model was trained on %s)", path, d->names, mine);
    } else if (c->context_dim > 0 && c->context_cols && d->dim == c->context_dim) { /* the context columns alone */
        char ctx[4096] = "";
        for (int32_t j = 0; j < n && j < 64; j++) {
            const char *a = NULL, *z = NULL;
            if (((c->context_cols >> j) & 1u) && field_at(mine, j, &a, &z))
                snprintf(ctx + strlen(ctx), sizeof ctx - strlen(ctx), "%s%.*s", ctx[0] ? "," : "", (int)(z - a), a);
        }
        if (strcmp(ctx, d->names) != 0 && same_names(d->names, ctx, d->dim))
            die("%s: its header names the model's context columns in another order (%s; the model's are %s)", path, d->names, ctx);
    } /* another layout: the column counts are checked where the rows are used */
}

void split_columns(const nf_dataset *d, uint64_t mask, nf_dataset **x, nf_dataset **c) {
    int32_t K = 0;
    for (int32_t j = 0; j < d->dim && j < 64; j++) K += (int32_t)((mask >> j) & 1u);
    nf_dataset *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    if (!a || !b) die("out of memory");
    a->n = b->n = d->n, a->dim = d->dim - K, b->dim = K;
    a->x = malloc(sizeof(nf_real) * (size_t)(a->n * a->dim) + 1), b->x = malloc(sizeof(nf_real) * (size_t)(b->n * b->dim) + 1);
    if (!a->x || !b->x) die("out of memory");
    for (int64_t i = 0; i < d->n; i++) {
        int32_t ia = 0, ib = 0;
        for (int32_t j = 0; j < d->dim; j++) {
            nf_real v = d->x[i * d->dim + j];
            if (j < 64 && ((mask >> j) & 1u)) b->x[i * K + ib++] = v;
            else a->x[i * a->dim + ia++] = v;
        }
    }
    *x = a, *c = b;
}

nf_dataset *read_contexts(const nf_flow *f, const char *model, const char *path) {
    const nf_config *cfg = nf_flow_config(f);
    int32_t K = cfg->context_dim, M = cfg->dim + K;
    nf_dataset *cin, *c = NULL;
    check(nf_dataset_csv(path, &cin));
    check_column_order(f, cin, path);
    if (cin->dim == M && cfg->context_cols) { /* whole rows of the training layout: take their context columns */
        nf_dataset *x;
        split_columns(cin, cfg->context_cols, &x, &c);
        nf_dataset_free(x), nf_dataset_free(cin);
    } else if (cin->dim == K) c = cin;
    else die("%s: %d columns; the model %s takes %d context values (or rows of all %d columns)", path, (int)cin->dim, model, (int)K, (int)M);
    return c;
}

void join_columns(uint64_t mask, const nf_real *x, int32_t D, const nf_real *c, int32_t K, int64_t n, nf_real *out) {
    int32_t M = D + K;
    for (int64_t i = 0; i < n; i++) {
        int32_t a = 0, b = 0;
        for (int32_t j = 0; j < M; j++) out[i * M + j] = j < 64 && ((mask >> j) & 1u) ? c[i * K + b++] : x[i * D + a++];
    }
}

char *layout_names(const nf_flow *f, const char *prefix) {
    const nf_config *cfg = nf_flow_config(f);
    const char *mine = nf_flow_columns(f);
    int32_t M = cfg->dim + cfg->context_dim, a = 0, b = 0;
    size_t cap = (mine ? strlen(mine) : 0) + (size_t)M * (strlen(prefix) + 12) + 1;
    char *s = malloc(cap);
    if (!s) die("out of memory");
    s[0] = 0;
    for (int32_t j = 0; j < M; j++) {
        const char *p = NULL, *z = NULL;
        size_t len = strlen(s);
        if (j < 64 && ((cfg->context_cols >> j) & 1u)) {
            b++;
            if (mine && field_at(mine, j, &p, &z)) snprintf(s + len, cap - len, "%s%.*s", j ? "," : "", (int)(z - p), p);
            else snprintf(s + len, cap - len, "%sc%d", j ? "," : "", (int)b);
        } else snprintf(s + len, cap - len, "%s%s%d", j ? "," : "", prefix, (int)++a);
    }
    return s;
}

void mask_words(uint64_t mask, char *buf, unsigned long n) {
    buf[0] = 0;
    for (int j = 0; j < 64; j++)
        if ((mask >> j) & 1u) snprintf(buf + strlen(buf), n - strlen(buf), "%s%d", buf[0] ? "," : "", j + 1);
}
