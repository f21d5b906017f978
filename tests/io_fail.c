/* io_fail.c — writes that fail: every file nflow writes (checkpoints, trainer checkpoints, CSV, PNG)
 * goes to "<path>.tmp.<pid>" and is renamed over path only when every byte is on disk. Here the writes
 * fail in every way we can make them fail, and each time the call must report NF_ERR_IO naming the
 * file, leave no temporary behind, and leave the previous file byte for byte as it was (a checkpoint
 * still loadable):
 *   - the file-size limit (RLIMIT_FSIZE, EFBIG) at every 31st byte of the file: the disk filling up
 *     at any point of the write;
 *   - /dev/full behind the temporary name (ENOSPC from the kernel);
 *   - fflush, fsync, fclose and rename failing (linked with -Wl,--wrap=fsync,--wrap=fclose,--wrap=rename);
 *   - a folder that does not exist, a parent that is a file, a path that is a folder, and (not as root)
 *     a folder without write permission.
 * And the clean-up of what a killed run leaves: nf_remove_stale_temps (called by every checkpoint
 * save) removes "<path>.tmp.<pid>" of dead processes only. */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/files.h"
#include "nflow.h"

/* ------------------------------------------------------------------ failing fsync / fclose / rename */
int __real_fsync(int fd);
int __real_fclose(FILE *fp);
int __real_rename(const char *a, const char *b);
int __wrap_fsync(int fd);
int __wrap_fclose(FILE *fp);
int __wrap_rename(const char *a, const char *b);
static int g_fail_fsync, g_fail_fclose, g_fail_rename;
int __wrap_fsync(int fd) {
    if (g_fail_fsync) return errno = EIO, -1;
    return __real_fsync(fd);
}
int __wrap_fclose(FILE *fp) {
    int r = __real_fclose(fp); /* closed either way, as a real failing fclose does */
    if (g_fail_fclose) return errno = EIO, EOF;
    return r;
}
int __wrap_rename(const char *a, const char *b) {
    if (g_fail_rename) return errno = EXDEV, -1;
    return __real_rename(a, b);
}

/* ------------------------------------------------------------------ helpers */
static char g_dir[256];

static const char *path_of(const char *name) {
    static char p[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static unsigned char *slurp(const char *path, size_t *n) {
    unsigned char *b = NULL;
    assert_int_equal(nf_read_file(path, &b, n), NF_OK);
    return b;
}

/* No name in the scratch folder contains ".tmp.". */
static void assert_no_temps(void) {
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) fail_msg("temporary file left behind: %s", e->d_name);
    closedir(d);
}

typedef struct {
    nf_flow *f;     /* the model written now */
    nf_trainer *tr; /* its trainer (trainer checkpoints) */
    nf_dataset *ds;
} fixture;

/* What one writer writes: 0 flow checkpoint, 1 trainer checkpoint, 2 CSV, 3 PNG. */
static nf_status write_kind(fixture *x, int kind, const char *path) {
    static uint8_t rgb[16 * 8 * 3];
    switch (kind) {
    case 0: return nf_flow_save(x->f, path);
    case 1: return nf_trainer_save(x->tr, path);
    case 2: return nf_dataset_write_csv(x->ds, path, "x");
    default:
        for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 5);
        return nf_png_write(path, rgb, 16, 8);
    }
}
static const char *const kind_names[] = {"nf_flow_save", "nf_trainer_save", "nf_dataset_write_csv", "nf_png_write"};
static const char *const kind_files[] = {"m.ckpt", "t.ckpt", "d.csv", "p.png"};

/* The previous file at path is still old (n bytes) and, for checkpoints, loads. */
static void assert_intact(const char *path, const unsigned char *old, size_t n, int kind) {
    size_t m;
    unsigned char *now = slurp(path, &m);
    assert_int_equal(m, n);
    assert_memory_equal(now, old, n);
    free(now);
    if (kind <= 1) {
        nf_flow *g;
        assert_int_equal(nf_flow_load(path, &g), NF_OK);
        nf_flow_free(g);
    }
    assert_no_temps();
}

/* A failed write: NF_ERR_IO, one line naming the file and, when given, containing why. */
static void assert_io_failure(nf_status st, const char *what, const char *path, const char *why) {
    if (st != NF_ERR_IO) fail_msg("%s: status %d (%s), expected NF_ERR_IO", what, (int)st, nf_last_error());
    if (!strstr(nf_last_error(), path)) fail_msg("%s: the reason '%s' does not name %s", what, nf_last_error(), path);
    if (why && !strstr(nf_last_error(), why)) fail_msg("%s: the reason '%s' does not say '%s'", what, nf_last_error(), why);
    assert_null(strchr(nf_last_error(), '\n'));
}

static fixture make_fixture(void) {
    fixture x = {0};
    nf_config cfg;
    nf_config_default(&cfg, NF_MODEL_REALNVP, 2);
    cfg.hidden = 8, cfg.depth = 2, cfg.layers = 1;
    assert_int_equal(nf_flow_create(&cfg, &x.f), NF_OK);
    assert_int_equal(nf_dataset_toy("moons", 64, 1, &x.ds), NF_OK);
    nf_train_opts o;
    nf_train_opts_default(&o);
    o.batch = 8;
    assert_int_equal(nf_trainer_create(x.f, x.ds, &o, &x.tr), NF_OK);
    return x;
}
static void free_fixture(fixture *x) {
    nf_trainer_free(x->tr), nf_flow_free(x->f), nf_dataset_free(x->ds);
}
/* Change what the next write writes (a training step; the CSV: one value), so old and new differ. */
static void change(fixture *x) {
    double loss, gn;
    assert_int_equal(nf_trainer_step(x->tr, &loss, &gn), NF_OK);
    x->ds->x[0] += 1;
}

/* ------------------------------------------------------------------ tests */
/* The file-size limit at every 31st byte: the write fails partway (EFBIG), at every stage. */
static void test_file_size_limit(void **state) {
    (void)state;
    signal(SIGXFSZ, SIG_IGN); /* EFBIG instead of the signal */
    struct rlimit saved;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    fixture x = make_fixture();
    for (int kind = 0; kind < 4; kind++) {
        const char *path = path_of(kind_files[kind]);
        assert_int_equal(write_kind(&x, kind, path), NF_OK);
        size_t n;
        unsigned char *old = slurp(path, &n);
        change(&x);
        const char *probe = path_of("probe");
        assert_int_equal(write_kind(&x, kind, probe), NF_OK);
        size_t full;
        free(slurp(probe, &full));
        unlink(probe);
        int tries = 0;
        for (size_t lim = 0; lim < full; lim += 31, tries++) {
            struct rlimit r = saved;
            r.rlim_cur = lim;
            assert_int_equal(setrlimit(RLIMIT_FSIZE, &r), 0);
            nf_status st = write_kind(&x, kind, path);
            assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
            char what[96];
            snprintf(what, sizeof what, "%s with the file size limited to %zu of %zu bytes", kind_names[kind], lim, full);
            assert_io_failure(st, what, path, NULL);
            assert_intact(path, old, n, kind);
        }
        print_message("%s: failed cleanly at %d file-size limits (0..%zu bytes)\n", kind_names[kind], tries, full - 1);
        free(old);
        unlink(path);
    }
    free_fixture(&x);
}

/* The temporary name points at /dev/full: every write fails with ENOSPC, as on a full disk. */
static void test_disk_full(void **state) {
    (void)state;
    fixture x = make_fixture();
    for (int kind = 0; kind < 4; kind++) {
        const char *path = path_of(kind_files[kind]);
        assert_int_equal(write_kind(&x, kind, path), NF_OK);
        size_t n;
        unsigned char *old = slurp(path, &n);
        change(&x);
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
        assert_int_equal(symlink("/dev/full", tmp), 0);
        nf_status st = write_kind(&x, kind, path);
        assert_io_failure(st, kind_names[kind], path, "No space left on device");
        assert_intact(path, old, n, kind); /* and the symlink is gone with the temporary */
        free(old);
        unlink(path);
    }
    free_fixture(&x);
}

/* fsync, fclose and rename failing. */
static void test_flush_close_rename(void **state) {
    (void)state;
    fixture x = make_fixture();
    int *flags[3] = {&g_fail_fsync, &g_fail_fclose, &g_fail_rename};
    const char *why[3] = {"Input/output error", "Input/output error", "cannot rename"};
    for (int kind = 0; kind < 4; kind++) {
        const char *path = path_of(kind_files[kind]);
        assert_int_equal(write_kind(&x, kind, path), NF_OK);
        size_t n;
        unsigned char *old = slurp(path, &n);
        change(&x);
        for (int k = 0; k < 3; k++) {
            *flags[k] = 1;
            nf_status st = write_kind(&x, kind, path);
            *flags[k] = 0;
            assert_io_failure(st, kind_names[kind], path, why[k]);
            assert_intact(path, old, n, kind);
        }
        free(old);
        unlink(path);
    }
    free_fixture(&x);
}

/* Folders that cannot take the file. */
static void test_unwritable(void **state) {
    (void)state;
    fixture x = make_fixture();
    const char *file = path_of("plain-file"), *folder = path_of("a-folder"), *locked = path_of("locked");
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(mkdir(folder, 0700), 0);
    assert_int_equal(mkdir(locked, 0500), 0);
    const char *targets[4] = {path_of("no-such-folder/m.ckpt"), path_of("plain-file/m.ckpt"), folder, path_of("locked/m.ckpt")};
    for (int kind = 0; kind < 4; kind++)
        for (int t = 0; t < 4; t++) {
            if (t == 3 && geteuid() == 0) continue; /* root writes anywhere: permissions cannot be tested */
            nf_status st = write_kind(&x, kind, targets[t]);
            assert_io_failure(st, kind_names[kind], targets[t], NULL);
            assert_no_temps();
        }
    struct stat sb;
    assert_int_equal(stat(folder, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode)); /* the folder was not replaced */
    rmdir(folder), rmdir(locked), unlink(file);
    free_fixture(&x);
}

/* The pid of a process that has exited. */
static pid_t dead_pid(void) {
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) _exit(0);
    int status;
    waitpid(p, &status, 0);
    return p;
}

static int exists(const char *p) {
    struct stat sb;
    return lstat(p, &sb) == 0;
}

/* What a killed run leaves is removed by the next save; nothing else is. */
static void test_stale_temps(void **state) {
    (void)state;
    fixture x = make_fixture();
    const char *path = path_of("run.ckpt");
    pid_t d1 = dead_pid(), d2 = dead_pid();
    char stale[600], live[600], ours[600], odd[600], other[600], dir[600], lnk[600];
    snprintf(stale, sizeof stale, "%s.tmp.%ld", path, (long)d1);           /* dead writer: removed */
    snprintf(live, sizeof live, "%s.tmp.%ld", path, (long)getppid());     /* a live process: kept */
    snprintf(odd, sizeof odd, "%s.tmp.%ldx", path, (long)d1);             /* not a pid: kept */
    snprintf(other, sizeof other, "%s/other.ckpt.tmp.%ld", g_dir, (long)d1); /* another file's: kept */
    snprintf(dir, sizeof dir, "%s.tmp.%ld", path, (long)d2);              /* a folder: kept */
    snprintf(ours, sizeof ours, "%s.tmp.99999999999999999999", path);     /* out of pid range: kept */
    snprintf(lnk, sizeof lnk, "%s/target-of-link", g_dir);
    const char *files[] = {stale, live, odd, other, ours, lnk};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        FILE *fp = fopen(files[i], "w");
        assert_non_null(fp);
        fputs("partial", fp);
        fclose(fp);
    }
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(nf_flow_save(x.f, path), NF_OK);
    assert_false(exists(stale));
    assert_true(exists(live) && exists(odd) && exists(other) && exists(ours) && exists(dir) && exists(lnk));
    /* the checkpoint is the new one, never a temporary */
    nf_flow *g;
    assert_int_equal(nf_flow_load(path, &g), NF_OK);
    nf_flow_free(g);
    /* the direct call reports how many it removed */
    FILE *fp = fopen(stale, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(nf_remove_stale_temps(path), 1);
    assert_int_equal(nf_remove_stale_temps(path), 0);
    rmdir(dir);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(files[i]);
    unlink(path);
    free_fixture(&x);
}

/* A model with a non-finite parameter is never saved (nf_flow_load would refuse the file), and the
 * trainer refuses to step it. */
static void test_nonfinite_not_saved(void **state) {
    (void)state;
    fixture x = make_fixture();
    for (int kind = 0; kind < 2; kind++) {
        const char *path = path_of(kind_files[kind]);
        assert_int_equal(write_kind(&x, kind, path), NF_OK);
        size_t n;
        unsigned char *old = slurp(path, &n);
        nf_real keep = nf_flow_params(x.f)[3];
        nf_flow_params(x.f)[3] = (nf_real)NAN;
        nf_status st = write_kind(&x, kind, path);
        assert_int_equal(st, NF_ERR_NUMERIC);
        assert_non_null(strstr(nf_last_error(), "not saved"));
        assert_intact(path, old, n, kind);
        double loss, gn;
        assert_int_equal(nf_trainer_step(x.tr, &loss, &gn), NF_ERR_NUMERIC);
        assert_true(isnan(nf_flow_params(x.f)[3]));
        nf_flow_params(x.f)[3] = keep;
        free(old);
        unlink(path);
    }
    free_fixture(&x);
}

static int setup(void **state) {
    (void)state;
    nf_set_threads(1);
    snprintf(g_dir, sizeof g_dir, "/tmp/nflow-iofail-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[800];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", g_dir, g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_size_limit),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_flush_close_rename),
        cmocka_unit_test(test_unwritable),
        cmocka_unit_test(test_stale_temps),
        cmocka_unit_test(test_nonfinite_not_saved),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
