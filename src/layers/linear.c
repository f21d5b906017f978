/* layers/linear.c — invertible linear maps and Glow's 1×1 convolution (plain or LU) (interface: layer.h). */
#include "layers/layer.h"
#include "kernels/kernels.h"

/* ------------------------------------------------------------------ invertible linear (plain / LU)
 * Mixes the C channels of every one of the P pixels: z_s (C, P) = W · x_s (C, P) (P = 1: vectors,
 * z = x·Wᵀ for rows; P = H·W: Glow's invertible 1×1 convolution), log|det| = P·log|det W|.
 * Plain: W is the parameter, log|det W| by LU in double every call.
 * LU: W = P·A·B with A = L + I (L strictly lower), B = U + diag(sign·exp(log_s)) (U strictly upper);
 * P is the fixed row permutation W[r] = (A·B)[perm[r]]. Cache (n-independent): W (C, C). */
typedef struct {
    nf_layer base;
    int lu;
    int32_t C, P;                           /* channels, pixels per channel */
    int64_t off_W;                          /* plain */
    int64_t off_L, off_U, off_logs;         /* LU params */
    int64_t off_perm, off_sign;             /* LU buffers */
    double *lu_a, *lu_col;                  /* scratch for log|det| and inverses, (C, C) and (C) … */
    int32_t *lu_perm;                       /* … allocated once with the layer */
} linear_layer;

/* W = P·A·B from the LU parameters; A, B: (C, C) scratch filled with L + I and U + diag(sign·e^log_s). */
static void lu_build_W(const linear_layer *l, nf_real *W, nf_real *A, nf_real *B) {
    const nf_layer *L = &l->base;
    int32_t D = l->C;
    const nf_real *Lm = NF_P(L, l->off_L), *Um = NF_P(L, l->off_U), *ls = NF_P(L, l->off_logs);
    const nf_real *perm = NF_B(L, l->off_perm), *sg = NF_B(L, l->off_sign);
    for (int32_t i = 0; i < D; i++)
        for (int32_t j = 0; j < D; j++) {
            A[i * D + j] = i > j ? Lm[i * D + j] : (i == j ? 1 : 0);
            B[i * D + j] = i < j ? Um[i * D + j] : (i == j ? sg[i] * exp(ls[i]) : 0);
        }
    for (int32_t r = 0; r < D; r++) {
        int32_t pr = (int32_t)perm[r];
        for (int32_t j = 0; j < D; j++) {
            double s = 0;
            for (int32_t k = 0; k < D; k++) s += (double)A[pr * D + k] * B[k * D + j];
            W[r * D + j] = (nf_real)s;
        }
    }
}

/* W and log|det W| of the current parameters. work: 2·D·D floats (LU only). */
static nf_status lin_weight(const linear_layer *l, nf_real *W, nf_real *work, double *ld) {
    const nf_layer *L = &l->base;
    int32_t D = l->C;
    if (!l->lu) {
        memcpy(W, NF_P(L, l->off_W), sizeof(nf_real) * (size_t)D * (size_t)D);
        return nf_logabsdet_ws(W, D, l->lu_a, l->lu_perm, ld);
    }
    lu_build_W(l, W, work, work + (int64_t)D * D);
    const nf_real *ls = NF_P(L, l->off_logs);
    double s = 0;
    for (int32_t j = 0; j < D; j++) s += ls[j];
    *ld = s;
    return NF_OK;
}

/* FLOPs per sample: C×C products at each of P pixels. */
static int64_t lin_flops(const nf_layer *L) {
    const linear_layer *l = (const linear_layer *)L;
    return 2 * (int64_t)l->C * l->C * l->P;
}

/* Cache floats: W (C, C), independent of n. */
static int64_t lin_cache_size(const nf_layer *L, int64_t n) {
    NF_UNUSED(n);
    const linear_layer *l = (const linear_layer *)L;
    return (int64_t)l->C * l->C;
}
/* Scratch floats: 5·C·C (W, W⁻¹ or LU factors, dW, dM), independent of n. */
static int64_t lin_work_size(const nf_layer *L, int64_t n) {
    NF_UNUSED(n);
    const linear_layer *l = (const linear_layer *)L;
    return 5 * (int64_t)l->C * l->C;
}

/* z_s = M · x_s for every sample (M: (C, C)); trans: Mᵀ instead */
static void mix_channels(const linear_layer *l, const nf_real *M, int trans, const nf_real *x, nf_real *z, int64_t n) {
    int32_t C = l->C, P = l->P, S = l->base.ld;
    if (P == 1) { /* rows: z = x·Mᵀ (or x·M) as one product */
        nf_gemm(0, !trans, n, C, C, 1, x, S, M, C, 0, z, S);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) nf_gemm(trans, 0, C, P, C, 1, M, C, x + i * S, P, 0, z + i * S, P);
}

/* ops->forward: z = W·x per pixel, logdet += P·log|det W|; W into the cache.
 * NF_ERR_NUMERIC (reason set) if W is singular. */
static nf_status lin_forward(nf_layer *L, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n,
                             nf_real *cache, nf_real *work, int training) {
    NF_UNUSED(training);
    linear_layer *l = (linear_layer *)L;
    double ld;
    nf_status st = lin_weight(l, cache, work, &ld); /* work: 2·C·C of the 5·C·C reserved */
    if (st) return nf_fail(st, "%s: the weight matrix is singular", L->name);
    mix_channels(l, cache, 0, x, z, n);
    if (logdet)
        for (int64_t i = 0; i < n; i++) logdet[i] += (nf_real)(ld * l->P);
    return NF_OK;
}

/* ops->inverse: x = W⁻¹·z; logdet −= P·log|det W|. NF_ERR_NUMERIC if W cannot be inverted. */
static nf_status lin_inverse(nf_layer *L, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n,
                             nf_real *work) {
    linear_layer *l = (linear_layer *)L;
    int32_t D = l->C;
    int64_t DD = (int64_t)D * D;
    double ld;
    nf_real *W = work, *Winv = work + DD;
    nf_status st = lin_weight(l, W, work + 2 * DD, &ld);
    if (!st) st = nf_invert_ws(W, D, Winv, l->lu_a, l->lu_perm, l->lu_col);
    if (st) return nf_fail(st, "%s: the weight matrix is singular", L->name);
    mix_channels(l, Winv, 0, z, x, n);
    if (logdet)
        for (int64_t i = 0; i < n; i++) logdet[i] -= (nf_real)(ld * l->P);
    return NF_OK;
}

/* ops->backward: dx = Wᵀ·dz (overwritten); grads += ∂L/∂W (plain: dW + Σdld·P·W⁻ᵀ) or ∂L/∂(L, U,
 * log_s). NF_ERR_NUMERIC (reason set, gradient incomplete) when the plain W cannot be inverted. */
static nf_status lin_backward(nf_layer *L, const nf_real *x, const nf_real *cache, const nf_real *dz,
                         const nf_real *dld, nf_real *dx, int64_t n, nf_real *work, int training) {
    NF_UNUSED(training);
    linear_layer *l = (linear_layer *)L;
    int32_t D = l->C, P = l->P, S = L->ld;
    int64_t DD = (int64_t)D * D;
    const nf_real *W = cache;
    double sld = 0;
    for (int64_t i = 0; i < n; i++) sld += dld[i];
    sld *= P; /* log|det| = P·log|det W| */
    mix_channels(l, W, 1, dz, dx, n); /* dx_s = Wᵀ·dz_s */
    nf_real *dW = work;               /* dW = Σ_s dz_s·x_sᵀ, samples in order */
    if (P == 1) nf_gemm(1, 0, D, D, n, 1, dz, S, x, S, 0, dW, D);
    else
        for (int64_t i = 0; i < n; i++) nf_gemm(0, 1, D, D, P, 1, dz + i * S, P, x + i * S, P, i ? 1 : 0, dW, D);
    if (!l->lu) {
        /* ∂ log|det W| / ∂W = W⁻ᵀ */
        nf_real *Winv = work + DD, *g = NF_G(L, l->off_W);
        /* forward's LU accepted this W, but the inverse may still fail (or W changed since): say so
         * rather than leave the gradient out */
        if (nf_invert_ws(W, D, Winv, l->lu_a, l->lu_perm, l->lu_col) != NF_OK)
            return nf_fail(NF_ERR_NUMERIC, "%s: the weight matrix is singular: no gradient of log|det W|", L->name);
        for (int32_t i = 0; i < D; i++)
            for (int32_t j = 0; j < D; j++) g[i * D + j] += dW[i * D + j] + (nf_real)sld * Winv[j * D + i];
        return NF_OK;
    }
    nf_real *A = work + DD, *B = work + 2 * DD, *Wt = work + 3 * DD, *dM = work + 4 * DD;
    lu_build_W(l, Wt, A, B);
    const nf_real *perm = NF_B(L, l->off_perm), *sg = NF_B(L, l->off_sign), *ls = NF_P(L, l->off_logs);
    for (int32_t r = 0; r < D; r++) memcpy(dM + (int64_t)perm[r] * D, dW + (int64_t)r * D, sizeof(nf_real) * (size_t)D);
    nf_real *gL = NF_G(L, l->off_L), *gU = NF_G(L, l->off_U), *gls = NF_G(L, l->off_logs);
    for (int32_t i = 0; i < D; i++)
        for (int32_t j = 0; j < D; j++) {
            if (i > j) { /* dA = dM·Bᵀ, strictly lower part */
                double s = 0;
                for (int32_t k = 0; k < D; k++) s += (double)dM[i * D + k] * B[j * D + k];
                gL[i * D + j] += (nf_real)s;
            } else { /* dB = Aᵀ·dM, upper part and diagonal */
                double s = 0;
                for (int32_t k = 0; k < D; k++) s += (double)A[k * D + i] * dM[k * D + j];
                if (i < j) gU[i * D + j] += (nf_real)s;
                else gls[i] += (nf_real)(s * sg[i] * exp((double)ls[i]) + sld);
            }
        }
    return NF_OK;
}

/* ops->init: a random orthogonal W (plain) or its LU factors, permutation and signs (LU). */
static void lin_init(nf_layer *L, nf_rng *rng) {
    linear_layer *l = (linear_layer *)L;
    int32_t D = l->C;
    /* the layer's LU scratch, (D, D) and (D), allocated with the layer: init cannot fail (it used to
     * allocate here and leave zero parameters, with NF_OK, when that failed) */
    double *Q = l->lu_a;
    int32_t *perm = l->lu_perm;
    nf_random_orthogonal(rng, D, Q);
    if (!l->lu) {
        for (int64_t i = 0; i < (int64_t)D * D; i++) NF_P(L, l->off_W)[i] = (nf_real)Q[i];
    } else {
        nf_lu_decompose(Q, perm, D); /* rows: (LU)[i] = Q[perm[i]], so W[perm[i]] = (A·B)[i] */
        nf_real *Lm = NF_P(L, l->off_L), *Um = NF_P(L, l->off_U), *ls = NF_P(L, l->off_logs);
        nf_real *pb = NF_B(L, l->off_perm), *sg = NF_B(L, l->off_sign);
        for (int32_t i = 0; i < D; i++) {
            pb[perm[i]] = (nf_real)i;
            for (int32_t j = 0; j < D; j++) {
                Lm[i * D + j] = i > j ? (nf_real)Q[i * D + j] : 0;
                Um[i * D + j] = i < j ? (nf_real)Q[i * D + j] : 0;
            }
            sg[i] = Q[i * D + i] < 0 ? -1 : 1;
            ls[i] = (nf_real)log(fabs(Q[i * D + i]));
        }
    }
}

/* ops->destroy: free the LU scratch the layer owns. */
static void lin_destroy(nf_layer *L) {
    linear_layer *l = (linear_layer *)L;
    free(l->lu_a), free(l->lu_col), free(l->lu_perm);
}

static const nf_layer_ops linear_ops = {"linear",       lin_forward,   lin_inverse, lin_backward,
                                        lin_cache_size, lin_work_size, lin_init,    lin_destroy, lin_flops};
static const nf_layer_ops linear_lu_ops = {"linear_lu",    lin_forward,   lin_inverse, lin_backward,
                                           lin_cache_size, lin_work_size, lin_init,    lin_destroy, lin_flops};

/* See layer.h: an invertible linear map of dim-vectors (a 1×1 convolution of one pixel). */
nf_status nf_linear_create(nf_registry *c, const char *name, int32_t dim, int lu, nf_layer **out) { return nf_conv1x1_create(c, name, dim, 1, lu, out); }

/* See layer.h: C ≥ 1 channels, P ≥ 1 pixels; plain W or its LU parametrisation. */
nf_status nf_conv1x1_create(nf_registry *c, const char *name, int32_t C, int32_t P, int lu, nf_layer **out) {
    *out = NULL;
    if (C < 1 || P < 1) return nf_fail(NF_ERR_INVALID, "%s: an invertible linear map needs C, P ≥ 1 (got %d, %d)", name, (int)C, (int)P);
    int32_t dim = C;
    linear_layer *l = nf_layer_alloc(sizeof *l, lu ? &linear_lu_ops : &linear_ops, c, name, C * P);
    if (!l) return NF_ERR_NOMEM;
    l->lu = lu, l->C = C, l->P = P;
    l->lu_a = malloc(sizeof(double) * (size_t)C * (size_t)C);
    l->lu_col = malloc(sizeof(double) * (size_t)C);
    l->lu_perm = malloc(sizeof(int32_t) * (size_t)C);
    if (!l->lu_a || !l->lu_col || !l->lu_perm) {
        nf_layer_free(&l->base);
        return nf_fail(NF_ERR_NOMEM, "out of memory for the LU scratch of %s", name);
    }
    int64_t sq[2] = {dim, dim};
    int ok;
    if (!lu) {
        l->off_W = nf_registry_reserve(c, name, "weight", NF_TENSOR_PARAM, 2, sq);
        ok = l->off_W >= 0;
    } else {
        l->off_L = nf_registry_reserve(c, name, "lower", NF_TENSOR_PARAM, 2, sq);
        l->off_U = nf_registry_reserve(c, name, "upper", NF_TENSOR_PARAM, 2, sq);
        l->off_logs = nf_registry_reserve_vec(c, name, "log_s", NF_TENSOR_PARAM, dim);
        l->off_perm = nf_registry_reserve_vec(c, name, "perm", NF_TENSOR_BUFFER, dim);
        l->off_sign = nf_registry_reserve_vec(c, name, "sign", NF_TENSOR_BUFFER, dim);
        ok = l->off_L >= 0 && l->off_U >= 0 && l->off_logs >= 0 && l->off_perm >= 0 && l->off_sign >= 0;
    }
    if (!ok) {
        nf_layer_free(&l->base);
        return NF_ERR_NOMEM; /* reason set by the registry */
    }
    *out = &l->base;
    return NF_OK;
}

