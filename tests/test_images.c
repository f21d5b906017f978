/* test_images.c — IDX (gzip and raw) and CIFAR-10 loaders on small files made here (an asymmetric "F"
 * so flips and transposes show), every malformed-file error, dequantisation and bits/dim, and the real
 * Fashion-MNIST test set from Debian's dataset-fashion-mnist. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "internal.h"

static char g_dir[64];

static const char *at(const char *name) {
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

/* 5 rows × 4 columns "F": pixel (i, j) = 200 where the F is, else i·4 + j */
static uint8_t f_pixel(int img, int i, int j) {
    int on = j == 0 || i == 0 || (i == 2 && j < 3);
    return (uint8_t)(on ? 200 + img : i * 4 + j);
}

static void put_be32(unsigned char *p, uint32_t v) { p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v; }

/* write an IDX file; gz: compress; n_hdr: the count written in the header; n_data: images written */
static const char *write_idx(const char *name, int gz, uint32_t magic, uint32_t n_hdr, int n_data, int labels) {
    unsigned char buf[4096];
    size_t len = 0;
    put_be32(buf, magic), len = 4;
    put_be32(buf + len, n_hdr), len += 4;
    if (!labels) put_be32(buf + len, 5), put_be32(buf + len + 4, 4), len += 8;
    for (int s = 0; s < n_data; s++) {
        if (labels) buf[len++] = (uint8_t)(s % 3);
        else
            for (int i = 0; i < 5; i++)
                for (int j = 0; j < 4; j++) buf[len++] = f_pixel(s, i, j);
    }
    const char *p = at(name);
    if (gz) {
        gzFile g = gzopen(p, "wb");
        gzwrite(g, buf, (unsigned)len);
        gzclose(g);
    } else {
        FILE *fp = fopen(p, "wb");
        fwrite(buf, 1, len, fp);
        fclose(fp);
    }
    return p;
}

static void test_idx_ok(void **state) {
    (void)state;
    for (int gz = 0; gz < 2; gz++) {
        const char *ip = write_idx(gz ? "i.gz" : "i.raw", gz, 0x803, 3, 3, 0);
        const char *lp = write_idx(gz ? "l.gz" : "l.raw", gz, 0x801, 3, 3, 1);
        nf_images *im;
        assert_int_equal(nf_images_load_idx(ip, lp, &im), NF_OK);
        assert_int_equal(im->n, 3);
        assert_int_equal(im->C, 1);
        assert_int_equal(im->H, 5);
        assert_int_equal(im->W, 4);
        for (int s = 0; s < 3; s++) {
            assert_int_equal(im->labels[s], s % 3);
            for (int i = 0; i < 5; i++)
                for (int j = 0; j < 4; j++) assert_int_equal(im->pix[(s * 5 + i) * 4 + j], f_pixel(s, i, j));
        }
        nf_images_free(im);
    }
}

static void expect_err(const char *ip, const char *lp, const char *msg) {
    nf_images *im = (nf_images *)1;
    nf_status st = nf_images_load_idx(ip, lp, &im);
    assert_true(st == NF_ERR_FORMAT || st == NF_ERR_IO);
    assert_null(im);
    if (!strstr(nf_last_error(), msg)) fail_msg("expected '%s' in '%s'", msg, nf_last_error());
}

static void test_idx_errors(void **state) {
    (void)state;
    char good[256];
    snprintf(good, sizeof good, "%s", write_idx("good.gz", 1, 0x803, 3, 3, 0));
    expect_err(write_idx("magic.gz", 1, 0x903, 3, 3, 0), NULL, "not an IDX file");
    expect_err(write_idx("dims.gz", 1, 0x801, 3, 3, 1), NULL, "1 dimensions, expected 3");
    expect_err(write_idx("short.gz", 1, 0x803, 4, 3, 0), NULL, "truncated");
    expect_err(write_idx("long.raw", 0, 0x803, 2, 3, 0), NULL, "trailing bytes");
    expect_err(good, write_idx("lcount.gz", 1, 0x801, 2, 2, 1), "2 labels for 3 images");
    expect_err(good, write_idx("lmagic.gz", 1, 0x803, 3, 3, 0), "3 dimensions, expected 1");
    expect_err(at("none.gz"), NULL, "cannot open");
    /* a gzip stream damaged in the middle */
    FILE *fp = fopen(good, "rb");
    unsigned char b[512];
    size_t n = fread(b, 1, sizeof b, fp);
    fclose(fp);
    b[n / 2] ^= 0xff, b[n / 2 + 1] ^= 0xff;
    const char *bad = at("corrupt.gz");
    fp = fopen(bad, "wb");
    fwrite(b, 1, n, fp);
    fclose(fp);
    expect_err(bad, NULL, "corrupt.gz");
}

static void test_cifar(void **state) {
    (void)state;
    const char *p = at("c.bin");
    FILE *fp = fopen(p, "wb");
    for (int r = 0; r < 2; r++) {
        fputc(r == 0 ? 7 : 2, fp);
        for (int k = 0; k < 3072; k++) fputc((k / 1024) * 50 + r, fp); /* plane c holds 50·c + r */
    }
    fclose(fp);
    const char *paths[2] = {p, p};
    nf_images *im;
    assert_int_equal(nf_images_load_cifar(paths, 2, &im), NF_OK);
    assert_int_equal(im->n, 4);
    assert_int_equal(im->C, 3);
    assert_int_equal(im->labels[0], 7);
    assert_int_equal(im->labels[3], 2);
    assert_int_equal(im->pix[3072 + 2048 + 5], 101); /* image 1, blue plane */
    nf_images_free(im);
    fp = fopen(p, "ab");
    fputc(0, fp); /* a partial record */
    fclose(fp);
    assert_int_equal(nf_images_load_cifar(paths, 1, &im), NF_ERR_FORMAT);
    assert_non_null(strstr(nf_last_error(), "whole number of CIFAR-10 records"));
    fp = fopen(p, "wb");
    fputc(12, fp);
    for (int k = 0; k < 3072; k++) fputc(0, fp);
    fclose(fp);
    assert_int_equal(nf_images_load_cifar(paths, 1, &im), NF_ERR_FORMAT);
    assert_non_null(strstr(nf_last_error(), "label 12"));
}

/* 5-bit reduction: pixel 200 → ⌊200/8⌋ = 25 → (25 + ½)/32 − ½ with u = ½; bits/dim of a uniform
 * density on [−½, ½)^D (NLL 0) is exactly the bit depth. */
static void test_dequantize_and_bpd(void **state) {
    (void)state;
    const char *ip = write_idx("dq.gz", 1, 0x803, 2, 2, 0);
    nf_images *im;
    assert_int_equal(nf_images_load_idx(ip, NULL, &im), NF_OK);
    nf_real x[40];
    int64_t idx[2] = {1, 0};
    nf_images_dequantize(im, idx, 2, 5, NULL, x);
    assert_true(fabs(x[0] - ((201 >> 3) + 0.5) / 32.0 + 0.5) < 1e-6); /* image 1's F pixel is 201 */
    assert_true(fabs(x[20] - ((200 >> 3) + 0.5) / 32.0 + 0.5) < 1e-6);
    nf_rng r;
    nf_rng_seed(&r, 1);
    nf_images_dequantize(im, NULL, 2, 8, &r, x);
    for (int k = 0; k < 40; k++) assert_true(x[k] >= -0.5 && x[k] < 0.5);
    nf_images_free(im);
    assert_true(fabs(nf_bits_per_dim(0.0, 784, 8) - 8.0) < 1e-12);
    assert_true(fabs(nf_bits_per_dim(-784 * log(2.0), 784, 8) - 7.0) < 1e-12);
}

/* The real Fashion-MNIST test set: 10 000 images of 28 × 28, 1 000 of each of the 10 classes. */
static void test_fashion_mnist(void **state) {
    (void)state;
    nf_images *im;
    assert_int_equal(nf_images_load_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                                        "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", &im), NF_OK);
    assert_int_equal(im->n, 10000);
    assert_int_equal(im->H, 28);
    assert_int_equal(im->W, 28);
    int count[10] = {0};
    for (int64_t i = 0; i < im->n; i++) {
        assert_true(im->labels[i] >= 0 && im->labels[i] < 10);
        count[im->labels[i]]++;
    }
    for (int c = 0; c < 10; c++) assert_int_equal(count[c], 1000);
    nf_images_free(im);
}

static int setup(void **s) {
    (void)s;
    snprintf(g_dir, sizeof g_dir, "/tmp/nflow-test-img-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}
static int teardown(void **s) {
    (void)s;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_idx_ok), cmocka_unit_test(test_idx_errors), cmocka_unit_test(test_cifar),
                                       cmocka_unit_test(test_dequantize_and_bpd), cmocka_unit_test(test_fashion_mnist)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
