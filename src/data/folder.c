/* folder.c — a folder of PNG/JPEG images as a dataset (libpng's simplified API, libjpeg-turbo).
 * Every image is scaled so that its shorter side is `size` (area averaging) and centre-cropped to
 * size × size. A folder whose entries are sub-folders is a labelled dataset: each sub-folder (in name
 * order) is a class, label = its index. Files of other extensions are ignored; an image file that
 * cannot be decoded is an error naming the file. */
#define _POSIX_C_SOURCE 200809L /* strdup, stat */
#include "data/data.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>

#define MAX_SIDE 32768

/* 1 if name ends with ext (lower-case, with its dot), compared case-insensitively. */
static int has_ext(const char *name, const char *ext) {
    size_t n = strlen(name), e = strlen(ext);
    if (n <= e) return 0;
    for (size_t i = 0; i < e; i++)
        if (tolower((unsigned char)name[n - e + i]) != ext[i]) return 0;
    return 1;
}
/* 1 for a ".png" name (any case). */
static int is_png(const char *name) { return has_ext(name, ".png"); }
/* 1 for a ".jpg" or ".jpeg" name (any case). */
static int is_jpeg(const char *name) { return has_ext(name, ".jpg") || has_ext(name, ".jpeg"); }

/* ---------------------------------------------------------------- decoding to 8-bit RGB */
/* Decode the PNG at path into *rgb (malloc'ed w·h·3 bytes, the caller frees; NULL on failure), its size
 * in *w, *h and *gray = 1 for a grey-scale file. libpng's simplified API (png_image_*) installs its own
 * error and warning handlers (png_safe_error/png_safe_warning), which copy the message into im.message
 * and never print: that message becomes the one-line reason, prefixed with the file's name. */
static nf_status load_png(const char *path, uint8_t **rgb, int32_t *w, int32_t *h, int *gray) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) return nf_fail(NF_ERR_FORMAT, "%s: not a readable PNG (%s)", path, im.message);
    if (im.width < 1 || im.height < 1 || im.width > MAX_SIDE || im.height > MAX_SIDE) {
        png_image_free(&im);
        return nf_fail(NF_ERR_FORMAT, "%s: image of %u × %u pixels (1 to %d per side)", path, im.width, im.height, MAX_SIDE);
    }
    /* deflate expands at most 1032-fold and a pixel takes at least one bit of the inflated rows, so a
     * file of n bytes holds at most 8 · 1032 · n pixels: a header claiming more is refused before the
     * image buffer is allocated (the fuzzer's rule: no allocation the file does not back) */
    struct stat sb;
    if (stat(path, &sb) == 0 && (double)im.width * im.height > 8.0 * 1032.0 * (double)sb.st_size) {
        png_image_free(&im);
        return nf_fail(NF_ERR_FORMAT, "%s: truncated PNG (%u × %u pixels cannot fit in %lld bytes)", path, im.width, im.height, (long long)sb.st_size);
    }
    *gray = !(im.format & PNG_FORMAT_FLAG_COLOR);
    im.format = PNG_FORMAT_RGB; /* alpha is composited over black by libpng */
    *rgb = malloc(PNG_IMAGE_SIZE(im));
    if (!*rgb) {
        png_image_free(&im);
        return nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
    }
    if (!png_image_finish_read(&im, NULL, *rgb, 0, NULL)) {
        free(*rgb), *rgb = NULL;
        return nf_fail(NF_ERR_FORMAT, "%s: corrupt PNG (%s)", path, im.message);
    }
    *w = (int32_t)im.width, *h = (int32_t)im.height;
    return NF_OK;
}

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

/* libjpeg error_exit: format the message into the jpeg_err (never printed) and longjmp to
 * load_jpeg's setjmp; does not return. */
static void jpeg_fail(j_common_ptr c) {
    jpeg_err *e = (jpeg_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}
/* level −1 is a warning about corrupt data (a truncated file, a bad Huffman code): libjpeg would carry
 * on with grey filler; a dataset must not, so it is an error too. Trace messages (level ≥ 0) are ignored. */
static void jpeg_warn(j_common_ptr c, int level) {
    if (level < 0) jpeg_fail(c);
}

/* Decode the JPEG at path into *rgb (malloc'ed w·h·3 bytes, the caller frees), *w, *h and
 * *gray; libjpeg's errors and corrupt-data warnings become NF_ERR_FORMAT naming the file, never printed. */
static nf_status load_jpeg(const char *path, uint8_t **rgb, int32_t *w, int32_t *h, int *gray) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return nf_fail(NF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct jpeg_decompress_struct ci;
    jpeg_err err;
    uint8_t *volatile buf = NULL;
    ci.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_fail;
    err.mgr.emit_message = jpeg_warn;
    if (setjmp(err.jb)) {
        jpeg_destroy_decompress(&ci);
        fclose(fp);
        free(buf);
        return nf_fail(NF_ERR_FORMAT, "%s: not a readable JPEG (%s)", path, err.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_stdio_src(&ci, fp);
    jpeg_read_header(&ci, TRUE);
    /* Refused before jpeg_start_decompress, which for a progressive file allocates the coefficients of
     * the whole image (2 bytes per pixel and component): a 562-byte file claiming 30000 × 30000 pixels
     * cost 1.5 s of CPU there under the fuzzer. A Huffman-coded JPEG spends at least one bit on every 8 × 8 block
     * (its DC code), so a file of n bytes holds at most 512 · n pixels; arithmetic-coded files (rare)
     * are held to the same bound (the fuzzer's rule: no allocation the file does not back). */
    unsigned w0 = ci.image_width, h0 = ci.image_height;
    struct stat sb;
    int bad_side = w0 < 1 || h0 < 1 || w0 > MAX_SIDE || h0 > MAX_SIDE;
    if (bad_side || (fstat(fileno(fp), &sb) == 0 && (double)w0 * h0 > 512.0 * (double)sb.st_size)) {
        jpeg_destroy_decompress(&ci);
        fclose(fp);
        if (bad_side) return nf_fail(NF_ERR_FORMAT, "%s: image of %u × %u pixels (1 to %d per side)", path, w0, h0, MAX_SIDE);
        return nf_fail(NF_ERR_FORMAT, "%s: truncated JPEG (%u × %u pixels cannot fit in %lld bytes)", path, w0, h0, (long long)sb.st_size);
    }
    *gray = ci.jpeg_color_space == JCS_GRAYSCALE;
    ci.out_color_space = JCS_RGB;
    jpeg_start_decompress(&ci);
    if (ci.output_components != 3) { /* the sides were checked above (the output is the image, unscaled) */
        jpeg_destroy_decompress(&ci);
        fclose(fp);
        return nf_fail(NF_ERR_FORMAT, "%s: decodes to %d colour components, not RGB", path, ci.output_components);
    }
    /* the rows are held in a buffer that grows as they are decoded (at most twice what was decoded): a
     * file cut short after a header the byte bound above lets through (a large file's) fails at its first
     * missing row without having allocated the whole image */
    size_t stride = (size_t)ci.output_width * 3, cap = ci.output_height < 64 ? ci.output_height : 64;
    buf = malloc(stride * cap);
    while (buf && ci.output_scanline < ci.output_height) {
        if (ci.output_scanline == cap) {
            size_t nc = 2 * cap < ci.output_height ? 2 * cap : ci.output_height;
            uint8_t *nb = realloc(buf, stride * nc);
            if (!nb) free(buf);
            buf = nb, cap = nc;
            if (!buf) break;
        }
        JSAMPROW row = buf + stride * ci.output_scanline;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    if (!buf) {
        jpeg_destroy_decompress(&ci);
        fclose(fp);
        return nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
    }
    *w = (int32_t)ci.output_width, *h = (int32_t)ci.output_height;
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    fclose(fp);
    *rgb = buf;
    return NF_OK;
}

/* Shorter side to `size` by area averaging (each target pixel averages the source square it covers,
 * with fractional weights at the edges), centre crop; out (3, size, size) planes. */
static void resize_crop(const uint8_t *rgb, int32_t w, int32_t h, int32_t size, uint8_t *out) {
    double side = w < h ? w : h, s = side / size, ox = (w - side) / 2, oy = (h - side) / 2;
    for (int32_t ty = 0; ty < size; ty++)
        for (int32_t tx = 0; tx < size; tx++) {
            double y0 = oy + ty * s, y1 = y0 + s, x0 = ox + tx * s, x1 = x0 + s, acc[3] = {0, 0, 0}, wsum = 0;
            if (s < 1) { /* upscaling: the source pixel under the centre */
                int32_t sy = (int32_t)((y0 + y1) / 2), sx = (int32_t)((x0 + x1) / 2);
                y0 = sy, y1 = sy + 1, x0 = sx, x1 = sx + 1;
            }
            for (int32_t y = (int32_t)floor(y0); y < (int32_t)ceil(y1) && y < h; y++) {
                double wy = fmin(y1, y + 1.0) - fmax(y0, (double)y);
                for (int32_t x = (int32_t)floor(x0); x < (int32_t)ceil(x1) && x < w; x++) {
                    double wxy = wy * (fmin(x1, x + 1.0) - fmax(x0, (double)x));
                    if (wxy <= 0) continue;
                    const uint8_t *p = rgb + ((size_t)y * w + x) * 3;
                    for (int c = 0; c < 3; c++) acc[c] += wxy * p[c];
                    wsum += wxy;
                }
            }
            for (int c = 0; c < 3; c++) out[((size_t)c * size + ty) * size + tx] = (uint8_t)lround(acc[c] / wsum);
        }
}

/* ---------------------------------------------------------------- directory walking */
typedef struct {
    char **paths;
    int32_t *labels;
    int64_t n, cap;
} file_list;

/* qsort comparator of two char * (strcmp order). */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The sorted names of the entries of dir (without . and .. and hidden files) into *names (*count of
 * them; the caller frees with free_names); NF_ERR_IO (cannot open) or NF_ERR_NOMEM, reason set. */
static nf_status list_dir(const char *dir, char ***names_out, int64_t *count) {
    *names_out = NULL, *count = 0;
    DIR *d = opendir(dir);
    if (!d) return nf_fail(NF_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    char **names = NULL;
    int64_t n = 0, cap = 0;
    int oom = 0;
    for (struct dirent *e; !oom && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files */
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **t = realloc(names, sizeof *t * (size_t)cap);
            if (!t) {
                oom = 1;
                break;
            }
            names = t;
        }
        if (!(names[n] = strdup(e->d_name))) oom = 1;
        else n++;
    }
    closedir(d);
    if (!oom && !names && !(names = calloc(1, sizeof *names))) oom = 1; /* an empty folder: a valid empty list */
    if (oom) {
        for (int64_t i = 0; i < n; i++) free(names[i]);
        free(names);
        return nf_fail(NF_ERR_NOMEM, "%s: out of memory listing the folder", dir);
    }
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *names_out = names, *count = n;
    return NF_OK;
}

/* Free the n names of a list_dir result and the array itself. */
static void free_names(char **names, int64_t n) {
    for (int64_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* 1 if path is (or links to) a folder. */
static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Append "dir/name" (copied) with its label to fl, growing it; NF_ERR_NOMEM on failure
 * (fl keeps what it had, still to be freed by the caller). */
static nf_status add_file(file_list *fl, const char *dir, const char *name, int32_t label) {
    if (fl->n == fl->cap) {
        int64_t cap = fl->cap ? 2 * fl->cap : 256;
        char **p = realloc(fl->paths, sizeof *p * (size_t)cap);
        if (p) fl->paths = p;
        int32_t *l = realloc(fl->labels, sizeof *l * (size_t)cap);
        if (l) fl->labels = l;
        if (!p || !l) return nf_fail(NF_ERR_NOMEM, "out of memory listing images");
        fl->cap = cap;
    }
    size_t len = strlen(dir) + strlen(name) + 2;
    if (!(fl->paths[fl->n] = malloc(len))) return nf_fail(NF_ERR_NOMEM, "out of memory listing images");
    snprintf(fl->paths[fl->n], len, "%s/%s", dir, name);
    fl->labels[fl->n++] = label;
    return NF_OK;
}

/* the images of dir (label), and the classes below it when with_classes */
static nf_status collect(const char *dir, int32_t label, int with_classes, file_list *fl, int32_t *nclasses) {
    int64_t n;
    char **names;
    nf_status st = list_dir(dir, &names, &n);
    if (st) return st;
    for (int64_t i = 0; i < n && !st; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (with_classes && is_dir(path)) {
            int64_t before = fl->n;
            st = collect(path, *nclasses, 0, fl, nclasses);
            if (!st && fl->n == before) st = nf_fail(NF_ERR_FORMAT, "%s: class folder without PNG or JPEG images", path);
            (*nclasses)++;
        } else if (is_png(names[i]) || is_jpeg(names[i])) {
            st = add_file(fl, dir, names[i], label);
        }
    }
    free_names(names, n);
    return st;
}

/* See nflow.h: the images of folder dir (or of its class sub-folders) as a new *out (the
 * caller frees it with nf_images_free); NULL on failure, the reason naming the folder or file. */
nf_status nf_images_load_folder(const char *dir, int32_t size, int32_t channels, nf_images **out) {
    *out = NULL;
    if (size < 1 || size > 4096) return nf_fail(NF_ERR_INVALID, "image size %d: must be 1..4096", (int)size);
    if (channels != 0 && channels != 1 && channels != 3) return nf_fail(NF_ERR_INVALID, "channels %d: must be 1, 3 or 0 (automatic)", (int)channels);
    file_list fl = {0};
    int32_t nclasses = 0;
    nf_status st = collect(dir, -1, 1, &fl, &nclasses);
    if (!st && fl.n == 0) st = nf_fail(NF_ERR_FORMAT, "%s: no PNG or JPEG images in the folder", dir);
    if (!st && nclasses > 0)
        for (int64_t i = 0; i < fl.n && !st; i++)
            if (fl.labels[i] < 0) st = nf_fail(NF_ERR_FORMAT, "%s: images next to class folders (put every image in a class folder)", fl.paths[i]);
    size_t plane = (size_t)size * size;
    uint8_t *rgb = st ? NULL : malloc((size_t)fl.n * 3 * plane);
    if (!st && !rgb) st = nf_fail(NF_ERR_NOMEM, "%s: out of memory for %lld images", dir, (long long)fl.n);
    int all_gray = 1;
    for (int64_t i = 0; i < fl.n && !st; i++) {
        uint8_t *img = NULL;
        int32_t w = 0, h = 0;
        int gray = 0;
        st = is_png(fl.paths[i]) ? load_png(fl.paths[i], &img, &w, &h, &gray) : load_jpeg(fl.paths[i], &img, &w, &h, &gray);
        if (!st) resize_crop(img, w, h, size, rgb + (size_t)i * 3 * plane);
        all_gray &= gray;
        free(img);
    }
    int32_t C = channels ? channels : all_gray ? 1 : 3;
    nf_images *im = st ? NULL : nf_xcalloc(1, sizeof *im);
    if (!st && im) {
        im->pix = malloc((size_t)fl.n * C * plane);
        if (nclasses > 0) im->labels = malloc(sizeof(int32_t) * (size_t)fl.n);
    }
    if (!st && (!im || !im->pix || (nclasses > 0 && !im->labels))) st = nf_fail(NF_ERR_NOMEM, "%s: out of memory", dir);
    if (!st) {
        im->n = fl.n, im->C = C, im->H = im->W = size;
        for (int64_t i = 0; i < fl.n; i++) {
            const uint8_t *src = rgb + (size_t)i * 3 * plane;
            uint8_t *dst = im->pix + (size_t)i * C * plane;
            if (C == 3) memcpy(dst, src, 3 * plane);
            else /* ITU-R BT.601 luma */
                for (size_t p = 0; p < plane; p++)
                    dst[p] = (uint8_t)lround(0.299 * src[p] + 0.587 * src[plane + p] + 0.114 * src[2 * plane + p]);
            if (im->labels) im->labels[i] = fl.labels[i];
        }
    }
    for (int64_t i = 0; i < fl.n; i++) free(fl.paths[i]);
    free(fl.paths), free(fl.labels), free(rgb);
    if (st) nf_images_free(im);
    else *out = im;
    return st;
}

