/* cmd_plot.c — nflow plot: density, samples and warped grid of a 2-D model. */
#include "cli.h"

#include <stdio.h>

static const char *plot_help =
    "usage: nflow plot --model MODEL.ckpt --out FIG.png [--data NAME|FILE.csv] [--size PX] [--seed S]\n"
    "Three panels for a 2-D model: the learned density, samples (orange) over data (blue), and the\n"
    "warped grid — a regular grid of the latent space mapped to data space by G.\n";

int cmd_plot(int argc, char **argv) {
    opts o;
    parse_options(argc, argv, C_PLOT, plot_help, &o);
    need(o.model, "model"), need(o.out, "out");
    check_png_name(o.out);
    nf_flow *f = load_model(o.model);
    if (nf_flow_context_dim(f) > 0) die("the model %s is conditional: plot draws the density of an unconditional 2-D model", o.model);
    nf_dataset *d = NULL;
    if (o.data) {
        if (nf_toy_known(o.data) >= 0) check(nf_dataset_toy(o.data, o.ntest, o.seed * 2 + 2, &d));
        else load_data(&o, &d, NULL);
    }
    if (d && d->dim != 2) die("%s: %d columns; plot draws 2-D data", o.data, (int)d->dim);
    check(nf_plot_2d(f, d, o.out, (int32_t)o.size, o.seed));
    printf("wrote %s\n", o.out);
    nf_dataset_free(d), nf_flow_free(f);
    return 0;
}
