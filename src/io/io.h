/* io/io.h — checkpoint internals for the trainer (the plain save/load is public: nflow.h). */
#ifndef NF_IO_H
#define NF_IO_H

#include "core/core.h"

/* Save a flow; with m and v (nparams each) the file also holds "optimizer.adam_m"/"optimizer.adam_v",
 * with live (nparams, may be NULL; only beside m and v) "optimizer.live_params" — the optimiser's iterate
 * when the model's tensors hold a moving average of it — and trainer_json (may be NULL) goes into the
 * metadata under "trainer". */
nf_status nf_ckpt_save(const nf_flow *f, const char *path, const nf_real *m, const nf_real *v, const nf_real *live,
                       const char *trainer_json);
/* Read the optimiser tensors and the "trainer" metadata of a checkpoint saved with them; live (NULL: not
 * read) receives "optimizer.live_params" (NF_ERR_FORMAT if the file has none). *trainer_json is
 * malloc'ed (caller frees). */
nf_status nf_ckpt_read_trainer(const char *path, nf_real *m, nf_real *v, nf_real *live, int64_t nparams, char **trainer_json);

#endif
