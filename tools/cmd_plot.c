/* cmd_plot.c — nflow plot: density, samples and warped grid of a 2-D model. */
#include "cli.h"

#include <stdio.h>

static const char *plot_help =
    "usage: nflow plot --model MODEL.ckpt --out FIG.png [--data NAME|FILE.csv] [--size PX] [--seed S]\n"
    "                  [--context FILE.csv]\n"
    "Three panels for a 2-D model: the learned density, samples (orange) over data (blue), and the\n"
    "warped grid — a regular grid of the latent space mapped to data space by G. A conditional table\n"
    "model (two modelled columns): one row of panels per row of --context (at most 16), p(x | c) each.\n";

int cmd_plot(int argc, char **argv) {
    opts o;
    parse_options(argc, argv, C_PLOT, plot_help, &o);
    need(o.model, "model"), need(o.out, "out");
    check_png_name(o.out);
    nf_flow *f = load_model(o.model);
    nf_dataset *d = NULL, *c = NULL;
    if (o.context && nf_flow_context_dim(f) == 0) die("option --context: the model %s is not conditional", o.model);
    if (nf_flow_context_dim(f) > 0) {
        if (!nf_flow_config(f)->context_cols) die("the model %s is class-conditional: plot draws 2-D table models", o.model);
        if (!o.context) die("the model %s is conditional on %d context columns: give --context FILE.csv (a row of panels per row)", o.model,
                            (int)nf_flow_context_dim(f));
        if (o.data) die("option --data: the model %s is conditional, and the data's rows have contexts of their own", o.model);
        c = read_contexts(f, o.model, o.context);
        if (c->n < 1 || c->n > 16) die("%s: %lld context rows; plot draws 1 to 16 (a row of panels each)", o.context, (long long)c->n);
    }
    if (o.data) {
        if (nf_toy_known(o.data) >= 0) check(nf_dataset_toy(o.data, o.ntest, o.seed * 2 + 2, &d));
        else load_data(&o, &d, NULL);
    }
    if (d && d->dim != 2) die("%s: %d columns; plot draws 2-D data", o.data, (int)d->dim);
    check(nf_plot_2d_ctx(f, d, c ? c->x : NULL, c ? (int32_t)c->n : 1, o.out, (int32_t)o.size, o.seed));
    printf("wrote %s\n", o.out);
    nf_dataset_free(d), nf_dataset_free(c), nf_flow_free(f);
    return 0;
}
