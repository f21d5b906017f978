/* cmd_sample.c — nflow sample, encode, decode. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

static const char *sample_help =
    "usage: nflow sample --model MODEL.ckpt [-n N] [--temperature T] [--seed S] [--out FILE]\n"
    "Draw x = G(z), z ~ prior with its scale multiplied by T. CSV to FILE or standard output; for an\n"
    "image model a PNG grid (--out required, -n default 64).\n";
static const char *encode_help =
    "usage: nflow encode --model MODEL.ckpt --in DATA.csv [--out LATENT.csv]\n"
    "Inference z = G⁻¹(x) for every row (the forward pass of the flow).\n";
static const char *decode_help =
    "usage: nflow decode --model MODEL.ckpt --in LATENT.csv [--out DATA.csv]\n"
    "Generation x = G(z) for every row (the inverse pass). decode(encode(x)) = x up to rounding.\n";

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

int cmd_sample(int argc, char **argv) {
    opts o;
    parse_options(argc, argv, C_SAMPLE, sample_help, &o);
    need(o.model, "model");
    nf_flow *f = load_model(o.model);
    if (image_model(f)) { /* an image grid */
        need(o.out, "out");
        int64_t n = GIVEN(&o, O_N) ? o.n : 64;
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

int cmd_code(int argc, char **argv, int encode) {
    opts o;
    parse_options(argc, argv, encode ? C_ENCODE : C_DECODE, encode ? encode_help : decode_help, &o);
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
