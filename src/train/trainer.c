/* train.c — maximum-likelihood training (shuffled epochs, Adam) and evaluation. */
#include "io/io.h"
#include "models/models.h"
#include "train/train.h"

struct nf_trainer {
    nf_flow *f;
    const nf_dataset *ds;     /* rows of floats … */
    const nf_images *im;      /* … or 8-bit images, dequantised afresh for every batch */
    int64_t nrows;
    int64_t *idx;             /* (batch) image indices of the current batch */
    nf_train_opts o;
    nf_adam *adam;
    nf_rng rng;               /* batches and dequantisation noise */
    nf_rng shuffle_rng;       /* rng as it was when the current epoch was shuffled */
    int64_t *perm, pos, steps;
    nf_real *batch; /* (batch, D) */
    const nf_dataset *ctx; /* conditional flows: the contexts of ds's rows (n, K) … */
    int32_t K;             /* … (or the one-hot labels of im); K = the flow's context_dim, 0: none */
    nf_real *cbatch;       /* (batch, K): the contexts of the batch's rows; NULL when K = 0 */
    nf_real *eps;          /* variational dequantisation: (batch, D) logistic noise (batch holds the bin
                            * centres then); NULL otherwise */
    nf_reducer red; /* data-parallel training: this process's rank of size (size 1: alone) */
    int64_t lo, hi; /* this process's rows [lo, hi) of every batch */
    nf_real *avg;   /* o.ema > 0: the moving average of the parameters (nparams); NULL: none */
    int64_t avg_n;  /* updates averaged into avg so far */
    /* the divergence guard (nflow.h, nf_trainer_step); snap NULL: no guard */
    nf_real *snap;          /* 2 snapshot slots of (params[, avg]), snap_len values each */
    int64_t snap_len, snap_calls[2], snap_avg_n[2];
    double snap_stat[2][3]; /* the loss statistics (mean, deviation, count) at each snapshot */
    int nsnap, old;         /* snapshots held, 0..2; the slot of the older (or only) one */
    double l_mean, l_dev, l_n; /* moving average of healthy losses, of their absolute deviation; count */
    int64_t calls, healthy, troubled; /* steps taken; healthy ones since the last snapshot; troubled in a row */
    int32_t rollbacks;      /* roll-backs made (saved in checkpoints: the rate runs at 0.5^rollbacks) */
    int64_t undone;         /* steps the last roll-back took back */
};

enum { GUARD_EVERY = 100, GUARD_WARM = 100, GUARD_RUN = 20 }; /* snapshot cadence, statistics warm-up, troubled run */
#define GUARD_SPIKE 10.0 /* a spike: loss > mean + GUARD_SPIKE·deviation */

/* Fill *o with the trainer's defaults: batch 256, Adam defaults, seed 1, 8-bit images, no averaging,
 * the divergence guard with 8 roll-backs. */
void nf_train_opts_default(nf_train_opts *o) {
    o->batch = 256;
    nf_adam_opts_default(&o->adam);
    o->seed = 1;
    o->bits = 8;
    o->ema = 0;
    o->rollbacks = 8;
}

/* The index of the first non-finite value of p[0..n), or −1: fixed chunks tested in parallel as vectors
 * (x − x is 0 for finite x, NaN for ±∞ and NaN), the first bad chunk scanned again. A scalar
 * isfinite loop over nice-mnist's 19 M parameters took 5 ms of every step on one core. */
static int64_t first_nonfinite(const nf_real *p, int64_t n) {
    enum { CHUNK = 16384 };
    int64_t chunks = (n + CHUNK - 1) / CHUNK, first = INT64_MAX;
#pragma omp parallel for schedule(static) reduction(min : first) if (n > 65536)
    for (int64_t ch = 0; ch < chunks; ch++) {
        int64_t i0 = ch * CHUNK, i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
        int bad = 0;
#pragma omp simd reduction(| : bad)
        for (int64_t i = i0; i < i1; i++) bad |= !(p[i] - p[i] == 0);
        if (bad && i0 < first)
            for (int64_t i = i0; i < i1; i++)
                if (!isfinite(p[i])) {
                    first = i;
                    break;
                }
    }
    return first == INT64_MAX ? -1 : first;
}

/* Polyak averaging after a step (see nflow.h): avg ← d·avg + (1 − d)·θ with d = min(ema, (1 + n)/(10 + n)),
 * so the first updates are not dominated by the initial parameters. One pass in a fixed order: the same
 * result for every thread count and on every process of a data-parallel run (their θ are identical). */
static void average_update(nf_trainer *t) {
    if (!t->avg) return;
    double n = (double)t->avg_n++, warm = (1 + n) / (10 + n);
    nf_real a = (nf_real)(1 - (t->o.ema < warm ? t->o.ema : warm));
    const nf_real *p = nf_flow_params(t->f);
    nf_real *avg = t->avg;
    int64_t np = nf_flow_num_params(t->f);
#pragma omp parallel for simd schedule(static) if (np > 65536)
    for (int64_t k = 0; k < np; k++) avg[k] += a * (p[k] - avg[k]);
}

/* See nflow.h: exchange the flow's parameters with their moving average. */
nf_status nf_trainer_swap_average(nf_trainer *t) {
    if (!t->avg) return nf_fail(NF_ERR_INVALID, "the trainer keeps no average of the parameters (its ema is 0)");
    nf_real *p = nf_flow_params(t->f);
    for (int64_t k = 0, np = nf_flow_num_params(t->f); k < np; k++) {
        nf_real x = p[k];
        p[k] = t->avg[k], t->avg[k] = x;
    }
    return NF_OK;
}

/* A new epoch: the permutation is a function of the rng state alone (it starts from the identity),
 * so a checkpoint can rebuild it from shuffle_rng. */
static void shuffle(nf_trainer *t) {
    t->shuffle_rng = t->rng;
    nf_shuffle(t->perm, t->nrows, &t->rng);
    t->pos = 0;
}

/* A new trainer *out over rows of ds or images im (exactly one non-NULL), borrowing f and the data;
 * puts f in training mode. The caller frees it with nf_trainer_free. */
static nf_status trainer_new(nf_flow *f, const nf_dataset *ds, const nf_dataset *ctx, const nf_images *im,
                             const nf_train_opts *o, nf_trainer **out) {
    *out = NULL;
    int64_t rows = ds ? ds->n : im->n, dim = ds ? ds->dim : (int64_t)im->C * im->H * im->W;
    int32_t K = nf_flow_context_dim(f);
    if (dim != nf_flow_dim(f))
        return nf_fail(NF_ERR_INVALID, "data has %lld values per sample, the model expects %d", (long long)dim, (int)nf_flow_dim(f));
    if (K == 0 && ctx) return nf_fail(NF_ERR_INVALID, "contexts given for a model that is not conditional");
    if (K > 0 && ds && (!ctx || ctx->dim != K || ctx->n != ds->n))
        return nf_fail(NF_ERR_INVALID, "the model is conditional on %d context values per row: give %lld rows of them", (int)K, (long long)ds->n);
    if (K > 0 && im && !im->labels) return nf_fail(NF_ERR_INVALID, "the model is class-conditional: the training images need class labels");
    if (o->batch < 1 || o->batch > rows)
        return nf_fail(NF_ERR_INVALID, "batch size %lld: must be 1..%lld (the training rows)", (long long)o->batch, (long long)rows);
    if (im && (o->bits < 1 || o->bits > 8)) return nf_fail(NF_ERR_INVALID, "bits %d: must be 1..8", (int)o->bits);
    int vdq = nf_flow_config(f)->dequant == NF_DEQUANT_VARIATIONAL;
    if (vdq && !im) return nf_fail(NF_ERR_INVALID, "the model dequantises pixels variationally: train it on images (8-bit pixels), not rows of floats");
    if (!(o->ema >= 0 && o->ema < 1)) return nf_fail(NF_ERR_INVALID, "ema %g: the decay of the parameters' average must be in [0, 1) (0: none)", o->ema);
    if (o->rollbacks < 0) return nf_fail(NF_ERR_INVALID, "rollbacks %d: the divergence guard's roll-backs must be ≥ 0 (0: no guard)", (int)o->rollbacks);
    nf_trainer *t = nf_xcalloc(1, sizeof *t);
    if (!t) return nf_fail(NF_ERR_NOMEM, "out of memory");
    t->f = f, t->ds = ds, t->im = im, t->nrows = rows, t->o = *o, t->ctx = ctx, t->K = K;
    nf_status st = nf_adam_create(nf_flow_num_params(f), &o->adam, &t->adam);
    if (!st) {
        t->perm = nf_xcalloc((size_t)rows, sizeof(int64_t));
        t->idx = nf_xcalloc((size_t)o->batch, sizeof(int64_t));
        t->batch = nf_xcalloc((size_t)o->batch * (size_t)dim, sizeof(nf_real));
        if (K > 0) t->cbatch = nf_xcalloc((size_t)o->batch * (size_t)K, sizeof(nf_real));
        if (vdq) t->eps = nf_xcalloc((size_t)o->batch * (size_t)dim, sizeof(nf_real));
        if (o->ema > 0 && (t->avg = nf_xcalloc((size_t)nf_flow_num_params(f), sizeof(nf_real))))
            memcpy(t->avg, nf_flow_params(f), sizeof(nf_real) * (size_t)nf_flow_num_params(f));
        t->snap_len = nf_flow_num_params(f) * (o->ema > 0 ? 2 : 1);
        if (o->rollbacks > 0) t->snap = nf_xcalloc(2 * (size_t)t->snap_len, sizeof(nf_real));
        if (!t->perm || !t->batch || !t->idx || (K > 0 && !t->cbatch) || (vdq && !t->eps) || (o->ema > 0 && !t->avg) || (o->rollbacks > 0 && !t->snap))
            st = nf_fail(NF_ERR_NOMEM, "out of memory");
    }
    if (!st) st = nf_flow_reserve(f, o->batch);
    if (st) {
        nf_trainer_free(t);
        return st;
    }
    nf_rng_seed(&t->rng, o->seed);
    t->red.size = 1, t->lo = 0, t->hi = o->batch;
    shuffle(t);
    nf_flow_set_training(f, 1);
    *out = t;
    return NF_OK;
}

/* A trainer over the rows of ds (see trainer_new). */
nf_status nf_trainer_create(nf_flow *f, const nf_dataset *ds, const nf_train_opts *o, nf_trainer **out) {
    return trainer_new(f, ds, NULL, NULL, o, out);
}

/* A trainer over the rows of ds with their contexts ctx (see trainer_new). */
nf_status nf_trainer_create_ctx(nf_flow *f, const nf_dataset *ds, const nf_dataset *ctx, const nf_train_opts *o,
                                nf_trainer **out) {
    return trainer_new(f, ds, ctx, NULL, o, out);
}

/* A trainer over the images im, dequantised afresh every batch (see trainer_new). */
nf_status nf_trainer_create_images(nf_flow *f, const nf_images *im, const nf_train_opts *o, nf_trainer **out) {
    return trainer_new(f, NULL, NULL, im, o, out);
}

/* Free t, its optimiser and batch buffers (not the flow or data it borrows); NULL is a no-op. */
void nf_trainer_free(nf_trainer *t) {
    if (!t) return;
    nf_adam_free(t->adam);
    free(t->perm), free(t->batch), free(t->idx), free(t->cbatch), free(t->eps), free(t->avg), free(t->snap), free(t);
}

/* See nflow.h: process r->rank of r->size; this process's rows of every batch are [lo, hi). */
nf_status nf_trainer_set_reducer(nf_trainer *t, const nf_reducer *r) {
    if (!r || r->size <= 1) {
        t->red = (nf_reducer){0};
        t->red.size = 1, t->lo = 0, t->hi = t->o.batch;
        return NF_OK;
    }
    if (r->rank < 0 || r->rank >= r->size || !r->sum_real || !r->sum_double)
        return nf_fail(NF_ERR_INVALID, "process %d of %d: not a rank of the run, or a reducer without its sums", (int)r->rank, (int)r->size);
    if (!r->grad_ready != !r->grad_wait)
        return nf_fail(NF_ERR_INVALID, "a reducer with grad_ready but not grad_wait, or the other way round (both or neither)");
    if (t->o.batch < r->size)
        return nf_fail(NF_ERR_INVALID, "batch size %lld: smaller than the %d processes (each needs at least one row)", (long long)t->o.batch, (int)r->size);
    t->red = *r;
    t->lo = t->o.batch * r->rank / r->size, t->hi = t->o.batch * (r->rank + 1) / r->size;
    return NF_OK;
}

/* How many steps t has taken (counting those before a resume). */
int64_t nf_trainer_steps(const nf_trainer *t) { return t->steps; }

/* out (65 bytes, caller's) = r's four state words as 64 hexadecimal digits. */
static void rng_hex(const nf_rng *r, char *out) {
    sprintf(out, "%016llx%016llx%016llx%016llx", (unsigned long long)r->s[0], (unsigned long long)r->s[1],
            (unsigned long long)r->s[2], (unsigned long long)r->s[3]);
}

/* Parse 64 hexadecimal digits s into r's state; 1 on success, 0 if s is malformed (r undefined). */
static int rng_unhex(const char *s, nf_rng *r) {
    if (!s || strlen(s) != 64) return 0;
    for (int k = 0; k < 4; k++) {
        char part[17];
        memcpy(part, s + 16 * k, 16);
        part[16] = 0;
        char *end;
        r->s[k] = strtoull(part, &end, 16);
        if (*end) return 0;
    }
    return 1;
}

/* A resumable checkpoint at path: the model (with averaging: the average) plus Adam's moments and step,
 * the iterate beside the average, both rngs and the epoch position (nf_ckpt_save; atomic). */
nf_status nf_trainer_save(nf_trainer *t, const char *path) { return nf_trainer_save_meta(t, path, NULL); }

/* h mixed with the n bytes at p: FNV-1a over 64-bit words (the tail byte by byte). */
static uint64_t mix_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * 1099511628211ull;
    }
    for (; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* A fingerprint of t's training data as 16 hex digits in hex (17 bytes): the rows and their contexts,
 * or the pixels and labels. Saved with the training state, so that a resume on other data of the same
 * size is refused (the row count alone cannot tell). */
static void data_fingerprint(const nf_trainer *t, char *hex) {
    uint64_t h = 1469598103934665603ull;
    if (t->ds) {
        h = mix_bytes(h, t->ds->x, sizeof(nf_real) * (size_t)(t->ds->n * t->ds->dim));
        if (t->ctx) h = mix_bytes(h, t->ctx->x, sizeof(nf_real) * (size_t)(t->ctx->n * t->ctx->dim));
    } else {
        h = mix_bytes(h, t->im->pix, (size_t)t->im->n * (size_t)t->im->C * (size_t)t->im->H * (size_t)t->im->W);
        if (t->im->labels) h = mix_bytes(h, t->im->labels, sizeof(int32_t) * (size_t)t->im->n);
    }
    snprintf(hex, 17, "%016llx", (unsigned long long)h);
}

/* nf_trainer_save with the caller's JSON members meta (NULL: none) appended to the trainer object. */
nf_status nf_trainer_save_meta(nf_trainer *t, const char *path, const char *meta) {
    nf_real *m, *v;
    int64_t *at, *at0;
    nf_adam_state(t->adam, &m, &v, &at, &at0);
    char json[1536], r1[65], r2[65], fp[17];
    data_fingerprint(t, fp);
    rng_hex(&t->rng, r1);
    rng_hex(&t->shuffle_rng, r2);
    int has = meta && meta[0];
    if (has && strlen(meta) > 600) return nf_fail(NF_ERR_INVALID, "%s: not saved: the caller's training state is over 600 bytes", path);
    char avg[64] = "";
    if (t->avg) snprintf(avg, sizeof avg, ",\"ema_n\":%lld", (long long)t->avg_n);
    char rb[80] = ""; /* absent when none, so older readers and files stay as they were */
    if (t->rollbacks) snprintf(rb, sizeof rb, ",\"rollbacks\":%d,\"adam_t0\":%lld", (int)t->rollbacks, (long long)*at0);
    snprintf(json, sizeof json, "{\"steps\":%lld,\"adam_t\":%lld,\"pos\":%lld,\"rows\":%lld,\"data\":\"%s\",\"rng\":\"%s\",\"shuffle_rng\":\"%s\"%s%s%s%s}",
             (long long)t->steps, (long long)*at, (long long)t->pos, (long long)t->nrows, fp, r1, r2, avg, rb, has ? "," : "", has ? meta : "");
    int training = nf_flow_is_training(t->f);
    if (t->avg) nf_trainer_swap_average(t); /* the model saved is the average; t->avg holds the iterate */
    nf_status st = nf_ckpt_save(t->f, path, m, v, t->avg, json);
    if (t->avg) nf_trainer_swap_average(t);
    nf_flow_set_training(t->f, training);
    return st;
}

/* read "key":integer from a small flat JSON object */
static int json_int(const char *js, const char *key, long long *out) {
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(js, pat);
    if (!p) return 0;
    char *end;
    *out = strtoll(p + strlen(pat), &end, 10);
    return end != p + strlen(pat);
}

/* Copy the string value of "key" in the flat JSON js into out (n bytes); 1 if found and it fits, else 0. */
static int json_str(const char *js, const char *key, char *out, size_t n) {
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(js, pat);
    if (!p) return 0;
    p += strlen(pat);
    const char *e = strchr(p, '"');
    if (!e || (size_t)(e - p) >= n) return 0;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = 0;
    return 1;
}

/* Restore t (fresh, for the flow loaded from path and the same data) to where nf_trainer_save
 * left it; NF_ERR_FORMAT if the saved state does not match. */
nf_status nf_trainer_resume(nf_trainer *t, const char *path) { return nf_trainer_resume_meta(t, path, NULL, 0); }

/* nf_trainer_resume, and the saved trainer object as text into meta (n bytes; "" if it does not fit). */
nf_status nf_trainer_resume_meta(nf_trainer *t, const char *path, char *meta, size_t n) {
    if (meta && n) meta[0] = 0;
    nf_real *m, *v;
    int64_t *at, *at0;
    nf_adam_state(t->adam, &m, &v, &at, &at0);
    char *js = NULL;
    /* with averaging the flow loaded from path holds the average: its iterate goes to t->avg, then the two swap */
    nf_status st = nf_ckpt_read_trainer(path, m, v, t->avg, nf_flow_num_params(t->f), &js);
    if (st == NF_ERR_FORMAT && t->avg && nf_ckpt_read_trainer(path, m, v, NULL, nf_flow_num_params(t->f), &js) == NF_OK) {
        free(js); /* the file is whole: it was saved without an average */
        return nf_fail(NF_ERR_INVALID, "%s: saved without an average of the parameters: resume without it (ema = 0)", path);
    }
    if (st) return st;
    long long steps, adam_t, pos, rows, avg_n = -1, rollbacks = 0, adam_t0 = 0;
    int has_avg = json_int(js, "ema_n", &avg_n);
    json_int(js, "rollbacks", &rollbacks);
    json_int(js, "adam_t0", &adam_t0); /* written with roll-backs: the moments restarted at that step */
    char r1[80], r2[80], fp_saved[24], fp[17];
    nf_rng rng, srng;
    data_fingerprint(t, fp);
    if (!json_int(js, "steps", &steps) || !json_int(js, "adam_t", &adam_t) || !json_int(js, "pos", &pos) ||
        !json_int(js, "rows", &rows) || !json_str(js, "rng", r1, sizeof r1) || !json_str(js, "shuffle_rng", r2, sizeof r2) ||
        !rng_unhex(r1, &rng) || !rng_unhex(r2, &srng))
        st = nf_fail(NF_ERR_FORMAT, "%s: malformed training state", path);
    else if (rows != t->nrows)
        st = nf_fail(NF_ERR_INVALID, "%s: saved while training on %lld rows, the data now has %lld", path, rows, (long long)t->nrows);
    else if (json_str(js, "data", fp_saved, sizeof fp_saved) && strcmp(fp_saved, fp) != 0) /* (files saved before the fingerprint: not checked) */
        st = nf_fail(NF_ERR_INVALID, "%s: saved while training on other data (as many rows, %lld, but other values or another order): "
                     "a run continues only on the data it started with", path, rows);
    else if (pos < 0 || pos > rows || steps < 0 || adam_t < 0 || (has_avg && avg_n < 0) || rollbacks < 0 || rollbacks > 1000 ||
             adam_t0 < 0 || adam_t0 > adam_t)
        st = nf_fail(NF_ERR_FORMAT, "%s: training state out of range", path);
    else if (has_avg != (t->avg != NULL))
        st = nf_fail(NF_ERR_INVALID, "%s: saved %s an average of the parameters: resume %s it (ema %s 0)", path, has_avg ? "with" : "without",
                     has_avg ? "with" : "without", has_avg ? ">" : "=");
    if (!st && meta && n > strlen(js)) strcpy(meta, js);
    free(js);
    if (st) return st;
    t->rng = srng;
    shuffle(t); /* rebuild the epoch's permutation; it leaves rng where the original run left it */
    t->rng = rng, t->pos = pos, t->steps = steps;
    *at = adam_t, *at0 = adam_t0;
    /* the rate as the saved run left it; the guard's statistics and snapshots start afresh */
    for (long long k = t->rollbacks; k < rollbacks; k++) nf_adam_scale_lr(t->adam, 0.5);
    t->rollbacks = (int32_t)rollbacks;
    if (t->avg) t->avg_n = avg_n, nf_trainer_swap_average(t);
    return NF_OK;
}

/* The end of every training step, from the batch's gradient g (summed over the processes): its norm
 * (*grad_norm, before clipping), Adam's update of the parameters, the step count and the running
 * average. A non-finite gradient leaves the parameters unchanged: NF_ERR_NUMERIC. */
static nf_status apply_step(nf_trainer *t, const nf_real *g, double *grad_norm) {
    double norm = nf_adam_grad_norm(t->adam, g);
    if (!isfinite(norm)) return nf_fail(NF_ERR_NUMERIC, "the gradient is not finite");
    nf_adam_apply(t->adam, nf_flow_params(t->f), g, norm);
    *grad_norm = norm;
    t->steps++;
    average_update(t);
    return NF_OK;
}

/* The data-parallel half of nf_trainer_step (t->batch holds the whole global batch, drawn as one
 * process draws it): this process's rows, then the sums across processes — the gradient buffer and
 * (NLL sum, failed) — and one Adam step from the summed gradient, identical on every process. With
 * grad_ready the gradient's sum runs during the backward pass (the flow posts its final suffixes) and
 * grad_wait completes it: nothing reads the gradient before (norm, NaN check, update). Every
 * process reaches both sums whatever happened on it (a numeric failure is carried in "failed"), so
 * the skip decision is taken by all together. A failure of the transport or memory is returned as is:
 * the caller must stop the whole job. */
static nf_status step_part(nf_trainer *t, double *loss, double *grad_norm) {
    int64_t B = t->o.batch, D = nf_flow_dim(t->f), np = nf_flow_num_params(t->f);
    nf_flow *f = t->f;
    nf_flow_zero_grad(f);
    double part[2] = {0, 0};
    const nf_real *c = t->cbatch ? t->cbatch + t->lo * t->K : NULL;
    nf_status st = t->eps ? nf_flow_nll_grad_dequant_part(f, t->batch + t->lo * D, t->eps + t->lo * D, t->o.bits, c, t->hi - t->lo, B, &t->red, &part[0])
                          : nf_flow_nll_grad_part(f, t->batch + t->lo * D, c, t->hi - t->lo, B, &t->red, &part[0]);
    if (st && st != NF_ERR_NUMERIC) return st;
    char why[200] = "";
    if (st) snprintf(why, sizeof why, "%s", nf_last_error());
    part[1] = st ? 1 : 0;
    nf_real *g = nf_flow_grads(f);
    int overlap = t->red.grad_wait != NULL;
    if (t->red.sum_double(t->red.ctx, part, 2) != 0 ||
        (overlap ? t->red.grad_wait(t->red.ctx, g, np) : t->red.sum_real(t->red.ctx, g, np)) != 0)
        return nf_fail(NF_ERR_IO, "the sum across processes failed");
    *loss = part[0] / (double)B;
    if (part[1] > 0) {
        if (why[0]) return nf_fail(NF_ERR_NUMERIC, "%s", why);
        return nf_fail(NF_ERR_NUMERIC, "another process failed on its part of the batch");
    }
    if (!isfinite(*loss)) return nf_fail(NF_ERR_NUMERIC, "the negative log-likelihood is not finite");
    return apply_step(t, g, grad_norm);
}

/* One training step on the next batch; *loss = its mean NLL, *grad_norm the pre-clip norm.
 * A non-finite loss or gradient leaves the parameters unchanged and returns NF_ERR_NUMERIC. */
static nf_status step_once(nf_trainer *t, double *loss, double *grad_norm) {
    int64_t B = t->o.batch, D = nf_flow_dim(t->f);
    for (int64_t i = 0; i < B; i++) {
        if (t->pos == t->nrows) shuffle(t);
        t->idx[i] = t->perm[t->pos++];
        if (t->ds) memcpy(t->batch + i * D, t->ds->x + t->idx[i] * D, sizeof(nf_real) * (size_t)D);
        if (t->ctx) memcpy(t->cbatch + i * t->K, t->ctx->x + t->idx[i] * t->K, sizeof(nf_real) * (size_t)t->K);
    }
    if (t->im) nf_images_dequantize(t->im, t->idx, B, t->o.bits, t->eps ? NULL : &t->rng, t->batch); /* centres for q */
    for (int64_t k = 0; t->eps && k < B * D; k++) t->eps[k] = (nf_real)nf_rng_logistic(&t->rng);
    nf_status cst = t->im && t->K > 0 ? nf_images_onehot(t->im, t->idx, B, t->K, t->cbatch) : NF_OK;
    if (cst) return cst;
    if (t->red.size > 1) return step_part(t, loss, grad_norm);
    nf_flow *f = t->f;
    /* a non-finite parameter (from anywhere: a ReLU masks a NaN weight, so the loss can stay finite)
     * must stop the step, or it would be saved into a checkpoint that does not load */
    int64_t bad = first_nonfinite(nf_flow_params(f), nf_flow_num_params(f));
    if (bad >= 0) return nf_fail(NF_ERR_NUMERIC, "parameter %lld is not finite", (long long)bad);
    nf_flow_zero_grad(f);
    nf_status st = t->eps      ? nf_flow_nll_grad_dequant(f, t->batch, t->eps, t->o.bits, t->cbatch, B, loss)
                   : t->cbatch ? nf_flow_nll_grad_ctx(f, t->batch, t->cbatch, B, loss, NULL, NULL)
                               : nf_flow_nll_grad(f, t->batch, B, loss, NULL);
    if (st) return st;
    return apply_step(t, nf_flow_grads(f), grad_norm);
}


/* The guard's snapshot slot k ← the parameters, the average and the loss statistics now. Adam's moments
 * are not kept: a roll-back restarts them (two more copies of every parameter per slot cost nice-mnist's
 * 19 M parameters 304 MB over the two slots). */
static void snap_take(nf_trainer *t, int k) {
    int64_t np = nf_flow_num_params(t->f);
    nf_real *d = t->snap + k * t->snap_len;
    memcpy(d, nf_flow_params(t->f), sizeof(nf_real) * (size_t)np);
    if (t->avg) memcpy(d + np, t->avg, sizeof(nf_real) * (size_t)np);
    t->snap_calls[k] = t->calls, t->snap_avg_n[k] = t->avg_n;
    t->snap_stat[k][0] = t->l_mean, t->snap_stat[k][1] = t->l_dev, t->snap_stat[k][2] = t->l_n;
}

/* Back to the older snapshot's parameters and average, with Adam's moments zeroed and its bias
 * correction counted afresh (the moments of the diverging stretch are what led there; Adam's step
 * counter, the schedule, the data position and the step count keep moving); it becomes the only one held. */
static void snap_restore(nf_trainer *t) {
    int64_t np = nf_flow_num_params(t->f);
    int k = t->old;
    nf_real *d = t->snap + k * t->snap_len;
    memcpy(nf_flow_params(t->f), d, sizeof(nf_real) * (size_t)np);
    nf_adam_restart_moments(t->adam);
    if (t->avg) memcpy(t->avg, d + np, sizeof(nf_real) * (size_t)np), t->avg_n = t->snap_avg_n[k];
    t->l_mean = t->snap_stat[k][0], t->l_dev = t->snap_stat[k][1], t->l_n = t->snap_stat[k][2];
    t->undone = t->calls - t->snap_calls[k];
    t->nsnap = 1, t->healthy = 0, t->troubled = 0;
}

/* See nflow.h: one step (step_once) under the divergence guard. */
nf_status nf_trainer_step(nf_trainer *t, double *loss, double *grad_norm) {
    *loss = NAN, *grad_norm = NAN;
    nf_status st = step_once(t, loss, grad_norm);
    if (!t->snap || (st && st != NF_ERR_NUMERIC)) return st;
    t->calls++;
    double L = *loss;
    int spike = !st && t->l_n >= GUARD_WARM && L > t->l_mean + GUARD_SPIKE * t->l_dev + 1e-3 * (fabs(t->l_mean) + 1);
    if (!st && !spike) { /* healthy: into the statistics; a snapshot every GUARD_EVERY of them */
        double w = t->l_n < GUARD_WARM ? 1.0 / (t->l_n + 1) : 0.01; /* the plain mean first, then a moving one */
        double dev = t->l_n == 0 ? 0 : fabs(L - t->l_mean);
        t->l_mean = t->l_n == 0 ? L : t->l_mean + w * (L - t->l_mean);
        t->l_dev = t->l_n == 0 ? 0 : t->l_dev + w * (dev - t->l_dev);
        t->l_n++;
        t->troubled = 0;
        if (++t->healthy >= GUARD_EVERY) {
            /* the first into the older's slot, the second beside it; then the newest replaces the older */
            snap_take(t, t->nsnap == 1 ? !t->old : t->old);
            if (t->nsnap == 2) t->old = !t->old;
            else t->nsnap++;
            t->healthy = 0;
        }
        return st;
    }
    if (++t->troubled < GUARD_RUN || t->nsnap == 0) return st; /* a bad batch, or nothing to go back to yet */
    snap_restore(t);
    if (t->rollbacks >= t->o.rollbacks)
        return nf_fail(NF_ERR_DIVERGED, "the loss diverged again after %d roll-backs, each halving the learning rate; stopping with the parameters "
                                        "of %lld steps before", (int)t->rollbacks, (long long)t->undone);
    t->rollbacks++;
    nf_adam_scale_lr(t->adam, 0.5);
    return NF_OK;
}

/* See nflow.h. */
int32_t nf_trainer_rollbacks(const nf_trainer *t, int64_t *undone) {
    if (undone) *undone = t->undone;
    return t->rollbacks;
}
