/* train.c — maximum-likelihood training (shuffled epochs, Adam) and evaluation. */
#include "internal.h"

struct nf_trainer {
    nf_flow *f;
    const nf_dataset *ds;
    nf_train_opts o;
    nf_adam *adam;
    nf_rng rng;
    int64_t *perm, pos, steps;
    nf_real *batch; /* (batch, D) */
};

void nf_train_opts_default(nf_train_opts *o) {
    o->batch = 256;
    nf_adam_opts_default(&o->adam);
    o->seed = 1;
}

static void shuffle(nf_trainer *t) {
    for (int64_t i = t->ds->n - 1; i > 0; i--) {
        int64_t k = (int64_t)(nf_rng_u64(&t->rng) % (uint64_t)(i + 1)), x = t->perm[i];
        t->perm[i] = t->perm[k], t->perm[k] = x;
    }
    t->pos = 0;
}

nf_status nf_trainer_create(nf_flow *f, const nf_dataset *ds, const nf_train_opts *o, nf_trainer **out) {
    *out = NULL;
    if (ds->dim != f->cfg.dim)
        return nf_fail(NF_ERR_INVALID, "data has %d columns, the model expects %d", (int)ds->dim, (int)f->cfg.dim);
    if (o->batch < 1 || o->batch > ds->n)
        return nf_fail(NF_ERR_INVALID, "batch size %lld: must be 1..%lld (the training rows)", (long long)o->batch, (long long)ds->n);
    nf_trainer *t = nf_xcalloc(1, sizeof *t);
    if (!t) return nf_fail(NF_ERR_NOMEM, "out of memory");
    t->f = f, t->ds = ds, t->o = *o;
    nf_status st = nf_adam_create(f->ctx.nparams, &o->adam, &t->adam);
    if (!st) {
        t->perm = nf_xcalloc((size_t)ds->n, sizeof(int64_t));
        t->batch = nf_xcalloc((size_t)o->batch * (size_t)ds->dim, sizeof(nf_real));
        if (!t->perm || !t->batch) st = nf_fail(NF_ERR_NOMEM, "out of memory");
    }
    if (!st) st = nf_flow_reserve(f, o->batch);
    if (st) {
        nf_trainer_free(t);
        return st;
    }
    nf_rng_seed(&t->rng, o->seed);
    for (int64_t i = 0; i < ds->n; i++) t->perm[i] = i;
    shuffle(t);
    nf_flow_set_training(f, 1);
    *out = t;
    return NF_OK;
}

void nf_trainer_free(nf_trainer *t) {
    if (!t) return;
    nf_adam_free(t->adam);
    free(t->perm), free(t->batch), free(t);
}

int64_t nf_trainer_steps(const nf_trainer *t) { return t->steps; }

nf_status nf_trainer_step(nf_trainer *t, double *loss, double *grad_norm) {
    int64_t B = t->o.batch, D = t->ds->dim;
    for (int64_t i = 0; i < B; i++) {
        if (t->pos == t->ds->n) shuffle(t);
        memcpy(t->batch + i * D, t->ds->x + t->perm[t->pos++] * D, sizeof(nf_real) * (size_t)D);
    }
    nf_flow *f = t->f;
    nf_flow_zero_grad(f);
    nf_status st = nf_flow_nll_grad(f, t->batch, B, loss, NULL);
    if (st) return st;
    double ss = 0;
    const nf_real *g = f->ctx.grads;
    for (int64_t i = 0; i < f->ctx.nparams; i++) ss += (double)g[i] * g[i];
    if (!isfinite(ss)) return nf_fail(NF_ERR_NUMERIC, "step %lld: the gradient is not finite; update skipped", (long long)t->steps + 1);
    *grad_norm = nf_adam_step(t->adam, f->ctx.params, g);
    t->steps++;
    return NF_OK;
}

nf_status nf_flow_evaluate(nf_flow *f, const nf_dataset *ds, double *mean_ll, double *se) {
    if (ds->dim != f->cfg.dim)
        return nf_fail(NF_ERR_INVALID, "data has %d columns, the model expects %d", (int)ds->dim, (int)f->cfg.dim);
    if (ds->n < 1) return nf_fail(NF_ERR_INVALID, "no rows to evaluate");
    int training = f->training;
    f->training = 0;
    nf_real *lp = nf_xcalloc((size_t)ds->n, sizeof(nf_real));
    nf_status st = lp ? nf_flow_log_prob(f, ds->x, lp, ds->n) : nf_fail(NF_ERR_NOMEM, "out of memory");
    f->training = training;
    if (st) {
        free(lp);
        return st;
    }
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < ds->n; i++) s += lp[i];
    double m = s / (double)ds->n;
    for (int64_t i = 0; i < ds->n; i++) s2 += (lp[i] - m) * (lp[i] - m);
    free(lp);
    *mean_ll = m;
    *se = ds->n > 1 ? sqrt(s2 / (double)(ds->n - 1) / (double)ds->n) : 0;
    if (!isfinite(m)) return nf_fail(NF_ERR_NUMERIC, "a log-likelihood is not finite");
    return NF_OK;
}
