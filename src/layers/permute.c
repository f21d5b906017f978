/* layers/permute.c — fixed permutations and the 2×2 squeeze (interface: layer.h). */
#include "layers/layer.h"

/* ------------------------------------------------------------------ permute (fixed buffer) */
typedef struct {
    nf_layer base;
    nf_perm_type type;
    int32_t C, H, W; /* squeeze: the input image shape (C = 0: a plain permutation) */
    int64_t off_perm; /* perm[j] as floats (exact for D < 2^24) */
} perm_layer;

/* perm[j] of the permutation stored as floats at buffer offset off. */
static int32_t perm_at(const nf_layer *L, int64_t off, int32_t j) { return (int32_t)L->reg->buffers[off + j]; }

/* Rows [i0, i1) of gather_cols. */
static void gather_rows(const nf_layer *L, int64_t off, const nf_real *x, nf_real *z, int inv, int64_t i0, int64_t i1) {
    int32_t D = L->dim, S = L->ld;
    for (int64_t i = i0; i < i1; i++)
        for (int32_t j = 0; j < D; j++) {
            int32_t p = perm_at(L, off, j);
            if (inv) z[i * S + p] = x[i * S + j];
            else z[i * S + j] = x[i * S + p];
        }
}

/* z[:, j] = x[:, perm[j]] (inv 0) or z[:, perm[j]] = x[:, j] (inv 1), rows ld apart. */
static void gather_cols(const nf_layer *L, int64_t off, const nf_real *x, nf_real *z, int64_t n, int inv) {
    NF_PARALLEL_RANGE(NF_PAR_WORTH(n, L->dim), n, gather_rows(L, off, x, z, inv, lo, hi));
}

/* ops->forward: z = x permuted; log-det 0. NF_OK. */
static nf_status pm_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                            nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(work);
    NF_UNUSED(logdet), NF_UNUSED(cache), NF_UNUSED(training);
    gather_cols(L, ((perm_layer *)L)->off_perm, x, z, n, 0);
    return NF_OK;
}
/* ops->inverse: the inverse permutation. NF_OK. */
static nf_status pm_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                            nf_real *work) {
    NF_UNUSED(logdet), NF_UNUSED(work);
    gather_cols(L, ((perm_layer *)L)->off_perm, z, x, n, 1);
    return NF_OK;
}
/* ops->backward: dx = dz under the inverse permutation (overwritten); no parameters. NF_OK. */
static nf_status pm_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                        const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(x), NF_UNUSED(cache), NF_UNUSED(dld), NF_UNUSED(work), NF_UNUSED(training);
    gather_cols(L, ((perm_layer *)L)->off_perm, dz, dx, n, 1);
    return NF_OK;
}
/* ops->init: the squeeze layout, or the reverse / identity / random (Fisher–Yates, from rng) permutation. */
static void pm_init(nf_layer *L, nf_rng *rng) {
    perm_layer *p = (perm_layer *)L;
    int32_t D = L->dim;
    nf_real *perm = NF_B(L, p->off_perm);
    if (p->C) { /* squeeze 2×2: out channel c·4 + dy·2 + dx, pixel (i, j) ← in channel c, pixel (2i+dy, 2j+dx) */
        int32_t C = p->C, H = p->H, W = p->W, h = H / 2, w = W / 2;
        for (int32_t c = 0; c < C; c++)
            for (int32_t dy = 0; dy < 2; dy++)
                for (int32_t dx = 0; dx < 2; dx++)
                    for (int32_t i = 0; i < h; i++)
                        for (int32_t j = 0; j < w; j++)
                            perm[((c * 4 + dy * 2 + dx) * h + i) * w + j] = (nf_real)((c * H + 2 * i + dy) * W + 2 * j + dx);
        return;
    }
    for (int32_t j = 0; j < D; j++) perm[j] = (nf_real)(p->type == NF_PERM_REVERSE ? D - 1 - j : j);
    if (p->type == NF_PERM_RANDOM) /* Fisher–Yates */
        for (int32_t j = D - 1; j > 0; j--) {
            int32_t k = (int32_t)(nf_rng_u64(rng) % (uint64_t)(j + 1));
            nf_real t = perm[j];
            perm[j] = perm[k], perm[k] = t;
        }
}

static const nf_layer_ops permute_ops = {"permute", pm_forward, pm_inverse, pm_backward,
                                         nf_layer_no_size, nf_layer_no_size,  pm_init,    nf_layer_no_destroy, nf_no_flops};

static const nf_layer_ops squeeze_ops = {"squeeze", pm_forward, pm_inverse, pm_backward,
                                         nf_layer_no_size, nf_layer_no_size,  pm_init,    nf_layer_no_destroy, nf_no_flops};

/* See layer.h: C ≥ 1, H and W even and ≥ 2 (else NF_ERR_INVALID). */
nf_status nf_squeeze_create(nf_registry *c, const char *name, int32_t C, int32_t H, int32_t W, nf_layer **out) {
    *out = NULL;
    if (C < 1 || H < 2 || W < 2 || H % 2 || W % 2)
        return nf_fail(NF_ERR_INVALID, "%s: squeeze needs C ≥ 1 and even H, W ≥ 2 (got %d × %d × %d)", name, (int)C, (int)H, (int)W);
    perm_layer *p = nf_layer_alloc(sizeof *p, &squeeze_ops, c, name, C * H * W);
    if (!p) return NF_ERR_NOMEM;
    p->C = C, p->H = H, p->W = W;
    p->off_perm = nf_registry_reserve_vec(c, name, "perm", NF_TENSOR_BUFFER, C * H * W);
    if (p->off_perm < 0) return free(p), NF_ERR_NOMEM; /* reason set by the registry */
    *out = &p->base;
    return NF_OK;
}

/* See layer.h: a fixed permutation of dim ≥ 1 columns (none, reverse or random; NF_PERM_LU is a linear
 * layer, nf_linear_create, and refused here with NF_ERR_INVALID). */
nf_status nf_permute_create(nf_registry *c, const char *name, int32_t dim, nf_perm_type type, nf_layer **out) {
    *out = NULL;
    if (dim < 1) return nf_fail(NF_ERR_INVALID, "%s: a permutation needs dim ≥ 1 (got %d)", name, (int)dim);
    if ((unsigned)type > NF_PERM_RANDOM) return nf_fail(NF_ERR_INVALID, "%s: not a fixed permutation (type %d)", name, (int)type);
    perm_layer *p = nf_layer_alloc(sizeof *p, &permute_ops, c, name, dim);
    if (!p) return NF_ERR_NOMEM;
    p->type = type;
    p->off_perm = nf_registry_reserve_vec(c, name, "perm", NF_TENSOR_BUFFER, dim);
    if (p->off_perm < 0) return free(p), NF_ERR_NOMEM; /* reason set by the registry */
    *out = &p->base;
    return NF_OK;
}

