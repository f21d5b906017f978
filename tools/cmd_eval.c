/* cmd_eval.c — nflow eval: mean test log-likelihood (vectors) or bits/dim (images). */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *eval_help =
    "usage: nflow eval --model MODEL.ckpt --data NAME|FILE.csv|IMAGES [options]\n"
    "Mean log-likelihood (nats per sample) with its standard error: of fresh test points for a built-in\n"
    "dataset (seed as at training gives the same test set), of every row for a CSV. Image models: bits/dim\n"
    "± standard error of the test set (fashion-mnist, CIFAR-10) or of every image of a file or folder, and\n"
    "the largest reconstruction error |x − G(G⁻¹(x))| and how many images reconstruct off by more than half\n"
    "a quantisation level (another pixel value). A conditional model: log p(x | c) with the context columns\n"
    "of the CSV (the model's), or class-conditional bits/dim −log₂ p(x | label) per dimension (--classify N:\n"
    "also the model as a classifier by Bayes' rule, and its marginal bits/dim). Image bits/dim are the\n"
    "dequantisation bound −log p(x) + log q(u | pixels) (log q = 0 unless the model was trained with\n"
    "--dequant variational); --draws K adds its importance-weighted form over K draws per image.\n";

int cmd_eval(int argc, char **argv) {
    opts o;
    parse_options(argc, argv, C_EVAL, eval_help, &o);
    need(o.model, "model"), need(o.data, "data");
    nf_flow *f = load_model(o.model);
    check_applicable(&o, C_EVAL, data_source_of(o.data), (int)nf_flow_config(f)->model);
    if ((data_source_of(o.data) & SRC_IMG)) { /* the test set of fashion-mnist or CIFAR-10, or the file or folder itself */
        if (o.labels && data_source_of(o.data) == SRC_IDX && brings_labels(o.data))
            die("option --labels: %s brings its own labels (--labels is for IDX image files)", o.data);
        if (o.labels && nf_flow_context_dim(f) == 0) die("option --labels: the model %s is not class-conditional (the labels would not be used)", o.model);
        nf_images *im = load_eval_images(&o, f);
        double bpd, se, rec, tol = 0.5 / (double)(1 << o.bits); /* half a quantisation level: the pixel's bin */
        int64_t nbad = 0;
        int32_t K = nf_flow_context_dim(f);
        if (K > 0 && !im->labels) die("%s: the model %s is class-conditional: the images need class labels (--labels for an IDX file)", o.data, o.model);
        for (int64_t i = 0; K > 0 && i < im->n; i++)
            if (im->labels[i] < 0 || im->labels[i] >= K)
                die("%s: image %lld has class label %d; the model %s knows classes 0..%d", o.labels ? o.labels : o.data, (long long)i,
                    (int)im->labels[i], o.model, (int)K - 1);
        if (o.classify && !(K > 0 && nf_flow_config(f)->context_labels))
            die("option --classify: the model %s is not class-conditional (train it with --condition labels)", o.model);
        check(nf_flow_evaluate_images_ex(f, im, o.bits, o.seed, tol, &bpd, &se, &rec, &nbad));
        printf("%.4f ± %.4f %sbits/dim over %lld image%s of %s (%d-bit); max reconstruction error |x − G(G⁻¹(x))| = %.2g; "
               "%lld of %lld image%s reconstruct%s off by more than %.2g (half a %d-bit level)\n",
               bpd, se, K ? "class-conditional " : "", (long long)im->n, plural(im->n), o.data, (int)o.bits, rec, (long long)nbad,
               (long long)im->n, plural(im->n), nbad == 1 ? "s" : "", tol, (int)o.bits);
        if (o.draws) { /* draws per image from the same seed (draws 1: the figure above) */
            double iw, iwse;
            check(nf_flow_evaluate_images_iw(f, im, o.bits, o.seed, (int32_t)o.draws, &iw, &iwse));
            printf("%.4f ± %.4f %sbits/dim importance-weighted over %lld dequantisation draw%s per image\n", iw, iwse, K ? "class-conditional " : "",
                   (long long)o.draws, plural(o.draws));
        }
        if (o.classify) { /* the same dequantisation (seed) as above, so the conditional figure matches it on all images */
            double acc, bc, bm;
            int64_t n = o.classify < im->n ? o.classify : im->n;
            check(nf_flow_classify_images(f, im, o.bits, o.seed, n, &acc, &bc, &bm));
            printf("Bayes' rule over %d classes (uniform prior), first %lld image%s: accuracy %.2f %%; %.4f class-conditional "
                   "against %.4f marginal bits/dim (−log₂ Σ_k p(x | k)/%d; the class can be worth at most log₂ %d / %lld = %.4f)\n",
                   (int)K, (long long)n, plural(n), 100 * acc, bc, bm, (int)K, (int)K, (long long)nf_flow_dim(f), log2((double)K) / (double)nf_flow_dim(f));
        }
        nf_images_free(im), nf_flow_free(f);
        return 0;
    }
    nf_dataset *d, *cx = NULL;
    if (nf_toy_known(o.data) >= 0) check(nf_dataset_toy(o.data, o.ntest, o.seed * 2 + 2, &d));
    else load_data(&o, &d, NULL);
    const nf_config *cfg = nf_flow_config(f);
    check_column_order(f, d, o.data);
    char cw[200] = "";
    if (cfg->context_dim > 0) { /* a conditional table model: its context columns of the same layout */
        if (!cfg->context_cols) die("the model %s is conditional without context columns (not a table model)", o.model);
        if (d->dim != cfg->dim + cfg->context_dim || (d->dim < 64 && (cfg->context_cols >> d->dim)))
            die("%s: %d columns, the conditional model %s expects %d (%d modelled, %d context)", o.data, (int)d->dim, o.model,
                (int)(cfg->dim + cfg->context_dim), (int)cfg->dim, (int)cfg->context_dim);
        nf_dataset *x;
        split_columns(d, cfg->context_cols, &x, &cx);
        nf_dataset_free(d), d = x;
        mask_words(cfg->context_cols, cw, sizeof cw);
    }
    if (d->dim != nf_flow_dim(f)) die("%s: %d columns, the model %s expects %d", o.data, (int)d->dim, o.model, (int)nf_flow_dim(f));
    double ll, se;
    check(nf_flow_evaluate_ctx(f, d, cx, &ll, &se));
    if (cx) printf("log p(x | c) %.4f ± %.4f nats/sample (NLL %.4f) over %lld rows of %s, conditional on columns %s\n", ll, se, -ll,
                   (long long)d->n, o.data, cw);
    else printf("log-likelihood %.4f ± %.4f nats/sample (NLL %.4f) over %lld rows of %s\n", ll, se, -ll, (long long)d->n, o.data);
    if (o.out) { /* log p of every row, in nats */
        char name[] = "logp"; /* the one column's header (not logp1) */
        nf_dataset lp = {d->n, 1, malloc(sizeof(nf_real) * (size_t)d->n), name};
        if (!lp.x) die("out of memory");
        check(nf_flow_log_prob_ctx(f, d->x, cx ? cx->x : NULL, lp.x, d->n));
        check(nf_dataset_write_csv(&lp, o.out, "logp"));
        free(lp.x);
    }
    nf_dataset_free(d), nf_dataset_free(cx), nf_flow_free(f);
    return 0;
}
