/* data/data.h — what the data loaders share. Data knows the core only: no model, no layer. */
#ifndef NF_DATA_H
#define NF_DATA_H

#include "core/core.h"

/* A dataset of n rows of dim zeroed values; NF_ERR_NOMEM (reason set) on failure. Free with
 * nf_dataset_free. */
nf_status nf_dataset_alloc(int64_t n, int32_t dim, nf_dataset **out);
#endif
