/* test_train.c — short end-to-end maximum-likelihood runs whose test NLL must fall below justified
 * bounds. Reference points, per dataset:
 *   - the best single Gaussian: NLL_G = ½ log det(2πe Σ) with Σ the data covariance — a flow that has
 *     learned anything about the shape must beat it clearly;
 *   - where known, the true entropy H (no model beats it in expectation): 8 gaussians (std 0.5/1.414,
 *     centres far apart) H = log 8 + 1 + log(2π · 0.125) ≈ 2.838 nats; a Gaussian table H = NLL_G. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nflow.h"

static double gaussian_nll(const nf_dataset *d) {
    /* 2-D or general D via Cholesky of the covariance */
    int32_t D = d->dim;
    double *m = calloc((size_t)D, sizeof(double)), *S = calloc((size_t)D * (size_t)D, sizeof(double));
    for (int64_t i = 0; i < d->n; i++)
        for (int32_t j = 0; j < D; j++) m[j] += d->x[i * D + j] / (double)d->n;
    for (int64_t i = 0; i < d->n; i++)
        for (int32_t j = 0; j < D; j++)
            for (int32_t k = 0; k < D; k++) S[j * D + k] += (d->x[i * D + j] - m[j]) * (d->x[i * D + k] - m[k]) / (double)d->n;
    double logdet = 0;
    for (int32_t j = 0; j < D; j++) { /* in-place Cholesky */
        for (int32_t k = 0; k < j; k++) {
            double s = S[j * D + k];
            for (int32_t p = 0; p < k; p++) s -= S[j * D + p] * S[k * D + p];
            S[j * D + k] = s / S[k * D + k];
        }
        double s = S[j * D + j];
        for (int32_t p = 0; p < j; p++) s -= S[j * D + p] * S[j * D + p];
        S[j * D + j] = sqrt(s);
        logdet += 2 * log(S[j * D + j]);
    }
    free(m), free(S);
    return 0.5 * (D * (1 + log(2 * M_PI)) + logdet);
}

/* Train `steps` steps (batch 256, lr 1e-3, 50 warm-up steps) and return the test NLL. */
static double train_nll(nf_config *c, const nf_dataset *train, const nf_dataset *test, int steps) {
    nf_flow *f;
    assert_int_equal(nf_flow_create(c, &f), NF_OK);
    if (c->standardize) {
        nf_real mu[16], sd[16];
        nf_dataset_moments(train, mu, sd);
        assert_int_equal(nf_flow_set_standardization(f, mu, sd), NF_OK);
    }
    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 256, o.adam.warmup = 50, o.adam.clip = 100;
    nf_trainer *t;
    assert_int_equal(nf_trainer_create(f, train, &o, &t), NF_OK);
    for (int s = 0; s < steps; s++) {
        double loss, gn;
        assert_int_equal(nf_trainer_step(t, &loss, &gn), NF_OK);
    }
    assert_int_equal(nf_trainer_rollbacks(t, NULL), 0); /* the guard leaves a healthy run alone */
    nf_flow_set_training(f, 0);
    double ll, se;
    assert_int_equal(nf_flow_evaluate(f, test, &ll, &se), NF_OK);
    nf_trainer_free(t), nf_flow_free(f);
    return -ll;
}

/* Under AddressSanitizer (CI's second pass over the suite) a toy run takes a tenth of its steps and asks
 * only for a finite NLL: that pass looks for memory and undefined-behaviour errors, which the first steps
 * reach as the last do, and the release pass runs the same toys to their bounds. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static void run_toy(const char *data, nf_model_type m, int steps, double init_std, double bound_vs_gauss, double abs_bound) {
    if (SANITIZED) steps /= 10;
    nf_dataset *tr, *te;
    assert_int_equal(nf_dataset_toy(data, 20000, 1, &tr), NF_OK);
    assert_int_equal(nf_dataset_toy(data, 5000, 2, &te), NF_OK);
    nf_config c;
    nf_config_default(&c, m, 2);
    c.init_std = init_std;
    double g = gaussian_nll(te), nll = train_nll(&c, tr, te, steps);
    print_message("  %-8s on %-11s: test NLL %.3f nats after %d steps (best Gaussian %.3f; bound %.3f%s)\n", nf_model_name(m), data, nll, steps, g,
                  fmin(g - bound_vs_gauss, abs_bound), SANITIZED ? ", asked in the release build only" : "");
    assert_true(isfinite(nll));
    if (!SANITIZED) assert_true(nll < g - bound_vs_gauss && nll < abs_bound);
    nf_dataset_free(tr), nf_dataset_free(te);
}

/* 8 gaussians: best Gaussian ≈ 4.25, entropy ≈ 2.84. 1500 steps of RealNVP reach ≈ 3.1 on this
 * machine; the bound 3.3 asks for ≥ 0.95 nats over any Gaussian, i.e. the modes were found. */
static void test_realnvp_8gaussians(void **s) { (void)s; run_toy("8gaussians", NF_MODEL_REALNVP, 1500, 0, 0.95, 3.3); }
static void test_glow_8gaussians(void **s) { (void)s; run_toy("8gaussians", NF_MODEL_GLOW, 1500, 0, 0.95, 3.3); }
/* NICE is volume-preserving up to one diagonal scale, and needs the symmetry broken (init_std). It is
 * slow to find the modes and its 1500-step figure hangs on float rounding: with OpenBLAS's Zen,
 * Haswell, Sandybridge and Prescott kernels (OPENBLAS_CORETYPE) it read 3.95, 3.95, 3.86 and 3.53 on a
 * Zen 3, against 3.36, 3.36, 3.52 and 3.46 after 3000 steps, so the test trains 3000. */
static void test_nice_8gaussians(void **s) { (void)s; run_toy("8gaussians", NF_MODEL_NICE, 3000, 0.01, 0.4, 10); }
/* moons (best Gaussian ≈ 3.30 nats): learned moon shapes are worth ≥ 0.6 nats to RealNVP (it reaches
 * ≈ 2.5 here) and ≥ 0.3 to the volume-preserving NICE (≈ 2.85) */
static void test_realnvp_moons(void **s) { (void)s; run_toy("moons", NF_MODEL_REALNVP, 1000, 0, 0.6, 10); }
static void test_nice_moons(void **s) { (void)s; run_toy("moons", NF_MODEL_NICE, 1000, 0, 0.3, 10); }
/* The autoregressive flows with their defaults (5 MADE blocks 2 × 64, spline transforms on 2-D data):
 * MAF on 8 gaussians must come within 0.16 nats of the entropy 2.838 (it reaches 2.884 after 2000
 * steps here; the affine blocks 3.24), IAF (density in D passes) beat RealNVP's bound on moons */
static void test_maf_8gaussians(void **s) { (void)s; run_toy("8gaussians", NF_MODEL_MAF, 2000, 0, 0.95, 3.0); }
static void test_iaf_moons(void **s) { (void)s; run_toy("moons", NF_MODEL_IAF, 1000, 0, 0.6, 10); }

/* A CSV table in far-from-unit units (a correlated 3-D Gaussian, scales 1000 and 0.01, offset 5000):
 * the standardisation layer's log-det must put the reported likelihood in the original units, where
 * the entropy ½ log det(2πe Σ) is known. A RealNVP must get within 0.1 nats of it (a flow cannot beat
 * the entropy except by sampling noise: the test set has 5000 rows, standard error ≈ 0.02). */
static void test_csv_standardized_units(void **state) {
    (void)state;
    char dir[] = "/tmp/nflow-test-train-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.csv", dir);
    FILE *fp = fopen(path, "w");
    fprintf(fp, "price,ratio,other\n");
    nf_rng r;
    nf_rng_seed(&r, 4);
    for (int i = 0; i < 25000; i++) {
        double a = nf_rng_normal(&r), b = nf_rng_normal(&r), c = nf_rng_normal(&r);
        fprintf(fp, "%.9g,%.9g,%.9g\n", 5000 + 1000 * a, 0.01 * (0.8 * a + 0.6 * b), 2 * c + a);
    }
    fclose(fp);
    nf_dataset *all, *tr, *te;
    assert_int_equal(nf_dataset_csv(path, &all), NF_OK);
    assert_int_equal(nf_dataset_split(all, 0.2, 1, &tr, &te), NF_OK);
    /* Σ = A Aᵀ with rows (1000,0,0), (0.008,0.006,0), (1,0,2): det Σ = (1000·0.006·2)² */
    double H = 0.5 * (3 * (1 + log(2 * M_PI)) + 2 * log(1000 * 0.006 * 2));
    nf_model_type models[] = {NF_MODEL_REALNVP, NF_MODEL_MAF}; /* MAF: its standardisation and blocks alike */
    for (int m = 0; m < 2; m++) {
        nf_config c;
        nf_config_default(&c, models[m], 3);
        c.standardize = 1;
        double nll = train_nll(&c, tr, te, 800);
        print_message("  %s on a 3-D CSV in raw units: test NLL %.4f, entropy %.4f\n", nf_model_name(models[m]), nll, H);
        assert_true(nll > H - 0.1 && nll < H + 0.1);
    }
    nf_dataset_free(all), nf_dataset_free(tr), nf_dataset_free(te);
    unlink(path);
    rmdir(dir);
}

/* A small multi-scale Glow on 1 000 Fashion-MNIST training images, tested on 1 000 test images.
 * Reference: the best model without correlations between pixels, an independent Gaussian per pixel
 * fitted to the dequantised test images themselves (so it is favoured), scores
 * bpd_diag = 8 + Σ_j ½ log2(2πe σ_j²)/D. A flow that beats it has learned dependencies between pixels. */
static void test_glow_fashion_mnist_subset(void **state) {
    (void)state;
    nf_images *all, *te;
    assert_int_equal(nf_images_load_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", NULL, &all), NF_OK);
    assert_int_equal(nf_images_load_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", NULL, &te), NF_OK);
    all->n = 1000, te->n = 1000; /* the first 1 000 of each */
    int64_t D = 784;
    nf_real *x = malloc(sizeof(nf_real) * (size_t)(te->n * D));
    nf_rng r;
    nf_rng_seed(&r, 3);
    nf_images_dequantize(te, NULL, te->n, 8, &r, x);
    double diag = 0;
    for (int64_t j = 0; j < D; j++) {
        double m = 0, v = 0;
        for (int64_t i = 0; i < te->n; i++) m += x[i * D + j] / (double)te->n;
        for (int64_t i = 0; i < te->n; i++) v += (x[i * D + j] - m) * (x[i * D + j] - m) / (double)te->n;
        diag += 0.5 * log2(2 * M_PI * M_E * v);
    }
    diag = 8 + diag / (double)D;
    free(x);
    nf_config c;
    nf_config_default_image(&c, NF_MODEL_GLOW, 1, 28, 28);
    c.depth = 2, c.hidden = 16;
    nf_flow *f;
    assert_int_equal(nf_flow_create(&c, &f), NF_OK);
    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 32, o.adam.lr = 2e-3, o.adam.warmup = 20;
    nf_trainer *t;
    assert_int_equal(nf_trainer_create_images(f, all, &o, &t), NF_OK);
    for (int s = 0; s < 300; s++) {
        double loss, gn;
        assert_int_equal(nf_trainer_step(t, &loss, &gn), NF_OK);
    }
    nf_flow_set_training(f, 0);
    double bpd, se, rec;
    assert_int_equal(nf_flow_evaluate_images(f, te, 8, 1, &bpd, &se, &rec), NF_OK);
    print_message("  glow (2 levels × 2 steps, width 16) on 1000 Fashion-MNIST images: %.3f ± %.3f bits/dim after 300 steps; independent Gaussian per pixel %.3f; reconstruction error %.1e\n",
                  bpd, se, diag, rec);
    assert_true(bpd < diag - 1.0); /* measured: 6.32 vs 7.87 */
    assert_true(rec < 1e-3);
    nf_trainer_free(t), nf_flow_free(f), nf_images_free(all), nf_images_free(te);
}

/* N + M steps in one run equal N steps, save, load, resume, M steps — bit for bit, across epoch
 * boundaries (100 rows, batch 16), for a vector RealNVP with batch norm and for an image Glow. With
 * ema > 0 (Polyak averaging) the same holds for the iterate and for the average, the checkpoint's model
 * is the average, and a resume that does not match the checkpoint's averaging is refused. */
static void resume_case(nf_config *c, const nf_dataset *ds, const nf_images *im, int N, int M, double ema) {
    char dir[] = "/tmp/nflow-test-resume-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r.ckpt", dir);
    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 16, o.adam.warmup = 5, o.adam.clip = 10, o.ema = ema;
    nf_flow *a, *b, *b2;
    nf_trainer *ta, *tb, *tb2;
    double loss, gn;
    assert_int_equal(nf_flow_create(c, &a), NF_OK);
    assert_int_equal(nf_flow_create(c, &b), NF_OK);
    assert_int_equal(ds ? nf_trainer_create(a, ds, &o, &ta) : nf_trainer_create_images(a, im, &o, &ta), NF_OK);
    assert_int_equal(ds ? nf_trainer_create(b, ds, &o, &tb) : nf_trainer_create_images(b, im, &o, &tb), NF_OK);
    int64_t np = nf_flow_num_params(a);
    size_t bytes = sizeof(nf_real) * (size_t)np;
    for (int s = 0; s < N + M; s++) assert_int_equal(nf_trainer_step(ta, &loss, &gn), NF_OK);
    for (int s = 0; s < N; s++) assert_int_equal(nf_trainer_step(tb, &loss, &gn), NF_OK);
    assert_int_equal(nf_trainer_save(tb, path), NF_OK);
    nf_real *avg_b = malloc(bytes);
    if (ema > 0) { /* what the checkpoint's model must hold: tb's average */
        assert_int_equal(nf_trainer_swap_average(tb), NF_OK);
        memcpy(avg_b, nf_flow_params(b), bytes);
    } else assert_int_equal(nf_trainer_swap_average(tb), NF_ERR_INVALID);
    nf_trainer_free(tb), nf_flow_free(b);
    assert_int_equal(nf_flow_load(path, &b2), NF_OK);
    if (ema > 0) assert_memory_equal(nf_flow_params(b2), avg_b, bytes);
    nf_train_opts other = o;
    other.ema = ema > 0 ? 0 : 0.99; /* the other averaging: refused in one line, nothing resumed */
    assert_int_equal(ds ? nf_trainer_create(b2, ds, &other, &tb2) : nf_trainer_create_images(b2, im, &other, &tb2), NF_OK);
    assert_int_equal(nf_trainer_resume(tb2, path), NF_ERR_INVALID);
    assert_non_null(strstr(nf_last_error(), ema > 0 ? "saved with an average" : "saved without an average"));
    nf_trainer_free(tb2), nf_flow_free(b2);
    assert_int_equal(nf_flow_load(path, &b2), NF_OK);
    assert_int_equal(ds ? nf_trainer_create(b2, ds, &o, &tb2) : nf_trainer_create_images(b2, im, &o, &tb2), NF_OK);
    assert_int_equal(nf_trainer_resume(tb2, path), NF_OK);
    assert_int_equal(nf_trainer_steps(tb2), N);
    for (int s = 0; s < M; s++) assert_int_equal(nf_trainer_step(tb2, &loss, &gn), NF_OK);
    assert_int_equal(np, nf_flow_num_params(b2));
    assert_memory_equal(nf_flow_params(a), nf_flow_params(b2), bytes);
    if (ema > 0) { /* the averages too; and an average is not the iterate */
        memcpy(avg_b, nf_flow_params(a), bytes);
        assert_int_equal(nf_trainer_swap_average(ta), NF_OK);
        assert_int_equal(nf_trainer_swap_average(tb2), NF_OK);
        assert_memory_equal(nf_flow_params(a), nf_flow_params(b2), bytes);
        assert_memory_not_equal(nf_flow_params(a), avg_b, bytes);
        assert_int_equal(nf_trainer_swap_average(ta), NF_OK); /* twice: the iterate again */
        assert_memory_equal(nf_flow_params(a), avg_b, bytes);
    }
    free(avg_b);
    /* a plain model checkpoint has no training state to resume */
    assert_int_equal(nf_flow_save(a, path), NF_OK);
    assert_int_equal(nf_trainer_resume(tb2, path), NF_ERR_FORMAT);
    nf_trainer_free(ta), nf_trainer_free(tb2), nf_flow_free(a), nf_flow_free(b2);
    unlink(path);
    rmdir(dir);
}

/* Polyak averaging's rule (nflow.h): after step n (from 0) avg ← avg + (1 − d_n)(θ − avg) with
 * d_n = min(ema, (1 + n)/(10 + n)), starting from the initial parameters; an ema outside [0, 1) is refused. */
static void test_average_rule(void **state) {
    (void)state;
    nf_dataset *ds;
    assert_int_equal(nf_dataset_toy("moons", 64, 1, &ds), NF_OK);
    nf_config c;
    nf_config_default(&c, NF_MODEL_REALNVP, 2);
    c.depth = 2;
    nf_flow *f;
    assert_int_equal(nf_flow_create(&c, &f), NF_OK);
    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 16, o.ema = 1;
    nf_trainer *t;
    assert_int_equal(nf_trainer_create(f, ds, &o, &t), NF_ERR_INVALID);
    o.ema = 0.95;
    assert_int_equal(nf_trainer_create(f, ds, &o, &t), NF_OK);
    int64_t np = nf_flow_num_params(f);
    nf_real *avg = malloc(sizeof(nf_real) * (size_t)np);
    memcpy(avg, nf_flow_params(f), sizeof(nf_real) * (size_t)np);
    double loss, gn;
    for (int n = 0; n < 40; n++) { /* d_n: 0.1, 0.18, … until it reaches 0.95 at n = 161 — here always the warm-up */
        assert_int_equal(nf_trainer_step(t, &loss, &gn), NF_OK);
        double d = (1.0 + n) / (10.0 + n);
        const nf_real *p = nf_flow_params(f);
        for (int64_t k = 0; k < np; k++) avg[k] += (nf_real)(1 - (d < 0.95 ? d : 0.95)) * (p[k] - avg[k]);
    }
    assert_int_equal(nf_trainer_swap_average(t), NF_OK);
    assert_memory_equal(nf_flow_params(f), avg, sizeof(nf_real) * (size_t)np);
    free(avg);
    nf_trainer_free(t), nf_flow_free(f), nf_dataset_free(ds);
}

static void test_resume_equivalence(void **state) {
    (void)state;
    nf_dataset *ds;
    assert_int_equal(nf_dataset_toy("moons", 100, 1, &ds), NF_OK);
    nf_config c;
    nf_config_default(&c, NF_MODEL_REALNVP, 2);
    c.depth = 3, c.batchnorm = 1, c.actnorm = 1;
    resume_case(&c, ds, NULL, 11, 9, 0);
    resume_case(&c, ds, NULL, 11, 9, 0.9);
    nf_dataset_free(ds);
    nf_images im = {40, 1, 8, 8, malloc(40 * 64), NULL};
    nf_rng r;
    nf_rng_seed(&r, 2);
    for (int i = 0; i < 40 * 64; i++) im.pix[i] = (uint8_t)(nf_rng_u64(&r) & 255);
    nf_config_default_image(&c, NF_MODEL_GLOW, 1, 8, 8);
    c.depth = 1, c.hidden = 4;
    resume_case(&c, NULL, &im, 7, 6, 0);
    resume_case(&c, NULL, &im, 7, 6, 0.9);
    free(im.pix);
}

/* The divergence guard (nflow.h, nf_trainer_step), with a planted divergence: the parameters blown up
 * by ×50 after 350 healthy steps. Then 20 troubled steps in a row roll back to the older snapshot (the
 * one after step 200: snapshots every 100 healthy steps, two held), parameters and average bit for bit,
 * the rate halved; training goes on finite; a checkpoint keeps the halving; once the roll-backs are
 * spent the next divergence is NF_ERR_DIVERGED with the snapshot restored; rollbacks = 0 is no guard. */
static nf_trainer *guard_run(nf_flow **f, const nf_dataset *ds, int32_t rollbacks, int steps, int at, nf_real **p100, nf_real **a100) {
    nf_config c;
    nf_config_default(&c, NF_MODEL_REALNVP, 2);
    assert_int_equal(nf_flow_create(&c, f), NF_OK);
    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 64, o.adam.warmup = 20, o.ema = 0.9, o.rollbacks = rollbacks;
    nf_trainer *t;
    assert_int_equal(nf_trainer_create(*f, ds, &o, &t), NF_OK);
    int64_t np = nf_flow_num_params(*f);
    double loss, gn;
    for (int s = 1; s <= steps; s++) {
        assert_int_equal(nf_trainer_step(t, &loss, &gn), NF_OK);
        if (s == at && p100) { /* the parameters and their average after step `at` (caller frees) */
            *p100 = realloc(*p100, sizeof(nf_real) * (size_t)np), *a100 = realloc(*a100, sizeof(nf_real) * (size_t)np);
            memcpy(*p100, nf_flow_params(*f), sizeof(nf_real) * (size_t)np);
            assert_int_equal(nf_trainer_swap_average(t), NF_OK);
            memcpy(*a100, nf_flow_params(*f), sizeof(nf_real) * (size_t)np);
            assert_int_equal(nf_trainer_swap_average(t), NF_OK);
        }
    }
    assert_int_equal(nf_trainer_rollbacks(t, NULL), 0);
    return t;
}

static void blow_up(nf_flow *f) {
    nf_real *p = nf_flow_params(f);
    for (int64_t k = 0, np = nf_flow_num_params(f); k < np; k++) p[k] *= 50;
}

/* Steps until the guard acts; returns how many it took (the acting one included) and its status. */
static int until_guard(nf_trainer *t, int32_t before, nf_status *st) {
    double loss, gn;
    for (int i = 1; i <= 40; i++) {
        *st = nf_trainer_step(t, &loss, &gn);
        if (*st == NF_ERR_DIVERGED || nf_trainer_rollbacks(t, NULL) != before) return i;
        assert_true(*st == NF_OK || *st == NF_ERR_NUMERIC);
    }
    return 0;
}

static void test_divergence_guard(void **state) {
    (void)state;
    nf_dataset *ds;
    assert_int_equal(nf_dataset_toy("moons", 4000, 1, &ds), NF_OK);
    nf_flow *f;
    nf_real *p100 = NULL, *a100 = NULL;
    nf_trainer *t = guard_run(&f, ds, 8, 350, 200, &p100, &a100); /* snapshots after 100, 200, 300: the last two held */
    size_t bytes = sizeof(nf_real) * (size_t)nf_flow_num_params(f);
    double loss, gn, before;
    nf_flow_set_training(f, 0);
    double ll, se;
    assert_int_equal(nf_flow_evaluate(f, ds, &ll, &se), NF_OK);
    before = -ll;
    nf_flow_set_training(f, 1);
    blow_up(f);
    nf_status st;
    int64_t undone;
    assert_int_equal(until_guard(t, 0, &st), 20);
    assert_int_equal(st, NF_OK);
    assert_int_equal(nf_trainer_rollbacks(t, &undone), 1);
    assert_int_equal(undone, 350 + 20 - 200);
    assert_memory_equal(nf_flow_params(f), p100, bytes);
    assert_int_equal(nf_trainer_swap_average(t), NF_OK);
    assert_memory_equal(nf_flow_params(f), a100, bytes);
    assert_int_equal(nf_trainer_swap_average(t), NF_OK);
    for (int s = 0; s < 100; s++) { /* on from there, finite, at half the rate */
        assert_int_equal(nf_trainer_step(t, &loss, &gn), NF_OK);
        assert_true(isfinite(loss));
    }
    assert_int_equal(nf_trainer_rollbacks(t, NULL), 1);
    nf_flow_set_training(f, 0);
    assert_int_equal(nf_flow_evaluate(f, ds, &ll, &se), NF_OK);
    nf_flow_set_training(f, 1);
    print_message("  guard: NLL %.3f before the blow-up, %.3f 100 steps after the roll-back\n", before, -ll);
    assert_true(-ll < before + 0.2);
    /* the halving is in the checkpoint: a resumed run continues bit for bit */
    char dir[] = "/tmp/nflow-test-guard-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/g.ckpt", dir);
    assert_int_equal(nf_trainer_save(t, path), NF_OK);
    nf_flow *g;
    nf_trainer *tg;
    assert_int_equal(nf_flow_load(path, &g), NF_OK);
    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 64, o.adam.warmup = 20, o.ema = 0.9;
    assert_int_equal(nf_trainer_create(g, ds, &o, &tg), NF_OK);
    char meta[1024];
    assert_int_equal(nf_trainer_resume_meta(tg, path, meta, sizeof meta), NF_OK);
    assert_int_equal(nf_trainer_rollbacks(tg, NULL), 1);
    /* the roll-back restarted Adam's moments after its 350 updates (the 20 troubled steps made none; the
     * bias correction counts from there): the checkpoint says so, and the resumed run below continues bit
     * for bit only because it is read back */
    assert_non_null(strstr(meta, "\"adam_t0\":350"));
    for (int s = 0; s < 30; s++) {
        assert_int_equal(nf_trainer_step(t, &loss, &gn), NF_OK);
        assert_int_equal(nf_trainer_step(tg, &loss, &gn), NF_OK);
    }
    assert_memory_equal(nf_flow_params(f), nf_flow_params(g), bytes);
    nf_trainer_free(tg), nf_flow_free(g), nf_trainer_free(t), nf_flow_free(f);
    unlink(path);
    rmdir(dir);
    /* one roll-back allowed: the second divergence stops, with the snapshot's parameters */
    t = guard_run(&f, ds, 1, 250, 100, &p100, &a100);
    blow_up(f);
    assert_int_equal(until_guard(t, 0, &st), 20);
    assert_int_equal(st, NF_OK);
    blow_up(f);
    assert_int_equal(until_guard(t, 1, &st), 20);
    assert_int_equal(st, NF_ERR_DIVERGED);
    assert_non_null(strstr(nf_last_error(), "diverged again after 1 roll-backs"));
    assert_int_equal(nf_trainer_rollbacks(t, NULL), 1);
    assert_memory_equal(nf_flow_params(f), p100, bytes); /* the only snapshot left */
    nf_trainer_free(t), nf_flow_free(f);
    /* rollbacks = 0: no guard, the blown-up model trains on */
    t = guard_run(&f, ds, 0, 250, 0, NULL, NULL);
    blow_up(f);
    assert_int_equal(until_guard(t, 0, &st), 0);
    nf_trainer_free(t), nf_flow_free(f);
    free(p100), free(a100);
    nf_dataset_free(ds);
}

/* A non-finite parameter stops the step before anything moves, named by its index: the first one, wherever
 * it lies among the checked chunks (a model of over 65 536 parameters, so the check runs in parallel). */
static void test_nonfinite_parameter(void **state) {
    (void)state;
    nf_dataset *ds;
    assert_int_equal(nf_dataset_toy("moons", 64, 1, &ds), NF_OK);
    nf_config c;
    nf_config_default(&c, NF_MODEL_REALNVP, 2);
    c.depth = 4, c.hidden = 128;
    nf_flow *f;
    assert_int_equal(nf_flow_create(&c, &f), NF_OK);
    int64_t np = nf_flow_num_params(f);
    assert_true(np > 65536);
    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 16;
    nf_trainer *t;
    assert_int_equal(nf_trainer_create(f, ds, &o, &t), NF_OK);
    double loss, gn;
    assert_int_equal(nf_trainer_step(t, &loss, &gn), NF_OK);
    nf_real *p = nf_flow_params(f), *copy = malloc(sizeof(nf_real) * (size_t)np);
    const int64_t at[3][2] = {{np - 1, -1}, {40000, np - 3}, {5, 20000}}; /* bad index, a later bad one (or −1) */
    for (int k = 0; k < 3; k++) {
        nf_real keep0 = p[at[k][0]], keep1 = at[k][1] >= 0 ? p[at[k][1]] : 0;
        p[at[k][0]] = k == 1 ? (nf_real)INFINITY : (nf_real)NAN;
        if (at[k][1] >= 0) p[at[k][1]] = (nf_real)-INFINITY;
        memcpy(copy, p, sizeof(nf_real) * (size_t)np);
        assert_int_equal(nf_trainer_step(t, &loss, &gn), NF_ERR_NUMERIC);
        char want[64];
        snprintf(want, sizeof want, "parameter %lld is not finite", (long long)at[k][0]);
        assert_non_null(strstr(nf_last_error(), want));
        assert_memory_equal(p, copy, sizeof(nf_real) * (size_t)np);
        p[at[k][0]] = keep0;
        if (at[k][1] >= 0) p[at[k][1]] = keep1;
    }
    assert_int_equal(nf_trainer_step(t, &loss, &gn), NF_OK);
    free(copy);
    nf_trainer_free(t), nf_flow_free(f), nf_dataset_free(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_realnvp_8gaussians), cmocka_unit_test(test_glow_8gaussians),
        cmocka_unit_test(test_nice_8gaussians),    cmocka_unit_test(test_realnvp_moons),
        cmocka_unit_test(test_nice_moons),         cmocka_unit_test(test_csv_standardized_units),
        cmocka_unit_test(test_maf_8gaussians),     cmocka_unit_test(test_iaf_moons),
        cmocka_unit_test(test_glow_fashion_mnist_subset), cmocka_unit_test(test_resume_equivalence),
        cmocka_unit_test(test_average_rule),      cmocka_unit_test(test_divergence_guard),
        cmocka_unit_test(test_nonfinite_parameter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
