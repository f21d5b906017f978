/* fuzz_cifar.c — libFuzzer target: nf_images_load_cifar on one or two batch files. Input: byte 0 odd
 * means two files (the rest split at its middle), even one file. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int two = data[0] & 1;
    data++, size--;
    size_t cut = two ? size / 2 : size;
    char p0[512], p1[512];
    fuzz_write(p0, sizeof p0, "data_batch_1.bin", data, cut);
    if (two) fuzz_write(p1, sizeof p1, "data_batch_2.bin", data + cut, size - cut);
    const char *paths[2] = {p0, p1};
    nf_images *im = NULL;
    nf_status st = nf_images_load_cifar(paths, two ? 2 : 1, &im);
    fuzz_check_reason(st);
    if (st == NF_OK) {
        if (!im || im->n < 1 || im->C != 3 || im->H != 32 || im->W != 32 || !im->labels) abort();
        for (int64_t i = 0; i < im->n; i++)
            if (im->labels[i] < 0 || im->labels[i] > 9) abort();
        volatile unsigned s = 0;
        for (int64_t i = 0; i < im->n * 3 * 32 * 32; i++) s += im->pix[i];
        (void)s;
    } else if (im) abort();
    nf_images_free(im);
    unlink(p0);
    if (two) unlink(p1);
    return 0;
}
