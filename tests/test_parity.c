/* test_parity.c — numerical parity with the PyTorch reference, without PyTorch: for each workload,
 * tests/fixtures/parity holds an nflow checkpoint (a few training steps from initialisation, at reduced
 * widths), a batch of inputs, and the log-likelihoods the reference (bench/torch_reference.py, float64)
 * computed for them from that checkpoint. nflow must agree to 1e-4 relative in float32.
 * Regenerate with: python3 bench/parity.py --make-fixture tests/fixtures/parity */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nflow.h"

#define TOL 1e-4

static void check_fixture(const char *name) {
    char ck[1024], xs[1024], ls[1024];
    snprintf(ck, sizeof ck, "%s/%s.ckpt", NFLOW_FIXTURES, name);
    snprintf(xs, sizeof xs, "%s/%s.x.csv", NFLOW_FIXTURES, name);
    snprintf(ls, sizeof ls, "%s/%s.logp.csv", NFLOW_FIXTURES, name);
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
