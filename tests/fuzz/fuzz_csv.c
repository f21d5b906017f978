/* fuzz_csv.c — libFuzzer target: nf_dataset_csv on arbitrary bytes. A dataset it accepts has finite
 * values and n·dim matching what it allocated (ASan checks the reads), and column names (from a header)
 * that the library itself accepts as names of its dim columns. */
#include "fuzz_common.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write(path, sizeof path, "in.csv", data, size);
    nf_dataset *ds = NULL;
    nf_status st = nf_dataset_csv(path, &ds);
    fuzz_check_reason(st);
    if (st == NF_OK) {
        if (!ds || ds->n < 1 || ds->dim < 1) abort();
        for (int64_t i = 0; i < ds->n * ds->dim; i++)
            if (!isfinite(ds->x[i])) abort();
        if (ds->names && nf_dataset_set_names(ds, ds->names) != NF_OK) abort(); /* dim non-empty names */
    } else if (ds) abort(); /* *out stays NULL on failure */
    nf_dataset_free(ds);
    unlink(path);
    return 0;
}
