/* io/io.h — checkpoint internals for the trainer (the plain save/load is public: nflow.h). */
#ifndef NF_IO_H
#define NF_IO_H

#include "core/core.h"

/* Save a flow; with m and v (nparams each) the file also holds "optimizer.adam_m"/"optimizer.adam_v",
 * and trainer_json (may be NULL) goes into the metadata under "trainer". */
nf_status nf_ckpt_save(const nf_flow *f, const char *path, const nf_real *m, const nf_real *v, const char *trainer_json);
/* Read the optimiser tensors and the "trainer" metadata of a checkpoint saved with them. *trainer_json
 * is malloc'ed (caller frees). */
nf_status nf_ckpt_read_trainer(const char *path, nf_real *m, nf_real *v, int64_t nparams, char **trainer_json);

#endif
