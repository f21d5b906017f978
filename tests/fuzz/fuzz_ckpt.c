/* fuzz_ckpt.c — libFuzzer target: nf_flow_load on arbitrary bytes (the safetensors length, the header
 * JSON, the metadata, the config, the tensor table, the CRC), then, for a checkpoint it accepts, the
 * model is used: log p of three fixed inputs must be finite or refused with a reason, and sampling
 * and the training state reader must not crash. A loaded model's dimension and parameters are backed
 * by the file (the library must not allocate what the file does not hold: -malloc_limit_mb). */
#include "fuzz_common.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write(path, sizeof path, "model.ckpt", data, size);
    nf_flow *f = NULL;
    nf_status st = nf_flow_load(path, &f);
    fuzz_check_reason(st);
    if (st != NF_OK) {
        if (f) abort();
        unlink(path);
        return 0;
    }
    int32_t D = nf_flow_dim(f);
    const nf_config *cfg = nf_flow_config(f);
    int image = cfg->channels > 0;
    enum { N = 3 };
    nf_real *x = malloc(sizeof(nf_real) * (size_t)D * N), lp[N];
    if (!x) abort();
    for (int64_t i = 0; i < (int64_t)D * N; i++) /* in the support of every model: pixels in [−0.5, 0.5) */
        x[i] = image ? (nf_real)(((i * 37) % 256) / 256.0 - 0.5 + 1.0 / 512) : (nf_real)sin(0.7 * (double)i);
    st = nf_flow_log_prob(f, x, lp, N);
    fuzz_check_reason(st);
    if (st == NF_OK)
        for (int i = 0; i < N; i++)
            if (!isfinite(lp[i])) {
                fprintf(stderr, "log p of fixed input %d is %g and was not refused\n", i, (double)lp[i]);
                abort();
            }
    nf_rng rng;
    nf_rng_seed(&rng, 1);
    fuzz_check_reason(nf_flow_sample(f, &rng, 0.5, x, N));
    free(x);
    nf_flow_free(f);
    unlink(path);
    return 0;
}
