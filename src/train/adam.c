/* adam.c — Adam (Kingma & Ba) with linear learning-rate warm-up, global gradient-norm clipping and
 * decoupled weight decay (AdamW, Loshchilov & Hutter; PyTorch's torch.optim.AdamW).
 * Step t (from 1):  g ← g · min(1, clip/‖g‖);  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
 *                   lr_t = lr · min(1, t/warmup) [· ½(1 + cos(π·min(1, t/cosine_steps))) if cosine]
 *                   p ← p · (1 − lr_t·λ) − lr_t · (m/(1−β1^s)) / (√(v/(1−β2^s)) + ε)   (λ = weight_decay)
 * s = t − t0 counts the updates since the moments were last zeroed (t0 = 0 unless nf_adam_restart_moments
 * was called: the divergence guard's roll-back); the schedule runs on t. */
#include "train/train.h"

/* The gradient norm is summed in fixed chunks (partial sums added in chunk order), so it never depends
 * on the thread count; both passes run in parallel and vectorised (memory-bound on large models). */
#define NORM_CHUNK 16384

struct nf_adam {
    nf_adam_opts o;
    int64_t n, t, t0; /* updates applied; the value of t when the moments were last zeroed */
    nf_real *m, *v;
    double *part; /* one partial sum of squares per chunk */
};

/* Fill *o with Adam's usual settings: lr 1e-3, β 0.9/0.999, ε 1e-8, no warm-up, clipping, cosine decay
 * or weight decay. */
void nf_adam_opts_default(nf_adam_opts *o) {
    o->lr = 1e-3, o->beta1 = 0.9, o->beta2 = 0.999, o->eps = 1e-8, o->warmup = 0, o->clip = 0, o->cosine_steps = 0;
    o->weight_decay = 0;
}

/* A new optimiser *out for n parameters with options o (copied); moments zeroed. The caller frees
 * it with nf_adam_free; NF_ERR_INVALID for bad options, NF_ERR_NOMEM. */
nf_status nf_adam_create(int64_t n, const nf_adam_opts *o, nf_adam **out) {
    *out = NULL;
    if (!(o->lr > 0) || !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0) || o->warmup < 0 || o->cosine_steps < 0 ||
        !(o->weight_decay >= 0 && o->weight_decay * o->lr < 1))
        return nf_fail(NF_ERR_INVALID, "Adam options: need lr > 0, 0 ≤ β < 1, ε > 0, warm-up ≥ 0, cosine steps ≥ 0, 0 ≤ weight decay < 1/lr");
    nf_adam *a = nf_xcalloc(1, sizeof *a);
    if (!a) return nf_fail(NF_ERR_NOMEM, "out of memory");
    a->o = *o, a->n = n;
    a->m = nf_xcalloc((size_t)n, sizeof(nf_real));
    a->part = nf_xcalloc((size_t)((n + NORM_CHUNK - 1) / NORM_CHUNK + 1), sizeof(double));
    a->v = nf_xcalloc((size_t)n, sizeof(nf_real));
    if (!a->m || !a->v || !a->part) {
        nf_adam_free(a);
        return nf_fail(NF_ERR_NOMEM, "out of memory for Adam moments");
    }
    *out = a;
    return NF_OK;
}

/* Free a and its moments; NULL is a no-op. */
void nf_adam_free(nf_adam *a) {
    if (!a) return;
    free(a->m), free(a->v), free(a->part), free(a);
}

/* How many updates a has applied. */
int64_t nf_adam_steps(const nf_adam *a) { return a->t; }

/* part[ch] = Σ g_i² over chunk ch of NORM_CHUNK gradients (of n), for the chunks [c0, c1). */
static void square_sums(const nf_real *g, int64_t n, double *part, int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ch++) {
        int64_t i1 = (ch + 1) * NORM_CHUNK < n ? (ch + 1) * NORM_CHUNK : n;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = ch * NORM_CHUNK; i < i1; i++) s += (double)g[i] * g[i];
        part[ch] = s;
    }
}

/* ‖g‖₂ of the n gradients (fixed chunks summed in a fixed order: the same for every thread count). */
double nf_adam_grad_norm(nf_adam *a, const nf_real *g) {
    int64_t n = a->n, chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *part = a->part, ss = 0;
    NF_PARALLEL_RANGE(n > 65536, chunks, square_sums(g, n, part, lo, hi));
    for (int64_t ch = 0; ch < chunks; ch++) ss += part[ch];
    return sqrt(ss);
}

/* One Adam update of p from g (both n long, the caller's); returns the pre-clip gradient norm. */
double nf_adam_step(nf_adam *a, nf_real *p, const nf_real *g) {
    double norm = nf_adam_grad_norm(a, g);
    nf_adam_apply(a, p, g, norm);
    return norm;
}

/* One step's scalars of the per-element update (nf_adam_apply). */
typedef struct {
    nf_real step, ic2, eps, g1, g2, b1, b2, keep;
} adam_scalars;

/* Elements [i0, i1): m ← β1·m + (1 − β1)·ĝ, v ← β2·v + (1 − β2)·ĝ², p ← keep·p − step·m / (√(v/c2) + ε)
 * (ĝ the clipped gradient, folded into g1 and g2). */
static void adam_update(const adam_scalars *k, nf_real *p, const nf_real *g, nf_real *m, nf_real *v, int64_t i0, int64_t i1) {
    const nf_real step = k->step, ic2 = k->ic2, eps = k->eps, g1 = k->g1, g2 = k->g2, fb1 = k->b1, fb2 = k->b2, keep = k->keep;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
        nf_real gi = g[i];
        nf_real mi = fb1 * m[i] + g1 * gi, vi = fb2 * v[i] + g2 * (gi * gi);
        m[i] = mi, v[i] = vi;
        p[i] = keep * p[i] - step * mi / (sqrt(vi * ic2) + eps);
    }
}

/* The update itself: clip g to the norm limit using norm, advance the step, warm-up and cosine
 * schedule on lr, update the moments and p in place (decay first: p·(1 − lr_t·λ), from p before the step). */
void nf_adam_apply(nf_adam *a, nf_real *p, const nf_real *g, double norm) {
    int64_t n = a->n;
    double gs = 1.0;
    if (a->o.clip > 0 && norm > a->o.clip) gs = a->o.clip / norm;
    a->t++;
    double lr = a->o.lr;
    if (a->o.warmup > 0 && a->t < a->o.warmup) lr *= (double)a->t / (double)a->o.warmup;
    if (a->o.cosine_steps > 0) {
        double fr = fmin(1.0, (double)a->t / (double)a->o.cosine_steps);
        lr *= 0.5 * (1.0 + cos(3.141592653589793 * fr));
    }
    double b1 = a->o.beta1, b2 = a->o.beta2;
    double c1 = 1.0 - pow(b1, (double)(a->t - a->t0)), c2 = 1.0 - pow(b2, (double)(a->t - a->t0));
    /* The per-step scalars in double, the per-element work in the parameters' precision: the loop is
     * memory-bound only if its divide and square root run at the vector width of the data (in double they
     * took as long as the whole backward pass of nice-mnist's 19 M parameters on a Zen 4). */
    const nf_real step = (nf_real)(lr / c1), ic2 = (nf_real)(1.0 / c2), eps = (nf_real)a->o.eps;
    const nf_real g1 = (nf_real)((1 - b1) * gs), g2 = (nf_real)((1 - b2) * gs * gs), fb1 = (nf_real)b1, fb2 = (nf_real)b2;
    /* decoupled decay, from p before the step; keep = 1 without decay, and 1·p − u is exactly p − u */
    const nf_real keep = (nf_real)(1.0 - lr * a->o.weight_decay);
    const adam_scalars k = {step, ic2, eps, g1, g2, fb1, fb2, keep};
    NF_PARALLEL_RANGE(n > 65536, n, adam_update(&k, p, g, a->m, a->v, lo, hi));
}

/* Pointers to a's moments (n each), step counter and moment start t0, owned by a (checkpoints read and
 * write them; t0 ≤ t). */
void nf_adam_state(nf_adam *a, nf_real **m, nf_real **v, int64_t **t, int64_t **t0) { *m = a->m, *v = a->v, *t = &a->t, *t0 = &a->t0; }

/* See train.h: m = v = 0 and t0 = t — the next update is a first one for the bias correction, while the
 * warm-up and cosine schedule go on from t. */
void nf_adam_restart_moments(nf_adam *a) {
    memset(a->m, 0, sizeof(nf_real) * (size_t)a->n);
    memset(a->v, 0, sizeof(nf_real) * (size_t)a->n);
    a->t0 = a->t;
}

/* See train.h: the base rate lr ← f·lr (the divergence guard halves it). */
void nf_adam_scale_lr(nf_adam *a, double f) { a->o.lr *= f; }
