/* fault_numeric.c — numerical faults injected into the real CLI: this object is linked into a copy of
 * the nflow tool (nflow_faults, tests only) with -Wl,--wrap=nf_flow_nll_grad, so every training step's
 * loss and gradient go through the wrapper below. NFLOW_FAULTS="batch:5,grad:8,param:20" poisons, at
 * the given steps (counted from 1 in this process): one value of the batch (NaN), of the gradient
 * after the backward pass (Inf), or of the parameters before the step (NaN, which stays: every later
 * step is non-finite too). tests/fault_numeric.sh checks what the tool makes of it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nflow.h"

nf_status __real_nf_flow_nll_grad(nf_flow *f, const nf_real *x, int64_t n, double *loss, nf_real *dx);
nf_status __wrap_nf_flow_nll_grad(nf_flow *f, const nf_real *x, int64_t n, double *loss, nf_real *dx);

/* 1 if NFLOW_FAULTS names kind at step s. */
static int fault_at(const char *kind, long s) {
    const char *spec = getenv("NFLOW_FAULTS");
    if (!spec) return 0;
    size_t k = strlen(kind);
    for (const char *p = spec; (p = strstr(p, kind)); p += k)
        if ((p == spec || p[-1] == ',') && p[k] == ':' && strtol(p + k + 1, NULL, 10) == s) return 1;
    return 0;
}

nf_status __wrap_nf_flow_nll_grad(nf_flow *f, const nf_real *x, int64_t n, double *loss, nf_real *dx) {
    static long step;
    step++;
    if (fault_at("batch", step)) ((nf_real *)x)[0] = NAN; /* the trainer's own batch buffer */
    if (fault_at("param", step)) nf_flow_params(f)[0] = NAN;
    nf_status st = __real_nf_flow_nll_grad(f, x, n, loss, dx);
    if (!st && fault_at("grad", step)) nf_flow_grads(f)[0] = INFINITY;
    return st;
}
