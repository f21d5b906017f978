/* models/recipes.c — the architectures of the lecture, built from a config:
 *   NICE:    K × (additive coupling [→ permutation]) → diagonal scaling, logistic prior
 *   RealNVP: K × (affine coupling [→ batch norm] [→ permutation]); images: multi-scale masked couplings
 *   Glow:    K × (ActNorm → invertible linear → coupling); images: L levels of squeeze → K steps → split
 *   NSF:     [element-wise spline →] K × ([ActNorm →] spline coupling [→ permutation]); 1-D data: the
 *            element-wise spline alone; images: Glow's levels with spline couplings
 *   MAF/IAF: K × ([ActNorm →] autoregressive block on a MADE [→ batch norm] [→ permutation]) (vectors)
 * A conditional config (context_dim > 0) builds the same layers with every coupling and autoregressive
 * block conditional on the context (Glow's splits stay unconditional; the prior: flow.c). */
#include "models/flow_impl.h"

/* Append L (ownership passes to f, also on failure: L is freed then) to f's layer list, growing it;
 * st is the status of L's constructor, returned unchanged (its reason kept) when it failed. */
static nf_status push_layer(nf_flow *f, nf_status st, nf_layer *L, int32_t *cap) {
    if (st) return st;
    if (f->nlayers == *cap) {
        int32_t nc = *cap ? 2 * *cap : 16;
        nf_layer **t = realloc(f->layers, sizeof *t * (size_t)nc);
        if (!t) {
            nf_layer_free(L);
            return nf_fail(NF_ERR_NOMEM, "out of memory building the model");
        }
        f->layers = t;
        *cap = nc;
    }
    f->layers[f->nlayers++] = L;
    return NF_OK;
}

/* Append the layers of f->cfg's model (NICE, RealNVP, Glow or NSF on vectors or images; MAF or IAF on vectors) to f, reserving every
 * tensor in f->reg. On failure the layers pushed so far stay owned by f (nf_flow_free releases them). */
nf_status nf_model_build(nf_flow *f) {
    const nf_config *c = &f->cfg;
    nf_registry *x = &f->reg;
    int32_t D = c->dim, cap = 0, idx = 0, K = c->context_dim; /* K > 0: every conditioner sees the context */
    nf_status st = NF_OK;
    char nm[48];
#define NAME() (snprintf(nm, sizeof nm, "layers.%d", (int)idx++), nm)
    nf_layer *L = NULL;
/* PUSH(nf_X_create(args…, &L)): construct into L and append it; return the constructor's status on failure */
#define PUSH(expr) do { L = NULL; st = (expr); if ((st = push_layer(f, st, L, &cap)) != NF_OK) return st; } while (0)
#define PUSH_COUPLING(expr) do { PUSH(expr); nf_coupling_set_init_std(f->layers[f->nlayers - 1], c->init_std); } while (0)
/* what separates couplings / blocks: a fixed permutation, or a learned LU-parameterised linear map */
#define PUSH_PERM() PUSH(c->perm == NF_PERM_LU ? nf_linear_create(x, NAME(), D, 1, &L) : nf_permute_create(x, NAME(), D, c->perm, &L))
    if (c->standardize) PUSH(nf_standardize_create(x, NAME(), D, &L));
    if (c->height > 0 && c->logit_alpha > 0) PUSH(nf_logit_create(x, NAME(), D, c->logit_alpha, &L));
    if (c->model == NF_MODEL_REALNVP && c->height > 0) {
        /* multi-scale RealNVP: layers act on the kept prefix of rows D apart */
        int32_t C = c->channels, H = c->height, W = c->width;
#define PUSH_MASKED(type, parity) do { PUSH(nf_masked_coupling_create(x, NAME(), C, H, W, type, parity, c->hidden, c->blocks, K, &L)); \
        f->layers[f->nlayers - 1]->ld = D; nf_masked_coupling_set_init_std(f->layers[f->nlayers - 1], c->init_std); } while (0)
        for (int32_t l = 0; l < c->levels; l++) {
            if (l + 1 == c->levels) { /* last scale: 4 checkerboard couplings */
                for (int32_t k = 0; k < 4; k++) PUSH_MASKED(NF_MASK_CHECKERBOARD, k % 2);
                break;
            }
            for (int32_t k = 0; k < 3; k++) PUSH_MASKED(NF_MASK_CHECKERBOARD, k % 2);
            PUSH(nf_squeeze_create(x, NAME(), C, H, W, &L));
            f->layers[f->nlayers - 1]->ld = D;
            C *= 4, H /= 2, W /= 2;
            for (int32_t k = 0; k < 3; k++) PUSH_MASKED(NF_MASK_CHANNEL, k % 2);
            C /= 2; /* factor out the last half of the channels: the prefix keeps the first */
        }
#undef PUSH_MASKED
        return st;
    }
    if ((c->model == NF_MODEL_GLOW || c->model == NF_MODEL_NSF) && c->height > 0) {
        /* multi-scale Glow, and NSF in the same layout with spline couplings: squeeze → K × (ActNorm →
         * 1×1 conv → coupling) → split; every layer acts on the kept prefix of rows D apart */
#define PUSH_IMG(expr) do { PUSH(expr); f->layers[f->nlayers - 1]->ld = D; } while (0)
        int32_t C = c->channels, H = c->height, W = c->width;
        for (int32_t l = 0; l < c->levels; l++) {
            PUSH_IMG(nf_squeeze_create(x, NAME(), C, H, W, &L));
            C *= 4, H /= 2, W /= 2;
            for (int32_t k = 0; k < c->depth; k++) {
                PUSH_IMG(nf_actnorm2d_create(x, NAME(), C, H * W, &L));
                PUSH_IMG(nf_conv1x1_create(x, NAME(), C, H * W, c->lu, &L));
                if (c->model == NF_MODEL_NSF)
                    PUSH_IMG(nf_conv_spline_coupling_create(x, NAME(), C, H, W, c->hidden, c->layers, c->bins, c->bound, K, &L));
                else
                    PUSH_IMG(nf_conv_coupling_create(x, NAME(), C, H, W, c->hidden, c->layers, c->coupling == NF_COUPLING_ADDITIVE, c->scale, K, &L));
                nf_coupling_set_init_std(f->layers[f->nlayers - 1], c->init_std);
            }
            if (l + 1 < c->levels) {
                PUSH_IMG(nf_split_create(x, NAME(), C, H, W, &L));
                C /= 2;
            }
        }
#undef PUSH_IMG
        return st;
    }
    if (c->model == NF_MODEL_NSF) {
        if (c->elementwise) PUSH(nf_spline_create(x, NAME(), D, c->bins, c->bound, &L));
        for (int32_t k = 0; D > 1 && k < c->depth; k++) {
            /* with a permutation every coupling transforms the second part (the permutation moves the
             * next coordinates there); without one, the parts alternate */
            if (c->actnorm) PUSH(nf_actnorm_create(x, NAME(), D, &L));
            PUSH_COUPLING(nf_spline_coupling_create(x, NAME(), D, c->partition, c->perm ? 0 : k % 2, c->hidden, c->layers, c->act, c->bins, c->bound, K, &L));
            if (c->perm && k + 1 < c->depth) PUSH_PERM();
        }
        return st;
    }
    for (int32_t k = 0; k < c->depth; k++) {
        switch (c->model) {
        case NF_MODEL_NICE:
            if (c->actnorm) PUSH(nf_actnorm_create(x, NAME(), D, &L));
            PUSH_COUPLING(nf_additive_coupling_create(x, NAME(), D, c->partition, k % 2, c->hidden, c->layers, c->act, K, &L));
            if (c->perm) PUSH_PERM();
            break;
        case NF_MODEL_REALNVP:
            if (c->actnorm) PUSH(nf_actnorm_create(x, NAME(), D, &L));
            PUSH_COUPLING(nf_affine_coupling_create(x, NAME(), D, c->partition, k % 2, c->hidden, c->layers, c->act, c->scale, K, &L));
            if (c->batchnorm && k + 1 < c->depth) PUSH(nf_batchnorm_create(x, NAME(), D, &L));
            if (c->perm) PUSH_PERM();
            break;
        case NF_MODEL_MAF:
        case NF_MODEL_IAF:
            if (c->actnorm) PUSH(nf_actnorm_create(x, NAME(), D, &L));
            if (c->transform == NF_TRANSFORM_SPLINE || (c->transform == NF_TRANSFORM_MIXED && k % 2 == 1))
                PUSH(nf_maf_spline_create(x, NAME(), D, c->model == NF_MODEL_IAF, c->hidden, c->layers, c->act, c->bins, c->bound, c->order, K, &L));
            else
                PUSH(nf_maf_create(x, NAME(), D, c->model == NF_MODEL_IAF, c->hidden, c->layers, c->act, c->scale, c->order, K, &L));
            nf_maf_set_init_std(f->layers[f->nlayers - 1], c->init_std);
            if (c->batchnorm && k + 1 < c->depth) PUSH(nf_batchnorm_create(x, NAME(), D, &L));
            if (c->perm && k + 1 < c->depth) PUSH_PERM();
            break;
        case NF_MODEL_GLOW:
            PUSH(nf_actnorm_create(x, NAME(), D, &L));
            PUSH(nf_linear_create(x, NAME(), D, c->lu, &L));
            if (c->coupling == NF_COUPLING_ADDITIVE)
                PUSH_COUPLING(nf_additive_coupling_create(x, NAME(), D, c->partition, 0, c->hidden, c->layers, c->act, K, &L));
            else
                PUSH_COUPLING(nf_affine_coupling_create(x, NAME(), D, c->partition, 0, c->hidden, c->layers, c->act, c->scale, K, &L));
            break;
        case NF_MODEL_NSF: /* built above */
            break;
        }
    }
    if (c->model == NF_MODEL_NICE) PUSH(nf_diag_scale_create(x, NAME(), D, &L));
#undef PUSH
#undef PUSH_COUPLING
#undef PUSH_PERM
#undef NAME
    return st;
}

