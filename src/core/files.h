/* core/files.h — files written atomically (a temporary name, then rename) and read whole. */
#ifndef NF_FILES_H
#define NF_FILES_H

#include "core/core.h"

/* Open "<path>.tmp.<pid>" for writing and put its name in tmp (tmpsz bytes). NULL with the reason set
 * when the name does not fit or the file cannot be created. */
FILE *nf_open_temp(const char *path, char *tmp, size_t tmpsz);
/* Close fp; if ok and every write succeeded, rename tmp to path, otherwise remove tmp and fail with
 * NF_ERR_IO. Either way fp is closed and no temporary file is left. */
nf_status nf_commit_temp(FILE *fp, const char *tmp, const char *path, int ok);
/* Write len bytes to path atomically (nf_open_temp + nf_commit_temp). */
nf_status nf_write_file_atomic(const char *path, const void *data, size_t len);
/* Read the whole regular file at path into *buf (malloc'ed, NUL-terminated one byte past *len; the
 * caller frees). NF_ERR_IO if it cannot be opened or read, NF_ERR_NOMEM if it does not fit. */
nf_status nf_read_file(const char *path, unsigned char **buf, size_t *len);
/* Remove the temporary files "<path>.tmp.<pid>" that a killed run left behind: those whose pid is not
 * a live process (regular files only; never our own pid's). Returns how many were removed; a folder that
 * cannot be read removes nothing and is not an error (the write that follows reports it). */
int nf_remove_stale_temps(const char *path);

#endif
