/* data/csv.c — CSV tables of numbers: reading (errors name the file, line and field) and writing. */
#define _POSIX_C_SOURCE 200809L /* fileno, fstat */
#include "core/files.h"
#include "data/data.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <sys/stat.h>

#ifdef NFLOW_DOUBLE
#define NF_REAL_MAX DBL_MAX
#else
#define NF_REAL_MAX FLT_MAX
#endif

/* Parse the text [s, e) (blanks trimmed) as one finite number into *v; 1 on success, 0 if it is
 * empty, too long or not wholly a number, −1 if it is not finite, −2 if it is finite but beyond
 * nf_real's range (1e308 would become inf as a float32). Borrows the text. */
static int parse_field(const char *s, const char *e, double *v) {
    while (s < e && isspace((unsigned char)*s)) s++;
    while (e > s && isspace((unsigned char)e[-1])) e--;
    if (s == e) return 0;
    char buf[128];
    size_t len = (size_t)(e - s);
    if (len >= sizeof buf) return 0;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end;
    for (const char *c = buf; *c; c++) /* decimal only: strtod would also take hexadecimal (0x10) */
        if (*c == 'x' || *c == 'X') return 0;
    errno = 0;
    *v = strtod(buf, &end);
    if (*end != 0) return 0;
    if (!isfinite(*v) || errno == ERANGE) return isfinite(*v) && *v == 0 ? 1 : -1;
    if (fabs(*v) > NF_REAL_MAX) return -2;
    return 1;
}

/* Read the whole file at path ("-": standard input, read to its end) into *buf (malloc'ed,
 * NUL-terminated, the caller frees) and its length into *len; NF_ERR_IO / NF_ERR_NOMEM with the reason set. */
static nf_status read_all(const char *path, char **buf, size_t *len) {
    int std_in = strcmp(path, "-") == 0;
    const char *shown = std_in ? "standard input" : path;
    FILE *fp = std_in ? stdin : fopen(path, "rb");
    if (!fp) return nf_fail(NF_ERR_IO, "%s: cannot open: %s", shown, strerror(errno));
    struct stat sb;
    if (!std_in && fstat(fileno(fp), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(fp);
        return nf_fail(NF_ERR_IO, "%s: is a folder, not a CSV file", shown);
    }
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) {
            char *t = realloc(b, cap *= 2);
            if (!t) { free(b); b = NULL; break; }
            b = t;
        }
        size_t k = fread(b + n, 1, cap - n - 1, fp);
        n += k;
        if (k == 0) break;
    }
    int err = ferror(fp);
    if (!std_in) fclose(fp);
    if (!b) return nf_fail(NF_ERR_NOMEM, "%s: out of memory reading the file", shown);
    if (err) {
        free(b);
        return nf_fail(NF_ERR_IO, "%s: read error", shown);
    }
    b[n] = 0;
    *buf = b, *len = n;
    return NF_OK;
}

/* Parse one line [s, le): fields into vals (if not NULL, up to cap), returns the field count; *numeric
 * counts numeric fields; *bad is the first non-numeric field (1-based, 0 if none), *bad_kind its kind
 * (0 not a number, -1 not finite, -2 beyond nf_real's range), [*bs, *be) its text. */
static int parse_line(const char *s, const char *le, nf_real *vals, int cap, int *numeric, int *bad,
                      int *bad_kind, const char **bs, const char **be) {
    int fidx = 0;
    *numeric = 0, *bad = 0;
    const char *f = s;
    for (const char *q = s;; q++) {
        if (q == le || *q == ',') {
            double v;
            int k = parse_field(f, q, &v);
            fidx++;
            if (k == 1) {
                (*numeric)++;
                if (vals && fidx <= cap) vals[fidx - 1] = (nf_real)v;
            } else if (!*bad || (k < 0 && *bad_kind == 0)) {
                *bad = fidx, *bad_kind = k, *bs = f, *be = q;
            }
            f = q + 1;
            if (q == le) break;
        }
    }
    return fidx;
}

/* The fields of the header line [s, le) into a new string (malloc'ed): each trimmed of blanks and double
 * quotes (a quote or control character inside becomes '_'), an empty one named x<k> (k its 1-based column: pandas leaves its index column unnamed), joined
 * by commas; NULL when out of memory. */
static char *header_names(const char *s, const char *le) {
    int32_t nf = 1;
    for (const char *q = s; q < le; q++) nf += *q == ',';
    char *out = malloc((size_t)(le - s) + 16 * (size_t)nf + 1), *o = out;
    if (!out) return NULL;
    int32_t k = 0;
    for (const char *f = s, *q = s;; q++) {
        if (q == le || *q == ',') {
            const char *a = f, *z = q;
            while (a < z && (isspace((unsigned char)*a) || *a == '"')) a++;
            while (z > a && (isspace((unsigned char)z[-1]) || z[-1] == '"')) z--;
            if (k++) *o++ = ',';
            if (z == a) o += sprintf(o, "x%d", (int)k); /* at most 12 bytes */
            for (const char *c = a; c < z; c++) /* a quote or control character inside: '_' (names are written unquoted) */
                *o++ = *c == '"' || (unsigned char)*c < 0x20 || *c == 0x7f ? '_' : *c;
            f = q + 1;
            if (q == le) break;
        }
    }
    *o = 0;
    return out;
}

/* See nflow.h: parse the CSV at path ("-": standard input) into a new dataset *out (the caller frees it
 * with nf_dataset_free), a header line's fields as its names; *out stays NULL on failure, the reason
 * naming the file, line and field. */
nf_status nf_dataset_csv(const char *path, nf_dataset **out) {
    *out = NULL;
    const char *shown = strcmp(path, "-") == 0 ? "standard input" : path; /* in the reasons */
    char *buf = NULL;
    size_t len = 0;
    nf_status st = read_all(path, &buf, &len);
    if (st) return st;
    if (memchr(buf, 0, len)) {
        free(buf);
        return nf_fail(NF_ERR_FORMAT, "%s: binary data (NUL byte), not a CSV text file", shown);
    }
    /* pass 0 validates and counts rows; pass 1 fills the values */
    int32_t dim = 0;
    int64_t rows = 0;
    nf_dataset *d = NULL;
    char *names = NULL; /* the header's fields, when there is a header */
    for (int pass = 0; pass < 2; pass++) {
        int64_t line = 0, r = 0;
        int seen = 0;
        for (char *s = buf; *s;) {
            char *e = strchr(s, '\n');
            if (!e) e = s + strlen(s);
            char *next = *e ? e + 1 : e, *le = e;
            if (le > s && le[-1] == '\r') le--;
            line++;
            const char *p = s;
            while (p < le && isspace((unsigned char)*p)) p++;
            if (p == le) { /* blank line */
                s = next;
                continue;
            }
            int numeric, bad, bad_kind = 0;
            const char *bs = NULL, *be = NULL;
            nf_real *row = pass == 1 ? d->x + r * dim : NULL;
            int nf = parse_line(s, le, row, dim, &numeric, &bad, &bad_kind, &bs, &be);
            int header = !seen && numeric == 0 && bad_kind == 0;
            seen = 1;
            if (header) {
                dim = nf;
                if (pass == 0 && !(names = header_names(s, le))) {
                    free(buf);
                    return nf_fail(NF_ERR_NOMEM, "%s: out of memory reading the header", shown);
                }
            } else {
                const char *why = NULL;
                if (bad) why = bad_kind == -1 ? "is not finite" : bad_kind == -2 ? "is beyond the range of float32 (±3.4e38)" : "is not a number";
                if (!why && dim && nf != dim) {
                    free(buf), free(names), nf_dataset_free(d);
                    return nf_fail(NF_ERR_FORMAT, "%s:%lld: %d fields, expected %d (ragged rows)", shown, (long long)line, nf, (int)dim);
                }
                if (why) {
                    int flen = (int)(be - bs);
                    nf_fail(NF_ERR_FORMAT, "%s:%lld: field %d: '%.*s' %s", shown, (long long)line, bad, flen > 40 ? 40 : flen, bs, why);
                    free(buf), free(names), nf_dataset_free(d);
                    return NF_ERR_FORMAT;
                }
                dim = nf;
                r++;
            }
            s = next;
        }
        if (pass == 0) {
            if (r == 0) {
                free(buf), free(names);
                return nf_fail(NF_ERR_FORMAT, "%s: no data rows (%s)", shown, seen ? "only a header line" : "empty file");
            }
            rows = r;
            if ((st = nf_dataset_alloc(rows, dim, &d))) {
                free(buf), free(names);
                return st;
            }
            d->names = names, names = NULL; /* the header's field count is dim: the rows were checked against it */
        }
    }
    free(buf);
    *out = d;
    return NF_OK;
}

/* ds as CSV text (header ds->names or colprefix1, colprefix2, …; values %.9g) to the open stream fp;
 * 0 when a write failed. ds is borrowed. */
static int print_csv(const nf_dataset *ds, FILE *fp, const char *colprefix) {
    int ok = 1;
    if (ds->names) ok = fputs(ds->names, fp) >= 0;
    else
        for (int32_t j = 0; j < ds->dim && ok; j++) ok = fprintf(fp, "%s%s%d", j ? "," : "", colprefix, (int)j + 1) > 0;
    ok = ok && fputc('\n', fp) != EOF;
    for (int64_t i = 0; i < ds->n && ok; i++) {
        for (int32_t j = 0; j < ds->dim; j++) fprintf(fp, "%s%.9g", j ? "," : "", (double)ds->x[i * ds->dim + j]);
        ok = fputc('\n', fp) != EOF;
    }
    return ok;
}

/* Write ds as CSV (print_csv) to path atomically (temporary file + rename), or to standard output when
 * path is "-". ds is borrowed; NF_ERR_IO on a failed write. */
nf_status nf_dataset_write_csv(const nf_dataset *ds, const char *path, const char *colprefix) {
    if (strcmp(path, "-") == 0)
        return print_csv(ds, stdout, colprefix) && fflush(stdout) == 0 ? NF_OK
                                                                        : nf_fail(NF_ERR_IO, "standard output: write error: %s", strerror(errno));
    char tmp[4096];
    FILE *fp = nf_open_temp(path, tmp, sizeof tmp);
    if (!fp) return NF_ERR_IO;
    return nf_commit_temp(fp, tmp, path, print_csv(ds, fp, colprefix));
}

