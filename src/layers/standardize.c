/* layers/standardize.c — fixed per-column standardisation (interface: layer.h). */
#include "layers/layer.h"

/* ------------------------------------------------------------------ standardize (fixed buffers) */
typedef struct {
    nf_layer base;
    int64_t off_mean, off_std;
} std_layer;

/* Rows [i0, i1) of st_map, each row's log-det term ld. */
static void st_rows(const std_layer *s, const nf_real *in, nf_real *out, nf_real *logdet, int inverse, nf_real ld, int64_t i0,
                    int64_t i1) {
    const nf_layer *L = &s->base;
    const nf_real *mu = NF_B(L, s->off_mean), *sd = NF_B(L, s->off_std);
    int32_t D = L->dim, S = L->ld;
    for (int64_t i = i0; i < i1; i++) {
        for (int32_t j = 0; j < D; j++) out[i * S + j] = inverse ? in[i * S + j] * sd[j] + mu[j] : (in[i * S + j] - mu[j]) / sd[j];
        if (logdet) logdet[i] += ld;
    }
}

/* inverse 0: out = (in − μ)/σ, logdet += −Σ log σ; inverse 1: out = in·σ + μ, logdet −= −Σ log σ; with the
 * fixed buffers (logdet may be NULL). */
static void st_map(const std_layer *s, const nf_real *in, nf_real *out, nf_real *logdet, int64_t n, int inverse) {
    const nf_layer *L = &s->base;
    const nf_real *sd = NF_B(L, s->off_std);
    double ld = 0;
    for (int32_t j = 0; j < L->dim; j++) ld -= log((double)sd[j]);
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, L->dim), n, st_rows(s, in, out, logdet, inverse, (nf_real)(inverse ? -ld : ld), lo, hi));
}

/* ops->forward: z = (x − μ)/σ; logdet −= Σ log σ. NF_OK. */
static nf_status st_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(work), NF_UNUSED(cache), NF_UNUSED(training);
    st_map((const std_layer *)L, x, z, logdet, n, 0);
    return NF_OK;
}

/* ops->inverse: x = z·σ + μ; logdet += Σ log σ. NF_OK. */
static nf_status st_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    NF_UNUSED(work);
    st_map((const std_layer *)L, z, x, logdet, n, 1);
    return NF_OK;
}

/* ops->backward: dx = dz/σ (overwritten); no parameters. NF_OK. */
static nf_status st_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(x), NF_UNUSED(cache), NF_UNUSED(dld), NF_UNUSED(work), NF_UNUSED(training);
    std_layer *s = (std_layer *)L;
    const nf_real *sd = NF_B(L, s->off_std);
    int32_t D = L->dim, S = L->ld;
    for (int64_t i = 0; i < n; i++)
        for (int32_t j = 0; j < D; j++) dx[i * S + j] = dz[i * S + j] / sd[j];
    return NF_OK;
}

/* ops->init: μ = 0, σ = 1 until nf_standardize_set. */
static void st_init(nf_layer *L, nf_rng *rng) {
    NF_UNUSED(rng);
    std_layer *s = (std_layer *)L;
    for (int32_t j = 0; j < L->dim; j++) *NF_B(L, s->off_mean + j) = 0, *NF_B(L, s->off_std + j) = 1;
}

static const nf_layer_ops standardize_ops = {"standardize", st_forward, st_inverse, st_backward,
                                             nf_layer_no_size,     nf_layer_no_size,  st_init,    nf_layer_no_destroy, nf_no_flops};

/* See layer.h: fixed standardisation of dim ≥ 1 columns (mean 0, std 1 until nf_standardize_set). */
nf_status nf_standardize_create(nf_registry *c, const char *name, int32_t dim, nf_layer **out) {
    *out = NULL;
    if (dim < 1) return nf_fail(NF_ERR_INVALID, "%s: standardisation needs dim ≥ 1 (got %d)", name, (int)dim);
    std_layer *s = nf_layer_alloc(sizeof *s, &standardize_ops, c, name, dim);
    if (!s) return NF_ERR_NOMEM;
    s->off_mean = nf_registry_reserve_vec(c, name, "mean", NF_TENSOR_BUFFER, dim);
    s->off_std = nf_registry_reserve_vec(c, name, "std", NF_TENSOR_BUFFER, dim);
    if (s->off_mean < 0 || s->off_std < 0) return free(s), NF_ERR_NOMEM; /* reason set by the registry */
    *out = &s->base;
    return NF_OK;
}

/* See layer.h: copy D means and stds (owned by the caller) into the layer's buffers. */
void nf_standardize_set(nf_layer *L, const nf_real *mean, const nf_real *std) {
    std_layer *s = (std_layer *)L;
    memcpy(NF_B(L, s->off_mean), mean, sizeof(nf_real) * (size_t)L->dim);
    memcpy(NF_B(L, s->off_std), std, sizeof(nf_real) * (size_t)L->dim);
}

