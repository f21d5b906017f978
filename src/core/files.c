/* core/files.c — atomic writes (temporary file + rename), whole-file reads, stale temp clean-up. */
#define _POSIX_C_SOURCE 200809L /* kill, fsync, fileno, lstat */
#include "core/files.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_TAG ".tmp."

/* See files.h. */
FILE *nf_open_temp(const char *path, char *tmp, size_t tmpsz) {
    int k = snprintf(tmp, tmpsz, "%s" TMP_TAG "%ld", path, (long)getpid());
    if (k < 0 || (size_t)k >= tmpsz) {
        nf_fail(NF_ERR_INVALID, "%s: path too long", path);
        return NULL;
    }
    FILE *fp = fopen(tmp, "wb");
    if (!fp) nf_fail(NF_ERR_IO, "%s: cannot write (as the temporary file %s): %s", path, tmp, strerror(errno));
    return fp;
}

/* See files.h. fflush + fsync before the rename, so a crash never leaves a renamed but empty file. */
nf_status nf_commit_temp(FILE *fp, const char *tmp, const char *path, int ok) {
    if (ok && fflush(fp) != 0) ok = 0;
    int e = ok ? 0 : errno;
    if (ok && fsync(fileno(fp)) != 0 && errno != EINVAL && errno != EROFS) ok = 0, e = errno;
    if (ferror(fp)) ok = 0;
    if (fclose(fp) != 0) ok = 0, e = e ? e : errno;
    if (!ok) {
        remove(tmp);
        return nf_fail(NF_ERR_IO, "%s: write failed%s%s", path, e ? ": " : "", e ? strerror(e) : "");
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        remove(tmp);
        return nf_fail(NF_ERR_IO, "%s: cannot rename temporary file: %s", path, strerror(e));
    }
    return NF_OK;
}

/* See files.h. */
nf_status nf_write_file_atomic(const char *path, const void *data, size_t len) {
    char tmp[4096];
    FILE *fp = nf_open_temp(path, tmp, sizeof tmp);
    if (!fp) return NF_ERR_IO;
    int ok = fwrite(data, 1, len, fp) == len;
    return nf_commit_temp(fp, tmp, path, ok);
}

/* See files.h. */
nf_status nf_read_file(const char *path, unsigned char **buf, size_t *len) {
    *buf = NULL, *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return nf_fail(NF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    int st = fstat(fileno(fp), &sb);
    if (st != 0 || !S_ISREG(sb.st_mode)) { /* a folder opens for reading, then reads as garbage sizes */
        fclose(fp);
        return nf_fail(NF_ERR_IO, "%s: %s", path, st != 0 ? "cannot tell what it is" : S_ISDIR(sb.st_mode) ? "is a folder, not a file" : "not a regular file");
    }
    if (fseek(fp, 0, SEEK_END) != 0) {
        fclose(fp);
        return nf_fail(NF_ERR_IO, "%s: cannot seek (not a regular file?)", path);
    }
    long sz = ftell(fp);
    rewind(fp);
    if (sz < 0) {
        fclose(fp);
        return nf_fail(NF_ERR_IO, "%s: cannot tell the file size (not a regular file?)", path);
    }
    unsigned char *b = malloc((size_t)sz + 1);
    if (!b) {
        fclose(fp);
        return nf_fail(NF_ERR_NOMEM, "%s: out of memory for %ld bytes", path, sz);
    }
    size_t got = fread(b, 1, (size_t)sz, fp);
    int err = ferror(fp);
    fclose(fp);
    if (got != (size_t)sz || err) {
        free(b);
        return nf_fail(NF_ERR_IO, "%s: read error", path);
    }
    b[sz] = 0;
    *buf = b, *len = (size_t)sz;
    return NF_OK;
}

/* See files.h. A temporary name is removed only when all of these hold: it is "<base>.tmp.<digits>" in
 * path's folder, the digits are a pid in pid_t's range other than ours, no process has that pid
 * (kill(pid, 0) fails with ESRCH; EPERM means alive, owned by someone else), and it is a regular file
 * (lstat: never a folder or what a symlink points to). A pid reused by a live process keeps its temp
 * (conservative). Limit: on a folder shared between machines a live writer elsewhere looks dead here. */
int nf_remove_stale_temps(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else if (snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path) >= (int)sizeof dir) return 0;
    if (!*base) return 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t bl = strlen(base), tl = strlen(TMP_TAG);
    int removed = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const char *n = e->d_name, *digits = n + bl + tl;
        if (strncmp(n, base, bl) != 0 || strncmp(n + bl, TMP_TAG, tl) != 0) continue;
        if (*digits < '0' || *digits > '9') continue; /* no sign, no space: exactly what nf_open_temp writes */
        char *end;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (*end || errno || pid <= 0 || pid != (long)(pid_t)pid) continue; /* (pid_t)huge could be −1: all processes */
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char full[8192];
        if (snprintf(full, sizeof full, "%s/%s", dir, n) >= (int)sizeof full) continue;
        struct stat sb;
        if (lstat(full, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (remove(full) == 0) removed++;
    }
    closedir(d);
    return removed;
}
