/* images.c — image datasets: IDX files (MNIST / Fashion-MNIST layout, gzip or raw) with their label
 * files, and CIFAR-10 binary batches. Pixels stay 8-bit (n, C, H, W); preprocessing to floats is
 * nf_images_dequantize. Every malformed file is refused with the file name and what is wrong. */
#include "data/data.h"

#include <errno.h>
#include <zlib.h>

/* Read exactly len bytes of g into buf (in chunks below gzread's int limit); NF_ERR_FORMAT
 * naming path and what (e.g. "pixels") when the file ends early or is corrupt. */
static nf_status gz_exact(gzFile g, void *buf, size_t len, const char *path, const char *what) {
    size_t got = 0;
    while (got < len) {
        unsigned chunk = len - got > (1u << 30) ? 1u << 30 : (unsigned)(len - got);
        int k = gzread(g, (char *)buf + got, chunk);
        if (k < 0) {
            int e;
            const char *m = gzerror(g, &e);
            return nf_fail(NF_ERR_FORMAT, "%s: corrupt data while reading %s (%s)", path, what, m);
        }
        if (k == 0) return nf_fail(NF_ERR_FORMAT, "%s: truncated: file ends inside %s (%zu of %zu bytes)", path, what, got, len);
        got += (size_t)k;
    }
    return NF_OK;
}

/* Read exactly len (> 0) bytes of g into a new malloc'ed *out (the caller frees it; NULL on failure),
 * growing the buffer as the data arrives: it never holds more than twice what the file really has,
 * so a header that lies about its sizes cannot make nflow allocate what the file does not back.
 * NF_ERR_FORMAT as gz_exact, NF_ERR_NOMEM naming path and what. */
static nf_status gz_read_alloc(gzFile g, size_t len, const char *path, const char *what, unsigned char **out) {
    *out = NULL;
    size_t cap = len < ((size_t)1 << 20) ? len : (size_t)1 << 20, got = 0;
    unsigned char *b = malloc(cap);
    if (!b) return nf_fail(NF_ERR_NOMEM, "%s: out of memory for %s", path, what);
    while (got < len) {
        if (got == cap) {
            size_t nc = cap < len / 2 ? 2 * cap : len;
            unsigned char *nb = realloc(b, nc);
            if (!nb) {
                free(b);
                return nf_fail(NF_ERR_NOMEM, "%s: out of memory for %s (%zu bytes)", path, what, len);
            }
            b = nb, cap = nc;
        }
        unsigned chunk = cap - got > (1u << 30) ? 1u << 30 : (unsigned)(cap - got);
        int k = gzread(g, b + got, chunk);
        if (k <= 0) {
            int e;
            const char *m = k < 0 ? gzerror(g, &e) : "";
            free(b);
            if (k < 0) return nf_fail(NF_ERR_FORMAT, "%s: corrupt data while reading %s (%s)", path, what, m);
            return nf_fail(NF_ERR_FORMAT, "%s: truncated: file ends inside %s (%zu of %zu bytes)", path, what, got, len);
        }
        got += (size_t)k;
    }
    *out = b;
    return NF_OK;
}

/* NF_OK if g has no byte left, NF_ERR_FORMAT naming path if it has (trailing data) or is corrupt. */
static nf_status gz_at_end(gzFile g, const char *path) {
    char c;
    int k = gzread(g, &c, 1);
    if (k < 0) return nf_fail(NF_ERR_FORMAT, "%s: corrupt data after the payload", path);
    if (k > 0) return nf_fail(NF_ERR_FORMAT, "%s: more data than the header's sizes say (trailing bytes)", path);
    return NF_OK;
}

/* The big-endian 32-bit value at p (4 bytes). */
static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Open path for reading with zlib (gzip or plain); NULL with *st = NF_ERR_IO and the reason set.
 * The caller gzclose()s the result. */
static gzFile gz_open(const char *path, nf_status *st) {
    gzFile g = gzopen(path, "rb");
    if (!g) *st = nf_fail(NF_ERR_IO, "%s: cannot open: %s", path, errno ? strerror(errno) : "gzopen failed");
    return g;
}

/* IDX: magic 00 00 08 ndim (unsigned bytes), ndim big-endian sizes, then the data. */
static nf_status idx_header(gzFile g, const char *path, int want_ndim, uint32_t *dims) {
    unsigned char h[16];
    nf_status st = gz_exact(g, h, 4, path, "the IDX magic number");
    if (st) return st;
    if (h[0] != 0 || h[1] != 0 || h[2] != 0x08)
        return nf_fail(NF_ERR_FORMAT, "%s: not an IDX file of unsigned bytes (magic %02x %02x %02x %02x)", path, h[0], h[1], h[2], h[3]);
    if (h[3] != want_ndim)
        return nf_fail(NF_ERR_FORMAT, "%s: IDX file with %d dimensions, expected %d (%s)", path, h[3], want_ndim, want_ndim == 3 ? "images" : "labels");
    if ((st = gz_exact(g, h, 4 * (size_t)want_ndim, path, "the IDX header"))) return st;
    for (int i = 0; i < want_ndim; i++) dims[i] = be32(h + 4 * i);
    return NF_OK;
}

/* See nflow.h: IDX images (and labels, which may be NULL) into a new *out (the caller frees
 * it with nf_images_free); NULL on failure, the reason naming the file. */
nf_status nf_images_load_idx(const char *images, const char *labels, nf_images **out) {
    *out = NULL;
    nf_status st = NF_OK;
    gzFile g = gz_open(images, &st);
    if (!g) return st;
    uint32_t d[3];
    nf_images *im = NULL;
    if ((st = idx_header(g, images, 3, d))) goto done;
    if (d[0] == 0 || d[1] == 0 || d[2] == 0 || d[1] > 4096 || d[2] > 4096 || d[0] > 100000000u) {
        st = nf_fail(NF_ERR_FORMAT, "%s: implausible sizes %u × %u × %u in the header", images, d[0], d[1], d[2]);
        goto done;
    }
    im = nf_xcalloc(1, sizeof *im);
    if (!im) {
        st = nf_fail(NF_ERR_NOMEM, "%s: out of memory", images);
        goto done;
    }
    size_t total = (size_t)d[0] * d[1] * d[2];
    im->n = d[0], im->C = 1, im->H = (int32_t)d[1], im->W = (int32_t)d[2];
    if ((st = gz_read_alloc(g, total, images, "the pixels", &im->pix)) || (st = gz_at_end(g, images))) goto done;
    gzclose(g);
    g = NULL;
    if (labels) {
        if (!(g = gz_open(labels, &st))) goto done;
        uint32_t nl;
        if ((st = idx_header(g, labels, 1, &nl))) goto done;
        if (nl != d[0]) {
            st = nf_fail(NF_ERR_FORMAT, "%s: %u labels for %u images in %s", labels, nl, d[0], images);
            goto done;
        }
        unsigned char *lb = NULL;
        st = gz_read_alloc(g, nl, labels, "the labels", &lb);
        if (!st) st = gz_at_end(g, labels);
        if (!st && !(im->labels = nf_xcalloc(nl, sizeof(int32_t)))) st = nf_fail(NF_ERR_NOMEM, "%s: out of memory", labels);
        for (uint32_t i = 0; i < nl && !st; i++) im->labels[i] = lb[i];
        free(lb);
        if (st) goto done;
    }
done:
    if (g) gzclose(g);
    if (st) nf_images_free(im);
    else *out = im;
    return st;
}

/* CIFAR-10 binary: records of 1 label byte + 3·32·32 pixel bytes (channel planes R, G, B). */
nf_status nf_images_load_cifar(const char *const *paths, int32_t npaths, nf_images **out) {
    *out = NULL;
    const size_t rec = 1 + 3 * 32 * 32;
    size_t total = 0, *sizes = nf_xcalloc((size_t)npaths, sizeof(size_t));
    if (!sizes) return nf_fail(NF_ERR_NOMEM, "out of memory");
    nf_status st = NF_OK;
    for (int32_t f = 0; f < npaths && !st; f++) {
        FILE *fp = fopen(paths[f], "rb");
        if (!fp) {
            st = nf_fail(NF_ERR_IO, "%s: cannot open: %s", paths[f], strerror(errno));
            break;
        }
        fseek(fp, 0, SEEK_END);
        long sz = ftell(fp);
        fclose(fp);
        if (sz <= 0 || (size_t)sz % rec != 0)
            st = nf_fail(NF_ERR_FORMAT, "%s: %ld bytes is not a whole number of CIFAR-10 records (%zu bytes each)", paths[f], sz, rec);
        else
            sizes[f] = (size_t)sz / rec, total += sizes[f];
    }
    nf_images *im = st ? NULL : nf_xcalloc(1, sizeof *im);
    if (!st && im) {
        im->pix = malloc(total * (rec - 1));
        im->labels = nf_xcalloc(total, sizeof(int32_t));
    }
    if (!st && (!im || !im->pix || !im->labels)) st = nf_fail(NF_ERR_NOMEM, "out of memory for %zu CIFAR images", total);
    if (!st) im->n = (int64_t)total, im->C = 3, im->H = 32, im->W = 32;
    unsigned char *buf = st ? NULL : malloc(rec);
    if (!st && !buf) st = nf_fail(NF_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (int32_t f = 0; f < npaths && !st; f++) {
        FILE *fp = fopen(paths[f], "rb");
        if (!fp) {
            st = nf_fail(NF_ERR_IO, "%s: cannot open: %s", paths[f], strerror(errno));
            break;
        }
        for (size_t r = 0; r < sizes[f] && !st; r++, k++) {
            if (fread(buf, 1, rec, fp) != rec) st = nf_fail(NF_ERR_IO, "%s: read error", paths[f]);
            else if (buf[0] > 9) st = nf_fail(NF_ERR_FORMAT, "%s: record %zu has label %d (CIFAR-10 labels are 0..9)", paths[f], r, buf[0]);
            else {
                im->labels[k] = buf[0];
                memcpy(im->pix + k * (rec - 1), buf + 1, rec - 1);
            }
        }
        fclose(fp);
    }
    free(buf), free(sizes);
    if (st) nf_images_free(im);
    else *out = im;
    return st;
}

