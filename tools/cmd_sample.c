/* cmd_sample.c — nflow sample, encode, decode. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *sample_help =
    "usage: nflow sample --model MODEL.ckpt [-n N] [--temperature T] [--seed S] [--out FILE]\n"
    "Draw x = G(z), z ~ prior with its scale multiplied by T. CSV to FILE or standard output; for an\n"
    "image model a PNG grid (--out required, -n default 64). Conditional models: --context FILE.csv (a table\n"
    "model: -n samples per context row, written in the training file's column layout, the context columns\n"
    "as given); a class-conditional image model: one grid row per class (-n per row, 10) or --class K.\n";
static const char *encode_help =
    "usage: nflow encode --model MODEL.ckpt --in DATA.csv [--out LATENT.csv]\n"
    "Inference z = G⁻¹(x) for every row (the forward pass of the flow). A conditional table model: z =\n"
    "G⁻¹(x | c), rows of the training file's layout in and out, the context columns passed through.\n";
static const char *decode_help =
    "usage: nflow decode --model MODEL.ckpt --in LATENT.csv [--out DATA.csv]\n"
    "Generation x = G(z) for every row (the inverse pass). decode(encode(x)) = x up to rounding. A\n"
    "conditional table model: x = G(z | c) from rows in encode's layout (latents, context columns).\n";

/* Write d as CSV to the file out, or to standard output when out is NULL or "-": under the model f's
 * column names (its training file's header) when f is not NULL and has them for d's columns, else under
 * prefix1, prefix2, …. */
static void write_rows(nf_dataset *d, const nf_flow *f, const char *out, const char *prefix) {
    const char *names = f ? nf_flow_columns(f) : NULL;
    if (names && d->dim == nf_flow_dim(f) + nf_flow_config(f)->context_dim) check(nf_dataset_set_names(d, names));
    check(nf_dataset_write_csv(d, out ? out : "-", prefix));
}

/* A table of samples holds no inf or NaN: a sample the model overflows on (NF_ERR_NUMERIC) stops the
 * command with the model's name and nothing written; another failure dies with its reason. */
static void check_samples(nf_status st, const char *model) {
    if (st == NF_ERR_NUMERIC) die("%s: %s; nothing written", model, nf_last_error());
    check(st);
}

int cmd_sample(int argc, char **argv) {
    opts o;
    parse_options(argc, argv, C_SAMPLE, sample_help, &o);
    need(o.model, "model");
    nf_flow *f = load_model(o.model);
    const nf_config *cfg = nf_flow_config(f);
    if (o.context && cfg->context_dim == 0) die("option --context: the model %s is not conditional", o.model);
    if (GIVEN(&o, O_CLASS) && !(image_model(f) && cfg->context_dim > 0)) die("option --class: the model %s is not a class-conditional image model", o.model);
    if (image_model(f) && o.out && strcmp(o.out, "-") != 0) check_png_name(o.out);
    if (image_model(f) && o.out && strcmp(o.out, "-") == 0) die("option --out: %s is an image model: its samples are a PNG grid, which needs a file name", o.model);
    if (image_model(f) && cfg->context_dim > 0) { /* class-conditional images */
        need(o.out, "out");
        if (o.context) die("option --context: %s is a class-conditional image model (use --class K)", o.model);
        int64_t n = GIVEN(&o, O_N) ? o.n : o.cls >= 0 ? 64 : 10;
        if (n * (o.cls >= 0 ? 1 : cfg->context_dim) > 4096) die("option -n: at most 4096 images in one grid");
        write_class_grid(f, o.seed, o.temperature, o.cls, n, o.out);
        if (o.cls >= 0) printf("wrote %s (%lld samples of class %lld at temperature %g)\n", o.out, (long long)n, (long long)o.cls, o.temperature);
        else printf("wrote %s (%d rows, one per class 0..%d, of %lld samples at temperature %g)\n", o.out, (int)cfg->context_dim,
                    (int)cfg->context_dim - 1, (long long)n, o.temperature);
        nf_flow_free(f);
        return 0;
    }
    if (cfg->context_dim > 0) { /* a conditional table: samples for each context row */
        if (!o.context) die("the model %s is conditional on %d context columns: give --context FILE.csv", o.model, (int)cfg->context_dim);
        int32_t K = cfg->context_dim, D = cfg->dim, M = D + K;
        nf_dataset *c = read_contexts(f, o.model, o.context);
        int64_t per = GIVEN(&o, O_N) ? o.n : 1, n = c->n * per;
        nf_real *cx = malloc(sizeof(nf_real) * (size_t)(n * K)), *x = malloc(sizeof(nf_real) * (size_t)(n * D));
        nf_dataset out = {n, M, malloc(sizeof(nf_real) * (size_t)(n * M)), NULL};
        if (!cx || !x || !out.x) die("out of memory for %lld samples", (long long)n);
        for (int64_t i = 0; i < n; i++) memcpy(cx + i * K, c->x + (i / per) * K, sizeof(nf_real) * (size_t)K);
        nf_rng r;
        nf_rng_seed(&r, o.seed);
        check_samples(nf_flow_sample_ctx(f, &r, o.temperature, cx, x, n), o.model);
        join_columns(cfg->context_cols, x, D, cx, K, n, out.x); /* the training layout */
        write_rows(&out, f, o.out, "x");
        free(cx), free(x), free(out.x), free(out.names), nf_dataset_free(c), nf_flow_free(f);
        return 0;
    }
    if (image_model(f)) { /* an image grid */
        need(o.out, "out");
        int64_t n = GIVEN(&o, O_N) ? o.n : 64;
        if (n > 4096) die("option -n: at most 4096 images in one grid");
        write_sample_grid(f, o.seed, o.temperature, n, o.out);
        printf("wrote %s (%lld samples at temperature %g)\n", o.out, (long long)n, o.temperature);
        nf_flow_free(f);
        return 0;
    }
    nf_dataset d = {o.n, nf_flow_dim(f), malloc(sizeof(nf_real) * (size_t)o.n * (size_t)nf_flow_dim(f)), NULL};
    if (!d.x) die("out of memory for %lld samples", (long long)o.n);
    nf_rng r;
    nf_rng_seed(&r, o.seed);
    check_samples(nf_flow_sample(f, &r, o.temperature, d.x, d.n), o.model);
    write_rows(&d, f, o.out, "x");
    free(d.x), free(d.names), nf_flow_free(f);
    return 0;
}

int cmd_code(int argc, char **argv, int encode) {
    opts o;
    parse_options(argc, argv, encode ? C_ENCODE : C_DECODE, encode ? encode_help : decode_help, &o);
    need(o.model, "model"), need(o.in, "in");
    nf_flow *f = load_model(o.model);
    const nf_config *cfg = nf_flow_config(f);
    int32_t D = nf_flow_dim(f), K = cfg->context_dim;
    nf_dataset *d, *c = NULL;
    check(nf_dataset_csv(o.in, &d));
    if (encode) check_column_order(f, d, o.in);
    if (K > 0) { /* a conditional table: rows of the training layout, the context columns read as given */
        if (!cfg->context_cols) die("the model %s is class-conditional: %s works on table models", o.model, encode ? "encode" : "decode");
        if (d->dim != D + K)
            die("%s: %d columns; the conditional model %s takes rows of its training layout: %d columns (%d %s, %d context)", o.in,
                (int)d->dim, o.model, (int)(D + K), (int)D, encode ? "modelled" : "latent", (int)K);
        nf_dataset *x;
        split_columns(d, cfg->context_cols, &x, &c);
        nf_dataset_free(d), d = x;
    }
    if (d->dim != D) die("%s: %d columns, the model %s expects %d", o.in, (int)d->dim, o.model, (int)D);
    const nf_real *cx = c ? c->x : NULL;
    nf_status st = encode ? nf_flow_forward_ctx(f, d->x, cx, d->x, NULL, d->n) : nf_flow_inverse_ctx(f, d->x, cx, d->x, NULL, d->n);
    for (int64_t i = 0; st == NF_ERR_NUMERIC && i < d->n * d->dim; i++) /* nothing written rather than rows of inf */
        if (!isfinite(d->x[i]))
            die("%s: data row %lld %ss to a non-finite value (it lies too far out for the model %s); nothing written", o.in,
                (long long)(i / d->dim + 1), encode ? "encode" : "decode", o.model);
    check(st);
    free(d->names), d->names = NULL; /* latents are z1, z2, …; a decode gets the model's column names */
    if (c) { /* the training layout again: latents (or data) in the modelled columns, the context as read */
        nf_dataset out = {d->n, D + K, malloc(sizeof(nf_real) * (size_t)(d->n * (D + K)) + 1), NULL};
        if (!out.x) die("out of memory for %lld rows", (long long)d->n);
        join_columns(cfg->context_cols, d->x, D, c->x, K, d->n, out.x);
        if (encode) out.names = layout_names(f, "z");
        write_rows(&out, encode ? NULL : f, o.out, encode ? "z" : "x");
        free(out.x), free(out.names);
    } else write_rows(d, encode ? NULL : f, o.out, encode ? "z" : "x");
    nf_dataset_free(d), nf_dataset_free(c), nf_flow_free(f);
    return 0;
}
