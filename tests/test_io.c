/* test_io.c — CSV reading (and its errors), checkpoints (round trip, truncation, corruption, foreign
 * files), the toy generators, and PNG output. Files live in a fresh temporary directory. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <png.h>

#include <cmocka.h>

#include "capture_stderr.h"

#include "core/files.h"
#include "data/data.h"
#include "io/io.h"
#include "kernels/kernels.h"
#include "models/models.h"
#include "train/train.h"

static char g_dir[256];

static const char *path_of(const char *name) {
    static char p[4][512];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static const char *write_text(const char *name, const char *text) {
    const char *p = path_of(name);
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return p;
}

static void test_csv_valid(void **state) {
    (void)state;
    nf_dataset *d;
    /* header, CRLF line ends, spaces, a blank line, exponents, no final newline */
    const char *p = write_text("ok.csv", "a,b,c\r\n1, 2.5 ,-3\r\n\r\n4e-1,5,6E2");
    assert_int_equal(nf_dataset_csv(p, &d), NF_OK);
    assert_int_equal(d->n, 2);
    assert_int_equal(d->dim, 3);
    nf_real want[6] = {1, 2.5f, -3, 0.4f, 5, 600};
    for (int i = 0; i < 6; i++) assert_true(d->x[i] == want[i]);
    nf_dataset_free(d);
    /* no header */
    p = write_text("nohdr.csv", "1,2\n3,4\n");
    assert_int_equal(nf_dataset_csv(p, &d), NF_OK);
    assert_int_equal(d->n, 2);
    /* write and read back exactly */
    const char *q = path_of("out.csv");
    assert_int_equal(nf_dataset_write_csv(d, q, "x"), NF_OK);
    nf_dataset *e;
    assert_int_equal(nf_dataset_csv(q, &e), NF_OK);
    assert_int_equal(e->n, 2);
    assert_memory_equal(d->x, e->x, sizeof(nf_real) * 4);
    nf_dataset_free(d), nf_dataset_free(e);
}

/* Each malformed file fails with NF_ERR_FORMAT/IO and a message naming the file and the place. */
static void test_csv_errors(void **state) {
    (void)state;
    struct {
        const char *name, *text, *expect;
    } bad[] = {
        {"nonnum.csv", "1,2\n3,x\n", "nonnum.csv:2: field 2: 'x' is not a number"},
        {"ragged.csv", "1,2\n3,4,5\n", "ragged.csv:2: 3 fields, expected 2"},
        {"nan.csv", "1,2\nnan,4\n", "nan.csv:2: field 1: 'nan' is not finite"},
        {"inf.csv", "x,y\n1,2\n3,-inf\n", "inf.csv:3: field 2: '-inf' is not finite"},
        {"empty.csv", "", "empty.csv: no data rows"},
        {"header_only.csv", "a,b\n", "header_only.csv: no data rows"},
        {"emptyfield.csv", "1,,3\n", "emptyfield.csv:1: field 2: '' is not a number"},
        {"mixedhdr.csv", "a,2\n1,2\n", "mixedhdr.csv:1: field 1: 'a' is not a number"},
        {"huge.csv", "1e999,1\n", "huge.csv:1: field 1: '1e999' is not finite"},
        /* found by fuzzing (tests/fuzz/corpus/csv/regress_float_range): finite as a double, inf as a float */
        {"float_range.csv", "1,2\n-1e39,4\n", "float_range.csv:2: field 1: '-1e39' is beyond the range of float32"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nf_dataset *d = (nf_dataset *)1;
        const char *p = write_text(bad[i].name, bad[i].text);
        nf_status st = nf_dataset_csv(p, &d);
        assert_int_equal(st, NF_ERR_FORMAT);
        assert_null(d);
        if (!strstr(nf_last_error(), bad[i].expect)) fail_msg("%s: got '%s'", bad[i].name, nf_last_error());
        assert_null(strchr(nf_last_error(), '\n'));
    }
    nf_dataset *d;
    assert_int_equal(nf_dataset_csv(path_of("missing.csv"), &d), NF_ERR_IO);
    assert_non_null(strstr(nf_last_error(), "missing.csv"));
}

static nf_flow *small_model(nf_model_type m, int standardize) {
    nf_config c;
    nf_config_default(&c, m, 3);
    c.depth = 3, c.hidden = 16, c.standardize = standardize, c.batchnorm = m == NF_MODEL_REALNVP;
    c.prior = m == NF_MODEL_GLOW ? NF_PRIOR_DIAG_GAUSSIAN : c.prior;
    nf_flow *f;
    assert_int_equal(nf_flow_create(&c, &f), NF_OK);
    /* move every parameter and state away from its initial value */
    nf_rng r;
    nf_rng_seed(&r, 11);
    for (int64_t i = 0; i < nf_flow_num_params(f); i++) nf_flow_params(f)[i] += (nf_real)(0.1 * nf_rng_normal(&r));
    if (standardize) {
        nf_real mu[3] = {1, -2, 3}, sd[3] = {0.5f, 2, 4};
        assert_int_equal(nf_flow_set_standardization(f, mu, sd), NF_OK);
    }
    nf_real x[64 * 3], lp[64];
    for (int i = 0; i < 64 * 3; i++) x[i] = (nf_real)nf_rng_normal(&r);
    nf_flow_set_training(f, 1); /* ActNorm initialisation, batch-norm running statistics */
    assert_int_equal(nf_flow_log_prob(f, x, lp, 64), NF_OK);
    nf_flow_set_training(f, 0);
    return f;
}

/* save → load → bit-identical log-likelihoods, parameters and state; for every model type */
static void test_checkpoint_round_trip(void **state) {
    (void)state;
    for (int m = 0; m < 3; m++) {
        nf_flow *f = small_model((nf_model_type)m, m != 1);
        const char *p = path_of("model.ckpt");
        assert_int_equal(nf_flow_save(f, p), NF_OK);
        assert_int_equal(access(path_of("model.ckpt.tmp"), F_OK), -1);
        nf_flow *g;
        assert_int_equal(nf_flow_load(p, &g), NF_OK);
        assert_int_equal(nf_flow_num_params(f), nf_flow_num_params(g));
        assert_memory_equal(nf_flow_params(f), nf_flow_params(g), sizeof(nf_real) * (size_t)nf_flow_num_params(f));
        assert_int_equal(nf_flow_num_tensors(f), nf_flow_num_tensors(g));
        for (int32_t t = 0; t < nf_flow_num_tensors(f); t++) /* parameters and state buffers */
            assert_memory_equal(nf_flow_tensor_cdata(f, t), nf_flow_tensor_cdata(g, t), sizeof(nf_real) * (size_t)nf_flow_tensor(f, t)->count);
        nf_rng r;
        nf_rng_seed(&r, 2);
        nf_real x[100 * 3], l1[100], l2[100];
        for (int i = 0; i < 300; i++) x[i] = (nf_real)(2 * nf_rng_normal(&r));
        assert_int_equal(nf_flow_log_prob(f, x, l1, 100), NF_OK);
        assert_int_equal(nf_flow_log_prob(g, x, l2, 100), NF_OK);
        assert_memory_equal(l1, l2, sizeof l1);
        assert_memory_equal(nf_flow_config(f), nf_flow_config(g), sizeof(nf_config));
        nf_flow_free(f), nf_flow_free(g);
    }
}

/* an image Glow (squeeze, split, conv couplings) survives the round trip too, ActNorm's flag included */
static void test_checkpoint_image_model(void **state) {
    (void)state;
    nf_config c;
    nf_config_default_image(&c, NF_MODEL_GLOW, 1, 8, 8);
    c.depth = 2, c.hidden = 8;
    nf_flow *f, *g;
    assert_int_equal(nf_flow_create(&c, &f), NF_OK);
    nf_rng r;
    nf_rng_seed(&r, 5);
    nf_real x[16 * 64], l1[16], l2[16];
    for (int i = 0; i < 16 * 64; i++) x[i] = (nf_real)(0.3 * nf_rng_normal(&r));
    nf_flow_set_training(f, 1);
    assert_int_equal(nf_flow_log_prob(f, x, l1, 16), NF_OK); /* ActNorm initialises */
    nf_flow_set_training(f, 0);
    for (int64_t i = 0; i < nf_flow_num_params(f); i++) nf_flow_params(f)[i] += (nf_real)(0.01 * nf_rng_normal(&r));
    const char *p = path_of("img.ckpt");
    assert_int_equal(nf_flow_save(f, p), NF_OK);
    assert_int_equal(nf_flow_load(p, &g), NF_OK);
    assert_int_equal(nf_flow_config(g)->height, 8);
    assert_int_equal(nf_flow_num_layers(f), nf_flow_num_layers(g));
    assert_int_equal(nf_flow_log_prob(f, x, l1, 16), NF_OK);
    assert_int_equal(nf_flow_log_prob(g, x, l2, 16), NF_OK);
    assert_memory_equal(l1, l2, sizeof l1);
    /* a training step on g must not re-initialise ActNorm: the flag was saved */
    nf_flow_set_training(g, 1);
    assert_int_equal(nf_flow_log_prob(g, x, l2, 16), NF_OK);
    assert_memory_equal(l1, l2, sizeof l1);
    nf_flow_free(f), nf_flow_free(g);
}

static long file_size(const char *p) {
    FILE *fp = fopen(p, "rb");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fclose(fp);
    return n;
}

static void expect_load_error(const char *p, const char *msg) {
    nf_flow *g = (nf_flow *)1;
    nf_status st = nf_flow_load(p, &g);
    assert_true(st == NF_ERR_FORMAT || st == NF_ERR_IO);
    assert_null(g);
    if (!strstr(nf_last_error(), msg)) fail_msg("expected '%s' in '%s'", msg, nf_last_error());
    assert_non_null(strstr(nf_last_error(), p));
}

static void test_checkpoint_bad_files(void **state) {
    (void)state;
    nf_flow *f = small_model(NF_MODEL_GLOW, 1);
    const char *p = path_of("good.ckpt");
    assert_int_equal(nf_flow_save(f, p), NF_OK);
    long n = file_size(p);
    unsigned char *buf = malloc((size_t)n);
    FILE *fp = fopen(p, "rb");
    assert_true(fread(buf, 1, (size_t)n, fp) == (size_t)n);
    fclose(fp);
    /* truncated: in the data, in the header, to 3 bytes */
    long cuts[] = {n - 5, 40, 3};
    for (int i = 0; i < 3; i++) {
        const char *q = path_of("trunc.ckpt");
        fp = fopen(q, "wb");
        fwrite(buf, 1, (size_t)cuts[i], fp);
        fclose(fp);
        expect_load_error(q, i == 0 ? "truncated" : i == 1 ? "truncated" : "too short");
    }
    /* one flipped bit in the last parameter: checksum */
    const char *q = path_of("flip.ckpt");
    buf[n - 2] ^= 0x10;
    fp = fopen(q, "wb");
    fwrite(buf, 1, (size_t)n, fp);
    fclose(fp);
    expect_load_error(q, "checksum");
    free(buf);
    /* a foreign file, and a safetensors file of another program */
    expect_load_error(write_text("foreign.ckpt", "hello, this is not a checkpoint at all"), "not");
    const char hdr[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    q = path_of("other.safetensors");
    fp = fopen(q, "wb");
    uint64_t hl = sizeof hdr - 1;
    fwrite(&hl, 8, 1, fp);
    fwrite(hdr, 1, hl, fp);
    fwrite("\0\0\0\0", 1, 4, fp);
    fclose(fp);
    expect_load_error(q, "not an nflow checkpoint");
    expect_load_error(path_of("does-not-exist.ckpt"), "cannot open");
    nf_flow_free(f);
}

/* A checkpoint whose state tensors hold finite values their layers never write — a permutation with a
 * repeated or out-of-range index, MADE degrees that are not a permutation of 1..D (they would break the
 * autoregressive mask and the density with it, silently), an LU sign other than ±1, a variance or
 * standard deviation ≤ 0, an ActNorm flag other than 0/1 — is refused on load in one line naming the file
 * and the tensor, even with a valid checksum (each file written by nf_flow_save after the change). */
static void test_checkpoint_bad_state(void **state) {
    (void)state;
    static const struct { const char *suffix; nf_real bad; } rules[] = {
        {".perm", 1e6f}, {".degree", 0}, {".sign", 0.5f}, {".running_var", 0}, {".std", -1}, {".initialized", 2}};
    int hit[sizeof rules / sizeof rules[0]] = {0};
    nf_model_type models[] = {NF_MODEL_GLOW, NF_MODEL_REALNVP, NF_MODEL_MAF};
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        nf_config c;
        nf_config_default(&c, models[m], 4);
        c.depth = 2, c.hidden = 8, c.standardize = 1, c.actnorm = 1, c.batchnorm = models[m] == NF_MODEL_REALNVP;
        c.perm = models[m] == NF_MODEL_REALNVP ? NF_PERM_RANDOM : c.perm;
        nf_flow *f;
        assert_int_equal(nf_flow_create(&c, &f), NF_OK);
        for (int32_t i = 0; i < nf_flow_num_tensors(f); i++) {
            const nf_tensor_info *t = nf_flow_tensor(f, i);
            for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
                size_t n = strlen(t->name), k = strlen(rules[r].suffix);
                if (t->kind != NF_TENSOR_BUFFER || n < k || strcmp(t->name + n - k, rules[r].suffix) != 0) continue;
                nf_real *v = nf_flow_tensor_data(f, i), keep = v[0];
                v[0] = rules[r].bad;
                const char *q = path_of("state.ckpt");
                assert_int_equal(nf_flow_save(f, q), NF_OK);
                v[0] = keep;
                expect_load_error(q, "never writes");
                if (!strstr(nf_last_error(), t->name)) fail_msg("expected '%s' in '%s'", t->name, nf_last_error());
                hit[r]++;
            }
        }
        const char *q = path_of("state-ok.ckpt"); /* restored: loads */
        assert_int_equal(nf_flow_save(f, q), NF_OK);
        nf_flow *g = NULL;
        assert_int_equal(nf_flow_load(q, &g), NF_OK);
        nf_flow_free(g), nf_flow_free(f);
    }
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++)
        if (!hit[r]) fail_msg("no state tensor '*%s' in the models tried", rules[r].suffix);
}

/* Column names: a CSV header's fields (trimmed of blanks and quotes, an empty one named by its column)
 * become the dataset's names, survive a split and a write, and a flow keeps them through its checkpoint;
 * a wrong count is refused, in the API and in a checkpoint. */
static void test_column_names(void **state) {
    (void)state;
    nf_dataset *d, *e, *tr, *te;
    assert_int_equal(nf_dataset_csv(write_text("named.csv", " \"a\" , ,c\n1,2,3\n4,5,6\n"), &d), NF_OK);
    assert_string_equal(d->names, "a,x2,c");
    assert_int_equal(nf_dataset_set_names(d, "a,b"), NF_ERR_INVALID); /* 2 names for 3 columns */
    assert_int_equal(nf_dataset_set_names(d, "a,,c"), NF_ERR_INVALID); /* an empty name */
    assert_string_equal(d->names, "a,x2,c");                           /* unchanged by a refusal */
    assert_int_equal(nf_dataset_split(d, 0.5, 1, &tr, &te), NF_OK);
    assert_string_equal(tr->names, "a,x2,c"), assert_string_equal(te->names, "a,x2,c");
    const char *q = path_of("named-out.csv");
    assert_int_equal(nf_dataset_write_csv(d, q, "x"), NF_OK);
    assert_int_equal(nf_dataset_csv(q, &e), NF_OK);
    assert_string_equal(e->names, "a,x2,c");
    assert_int_equal(nf_dataset_set_names(e, NULL), NF_OK);
    assert_null(e->names);
    nf_dataset_free(d), nf_dataset_free(e), nf_dataset_free(tr), nf_dataset_free(te);
    assert_int_equal(nf_dataset_csv(write_text("unnamed.csv", "1,2\n"), &d), NF_OK);
    assert_null(d->names);
    nf_dataset_free(d);

    nf_flow *f = small_model(NF_MODEL_REALNVP, 0), *g;
    assert_null(nf_flow_columns(f));
    assert_int_equal(nf_flow_set_columns(f, "p,q"), NF_ERR_INVALID);
    assert_int_equal(nf_flow_set_columns(f, "p,q,r"), NF_OK);
    const char *p = path_of("named.ckpt");
    assert_int_equal(nf_flow_save(f, p), NF_OK);
    assert_int_equal(nf_flow_load(p, &g), NF_OK);
    assert_string_equal(nf_flow_columns(g), "p,q,r");
    nf_flow_free(g);
    /* the same file with two names for three columns ("p,q;r": the header keeps its length) */
    long n = file_size(p);
    char *buf = malloc((size_t)n + 1);
    FILE *fp = fopen(p, "rb");
    assert_true(fread(buf, 1, (size_t)n, fp) == (size_t)n);
    fclose(fp);
    char *at = NULL;
    for (long i = 0; i + 5 <= n && !at; i++)
        if (memcmp(buf + i, "p,q,r", 5) == 0) at = buf + i;
    assert_non_null(at);
    at[3] = ';';
    q = path_of("badnames.ckpt");
    fp = fopen(q, "wb");
    fwrite(buf, 1, (size_t)n, fp);
    fclose(fp);
    free(buf);
    expect_load_error(q, "column names");
    nf_flow_free(f);
}

/* Each generator: finite points, and a property of its shape. */
static void test_toy_generators(void **state) {
    (void)state;
    for (const char *const *nm = nf_toy_names(); *nm; nm++) {
        nf_dataset *d;
        assert_int_equal(nf_dataset_toy(*nm, 5000, 1, &d), NF_OK);
        assert_int_equal(d->dim, 2);
        for (int64_t i = 0; i < d->n * 2; i++) assert_true(isfinite(d->x[i]) && fabs(d->x[i]) < 10);
        nf_dataset_free(d);
    }
    nf_dataset *d;
    /* 8 gaussians: every point within 4 std of one of the 8 centres of radius 4/1.414 */
    assert_int_equal(nf_dataset_toy("8gaussians", 5000, 2, &d), NF_OK);
    for (int64_t i = 0; i < d->n; i++) {
        double best = 1e9;
        for (int k = 0; k < 8; k++) {
            double cx = 4 * cos(k * M_PI / 4) / 1.414, cy = 4 * sin(k * M_PI / 4) / 1.414;
            best = fmin(best, hypot(d->x[2 * i] - cx, d->x[2 * i + 1] - cy));
        }
        assert_true(best < 4 * 0.5 / 1.414 * 1.5);
    }
    nf_dataset_free(d);
    /* checkerboard: points lie in the squares where ⌊x/2⌋ + ⌊y/2⌋ is odd… or even: one parity only */
    assert_int_equal(nf_dataset_toy("checkerboard", 5000, 3, &d), NF_OK);
    int par = -1;
    for (int64_t i = 0; i < d->n; i++) {
        int p = (int)(((long)floor(d->x[2 * i] / 2) + (long)floor(d->x[2 * i + 1] / 2)) & 1);
        if (par < 0) par = p;
        assert_int_equal(p, par);
    }
    nf_dataset_free(d);
    /* same seed, same data; unknown names fail */
    nf_dataset *a, *b;
    assert_int_equal(nf_dataset_toy("pinwheel", 100, 5, &a), NF_OK);
    assert_int_equal(nf_dataset_toy("pinwheel", 100, 5, &b), NF_OK);
    assert_memory_equal(a->x, b->x, sizeof(nf_real) * 200);
    nf_dataset_free(a), nf_dataset_free(b);
    assert_int_equal(nf_dataset_toy("swirl", 100, 5, &a), NF_ERR_INVALID);
    assert_non_null(strstr(nf_last_error(), "swirl"));
}

static void test_split_and_moments(void **state) {
    (void)state;
    nf_dataset *d, *tr, *te;
    assert_int_equal(nf_dataset_toy("moons", 1000, 1, &d), NF_OK);
    assert_int_equal(nf_dataset_split(d, 0.2, 7, &tr, &te), NF_OK);
    assert_int_equal(tr->n, 800);
    assert_int_equal(te->n, 200);
    /* a split is a permutation: the column sums are preserved */
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < d->n * 2; i++) s += d->x[i];
    for (int64_t i = 0; i < tr->n * 2; i++) s2 += tr->x[i];
    for (int64_t i = 0; i < te->n * 2; i++) s2 += te->x[i];
    assert_true(fabs(s - s2) < 1e-3);
    nf_real mu[2], sd[2];
    nf_dataset_moments(d, mu, sd);
    assert_true(sd[0] > 0.5 && sd[1] > 0.2);
    nf_dataset_free(d), nf_dataset_free(tr), nf_dataset_free(te);
    /* a constant column gets std 1, not 0 */
    const char *p = write_text("const.csv", "1,5\n2,5\n3,5\n");
    assert_int_equal(nf_dataset_csv(p, &d), NF_OK);
    nf_dataset_moments(d, mu, sd);
    assert_true(sd[1] == 1 && mu[1] == 5);
    nf_dataset_free(d);
}


/* The config table lists every field of nf_config once: unique names, no overlap, and together the
 * fields cover every byte of the struct (a member added to nf_config but not to the table fails here) */
static void test_config_table(void **state) {
    (void)state;
    unsigned char covered[sizeof(nf_config)] = {0};
    int32_t n = nf_config_num_fields();
    assert_true(n > 0);
    assert_null(nf_config_field_at(n)), assert_null(nf_config_field_at(-1)), assert_null(nf_config_field_find("nope"));
    for (int32_t i = 0; i < n; i++) {
        const nf_config_field *fd = nf_config_field_at(i);
        assert_ptr_equal(nf_config_field_find(fd->name), fd);
        size_t sz = fd->kind == NF_FIELD_INT || fd->kind == NF_FIELD_ENUM ? 4 : 8;
        assert_true(fd->offset + sz <= sizeof(nf_config));
        for (size_t b = 0; b < sz; b++) assert_int_equal(covered[fd->offset + b]++, 0);
        assert_true((fd->kind == NF_FIELD_ENUM) == (fd->enum_kind != NULL));
        if (fd->enum_kind) assert_string_not_equal(nf_enum_name(fd->enum_kind, 0), "?");
    }
    for (size_t b = 0; b < sizeof(nf_config); b++) assert_int_equal(covered[b], 1);
    /* set and get through the table */
    nf_config c;
    memset(&c, 0, sizeof c);
    nf_config_set_int(&c, nf_config_field_find("hidden"), 77);
    nf_config_set_int(&c, nf_config_field_find("prior"), NF_PRIOR_LOGISTIC);
    nf_config_set_double(&c, nf_config_field_find("logit_alpha"), 0.25);
    nf_config_set_u64(&c, nf_config_field_find("seed"), 18446744073709551557ull);
    assert_int_equal(c.hidden, 77), assert_int_equal(c.prior, NF_PRIOR_LOGISTIC);
    assert_true(c.logit_alpha == 0.25), assert_true(c.seed == 18446744073709551557ull);
    assert_true(nf_config_get_number(&c, nf_config_field_find("hidden")) == 77);
    assert_int_equal(nf_config_get_enum(&c, nf_config_field_find("prior")), NF_PRIOR_LOGISTIC);
    assert_true(nf_config_get_u64(&c, nf_config_field_find("seed")) == 18446744073709551557ull);
}

/* the pid of a process that has exited and been reaped: no process has it (until the pid is reused) */
static long dead_pid(void) {
    pid_t c = fork();
    assert_true(c >= 0);
    if (c == 0) _exit(0);
    int ws;
    assert_true(waitpid(c, &ws, 0) == c);
    return (long)c;
}

static void write_junk(const char *p) {
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    fputs("half-written checkpoint", fp);
    fclose(fp);
}

/* Temporaries a killed run left ("<path>.tmp.<pid>"): a save removes those of dead pids, keeps those of
 * live processes, reuses (renames) its own; a load reads the path itself and never a temporary. */
static void test_checkpoint_stale_temps(void **state) {
    (void)state;
    nf_flow *f = small_model(NF_MODEL_REALNVP, 0);
    const char *p = path_of("m.ckpt");
    char dead[600], live[600], mine[600], other[600], dirlike[600];
    snprintf(dead, sizeof dead, "%s.tmp.%ld", p, dead_pid());
    snprintf(live, sizeof live, "%s.tmp.1", p); /* init: always alive */
    snprintf(mine, sizeof mine, "%s.tmp.%ld", p, (long)getpid());
    snprintf(other, sizeof other, "%s.old.tmp.%ld", p, dead_pid()); /* another file's temp: not ours to touch */
    snprintf(dirlike, sizeof dirlike, "%s.tmp.%ld", p, dead_pid()); /* a folder with a temp's name: kept */
    write_junk(dead), write_junk(live), write_junk(mine), write_junk(other);
    assert_int_equal(mkdir(dirlike, 0700), 0);
    /* no checkpoint yet: a load does not fall back to a temporary */
    nf_flow *g = NULL;
    assert_int_equal(nf_flow_load(p, &g), NF_ERR_IO);
    assert_null(g);
    assert_int_equal(nf_flow_save(f, p), NF_OK);
    assert_int_equal(access(dead, F_OK), -1);
    assert_int_equal(access(live, F_OK), 0);
    assert_int_equal(access(mine, F_OK), -1); /* written and renamed by the save itself */
    assert_int_equal(access(other, F_OK), 0);
    assert_int_equal(access(dirlike, F_OK), 0);
    /* the load reads m.ckpt, not the junk next to it */
    write_junk(dead);
    assert_int_equal(nf_flow_load(p, &g), NF_OK);
    assert_memory_equal(nf_flow_params(f), nf_flow_params(g), sizeof(nf_real) * (size_t)nf_flow_num_params(f));
    nf_flow_free(g);
    /* the clean-up by itself: counts what it removed */
    assert_int_equal(nf_remove_stale_temps(p), 1);
    assert_int_equal(nf_remove_stale_temps(p), 0);
    remove(live), remove(other), rmdir(dirlike), remove(p);
    nf_flow_free(f);
}

/* A save that cannot be written fails with NF_ERR_IO and leaves the previous checkpoint intact */
static void test_checkpoint_save_fails_cleanly(void **state) {
    (void)state;
    nf_flow *f = small_model(NF_MODEL_GLOW, 1);
    /* a parent that is a regular file: nothing can be created under it (root or not) */
    const char *file = write_text("plain-file", "x");
    char under[600];
    snprintf(under, sizeof under, "%s/m.ckpt", file);
    assert_int_equal(nf_flow_save(f, under), NF_ERR_IO);
    assert_non_null(strstr(nf_last_error(), "m.ckpt.tmp."));
    /* a previous checkpoint, then a save that fails: as non-root a read-only folder; as root (which
     * ignores permissions) the temporary's name taken by a folder, so that it cannot be opened */
    char dir[600], p[700], tmp[800];
    snprintf(dir, sizeof dir, "%s/ro", g_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(p, sizeof p, "%s/m.ckpt", dir);
    assert_int_equal(nf_flow_save(f, p), NF_OK);
    nf_real *w = nf_flow_params(f), w0 = w[0];
    w[0] += 1; /* what the failed save would have written */
    int root = geteuid() == 0;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    if (root) assert_int_equal(mkdir(tmp, 0700), 0);
    else assert_int_equal(chmod(dir, 0500), 0);
    assert_int_equal(nf_flow_save(f, p), NF_ERR_IO);
    if (root) assert_int_equal(rmdir(tmp), 0);
    else assert_int_equal(chmod(dir, 0700), 0);
    nf_flow *g;
    assert_int_equal(nf_flow_load(p, &g), NF_OK);
    assert_true(nf_flow_params(g)[0] == w0);
    for (int64_t i = 1; i < nf_flow_num_params(f); i++) assert_true(nf_flow_params(g)[i] == w[i]);
    nf_flow_free(g), nf_flow_free(f);
}

static void test_png_and_plot(void **state) {
    (void)state;
    nf_config c;
    nf_config_default(&c, NF_MODEL_REALNVP, 2);
    c.depth = 2;
    nf_flow *f;
    assert_int_equal(nf_flow_create(&c, &f), NF_OK);
    const char *p = path_of("plot.png");
    assert_int_equal(nf_plot_2d(f, NULL, p, 64, 1), NF_OK);
    FILE *fp = fopen(p, "rb");
    unsigned char sig[8];
    assert_true(fread(sig, 1, 8, fp) == 8);
    fclose(fp);
    assert_memory_equal(sig, "\x89PNG\r\n\x1a\n", 8);
    nf_flow_free(f);
    c.dim = 3;
    assert_int_equal(nf_flow_create(&c, &f), NF_OK);
    assert_int_equal(nf_plot_2d(f, NULL, p, 64, 1), NF_ERR_INVALID);
    nf_flow_free(f);
    /* a conditional flow: a row of panels per context; the density and warped-grid panels depend on the
     * context alone (rows 0 and 2 share theirs, row 1's differs), the samples panel on the draws too */
    c.dim = 2;
    c.context_dim = 1;
    assert_int_equal(nf_flow_create(&c, &f), NF_OK);
    nf_rng rng;
    nf_rng_seed(&rng, 5);
    for (int64_t k = 0; k < nf_flow_num_params(f); k++) nf_flow_params(f)[k] += (nf_real)(0.3 * nf_rng_normal(&rng));
    const nf_real ctx[3] = {-1, 1, -1};
    assert_int_equal(nf_plot_2d_ctx(f, NULL, ctx, 3, p, 64, 1), NF_OK);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    assert_true(png_image_begin_read_from_file(&im, p));
    assert_int_equal(im.width, 3 * 64);
    assert_int_equal(im.height, 3 * 64);
    im.format = PNG_FORMAT_RGB;
    uint8_t *rgb = malloc(PNG_IMAGE_SIZE(im));
    assert_non_null(rgb);
    assert_true(png_image_finish_read(&im, NULL, rgb, 0, NULL));
    size_t row = (size_t)3 * 64 * 3, panel = 64 * 3; /* bytes of an image row, of a panel's row */
    int same_density = 1, same_grid = 1, other_density = 0;
    for (size_t v = 1; v < 64; v++) { /* below the separator line between rows */
        const uint8_t *r0 = rgb + v * row, *r1 = rgb + (64 + v) * row, *r2 = rgb + (128 + v) * row;
        same_density &= memcmp(r0, r2, panel - 3) == 0;
        same_grid &= memcmp(r0 + 2 * panel + 3, r2 + 2 * panel + 3, panel - 3) == 0;
        other_density |= memcmp(r0, r1, panel - 3) != 0;
    }
    assert_true(same_density && same_grid && other_density);
    free(rgb);
    assert_int_equal(nf_plot_2d_ctx(f, NULL, NULL, 1, p, 64, 1), NF_ERR_INVALID); /* no contexts */
    assert_int_equal(nf_plot_2d_ctx(f, NULL, ctx, 17, p, 64, 1), NF_ERR_INVALID);
    nf_dataset d2 = {1, 2, (nf_real[2]){0, 0}, NULL};
    assert_int_equal(nf_plot_2d_ctx(f, &d2, ctx, 1, p, 64, 1), NF_ERR_INVALID); /* data of other contexts */
    nf_flow_free(f);
    c.context_dim = 0;
    assert_int_equal(nf_flow_create(&c, &f), NF_OK);
    assert_int_equal(nf_plot_2d_ctx(f, NULL, ctx, 1, p, 64, 1), NF_ERR_INVALID); /* contexts for an unconditional flow */
    nf_flow_free(f);
    /* a grid of images with non-finite pixels (a sample the model overflowed on) is drawn: NaN black */
    nf_real img[2 * 4] = {-0.5f, 0.0f, 0.49f, NAN, INFINITY, -INFINITY, 0.25f, NAN};
    assert_int_equal(nf_images_grid_png(img, 2, 1, 2, 2, 2, 1, path_of("nan.png")), NF_OK);
    /* writing into a missing directory fails cleanly */
    uint8_t px[3] = {1, 2, 3};
    assert_int_equal(nf_png_write("/nonexistent-dir/x.png", px, 1, 1), NF_ERR_IO);
    /* a libpng error (a width over libpng's limit: warnings, then "Invalid IHDR data") comes back as
     * the reason; libpng prints nothing and no temporary file is left */
    const char *errp = path_of("png.stderr"), *big = path_of("big.png");
    int saved = stderr_begin(errp);
    nf_status st = nf_png_write(big, px, 2000000, 1);
    long printed = stderr_end(saved, errp);
    assert_int_equal(st, NF_ERR_IO);
    assert_non_null(strstr(nf_last_error(), "big.png: PNG write failed: "));
    assert_null(strchr(nf_last_error(), '\n'));
    assert_int_equal(printed, 0);
    assert_int_equal(access(big, F_OK), -1);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", big, (long)getpid());
    assert_int_equal(access(tmp, F_OK), -1);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/nflow-test-io-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_valid),          cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_checkpoint_round_trip), cmocka_unit_test(test_checkpoint_bad_files), cmocka_unit_test(test_checkpoint_bad_state),
        cmocka_unit_test(test_checkpoint_image_model), cmocka_unit_test(test_column_names),
        cmocka_unit_test(test_toy_generators),     cmocka_unit_test(test_split_and_moments),
        cmocka_unit_test(test_png_and_plot),
        cmocka_unit_test(test_config_table),
        cmocka_unit_test(test_checkpoint_stale_temps), cmocka_unit_test(test_checkpoint_save_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
