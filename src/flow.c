/* flow.c — models built from a config, the composition f = f_K ∘ … ∘ f_1 and its log-likelihood:
 *     log p(x) = log π(f(x)) + Σ_k log|det J_{f_k}|          (lecture: change of variables)
 * Sizes first (every layer reserves its named tensors), then ONE parameter buffer, ONE gradient buffer
 * and ONE state buffer are allocated and the layers initialised. The workspace (layer inputs, caches,
 * scratch) is sized for a batch once and reused: a training step allocates nothing. */
#include "internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define EVAL_CHUNK 4096 /* rows per pass for evaluation-only calls: bounded memory */

/* ------------------------------------------------------------------ config */
/* Names of every enum of nf_config, in enum order; used by the CLI and the checkpoint metadata. */
static const struct {
    const char *kind;
    const char *names[4];
} enum_names[] = {
    {"model", {"nice", "realnvp", "glow", NULL}},
    {"activation", {"relu", "tanh", "leaky_relu", NULL}},
    {"coupling", {"affine", "additive", NULL, NULL}},
    {"scale", {"tanh", "sigmoid", NULL, NULL}},
    {"partition", {"halves", "oddeven", NULL, NULL}},
    {"prior", {"normal", "logistic", "diag_gaussian", NULL}},
    {"perm", {"none", "reverse", "random", NULL}},
};

int nf_enum_from_name(const char *kind, const char *name) {
    for (size_t k = 0; k < sizeof enum_names / sizeof enum_names[0]; k++)
        if (strcmp(kind, enum_names[k].kind) == 0)
            for (int i = 0; i < 4 && enum_names[k].names[i]; i++)
                if (name && strcmp(name, enum_names[k].names[i]) == 0) return i;
    return -1;
}

const char *nf_enum_name(const char *kind, int value) {
    for (size_t k = 0; k < sizeof enum_names / sizeof enum_names[0]; k++)
        if (strcmp(kind, enum_names[k].kind) == 0 && value >= 0 && value < 4 && enum_names[k].names[value])
            return enum_names[k].names[value];
    return "?";
}

int nf_model_from_name(const char *name) { return nf_enum_from_name("model", name); }
const char *nf_model_name(nf_model_type m) { return nf_enum_name("model", (int)m); }

void nf_config_default(nf_config *c, nf_model_type model, int32_t dim) {
    memset(c, 0, sizeof *c);
    c->model = model;
    c->dim = dim;
    c->layers = 2;
    c->act = NF_ACT_RELU;
    c->scale = NF_SCALE_TANH;
    c->partition = NF_PART_HALVES;
    c->lu = 1;
    c->seed = 1;
    switch (model) {
    case NF_MODEL_NICE: /* NICE: additive couplings, odd/even partition, diagonal scaling, logistic prior */
        c->depth = 4;
        c->hidden = 128;
        c->layers = 4;
        c->coupling = NF_COUPLING_ADDITIVE;
        c->partition = NF_PART_ODDEVEN;
        c->prior = NF_PRIOR_LOGISTIC;
        break;
    case NF_MODEL_REALNVP: /* RealNVP: affine couplings with exp(tanh) scales, alternating halves */
        c->depth = 8;
        c->hidden = 64;
        c->prior = NF_PRIOR_NORMAL;
        break;
    default: /* Glow: K × (ActNorm → invertible linear (LU) → affine coupling with sigmoid(h + 2)) */
        c->model = NF_MODEL_GLOW;
        c->depth = 8;
        c->hidden = 64;
        c->scale = NF_SCALE_SIGMOID;
        c->prior = NF_PRIOR_NORMAL;
        break;
    }
}

void nf_config_default_image(nf_config *c, nf_model_type model, int32_t C, int32_t H, int32_t W) {
    nf_config_default(c, model, C * H * W);
    c->channels = C, c->height = H, c->width = W;
    if (model == NF_MODEL_GLOW) {
        c->levels = 2;
        c->depth = 8, c->hidden = 128, c->layers = 2;
    } else if (model == NF_MODEL_REALNVP) {
        c->levels = 2, c->hidden = 64, c->blocks = 4, c->logit_alpha = 0.05;
    } else if (model == NF_MODEL_NICE) {
        c->depth = 4, c->hidden = 1000, c->layers = 5;
    }
}

nf_status nf_config_validate(const nf_config *c) {
    if ((unsigned)c->model > NF_MODEL_GLOW) return nf_fail(NF_ERR_INVALID, "unknown model type %d", (int)c->model);
    if (c->dim < 2 || c->dim > 1 << 20)
        return nf_fail(NF_ERR_INVALID, "data dimension %d: a coupling flow needs 2 to 1048576 dimensions", (int)c->dim);
    if (c->depth < 1 || c->depth > 1024) return nf_fail(NF_ERR_INVALID, "depth %d: must be 1..1024", (int)c->depth);
    if (c->hidden < 1 || c->hidden > 1 << 16) return nf_fail(NF_ERR_INVALID, "hidden width %d: must be 1..65536", (int)c->hidden);
    if (c->layers < 1 || c->layers > 32) return nf_fail(NF_ERR_INVALID, "MLP hidden layers %d: must be 1..32", (int)c->layers);
    if ((unsigned)c->act > NF_ACT_LEAKY_RELU) return nf_fail(NF_ERR_INVALID, "unknown activation %d", (int)c->act);
    if ((unsigned)c->coupling > NF_COUPLING_ADDITIVE) return nf_fail(NF_ERR_INVALID, "unknown coupling %d", (int)c->coupling);
    if ((unsigned)c->scale > NF_SCALE_SIGMOID) return nf_fail(NF_ERR_INVALID, "unknown scale %d", (int)c->scale);
    if ((unsigned)c->partition > NF_PART_ODDEVEN) return nf_fail(NF_ERR_INVALID, "unknown partition %d", (int)c->partition);
    if ((unsigned)c->perm > NF_PERM_RANDOM) return nf_fail(NF_ERR_INVALID, "unknown permutation %d", (int)c->perm);
    if (!(c->init_std >= 0 && c->init_std <= 1)) return nf_fail(NF_ERR_INVALID, "init_std %g: must be in [0, 1]", c->init_std);
    if ((unsigned)c->prior > NF_PRIOR_DIAG_GAUSSIAN) return nf_fail(NF_ERR_INVALID, "unknown prior %d", (int)c->prior);
    if (c->channels || c->height || c->width) {
        if (c->channels < 1 || c->height < 1 || c->width < 1 || (int64_t)c->channels * c->height * c->width != c->dim)
            return nf_fail(NF_ERR_INVALID, "image shape %d × %d × %d does not match dimension %d", (int)c->channels, (int)c->height, (int)c->width, (int)c->dim);
        if (!(c->logit_alpha >= 0 && c->logit_alpha < 0.5)) return nf_fail(NF_ERR_INVALID, "logit alpha %g: must be in [0, 0.5)", c->logit_alpha);
        if (c->model != NF_MODEL_NICE) {
            if (c->levels < 1 || c->levels > 8) return nf_fail(NF_ERR_INVALID, "levels %d: must be 1..8", (int)c->levels);
            /* glow squeezes at every level; realnvp at every scale but the last */
            int32_t sq = c->model == NF_MODEL_GLOW ? c->levels : c->levels - 1, m = 1 << sq;
            if (c->height % m || c->width % m)
                return nf_fail(NF_ERR_INVALID, "image %d × %d: height and width must be divisible by 2^%d = %d for %d levels", (int)c->height, (int)c->width, (int)sq, (int)m, (int)c->levels);
        }
        if (c->model == NF_MODEL_REALNVP && (c->blocks < 0 || c->blocks > 64)) return nf_fail(NF_ERR_INVALID, "ResNet blocks %d: must be 0..64", (int)c->blocks);
        return NF_OK;
    }
    if (c->model == NF_MODEL_GLOW && c->dim > 4096) return nf_fail(NF_ERR_INVALID, "glow on vectors: dimension %d too large for a dense invertible linear layer (max 4096)", (int)c->dim);
    return NF_OK;
}

/* ------------------------------------------------------------------ tensor registry */
int64_t nf_ctx_reserve(nf_flow_ctx *c, const char *layer, const char *tname, nf_tensor_kind kind,
                       int32_t ndim, const int64_t *shape) {
    if (c->ntensors == c->cap_tensors) {
        int32_t cap = c->cap_tensors ? 2 * c->cap_tensors : 64;
        nf_tensor_info *t = realloc(c->tensors, sizeof *t * (size_t)cap);
        if (!t) return -1;
        c->tensors = t;
        c->cap_tensors = cap;
    }
    nf_tensor_info *t = &c->tensors[c->ntensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s.%s", layer, tname);
    t->kind = kind;
    t->ndim = ndim;
    t->count = 1;
    for (int32_t i = 0; i < ndim; i++) t->shape[i] = shape[i], t->count *= shape[i];
    int64_t *total = kind == NF_TENSOR_PARAM ? &c->nparams : &c->nbuffers;
    t->offset = *total;
    *total += t->count;
    return t->offset;
}

nf_status nf_ctx_allocate(nf_flow_ctx *c) {
    c->params = nf_xcalloc((size_t)c->nparams, sizeof(nf_real));
    c->grads = nf_xcalloc((size_t)c->nparams, sizeof(nf_real));
    c->buffers = nf_xcalloc((size_t)c->nbuffers, sizeof(nf_real));
    if (!c->params || !c->grads || !c->buffers) return nf_fail(NF_ERR_NOMEM, "out of memory for %lld parameters", (long long)c->nparams);
    return NF_OK;
}

void nf_ctx_free(nf_flow_ctx *c) {
    free(c->params), free(c->grads), free(c->buffers), free(c->tensors);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------ construction */
static nf_status push_layer(nf_flow *f, nf_layer *L, int32_t *cap) {
    if (!L) return nf_fail(NF_ERR_NOMEM, "out of memory building the model");
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

static nf_status build_layers(nf_flow *f) {
    const nf_config *c = &f->cfg;
    nf_flow_ctx *x = &f->ctx;
    int32_t D = c->dim, cap = 0, idx = 0;
    nf_status st = NF_OK;
    char nm[48];
#define NAME() (snprintf(nm, sizeof nm, "layers.%d", (int)idx++), nm)
#define PUSH(expr) do { if ((st = push_layer(f, (expr), &cap)) != NF_OK) return st; } while (0)
#define PUSH_COUPLING(expr) do { PUSH(expr); nf_coupling_set_init_std(f->layers[f->nlayers - 1], c->init_std); } while (0)
    if (c->standardize) PUSH(nf_standardize_create(x, NAME(), D));
    if (c->height > 0 && c->logit_alpha > 0) PUSH(nf_logit_create(x, NAME(), D, c->logit_alpha));
    if (c->model == NF_MODEL_REALNVP && c->height > 0) {
        /* multi-scale RealNVP: layers act on the kept prefix of rows D apart */
        int32_t C = c->channels, H = c->height, W = c->width;
#define PUSH_MASKED(type, parity) do { PUSH(nf_masked_coupling_create(x, NAME(), C, H, W, type, parity, c->hidden, c->blocks)); \
        f->layers[f->nlayers - 1]->ld = D; nf_masked_coupling_set_init_std(f->layers[f->nlayers - 1], c->init_std); } while (0)
        for (int32_t l = 0; l < c->levels; l++) {
            if (l + 1 == c->levels) { /* last scale: 4 checkerboard couplings */
                for (int32_t k = 0; k < 4; k++) PUSH_MASKED(NF_MASK_CHECKERBOARD, k % 2);
                break;
            }
            for (int32_t k = 0; k < 3; k++) PUSH_MASKED(NF_MASK_CHECKERBOARD, k % 2);
            PUSH(nf_squeeze_create(x, NAME(), C, H, W));
            f->layers[f->nlayers - 1]->ld = D;
            C *= 4, H /= 2, W /= 2;
            for (int32_t k = 0; k < 3; k++) PUSH_MASKED(NF_MASK_CHANNEL, k % 2);
            C /= 2; /* factor out the last half of the channels: the prefix keeps the first */
        }
#undef PUSH_MASKED
        return st;
    }
    if (c->model == NF_MODEL_GLOW && c->height > 0) {
        /* multi-scale Glow: every layer acts on the kept prefix of rows D apart */
#define PUSH_IMG(expr) do { PUSH(expr); f->layers[f->nlayers - 1]->ld = D; } while (0)
        int32_t C = c->channels, H = c->height, W = c->width;
        for (int32_t l = 0; l < c->levels; l++) {
            PUSH_IMG(nf_squeeze_create(x, NAME(), C, H, W));
            C *= 4, H /= 2, W /= 2;
            for (int32_t k = 0; k < c->depth; k++) {
                PUSH_IMG(nf_actnorm2d_create(x, NAME(), C, H * W));
                PUSH_IMG(nf_conv1x1_create(x, NAME(), C, H * W, c->lu));
                PUSH_IMG(nf_conv_coupling_create(x, NAME(), C, H, W, c->hidden, c->layers, c->coupling == NF_COUPLING_ADDITIVE, c->scale));
                nf_coupling_set_init_std(f->layers[f->nlayers - 1], c->init_std);
            }
            if (l + 1 < c->levels) {
                PUSH_IMG(nf_split_create(x, NAME(), C, H, W));
                C /= 2;
            }
        }
#undef PUSH_IMG
        return st;
    }
    for (int32_t k = 0; k < c->depth; k++) {
        switch (c->model) {
        case NF_MODEL_NICE:
            if (c->actnorm) PUSH(nf_actnorm_create(x, NAME(), D));
            PUSH_COUPLING(nf_additive_coupling_create(x, NAME(), D, c->partition, k % 2, c->hidden, c->layers, c->act));
            if (c->perm) PUSH(nf_permute_create(x, NAME(), D, c->perm));
            break;
        case NF_MODEL_REALNVP:
            if (c->actnorm) PUSH(nf_actnorm_create(x, NAME(), D));
            PUSH_COUPLING(nf_affine_coupling_create(x, NAME(), D, c->partition, k % 2, c->hidden, c->layers, c->act, c->scale));
            if (c->batchnorm && k + 1 < c->depth) PUSH(nf_batchnorm_create(x, NAME(), D));
            if (c->perm) PUSH(nf_permute_create(x, NAME(), D, c->perm));
            break;
        case NF_MODEL_GLOW:
            PUSH(nf_actnorm_create(x, NAME(), D));
            PUSH(nf_linear_create(x, NAME(), D, c->lu));
            if (c->coupling == NF_COUPLING_ADDITIVE)
                PUSH_COUPLING(nf_additive_coupling_create(x, NAME(), D, c->partition, 0, c->hidden, c->layers, c->act));
            else
                PUSH_COUPLING(nf_affine_coupling_create(x, NAME(), D, c->partition, 0, c->hidden, c->layers, c->act, c->scale));
            break;
        }
    }
    if (c->model == NF_MODEL_NICE) PUSH(nf_diag_scale_create(x, NAME(), D));
#undef PUSH
#undef PUSH_COUPLING
#undef NAME
    return st;
}

static nf_status finish(nf_flow *f, int32_t dim, nf_prior_type prior, uint64_t seed) {
    nf_prior_init(&f->prior, &f->ctx, prior, dim);
    nf_status st = nf_ctx_allocate(&f->ctx);
    if (st) return st;
    nf_rng rng;
    nf_rng_seed(&rng, seed);
    for (int32_t k = 0; k < f->nlayers; k++) f->layers[k]->ops->init(f->layers[k], &rng);
    return NF_OK;
}

nf_status nf_flow_create(const nf_config *cfg, nf_flow **out) {
    *out = NULL;
    nf_status st = nf_config_validate(cfg);
    if (st) return st;
    nf_flow *f = nf_xcalloc(1, sizeof *f);
    if (!f) return nf_fail(NF_ERR_NOMEM, "out of memory");
    f->cfg = *cfg;
    if ((st = build_layers(f)) || (st = finish(f, cfg->dim, cfg->prior, cfg->seed))) {
        nf_flow_free(f);
        return st;
    }
    *out = f;
    return NF_OK;
}

nf_status nf_flow_from_layers(nf_flow_ctx *ctx, nf_layer **layers, int32_t n, nf_prior_type prior,
                              int32_t dim, nf_flow **out) {
    *out = NULL;
    nf_flow *f = nf_xcalloc(1, sizeof *f);
    nf_layer **ls = nf_xcalloc((size_t)n, sizeof *ls);
    if (!f || !ls) {
        free(f), free(ls);
        return nf_fail(NF_ERR_NOMEM, "out of memory");
    }
    nf_config_default(&f->cfg, NF_MODEL_REALNVP, dim);
    f->cfg.prior = prior;
    f->ctx = *ctx;
    memset(ctx, 0, sizeof *ctx);
    for (int32_t k = 0; k < n; k++) ls[k] = layers[k], ls[k]->ctx = &f->ctx;
    f->layers = ls;
    f->nlayers = n;
    nf_status st = finish(f, dim, prior, 7);
    if (st) {
        nf_flow_free(f);
        return st;
    }
    *out = f;
    return NF_OK;
}

void nf_flow_free(nf_flow *f) {
    if (!f) return;
    for (int32_t k = 0; k < f->nlayers; k++) nf_layer_free(f->layers[k]);
    free(f->layers);
    nf_ctx_free(&f->ctx);
    free(f->ws), free(f->act_off), free(f->cache_off);
    free(f);
}

const nf_config *nf_flow_config(const nf_flow *f) { return &f->cfg; }
int32_t nf_flow_dim(const nf_flow *f) { return f->cfg.dim; }
int32_t nf_flow_num_layers(const nf_flow *f) { return f->nlayers; }
const char *nf_flow_layer_name(const nf_flow *f, int32_t k) { return f->layers[k]->ops->kind; }
double nf_flow_flops(const nf_flow *f) {
    double s = 0;
    for (int32_t k = 0; k < f->nlayers; k++) s += (double)f->layers[k]->ops->flops(f->layers[k]);
    return s;
}
nf_real *nf_flow_params(nf_flow *f) { return f->ctx.params; }
nf_real *nf_flow_grads(nf_flow *f) { return f->ctx.grads; }
int64_t nf_flow_num_params(const nf_flow *f) { return f->ctx.nparams; }
void nf_flow_set_training(nf_flow *f, int training) { f->training = training; }
void nf_flow_zero_grad(nf_flow *f) { memset(f->ctx.grads, 0, sizeof(nf_real) * (size_t)f->ctx.nparams); }

nf_status nf_flow_set_standardization(nf_flow *f, const nf_real *mean, const nf_real *std) {
    if (f->nlayers == 0 || strcmp(f->layers[0]->ops->kind, "standardize") != 0)
        return nf_fail(NF_ERR_INVALID, "this model has no standardisation layer");
    for (int32_t j = 0; j < f->cfg.dim; j++)
        if (!(std[j] > 0) || !isfinite(std[j]) || !isfinite(mean[j]))
            return nf_fail(NF_ERR_INVALID, "standardisation statistics of column %d are not finite and positive", (int)j + 1);
    nf_standardize_set(f->layers[0], mean, std);
    return NF_OK;
}

/* ------------------------------------------------------------------ workspace
 * store mode (default):
 *   ws = [act_1 … act_K (n,D) each] [cache_1 … cache_K] [dz_a, dz_b (n,D)] [logdet, lp, dld (n)] [scratch]
 * recompute mode (memory independent of depth): two activation buffers used alternately, one spare, and
 * ONE cache (the largest any layer needs); backward rebuilds each layer's input from its output with the
 * layer's inverse and re-runs that layer's forward to refill the cache:
 *   ws = [act_even, act_odd, spare (n,D)] [cache] [dz_a, dz_b (n,D)] [logdet, lp, dld (n)] [scratch] */
nf_status nf_flow_reserve(nf_flow *f, int64_t n) {
    if (n <= f->nmax && f->ws) return NF_OK;
    int32_t K = f->nlayers, D = f->cfg.dim;
    int64_t *ao = nf_xcalloc((size_t)K + 2, sizeof(int64_t)), *co = nf_xcalloc((size_t)K + 1, sizeof(int64_t));
    if (!ao || !co) {
        free(ao), free(co);
        return nf_fail(NF_ERR_NOMEM, "out of memory");
    }
    int64_t off = 0, scratch = 0, cmax = 0;
    if (f->recompute) {
        for (int32_t k = 0; k < K; k++) ao[k] = (k % 2) * n * D;
        ao[K + 1] = 2 * n * D; /* spare */
        off = 3 * n * D;
    } else {
        for (int32_t k = 0; k < K; k++) ao[k] = off, off += n * D;
    }
    for (int32_t k = 0; k < K; k++) {
        int64_t w = f->layers[k]->ops->work_size(f->layers[k], n);
        int64_t c = f->layers[k]->ops->cache_size(f->layers[k], n);
        if (w > scratch) scratch = w;
        if (c > scratch) scratch = c;
        if (c > cmax) cmax = c;
        if (!f->recompute) co[k] = off, off += c;
    }
    if (f->recompute) {
        for (int32_t k = 0; k < K; k++) co[k] = off;
        off += cmax;
    }
    ao[K] = off; /* dz_a, dz_b */
    off += 2 * n * D + 3 * n;
    int64_t so = off;
    off += scratch;
    nf_real *ws = nf_xcalloc((size_t)off, sizeof(nf_real));
    if (!ws) {
        free(ao), free(co);
        return nf_fail(NF_ERR_NOMEM, "out of memory for a workspace of %lld floats (batch %lld)", (long long)off, (long long)n);
    }
    free(f->ws), free(f->act_off), free(f->cache_off);
    f->ws = ws, f->act_off = ao, f->cache_off = co, f->scratch_off = so, f->ws_size = off, f->nmax = n;
    return NF_OK;
}

nf_status nf_flow_set_recompute(nf_flow *f, int on) {
    for (int32_t k = 0; on && k < f->nlayers; k++)
        if (strcmp(f->layers[k]->ops->kind, "batchnorm") == 0)
            return nf_fail(NF_ERR_INVALID, "recompute mode needs layers whose inverse undoes the training forward; batch norm (batch statistics) does not");
    if (!!on != f->recompute) { /* the workspace layout changes: reallocate on next use */
        int64_t n = f->nmax;
        free(f->ws), free(f->act_off), free(f->cache_off);
        f->ws = NULL, f->act_off = f->cache_off = NULL, f->nmax = 0, f->ws_size = 0;
        f->recompute = !!on;
        if (n > 0) return nf_flow_reserve(f, n);
    }
    return NF_OK;
}

int nf_flow_recompute(const nf_flow *f) { return f->recompute; }
int64_t nf_flow_workspace_bytes(const nf_flow *f) { return f->ws_size * (int64_t)sizeof(nf_real); }

#define ACT(f, k) ((f)->ws + (f)->act_off[k])     /* output of layer k */
#define CACHE(f, k) ((f)->ws + (f)->cache_off[k])
#define SPARE(f) ((f)->ws + (f)->act_off[(f)->nlayers + 1])
#define DZA(f) ((f)->ws + (f)->act_off[(f)->nlayers])
#define DZB(f) (DZA(f) + (f)->nmax * (f)->cfg.dim)
#define LOGDET(f) (DZB(f) + (f)->nmax * (f)->cfg.dim)
#define LP(f) (LOGDET(f) + (f)->nmax)
#define DLD(f) (LP(f) + (f)->nmax)
#define SCRATCH(f) ((f)->ws + (f)->scratch_off)

/* Columns [from, D) of every row pass through a layer that acts on the first `from` only. */
static void copy_tail(const nf_real *src, nf_real *dst, int64_t n, int32_t from, int32_t D) {
    if (from >= D) return;
    for (int64_t i = 0; i < n; i++) memcpy(dst + i * D + from, src + i * D + from, sizeof(nf_real) * (size_t)(D - from));
}

/* Forward through every layer for n ≤ nmax rows; leaves layer outputs in ACT, the latent in
 * ACT(K−1) (or x itself when there are no layers) and log-dets in LOGDET. */
static nf_status run_forward(nf_flow *f, const nf_real *x, int64_t n, const nf_real **zout) {
    nf_real *ld = LOGDET(f);
    memset(ld, 0, sizeof(nf_real) * (size_t)n);
    const nf_real *in = x;
    for (int32_t k = 0; k < f->nlayers; k++) {
        nf_layer *L = f->layers[k];
        nf_status st = L->ops->forward(L, in, ACT(f, k), ld, n, CACHE(f, k), SCRATCH(f), f->training);
        if (st) return st;
        copy_tail(in, ACT(f, k), n, L->dim, f->cfg.dim);
        in = ACT(f, k);
    }
    *zout = in;
    return NF_OK;
}

/* Forward in chunks of EVAL_CHUNK rows; any of z, logdet, logp may be NULL. */
static nf_status forward_chunked(nf_flow *f, const nf_real *x, int64_t n, nf_real *z, nf_real *logdet,
                                 nf_real *logp) {
    int32_t D = f->cfg.dim;
    for (int64_t i0 = 0; i0 < n; i0 += EVAL_CHUNK) {
        int64_t m = n - i0 < EVAL_CHUNK ? n - i0 : EVAL_CHUNK;
        const nf_real *zz;
        nf_status st = nf_flow_reserve(f, m);
        if (!st) st = run_forward(f, x + i0 * D, m, &zz);
        if (st) return st;
        if (z) memcpy(z + i0 * D, zz, sizeof(nf_real) * (size_t)(m * D));
        if (logdet) memcpy(logdet + i0, LOGDET(f), sizeof(nf_real) * (size_t)m);
        if (logp) {
            nf_prior_log_prob(&f->prior, zz, logp + i0, m);
            for (int64_t i = 0; i < m; i++) logp[i0 + i] += LOGDET(f)[i];
        }
    }
    return NF_OK;
}

/* Small batches through small models (the 2-D flows): forking threads for every layer costs more than
 * it saves — realnvp-moons trained 20 % slower on 2 threads than on 1. Below this many FLOPs per call,
 * a flow runs on one thread (results never depend on the thread count, so only the speed changes). */
#define PARALLEL_MIN_FLOPS 1e8

static int serial_begin(const nf_flow *f, int64_t n) {
#ifdef _OPENMP
    int t = omp_get_max_threads();
    if (t > 1 && nf_flow_flops(f) * (double)n < PARALLEL_MIN_FLOPS) {
        omp_set_num_threads(1);
        return t;
    }
#else
    NF_UNUSED(f), NF_UNUSED(n);
#endif
    return 0;
}

static void serial_end(int threads) {
#ifdef _OPENMP
    if (threads) omp_set_num_threads(threads);
#else
    NF_UNUSED(threads);
#endif
}

nf_status nf_flow_forward(nf_flow *f, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n) {
    int t = serial_begin(f, n < EVAL_CHUNK ? n : EVAL_CHUNK);
    nf_status st = forward_chunked(f, x, n, z, logdet, NULL);
    serial_end(t);
    return st;
}

static nf_status inverse_chunked(nf_flow *f, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n) {
    int32_t D = f->cfg.dim;
    for (int64_t i0 = 0; i0 < n; i0 += EVAL_CHUNK) {
        int64_t m = n - i0 < EVAL_CHUNK ? n - i0 : EVAL_CHUNK;
        nf_status st = nf_flow_reserve(f, m);
        if (st) return st;
        nf_real *a = DZA(f), *b = DZB(f), *ld = LOGDET(f);
        memset(ld, 0, sizeof(nf_real) * (size_t)m);
        memcpy(a, z + i0 * D, sizeof(nf_real) * (size_t)(m * D));
        for (int32_t k = f->nlayers - 1; k >= 0; k--) {
            nf_layer *L = f->layers[k];
            if ((st = L->ops->inverse(L, a, b, ld, m, SCRATCH(f)))) return st;
            copy_tail(a, b, m, L->dim, D);
            nf_real *t = a;
            a = b, b = t;
        }
        if (x) memcpy(x + i0 * D, a, sizeof(nf_real) * (size_t)(m * D));
        if (logdet) memcpy(logdet + i0, ld, sizeof(nf_real) * (size_t)m);
    }
    return NF_OK;
}

nf_status nf_flow_inverse(nf_flow *f, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n) {
    int t = serial_begin(f, n < EVAL_CHUNK ? n : EVAL_CHUNK);
    nf_status st = inverse_chunked(f, z, x, logdet, n);
    serial_end(t);
    return st;
}

nf_status nf_flow_log_prob(nf_flow *f, const nf_real *x, nf_real *logp, int64_t n) {
    int t = serial_begin(f, n < EVAL_CHUNK ? n : EVAL_CHUNK);
    nf_status st = forward_chunked(f, x, n, NULL, NULL, logp);
    serial_end(t);
    return st;
}

nf_status nf_flow_sample(nf_flow *f, nf_rng *rng, double temperature, nf_real *x, int64_t n) {
    if (!(temperature >= 0) || !isfinite(temperature))
        return nf_fail(NF_ERR_INVALID, "temperature %g: must be a finite number ≥ 0", temperature);
    nf_prior_sample(&f->prior, rng, temperature, x, n);
    return nf_flow_inverse(f, x, x, NULL, n);
}

static nf_status nll_grad(nf_flow *f, const nf_real *x, int64_t n, double *loss, nf_real *dx) {
    if (n < 1) return nf_fail(NF_ERR_INVALID, "empty batch");
    int32_t D = f->cfg.dim;
    const nf_real *z;
    nf_status st = nf_flow_reserve(f, n);
    if (!st) st = run_forward(f, x, n, &z);
    if (st) return st;
    nf_real *lp = LP(f), *ld = LOGDET(f), *dld = DLD(f);
    nf_prior_log_prob(&f->prior, z, lp, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s -= (double)lp[i] + ld[i];
    *loss = s / (double)n;
    if (!isfinite(*loss)) return nf_fail(NF_ERR_NUMERIC, "the negative log-likelihood is not finite");
    /* loss = −(1/n) Σ_i [lp_i + ld_i]:  ∂loss/∂lp_i = ∂loss/∂ld_i = −1/n */
    for (int64_t i = 0; i < n; i++) dld[i] = R(-1.0) / (nf_real)n;
    nf_real *dz = DZA(f), *dxb = DZB(f);
    nf_prior_backward(&f->prior, z, dld, dz, n);
    for (int32_t k = f->nlayers - 1; k >= 0; k--) {
        nf_layer *L = f->layers[k];
        const nf_real *in = k == 0 ? x : ACT(f, k - 1);
        if (f->recompute && k < f->nlayers - 1) {
            /* rebuild this layer's input from its output (ACT(k), intact: the buffers alternate), then
             * refill its cache; the first layer's input is the data itself. The last layer needs
             * neither: its input and its cache are still those of the forward pass. */
            if (k > 0) {
                nf_real *xin = ACT(f, k - 1);
                if ((st = L->ops->inverse(L, ACT(f, k), xin, NULL, n, SCRATCH(f)))) return st;
                copy_tail(ACT(f, k), xin, n, L->dim, D);
            }
            if ((st = L->ops->forward(L, in, SPARE(f), NULL, n, CACHE(f, k), SCRATCH(f), f->training))) return st;
        }
        nf_real *out = (k == 0 && dx) ? dx : dxb;
        L->ops->backward(L, in, CACHE(f, k), dz, dld, out, n, SCRATCH(f), f->training);
        copy_tail(dz, out, n, L->dim, D);
        dxb = dz, dz = out;
    }
    if (dx && f->nlayers == 0) memcpy(dx, dz, sizeof(nf_real) * (size_t)(n * D));
    return NF_OK;
}

nf_status nf_flow_nll_grad(nf_flow *f, const nf_real *x, int64_t n, double *loss, nf_real *dx) {
    int t = serial_begin(f, n);
    nf_status st = nll_grad(f, x, n, loss, dx);
    serial_end(t);
    return st;
}
