/* train_loop.c — the one training loop of nflow train, for vector and image data alike. */
#include "cli.h"
#include "mpi.h"

#include <errno.h>
#include <stdlib.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define R_NUDGE ((nf_real)1e-3) /* NFLOW_MPI_FAULT=diverge: what one process adds to its first parameter */

/* A checksum of the flat parameter buffer (FNV-1a over its 32-bit words), for --check-sync. */
static uint64_t params_checksum(nf_flow *f) {
    const nf_real *p = nf_flow_params(f);
    size_t nb = sizeof(nf_real) * (size_t)nf_flow_num_params(f);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i + 4 <= nb; i += 4) {
        uint32_t w;
        memcpy(&w, (const char *)p + i, 4);
        h = (h ^ w) * 1099511628211ull;
    }
    return h;
}

/* A decision all processes took together (the same on each) that ends the run: rank 0 says why and
 * stops the job; the others wait for that (they would only repeat the line). */
#define DIE_ALL(...) do { if (dist_rank() != 0) { sleep(30); dist_abort(1); exit(1); } die(__VA_ARGS__); } while (0)

void val_meta(const val_track *v, char *buf, unsigned long n) {
    snprintf(buf, n, "\"best_step\":%lld,\"best_val\":%.17g,\"bad_evals\":%lld", (long long)v->best_step, v->best_step ? v->best : 0.0,
             (long long)v->bad);
}

/* "key":number of the flat JSON js as a double; 0 if absent */
static double json_num(const char *js, const char *key) {
    char pat[48];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(js, pat);
    return p ? strtod(p + strlen(pat), NULL) : 0;
}

void val_unmeta(val_track *v, const char *js) {
    v->best_step = (int64_t)json_num(js, "best_step");
    v->best = json_num(js, "best_val");
    v->bad = (int64_t)json_num(js, "bad_evals");
    if (v->best_step < 0 || v->bad < 0) v->best_step = 0, v->bad = 0;
}

/* Copy the file src to dst through a temporary name (dst is whole or untouched). */
static void copy_file(const char *src, const char *dst) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dst, (long)getpid());
    FILE *in = fopen(src, "rb"), *out = in ? fopen(tmp, "wb") : NULL;
    if (!in) die("%s: cannot open: %s", src, strerror(errno));
    if (!out) die("%s: cannot open for writing: %s", tmp, strerror(errno));
    char buf[65536];
    size_t k;
    int bad = 0;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0) bad |= fwrite(buf, 1, k, out) != k;
    bad |= ferror(in) != 0;
    fclose(in);
    bad |= fclose(out) != 0;
    if (bad || rename(tmp, dst) != 0) {
        remove(tmp);
        die("%s: cannot copy %s there", dst, src);
    }
}

void val_resume(val_track *v, const char *js, const char *resume, int64_t step, int writer, nf_trainer *tr) {
    val_unmeta(v, js);
    if (!v->best_step) return;
    if (v->best_step == step) { /* the resumed state is the best one */
        char meta[256];
        val_meta(v, meta, sizeof meta);
        if (writer) check(nf_trainer_save_meta(tr, v->best_path, meta));
        return;
    }
    char src[4200];
    snprintf(src, sizeof src, "%s.best", resume);
    if (access(src, R_OK) != 0)
        die("option --resume: %s is missing (%s refers to the best-validation state of step %lld kept there)", src, resume, (long long)v->best_step);
    if (writer && strcmp(src, v->best_path) != 0) copy_file(src, v->best_path);
}

/* The metrics log at path cut back to its header and its rows of steps ≤ last, through a temporary name:
 * a run killed after its last checkpoint may have logged steps that the resume runs again, and half a
 * row (the log is flushed at checkpoints; a full buffer reaches the file between them). Nothing when the
 * file cannot be opened (the resume then writes a new one). */
static void trim_log(const char *path, int64_t last) {
    FILE *in = fopen(path, "rb");
    if (!in) return;
    char tmp[4200], line[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *out = fopen(tmp, "wb");
    if (!out) die("%s: cannot open for writing: %s", tmp, strerror(errno));
    int bad = 0;
    for (int64_t row = 0; fgets(line, sizeof line, in); row++) {
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n') break; /* half a row: the end of what was written */
        char *e;
        long long step = strtoll(line, &e, 10);
        if (row > 0 && (e == line || step > last)) break;
        bad |= fputs(line, out) == EOF;
    }
    fclose(in);
    bad |= fclose(out) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        die("%s: cannot rewrite it", path);
    }
}

/* Save the trainer's resumable state (with the validation state, if any) to path. */
static nf_status save_state(const train_run *r, const char *path) {
    char meta[256] = "";
    if (r->v) val_meta(r->v, meta, sizeof meta);
    return nf_trainer_save_meta(r->tr, path, meta);
}

/* With --ema: put the average of the parameters in the flow, or put the iterate back (the same call). */
static void swap_average(const train_run *r) {
    if (r->averaged) check(nf_trainer_swap_average(r->tr));
}

/* The validation NLL (nats) of r's flow (with --ema: of the average); +inf if a log-likelihood is not
 * finite (never the best). */
static double val_nll(const train_run *r) {
    double ll, se;
    swap_average(r);
    nf_status st = nf_flow_evaluate_ctx(r->f, r->v->val, r->v->val_ctx, &ll, &se);
    swap_average(r);
    if (st == NF_ERR_NUMERIC) return INFINITY;
    check(st);
    r->v->evals++;
    return -ll;
}

int64_t train_loop(const train_run *r) {
    const opts *o = r->o;
    int writer = dist_rank() == 0; /* under mpirun rank 0 writes metrics, checkpoints, samples, progress */
    char logpath[4096];
    snprintf(logpath, sizeof logpath, "%s%s", o->log ? o->log : o->out, o->log ? "" : ".metrics.csv");
    FILE *lg = NULL;
    if (writer) {
        int append = r->first > 1 && access(logpath, F_OK) == 0;
        if (append) trim_log(logpath, r->first - 1);
        if (!(lg = fopen(logpath, append ? "a" : "w"))) die("%s: cannot open for writing: %s", logpath, strerror(errno));
        /* one row per step; a skipped (non-finite) step has loss and grad_norm nan; skipped counts them so far */
        if (!append) fprintf(lg, "step,epoch,loss_%s,grad_norm,%s_per_s,elapsed_s,skipped%s%s\n", r->csv_unit, r->items, r->v ? ",val_" : "",
                             r->v ? r->csv_unit : "");
    }
    const int64_t NS = 64; /* sample grids: the same 64 latents at temperature 0.7 every time */
    int64_t checks = 0;
    int tty = isatty(2) && !o->quiet && writer;
    double t0 = now(), last = t0, ema = NAN;
    int64_t skipped = 0, consecutive = 0, saved = 0, done = 0;
    val_track *v = r->v;
    double end_val = INFINITY, shown_val = NAN; /* the last step's score when it is not a scheduled evaluation */
    for (int64_t s = r->first; s <= o->steps; s++) {
        double loss = NAN, gn = NAN, t = 0, el = 0;
        int new_best = 0; /* this step's evaluation is the best so far */
        if (dist_fault("fail", s)) die("step %lld: a failure injected by NFLOW_MPI_FAULT", (long long)s);
        int32_t rb = nf_trainer_rollbacks(r->tr, NULL);
        nf_status st = nf_trainer_step(r->tr, &loss, &gn);
        done++;
        int64_t undone;
        if (st == NF_ERR_DIVERGED) {
            if (lg) fclose(lg);
            if (saved) DIE_ALL("step %lld: %s; %s keeps step %lld (try a lower --lr or a --clip)", (long long)s, nf_last_error(), o->out, (long long)saved);
            DIE_ALL("step %lld: %s; no checkpoint written (try a lower --lr or a --clip)", (long long)s, nf_last_error());
        }
        if (nf_trainer_rollbacks(r->tr, &undone) != rb) { /* the guard took the last steps back: say so, go on */
            if (!o->quiet && writer)
                fprintf(stderr, "%swarning: step %lld: the loss diverged; rolled back %lld steps, learning rate now %g× its schedule\n", tty ? "\n" : "",
                        (long long)s, (long long)undone, pow(0.5, nf_trainer_rollbacks(r->tr, NULL)));
            consecutive = 0;
        }
        int numeric = st == NF_ERR_NUMERIC;
        if (numeric) {
            skipped++;
            if (!o->quiet && writer) fprintf(stderr, "%swarning: step %lld: %s; update skipped\n", tty ? "\n" : "", (long long)s, nf_last_error());
            if (++consecutive >= 50) {
                if (lg) fclose(lg);
                if (saved) DIE_ALL("50 consecutive non-finite steps (%lld..%lld); stopping, %s keeps step %lld (try a lower --lr or --clip)",
                                   (long long)(s - 49), (long long)s, o->out, (long long)saved);
                DIE_ALL("50 consecutive non-finite steps (%lld..%lld); stopping, no checkpoint written (try a lower --lr or --clip)",
                        (long long)(s - 49), (long long)s);
            }
        } else {
            check(st);
            consecutive = 0;
            double shown = r->scale * loss + r->offset;
            ema = isnan(ema) ? shown : 0.98 * ema + 0.02 * shown;
        }
        if (dist_fault("diverge", s)) nf_flow_params(r->f)[0] += R_NUDGE;
        if (o->check_sync && s % o->check_sync == 0) { /* every process compares, so all stop together */
            if (!dist_same(params_checksum(r->f)))
                DIE_ALL("step %lld: the parameters differ between the %d processes (--check-sync); stopping, %s keeps step %lld",
                        (long long)s, dist_size(), o->out, (long long)saved);
            checks++;
        }
        t = now(), el = t - t0;
        /* --time-limit ends the run here; under mpirun the clocks differ, so the processes decide together */
        int final = s == o->steps || (o->time_limit > 0 && dist_any(el >= 60 * o->time_limit));
        char vcol[40] = "";
        if (v && (s % v->every == 0 || final)) { /* every process evaluates (the same model, the same rows): they stop together */
            double nll = val_nll(r);
            shown_val = nll;
            snprintf(vcol, sizeof vcol, ",%.6f", r->scale * nll + r->offset);
            if (s % v->every == 0) {
                if (v->best_step == 0 || nll < v->best) {
                    v->best = nll, v->best_step = s, v->bad = 0;
                    new_best = 1; /* saved below, after the checkpoint */
                } else v->bad++;
                if (v->patience > 0 && v->bad >= v->patience) v->stopped = s, final = 1;
            } else end_val = nll;
        } else if (v) snprintf(vcol, sizeof vcol, ",");
        double rate = (double)done * (double)o->batch / el, epoch = (double)s * (double)o->batch / (double)r->nrows;
        if (lg && !numeric) fprintf(lg, "%lld,%.4f,%.6f,%.6g,%.1f,%.3f,%lld%s\n", (long long)s, epoch, r->scale * loss + r->offset, r->scale * gn, rate, el, (long long)skipped, vcol);
        else if (lg) fprintf(lg, "%lld,%.4f,nan,nan,%.1f,%.3f,%lld%s\n", (long long)s, epoch, rate, el, (long long)skipped, vcol);
        /* a skipped step changed nothing to save; a new best is checkpointed first, then copied to
         * --out.best: a run killed between the two resumes from a checkpoint that is itself the best
         * state (val_resume writes .best anew from it), one killed before the checkpoint from the
         * previous checkpoint and the .best it names — never a .best newer than its checkpoint. The
         * metrics log is flushed before the checkpoint, so it never lacks a step the checkpoint holds
         * (rows past it are cut on --resume) */
        if (dist_fault("kill", s)) raise(SIGKILL); /* the tests' crash before the checkpoint */
        if ((s % o->ck_every == 0 && !numeric) || final || new_best) {
            if (lg && fflush(lg) != 0) die("%s: write failed: %s", logpath, strerror(errno));
            if (writer) { /* resumable with --resume */
                nf_status sst = save_state(r, o->out);
                if (sst && saved) die("%s (%s keeps step %lld)", nf_last_error(), o->out, (long long)saved);
                check(sst);
                if (dist_fault("killbest", s)) raise(SIGKILL); /* the tests' crash between the two files */
                if (new_best) check(save_state(r, v->best_path));
            }
            saved = s;
        }
        if (writer && r->samples_png && (s % o->smp_every == 0 || final)) {
            nf_flow_set_training(r->f, 0);
            swap_average(r);
            write_sample_grid(r->f, 12345, 0.7, NS, r->samples_png);
            swap_average(r);
            nf_flow_set_training(r->f, 1);
        }
        int every = (int)((o->steps - r->first + 1) / 20 > 0 ? (o->steps - r->first + 1) / 20 : 1);
        if (!o->quiet && writer && (final || (tty ? t - last > 0.5 : (s - r->first + 1) % every == 0))) {
            char eta[32];
            fmt_time(el / (double)done * (double)(o->steps - s), eta, sizeof eta);
            char vs[64] = "";
            if (v && !isnan(shown_val)) snprintf(vs, sizeof vs, "  val %.4f (best %.4f)", r->scale * shown_val + r->offset, r->scale * v->best + r->offset);
            fprintf(stderr, "%sepoch %.2f  step %lld/%lld  loss %.4f %s%s  %.0f %s/s  ETA %s%s", tty ? "\r" : "", epoch, (long long)s,
                    (long long)o->steps, ema, r->unit, vs, rate, r->items, eta, tty ? "   " : "\n");
            last = t;
        }
        if (final) break;
    }
    if (!saved && writer) check(save_state(r, o->out)); /* no step to run (--steps 0, or a finished run resumed) */
    swap_average(r); /* the flow now holds what --out holds as the model */
    if (v) { /* --out: the better of the best scheduled evaluation and the last step */
        v->saved_step = saved ? saved : r->first - 1;
        if (done > 0 && v->best_step > 0 && v->best_step != v->saved_step && !(end_val < v->best)) {
            if (writer && rename(v->best_path, o->out) != 0) die("%s: cannot replace with %s: %s", o->out, v->best_path, strerror(errno));
            v->saved_step = v->best_step;
        } else if (writer && v->best_step == v->saved_step) remove(v->best_path); /* the same state as --out */
        /* else the last step's model stays in --out, and --out.best keeps the best scheduled state for a --resume */
    }
    if (tty) fputc('\n', stderr);
    if (lg && fclose(lg) != 0) die("%s: write failed: %s", logpath, strerror(errno));
    if (writer && dist_size() > 1 && done > 0 && !o->quiet) {
        double wait, grad, el = now() - t0;
        dist_timing(&wait, &grad);
        fprintf(stderr, "nflow train: %d processes: the sums across processes took %.3f ms per step, %.1f %% of the %.3f ms step", dist_size(),
                1e3 * dist_comm_seconds() / (double)done, 100 * dist_comm_seconds() / el, 1e3 * el / (double)done);
        if (wait > 0) fprintf(stderr, " (NFLOW_MPI_TIMING: %.3f ms waiting for the slowest process, %.3f ms in the gradient all-reduce)",
                              1e3 * wait / (double)done, 1e3 * grad / (double)done);
        if (dist_bucket_mb() > 0) fprintf(stderr, "; gradient in buckets of %g MiB", dist_bucket_mb());
        else fprintf(stderr, "; gradient in one all-reduce");
        fputc('\n', stderr);
    }
    if (writer && o->check_sync && dist_size() > 1)
        fprintf(stderr, "nflow train: --check-sync: the parameters were identical on all %d processes at %lld checks\n", dist_size(), (long long)checks);
    return skipped;
}
