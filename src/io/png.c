/* io/png.c — PNG output with libpng (errors through the library's reason, never printed): an RGB
 * image, a grid of model images. Written to a temporary file and renamed. */
#include "core/files.h"

#include <png.h>

/* What libpng reports while writing: its last error or warning message (copied, so that the text
 * outlives the png struct). libpng's default handlers print to stderr; these never print. */
typedef struct {
    char msg[200];
} png_msgs;

/* libpng error callback: record the message in the png_msgs behind png's error pointer and longjmp
 * back to the setjmp of nf_png_write (libpng requires that an error function does not return). */
static void png_on_error(png_structp png, png_const_charp msg) {
    png_msgs *m = (png_msgs *)png_get_error_ptr(png);
    if (m) snprintf(m->msg, sizeof m->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

/* libpng warning callback: keep the message (it names the cause if an error follows), print nothing. */
static void png_on_warning(png_structp png, png_const_charp msg) {
    png_msgs *m = (png_msgs *)png_get_error_ptr(png);
    if (m && !m->msg[0]) snprintf(m->msg, sizeof m->msg, "warning: %s", msg ? msg : "?");
}

/* Write the w × h 8-bit RGB image rgb (row-major, 3 bytes a pixel, borrowed) to path as a PNG, through
 * a temporary file and a rename; NF_ERR_IO (with libpng's message) if anything fails, nothing left behind. */
nf_status nf_png_write(const char *path, const uint8_t *rgb, int32_t w, int32_t h) {
    if (w < 1 || h < 1) return nf_fail(NF_ERR_INVALID, "%s: empty image", path);
    char tmp[4096];
    FILE *fp = nf_open_temp(path, tmp, sizeof tmp);
    if (!fp) return NF_ERR_IO;
    /* written by the callbacks between setjmp and longjmp: not an automatic variable of this function,
     * whose value would be indeterminate after the longjmp (C11 7.13.2.1) */
    static _Thread_local png_msgs msgs;
    memset(&msgs, 0, sizeof msgs);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &msgs, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        nf_commit_temp(fp, tmp, path, 0);
        return nf_fail(NF_ERR_NOMEM, "%s: out of memory for PNG", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        nf_commit_temp(fp, tmp, path, 0); /* closes and removes the temporary file */
        return nf_fail(NF_ERR_IO, "%s: PNG write failed: %s", path, msgs.msg[0] ? msgs.msg : "libpng error");
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int32_t y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)w * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return nf_commit_temp(fp, tmp, path, 1);
}

/* Tile n images x (n, C, H, W) in [−0.5, 0.5) into a grid of `cols` columns, each pixel scale × scale,
 * with 1-pixel gaps, and write it as a PNG at path (x borrowed). NF_ERR_INVALID for bad sizes. */
nf_status nf_images_grid_png(const nf_real *x, int64_t n, int32_t C, int32_t H, int32_t W, int32_t cols,
                             int32_t scale, const char *path) {
    if (n < 1 || cols < 1 || scale < 1 || (C != 1 && C != 3))
        return nf_fail(NF_ERR_INVALID, "%s: an image grid needs n ≥ 1, cols ≥ 1, scale ≥ 1 and 1 or 3 channels", path);
    int64_t rows = (n + cols - 1) / cols, cw = (int64_t)W * scale + 1, chh = (int64_t)H * scale + 1;
    int64_t iw = cols * cw + 1, ih = rows * chh + 1;
    if (iw > 16384 || ih > 16384) return nf_fail(NF_ERR_INVALID, "%s: grid of %lld × %lld pixels is too large", path, (long long)iw, (long long)ih);
    uint8_t *rgb = malloc((size_t)(iw * ih * 3));
    if (!rgb) return nf_fail(NF_ERR_NOMEM, "out of memory");
    memset(rgb, 40, (size_t)(iw * ih * 3)); /* dark grey gaps */
    int64_t P = (int64_t)H * W;
    for (int64_t k = 0; k < n; k++) {
        int64_t r0 = (k / cols) * chh + 1, c0 = (k % cols) * cw + 1;
        for (int32_t i = 0; i < H * scale; i++)
            for (int32_t j = 0; j < W * scale; j++)
                for (int ch = 0; ch < 3; ch++) {
                    double v = x[k * C * P + (int64_t)(C == 3 ? ch : 0) * P + (i / scale) * W + j / scale];
                    double b = floor((v + 0.5) * 256.0);
                    rgb[((r0 + i) * iw + c0 + j) * 3 + ch] = (uint8_t)(!(b >= 0) ? 0 : b > 255 ? 255 : b); /* NaN: black */
                }
    }
    nf_status st = nf_png_write(path, rgb, (int32_t)iw, (int32_t)ih);
    free(rgb);
    return st;
}
