/* test_parity.c — numerical parity with the PyTorch reference, without PyTorch: for each workload,
 * tests/fixtures/parity holds an nflow checkpoint (a few training steps from initialisation, at reduced
 * widths), a batch of inputs, and the log-likelihoods the reference (bench/torch_reference.py, float64)
 * computed for them from that checkpoint. nflow must agree to 1e-4 relative in float32.
 * NAME.grad.csv holds the reference's float64 gradient of the mean NLL of that batch (torch autograd)
 * with respect to every parameter and to the inputs: per tensor its L2 norm over all entries and a
 * sample of entries (bench/torch_reference.py grad). nflow's nf_flow_nll_grad must agree within
 * GRAD_TOL, measured against the tensor's largest |gradient| (see check_grads).
 * Regenerate with: python3 bench/parity.py --make-fixture tests/fixtures/parity
 * (the gradients alone, for the committed checkpoints: python3 bench/parity.py --grad-fixture tests/fixtures/parity) */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "models/models.h"
#include "nflow.h"

#define TOL 1e-4
/* Gradients in float32 through up to ~40 layers, each the sum of many products (a batch of 8 × 784
 * inputs), against float64: an entry's error is measured relative to the largest |entry| of its
 * tensor (|g − ref| / max|ref|: small entries are sums that cancel, and their own relative error says
 * nothing about the flow), and entries of at least a tenth of that largest one relative to themselves;
 * a tensor's L2 norm relative to itself. Measured on the four committed fixtures (x86-64): at most
 * 1.0e-6 against the largest entry, 4.4e-6 for entries of at least a tenth of it, 5.5e-7 for norms;
 * 5e-5 leaves > 10× for other machines' summation orders and still catches a real error in a backward
 * pass (those are O(1e-2) relative or more). */
#define GRAD_TOL 5e-5

/* Compare nf_flow_nll_grad of the batch x (n rows) on f with the reference gradient file at path;
 * prints the worst differences. Every parameter tensor of f must appear in the file. */
/* lp_scale = mean |log p| of the batch: the loss (their mean) can nearly cancel, so its error is
 * measured against that. */
static void check_grads(nf_flow *f, const nf_real *x, int64_t n, const char *name, const char *path, double lp_scale) {
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    int64_t D = nf_flow_dim(f), np = nf_flow_num_params(f);
    nf_real *dx = calloc((size_t)(n * D), sizeof(nf_real));
    assert_non_null(dx);
    double loss = 0;
    nf_flow_zero_grad(f);
    assert_int_equal(nf_flow_nll_grad(f, x, n, &loss, dx), NF_OK);
    const nf_real *g = nf_flow_grads(f);
    int32_t nt = nf_flow_num_tensors(f);
    int *seen = calloc((size_t)nt, sizeof(int));
    char line[256];
    assert_non_null(fgets(line, sizeof line, fp)); /* header */
    double worst_entry = 0, worst_big = 0, worst_norm = 0, ref_loss = 0;
    int64_t entries = 0;
    while (fgets(line, sizeof line, fp)) {
        int t;
        long long e;
        double ref, scale;
        assert_int_equal(sscanf(line, "%d,%lld,%lf,%lf", &t, &e, &ref, &scale), 4);
        if (t == -2) { /* the loss */
            ref_loss = ref;
            continue;
        }
        const nf_real *v;
        int64_t count;
        if (t == -1) v = dx, count = n * D;
        else {
            assert_true(t >= 0 && t < nt);
            const nf_tensor_info *ti = nf_flow_tensor(f, t);
            assert_int_equal(ti->kind, NF_TENSOR_PARAM); /* a buffer in nflow, a parameter in torch: wrong */
            assert_true(ti->offset + ti->count <= np);
            seen[t] = 1;
            v = g + ti->offset, count = ti->count;
        }
        if (e == -1) { /* the tensor's L2 norm over all of its entries */
            double s2 = 0;
            for (int64_t k = 0; k < count; k++) s2 += (double)v[k] * v[k];
            double err = ref > 0 ? fabs(sqrt(s2) - ref) / ref : sqrt(s2);
            if (err > worst_norm) worst_norm = err;
            continue;
        }
        assert_true(e >= 0 && e < count);
        double err = scale > 0 ? fabs((double)v[e] - ref) / scale : fabs((double)v[e]);
        if (err > worst_entry) worst_entry = err;
        if (fabs(ref) >= 0.1 * scale && scale > 0 && fabs((double)v[e] - ref) / fabs(ref) > worst_big)
            worst_big = fabs((double)v[e] - ref) / fabs(ref);
        entries++;
    }
    fclose(fp);
    for (int32_t t = 0; t < nt; t++)
        if (nf_flow_tensor(f, t)->kind == NF_TENSOR_PARAM && !seen[t]) fail_msg("%s: parameter %s has no reference gradient", name, nf_flow_tensor(f, t)->name);
    double loss_err = fabs(loss - ref_loss) / lp_scale;
    printf("  %-14s gradient of the mean NLL (%lld parameters, %lld sampled entries + every tensor's norm): "
           "max |g - ref| / max|ref| %.2e, entries >= max/10: max relative %.2e, norms: max relative %.2e; "
           "loss %.6f (reference %.6f); tolerance %.0e\n",
           name, (long long)np, (long long)entries, worst_entry, worst_big, worst_norm, loss, ref_loss, GRAD_TOL);
    assert_true(entries > 0);
    assert_true(worst_entry <= GRAD_TOL && worst_big <= GRAD_TOL && worst_norm <= GRAD_TOL && loss_err <= TOL);
    free(seen), free(dx);
}

static void check_fixture(const char *name) {
    char ck[1024], xs[1024], ls[1024];
    snprintf(ck, sizeof ck, "%s/%s.ckpt", NFLOW_FIXTURES, name);
    snprintf(xs, sizeof xs, "%s/%s.x.csv", NFLOW_FIXTURES, name);
    snprintf(ls, sizeof ls, "%s/%s.logp.csv", NFLOW_FIXTURES, name);
    char gs[1024];
    snprintf(gs, sizeof gs, "%s/%s.grad.csv", NFLOW_FIXTURES, name);
    nf_flow *f;
    nf_dataset *x, *ref;
    assert_int_equal(nf_flow_load(ck, &f), NF_OK);
    assert_int_equal(nf_dataset_csv(xs, &x), NF_OK);
    assert_int_equal(nf_dataset_csv(ls, &ref), NF_OK);
    assert_int_equal(x->dim, nf_flow_dim(f));
    assert_int_equal(ref->n, x->n);
    nf_real lp[64];
    assert_true(x->n <= 64);
    assert_int_equal(nf_flow_log_prob(f, x->x, lp, x->n), NF_OK);
    double worst = 0;
    for (int64_t i = 0; i < x->n; i++) {
        /* the reference's float64 values were parsed into nf_real: compare in double */
        double r = ref->x[i], e = fabs((double)lp[i] - r) / fabs(r);
        if (e > worst) worst = e;
    }
    printf("  %-14s %lld rows, log p[0] = %.6f (reference %.6f), max relative difference %.2e\n", name,
           (long long)x->n, (double)lp[0], (double)ref->x[0], worst);
    assert_true(worst <= TOL);
    double lp_scale = 0;
    for (int64_t i = 0; i < x->n; i++) lp_scale += fabs((double)ref->x[i]) / (double)x->n;
    check_grads(f, x->x, x->n, name, gs, lp_scale);
    nf_dataset_free(x), nf_dataset_free(ref), nf_flow_free(f);
}

static void test_glow(void **s) { (void)s, check_fixture("glow-small"); }
static void test_realnvp(void **s) { (void)s, check_fixture("realnvp-small"); }
static void test_nice(void **s) { (void)s, check_fixture("nice-mnist"); }
static void test_moons(void **s) { (void)s, check_fixture("realnvp-moons"); }

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_glow), cmocka_unit_test(test_realnvp),
                                       cmocka_unit_test(test_nice), cmocka_unit_test(test_moons)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
