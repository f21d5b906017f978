/* flow.c — models built from a config, the composition f = f_K ∘ … ∘ f_1 and its log-likelihood:
 *     log p(x) = log π(f(x)) + Σ_k log|det J_{f_k}|          (lecture: change of variables)
 * Sizes first (every layer reserves its named tensors), then ONE parameter buffer, ONE gradient buffer
 * and ONE state buffer are allocated and the layers initialised. The workspace (layer inputs, caches,
 * scratch) is sized for a batch once and reused: a training step allocates nothing. */
#include "models/flow_impl.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define EVAL_CHUNK 4096 /* rows per pass for evaluation-only calls: bounded memory */

/* f->grad_final (flow_impl.h) from the tensor table. A parameter tensor belongs to the layer whose
 * name followed by '.' begins the tensor's name (the longest such name): its gradient is final once
 * that layer's backward has run; "prior." tensors are final before any layer's; a tensor of no layer
 * only at the end. grad_final[k] = the largest end of a tensor not yet final after layer k (0 if none).
 * NF_ERR_NOMEM on allocation failure. */
static nf_status grad_final_offsets(nf_flow *f) {
    int32_t K = f->nlayers;
    int64_t *gf = f->grad_final = nf_xcalloc((size_t)K + 1, sizeof(int64_t));
    if (!gf) return nf_fail(NF_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < f->reg.ntensors; i++) { /* gf[j + 1] = the largest end of layer j's tensors (gf[0]: of none) */
        const nf_tensor_info *t = &f->reg.tensors[i];
        if (t->kind != NF_TENSOR_PARAM || strncmp(t->name, "prior.", 6) == 0) continue;
        int32_t owner = -1;
        size_t best = 0;
        for (int32_t k = 0; k < K; k++) {
            size_t len = strlen(f->layers[k]->name);
            if (len >= best && strncmp(t->name, f->layers[k]->name, len) == 0 && t->name[len] == '.') owner = k, best = len;
        }
        if (gf[owner + 1] < t->offset + t->count) gf[owner + 1] = t->offset + t->count;
    }
    for (int32_t k = 1; k <= K; k++) /* not final after layer k: the tensors of layers 0..k−1 and of none */
        if (gf[k] < gf[k - 1]) gf[k] = gf[k - 1];
    gf[0] = 0;
    return NF_OK;
}

/* Reserve the prior, allocate the registry's buffers once and initialise every layer from seed.
 * NF_ERR_NOMEM on allocation failure (f keeps what was allocated; nf_flow_free releases it). */
static nf_status finish(nf_flow *f, int32_t dim, nf_prior_type prior, uint64_t seed) {
    nf_prior_init(&f->prior, &f->reg, prior, dim, f->cfg.context_dim, (int32_t)f->cfg.prior_components);
    nf_status st = nf_registry_allocate(&f->reg);
    if (!st) st = grad_final_offsets(f);
    if (st) return st;
    nf_rng rng;
    nf_rng_seed(&rng, seed);
    for (int32_t k = 0; k < f->nlayers; k++) f->layers[k]->ops->init(f->layers[k], &rng);
    nf_prior_init_params(&f->prior, &rng); /* after the layers: models of other priors draw as before */
    /* drawn after every layer: a model with a dequantiser has the same flow as one without */
    if (f->cfg.dequant == NF_DEQUANT_VARIATIONAL) nf_dequant_init(&f->dq, f->reg.params, &rng);
    return NF_OK;
}

/* See models.h: validate cfg, build its layers (recipes.c), check the size against max_values (< 0:
 * none), allocate and initialise; *out owned by the caller. */
nf_status nf_flow_create_within(const nf_config *cfg, int64_t max_values, nf_flow **out) {
    *out = NULL;
    nf_status st = nf_config_validate(cfg);
    if (st) return st;
    nf_flow *f = nf_xcalloc(1, sizeof *f);
    if (!f) return nf_fail(NF_ERR_NOMEM, "out of memory");
    f->cfg = *cfg;
    f->splittable = 1;
    /* the dequantiser's tensors first: its gradient is final last (nll_grad), so the layers' final
     * suffixes stay what they are without it (a reducer can sum them while the backward pass runs) */
    if (cfg->dequant == NF_DEQUANT_VARIATIONAL && nf_dequant_reserve(&f->reg, &f->dq, cfg->channels, cfg->height, cfg->width, cfg->dequant_hidden))
        st = nf_fail(NF_ERR_NOMEM, "out of memory");
    if (!st && !(st = nf_model_build(f)) && max_values >= 0 && f->reg.nparams + f->reg.nbuffers > max_values)
        st = nf_fail(NF_ERR_FORMAT, "the config describes a model of %lld values, more than the %lld the file holds",
                     (long long)(f->reg.nparams + f->reg.nbuffers), (long long)max_values);
    if (st || (st = finish(f, cfg->dim, cfg->prior, cfg->seed))) {
        nf_flow_free(f);
        return st;
    }
    *out = f;
    return NF_OK;
}

/* See nflow.h: validate cfg, build its layers (recipes.c), allocate and initialise; *out owned by the caller. */
nf_status nf_flow_create(const nf_config *cfg, nf_flow **out) { return nf_flow_create_within(cfg, -1, out); }

/* See models.h: a flow over the given layers (taken over, also on failure) and reg's tensors. */
nf_status nf_flow_from_layers(nf_registry *ctx, nf_layer **layers, int32_t n, nf_prior_type prior,
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
    f->reg = *ctx;
    memset(ctx, 0, sizeof *ctx);
    for (int32_t k = 0; k < n; k++) ls[k] = layers[k], ls[k]->reg = &f->reg;
    f->layers = ls;
    f->nlayers = n;
    for (int32_t k = 0; k < n; k++) /* conditional layers make a conditional flow */
        if (ls[k]->ctx_dim > f->cfg.context_dim) f->cfg.context_dim = ls[k]->ctx_dim;
    nf_status st = finish(f, dim, prior, 7);
    if (st) {
        nf_flow_free(f);
        return st;
    }
    *out = f;
    return NF_OK;
}

/* See nflow.h: free the layers, tensors and workspace; NULL is a no-op. */
void nf_flow_free(nf_flow *f) {
    if (!f) return;
    for (int32_t k = 0; k < f->nlayers; k++) nf_layer_free(f->layers[k]);
    free(f->layers);
    nf_registry_free(&f->reg);
    free(f->ws), free(f->act_off), free(f->cache_off), free(f->grad_final), free(f->dq_ws);
    for (int p = 0; p < NF_FLOW_PARTS; p++) nf_flow_free(f->part[p]);
    free(f->columns), free(f);
}

/* See nflow.h: the flow's configuration (owned by the flow). */
const nf_config *nf_flow_config(const nf_flow *f) { return &f->cfg; }
/* See nflow.h: D. */
int32_t nf_flow_dim(const nf_flow *f) { return f->cfg.dim; }
/* See nflow.h: K. */
int32_t nf_flow_num_layers(const nf_flow *f) { return f->nlayers; }
/* See nflow.h: the modelled table's column names (owned by the flow), or NULL. */
const char *nf_flow_columns(const nf_flow *f) { return f->columns; }
/* See nflow.h: f's column names = a copy of names (NULL: none); dim + context_dim fields. */
nf_status nf_flow_set_columns(nf_flow *f, const char *names) {
    char *copy;
    nf_status st = nf_names_copy(names, f->cfg.dim + f->cfg.context_dim, "column names of the model", &copy);
    if (st) return st;
    free(f->columns);
    f->columns = copy;
    return NF_OK;
}
/* See nflow.h: the kind of layer k (a static string). */
const char *nf_flow_layer_name(const nf_flow *f, int32_t k) { return f->layers[k]->ops->kind; }
/* See nflow.h: FLOPs per sample of a forward pass, summed over the layers. */
double nf_flow_flops(const nf_flow *f) {
    double s = 0;
    for (int32_t k = 0; k < f->nlayers; k++) s += (double)f->layers[k]->ops->flops(f->layers[k]);
    return s;
}
/* See nflow.h: the flat parameter buffer (owned by the flow). */
nf_real *nf_flow_params(nf_flow *f) { return f->reg.params; }
/* See nflow.h: the flat gradient buffer (owned by the flow). */
nf_real *nf_flow_grads(nf_flow *f) { return f->reg.grads; }
/* See nflow.h: the number of parameters. */
int64_t nf_flow_num_params(const nf_flow *f) { return f->reg.nparams; }
/* See nflow.h: training mode (batch statistics, ActNorm's data-dependent init) on or off. */
void nf_flow_set_training(nf_flow *f, int training) { f->training = training; }
/* See nflow.h: set every gradient to 0. */
void nf_flow_zero_grad(nf_flow *f) { memset(f->reg.grads, 0, sizeof(nf_real) * (size_t)f->reg.nparams); }

/* See nflow.h: copy per-column mean and std (finite, std > 0) into the first layer; NF_ERR_INVALID otherwise. */
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
static int split_ok(const nf_flow *f, int64_t n);
static nf_status reserve_parts(nf_flow *f, int64_t n);
static nf_status create_parts(nf_flow *f);
static nf_real *dq_x(nf_flow *f);
static nf_real *dq_logq(nf_flow *f);
static nf_real *dq_dx(nf_flow *f);
static nf_real *dq_cache(nf_flow *f);
static nf_real *dq_work(nf_flow *f);
static nf_status dq_reserve(nf_flow *f, int64_t n);
static nf_status eval_split(nf_flow *f, int inverse, const nf_real *in, const nf_real *c, int64_t n, nf_real *out,
                            nf_real *logdet, nf_real *logp);

/* This flow's own workspace for n rows (see above). */
static nf_status reserve_own(nf_flow *f, int64_t n) {
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

/* See models.h: the workspace for n rows and, when a training batch of n rows splits (split_ok), the
 * parts with theirs, so that a training step allocates nothing. */
nf_status nf_flow_reserve(nf_flow *f, int64_t n) {
    nf_status st = reserve_own(f, n);
    if (!st && split_ok(f, n)) st = reserve_parts(f, n);
    if (!st && f->cfg.dequant == NF_DEQUANT_VARIATIONAL) st = dq_reserve(f, n);
    return st;
}

/* See nflow.h: recompute mode on/off (the workspace is rebuilt); NF_ERR_INVALID with batch norm. */
nf_status nf_flow_set_recompute(nf_flow *f, int on) {
    for (int32_t k = 0; on && k < f->nlayers; k++)
        if (strcmp(f->layers[k]->ops->kind, "batchnorm") == 0)
            return nf_fail(NF_ERR_INVALID, "recompute mode needs layers whose inverse undoes the training forward; batch norm (batch statistics) does not");
    if (!!on != f->recompute) { /* the workspace layout changes: reallocate on next use */
        int64_t n = f->nmax;
        free(f->ws), free(f->act_off), free(f->cache_off);
        f->ws = NULL, f->act_off = f->cache_off = NULL, f->nmax = 0, f->ws_size = 0;
        f->recompute = !!on;
        for (int p = 0; p < NF_FLOW_PARTS; p++) {
            nf_status st = f->part[p] ? nf_flow_set_recompute(f->part[p], on) : NF_OK;
            if (st) return st;
        }
        if (n > 0) return nf_flow_reserve(f, n);
    }
    return NF_OK;
}

/* See nflow.h: 1 in recompute mode. */
int nf_flow_recompute(const nf_flow *f) { return f->recompute; }
/* See nflow.h: bytes of the current workspace. */
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

/* NF_OK if c suits f: a context for a conditional flow, none for an unconditional one; else
 * NF_ERR_INVALID with the reason. */
static nf_status check_context(const nf_flow *f, const nf_real *c) {
    if (f->cfg.context_dim > 0 && !c)
        return nf_fail(NF_ERR_INVALID, "the model is conditional on a context of %d values per sample: give one (the *_ctx calls)", (int)f->cfg.context_dim);
    if (f->cfg.context_dim == 0 && c) return nf_fail(NF_ERR_INVALID, "the model is not conditional: it takes no context");
    return NF_OK;
}

/* Lend every conditional layer the context rows c (n, K) and the gradient rows dc (may be NULL) for
 * one pass; NULL, NULL takes them back. */
static void set_context(nf_flow *f, const nf_real *c, nf_real *dc) {
    for (int32_t k = 0; k < f->nlayers; k++) {
        nf_layer *L = f->layers[k];
        L->ctx = L->ctx_dim > 0 ? c : NULL;
        L->dctx = L->ctx_dim > 0 ? dc : NULL;
    }
}

/* Columns [from, D) of every row pass through a layer that acts on the first `from` only. */
static void copy_tail(const nf_real *src, nf_real *dst, int64_t n, int32_t from, int32_t D) {
    if (from >= D) return;
    for (int64_t i = 0; i < n; i++) memcpy(dst + i * D + from, src + i * D + from, sizeof(nf_real) * (size_t)(D - from));
}

/* In a data-parallel pass (collective: every process runs the same layers and each of them may sum
 * statistics across the processes) a layer's numeric failure on one process must not end that
 * process's pass early, or the others would wait in a sum it never joins: the failure is kept in
 * *first (the first one wins), the layer's output buf (count values) becomes NaN, the pass goes on.
 * Returns the status to act on now: NF_OK to continue, or st itself (not collective, or not numeric). */
static nf_status carry_on(int collective, nf_status st, nf_status *first, nf_real *buf, int64_t count) {
    if (!st || !collective || st != NF_ERR_NUMERIC) return st;
    if (!*first) *first = st;
    for (int64_t i = 0; i < count; i++) buf[i] = (nf_real)NAN;
    return NF_OK;
}

/* Forward through every layer for n ≤ nmax rows with the context c (NULL: none); leaves layer outputs
 * in ACT, the latent in ACT(K−1) (or x itself when there are no layers) and log-dets in LOGDET.
 * collective, *first: see carry_on (first may be NULL when not collective). The layers keep c (set_context). */
static nf_status run_forward_ex(nf_flow *f, const nf_real *x, const nf_real *c, int64_t n, const nf_real **zout, int collective,
                                nf_status *first) {
    nf_real *ld = LOGDET(f);
    set_context(f, c, NULL);
    memset(ld, 0, sizeof(nf_real) * (size_t)n);
    const nf_real *in = x;
    for (int32_t k = 0; k < f->nlayers; k++) {
        nf_layer *L = f->layers[k];
        nf_status st = L->ops->forward(L, in, ACT(f, k), ld, n, CACHE(f, k), SCRATCH(f), f->training);
        if ((st = carry_on(collective, st, first, ACT(f, k), n * f->cfg.dim))) return st;
        copy_tail(in, ACT(f, k), n, L->dim, f->cfg.dim);
        in = ACT(f, k);
    }
    *zout = in;
    return NF_OK;
}

/* run_forward_ex outside a data-parallel pass: the first failure ends the pass. */
static nf_status run_forward(nf_flow *f, const nf_real *x, const nf_real *c, int64_t n, const nf_real **zout) {
    return run_forward_ex(f, x, c, n, zout, 0, NULL);
}

/* Forward in chunks of EVAL_CHUNK rows with the contexts c (NULL: none); any of z, logdet, logp may be NULL. */
static nf_status forward_chunked(nf_flow *f, const nf_real *x, const nf_real *c, int64_t n, nf_real *z, nf_real *logdet,
                                 nf_real *logp) {
    int32_t D = f->cfg.dim, K = f->cfg.context_dim;
    nf_status st = check_context(f, c);
    if (st) return st;
    for (int64_t i0 = 0; i0 < n; i0 += EVAL_CHUNK) {
        int64_t m = n - i0 < EVAL_CHUNK ? n - i0 : EVAL_CHUNK;
        const nf_real *zz, *ci = c ? c + i0 * K : NULL;
        st = reserve_own(f, m); /* evaluation: no parts */
        if (!st) st = run_forward(f, x + i0 * D, ci, m, &zz);
        if (st) return st;
        if (z) memcpy(z + i0 * D, zz, sizeof(nf_real) * (size_t)(m * D));
        if (logdet) memcpy(logdet + i0, LOGDET(f), sizeof(nf_real) * (size_t)m);
        if (logp) {
            nf_prior_log_prob(&f->prior, zz, ci, logp + i0, m);
            for (int64_t i = 0; i < m; i++) logp[i0 + i] += LOGDET(f)[i];
        }
    }
    return NF_OK;
}

/* Inverse of n rows in chunks of EVAL_CHUNK through the workspace with contexts c (NULL: none); x and/or
 * logdet may be NULL. */
static nf_status inverse_chunked(nf_flow *f, const nf_real *z, const nf_real *c, nf_real *x, nf_real *logdet, int64_t n) {
    int32_t D = f->cfg.dim, K = f->cfg.context_dim;
    nf_status st = check_context(f, c);
    if (st) return st;
    for (int64_t i0 = 0; i0 < n; i0 += EVAL_CHUNK) {
        int64_t m = n - i0 < EVAL_CHUNK ? n - i0 : EVAL_CHUNK;
        st = reserve_own(f, m); /* evaluation: no parts */
        if (st) return st;
        set_context(f, c ? c + i0 * K : NULL, NULL);
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

/* Small batches through small models (the 2-D flows): forking threads for every layer costs more than
 * it saves — realnvp-moons trained 20 % slower on 2 threads than on 1. Below this many FLOPs per call,
 * a flow runs on one thread (results never depend on the thread count, so only the speed changes);
 * a training batch of such a flow is split across the threads instead (nll_grad_split below). */
#define PARALLEL_MIN_FLOPS 1e8

/* Drop to one OpenMP thread for a call below PARALLEL_MIN_FLOPS; returns the thread count to restore (0: none). */
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

/* Restore the thread count serial_begin returned (0: nothing to do). */
static void serial_end(int threads) {
#ifdef _OPENMP
    if (threads) omp_set_num_threads(threads);
#else
    NF_UNUSED(threads);
#endif
}

/* NF_ERR_NUMERIC for the first row (counted from 0) of the n rows of w values in v (NULL: nothing to
 * check) that holds a value that is not finite, reason "<noun> <row> <what>: the model overflows on it",
 * or, when that row of the input in (n rows of D values; NULL or v itself: none) is not finite itself,
 * "<noun> <row>: the input holds a non-finite value"; NF_OK when all are finite. */
static nf_status finite_rows(const nf_real *v, const nf_real *in, int64_t D, int64_t n, int64_t w, const char *noun,
                             const char *what) {
    if (in == v) in = NULL; /* in place: the input is gone */
    for (int64_t k = 0; v && k < n * w; k++) {
        if (isfinite(v[k])) continue;
        int64_t i = k / w;
        for (int64_t j = 0; in && j < D; j++)
            if (!isfinite(in[i * D + j])) return nf_fail(NF_ERR_NUMERIC, "%s %lld: the input holds a non-finite value", noun, (long long)i);
        return nf_fail(NF_ERR_NUMERIC, "%s %lld %s: the model overflows on it", noun, (long long)i, what);
    }
    return NF_OK;
}

/* An evaluation pass of n rows in (contexts c, NULL: none), forward (z, logdet and/or logp of x; any may
 * be NULL) or inverse (x and/or logdet of z; logp unused): split across the threads where split_ok, else
 * in chunks (one thread for a small flow). Values not checked (the public functions check them). */
static nf_status eval_rows(nf_flow *f, int inverse, const nf_real *in, const nf_real *c, int64_t n, nf_real *out,
                           nf_real *logdet, nf_real *logp) {
    if (split_ok(f, n)) return eval_split(f, inverse, in, c, n, out, logdet, logp);
    int t = serial_begin(f, n < EVAL_CHUNK ? n : EVAL_CHUNK);
    nf_status st = inverse ? inverse_chunked(f, in, c, out, logdet, n) : forward_chunked(f, in, c, n, out, logdet, logp);
    serial_end(t);
    return st;
}

/* See nflow.h: z and/or logdet of n rows (either may be NULL), in chunks, with contexts c (NULL: none);
 * NF_ERR_NUMERIC (the values still written) when one is not finite. */
nf_status nf_flow_forward_ctx(nf_flow *f, const nf_real *x, const nf_real *c, nf_real *z, nf_real *logdet, int64_t n) {
    nf_status st = eval_rows(f, 0, x, c, n, z, logdet, NULL);
    if (!st) st = finite_rows(z, x, f->cfg.dim, n, f->cfg.dim, "row", "encodes to a non-finite value");
    if (!st) st = finite_rows(logdet, NULL, 0, n, 1, "row", "has a non-finite log-determinant");
    return st;
}

/* See nflow.h: nf_flow_forward_ctx without a context. */
nf_status nf_flow_forward(nf_flow *f, const nf_real *x, nf_real *z, nf_real *logdet, int64_t n) {
    return nf_flow_forward_ctx(f, x, NULL, z, logdet, n);
}

/* See nflow.h: x = f⁻¹(z) and/or logdet (−log|det|) of n rows with contexts c (NULL: none); NF_ERR_NUMERIC
 * (the values still written) when a value is not finite. */
nf_status nf_flow_inverse_ctx(nf_flow *f, const nf_real *z, const nf_real *c, nf_real *x, nf_real *logdet, int64_t n) {
    nf_status st = eval_rows(f, 1, z, c, n, x, logdet, NULL);
    if (!st) st = finite_rows(x, z, f->cfg.dim, n, f->cfg.dim, "row", "decodes to a non-finite value");
    if (!st) st = finite_rows(logdet, NULL, 0, n, 1, "row", "has a non-finite log-determinant");
    return st;
}

/* See nflow.h: nf_flow_inverse_ctx without a context. */
nf_status nf_flow_inverse(nf_flow *f, const nf_real *z, nf_real *x, nf_real *logdet, int64_t n) {
    return nf_flow_inverse_ctx(f, z, NULL, x, logdet, n);
}

/* See nflow.h: nf_flow_log_prob_ctx without a context. */
nf_status nf_flow_log_prob(nf_flow *f, const nf_real *x, nf_real *logp, int64_t n) { return nf_flow_log_prob_ctx(f, x, NULL, logp, n); }

/* See nflow.h: logp[i] = log p(x_i | c_i) in nats. */
nf_status nf_flow_log_prob_ctx(nf_flow *f, const nf_real *x, const nf_real *c, nf_real *logp, int64_t n) {
    nf_status st = eval_rows(f, 0, x, c, n, NULL, NULL, logp);
    for (int64_t i = 0; i < n && !st; i++) /* a model whose values overflow on this input (e.g. loaded from a file) */
        if (!isfinite(logp[i])) st = nf_fail(NF_ERR_NUMERIC, "log p of sample %lld is %g: the model overflows on it", (long long)i, (double)logp[i]);
    return st;
}

/* See nflow.h: n samples at temperature ≥ 0 into x (n, D) with contexts c (NULL: none), from rng;
 * NF_ERR_INVALID for a bad temperature or context. */
nf_status nf_flow_sample_ctx(nf_flow *f, nf_rng *rng, double temperature, const nf_real *c, nf_real *x, int64_t n) {
    if (!(temperature >= 0) || !isfinite(temperature))
        return nf_fail(NF_ERR_INVALID, "temperature %g: must be a finite number ≥ 0", temperature);
    nf_status st = check_context(f, c);
    if (st) return st;
    nf_prior_sample(&f->prior, rng, temperature, c, x, n);
    if ((st = eval_rows(f, 1, x, c, n, x, NULL, NULL))) return st;
    return finite_rows(x, NULL, 0, n, f->cfg.dim, "sample", "holds a non-finite value (a lower temperature may help)");
}

/* See nflow.h: nf_flow_sample_ctx without a context. */
nf_status nf_flow_sample(nf_flow *f, nf_rng *rng, double temperature, nf_real *x, int64_t n) {
    return nf_flow_sample_ctx(f, rng, temperature, NULL, x, n);
}

/* See nflow.h: K, the context values per sample (0: unconditional). */
int32_t nf_flow_context_dim(const nf_flow *f) { return f->cfg.context_dim; }

/* A data-parallel pass whose reducer sums the gradient during the backward pass (r->grad_ready): the
 * gradients grads[off .. nparams) are final; NF_ERR_IO if the transport failed. Nothing without one. */
static nf_status grad_ready(nf_flow *f, const nf_reducer *r, int64_t off) {
    if (!r || !r->grad_ready) return NF_OK;
    if (r->grad_ready(r->ctx, f->reg.grads, off, f->reg.nparams) != 0)
        return nf_fail(NF_ERR_IO, "the gradient sum across processes failed");
    return NF_OK;
}

typedef struct { /* a pass of nf_flow_nll_grad_dequant: x came from nf_dequant_sample of xc (bits) */
    const nf_real *xc;
    int32_t bits;
} dq_pass;

/* The NLL summed over n rows (contexts c, NULL: none) into *nll_sum; grads += ∂loss/∂params, dx (may be
 * NULL) = ∂loss/∂x and dc (may be NULL; n × K, overwritten) = ∂loss/∂c for loss = nll_sum / total (total = n: the mean; total > n: these rows are part of a global batch of
 * total rows, each weighted 1/total). A layer's forward, inverse (recompute mode) or backward failure
 * is returned with its reason. With a reducer r (a data-parallel pass, see carry_on) every layer sees
 * r for the duration of the pass, a non-finite NLL does not stop the pass and a numeric failure is
 * returned at its end; with r->grad_ready, r is told after the prior's and every layer's backward
 * which suffix of the gradient buffer is final (grad_final; the last call: all of it). With dq (x made
 * by the dequantiser, see nf_flow_nll_grad_dequant) the sum also holds Σ log q(u | x̃) and the
 * dequantiser's backward runs last, before the last grad_ready (its gradients are final only then). */
static nf_status nll_grad(nf_flow *f, const nf_real *x, const nf_real *c, int64_t n, int64_t total, const nf_reducer *r,
                          double *nll_sum, nf_real *dx, nf_real *dc, const dq_pass *dq) {
    if (n < 1) return nf_fail(NF_ERR_INVALID, "empty batch");
    int32_t D = f->cfg.dim;
    int coll = r != NULL;
    nf_status first = NF_OK;
    const nf_real *z;
    nf_status st = check_context(f, c);
    if (!st) st = reserve_own(f, n);
    if (!st) st = run_forward_ex(f, x, c, n, &z, coll, &first);
    if (st) return st;
    if (dc) memset(dc, 0, sizeof(nf_real) * (size_t)(n * f->cfg.context_dim));
    set_context(f, c, c ? dc : NULL); /* the layers' backward adds ∂loss/∂c into dc */
    nf_real *lp = LP(f), *ld = LOGDET(f), *dld = DLD(f);
    nf_prior_log_prob(&f->prior, z, c, lp, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s -= (double)lp[i] + ld[i];
    for (int64_t i = 0; dq && i < n; i++) s += (double)dq_logq(f)[i];
    *nll_sum = s;
    if (!isfinite(s) && !coll) return nf_fail(NF_ERR_NUMERIC, "the negative log-likelihood is not finite");
    /* loss = −(1/total) Σ_i [lp_i + ld_i]:  ∂loss/∂lp_i = ∂loss/∂ld_i = −1/total */
    for (int64_t i = 0; i < n; i++) dld[i] = R(-1.0) / (nf_real)total;
    nf_real *dz = DZA(f), *dxb = DZB(f);
    nf_prior_backward(&f->prior, z, c, dld, dz, c ? dc : NULL, n);
    if ((st = grad_ready(f, r, f->grad_final[f->nlayers]))) return st;
    for (int32_t k = f->nlayers - 1; k >= 0; k--) {
        nf_layer *L = f->layers[k];
        const nf_real *in = k == 0 ? x : ACT(f, k - 1);
        if (f->recompute && k < f->nlayers - 1) {
            /* rebuild this layer's input from its output (ACT(k), intact: the buffers alternate), then
             * refill its cache; the first layer's input is the data itself. The last layer needs
             * neither: its input and its cache are still those of the forward pass. */
            if (k > 0) {
                nf_real *xin = ACT(f, k - 1);
                st = L->ops->inverse(L, ACT(f, k), xin, NULL, n, SCRATCH(f));
                if ((st = carry_on(coll, st, &first, xin, n * D))) return st;
                copy_tail(ACT(f, k), xin, n, L->dim, D);
            }
            st = L->ops->forward(L, in, SPARE(f), NULL, n, CACHE(f, k), SCRATCH(f), f->training);
            if ((st = carry_on(coll, st, &first, SPARE(f), n * D))) return st;
        }
        nf_real *out = (k == 0 && dx) ? dx : dxb;
        st = L->ops->backward(L, in, CACHE(f, k), dz, dld, out, n, SCRATCH(f), f->training);
        if ((st = carry_on(coll, st, &first, out, n * D))) return st;
        copy_tail(dz, out, n, L->dim, D);
        dxb = dz, dz = out;
        if ((k > 0 || !dq) && (st = grad_ready(f, r, f->grad_final[k]))) return st;
    }
    if (dx && f->nlayers == 0) memcpy(dx, dz, sizeof(nf_real) * (size_t)(n * D));
    if (dq) {
        nf_dequant_backward(&f->dq, f->reg.params, f->reg.grads, dq->xc, dq->bits, dq_cache(f), dx, 1.0 / (double)total, n, dq_work(f));
        if ((st = grad_ready(f, r, 0))) return st;
    }
    return first;
}

/* Set every layer's reducer (NULL: none). */
static void set_reducer(nf_flow *f, const nf_reducer *r) {
    for (int32_t k = 0; k < f->nlayers; k++) f->layers[k]->reducer = r;
}

/* See nflow.h: nll_grad on one thread for small flows. */
nf_status nf_flow_nll_grad(nf_flow *f, const nf_real *x, int64_t n, double *loss, nf_real *dx) {
    return nf_flow_nll_grad_ctx(f, x, NULL, n, loss, dx, NULL);
}

/* ------------------------------------------------------------------ small flows: the batch in parts
 * A small flow (under PARALLEL_MIN_FLOPS a call) gains nothing from threads inside its layers, but its
 * batch splits: SPLIT_PARTS fixed row ranges, each through its own copy of the flow (same config, the
 * parameters and state copied in before every call; its own workspace and gradient), one thread each,
 * then the parts' gradients are added to the flow's in part order. Evaluation passes (forward, inverse,
 * log p, sampling's inverse) split the same way, each part writing its own rows of the output. The split depends only on n, so the
 * result is the same for every thread count (on one thread the parts run one after the other). Not for
 * layers whose training forward writes state from the batch (ActNorm's first-batch initialisation, batch
 * norm's statistics: a part would see only its rows) nor for a flow of given layers (no config to copy). */
#define SPLIT_PARTS NF_FLOW_PARTS
#define SPLIT_MIN_ROWS 128 /* rows per part */

/* 1 when nll_grad of n rows through f runs in parts (see above). */
static int split_ok(const nf_flow *f, int64_t n) {
    if (!f->splittable || n < SPLIT_PARTS * SPLIT_MIN_ROWS || nf_flow_flops(f) * (double)n >= PARALLEL_MIN_FLOPS) return 0;
    for (int32_t k = 0; k < f->nlayers; k++) {
        const char *kind = f->layers[k]->ops->kind;
        if (strcmp(kind, "actnorm") == 0 || strcmp(kind, "batchnorm") == 0) return 0;
    }
    return 1;
}

/* The parts of f (created once, in f's backward mode; never split themselves), each with a workspace for
 * its share of n rows: part p takes rows [n·p/SPLIT_PARTS, n·(p + 1)/SPLIT_PARTS). */
static nf_status reserve_parts(nf_flow *f, int64_t n) {
    nf_status st = create_parts(f);
    for (int p = 0; p < SPLIT_PARTS && !st; p++) st = reserve_own(f->part[p], n * (p + 1) / SPLIT_PARTS - n * p / SPLIT_PARTS);
    return st;
}

/* The parts of f, created (in f's backward mode) if they are not yet; their workspaces as they are. */
static nf_status create_parts(nf_flow *f) {
    for (int p = 0; p < SPLIT_PARTS; p++) {
        nf_status st = NF_OK;
        if (f->part[p]) continue;
        if ((st = nf_flow_create(&f->cfg, &f->part[p]))) return st;
        f->part[p]->splittable = 0;
        if ((st = nf_flow_set_recompute(f->part[p], f->recompute))) return st;
    }
    return NF_OK;
}

/* Part p of f (reserve_parts) with f's parameters, state and training flag; its gradient zeroed when
 * grad (a training pass: evaluation passes never touch it). */
static nf_flow *part_sync(nf_flow *f, int p, int grad) {
    nf_flow *g = f->part[p];
    memcpy(g->reg.params, f->reg.params, sizeof(nf_real) * (size_t)f->reg.nparams);
    memcpy(g->reg.buffers, f->reg.buffers, sizeof(nf_real) * (size_t)f->reg.nbuffers);
    g->training = f->training;
    if (grad) nf_flow_zero_grad(g);
    return g;
}

/* What part p does with its rows [lo, lo + m) of a split pass; arg: the pass's arguments. */
typedef nf_status (*part_fn)(nf_flow *g, int p, int64_t lo, int64_t m, void *arg);

/* fn on every part of f (synchronised by part_sync; grad: a training pass), part p on rows [n·p/SPLIT_PARTS, n·(p + 1)/SPLIT_PARTS),
 * one thread each and each part's layers on one thread. The first failing part's status and reason are
 * returned. */
static nf_status run_parts(nf_flow *f, int64_t n, int grad, part_fn fn, void *arg) {
    nf_flow *g[SPLIT_PARTS];
    for (int p = 0; p < SPLIT_PARTS; p++) g[p] = part_sync(f, p, grad);
    nf_status pst[SPLIT_PARTS] = {NF_OK};
    char why[SPLIT_PARTS][512];
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads() < SPLIT_PARTS ? omp_get_max_threads() : SPLIT_PARTS;
#endif
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int p = 0; p < SPLIT_PARTS; p++) {
#ifdef _OPENMP
        omp_set_num_threads(1); /* this thread's layers: one thread (a small flow) */
#endif
        int64_t lo = n * p / SPLIT_PARTS;
        pst[p] = fn(g[p], p, lo, n * (p + 1) / SPLIT_PARTS - lo, arg);
        why[p][0] = 0;
        if (pst[p]) snprintf(why[p], sizeof why[p], "%s", nf_last_error()); /* the reason is per thread */
    }
    for (int p = 0; p < SPLIT_PARTS; p++)
        if (pst[p]) return nf_fail(pst[p], "%s", why[p]);
    return NF_OK;
}

/* A split training pass: the batch (x, c, n rows, D and K values per row), each part's NLL sum, dx and dc
 * (may be NULL). */
typedef struct {
    const nf_real *x, *c;
    int64_t n;
    int32_t D, K;
    double sum[SPLIT_PARTS];
    nf_real *dx, *dc;
} grad_pass;

/* part_fn of a training pass: nll_grad of the part's rows (see grad_pass). */
static nf_status grad_part(nf_flow *g, int p, int64_t lo, int64_t m, void *arg) {
    grad_pass *a = arg;
    return nll_grad(g, a->x + lo * a->D, a->c ? a->c + lo * a->K : NULL, m, a->n, NULL, &a->sum[p], a->dx ? a->dx + lo * a->D : NULL,
                    a->dc ? a->dc + lo * a->K : NULL, NULL);
}

/* nll_grad of n rows in SPLIT_PARTS parts (split_ok): *loss the mean NLL, f's gradient += the sum of the
 * parts' (in part order), dx and dc (may be NULL) as nll_grad's. The first failing part's status and
 * reason are returned. */
static nf_status nll_grad_split(nf_flow *f, const nf_real *x, const nf_real *c, int64_t n, double *loss, nf_real *dx,
                                nf_real *dc) {
    nf_status st = check_context(f, c);
    if (!st) st = nf_flow_reserve(f, n); /* nothing to do when the trainer reserved the batch */
    grad_pass a = {x, c, n, f->cfg.dim, f->cfg.context_dim, {0}, dx, dc};
    if (!st) st = run_parts(f, n, 1, grad_part, &a);
    if (st) return st;
    nf_real *gr = f->reg.grads;
    double total = 0;
    for (int p = 0; p < SPLIT_PARTS; p++) {
        const nf_real *gp = f->part[p]->reg.grads;
        for (int64_t i = 0; i < f->reg.nparams; i++) gr[i] += gp[i];
        total += a.sum[p];
    }
    *loss = total / (double)n;
    return NF_OK;
}

/* A split evaluation pass: forward (inverse = 0: z = out, logdet, logp, any may be NULL) or inverse
 * (x = out, logdet) of the rows in (contexts c, D and K values per row). */
typedef struct {
    int inverse;
    const nf_real *in, *c;
    nf_real *out, *logdet, *logp;
    int32_t D, K;
} eval_pass;

/* part_fn of an evaluation pass: forward_chunked or inverse_chunked of the part's rows (see eval_pass). */
static nf_status eval_part(nf_flow *g, int p, int64_t lo, int64_t m, void *arg) {
    NF_UNUSED(p);
    const eval_pass *a = arg;
    const nf_real *in = a->in + lo * a->D, *ci = a->c ? a->c + lo * a->K : NULL;
    nf_real *o = a->out ? a->out + lo * a->D : NULL, *ld = a->logdet ? a->logdet + lo : NULL;
    return a->inverse ? inverse_chunked(g, in, ci, o, ld, m) : forward_chunked(g, in, ci, m, o, ld, a->logp ? a->logp + lo : NULL);
}

/* An evaluation pass of n rows in SPLIT_PARTS parts (split_ok), as forward_chunked (inverse = 0: z = out,
 * logdet, logp, any may be NULL) or inverse_chunked (x = out, logdet) would make it: every row goes through
 * the same layers as unsplit; the split depends only on n, not on the thread count. */
static nf_status eval_split(nf_flow *f, int inverse, const nf_real *in, const nf_real *c, int64_t n, nf_real *out,
                            nf_real *logdet, nf_real *logp) {
    nf_status st = check_context(f, c);
    if (!st) st = create_parts(f);
    eval_pass a = {inverse, in, c, out, logdet, logp, f->cfg.dim, f->cfg.context_dim};
    return st ? st : run_parts(f, n, 0, eval_part, &a);
}

/* See nflow.h: nll_grad with contexts on one thread for small flows (in parts, one per thread, when
 * split_ok). */
nf_status nf_flow_nll_grad_ctx(nf_flow *f, const nf_real *x, const nf_real *c, int64_t n, double *loss, nf_real *dx,
                               nf_real *dc) {
    if (n >= 1 && split_ok(f, n)) return nll_grad_split(f, x, c, n, loss, dx, dc);
    int t = serial_begin(f, n);
    double s = 0;
    nf_status st = nll_grad(f, x, c, n, n, NULL, &s, dx, dc, NULL);
    *loss = s / (double)n;
    serial_end(t);
    return st;
}

/* See models.h: this process's rows of a global batch in a data-parallel pass. */
nf_status nf_flow_nll_grad_part(nf_flow *f, const nf_real *x, const nf_real *c, int64_t n, int64_t total, const nf_reducer *r,
                                double *nll_sum) {
    if (total < n) return nf_fail(NF_ERR_INVALID, "a part of %lld rows of a batch of %lld", (long long)n, (long long)total);
    int t = serial_begin(f, n);
    set_reducer(f, r);
    nf_status st = nll_grad(f, x, c, n, total, r, nll_sum, NULL, NULL, NULL);
    set_reducer(f, NULL);
    serial_end(t);
    return st;
}

/* ------------------------------------------------------------------ dequantisation (nflow.h)
 * The dequantiser's own workspace for dq_nmax images: x | logq | ∂L/∂x | cache | scratch. */
static nf_real *dq_x(nf_flow *f) { return f->dq_ws; }
static nf_real *dq_logq(nf_flow *f) { return f->dq_ws + f->dq_nmax * f->cfg.dim; }
static nf_real *dq_dx(nf_flow *f) { return dq_logq(f) + f->dq_nmax; }
static nf_real *dq_cache(nf_flow *f) { return dq_dx(f) + f->dq_nmax * f->cfg.dim; }
static nf_real *dq_work(nf_flow *f) { return dq_cache(f) + nf_dequant_cache_size(&f->dq, f->dq_nmax); }

#define DQ_CHUNK 256 /* images per dequantiser pass outside training: bounded memory */

/* The dequantiser's workspace for n images (allocated when n grows). */
static nf_status dq_reserve(nf_flow *f, int64_t n) {
    if (n <= f->dq_nmax && f->dq_ws) return NF_OK;
    int64_t D = f->cfg.dim, size = 2 * n * D + n + nf_dequant_cache_size(&f->dq, n) + nf_dequant_work_size(&f->dq, n);
    nf_real *ws = nf_xcalloc((size_t)size, sizeof(nf_real));
    if (!ws) return nf_fail(NF_ERR_NOMEM, "out of memory for the dequantiser's workspace (%lld images)", (long long)n);
    free(f->dq_ws);
    f->dq_ws = ws, f->dq_nmax = n;
    return NF_OK;
}

/* NF_OK when f models images of `bits`-bit pixels (1..8), else NF_ERR_INVALID with the reason. */
static nf_status dq_check(const nf_flow *f, int32_t bits) {
    if (f->cfg.channels < 1) return nf_fail(NF_ERR_INVALID, "dequantisation: the model is not an image model");
    if (bits < 1 || bits > 8) return nf_fail(NF_ERR_INVALID, "bits %d: must be 1..8", (int)bits);
    return NF_OK;
}

/* See nflow.h: x and log q of n images from their bin centres and the noise, in chunks. */
nf_status nf_flow_dequantize(nf_flow *f, const nf_real *xc, const nf_real *eps, int32_t bits, nf_real *x, nf_real *logq, int64_t n) {
    nf_status st = dq_check(f, bits);
    if (st) return st;
    int64_t D = f->cfg.dim;
    if (f->cfg.dequant != NF_DEQUANT_VARIATIONAL) { /* u = σ(ε) uniform: u − ½ = ½·tanh(ε/2) */
        double h = ldexp(1.0, -bits);
        for (int64_t k = 0; k < n * D; k++) x[k] = (nf_real)(xc[k] + 0.5 * tanh(0.5 * (double)eps[k]) * h);
        for (int64_t i = 0; i < n; i++) logq[i] = 0;
        return NF_OK;
    }
    if ((st = dq_reserve(f, n < DQ_CHUNK ? n : DQ_CHUNK))) return st;
    for (int64_t i0 = 0; i0 < n; i0 += DQ_CHUNK) {
        int64_t m = n - i0 < DQ_CHUNK ? n - i0 : DQ_CHUNK;
        nf_dequant_sample(&f->dq, f->reg.params, xc + i0 * D, eps + i0 * D, bits, x + i0 * D, logq + i0, m, dq_cache(f), dq_work(f));
    }
    return NF_OK;
}

/* nll_grad of the n images whose bin centres are xc and noise eps (see nf_flow_nll_grad_dequant). */
static nf_status dq_nll_grad(nf_flow *f, const nf_real *xc, const nf_real *eps, int32_t bits, const nf_real *c, int64_t n,
                             int64_t total, const nf_reducer *r, double *sum) {
    nf_status st = dq_check(f, bits);
    if (st) return st;
    if (n < 1) return nf_fail(NF_ERR_INVALID, "empty batch");
    if ((st = dq_reserve(f, n))) return st;
    int vdq = f->cfg.dequant == NF_DEQUANT_VARIATIONAL; /* else log q = 0, nothing to learn */
    if (vdq) nf_dequant_sample(&f->dq, f->reg.params, xc, eps, bits, dq_x(f), dq_logq(f), n, dq_cache(f), dq_work(f));
    else if ((st = nf_flow_dequantize(f, xc, eps, bits, dq_x(f), dq_logq(f), n))) return st;
    dq_pass dq = {xc, bits};
    return nll_grad(f, dq_x(f), c, n, total, r, sum, vdq ? dq_dx(f) : NULL, NULL, vdq ? &dq : NULL);
}

/* See nflow.h: the dequantised bound's mean over the batch, on one thread for small flows. */
nf_status nf_flow_nll_grad_dequant(nf_flow *f, const nf_real *xc, const nf_real *eps, int32_t bits, const nf_real *c, int64_t n,
                                   double *loss) {
    int t = serial_begin(f, n);
    double s = 0;
    nf_status st = check_context(f, c);
    if (!st) st = dq_nll_grad(f, xc, eps, bits, c, n, n, NULL, &s);
    *loss = s / (double)n;
    serial_end(t);
    return st;
}

/* See models.h: this process's images of a global batch in a data-parallel pass. */
nf_status nf_flow_nll_grad_dequant_part(nf_flow *f, const nf_real *xc, const nf_real *eps, int32_t bits, const nf_real *c, int64_t n,
                                        int64_t total, const nf_reducer *r, double *nll_sum) {
    if (total < n) return nf_fail(NF_ERR_INVALID, "a part of %lld rows of a batch of %lld", (long long)n, (long long)total);
    int t = serial_begin(f, n);
    set_reducer(f, r);
    nf_status st = dq_nll_grad(f, xc, eps, bits, c, n, total, r, nll_sum);
    set_reducer(f, NULL);
    serial_end(t);
    return st;
}

/* ------------------------------------------------------------------ for train, io and the tests (models.h) */
/* Forward with any of z, logdet, logp (see models.h); one thread for small flows as elsewhere. */
nf_status nf_flow_forward_ex(nf_flow *f, const nf_real *x, const nf_real *c, nf_real *z, nf_real *logdet, nf_real *logp, int64_t n) {
    int t = serial_begin(f, n < EVAL_CHUNK ? n : EVAL_CHUNK);
    nf_status st = forward_chunked(f, x, c, n, z, logdet, logp);
    serial_end(t);
    return st;
}

/* Entries of the tensor table. */
int32_t nf_flow_num_tensors(const nf_flow *f) { return f->reg.ntensors; }

/* Tensor i's description (owned by the flow). */
const nf_tensor_info *nf_flow_tensor(const nf_flow *f, int32_t i) { return &f->reg.tensors[i]; }

/* Tensor i's values, writable. */
nf_real *nf_flow_tensor_data(nf_flow *f, int32_t i) {
    const nf_tensor_info *t = &f->reg.tensors[i];
    return (t->kind == NF_TENSOR_PARAM ? f->reg.params : f->reg.buffers) + t->offset;
}

/* Tensor i's values, read-only. */
const nf_real *nf_flow_tensor_cdata(const nf_flow *f, int32_t i) {
    const nf_tensor_info *t = &f->reg.tensors[i];
    return (t->kind == NF_TENSOR_PARAM ? f->reg.params : f->reg.buffers) + t->offset;
}

/* The training flag. */
int nf_flow_is_training(const nf_flow *f) { return f->training; }

/* See models.h. */
void nf_flow_prior_moments(const nf_flow *f, const nf_real *c, double *mu, double *ls) { nf_prior_moments(&f->prior, c, mu, ls); }

/* Layer k. */
nf_layer *nf_flow_layer(nf_flow *f, int32_t k) { return f->layers[k]; }
