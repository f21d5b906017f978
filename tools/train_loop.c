/* train_loop.c — the one training loop of nflow train, for vector and image data alike. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int64_t train_loop(const train_run *r) {
    const opts *o = r->o;
    char logpath[4096];
    snprintf(logpath, sizeof logpath, "%s%s", o->log ? o->log : o->out, o->log ? "" : ".metrics.csv");
    int append = r->first > 1 && access(logpath, F_OK) == 0;
    FILE *lg = fopen(logpath, append ? "a" : "w");
    if (!lg) die("%s: cannot open for writing: %s", logpath, strerror(errno));
    /* one row per step; a skipped (non-finite) step has loss and grad_norm nan; skipped counts them so far */
    if (!append) fprintf(lg, "step,epoch,loss_%s,grad_norm,%s_per_s,elapsed_s,skipped\n", r->csv_unit, r->items);
    const int64_t NS = 64; /* sample grids: the same 64 latents at temperature 0.7 every time */
    int tty = isatty(2) && !o->quiet;
    double t0 = now(), last = t0, ema = NAN;
    int64_t skipped = 0, consecutive = 0, saved = 0, done = 0;
    for (int64_t s = r->first; s <= o->steps; s++) {
        double loss = NAN, gn = NAN, t = 0, el = 0;
        nf_status st = nf_trainer_step(r->tr, &loss, &gn);
        done++;
        int numeric = st == NF_ERR_NUMERIC;
        if (numeric) {
            skipped++;
            if (!o->quiet) fprintf(stderr, "%swarning: step %lld: %s; update skipped\n", tty ? "\n" : "", (long long)s, nf_last_error());
            if (++consecutive >= 50) {
                fclose(lg);
                if (saved) die("50 consecutive non-finite steps (%lld..%lld); stopping, %s keeps step %lld (try a lower --lr or --clip)",
                               (long long)(s - 49), (long long)s, o->out, (long long)saved);
                die("50 consecutive non-finite steps (%lld..%lld); stopping, no checkpoint written (try a lower --lr or --clip)",
                    (long long)(s - 49), (long long)s);
            }
        } else {
            check(st);
            consecutive = 0;
            double shown = r->scale * loss + r->offset;
            ema = isnan(ema) ? shown : 0.98 * ema + 0.02 * shown;
        }
        t = now(), el = t - t0;
        double rate = (double)done * (double)o->batch / el, epoch = (double)s * (double)o->batch / (double)r->nrows;
        if (!numeric) fprintf(lg, "%lld,%.4f,%.6f,%.6g,%.1f,%.3f,%lld\n", (long long)s, epoch, r->scale * loss + r->offset, r->scale * gn, rate, el, (long long)skipped);
        else fprintf(lg, "%lld,%.4f,nan,nan,%.1f,%.3f,%lld\n", (long long)s, epoch, rate, el, (long long)skipped);
        int final = s == o->steps || (o->time_limit > 0 && el >= 60 * o->time_limit); /* --time-limit ends the run here */
        if ((s % o->ck_every == 0 && !numeric) || final) { /* a skipped step changed nothing to save */
            nf_status sst = nf_trainer_save(r->tr, o->out); /* resumable with --resume */
            if (sst && saved) die("%s (%s keeps step %lld)", nf_last_error(), o->out, (long long)saved);
            check(sst);
            fflush(lg);
            saved = s;
        }
        if (r->samples_png && (s % o->smp_every == 0 || final)) {
            nf_flow_set_training(r->f, 0);
            write_sample_grid(r->f, 12345, 0.7, NS, r->samples_png);
            nf_flow_set_training(r->f, 1);
        }
        int every = (int)((o->steps - r->first + 1) / 20 > 0 ? (o->steps - r->first + 1) / 20 : 1);
        if (!o->quiet && (final || (tty ? t - last > 0.5 : (s - r->first + 1) % every == 0))) {
            char eta[32];
            fmt_time(el / (double)done * (double)(o->steps - s), eta, sizeof eta);
            fprintf(stderr, "%sepoch %.2f  step %lld/%lld  loss %.4f %s  %.0f %s/s  ETA %s%s", tty ? "\r" : "", epoch, (long long)s,
                    (long long)o->steps, ema, r->unit, rate, r->items, eta, tty ? "   " : "\n");
            last = t;
        }
        if (final) break;
    }
    if (!saved) check(nf_trainer_save(r->tr, o->out)); /* no step to run (--steps 0, or a finished run resumed) */
    if (tty) fputc('\n', stderr);
    if (fclose(lg) != 0) die("%s: write failed: %s", logpath, strerror(errno));
    return skipped;
}
