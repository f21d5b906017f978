/* fuzz_folder.c — libFuzzer target: one PNG or JPEG file in a folder, through nf_images_load_folder
 * (libpng / libjpeg decoding, scaling, cropping, grey conversion, class folders).
 * Input: byte 0 = flags (bits 0–1: name "x.png", "x.PNG", "x.jpg", "x.jpeg"; bits 2–3: channels 0, 1,
 * 3, 0; bit 4: put the file in a class sub-folder), byte 1 = image size − 1 (1..64), then the file. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    static const char *const names[4] = {"x.png", "x.PNG", "x.jpg", "x.jpeg"};
    static const int32_t chans[4] = {0, 1, 3, 0};
    unsigned flags = data[0];
    int32_t isize = 1 + data[1] % 64, C = chans[(flags >> 2) & 3];
    int classes = (flags >> 4) & 1;
    data += 2, size -= 2;
    char root[512], sub[600], name[64], file[700];
    snprintf(root, sizeof root, "%s/imgs", fuzz_dir());
    snprintf(sub, sizeof sub, "%s/c0", root);
    mkdir(root, 0700);
    if (classes) mkdir(sub, 0700);
    snprintf(name, sizeof name, "imgs/%s%s", classes ? "c0/" : "", names[flags & 3]);
    fuzz_write(file, sizeof file, name, data, size);
    nf_images *im = NULL;
    nf_status st = nf_images_load_folder(root, isize, C, &im);
    fuzz_check_reason(st);
    if (st == NF_OK) {
        if (!im || im->n != 1 || im->H != isize || im->W != isize || (im->C != 1 && im->C != 3)) abort();
        if (C && im->C != C) abort();
        if (classes != (im->labels != NULL)) abort();
        volatile unsigned s = 0;
        for (int64_t i = 0; i < (int64_t)im->C * isize * isize; i++) s += im->pix[i];
        (void)s;
    } else if (im) abort();
    nf_images_free(im);
    unlink(file);
    if (classes) rmdir(sub);
    rmdir(root);
    return 0;
}
