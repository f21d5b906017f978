/* cmd_images.c — nflow interpolate and manipulate: latent-space pictures of image models. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void decode_grid(nf_flow *f, nf_real *z, int64_t n, int32_t cols, const char *path) {
    write_grid(f, nf_flow_inverse(f, z, z, NULL, n), z, n, cols, 3, path);
}

/* The options of an image command that cannot apply to its data (--channels on IDX images, --labels on
 * a folder) are refused in one line, as train refuses them; the --out picture must be a .png name. */
static void check_image_command(const opts *o, unsigned cmd, const nf_flow *f) {
    check_applicable(o, cmd, data_source_of(o->data), (int)nf_flow_config(f)->model);
    check_png_name(o->out);
}

static const char *interp_help =
    "usage: nflow interpolate --model MODEL.ckpt --data fashion-mnist|IMAGES-idx3-ubyte[.gz] --from I --to J\n"
    "                         [--frames N] --out STRIP.png\n"
    "Linear interpolation in latent space between two real images: z = (1 − t)·G⁻¹(x_I) + t·G⁻¹(x_J) for\n"
    "N (8) values of t from 0 to 1, decoded by G. The strip shows x_I, the N decodings, x_J.\n";

int cmd_interpolate(int argc, char **argv) {
    opts o;
    parse_options(argc, argv, C_INTERP, interp_help, &o);
    need(o.model, "model"), need(o.data, "data"), need(o.out, "out");
    if (o.from < 0 || o.to < 0) die("missing --from or --to (image indices)");
    nf_flow *f = load_model(o.model);
    if (nf_flow_context_dim(f) > 0) die("the model %s is class-conditional: not available for conditional models", o.model);
    if (!image_model(f)) die("%s is not an image model", o.model);
    check_image_command(&o, C_INTERP, f);
    nf_images *im = load_eval_images(&o, f);
    int64_t D = nf_flow_dim(f), N = o.frames, idx[2] = {o.from, o.to};
    nf_real *z = malloc(sizeof(nf_real) * (size_t)((N + 2) * D)), *ze = malloc(sizeof(nf_real) * (size_t)(2 * D));
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
    free(ze), free(z), nf_images_free(im), nf_flow_free(f);
    return 0;
}

static const char *manip_help =
    "usage: nflow manipulate --model MODEL.ckpt --data fashion-mnist|IMAGES-idx3-ubyte[.gz] [--labels FILE]\n"
    "                        --class-a A --class-b B --images I,J,… [--strengths s1,s2,…] [--per-class N]\n"
    "                        --out GRID.png\n"
    "Attribute manipulation: v = mean G⁻¹(x) over class B − mean over class A (up to N (1000) images each);\n"
    "row i of the grid decodes G⁻¹(x_i) + s·v for each strength s (default −1,−0.5,0,0.5,1,1.5).\n";

int cmd_manipulate(int argc, char **argv) {
    opts o;
    parse_options(argc, argv, C_MANIP, manip_help, &o);
    need(o.model, "model"), need(o.data, "data"), need(o.out, "out");
    if (o.class_a < 0 || o.class_b < 0) die("missing --class-a or --class-b");
    if (o.nimages == 0) die("missing --images (indices of the images to change)");
    if (o.nstrengths == 0) {
        double def[6] = {-1, -0.5, 0, 0.5, 1, 1.5};
        memcpy(o.strengths, def, sizeof def);
        o.nstrengths = 6;
    }
    nf_flow *f = load_model(o.model);
    if (nf_flow_context_dim(f) > 0) die("the model %s is class-conditional: not available for conditional models", o.model);
    if (!image_model(f)) die("%s is not an image model", o.model);
    check_image_command(&o, C_MANIP, f);
    if (o.labels && brings_labels(o.data)) die("option --labels: %s brings its own labels (--labels is for IDX image files)", o.data);
    nf_images *im = load_eval_images(&o, f);
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
    printf("wrote %s: attribute = mean latent of class %lld (%lld image%s) − class %lld (%lld image%s)\n", o.out,
           (long long)o.class_b, (long long)nb, plural(nb), (long long)o.class_a, (long long)na, plural(na));
    free(ma), free(mb), free(zi), free(z), nf_images_free(im), nf_flow_free(f);
    return 0;
}
