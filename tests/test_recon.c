/* test_recon.c — nf_flow_evaluate_images_ex counts the images that do not reconstruct within a
 * tolerance: every image when the tolerance is below zero, none at the largest error, and in between a
 * count consistent with a per-image recomputation of |x − G(G⁻¹(x))|. */
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

static void test_recon_count(void **state) {
    (void)state;
    nf_config cfg;
    nf_config_default_image(&cfg, NF_MODEL_GLOW, 1, 4, 4);
    cfg.hidden = 8, cfg.depth = 2, cfg.levels = 1, cfg.init_std = 0.5; /* non-identity couplings */
    nf_flow *f;
    assert_int_equal(nf_flow_create(&cfg, &f), NF_OK);
    /* scale the parameters up: a flow far from the identity reconstructs with visible rounding */
    for (int64_t k = 0; k < nf_flow_num_params(f); k++) nf_flow_params(f)[k] *= 3;
    nf_images im = {40, 1, 4, 4, malloc(40 * 16), NULL};
    for (int i = 0; i < 40 * 16; i++) im.pix[i] = (uint8_t)((i * 97 + i / 16 * 13) & 255);
    double bpd, se, worst, b2, s2, w2;
    int64_t nbad = -1;
    assert_int_equal(nf_flow_evaluate_images_ex(f, &im, 8, 1, -1, &bpd, &se, &worst, &nbad), NF_OK);
    assert_int_equal(nbad, 40); /* every image is "off by more than −1" */
    assert_int_equal(nf_flow_evaluate_images_ex(f, &im, 8, 1, worst, &b2, &s2, &w2, &nbad), NF_OK);
    assert_int_equal(nbad, 0); /* none is off by more than the largest error */
    assert_true(b2 == bpd && s2 == se && w2 == worst); /* the same evaluation (same seed) */
    /* the plain call agrees */
    assert_int_equal(nf_flow_evaluate_images(f, &im, 8, 1, &b2, &s2, &w2), NF_OK);
    assert_true(b2 == bpd && w2 == worst);
    /* in between: recount per image, with the same dequantisation (seed 1, all images in one chunk) */
    nf_real *x = malloc(sizeof(nf_real) * 40 * 16), *z = malloc(sizeof(nf_real) * 40 * 16);
    nf_rng r;
    nf_rng_seed(&r, 1);
    nf_images_dequantize(&im, NULL, 40, 8, &r, x);
    assert_int_equal(nf_flow_forward(f, x, z, NULL, 40), NF_OK);
    assert_int_equal(nf_flow_inverse(f, z, z, NULL, 40), NF_OK);
    double tol = worst / 2;
    int64_t want = 0;
    for (int i = 0; i < 40; i++) {
        double w = 0;
        for (int k = 0; k < 16; k++) w = fmax(w, fabs((double)z[i * 16 + k] - (double)x[i * 16 + k]));
        want += w > tol;
    }
    assert_int_equal(nf_flow_evaluate_images_ex(f, &im, 8, 1, tol, &b2, &s2, &w2, &nbad), NF_OK);
    print_message("largest reconstruction error %.3g; %lld of 40 images off by more than %.3g\n", worst, (long long)nbad, tol);
    assert_int_equal(nbad, want);
    assert_true(worst > 0 && nbad >= 1 && nbad < 40 + 1);
    free(x), free(z), free(im.pix);
    nf_flow_free(f);
}

int main(void) {
    nf_set_threads(1);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_recon_count)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
