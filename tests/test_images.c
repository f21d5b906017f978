/* test_images.c — IDX (gzip and raw) and CIFAR-10 loaders on small files made here (an asymmetric "F"
 * so flips and transposes show), every malformed-file error, dequantisation and bits/dim, and the real
 * Fashion-MNIST test set from Debian's dataset-fashion-mnist; folders of PNG/JPEG images written here
 * (centre crop, area resize, grey detection, class folders, bad files) and the shuffled split. */
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

#include "capture_stderr.h"
#include <jpeglib.h>
#include <png.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "core/files.h"
#include "data/data.h"
#include "io/io.h"
#include "kernels/kernels.h"
#include "models/models.h"
#include "train/train.h"

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

/* ------------------------------------------------------------------ folders of PNG / JPEG */
/* w × h PNG; gray: 1 channel. pix(x, y, c) gives the value. */
static void write_png(const char *path, int w, int h, int gray, uint8_t (*pix)(int, int, int)) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION, im.width = (png_uint_32)w, im.height = (png_uint_32)h;
    im.format = gray ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    int C = gray ? 1 : 3;
    uint8_t *buf = malloc((size_t)(w * h * C));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < C; c++) buf[(y * w + x) * C + c] = pix(x, y, c);
    assert_true(png_image_write_to_file(&im, path, 0, buf, 0, NULL));
    free(buf);
}

/* A w × h grey JPEG of constant value v (w ≤ 64) at quality 100; progressive (several scans) if asked. */
static void write_jpeg_gray(const char *path, int w, int h, uint8_t v, int progressive) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    jpeg_stdio_dest(&ci, fp);
    ci.image_width = (JDIMENSION)w, ci.image_height = (JDIMENSION)h, ci.input_components = 1, ci.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 100, TRUE);
    if (progressive) jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    uint8_t row[64];
    memset(row, v, sizeof row);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW r = row;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(fp);
}

/* 6 × 4: the outer columns are pure red (cropped away), the inner 4 × 4 a constant colour (10, 20, 30) */
static uint8_t px_framed(int x, int y, int c) { (void)y; return x == 0 || x == 5 ? (c == 0 ? 255 : 0) : (uint8_t)(10 * (c + 1)); }
/* 4 × 4: the left half 0, the right half 200 — resized to 2 × 2: columns 0 and 200 */
static uint8_t px_halves(int x, int y, int c) { (void)y, (void)c; return x < 2 ? 0 : 200; }
static uint8_t px_gray(int x, int y, int c) { (void)c; return (uint8_t)(16 * y + x); }


/* A corrupt image in a folder: NF_ERR_FORMAT, a one-line reason naming the file, nothing on stderr
 * (libpng's and libjpeg's default handlers would print there). */
static void expect_quiet_failure(const char *dir, const char *file, const char *what) {
    char errp[320];
    snprintf(errp, sizeof errp, "%s.stderr", g_dir);
    nf_images *im = NULL;
    int saved = stderr_begin(errp);
    nf_status st = nf_images_load_folder(dir, 4, 0, &im);
    long printed = stderr_end(saved, errp);
    remove(errp);
    assert_int_equal(st, NF_ERR_FORMAT);
    assert_null(im);
    assert_non_null(strstr(nf_last_error(), file));
    assert_non_null(strstr(nf_last_error(), what));
    assert_null(strchr(nf_last_error(), '\n'));
    assert_int_equal(printed, 0);
}

/* Corrupt PNGs (bad CRC in the image data, cut short, garbage after the signature) and JPEGs are
 * refused with the file's name and libpng's/libjpeg's message, and the libraries print nothing. */
static void test_corrupt_images_quiet(void **state) {
    (void)state;
    char dir[256], p[320];
    snprintf(dir, sizeof dir, "%s/corrupt", g_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/crc.png", dir);
    write_png(p, 16, 16, 0, px_framed);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    FILE *fp = fopen(p, "r+b");
    assert_non_null(fp);
    unsigned char *b = malloc((size_t)sb.st_size);
    assert_true(fread(b, 1, (size_t)sb.st_size, fp) == (size_t)sb.st_size);
    unsigned char *idat = NULL;
    for (long i = 8; i + 4 < sb.st_size && !idat; i++)
        if (memcmp(b + i, "IDAT", 4) == 0) idat = b + i;
    assert_non_null(idat);
    idat[6] ^= 0x55; /* a byte of the compressed data: the chunk's CRC no longer matches */
    rewind(fp);
    assert_true(fwrite(b, 1, (size_t)sb.st_size, fp) == (size_t)sb.st_size);
    fclose(fp);
    free(b);
    expect_quiet_failure(dir, "crc.png: ", "PNG");
    assert_int_equal(truncate(p, sb.st_size / 2), 0); /* cut inside the image data */
    expect_quiet_failure(dir, "crc.png: ", "PNG");
    remove(p);
    snprintf(p, sizeof p, "%s/junk.png", dir);
    fp = fopen(p, "wb");
    fputs("\x89PNG\r\n\x1a\n not really a PNG", fp), fclose(fp);
    expect_quiet_failure(dir, "junk.png: ", "PNG");
    remove(p);
    snprintf(p, sizeof p, "%s/cut.jpg", dir);
    write_jpeg_gray(p, 64, 64, 50, 0);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(truncate(p, sb.st_size - 20), 0); /* libjpeg's warning path */
    expect_quiet_failure(dir, "cut.jpg: ", "not a readable JPEG");
    assert_int_equal(truncate(p, 20), 0); /* libjpeg's error path */
    expect_quiet_failure(dir, "cut.jpg: ", "not a readable JPEG");
    remove(p);
    /* a progressive header claiming 20000 × 20000 pixels in a few hundred bytes: refused before libjpeg
     * allocates the whole image's coefficients (at most 512 pixels per byte of file) */
    snprintf(p, sizeof p, "%s/huge.jpg", dir);
    write_jpeg_gray(p, 64, 64, 50, 1);
    assert_int_equal(stat(p, &sb), 0);
    fp = fopen(p, "r+b");
    assert_non_null(fp);
    b = malloc((size_t)sb.st_size);
    assert_true(fread(b, 1, (size_t)sb.st_size, fp) == (size_t)sb.st_size);
    long sof = -1;
    for (long i = 2; i + 9 < sb.st_size && sof < 0; i++)
        if (b[i] == 0xFF && b[i + 1] == 0xC2) sof = i; /* SOF2: progressive, Huffman */
    assert_true(sof > 0);
    b[sof + 5] = 20000 >> 8, b[sof + 6] = 20000 & 255, b[sof + 7] = 20000 >> 8, b[sof + 8] = 20000 & 255;
    rewind(fp);
    assert_true(fwrite(b, 1, (size_t)sb.st_size, fp) == (size_t)sb.st_size);
    fclose(fp);
    free(b);
    expect_quiet_failure(dir, "huge.jpg: ", "truncated JPEG (20000 × 20000 pixels cannot fit");
    remove(p);
}

static void test_folder(void **state) {
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/flat", g_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    char p[320];
    snprintf(p, sizeof p, "%s/a.png", dir), write_png(p, 6, 4, 0, px_framed);
    snprintf(p, sizeof p, "%s/b.PNG", dir), write_png(p, 4, 4, 0, px_halves);
    snprintf(p, sizeof p, "%s/c.jpg", dir), write_jpeg_gray(p, 8, 8, 128, 0);
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    FILE *fp = fopen(p, "w");
    fputs("not an image", fp), fclose(fp);
    nf_images *im;
    assert_int_equal(nf_images_load_folder(dir, 2, 0, &im), NF_OK);
    assert_int_equal(im->n, 3); /* the .txt is ignored; order by name */
    assert_int_equal(im->C, 3), assert_int_equal(im->H, 2), assert_int_equal(im->W, 2);
    assert_null(im->labels);
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 4; k++) assert_int_equal(im->pix[c * 4 + k], 10 * (c + 1)); /* the red frame is cropped */
    const uint8_t *b = im->pix + 12;
    for (int c = 0; c < 3; c++) assert_int_equal(b[c * 4 + 0], 0), assert_int_equal(b[c * 4 + 1], 200), assert_int_equal(b[c * 4 + 3], 200);
    for (int k = 0; k < 12; k++) assert_true(abs(im->pix[24 + k] - 128) <= 1); /* JPEG at quality 100 */
    nf_images_free(im);
    /* forced grey: BT.601 luma of (10, 20, 30) = 17.6 → 18 */
    assert_int_equal(nf_images_load_folder(dir, 2, 1, &im), NF_OK);
    assert_int_equal(im->C, 1), assert_int_equal(im->pix[0], 18);
    nf_images_free(im);
    /* upscaling 4 × 4 to 8 × 8 repeats pixels */
    assert_int_equal(nf_images_load_folder(dir, 8, 0, &im), NF_OK);
    assert_int_equal(im->pix[64 * 3 + 1], 0), assert_int_equal(im->pix[64 * 3 + 4], 200);
    nf_images_free(im);

    /* class folders: labels by folder name order; all-grey images give one channel */
    snprintf(dir, sizeof dir, "%s/classes", g_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    const char *cls[2] = {"boots", "shirts"};
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, cls[k]);
        assert_int_equal(mkdir(p, 0755), 0);
        for (int i = 0; i <= k; i++) {
            snprintf(p, sizeof p, "%s/%s/%d.png", dir, cls[k], i);
            write_png(p, 4, 4, 1, px_gray);
        }
    }
    assert_int_equal(nf_images_load_folder(dir, 4, 0, &im), NF_OK);
    assert_int_equal(im->n, 3), assert_int_equal(im->C, 1);
    assert_non_null(im->labels);
    assert_int_equal(im->labels[0], 0), assert_int_equal(im->labels[1], 1), assert_int_equal(im->labels[2], 1);
    for (int k = 0; k < 16; k++) assert_int_equal(im->pix[k], px_gray(k % 4, k / 4, 0));
    /* the shuffled split keeps every image once, with its label */
    nf_images *tr, *te;
    assert_int_equal(nf_images_split(im, 0.34, 5, &tr, &te), NF_OK);
    assert_int_equal(tr->n, 2), assert_int_equal(te->n, 1);
    assert_int_equal(tr->labels[0] + tr->labels[1] + te->labels[0], 2);
    nf_images_free(tr), nf_images_free(te), nf_images_free(im);

    /* errors name the file or folder */
    snprintf(p, sizeof p, "%s/stray.png", dir), write_png(p, 4, 4, 1, px_gray);
    assert_int_equal(nf_images_load_folder(dir, 4, 0, &im), NF_ERR_FORMAT);
    assert_non_null(strstr(nf_last_error(), "stray.png: images next to class folders"));
    snprintf(dir, sizeof dir, "%s/bad", g_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/broken.png", dir);
    fp = fopen(p, "w");
    fputs("\x89PNG garbage", fp), fclose(fp);
    assert_int_equal(nf_images_load_folder(dir, 4, 0, &im), NF_ERR_FORMAT);
    assert_non_null(strstr(nf_last_error(), "broken.png: "));
    remove(p);
    snprintf(p, sizeof p, "%s/cut.jpg", dir);
    write_jpeg_gray(p, 8, 8, 50, 0);
    assert_int_equal(truncate(p, 20), 0);
    assert_int_equal(nf_images_load_folder(dir, 4, 0, &im), NF_ERR_FORMAT);
    assert_non_null(strstr(nf_last_error(), "cut.jpg: not a readable JPEG"));
    write_jpeg_gray(p, 64, 64, 50, 0); /* cut inside the scan data: libjpeg only warns; we refuse */
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(truncate(p, sb.st_size - 20), 0);
    assert_int_equal(nf_images_load_folder(dir, 4, 0, &im), NF_ERR_FORMAT);
    assert_non_null(strstr(nf_last_error(), "cut.jpg: not a readable JPEG"));
    remove(p);
    assert_int_equal(nf_images_load_folder(dir, 4, 0, &im), NF_ERR_FORMAT);
    assert_non_null(strstr(nf_last_error(), "no PNG or JPEG images"));
    assert_int_equal(nf_images_load_folder("/nonexistent-nflow", 4, 0, &im), NF_ERR_IO);
    assert_non_null(strstr(nf_last_error(), "/nonexistent-nflow: cannot open folder"));
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
                                       cmocka_unit_test(test_dequantize_and_bpd), cmocka_unit_test(test_fashion_mnist), cmocka_unit_test(test_folder),
                                       cmocka_unit_test(test_corrupt_images_quiet)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
