/* fuzz_common.h — what the libFuzzer targets of tests/fuzz share: a private scratch folder (under
 * /dev/shm when it exists, else /tmp) where each input is written as the file the loader under test
 * reads, removed again after each run. The library never prints; the targets print nothing either. */
#ifndef NFLOW_FUZZ_COMMON_H
#define NFLOW_FUZZ_COMMON_H

#define _GNU_SOURCE
#include "nflow.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The scratch folder of this process, created on first use and removed at exit (when empty). */
static char fuzz_dir_path[256];
static inline void fuzz_dir_remove(void) { rmdir(fuzz_dir_path); }
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_path[0]) {
        struct stat sb;
        const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/nflow-fuzz-XXXXXX", base);
        if (!mkdtemp(fuzz_dir_path)) abort();
        atexit(fuzz_dir_remove);
        nf_set_threads(1);
    }
    return fuzz_dir_path;
}

/* path = "<scratch>/<name>"; writes size bytes of data there (aborts if it cannot: a broken harness,
 * not a finding). */
static inline void fuzz_write(char *path, size_t pathsz, const char *name, const uint8_t *data, size_t size) {
    snprintf(path, pathsz, "%s/%s", fuzz_dir(), name);
    FILE *fp = fopen(path, "wb");
    if (!fp) abort();
    if (size && fwrite(data, 1, size, fp) != size) abort();
    if (fclose(fp) != 0) abort();
}

/* A failure must come with a reason: a status other than NF_OK and an empty nf_last_error() is a bug.
 * So is NF_ERR_NOMEM: the inputs are a few kB, and a header that claims more than its file holds must
 * be refused as malformed, not by trying to allocate it (this also catches such a bug in the replay
 * builds, where no allocation limit is set). */
static inline void fuzz_check_reason(nf_status st) {
    if (st != NF_OK && nf_last_error()[0] == 0) {
        fprintf(stderr, "status %d without a reason\n", (int)st);
        abort();
    }
    if (st == NF_ERR_NOMEM) {
        fprintf(stderr, "out of memory on a small input: %s\n", nf_last_error());
        abort();
    }
}

#endif
