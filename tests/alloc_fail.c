/* alloc_fail.c — allocation-failure injection (the way Lua and SQLite test out-of-memory): the binary is
 * linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free,--wrap=strdup, so every allocation the
 * library makes goes through the wrappers below, and cJSON's through its hooks. For each operation,
 * N = 1, 2, … : the N-th allocation fails; the operation must either succeed with a correct result
 * (the failure was handled, e.g. a fallback) or fail with NF_ERR_NOMEM and a reason, leak nothing
 * (the wrappers count live blocks; the ASan build's LeakSanitizer checks again at exit) and leave no
 * file behind. The sweep ends at the first N the operation no longer reaches: it then succeeded with
 * no failure injected. Operations: flow creation of every model (vectors and images), checkpoint save
 * and load, trainer checkpoint save and resume, CSV / IDX (raw, gzip, labels) / CIFAR / folder (PNG,
 * JPEG) loading and splits, trainer creation (vectors, images) and training steps. */
#define _DEFAULT_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "nflow.h"

/* ------------------------------------------------------------------ the failing allocator */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t s);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);

static long g_fail_at;  /* fail the g_fail_at-th allocation (1-based) while armed; 0: none */
static long g_count;    /* allocations while armed */
static long g_live;     /* blocks allocated and not yet freed (always counted) */
static size_t g_max_req; /* the largest single request while armed */
static int g_armed;

/* 1 if this allocation is the one to fail. */
static int should_fail_n(size_t n) {
    if (!g_armed) return 0;
    if (n > g_max_req) g_max_req = n;
    long k = __atomic_add_fetch(&g_count, 1, __ATOMIC_SEQ_CST);
    return k == g_fail_at;
}
void *__wrap_malloc(size_t n) {
    if (should_fail_n(n)) return NULL;
    void *p = __real_malloc(n);
    if (p) __atomic_add_fetch(&g_live, 1, __ATOMIC_SEQ_CST);
    return p;
}
void *__wrap_calloc(size_t n, size_t s) {
    if (should_fail_n(s && n > SIZE_MAX / s ? SIZE_MAX : n * s)) return NULL;
    void *p = __real_calloc(n, s);
    if (p) __atomic_add_fetch(&g_live, 1, __ATOMIC_SEQ_CST);
    return p;
}
void *__wrap_realloc(void *p, size_t n) {
    if (should_fail_n(n)) return NULL;
    void *q = __real_realloc(p, n);
    if (q && !p) __atomic_add_fetch(&g_live, 1, __ATOMIC_SEQ_CST);
    return q;
}
void __wrap_free(void *p) {
    if (p) __atomic_sub_fetch(&g_live, 1, __ATOMIC_SEQ_CST);
    __real_free(p);
}
/* strdup allocates inside libc, out of the wrappers' sight: the library's calls come here instead */
char *__wrap_strdup(const char *s);
char *__wrap_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = __wrap_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ------------------------------------------------------------------ scratch files */
static char g_dir[256];

static const char *path_of(const char *name) {
    static char p[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

/* The names in the scratch folder, as one sorted-by-readdir string (to compare before/after). */
static void list_dir(const char *dir, char *out, size_t n) {
    out[0] = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') snprintf(out + strlen(out), n - strlen(out), "%s;", e->d_name);
    closedir(d);
}

/* ------------------------------------------------------------------ the sweep
 * An operation: run(ctx) does the work with the allocator armed and returns its status; check(ctx)
 * (unarmed, only after NF_OK) asserts the result is right; undo(ctx) (unarmed) frees what run made. */
typedef struct {
    const char *name;
    nf_status (*run)(void *ctx);
    void (*check)(void *ctx);
    void (*undo)(void *ctx);
    const char *dir; /* folder that must be as before after a failure (NULL: the scratch folder) */
} op;

/* Sweep op: N = 1, 2, … until the N-th allocation is not reached. Returns the number of allocations
 * the operation makes. */
static long sweep(const op *o, void *ctx) {
    char before[8192], after[8192];
    const char *dir = o->dir ? o->dir : g_dir;
    for (long N = 1;; N++) {
        list_dir(dir, before, sizeof before);
        long live0 = g_live;
        g_count = 0, g_fail_at = N, g_armed = 1;
        nf_status st = o->run(ctx);
        g_armed = 0;
        long reached = g_count >= N;
        if (st == NF_OK) {
            if (o->check) o->check(ctx);
        } else {
            if (!reached) fail_msg("%s: failed (%d: %s) with no allocation failure injected", o->name, (int)st, nf_last_error());
            if (st != NF_ERR_NOMEM)
                fail_msg("%s: allocation %ld of %ld failed: status %d (%s), expected NF_ERR_NOMEM", o->name, N, g_count, (int)st, nf_last_error());
            if (!nf_last_error()[0]) fail_msg("%s: allocation %ld: NF_ERR_NOMEM without a reason", o->name, N);
            if (strchr(nf_last_error(), '\n')) fail_msg("%s: reason of more than one line", o->name);
            list_dir(dir, after, sizeof after);
            if (strcmp(before, after) != 0) fail_msg("%s: allocation %ld failed and the folder changed: '%s' -> '%s'", o->name, N, before, after);
        }
        if (o->undo) o->undo(ctx);
        if (g_live != live0) fail_msg("%s: allocation %ld of %ld failed (status %d): %ld blocks leaked", o->name, N, g_count, (int)st, g_live - live0);
        if (!reached) return N - 1;
    }
}

/* ------------------------------------------------------------------ flows */
typedef struct {
    nf_config cfg;
    nf_flow *f;
} flow_ctx;

static nf_status flow_run(void *c) {
    flow_ctx *x = c;
    return nf_flow_create(&x->cfg, &x->f);
}
static void flow_check(void *c) {
    flow_ctx *x = c;
    assert_non_null(x->f);
    nf_flow *ref;
    assert_int_equal(nf_flow_create(&x->cfg, &ref), NF_OK);
    assert_int_equal(nf_flow_num_params(x->f), nf_flow_num_params(ref));
    assert_memory_equal(nf_flow_params(x->f), nf_flow_params(ref), sizeof(nf_real) * (size_t)nf_flow_num_params(ref));
    nf_flow_free(ref);
}
static void flow_undo(void *c) {
    flow_ctx *x = c;
    nf_flow_free(x->f);
    x->f = NULL;
}

/* Every model on vectors (with the optional layers) and on images. */
static void test_flow_create(void **state) {
    (void)state;
    flow_ctx x = {0};
    op o = {"nf_flow_create", flow_run, flow_check, flow_undo, NULL};
    struct {
        nf_model_type m;
        int image, variant;
    } cases[] = {{NF_MODEL_NICE, 0, 0}, {NF_MODEL_REALNVP, 0, 0}, {NF_MODEL_REALNVP, 0, 1}, {NF_MODEL_GLOW, 0, 0},
                 {NF_MODEL_GLOW, 0, 1}, {NF_MODEL_NICE, 1, 0}, {NF_MODEL_REALNVP, 1, 0}, {NF_MODEL_GLOW, 1, 0},
                 {NF_MODEL_GLOW, 1, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].image) {
            nf_config_default_image(&x.cfg, cases[i].m, 1, 4, 4);
            x.cfg.hidden = 4, x.cfg.depth = 2, x.cfg.levels = cases[i].m == NF_MODEL_NICE ? 0 : 1;
            if (cases[i].m == NF_MODEL_NICE) x.cfg.layers = 1;
            if (cases[i].m == NF_MODEL_REALNVP) x.cfg.blocks = 1;
            if (cases[i].variant) x.cfg.levels = 2, x.cfg.lu = 0, x.cfg.coupling = NF_COUPLING_ADDITIVE;
        } else {
            nf_config_default(&x.cfg, cases[i].m, 4);
            x.cfg.hidden = 4, x.cfg.depth = 2, x.cfg.layers = 1;
            if (cases[i].variant) x.cfg.actnorm = 1, x.cfg.batchnorm = cases[i].m == NF_MODEL_REALNVP, x.cfg.standardize = 1,
                                  x.cfg.prior = NF_PRIOR_DIAG_GAUSSIAN, x.cfg.lu = 0, x.cfg.perm = NF_PERM_RANDOM;
        }
        long n = sweep(&o, &x);
        print_message("nf_flow_create %s %s variant %d: %ld allocations, each failed once\n", nf_model_name(cases[i].m),
                      cases[i].image ? "image" : "vector", cases[i].variant, n);
        assert_true(n > 0);
    }
}

/* ------------------------------------------------------------------ checkpoints */
typedef struct {
    nf_flow *f, *loaded;
    nf_trainer *tr, *tr2;
    nf_dataset *ds;
    const char *path;
} ckpt_ctx;

static nf_status save_run(void *c) {
    ckpt_ctx *x = c;
    return nf_flow_save(x->f, x->path);
}
static void save_check(void *c) {
    ckpt_ctx *x = c;
    nf_flow *g;
    if (nf_flow_load(x->path, &g) != NF_OK) fail_msg("saved with NF_OK, but: %s", nf_last_error()); /* OK must mean a loadable file */
    assert_memory_equal(nf_flow_params(g), nf_flow_params(x->f), sizeof(nf_real) * (size_t)nf_flow_num_params(x->f));
    nf_flow_free(g);
}
static void save_undo(void *c) {
    ckpt_ctx *x = c;
    unlink(x->path);
}
static nf_status load_run(void *c) {
    ckpt_ctx *x = c;
    return nf_flow_load(x->path, &x->loaded);
}
static void load_check(void *c) {
    ckpt_ctx *x = c;
    assert_int_equal(nf_flow_num_params(x->loaded), nf_flow_num_params(x->f));
    assert_memory_equal(nf_flow_params(x->loaded), nf_flow_params(x->f), sizeof(nf_real) * (size_t)nf_flow_num_params(x->f));
}
static void load_undo(void *c) {
    ckpt_ctx *x = c;
    nf_flow_free(x->loaded);
    x->loaded = NULL;
}
static nf_status tsave_run(void *c) {
    ckpt_ctx *x = c;
    return nf_trainer_save(x->tr, x->path);
}
static void tsave_check(void *c) {
    ckpt_ctx *x = c;
    nf_flow *g;
    assert_int_equal(nf_flow_load(x->path, &g), NF_OK);
    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 8;
    nf_trainer *t;
    assert_int_equal(nf_trainer_create(g, x->ds, &o, &t), NF_OK);
    assert_int_equal(nf_trainer_resume(t, x->path), NF_OK);
    assert_int_equal(nf_trainer_steps(t), nf_trainer_steps(x->tr));
    nf_trainer_free(t);
    nf_flow_free(g);
}
/* resume: the trainer tr2 (over `loaded`, made unarmed in the test) reads x->path */
static nf_status resume_run(void *c) {
    ckpt_ctx *x = c;
    return nf_trainer_resume(x->tr2, x->path);
}
static void resume_check(void *c) {
    ckpt_ctx *x = c;
    assert_int_equal(nf_trainer_steps(x->tr2), nf_trainer_steps(x->tr));
}

static void test_checkpoints(void **state) {
    (void)state;
    ckpt_ctx x = {0};
    nf_config cfg;
    nf_config_default(&cfg, NF_MODEL_GLOW, 4);
    cfg.hidden = 4, cfg.depth = 2, cfg.layers = 1;
    assert_int_equal(nf_flow_create(&cfg, &x.f), NF_OK);
    assert_int_equal(nf_dataset_toy("moons", 64, 1, &x.ds), NF_OK);
    nf_dataset *d4;
    assert_int_equal(nf_dataset_toy("moons", 64, 2, &d4), NF_OK); /* 2-D: widen to 4 columns */
    nf_dataset_free(x.ds);
    x.ds = calloc(1, sizeof *x.ds);
    x.ds->n = 64, x.ds->dim = 4, x.ds->x = calloc(64 * 4, sizeof(nf_real));
    for (int i = 0; i < 64 * 4; i++) x.ds->x[i] = d4->x[i / 4 * 2 + i % 2] * (i % 4 < 2 ? 1 : -0.5f);
    nf_dataset_free(d4);
    x.path = path_of("m.ckpt");

    op save = {"nf_flow_save", save_run, save_check, save_undo, NULL};
    print_message("nf_flow_save: %ld allocations\n", sweep(&save, &x));

    assert_int_equal(nf_flow_save(x.f, x.path), NF_OK);
    op load = {"nf_flow_load", load_run, load_check, load_undo, NULL};
    print_message("nf_flow_load: %ld allocations\n", sweep(&load, &x));
    unlink(x.path);

    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 8;
    assert_int_equal(nf_trainer_create(x.f, x.ds, &o, &x.tr), NF_OK);
    double loss, gn;
    assert_int_equal(nf_trainer_step(x.tr, &loss, &gn), NF_OK);
    op tsave = {"nf_trainer_save", tsave_run, tsave_check, save_undo, NULL};
    print_message("nf_trainer_save: %ld allocations\n", sweep(&tsave, &x));

    assert_int_equal(nf_trainer_save(x.tr, x.path), NF_OK);
    assert_int_equal(nf_flow_load(x.path, &x.loaded), NF_OK);
    assert_int_equal(nf_trainer_create(x.loaded, x.ds, &o, &x.tr2), NF_OK);
    op resume = {"nf_trainer_resume", resume_run, resume_check, NULL, NULL};
    print_message("nf_trainer_resume: %ld allocations\n", sweep(&resume, &x));
    nf_trainer_free(x.tr2), nf_flow_free(x.loaded), nf_trainer_free(x.tr);
    unlink(x.path);
    nf_flow_free(x.f);
    nf_dataset_free(x.ds);
}

/* ------------------------------------------------------------------ data */
typedef struct {
    const char *a, *b; /* file paths (b: labels or a second batch; may be NULL) */
    nf_dataset *ds, *tr, *te;
    nf_images *im, *itr, *ite;
    int kind; /* 0 csv, 1 idx, 2 cifar, 3 folder, 4 dataset split, 5 images split */
    int64_t want_n;
} data_ctx;

static nf_status data_run(void *c) {
    data_ctx *x = c;
    switch (x->kind) {
    case 0: return nf_dataset_csv(x->a, &x->ds);
    case 1: return nf_images_load_idx(x->a, x->b, &x->im);
    case 2: {
        const char *p[2] = {x->a, x->b};
        return nf_images_load_cifar(p, 2, &x->im);
    }
    case 3: return nf_images_load_folder(x->a, 6, 0, &x->im);
    case 4: return nf_dataset_split(x->ds, 0.25, 3, &x->tr, &x->te);
    default: return nf_images_split(x->im, 0.25, 3, &x->itr, &x->ite);
    }
}
static void data_check(void *c) {
    data_ctx *x = c;
    if (x->kind == 0) assert_int_equal(x->ds->n, x->want_n);
    else if (x->kind == 4) assert_int_equal(x->tr->n + x->te->n, x->ds->n);
    else if (x->kind == 5) assert_int_equal(x->itr->n + x->ite->n, x->im->n);
    else assert_int_equal(x->im->n, x->want_n);
}
static void data_undo(void *c) {
    data_ctx *x = c;
    if (x->kind == 4) {
        nf_dataset_free(x->tr), nf_dataset_free(x->te);
        x->tr = x->te = NULL;
    } else if (x->kind == 5) {
        nf_images_free(x->itr), nf_images_free(x->ite);
        x->itr = x->ite = NULL;
    } else if (x->kind == 0) {
        nf_dataset_free(x->ds);
        x->ds = NULL;
    } else {
        nf_images_free(x->im);
        x->im = NULL;
    }
}

static void write_bytes(const char *path, const void *d, size_t n, int gz) {
    if (gz) {
        gzFile g = gzopen(path, "wb");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, d, (unsigned)n), (int)n);
        assert_int_equal(gzclose(g), Z_OK);
        return;
    }
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(d, 1, n, fp), n);
    fclose(fp);
}

/* the fuzz corpus's JPEG seed (2 bytes of fuzz flags in front) */
static void copy_jpeg(const char *to) {
    FILE *fp = fopen(NFLOW_FUZZ_CORPUS "/folder/jpg_rgb", "rb");
    assert_non_null(fp);
    unsigned char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(n > 2);
    write_bytes(to, buf + 2, n - 2, 0);
}

static void test_data(void **state) {
    (void)state;
    op o = {"data", data_run, data_check, data_undo, NULL};
    data_ctx x = {0};
    /* CSV */
    x.a = path_of("d.csv"), x.kind = 0, x.want_n = 3;
    write_bytes(x.a, "a,b\n1,2\n3,4\n5,6\n", 16, 0);
    o.name = "nf_dataset_csv";
    print_message("nf_dataset_csv: %ld allocations\n", sweep(&o, &x));
    assert_int_equal(nf_dataset_csv(x.a, &x.ds), NF_OK);
    x.kind = 4, o.name = "nf_dataset_split";
    print_message("nf_dataset_split: %ld allocations\n", sweep(&o, &x));
    nf_dataset_free(x.ds), x.ds = NULL;
    /* IDX raw and gzip, with labels */
    unsigned char idx[16 + 5 * 16], lab[8 + 5];
    memcpy(idx, "\0\0\x08\x03\0\0\0\x05\0\0\0\x04\0\0\0\x04", 16);
    for (int i = 0; i < 80; i++) idx[16 + i] = (unsigned char)(i * 7);
    memcpy(lab, "\0\0\x08\x01\0\0\0\x05\x01\x02\x03\x04\x05", 13);
    for (int gz = 0; gz < 2; gz++) {
        x.a = path_of(gz ? "i.idx.gz" : "i.idx"), x.b = path_of(gz ? "l.idx.gz" : "l.idx");
        write_bytes(x.a, idx, sizeof idx, gz), write_bytes(x.b, lab, sizeof lab, gz);
        x.kind = 1, x.want_n = 5, o.name = gz ? "nf_images_load_idx (gzip)" : "nf_images_load_idx";
        print_message("%s: %ld allocations\n", o.name, sweep(&o, &x));
    }
    assert_int_equal(nf_images_load_idx(x.a, x.b, &x.im), NF_OK);
    x.kind = 5, o.name = "nf_images_split";
    print_message("nf_images_split: %ld allocations\n", sweep(&o, &x));
    nf_images_free(x.im), x.im = NULL;
    /* CIFAR-10: two batches of two records */
    static unsigned char rec[2 * 3073];
    for (int i = 0; i < 2 * 3073; i++) rec[i] = (unsigned char)(i % 3073 == 0 ? 7 : i);
    x.a = path_of("data_batch_1.bin"), x.b = path_of("data_batch_2.bin");
    write_bytes(x.a, rec, sizeof rec, 0), write_bytes(x.b, rec, sizeof rec, 0);
    x.kind = 2, x.want_n = 4, o.name = "nf_images_load_cifar";
    print_message("nf_images_load_cifar: %ld allocations\n", sweep(&o, &x));
    /* folder of class folders: a PNG and a JPEG */
    const char *root = path_of("imgs"), *c0 = path_of("imgs/a"), *c1 = path_of("imgs/b");
    mkdir(root, 0700), mkdir(c0, 0700), mkdir(c1, 0700);
    uint8_t rgb[5 * 7 * 3];
    for (int i = 0; i < 5 * 7 * 3; i++) rgb[i] = (uint8_t)(i * 11);
    assert_int_equal(nf_png_write(path_of("imgs/a/x.png"), rgb, 5, 7), NF_OK);
    copy_jpeg(path_of("imgs/b/y.jpg"));
    x.a = root, x.kind = 3, x.want_n = 2, o.name = "nf_images_load_folder";
    print_message("nf_images_load_folder: %ld allocations\n", sweep(&o, &x));
}

/* ------------------------------------------------------------------ training */
typedef struct {
    nf_flow *f;
    nf_dataset *ds;
    nf_images *im;
    nf_trainer *t;
    int steps;
} train_ctx;

static nf_status tcreate_run(void *c) {
    train_ctx *x = c;
    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 8;
    return x->im ? nf_trainer_create_images(x->f, x->im, &o, &x->t) : nf_trainer_create(x->f, x->ds, &o, &x->t);
}
static void tcreate_undo(void *c) {
    train_ctx *x = c;
    nf_trainer_free(x->t);
    x->t = NULL;
}
/* three steps of a trainer made unarmed: the first sizes the workspace */
static nf_status tstep_run(void *c) {
    train_ctx *x = c;
    nf_status st = NF_OK;
    for (int s = 0; s < x->steps && !st; s++) {
        double loss, gn;
        st = nf_trainer_step(x->t, &loss, &gn);
    }
    return st;
}
static nf_status tstep_run_fresh(void *c) {
    g_armed = 0;
    nf_status st = tcreate_run(c);
    g_armed = 1;
    assert_int_equal(st, NF_OK);
    return tstep_run(c);
}

static void test_training(void **state) {
    (void)state;
    for (int image = 0; image < 2; image++) {
        train_ctx x = {0};
        nf_config cfg;
        if (image) {
            nf_config_default_image(&cfg, NF_MODEL_GLOW, 1, 4, 4);
            cfg.hidden = 4, cfg.depth = 1, cfg.levels = 1;
            x.im = calloc(1, sizeof *x.im);
            x.im->n = 16, x.im->C = 1, x.im->H = x.im->W = 4, x.im->pix = malloc(16 * 16);
            for (int i = 0; i < 256; i++) x.im->pix[i] = (uint8_t)(i * 37);
        } else {
            nf_config_default(&cfg, NF_MODEL_REALNVP, 2);
            cfg.hidden = 4, cfg.depth = 2, cfg.layers = 1, cfg.actnorm = 1;
            assert_int_equal(nf_dataset_toy("moons", 64, 1, &x.ds), NF_OK);
        }
        assert_int_equal(nf_flow_create(&cfg, &x.f), NF_OK);
        g_armed = 0; /* the flow's workspace, sized by the first trainer, is the flow's (freed with it) */
        assert_int_equal(tcreate_run(&x), NF_OK);
        tcreate_undo(&x);
        op create = {image ? "nf_trainer_create_images" : "nf_trainer_create", tcreate_run, NULL, tcreate_undo, NULL};
        print_message("%s: %ld allocations\n", create.name, sweep(&create, &x));
        x.steps = 3;
        op step = {"nf_trainer_step (fresh trainer, 3 steps)", tstep_run_fresh, NULL, tcreate_undo, NULL};
        print_message("%s: %ld allocations\n", step.name, sweep(&step, &x));
        /* a trainer that has stepped once allocates nothing more */
        g_armed = 0;
        assert_int_equal(tcreate_run(&x), NF_OK);
        x.steps = 1;
        assert_int_equal(tstep_run(&x), NF_OK);
        op later = {"nf_trainer_step (after the first)", tstep_run, NULL, NULL, NULL};
        x.steps = 5;
        long n = sweep(&later, &x);
        print_message("%s: %ld allocations\n", later.name, n);
        assert_int_equal(n, 0);
        tcreate_undo(&x);
        nf_flow_free(x.f);
        nf_dataset_free(x.ds);
        nf_images_free(x.im);
    }
}

/* ------------------------------------------------------------------ headers that lie about sizes
 * A few hundred bytes claiming terabytes: refused as malformed, and no single allocation on the way
 * larger than 32 MB (the inputs of past fuzz findings, tests/fuzz/corpus/…/regress_*; the checkpoint's
 * model of 1024 couplings of width 65536 is sized — about 16 MB of layer bookkeeping — and refused
 * before its parameters, terabytes, are allocated). */
static void copy_corpus(const char *name, size_t skip, const char *to) {
    char from[600];
    snprintf(from, sizeof from, "%s/%s", NFLOW_FUZZ_CORPUS, name);
    FILE *fp = fopen(from, "rb");
    assert_non_null(fp);
    static unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(n > skip);
    write_bytes(to, buf + skip, n - skip, 0);
}

static void test_lying_headers(void **state) {
    (void)state;
    mkdir(path_of("lie"), 0700);
    copy_corpus("idx/regress_header_lies_size", 1, path_of("lie.idx"));
    copy_corpus("folder/regress_png_lying_size", 2, path_of("lie/x.png"));
    copy_corpus("ckpt/regress_config_huge_model", 0, path_of("lie.ckpt"));
    for (int k = 0; k < 4; k++) {
        if (k == 3) { /* the JPEG alone in the folder */
            unlink(path_of("lie/x.png"));
            copy_corpus("folder/regress_jpeg_lying_size", 2, path_of("lie/x.jpg"));
        }
        nf_images *im = NULL;
        nf_flow *f = NULL;
        g_max_req = 0, g_count = 0, g_fail_at = 0, g_armed = 1;
        nf_status st = k == 0 ? nf_images_load_idx(path_of("lie.idx"), NULL, &im)
                       : k == 2 ? nf_flow_load(path_of("lie.ckpt"), &f)
                                : nf_images_load_folder(path_of("lie"), 8, 0, &im);
        g_armed = 0;
        print_message("lying header %d: status %d (%s), largest allocation %zu bytes\n", k, (int)st, nf_last_error(), g_max_req);
        assert_int_equal(st, NF_ERR_FORMAT);
        assert_null(im);
        assert_null(f);
        assert_true(g_max_req <= 32u << 20);
        if (k == 2) assert_non_null(strstr(nf_last_error(), "bad model config: the config describes a model of"));
    }
}

static int setup(void **state) {
    (void)state;
    cJSON_Hooks h = {__wrap_malloc, __wrap_free}; /* cJSON's allocations fail too */
    cJSON_InitHooks(&h);
    nf_set_threads(1);
    snprintf(g_dir, sizeof g_dir, "/tmp/nflow-allocfail-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flow_create),
        cmocka_unit_test(test_checkpoints),
        cmocka_unit_test(test_data),
        cmocka_unit_test(test_training),
        cmocka_unit_test(test_lying_headers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
