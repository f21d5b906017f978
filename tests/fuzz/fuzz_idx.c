/* fuzz_idx.c — libFuzzer target: nf_images_load_idx, raw or gzip, with or without a label file.
 * Input layout: byte 0 = flags (bit 0: gzip the images, bit 1: a label file is given, bit 2: gzip the
 * labels), bytes 1–2 = label file length L (little-endian, only with bit 1), then L bytes of labels,
 * then the image file. Compression is done here (zlib), so the fuzzer mutates the IDX contents
 * behind a valid gzip stream as well as the raw/gzip detection (a raw input may itself be gzip). */
#include "fuzz_common.h"

#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Write data to "<scratch>/name", through gzip when gz. */
static void put(char *path, size_t n, const char *name, const uint8_t *d, size_t len, int gz) {
    if (!gz) {
        fuzz_write(path, n, name, d, len);
        return;
    }
    snprintf(path, n, "%s/%s", fuzz_dir(), name);
    gzFile g = gzopen(path, "wb1");
    if (!g) abort();
    if (len && gzwrite(g, d, (unsigned)len) != (int)len) abort();
    if (gzclose(g) != Z_OK) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned flags = data[0];
    data++, size--;
    size_t L = 0;
    if (flags & 2) {
        if (size < 2) return 0;
        L = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2, size -= 2;
        if (L > size) L = size;
    }
    char ipath[512], lpath[512];
    if (flags & 2) put(lpath, sizeof lpath, "labels.idx", data, L, flags & 4);
    put(ipath, sizeof ipath, "images.idx", data + L, size - L, flags & 1);
    nf_images *im = NULL;
    nf_status st = nf_images_load_idx(ipath, flags & 2 ? lpath : NULL, &im);
    fuzz_check_reason(st);
    if (st == NF_OK) {
        if (!im || im->n < 1 || im->C != 1 || im->H < 1 || im->W < 1) abort();
        volatile unsigned s = 0; /* touch every pixel and label: ASan checks the sizes */
        for (int64_t i = 0; i < im->n * im->H * im->W; i++) s += im->pix[i];
        if (im->labels)
            for (int64_t i = 0; i < im->n; i++) s += (unsigned)im->labels[i];
        (void)s;
    } else if (im) abort();
    nf_images_free(im);
    unlink(ipath);
    if (flags & 2) unlink(lpath);
    return 0;
}
